package backend

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// TestInvalidate: a change written by another node (straight to storage
// here) is served once Vault calls Invalidate, and not before.
func TestInvalidate(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "1m"})
	tb.issue(t, "r", nil) // warm the caches

	r, _ := loadRole(context.Background(), tb.storage, "r")
	r.TTL = 2 * time.Minute
	entry, _ := logical.StorageEntryJSON(rolePrefix+"r", r)
	if err := tb.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	if got := tb.issue(t, "r", nil).data["expires_in"]; got != int64(60) {
		t.Fatalf("before Invalidate: expires_in %v, want the cached 60", got)
	}
	tb.Backend.InvalidateKey(context.Background(), rolePrefix+"r")
	if got := tb.issue(t, "r", nil).data["expires_in"]; got != int64(120) {
		t.Fatalf("after Invalidate: expires_in %v, want 120", got)
	}

	// A key rotated elsewhere: the JWKS and issue follow after Invalidate.
	k, _ := loadKey(context.Background(), tb.storage, "k")
	k = k.clone()
	if err := tb.rotateKey(context.Background(), tb.storage, k, tb.now(), tb.now(), versionOptions{}); err != nil {
		t.Fatal(err)
	}
	entry, _ = logical.StorageEntryJSON(keyPrefix+"k", k)
	if err := tb.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	tb.Backend.InvalidateKey(context.Background(), keyPrefix+"k")
	if got := tb.issue(t, "r", nil).header["kid"]; got != k.current(tb.now()).KeyID {
		t.Fatalf("after Invalidate: kid %v, want the new %v", got, k.current(tb.now()).KeyID)
	}
	if kids := jwksKids(t, tb); len(kids) != 2 {
		t.Fatalf("JWKS after Invalidate: %v", kids)
	}
	tb.mustWrite(t, "config", map[string]any{"issuer": "https://a.test"})
	tb.Backend.InvalidateKey(context.Background(), configPath)
	if got := tb.issue(t, "r", nil).claims["iss"]; got != "https://a.test" {
		t.Fatalf("iss %v", got)
	}
}

// failingStorage fails Put, Get or List on demand.
type failingStorage struct {
	logical.Storage
	mu                      sync.Mutex
	failPut, failGet, failL bool
}

var errStorage = errors.New("storage is down")

func (f *failingStorage) set(put, get, list bool) {
	f.mu.Lock()
	f.failPut, f.failGet, f.failL = put, get, list
	f.mu.Unlock()
}

func (f *failingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	f.mu.Lock()
	fail := f.failPut
	f.mu.Unlock()
	if fail {
		return errStorage
	}
	return f.Storage.Put(ctx, e)
}

func (f *failingStorage) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	f.mu.Lock()
	fail := f.failGet
	f.mu.Unlock()
	if fail {
		return nil, errStorage
	}
	return f.Storage.Get(ctx, k)
}

func (f *failingStorage) List(ctx context.Context, p string) ([]string, error) {
	f.mu.Lock()
	fail := f.failL
	f.mu.Unlock()
	if fail {
		return nil, errStorage
	}
	return f.Storage.List(ctx, p)
}

