package kmstest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// faultedCalls makes one call of each faulted operation on keyID.
func faultedCalls(c *kms.Client, keyID string) map[string]func(context.Context) error {
	d := sha256.Sum256([]byte("m"))
	return map[string]func(context.Context) error{
		"DescribeKey": func(ctx context.Context) error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
			return err
		},
		"GetPublicKey": func(ctx context.Context) error {
			_, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
			return err
		},
		"Sign": func(ctx context.Context) error {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(keyID), Message: d[:], MessageType: types.MessageTypeDigest, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
			return err
		},
		"Verify": func(ctx context.Context) error {
			_, err := c.Verify(ctx, &kms.VerifyInput{KeyId: aws.String(keyID), Message: d[:], MessageType: types.MessageTypeDigest, Signature: []byte{0x30, 0}, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256})
			return err
		},
	}
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// TestFaults injects each kind of failure and checks every faulted
// operation, and only those, fails as a client would see it.
func TestFaults(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	c := NewClient(url, noRetry)
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	calls := faultedCalls(c, id)
	if len(calls) != len(FaultedOperations()) {
		t.Fatalf("test calls %d operations, FaultedOperations lists %v", len(calls), FaultedOperations())
	}

	tests := []struct {
		name   string
		faults Faults
		check  func(err error) string // "" if err is right
		count  func(Stats) int64      // the counter the fault moves
	}{
		{"throttle", Faults{ThrottleRate: 1}, func(err error) string {
			if apiCode(err) != "ThrottlingException" || httpStatus(err) != 400 {
				return "want a 400 ThrottlingException"
			}
			return ""
		}, func(st Stats) int64 { return st.Throttled }},
		{"server error", Faults{ServerErrorRate: 1}, func(err error) string {
			if !isA[*types.KMSInternalException](err) || httpStatus(err) != 500 {
				return "want a 500 KMSInternalException"
			}
			return ""
		}, func(st Stats) int64 { return st.ServerErrors }},
		{"unavailable", Faults{Unavailable: true}, func(err error) string {
			if apiCode(err) != "ServiceUnavailableException" || httpStatus(err) != 503 {
				return "want a 503 ServiceUnavailableException"
			}
			return ""
		}, func(st Stats) int64 { return st.ServerErrors }},
		{"outage", Faults{Outage: true}, func(err error) string {
			if isA[smithy.APIError](err) || !isA[*smithyhttp.RequestSendError](err) {
				return "want a transport error (smithyhttp.RequestSendError), no answer"
			}
			return ""
		}, func(st Stats) int64 { return st.Dropped }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetFaults(tt.faults)
			defer s.SetFaults(Faults{})
			s.ResetStats()
			for op, call := range calls {
				err := call(t.Context())
				if err == nil {
					t.Errorf("%s: no error", op)
				} else if msg := tt.check(err); msg != "" {
					t.Errorf("%s: %v (%T): %s", op, err, err, msg)
				}
			}
			// Administration is never faulted.
			if _, err := c.ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
				t.Errorf("ListKeys under faults: %v", err)
			}
			st := s.Stats()
			if got := tt.count(st); got != 4 {
				t.Errorf("counter = %d, want 4 (stats %+v)", got, st)
			}
			for op := range calls {
				if st.Requests[op] != 1 {
					t.Errorf("Requests[%s] = %d, want 1", op, st.Requests[op])
				}
			}
		})
	}

	// With the faults gone, the same calls work (Verify's signature is
	// junk, so it answers KMSInvalidSignatureException).
	for op, call := range calls {
		err := call(t.Context())
		if op == "Verify" {
			if !isA[*types.KMSInvalidSignatureException](err) {
				t.Errorf("Verify without faults: %v", err)
			}
		} else if err != nil {
			t.Errorf("%s without faults: %v", op, err)
		}
	}
}

