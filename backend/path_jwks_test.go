package backend

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// jwksKids reads the JWKS as a verifier would and returns its kids.
func jwksKids(t *testing.T, tb *testBackend) []string {
	t.Helper()
	set, _ := readJWKS(t, tb, "jwks")
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

func readJWKS(t *testing.T, tb *testBackend, path string) (signer.JWKSet, *logical.Response) {
	t.Helper()
	resp := tb.mustRead(t, path)
	if ct := resp.Data[logical.HTTPContentType]; ct != "application/jwk-set+json" {
		t.Fatalf("content type %v", ct)
	}
	if code := resp.Data[logical.HTTPStatusCode]; code != 200 {
		t.Fatalf("status %v", code)
	}
	raw := resp.Data[logical.HTTPRawBody].([]byte)
	var generic map[string][]map[string]any
	decodeJSON(t, raw, &generic)
	seen := map[string]bool{}
	for _, k := range generic["keys"] {
		for _, member := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, ok := k[member]; ok {
				t.Fatalf("JWK has private member %q", member)
			}
		}
		kid, _ := k["kid"].(string)
		if kid == "" || seen[kid] {
			t.Fatalf("JWK kid %q empty or repeated", kid)
		}
		seen[kid] = true
	}
	var set signer.JWKSet
	decodeJSON(t, raw, &set)
	return set, resp
}