// TestFailedWritesLoseNothing: when storage fails, the request is a 500,
// the failure is logged with key/values and no secret, and what was there
// before is served unchanged.
func TestFailedWritesLoseNothing(t *testing.T) {
	tb := getTestBackend(t)
	fs := &failingStorage{Storage: tb.storage}
	tb.storage = fs
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	kid := tb.issue(t, "r", nil).header["kid"]
	before := tb.snapshot(t)

	fs.set(true, false, false)
	for _, req := range []struct {
		op   logical.Operation
		path string
		data map[string]any
	}{
		{logical.UpdateOperation, "keys/k/rotate", nil},
		{logical.CreateOperation, "keys/k2", nil},
		{logical.UpdateOperation, "roles/r", map[string]any{"ttl": "1m"}},
		{logical.UpdateOperation, "config", map[string]any{"issuer": "https://x.test"}},
	} {
		resp, err := tb.request(t, req.op, req.path, req.data)
		if code := httpStatus(req.op, req.path, resp, err); code != 500 {
			t.Fatalf("%s %s with failing storage: status %d, want 500", req.op, req.path, code)
		}
	}
	fs.set(false, false, false)
	if after := tb.snapshot(t); len(after) != len(before) {
		t.Fatal("a failed write changed storage")
	}
	tok := tb.issue(t, "r", nil)
	if tok.header["kid"] != kid || tok.claims["iss"] != "https://vault.test/v1/jwt" || tok.data["expires_in"] != int64(300) {
		t.Fatalf("after failed writes the engine serves something else: %v %v", tok.header, tok.claims)
	}

	logs := tb.logs.String()
	for _, want := range []string{`"@message":"writing key failed"`, `"key":"k"`, `"error":"writing key \"k\": storage is down"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	assertNoSecretsInLogs(t, tb)
}

// assertNoSecretsInLogs: no private key, token or key material in the log.
func assertNoSecretsInLogs(t *testing.T, tb *testBackend) {
	t.Helper()
	logs := tb.logs.String()
	for _, bad := range []string{"eyJ", "PRIVATE", "private_key"} {
		if strings.Contains(logs, bad) {
			t.Errorf("log contains %q:\n%s", bad, logs)
		}
	}
	names, _ := tb.storage.List(context.Background(), keyPrefix)
	for _, n := range names {
		k, _ := loadKey(context.Background(), tb.storage, n)
		for _, v := range k.Versions {
			if len(v.PrivateKey) > 0 && strings.Contains(logs, string(v.PrivateKey[len(v.PrivateKey)-16:])) {
				t.Error("log contains private key bytes")
			}
		}
	}
}

// TestConcurrentIssueAndRotate runs under -race: issue never fails and
// never signs with a key outside the JWKS while keys rotate and roles change.
func TestConcurrentIssueAndRotate(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 4 {
		wg.Go(func() {
			for range 50 {
				resp, err := tb.request(t, logical.UpdateOperation, "issue/r", nil)
				if err != nil || resp.IsError() {
					errs <- errors.Join(err, resp.Error())
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if resp, err := tb.request(t, logical.UpdateOperation, "keys/k/rotate", map[string]any{"immediate": true}); err != nil || resp.IsError() {
				errs <- errors.Join(err, resp.Error())
				return
			}
			if resp, err := tb.request(t, logical.ReadOperation, "jwks", nil); err != nil || resp.IsError() {
				errs <- errors.Join(err, resp.Error())
				return
			}
			if resp, err := tb.request(t, logical.UpdateOperation, "roles/r", map[string]any{"ttl": "2m"}); err != nil || resp.IsError() {
				errs <- errors.Join(err, resp.Error())
				return
			}
			tb.Backend.InvalidateKey(context.Background(), keyPrefix+"k")
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tok := tb.issue(t, "r", nil)
	if tok.data["kid"] != tb.mustRead(t, "keys/k").Data["current_kid"] {
		t.Fatal("issue does not use the current version after concurrent rotations")
	}
	if got := len(jwksKids(t, tb)); got != 11 {
		t.Fatalf("JWKS has %d keys, want all 11 versions (24h verification_ttl)", got)
	}
}

// countingSystemView counts ReplicationState calls.
type countingSystemView struct {
	logical.StaticSystemView
	calls int
}

func (c *countingSystemView) ReplicationState() consts.ReplicationState {
	c.calls++
	return c.StaticSystemView.ReplicationState()
}

// TestReplicationStateIsCached: the framework asks for the replication
// state on every request; in an external plugin each ask is a call to
// Vault, so the backend answers from a short-lived cache.
func TestReplicationStateIsCached(t *testing.T) {
	sys := &countingSystemView{}
	lb, err := Factory(context.Background(), &logical.BackendConfig{
		Logger: hclog.NewNullLogger(), System: sys, StorageView: &logical.InmemStorage{},
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := lb.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks", Storage: &logical.InmemStorage{}}); err != nil {
			t.Fatal(err)
		}
	}
	if sys.calls != 1 {
		t.Fatalf("ReplicationState called %d times for 50 requests, want 1", sys.calls)
	}
}