func TestLatency(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	c := NewClient(url, noRetry)
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	describe := faultedCalls(c, id)["DescribeKey"]
	const latency = 200 * time.Millisecond
	s.SetFaults(Faults{Latency: latency})

	t.Run("delays faulted operations only", func(t *testing.T) {
		start := time.Now()
		if err := describe(t.Context()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < latency {
			t.Errorf("DescribeKey took %v, want at least %v", took, latency)
		}
		start = time.Now()
		if _, err := c.ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took >= latency {
			t.Errorf("ListKeys took %v; administration must not be delayed", took)
		}
	})

	t.Run("requests overlap", func(t *testing.T) {
		s.ResetStats()
		const n = 8
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if err := describe(t.Context()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if st := s.Stats(); st.MaxInFlight != n || st.InFlight != 0 {
			t.Errorf("MaxInFlight %d, InFlight %d; want %d, 0", st.MaxInFlight, st.InFlight, n)
		}
	})

	t.Run("honours the client's deadline", func(t *testing.T) {
		s.SetFaults(Faults{Latency: time.Hour})
		defer s.SetFaults(Faults{})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := describe(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
		// The server stops waiting when the client goes.
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().InFlight != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the request is still in flight 5s after the client gave up")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestQuota(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	c := NewClient(url, noRetry)
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	describe := faultedCalls(c, id)["DescribeKey"]

	t.Run("burst", func(t *testing.T) {
		s.SetFaults(Faults{QuotaPerSecond: 5}) // a bucket of 5
		s.ResetStats()
		const n = 20
		var mu sync.Mutex
		ok, throttled := 0, 0
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				err := describe(t.Context())
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case apiCode(err) == "ThrottlingException":
					throttled++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		// 5 from the bucket, and perhaps one or two more refilled while
		// the burst arrives.
		if ok < 5 || ok > 7 || ok+throttled != n {
			t.Errorf("%d succeeded, %d throttled; want 5 to 7 to succeed", ok, throttled)
		}
		if st := s.Stats(); st.Throttled != int64(throttled) {
			t.Errorf("Stats.Throttled = %d, client saw %d", st.Throttled, throttled)
		}
		// The bucket refills at the quota: 2 tokens in 450ms.
		time.Sleep(450 * time.Millisecond)
		for i := range 2 {
			if err := describe(t.Context()); err != nil {
				t.Errorf("request %d after refilling: %v", i, err)
			}
		}
	})

	t.Run("burst size", func(t *testing.T) {
		s.SetFaults(Faults{QuotaPerSecond: 1, QuotaBurst: 3})
		defer s.SetFaults(Faults{})
		var ok int
		for range 6 {
			if describe(t.Context()) == nil {
				ok++
			}
		}
		if ok < 3 || ok > 4 {
			t.Errorf("%d of 6 quick requests succeeded; want the burst of 3 (4 if slow)", ok)
		}
	})
}

// TestThrottleRate checks a rate is a probability, not all or nothing.
func TestThrottleRate(t *testing.T) {
	s, url := NewTestServer(t, Options{Faults: Faults{ThrottleRate: 0.5}})
	c := NewClient(url, noRetry)
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	describe := faultedCalls(c, id)["DescribeKey"]
	const n = 200
	for range n {
		_ = describe(t.Context())
	}
	// Binomial(200, 0.5): 60..140 is over 5 standard deviations each way.
	if st := s.Stats(); st.Throttled < 60 || st.Throttled > 140 || st.Requests["DescribeKey"] != n {
		t.Errorf("%d of %d throttled at rate 0.5 (stats %+v)", st.Throttled, n, st)
	}
}

func TestStatsReset(t *testing.T) {
	s, url := NewTestServer(t, Options{Faults: Faults{ServerErrorRate: 1}})
	c := NewClient(url, noRetry)
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = faultedCalls(c, id)["Sign"](t.Context())
	}
	before := s.ResetStats()
	if before.Requests["Sign"] != 3 || before.ServerErrors != 3 || before.Errors["KMSInternalException"] != 3 || before.Total() != 3 || before.MaxInFlight != 1 {
		t.Errorf("ResetStats returned %+v; want 3 Sign requests, 3 server errors", before)
	}
	after := s.Stats()
	if after.Total() != 0 || after.ServerErrors != 0 || len(after.Errors) != 0 || after.MaxInFlight != 0 {
		t.Errorf("stats after reset = %+v, want zero", after)
	}
	// The copy is the caller's: changing it changes nothing.
	after.Requests["Sign"] = 99
	if s.Stats().Requests["Sign"] != 0 {
		t.Error("Stats shares its map with the server")
	}
}

func TestFaultsValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Faults
		bad  string // a substring of the error; "" if valid
	}{
		{"zero", Faults{}, ""},
		{"everything", Faults{Latency: time.Second, ThrottleRate: 1, ServerErrorRate: 0.5, Outage: true, Unavailable: true, QuotaPerSecond: 10, QuotaBurst: 2}, ""},
		{"negative latency", Faults{Latency: -1}, "latency"},
		{"throttle above 1", Faults{ThrottleRate: 1.5}, "throttle_rate"},
		{"negative error rate", Faults{ServerErrorRate: -0.1}, "server_error_rate"},
		{"NaN rate", Faults{ThrottleRate: math.NaN()}, "throttle_rate"},
		{"negative quota", Faults{QuotaPerSecond: -1}, "quota_per_second"},
		{"infinite quota", Faults{QuotaPerSecond: math.Inf(1)}, "quota_per_second"},
		{"negative burst", Faults{QuotaBurst: -1}, "quota_burst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if tt.bad == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.bad) {
				t.Errorf("Validate = %v, want an error about %s", err, tt.bad)
			}
			defer func() {
				if recover() == nil {
					t.Error("SetFaults accepted invalid faults")
				}
			}()
			New(Options{}).SetFaults(tt.f)
		})
	}
}

func TestFaultsJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    Faults
		wantErr bool
	}{
		{`{}`, Faults{}, false},
		{`{"latency":"1.5s","throttle_rate":0.25,"server_error_rate":0.1,"outage":true,"unavailable":true,"quota_per_second":20,"quota_burst":4}`,
			Faults{Latency: 1500 * time.Millisecond, ThrottleRate: 0.25, ServerErrorRate: 0.1, Outage: true, Unavailable: true, QuotaPerSecond: 20, QuotaBurst: 4}, false},
		{`{"latency":250}`, Faults{Latency: 250 * time.Millisecond}, false},
		{`{"deny_sign":"arn:aws:kms:us-east-1:111122223333:key/x"}`, Faults{DenySign: "arn:aws:kms:us-east-1:111122223333:key/x"}, false},
		{`{"latency":0.5}`, Faults{Latency: 500 * time.Microsecond}, false},
		{`{"latency":null}`, Faults{}, false},
		{`{"latency":"soon"}`, Faults{}, true},
		{`{"latency":true}`, Faults{}, true},
		{`{"throttle":1}`, Faults{}, true}, // a typo must not inject nothing silently
		{`[]`, Faults{}, true},
	}
	for _, tt := range tests {
		var f Faults
		err := json.Unmarshal([]byte(tt.in), &f)
		if (err != nil) != tt.wantErr || (err == nil && f != tt.want) {
			t.Errorf("Unmarshal(%s) = %+v, %v; want %+v, error %v", tt.in, f, err, tt.want, tt.wantErr)
		}
	}

	in := Faults{Latency: 1500 * time.Millisecond, ThrottleRate: 0.25, QuotaPerSecond: 3, DenySign: "k"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"latency":"1.5s"`) {
		t.Errorf("Marshal = %s; want latency as a duration string", b)
	}
	var out Faults
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip: %+v, %v; want %+v", out, err, in)
	}
}

// TestDenySign: Sign with the named key, by key ID or ARN and reached by
// any reference, answers AccessDeniedException; the key's other operations
// and other keys' Sign work.
func TestDenySign(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	c := NewClient(url, noRetry)
	id, arn, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/denied"), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	for _, deny := range []string{id, arn} {
		s.SetFaults(Faults{DenySign: deny})
		for _, ref := range []string{id, arn, "alias/denied"} {
			calls := faultedCalls(c, ref)
			if err := calls["Sign"](t.Context()); apiCode(err) != "AccessDeniedException" || httpStatus(err) != 400 {
				t.Errorf("DenySign %s, Sign %s: %v; want a 400 AccessDeniedException", deny, ref, err)
			}
			for _, op := range []string{"DescribeKey", "GetPublicKey"} {
				if err := calls[op](t.Context()); err != nil {
					t.Errorf("DenySign %s, %s %s: %v", deny, op, ref, err)
				}
			}
		}
		if err := faultedCalls(c, other)["Sign"](t.Context()); err != nil {
			t.Errorf("DenySign %s, Sign with another key: %v", deny, err)
		}
	}
	s.SetFaults(Faults{})
	if err := faultedCalls(c, id)["Sign"](t.Context()); err != nil {
		t.Errorf("Sign once DenySign is cleared: %v", err)
	}
}
