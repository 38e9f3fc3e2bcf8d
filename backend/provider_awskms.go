package backend

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

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
}

// awsState is what config/aws builds, cached on the backend and rebuilt
// when config/aws changes. A governor is per region and endpoint: KMS
// quotas are per account and region.
type awsState struct {
	cfg   *awsConfig
	conns map[string]*kmsConn
}

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
	b.aws = &awsState{cfg: cfg, conns: map[string]*kmsConn{}}
	return cfg, nil
}

// dropAWS forgets clients and governors, and every cached key, whose
// awskms signers hold the old clients. The keys map is cleared in place:
// getKey reads the b.keys field without cacheMu (only the map's contents
// are read under it), so the field must never change once the backend
// serves requests.
func (b *backend) dropAWS() {
	b.awsMu.Lock()
	b.aws = nil
	b.awsMu.Unlock()
	b.cacheMu.Lock()
	clear(b.keys)
	b.jwks = nil
	b.gen++
	b.cacheMu.Unlock()
}

// kmsConn returns the client and governor for a key's region and endpoint.
func (b *backend) kmsConn(ctx context.Context, s logical.Storage, k *key) (*kmsConn, error) {
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
	b.awsMu.Lock()
	defer b.awsMu.Unlock()
	st := b.aws
	if st == nil || st.cfg != cfg {
		// config/aws changed under us; the caller retries with the new one.
		return nil, errors.New("AWS configuration changed while in use; retry")
	}
	id := region + " " + endpoint
	if c := st.conns[id]; c != nil {
		return c, nil
	}
	api, err := b.newKMSAPI(ctx, awskms.ClientConfig{
		Region: region, Endpoint: endpoint, AccessKeyID: cfg.AccessKey, SecretAccessKey: cfg.SecretKey,
		SessionToken: cfg.SessionToken, RoleARN: cfg.RoleARN, MaxAttempts: cfg.MaxAttempts,
	})
	if err != nil {
		return nil, userError{fmt.Errorf(`AWS configuration (jwt/config/aws, or the key's "region"/"endpoint") is not usable: %v`, err)}
	}
	logger := b.Logger()
	c := &kmsConn{api: api, gov: awskms.NewGovernor(awskms.GovernorOptions{
		MaxRequestsPerSecond: float64(cfg.MaxRequestsPerSecond),
		MaxConcurrency:       cfg.MaxConcurrency,
		CallTimeout:          cfg.CallTimeout,
		BreakerCooldown:      cfg.BreakerCooldown,
		OnBreakerChange: func(from, to string, failures int) {
			kv := []any{"region", region, "endpoint", endpoint, "from", from, "to", to, "consecutive_failures", failures}
			if to == awskms.BreakerOpen {
				logger.Error("KMS circuit breaker open: KMS calls fail fast until a probe succeeds", append(kv, "cooldown", cfg.BreakerCooldown.String())...)
			} else {
				logger.Info("KMS circuit breaker closed: KMS answers again", kv...)
			}
		},
	})}
	st.conns[id] = c
	return c, nil
}

// kmsStats reports every governor's state for operators.
func (b *backend) kmsStats() map[string]any {
	b.awsMu.Lock()
	defer b.awsMu.Unlock()
	out := map[string]any{}
	if b.aws == nil {
		return out
	}
	for id, c := range b.aws.conns {
		st := c.gov.Stats()
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
		return nil, err
	}
	sg, err := awskms.New(ctx, conn.api, conn.gov, opts.kmsKeyID, k.Algorithm)
	if err != nil {
		return nil, kmsError(fmt.Sprintf("KMS key %q", opts.kmsKeyID), err, true)
	}
	for _, v := range k.Versions {
		if v.KMSKeyARN == sg.KeyARN() {
			return nil, userError{fmt.Errorf(`invalid "kms_key_id": version %d of key %q already uses KMS key %s; rotate to a new KMS key`, v.Version, k.Name, sg.KeyARN())}
		}
	}
	pub, err := x509.MarshalPKIXPublicKey(sg.Public())
	if err != nil {
		return nil, err
	}
	return &keyVersion{KeyID: sg.KeyID(), PublicKey: pub, KMSKeyARN: sg.KeyARN()}, nil
}

func (p awskmsProvider) signer(ctx context.Context, s logical.Storage, k *key, v *keyVersion) (signer.Signer, error) {
	conn, err := p.b.kmsConn(ctx, s, k)
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(v.PublicKey)
	if err != nil {
		return nil, err
	}
	return awskms.FromPublicKey(conn.api, conn.gov, v.KMSKeyARN, k.Algorithm, pub)
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
		return fmt.Errorf("%s: %w; check jwt/config/aws and the plugin's AWS environment", what, err)
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
