package backend

import (
	"time"

	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// issued is a token split and checked: header and claims decoded, and the
// signature verified strictly against the key in the JWKS.
type issued struct {
	header map[string]any
	claims map[string]any
	sig    []byte
	data   map[string]any
}

func (tb *testBackend) issue(t *testing.T, role string, data map[string]any) issued {
	t.Helper()
	resp := tb.mustWrite(t, "issue/"+role, data)
	token := resp.Data["token"].(string)
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var out issued
	out.data = resp.Data
	for i, dst := range []*map[string]any{&out.header, &out.claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		assertUniqueNames(t, raw)
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			t.Fatal(err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	out.sig = sig
	// Verify against the published JWKS, by kid.
	set, _ := readJWKS(t, tb, "jwks")
	var found bool
	for _, jwk := range set.Keys {
		if jwk.Kid != out.header["kid"] {
			continue
		}
		found = true
		e, _ := tb.getKey(context.Background(), tb.storage, keyNameByKid(t, tb, jwk.Kid))
		pub := e.signersByKid()[jwk.Kid].Public()
		if err := signer.Verify(signer.Algorithm(jwk.Alg), pub, []byte(parts[0]+"."+parts[1]), sig); err != nil {
			t.Fatalf("token does not verify: %v", err)
		}
		// golang-jwt's parser agrees, with the claim checks it does.
		_, err := jwt.NewParser(jwt.WithValidMethods([]string{jwk.Alg}), jwt.WithTimeFunc(tb.clock.Now), jwt.WithExpirationRequired()).
			Parse(token, func(*jwt.Token) (any, error) { return pub, nil })
		if err != nil {
			t.Fatalf("golang-jwt refuses the token: %v", err)
		}
	}
	if !found {
		t.Fatalf("kid %v is not in the JWKS", out.header["kid"])
	}
	return out
}

// assertUniqueNames fails if a JSON object repeats a top-level member name:
// verifiers disagree on which of two "sub"s wins, so a token must never
// carry two.
func assertUniqueNames(t *testing.T, raw []byte) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", raw)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		name := tok.(string)
		if seen[name] {
			t.Fatalf("member %q appears twice in %s", name, raw)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	assertUniqueNames(t, raw)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *keyEntry) signersByKid() map[string]signer.Signer {
	m := map[string]signer.Signer{}
	for _, s := range e.signers {
		m[s.KeyID()] = s
	}
	return m
}

func keyNameByKid(t *testing.T, tb *testBackend, kid string) string {
	t.Helper()
	names, _ := tb.storage.List(context.Background(), keyPrefix)
	for _, n := range names {
		e, _ := tb.getKey(context.Background(), tb.storage, n)
		if _, ok := e.signersByKid()[kid]; ok {
			return n
		}
	}
	t.Fatalf("no key has kid %s", kid)
	return ""
}

func TestIssueEachAlgorithm(t *testing.T) {
	tb := getTestBackend(t)
	for _, alg := range signer.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			name := strings.ToLower(string(alg))
			tb.mustWrite(t, "keys/"+name, map[string]any{"algorithm": string(alg)})
			tb.mustWrite(t, "roles/"+name, map[string]any{"key": name, "audiences": "aud1"})
			for range 5 {
				tok := tb.issue(t, name, nil)
				if tok.header["alg"] != string(alg) || tok.data["alg"] != string(alg) || tok.header["typ"] != "JWT" {
					t.Fatalf("header %v", tok.header)
				}
				if size := alg.Info().SignatureSize; size != 0 && len(tok.sig) != size {
					t.Fatalf("signature is %d bytes, want %d", len(tok.sig), size)
				}
			}
		})
	}
}

