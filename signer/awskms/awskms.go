// Package awskms is the signer provider whose private keys never leave AWS
// KMS. A Signer is bound to one KMS key, checked when it is built
// (DescribeKey: enabled, SIGN_VERIFY, the right key spec and algorithm;
// GetPublicKey: a public key that fits the JWS algorithm), hashes locally
// and sends only the digest (EdDSA excepted: KMS signs Ed25519 over the raw
// message), converts ECDSA's DER to R‖S, and verifies every signature
// locally before returning it. Calls go through a Governor shared per
// account and region.
package awskms

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// API is the part of the KMS client a Signer uses; *kms.Client has it.
type API interface {
	DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error)
}

var (
	_ API           = (*kms.Client)(nil)
	_ signer.Signer = (*Signer)(nil)
)

// MaxRawMessage is the largest message KMS signs with MessageType RAW; it
// limits EdDSA signing inputs, which cannot be pre-hashed.
const MaxRawMessage = 4096

// Signer signs with one KMS key. It is safe for concurrent use.
type Signer struct {
	api  API
	gov  *Governor
	info signer.Info
	// arn is the key ARN DescribeKey resolved the reference to; Sign uses
	// it, so repointing an alias never silently changes the signing key.
	arn     string
	kid     string
	pub     crypto.PublicKey
	metrics *Metrics
}

// New builds a Signer for alg over the KMS key ref (key ID, key ARN, alias
// or alias ARN), checking the key now rather than on first use: it calls
// DescribeKey, GetPublicKey and Sign once each. gov may be
// shared by every signer of one account and region; nil gives the signer
// one of its own with default options.
func New(ctx context.Context, api API, gov *Governor, ref string, alg signer.Algorithm) (*Signer, error) {
	if err := ValidateKeyRef(ref); err != nil {
		return nil, err
	}
	in, err := signer.Lookup(string(alg))
	if err != nil {
		return nil, err
	}
	if gov == nil {
		gov = NewGovernor(GovernorOptions{})
	}
	s := &Signer{api: api, gov: gov, info: in, metrics: &Metrics{}}

	var desc *kms.DescribeKeyOutput
	err = gov.Do(ctx, func(ctx context.Context) error {
		var err error
		desc, err = api.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)}, new(callRetries).option)
		return classify("DescribeKey", ref, err)
	})
	if err != nil {
		return nil, err
	}
	md := desc.KeyMetadata
	if md == nil || md.Arn == nil {
		return nil, fmt.Errorf("DescribeKey %s: %w: no key metadata", ref, ErrUnavailable)
	}
	if !isKeyARN(*md.Arn) {
		return nil, fmt.Errorf("DescribeKey %s: %w: it answered %q, which is not a key ARN (arn:<partition>:kms:<region>:<account>:key/<key ID>)", ref, ErrKeyUnusable, *md.Arn)
	}
	s.arn = *md.Arn
	if err := checkMetadata(md, in); err != nil {
		return nil, fmt.Errorf("KMS key %s: %w", s.arn, err)
	}

	var pk *kms.GetPublicKeyOutput
	err = gov.Do(ctx, func(ctx context.Context) error {
		var err error
		pk, err = api.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(s.arn)}, new(callRetries).option)
		return classify("GetPublicKey", s.arn, err)
	})
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(pk.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: %w: public key does not parse: %v", s.arn, ErrKeyUnusable, err)
	}
	if err := in.CheckKey(pub); err != nil {
		return nil, fmt.Errorf("KMS key %s: %w: %v", s.arn, ErrKeyUnusable, err)
	}
	s.pub = pub
	if s.kid, err = signer.Thumbprint(pub); err != nil {
		return nil, err
	}

	// One signature, made exactly as every later one (the same message type
	// and signing algorithm) and verified locally, so that a key the
	// principal may not sign with (no kms:Sign, or a key policy condition
	// on kms:SigningAlgorithm or kms:MessageType the request does not meet)
	// is refused now rather than when its version starts signing.
	if _, err := s.Sign(ctx, bindProbe); err != nil {
		if errors.Is(err, ErrBadSignature) {
			return nil, fmt.Errorf("KMS key %s: %w: its probe signature does not verify under the public key GetPublicKey returned", s.arn, ErrKeyUnusable)
		}
		return nil, fmt.Errorf("probing kms:Sign: %w", err)
	}
	s.metrics = &Metrics{} // the counters are the key's signatures, not its checks
	return s, nil
}

// bindProbe is the signing input of New's probe signature.
var bindProbe = []byte("vault-plugin-secrets-jwt.key-binding-probe")

// FromPublicKey rebuilds a Signer for the KMS key arn without calling KMS,
// from the public key New fetched when the key was first checked (callers
// store it). Every signature is still verified against pub, so a key that
// changed in KMS can never yield a token.
func FromPublicKey(api API, gov *Governor, arn string, alg signer.Algorithm, pub crypto.PublicKey) (*Signer, error) {
	if !isKeyARN(arn) {
		return nil, fmt.Errorf("%w: %q is not a key ARN", ErrInvalidKeyRef, arn)
	}
	in, err := signer.Lookup(string(alg))
	if err != nil {
		return nil, err
	}
	if err := in.CheckKey(pub); err != nil {
		return nil, fmt.Errorf("KMS key %s: %w: %v", arn, ErrKeyUnusable, err)
	}
	kid, err := signer.Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	if gov == nil {
		gov = NewGovernor(GovernorOptions{})
	}
	return &Signer{api: api, gov: gov, info: in, arn: arn, kid: kid, pub: pub, metrics: &Metrics{}}, nil
}

