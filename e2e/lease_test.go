//go:build unix

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestNoLease: issue creates no lease, and the mount's default_lease_ttl
// and max_lease_ttl (vault secrets tune) do not touch a token's lifetime:
// only the role's ttl and max_ttl do (docs/api.md, docs/operations.md).
func TestNoLease(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)
	s.vault(t, "secrets", "tune", "-default-lease-ttl=30s", "-max-lease-ttl=60s", mountPath+"/")
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "ttl=2m", "refresh_ttl=1h")

	for _, tc := range []struct {
		name string
		args []string
		want int64
	}{
		{"role ttl", nil, 120},
		{"caller ttl above the mount's max_lease_ttl", []string{"ttl=1h"}, 3600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := s.vault(t, append([]string{"write", "-f", "-format=json", mountPath + "/issue/r"}, tc.args...)...)
			var sec struct {
				LeaseID       string         `json:"lease_id"`
				LeaseDuration int64          `json:"lease_duration"`
				Renewable     bool           `json:"renewable"`
				Data          map[string]any `json:"data"`
			}
			if err := json.Unmarshal([]byte(out), &sec); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			tok, _ := sec.Data["token"].(string)
			rt, _ := sec.Data["refresh_token"].(string)
			secrets.add(tok)
			secrets.add(rt)
			if sec.LeaseID != "" || sec.LeaseDuration != 0 || sec.Renewable {
				t.Errorf("issue made a lease: lease_id %q, lease_duration %d, renewable %v", sec.LeaseID, sec.LeaseDuration, sec.Renewable)
			}
			if got := number(t, "expires_in", sec.Data["expires_in"]); got != tc.want {
				t.Errorf("expires_in %d, want %d: the mount's lease TTLs (30s, 60s) must not apply", got, tc.want)
			}
			p := decodeJWT(t, tok).Payload
			if life := number(t, "exp", p["exp"]) - number(t, "iat", p["iat"]); life != tc.want {
				t.Errorf("token lifetime %ds, want %d", life, tc.want)
			}
		})
	}
}

// TestResponseWrapping: issue answers through Vault's response wrapping
// (-wrap-ttl), single and batch, as any Vault endpoint does: the caller
// gets a single-use wrapping token and no JWT, and whoever unwraps it gets
// tokens an outside verifier accepts.
func TestResponseWrapping(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "ttl=2m", "allowed_subjects=wrap*")
	opts := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256"}

	type wrapped struct {
		Data     map[string]any `json:"data"`
		WrapInfo *struct {
			Token        string `json:"token"`
			TTL          int64  `json:"ttl"`
			CreationPath string `json:"creation_path"`
		} `json:"wrap_info"`
	}
	for _, tc := range []struct {
		name   string
		stdin  string
		tokens func(t *testing.T, data map[string]any) []string
	}{
		{"single", "", func(t *testing.T, data map[string]any) []string {
			tok, _ := data["token"].(string)
			return []string{tok}
		}},
		{"batch", `{"batch_input": [{"subject": "wrap-1"}, {"subject": "wrap-2"}]}`, func(t *testing.T, data map[string]any) []string {
			var out []string
			items, _ := data["batch_results"].([]any)
			for _, it := range items {
				m, _ := it.(map[string]any)
				tok, _ := m["token"].(string)
				out = append(out, tok)
			}
			if len(out) != 2 {
				t.Fatalf("unwrapped batch_results: %v, want 2 items", redact(fmt.Sprint(data)))
			}
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"write", "-wrap-ttl=60s", "-format=json", mountPath + "/issue/r"}
			if tc.stdin != "" {
				args = append(args, "-")
			} else {
				args = append(args, "subject=wrap")
			}
			r := s.run(s.rootToken, tc.stdin, args...)
			if r.Err != nil {
				t.Fatalf("wrapped issue: %v\n%s", r.Err, redact(r.Stderr))
			}
			var w wrapped
			if err := json.Unmarshal([]byte(r.Stdout), &w); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			if w.WrapInfo == nil || w.WrapInfo.Token == "" {
				t.Fatalf("wrapped issue answered no wrap_info: %s", redact(r.Stdout))
			}
			secrets.add(w.WrapInfo.Token)
			if w.Data != nil || strings.Contains(r.Stdout, "eyJ") {
				t.Fatalf("wrapped issue answered data or a JWT to the caller: %s", redact(r.Stdout))
			}
			if w.WrapInfo.CreationPath != mountPath+"/issue/r" || w.WrapInfo.TTL != 60 {
				t.Errorf("wrap_info: creation_path %q, ttl %d; want %q, 60", w.WrapInfo.CreationPath, w.WrapInfo.TTL, mountPath+"/issue/r")
			}

			sec := s.vaultJSON(t, "unwrap", "-format=json", w.WrapInfo.Token)
			toks := tc.tokens(t, sec.Data)
			for i, tok := range toks {
				secrets.add(tok)
				out := tl.verifier.mustVerify(t, tok, opts)
				want := "wrap"
				if len(toks) > 1 {
					want = fmt.Sprintf("wrap-%d", i+1)
				}
				if out.Payload["sub"] != want {
					t.Errorf("unwrapped token %d: sub %v, want %s", i, out.Payload["sub"], want)
				}
			}
			if r := s.run(s.rootToken, "", "unwrap", w.WrapInfo.Token); r.Err == nil {
				t.Errorf("a wrapping token unwrapped twice")
			}
		})
	}
}