func TestIssueClaims(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{
		"key":               "k",
		"ttl":               "10m",
		"max_ttl":           "1h",
		"audiences":         "default-aud",
		"allowed_audiences": "https://*.example.com,svc-b",
		"subject":           "default-sub",
		"allowed_subjects":  "user-*",
		"claims":            `{"team":"payments","big":12345678901234567890,"nested":{"a":[1,2]}}`,
		"allowed_claims":    "scope,tenant",
		"not_before_skew":   "30s",
		"typ":               "at+jwt",
	})
	now := tb.clock.Now().Unix()

	tok := tb.issue(t, "r", nil)
	want := map[string]any{
		"iss": "https://vault.test/v1/jwt", "sub": "default-sub", "aud": "default-aud",
		"team": "payments", "big": "12345678901234567890", "nested": "map[a:[1 2]]",
		"iat": fmt.Sprint(now - 30), "nbf": fmt.Sprint(now - 30), "exp": fmt.Sprint(now + 600),
	}
	for k, v := range want {
		if fmt.Sprint(tok.claims[k]) != v {
			t.Errorf("claim %s = %v, want %v", k, tok.claims[k], v)
		}
	}
	if len(tok.claims) != len(want)+1 {
		t.Errorf("claims %v: want exactly %d", tok.claims, len(want)+1)
	}
	jti, _ := tok.claims["jti"].(string)
	tag, random, _ := strings.Cut(jti, ".")
	if raw, err := base64.RawURLEncoding.DecodeString(random); err != nil || len(raw) != 16 || tag != roleTag("r") || tok.data["jti"] != jti {
		t.Errorf("jti %q is not the role tag %s, a dot and 128 random bits, or differs from the response's %v", jti, roleTag("r"), tok.data["jti"])
	}
	if tok.header["typ"] != "at+jwt" {
		t.Errorf("typ %v", tok.header["typ"])
	}
	if tok.data["expires_in"] != int64(600) || tok.data["expires_at"] != "2026-11-23T12:10:00Z" {
		t.Errorf("expires_in %v expires_at %v", tok.data["expires_in"], tok.data["expires_at"])
	}
	if tb.issue(t, "r", nil).claims["jti"] == jti {
		t.Error("two tokens share a jti")
	}

	// What a caller may choose.
	tok = tb.issue(t, "r", map[string]any{
		"audience": []string{"https://api.example.com", "svc-b"},
		"subject":  "user-42",
		"claims":   map[string]any{"scope": "read", "tenant": json.Number("7")},
		"ttl":      "1h",
	})
	if fmt.Sprint(tok.claims["aud"]) != "[https://api.example.com svc-b]" || tok.claims["sub"] != "user-42" ||
		tok.claims["scope"] != "read" || fmt.Sprint(tok.claims["tenant"]) != "7" || tok.data["expires_in"] != int64(3600) {
		t.Errorf("caller choices not honoured: %v %v", tok.claims, tok.data)
	}
	// The CLI sends claims as a string.
	tok = tb.issue(t, "r", map[string]any{"claims": `{"scope":"write"}`, "audience": "svc-b"})
	if tok.claims["scope"] != "write" || tok.claims["aud"] != "svc-b" {
		t.Errorf("string claims: %v", tok.claims)
	}

	// A role's own issuer wins; jti can be turned off.
	tb.mustWrite(t, "roles/r", map[string]any{"issuer": "urn:example:issuer", "jti": false})
	tok = tb.issue(t, "r", nil)
	if tok.claims["iss"] != "urn:example:issuer" || tok.claims["jti"] != nil || tok.data["jti"] != "" {
		t.Errorf("issuer/jti: %v", tok.claims)
	}
}

