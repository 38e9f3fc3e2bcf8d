package backend

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
)

// providerAWSKMS keeps private keys in AWS KMS; the engine stores only the
// key's ARN and public key.
const providerAWSKMS = "awskms"

// kmsConn is a KMS client and the governor its calls go through.
type kmsConn struct {
	api awskms.API
	gov *awskms.Governor
	// hc carries api's KMS calls; closing its idle connections is all a
	// dropped client needs.
	hc *http.Client
}

// newKMSHTTPClient is the HTTP client of one KMS client: tr, the transport
// the SDK's configuration built for it (awskms.BaseTransport: the SDK's
// defaults, and the CA bundle of AWS_CA_BUNDLE or a profile's ca_bundle),
// opening and keeping idle up to maxConcurrency connections, and no
// redirects followed (KMS sends none). The backend builds it, rather than
// leaving it to the SDK, so that dropAWS and Clean can close its idle
// keep-alive connections, which would otherwise outlive a config/aws
// change or the mount by the SDK's 90s idle timeout.
//
// maxConcurrency is config/aws's max_concurrency, the most calls the
// client's governor lets be in flight, each on a connection of its own
// over HTTP/1.1. The SDK's pool keeps 10 idle per host, so that
// with more callers than that, connections beyond the 10th were closed
// as their calls ended and dialled again, each a TLS handshake, for as
// long as the load lasted; and it opens at most 2048 per host, fewer than
// max_concurrency may allow (4096).
func newKMSHTTPClient(tr *http.Transport, maxConcurrency int) *http.Client {
	tr.MaxIdleConnsPerHost = maxConcurrency
	tr.MaxIdleConns = max(tr.MaxIdleConns, maxConcurrency)
	if tr.MaxConnsPerHost != 0 { // 0: no limit
		tr.MaxConnsPerHost = max(tr.MaxConnsPerHost, maxConcurrency)
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// kmsHTTPAPI sends every call of a KMS client through hc (wrapped by
// awskms.KeepAlive, so that calls keep their connection), with the SDK's
// per-call kms.Options.HTTPClient: awskms.NewClient has no option for it.
// The credential providers' own calls (STS AssumeRole, IMDS) still use the
// SDK's client.
type kmsHTTPAPI struct {
	awskms.API
	withHC func(*kms.Options)
}

func newKMSHTTPAPI(api awskms.API, hc *http.Client) kmsHTTPAPI {
	kc := awskms.KeepAlive(hc)
	return kmsHTTPAPI{API: api, withHC: func(o *kms.Options) { o.HTTPClient = kc }}
}

func (a kmsHTTPAPI) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	return a.API.DescribeKey(ctx, in, append(optFns, a.withHC)...)
}

func (a kmsHTTPAPI) GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	return a.API.GetPublicKey(ctx, in, append(optFns, a.withHC)...)
}

func (a kmsHTTPAPI) Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error) {
	return a.API.Sign(ctx, in, append(optFns, a.withHC)...)
}

// awsState is what config/aws builds, cached on the backend and rebuilt
// when config/aws changes. conns holds a client per region and endpoint
// as configured (config/aws's, or a key's own); govs a governor per region
// as the SDK resolved it and endpoint as normalised (govKey), since KMS
// quotas are per account and region: a region named in config/aws, by
// AWS_REGION or by a key, with its default endpoint given or not, shares
// one budget.
type awsState struct {
	cfg   *awsConfig
	conns map[connID]*kmsConn
	govs  map[string]*awskms.Governor
}

// connID is a key's region and endpoint overrides; empty for config/aws's.
type connID struct{ region, endpoint string }

// newKMSAPI builds the KMS client; tests replace it.
type newKMSAPIFunc func(ctx context.Context, c awskms.ClientConfig) (awskms.API, error)

func defaultNewKMSAPI(ctx context.Context, c awskms.ClientConfig) (awskms.API, error) {
	return awskms.NewClient(ctx, c)
}

func (b *backend) getAWSConfig(ctx context.Context, s logical.Storage) (*awsConfig, error) {
	b.awsMu.Lock()
	defer b.awsMu.Unlock()
	if b.aws != nil {
		return b.aws.cfg, nil
	}
	entry, err := s.Get(ctx, configAWSPath)
	if err != nil {
		return nil, fmt.Errorf("reading AWS config: %w", err)
	}
	cfg := defaultAWSConfig()
	if entry != nil {
		if err := entry.DecodeJSON(cfg); err != nil {
			return nil, fmt.Errorf("decoding AWS config: %w", err)
		}
	}
	b.aws = &awsState{cfg: cfg, conns: map[connID]*kmsConn{}, govs: map[string]*awskms.Governor{}}
	return cfg, nil
}

