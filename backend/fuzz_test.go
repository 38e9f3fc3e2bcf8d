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
