package backend

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// FuzzParseJSONObject: claims strings come from callers. The parser must
// refuse anything but one JSON object within the size cap, without
// panicking.
func FuzzParseJSONObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `[1]`, `"x"`, `{"a":{"b":[1,2,{"c":null}]}}`, `{} {}`, `{"a":1e999}`, ``, `nul`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		obj, err := parseJSONObject(s)
		if err != nil {
			return
		}
		if obj == nil {
			t.Fatal("nil object without error")
		}
		if len(s) > maxClaimsBytes {
			t.Fatalf("accepted %d bytes", len(s))
		}
		if _, err := json.Marshal(obj); err != nil {
			t.Fatalf("accepted object cannot be encoded again: %v", err)
		}
	})
}

// FuzzIssueClaims: whatever claims a caller sends, issue either refuses
// with a 400 or returns a token whose engine-set and pinned claims are the
// engine's, and whose other claims are only allowed ones.
func FuzzIssueClaims(f *testing.F) {
	tb := getTestBackend(f)
	tb.mustWrite(f, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(f, "roles/r", map[string]any{
		"key": "k", "subject": "svc", "audiences": "aud", "claims": `{"team":"payments"}`, "allowed_claims": "scope,env",
	})
	for _, s := range []string{`{"scope":"read"}`, `{"iss":"x"}`, `{"team":"evil"}`, `{"scope":"a","env":1}`, `{"sub":"root"}`, `{"exp":1e12}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, claims string) {
		resp, err := tb.request(t, logical.UpdateOperation, "issue/r", map[string]any{"claims": claims})
		if resp != nil && resp.IsError() {
			if code := httpStatus(logical.UpdateOperation, "issue/r", resp, err); code != 400 {
				t.Fatalf("status %d for claims %q", code, claims)
			}
			return
		}
		if err != nil {
			t.Fatalf("internal error for claims %q: %v", claims, err)
		}
		token := resp.Data["token"].(string)
		payload := decodeSegment(t, strings.Split(token, ".")[1])
		if payload["iss"] != "https://vault.test/v1/jwt" || payload["sub"] != "svc" || payload["aud"] != "aud" || payload["team"] != "payments" {
			t.Fatalf("claims %q changed an engine or pinned claim: %v", claims, payload)
		}
		for name := range payload {
			switch name {
			case "iss", "sub", "aud", "iat", "nbf", "exp", "jti", "team", "scope", "env":
			default:
				t.Fatalf("claims %q smuggled %q into the token", claims, name)
			}
		}
	})
}

// FuzzRefreshToken: refresh tokens come from callers. Only the family's
// latest refresh token is ever accepted; anything else is refused with a
// 400, never a 500 or a panic (a wrong secret for the family's id revokes
// the family, after which everything is refused).
func FuzzRefreshToken(f *testing.F) {
	tb := getTestBackend(f)
	tb.mustWrite(f, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(f, "roles/r", map[string]any{"key": "k", "refresh_ttl": "1h"})
	latest := tb.mustWrite(f, "issue/r", nil).Data["refresh_token"].(string)
	id, secret, _ := strings.Cut(latest, ".")
	for _, s := range []string{latest, id + ".", "." + secret, id + "." + secret + "=", id + "." + strings.ToUpper(secret), "a.b.c", "", strings.Repeat(".", 100), id + "\x00." + secret} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rt string) {
		resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt})
		if err == nil && !resp.IsError() {
			if rt != latest {
				t.Fatalf("refresh accepted %q, which is not the latest refresh token", rt)
			}
			latest = resp.Data["refresh_token"].(string)
			return
		}
		if code := httpStatus(logical.UpdateOperation, "refresh", resp, err); code != 400 {
			t.Fatalf("status %d for %q: %v", code, rt, err)
		}
	})
}
