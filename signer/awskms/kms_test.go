package awskms_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/signertest"
)

// These tests drive the real aws-sdk-go-v2 client, built by awskms.NewClient
// (the SDK's config, credentials and standard retryer), over loopback HTTP
// against kmstest, which speaks KMS's JSON 1.1 protocol with real crypto.

// newKMS starts a test KMS server and returns it with a client for it.
func newKMS(t *testing.T) (*kmstest.Server, *kms.Client) {
	t.Helper()
	return newKMSWith(t, nil)
}

// testCredential is what newKMS's server accepts and its client signs
// with: temporary credentials, so that a client that signs with the wrong
// secret or drops the session token fails every test here.
var testCredential = kmstest.Credential{AccessKeyID: "ASIATEST", SecretAccessKey: "test-secret", SessionToken: "test-session-token"}

// newKMSWith is newKMS with the client's configuration adjusted by adjust.
func newKMSWith(t *testing.T, adjust func(*awskms.ClientConfig)) (*kmstest.Server, *kms.Client) {
	t.Helper()
	kmstest.IsolateAWSEnvironment(t)
	srv, url := kmstest.NewTestServer(t, kmstest.Options{Credentials: []kmstest.Credential{testCredential}})
	cfg := awskms.ClientConfig{
		Region: "us-east-1", Endpoint: url,
		AccessKeyID: testCredential.AccessKeyID, SecretAccessKey: testCredential.SecretAccessKey, SessionToken: testCredential.SessionToken,
	}
	if adjust != nil {
		adjust(&cfg)
	}
	client, err := awskms.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, client
}

func keySpec(alg signer.Algorithm) string {
	if spec := alg.Info().KMSKeySpec; spec != "" {
		return spec
	}
	return "RSA_2048"
}

type provider struct {
	srv    *kmstest.Server
	client *kms.Client
	gov    *awskms.Governor
}

