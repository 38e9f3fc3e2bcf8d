package awskms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

func TestValidateKeyRef(t *testing.T) {
	for _, tc := range []struct {
		ref string
		ok  bool
	}{
		{"1234abcd-12ab-34cd-56ef-1234567890ab", true},
		{"mrk-1234abcd12ab34cd56ef1234567890ab", true},
		{"arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", true},
		{"arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", true},
		{"alias/jwt-signing", true},
		{"arn:aws:kms:us-east-2:111122223333:alias/jwt/signing_key-1", true},
		{"alias/aws/ebs", false},
		{"arn:aws:kms:us-east-2:111122223333:alias/aws/s3", false},
		{"", false},
		{"1234ABCD-12AB-34CD-56EF-1234567890AB", false},
		{"jwt-signing", false},
		{"alias/", false},
		{"alias/has space", false},
		{"arn:aws:kms:us-east-2:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab", false},
		{"arn:aws:s3:::bucket", false},
		{"1234abcd-12ab-34cd-56ef-1234567890abc", false},
		{"mrk-1234abcd12ab34cd56ef1234567890ab0", false},
		{"xarn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", false},
		{"arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab/x", false},
		{"arn:other:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", false},
		{"arn:aws-cn:kms:cn-north-1:111122223333:alias/jwt", true},
		{"alias/" + strings.Repeat("a", 250), true}, // AWS: 256 characters, alias/ included
		{"alias/" + strings.Repeat("a", 251), false},
		{"arn:aws:kms:us-east-2:111122223333:alias/" + strings.Repeat("a", 251), false},
		{"alias/awsome", true},
		{"alias/aws-jwt", true},
	} {
		t.Run(tc.ref[:min(len(tc.ref), 80)], func(t *testing.T) {
			err := ValidateKeyRef(tc.ref)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidateKeyRef(%q) = %v, want ok=%v", tc.ref, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidKeyRef) {
				t.Fatalf("error %v does not wrap ErrInvalidKeyRef", err)
			}
		})
	}
}

