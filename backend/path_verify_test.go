package backend

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

func b64s(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// verify calls the verify path and returns active and reason.
func (tb *testBackend) verify(t *testing.T, token, audience string) (bool, string, map[string]any) {
	t.Helper()
	data := map[string]any{"token": token}
	if audience != "" {
		data["audience"] = audience
	}
	resp := tb.mustWrite(t, "verify", data)
	reason, _ := resp.Data["reason"].(string)
	claims, _ := resp.Data["claims"].(map[string]any)
	return resp.Data["active"].(bool), reason, claims
}

// TestVerifyAttacks is the table of known attacks on JWT verifiers; each
// forged token must be inactive.
func TestVerifyAttacks(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/es", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "keys/rs", map[string]any{"algorithm": "RS256"})
	tb.mustWrite(t, "roles/es", map[string]any{"key": "es", "audiences": "api"})
	tb.mustWrite(t, "roles/rs", map[string]any{"key": "rs", "audiences": "api"})
	good := tb.mustWrite(t, "issue/es", nil).Data["token"].(string)
	rsTok := tb.mustWrite(t, "issue/rs", nil).Data["token"].(string)

	active, reason, claims := tb.verify(t, good, "api")
	if !active || claims["aud"] != "api" {
		t.Fatalf("the good token is not active: %s", reason)
	}
	if active, _, _ := tb.verify(t, rsTok, ""); !active {
		t.Fatal("the RS256 token is not active")
	}

	parts := strings.Split(good, ".")
	header, payload := decodeSegment(t, parts[0]), parts[1]
	esKid := header["kid"].(string)
	rsKid := decodeSegment(t, strings.Split(rsTok, ".")[0])["kid"].(string)
	hdr := func(h string) string { return b64s([]byte(h)) }

	// RS→HS confusion: HMAC with the RSA public key (PEM) as the secret.
	e, _ := tb.getKey(t.Context(), tb.storage, "rs")
	pubDER, _ := x509.MarshalPKIXPublicKey(e.signers[e.key.current(time.Now()).Version].Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hsInput := hdr(`{"alg":"HS256","kid":"`+rsKid+`","typ":"JWT"}`) + "." + strings.Split(rsTok, ".")[1]
	mac := hmac.New(sha256.New, pubPEM)
	mac.Write([]byte(hsInput))
	hsToken := hsInput + "." + b64s(mac.Sum(nil))

	// An attacker's own key, embedded as jwk or served from jku/x5u.
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var fetched atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		fmt.Fprint(w, `{"keys":[]}`)
	}))
	defer srv.Close()
	signAs := func(h string) string {
		input := hdr(h) + "." + payload
		digest := sha256.Sum256([]byte(input))
		der, _ := ecdsa.SignASN1(rand.Reader, attacker, digest[:])
		sig, _ := signer.ECDSAToJOSE(signer.ES256, der)
		return input + "." + b64s(sig)
	}
	jwk, _ := signer.PublicJWK(signer.ES256, "evil", &attacker.PublicKey)
	jwkJSON := fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, jwk.X, jwk.Y)

	// Claims forged under our own header and kid, with a good signature
	// impossible: kept to test claim checks via a really issued token.
	now := tb.clock.Now().Unix()
	// Signed with the real key: the claim checks, not the signature, must
	// refuse these.
	withClaims := func(c string) string { return tb.signClaims(t, "es", parts[0], c) }

	for _, tc := range []struct {
		name, token, audience, want string
	}{
		{"alg none", hdr(`{"alg":"none","kid":"`+esKid+`"}`) + "." + payload + ".", "", "empty header or signature"},
		{"alg none with a signature", hdr(`{"alg":"none","kid":"`+esKid+`"}`) + "." + payload + "." + parts[2], "", "unknown algorithm"},
		{"alg NoNe", hdr(`{"alg":"NoNe","kid":"`+esKid+`"}`) + "." + payload + "." + parts[2], "", "unknown algorithm"},
		{"RS256 key used as HS256 secret", hsToken, "", "unknown algorithm"},
		{"alg switched to the other key's", hdr(`{"alg":"RS256","kid":"`+esKid+`"}`) + "." + payload + "." + parts[2], "", "does not match the key's algorithm"},
		{"embedded jwk", signAs(`{"alg":"ES256","kid":"evil","jwk":` + jwkJSON + `}`), "", `"jwk" is not accepted`},
		{"jku to a loopback server", signAs(`{"alg":"ES256","kid":"evil","jku":"` + srv.URL + `"}`), "", `"jku" is not accepted`},
		{"x5u to a loopback server", signAs(`{"alg":"ES256","kid":"evil","x5u":"` + srv.URL + `"}`), "", `"x5u" is not accepted`},
		{"attacker key, our kid", signAs(`{"alg":"ES256","kid":"` + esKid + `"}`), "", "invalid signature"},
		{"kid path traversal", signAs(`{"alg":"ES256","kid":"../../../../etc/passwd"}`), "", "no published key version"},
		{"kid SQL", signAs(`{"alg":"ES256","kid":"' OR 1=1 --"}`), "", "no published key version"},
		{"kid command", signAs(`{"alg":"ES256","kid":"$(touch /tmp/pwned)|id"}`), "", "no published key version"},
		{"no kid", signAs(`{"alg":"ES256"}`), "", `no "kid"`},
		{"psychic signature (r = s = 0)", parts[0] + "." + payload + "." + b64s(make([]byte, 64)), "", "r and s must be in [1, n-1]"},
		{"signature in DER", parts[0] + "." + payload + "." + b64s(append([]byte{0x30, 0x44}, make([]byte, 68)...)), "", "want 64"},
		{"crit", hdr(`{"alg":"ES256","kid":"`+esKid+`","crit":["exp"]}`) + "." + payload + "." + parts[2], "", `"crit" is not accepted`},
		{"many dots", strings.Repeat(".", 100000), "", "more than 16384"},
		{"line break in the signature (the same token spelt otherwise)", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\r\n" + parts[2][10:], "", "base64url alphabet"},
		{"trailing bits in the signature", parts[0] + "." + payload + "." + parts[2][:len(parts[2])-1] + "B", "", "not unpadded base64url"},
		{"wrong audience", good, "other", "audience"},
		{"expired", withClaims(fmt.Sprintf(`{"iss":"https://vault.test/v1/jwt","exp":%d}`, now-60)), "", "expired"},
		{"no exp", withClaims(`{"iss":"https://vault.test/v1/jwt"}`), "", `no "exp"`},
		{"nbf in the future", withClaims(fmt.Sprintf(`{"iss":"https://vault.test/v1/jwt","exp":%d,"nbf":%d}`, now+600, now+120)), "", `"nbf" is in the future`},
		{"iat in the future", withClaims(fmt.Sprintf(`{"iss":"https://vault.test/v1/jwt","exp":%d,"iat":%d}`, now+600, now+120)), "", `"iat" is in the future`},
		{"someone else's iss", withClaims(fmt.Sprintf(`{"iss":"https://evil.test","exp":%d}`, now+600)), "", "not this mount's"},
		{"duplicate claims", withClaims(fmt.Sprintf(`{"iss":"https://vault.test/v1/jwt","exp":%d,"sub":"a","sub":"admin"}`, now+600)), "", `repeats the member name "sub"`},
		{"duplicate nested claims", withClaims(fmt.Sprintf(`{"iss":"https://vault.test/v1/jwt","exp":%d,"act":{"sub":"a","sub":"admin"}}`, now+600)), "", `repeats the member name "sub"`},
		{"JWE", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", "", "dots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			active, reason, _ := tb.verify(t, tc.token, tc.audience)
			if active || !strings.Contains(reason, tc.want) {
				t.Fatalf("active=%v reason=%q, want inactive with %q", active, reason, tc.want)
			}
		})
	}
	if n := fetched.Load(); n != 0 {
		t.Fatalf("the verifier fetched a key URL %d times", n)
	}
}