// dropAWS forgets clients and governors, and closes the clients' idle
// connections; a call in flight finishes on its own. Cached keys stay:
// their awskms signers resolve the client on each Sign (see kmsSigner), so
// the next Sign uses the new configuration.
func (b *backend) dropAWS() {
	b.awsMu.Lock()
	st := b.aws
	b.aws = nil
	b.awsMu.Unlock()
	if st != nil {
		for _, c := range st.conns {
			c.hc.CloseIdleConnections()
		}
	}
}

// clean is the backend's Clean func (unmount, reload, upgrade): it closes
// the KMS clients' idle connections. The backend starts no goroutines of
// its own.
func (b *backend) clean(context.Context) {
	b.dropAWS()
}

// errAWSChanged is config/aws changing while a client was being built for
// it.
var errAWSChanged = errors.New("AWS configuration changed while in use")

// kmsConn returns the client and governor for a key's region and endpoint.
// A config/aws change while the client is built makes it start over once;
// a second one in a row is a 503 the caller may retry.
func (b *backend) kmsConn(ctx context.Context, s logical.Storage, k *key) (*kmsConn, error) {
	// Signing's path: one lock, no allocation.
	id := connID{k.Region, k.Endpoint}
	b.awsMu.Lock()
	if st := b.aws; st != nil {
		if c := st.conns[id]; c != nil {
			b.awsMu.Unlock()
			return c, nil
		}
	}
	b.awsMu.Unlock()
	for range 2 {
		c, err := b.newKMSConn(ctx, s, k, id)
		if !errors.Is(err, errAWSChanged) {
			return c, err
		}
	}
	return nil, logical.CodedError(http.StatusServiceUnavailable,
		b.mountPath("config/aws")+" changed twice while this request was building a KMS client for it; retry the request")
}

// newKMSConn builds the client of key k, whose region and endpoint
// overrides are id, outside awsMu (loading the SDK's configuration reads
// files), and keeps it unless config/aws changed meanwhile.
func (b *backend) newKMSConn(ctx context.Context, s logical.Storage, k *key, id connID) (*kmsConn, error) {
	cfg, err := b.getAWSConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	region, endpoint := cfg.Region, cfg.Endpoint
	if k.Region != "" {
		region = k.Region
	}
	if k.Endpoint != "" {
		endpoint = k.Endpoint
	}
	api, err := b.newKMSAPI(ctx, awskms.ClientConfig{
		Region: region, Endpoint: endpoint, AccessKeyID: cfg.AccessKey, SecretAccessKey: cfg.SecretKey,
		SessionToken: cfg.SessionToken, RoleARN: cfg.RoleARN, MaxAttempts: cfg.MaxAttempts,
	})
	if err != nil {
		return nil, kmsClientError{key: k.Name, err: err}
	}
	b.awsMu.Lock()
	defer b.awsMu.Unlock()
	st := b.aws
	if st == nil || st.cfg != cfg {
		return nil, errAWSChanged
	}
	if c := st.conns[id]; c != nil {
		return c, nil // built meanwhile by another caller
	}
	if o, ok := api.(interface{ Options() kms.Options }); ok && o.Options().Region != "" {
		region = o.Options().Region // as the SDK resolved it: config/aws, the key, AWS_REGION or shared config
	}
	hc := newKMSHTTPClient(awskms.BaseTransport(api), cfg.MaxConcurrency)
	api = newKMSHTTPAPI(api, hc)
	endpoint = normalEndpoint(ctx, region, endpoint)
	gid := region + " " + endpoint
	c := &kmsConn{api: api, gov: st.govs[gid], hc: hc}
	if c.gov == nil {
		c.gov = b.newGovernor(cfg, region, endpoint)
		st.govs[gid] = c.gov
	}
	st.conns[id] = c
	return c, nil
}

