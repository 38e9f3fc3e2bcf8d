package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// TestAWSConfigLimits: every limit of config/aws is enforced at both ends,
// and the ends themselves are allowed; the 400 names the field and the
// rule.
func TestAWSConfigLimits(t *testing.T) {
	tb := getTestBackend(t)
	for _, tc := range []struct {
		name string
		data map[string]any
		want string
	}{
		{"session token without keys", map[string]any{"session_token": "FwoGZXIvYXdzEBY"}, `invalid "session_token": only with access_key and secret_key`},
		{"rate above 100000", map[string]any{"max_requests_per_second": 100001}, `invalid "max_requests_per_second" 100001: must be between 1 and 100000`},
		{"no concurrency", map[string]any{"max_concurrency": 0}, `invalid "max_concurrency" 0: must be between 1 and 4096`},
		{"concurrency above 4096", map[string]any{"max_concurrency": 4097}, `invalid "max_concurrency" 4097: must be between 1 and 4096`},
		{"timeout above a minute", map[string]any{"call_timeout": 61}, `invalid "call_timeout" 1m1s: must be between 1s and 1m`},
		{"no attempts", map[string]any{"max_attempts": 0}, `invalid "max_attempts" 0: must be between 1 and 10`},
		{"no cooldown", map[string]any{"breaker_cooldown": 0}, `invalid "breaker_cooldown" 0s: must be between 1s and 5m`},
		{"cooldown above 5m", map[string]any{"breaker_cooldown": 301}, `invalid "breaker_cooldown" 5m1s: must be between 1s and 5m`},
		{"endpoint with @ in its path", map[string]any{"endpoint": "https://kms.example.com/a@b"}, `invalid "endpoint": must not contain credentials (user:password@) or any "@"`},
		{"endpoint without a host", map[string]any{"endpoint": "https:///kms"}, `invalid "endpoint": must be an http(s) URL with a host`},
		{"endpoint with a port but no host", map[string]any{"endpoint": "https://:443"}, `invalid "endpoint": must be an http(s) URL with a host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "config/aws", tc.data, tc.want)
		})
	}
	for _, ends := range []map[string]any{
		{"max_requests_per_second": 100000, "max_concurrency": 4096, "call_timeout": 60, "max_attempts": 10, "breaker_cooldown": 300},
		{"max_requests_per_second": 1, "max_concurrency": 1, "call_timeout": 1, "max_attempts": 1, "breaker_cooldown": 1},
	} {
		d := tb.mustWrite(t, "config/aws", ends).Data
		for field, want := range ends {
			if got := d[field]; got != want && got != int64(want.(int)) {
				t.Errorf("%s = %v, want %v", field, got, want)
			}
		}
	}
}

// TestAWSConfigDefaults: without config/aws, the documented defaults apply.
func TestAWSConfigDefaults(t *testing.T) {
	tb := getTestBackend(t)
	d := tb.mustRead(t, "config/aws").Data
	for field, want := range map[string]any{
		"access_key": "", "secret_key_set": false, "session_token_set": false, "role_arn": "", "region": "", "endpoint": "",
		"max_requests_per_second": 250, "max_concurrency": 64, "call_timeout": int64(5), "max_attempts": 3, "breaker_cooldown": int64(5),
	} {
		if d[field] != want {
			t.Errorf("%s = %#v, want %#v", field, d[field], want)
		}
	}
}

// failingKMSAPI makes every KMS client build fail, as the AWS SDK does
// when no region can be found.
func failingKMSAPI(context.Context, awskms.ClientConfig) (awskms.API, error) {
	return nil, errors.New("no AWS region is configured")
}

// TestAWSKMSClientBuildFailureStatus: a KMS client that cannot be built is
// the caller's 400 only when the caller named the region or endpoint in
// this very request (a new key with its own); otherwise, for a new key on
// the mount's AWS configuration or a rotation of an existing key, it is
// the server's configuration: a 500.
func TestAWSKMSClientBuildFailureStatus(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	tb.mustWrite(t, "keys/own-region", map[string]any{"provider": "awskms", "region": "us-east-1", "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	tb.newKMSAPI = failingKMSAPI
	tb.dropAWS()
	for _, tc := range []struct {
		name, path string
		data       map[string]any
		status     int
		want       string
	}{
		{"new key with its own region", "keys/new", map[string]any{"provider": "awskms", "region": "eu-west-1", "kms_key_id": "alias/x"}, 400, `invalid "region"/"endpoint": no KMS client can be built for them: no AWS region is configured`},
		{"new key with its own endpoint", "keys/new", map[string]any{"provider": "awskms", "endpoint": "https://kms.example.com", "kms_key_id": "alias/x"}, 400, `invalid "region"/"endpoint": no KMS client can be built for them`},
		{"new key on the mount's configuration", "keys/new", map[string]any{"provider": "awskms", "kms_key_id": "alias/x"}, 500, `no KMS client for key "new"`},
		{"rotation of a key with its own region", "keys/own-region/rotate", map[string]any{"kms_key_id": "alias/x"}, 500, `no KMS client for key "own-region"`},
		{"malformed kms_key_id, before any client is built", "keys/new", map[string]any{"provider": "awskms", "kms_key_id": "my key"}, 400, `invalid "kms_key_id"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tb.snapshot(t)
			resp, err := tb.request(t, logical.UpdateOperation, tc.path, tc.data)
			code := httpStatus(logical.UpdateOperation, tc.path, resp, err)
			msg := fmt.Sprint(err)
			if resp != nil && resp.IsError() {
				msg = resp.Error().Error()
			}
			if code != tc.status || !strings.Contains(msg, tc.want) {
				t.Fatalf("status %d %q, want %d containing %q", code, msg, tc.status, tc.want)
			}
			if after := tb.snapshot(t); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatal("storage changed")
			}
		})
	}
}