// signClaims returns a token of claims under the header segment header,
// signed by key's current version: a token verify can check only by its
// claims.
func (tb *testBackend) signClaims(t *testing.T, key, header, claims string) string {
	t.Helper()
	ke, err := tb.getKey(t.Context(), tb.storage, key)
	if err != nil || ke == nil {
		t.Fatalf("key %s: %v", key, err)
	}
	tok, err := signer.SignCompact(t.Context(), ke.signers[ke.key.current(time.Now()).Version], header, []byte(claims))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestVerifyLeeway: verify allows exactly 30 seconds of clock skew on exp,
// nbf and iat, no more.
func TestVerifyLeeway(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	header := strings.Split(tb.mustWrite(t, "issue/r", nil).Data["token"].(string), ".")[0]
	now := tb.clock.Now().Unix()
	for _, tc := range []struct {
		name   string
		claims string // after iss
		want   string // the reason, or "" for active
	}{
		{"expired 29s ago", fmt.Sprintf(`"exp":%d`, now-29), ""},
		{"expired 30s ago", fmt.Sprintf(`"exp":%d`, now-30), "expired at"},
		{"nbf 30s ahead", fmt.Sprintf(`"exp":%d,"nbf":%d`, now+600, now+30), ""},
		{"nbf 31s ahead", fmt.Sprintf(`"exp":%d,"nbf":%d`, now+600, now+31), `"nbf" is in the future`},
		{"iat 30s ahead", fmt.Sprintf(`"exp":%d,"iat":%d`, now+600, now+30), ""},
		{"iat 31s ahead", fmt.Sprintf(`"exp":%d,"iat":%d`, now+600, now+31), `"iat" is in the future`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tb.signClaims(t, "k", header, `{"iss":"https://vault.test/v1/jwt",`+tc.claims+`}`)
			active, reason, _ := tb.verify(t, tok, "")
			if active != (tc.want == "") || !strings.Contains(reason, tc.want) {
				t.Fatalf("active=%v reason=%q, want %q (empty: active)", active, reason, tc.want)
			}
		})
	}
}

