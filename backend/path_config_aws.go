package backend

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// configAWSPath holds AWS credentials; it is seal-wrapped.
const configAWSPath = "config/aws"

// awsConfig is how the engine reaches AWS KMS, stored at config/aws. The
// secret key and session token are never returned.
type awsConfig struct {
	AccessKey            string        `json:"access_key,omitempty"`
	SecretKey            string        `json:"secret_key,omitempty"`
	SessionToken         string        `json:"session_token,omitempty"`
	RoleARN              string        `json:"role_arn,omitempty"`
	Region               string        `json:"region,omitempty"`
	Endpoint             string        `json:"endpoint,omitempty"`
	MaxRequestsPerSecond int           `json:"max_requests_per_second"`
	MaxConcurrency       int           `json:"max_concurrency"`
	CallTimeout          time.Duration `json:"call_timeout"`
	MaxAttempts          int           `json:"max_attempts"`
	BreakerCooldown      time.Duration `json:"breaker_cooldown"`
}

func defaultAWSConfig() *awsConfig {
	return &awsConfig{MaxRequestsPerSecond: 250, MaxConcurrency: 64, CallTimeout: 5 * time.Second, MaxAttempts: 3, BreakerCooldown: 5 * time.Second}
}

var (
	// regionRe is the shapes of the regions in the AWS SDK's endpoint
	// partitions (aws-sdk-go-v2 internal/endpoints/awsrulesfn): a two-letter
	// prefix (us, eu, ap, cn, ... us-gov, us-iso, eu-isoe) or the European
	// Sovereign Cloud's eusc-de, then words and a number. Pseudo-regions
	// (aws-global, *-fips) hold no KMS keys and are refused.
	regionRe  = regexp.MustCompile(`^(?:[a-z]{2}|eusc-de)(-[a-z]+)+-[0-9]+$`)
	roleARNRe = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)
)

func validateRegion(r string) error {
	if r != "" && !regionRe.MatchString(r) {
		return fmt.Errorf(`invalid "region" %q: not an AWS region name such as eu-west-1`, r)
	}
	return nil
}

// validateEndpoint checks a KMS endpoint URL. Its errors never quote the
// value: a refused endpoint may hold credentials (user:password@), and
// even one that does not parse may.
func validateEndpoint(e string) error {
	if e == "" {
		return nil
	}
	u, err := url.Parse(e)
	if err == nil && u.User != nil || strings.Contains(e, "@") {
		return fmt.Errorf(`invalid "endpoint": must not contain credentials (user:password@) or any "@"; the engine signs KMS calls with config/aws's credentials`)
	}
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return fmt.Errorf(`invalid "endpoint": must be an http(s) URL with a host, such as https://kms.eu-west-1.amazonaws.com`)
	}
	return nil
}

func (c *awsConfig) validate() error {
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return fmt.Errorf(`invalid "access_key"/"secret_key": give both or neither (neither uses the AWS SDK's default credential chain)`)
	}
	if c.SessionToken != "" && c.AccessKey == "" {
		return fmt.Errorf(`invalid "session_token": only with access_key and secret_key`)
	}
	if c.RoleARN != "" && !roleARNRe.MatchString(c.RoleARN) {
		return fmt.Errorf(`invalid "role_arn" %q: not an IAM role ARN`, c.RoleARN)
	}
	if err := validateRegion(c.Region); err != nil {
		return err
	}
	if err := validateEndpoint(c.Endpoint); err != nil {
		return err
	}
	switch {
	case c.MaxRequestsPerSecond < 1 || c.MaxRequestsPerSecond > 100000:
		return fmt.Errorf(`invalid "max_requests_per_second" %d: must be between 1 and 100000`, c.MaxRequestsPerSecond)
	case c.MaxConcurrency < 1 || c.MaxConcurrency > 4096:
		return fmt.Errorf(`invalid "max_concurrency" %d: must be between 1 and 4096`, c.MaxConcurrency)
	case c.CallTimeout < time.Second || c.CallTimeout > time.Minute:
		return fmt.Errorf(`invalid "call_timeout" %s: must be between 1s and 1m, in whole seconds`, c.CallTimeout)
	case c.MaxAttempts < 1 || c.MaxAttempts > 10:
		return fmt.Errorf(`invalid "max_attempts" %d: must be between 1 and 10`, c.MaxAttempts)
	case c.BreakerCooldown < time.Second || c.BreakerCooldown > 5*time.Minute:
		return fmt.Errorf(`invalid "breaker_cooldown" %s: must be between 1s and 5m`, c.BreakerCooldown)
	}
	return nil
}

