//go:build unix

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	svcAudience  = "svc-aud"
	userAudience = "user-aud"
)

// TestIdentity checks roles that take "sub" and claims from the caller's
// Vault identity (subject_template, claims_template) against a real Vault
// with real auth methods: approle and userpass logins make the entities,
// identity/ gives them metadata and groups, and jose verifies the tokens. It
// also shows that callers cannot forge those claims, that Vault's ACLs, audit
// HMACing and rate-limit quotas reach the plugin's paths, and that two mounts
// do not trust each other's tokens. The recipes are in docs/policy.md.
func TestIdentity(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")

	app := setupApprole(t, s)
	user := setupUserpass(t, s)

	// The service role: sub and four claims from the identity, and the
	// caller-facing rules every forgery below runs into.
	s.vault(t, "write", mountPath+"/roles/svc", "key=k", "ttl=5m",
		"audiences="+svcAudience, "allowed_audiences=svc-*", "max_audiences=2",
		"subject_template={{identity.entity.id}}",
		"claims_template="+mustJSON(t, map[string]string{
			"team":          "{{identity.entity.metadata.team}}",
			"env":           "{{identity.entity.metadata.env}}",
			"groups":        "{{identity.entity.groups.names}}",
			"group_ids":     "{{identity.entity.groups.ids}}",
			"role_id_login": "{{identity.entity.aliases." + app.accessor + ".name}}",
			"app_role":      "{{identity.entity.aliases." + app.accessor + ".metadata.role_name}}",
		}),
		"allowed_claims=scope,note", "required_claims=scope",
		`claim_constraints={"scope":{"type":"string","enum":["read","write"]}}`,
	)
	svcOpts := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: svcAudience, Alg: "ES256"}

	t.Run("approle entity", func(t *testing.T) {
		iss := s.issueAs(t, app.token, "svc", `claims={"scope":"read"}`)
		p := tl.verifier.mustVerify(t, iss.Token, svcOpts).Payload
		want := map[string]any{
			"sub":           app.entityID,
			"team":          "payments",
			"env":           "prod",
			"groups":        []any{"payments-team"},
			"group_ids":     []any{app.groupID},
			"role_id_login": app.roleID,
			"app_role":      "svc-app",
			"scope":         "read",
			"aud":           svcAudience,
		}
		checkClaims(t, p, want)
	})

	t.Run("userpass entity", func(t *testing.T) {
		s.vault(t, "write", mountPath+"/roles/user", "key=k", "ttl=5m", "audiences="+userAudience,
			"subject_template={{identity.entity.name}}",
			"claims_template="+mustJSON(t, map[string]string{
				"email":    "{{identity.entity.metadata.email}}",
				"groups":   "{{identity.entity.groups.names}}",
				"username": "{{identity.entity.aliases." + user.accessor + ".name}}",
			}))
		iss := s.issueAs(t, user.token, "user")
		p := tl.verifier.mustVerify(t, iss.Token, verifyOpts{
			JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: userAudience, Alg: "ES256",
		}).Payload
		groups, _ := p["groups"].([]any)
		var names []string
		for _, g := range groups {
			n, _ := g.(string)
			names = append(names, n)
		}
		slices.Sort(names)
		if want := []string{"developers", "oncall"}; !slices.Equal(names, want) {
			t.Errorf("groups = %v (%T), want the names %v", p["groups"], p["groups"], want)
		}
		delete(p, "groups")
		checkClaims(t, p, map[string]any{
			"sub":      "alice-entity",
			"email":    "alice@example.com",
			"username": "alice",
			"aud":      userAudience,
		})
	})

	t.Run("forgery refused", func(t *testing.T) {
		// The control: the same request shape is accepted when nothing in
		// it is forged, so each refusal below is about its one change.
		if code, body := s.issueHTTP(t, app.token, "svc", map[string]any{
			"audience": "svc-other", "claims": map[string]any{"scope": "write"},
		}); code != http.StatusOK {
			t.Fatalf("control request: HTTP %d, want 200: %s", code, body)
		}
		cases := []struct {
			name string
			body map[string]any
			want []string // each must appear in the (JSON) error body
		}{
			{"subject chosen by caller", map[string]any{"subject": "someone-else", "claims": map[string]any{"scope": "read"}}, []string{`\"subject\"`, "subject_template"}},
			{"sub through claims", map[string]any{"claims": map[string]any{"scope": "read", "sub": "x"}}, []string{`\"claims\"`, `\"sub\"`, "reserved"}},
			{"iss through claims", map[string]any{"claims": map[string]any{"scope": "read", "iss": "x"}}, []string{`\"claims\"`, `\"iss\"`, "reserved"}},
			{"template claim overridden", map[string]any{"claims": map[string]any{"scope": "read", "team": "other"}}, []string{`\"team\"`, "pinned"}},
			{"groups overridden", map[string]any{"claims": map[string]any{"scope": "read", "groups": []string{"admins"}}}, []string{`\"groups\"`, "pinned"}},
			{"audience not allowed", map[string]any{"audience": "evil-aud", "claims": map[string]any{"scope": "read"}}, []string{`\"audience\"`, "evil-aud", "allowed_audiences"}},
			{"too many audiences", map[string]any{"audience": []string{"svc-a", "svc-b", "svc-c"}, "claims": map[string]any{"scope": "read"}}, []string{`\"audience\"`, "max_audiences"}},
			{"claim outside allowed_claims", map[string]any{"claims": map[string]any{"scope": "read", "admin": true}}, []string{`\"admin\"`, "allowed_claims"}},
			{"claim_constraints enum", map[string]any{"claims": map[string]any{"scope": "admin"}}, []string{`\"scope\"`, "claim_constraints"}},
			{"claim_constraints type", map[string]any{"claims": map[string]any{"scope": []string{"read"}}}, []string{`\"scope\"`, "claim_constraints"}},
			{"required claim missing", map[string]any{}, []string{`\"scope\"`, "required_claims"}},
			{"token over 8192 bytes", map[string]any{"claims": map[string]any{"scope": "read", "note": strings.Repeat("n", 9000)}}, []string{"8192"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code, body := s.issueHTTP(t, app.token, "svc", tc.body)
				if code != http.StatusBadRequest {
					t.Fatalf("HTTP %d, want 400: %s", code, body)
				}
				for _, w := range tc.want {
					if !strings.Contains(body, w) {
						t.Errorf("error does not name %q: %s", w, body)
					}
				}
				t.Logf("refused: %s", strings.TrimSpace(body))
			})
		}
	})

	t.Run("missing template input", func(t *testing.T) {
		s.vault(t, "write", mountPath+"/roles/incomplete-metadata", "key=k", "audiences="+userAudience,
			"subject_template={{identity.entity.id}}",
			`claims_template={"cost_center":"{{identity.entity.metadata.missing}}"}`)
		// alice logged in with userpass only: she has no approle alias.
		s.vault(t, "write", mountPath+"/roles/incomplete-alias", "key=k", "audiences="+userAudience,
			"subject_template={{identity.entity.aliases."+app.accessor+".name}}")

		cases := []struct {
			name, role, template string
		}{
			{"metadata key", "incomplete-metadata", "{{identity.entity.metadata.missing}}"},
			{"alias of another mount", "incomplete-alias", "{{identity.entity.aliases." + app.accessor + ".name}}"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code, body := s.issueHTTP(t, user.token, tc.role, nil)
				if code != http.StatusBadRequest {
					t.Fatalf("HTTP %d, want 400: %s", code, body)
				}
				if !strings.Contains(body, tc.template) {
					t.Errorf("error does not name the template %s: %s", tc.template, body)
				}
				if !containsAny(body, "no value", "not found", "missing metadata", "has no") {
					t.Errorf("error does not say what is missing: %s", body)
				}
				t.Logf("refused: %s", strings.TrimSpace(body))
			})
		}

		t.Run("root token has no entity", func(t *testing.T) {
			code, body := s.issueHTTP(t, s.rootToken, "svc", map[string]any{"claims": map[string]any{"scope": "read"}})
			if code != http.StatusBadRequest || !strings.Contains(body, "require_entity") {
				t.Fatalf("HTTP %d %s; want 400 naming require_entity", code, body)
			}
		})
	})

	t.Run("policy", func(t *testing.T) {
		s.vault(t, "write", mountPath+"/roles/other", "key=k", "audiences="+svcAudience)
		denied := []struct {
			name string
			args []string
		}{
			{"issue from another role", []string{"write", "-f", mountPath + "/issue/other"}},
			{"read a role", []string{"read", mountPath + "/roles/svc"}},
			{"list roles", []string{"list", mountPath + "/roles"}},
			{"rewrite its own role", []string{"write", mountPath + "/roles/svc", "allowed_subjects=*"}},
			{"read a key", []string{"read", mountPath + "/keys/k"}},
			{"create a key", []string{"write", mountPath + "/keys/mine", "algorithm=ES256"}},
			{"rotate a key", []string{"write", "-f", mountPath + "/keys/k/rotate"}},
		}
		for _, tc := range denied {
			t.Run("approle token: "+tc.name, func(t *testing.T) {
				mustDeny(t, s, app.token, tc.args...)
			})
		}

		policy := filepath.Join(s.dir, "jwt-security-team.hcl")
		writeFile(t, policy, securityTeamPolicy)
		s.vault(t, "policy", "write", "jwt-security-team", policy)
		sec := s.vaultJSON(t, "token", "create", "-format=json", "-policy=jwt-security-team", "-no-default-policy", "-ttl=10m")
		if sec.Auth == nil || sec.Auth.ClientToken == "" {
			t.Fatal("vault token create printed no auth.client_token")
		}
		secTok := sec.Auth.ClientToken
		secrets.add(secTok)

		t.Run("security team manages keys and roles", func(t *testing.T) {
			s.vaultAs(t, secTok, "write", mountPath+"/keys/team-key", "algorithm=ES256")
			s.vaultAs(t, secTok, "read", mountPath+"/keys/team-key")
			s.vaultAs(t, secTok, "write", "-f", mountPath+"/keys/team-key/rotate")
			if out := s.vaultAs(t, secTok, "list", mountPath+"/keys"); !strings.Contains(out, "team-key") {
				t.Errorf("list keys does not show team-key:\n%s", out)
			}
			s.vaultAs(t, secTok, "write", mountPath+"/roles/team-role", "key=team-key", "audiences="+svcAudience)
			s.vaultAs(t, secTok, "read", mountPath+"/roles/team-role")
			if out := s.vaultAs(t, secTok, "list", mountPath+"/roles"); !strings.Contains(out, "team-role") {
				t.Errorf("list roles does not show team-role:\n%s", out)
			}
		})
		for _, role := range []string{"svc", "team-role"} {
			t.Run("security team cannot issue from "+role, func(t *testing.T) {
				mustDeny(t, s, secTok, "write", "-f", mountPath+"/issue/"+role)
			})
		}
		t.Run("security team cleans up", func(t *testing.T) {
			s.vaultAs(t, secTok, "delete", mountPath+"/roles/team-role")
			s.vaultAs(t, secTok, "delete", mountPath+"/keys/team-key")
		})
	})

	// The GitHub-App-style recipe of docs/policy.md. Such tokens carry no
	// "aud", which the verifier insists on, so this checks their shape only;
	// RS256 signatures are verified in TestAllAlgorithms.
	t.Run("github app shape", func(t *testing.T) {
		s.vault(t, "write", mountPath+"/keys/github-app", "algorithm=RS256")
		s.vault(t, "write", mountPath+"/roles/github-app", "key=github-app", "issuer=123456",
			"not_before_skew=60s", "ttl=9m", "max_ttl=10m")
		before := time.Now().Unix()
		iss := s.issue(t, "github-app")
		after := time.Now().Unix()
		p := decodeJWT(t, iss.Token)
		if p.Header["alg"] != "RS256" || p.Payload["iss"] != "123456" {
			t.Errorf("alg %v iss %v, want RS256 and 123456", p.Header["alg"], p.Payload["iss"])
		}
		iat := number(t, "iat", p.Payload["iat"])
		exp := number(t, "exp", p.Payload["exp"])
		if iat < before-61 || iat > after-59 {
			t.Errorf("iat is %ds from now, want 60s in the past", iat-before)
		}
		if exp-after > 600 || exp < before+9*60-1 {
			t.Errorf("exp is %ds from now, want 9m and at most 10m", exp-before)
		}
		for _, c := range []string{"aud", "sub"} {
			if v, ok := p.Payload[c]; ok {
				t.Errorf("claim %s = %v, want none", c, v)
			}
		}
		if code, body := s.issueHTTP(t, s.rootToken, "github-app", map[string]any{"ttl": "11m"}); code != http.StatusBadRequest {
			t.Errorf("ttl=11m: HTTP %d, want 400 (max_ttl 10m): %s", code, body)
		}
	})

	t.Run("audit log holds no token", func(t *testing.T) {
		logPath := filepath.Join(s.dir, "audit.log")
		s.vault(t, "audit", "enable", "file", "file_path="+logPath)
		t.Cleanup(func() { s.run(s.rootToken, "", "audit", "disable", "file/") })

		iss := s.issueAs(t, app.token, "svc", `claims={"scope":"write"}`)
		tl.verifier.mustVerify(t, iss.Token, svcOpts)
		segs := strings.Split(iss.Token, ".")

		raw, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		log := string(raw)
		for i, what := range []string{"header", "payload", "signature"} {
			if strings.Contains(log, segs[i]) {
				t.Errorf("the audit log contains the token's %s segment", what)
			}
		}
		if strings.Contains(log, iss.Token) {
			t.Errorf("the audit log contains the token")
		}

		// The log must hold the issue response, with the token HMACed:
		// otherwise the checks above pass for a log that missed it.
		var found bool
		sc := bufio.NewScanner(strings.NewReader(log))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e struct {
				Type    string `json:"type"`
				Request struct {
					Path string `json:"path"`
				} `json:"request"`
				Response struct {
					Data map[string]any `json:"data"`
				} `json:"response"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("audit log line is not JSON: %v", err)
			}
			if e.Type != "response" || e.Request.Path != mountPath+"/issue/svc" {
				continue
			}
			found = true
			tok, _ := e.Response.Data["token"].(string)
			if !strings.HasPrefix(tok, "hmac-sha256:") {
				t.Errorf("audit response data.token is %q..., want an hmac-sha256 value", truncate(redact(tok), 20))
			}
		}
		if !found {
			t.Fatalf("the audit log (%d bytes) has no response entry for %s/issue/svc", len(raw), mountPath)
		}
	})

	t.Run("rate limit quota", func(t *testing.T) {
		s.vault(t, "write", "sys/quotas/rate-limit/jwt-issue", "path="+mountPath+"/issue/svc", "rate=2", "interval=1s")
		t.Cleanup(func() { s.run(s.rootToken, "", "delete", "sys/quotas/rate-limit/jwt-issue") })

		body := map[string]any{"claims": map[string]any{"scope": "read"}}
		counts := map[int]int{}
		for range 10 {
			code, msg := s.issueHTTP(t, app.token, "svc", body)
			counts[code]++
			if code == http.StatusTooManyRequests && !strings.Contains(msg, "rate limit quota exceeded") {
				t.Errorf("429 without the quota message: %s", msg)
			}
		}
		if counts[http.StatusOK] == 0 || counts[http.StatusTooManyRequests] == 0 || counts[http.StatusOK]+counts[http.StatusTooManyRequests] != 10 {
			t.Fatalf("10 issues in a burst got %v (HTTP status: count), want some 200 and some 429 only", counts)
		}
		// Another role on the mount is outside the quota's path.
		s.vault(t, "write", mountPath+"/roles/unlimited", "key=k", "audiences="+svcAudience)
		for range 5 {
			if code, msg := s.issueHTTP(t, s.rootToken, "unlimited", nil); code != http.StatusOK {
				t.Fatalf("issue from a role outside the quota: HTTP %d: %s", code, msg)
			}
		}
		// The quota refills: a 429 is "later", not "never".
		err := waitFor(5*time.Second, 250*time.Millisecond, func() (bool, error) {
			code, _ := s.issueHTTP(t, app.token, "svc", body)
			return code == http.StatusOK, nil
		})
		if err != nil {
			t.Fatalf("no issue succeeded after the burst: %v", err)
		}
	})

	t.Run("two tenants", func(t *testing.T) {
		const mountB = "jwt-b"
		issuerB := s.addr + "/v1/" + mountB
		s.vault(t, "secrets", "enable", "-path="+mountB, "-plugin-version="+tl.pluginVersion, pluginName)
		s.vault(t, "write", mountB+"/config", "issuer="+issuerB)
		s.vault(t, "write", mountB+"/keys/k", "algorithm=ES256")
		s.vault(t, "write", mountB+"/roles/svc", "key=k", "audiences="+svcAudience)

		secB := s.vaultJSON(t, "write", "-f", "-format=json", mountB+"/issue/svc")
		tokB, _ := secB.Data["token"].(string)
		kidB, _ := secB.Data["kid"].(string)
		if tokB == "" || kidB == "" {
			t.Fatalf("%s/issue/svc: no token or kid in the response", mountB)
		}
		secrets.add(tokB)
		optsB := verifyOpts{JWKSURL: issuerB + "/jwks", Issuer: issuerB, Audience: svcAudience, Alg: "ES256"}
		tl.verifier.mustVerify(t, tokB, optsB) // the control

		tokA := s.issueAs(t, app.token, "svc", `claims={"scope":"read"}`)
		tl.verifier.mustVerify(t, tokA.Token, svcOpts)

		t.Run("jwt token against jwt-b", func(t *testing.T) {
			tl.verifier.mustReject(t, tokA.Token, optsB)
			// With jwt's own issuer the key alone must make it fail.
			o := optsB
			o.Issuer = s.issuer()
			tl.verifier.mustReject(t, tokA.Token, o)
		})
		t.Run("jwt-b token against jwt", func(t *testing.T) {
			tl.verifier.mustReject(t, tokB, svcOpts)
			o := svcOpts
			o.Issuer = issuerB
			tl.verifier.mustReject(t, tokB, o)
		})
		t.Run("JWKS are disjoint", func(t *testing.T) {
			kidsA := sortedKids(checkJWKS(t, s, "/v1/"+mountPath+"/jwks", map[string]string{tokA.Kid: "ES256"}))
			kidsB := sortedKids(checkJWKS(t, s, "/v1/"+mountB+"/jwks", map[string]string{kidB: "ES256"}))
			for _, k := range kidsA {
				if slices.Contains(kidsB, k) {
					t.Errorf("kid %s is in both %s's and %s's JWKS", k, mountPath, mountB)
				}
			}
		})
	})
	// Last: it disables and then deletes alice's entity.
	t.Run("refresh follows the entity", func(t *testing.T) {
		policy := filepath.Join(s.dir, "jwt-issue-user.hcl")
		writeFile(t, policy, `path "`+mountPath+`/issue/user" { capabilities = ["update"] }
path "`+mountPath+`/issue/incomplete-*" { capabilities = ["update"] }
path "`+mountPath+`/issue/entity-refresh" { capabilities = ["update"] }
`)
		s.vault(t, "policy", "write", "jwt-issue-user", policy)
		s.vault(t, "write", mountPath+"/roles/entity-refresh", "key=k", "audiences="+userAudience,
			"subject_template={{identity.entity.id}}", "ttl=5m", "refresh_ttl=1h")
		first := s.vaultJSONAs(t, user.token, "write", "-format=json", "-f", mountPath+"/issue/entity-refresh")
		rt, _ := first.Data["refresh_token"].(string)
		if rt == "" {
			t.Fatal("issue returned no refresh_token")
		}
		secrets.add(rt)
		// A gateway's token (here root, which has no entity) refreshes for
		// alice; it gets a new refresh token each time.
		refresh := func(wantCode int, want string) {
			t.Helper()
			resp, out := httpDo(t, http.MethodPost, s.addr+"/v1/"+mountPath+"/refresh", s.rootToken, mustJSON(t, map[string]any{"refresh_token": rt}))
			if resp.StatusCode != wantCode || !strings.Contains(string(out), want) {
				got := redact(string(out))
				if resp.StatusCode == http.StatusOK {
					got = "(a new token and refresh token, not shown)"
				}
				t.Fatalf("refresh: HTTP %d %s, want %d containing %q", resp.StatusCode, got, wantCode, want)
			}
			var ok secret
			if json.Unmarshal(out, &ok) == nil {
				if next, _ := ok.Data["refresh_token"].(string); next != "" {
					secrets.add(next)
					rt = next
				}
			}
		}
		refresh(http.StatusOK, "refresh_token")

		s.vault(t, "write", "identity/entity/id/"+user.entityID, "disabled=true")
		refresh(http.StatusBadRequest, "entity is disabled")
		s.vault(t, "write", "identity/entity/id/"+user.entityID, "disabled=false")
		refresh(http.StatusOK, "refresh_token")

		s.vault(t, "delete", "identity/entity/id/"+user.entityID)
		refresh(http.StatusBadRequest, "entity no longer exists")
	})
}

// securityTeamPolicy manages keys and roles but cannot issue; docs/policy.md
// shows the same policy.
const securityTeamPolicy = `path "` + mountPath + `/roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "` + mountPath + `/keys/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
`

// login is a Vault token with an identity entity behind it.
type login struct {
	token    string
	entityID string
	accessor string // of the auth mount the login came through
	roleID   string // approle only
	groupID  string // approle only
}

// setupApprole makes an approle login whose entity has metadata team=payments
// and env=prod and belongs to the group payments-team. The token's only
// policy beyond default allows issuing from jwt/issue/svc.
func setupApprole(t *testing.T, s *vaultServer) login {
	t.Helper()
	policy := filepath.Join(s.dir, "jwt-issue-svc.hcl")
	writeFile(t, policy, `path "`+mountPath+`/issue/svc" { capabilities = ["update"] }`+"\n")
	s.vault(t, "policy", "write", "jwt-issue-svc", policy)

	s.vault(t, "auth", "enable", "approle")
	s.vault(t, "write", "auth/approle/role/svc-app", "token_policies=jwt-issue-svc", "token_ttl=30m")
	var l login
	l.roleID = dataString(t, s.vaultJSON(t, "read", "-format=json", "auth/approle/role/svc-app/role-id"), "role_id")
	secretID := dataString(t, s.vaultJSON(t, "write", "-f", "-format=json", "auth/approle/role/svc-app/secret-id"), "secret_id")
	secrets.add(secretID)

	// The secret goes on stdin, not the command line.
	r := s.run("", secretID, "write", "-format=json", "auth/approle/login", "role_id="+l.roleID, "secret_id=-")
	l.token = loginToken(t, "approle", r)
	l.entityID = entityOf(t, s, l.token)
	l.accessor = authAccessor(t, s, "approle/")

	s.vault(t, "write", "identity/entity/id/"+l.entityID, "metadata=team=payments", "metadata=env=prod")
	l.groupID = dataString(t, s.vaultJSON(t, "write", "-format=json", "identity/group", "name=payments-team", "member_entity_ids="+l.entityID), "id")
	return l
}

// setupUserpass makes a userpass user alice whose entity is created first,
// as an operator provisioning people would: named alice-entity, metadata
// email=alice@example.com, an alias for the userpass mount, in the groups
// developers and oncall.
func setupUserpass(t *testing.T, s *vaultServer) login {
	t.Helper()
	policy := filepath.Join(s.dir, "jwt-issue-user.hcl")
	writeFile(t, policy, `path "`+mountPath+`/issue/user" { capabilities = ["update"] }
path "`+mountPath+`/issue/incomplete-*" { capabilities = ["update"] }
`)
	s.vault(t, "policy", "write", "jwt-issue-user", policy)

	s.vault(t, "auth", "enable", "userpass")
	var l login
	l.accessor = authAccessor(t, s, "userpass/")
	id := dataString(t, s.vaultJSON(t, "write", "-format=json", "identity/entity", "name=alice-entity", "metadata=email=alice@example.com"), "id")
	s.vault(t, "write", "identity/entity-alias", "name=alice", "canonical_id="+id, "mount_accessor="+l.accessor)
	for _, g := range []string{"developers", "oncall"} {
		s.vault(t, "write", "identity/group", "name="+g, "member_entity_ids="+id)
	}

	password := "pw-" + strings.Repeat("x", 4) + fmt.Sprint(time.Now().UnixNano())
	secrets.add(password)
	s.vault(t, "write", "auth/userpass/users/alice", "token_policies=jwt-issue-user", "password="+password)
	r := s.run("", password, "write", "-format=json", "auth/userpass/login/alice", "password=-")
	l.token = loginToken(t, "userpass", r)
	l.entityID = entityOf(t, s, l.token)
	if l.entityID != id {
		t.Fatalf("alice's login got entity %s, want the one made for her, %s", l.entityID, id)
	}
	return l
}

func loginToken(t *testing.T, method string, r cliResult) string {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s login: %v\n%s", method, r.Err, redact(r.Stderr))
	}
	var sec secret
	if err := json.Unmarshal([]byte(r.Stdout), &sec); err != nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		t.Fatalf("%s login: no auth.client_token in the output (err=%v)", method, err)
	}
	secrets.add(sec.Auth.ClientToken)
	return sec.Auth.ClientToken
}

func entityOf(t *testing.T, s *vaultServer, token string) string {
	t.Helper()
	id := dataString(t, s.vaultJSONAs(t, token, "token", "lookup", "-format=json"), "entity_id")
	if id == "" {
		t.Fatal("token lookup: the login token has no entity_id")
	}
	return id
}

func authAccessor(t *testing.T, s *vaultServer, mount string) string {
	t.Helper()
	var mounts map[string]struct {
		Accessor string `json:"accessor"`
	}
	out := s.vault(t, "auth", "list", "-format=json")
	if err := json.Unmarshal([]byte(out), &mounts); err != nil {
		t.Fatalf("vault auth list: %v", err)
	}
	acc := mounts[mount].Accessor
	if acc == "" {
		t.Fatalf("vault auth list: no accessor for %s", mount)
	}
	return acc
}

func dataString(t *testing.T, sec secret, key string) string {
	t.Helper()
	v, ok := sec.Data[key].(string)
	if !ok {
		t.Fatalf("data.%s is %T, want a string", key, sec.Data[key])
	}
	return v
}

// issueHTTP posts a JSON body to jwt/issue/<role> and returns the status and
// the redacted body. A token in a successful answer is registered as a
// secret first, so it is never logged.
func (s *vaultServer) issueHTTP(t *testing.T, token, role string, body map[string]any) (int, string) {
	t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	resp, out := httpDo(t, http.MethodPost, s.addr+"/v1/"+mountPath+"/issue/"+role, token, mustJSON(t, body))
	var ok struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if json.Unmarshal(out, &ok) == nil && ok.Data.Token != "" {
		secrets.add(ok.Data.Token)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HTTP %d carries a token", resp.StatusCode)
		}
	}
	if resp.StatusCode != http.StatusOK && strings.Contains(string(out), "eyJ") {
		t.Errorf("HTTP %d: the error body holds something shaped like a JWT", resp.StatusCode)
	}
	return resp.StatusCode, redact(string(out))
}

// mustDeny runs a CLI command with token and fails unless Vault answers 403
// permission denied without printing a JWT.
func mustDeny(t *testing.T, s *vaultServer, token string, args ...string) {
	t.Helper()
	r := s.run(token, "", args...)
	if r.Err == nil {
		t.Fatalf("vault %s succeeded; want permission denied\n%s", strings.Join(args, " "), redact(r.Stdout))
	}
	if !strings.Contains(r.Stderr, "permission denied") || !strings.Contains(r.Stderr, "403") {
		t.Errorf("vault %s: want a 403 permission denied, got: %s", strings.Join(args, " "), redact(r.Stderr))
	}
	if strings.Contains(r.Stdout+r.Stderr, "eyJ") {
		t.Errorf("vault %s: a token was printed on a denied request", strings.Join(args, " "))
	}
}

// checkClaims compares the named claims of a verified payload.
func checkClaims(t *testing.T, payload map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		got, ok := payload[k]
		if !ok {
			t.Errorf("claim %q missing, want %v", k, w)
			continue
		}
		if mustJSON(t, got) != mustJSON(t, w) {
			t.Errorf("claim %q = %v, want %v", k, got, w)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