// TestVerifyKeyLifecycle: a rotated-out version verifies until its
// publication ends, then its tokens are unknown.
func TestVerifyKeyLifecycle(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA", "verification_ttl": "1h"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "30m", "max_ttl": "1h"})
	tok := tb.mustWrite(t, "issue/r", nil).Data["token"].(string)
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	tb.clock.Add(20 * time.Minute)
	if active, reason, _ := tb.verify(t, tok, ""); !active {
		t.Fatalf("old version's token not active within its lifetime: %s", reason)
	}
	tb.clock.Add(11 * time.Minute)
	if active, reason, _ := tb.verify(t, tok, ""); active || !strings.Contains(reason, "expired") {
		t.Fatalf("after expiry: %v %s", active, reason)
	}
	tb.clock.Add(30 * time.Minute)
	if active, reason, _ := tb.verify(t, tok, ""); active || !strings.Contains(reason, "no published key version") {
		t.Fatalf("after the version retired: %v %s", active, reason)
	}
	if resp, err := tb.request(t, logical.UpdateOperation, "verify", map[string]any{}); err == nil && !resp.IsError() {
		t.Fatal("verify without a token is not a 400")
	}
}

// TestRevokeVersion: a revoked version leaves the JWKS at once and verify
// rejects its tokens, while the current version's tokens stay good.
func TestRevokeVersion(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	old := tb.mustWrite(t, "issue/r", nil).Data["token"].(string)
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	cur := tb.mustWrite(t, "issue/r", nil).Data["token"].(string)
	if kids := jwksKids(t, tb); len(kids) != 2 {
		t.Fatalf("JWKS %v", kids)
	}

	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k/revoke-version", map[string]any{"version": 2}, `"version"`, "current version")
	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k/revoke-version", map[string]any{"version": 7}, `"version"`, "no such")
	tb.wantNotFound(t, logical.UpdateOperation, "keys/nope/revoke-version", map[string]any{"version": 1})

	d := tb.mustWrite(t, "keys/k/revoke-version", map[string]any{"version": 1}).Data
	if _, still := d["versions"].(map[string]any)["1"]; still {
		t.Fatal("revoked version still listed")
	}
	if kids := jwksKids(t, tb); len(kids) != 1 {
		t.Fatalf("JWKS after revoke %v", kids)
	}
	if active, reason, _ := tb.verify(t, old, ""); active || !strings.Contains(reason, "no published key version") {
		t.Fatalf("revoked version's token: %v %s", active, reason)
	}
	if active, reason, _ := tb.verify(t, cur, ""); !active {
		t.Fatalf("current token: %s", reason)
	}
	k, _ := loadKey(t.Context(), tb.storage, "k")
	if len(k.Versions) != 1 || k.Versions[0].Version != 2 {
		t.Fatal("the revoked version's private key is still stored")
	}
	if !strings.Contains(tb.logs.String(), `"@message":"key version revoked"`) {
		t.Error("revocation not logged")
	}
}

