//go:build unix

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestPluginUpgrade follows docs/operations.md's "Upgrading the plugin" on a
// persistent (raft) server: one file per version in plugin_directory,
// registered with -command and -version; the mount pinned with `vault
// secrets tune -plugin-version` and switched with `vault plugin reload`. It
// checks what that section promises: tuning alone changes nothing that
// runs; after the reload the new binary serves, with every key, role and
// setting as before, old tokens verifying and new ones signed by the same
// key; a restart starts the pinned version; a reload of a file that is not
// the one registered fails and leaves the old version serving; and rolling
// back is the same two steps.
func TestPluginUpgrade(t *testing.T) {
	tl := loadTools(t)
	next := nextPlugin(t)
	if next.version == tl.pluginVersion {
		t.Fatalf("PLUGIN_NEXT_BIN reports %s, the same version as PLUGIN_BIN", next.version)
	}
	s := newPersistentServer(t, tl)
	s.startPersistent(t)
	s.initialize(t)
	s.unseal(t)

	// Step 0 (Register the plugin on every node): one file per version.
	old := upgradeVersion{version: tl.pluginVersion, bin: tl.pluginBin}
	old.register(t, s)
	s.vault(t, "secrets", "enable", "-path="+mountPath, "-plugin-version="+old.version, pluginName)
	s.vault(t, "write", mountPath+"/config", "issuer="+s.issuer())
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "ttl=10m", "subject=upgrade", `claims={"team":"e2e"}`)
	s.vault(t, "write", mountPath+"/revoke", "subject=revoked-before-the-upgrade")
	old.wantPinned(t, s, old)
	state := upgradeReadState(t, s)
	opts := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256"}
	before := s.issue(t, "r")
	tl.verifier.mustVerify(t, before.Token, opts)

	// After each step: the same state; the token issued before verifies;
	// a new one is signed by the same key version and verifies too.
	same := func(when string) {
		t.Helper()
		if got := upgradeReadState(t, s); !reflect.DeepEqual(got, state) {
			t.Errorf("%s: the mount's state changed:\n got  %v\n want %v", when, got, state)
		}
		out := tl.verifier.mustVerify(t, before.Token, opts)
		if out.Payload["sub"] != "upgrade" {
			t.Errorf("%s: the token issued before verifies with sub %v", when, out.Payload["sub"])
		}
		now := s.issue(t, "r")
		if now.Kid != before.Kid {
			t.Errorf("%s: issued with kid %s, want %s (the same key version)", when, now.Kid, before.Kid)
		}
		out = tl.verifier.mustVerify(t, now.Token, opts)
		if out.Payload["team"] != "e2e" {
			t.Errorf("%s: a new token has team %v, want e2e", when, out.Payload["team"])
		}
	}

	// Step 1 and 2: the new file next to the old one, registered under its
	// version. Vault refuses a -version the binary does not report.
	if r := s.run(s.rootToken, "", "plugin", "register", "-sha256="+next.install(t, s), "-command="+next.file(),
		"-version=v9.9.9", "secret", pluginName); r.Err == nil || !strings.Contains(r.Stderr, "version mismatch") {
		t.Errorf("registering %s as v9.9.9: err=%v stderr=%s, want a version mismatch", next.version, r.Err, redact(r.Stderr))
	}
	next.register(t, s)

	// Step 3: pinning alone changes nothing that runs.
	s.vault(t, "secrets", "tune", "-plugin-version="+next.version, mountPath+"/")
	next.wantPinned(t, s, old)
	same("pinned to " + next.version + ", not reloaded")

	// Step 4 and 5: the reload starts the new version.
	upgradeReload(t, s)
	next.wantPinned(t, s, next)
	same("after the upgrade to " + next.version)

	// A restart starts the pinned version.
	s.stop(t)
	s.startPersistent(t)
	s.unseal(t)
	next.wantPinned(t, s, next)
	same("after a restart on " + next.version)

	// Roll back: the same two steps, to the old version.
	s.vault(t, "secrets", "tune", "-plugin-version="+old.version, mountPath+"/")
	upgradeReload(t, s)
	old.wantPinned(t, s, old)
	same("after rolling back to " + old.version)

	// A failed reload: the pinned version's file is not the one registered.
	// The reload fails and the old version keeps serving.
	path := filepath.Join(s.pluginDir, next.file())
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(good, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	s.vault(t, "secrets", "tune", "-plugin-version="+next.version, mountPath+"/")
	r := s.run(s.rootToken, "", "plugin", "reload", "-type=secret", "-plugin="+pluginName, "-scope=global")
	if r.Err == nil || !strings.Contains(r.Stderr, "checksums did not match") {
		t.Errorf("reload of a changed file: err=%v stderr=%s, want checksums did not match", r.Err, redact(r.Stderr))
	}
	next.wantPinned(t, s, old)
	same("after a failed reload")
	// Fixed, the reload goes through.
	if err := os.WriteFile(path, good, 0o755); err != nil {
		t.Fatal(err)
	}
	upgradeReload(t, s)
	next.wantPinned(t, s, next)
	same("after fixing the file and reloading")
}

