package kmstest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// TestErrors checks each failure reaches the SDK as the error a client of
// real KMS would test for: a modelled type (errors.As) or, for errors KMS
// does not model, a smithy.APIError with the code.
func TestErrors(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	c := NewClient(url, noRetry)
	ctx := t.Context()

	ec, ecARN, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	ed, _, err := s.CreateKeyForTest("ECC_NIST_EDWARDS25519")
	if err != nil {
		t.Fatal(err)
	}
	disabled, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(disabled)}); err != nil {
		t.Fatal(err)
	}
	pending, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(pending), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/taken"), TargetKeyId: aws.String(ec)}); err != nil {
		t.Fatal(err)
	}

	digest := sha256.Sum256([]byte("m"))
	sign := func(keyID string, alg types.SigningAlgorithmSpec, mt types.MessageType, msg []byte) func() error {
		return func() error {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(keyID), SigningAlgorithm: alg, MessageType: mt, Message: msg})
			return err
		}
	}
	signP256 := func(keyID string) func() error {
		return sign(keyID, types.SigningAlgorithmSpecEcdsaSha256, types.MessageTypeDigest, digest[:])
	}

	const (
		ecdsa256 = types.SigningAlgorithmSpecEcdsaSha256
		ed25519  = types.SigningAlgorithmSpecEd25519Sha512
		ed25519p = types.SigningAlgorithmSpecEd25519PhSha512
		raw      = types.MessageTypeRaw
		dig      = types.MessageTypeDigest
	)
	tests := []struct {
		name string
		call func() error
		// is checks the error's type; code is its API error code.
		is   func(error) bool
		code string
	}{
		{"unknown key ID", func() error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("00000000-0000-4000-8000-000000000000")})
			return err
		}, isA[*types.NotFoundException], "NotFoundException"},
		{"unknown alias", sign("alias/nope", ecdsa256, dig, digest[:]), isA[*types.NotFoundException], "NotFoundException"},
		{"ARN in another region", func() error {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(strings.Replace(ecARN, "us-east-1", "us-west-2", 1))})
			return err
		}, isA[*types.NotFoundException], "NotFoundException"},
		{"alias in a management operation", func() error {
			_, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String("alias/taken")})
			return err
		}, isA[*types.NotFoundException], "NotFoundException"},

		{"Sign with a disabled key", signP256(disabled), isA[*types.DisabledException], "DisabledException"},
		{"GetPublicKey of a disabled key", func() error {
			_, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(disabled)})
			return err
		}, isA[*types.DisabledException], "DisabledException"},

		{"Sign with a key pending deletion", signP256(pending), isA[*types.KMSInvalidStateException], "KMSInvalidStateException"},
		{"GetPublicKey of a key pending deletion", func() error {
			_, err := c.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(pending)})
			return err
		}, isA[*types.KMSInvalidStateException], "KMSInvalidStateException"},
		{"EnableKey of a key pending deletion", func() error {
			_, err := c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(pending)})
			return err
		}, isA[*types.KMSInvalidStateException], "KMSInvalidStateException"},
		{"CancelKeyDeletion of an enabled key", func() error {
			_, err := c.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(ec)})
			return err
		}, isA[*types.KMSInvalidStateException], "KMSInvalidStateException"},

		{"RSA algorithm on a P-256 key", sign(ec, types.SigningAlgorithmSpecRsassaPssSha256, dig, digest[:]), isA[*types.InvalidKeyUsageException], "InvalidKeyUsageException"},
		{"ECDSA_SHA_384 on a P-256 key", sign(ec, types.SigningAlgorithmSpecEcdsaSha384, raw, []byte("m")), isA[*types.InvalidKeyUsageException], "InvalidKeyUsageException"},
		{"ECDSA on an Ed25519 key", sign(ed, ecdsa256, dig, digest[:]), isA[*types.InvalidKeyUsageException], "InvalidKeyUsageException"},
		{"SM2DSA on a P-256 key", sign(ec, types.SigningAlgorithmSpecSm2dsa, raw, []byte("m")), isA[*types.InvalidKeyUsageException], "InvalidKeyUsageException"},

		{"RAW message of 4097 bytes", sign(ec, ecdsa256, raw, make([]byte, 4097)), isA[smithy.APIError], "ValidationException"},
		{"empty message", sign(ec, ecdsa256, raw, []byte{}), isA[smithy.APIError], "ValidationException"},
		{"digest one byte short", sign(ec, ecdsa256, dig, digest[:31]), isA[smithy.APIError], "ValidationException"},
		{"ED25519_SHA_512 with DIGEST", sign(ed, ed25519, dig, make([]byte, 64)), isA[smithy.APIError], "ValidationException"},
		{"ED25519_PH_SHA_512 with RAW", sign(ed, ed25519p, raw, []byte("m")), isA[smithy.APIError], "ValidationException"},
		{"unknown algorithm", sign(ec, "ECDSA_SHA_1", dig, digest[:]), isA[smithy.APIError], "ValidationException"},
		{"unknown message type", sign(ec, ecdsa256, "HASHED", digest[:]), isA[smithy.APIError], "ValidationException"},
		{"deletion window of 6 days", func() error {
			_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(ec), PendingWindowInDays: aws.Int32(6)})
			return err
		}, isA[smithy.APIError], "ValidationException"},
		{"deletion window of 31 days", func() error {
			_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(ec), PendingWindowInDays: aws.Int32(31)})
			return err
		}, isA[smithy.APIError], "ValidationException"},
		{"alias name without alias/", func() error {
			_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("taken"), TargetKeyId: aws.String(ec)})
			return err
		}, isA[smithy.APIError], "ValidationException"},

		{"alias that exists", func() error {
			_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/taken"), TargetKeyId: aws.String(ed)})
			return err
		}, isA[*types.AlreadyExistsException], "AlreadyExistsException"},

		{"symmetric key", func() error {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
			return err
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},
		{"RSA key for encryption", func() error {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
			return err
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},
		{"unknown key spec", func() error {
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: "RSA_1024", KeyUsage: types.KeyUsageTypeSignVerify})
			return err
		}, isA[smithy.APIError], "ValidationException"},
		{"operation kmstest lacks", func() error {
			_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(ec), Plaintext: []byte("x")})
			return err
		}, isA[*types.UnsupportedOperationException], "UnsupportedOperationException"},

		{"dry run", func() error {
			_, err := c.Sign(ctx, &kms.SignInput{KeyId: aws.String(ec), SigningAlgorithm: ecdsa256, MessageType: dig, Message: digest[:], DryRun: aws.Bool(true)})
			return err
		}, isA[*types.DryRunOperationException], "DryRunOperationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatalf("no error; want %s", tt.code)
			}
			if !tt.is(err) {
				t.Errorf("error %v (%T) is not the wanted type", err, err)
			}
			if got := apiCode(err); got != tt.code {
				t.Errorf("error code %q, want %q (error: %v)", got, tt.code, err)
			}
		})
	}

	// The limits are inclusive.
	if err := sign(ec, ecdsa256, raw, make([]byte, 4096))(); err != nil {
		t.Errorf("RAW message of 4096 bytes: %v", err)
	}
}

