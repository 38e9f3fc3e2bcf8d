package backend

import (
	"testing"

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