// normalEndpoint is endpoint as governors are keyed and logged: scheme
// and host in lower case, without a default port or a trailing slash, and
// "" when it is region's default KMS endpoint.
func normalEndpoint(ctx context.Context, region, endpoint string) string {
	if endpoint == "" {
		return ""
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	}
	if port != "" || strings.Contains(host, ":") {
		host = net.JoinHostPort(host, port)
		host = strings.TrimSuffix(host, ":")
	}
	norm := scheme + "://" + host + strings.TrimRight(u.EscapedPath(), "/")
	def, err := kms.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, kms.EndpointParameters{Region: aws.String(region)})
	if err == nil && def.URI.String() == norm {
		return ""
	}
	return norm
}

// newGovernor builds the governor of region and endpoint from cfg's limits.
func (b *backend) newGovernor(cfg *awsConfig, region, endpoint string) *awskms.Governor {
	return awskms.NewGovernor(awskms.GovernorOptions{
		MaxRequestsPerSecond: float64(cfg.MaxRequestsPerSecond),
		MaxConcurrency:       cfg.MaxConcurrency,
		CallTimeout:          cfg.CallTimeout,
		BreakerCooldown:      cfg.BreakerCooldown,
		OnBreakerChange: func(from, to string, failures int) {
			kv := []any{"region", region, "endpoint", endpoint, "from", from, "to", to, "consecutive_failures", failures}
			if to == awskms.BreakerOpen {
				b.Logger().Error("KMS circuit breaker open: KMS calls fail fast until a probe succeeds", append(kv, "cooldown", cfg.BreakerCooldown.String())...)
			} else {
				b.Logger().Info("KMS circuit breaker closed: KMS answers again", kv...)
			}
		},
	})
}

// kmsClientError is a KMS client that cannot be built from the AWS
// configuration: jwt/config/aws, the plugin process's environment, or the
// key's own region and endpoint. Its text names where to look and carries
// the SDK's reason, never credentials.
type kmsClientError struct {
	key string
	err error
}

func (e kmsClientError) Error() string {
	return fmt.Sprintf(`no KMS client for key %q: the AWS configuration (this mount's config/aws, the plugin's AWS environment, or the key's "region"/"endpoint") is not usable: %v`, e.key, e.err)
}

func (e kmsClientError) Unwrap() error { return e.err }

// kmsStats reports every governor's state for operators.
func (b *backend) kmsStats() map[string]any {
	b.awsMu.Lock()
	defer b.awsMu.Unlock()
	out := map[string]any{}
	if b.aws == nil {
		return out
	}
	for id, g := range b.aws.govs {
		st := g.Stats()
		out[id] = map[string]any{
			"breaker_state": st.BreakerState, "consecutive_failures": st.ConsecutiveFails,
			"rate_waits": st.RateWaits, "fast_fails": st.FastFails, "in_flight": st.InFlight,
		}
	}
	return out
}

// awskmsProvider binds key versions to KMS keys.
type awskmsProvider struct{ b *backend }

func (p awskmsProvider) create(ctx context.Context, s logical.Storage, k *key, opts versionOptions) (*keyVersion, error) {
	if opts.kmsKeyID == "" {
		return nil, userError{fmt.Errorf(`invalid "kms_key_id": required for provider awskms; name the KMS key (key ID, key ARN, alias/<name> or alias ARN)`)}
	}
	if err := awskms.ValidateKeyRef(opts.kmsKeyID); err != nil {
		return nil, userError{fmt.Errorf(`invalid "kms_key_id": %w`, err)}
	}
	conn, err := p.b.kmsConn(ctx, s, k)
	if err != nil {
		// The operator named region or endpoint in this very request (a
		// new key): a client that cannot be built for them is theirs to fix.
		var ce kmsClientError
		if errors.As(err, &ce) && len(k.Versions) == 0 && (k.Region != "" || k.Endpoint != "") {
			return nil, userError{fmt.Errorf(`invalid "region"/"endpoint": no KMS client can be built for them: %v`, ce.err)}
		}
		return nil, err
	}
	sg, err := awskms.New(ctx, conn.api, conn.gov, opts.kmsKeyID, k.Algorithm)
	if err != nil {
		return nil, kmsError(fmt.Sprintf("KMS key %q", opts.kmsKeyID), err, true)
	}
	if err := p.checkUnbound(ctx, s, k, sg.KeyARN(), sg.KeyID()); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(sg.Public())
	if err != nil {
		return nil, err
	}
	return &keyVersion{KeyID: sg.KeyID(), PublicKey: pub, KMSKeyARN: sg.KeyARN()}, nil
}

