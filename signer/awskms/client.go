package awskms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// ClientConfig says how to reach KMS. Everything is optional: with no
// credentials the SDK's default chain is used (environment, shared config,
// web identity, ECS/EC2 instance role).
type ClientConfig struct {
	Region string
	// Endpoint overrides the KMS endpoint, for a VPC endpoint or a test
	// server.
	Endpoint string
	// Static credentials; SecretAccessKey is never logged or returned.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// RoleARN, if set, is assumed (with the credentials above, or the
	// default chain) and its temporary credentials sign the calls.
	RoleARN string
	// MaxAttempts is the SDK retryer's attempts per call, retries included
	// (default 3). Each call's total time is bounded by the Governor's
	// CallTimeout.
	MaxAttempts int
}

// NewClient builds a KMS client with aws-sdk-go-v2's own configuration and
// credential machinery, its HTTP client wrapped by KeepAlive.
func NewClient(ctx context.Context, c ClientConfig) (*kms.Client, error) {
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return nil, errors.New("access key and secret key must be given together")
	}
	attempts := c.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = 2 * time.Second
			})
		}),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: set region in the configuration or AWS_REGION")
	}
	if c.RoleARN != "" {
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), c.RoleARN,
			func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "vault-plugin-secrets-jwt" }))
	}
	switch cfg.Credentials.(type) {
	case nil, aws.AnonymousCredentials, *aws.AnonymousCredentials:
	default:
		cfg.Credentials = credentialsProvider{cfg.Credentials}
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) {
		o.HTTPClient = KeepAlive(o.HTTPClient)
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
	}), nil
}

// BaseTransport returns a copy of the HTTP transport the SDK's
// configuration gave api, a client from NewClient: the SDK's defaults plus
// what the configuration added, such as the CA bundle of AWS_CA_BUNDLE or
// a profile's ca_bundle. A caller that sends api's calls through an HTTP
// client of its own (to close its idle connections, say) builds it on this
// transport, so that it trusts what the SDK's own client would. For any
// other API it returns the SDK's default transport.
func BaseTransport(api API) *http.Transport {
	if c, ok := api.(*kms.Client); ok {
		hc := c.Options().HTTPClient
		if k, ok := hc.(keepAlive); ok {
			hc = k.HTTPClient
		}
		if bc, ok := hc.(*awshttp.BuildableClient); ok {
			return bc.GetTransport()
		}
	}
	return awshttp.NewBuildableClient().GetTransport()
}

// callRetries is one KMS call's view of the SDK's retries. Its option
// installs, for that call only, a retryer that counts the attempts the SDK
// makes and refuses a retry that could not finish before the call's
// deadline (the Governor's CallTimeout, or the caller's own if sooner).
// Without that, the retryer would sleep into the deadline and the SDK would
// return the context's error, losing KMS's answer: a throttled call would
// end as a timeout, which the breaker counts as an outage. Refused, the
// call ends with KMS's last answer (a ThrottlingException stays a
// throttle).
//
// A call's attempts run one after another, so no lock is needed; read
// Attempts once the call has returned.
type callRetries struct {
	attempts int
	// started is when the latest attempt began.
	started time.Time
	// delay is the backoff GetRetryToken chose and RetryDelay returns.
	delay    time.Duration
	hasDelay bool
}

// option scopes the client's retryer to this call; pass it to the SDK
// operation.
func (c *callRetries) option(o *kms.Options) {
	if o.Retryer != nil {
		o.Retryer = &callRetryer{inner: o.Retryer, c: c}
	}
}

// Retries returns how many retries the SDK made (attempts after the
// first).
func (c *callRetries) Retries() int { return max(0, c.attempts-1) }

// errRetryRefused is joined by the SDK with the attempt's error, which stays
// the one classify sees.
var errRetryRefused = errors.New("no retry")

type callRetryer struct {
	inner aws.Retryer
	c     *callRetries
}

var _ aws.RetryerV2 = (*callRetryer)(nil)

// IsErrorRetryable: a call without credentials is not retried; the
// credential sources retry on their own.
func (r *callRetryer) IsErrorRetryable(err error) bool {
	return !errors.Is(err, ErrNoCredentials) && r.inner.IsErrorRetryable(err)
}

func (r *callRetryer) MaxAttempts() int { return r.inner.MaxAttempts() }
func (r *callRetryer) GetInitialToken() func(error) error {
	return r.inner.GetInitialToken()
}

func (r *callRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	r.c.attempts++
	r.c.started = time.Now()
	if v2, ok := r.inner.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.inner.GetInitialToken(), nil
}

// GetRetryToken chooses the backoff now, while the deadline is at hand, and
// refuses the retry if the backoff plus another attempt as long as the one
// that failed would pass the deadline.
func (r *callRetryer) GetRetryToken(ctx context.Context, opErr error) (func(error) error, error) {
	r.c.hasDelay = false
	delay, err := r.inner.RetryDelay(r.c.attempts, opErr)
	if err != nil {
		return r.inner.GetRetryToken(ctx, opErr)
	}
	if deadline, ok := ctx.Deadline(); ok {
		last := time.Since(r.c.started)
		if left := time.Until(deadline); left < delay+last {
			return nil, fmt.Errorf("%w: a %s backoff and another attempt (the last took %s) would not finish within the %s left",
				errRetryRefused, delay.Round(time.Millisecond), last.Round(time.Millisecond), left.Round(time.Millisecond))
		}
	}
	release, err := r.inner.GetRetryToken(ctx, opErr)
	if err == nil {
		r.c.delay, r.c.hasDelay = delay, true
	}
	return release, err
}

func (r *callRetryer) RetryDelay(attempt int, opErr error) (time.Duration, error) {
	if r.c.hasDelay {
		r.c.hasDelay = false
		return r.c.delay, nil
	}
	return r.inner.RetryDelay(attempt, opErr)
}

// credentialsProvider marks every failure to get credentials with
// ErrNoCredentials, so that it is not taken for KMS being unavailable: the
// SDK reports it from the request's signing step, as a plain error.
type credentialsProvider struct{ aws.CredentialsProvider }

func (p credentialsProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := p.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return creds, &noCredentialsError{detail: credentialsDetail(err)}
	}
	return creds, nil
}

// ProviderSources passes on where the credentials come from, for the SDK's
// user agent.
func (p credentialsProvider) ProviderSources() []aws.CredentialSource {
	if s, ok := p.CredentialsProvider.(aws.CredentialProviderSource); ok {
		return s.ProviderSources()
	}
	return nil
}

// credentialsDetail is what a credential source's error may say in ours:
// credential_process's can quote the process's output, which may hold a
// secret, so only that it failed is kept.
func credentialsDetail(err error) string {
	if pe := (*processcreds.ProviderError)(nil); errors.As(err, &pe) {
		return "credential_process failed (its output is not repeated here)"
	}
	return err.Error()
}

// noCredentialsError wraps ErrNoCredentials and nothing else: not the
// source's error, whose chain may hold a context error or an STS API error
// that would read as a timeout or as KMS refusing the key.
type noCredentialsError struct{ detail string }

func (e *noCredentialsError) Error() string { return ErrNoCredentials.Error() + ": " + e.detail }
func (e *noCredentialsError) Unwrap() error { return ErrNoCredentials }
