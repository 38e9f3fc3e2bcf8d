//go:build unix

package e2e

import (
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

	t.Run("no token", func(t *testing.T) {
		resp, body := httpDo(t, http.MethodPost, s.addr+"/v1/"+mountPath+"/issue/a", "", "{}")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST /v1/%s/issue/a without a token: %s %s, want 403", mountPath, resp.Status, redact(string(body)))
		}
	})
}
