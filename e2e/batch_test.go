//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBatchIssue: batch_input through the real vault CLI, both as a JSON
// request body on stdin and as batch_input=@file. Every token verifies
// with jose against the mount's JWKS and carries its item's subject;
// refused items get an error naming the field, in their place, and do not
// stop the others.
func TestBatchIssue(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=EdDSA")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "allowed_subjects=user-*", "ttl=5m")
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "EdDSA"}

	const n = 40
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"subject": fmt.Sprintf("user-%d", i), "reference": fmt.Sprint(i)}
	}
	items[7] = map[string]any{"subject": "root", "reference": "7"}
	items[20] = map[string]any{"ttl": "2h", "reference": "20"}
	refused := map[int]string{7: `"subject" "root"`, 20: `"ttl"`}

	body, err := json.Marshal(map[string]any{"batch_input": items})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "items.json")
	list, _ := json.Marshal(items)
	if err := os.WriteFile(file, list, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, form := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"JSON body on stdin", string(body), []string{"write", "-format=json", mountPath + "/issue/r", "-"}},
		{"batch_input=@file", "", []string{"write", "-format=json", mountPath + "/issue/r", "batch_input=@" + file}},
	} {
		t.Run(form.name, func(t *testing.T) {
			r := s.run(s.rootToken, form.stdin, form.args...)
			if r.Err != nil {
				t.Fatalf("vault %s: %v\n%s", strings.Join(form.args, " "), r.Err, redact(r.Stderr))
			}
			var sec struct {
				Data struct {
					Results []struct {
						Reference string `json:"reference"`
						Token     string `json:"token"`
						Error     string `json:"error"`
					} `json:"batch_results"`
				} `json:"data"`
			}
			if err := json.Unmarshal([]byte(r.Stdout), &sec); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			res := sec.Data.Results
			if len(res) != n {
				t.Fatalf("%d results for %d items", len(res), n)
			}
			var tokens []string
			for i, r := range res {
				if r.Reference != fmt.Sprint(i) {
					t.Fatalf("result %d has reference %q: results out of order", i, r.Reference)
				}
				if want, bad := refused[i]; bad {
					if r.Token != "" || !strings.Contains(r.Error, want) {
						t.Errorf("item %d: token %t, error %q; want an error naming %s", i, r.Token != "", r.Error, want)
					}
					continue
				}
				if r.Token == "" || r.Error != "" {
					t.Fatalf("item %d: token %t, error %q", i, r.Token != "", r.Error)
				}
				secrets.add(r.Token)
				tokens = append(tokens, r.Token)
				// Every fourth token through jose, to keep the test short;
				// the verifier starts a Node process per token.
				if i%4 == 0 {
					p := tl.verifier.mustVerify(t, r.Token, o).Payload
					if p["sub"] != fmt.Sprintf("user-%d", i) || p["jti"] == nil {
						t.Fatalf("item %d: sub %v, jti %v", i, p["sub"], p["jti"])
					}
				}
			}
			seen := map[string]bool{}
			for _, tok := range tokens {
				if seen[tok] {
					t.Fatal("the same token twice in one batch")
				}
				seen[tok] = true
			}
		})
	}

	// A malformed batch is refused as a whole.
	r := s.run(s.rootToken, `{"batch_input": []}`, "write", mountPath+"/issue/r", "-")
	if r.Err == nil || cliErrorCode(r.Stderr) != 400 || !strings.Contains(r.Stderr, `"batch_input"`) {
		t.Fatalf("empty batch_input: want a 400 naming batch_input, got %v\n%s", r.Err, redact(r.Stderr))
	}

	// Batch results carry no jti, so audit_non_hmac_response_keys cannot
	// make a batch-issued token findable in the audit log; hashing the
	// token with sys/audit-hash can (docs/operations.md).
	t.Run("audit-hash finds a batch-issued token", func(t *testing.T) {
		logPath := filepath.Join(s.dir, "audit.log")
		s.vault(t, "audit", "enable", "file", "file_path="+logPath)
		t.Cleanup(func() { s.run(s.rootToken, "", "audit", "disable", "file/") })
		s.vault(t, "secrets", "tune", "-audit-non-hmac-response-keys=jti", "-audit-non-hmac-response-keys=kid", mountPath+"/")

		r := s.run(s.rootToken, `{"batch_input": [{"subject": "user-audit"}]}`, "write", "-format=json", mountPath+"/issue/r", "-")
		var sec struct {
			Data struct {
				Results []map[string]any `json:"batch_results"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &sec); r.Err != nil || err != nil || len(sec.Data.Results) != 1 {
			t.Fatalf("batch: %v %v\n%s", r.Err, err, redact(r.Stderr))
		}
		res := sec.Data.Results[0]
		tok, _ := res["token"].(string)
		secrets.add(tok)
		if _, ok := res["jti"]; ok || tok == "" {
			t.Fatalf("batch result keys %v: want a token and no jti", slices.Collect(maps.Keys(res)))
		}
		hash := s.vaultJSON(t, "write", "-format=json", "sys/audit-hash/file", "input="+tok).Data["hash"].(string)
		log, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hash, "hmac-sha256:") || !strings.Contains(string(log), `"token":"`+hash+`"`) {
			t.Errorf("the audit log has no batch result with token %q", hash)
		}
	})
}