// checkUnbound refuses a KMS key that any version of any key on the mount,
// published or staged, already uses, by ARN or by kid. Two engine keys
// sharing a KMS key share its kid: the JWKS publishes it once, with one
// key's alg, so the other's tokens may not verify; and rotating plus
// revoking the version in one key (the compromise runbook) leaves the kid
// published through the other. The kid also catches a multi-Region
// replica, which has another ARN but the same key material.
//
// It runs under writeMu, on awskms binds only, which are rare: one storage
// list and a read of each key not in the cache. A local key cannot share a
// kid with a KMS key unless both hold the same private key, which random
// generation never yields (2^-128), so local creates do not check.
func (p awskmsProvider) checkUnbound(ctx context.Context, s logical.Storage, k *key, arn, kid string) error {
	refuse := func(other *key) error {
		for _, v := range other.Versions {
			switch {
			case v.KMSKeyARN == arn:
				return userError{fmt.Errorf(`invalid "kms_key_id": version %d of key %q already uses KMS key %s; one KMS key signs for one key version: create a new KMS key`, v.Version, other.Name, arn)}
			case v.KeyID == kid:
				return userError{fmt.Errorf(`invalid "kms_key_id": KMS key %s has the same public key (kid %s) as version %d of key %q, such as a multi-Region replica of its KMS key; one KMS key signs for one key version: create a new KMS key`, arn, kid, v.Version, other.Name)}
			}
		}
		return nil
	}
	if err := refuse(k); err != nil {
		return err
	}
	names, err := s.List(ctx, keyPrefix)
	if err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	for _, name := range names {
		if name == k.Name {
			continue
		}
		p.b.cacheMu.RLock()
		e := p.b.keys[name]
		p.b.cacheMu.RUnlock()
		var other *key
		if e != nil {
			other = e.key
		} else if other, err = loadKey(ctx, s, name); err != nil {
			return fmt.Errorf("checking whether key %q uses KMS key %s: %w", name, arn, err)
		}
		if other == nil {
			continue // deleted since the list
		}
		if err := refuse(other); err != nil {
			return err
		}
	}
	return nil
}

// signer builds v's signer from storage alone: the KMS key ARN and the
// public key fetched when the version was bound. Publishing and verifying
// need nothing else, so the JWKS, verify and key reads never depend on AWS
// configuration; the KMS client is resolved when the signer signs.
func (p awskmsProvider) signer(_ context.Context, s logical.Storage, k *key, v *keyVersion) (signer.Signer, error) {
	in, err := signer.Lookup(string(k.Algorithm))
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(v.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("stored public key does not parse: %w", err)
	}
	if err := in.CheckKey(pub); err != nil {
		return nil, fmt.Errorf("stored public key does not fit %s: %w", k.Algorithm, err)
	}
	kid, err := signer.Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	if kid != v.KeyID {
		return nil, fmt.Errorf("stored kid %q is not the public key's thumbprint", v.KeyID)
	}
	return &kmsSigner{b: p.b, s: s, k: k, arn: v.KMSKeyARN, alg: in.Alg, kid: kid, pub: pub}, nil
}

// kmsSigner is an awskms version's signer as the key cache holds it: the
// public half comes from storage, and Sign binds an awskms.Signer to the
// KMS client and governor of the AWS configuration current at that moment
// (kmsConn). A configuration change therefore needs no key reload, and a
// configuration that cannot make a client fails only Sign.
type kmsSigner struct {
	b *backend
	// s is the mount's storage view, which outlives the request that
	// loaded the key; kmsConn reads config/aws from it.
	s logical.Storage
	// k gives the key's name, region and endpoint; a cached key is never
	// changed (writes change a clone).
	k     *key
	arn   string
	alg   signer.Algorithm
	kid   string
	pub   crypto.PublicKey
	bound atomic.Pointer[boundKMSSigner]
}

// boundKMSSigner is a kmsSigner's awskms.Signer for one kmsConn.
type boundKMSSigner struct {
	conn *kmsConn
	sg   *awskms.Signer
}

var _ signer.Signer = (*kmsSigner)(nil)

func (s *kmsSigner) Algorithm() signer.Algorithm { return s.alg }
func (s *kmsSigner) KeyID() string               { return s.kid }
func (s *kmsSigner) Public() crypto.PublicKey    { return s.pub }

