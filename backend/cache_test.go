package backend

import (
	"context"
	"errors"
	"fmt"
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

// blockingStorage holds one Get of a chosen storage key, after it has read
// the entry, until the test releases it: a slow storage read at a point the
// test controls.
type blockingStorage struct {
	logical.Storage
	mu               sync.Mutex
	key              string
	entered, release chan struct{}
}

// block arms the next Get of key: entered is closed once that Get has read
// the entry, and the Get returns when release is closed.
func (s *blockingStorage) block(key string) (entered, release chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.entered, s.release = key, make(chan struct{}), make(chan struct{})
	return s.entered, s.release
}

func (s *blockingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := s.Storage.Get(ctx, key)
	s.mu.Lock()
	entered, release := s.entered, s.release
	hold := entered != nil && key == s.key
	if hold {
		s.key, s.entered, s.release = "", nil, nil
	}
	s.mu.Unlock()
	if hold {
		close(entered)
		<-release
	}
	return e, err
}

// watchdog bounds a wait that must not depend on the blocked load; it only
// fires when the code under test is wrong.
const watchdog = 10 * time.Second

// TestSlowLoadBlocksNoOtherKey: while one key loads from storage (a miss,
// as on a standby after Invalidate), issue with another, cached key still
// completes. The load used to hold cacheMu exclusively, so a slow storage
// read stalled every reader of the mount.
func TestSlowLoadBlocksNoOtherKey(t *testing.T) {
	st := &blockingStorage{Storage: &logical.InmemStorage{}}
	tb := newTestBackend(t, st, mountInProcess)
	tb.mustWrite(t, "keys/a", nil)
	tb.mustWrite(t, "keys/b", nil)
	tb.mustWrite(t, "roles/ra", map[string]any{"key": "a"})
	tb.mustWrite(t, "roles/rb", map[string]any{"key": "b"})
	tb.issue(t, "ra", nil)
	tb.issue(t, "rb", nil) // every cache warm
	tb.Backend.InvalidateKey(context.Background(), keyPrefix+"a")

	entered, release := st.block(keyPrefix + "a")
	slow := make(chan error, 1)
	go func() {
		resp, err := tb.request(t, logical.UpdateOperation, "issue/ra", nil)
		slow <- errors.Join(err, resp.Error())
	}()
	<-entered
	other := make(chan error, 1)
	go func() {
		resp, err := tb.request(t, logical.UpdateOperation, "issue/rb", nil)
		other <- errors.Join(err, resp.Error())
	}()
	select {
	case err := <-other:
		close(release)
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(watchdog):
		close(release)
		t.Fatal("issue with key b waited for key a's storage read")
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestInvalidateDuringLoad: an Invalidate that arrives while an entry is
// loading returns without waiting for the load, and the entry that load
// read before the change is not cached: the next read loads again and sees
// the new value.
func TestInvalidateDuringLoad(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, path string
		// change writes a new value straight to storage, as another node.
		change func(t *testing.T, tb *testBackend)
		// read returns what the cache serves, as a string to compare.
		read func(tb *testBackend) (string, error)
	}{
		{
			name: "key", path: keyPrefix + "a",
			change: func(t *testing.T, tb *testBackend) {
				k, err := loadKey(ctx, tb.storage, "a")
				if err != nil {
					t.Fatal(err)
				}
				k = k.clone()
				if err := tb.rotateKey(ctx, tb.storage, k, tb.now(), tb.now(), versionOptions{}); err != nil {
					t.Fatal(err)
				}
				putJSON(t, tb, keyPrefix+"a", k)
			},
			read: func(tb *testBackend) (string, error) {
				e, err := tb.getKey(ctx, tb.storage, "a")
				if err != nil {
					return "", err
				}
				return fmt.Sprint(e.key.LatestVersion), nil
			},
		},
		{
			name: "role", path: rolePrefix + "r",
			change: func(t *testing.T, tb *testBackend) {
				r, err := loadRole(ctx, tb.storage, "r")
				if err != nil {
					t.Fatal(err)
				}
				r.TTL = 2 * time.Minute
				putJSON(t, tb, rolePrefix+"r", r)
			},
			read: func(tb *testBackend) (string, error) {
				r, err := tb.getRole(ctx, tb.storage, "r")
				if err != nil {
					return "", err
				}
				return r.TTL.String(), nil
			},
		},
		{
			name: "config", path: configPath,
			change: func(t *testing.T, tb *testBackend) {
				putJSON(t, tb, configPath, &config{Issuer: "https://b.test"})
			},
			read: func(tb *testBackend) (string, error) {
				cfg, err := tb.getConfig(ctx, tb.storage)
				if err != nil {
					return "", err
				}
				return cfg.Issuer, nil
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &blockingStorage{Storage: &logical.InmemStorage{}}
			tb := newTestBackend(t, st, mountInProcess)
			tb.mustWrite(t, "keys/a", nil)
			tb.mustWrite(t, "roles/r", map[string]any{"key": "a", "ttl": "1m"})
			old, err := tc.read(tb)
			if err != nil {
				t.Fatal(err)
			}
			tb.Backend.InvalidateKey(ctx, tc.path) // the next read misses

			entered, release := st.block(tc.path)
			loaded := make(chan error, 1)
			go func() {
				_, err := tc.read(tb)
				loaded <- err
			}()
			<-entered // the load has read the old entry
			tc.change(t, tb)
			invalidated := make(chan struct{})
			go func() {
				tb.Backend.InvalidateKey(ctx, tc.path)
				close(invalidated)
			}()
			select {
			case <-invalidated:
				close(release)
			case <-time.After(watchdog):
				close(release)
				t.Fatal("Invalidate waited for a load in flight")
			}
			if err := <-loaded; err != nil {
				t.Fatal(err)
			}
			got, err := tc.read(tb)
			if err != nil {
				t.Fatal(err)
			}
			if got == old {
				t.Fatalf("after Invalidate: %s, the entry loaded before it; want the new value", got)
			}
		})
	}
}

// putJSON writes v to storage at path directly, as another node would.
func putJSON(t *testing.T, tb *testBackend, path string, v any) {
	t.Helper()
	entry, err := logical.StorageEntryJSON(path, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.storage.Put(context.Background(), entry); err != nil {
		t.Fatal(err)
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