func pathConfigAWS(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "config/aws",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "aws-configuration"},
		Fields: map[string]*framework.FieldSchema{
			"access_key":    {Type: framework.TypeString, Description: "AWS access key ID. With secret_key; leave both unset to use the AWS SDK's default credential chain."},
			"secret_key":    {Type: framework.TypeString, Description: "AWS secret access key. Never returned.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
			"session_token": {Type: framework.TypeString, Description: "AWS session token for temporary credentials. Never returned.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
			"role_arn":      {Type: framework.TypeString, Description: "IAM role to assume (STS AssumeRole) with the credentials above or the default chain."},
			"region":        {Type: framework.TypeString, Description: "Default AWS region of KMS keys; a key's own region overrides it. Without it, AWS_REGION or shared config decide."},
			"endpoint":      {Type: framework.TypeString, Description: "KMS endpoint URL, for a VPC endpoint: http(s), with a host, without credentials or any @. A key's own endpoint overrides it."},
			"max_requests_per_second": {Type: framework.TypeInt, Default: 250,
				Description: "KMS calls per second this mount makes per region; callers over it wait within their deadline. Keep it under the account's KMS quota for asymmetric signing (see Service Quotas) minus other users."},
			"max_concurrency":  {Type: framework.TypeInt, Default: 64, Description: "KMS calls in flight per region."},
			"call_timeout":     {Type: framework.TypeDurationSecond, Default: 5, Description: "Deadline of one KMS call, retries included: 1s to 1m, whole seconds."},
			"max_attempts":     {Type: framework.TypeInt, Default: 3, Description: "Attempts per KMS call by the AWS SDK's standard retryer, the first included."},
			"breaker_cooldown": {Type: framework.TypeDurationSecond, Default: 5, Description: "After 5 calls in a row find KMS unavailable, calls fail fast for this long, then one call probes KMS."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.pathConfigAWSRead, Summary: "Read the AWS configuration (without secrets) and KMS call state.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses:    map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: configAWSResponseFields}}},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathConfigAWSWrite, Summary: "Configure how the engine reaches AWS KMS.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "configure"},
				Responses:    map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: configAWSResponseFields}}},
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback: b.pathConfigAWSDelete, Summary: "Remove the AWS configuration; the SDK's default chain is used.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "delete"},
				Responses:    map[int][]framework.Response{http.StatusNoContent: {{Description: "No Content"}}},
			},
		},
		HelpSynopsis:    "Configure AWS credentials and limits for awskms keys.",
		HelpDescription: pathConfigAWSHelpDesc,
	}
}

var configAWSResponseFields = map[string]*framework.FieldSchema{
	"access_key":              {Type: framework.TypeString, Required: true, Description: "AWS access key ID; empty: the AWS SDK's default credential chain is used."},
	"secret_key_set":          {Type: framework.TypeBool, Required: true, Description: "Whether a secret key is stored. The key itself is never returned."},
	"session_token_set":       {Type: framework.TypeBool, Required: true, Description: "Whether a session token is stored. The token itself is never returned."},
	"role_arn":                {Type: framework.TypeString, Required: true, Description: "IAM role assumed (STS AssumeRole); empty if none."},
	"region":                  {Type: framework.TypeString, Required: true, Description: "Default AWS region of KMS keys; empty: AWS_REGION or shared config decide."},
	"endpoint":                {Type: framework.TypeString, Required: true, Description: "KMS endpoint URL; empty: the region's default endpoint."},
	"max_requests_per_second": {Type: framework.TypeInt, Required: true, Description: "KMS calls per second this mount makes per region."},
	"max_concurrency":         {Type: framework.TypeInt, Required: true, Description: "KMS calls in flight per region."},
	"call_timeout":            {Type: framework.TypeInt64, Required: true, Description: "Deadline of one KMS call, retries included, in seconds."},
	"max_attempts":            {Type: framework.TypeInt, Required: true, Description: "Attempts per KMS call by the AWS SDK's standard retryer, the first included."},
	"breaker_cooldown":        {Type: framework.TypeInt64, Required: true, Description: "How long calls fail fast after 5 calls in a row find KMS unavailable, in seconds."},
	"kms":                     {Type: framework.TypeMap, Required: true, Description: `Per governor in use since the configuration was loaded, named "<region> <endpoint>" (the region as the AWS SDK resolved it, the endpoint normalised, empty for the region's default): breaker_state, consecutive_failures, rate_waits, fast_fails, in_flight.`},
}

