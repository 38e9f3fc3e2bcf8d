package backend

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestJSONObjectFieldsRefuseLists: an object field sent as a list is
// refused, naming the field, even where the framework's weak typing would
// take it: an empty list as an empty object, a list of objects merged into
// one (the later object's value winning for a name in both).
func TestJSONObjectFieldsRefuseLists(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_claims": "scope"})
	for _, tc := range []struct {
		name, path, field string
		v                 any
	}{
		{"issue claims, empty list", "issue/r", "claims", []any{}},
		{"issue claims, list of objects", "issue/r", "claims", []any{map[string]any{"scope": "read"}, map[string]any{"scope": "admin"}}},
		{"role claims, list of objects", "roles/r", "claims", []any{map[string]any{"team": "a"}}},
		{"role claims_template, list of objects", "roles/r", "claims_template", []any{map[string]any{"team": "a"}}},
		{"role claim_constraints, list of objects", "roles/r", "claim_constraints", []any{map[string]any{"scope": "read*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, tc.path, map[string]any{tc.field: tc.v}, `invalid "`+tc.field+`"`, "must be a JSON object")
		})
	}
}

// TestJSONStringFieldSizeLimit: an object field sent as a JSON string may
// be up to 16384 bytes; one byte more is refused before it is decoded,
// also for claim_constraints, which no later check measures.
func TestJSONStringFieldSizeLimit(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	sized := func(prefix, suffix string, n int) string {
		return prefix + strings.Repeat("x", n-len(prefix)-len(suffix)) + suffix
	}
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "claims": sized(`{"blob":"`, `"}`, maxClaimsBytes)})
	tb.wantBadRequest(t, logical.UpdateOperation, "roles/r", map[string]any{"claims": sized(`{"blob":"`, `"}`, maxClaimsBytes+1)},
		`invalid "claims"`, "16385 bytes", "limit of 16384")
	constraints := sized(`{"c":{"enum":["`, `"]}}`, maxClaimsBytes+1)
	tb.wantBadRequest(t, logical.UpdateOperation, "roles/r", map[string]any{"allowed_claims": "c", "claim_constraints": constraints},
		`invalid "claim_constraints"`, "16385 bytes", "limit of 16384")
}