func TestNewChecksTheKeyUpFront(t *testing.T) {
	f := newFakeKMS()
	es256 := f.add(t, signer.ES256)
	rsa := f.add(t, signer.RS256)
	disabled := f.add(t, signer.ES256)
	f.keys[disabled].md.KeyState, f.keys[disabled].md.Enabled = types.KeyStateDisabled, false
	pending := f.add(t, signer.ES256)
	f.keys[pending].md.KeyState = types.KeyStatePendingDeletion
	encrypt := f.add(t, signer.ES256)
	f.keys[encrypt].md.KeyUsage = types.KeyUsageTypeEncryptDecrypt
	noAlg := f.add(t, signer.RS256)
	f.keys[noAlg].md.SigningAlgorithms = []types.SigningAlgorithmSpec{"RSASSA_PKCS1_V1_5_SHA_256"}
	lying := f.add(t, signer.ES256) // says P-384, holds P-256
	f.keys[lying].md.KeySpec, f.keys[lying].md.SigningAlgorithms = "ECC_NIST_P384", []types.SigningAlgorithmSpec{"ECDSA_SHA_384"}
	// Enabled false with state Enabled: KMS's two fields disagree; either
	// one saying disabled is enough.
	halfDisabled := f.add(t, signer.ES256)
	f.keys[halfDisabled].md.Enabled = false

	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ref  string
		alg  signer.Algorithm
		want error
		// msg is in the error when set: it names the rule the key breaks.
		msg string
	}{
		{"wrong curve", es256, signer.ES384, ErrKeyUnusable, "ES384 needs a ECC_NIST_P384 key, not ECC_NIST_P256"},
		{"EC key for RSA", es256, signer.RS256, ErrKeyUnusable, ""},
		{"RSA key for EdDSA", rsa, signer.EdDSA, ErrKeyUnusable, ""},
		{"disabled", disabled, signer.ES256, ErrKeyDisabled, ""},
		{"not enabled, state enabled", halfDisabled, signer.ES256, ErrKeyDisabled, ""},
		{"pending deletion", pending, signer.ES256, ErrKeyState, ""},
		{"not a signing key", encrypt, signer.ES256, ErrKeyUnusable, ""},
		{"algorithm not offered", noAlg, signer.PS256, ErrKeyUnusable, ""},
		{"public key does not match the spec", lying, signer.ES384, ErrKeyUnusable, "ES384 needs curve P-384, key is on P-256"},
		{"missing", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-999999999999", signer.ES256, ErrKeyNotFound, ""},
		{"bad reference", "my-key", signer.ES256, ErrInvalidKeyRef, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(ctx, f, nil, tc.ref, tc.alg)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("New = %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}

	// Every RSA key spec KMS offers serves RS* and PS*.
	for _, spec := range []types.KeySpec{"RSA_2048", "RSA_3072", "RSA_4096"} {
		ref := f.add(t, signer.PS384)
		f.keys[ref].md.KeySpec = spec
		if _, err := New(ctx, f, nil, ref, signer.PS384); err != nil {
			t.Errorf("PS384 over an %s key: %v", spec, err)
		}
	}

	// An alias resolves to the key ARN, which is what Sign then uses.
	s, err := New(ctx, f, nil, "alias/k1", signer.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyARN() != es256 {
		t.Fatalf("KeyARN = %s, want %s", s.KeyARN(), es256)
	}
	var seen []string
	f.signHook = func(in *kms.SignInput) (*kms.SignOutput, error) {
		seen = append(seen, *in.KeyId)
		f.signHook = nil
		return f.Sign(ctx, in)
	}
	if _, err := s.Sign(ctx, []byte("a.b")); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != es256 {
		t.Fatalf("Sign used %v, want the ARN", seen)
	}
}

func TestSignMessageTypes(t *testing.T) {
	f := newFakeKMS()
	ctx := context.Background()
	for _, alg := range signer.Algorithms() {
		s, err := New(ctx, f, nil, f.add(t, alg), alg)
		if err != nil {
			t.Fatal(err)
		}
		var got *kms.SignInput
		f.signHook = func(in *kms.SignInput) (*kms.SignOutput, error) {
			got = in
			f.signHook = nil
			return f.Sign(ctx, in)
		}
		input := []byte("header.payload")
		sig, err := s.Sign(ctx, input)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if err := signer.Verify(alg, s.Public(), input, sig); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		wantType, wantLen := types.MessageTypeRaw, len(input)
		if alg != signer.EdDSA {
			wantType, wantLen = types.MessageTypeDigest, alg.Info().Hash.Size()
		}
		if got.MessageType != wantType || len(got.Message) != wantLen || string(got.SigningAlgorithm) != alg.Info().KMSSigningAlgorithm {
			t.Fatalf("%s: sent %s of %d bytes with %s", alg, got.MessageType, len(got.Message), got.SigningAlgorithm)
		}
	}

	eddsa, _ := New(ctx, f, nil, f.add(t, signer.EdDSA), signer.EdDSA)
	if _, err := eddsa.Sign(ctx, make([]byte, MaxRawMessage+1)); !errors.Is(err, ErrMessageTooLong) {
		t.Fatalf("EdDSA over 4096 bytes: %v", err)
	}
	if _, err := eddsa.Sign(ctx, make([]byte, MaxRawMessage)); err != nil {
		t.Fatalf("EdDSA at 4096 bytes: %v", err)
	}
}

// TestBadSignatureIsNeverReturned: whatever KMS answers, Sign returns only
// signatures that verify.
func TestBadSignatureIsNeverReturned(t *testing.T) {
	f := newFakeKMS()
	ctx := context.Background()
	es, _ := New(ctx, f, nil, f.add(t, signer.ES256), signer.ES256)
	other, _ := New(ctx, f, nil, f.add(t, signer.ES256), signer.ES256)
	ps, _ := New(ctx, f, nil, f.add(t, signer.PS256), signer.PS256)
	for _, tc := range []struct {
		name string
		s    *Signer
		sig  func(in *kms.SignInput) []byte
	}{
		{"garbage", es, func(*kms.SignInput) []byte { return []byte("not a signature") }},
		{"R‖S where DER is expected", es, func(*kms.SignInput) []byte { return make([]byte, 64) }},
		{"another key's signature", es, func(in *kms.SignInput) []byte {
			in.KeyId = &other.arn
			f.signHook = nil
			out, _ := f.Sign(ctx, in)
			return out.Signature
		}},
		{"RSA signature of other data", ps, func(in *kms.SignInput) []byte {
			in.Message = make([]byte, len(in.Message))
			f.signHook = nil
			out, _ := f.Sign(ctx, in)
			return out.Signature
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.signHook = func(in *kms.SignInput) (*kms.SignOutput, error) {
				return &kms.SignOutput{Signature: tc.sig(in)}, nil
			}
			defer func() { f.signHook = nil }()
			sig, err := tc.s.Sign(ctx, []byte("a.b"))
			if !errors.Is(err, ErrBadSignature) || sig != nil {
				t.Fatalf("Sign = %x, %v; want no signature and ErrBadSignature", sig, err)
			}
			if tc.s.Metrics().Snapshot().BadSignatures == 0 {
				t.Fatal("bad signature not counted")
			}
		})
	}
}

type apiError struct {
	code  string
	fault smithy.ErrorFault
}

func (e apiError) Error() string                 { return e.code }
func (e apiError) ErrorCode() string             { return e.code }
func (e apiError) ErrorMessage() string          { return "message" }
func (e apiError) ErrorFault() smithy.ErrorFault { return e.fault }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{&types.NotFoundException{}, ErrKeyNotFound},
		{&types.DisabledException{}, ErrKeyDisabled},
		{&types.KMSInvalidStateException{}, ErrKeyState},
		{&types.InvalidKeyUsageException{}, ErrKeyUnusable},
		{apiError{"AccessDeniedException", smithy.FaultClient}, ErrAccessDenied},
		{apiError{"UnrecognizedClientException", smithy.FaultClient}, ErrNoCredentials},
		{apiError{"InvalidSignatureException", smithy.FaultClient}, ErrNoCredentials},
		{apiError{"ExpiredTokenException", smithy.FaultClient}, ErrNoCredentials},
		{fmt.Errorf("get identity: %w", &noCredentialsError{"none"}), ErrNoCredentials},
		{fmt.Errorf("get identity: %w", &noCredentialsError{"sts: context deadline exceeded"}), ErrNoCredentials},
		{apiError{"ThrottlingException", smithy.FaultClient}, ErrThrottled},
		{apiError{"KMSInternalException", smithy.FaultServer}, ErrUnavailable},
		{apiError{"IncompleteSignatureException", smithy.FaultClient}, ErrNoCredentials},
		{apiError{"MissingAuthenticationTokenException", smithy.FaultClient}, ErrNoCredentials},
		{apiError{"LimitExceededException", smithy.FaultClient}, ErrThrottled},
		{apiError{"RequestLimitExceeded", smithy.FaultClient}, ErrThrottled},
		{apiError{"ValidationException", smithy.FaultClient}, ErrKeyUnusable},
		// A code this package does not know: the fault, then the HTTP
		// status, says whether KMS refused the request or failed.
		{apiError{"SomeNewException", smithy.FaultClient}, ErrRefused},
		{httpError(400, "SomeNewException"), ErrRefused},
		{httpError(499, "SomeNewException"), ErrRefused},
		{httpError(500, "SomeNewException"), ErrUnavailable},
		{httpError(399, "SomeNewException"), ErrUnavailable},
		{context.DeadlineExceeded, ErrTimeout},
		{fmt.Errorf("read: %w", timeoutError{}), ErrTimeout},
		{context.Canceled, context.Canceled},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), ErrUnavailable},
		// Already classified: kept as it is.
		{fmt.Errorf("governor: %w", ErrThrottled), ErrThrottled},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			got := classify("Sign", "arn:x", tc.err)
			if !errors.Is(got, tc.want) {
				t.Fatalf("classify(%v) = %v, want %v", tc.err, got, tc.want)
			}
			// What the breaker counts: KMS failing, never KMS answering.
			if want := tc.want == ErrUnavailable || tc.want == ErrTimeout; unavailable(got) != want {
				t.Fatalf("classify(%v) = %v: counted as KMS unavailable %v, want %v", tc.err, got, !want, want)
			}
			if errors.Is(tc.err, ErrThrottled) {
				if got != tc.err {
					t.Fatalf("classify(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if !strings.Contains(got.Error(), "arn:x") {
				t.Fatalf("%v does not name the key", got)
			}
		})
	}
}

