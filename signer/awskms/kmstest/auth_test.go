package kmstest

import (
	"net/http"
	"net/http/httptest"
	"strings"
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

// botocoreRequests are requests the aws CLI (aws-cli 1.45.11, botocore
// 1.43.11) sent to kmstest, captured with --debug: botocore signs
// content-type;host;x-amz-date;x-amz-target (and x-amz-security-token),
// not content-length as the Go SDK does, and sends headers it does not
// sign (User-Agent, amz-sdk-*).
var botocoreRequests = []struct {
	name    string
	host    string
	headers map[string]string
	body    string
	want    string // the error code an accepted request gets from the operation; "" for success
}{
	{
		name: "ListKeys, long-term credentials",
		host: "127.0.0.1:35821",
		headers: map[string]string{
			"X-Amz-Target":          "TrentService.ListKeys",
			"Content-Type":          "application/x-amz-json-1.1",
			"User-Agent":            "aws-cli/1.45.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18.44-fc-v595 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/g,b,N,C,Z,D cfg/retry-mode#legacy botocore/1.43.11",
			"X-Amz-Date":            "20261129T112915Z",
			"Authorization":         "AWS4-HMAC-SHA256 Credential=AKIAHDOCS00000000001/20261129/eu-west-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=d3dd78e0ecd45701f33fd357d0e5c5caef17c559f06c02044b46139162e3913b",
			"Amz-Sdk-Invocation-Id": "d2cf0533-6638-454d-bced-733ca442f282",
			"Amz-Sdk-Request":       "attempt=1",
		},
		body: `{}`,
	},
	{
		name: "DescribeKey, temporary credentials",
		host: "127.0.0.1:43699",
		headers: map[string]string{
			"X-Amz-Target":          "TrentService.DescribeKey",
			"Content-Type":          "application/x-amz-json-1.1",
			"User-Agent":            "aws-cli/1.45.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.18.44-fc-v595 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/b,Z,g,D,N cfg/retry-mode#legacy botocore/1.43.11",
			"X-Amz-Date":            "20261129T112939Z",
			"X-Amz-Security-Token":  "hdocs-session-token",
			"Authorization":         "AWS4-HMAC-SHA256 Credential=ASIAHDOCS00000000002/20261129/eu-west-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=859d6b15903655fb6eebb6a23015b1d1333bb665f58e61ff76b992f6fea46151",
			"Amz-Sdk-Invocation-Id": "d82a3a24-5057-4b4b-bb5b-c67c89e91d4a",
			"Amz-Sdk-Request":       "attempt=1",
		},
		body: `{"KeyId": "alias/botocore"}`,
		want: "NotFoundException", // authenticated; there is no such alias
	},
}

// TestCredentialsBotocore: SigV4 is checked over the headers the client
// signed, so the aws CLI's requests, which do not sign content-length, are
// accepted; and a change to anything signed (body, a signed header, the
// host) is refused, while a change to an unsigned header is not.
func TestCredentialsBotocore(t *testing.T) {
	s := New(Options{
		Region: "eu-west-1",
		Credentials: []Credential{
			{AccessKeyID: "AKIAHDOCS00000000001", SecretAccessKey: "hdocs-secret-0123456789"},
			{AccessKeyID: "ASIAHDOCS00000000002", SecretAccessKey: "hdocs-temp-secret", SessionToken: "hdocs-session-token"},
		},
	})
	t.Cleanup(s.stopWaits)
	for _, rq := range botocoreRequests {
		for _, tc := range []struct {
			name   string
			change func(r *http.Request) *http.Request
			want   string
		}{
			{"as sent", func(r *http.Request) *http.Request { return r }, rq.want},
			{"unsigned header changed", func(r *http.Request) *http.Request {
				r.Header.Set("User-Agent", "something else")
				r.Header.Set("Amz-Sdk-Request", "attempt=2")
				return r
			}, rq.want},
			{"body changed", func(r *http.Request) *http.Request {
				b := strings.Replace(rq.body, "}", ` }`, 1)
				r2 := httptest.NewRequest(http.MethodPost, "http://"+rq.host+"/", strings.NewReader(b))
				r2.Header = r.Header
				return r2
			}, "InvalidSignatureException"},
			{"signed header changed", func(r *http.Request) *http.Request {
				r.Header.Set("Content-Type", "application/x-amz-json-1.1; charset=utf-8")
				return r
			}, "InvalidSignatureException"},
			{"other host", func(r *http.Request) *http.Request {
				r.Host = "127.0.0.1:1"
				return r
			}, "InvalidSignatureException"},
			{"host not signed", func(r *http.Request) *http.Request {
				r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), ";host;", ";", 1))
				return r
			}, "IncompleteSignatureException"},
			{"later date", func(r *http.Request) *http.Request {
				r.Header.Set("X-Amz-Date", strings.Replace(r.Header.Get("X-Amz-Date"), "T11", "T12", 1))
				return r
			}, "InvalidSignatureException"},
		} {
			t.Run(rq.name+"/"+tc.name, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodPost, "http://"+rq.host+"/", strings.NewReader(rq.body))
				for k, v := range rq.headers {
					r.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				s.ServeHTTP(w, tc.change(r))
				got := w.Header().Get("X-Amzn-ErrorType")
				if got != tc.want || (tc.want == "") != (w.Code == http.StatusOK) {
					t.Fatalf("%d %s %s, want error type %q", w.Code, got, w.Body, tc.want)
				}
			})
		}
	}
}
