package awskms

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// stubRetryer is the SDK retryer callRetryer wraps: every error retryable,
// every retry token granted, and a backoff of delay the first time it is
// asked and ten times longer after that (the SDK's is random).
type stubRetryer struct {
	delay  time.Duration
	asked  int
	tokens int
}

func (s *stubRetryer) IsErrorRetryable(error) bool { return true }
func (s *stubRetryer) MaxAttempts() int            { return 10 }
func (s *stubRetryer) RetryDelay(int, error) (time.Duration, error) {
	s.asked++
	if s.asked > 1 {
		return 10 * s.delay, nil
	}
	return s.delay, nil
}

func (s *stubRetryer) GetRetryToken(context.Context, error) (func(error) error, error) {
	s.tokens++
	return func(error) error { return nil }, nil
}
func (s *stubRetryer) GetInitialToken() func(error) error { return func(error) error { return nil } }
func (s *stubRetryer) GetAttemptToken(context.Context) (func(error) error, error) {
	return func(error) error { return nil }, nil
}

// TestCallRetryerNeverRetriesMissingCredentials: a call that failed for
// want of credentials is not retried, whatever the SDK's retryer thinks;
// the credential sources retry on their own.
func TestCallRetryerNeverRetriesMissingCredentials(t *testing.T) {
	r := &callRetryer{inner: &stubRetryer{}, c: &callRetries{}}
	if r.IsErrorRetryable(fmt.Errorf("signing: %w", &noCredentialsError{detail: "none"})) {
		t.Fatal("a call without credentials is retried")
	}
	if !r.IsErrorRetryable(errors.New("connection reset")) {
		t.Fatal("the SDK retryer's own answer is not used")
	}
}

// TestCallRetryerRefusesARetryThatCannotFinish: a retry is refused when its
// backoff plus another attempt as long as the last would pass the call's
// deadline, and granted when both fit. The margins are seconds wide, so a
// slow machine does not change the answer.
func TestCallRetryerRefusesARetryThatCannotFinish(t *testing.T) {
	for _, tc := range []struct {
		name        string
		delay, last time.Duration
		left        time.Duration
		granted     bool
	}{
		{"backoff and a slow attempt fit", time.Second, 10 * time.Second, time.Minute, true},
		{"backoff fits, a slow attempt does not", time.Second, 10 * time.Second, 5 * time.Second, false},
		{"the backoff alone does not fit", 10 * time.Second, 0, 5 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &stubRetryer{delay: tc.delay}
			c := &callRetries{attempts: 1, started: time.Now().Add(-tc.last)}
			r := &callRetryer{inner: inner, c: c}
			ctx, cancel := context.WithTimeout(context.Background(), tc.left)
			defer cancel()
			_, err := r.GetRetryToken(ctx, errors.New("ThrottlingException"))
			if granted := err == nil; granted != tc.granted {
				t.Fatalf("GetRetryToken = %v; want granted %v", err, tc.granted)
			}
			if !tc.granted {
				if !errors.Is(err, errRetryRefused) || inner.tokens != 0 {
					t.Fatalf("refused with %v after taking %d retry tokens; want errRetryRefused and none taken", err, inner.tokens)
				}
				return
			}
			// The backoff the SDK then sleeps is the one checked.
			if d, err := r.RetryDelay(1, nil); err != nil || d != tc.delay {
				t.Fatalf("RetryDelay = %s, %v; want %s", d, err, tc.delay)
			}
		})
	}
}