func (b *backend) pathConfigAWSRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.getAWSConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading AWS config failed")
	}
	return &logical.Response{Data: b.awsResponseData(cfg)}, nil
}

func (b *backend) awsResponseData(cfg *awsConfig) map[string]any {
	return map[string]any{
		"access_key":              cfg.AccessKey,
		"secret_key_set":          cfg.SecretKey != "",
		"session_token_set":       cfg.SessionToken != "",
		"role_arn":                cfg.RoleARN,
		"region":                  cfg.Region,
		"endpoint":                cfg.Endpoint,
		"max_requests_per_second": cfg.MaxRequestsPerSecond,
		"max_concurrency":         cfg.MaxConcurrency,
		"call_timeout":            int64(cfg.CallTimeout.Seconds()),
		"max_attempts":            cfg.MaxAttempts,
		"breaker_cooldown":        int64(cfg.BreakerCooldown.Seconds()),
		"kms":                     b.kmsStats(),
	}
}

func (b *backend) pathConfigAWSWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	cur, err := b.getAWSConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading AWS config failed")
	}
	cfg := *cur
	for field, dst := range map[string]*string{
		"access_key": &cfg.AccessKey, "secret_key": &cfg.SecretKey, "session_token": &cfg.SessionToken,
		"role_arn": &cfg.RoleARN, "region": &cfg.Region, "endpoint": &cfg.Endpoint,
	} {
		if v, ok := d.GetOk(field); ok {
			*dst = v.(string)
		}
	}
	for field, dst := range map[string]*int{
		"max_requests_per_second": &cfg.MaxRequestsPerSecond, "max_concurrency": &cfg.MaxConcurrency, "max_attempts": &cfg.MaxAttempts,
	} {
		if v, ok := d.GetOk(field); ok {
			*dst = v.(int)
		}
	}
	for field, dst := range map[string]*time.Duration{"call_timeout": &cfg.CallTimeout, "breaker_cooldown": &cfg.BreakerCooldown} {
		if v, ok := d.GetOk(field); ok {
			*dst = time.Duration(v.(int)) * time.Second
		}
	}
	if err := cfg.validate(); err != nil {
		return badRequest("%s", err)
	}
	entry, err := logical.StorageEntryJSON(configAWSPath, &cfg)
	if err != nil {
		return b.respondErr(err, "encoding AWS config failed")
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return b.respondErr(fmt.Errorf("writing AWS config: %w", err), "writing AWS config failed")
	}
	b.dropAWS()
	return &logical.Response{Data: b.awsResponseData(&cfg)}, nil
}

func (b *backend) pathConfigAWSDelete(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if err := req.Storage.Delete(ctx, configAWSPath); err != nil {
		return b.respondErr(fmt.Errorf("deleting AWS config: %w", err), "deleting AWS config failed")
	}
	b.dropAWS()
	return nil, nil
}

const pathConfigAWSHelpDesc = `
How the engine reaches AWS KMS for keys with provider "awskms". Give an
access key and secret key, optionally a role to assume; or give none, and
the AWS SDK's default chain is used (the plugin process's environment,
shared config files, web identity, the instance or task role). The secret
key and session token are stored in a seal-wrapped path and never returned.

Each region gets a governor (the region as the AWS SDK resolved it, and
the endpoint normalised, the region's default counting as none): at most max_requests_per_second and
max_concurrency KMS calls, each bounded by call_timeout with max_attempts
tries, and a circuit breaker that fails calls fast with "KMS unavailable"
for breaker_cooldown after 5 calls in a row find KMS down. Reading this
path shows the governors' state. Changing it drops clients and governors
at once; the next KMS call builds new ones. Publishing and verifying never
need this configuration: only binding a KMS key (key create, rotate) and
signing with an awskms key do, and a configuration that cannot make a KMS
client fails signing with a 500.
`