// TestKMSHTTPClientFollowsNoRedirect: KMS answers with no redirect, so a
// KMS client's HTTP client follows none: a redirect from an endpoint (a
// misconfigured proxy, a hostile one) does not send the signed request
// elsewhere.
func TestKMSHTTPClientFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { elsewhere.Add(1) }))
	defer target.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()
	hc := newKMSHTTPClient(awskms.BaseTransport(nil), defaultAWSConfig().MaxConcurrency)
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(redirecting.URL, "application/x-amz-json-1.1", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || elsewhere.Load() != 0 {
		t.Fatalf("status %d and %d requests to the redirect's target, want the 307 itself and none", resp.StatusCode, elsewhere.Load())
	}
}

// TestAWSKMSStoredPublicKeyChecked: an awskms version's signer is built
// from storage alone, so what storage says is checked: a public key that
// does not fit the key's algorithm, or a kid that is not its thumbprint,
// is refused rather than published.
func TestAWSKMSStoredPublicKeyChecked(t *testing.T) {
	tb, staged := stagedKey(t)
	k := asAWSKMS(staged)
	p := awskmsProvider{b: tb.backend}
	if _, err := p.signer(t.Context(), tb.storage, k, k.Versions[0]); err != nil {
		t.Fatalf("the untouched version: %v", err)
	}
	for _, tc := range []struct {
		name    string
		corrupt func(k *key, v *keyVersion)
		want    string
	}{
		{"kid not the thumbprint", func(_ *key, v *keyVersion) { v.KeyID = "not-the-thumbprint" }, `stored kid "not-the-thumbprint" is not the public key's thumbprint`},
		{"public key of another curve", func(k *key, _ *keyVersion) { k.Algorithm = signer.ES384 }, "stored public key does not fit ES384"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := k.clone()
			v := k.Versions[0]
			tc.corrupt(k, v)
			if _, err := p.signer(t.Context(), tb.storage, k, v); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("signer: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestKMSConnBuiltConcurrentlyIsShared: two callers that miss the client
// cache at once both build a client, but the second to finish takes the
// first's, so config/aws has one client per region and endpoint and
// dropAWS closes every connection the mount opened.
func TestKMSConnBuiltConcurrentlyIsShared(t *testing.T) {
	tb := getTestBackend(t)
	kmstest.IsolateAWSEnvironment(t)
	tb.mustWrite(t, "config/aws", map[string]any{"region": "eu-west-1"})
	orig := tb.newKMSAPI
	var arrived sync.WaitGroup
	arrived.Add(2)
	tb.newKMSAPI = func(ctx context.Context, c awskms.ClientConfig) (awskms.API, error) {
		arrived.Done()
		arrived.Wait() // both callers are building before either keeps its client
		return orig(ctx, c)
	}
	k := &key{Name: "k"}
	conns := make(chan *kmsConn, 2)
	for range 2 {
		go func() {
			c, err := tb.kmsConn(t.Context(), tb.storage, k)
			if err != nil {
				t.Error(err)
			}
			conns <- c
		}()
	}
	a, b := <-conns, <-conns
	if a == nil || a != b {
		t.Fatalf("concurrent builds kept two clients (%p, %p), want one shared", a, b)
	}
}

// hcRecorder records, per KMS operation, the HTTP client its per-call
// options set.
type hcRecorder struct {
	awskms.API
	mu  sync.Mutex
	hcs map[string]kms.HTTPClient
}

func (r *hcRecorder) record(op string, optFns []func(*kms.Options)) {
	var o kms.Options
	for _, f := range optFns {
		f(&o)
	}
	r.mu.Lock()
	r.hcs[op] = o.HTTPClient
	r.mu.Unlock()
}

func (r *hcRecorder) DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	r.record("DescribeKey", optFns)
	return r.API.DescribeKey(ctx, in, optFns...)
}

func (r *hcRecorder) GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	r.record("GetPublicKey", optFns)
	return r.API.GetPublicKey(ctx, in, optFns...)
}

func (r *hcRecorder) Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error) {
	r.record("Sign", optFns)
	return r.API.Sign(ctx, in, optFns...)
}

// TestKMSCallsUseTheClosableClient: every KMS call, those that bind a key
// (DescribeKey, GetPublicKey, the probe Sign) as well as Sign, goes
// through the HTTP client whose idle connections dropAWS and Clean close,
// not the SDK's own, whose connections would outlive a config/aws change;
// and through awskms.KeepAlive, without which calls lose their connection.
func TestKMSCallsUseTheClosableClient(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	orig := tb.newKMSAPI
	rec := &hcRecorder{hcs: map[string]kms.HTTPClient{}}
	tb.newKMSAPI = func(ctx context.Context, c awskms.ClientConfig) (awskms.API, error) {
		api, err := orig(ctx, c)
		rec.API = api
		return rec, err
	}
	tb.dropAWS()
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	tb.awsMu.Lock()
	conn := tb.aws.conns[connID{}]
	tb.awsMu.Unlock()
	if conn == nil {
		t.Fatal("no KMS client for config/aws")
	}
	for _, op := range []string{"DescribeKey", "GetPublicKey", "Sign"} {
		if hc, ok := rec.hcs[op]; !ok || hc != awskms.KeepAlive(conn.hc) {
			t.Errorf("%s went through %v, want the client's closable HTTP client %p, wrapped by awskms.KeepAlive", op, hc, conn.hc)
		}
	}
}

// TestInvalidateAWSConfig: a config/aws change written on another node
// is used once Vault calls Invalidate, and not the cached one.
func TestInvalidateAWSConfig(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "config/aws", map[string]any{"region": "eu-west-1"})
	tb.mustRead(t, "config/aws") // cached
	entry, err := logical.StorageEntryJSON(configAWSPath, &awsConfig{Region: "us-east-2", MaxRequestsPerSecond: 10, MaxConcurrency: 2, CallTimeout: time.Second, MaxAttempts: 1, BreakerCooldown: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.storage.Put(t.Context(), entry); err != nil {
		t.Fatal(err)
	}
	if r := tb.mustRead(t, "config/aws").Data["region"]; r != "eu-west-1" {
		t.Fatalf("before Invalidate: region %v, want the cached eu-west-1", r)
	}
	tb.Backend.InvalidateKey(t.Context(), configAWSPath)
	if d := tb.mustRead(t, "config/aws").Data; d["region"] != "us-east-2" || d["max_attempts"] != 1 {
		t.Fatalf("after Invalidate: %v, want the stored configuration", d)
	}
}

// TestKMSThrottlingLoggedAtWarn: KMS throttling an issue is the caller's
// 429 and KMS's load, not an engine failure: it is logged at WARN with
// the status, never at ERROR.
func TestKMSThrottlingLoggedAtWarn(t *testing.T) {
	tb, srv, _ := kmsBackend(t)
	tb.mustWrite(t, "config/aws", map[string]any{"max_attempts": 1})
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	srv.SetFaults(kmstest.Faults{ThrottleRate: 1})
	defer srv.SetFaults(kmstest.Faults{})
	resp, err := tb.request(t, logical.UpdateOperation, "issue/r", nil)
	if code := httpStatus(logical.UpdateOperation, "issue/r", resp, err); code != 429 {
		t.Fatalf("status %d (%v), want 429", code, err)
	}
	logs := tb.logs.String()
	if !strings.Contains(logs, `"@level":"warn","@message":"issue: signing failed"`) || !strings.Contains(logs, `"status":429`) {
		t.Fatalf("the throttled issue is not logged at WARN with its status:\n%s", logs)
	}
	if strings.Contains(logs, `"@level":"error"`) {
		t.Fatalf("a throttled issue logged at ERROR:\n%s", logs)
	}
}

// TestKMSClientOfAReplacedConfigNotKept: config/aws replaced and loaded
// again (by another request) while a client is built for the old one: the
// client is not kept, and the one built next uses the new configuration.
func TestKMSClientOfAReplacedConfigNotKept(t *testing.T) {
	tb := getTestBackend(t)
	kmstest.IsolateAWSEnvironment(t)
	tb.mustWrite(t, "config/aws", map[string]any{"region": "eu-west-1", "max_attempts": 2})
	orig := tb.newKMSAPI
	var built []awskms.ClientConfig
	var apis []awskms.API
	tb.newKMSAPI = func(ctx context.Context, c awskms.ClientConfig) (awskms.API, error) {
		api, err := orig(ctx, c)
		built, apis = append(built, c), append(apis, api)
		if len(built) == 1 {
			newer := defaultAWSConfig()
			newer.Region, newer.MaxAttempts = "eu-west-1", 5
			putJSON(t, tb, configAWSPath, newer)
			tb.dropAWS()
			if _, err := tb.getAWSConfig(ctx, tb.storage); err != nil { // another request loads it
				t.Error(err)
			}
		}
		return api, err
	}
	c, err := tb.kmsConn(t.Context(), tb.storage, &key{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != 2 || built[1].MaxAttempts != 5 || c.api.(kmsHTTPAPI).API != apis[1] {
		t.Fatalf("built %d clients (%+v); want the one for max_attempts 2 dropped and one built for max_attempts 5 kept", len(built), built)
	}
}
