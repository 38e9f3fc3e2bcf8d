package backend

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestJWKSSkipsEveryUnloadableKey: a stored key entry that does not decode,
// or decodes to an invalid key, is left out of the JWKS like one whose
// signers cannot be built: the other keys are served, and the set is
// cached briefly. None of them makes the JWKS a 500.
func TestJWKSSkipsEveryUnloadableKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry func(good string) string
	}{
		{"not JSON", func(string) string { return "{not json" }},
		{"invalid", func(good string) string {
			return strings.Replace(strings.Replace(good, `"name":"good"`, `"name":"bad"`, 1), `"latest_version":1`, `"latest_version":0`, 1)
		}},
		{"signer does not match", func(good string) string {
			return strings.NewReplacer(`"name":"good"`, `"name":"bad"`, `"public_key":"`, `"public_key":"AAAA`).Replace(good)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := getTestBackend(t)
			tb.mustWrite(t, "keys/good", nil)
			entry, err := tb.storage.Get(t.Context(), keyPrefix+"good")
			if err != nil {
				t.Fatal(err)
			}
			bad := &logical.StorageEntry{Key: keyPrefix + "bad", Value: []byte(tc.entry(string(entry.Value)))}
			if string(bad.Value) == string(entry.Value) {
				t.Fatal("the entry was not changed: the test proves nothing")
			}
			if err := tb.storage.Put(t.Context(), bad); err != nil {
				t.Fatal(err)
			}
			tb.invalidate(t.Context(), bad.Key)
			set, resp := readJWKS(t, tb, "jwks")
			if len(set.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want the good one", len(set.Keys))
			}
			if cc := resp.Data[logical.HTTPCacheControlHeader]; cc != "public, max-age=30" {
				t.Fatalf("Cache-Control %v, want max-age=30 for a set that lacks a key", cc)
			}
			if logs := tb.logs.String(); !strings.Contains(logs, `"@level":"error","@message":"JWKS: key cannot be loaded`) || !strings.Contains(logs, `"key":"bad"`) {
				t.Fatalf("not logged at ERROR with the key's name:\n%s", logs)
			}
		})
	}
}

// TestJWKSBuiltAcrossAKeyWriteIsNotCached: a JWKS build that listed the
// keys before a key write finishes after it; what it built lacks the new
// key, so it is answered but not cached, and the next read has the key.
func TestJWKSBuiltAcrossAKeyWriteIsNotCached(t *testing.T) {
	st := &blockingStorage{Storage: &logical.InmemStorage{}}
	tb := newTestBackend(t, st, mountInProcess)
	tb.mustWrite(t, "keys/a", nil)
	tb.invalidate(context.Background(), keyPrefix+"a") // the build loads a from storage

	entered, release := st.block(keyPrefix + "a")
	built := make(chan error, 1)
	go func() {
		_, err := tb.request(t, logical.ReadOperation, "jwks", nil)
		built <- err
	}()
	select {
	case <-entered: // the build has listed [a] and is loading a
	case <-time.After(watchdog):
		close(release)
		t.Fatal("the JWKS build did not load key a")
	}
	tb.mustWrite(t, "keys/b", nil)
	close(release)
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	if kids := jwksKids(t, tb); len(kids) != 2 {
		t.Fatalf("JWKS has %v after key b was written, want a's and b's kids: a set built before the write was cached", kids)
	}
}

// TestJWKSPublishesSharedMaterialOnce: two keys holding the same key
// material (one entry copied to another name) have the same thumbprint
// kid; the JWKS carries it once, and says so at WARN.
func TestJWKSPublishesSharedMaterialOnce(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/a", nil)
	entry, err := tb.storage.Get(t.Context(), keyPrefix+"a")
	if err != nil {
		t.Fatal(err)
	}
	copied := &logical.StorageEntry{Key: keyPrefix + "b", Value: []byte(strings.Replace(string(entry.Value), `"name":"a"`, `"name":"b"`, 1))}
	if err := tb.storage.Put(t.Context(), copied); err != nil {
		t.Fatal(err)
	}
	if kids := jwksKids(t, tb); len(kids) != 1 { // readJWKS fails on a repeated kid
		t.Fatalf("JWKS kids %v, want the shared one once", kids)
	}
	if logs := tb.logs.String(); !strings.Contains(logs, `"@level":"warn","@message":"same key material in two keys; publishing it once"`) {
		t.Fatalf("not logged at WARN:\n%s", logs)
	}
}

// TestJWKSMaxAgeIsTheEarliestEnd: with several versions due to leave the
// set, the set is cached, by the engine and by verifiers, only until the
// first of them leaves, whichever key it belongs to; a key that cannot be
// loaded does not stretch that.
func TestJWKSMaxAgeIsTheEarliestEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second func(t *testing.T, tb *testBackend)
		after  time.Duration // from the rotations to the JWKS read
		want   string
	}{
		{"another key's version leaves later", func(t *testing.T, tb *testBackend) {
			tb.mustWrite(t, "keys/b", map[string]any{"verification_ttl": "2h"})
			tb.mustWrite(t, "keys/b/rotate", map[string]any{"immediate": true})
		}, 58 * time.Minute, "public, max-age=120"},
		{"a key that cannot be loaded", func(t *testing.T, tb *testBackend) {
			if err := tb.storage.Put(t.Context(), &logical.StorageEntry{Key: keyPrefix + "bad", Value: []byte("{not json")}); err != nil {
				t.Fatal(err)
			}
		}, time.Hour - 10*time.Second, "public, max-age=10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := getTestBackend(t)
			tb.mustWrite(t, "keys/a", map[string]any{"verification_ttl": "1h"})
			tb.mustWrite(t, "keys/a/rotate", map[string]any{"immediate": true}) // a's version 1 leaves in 1h
			a1 := tb.mustRead(t, "keys/a").Data["versions"].(map[string]any)["1"].(map[string]any)["kid"].(string)
			tc.second(t, tb)
			tb.clock.Add(tc.after)
			if _, resp := readJWKS(t, tb, "jwks"); resp.Data[logical.HTTPCacheControlHeader] != tc.want {
				t.Fatalf("Cache-Control %v, want %s: a's version 1 leaves the set then", resp.Data[logical.HTTPCacheControlHeader], tc.want)
			}
			tb.clock.Add(time.Hour - tc.after)
			if kids := jwksKids(t, tb); slices.Contains(kids, a1) {
				t.Fatalf("JWKS still has a's version 1 (%s) after its publication ended: %v", a1, kids)
			}
		})
	}
}
