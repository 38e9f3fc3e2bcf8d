package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

const testSecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETzz"

// kmsBackend is a test backend configured for a kmstest server.
func kmsBackend(t *testing.T) (*testBackend, *kmstest.Server, *kms.Client) {
	t.Helper()
	kmstest.IsolateAWSEnvironment(t)
	srv, url := kmstest.NewTestServer(t, kmstest.Options{})
	tb := getTestBackend(t)
	tb.mustWrite(t, "config/aws", map[string]any{
		"access_key": "AKIDTEST", "secret_key": testSecretKey, "region": "us-east-1", "endpoint": url,
		"breaker_cooldown": "1s",
	})
	return tb, srv, kmstest.NewClient(url)
}

func kmsSpec(alg signer.Algorithm) string {
	if spec := alg.Info().KMSKeySpec; spec != "" {
		return spec
	}
	return "RSA_2048"
}

func newKMSKey(t *testing.T, srv *kmstest.Server, alg signer.Algorithm) string {
	t.Helper()
	_, arn, err := srv.CreateKeyForTest(kmsSpec(alg))
	if err != nil {
		t.Fatal(err)
	}
	return arn
}

func TestAWSConfig(t *testing.T) {
	tb, _, _ := kmsBackend(t)
	d := tb.mustRead(t, "config/aws").Data
	if d["access_key"] != "AKIDTEST" || d["secret_key_set"] != true || d["session_token_set"] != false || d["max_requests_per_second"] != 250 {
		t.Fatalf("read: %#v", d)
	}
	for _, tc := range []struct {
		name string
		data map[string]any
		want string
	}{
		{"access key without secret", map[string]any{"secret_key": ""}, `"access_key"/"secret_key"`},
		{"bad region", map[string]any{"region": "Europe"}, `"region"`},
		{"bad endpoint", map[string]any{"endpoint": "ftp://kms"}, `"endpoint"`},
		{"endpoint with credentials", map[string]any{"endpoint": "https://user:pw@kms.example.com"}, `"endpoint"`},
		{"bad role", map[string]any{"role_arn": "arn:aws:iam::1:role/x"}, `"role_arn"`},
		{"zero rate", map[string]any{"max_requests_per_second": 0}, `"max_requests_per_second"`},
		{"tiny timeout", map[string]any{"call_timeout": "0s"}, `"call_timeout"`},
		{"too many attempts", map[string]any{"max_attempts": 50}, `"max_attempts"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "config/aws", tc.data, tc.want)
		})
	}
	if resp, err := tb.request(t, logical.DeleteOperation, "config/aws", nil); err != nil || resp != nil {
		t.Fatalf("delete: %v %#v", err, resp)
	}
	if d := tb.mustRead(t, "config/aws").Data; d["secret_key_set"] != false || d["access_key"] != "" {
		t.Fatalf("after delete: %#v", d)
	}
}

// TestEndpointCredentialsNotEchoed: an endpoint is refused when it holds
// credentials, and the 400 does not repeat them, on config/aws and on an
// awskms key; nor does the log.
func TestEndpointCredentialsNotEchoed(t *testing.T) {
	tb := getTestBackend(t)
	const secret = "SuperSecretKey123"
	for _, tc := range []struct{ name, endpoint string }{
		{"user and password", "https://AKIAXX:" + secret + "@kms.example.com"},
		{"user only", "https://" + secret + "@kms.example.com"},
		{"credentials and a bad scheme", "ftp://u:" + secret + "@kms.example.com"},
		{"credentials in an unparseable URL", "https://u:" + secret + "@kms.example.com/%zz"},
		{"credentials in an opaque URL", "https:u:" + secret + "@kms.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range []struct {
				path string
				data map[string]any
			}{
				{"config/aws", map[string]any{"endpoint": tc.endpoint}},
				{"keys/new", map[string]any{"provider": "awskms", "kms_key_id": "alias/x", "region": "eu-west-1", "endpoint": tc.endpoint}},
			} {
				tb.wantBadRequest(t, logical.UpdateOperation, req.path, req.data, `invalid "endpoint"`)
				resp, _ := tb.request(t, logical.UpdateOperation, req.path, req.data)
				if msg := resp.Error().Error(); strings.Contains(msg, secret) {
					t.Fatalf("%s: the error repeats the credentials: %s", req.path, msg)
				}
			}
			if strings.Contains(tb.logs.String(), secret) {
				t.Fatal("the credentials are in the log")
			}
		})
	}
}

func TestAWSKMSKeysEachAlgorithm(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	for _, alg := range signer.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			name := "kms-" + strings.ToLower(string(alg))
			arn := newKMSKey(t, srv, alg)
			d := tb.mustWrite(t, "keys/"+name, map[string]any{"provider": "awskms", "algorithm": string(alg), "kms_key_id": arn}).Data
			v1 := d["versions"].(map[string]any)["1"].(map[string]any)
			if d["provider"] != "awskms" || v1["kms_key_arn"] != arn || d["rsa_bits"] != nil {
				t.Fatalf("key: %#v", d)
			}
			tb.mustWrite(t, "roles/"+name, map[string]any{"key": name, "audiences": "a"})
			for range 3 {
				tok := tb.issue(t, name, nil)
				if tok.header["alg"] != string(alg) {
					t.Fatalf("header %v", tok.header)
				}
				if size := alg.Info().SignatureSize; size != 0 && len(tok.sig) != size {
					t.Fatalf("signature %d bytes, want %d", len(tok.sig), size)
				}
			}
			m := tb.mustRead(t, "keys/"+name).Data["versions"].(map[string]any)["1"].(map[string]any)["kms_metrics"].(map[string]any)
			if m["signs"] != int64(3) {
				t.Fatalf("kms_metrics %v", m)
			}
		})
	}
	assertNoSecretsInLogs(t, tb)
	if strings.Contains(tb.logs.String(), testSecretKey) {
		t.Fatal("the AWS secret key is in the log")
	}
}

func TestAWSKMSBadInput(t *testing.T) {
	tb, srv, client := kmsBackend(t)
	ctx := context.Background()
	es256 := newKMSKey(t, srv, signer.ES256)
	disabled := newKMSKey(t, srv, signer.ES256)
	if _, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(disabled)}); err != nil {
		t.Fatal(err)
	}
	tb.mustWrite(t, "keys/kms", map[string]any{"provider": "awskms", "kms_key_id": es256})
	tb.mustWrite(t, "keys/local", nil)
	for _, tc := range []struct {
		name string
		op   logical.Operation
		path string
		data map[string]any
		want []string
	}{
		{"no kms_key_id", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms"}, []string{`"kms_key_id"`, "required"}},
		{"not a key reference", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": "my key"}, []string{`"kms_key_id"`, "not a KMS key ID"}},
		{"AWS managed alias", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": "alias/aws/ebs"}, []string{`"kms_key_id"`, "AWS managed"}},
		{"key spec does not fit", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": es256, "algorithm": "ES384"}, []string{`"kms_key_id"`, "ECC_NIST_P384"}},
		{"RSA alg on EC key", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": es256, "algorithm": "PS256"}, []string{`"kms_key_id"`, "RSA_2048"}},
		{"missing KMS key", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"}, []string{`"kms_key_id"`, "not found"}},
		{"disabled KMS key", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": disabled}, []string{`"kms_key_id"`, "disabled"}},
		{"rsa_bits on awskms", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": es256, "algorithm": "RS256", "rsa_bits": 2048}, []string{`"rsa_bits"`}},
		{"rotation_period on awskms", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": es256, "rotation_period": "24h"}, []string{`"rotation_period"`}},
		{"bad region", logical.CreateOperation, "keys/new", map[string]any{"provider": "awskms", "kms_key_id": es256, "region": "mars"}, []string{`"region"`}},
		{"kms_key_id on local", logical.CreateOperation, "keys/new", map[string]any{"kms_key_id": es256}, []string{`"kms_key_id"`, "only provider awskms"}},
		{"kms_key_id on existing key", logical.UpdateOperation, "keys/kms", map[string]any{"kms_key_id": es256}, []string{`"kms_key_id"`, "rotate"}},
		{"rotate awskms without kms_key_id", logical.UpdateOperation, "keys/kms/rotate", nil, []string{`"kms_key_id"`, "required"}},
		{"rotate to the same KMS key", logical.UpdateOperation, "keys/kms/rotate", map[string]any{"kms_key_id": es256}, []string{`"kms_key_id"`, "already uses"}},
		{"rotate local with kms_key_id", logical.UpdateOperation, "keys/local/rotate", map[string]any{"kms_key_id": es256}, []string{`"kms_key_id"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, tc.op, tc.path, tc.data, tc.want...)
		})
	}
}