func TestJWKS(t *testing.T) {
	tb := getTestBackend(t)
	set, resp := readJWKS(t, tb, "jwks")
	if len(set.Keys) != 0 || string(resp.Data[logical.HTTPRawBody].([]byte)) != `{"keys":[]}` {
		t.Fatalf("empty JWKS: %s", resp.Data[logical.HTTPRawBody])
	}
	for _, alg := range signer.Algorithms() {
		tb.mustWrite(t, "keys/"+strings.ToLower(string(alg)), map[string]any{"algorithm": string(alg)})
	}
	set, resp = readJWKS(t, tb, "jwks")
	if len(set.Keys) != len(signer.Algorithms()) {
		t.Fatalf("JWKS has %d keys", len(set.Keys))
	}
	if cc := resp.Data[logical.HTTPCacheControlHeader]; cc != "public, max-age=300" {
		t.Fatalf("Cache-Control %v", cc)
	}
	same, _ := readJWKS(t, tb, ".well-known/keys")
	a, _ := json.Marshal(set)
	b, _ := json.Marshal(same)
	if string(a) != string(b) {
		t.Fatal("jwks and .well-known/keys differ")
	}

	// Every JWK is the key's public key, with full-width EC coordinates.
	for _, jwk := range set.Keys {
		name := strings.ToLower(jwk.Alg)
		k, err := loadKey(t.Context(), tb.storage, name)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := x509.ParsePKIXPublicKey(k.current(time.Now()).PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := signer.PublicJWK(signer.Algorithm(jwk.Alg), k.current(time.Now()).KeyID, pub)
		if want != jwk {
			t.Errorf("%s: JWKS has %+v, want %+v", name, jwk, want)
		}
		if tp, _ := signer.Thumbprint(pub); tp != jwk.Kid {
			t.Errorf("%s: kid %s is not the RFC 7638 thumbprint %s", name, jwk.Kid, tp)
		}
		if in := signer.Algorithm(jwk.Alg).Info(); in.KeyType == signer.KeyTypeEC {
			width := (in.SignatureSize/2*8 + 5) / 6 // base64url chars of one coordinate
			if len(jwk.X) != width || len(jwk.Y) != width {
				t.Errorf("%s: coordinates are %d and %d chars, want %d", jwk.Alg, len(jwk.X), len(jwk.Y), width)
			}
		}
	}
}

// TestJWKSMaxAgeNeverOutlivesPublication: a verifier caching the JWKS must
// not keep trusting a version past its publication.
func TestJWKSMaxAgeNeverOutlivesPublication(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": "1h"})
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	for _, tc := range []struct {
		advance time.Duration
		want    string
	}{
		{0, "public, max-age=300"},
		{58 * time.Minute, "public, max-age=120"},
		{90 * time.Second, "public, max-age=30"},
		{30 * time.Second, "public, max-age=300"}, // the old version is gone
	} {
		tb.clock.Add(tc.advance)
		_, resp := readJWKS(t, tb, "jwks")
		if cc := resp.Data[logical.HTTPCacheControlHeader]; cc != tc.want {
			t.Fatalf("after %s: Cache-Control %v, want %s", tc.advance, cc, tc.want)
		}
	}
}

// TestDiscovery: the document is served only for an issuer that is an
// absolute http(s) URL with a host (OIDC Discovery 1.0 §3: issuer and
// jwks_uri are URLs); any other issuer, allowed as a token's "iss", gets
// the same 404 as no issuer, saying why.
func TestDiscovery(t *testing.T) {
	tb := getTestBackend(t)
	for _, tc := range []struct {
		issuer   string
		jwksURI  string // "" for a 404
		notFound string // what the 404 says
	}{
		{"https://vault.test/v1/jwt", "https://vault.test/v1/jwt/.well-known/keys", ""},
		{"https://vault.test/v1/jwt/", "https://vault.test/v1/jwt/.well-known/keys", ""},
		{"http://127.0.0.1:8200/v1/jwt", "http://127.0.0.1:8200/v1/jwt/.well-known/keys", ""},
		{"HTTPS://Vault.Test/v1/jwt", "HTTPS://Vault.Test/v1/jwt/.well-known/keys", ""},
		{"", "", "no issuer configured"},
		{"vault-jwt", "", "discovery needs an issuer that is an http(s) URL"},
		{"urn:example:issuer", "", "discovery needs an issuer that is an http(s) URL"},
		{"https:vault.test/v1/jwt", "", "discovery needs an issuer that is an http(s) URL"},
		{"https://:8200/v1/jwt", "", "discovery needs an issuer that is an http(s) URL"},
		{"ftp://vault.test/v1/jwt", "", "discovery needs an issuer that is an http(s) URL"},
		{"spiffe://vault.test/jwt", "", "discovery needs an issuer that is an http(s) URL"},
		// An empty query: a valid "iss" (it has no query to refuse), but
		// <issuer>/.well-known/keys would put the path in the query.
		{"https://vault.test/v1/jwt?", "", "discovery needs an issuer that is an http(s) URL"},
		// An empty fragment likewise: Go parses "#" as no fragment, and
		// the jwks_uri would be all fragment.
		{"https://vault.test/v1/jwt#", "", "discovery needs an issuer that is an http(s) URL"},
	} {
		t.Run(tc.issuer, func(t *testing.T) {
			tb.mustWrite(t, "config", map[string]any{"issuer": tc.issuer})
			if tc.jwksURI == "" {
				resp, err := tb.request(t, logical.ReadOperation, ".well-known/openid-configuration", nil)
				if code := httpStatus(logical.ReadOperation, ".well-known/openid-configuration", resp, err); code != 404 {
					body, _ := resp.Data[logical.HTTPRawBody].([]byte)
					t.Fatalf("status %d, body %s; want 404", code, body)
				}
				if err == nil || !strings.Contains(err.Error(), tc.notFound) {
					t.Fatalf("404 says %v, want %q", err, tc.notFound)
				}
				return
			}
			resp := tb.mustRead(t, ".well-known/openid-configuration")
			var doc map[string]any
			decodeJSON(t, resp.Data[logical.HTTPRawBody].([]byte), &doc)
			if doc["issuer"] != tc.issuer || doc["jwks_uri"] != tc.jwksURI {
				t.Fatalf("discovery: %v", doc)
			}
			if algs := doc["id_token_signing_alg_values_supported"].([]any); len(algs) != 10 {
				t.Fatalf("algs: %v", algs)
			}
		})
	}
}

// TestDiscoveryNotFoundNamesTheMount: the 404's hint names the config path
// of the mount the request came to, which need not be jwt/ (policy.md's
// tenants are jwt-a/ and jwt-b/).
func TestDiscoveryNotFoundNamesTheMount(t *testing.T) {
	for _, tc := range []struct {
		mount, issuer, want string
	}{
		{"jwt/", "", `no issuer configured: write "issuer" to jwt/config`},
		{"jwt-a/", "", `no issuer configured: write "issuer" to jwt-a/config`},
		{"team/jwt/", "", `no issuer configured: write "issuer" to team/jwt/config`},
		{"jwt-b/", "vault-jwt", `discovery needs an issuer that is an http(s) URL, such as https://vault.example.com/v1/jwt: jwt-b/config's issuer is not one`},
	} {
		t.Run(tc.mount+tc.issuer, func(t *testing.T) {
			tb := getTestBackend(t)
			tb.mountPoint = tc.mount
			tb.mustWrite(t, "config", map[string]any{"issuer": tc.issuer})
			_, err := tb.request(t, logical.ReadOperation, ".well-known/openid-configuration", nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("404 says %v, want %q", err, tc.want)
			}
		})
	}
}

// TestJWKSSkipsUnloadableKey: one key whose stored entry cannot be loaded
// is left out of the JWKS and logged at ERROR; the other keys are still
// published, and verify still finds them. The set is cached only briefly.
func TestJWKSSkipsUnloadableKey(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/good", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "good"})
	tok := tb.issue(t, "r", nil).data["token"].(string)
	entry, err := tb.storage.Get(context.Background(), keyPrefix+"good")
	if err != nil {
		t.Fatal(err)
	}
	bad := &logical.StorageEntry{Key: keyPrefix + "bad", Value: []byte(strings.NewReplacer(`"name":"good"`, `"name":"bad"`, `"public_key":"`, `"public_key":"AAAA`).Replace(string(entry.Value)))}
	if err := tb.storage.Put(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	tb.invalidate(context.Background(), bad.Key)
	set, resp := readJWKS(t, tb, "jwks")
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want the good one", len(set.Keys))
	}
	if cc := resp.Data[logical.HTTPCacheControlHeader]; cc != "public, max-age=30" {
		t.Fatalf("Cache-Control %v, want max-age=30 for a set that lacks a key", cc)
	}
	if active, reason, _ := tb.verify(t, tok, ""); !active {
		t.Fatalf("verify: %s", reason)
	}
	if logs := tb.logs.String(); !strings.Contains(logs, `"@level":"error","@message":"JWKS: key cannot be loaded`) || !strings.Contains(logs, `"key":"bad"`) {
		t.Fatalf("not logged at ERROR with the key's name:\n%s", logs)
	}
}

// TestJWKSStorageFailureIsNotASmallerSet: a key that storage fails to
// return is not left out as an unloadable one would be: the JWKS is a 500,
// since a set without it would fail its valid tokens at every verifier
// that fetched it.
func TestJWKSStorageFailureIsNotASmallerSet(t *testing.T) {
	tb := getTestBackend(t)
	fs := &failingStorage{Storage: tb.storage}
	tb.storage = fs
	tb.mustWrite(t, "keys/a", nil)
	tb.mustWrite(t, "keys/b", nil)
	if set, _ := readJWKS(t, tb, "jwks"); len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(set.Keys))
	}
	tb.invalidate(context.Background(), keyPrefix+"b") // b is read from storage again
	fs.set(false, true, false)
	resp, err := tb.request(t, logical.ReadOperation, "jwks", nil)
	if err == nil || !errors.Is(err, errStorage) {
		t.Fatalf("JWKS with key b unreadable: resp=%v err=%v, want the storage error (a 500)", resp, err)
	}
	fs.set(false, false, false)
	if set, _ := readJWKS(t, tb, "jwks"); len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys once storage is back, want 2", len(set.Keys))
	}
}