func TestIssueBadInput(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{
		"key": "k", "max_ttl": "1h", "allowed_audiences": "https://*.example.com",
		"allowed_subjects": "user-*", "claims": `{"team":"payments"}`, "allowed_claims": "scope",
	})
	tb.mustWrite(t, "roles/locked", map[string]any{"key": "k", "subject": "fixed", "audiences": "a"})
	cases := []struct {
		name string
		role string
		data map[string]any
		want []string
	}{
		{"ttl above max_ttl", "r", map[string]any{"ttl": "2h"}, []string{`"ttl"`, "max_ttl"}},
		{"zero ttl", "r", map[string]any{"ttl": "0"}, []string{`"ttl"`, "positive"}},
		{"fractional ttl", "r", map[string]any{"ttl": "1.9s"}, []string{`invalid "ttl": must be a whole number of seconds`}},
		{"sub-second ttl", "r", map[string]any{"ttl": "500ms"}, []string{`invalid "ttl": must be a whole number of seconds`}},
		{"fractional ttl as a number", "r", map[string]any{"ttl": 1.5}, []string{`invalid "ttl": must be a whole number of seconds`}},
		{"subject not allowed", "r", map[string]any{"subject": "admin"}, []string{`"subject"`, "allowed_subjects"}},
		{"subject too long", "r", map[string]any{"subject": "user-" + strings.Repeat("x", maxSubjectLen)}, []string{`"subject"`, "longer than 1024"}},
		{"subject on a role that pins it", "locked", map[string]any{"subject": "someone-else"}, []string{`"subject"`, "does not let callers choose"}},
		{"audience not allowed", "r", map[string]any{"audience": "https://evil.com"}, []string{`"audience"`, "allowed_audiences"}},
		{"one of two audiences not allowed", "r", map[string]any{"audience": []string{"https://a.example.com", "https://evil.com"}}, []string{`"audience"`, "evil.com"}},
		{"audience on a role that pins it", "locked", map[string]any{"audience": "b"}, []string{`"audience"`, "does not let callers choose"}},
		{"claim not allowed", "r", map[string]any{"claims": `{"admin":true}`}, []string{`"claims"`, `"admin" is not in`, "allowed_claims"}},
		{"pinned claim override", "r", map[string]any{"claims": `{"team":"other"}`}, []string{`"claims"`, `"team" is pinned`}},
		{"claims not an object", "r", map[string]any{"claims": `["scope"]`}, []string{`"claims"`, "JSON object"}},
		{"claims not JSON", "r", map[string]any{"claims": `scope=read`}, []string{`"claims"`, "JSON object"}},
		{"claim number past float64", "r", map[string]any{"claims": `{"scope":1e999}`}, []string{`"claims"`, `"scope"`, "64-bit"}},
		{"claim number past float64, negative", "r", map[string]any{"claims": `{"scope":-1e400}`}, []string{`"claims"`, `"scope"`, "64-bit"}},
		{"nested claim number past float64", "r", map[string]any{"claims": `{"scope":[1,{"x":2e308}]}`}, []string{`"claims"`, `"scope"`, "64-bit"}},
		{"claim number past float64 in an object body", "r", map[string]any{"claims": map[string]any{"scope": json.Number("1e999")}}, []string{`"claims"`, `"scope"`, "64-bit"}},
		{"claims repeat a name", "r", map[string]any{"claims": `{"scope":"read","scope":"admin"}`}, []string{`"claims"`, `repeats the member name "scope"`}},
		{"claims repeat a nested name", "r", map[string]any{"claims": `{"scope":{"x":1,"x":2}}`}, []string{`"claims"`, `repeats the member name "x"`}},
		{"claims too large", "r", map[string]any{"claims": map[string]any{"scope": strings.Repeat("x", maxClaimsBytes)}}, []string{`"claims"`, "limit"}},
	}
	for _, c := range reservedClaims {
		cases = append(cases, struct {
			name string
			role string
			data map[string]any
			want []string
		}{"reserved claim " + c, "r", map[string]any{"claims": map[string]any{c: "forged"}}, []string{`"claims"`, fmt.Sprintf("%q is a reserved claim", c)}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "issue/"+tc.role, tc.data, tc.want...)
		})
	}

	t.Run("missing role is a 404", func(t *testing.T) {
		tb.wantNotFound(t, logical.UpdateOperation, "issue/nope", nil)
	})
	t.Run("no issuer", func(t *testing.T) {
		tb.mustWrite(t, "config", map[string]any{"issuer": ""})
		defer tb.mustWrite(t, "config", map[string]any{"issuer": "https://vault.test/v1/jwt"})
		tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", nil, "no issuer", `"issuer"`)
		// The messages that say where to write name the request's mount.
		tb.mountPoint = "team/jwt/"
		defer func() { tb.mountPoint = "" }()
		tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", nil, `set "issuer" on team/jwt/config or on role "r"`)
		tb.wantBadRequest(t, logical.UpdateOperation, "revoke", map[string]any{"subject": "s"}, "none configured in team/jwt/config")
		tb.wantBadRequest(t, logical.UpdateOperation, "roles/r2", map[string]any{"key": "nope"}, "create it with team/jwt/keys/nope first")
	})
}

// TestIssueUsesNewKeyAfterRotation: after a staged rotation the old version
// signs until the new one activates, jwks_max_age later; after an
// immediate one the new version signs the next token.
func TestIssueUsesNewKeyAfterRotation(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES384"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	before := tb.issue(t, "r", nil)
	staged := tb.mustWrite(t, "keys/k/rotate", nil).Data["versions"].(map[string]any)["2"].(map[string]any)["kid"]
	if kids := jwksKids(t, tb); len(kids) != 2 {
		t.Fatalf("JWKS %v: the next version must be published before it signs", kids)
	}
	tb.clock.Add(defaultJWKSMaxAge - time.Second)
	if got := tb.issue(t, "r", nil).header["kid"]; got != before.header["kid"] {
		t.Fatalf("signed by %v before the next version's activation", got)
	}
	tb.clock.Add(time.Second)
	if got := tb.issue(t, "r", nil).header["kid"]; got != staged {
		t.Fatalf("signed by %v at the next version's activation, want %v", got, staged)
	}
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	after := tb.issue(t, "r", nil)
	if staged == after.header["kid"] {
		t.Fatal("immediate rotation did not change the signing kid")
	}
	if kids := jwksKids(t, tb); len(kids) != 3 {
		t.Fatalf("JWKS %v", kids)
	}
}