// upgradeVersion is one version of the plugin and its binary.
type upgradeVersion struct {
	version, bin string
}

// nextPlugin is PLUGIN_NEXT_BIN: the same plugin built with another version
// (`make test-e2e` builds it).
func nextPlugin(t *testing.T) upgradeVersion {
	t.Helper()
	bin := mustAbs(t, requireEnv(t, "PLUGIN_NEXT_BIN")["PLUGIN_NEXT_BIN"])
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -version: %v\n%s", bin, err, out)
	}
	return upgradeVersion{version: strings.TrimSpace(string(out)), bin: bin}
}

// file is the version's file name in plugin_directory, as the docs name it.
func (u upgradeVersion) file() string { return pluginName + "-" + u.version }

// install copies the binary into s's plugin_directory and returns its
// sha256.
func (u upgradeVersion) install(t *testing.T, s *vaultServer) string {
	t.Helper()
	dst := filepath.Join(s.pluginDir, u.file())
	if _, err := os.Stat(dst); err != nil {
		copyFile(t, u.bin, dst, 0o755)
	}
	return fileSHA256(t, dst)
}

func (u upgradeVersion) register(t *testing.T, s *vaultServer) {
	t.Helper()
	s.vault(t, "plugin", "register", "-sha256="+u.install(t, s), "-command="+u.file(), "-version="+u.version, "secret", pluginName)
}

// wantPinned checks that the mount is pinned to u and runs running's
// binary.
func (u upgradeVersion) wantPinned(t *testing.T, s *vaultServer, running upgradeVersion) {
	t.Helper()
	var m struct {
		Data struct {
			PluginVersion        string `json:"plugin_version"`
			RunningPluginVersion string `json:"running_plugin_version"`
			RunningSHA256        string `json:"running_sha256"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(s.vault(t, "read", "-format=json", "sys/mounts/"+mountPath)), &m); err != nil {
		t.Fatalf("sys/mounts/%s: %v", mountPath, err)
	}
	sum := fileSHA256(t, running.bin)
	t.Logf("sys/mounts/%s: plugin_version %s, running_plugin_version %s, running_sha256 %.12s…",
		mountPath, m.Data.PluginVersion, m.Data.RunningPluginVersion, m.Data.RunningSHA256)
	if m.Data.PluginVersion != u.version || m.Data.RunningPluginVersion != running.version || m.Data.RunningSHA256 != sum {
		t.Fatalf("sys/mounts/%s: plugin_version %q, running_plugin_version %q, running_sha256 %.12s; want %q, %q, %.12s",
			mountPath, m.Data.PluginVersion, m.Data.RunningPluginVersion, m.Data.RunningSHA256, u.version, running.version, sum)
	}
}

// upgradeReload is step 4: `vault plugin reload`, which answers with a
// reload_id.
func upgradeReload(t *testing.T, s *vaultServer) {
	t.Helper()
	out := s.vault(t, "plugin", "reload", "-type=secret", "-plugin="+pluginName, "-scope=global")
	if !strings.Contains(out, "reload_id") {
		t.Errorf("vault plugin reload printed %q, want a reload_id", out)
	}
}

// upgradeReadState is what an upgrade must keep: the key as read (its
// settings and every version's kid, public key, state and times), the role,
// the config, the JWKS and the revocations.
func upgradeReadState(t *testing.T, s *vaultServer) map[string]any {
	t.Helper()
	read := func(path string) map[string]any {
		return s.vaultJSON(t, "read", "-format=json", path).Data
	}
	_, jwks := s.get(t, "/v1/"+mountPath+"/jwks")
	return map[string]any{
		"key":         read(mountPath + "/keys/k"),
		"role":        read(mountPath + "/roles/r"),
		"config":      read(mountPath + "/config"),
		"revocations": read(mountPath + "/revocations"),
		"jwks":        string(jwks),
	}
}