// TestAWSKMSRotation: rotating to a new KMS key publishes it, signs with it
// after jwks_max_age, and keeps the old version published.
func TestAWSKMSRotation(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	first, second := newKMSKey(t, srv, signer.ES256), newKMSKey(t, srv, signer.ES256)
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "kms_key_id": first})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	before := tb.issue(t, "r", nil)
	d := tb.mustWrite(t, "keys/k/rotate", map[string]any{"kms_key_id": second}).Data
	vs := d["versions"].(map[string]any)
	if vs["2"].(map[string]any)["kms_key_arn"] != second || vs["2"].(map[string]any)["state"] != stateNext || vs["1"].(map[string]any)["state"] != stateCurrent {
		t.Fatalf("after rotate: %#v", vs)
	}
	if got := tb.issue(t, "r", nil).header["kid"]; got != before.header["kid"] {
		t.Fatal("the next version signed before its activation")
	}
	tb.clock.Add(defaultJWKSMaxAge)
	after := tb.issue(t, "r", nil)
	if after.header["kid"] == before.header["kid"] {
		t.Fatal("same kid after rotation")
	}
	if kids := jwksKids(t, tb); len(kids) != 2 {
		t.Fatalf("JWKS %v", kids)
	}
}

// TestAWSKMSReloadMakesNoKMSCalls: a key loaded from storage (a restart, a
// standby) is rebuilt from its stored public key; only Sign reaches KMS.
func TestAWSKMSReloadMakesNoKMSCalls(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "kms_key_id": newKMSKey(t, srv, signer.EdDSA), "algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	tb.resetCaches()
	tb.dropAWS()
	srv.ResetStats()
	tb.issue(t, "r", nil)
	st := srv.Stats()
	if st.Requests["Sign"] != 1 || st.Total() != 1 {
		t.Fatalf("KMS requests after reload: %v", st.Requests)
	}
}

