package backend

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestFieldCheckSkipsURLFields: a field the path's pattern captures from
// the URL is replaced by the URL's value, so a body value of the wrong
// type for it is not an error: the request goes on with the URL's.
func TestFieldCheckSkipsURLFields(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	if d := tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "name": []any{"other"}}).Data; d["name"] != "r" {
		t.Fatalf("role written as %v, want r (the URL's)", d["name"])
	}
	resp := tb.mustWrite(t, "issue/r", map[string]any{"role": map[string]any{"x": 1}})
	if resp.Data["token"] == nil || !strings.Contains(strings.Join(resp.Warnings, "\n"), "[role]") {
		t.Fatalf("issue with a body role of the wrong type: %#v", resp)
	}
}

// TestFieldCheckNamesFirstField: with several fields that do not convert,
// the error names the first in name order, the same one every time.
func TestFieldCheckNamesFirstField(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "*", "allowed_audiences": "*"})
	for path, data := range map[string]map[string]any{
		"issue/r": {"ttl": "soon", "subject": []any{"a"}},
		"roles/r": {"ttl": "soon", "typ": []any{"a"}, "max_ttl": "1.5s", "issuer": []any{"a"}},
	} {
		for range 5 {
			tb.wantBadRequest(t, logical.UpdateOperation, path, data)
			resp, _ := tb.request(t, logical.UpdateOperation, path, data)
			want := map[string]string{"issue/r": `invalid "subject"`, "roles/r": `invalid "issuer"`}[path]
			if msg := resp.Error().Error(); !strings.HasPrefix(msg, want) {
				t.Fatalf("%s: error %q, want it to name the first field in name order: %s", path, msg, want)
			}
		}
	}
}

// TestFieldCheckSkipsHelp: a help request is answered with the path's help
// whatever data it carries; fields are checked only for operations.
func TestFieldCheckSkipsHelp(t *testing.T) {
	tb := getTestBackend(t)
	for _, path := range []string{"roles/r", "issue/r", "config"} {
		resp, err := tb.request(t, logical.HelpOperation, path, map[string]any{"ttl": "soon", "issuer": []any{1}})
		if err != nil || resp == nil || resp.IsError() || resp.Data["help"] == nil {
			t.Fatalf("help %s: %#v %v", path, resp, err)
		}
	}
}
