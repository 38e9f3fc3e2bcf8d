package backend

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestRoleLimitsAtTheirEdges: each bound on a role's settings takes the
// bound itself and refuses one second (or byte) past it, naming the field.
func TestRoleLimitsAtTheirEdges(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA", "verification_ttl": "87600h"})
	tb.mustWrite(t, "keys/day", map[string]any{"algorithm": "EdDSA", "verification_ttl": "24h"})
	for _, tc := range []struct {
		name    string
		ok, bad map[string]any
		want    []string
	}{
		{"max_ttl at most 10 years", map[string]any{"max_ttl": "87600h"}, map[string]any{"max_ttl": 87600*3600 + 1},
			[]string{`invalid "max_ttl"`, "at most 87600h"}},
		{"ttl at most max_ttl", map[string]any{"ttl": "1h", "max_ttl": "1h"}, map[string]any{"ttl": 3601, "max_ttl": "1h"},
			[]string{`invalid "ttl"`, "greater than max_ttl"}},
		{"not_before_skew at most 1h", map[string]any{"not_before_skew": "1h"}, map[string]any{"not_before_skew": 3601},
			[]string{`invalid "not_before_skew"`, "between 0 and 1h"}},
		{"subject at most 1024 bytes", map[string]any{"subject": strings.Repeat("s", maxSubjectLen)}, map[string]any{"subject": strings.Repeat("s", maxSubjectLen+1)},
			[]string{`invalid "subject"`, "longer than 1024"}},
		{"refresh_ttl at least ttl", map[string]any{"ttl": "10m", "refresh_ttl": "10m"}, map[string]any{"ttl": "10m", "refresh_ttl": 599},
			[]string{`invalid "refresh_ttl"`, "between the role's ttl"}},
		{"refresh_max_ttl at least refresh_ttl", map[string]any{"refresh_ttl": "1h", "refresh_max_ttl": "1h"}, map[string]any{"refresh_ttl": "1h", "refresh_max_ttl": 3599},
			[]string{`invalid "refresh_max_ttl"`, "between refresh_ttl"}},
		{"max_ttl at most the key's verification_ttl", map[string]any{"key": "day", "max_ttl": "24h"}, map[string]any{"key": "day", "max_ttl": 86401},
			[]string{`invalid "max_ttl"`, "longer than the verification_ttl 24h0m0s"}},
		{"claims at most 16384 bytes of JSON", map[string]any{"claims": map[string]any{"blob": strings.Repeat("x", maxClaimsBytes-len(`{"blob":""}`))}},
			map[string]any{"claims": map[string]any{"blob": strings.Repeat("x", maxClaimsBytes+1-len(`{"blob":""}`))}},
			[]string{`invalid "claims"`, "16385 bytes of JSON, more than the limit of 16384"}},
		{"audiences at most 256", map[string]any{"audiences": strings.Repeat("a,", maxListItems-1) + "a"}, map[string]any{"audiences": strings.Repeat("a,", maxListItems) + "a"},
			[]string{`invalid "audiences"`, "more than 256"}},
		{"allowed_subjects entries at most 1024 bytes", map[string]any{"allowed_subjects": strings.Repeat("s", maxSubjectLen)}, map[string]any{"allowed_subjects": strings.Repeat("s", maxSubjectLen+1)},
			[]string{`invalid "allowed_subjects"`, "longer than 1024"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok := map[string]any{"key": "k"}
			for k, v := range tc.ok {
				ok[k] = v
			}
			tb.mustWrite(t, "roles/edge", ok)
			bad := map[string]any{"key": "k"}
			for k, v := range tc.bad {
				bad[k] = v
			}
			tb.wantBadRequest(t, logical.CreateOperation, "roles/new", bad, tc.want...)
			if _, err := tb.request(t, logical.DeleteOperation, "roles/edge", nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}
