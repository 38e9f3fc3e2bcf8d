package backend

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// unloadableProvider makes versions as local does, but its stored
// versions never load.
type unloadableProvider struct{ localProvider }

func (unloadableProvider) signer(context.Context, logical.Storage, *key, *keyVersion) (signer.Signer, error) {
	return nil, errors.New("cannot load")
}

// TestKeyVersionThatWouldNotLoadIsNotStored: a new version that getKey
// would not load is refused before anything is written, not stored and
// then reported as a failure on the read-back.
func TestKeyVersionThatWouldNotLoadIsNotStored(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/old", nil)
	tb.providers[providerLocal] = unloadableProvider{}
	for _, req := range []struct{ path, name string }{{"keys/new", "new"}, {"keys/old/rotate", "old"}} {
		before, err := tb.storage.Get(context.Background(), keyPrefix+req.name)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tb.request(t, logical.UpdateOperation, req.path, nil)
		after, gerr := tb.storage.Get(context.Background(), keyPrefix+req.name)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if (before == nil) != (after == nil) || before != nil && string(before.Value) != string(after.Value) {
			t.Fatalf("%s: storage changed by a write that answered %v", req.path, err)
		}
		if code := httpStatus(logical.UpdateOperation, req.path, resp, err); code != 500 || !strings.Contains(err.Error(), "would not load") {
			t.Fatalf("%s: %d %v, want a 500 saying the version would not load", req.path, code, err)
		}
	}
}

// getFailsAfterPut is storage whose Get of a key entry fails once that
// entry has been written: a storage hiccup right after a key write.
type getFailsAfterPut struct {
	logical.Storage
	written atomic.Bool
}

func (s *getFailsAfterPut) Put(ctx context.Context, e *logical.StorageEntry) error {
	if strings.HasPrefix(e.Key, keyPrefix) {
		defer s.written.Store(true)
	}
	return s.Storage.Put(ctx, e)
}

func (s *getFailsAfterPut) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	if strings.HasPrefix(k, keyPrefix) && s.written.Load() {
		return nil, errors.New("storage unavailable")
	}
	return s.Storage.Get(ctx, k)
}

// TestKeyWriteReadBackNeedsNoStorage: once a key write has been stored,
// its answer does not depend on reading storage again.
func TestKeyWriteReadBackNeedsNoStorage(t *testing.T) {
	tb := getTestBackend(t)
	tb.storage = &getFailsAfterPut{Storage: tb.storage}
	d := tb.mustWrite(t, "keys/k", nil).Data
	if d["name"] != "k" || d["current_version"] != 1 {
		t.Fatalf("response %#v", d)
	}
}