// TestClassifyKeepsKMSReason: a refusal that says the key cannot be used
// carries KMS's own reason, for the operator to act on.
func TestClassifyKeepsKMSReason(t *testing.T) {
	for _, err := range []error{
		&types.InvalidKeyUsageException{Message: aws.String("KMS says why")},
		apiError{"ValidationException", smithy.FaultClient},
	} {
		got := classify("Sign", "arn:x", err)
		if msg := err.(smithy.APIError).ErrorMessage(); !errors.Is(got, ErrKeyUnusable) || !strings.Contains(got.Error(), msg) {
			t.Errorf("classify(%v) = %v, want ErrKeyUnusable with KMS's message %q", err, got, msg)
		}
	}
}

// httpError is an error code the SDK has no type for, in an HTTP answer
// with the given status, as the SDK returns it.
func httpError(status int, code string) error {
	return &smithy.OperationError{ServiceID: "KMS", OperationName: "Sign", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      &smithy.GenericAPIError{Code: code, Message: "message", Fault: smithy.FaultUnknown},
	}}
}

// timeoutError is a network error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// fakeClock is a settable clock for the breaker.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestBreaker(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	var changes []string
	g := NewGovernor(GovernorOptions{BreakerThreshold: 3, BreakerCooldown: 10 * time.Second, Now: clock.Now, MaxRequestsPerSecond: 1e6,
		OnBreakerChange: func(from, to string, n int) { changes = append(changes, fmt.Sprintf("%s->%s/%d", from, to, n)) }})
	ctx := context.Background()
	calls := 0
	down := func(context.Context) error { calls++; return classify("Sign", "k", errors.New("connection refused")) }
	up := func(context.Context) error { calls++; return nil }
	refused := func(context.Context) error { calls++; return classify("Sign", "k", &types.DisabledException{}) }

	// Refusals from a working KMS never open it.
	for range 10 {
		if err := g.Do(ctx, refused); !errors.Is(err, ErrKeyDisabled) {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := g.Do(ctx, down); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	}
	if st := g.Stats().BreakerState; st != BreakerOpen {
		t.Fatalf("after 3 failures: %s", st)
	}
	before := calls
	err := g.Do(ctx, up)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "circuit breaker open") || calls != before {
		t.Fatalf("open breaker: err=%v, calls made=%d", err, calls-before)
	}
	// After the cooldown one probe goes through; it fails, so the breaker
	// opens again for another cooldown.
	clock.Add(10 * time.Second)
	if err := g.Do(ctx, down); !errors.Is(err, ErrUnavailable) || calls != before+1 {
		t.Fatalf("probe: %v", err)
	}
	if err := g.Do(ctx, up); !strings.Contains(fmt.Sprint(err), "circuit breaker open") {
		t.Fatalf("after a failed probe: %v", err)
	}
	// KMS comes back: the next probe closes the breaker.
	clock.Add(10 * time.Second)
	if err := g.Do(ctx, up); err != nil {
		t.Fatalf("probe after recovery: %v", err)
	}
	if st := g.Stats(); st.BreakerState != BreakerClosed || st.FastFails != 2 {
		t.Fatalf("after recovery: %+v", st)
	}
	if got := strings.Join(changes, " "); got != "closed->open/3 half-open->open/4 half-open->closed/4" {
		t.Fatalf("breaker changes reported: %s", got)
	}
}

