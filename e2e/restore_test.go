//go:build unix

package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

const (
	// restoreSentinel is an ACL policy written just after the snapshot: the
	// restore is complete when it is gone. It lives outside the plugin, so
	// waiting for it assumes nothing about the state under test.
	restoreSentinel = "e2e-after-snapshot"
	// restoreTimeout bounds the wait for the restore; it took 5-6s.
	restoreTimeout = 60 * time.Second
)

// TestSnapshotRestore backs up a mount with `vault operator raft snapshot
// save`, changes it, restores the snapshot with `vault operator raft
// snapshot restore`, and checks what docs/operations.md ("Backup and
// restore") says an operator gets back, hazards included, and that its
// runbook repairs them. One raft server: in Vault Community Edition
// standbys serve nothing themselves.
//
// After the snapshot: a key rotated (immediate) and its old version revoked,
// as after a compromise; a token revoked; a refresh family refreshed, then
// revoked for reuse; another refreshed; a new family, a new role, a config
// change; an awskms key moved to a new KMS key and the old one scheduled for
// deletion. Every cache of the plugin (keys and signers, roles, config,
// JWKS, the revocation index) is warmed with that state before the restore,
// so what is read after it is storage's answer, not memory's.
func TestSnapshotRestore(t *testing.T) {
	tl := loadTools(t)
	t0 := time.Now()
	phase := func(format string, args ...any) {
		t.Helper()
		t.Logf("[%5.1fs] %s", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	km := startKMSTest(t)
	s := newPersistentServer(t, tl)
	s.startPersistent(t)
	s.initialize(t)
	s.unseal(t)
	s.installPlugin(t)
	n := &clusterNode{vaultServer: s, id: "n1"} // for the cluster helpers
	phase("raft server initialised and unsealed; plugin mounted")

	secret := "e2e-kms-secret-" + randomHex(t, 16)
	secrets.add(secret)
	if r := s.run(s.rootToken, secret, "write", mountPath+"/config/aws", "access_key="+kmstest.AccessKeyID,
		"secret_key=-", "region="+kmstest.DefaultRegion, "endpoint="+km.url); r.Err != nil {
		t.Fatalf("vault write config/aws: %v\n%s", r.Err, redact(r.Stderr))
	}
	kmsOld, _ := km.createKey(t, "ECC_NIST_P256")
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/keys/kk", "provider=awskms", "kms_key_id="+kmsOld, "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "subject=dr", "ttl=10m")
	s.vault(t, "write", mountPath+"/roles/rf", "key=k", "audiences="+e2eAudience, "subject=dr-rf", "ttl=10m", "refresh_ttl=1h")
	s.vault(t, "write", mountPath+"/roles/rk", "key=kk", "audiences="+e2eAudience, "subject=dr-kms", "ttl=10m")
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256"}

	t1 := s.issue(t, "r")
	_, rt0 := lifecycleWithRefresh(t, s, "issue", s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/issue/rf"), time.Now())
	_, rtH0 := lifecycleWithRefresh(t, s, "issue", s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/issue/rf"), time.Now())
	tk1 := s.issue(t, "rk")
	jwksBefore, kidsBefore := n.clusterJWKS(t)
	if want := slices.Sorted(slices.Values([]string{t1.Kid, tk1.Kid})); !slices.Equal(kidsBefore, want) {
		t.Fatalf("JWKS kids before the snapshot %v, want %v", kidsBefore, want)
	}

	snap := filepath.Join(s.dir, "jwt.snap")
	s.vault(t, "operator", "raft", "snapshot", "save", snap)
	phase("snapshot saved: keys k (local, v1) and kk (awskms), roles r, rf, rk; token T1; refresh families F and H")

	// After the snapshot.
	if r := s.run(s.rootToken, `path "secret/*" { capabilities = ["read"] }`, "policy", "write", restoreSentinel, "-"); r.Err != nil {
		t.Fatalf("vault policy write %s: %v\n%s", restoreSentinel, r.Err, redact(r.Stderr))
	}
	s.vault(t, "write", mountPath+"/config", "jwks_max_age=10m")
	s.vault(t, "write", mountPath+"/keys/k/rotate", "immediate=true")
	t2 := s.issue(t, "r")
	if t2.Kid == t1.Kid {
		t.Fatal("the immediate rotation did not change the signing kid")
	}
	t1Exp := number(t, "T1 exp", decodeJWT(t, t1.Token).Payload["exp"])
	revokeT1 := []string{"write", mountPath + "/revoke", "jti=" + t1.Jti, "exp=" + strconv.FormatInt(t1Exp, 10)}
	s.vault(t, revokeT1...)
	s.vault(t, "write", mountPath+"/keys/k/revoke-version", "version=1")
	a1, rt1 := lifecycleWithRefresh(t, s, "refresh", s.vaultJSON(t, "write", "-format=json", mountPath+"/refresh", "refresh_token="+rt0), time.Now())
	restoreRefreshRefused(t, s, "reuse of F's first refresh token after the snapshot", rt0, "already used")
	if active, _ := n.clusterVerifyActive(t, a1); active {
		t.Fatal("F's refreshed token is active after the reuse revoked its family")
	}
	_, rtH1 := lifecycleWithRefresh(t, s, "refresh", s.vaultJSON(t, "write", "-format=json", mountPath+"/refresh", "refresh_token="+rtH0), time.Now())
	_, rtG := lifecycleWithRefresh(t, s, "issue", s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/issue/rf"), time.Now())
	s.vault(t, "write", mountPath+"/roles/r-new", "key=k", "audiences="+e2eAudience, "subject=dr-new", "ttl=10m")
	s.issue(t, "r-new")
	kmsNew, _ := km.createKey(t, "ECC_NIST_P256")
	s.vault(t, "write", mountPath+"/keys/kk/rotate", "kms_key_id="+kmsNew, "immediate=true")
	tk2 := s.issue(t, "rk")
	km.scheduleDeletion(t, kmsOld)

	// Warm every cache with the new state, and check it is what we think.
	if d := s.vaultJSON(t, "read", "-format=json", mountPath+"/keys/k").Data; number(t, "latest_version", d["latest_version"]) != 2 {
		t.Fatalf("before the restore keys/k latest_version is %v, want 2", d["latest_version"])
	}
	restoreCheckJWKS(t, s, []string{t2.Kid, tk1.Kid, tk2.Kid}, 600)
	if active, _ := n.clusterVerifyActive(t, t1.Token); active {
		t.Fatal("T1 is active after its revocation")
	}
	s.vault(t, "read", mountPath+"/roles/r-new")
	phase("after the snapshot: k rotated to v2 and v1 revoked; T1 revoked; F refreshed and revoked for reuse; " +
		"H refreshed; family G; role r-new; jwks_max_age 10m; kk on a new KMS key, the old one pending deletion")

	// Restore, and wait until the sentinel policy is gone: Vault answers no
	// request while it restores (it holds its state lock from tearing the
	// mounts down to setting them up again), so after that every request
	// sees the restored state.
	restoreAt := time.Now()
	s.vault(t, "operator", "raft", "snapshot", "restore", snap)
	restoreWait(t, s)
	s.waitHealthy(t, activeTimeout, http.StatusOK)
	phase("snapshot restored; the node is active and unsealed again (%.1fs)", time.Since(restoreAt).Seconds())

	// The mount is as it was at the snapshot.
	jwksAfter, kidsAfter := n.clusterJWKS(t)
	if !slices.Equal(kidsAfter, kidsBefore) {
		t.Errorf("JWKS kids after the restore %v, want the snapshot's %v", kidsAfter, kidsBefore)
	}
	if string(jwksAfter) != string(jwksBefore) {
		t.Errorf("JWKS after the restore differs from the snapshot's:\n%s\n%s", jwksAfter, jwksBefore)
	}
	restoreCheckJWKS(t, s, []string{t1.Kid, tk1.Kid}, 300) // max-age: jwks_max_age is 5m again
	k := s.vaultJSON(t, "read", "-format=json", mountPath+"/keys/k").Data
	if number(t, "latest_version", k["latest_version"]) != 1 || k["current_kid"] != t1.Kid {
		t.Errorf("after the restore keys/k has latest_version %v current_kid %v, want 1 and T1's kid", k["latest_version"], k["current_kid"])
	}
	if resp, _ := httpGet(t, s.addr+"/v1/"+mountPath+"/roles/r-new", s.rootToken); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET roles/r-new after the restore: %s, want 404", resp.Status)
	}
	total, _ := s.vaultJSON(t, "read", "-format=json", mountPath+"/revocations").Data["total"].(map[string]any)
	for _, kind := range []string{"jtis", "subjects", "roles"} {
		if n := number(t, "revocations total."+kind, total[kind]); n != 0 {
			t.Errorf("after the restore jwt/revocations counts %d %s, want none", n, kind)
		}
	}

	// Hazard: T1's revocation is gone, and the revoked version 1 is back
	// and signs.
	if active, reason := n.clusterVerifyActive(t, t1.Token); !active {
		t.Errorf("jwt/verify of T1 after the restore: inactive (%s); its revocation came after the snapshot", reason)
	}
	tl.verifier.mustVerify(t, t1.Token, o)
	t3 := s.issue(t, "r")
	if t3.Kid != t1.Kid {
		t.Errorf("issued after the restore with kid %s, want version 1's %s", t3.Kid, t1.Kid)
	}
	tl.verifier.mustVerify(t, t3.Token, o)
	// Version 2 is gone: its tokens verify nowhere.
	if active, reason := n.clusterVerifyActive(t, t2.Token); active || !strings.Contains(reason, "no published key version") {
		t.Errorf("jwt/verify of T2 (version 2) after the restore: active=%t reason %q, want an unknown kid", active, reason)
	}
	tl.verifier.mustReject(t, t2.Token, o)
	if active, _ := n.clusterVerifyActive(t, tk2.Token); active {
		t.Error("jwt/verify of a token of kk's lost version is active after the restore")
	}

	// Refresh families: G never existed; H's refresh token from after the
	// snapshot is not its latest any more, so it counts as reuse; F's reuse
	// and its revocation are gone, so F's used first refresh token works
	// again.
	restoreRefreshRefused(t, s, "family G, started after the snapshot", rtG, "unknown or expired")
	restoreRefreshRefused(t, s, "H's refresh token from after the snapshot", rtH1, "already used")
	a2, rt2 := lifecycleWithRefresh(t, s, "refresh", s.vaultJSON(t, "write", "-format=json", mountPath+"/refresh", "refresh_token="+rt0), time.Now())
	if active, reason := n.clusterVerifyActive(t, a2); !active {
		t.Errorf("token refreshed with F's used refresh token after the restore: inactive (%s)", reason)
	}

	// awskms: the snapshot's version signs with the old KMS key, pending
	// deletion: issue fails until the deletion is cancelled and the key
	// enabled.
	if a := tryIssueCLI(s, "rk"); a.err != "" || a.code != http.StatusBadGateway || !strings.Contains(a.stderr, "pending deletion") {
		t.Errorf("issue from rk with its KMS key pending deletion: code %d err %q: %s; want a 502 naming the pending deletion",
			a.code, a.err, redact(a.stderr))
	}
	km.cancelDeletion(t, kmsOld)
	km.enableKey(t, kmsOld)
	tk3 := s.issue(t, "rk")
	if tk3.Kid != tk1.Kid {
		t.Errorf("kk issued with kid %s after the restore, want its first version's %s", tk3.Kid, tk1.Kid)
	}
	tl.verifier.mustVerify(t, tk3.Token, o)
	phase("checked the restored state and its hazards")

	// The runbook.
	// 1. Re-apply revocations made since the snapshot.
	s.vault(t, revokeT1...)
	if active, reason := n.clusterVerifyActive(t, t1.Token); active || !strings.Contains(reason, "revoked") {
		t.Errorf("jwt/verify of T1 after revoking it again: active=%t reason %q, want revoked", active, reason)
	}
	// 2. End refresh families that may be in the wrong hands.
	s.vault(t, "write", mountPath+"/revoke", "role=rf")
	restoreRefreshRefused(t, s, "F after revoking role rf", rt2, "revoked")
	restoreRefreshRefused(t, s, "F's refresh token from after the snapshot", rt1, "revoked")
	if active, _ := n.clusterVerifyActive(t, a2); active {
		t.Error("F's latest token is active after revoking role rf")
	}
	// 3. The version revoked after the snapshot signs again: rotate, then
	// revoke it again. The new version takes the lost version's number
	// (2), not its kid.
	s.vault(t, "write", mountPath+"/keys/k/rotate", "immediate=true")
	s.vault(t, "write", mountPath+"/keys/k/revoke-version", "version=1")
	t4 := s.issue(t, "r")
	if t4.Kid == t1.Kid || t4.Kid == t2.Kid {
		t.Errorf("after rotating again the kid is %s, want a new one (version 1: %s, lost version 2: %s)", t4.Kid, t1.Kid, t2.Kid)
	}
	if v := versionField(t, s, "k", 2, "kid"); v != t4.Kid {
		t.Errorf("keys/k version 2 has kid %v, want the new %s", v, t4.Kid)
	}
	restoreCheckJWKS(t, s, []string{t4.Kid, tk1.Kid}, 300)
	tl.verifier.mustVerify(t, t4.Token, o)
	tl.verifier.mustReject(t, t1.Token, o)
	tl.verifier.mustReject(t, t2.Token, o)
	// 4. Re-create the role made after the snapshot.
	s.vault(t, "write", mountPath+"/roles/r-new", "key=k", "audiences="+e2eAudience, "subject=dr-new", "ttl=10m")
	tl.verifier.mustVerify(t, s.issue(t, "r-new").Token, o)
	phase("runbook applied: T1 revoked again, role rf's families ended, k rotated and version 1 revoked again, r-new re-created")
}

// restoreWait waits until the restore has completed: the sentinel policy,
// written after the snapshot, is gone.
func restoreWait(t *testing.T, s *vaultServer) {
	t.Helper()
	url := s.addr + "/v1/sys/policies/acl/" + restoreSentinel
	var last string
	err := waitFor(restoreTimeout, 200*time.Millisecond, func() (bool, error) {
		// Requests wait while Vault restores: a long timeout.
		status, body, err := clusterHTTP(clusterClient(restoreTimeout), http.MethodGet, url, s.rootToken, "")
		switch {
		case err != nil:
			last = err.Error()
		case status == http.StatusNotFound:
			return true, nil
		default:
			last = fmt.Sprintf("%d %.200s", status, redact(string(body)))
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the restore did not complete: GET %s (last: %s): %v", url, last, err)
	}
}

// restoreCheckJWKS checks the JWKS's kids and its Cache-Control max-age.
func restoreCheckJWKS(t *testing.T, s *vaultServer, kids []string, maxAge int) {
	t.Helper()
	resp, _ := s.get(t, "/v1/"+mountPath+"/jwks")
	if got := lifecycleMaxAgeOf(resp.Header.Get("Cache-Control")); got != maxAge {
		t.Errorf("JWKS Cache-Control %q, want max-age=%d", resp.Header.Get("Cache-Control"), maxAge)
	}
	_, got := (&clusterNode{vaultServer: s}).clusterJWKS(t)
	if want := slices.Sorted(slices.Values(kids)); !slices.Equal(got, want) {
		t.Errorf("JWKS kids %v, want %v", got, want)
	}
}

// restoreRefreshRefused checks that jwt/refresh refuses rt with a 400 whose
// message contains want.
func restoreRefreshRefused(t *testing.T, s *vaultServer, what, rt, want string) {
	t.Helper()
	r := s.runEnv(s.rootToken, "", noCLIRetries, "write", "-format=json", mountPath+"/refresh", "refresh_token="+rt)
	switch {
	case r.Err == nil:
		t.Errorf("%s: jwt/refresh succeeded, want a 400", what)
	case cliErrorCode(r.Stderr) != http.StatusBadRequest || !strings.Contains(r.Stderr, want):
		t.Errorf("%s: want a 400 saying %q, got: %s", what, want, redact(r.Stderr))
	}
}