// TestIssuedClaimsHaveNoDuplicateNames: engine, pinned and caller claims
// together, with every escaping path of the encoder. (U+2028 is in a
// pinned claim: "sub" may no longer hold it, see
// TestControlCharactersRefused.)
func TestIssuedClaimsHaveNoDuplicateNames(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{
		"key": "k", "audiences": "a,b", "subject": "s<&>\"\u00e9",
		"claims": `{"x":1,"y":{"iss":"nested is fine"},"v":"\u2028"}`, "allowed_claims": "z,w",
		"issuer": "urn:vault:\"odd\"",
	})
	tok := tb.issue(t, "r", map[string]any{"claims": `{"z":"\u0000","w":[{"sub":1}]}`})
	want := map[string]string{"sub": "s<&>\"\u00e9", "v": "\u2028", "z": "\x00", "aud": "[a b]", "y": "map[iss:nested is fine]", "w": "[map[sub:1]]"}
	for k, v := range want {
		if got := fmt.Sprint(tok.claims[k]); got != v {
			t.Errorf("claim %s = %q, want %q", k, got, v)
		}
	}
}

// TestIssueFastPath: handleIssue answers every issue request as the
// framework's routing (after the engine's field check, as HandleRequest
// runs it for every other path) would: same status, errors, warnings and
// claims.
func TestIssueFastPath(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "user-*", "allowed_claims": "scope", "audiences": "a"})
	tb.mustWrite(t, "roles/a.b-c_1", map[string]any{"key": "k"})
	for _, tc := range []struct {
		name, path string
		data       map[string]any
	}{
		{"no data", "issue/r", nil},
		{"fields", "issue/r", map[string]any{"subject": "user-a", "claims": map[string]any{"scope": "x"}, "ttl": "60"}},
		{"refused subject", "issue/r", map[string]any{"subject": "root"}},
		{"bad ttl type", "issue/r", map[string]any{"ttl": "soon"}},
		{"subject a list", "issue/r", map[string]any{"subject": []any{"user-a"}}},
		{"fractional ttl", "issue/r", map[string]any{"ttl": "1.5s"}},
		{"role in the body a list", "issue/r", map[string]any{"role": []any{"x"}}},
		{"unknown fields", "issue/r", map[string]any{"colour": "red", "size": 1}},
		{"role in the body", "issue/r", map[string]any{"role": "other"}},
		{"batch", "issue/r", map[string]any{"batch_input": []any{map[string]any{"subject": "user-b"}}}},
		{"missing role", "issue/nope", nil},
		{"dots and dashes", "issue/a.b-c_1", nil},
		{"not a name", "issue/-r", nil},
		{"not a name, ending in a dash", "issue/r-", nil},
		{"not a name, ending in a dot", "issue/r.", nil},
		{"nested", "issue/r/x", nil},
		{"at sign", "issue/r@x", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(h func(context.Context, *logical.Request) (*logical.Response, error)) (*logical.Response, error) {
				var data map[string]any
				if tc.data != nil {
					data = maps.Clone(tc.data)
				}
				return h(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: tc.path, Data: data, Storage: tb.storage})
			}
			fast, fastErr := run(tb.HandleRequest)
			slow, slowErr := run(tb.viaFramework)
			if fmt.Sprint(fastErr) != fmt.Sprint(slowErr) || fast.IsError() != slow.IsError() {
				t.Fatalf("fast: %v %v; framework: %v %v", fast, fastErr, slow, slowErr)
			}
			if fast == nil || slow == nil {
				if fast != slow {
					t.Fatalf("fast %v, framework %v", fast, slow)
				}
				return
			}
			if fast.IsError() && fast.Error().Error() != slow.Error().Error() {
				t.Fatalf("errors differ: %q vs %q", fast.Error(), slow.Error())
			}
			if !slices.Equal(fast.Warnings, slow.Warnings) {
				t.Fatalf("warnings differ: %q vs %q", fast.Warnings, slow.Warnings)
			}
			if tok, ok := fast.Data["token"].(string); ok {
				other := slow.Data["token"].(string)
				a, b := decodeSegment(t, strings.Split(tok, ".")[1]), decodeSegment(t, strings.Split(other, ".")[1])
				for _, c := range []string{"iss", "sub", "aud", "scope", "exp"} {
					if fmt.Sprint(a[c]) != fmt.Sprint(b[c]) {
						t.Fatalf("claim %s: %v vs %v", c, a[c], b[c])
					}
				}
			}
		})
	}
}