// TestAuthentication checks the SigV4 credential scope and the
// AllowedAccessKeys option.
func TestAuthentication(t *testing.T) {
	s, url := NewTestServer(t, Options{AllowedAccessKeys: []string{"AKIDGOOD"}})
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	withKey := func(akid string) func(*kms.Options) {
		return func(o *kms.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(akid, "whatever", "")
		}
	}
	tests := []struct {
		name   string
		optFns []func(*kms.Options)
		code   string // "" for success
	}{
		{"allowed access key", []func(*kms.Options){withKey("AKIDGOOD")}, ""},
		{"unknown access key", []func(*kms.Options){withKey("AKIDTEST")}, "AccessDeniedException"},
		{"wrong region", []func(*kms.Options){withKey("AKIDGOOD"), func(o *kms.Options) { o.Region = "us-west-2" }}, "InvalidSignatureException"},
		{"no credentials", []func(*kms.Options){func(o *kms.Options) { o.Credentials = aws.AnonymousCredentials{} }}, "MissingAuthenticationTokenException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(url, append([]func(*kms.Options){noRetry}, tt.optFns...)...)
			_, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(id)})
			if got := apiCode(err); got != tt.code {
				t.Errorf("DescribeKey: code %q, want %q (error: %v)", got, tt.code, err)
			}
		})
	}
}

// rawCall sends one request as the SDK would, without it, and decodes the
// answer.
func rawCall(t *testing.T, method, url, target, auth, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(b) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("answer %q is not JSON: %v", b, err)
		}
	}
	return resp, out
}

