package backend

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestConfig(t *testing.T) {
	tb := getTestBackend(t)
	if got := tb.mustRead(t, "config").Data["issuer"]; got != "https://vault.test/v1/jwt" {
		t.Fatalf("issuer = %v", got)
	}
	for _, iss := range []string{"https://vault.example.com:8200/v1/jwt", "urn:example:jwt", "my-issuer", ""} {
		tb.mustWrite(t, "config", map[string]any{"issuer": iss})
		if got := tb.mustRead(t, "config").Data["issuer"]; got != iss {
			t.Fatalf("issuer = %v, want %v", got, iss)
		}
	}
	for _, tc := range []struct{ issuer, want string }{
		{"https://", "absolute URI"},
		{"://x", "absolute URI"},
		{"has space", "white space"},
		{"https://vault.example.com/v1/jwt?x=1", "query or fragment"},
		{"https://vault.example.com/v1/jwt#f", "query or fragment"},
	} {
		t.Run(tc.issuer, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "config", map[string]any{"issuer": tc.issuer}, `"issuer"`, tc.want)
		})
	}
}

// TestIssuerWarnings: writing an http(s) issuer whose path does not end in
// this mount's path warns that discovery served here will not match it
// (OIDC Discovery §4.3), and an http issuer other than a loopback one warns
// that cloud federation refuses it. Warnings, not errors: a reverse proxy
// may map another path to this mount. The same holds for a role's issuer.
func TestIssuerWarnings(t *testing.T) {
	const (
		notThisMount = "does not end in "
		plainHTTP    = "an http:// URL: cloud federation"
	)
	for _, tc := range []struct {
		name, mount, issuer string
		want                []string // substrings, one per warning
	}{
		{"this mount", "jwt/", "https://vault.example.com/v1/jwt", nil},
		{"this mount, trailing slash", "jwt/", "https://vault.example.com/v1/jwt/", nil},
		{"this mount in a namespace", "team/jwt/", "https://vault.example.com/v1/ns1/team/jwt", nil},
		{"another mount", "jwt2/", "https://vault.example.com/v1/jwt", []string{notThisMount + `"/jwt2"`}},
		{"a longer name ending in the mount's", "jwt/", "https://vault.example.com/v1/myjwt", []string{notThisMount + `"/jwt"`}},
		{"a bare host", "jwt/", "https://vault.example.com", []string{notThisMount + `"/jwt"`}},
		{"http", "jwt/", "http://vault.example.com/v1/jwt", []string{plainHTTP}},
		{"http and another mount", "jwt2/", "http://vault.example.com/v1/jwt", []string{notThisMount + `"/jwt2"`, plainHTTP}},
		{"http on 127.0.0.1 (make dev)", "jwt/", "http://127.0.0.1:8200/v1/jwt", nil},
		{"http on localhost", "jwt/", "http://localhost:8200/v1/jwt", nil},
		{"http on ::1", "jwt/", "http://[::1]:8200/v1/jwt", nil},
		{"http on LOCALHOST (host names ignore case)", "jwt/", "http://LOCALHOST:8200/v1/jwt", nil},
		{"http on a private IP address", "jwt/", "http://10.0.0.1:8200/v1/jwt", []string{plainHTTP}},
		{"http on an IPv6 address", "jwt/", "http://[2001:db8::1]:8200/v1/jwt", []string{plainHTTP}},
		{"not a URL", "jwt2/", "vault-jwt", nil},
		{"a URN", "jwt2/", "urn:example:jwt", nil},
		{"mount point unknown", "", "https://vault.example.com/v1/other", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := getTestBackend(t)
			tb.mountPoint = tc.mount
			tb.mustWrite(t, "keys/k", nil)
			for _, w := range []struct {
				path string
				data map[string]any
			}{
				{"config", map[string]any{"issuer": tc.issuer}},
				{"roles/r", map[string]any{"key": "k", "issuer": tc.issuer}},
			} {
				resp := tb.mustWrite(t, w.path, w.data)
				if len(resp.Warnings) != len(tc.want) {
					t.Fatalf("%s issuer=%s on mount %q: warnings %q, want %d: %q", w.path, tc.issuer, tc.mount, resp.Warnings, len(tc.want), tc.want)
				}
				for i, want := range tc.want {
					if !strings.Contains(resp.Warnings[i], want) {
						t.Errorf("%s: warning %q does not contain %q", w.path, resp.Warnings[i], want)
					}
				}
			}
			// A write that does not send the issuer does not repeat them.
			for path, data := range map[string]map[string]any{"config": {"jwks_max_age": "5m"}, "roles/r": {"ttl": "1m"}} {
				if resp := tb.mustWrite(t, path, data); len(resp.Warnings) != 0 {
					t.Errorf("%s without issuer: warnings %q", path, resp.Warnings)
				}
			}
		})
	}
}

