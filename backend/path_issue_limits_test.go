package backend

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestIssueOmitsUnsetClaims: a role with no subject and no audiences issues
// tokens with no "sub" and no "aud" at all, not empty ones (an empty "sub"
// is still a subject to a verifier that compares it), and jti=false leaves
// out "jti".
func TestIssueOmitsUnsetClaims(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/bare", map[string]any{"key": "k", "jti": false})
	tok := tb.issue(t, "bare", nil)
	names := slices.Sorted(maps.Keys(tok.claims))
	if want := []string{"exp", "iat", "iss", "nbf"}; !slices.Equal(names, want) {
		t.Fatalf("claims %v, want exactly %v", names, want)
	}
}

// TestAppendJSONStringMatchesEncodingJSON: the hand-written encoder escapes
// every string exactly as encoding/json does, HTML characters included, so
// a token's bytes do not depend on which path encoded a value.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", "https://vault.test/v1/jwt", "a<b", "a>b", "a&b", `say "hi"`, `back\slash`,
		"tab\there", "nul\x00", "\x1f", "del\x7f", "é", "line\u2028sep", "para\u2029sep", "\xff invalid",
	} {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s (as encoding/json)", s, got, want)
		}
	}
}

// TestIssueBatchRefusesTopLevelItemFields: with batch_input, each of the
// item fields at the top level is refused, naming it, rather than silently
// ignored (a top-level ttl the caller thought applied to every item).
func TestIssueBatchRefusesTopLevelItemFields(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "*", "allowed_audiences": "*", "allowed_claims": "scope"})
	for field, v := range map[string]any{"audience": "a", "subject": "s", "claims": map[string]any{"scope": "x"}, "ttl": "60"} {
		t.Run(field, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", map[string]any{"batch_input": []any{map[string]any{}}, field: v},
				`invalid "`+field+`"`, "each item")
		})
	}
}

// TestIssueLimitsAtTheirEdges: a caller's ttl may equal the role's max_ttl
// but not pass it by a second, and a subject may be 1024 bytes, not 1025.
func TestIssueLimitsAtTheirEdges(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "max_ttl": "1h", "allowed_subjects": "*"})
	if got := tb.issue(t, "r", map[string]any{"ttl": 3600}).data["expires_in"]; got != int64(3600) {
		t.Fatalf("ttl=max_ttl: expires_in %v, want 3600", got)
	}
	tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", map[string]any{"ttl": 3601}, `invalid "ttl"`, "max_ttl")
	sub := strings.Repeat("s", maxSubjectLen)
	if got := tb.issue(t, "r", map[string]any{"subject": sub}).claims["sub"]; got != sub {
		t.Fatalf("a subject of %d bytes was not issued as it is", maxSubjectLen)
	}
	tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", map[string]any{"subject": sub + "s"}, `invalid "subject"`, "longer than 1024")
}

// TestIssueTokenCapAtItsEdge: a token may be 8192 bytes, not one more.
// Claims of growing size give tokens that grow by one to three bytes; the
// largest issued is at most 8192 and within 3 bytes of it, and the first
// refused would have been over 8192 by at most 3.
func TestIssueTokenCapAtItsEdge(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_claims": "blob"})
	base := len(tb.issue(t, "r", map[string]any{"claims": map[string]any{"blob": ""}}).data["token"].(string))
	// Each payload byte is 4/3 token bytes: start a few bytes below the cap.
	n := (maxTokenBytes-base)*3/4 - 6
	largest := 0
	for ; ; n++ {
		resp, err := tb.request(t, logical.UpdateOperation, "issue/r", map[string]any{"claims": map[string]any{"blob": strings.Repeat("x", n)}})
		if resp.IsError() {
			var size int
			if _, serr := fmt.Sscanf(resp.Error().Error(), `invalid "claims": the token would be %d bytes`, &size); serr != nil || httpStatus(logical.UpdateOperation, "issue/r", resp, err) != 400 {
				t.Fatalf("blob of %d: %v (%v)", n, resp.Error(), serr)
			}
			if size <= maxTokenBytes || size > maxTokenBytes+3 {
				t.Fatalf("refused a token of %d bytes, want the first refused within 3 bytes over %d", size, maxTokenBytes)
			}
			break
		}
		largest = len(resp.Data["token"].(string))
		if largest > maxTokenBytes {
			t.Fatalf("issued a token of %d bytes, over the %d-byte cap", largest, maxTokenBytes)
		}
	}
	if largest < maxTokenBytes-3 {
		t.Fatalf("the largest token issued has %d bytes, want within 3 of %d (start the loop lower)", largest, maxTokenBytes)
	}
}

// TestIssueExpiresAtFollowsTTL: tokens issued in the same second with
// different ttls get their own expires_at.
func TestIssueExpiresAtFollowsTTL(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	for _, tc := range []struct {
		ttl  int
		want string
	}{{60, "2026-11-23T12:01:00Z"}, {120, "2026-11-23T12:02:00Z"}, {120, "2026-11-23T12:02:00Z"}, {60, "2026-11-23T12:01:00Z"}} {
		if got := tb.issue(t, "r", map[string]any{"ttl": tc.ttl}).data["expires_at"]; got != tc.want {
			t.Fatalf("ttl %d: expires_at %v, want %s", tc.ttl, got, tc.want)
		}
	}
}
