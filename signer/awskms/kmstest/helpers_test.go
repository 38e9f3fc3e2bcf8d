package kmstest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// clock is a settable time source for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// noRetry makes the SDK answer the first failure, so each fault is seen.
func noRetry(o *kms.Options) { o.Retryer = aws.NopRetryer{} }

// isA reports whether err wraps a T, as a client would test it.
func isA[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

// apiCode returns the smithy API error code in err, or "" if there is none.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// createKey makes a key through the SDK.
func createKey(t *testing.T, c *kms.Client, spec string) string {
	t.Helper()
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{
		KeySpec:  types.KeySpec(spec),
		KeyUsage: "SIGN_VERIFY",
	})
	if err != nil {
		t.Fatalf("CreateKey %s: %v", spec, err)
	}
	return aws.ToString(out.KeyMetadata.KeyId)
}