func TestGovernorRateWaitsWithinDeadline(t *testing.T) {
	g := NewGovernor(GovernorOptions{MaxRequestsPerSecond: 20, Burst: 1})
	ctx := context.Background()
	start := time.Now()
	for range 5 {
		if err := g.Do(ctx, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// 5 calls at 20/s with a burst of 1 take at least 4 × 50 ms.
	if elapsed := time.Since(start); elapsed < 180*time.Millisecond {
		t.Fatalf("5 calls took %s; the governor did not pace them", elapsed)
	}
	if g.Stats().RateWaits < 3 {
		t.Fatalf("waits %d", g.Stats().RateWaits)
	}
	// A caller whose deadline comes before its turn gets ErrThrottled at
	// once instead of a late answer. At one request per 100 s the next
	// turn is far beyond the deadline however slowly the test runs.
	slow := NewGovernor(GovernorOptions{MaxRequestsPerSecond: 0.01, Burst: 1})
	if err := slow.Do(ctx, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := slow.Do(short, func(context.Context) error { t.Fatal("call made"); return nil }); !errors.Is(err, ErrThrottled) {
		t.Fatalf("past-deadline wait: %v", err)
	}
	if slow.Stats().RateWaits != 0 {
		t.Fatalf("waited %d times for a turn past the deadline", slow.Stats().RateWaits)
	}
}

func TestGovernorConcurrencyLimit(t *testing.T) {
	g := NewGovernor(GovernorOptions{MaxConcurrency: 3, MaxRequestsPerSecond: 1e6, Burst: 1000})
	var (
		mu       sync.Mutex
		inFlight int
		peak     int
		wg       sync.WaitGroup
	)
	for range 12 {
		wg.Go(func() {
			_ = g.Do(context.Background(), func(context.Context) error {
				mu.Lock()
				inFlight++
				peak = max(peak, inFlight)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				inFlight--
				mu.Unlock()
				return nil
			})
		})
	}
	wg.Wait()
	if peak != 3 {
		t.Fatalf("peak concurrency %d, want 3", peak)
	}
}

func TestCallTimeout(t *testing.T) {
	g := NewGovernor(GovernorOptions{CallTimeout: 30 * time.Millisecond})
	err := g.Do(context.Background(), func(ctx context.Context) error {
		<-ctx.Done()
		return classify("Sign", "k", ctx.Err())
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
}

// TestBreakerIgnoresCallersThatGiveUp: a call that fails because its
// caller cancelled, or because the caller's own deadline came before
// CallTimeout, says nothing about KMS. It neither ends a run of failures
// nor closes a half-open breaker; a probe cut short only frees the probe
// slot for the next caller.
func TestBreakerIgnoresCallersThatGiveUp(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	g := NewGovernor(GovernorOptions{BreakerThreshold: 3, BreakerCooldown: 10 * time.Second, Now: clock.Now, MaxRequestsPerSecond: 1e6})
	down := func(context.Context) error { return classify("Sign", "k", errors.New("connection refused")) }
	// hang is KMS not answering: the call ends when its context does.
	hang := func(ctx context.Context) error { <-ctx.Done(); return classify("Sign", "k", ctx.Err()) }
	// hangUp is a caller that cancels while KMS has not answered.
	hangUp := func() error {
		ctx, cancel := context.WithCancel(context.Background())
		return g.Do(ctx, func(callCtx context.Context) error { cancel(); return hang(callCtx) })
	}
	// shortDeadline is a caller whose own deadline (20ms) comes long before
	// CallTimeout (5s).
	shortDeadline := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		return g.Do(ctx, hang)
	}
	bg := context.Background()

	for range 2 {
		_ = g.Do(bg, down)
	}
	for name, call := range map[string]func() error{"cancelled": hangUp, "caller's deadline": shortDeadline} {
		if err := call(); err == nil {
			t.Fatalf("%s: hung call succeeded", name)
		}
		if st := g.Stats(); st.ConsecutiveFails != 2 || st.BreakerState != BreakerClosed {
			t.Fatalf("after a %s call: %+v, want the run of 2 failures kept", name, st)
		}
	}
	_ = g.Do(bg, down)
	if st := g.Stats().BreakerState; st != BreakerOpen {
		t.Fatalf("third failure: breaker %s, want open", st)
	}

	// Half-open: the probe's caller hangs up before KMS answers.
	clock.Add(10 * time.Second)
	if err := hangUp(); err == nil || strings.Contains(err.Error(), "circuit breaker") {
		t.Fatalf("probe: %v, want the call made and cut short", err)
	}
	if st := g.Stats(); st.BreakerState != BreakerHalfOpen {
		t.Fatalf("after a cancelled probe: %+v, want still half-open", st)
	}
	// The slot is free: the next caller probes, and KMS answers.
	if err := g.Do(bg, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("next probe: %v", err)
	}
	if st := g.Stats(); st.BreakerState != BreakerClosed || st.ConsecutiveFails != 0 {
		t.Fatalf("after a successful probe: %+v", st)
	}
}

// TestNewProbesSign: New makes one Sign exactly as Sign does (message type
// and signing algorithm) and verifies it; a key whose signature does not
// verify under its public key is unusable.
func TestNewProbesSign(t *testing.T) {
	f := newFakeKMS()
	ctx := context.Background()
	for _, alg := range signer.Algorithms() {
		ref := f.add(t, alg)
		var probe *kms.SignInput
		f.signHook = func(in *kms.SignInput) (*kms.SignOutput, error) {
			probe = in
			f.signHook = nil
			return f.Sign(ctx, in)
		}
		s, err := New(ctx, f, nil, ref, alg)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if probe == nil {
			t.Fatalf("%s: New made no Sign call", alg)
		}
		var sent *kms.SignInput
		f.signHook = func(in *kms.SignInput) (*kms.SignOutput, error) {
			sent = in
			f.signHook = nil
			return f.Sign(ctx, in)
		}
		if _, err := s.Sign(ctx, []byte("a.b")); err != nil {
			t.Fatal(err)
		}
		if probe.MessageType != sent.MessageType || probe.SigningAlgorithm != sent.SigningAlgorithm || *probe.KeyId != *sent.KeyId {
			t.Fatalf("%s: probe sent %s/%s to %s, Sign sends %s/%s to %s", alg,
				probe.MessageType, probe.SigningAlgorithm, *probe.KeyId, sent.MessageType, sent.SigningAlgorithm, *sent.KeyId)
		}
	}

	// KMS answers the probe with a signature that does not verify.
	ref := f.add(t, signer.ES256)
	f.signHook = func(*kms.SignInput) (*kms.SignOutput, error) {
		return &kms.SignOutput{Signature: []byte("not a signature")}, nil
	}
	defer func() { f.signHook = nil }()
	if _, err := New(ctx, f, nil, ref, signer.ES256); !errors.Is(err, ErrKeyUnusable) || errors.Is(err, ErrBadSignature) {
		t.Fatalf("New with a bad probe signature: %v, want ErrKeyUnusable only", err)
	}
}

// TestNewRefusesWhatFromPublicKeyWould: a KMS-compatible endpoint whose
// DescribeKey answers an ARN outside the key-ARN form is refused by New
// (key unusable, a 400 on kms_key_id), since FromPublicKey could never load
// the version New would have made.
func TestNewRefusesWhatFromPublicKeyWould(t *testing.T) {
	f := newFakeKMS()
	ctx := context.Background()
	arn := f.add(t, signer.ES256)
	odd := strings.Replace(arn, "key/", "key/custom-", 1)
	k := f.keys[arn]
	k.md.Arn = aws.String(odd)
	f.keys[odd] = k
	if _, err := FromPublicKey(f, nil, odd, signer.ES256, k.priv.Public()); err == nil {
		t.Fatalf("FromPublicKey accepted %s", odd)
	}
	if _, err := New(ctx, f, nil, arn, signer.ES256); !errors.Is(err, ErrKeyUnusable) || !strings.Contains(err.Error(), odd) {
		t.Fatalf("New over a key DescribeKey calls %s: %v, want ErrKeyUnusable naming it", odd, err)
	}
}

// TestFromPublicKeyRefusesWrongKeys: a stored public key that does not fit
// the version's algorithm (too short, another curve, another type) is
// refused when the version loads, before it could sign or be published.
func TestFromPublicKeyRefusesWrongKeys(t *testing.T) {
	f := newFakeKMS()
	arn := f.add(t, signer.ES256)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		alg  signer.Algorithm
		pub  crypto.PublicKey
	}{
		{"RS256 with a 1024-bit RSA key", signer.RS256, &rsa1024.PublicKey},
		{"ES256 with a P-384 key", signer.ES256, &p384.PublicKey},
		{"ES256 with an Ed25519 key", signer.ES256, edPub},
		{"EdDSA with a short Ed25519 key", signer.EdDSA, edPub[:31]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := FromPublicKey(f, nil, arn, tc.alg, tc.pub); !errors.Is(err, ErrKeyUnusable) {
				t.Fatalf("FromPublicKey = %v, %v; want ErrKeyUnusable", s, err)
			}
		})
	}
}

// hookedKMS is fakeKMS with DescribeKey's answer adjustable and
// GetPublicKey's key references recorded.
type hookedKMS struct {
	*fakeKMS
	describe  func(*kms.DescribeKeyOutput)
	publicFor []string
}

func (h *hookedKMS) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, o ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	out, err := h.fakeKMS.DescribeKey(ctx, in, o...)
	if err == nil && h.describe != nil {
		h.describe(out)
	}
	return out, err
}

func (h *hookedKMS) GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, o ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	h.publicFor = append(h.publicFor, aws.ToString(in.KeyId))
	return h.fakeKMS.GetPublicKey(ctx, in, o...)
}