// Sign signs through the current KMS client. A client that cannot be
// built is the server's configuration, not the caller's: a plain error,
// which the issue path logs and answers with a 500 naming the AWS
// configuration.
func (s *kmsSigner) Sign(ctx context.Context, signingInput []byte) ([]byte, error) {
	sg, err := s.bind(ctx)
	if err != nil {
		return nil, err
	}
	return sg.Sign(ctx, signingInput)
}

func (s *kmsSigner) bind(ctx context.Context) (*awskms.Signer, error) {
	conn, err := s.b.kmsConn(ctx, s.s, s.k)
	if err != nil {
		var ce kmsClientError
		if errors.As(err, &ce) {
			return nil, errors.New(ce.Error()) // never a userError: the caller did nothing wrong
		}
		return nil, err
	}
	return s.bindTo(conn)
}

// bindTo returns s's awskms.Signer for conn, building it on first use.
func (s *kmsSigner) bindTo(conn *kmsConn) (*awskms.Signer, error) {
	if cur := s.bound.Load(); cur != nil && cur.conn == conn {
		return cur.sg, nil
	}
	sg, err := awskms.FromPublicKey(conn.api, conn.gov, s.arn, s.alg, s.pub)
	if err != nil {
		// %v, not %w: a stored ARN the signer refuses is not the caller's
		// request (kmsError would make ErrInvalidKeyRef a 400).
		return nil, fmt.Errorf("stored KMS key ARN of key %q cannot sign: %v", s.k.Name, err)
	}
	s.bound.Store(&boundKMSSigner{conn: conn, sg: sg})
	return sg, nil
}

// metrics is the bound signer's counters: since the key was loaded or
// jwt/config/aws last changed; zero before the first Sign.
func (s *kmsSigner) metrics() awskms.MetricsSnapshot {
	if cur := s.bound.Load(); cur != nil {
		return cur.sg.Metrics().Snapshot()
	}
	return awskms.MetricsSnapshot{}
}

// kmsError turns an awskms error into what the caller should see: KMS
// throttling is a 429, KMS unavailable (down, timed out, breaker open) a
// 503. Unusable AWS credentials are a 500 (an internal failure, logged). A
// key KMS will not use is, when an operator names it (atCreate), a
// 400 on "kms_key_id"; when issuing, a 502: the caller did nothing wrong.
// A token too large for KMS's raw-message limit is the caller's claims, a
// 400. what names the key.
func kmsError(what string, err error, atCreate bool) error {
	keyProblem := errors.Is(err, awskms.ErrKeyNotFound) || errors.Is(err, awskms.ErrKeyDisabled) ||
		errors.Is(err, awskms.ErrKeyState) || errors.Is(err, awskms.ErrAccessDenied) ||
		errors.Is(err, awskms.ErrKeyUnusable) || errors.Is(err, awskms.ErrRefused)
	switch {
	case errors.Is(err, awskms.ErrNoCredentials):
		// The engine's own AWS setup, not the caller nor KMS: a 500, logged.
		return fmt.Errorf("%s: %w; check this mount's config/aws and the plugin's AWS environment", what, err)
	case errors.Is(err, awskms.ErrInvalidKeyRef), atCreate && keyProblem:
		return userError{fmt.Errorf(`invalid "kms_key_id": %v`, err)}
	case errors.Is(err, awskms.ErrMessageTooLong):
		return userError{fmt.Errorf(`invalid "claims": the token is too large for an EdDSA key in AWS KMS, which signs at most %d bytes of base64url signing input (about 3,000 bytes of header and claims JSON); send fewer or smaller claims: %v`,
			awskms.MaxRawMessage, err)}
	case errors.Is(err, awskms.ErrThrottled):
		return logical.CodedError(http.StatusTooManyRequests, fmt.Sprintf("%s: %v", what, err))
	case errors.Is(err, awskms.ErrUnavailable), errors.Is(err, awskms.ErrTimeout):
		return logical.CodedError(http.StatusServiceUnavailable, fmt.Sprintf("%s: %v", what, err))
	case keyProblem, errors.Is(err, awskms.ErrBadSignature):
		return logical.CodedError(http.StatusBadGateway, fmt.Sprintf("%s: %v", what, err))
	}
	return err
}
