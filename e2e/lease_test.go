//go:build unix

package e2e

import (
	"encoding/json"
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