func (p provider) New(t *testing.T, alg signer.Algorithm) signer.Signer {
	t.Helper()
	_, arn, err := p.srv.CreateKeyForTest(keySpec(alg))
	if err != nil {
		t.Fatal(err)
	}
	s, err := awskms.New(context.Background(), p.client, p.gov, arn, alg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p provider) NewMismatched(t *testing.T, alg, keyAlg signer.Algorithm) error {
	_, arn, err := p.srv.CreateKeyForTest(keySpec(keyAlg))
	if err != nil {
		t.Fatal(err)
	}
	_, err = awskms.New(context.Background(), p.client, p.gov, arn, alg)
	if err != nil && !errors.Is(err, awskms.ErrKeyUnusable) {
		t.Errorf("mismatch error %v does not wrap ErrKeyUnusable", err)
	}
	return err
}

func TestConformance(t *testing.T) {
	srv, client := newKMS(t)
	signertest.Run(t, provider{srv: srv, client: client, gov: awskms.NewGovernor(awskms.GovernorOptions{})}, signertest.Options{Signatures: 8})
}

// TestECDSASweep signs 2,000 inputs per ES algorithm through KMS; every
// DER signature converted to R‖S must verify under the strict verifier.
// About 1 in 128 has an r or s shorter than the curve, which a converter
// that does not pad would get wrong; the sweep insists it saw some.
func TestECDSASweep(t *testing.T) {
	if testing.Short() {
		t.Skip("the sweep makes 6,000 KMS calls")
	}
	srv, client := newKMS(t)
	p := provider{srv: srv, client: client, gov: awskms.NewGovernor(awskms.GovernorOptions{MaxRequestsPerSecond: 1e6, Burst: 1000})}
	for _, alg := range []signer.Algorithm{signer.ES256, signer.ES384, signer.ES512} {
		t.Run(string(alg), func(t *testing.T) {
			s := p.New(t, alg)
			half := alg.Info().SignatureSize / 2
			short := 0
			var wg sync.WaitGroup
			var mu sync.Mutex
			errs := make(chan error, 4)
			for w := range 4 {
				wg.Go(func() {
					for i := w; i < 2000; i += 4 {
						input := []byte{byte(i), byte(i >> 8), '.', 'x'}
						sig, err := s.Sign(context.Background(), input)
						if err == nil {
							err = signer.Verify(alg, s.Public(), input, sig)
						}
						if err != nil {
							errs <- err
							return
						}
						if sig[0] == 0 || sig[half] == 0 {
							mu.Lock()
							short++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := s.(*awskms.Signer).Metrics().Snapshot().Signs; n != 2000 {
				t.Fatalf("%d signs counted", n)
			}
			if short == 0 {
				t.Fatal("no signature had a short r or s in 2,000: the padding path was not exercised")
			}
			t.Logf("%s: 2000 signatures verified, %d with a short r or s", alg, short)
		})
	}
}

// TestFaults: with 20% throttles and 5% server errors injected, every
// signature returned verifies and every failure is a classified error.
func TestFaults(t *testing.T) {
	srv, client := newKMS(t)
	gov := awskms.NewGovernor(awskms.GovernorOptions{MaxRequestsPerSecond: 1e6, Burst: 1000, BreakerThreshold: 50})
	s := provider{srv: srv, client: client, gov: gov}.New(t, signer.ES256)
	srv.SetFaults(kmstest.Faults{ThrottleRate: 0.20, ServerErrorRate: 0.05})

	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				input := []byte{byte(w), byte(i), '.', 'y'}
				sig, err := s.Sign(context.Background(), input)
				switch {
				case err == nil:
					if verr := signer.Verify(signer.ES256, s.Public(), input, sig); verr != nil {
						errs <- verr
						return
					}
					ok.Add(1)
				case errors.Is(err, awskms.ErrThrottled), errors.Is(err, awskms.ErrUnavailable):
					failed.Add(1)
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := srv.Stats()
	m := s.(*awskms.Signer).Metrics().Snapshot()
	t.Logf("%d signed, %d failed; server throttled %d, 5xx %d; client retries %d", ok.Load(), failed.Load(), st.Throttled, st.ServerErrors, m.Retries)
	if st.Throttled == 0 || st.ServerErrors == 0 {
		t.Fatal("no faults were injected")
	}
	if m.Retries == 0 {
		t.Fatal("the SDK retryer never retried")
	}
	// Three attempts turn a 25% failure rate into about 1.6%.
	if ok.Load() < 350 {
		t.Fatalf("only %d of 400 signed: retries are not working", ok.Load())
	}
}

// TestOutageOpensBreakerAndRecovers: with KMS down, calls fail with
// ErrUnavailable, the breaker opens and later calls fail fast without
// reaching KMS; when KMS is back, the same signer works again.
func TestOutageOpensBreakerAndRecovers(t *testing.T) {
	srv, client := newKMS(t)
	// The breaker's clock is the test's, so "still open" and "cooled down"
	// do not depend on how fast a busy machine runs the test.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	gov := awskms.NewGovernor(awskms.GovernorOptions{BreakerThreshold: 3, BreakerCooldown: 5 * time.Second, CallTimeout: 2 * time.Second, Now: now})
	s := provider{srv: srv, client: client, gov: gov}.New(t, signer.EdDSA)
	ctx := context.Background()
	if _, err := s.Sign(ctx, []byte("a.b")); err != nil {
		t.Fatal(err)
	}

	srv.SetFaults(kmstest.Faults{Outage: true})
	for range 3 {
		if _, err := s.Sign(ctx, []byte("a.b")); !errors.Is(err, awskms.ErrUnavailable) {
			t.Fatalf("during the outage: %v", err)
		}
	}
	if st := gov.Stats().BreakerState; st != awskms.BreakerOpen {
		t.Fatalf("breaker %s after 3 failures", st)
	}
	srv.ResetStats()
	clock.Add(int64(4 * time.Second)) // still within the cooldown
	if _, err := s.Sign(ctx, []byte("a.b")); !errors.Is(err, awskms.ErrUnavailable) {
		t.Fatalf("open breaker: %v", err)
	}
	if n := srv.Stats().Total(); n != 0 {
		t.Fatalf("open breaker still sent %d requests", n)
	}

	srv.SetFaults(kmstest.Faults{})
	clock.Add(int64(1100 * time.Millisecond)) // past the cooldown: one probe
	sig, err := s.Sign(ctx, []byte("a.b"))
	if err != nil {
		t.Fatalf("after KMS came back: %v", err)
	}
	if err := signer.Verify(signer.EdDSA, s.Public(), []byte("a.b"), sig); err != nil {
		t.Fatal(err)
	}
	if st := gov.Stats().BreakerState; st != awskms.BreakerClosed {
		t.Fatalf("breaker %s after recovery", st)
	}
}

func TestDisabledAndDeletedKeys(t *testing.T) {
	srv, client := newKMS(t)
	s := provider{srv: srv, client: client}.New(t, signer.PS256).(*awskms.Signer)
	ctx := context.Background()
	if _, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(s.KeyARN())}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, []byte("a.b")); !errors.Is(err, awskms.ErrKeyDisabled) {
		t.Fatalf("disabled key: %v", err)
	}
	if _, err := awskms.New(ctx, client, nil, s.KeyARN(), signer.PS256); !errors.Is(err, awskms.ErrKeyDisabled) {
		t.Fatalf("New over a disabled key: %v", err)
	}
	if _, err := client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(s.KeyARN())}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, []byte("a.b")); err != nil {
		t.Fatalf("re-enabled key: %v", err)
	}
	if _, err := client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(s.KeyARN()), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, []byte("a.b")); !errors.Is(err, awskms.ErrKeyState) {
		t.Fatalf("key pending deletion: %v", err)
	}
}

// TestGovernorKeepsUnderQuota: KMS allows 40 requests/s; the governor is
// set to 36/s; callers offer about twice that. Nobody sees a throttling
// error (they wait within their deadline) and KMS throttles nothing.
func TestGovernorKeepsUnderQuota(t *testing.T) {
	srv, client := newKMS(t)
	gov := awskms.NewGovernor(awskms.GovernorOptions{MaxRequestsPerSecond: 36, Burst: 4})
	s := provider{srv: srv, client: client, gov: gov}.New(t, signer.ES256)
	// KMS's bucket holds twice the governor's burst: on a busy machine
	// requests the governor spaced out can reach the server bunched up.
	// Without the governor 8 callers offer hundreds a second.
	srv.SetFaults(kmstest.Faults{QuotaPerSecond: 40, QuotaBurst: 8})
	srv.ResetStats()

	ctx := context.Background()
	var wg sync.WaitGroup
	var signed atomic.Int64
	errs := make(chan error, 16)
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for range 9 { // 72 calls ≈ 2 s at 36/s, offered at once
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := s.Sign(cctx, []byte("a.b"))
				cancel()
				if err != nil {
					errs <- err
					return
				}
				signed.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a caller saw: %v", err)
	}
	if th := srv.Stats().Throttled; th != 0 {
		t.Fatalf("KMS throttled %d requests", th)
	}
	if elapsed := time.Since(start); elapsed < 1500*time.Millisecond {
		t.Fatalf("72 calls took only %s: the governor did not pace them", elapsed)
	}
	if gov.Stats().RateWaits == 0 {
		t.Fatal("no call waited")
	}
}

// TestCallersGivingUpDoNotHideAnOutage: KMS hangs; every other caller
// hangs up before call_timeout. The calls that reach call_timeout still
// open the breaker: the others neither reset the run nor count.
func TestCallersGivingUpDoNotHideAnOutage(t *testing.T) {
	srv, client := newKMS(t)
	gov := awskms.NewGovernor(awskms.GovernorOptions{CallTimeout: 300 * time.Millisecond, BreakerThreshold: 3})
	s := provider{srv: srv, client: client, gov: gov}.New(t, signer.ES256)
	srv.SetFaults(kmstest.Faults{Latency: 10 * time.Second})
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		if i%2 == 1 {
			time.AfterFunc(50*time.Millisecond, cancel)
		}
		_, err := s.Sign(ctx, []byte("a.b"))
		cancel()
		if err == nil {
			t.Fatalf("call %d: signed against a hung KMS", i)
		}
		if i%2 == 0 && !errors.Is(err, awskms.ErrTimeout) {
			t.Fatalf("call %d: %v, want ErrTimeout", i, err)
		}
	}
	if st := gov.Stats(); st.BreakerState != awskms.BreakerOpen || st.ConsecutiveFails != 3 {
		t.Fatalf("3 timeouts and 2 hang-ups against a hung KMS (threshold 3): %+v, want open after 3", st)
	}
}

// TestThrottlingOutlastingCallTimeoutStaysAThrottle: KMS throttles every
// call, and max_attempts=10 asks for more backoff (up to 1s, then 2s each)
// than call_timeout=1s leaves. The retryer stops retrying once a retry could
// not finish in time, so callers get the throttle (429), not a timeout
// (503), and the breaker, which throttling must not open, stays closed.
func TestThrottlingOutlastingCallTimeoutStaysAThrottle(t *testing.T) {
	srv, client := newKMSWith(t, func(c *awskms.ClientConfig) { c.MaxAttempts = 10 })
	gov := awskms.NewGovernor(awskms.GovernorOptions{CallTimeout: time.Second, BreakerThreshold: 2})
	s := provider{srv: srv, client: client, gov: gov}.New(t, signer.ES256)
	srv.SetFaults(kmstest.Faults{ThrottleRate: 1})
	srv.ResetStats()
	for i := range 3 {
		start := time.Now()
		_, err := s.Sign(context.Background(), []byte("a.b"))
		if !errors.Is(err, awskms.ErrThrottled) {
			t.Fatalf("call %d: %v, want ErrThrottled", i, err)
		}
		if took := time.Since(start); took > 1100*time.Millisecond {
			t.Fatalf("call %d took %s, past call_timeout", i, took.Round(time.Millisecond))
		}
	}
	if st := gov.Stats(); st.BreakerState != awskms.BreakerClosed || st.ConsecutiveFails != 0 {
		t.Fatalf("after 3 throttled calls: %+v, want closed with no failures", st)
	}
	if n := srv.Stats().Requests["Sign"]; n < 3 {
		t.Fatalf("KMS saw %d Sign requests for 3 calls", n)
	}
}

// TestNewRefusesAKeyItCannotSignWith: a principal that may describe a key
// and read its public key but not sign with it (kmstest's DenySign, as IAM
// without kms:Sign or a key policy condition on kms:SigningAlgorithm or
// kms:MessageType) is refused when the key is bound, with the access-denied
// error the backend makes a 400 on kms_key_id, not once its version starts
// signing. KMS answered, so the breaker does not count it.
func TestNewRefusesAKeyItCannotSignWith(t *testing.T) {
	srv, client := newKMS(t)
	gov := awskms.NewGovernor(awskms.GovernorOptions{BreakerThreshold: 1})
	_, arn, err := srv.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetFaults(kmstest.Faults{DenySign: arn})
	srv.ResetStats()
	_, err = awskms.New(context.Background(), client, gov, arn, signer.ES256)
	if !errors.Is(err, awskms.ErrAccessDenied) || !strings.Contains(err.Error(), "Sign") {
		t.Fatalf("New over a key it may not sign with: %v, want ErrAccessDenied naming Sign", err)
	}
	if got := srv.Stats().Requests; got["DescribeKey"] != 1 || got["GetPublicKey"] != 1 || got["Sign"] != 1 {
		t.Fatalf("KMS saw %v, want one DescribeKey, GetPublicKey and Sign", got)
	}
	if st := gov.Stats(); st.BreakerState != awskms.BreakerClosed {
		t.Fatalf("breaker %s after a refusal", st.BreakerState)
	}
	srv.SetFaults(kmstest.Faults{})
	s, err := awskms.New(context.Background(), client, gov, arn, signer.ES256)
	if err != nil {
		t.Fatalf("New once Sign is allowed: %v", err)
	}
	if m := s.Metrics().Snapshot(); m != (awskms.MetricsSnapshot{}) {
		t.Fatalf("a new signer's metrics count the probe: %+v", m)
	}
}

// TestMissingCredentialsDoNotOpenTheBreaker: with no credentials to be
// found, or a credential_process that fails, binding a key fails with
// ErrNoCredentials before any request reaches KMS, and however often that
// happens the breaker, which counts KMS outages, stays closed. The error
// never repeats credential_process's output, which may hold a secret.
func TestMissingCredentialsDoNotOpenTheBreaker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string // the shared config file; "" for none
	}{
		{"none found", ""},
		{"credential_process fails", "[default]\ncredential_process = printf 'not JSON, but SECRET-do-not-echo'\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, url := kmstest.NewTestServer(t, kmstest.Options{})
			kmstest.IsolateAWSEnvironment(t)
			if tc.config != "" {
				path := filepath.Join(t.TempDir(), "config")
				if err := os.WriteFile(path, []byte(tc.config), 0o600); err != nil {
					t.Fatal(err)
				}
				t.Setenv("AWS_CONFIG_FILE", path)
			}
			_, arn, err := srv.CreateKeyForTest("ECC_NIST_P256")
			if err != nil {
				t.Fatal(err)
			}
			client, err := awskms.NewClient(context.Background(), awskms.ClientConfig{Region: "us-east-1", Endpoint: url})
			if err != nil {
				t.Fatal(err)
			}
			gov := awskms.NewGovernor(awskms.GovernorOptions{BreakerThreshold: 2})
			for i := range 3 {
				_, err := awskms.New(context.Background(), client, gov, arn, signer.ES256)
				if !errors.Is(err, awskms.ErrNoCredentials) || errors.Is(err, awskms.ErrUnavailable) {
					t.Fatalf("New %d: %v, want ErrNoCredentials", i, err)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Fatalf("the error repeats credential_process's output: %v", err)
				}
			}
			if st := gov.Stats(); st.BreakerState != awskms.BreakerClosed || st.ConsecutiveFails != 0 {
				t.Fatalf("after 3 calls without credentials (threshold 2): %+v", st)
			}
			if n := srv.Stats().Total(); n != 0 {
				t.Fatalf("KMS saw %d requests", n)
			}
		})
	}
}