// countingStorage counts reads.
type countingStorage struct {
	logical.Storage
	reads atomic.Int64
}

func (c *countingStorage) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	c.reads.Add(1)
	return c.Storage.Get(ctx, k)
}

func (c *countingStorage) List(ctx context.Context, p string) ([]string, error) {
	c.reads.Add(1)
	return c.Storage.List(ctx, p)
}

// TestVerifyUsesCaches: once warm, verify reads no storage; the issuer set
// follows role changes.
func TestVerifyUsesCaches(t *testing.T) {
	tb := getTestBackend(t)
	cs := &countingStorage{Storage: tb.storage}
	tb.storage = cs
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "issuer": "urn:example:a"})
	tok := tb.mustWrite(t, "issue/r", nil).Data["token"].(string)
	if active, reason, _ := tb.verify(t, tok, ""); !active {
		t.Fatalf("a role's own issuer: %s", reason)
	}
	cs.reads.Store(0)
	for range 10 {
		if active, _, _ := tb.verify(t, tok, ""); !active {
			t.Fatal("inactive")
		}
	}
	if n := cs.reads.Load(); n != 0 {
		t.Fatalf("10 warm verifies made %d storage reads", n)
	}
	tb.mustWrite(t, "roles/r", map[string]any{"issuer": "urn:example:b"})
	if active, reason, _ := tb.verify(t, tok, ""); active || !strings.Contains(reason, "not this mount's") {
		t.Fatalf("after the role's issuer changed: %v %s", active, reason)
	}
}