// TestAWSKMSIssueFailures: what a caller sees when KMS fails. Nothing is a
// 500 and no token comes back.
func TestAWSKMSIssueFailures(t *testing.T) {
	tb, srv, client := kmsBackend(t)
	arn := newKMSKey(t, srv, signer.ES256)
	tb.mustWrite(t, "config/aws", map[string]any{"max_attempts": 1})
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "kms_key_id": arn})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	tb.issue(t, "r", nil)

	expect := func(t *testing.T, status int, want string) {
		t.Helper()
		resp, err := tb.request(t, logical.UpdateOperation, "issue/r", nil)
		if resp != nil && resp.Data["token"] != nil {
			t.Fatal("a token came back")
		}
		if code := httpStatus(logical.UpdateOperation, "issue/r", resp, err); code != status || !strings.Contains(err.Error(), want) {
			t.Fatalf("status %d, err %v; want %d containing %q", code, err, status, want)
		}
	}
	t.Run("throttled", func(t *testing.T) {
		srv.SetFaults(kmstest.Faults{ThrottleRate: 1})
		defer srv.SetFaults(kmstest.Faults{})
		expect(t, 429, "throttled")
	})
	t.Run("down, then fast failures, then back", func(t *testing.T) {
		srv.SetFaults(kmstest.Faults{Unavailable: true})
		for range 5 {
			expect(t, 503, "KMS unavailable")
		}
		if st := tb.mustRead(t, "config/aws").Data["kms"].(map[string]any); !strings.Contains(fmt.Sprint(st), "open") {
			t.Fatalf("breaker state not reported open: %v", st)
		}
		srv.ResetStats()
		expect(t, 503, "circuit breaker open")
		if n := srv.Stats().Total(); n != 0 {
			t.Fatalf("open breaker sent %d requests", n)
		}
		srv.SetFaults(kmstest.Faults{})
		time.Sleep(1100 * time.Millisecond) // the breaker_cooldown of 1s, on the real clock
		tb.issue(t, "r", nil)
		logs := tb.logs.String()
		for _, want := range []string{`"@message":"KMS circuit breaker open`, `"@message":"KMS circuit breaker closed`, `"region":"us-east-1"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %s", want)
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		tb.mustWrite(t, "config/aws", map[string]any{"call_timeout": "1s"})
		srv.SetFaults(kmstest.Faults{Latency: 3 * time.Second})
		defer srv.SetFaults(kmstest.Faults{})
		expect(t, 503, "KMS unavailable: no answer in time")
	})
	t.Run("disabled key", func(t *testing.T) {
		if _, err := client.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
			t.Fatal(err)
		}
		expect(t, 502, "disabled")
	})
	if strings.Contains(tb.logs.String(), testSecretKey) {
		t.Fatal("the AWS secret key is in the log")
	}
}

// TestAWSKMSEdDSATooLarge: KMS signs Ed25519 over at most 4096 raw bytes;
// a token whose claims make it larger is the caller's 400, and KMS is
// never called.
func TestAWSKMSEdDSATooLarge(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "algorithm": "EdDSA", "kms_key_id": newKMSKey(t, srv, signer.EdDSA)})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_claims": "blob"})
	srv.ResetStats()
	tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", map[string]any{"claims": map[string]any{"blob": strings.Repeat("x", 4000)}}, `"claims"`, "4096")
	if n := srv.Stats().Total(); n != 0 {
		t.Fatalf("%d KMS calls for a token KMS cannot sign", n)
	}
	tb.issue(t, "r", map[string]any{"claims": map[string]any{"blob": strings.Repeat("x", 2000)}})
}

func TestKMSErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err            error
		create, issue  int // 400 means a userError
		createContains string
	}{
		{awskms.ErrInvalidKeyRef, 400, 400, `"kms_key_id"`},
		{awskms.ErrKeyUnusable, 400, 502, `"kms_key_id"`},
		{awskms.ErrKeyDisabled, 400, 502, `"kms_key_id"`},
		{awskms.ErrKeyNotFound, 400, 502, `"kms_key_id"`},
		{awskms.ErrAccessDenied, 400, 502, `"kms_key_id"`},
		{awskms.ErrRefused, 400, 502, `"kms_key_id"`},
		{awskms.ErrThrottled, 429, 429, "throttled"},
		{awskms.ErrUnavailable, 503, 503, "KMS unavailable"},
		{awskms.ErrTimeout, 503, 503, "KMS unavailable"},
		{awskms.ErrBadSignature, 502, 502, "does not verify"},
		{awskms.ErrMessageTooLong, 400, 400, `"claims"`},
		{awskms.ErrNoCredentials, 500, 500, "credentials; check this mount's config/aws"},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			for _, c := range []struct {
				atCreate bool
				want     int
			}{{true, tc.create}, {false, tc.issue}} {
				got := kmsError("key", fmt.Errorf("Sign arn: %w", tc.err), c.atCreate)
				status := 500
				var ue userError
				var coded logical.HTTPCodedError
				switch {
				case errors.As(got, &ue):
					status = 400
				case errors.As(got, &coded):
					status = coded.Code()
				}
				if status != c.want {
					t.Errorf("atCreate=%v: %v -> %d, want %d", c.atCreate, tc.err, status, c.want)
				}
				if c.atCreate && !strings.Contains(got.Error(), tc.createContains) {
					t.Errorf("%q does not contain %q", got, tc.createContains)
				}
			}
		})
	}
}

// TestDropAWSKeysMapRace: a config/aws change (its write, or its
// Invalidate on a standby) while issue and verify load keys is not a data
// race on the key cache. Meaningful under -race.
func TestDropAWSKeysMapRace(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(stop)
		for range 200 {
			tb.invalidate(context.Background(), configAWSPath)
		}
	})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if e, err := tb.getKey(context.Background(), tb.storage, "k"); err != nil || e == nil {
					t.Errorf("getKey: %v, %v", e, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestAWSKMSWithoutAWSConfig: with no usable AWS configuration (config/aws
// deleted where no region is set), the JWKS, verify and key reads work for
// every key, awskms ones included: they need only stored public keys.
// Issuing with an awskms key is a logged 500 naming the AWS configuration,
// and works again once config/aws does, without reloading the key.
func TestAWSKMSWithoutAWSConfig(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	awsCfg := tb.mustRead(t, "config/aws").Data
	tb.mustWrite(t, "keys/kms", map[string]any{"provider": "awskms", "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	tb.mustWrite(t, "keys/local", nil)
	tb.mustWrite(t, "roles/local", map[string]any{"key": "local"})
	tb.mustWrite(t, "roles/kms", map[string]any{"key": "kms"})
	localTok := tb.issue(t, "local", nil).data["token"].(string)
	kmsTok := tb.issue(t, "kms", nil).data["token"].(string)
	if resp, err := tb.request(t, logical.DeleteOperation, "config/aws", nil); err != nil {
		t.Fatal(resp, err)
	}
	for _, cold := range []bool{false, true} {
		if cold {
			tb.resetCaches() // a restart or a standby: keys load from storage
		}
		if kids := jwksKids(t, tb); len(kids) != 2 {
			t.Fatalf("cold=%v: JWKS %v, want both keys", cold, kids)
		}
		for _, tok := range []string{localTok, kmsTok} {
			if active, reason, _ := tb.verify(t, tok, ""); !active {
				t.Fatalf("cold=%v: verify: %s", cold, reason)
			}
		}
		tb.mustRead(t, "keys/kms")
		resp, err := tb.request(t, logical.UpdateOperation, "issue/kms", nil)
		if code := httpStatus(logical.UpdateOperation, "issue/kms", resp, err); code != 500 || !strings.Contains(err.Error(), "AWS configuration") || !strings.Contains(err.Error(), "no AWS region") {
			t.Fatalf("cold=%v: issue: %d %v, want a 500 naming the AWS configuration", cold, code, err)
		}
	}
	if logs := tb.logs.String(); !strings.Contains(logs, `"@level":"error","@message":"issue: signing failed"`) {
		t.Fatalf("the failed issue is not logged at ERROR:\n%s", logs)
	}
	tb.mustWrite(t, "config/aws", map[string]any{
		"access_key": "AKIDTEST", "secret_key": testSecretKey, "region": "us-east-1", "endpoint": awsCfg["endpoint"],
	})
	tb.issue(t, "kms", nil)
	assertNoSecretsInLogs(t, tb)
	if strings.Contains(tb.logs.String(), testSecretKey) {
		t.Fatal("the AWS secret key is in the log")
	}
}

// replicaAPI answers for replica, a multi-Region replica of the KMS key
// primary: another ARN, the same key material.
type replicaAPI struct {
	awskms.API
	primary, replica string
}

func (r replicaAPI) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, f ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	if *in.KeyId != r.replica {
		return r.API.DescribeKey(ctx, in, f...)
	}
	out, err := r.API.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(r.primary)}, f...)
	if err == nil {
		out.KeyMetadata.Arn = aws.String(r.replica)
	}
	return out, err
}

func (r replicaAPI) GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, f ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	if *in.KeyId == r.replica {
		in = &kms.GetPublicKeyInput{KeyId: aws.String(r.primary)}
	}
	return r.API.GetPublicKey(ctx, in, f...)
}

func (r replicaAPI) Sign(ctx context.Context, in *kms.SignInput, f ...func(*kms.Options)) (*kms.SignOutput, error) {
	if *in.KeyId == r.replica {
		cp := *in
		cp.KeyId = aws.String(r.primary)
		in = &cp
	}
	return r.API.Sign(ctx, in, f...)
}

// TestAWSKMSOneKMSKeyOneKey: a KMS key that any version of any key on the
// mount uses, by ARN or by kid (a multi-Region replica), cannot be bound
// again, on create or rotate, whether or not that key is cached; nothing
// changes.
func TestAWSKMSOneKMSKeyOneKey(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	rsa, es := newKMSKey(t, srv, signer.RS256), newKMSKey(t, srv, signer.ES256)
	replica := "arn:aws:kms:us-west-2:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
	orig := tb.newKMSAPI
	tb.newKMSAPI = func(ctx context.Context, c awskms.ClientConfig) (awskms.API, error) {
		api, err := orig(ctx, c)
		return replicaAPI{API: api, primary: es, replica: replica}, err
	}
	tb.dropAWS()
	tb.mustWrite(t, "keys/a-rs", map[string]any{"provider": "awskms", "algorithm": "RS256", "kms_key_id": rsa})
	tb.mustWrite(t, "keys/b", map[string]any{"provider": "awskms", "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	tb.mustWrite(t, "keys/b/rotate", map[string]any{"kms_key_id": es}) // staged, not yet signing
	tb.mustWrite(t, "keys/d", map[string]any{"provider": "awskms", "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	tb.mustWrite(t, "keys/local", nil)
	for _, cold := range []bool{false, true} {
		if cold {
			tb.resetCaches()
		}
		for _, tc := range []struct {
			name, path string
			data       map[string]any
			want       []string
		}{
			{"same ARN, other algorithm", "keys/c", map[string]any{"provider": "awskms", "algorithm": "PS256", "kms_key_id": rsa}, []string{"already uses", `key "a-rs"`}},
			{"same ARN as a staged version", "keys/c", map[string]any{"provider": "awskms", "kms_key_id": es}, []string{"already uses", `version 2 of key "b"`}},
			{"replica of a staged version", "keys/c", map[string]any{"provider": "awskms", "kms_key_id": replica}, []string{"same public key", "multi-Region", `key "b"`}},
			{"rotate to another key's KMS key", "keys/d/rotate", map[string]any{"kms_key_id": es}, []string{"already uses", `key "b"`}},
			{"rotate to a replica of another key's", "keys/d/rotate", map[string]any{"kms_key_id": replica}, []string{"same public key", `key "b"`}},
		} {
			t.Run(fmt.Sprintf("%s cold=%v", tc.name, cold), func(t *testing.T) {
				before := tb.snapshot(t)
				tb.wantBadRequest(t, logical.UpdateOperation, tc.path, tc.data, append([]string{`invalid "kms_key_id"`}, tc.want...)...)
				if after := tb.snapshot(t); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Fatal("storage changed")
				}
			})
		}
	}
}

// TestRegionNames: every region in the AWS SDK's endpoint partitions
// (aws-sdk-go-v2 internal/endpoints/awsrulesfn/partitions.json) is
// accepted, the European Sovereign Cloud's included; pseudo-regions and
// other shapes are not.
func TestRegionNames(t *testing.T) {
	for _, r := range []string{
		"us-east-1", "af-south-1", "ap-southeast-7", "il-central-1", "mx-central-1", "ca-west-1", "sa-west-1",
		"cn-north-1", "cn-northwest-1", "eusc-de-east-1", "us-iso-east-1", "us-isob-west-1", "eu-isoe-west-1",
		"us-isof-south-1", "us-gov-west-1",
	} {
		if err := validateRegion(r); err != nil {
			t.Errorf("%s: %v", r, err)
		}
	}
	for _, r := range []string{"aws-global", "aws-iso-b-global", "us-east-1-fips", "eusc-fr-east-1", "abcd-east-1", "Europe", "eu-west", "eu_west-1"} {
		if err := validateRegion(r); err == nil {
			t.Errorf("%s accepted", r)
		}
	}
}

// TestKMSGovernorPerRegion: one governor, one budget, per region as the
// SDK resolves it and endpoint as normalised: the region from AWS_REGION
// or named, and the region's default endpoint given or not, all share it.
func TestKMSGovernorPerRegion(t *testing.T) {
	tb := getTestBackend(t)
	kmstest.IsolateAWSEnvironment(t)
	t.Setenv("AWS_REGION", "us-east-1")
	ctx := context.Background()
	gov := func(region, endpoint string) *awskms.Governor {
		t.Helper()
		c, err := tb.kmsConn(ctx, tb.storage, &key{Name: "k", Region: region, Endpoint: endpoint})
		if err != nil {
			t.Fatal(err)
		}
		return c.gov
	}
	env := gov("", "")
	for _, same := range [][2]string{
		{"us-east-1", ""},
		{"", "https://kms.us-east-1.amazonaws.com"},
		{"us-east-1", "HTTPS://KMS.us-east-1.amazonaws.com:443/"},
	} {
		if gov(same[0], same[1]) != env {
			t.Errorf("region %q endpoint %q has a governor of its own", same[0], same[1])
		}
	}
	vpce := gov("", "https://vpce-1a2b.kms.us-east-1.vpce.amazonaws.com")
	for _, other := range []*awskms.Governor{gov("eu-west-1", ""), vpce} {
		if other == env {
			t.Error("another region or endpoint shares the governor")
		}
	}
	if gov("", "https://VPCE-1a2b.kms.us-east-1.vpce.amazonaws.com/") != vpce {
		t.Error("the same VPC endpoint spelt differently has a governor of its own")
	}
	if st := tb.mustRead(t, "config/aws").Data["kms"].(map[string]any); len(st) != 3 || st["us-east-1 "] == nil {
		t.Errorf("kms %v: want 3 governors, us-east-1 with the default endpoint among them", st)
	}
}

// TestKMSConfigChangedWhileBuildingClient: config/aws changing while a
// KMS client is built for it (a write, or its Invalidate on a standby)
// makes the build start over once, unseen by the caller; twice in a row
// is a 503 that says to retry, never a 500.
func TestKMSConfigChangedWhileBuildingClient(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	orig := tb.newKMSAPI
	var changes int
	tb.newKMSAPI = func(ctx context.Context, c awskms.ClientConfig) (awskms.API, error) {
		if changes > 0 {
			changes--
			tb.dropAWS()
		}
		return orig(ctx, c)
	}
	tb.dropAWS()
	changes = 1
	tb.issue(t, "r", nil)

	tb.dropAWS()
	changes = 2
	resp, err := tb.request(t, logical.UpdateOperation, "issue/r", nil)
	if code := httpStatus(logical.UpdateOperation, "issue/r", resp, err); code != 503 || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("issue: %d %v, want a 503 saying to retry", code, err)
	}
}

// TestKMSIdleConnectionsClosed: the keep-alive connections of KMS clients
// that config/aws replaced are closed at once, and every one at Clean
// (unmount, reload), rather than lingering for the SDK's idle timeout.
// The test server counts its own connections, so that no other test's,
// closing meanwhile, can make up for one left open; and calls keep their
// connection (awskms.KeepAlive), so that only the backend closes one.
func TestKMSIdleConnectionsClosed(t *testing.T) {
	kmstest.IsolateAWSEnvironment(t)
	k := newCountingKMS(t, false)
	tb := getTestBackend(t)
	k.bind(t, tb, nil)
	wantOpen := func(n int64, when string) {
		t.Helper()
		got := k.open.Load()
		for deadline := time.Now().Add(5 * time.Second); got != n && time.Now().Before(deadline); got = k.open.Load() {
			time.Sleep(5 * time.Millisecond) // the server sees a close when it next reads
		}
		if got != n {
			t.Fatalf("%s: %d connections to KMS open, want %d", when, got, n)
		}
	}
	for i := range 5 {
		tb.mustWrite(t, "config/aws", map[string]any{"max_attempts": 2 + i%2})
		tb.issue(t, "r", nil)
	}
	if n := k.newConns.Load(); n != 6 {
		t.Fatalf("binding a key and 5 issues, each on a new client: %d connections to KMS, want 6", n)
	}
	wantOpen(1, "after 5 config/aws writes, each followed by an issue")
	tb.Cleanup(context.Background())
	wantOpen(0, "after Cleanup")
}
