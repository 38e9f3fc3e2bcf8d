//go:build unix

package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestBadInput sends each kind of bad input through the real vault CLI and
// the real server: the answer must be a 400 naming the field, and keys,
// roles and config must read exactly as before. Unit tests cover more
// cases; this proves Vault's request path (existence checks, field
// parsing, the gRPC boundary) keeps them 400s.
func TestBadInput(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "allowed_audiences=https://*.example.com",
		"allowed_subjects=user-*", `claims={"team":"payments"}`, "allowed_claims=scope", "max_ttl=1h")

	before := snapshotOrFail(t, s)

	cases := []struct {
		name  string
		args  []string
		field string
	}{
		{"unknown algorithm", []string{"write", mountPath + "/keys/new", "algorithm=HS256"}, `"algorithm"`},
		{"unknown provider", []string{"write", mountPath + "/keys/new", "provider=nope"}, `"provider"`},
		{"rsa bits below 2048", []string{"write", mountPath + "/keys/new", "algorithm=RS256", "rsa_bits=1024"}, `"rsa_bits"`},
		{"rsa bits not offered", []string{"write", mountPath + "/keys/new", "algorithm=RS256", "rsa_bits=2500"}, `"rsa_bits"`},
		{"role naming a missing key", []string{"write", mountPath + "/roles/new", "key=missing"}, `"key"`},
		{"ttl above max_ttl", []string{"write", mountPath + "/roles/new", "key=k", "ttl=2h", "max_ttl=1h"}, `"ttl"`},
		{"negative ttl", []string{"write", mountPath + "/roles/r", "ttl=-5m"}, `"ttl"`},
		{"claims not a JSON object", []string{"write", mountPath + "/roles/r", `claims=["a"]`}, `"claims"`},
		{"claims too large", []string{"write", mountPath + "/roles/r", `claims={"x":"` + strings.Repeat("a", 17000) + `"}`}, `"claims"`},
		{"reserved pinned claim", []string{"write", mountPath + "/roles/r", `claims={"exp":1}`}, `"claims"`},
		{"pinned sub through claims", []string{"write", mountPath + "/roles/r", `claims={"sub":"admin"}`}, `"claims"`},
		{"caller claim not allowed", []string{"write", mountPath + "/issue/r", `claims={"admin":true}`}, `"claims"`},
		{"caller reserved claim", []string{"write", mountPath + "/issue/r", `claims={"iss":"https://evil.example.com"}`}, `"claims"`},
		{"caller overrides pinned claim", []string{"write", mountPath + "/issue/r", `claims={"team":"other"}`}, `"claims"`},
		{"audience matching no pattern", []string{"write", mountPath + "/issue/r", "audience=https://evil.com"}, `"audience"`},
		{"subject matching no pattern", []string{"write", mountPath + "/issue/r", "subject=admin"}, `"subject"`},
		{"issue ttl above max_ttl", []string{"write", mountPath + "/issue/r", "ttl=3h"}, `"ttl"`},
		{"max_ttl above 10 years", []string{"write", mountPath + "/roles/r", "max_ttl=87601h"}, `"max_ttl"`},
		{"verification_ttl above 10 years", []string{"write", mountPath + "/keys/k", "verification_ttl=87601h"}, `"verification_ttl"`},
		{"revoke exp past the NumericDate range", []string{"write", mountPath + "/revoke", "jti=x", "exp=1000000000000000"}, `invalid "exp"`},
		{"subject with a bidi override", []string{"write", mountPath + "/issue/r", "subject=user-\u202eadmin"}, `"subject"`},
		{"audience with a line separator", []string{"write", mountPath + "/roles/r", "audiences=a\u2028b"}, `"audiences"`},
		{"issuer with a control character", []string{"write", mountPath + "/config", "issuer=vault\u0085jwt"}, `"issuer"`},
		{"pinned claims repeat a name", []string{"write", mountPath + "/roles/r", `claims={"team":"a","team":"b"}`}, `"claims"`},
		{"caller claims repeat a name", []string{"write", mountPath + "/issue/r", `claims={"scope":"read","scope":"admin"}`}, `"claims"`},
		{"batch_input with trailing data", []string{"write", mountPath + "/issue/r", `batch_input=[{"subject":"user-1"}] [{"subject":"user-2"}]`}, `"batch_input"`},
		{"batch_input item repeats a name", []string{"write", mountPath + "/issue/r", `batch_input=[{"subject":"admin","subject":"user-1"}]`}, `"batch_input"`},
		{"pinned claim number beyond float64", []string{"write", mountPath + "/roles/r", `claims={"big":1e999}`}, `"claims"`},
		{"revoke exp with a subject", []string{"write", mountPath + "/revoke", "subject=s", "exp=5"}, `invalid "exp"`},
		{"revoke issuer with a role", []string{"write", mountPath + "/revoke", "role=r", "issuer=https://other.example.com"}, `invalid "issuer"`},
		{"revoke issuer not an issuer", []string{"write", mountPath + "/revoke", "subject=s", "issuer=has space"}, `invalid "issuer"`},
		{"region on a local key", []string{"write", mountPath + "/keys/new", "provider=local", "region=eu-west-1"}, `"region"`},
		{"fractional issue ttl", []string{"write", mountPath + "/issue/r", "ttl=1.9s"}, `"ttl"`},
		{"empty enum", []string{"write", mountPath + "/roles/r", "allowed_claims=scope", `claim_constraints={"scope":{"enum":[]}}`}, `"claim_constraints"`},
		{"required claim twice", []string{"write", mountPath + "/roles/r", "allowed_claims=scope", "required_claims=scope,scope"}, `"required_claims"`},
		{"boolean not a boolean", []string{"write", mountPath + "/roles/r", "jti=maybe"}, `invalid "jti": must be a boolean`},
		{"duration not a duration", []string{"write", mountPath + "/keys/k", "verification_ttl=soon"}, `invalid "verification_ttl": must be a duration`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(s.rootToken, "", tc.args...)
			out := r.Stdout + r.Stderr
			if r.Err == nil {
				t.Fatalf("accepted; want a 400\n%s", redact(out))
			}
			if !strings.Contains(out, "Code: 400") || !strings.Contains(out, tc.field) {
				t.Fatalf("want Code: 400 naming %s, got:\n%s", tc.field, redact(out))
			}
			if after := snapshotOrFail(t, s); !reflect.DeepEqual(before, after) {
				t.Fatalf("storage changed after a refused request")
			}
		})
	}

	t.Run("endpoint with credentials is not echoed", func(t *testing.T) {
		r := s.run(s.rootToken, "", "write", mountPath+"/config/aws", "endpoint=https://AKIAE2E:e2eEndpointSecret@kms.example.com")
		out := r.Stdout + r.Stderr
		if r.Err == nil || !strings.Contains(out, "Code: 400") || !strings.Contains(out, `invalid "endpoint"`) {
			t.Fatalf("want Code: 400 naming endpoint, got:\n%s", redact(out))
		}
		if strings.Contains(out, "e2eEndpointSecret") {
			t.Fatalf("the error repeats the credentials")
		}
	})

	// A secret sent with the wrong JSON type: the framework's conversion
	// error would quote it; the engine's names only the field.
	for _, tc := range []struct{ path, body, field, secret string }{
		{"/refresh", `{"refresh_token": ["e2eSecretRefreshToken.x"]}`, "refresh_token", "e2eSecretRefreshToken"},
		{"/verify", `{"token": {"t": "e2eSecretToken"}}`, "token", "e2eSecretToken"},
		{"/config/aws", `{"access_key": "AKID", "secret_key": ["e2eSecretAWSKey"]}`, "secret_key", "e2eSecretAWSKey"},
	} {
		t.Run("wrong type for "+tc.field, func(t *testing.T) {
			r := s.run(s.rootToken, tc.body, "write", mountPath+tc.path, "-")
			out := r.Stdout + r.Stderr
			if r.Err == nil || !strings.Contains(out, "Code: 400") || !strings.Contains(out, `invalid "`+tc.field+`": must be a string`) {
				t.Fatalf("want Code: 400 naming %s, got:\n%s", tc.field, redact(out))
			}
			if strings.Contains(out, tc.secret) {
				t.Fatalf("the error quotes the value")
			}
		})
	}

	t.Run("issue on a missing role is a 404", func(t *testing.T) {
		r := s.run(s.rootToken, "", "write", "-f", mountPath+"/issue/missing")
		if out := r.Stdout + r.Stderr; r.Err == nil || !strings.Contains(out, "Code: 404") || !strings.Contains(out, `role "missing" does not exist`) {
			t.Fatalf("want a 404 naming the role, got:\n%s", redact(out))
		}
	})

	// Updates are partial POSTs; PATCH is not an operation of any path
	// (docs/api.md).
	for _, args := range [][]string{
		{"patch", mountPath + "/roles/r", "ttl=3m"},
		{"patch", mountPath + "/keys/k", "rotation_period=72h"},
		{"patch", mountPath + "/config", "jwks_max_age=60"},
	} {
		t.Run("vault "+strings.Join(args, " ")+" is a 405", func(t *testing.T) {
			r := s.run(s.rootToken, "", args...)
			if out := r.Stdout + r.Stderr; r.Err == nil || !strings.Contains(out, "Code: 405") || !strings.Contains(out, "unsupported operation") {
				t.Fatalf("want Code: 405 unsupported operation, got:\n%s", redact(out))
			}
			if after := snapshotOrFail(t, s); !reflect.DeepEqual(before, after) {
				t.Fatalf("storage changed after a refused PATCH")
			}
		})
	}

	// Vault, not the plugin, wraps the message of every error that is not
	// a 400 (vault/request_handling.go appends it to a multierror), as it
	// does its own 405s; docs/api.md says so.
	t.Run("a 404's message is wrapped by Vault", func(t *testing.T) {
		resp, body := httpDo(t, http.MethodPost, s.addr+"/v1/"+mountPath+"/issue/missing", s.rootToken, "{}")
		var e struct{ Errors []string }
		if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s %s (%v)", resp.Status, redact(string(body)), err)
		}
		if want := "1 error occurred:\n\t* role \"missing\" does not exist\n\n"; len(e.Errors) != 1 || e.Errors[0] != want {
			t.Errorf("errors %q, want [%q]", e.Errors, want)
		}
	})
}

// snapshotOrFail reads everything a bad request could have changed.
func snapshotOrFail(t *testing.T, s *vaultServer) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, p := range []string{"keys/k", "roles/r", "config"} {
		out[p] = s.vaultJSON(t, "read", "-format=json", mountPath+"/"+p).Data
	}
	for _, p := range []string{"keys", "roles"} {
		out["list "+p] = s.vault(t, "list", "-format=json", mountPath+"/"+p)
	}
	return out
}