// TestNewUsesTheResolvedARN: bound through an alias, New reads the public
// key of the key ARN DescribeKey resolved, not of the alias, which may be
// repointed to another key between the two calls.
func TestNewUsesTheResolvedARN(t *testing.T) {
	h := &hookedKMS{fakeKMS: newFakeKMS()}
	arn := h.add(t, signer.ES256)
	alias := "alias/k1"
	if h.keys[alias] != h.keys[arn] {
		t.Fatalf("%s is not an alias of %s", alias, arn)
	}
	s, err := New(context.Background(), h, nil, alias, signer.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyARN() != arn || len(h.publicFor) != 1 || h.publicFor[0] != arn {
		t.Fatalf("KeyARN %s, GetPublicKey asked for %v; want the ARN %s", s.KeyARN(), h.publicFor, arn)
	}
}

// TestNewRefusesDescribeKeyWithoutMetadata: an endpoint that answers
// DescribeKey without the key's metadata or ARN is an error, not a crash.
func TestNewRefusesDescribeKeyWithoutMetadata(t *testing.T) {
	for name, describe := range map[string]func(*kms.DescribeKeyOutput){
		"no metadata": func(out *kms.DescribeKeyOutput) { out.KeyMetadata = nil },
		"no ARN":      func(out *kms.DescribeKeyOutput) { out.KeyMetadata.Arn = nil },
	} {
		t.Run(name, func(t *testing.T) {
			h := &hookedKMS{fakeKMS: newFakeKMS(), describe: describe}
			arn := h.add(t, signer.ES256)
			if s, err := New(context.Background(), h, nil, arn, signer.ES256); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no key metadata") {
				t.Fatalf("New = %v, %v; want ErrUnavailable: no key metadata", s, err)
			}
		})
	}
}