// TestJWKSMaxAgeLoweringRecorded: a config write that lowers jwks_max_age
// while keys exist stores when the copies served under the old value stop
// being fresh (the later of now + old value and what was stored), warns
// that staged rotations wait until then, and config reads show it until it
// passes. Without keys, old copies held no kid to keep, so nothing is
// stored; nor when it is raised or kept. Once passed, the next write drops
// it, and a config without it is stored as before.
func TestJWKSMaxAgeLoweringRecorded(t *testing.T) {
	const field = "jwks_old_max_age_until"
	maxAge := func(v any) map[string]any { return map[string]any{"jwks_max_age": v} }
	for _, tc := range []struct {
		name   string
		keys   bool
		writes []map[string]any // to jwt/config, 10 minutes apart from 12:00
		want   string           // the field after the last write; "" for none
		warn   bool             // whether the last write warns
	}{
		{"lowered", true, []map[string]any{maxAge("1h"), maxAge("10s")}, "2026-11-23T13:10:00Z", true},
		{"lowered from the default", true, []map[string]any{maxAge("10s")}, "2026-11-23T12:05:00Z", true},
		{"lowered by 0, the default", true, []map[string]any{maxAge("1h"), maxAge(0)}, "2026-11-23T13:10:00Z", true},
		{"lowered twice, the later kept", true, []map[string]any{maxAge("1h"), maxAge("30m"), maxAge("10s")}, "2026-11-23T13:10:00Z", true},
		{"an issuer write keeps it", true, []map[string]any{maxAge("1h"), maxAge("10s"), {"issuer": "https://vault.test/v1/jwt"}}, "2026-11-23T13:10:00Z", false},
		{"forgotten once passed", true, []map[string]any{maxAge("10s"), {"issuer": "https://vault.test/v1/jwt"}}, "", false},
		{"raised", true, []map[string]any{maxAge("1h"), maxAge("2h")}, "", false},
		{"kept", true, []map[string]any{maxAge("1h"), maxAge("1h")}, "", false},
		{"lowered without keys", false, []map[string]any{maxAge("1h"), maxAge("10s")}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := getTestBackend(t)
			if tc.keys {
				tb.mustWrite(t, "keys/k", nil)
			}
			var resp *logical.Response
			for i, w := range tc.writes {
				if i > 0 {
					tb.clock.Add(10 * time.Minute)
				}
				resp = tb.mustWrite(t, "config", w)
			}
			if got, _ := resp.Data[field].(string); got != tc.want {
				t.Errorf("write answered %s=%q, want %q", field, got, tc.want)
			}
			if got, _ := tb.mustRead(t, "config").Data[field].(string); got != tc.want {
				t.Errorf("read answered %s=%q, want %q", field, got, tc.want)
			}
			switch {
			case !tc.warn && len(resp.Warnings) != 0:
				t.Errorf("warnings %q, want none", resp.Warnings)
			case tc.warn && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "staged before "+tc.want+" signs no earlier than then") ||
				!strings.Contains(resp.Warnings[0], "immediate=true")):
				t.Errorf("warnings %q, want one saying a rotation staged before %s signs no earlier than then", resp.Warnings, tc.want)
			}
			entry, err := tb.storage.Get(t.Context(), configPath)
			if err != nil {
				t.Fatal(err)
			}
			if stored := strings.Contains(string(entry.Value), `"`+field+`"`); stored != (tc.want != "") {
				t.Errorf("stored config %s", entry.Value)
			}
		})
	}
}

// TestJWKSOldMaxAgeUntilPasses: jwks_old_max_age_until is shown on read
// until the instant it names, not from it on, though still stored until the
// next write, which drops it at that very instant.
func TestJWKSOldMaxAgeUntilPasses(t *testing.T) {
	const field = "jwks_old_max_age_until"
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "10s"}) // 12:00, lowered from 5m
	tb.clock.Add(5*time.Minute - time.Second)
	if got := tb.mustRead(t, "config").Data[field]; got != "2026-11-23T12:05:00Z" {
		t.Fatalf("read at 12:04:59: %s=%v, want 2026-11-23T12:05:00Z", field, got)
	}
	tb.clock.Add(time.Second) // 12:05:00
	if got, ok := tb.mustRead(t, "config").Data[field]; ok {
		t.Fatalf("read at 12:05:00: %s=%v, want none once it has passed", field, got)
	}
	tb.mustWrite(t, "config", map[string]any{"issuer": "https://vault.test/v1/jwt"})
	entry, err := tb.storage.Get(t.Context(), configPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(entry.Value), field) {
		t.Fatalf("a write at 12:05:00 stored %s, which has passed: %s", field, entry.Value)
	}
}

// TestConfigWriteKeepsJWKSMaxAge: jwks_max_age's schema has a Default (5m,
// for path-help and OpenAPI), and a config write that does not send the
// field keeps the stored value instead of going back to it.
func TestConfigWriteKeepsJWKSMaxAge(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "1h"})
	tb.mustWrite(t, "config", map[string]any{"issuer": "https://vault.test/v1/other"})
	if got := tb.mustRead(t, "config").Data["jwks_max_age"]; got != int64(3600) {
		t.Errorf("jwks_max_age after an issuer-only write: %v, want 3600", got)
	}
}
