//go:build unix

package e2e

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// TestRestart checks that keys, roles and the plugin's mount survive a
// restart of a persistent (raft) server: what was read before reads the same
// after, a token issued before still verifies, and new tokens issue.
func TestRestart(t *testing.T) {
	tl := loadTools(t)
	s := newPersistentServer(t, tl)
	s.startPersistent(t)
	s.initialize(t)
	s.unseal(t)
	s.installPlugin(t)

	const (
		key  = "k-restart"
		role = "r-restart"
		alg  = "PS256"
	)
	s.vault(t, "write", mountPath+"/keys/"+key, "algorithm="+alg, "rsa_bits=2048")
	s.vault(t, "write", mountPath+"/roles/"+role, "key="+key, "audiences="+e2eAudience, "ttl=5m",
		"subject=restart", `claims={"team":"e2e"}`)
	opts := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: alg}

	before := s.issue(t, role)
	out := tl.verifier.mustVerify(t, before.Token, opts)
	if out.Payload["sub"] != "restart" || out.Payload["team"] != "e2e" {
		t.Errorf("token before restart: sub %v team %v, want restart and e2e", out.Payload["sub"], out.Payload["team"])
	}
	read := func(path string) map[string]any {
		t.Helper()
		return s.vaultJSON(t, "read", "-format=json", path).Data
	}
	keyBefore := read(mountPath + "/keys/" + key)
	roleBefore := read(mountPath + "/roles/" + role)
	configBefore := read(mountPath + "/config")

	s.stop(t)
	s.startPersistent(t)
	s.unseal(t)

	for _, c := range []struct {
		path   string
		before map[string]any
	}{
		{mountPath + "/keys/" + key, keyBefore},
		{mountPath + "/roles/" + role, roleBefore},
		{mountPath + "/config", configBefore},
	} {
		after := read(c.path)
		if !reflect.DeepEqual(c.before, after) {
			t.Errorf("%s changed across the restart:\n%s", c.path, diffMaps(c.before, after))
		}
	}

	// The old token still verifies against the JWKS served after the restart.
	tl.verifier.mustVerify(t, before.Token, opts)

	after := s.issue(t, role)
	if after.Kid != before.Kid {
		t.Errorf("kid after restart %q, before %q; the key was not rotated", after.Kid, before.Kid)
	}
	if after.Jti != "" && after.Jti == before.Jti {
		t.Errorf("jti %q issued before and after the restart", after.Jti)
	}
	out = tl.verifier.mustVerify(t, after.Token, opts)
	if out.Payload["sub"] != "restart" || out.Payload["team"] != "e2e" {
		t.Errorf("token after restart: sub %v team %v, want restart and e2e", out.Payload["sub"], out.Payload["team"])
	}
}

// diffMaps lists the top-level members that differ. The values are key and
// role data (public keys, settings), not secrets.
func diffMaps(a, b map[string]any) string {
	var names []string
	for k := range a {
		names = append(names, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var out string
	for _, k := range names {
		if reflect.DeepEqual(a[k], b[k]) {
			continue
		}
		x, _ := json.Marshal(a[k])
		y, _ := json.Marshal(b[k])
		out += "  " + k + ": before " + redact(string(x)) + "\n  " + k + ": after  " + redact(string(y)) + "\n"
	}
	return out
}