// TestMetricsCountFailedSigns: a throttled Sign counts as a throttle and a
// failure, any other failed Sign as a failure; the mean latency is over
// every call, failed ones included.
func TestMetricsCountFailedSigns(t *testing.T) {
	f := newFakeKMS()
	ctx := context.Background()
	s, err := New(ctx, f, nil, f.add(t, signer.ES256), signer.ES256)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { f.signHook = nil }()
	f.signHook = func(*kms.SignInput) (*kms.SignOutput, error) {
		time.Sleep(2 * time.Millisecond)
		return nil, apiError{"ThrottlingException", smithy.FaultClient}
	}
	if _, err := s.Sign(ctx, []byte("a.b")); !errors.Is(err, ErrThrottled) {
		t.Fatalf("throttled Sign: %v", err)
	}
	m := s.Metrics().Snapshot()
	if m.Throttles != 1 || m.Failures != 1 || m.Signs != 0 || m.MeanLatency < 2*time.Millisecond {
		t.Fatalf("after a throttled Sign that took 2ms: %+v, want 1 throttle, 1 failure, mean latency at least 2ms", m)
	}
	f.signHook = func(*kms.SignInput) (*kms.SignOutput, error) { return nil, &types.DisabledException{} }
	if _, err := s.Sign(ctx, []byte("a.b")); !errors.Is(err, ErrKeyDisabled) {
		t.Fatalf("Sign over a disabled key: %v", err)
	}
	if m := s.Metrics().Snapshot(); m.Throttles != 1 || m.Failures != 2 || m.Signs != 0 {
		t.Fatalf("after a throttle and a refusal: %+v, want 1 throttle, 2 failures", m)
	}
}
