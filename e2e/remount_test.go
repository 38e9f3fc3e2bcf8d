//go:build unix

package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRemount: `vault secrets move` keeps everything the mount holds, and
// the engine follows its new path. Tokens issued before verify against the
// JWKS at the new path, issuing goes on there with the same key, errors
// name the new mount, writing the old issuer warns that it no longer names
// the mount, and discovery at the new path names the new issuer.
func TestRemount(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "ttl=5m")
	before := s.issue(t, "r")

	const moved = "team/jwt"
	// sys/remount, as `vault secrets move` does, but polling its status
	// every 100 ms instead of the CLI's 10 s.
	start := time.Now()
	id, _ := s.vaultJSON(t, "write", "-format=json", "sys/remount", "from="+mountPath+"/", "to="+moved+"/").Data["migration_id"].(string)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		info, _ := s.vaultJSON(t, "read", "-format=json", "sys/remount/status/"+id).Data["migration_info"].(map[string]any)
		if st := info["status"]; st == "success" {
			break
		} else if st == "failure" || time.Now().After(deadline) {
			t.Fatalf("moving %s/ to %s/: migration %q status %v", mountPath, moved, id, st)
		}
	}
	t.Logf("moved %s/ to %s/ in %s", mountPath, moved, time.Since(start).Round(time.Millisecond))

	// The config moved with the mount: the issuer still names jwt/.
	opts := verifyOpts{JWKSURL: s.addr + "/v1/" + moved + "/jwks", Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256"}
	tl.verifier.mustVerify(t, before.Token, opts)
	sec := s.vaultJSON(t, "write", "-f", "-format=json", moved+"/issue/r")
	tok, _ := sec.Data["token"].(string)
	secrets.add(tok)
	if out := tl.verifier.mustVerify(t, tok, opts); out.Header["kid"] != before.Kid {
		t.Errorf("after the move the token's kid is %v, want the key's %s", out.Header["kid"], before.Kid)
	}
	if r := s.run(s.rootToken, "", "write", "-f", mountPath+"/issue/r"); r.Err == nil {
		t.Errorf("%s/issue/r still answers after the move", mountPath)
	}

	if r := s.run(s.rootToken, "", "write", moved+"/roles/x", "key=nope"); r.Err == nil || !strings.Contains(r.Stderr, "create it with "+moved+"/keys/nope first") {
		t.Errorf("role naming a missing key after the move: err %v, stderr %s; want a 400 naming %s/keys/nope", r.Err, redact(r.Stderr), moved)
	}

	w := s.vaultJSON(t, "write", "-format=json", moved+"/config", "issuer="+s.issuer())
	if !strings.Contains(strings.Join(w.Warnings, "\n"), `does not end in "/`+moved+`"`) {
		t.Errorf("writing the old issuer after the move: warnings %q, want one saying it does not end in /%s", w.Warnings, moved)
	}
	newIssuer := s.addr + "/v1/" + moved
	if w := s.vaultJSON(t, "write", "-format=json", moved+"/config", "issuer="+newIssuer); len(w.Warnings) != 0 {
		t.Errorf("writing the new mount's issuer: warnings %q, want none", w.Warnings)
	}
	resp, body := s.get(t, "/v1/"+moved+"/.well-known/openid-configuration")
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc.Issuer != newIssuer || doc.JWKSURI != newIssuer+"/.well-known/keys" {
		t.Errorf("discovery after the move: status %d, %s; want issuer %s and its /.well-known/keys", resp.StatusCode, body, newIssuer)
	}
	sec = s.vaultJSON(t, "write", "-f", "-format=json", moved+"/issue/r")
	tok, _ = sec.Data["token"].(string)
	secrets.add(tok)
	tl.verifier.mustVerify(t, tok, verifyOpts{JWKSURL: doc.JWKSURI, Issuer: newIssuer, Audience: e2eAudience, Alg: "ES256"})
}