// TestRetriesCountedOnFailure: the SDK's retries of a call that fails in
// the end are counted, not only those of calls that succeed.
func TestRetriesCountedOnFailure(t *testing.T) {
	srv, client := newKMS(t) // max_attempts 3
	s := provider{srv: srv, client: client}.New(t, signer.ES256).(*awskms.Signer)
	srv.SetFaults(kmstest.Faults{ServerErrorRate: 1})
	if _, err := s.Sign(context.Background(), []byte("a.b")); !errors.Is(err, awskms.ErrUnavailable) {
		t.Fatalf("Sign against KMS failing: %v", err)
	}
	if m := s.Metrics().Snapshot(); m.Retries != 2 || m.Failures != 1 {
		t.Fatalf("after one call failing 3 attempts: %+v, want 2 retries and 1 failure", m)
	}
	srv.SetFaults(kmstest.Faults{})
	if _, err := s.Sign(context.Background(), []byte("a.b")); err != nil {
		t.Fatal(err)
	}
	if m := s.Metrics().Snapshot(); m.Retries != 2 || m.Signs != 1 {
		t.Fatalf("after a call that needed no retry: %+v", m)
	}
}

// TestCredentialsKMSRefuses: static credentials that KMS does not accept
// (checked by kmstest as AWS does) are ErrNoCredentials, naming KMS's error
// code and no secret, and do not open the breaker.
func TestCredentialsKMSRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adjust func(*awskms.ClientConfig)
		code   string
	}{
		{"unknown access key", func(c *awskms.ClientConfig) { c.AccessKeyID = "ASIAUNKNOWN" }, "UnrecognizedClientException"},
		{"wrong secret key", func(c *awskms.ClientConfig) { c.SecretAccessKey = "wrong-secret" }, "InvalidSignatureException"},
		{"no session token", func(c *awskms.ClientConfig) { c.SessionToken = "" }, "UnrecognizedClientException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, client := newKMSWith(t, tc.adjust)
			_, arn, err := srv.CreateKeyForTest("ECC_NIST_P256")
			if err != nil {
				t.Fatal(err)
			}
			gov := awskms.NewGovernor(awskms.GovernorOptions{BreakerThreshold: 1})
			for range 2 {
				_, err = awskms.New(context.Background(), client, gov, arn, signer.ES256)
				if !errors.Is(err, awskms.ErrNoCredentials) || !strings.Contains(err.Error(), tc.code) {
					t.Fatalf("New: %v, want ErrNoCredentials (%s)", err, tc.code)
				}
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), testCredential.SessionToken) {
				t.Fatalf("the error carries a credential: %v", err)
			}
			if st := gov.Stats(); st.BreakerState != awskms.BreakerClosed {
				t.Fatalf("breaker %s", st.BreakerState)
			}
		})
	}
}

// TestNewClientRefusesIncompleteConfiguration: half a static key pair, or
// no region anywhere, is an error when the client is built, not a client
// that fails (or falls back to other credentials) on its first call.
func TestNewClientRefusesIncompleteConfiguration(t *testing.T) {
	kmstest.IsolateAWSEnvironment(t)
	for _, tc := range []struct {
		name string
		cfg  awskms.ClientConfig
		want string
	}{
		{"access key without secret key", awskms.ClientConfig{Region: "us-east-1", AccessKeyID: "AKIATEST"}, "access key and secret key must be given together"},
		{"secret key without access key", awskms.ClientConfig{Region: "us-east-1", SecretAccessKey: "test-secret"}, "access key and secret key must be given together"},
		{"no region", awskms.ClientConfig{AccessKeyID: "AKIATEST", SecretAccessKey: "test-secret"}, "no AWS region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := awskms.NewClient(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewClient: %v; want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "test-secret") {
				t.Fatalf("the error carries the secret key: %v", err)
			}
		})
	}
}