// TestIssuerSetFollowsConfigChange: a config change that another node makes
// (and Vault invalidates here) while this node builds its issuer set, after
// it has read the old config, does not leave a set without the new issuer
// cached: tokens of the new issuer verify.
func TestIssuerSetFollowsConfigChange(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	tb.dropConfig() // the next verify builds the issuer set
	tb.afterIssuerConfig = func() {
		tb.afterIssuerConfig = nil
		entry, err := logical.StorageEntryJSON(configPath, &config{Issuer: "https://new.test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tb.storage.Put(t.Context(), entry); err != nil {
			t.Fatal(err)
		}
		tb.Backend.InvalidateKey(t.Context(), configPath)
	}
	tb.verify(t, tb.issue(t, "r", nil).data["token"].(string), "") // raced with the change: either answer is right
	if tb.afterIssuerConfig != nil {
		t.Fatal("verify did not build the issuer set: the test proves nothing")
	}
	tok := tb.issue(t, "r", nil)
	if tok.claims["iss"] != "https://new.test" {
		t.Fatalf("iss %v after the config change", tok.claims["iss"])
	}
	if active, reason, _ := tb.verify(t, tok.data["token"].(string), ""); !active {
		t.Fatalf("a token of the new issuer: inactive (%s); an issuer set built from the old config was cached", reason)
	}
}

// TestVerifyTyp: verify answers the header's "typ", and with "typ" given
// requires the token's to match it as RFC 7515 §4.1.9 compares media
// types: case-insensitively, with "application/" implied where there is no
// "/". A token of another kind is inactive and says why (RFC 8725 §3.11).
func TestVerifyTyp(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tokens := map[string]string{}
	for role, typ := range map[string]string{"plain": "", "at": "at+jwt", "secevent": "application/secevent+jwt"} {
		data := map[string]any{"key": "k"}
		if typ != "" {
			data["typ"] = typ
		}
		tb.mustWrite(t, "roles/"+role, data)
		tokens[role] = tb.mustWrite(t, "issue/"+role, nil).Data["token"].(string)
	}
	// A token of this mount whose header has no typ (none of its roles
	// issues one).
	claims := fmt.Sprintf(`{"iss":"https://vault.test/v1/jwt","exp":%d}`, tb.clock.Now().Unix()+600)
	kid := decodeSegment(t, strings.Split(tokens["plain"], ".")[0])["kid"].(string)
	tokens["untyped"] = tb.signClaims(t, "k", b64s([]byte(`{"alg":"ES256","kid":"`+kid+`"}`)), claims)

	for _, tc := range []struct {
		token, typ string
		wantTyp    any    // typ in an active answer; nil for none
		reason     string // for an inactive one
	}{
		{"plain", "", "JWT", ""},
		{"plain", "JWT", "JWT", ""},
		{"plain", "jwt", "JWT", ""},
		{"plain", "application/jwt", "JWT", ""},
		{"plain", "at+jwt", nil, `typ "JWT" is not "at+jwt"`},
		{"at", "", "at+jwt", ""},
		{"at", "at+jwt", "at+jwt", ""},
		{"at", "AT+JWT", "at+jwt", ""},
		{"at", "Application/At+JWT", "at+jwt", ""},
		{"at", "JWT", nil, `typ "at+jwt" is not "JWT"`},
		{"at", "application/at+jwt+x", nil, `typ "at+jwt" is not "application/at+jwt+x"`},
		{"secevent", "secevent+jwt", "application/secevent+jwt", ""},
		{"secevent", "APPLICATION/SECEVENT+JWT", "application/secevent+jwt", ""},
		{"secevent", "jwt", nil, `typ "application/secevent+jwt" is not "jwt"`},
		{"untyped", "", nil, ""},
		{"untyped", "JWT", nil, `no "typ" header, want "JWT"`},
	} {
		t.Run(tc.token+" typ="+tc.typ, func(t *testing.T) {
			data := map[string]any{"token": tokens[tc.token]}
			if tc.typ != "" {
				data["typ"] = tc.typ
			}
			d := tb.mustWrite(t, "verify", data).Data
			if tc.reason != "" {
				if d["active"] != false || d["reason"] != tc.reason {
					t.Fatalf("active=%v reason=%v, want inactive: %q", d["active"], d["reason"], tc.reason)
				}
				return
			}
			if d["active"] != true || d["typ"] != tc.wantTyp {
				t.Fatalf("active=%v typ=%v reason=%v, want active with typ %v", d["active"], d["typ"], d["reason"], tc.wantTyp)
			}
		})
	}

	for _, tc := range []struct {
		name string
		typ  any
		want string
	}{
		{"a list", []any{"JWT"}, `invalid "typ": must be a string`},
		{"white space", "at+jwt ", `invalid "typ"`},
		{"a parameter", "JWT; charset=utf-8", `invalid "typ"`},
		{"too long", strings.Repeat("a", 65), `invalid "typ"`},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "verify", map[string]any{"token": tokens["at"], "typ": tc.typ}, tc.want)
		})
	}
}
