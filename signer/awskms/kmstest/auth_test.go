package kmstest

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// TestCredentials: with Options.Credentials the server checks SigV4 as AWS
// does, so a client that signs with the wrong secret, drops or changes the
// session token, or uses an access key AWS does not know is refused with
// AWS's error code.
func TestCredentials(t *testing.T) {
	clk := newClock()
	s, url := NewTestServer(t, Options{
		Now: clk.Now,
		Credentials: []Credential{
			{AccessKeyID: "AKIDLONG", SecretAccessKey: "long-term-secret"},
			{AccessKeyID: "ASIATEMP", SecretAccessKey: "temp-secret", SessionToken: "the-session-token", Expires: clk.Now().Add(time.Hour)},
			{AccessKeyID: "AKIDNOPERM", SecretAccessKey: "no-perm-secret"},
		},
		AllowedAccessKeys: []string{"AKIDLONG", "ASIATEMP"},
	})
	keyID, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	client := func(akid, secret, token string) *kms.Client {
		return NewClient(url, noRetry, func(o *kms.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(akid, secret, token)
		})
	}
	describe := func(c *kms.Client) error {
		_, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)})
		return err
	}
	for _, tc := range []struct {
		name                string
		akid, secret, token string
		want                string // error code; "" for success
	}{
		{"long-term credentials", "AKIDLONG", "long-term-secret", "", ""},
		{"temporary credentials", "ASIATEMP", "temp-secret", "the-session-token", ""},
		{"unknown access key", "AKIDUNKNOWN", "long-term-secret", "", "UnrecognizedClientException"},
		{"wrong secret", "AKIDLONG", "not-the-secret", "", "InvalidSignatureException"},
		{"session token dropped", "ASIATEMP", "temp-secret", "", "UnrecognizedClientException"},
		{"wrong session token", "ASIATEMP", "temp-secret", "another-token", "UnrecognizedClientException"},
		{"session token where none is due", "AKIDLONG", "long-term-secret", "a-token", "UnrecognizedClientException"},
		{"known but not allowed", "AKIDNOPERM", "no-perm-secret", "", "AccessDeniedException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := describe(client(tc.akid, tc.secret, tc.token))
			if got := apiCode(err); got != tc.want || (tc.want == "") != (err == nil) {
				t.Fatalf("DescribeKey: %v (code %q), want %q", err, got, tc.want)
			}
			if err != nil && httpStatus(err) != 400 {
				t.Fatalf("status %d, want 400", httpStatus(err))
			}
		})
	}

	// Every operation is checked, Sign and administration alike.
	c := client("AKIDLONG", "not-the-secret", "")
	if _, err := c.ListKeys(t.Context(), &kms.ListKeysInput{}); apiCode(err) != "InvalidSignatureException" {
		t.Fatalf("ListKeys with the wrong secret: %v", err)
	}
	if err := faultedCalls(c, keyID)["Sign"](t.Context()); apiCode(err) != "InvalidSignatureException" {
		t.Fatalf("Sign with the wrong secret: %v", err)
	}

	clk.Advance(time.Hour)
	if err := describe(client("ASIATEMP", "temp-secret", "the-session-token")); apiCode(err) != "ExpiredTokenException" {
		t.Fatalf("expired temporary credentials: %v, want ExpiredTokenException", err)
	}
	if err := describe(client("AKIDLONG", "long-term-secret", "")); err != nil {
		t.Fatalf("long-term credentials do not expire: %v", err)
	}
}

// TestCredentialsOff: without Options.Credentials any access key and
// secret are accepted, as before, so existing users keep working.
func TestCredentialsOff(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	keyID, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(url, noRetry, func(o *kms.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider("AKIDANY", "any-secret", "any-token")
	})
	if _, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatal(err)
	}
}
