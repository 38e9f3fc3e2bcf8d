package backend

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestClaimConstraintsNeedStrings: glob and pattern rules hold only
// strings. A non-string value is refused even when the rule would match
// the empty string ("*", "^[a-z]*$"): it must not be checked as "".
func TestClaimConstraintsNeedStrings(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{
		"key": "k", "allowed_claims": "any,lower",
		"claim_constraints": `{"any":"*","lower":{"pattern":"^[a-z]*$"}}`,
	})
	for _, claim := range []string{"any", "lower"} {
		for _, v := range []string{`1`, `true`, `null`, `[]`, `["x"]`, `{}`} {
			t.Run(claim+"="+v, func(t *testing.T) {
				tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", map[string]any{"claims": `{"` + claim + `":` + v + `}`},
					`invalid "claims"`, `"`+claim+`"`, "must be a string")
			})
		}
		t.Run(claim+" empty string", func(t *testing.T) {
			if got := tb.issue(t, "r", map[string]any{"claims": `{"` + claim + `":""}`}).claims[claim]; got != "" {
				t.Fatalf("claim %q = %v, want the empty string", claim, got)
			}
		})
	}
}

// TestClaimConstraintIntegerSpelling: type integer takes a JSON number
// written as an integer only: 1e3, 1E3 and 1.0 are refused (a verifier
// decoding into an integer type refuses them), and are fine for type
// number.
func TestClaimConstraintIntegerSpelling(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{
		"key": "k", "allowed_claims": "i,n",
		"claim_constraints": `{"i":{"type":"integer"},"n":{"type":"number"}}`,
	})
	for _, v := range []string{"1e3", "1E3", "1.0", "-2e0"} {
		t.Run(v, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", map[string]any{"claims": `{"i":` + v + `}`},
				`"i"`, "must be of type integer, not number")
			tb.issue(t, "r", map[string]any{"claims": `{"n":` + v + `}`})
		})
	}
	tb.issue(t, "r", map[string]any{"claims": `{"i":-1000}`})
}

// TestClaimConstraintRuleBounds: role writes refuse a negative max_length,
// which would otherwise be no rule at all.
func TestClaimConstraintRuleBounds(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	for _, tc := range []struct {
		name, rules string
		want        []string
	}{
		{"max_length -1", `{"c":{"max_length":-1}}`, []string{`"claim_constraints"`, `"c"`, "max_length must not be negative"}},
		{"max_length -1 with a glob", `{"c":{"glob":"a*","max_length":-1}}`, []string{`"claim_constraints"`, "max_length must not be negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.CreateOperation, "roles/r", map[string]any{"key": "k", "allowed_claims": "c", "claim_constraints": tc.rules}, tc.want...)
		})
	}
}