// checkMetadata refuses a key that cannot make in's signatures.
func checkMetadata(md *types.KeyMetadata, in signer.Info) error {
	switch {
	case md.KeyState == types.KeyStateDisabled || !md.Enabled && md.KeyState == types.KeyStateEnabled:
		return ErrKeyDisabled
	case md.KeyState != types.KeyStateEnabled:
		return fmt.Errorf("%w: state %s", ErrKeyState, md.KeyState)
	case md.KeyUsage != types.KeyUsageTypeSignVerify:
		return fmt.Errorf("%w: key usage is %s, not SIGN_VERIFY", ErrKeyUnusable, md.KeyUsage)
	}
	spec := string(md.KeySpec)
	switch in.KeyType {
	case signer.KeyTypeRSA:
		if !slices.Contains([]string{"RSA_2048", "RSA_3072", "RSA_4096"}, spec) {
			return fmt.Errorf("%w: %s needs an RSA_2048, RSA_3072 or RSA_4096 key, not %s", ErrKeyUnusable, in.Alg, spec)
		}
	default:
		if spec != in.KMSKeySpec {
			return fmt.Errorf("%w: %s needs a %s key, not %s", ErrKeyUnusable, in.Alg, in.KMSKeySpec, spec)
		}
	}
	if !slices.Contains(md.SigningAlgorithms, types.SigningAlgorithmSpec(in.KMSSigningAlgorithm)) {
		return fmt.Errorf("%w: the key does not offer %s", ErrKeyUnusable, in.KMSSigningAlgorithm)
	}
	return nil
}

// Algorithm implements signer.Signer.
func (s *Signer) Algorithm() signer.Algorithm { return s.info.Alg }

// KeyID implements signer.Signer: the RFC 7638 thumbprint of the public key.
func (s *Signer) KeyID() string { return s.kid }

// Public implements signer.Signer. It is the public key fetched when the
// signer was built; no call is made.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// KeyARN is the ARN of the KMS key this signer uses.
func (s *Signer) KeyARN() string { return s.arn }

// Metrics returns the signer's counters.
func (s *Signer) Metrics() *Metrics { return s.metrics }

// Sign implements signer.Signer. It returns a JWS signature only if it
// verifies under Public; otherwise an error wrapping one of the package's
// sentinels.
func (s *Signer) Sign(ctx context.Context, signingInput []byte) ([]byte, error) {
	in := &kms.SignInput{
		KeyId:            aws.String(s.arn),
		SigningAlgorithm: types.SigningAlgorithmSpec(s.info.KMSSigningAlgorithm),
	}
	if s.info.Hash == 0 {
		if len(signingInput) > MaxRawMessage {
			return nil, fmt.Errorf("%w: EdDSA signing input is %d bytes; KMS signs at most %d raw bytes", ErrMessageTooLong, len(signingInput), MaxRawMessage)
		}
		in.MessageType, in.Message = types.MessageTypeRaw, signingInput
	} else {
		in.MessageType, in.Message = types.MessageTypeDigest, s.info.Digest(signingInput)
	}

	start := time.Now()
	var out *kms.SignOutput
	err := s.gov.Do(ctx, func(ctx context.Context) error {
		var err error
		retries := new(callRetries)
		out, err = s.api.Sign(ctx, in, retries.option)
		// Failed calls' retries too: the SDK returns no output to read
		// them from then, and they are the ones worth counting.
		s.metrics.retries.Add(int64(retries.Retries()))
		return classify("Sign", s.arn, err)
	})
	s.metrics.observe(time.Since(start), err)
	if err != nil {
		return nil, err
	}

	sig := out.Signature
	if s.info.KeyType == signer.KeyTypeEC {
		if sig, err = signer.ECDSAToJOSE(s.info.Alg, sig); err != nil {
			s.metrics.badSignatures.Add(1)
			return nil, fmt.Errorf("Sign %s: %w: %v", s.arn, ErrBadSignature, err)
		}
	}
	if err := signer.Verify(s.info.Alg, s.pub, signingInput, sig); err != nil {
		s.metrics.badSignatures.Add(1)
		return nil, fmt.Errorf("Sign %s: %w", s.arn, ErrBadSignature)
	}
	return sig, nil
}

// Metrics count one signer's KMS Sign calls. Read them with Snapshot.
type Metrics struct {
	signs, failures, throttles, retries, badSignatures atomic.Int64
	latencyNanos                                       atomic.Int64
}

func (m *Metrics) observe(d time.Duration, err error) {
	m.latencyNanos.Add(int64(d))
	switch {
	case err == nil:
		m.signs.Add(1)
	case errors.Is(err, ErrThrottled):
		m.throttles.Add(1)
		m.failures.Add(1)
	default:
		m.failures.Add(1)
	}
}

// MetricsSnapshot is a point-in-time copy of Metrics.
type MetricsSnapshot struct {
	Signs, Failures, Throttles, Retries, BadSignatures int64
	// Retries counts the SDK's retries (attempts after the first), of
	// failed calls as well as successful ones.
	//
	// MeanLatency is over every call, failed ones included, from asking the
	// Governor to KMS's last answer: the waits for a rate token and a call
	// slot, every attempt and the backoff between them. The breaker's fast
	// failures count as calls too; local verification does not.
	MeanLatency time.Duration
}

// Snapshot returns the counters.
func (m *Metrics) Snapshot() MetricsSnapshot {
	s := MetricsSnapshot{
		Signs: m.signs.Load(), Failures: m.failures.Load(), Throttles: m.throttles.Load(),
		Retries: m.retries.Load(), BadSignatures: m.badSignatures.Load(),
	}
	if n := s.Signs + s.Failures; n > 0 {
		s.MeanLatency = time.Duration(m.latencyNanos.Load() / n)
	}
	return s
}
