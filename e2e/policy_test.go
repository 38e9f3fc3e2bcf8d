//go:build unix

package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicy checks that Vault's ACLs reach the plugin's paths: a token whose
// only policy allows jwt/issue/a can issue from role a and nothing else.
func TestPolicy(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)

	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	for _, role := range []string{"a", "b"} {
		s.vault(t, "write", mountPath+"/roles/"+role, "key=k", "audiences="+e2eAudience, "ttl=5m")
	}

	policy := filepath.Join(s.dir, "issue-a.hcl")
	writeFile(t, policy, `path "`+mountPath+`/issue/a" { capabilities = ["update"] }`+"\n")
	s.vault(t, "policy", "write", "issue-a", policy)

	child := s.vaultJSON(t, "token", "create", "-format=json", "-policy=issue-a", "-no-default-policy", "-ttl=10m")
	if child.Auth == nil || child.Auth.ClientToken == "" {
		t.Fatal("vault token create printed no auth.client_token")
	}
	token := child.Auth.ClientToken
	secrets.add(token)
	if got := strings.Join(child.Auth.Policies, ","); got != "issue-a" {
		t.Fatalf("child token policies = %q, want only issue-a", got)
	}

	t.Run("issue from role a", func(t *testing.T) {
		iss := s.issueAs(t, token, "a")
		tl.verifier.mustVerify(t, iss.Token, verifyOpts{
			JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256",
		})
	})

	denied := []struct {
		name string
		args []string
	}{
		{"issue from role b", []string{"write", "-f", mountPath + "/issue/b"}},
		{"read role a", []string{"read", mountPath + "/roles/a"}},
		{"list roles", []string{"list", mountPath + "/roles"}},
		{"rotate key", []string{"write", "-f", mountPath + "/keys/k/rotate"}},
		{"change config", []string{"write", mountPath + "/config", "issuer=https://attacker.invalid"}},
		// Vault's ACL check comes after the plugin's existence check: a
		// malformed body must still be a 403, not a 400 naming a field.
		{"malformed issue from role b", []string{"write", mountPath + "/issue/b", "ttl=abc"}},
		{"malformed key write", []string{"write", mountPath + "/keys/k", "rsa_bits=abc"}},
		{"malformed new key", []string{"write", mountPath + "/keys/new", "rsa_bits=abc"}},
	}
	for _, tc := range denied {
		t.Run("denied: "+tc.name, func(t *testing.T) {
			r := s.run(token, "", tc.args...)
			if r.Err == nil {
				t.Fatalf("vault %s with the issue-a token succeeded; want permission denied\n%s", strings.Join(tc.args, " "), redact(r.Stdout))
			}
			if !strings.Contains(r.Stderr, "permission denied") || !strings.Contains(r.Stderr, "403") {
				t.Errorf("vault %s: want a 403 permission denied, got: %s", strings.Join(tc.args, " "), redact(r.Stderr))
			}
			if strings.Contains(r.Stdout, "eyJ") {
				t.Errorf("vault %s: a token was printed on a denied request", strings.Join(tc.args, " "))
			}
		})
	}

	t.Run("no existence-check errors in the server log", func(t *testing.T) {
		log, err := os.ReadFile(s.logPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), "failed to run existence check") {
			t.Errorf("Vault logged a failed existence check: the plugin's existence check looked at the request body")
		}
	})

	t.Run("denied over HTTP", func(t *testing.T) {
		resp, body := httpDo(t, http.MethodPost, s.addr+"/v1/"+mountPath+"/issue/b", token, "{}")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "permission denied") {
			t.Errorf("POST /v1/%s/issue/b: %s %s, want 403 permission denied", mountPath, resp.Status, redact(string(body)))
		}
	})

	// Vault's parameter constraints see only top-level fields; a batch
	// item's ttl, subject, audience and claims are out of their reach. A
	// policy that relies on them must deny batch_input too (docs/policy.md).
	t.Run("parameter constraints and batch_input", func(t *testing.T) {
		tokenFor := func(name, rules string) string {
			t.Helper()
			file := filepath.Join(s.dir, name+".hcl")
			writeFile(t, file, `path "`+mountPath+`/issue/a" {`+"\n"+`  capabilities = ["update"]`+"\n"+rules+"\n}\n")
			s.vault(t, "policy", "write", name, file)
			tok := s.vaultJSON(t, "token", "create", "-format=json", "-policy="+name, "-no-default-policy", "-ttl=10m").Auth.ClientToken
			secrets.add(tok)
			return tok
		}
		const batch = `{"batch_input": [{"ttl": "10m"}]}`
		forbidden := func(t *testing.T, token, stdin string, args ...string) {
			t.Helper()
			r := s.run(token, stdin, args...)
			if r.Err == nil || !strings.Contains(r.Stderr, "permission denied") || !strings.Contains(r.Stderr, "403") {
				t.Errorf("vault %s: want a 403 permission denied, got err=%v\n%s", strings.Join(args, " "), r.Err, redact(r.Stdout+r.Stderr))
			}
		}

		noTTL := tokenFor("issue-a-no-ttl", `  denied_parameters = { "ttl" = [] }`)
		s.issueAs(t, noTTL, "a")
		forbidden(t, noTTL, "", "write", mountPath+"/issue/a", "ttl=10m")
		// The gap the docs warn about: the item's ttl is not checked.
		var sec struct {
			Data struct {
				Results []struct{ Token, Error string } `json:"batch_results"`
			} `json:"data"`
		}
		r := s.run(noTTL, batch, "write", "-format=json", mountPath+"/issue/a", "-")
		if r.Err != nil {
			t.Fatalf("batch with only ttl denied: %v\n%s", r.Err, redact(r.Stderr))
		}
		if err := json.Unmarshal([]byte(r.Stdout), &sec); err != nil || len(sec.Data.Results) != 1 || sec.Data.Results[0].Token == "" {
			t.Fatalf("batch with only ttl denied: want one token, got %v\n%s", err, redact(r.Stdout))
		}
		secrets.add(sec.Data.Results[0].Token)
		p := decodeJWT(t, sec.Data.Results[0].Token).Payload
		if life := number(t, "exp", p["exp"]) - number(t, "iat", p["iat"]); life != 600 {
			t.Errorf("batch item lifetime %ds, want the item's 600s", life)
		}

		noBatch := tokenFor("issue-a-no-ttl-no-batch", `  denied_parameters = { "ttl" = [], "batch_input" = [] }`)
		s.issueAs(t, noBatch, "a")
		forbidden(t, noBatch, "", "write", mountPath+"/issue/a", "ttl=10m")
		forbidden(t, noBatch, batch, "write", mountPath+"/issue/a", "-")
	})

	t.Run("no token", func(t *testing.T) {
		resp, body := httpDo(t, http.MethodPost, s.addr+"/v1/"+mountPath+"/issue/a", "", "{}")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST /v1/%s/issue/a without a token: %s %s, want 403", mountPath, resp.Status, redact(string(body)))
		}
	})
}