const testAuth = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260102/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000"

// TestWireFormat checks the bytes on the wire, which the SDK tests above
// only see through its deserializers.
func TestWireFormat(t *testing.T) {
	s, url := NewTestServer(t, Options{})
	id, _, err := s.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, method, path, target, auth, body string
		status                                 int
		errType                                string // "" for success
	}{
		{"success", "POST", "/", "TrentService.DescribeKey", testAuth, `{"KeyId":"` + id + `"}`, 200, ""},
		{"not found", "POST", "/", "TrentService.DescribeKey", testAuth, `{"KeyId":"alias/none"}`, 400, "NotFoundException"},
		{"no Authorization", "POST", "/", "TrentService.DescribeKey", "", `{"KeyId":"` + id + `"}`, 400, "MissingAuthenticationTokenException"},
		{"another signing scheme", "POST", "/", "TrentService.DescribeKey", "Bearer x", `{}`, 400, "IncompleteSignatureException"},
		{"malformed credential", "POST", "/", "TrentService.DescribeKey", "AWS4-HMAC-SHA256 Credential=AKIDTEST/x, Signature=0", `{}`, 400, "IncompleteSignatureException"},
		{"wrong service", "POST", "/", "TrentService.DescribeKey", strings.Replace(testAuth, "/kms/", "/s3/", 1), `{}`, 400, "InvalidSignatureException"},
		{"malformed JSON", "POST", "/", "TrentService.DescribeKey", testAuth, `{"KeyId":`, 400, "SerializationException"},
		{"blob not base64", "POST", "/", "TrentService.Sign", testAuth, `{"KeyId":"` + id + `","Message":"%%%","SigningAlgorithm":"ECDSA_SHA_256"}`, 400, "SerializationException"},
		{"operation not implemented", "POST", "/", "TrentService.Decrypt", testAuth, `{}`, 400, "UnsupportedOperationException"},
		{"another service", "POST", "/", "DynamoDB_20120810.ListTables", testAuth, `{}`, 400, "UnknownOperationException"},
		{"GET", "GET", "/", "TrentService.DescribeKey", testAuth, ``, 400, "UnknownOperationException"},
		{"another path", "POST", "/keys", "TrentService.DescribeKey", testAuth, `{}`, 400, "UnknownOperationException"},
		{"control endpoint when off", "GET", "/_kmstest/stats", "", "", ``, 400, "UnknownOperationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawCall(t, tt.method, url+tt.path, tt.target, tt.auth, tt.body)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (body %v)", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/x-amz-json-1.1" {
				t.Errorf("Content-Type %q", got)
			}
			if resp.Header.Get("X-Amzn-RequestId") == "" {
				t.Error("no X-Amzn-RequestId")
			}
			if got := resp.Header.Get("X-Amzn-ErrorType"); got != tt.errType {
				t.Errorf("X-Amzn-ErrorType %q, want %q", got, tt.errType)
			}
			if tt.errType == "" {
				return
			}
			if body["__type"] != tt.errType {
				t.Errorf("__type %v, want %s", body["__type"], tt.errType)
			}
			if _, ok := body["message"].(string); !ok {
				t.Errorf("message %v is not a string", body["message"])
			}
		})
	}

	// Timestamps are epoch seconds as JSON numbers; blobs are standard
	// base64.
	_, md := rawCall(t, "POST", url, "TrentService.DescribeKey", testAuth, `{"KeyId":"`+id+`"}`)
	created, ok := md["KeyMetadata"].(map[string]any)["CreationDate"].(json.Number)
	if !ok {
		t.Fatalf("CreationDate is %T, want a JSON number", md["KeyMetadata"].(map[string]any)["CreationDate"])
	}
	if f, err := created.Float64(); err != nil || f < 1.7e9 {
		t.Errorf("CreationDate %s is not recent epoch seconds", created)
	}
	d := sha256.Sum256([]byte("m"))
	_, sig := rawCall(t, "POST", url, "TrentService.Sign", testAuth,
		`{"KeyId":"`+id+`","Message":"`+base64.StdEncoding.EncodeToString(d[:])+`","MessageType":"DIGEST","SigningAlgorithm":"ECDSA_SHA_256"}`)
	if s, _ := sig["Signature"].(string); !strings.HasPrefix(s, "M") { // DER SEQUENCE 0x30
		t.Errorf("Signature %q is not standard base64 of DER", s)
	}
}
