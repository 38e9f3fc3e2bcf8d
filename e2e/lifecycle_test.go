//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLifecycle checks the token lifecycle of issue 5 end to end, each part
// on a dev server of its own:
//
//   - StagedRotation: a long-running jose verifier with a default remote
//     JWK Set sees no failure across a staged rotation, and does fail on an
//     immediate one (the negative control).
//   - Revocation: revocation by token, jti, subject and role reaches every
//     encoding of the tokens, leaves the others alone, and tidy removes the
//     entries once their tokens have expired.
//   - Refresh: refresh tokens rotate on use; reusing one revokes its family.
func TestLifecycle(t *testing.T) {
	tl := loadTools(t)
	t.Run("StagedRotation", func(t *testing.T) { lifecycleStagedRotation(t, tl) })
	t.Run("Revocation", func(t *testing.T) { lifecycleRevocation(t, tl) })
	t.Run("Refresh", func(t *testing.T) { lifecycleRefresh(t, tl) })
	t.Run("RevokeVersion", func(t *testing.T) { lifecycleRevokeVersion(t, tl) })
}

const (
	// lifecycleMaxAge is jwt/config's jwks_max_age in StagedRotation: the
	// lead of a staged rotation.
	lifecycleMaxAge = 40 * time.Second
	// lifecycleJoseCooldown is jose's default cooldownDuration: within it
	// after a fetch, an unknown kid fails without a refetch.
	lifecycleJoseCooldown = 30 * time.Second
	// lifecycleIssueEvery paces the token stream.
	lifecycleIssueEvery = 150 * time.Millisecond
	// lifecycleMinNewKid is how many tokens of the new version the stream
	// must verify after the activation.
	lifecycleMinNewKid = 20
)

// StagedRotation (acceptance 1).

func lifecycleStagedRotation(t *testing.T, tl *tools) {
	s := startDevServer(t, tl)
	s.installPlugin(t)
	cfg := s.vaultJSON(t, "write", "-format=json", mountPath+"/config", "jwks_max_age=40s").Data
	if got := number(t, "config jwks_max_age", cfg["jwks_max_age"]); got != int64(lifecycleMaxAge.Seconds()) {
		t.Fatalf("jwt/config jwks_max_age = %d, want %d", got, int64(lifecycleMaxAge.Seconds()))
	}
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "subject=stream", "ttl=5m")

	k0 := lifecycleKeyRead(t, s, "k")
	kid1 := lifecycleStr(t, "current_kid", k0["current_kid"])
	lifecycleCheckJWKS(t, s, []string{kid1})

	st := lifecycleStartStream(t, tl, s)
	load := lifecycleStartLoad(s, "r", st)
	defer load.stop()

	// The stream runs; jose has fetched the set once, for the first token.
	if err := waitFor(20*time.Second, 50*time.Millisecond, func() (bool, error) {
		return len(st.fetches()) >= 1 && st.okCount() >= 5, nil
	}); err != nil {
		t.Fatalf("stream did not start: %v (fetches %d, ok %d, issue errors %v)", err, len(st.fetches()), st.okCount(), load.errors())
	}
	fetch0 := st.fetches()[0]
	if !slices.Equal(fetch0.Kids, []string{kid1}) {
		t.Errorf("jose's first fetch of the JWKS got kids %v, want [%s]", fetch0.Kids, kid1)
	}
	if ma := lifecycleMaxAgeOf(fetch0.CacheControl); ma <= 0 || ma > int(lifecycleMaxAge.Seconds()) {
		t.Errorf("JWKS Cache-Control %q, want max-age in (0, %d]", fetch0.CacheControl, int(lifecycleMaxAge.Seconds()))
	}
	time.Sleep(2 * time.Second)

	// Staged rotation, inside jose's cooldown after its fetch: had the new
	// version signed at once, jose would have failed its tokens.
	rotAt := time.Now()
	if since := rotAt.Sub(fetch0.at()); since >= lifecycleJoseCooldown-5*time.Second {
		t.Fatalf("rotating %s after jose's fetch; want well within its %s cooldown so the test can fail", since, lifecycleJoseCooldown)
	}
	rot := s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/keys/k/rotate").Data
	rotDone := time.Now()
	kid2, activation := lifecycleCheckStaged(t, s, rot, kid1, rotAt, rotDone)
	// The next version is in the JWKS at once. (A set fetched before the
	// rotation lacks it, but its max-age, at most jwks_max_age, ends by the
	// activation.)
	lifecycleCheckJWKS(t, s, []string{kid2, kid1})
	t.Logf("staged rotation: version 2 (%s) published at %s, activates at %s", kid2, rotAt.Format(time.RFC3339), activation.Format(time.RFC3339))

	// Make jose refetch inside the staged window, when its cooldown since
	// the first fetch is over: a token with a kid unknown to the mount
	// makes it reload. After that it holds the set until well after the
	// activation (cooldown), so the new version's first tokens are checked
	// against a set fetched before the activation: they verify only if the
	// next version was published before it signed.
	probeAt := lifecycleLatest(st.lastFetch().at().Add(lifecycleJoseCooldown+time.Second), activation.Add(-8*time.Second))
	if probeAt.After(activation.Add(-3 * time.Second)) {
		// Not staged as it should be; let the stream show what that does.
		t.Errorf("cannot probe inside the staged window: jose's cooldown ends at %s, activation at %s", probeAt, activation)
	} else {
		time.Sleep(time.Until(probeAt))
		probe := lifecycleProbe(t, st, s, "probe-1")
		if !slices.Contains(probe.Kids, kid1) || !slices.Contains(probe.Kids, kid2) {
			t.Errorf("jose's refetch in the staged window got kids %v, want both %s (current) and %s (next)", probe.Kids, kid1, kid2)
		}
	}

	// Keep streaming until well past the activation, with enough tokens of
	// the new version.
	until := activation.Add(8 * time.Second)
	if err := waitFor(time.Until(activation)+40*time.Second, 100*time.Millisecond, func() (bool, error) {
		return time.Now().After(until) && load.countKid(kid2) >= lifecycleMinNewKid, nil
	}); err != nil {
		t.Errorf("stream: %d tokens of the new version by %s: %v", load.countKid(kid2), time.Now().Format(time.RFC3339), err)
	}
	load.stop()
	toks := load.issued()
	st.waitResults(t, toks)

	// Every token verified; old kid before the activation, new kid after.
	var failures []string
	nOld, nNew := 0, 0
	var firstNew *lifecycleResult
	for i, tk := range toks {
		r, _ := st.result(tk.id)
		if !r.OK {
			failures = append(failures, fmt.Sprintf("%s (kid %s, issued %s): %s [%s] cooling_down=%t",
				tk.id, tk.kid, tk.done.Format("15:04:05.000"), r.Error, r.Code, r.CoolingDown))
		}
		if r.Kid != tk.kid {
			t.Errorf("%s: jose saw kid %q, issue answered %q", tk.id, r.Kid, tk.kid)
		}
		switch tk.kid {
		case kid1:
			nOld++
			if tk.start.After(activation.Add(2 * time.Second)) {
				t.Errorf("%s: signed by the old version though requested at %s, after the activation at %s", tk.id, tk.start.Format(time.RFC3339Nano), activation.Format(time.RFC3339))
			}
		case kid2:
			nNew++
			if firstNew == nil {
				firstNew = &r
			}
			if tk.done.Before(activation) {
				t.Errorf("%s: signed by the new version at %s, before its activation at %s", tk.id, tk.done.Format(time.RFC3339Nano), activation.Format(time.RFC3339))
			}
		default:
			t.Errorf("%s: kid %q is neither version 1 (%s) nor 2 (%s)", tk.id, tk.kid, kid1, kid2)
		}
		if r.OK && r.Sub != "stream" {
			t.Errorf("%s: sub %q, want stream", tk.id, r.Sub)
		}
		if i > 0 {
			if gap := tk.start.Sub(toks[i-1].start); gap > 2*time.Second {
				t.Errorf("stream stalled: %s between %s and %s", gap, toks[i-1].id, tk.id)
			}
		}
	}
	if errs := load.errors(); len(errs) > 0 {
		t.Errorf("%d issue requests failed during the stream, e.g. %s", len(errs), errs[0])
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d tokens failed verification across the staged rotation:\n%s", len(failures), len(toks), strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
	if nNew < lifecycleMinNewKid {
		t.Errorf("only %d tokens of the new version were verified, want at least %d", nNew, lifecycleMinNewKid)
	}
	if firstNew != nil && !firstNew.CoolingDown {
		t.Errorf("the first token of the new version came when jose could refetch (not cooling down): the test did not show that the next version was cached before it signed")
	}
	fetches := st.fetches()
	t.Logf("staged rotation: %d tokens over %s, %d verified with the old kid, %d with the new kid, %d failures; jose fetched the JWKS %d times",
		len(toks), toks[len(toks)-1].done.Sub(toks[0].start).Round(time.Second), nOld, nNew, len(failures), len(fetches))

	// After the activation: version 1 previous, version 2 current.
	after := lifecycleKeyRead(t, s, "k")
	lifecycleCheckKeyState(t, after, 2, 2, kid2, map[int]string{1: "previous", 2: "current"})

	// Negative control: an immediate rotation right after jose (re)fetched
	// the set. Its token is good, but jose's cached set lacks its kid and
	// jose does not refetch within the cooldown.
	last := st.lastFetch()
	if time.Since(last.at()) > lifecycleJoseCooldown-10*time.Second {
		time.Sleep(time.Until(last.at().Add(lifecycleJoseCooldown + time.Second)))
		last = lifecycleProbe(t, st, s, "probe-2")
	}
	imm := s.vaultJSON(t, "write", "-format=json", mountPath+"/keys/k/rotate", "immediate=true").Data
	lifecycleCheckKeyState(t, imm, 3, 3, "", map[int]string{1: "previous", 2: "previous", 3: "current"})
	kid3 := lifecycleStr(t, "current_kid", imm["current_kid"])
	v3 := lifecycleVersion(t, imm, 3)
	if at := lifecycleTime(t, "version 3 activates_at", v3["activates_at"]); at.After(time.Now().Add(time.Second)) {
		t.Errorf("immediate rotation: version 3 activates at %s, want now", at)
	}
	neg := s.issue(t, "r")
	if neg.Kid != kid3 {
		t.Fatalf("token after the immediate rotation has kid %s, want version 3's %s", neg.Kid, kid3)
	}
	st.send(t, "negative", neg.Token)
	r := st.waitResult(t, "negative")
	sinceFetch := time.UnixMilli(r.T).Sub(last.at())
	switch {
	case r.OK:
		t.Errorf("negative control: jose ACCEPTED a token of a version that signed at once, %s after its last JWKS fetch; the stream could not have failed", sinceFetch)
	case r.Code != "ERR_JWKS_NO_MATCHING_KEY" || !r.CoolingDown:
		t.Errorf("negative control: jose rejected with %q [%s] cooling_down=%t; want ERR_JWKS_NO_MATCHING_KEY while cooling down", r.Error, r.Code, r.CoolingDown)
	default:
		t.Logf("negative control: token of the immediate rotation verified %s after jose's last fetch: jose rejected it: %s [%s]", sinceFetch.Round(time.Millisecond), r.Error, r.Code)
	}
	// The token itself is good: a verifier with a fresh set accepts it.
	out := tl.verifier.mustVerify(t, neg.Token, verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256"})
	if out.Header["kid"] != kid3 {
		t.Errorf("fresh verifier: kid %v, want %s", out.Header["kid"], kid3)
	}
	st.close(t)
}

// lifecycleCheckStaged checks the key as rotate answered it and as read
// back: version 2 next, activating jwks_max_age after the rotation; version
// 1 current until then. It returns version 2's kid and activation.
func lifecycleCheckStaged(t *testing.T, s *vaultServer, rot map[string]any, kid1 string, rotAt, rotDone time.Time) (string, time.Time) {
	t.Helper()
	var kid2 string
	var activation time.Time
	for _, d := range []map[string]any{rot, lifecycleKeyRead(t, s, "k")} {
		lifecycleCheckKeyState(t, d, 1, 2, kid1, map[int]string{1: "current", 2: "next"})
		v1, v2 := lifecycleVersion(t, d, 1), lifecycleVersion(t, d, 2)
		kid2 = lifecycleStr(t, "version 2 kid", v2["kid"])
		if kid2 == kid1 {
			t.Fatalf("version 2 has version 1's kid %s", kid1)
		}
		activation = lifecycleTime(t, "version 2 activates_at", v2["activates_at"])
		// activates_at is to the second.
		lo, hi := rotAt.Add(lifecycleMaxAge).Truncate(time.Second), rotDone.Add(lifecycleMaxAge)
		if activation.Before(lo) || activation.After(hi) {
			t.Errorf("version 2 activates_at %s, want jwks_max_age (%s) after the rotation: between %s and %s", activation, lifecycleMaxAge, lo, hi)
		}
		rotated := lifecycleTime(t, "version 1 rotated_at", v1["rotated_at"])
		if !rotated.Equal(activation) {
			t.Errorf("version 1 rotated_at %s, want version 2's activates_at %s", rotated, activation)
		}
		vttl := time.Duration(number(t, "verification_ttl", d["verification_ttl"])) * time.Second
		if until := lifecycleTime(t, "version 1 published_until", v1["published_until"]); !until.Equal(rotated.Add(vttl)) {
			t.Errorf("version 1 published_until %s, want rotated_at + verification_ttl = %s", until, rotated.Add(vttl))
		}
	}
	return kid2, activation
}

// lifecycleCheckKeyState checks current_version, latest_version,
// current_kid (if kid is set; else that it is the current version's) and
// each version's state.
func lifecycleCheckKeyState(t *testing.T, d map[string]any, current, latest int64, kid string, states map[int]string) {
	t.Helper()
	if got := number(t, "current_version", d["current_version"]); got != current {
		t.Errorf("key: current_version %d, want %d", got, current)
	}
	if got := number(t, "latest_version", d["latest_version"]); got != latest {
		t.Errorf("key: latest_version %d, want %d", got, latest)
	}
	if kid == "" {
		kid = lifecycleStr(t, "current version's kid", lifecycleVersion(t, d, int(current))["kid"])
	}
	if d["current_kid"] != kid {
		t.Errorf("key: current_kid %v, want %s", d["current_kid"], kid)
	}
	for n, want := range states {
		if got := lifecycleVersion(t, d, n)["state"]; got != want {
			t.Errorf("key: version %d state %v, want %s", n, got, want)
		}
	}
}

// lifecycleCheckJWKS checks that the JWKS holds exactly kids, with a
// Cache-Control max-age of at most jwks_max_age.
func lifecycleCheckJWKS(t *testing.T, s *vaultServer, kids []string) {
	t.Helper()
	resp, body := s.get(t, "/v1/"+mountPath+"/jwks")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET jwks: %s", resp.Status)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("GET jwks: %v", err)
	}
	var got []string
	for _, k := range set.Keys {
		got = append(got, k.Kid)
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(kids))) {
		t.Errorf("JWKS kids %v, want %v", got, kids)
	}
	cc := resp.Header.Get("Cache-Control")
	ma := lifecycleMaxAgeOf(cc)
	if ma <= 0 || ma > int(lifecycleMaxAge.Seconds()) {
		t.Errorf("JWKS Cache-Control %q, want max-age in (0, %d]", cc, int(lifecycleMaxAge.Seconds()))
	}
}

func lifecycleMaxAgeOf(cc string) int {
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return -1
}

func lifecycleLatest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// lifecycleProbe sends the stream a token with a kid the mount does not
// have, signed by a throwaway key. jose, past its cooldown, refetches the
// set for it; the probe must fail and cause exactly that fetch, which is
// returned.
func lifecycleProbe(t *testing.T, st *lifecycleStream, s *vaultServer, id string) lifecycleResult {
	t.Helper()
	if st.coolingDownNow() {
		t.Fatalf("%s: jose is still cooling down from its fetch at %s", id, st.lastFetch().at())
	}
	nFetch := len(st.fetches())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	tok := signJWT(t, map[string]any{"alg": "ES256", "kid": "lifecycle-" + id, "typ": "JWT"},
		map[string]any{"iss": s.issuer(), "aud": e2eAudience, "sub": "probe", "iat": now, "nbf": now, "exp": now + 60},
		func(in []byte) []byte {
			d := sha256.Sum256(in)
			sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
			if err != nil {
				t.Fatal(err)
			}
			return derToRaw(t, sig, 32)
		})
	st.send(t, id, tok)
	r := st.waitResult(t, id)
	if r.OK || r.Code != "ERR_JWKS_NO_MATCHING_KEY" || r.CoolingDown {
		t.Fatalf("%s: ok=%t %q [%s] cooling_down=%t; want a no-matching-key failure after a refetch", id, r.OK, r.Error, r.Code, r.CoolingDown)
	}
	f := st.fetches()
	if len(f) != nFetch+1 {
		t.Fatalf("%s: jose fetched the JWKS %d times for the probe, want once", id, len(f)-nFetch)
	}
	return f[len(f)-1]
}

// The long-running jose verifier (scripts/verify/stream.mjs).

// lifecycleResult is one line of stream.mjs.
type lifecycleResult struct {
	Type         string   `json:"type"`
	ID           string   `json:"id"`
	T            int64    `json:"t"`
	OK           bool     `json:"ok"`
	Kid          string   `json:"kid"`
	Sub          string   `json:"sub"`
	Error        string   `json:"error"`
	Code         string   `json:"code"`
	CoolingDown  bool     `json:"cooling_down"`
	Status       int      `json:"status"`
	CacheControl string   `json:"cache_control"`
	Kids         []string `json:"kids"`
}

func (r lifecycleResult) at() time.Time { return time.UnixMilli(r.T) }

type lifecycleStream struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	done   chan struct{}
	stderr bytes.Buffer

	inMu  sync.Mutex
	stdin io.WriteCloser

	mu      sync.Mutex
	results map[string]lifecycleResult
	fetchs  []lifecycleResult
	ready   bool
	bad     []string
}

func lifecycleStartStream(t *testing.T, tl *tools, s *vaultServer) *lifecycleStream {
	t.Helper()
	return startStream(t, tl, s.jwksURL(), s.issuer())
}

// startStream starts stream.mjs against one JWKS URL, for tokens of one
// issuer and e2eAudience, and waits until it is ready.
func startStream(t *testing.T, tl *tools, jwksURL, issuer string) *lifecycleStream {
	t.Helper()
	script := filepath.Join(tl.verifier.dir, "stream.mjs")
	st := &lifecycleStream{results: map[string]lifecycleResult{}, done: make(chan struct{})}
	st.cmd = exec.Command(tl.verifier.node, script, "--jwks-url", jwksURL, "--issuer", issuer, "--audience", e2eAudience)
	st.cmd.Dir = tl.verifier.dir
	st.cmd.Stderr = &st.stderr
	st.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if st.stdin, err = st.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if st.stdout, err = st.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := st.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", script, err)
	}
	go st.read()
	t.Cleanup(func() {
		select {
		case <-st.done:
		default:
			_ = syscall.Kill(-st.cmd.Process.Pid, syscall.SIGKILL)
			<-st.done
		}
		if t.Failed() && st.stderr.Len() > 0 {
			t.Logf("stream.mjs stderr:\n%s", redact(st.stderr.String()))
		}
	})
	if err := waitFor(verifierTimeout, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-st.done:
			return false, fmt.Errorf("stream.mjs exited: %s", redact(st.stderr.String()))
		default:
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.ready, nil
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func (st *lifecycleStream) read() {
	defer close(st.done)
	sc := bufio.NewScanner(st.stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r lifecycleResult
		err := json.Unmarshal(sc.Bytes(), &r)
		st.mu.Lock()
		switch {
		case err != nil || jwtPattern.Match(sc.Bytes()):
			// Not the protocol, or a token printed: neither may happen.
			st.bad = append(st.bad, redact(sc.Text()))
		case r.Type == "ready":
			st.ready = true
		case r.Type == "fetch":
			st.fetchs = append(st.fetchs, r)
		case r.Type == "result":
			st.results[r.ID] = r
		default:
			st.bad = append(st.bad, redact(sc.Text()))
		}
		st.mu.Unlock()
	}
	_ = st.cmd.Wait()
}

// sendLine hands a token to the verifier; safe from any goroutine.
func (st *lifecycleStream) sendLine(id, token string) error {
	st.inMu.Lock()
	defer st.inMu.Unlock()
	_, err := io.WriteString(st.stdin, id+" "+token+"\n")
	return err
}

func (st *lifecycleStream) send(t *testing.T, id, token string) {
	t.Helper()
	if err := st.sendLine(id, token); err != nil {
		t.Fatalf("writing to stream.mjs: %v", err)
	}
}

func (st *lifecycleStream) result(id string) (lifecycleResult, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	r, ok := st.results[id]
	return r, ok
}

func (st *lifecycleStream) waitResult(t *testing.T, id string) lifecycleResult {
	t.Helper()
	var r lifecycleResult
	if err := waitFor(verifierTimeout, 10*time.Millisecond, func() (bool, error) {
		var ok bool
		r, ok = st.result(id)
		return ok, nil
	}); err != nil {
		t.Fatalf("no verdict from stream.mjs on %s: %v", id, err)
	}
	return r
}

// waitResults waits for a verdict on every token.
func (st *lifecycleStream) waitResults(t *testing.T, toks []lifecycleToken) {
	t.Helper()
	if err := waitFor(verifierTimeout, 20*time.Millisecond, func() (bool, error) {
		for _, tk := range toks {
			if _, ok := st.result(tk.id); !ok {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		t.Fatalf("stream.mjs gave no verdict on some of %d tokens: %v", len(toks), err)
	}
}

func (st *lifecycleStream) okCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, r := range st.results {
		if r.OK {
			n++
		}
	}
	return n
}

func (st *lifecycleStream) fetches() []lifecycleResult {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.fetchs)
}

func (st *lifecycleStream) lastFetch() lifecycleResult {
	f := st.fetches()
	if len(f) == 0 {
		return lifecycleResult{}
	}
	return f[len(f)-1]
}

// coolingDownNow is whether jose's cooldown since its last fetch is still
// running (with a margin).
func (st *lifecycleStream) coolingDownNow() bool {
	return time.Since(st.lastFetch().at()) < lifecycleJoseCooldown+200*time.Millisecond
}

// close ends the verifier: end of input, then it exits by itself.
func (st *lifecycleStream) close(t *testing.T) {
	t.Helper()
	st.inMu.Lock()
	_ = st.stdin.Close()
	st.inMu.Unlock()
	select {
	case <-st.done:
	case <-time.After(verifierTimeout):
		t.Errorf("stream.mjs did not exit after its input ended")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.bad) > 0 {
		t.Errorf("stream.mjs printed lines that are not its protocol: %q", st.bad)
	}
}

// The token stream: a goroutine issuing over the HTTP API.

type lifecycleToken struct {
	id          string
	start, done time.Time
	kid, token  string
}

type lifecycleLoad struct {
	stopCh   chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu   sync.Mutex
	toks []lifecycleToken
	errs []string
}

func lifecycleStartLoad(s *vaultServer, role string, st *lifecycleStream) *lifecycleLoad {
	l := &lifecycleLoad{stopCh: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(lifecycleIssueEvery)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-l.stopCh:
				return
			default:
			}
			id := fmt.Sprintf("s%04d", n)
			start := time.Now()
			tok, kid, err := lifecycleIssueHTTP(client, s, role)
			if err == nil {
				err = st.sendLine(id, tok)
			}
			l.mu.Lock()
			if err != nil {
				l.errs = append(l.errs, fmt.Sprintf("%s: %v", id, err))
			} else {
				l.toks = append(l.toks, lifecycleToken{id: id, start: start, done: time.Now(), kid: kid, token: tok})
			}
			l.mu.Unlock()
			select {
			case <-l.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

func (l *lifecycleLoad) stop() {
	l.stopOnce.Do(func() { close(l.stopCh) })
	<-l.done
}

func (l *lifecycleLoad) issued() []lifecycleToken {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.toks)
}

func (l *lifecycleLoad) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func (l *lifecycleLoad) countKid(kid string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, tk := range l.toks {
		if tk.kid == kid {
			n++
		}
	}
	return n
}

// lifecycleIssueHTTP issues one token over the HTTP API; it never touches
// a *testing.T, so any goroutine may call it.
func lifecycleIssueHTTP(client *http.Client, s *vaultServer, role string) (token, kid string, err error) {
	req, err := http.NewRequest(http.MethodPost, s.addr+"/v1/"+mountPath+"/issue/"+role, strings.NewReader("{}"))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("X-Vault-Token", s.rootToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", err
	}
	var out struct {
		Data struct {
			Token string `json:"token"`
			Kid   string `json:"kid"`
		} `json:"data"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", "", fmt.Errorf("HTTP %d, body not JSON: %v", resp.StatusCode, err)
	}
	secrets.add(out.Data.Token)
	if resp.StatusCode != http.StatusOK || out.Data.Token == "" {
		return "", "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, redact(strings.Join(out.Errors, "; ")))
	}
	return out.Data.Token, out.Data.Kid, nil
}

// Revocation (acceptance 2).

func lifecycleRevocation(t *testing.T, tl *tools) {
	t0 := time.Now()
	s := startDevServer(t, tl)
	s.installPlugin(t)
	// Short lifetimes everywhere, so that every entry can be tidied within
	// the test: a subject's entry lasts for the longest max_ttl of any role.
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256", "verification_ttl=1m")
	s.vault(t, "write", mountPath+"/roles/r1", "key=k", "audiences="+e2eAudience, "subject=svc",
		"allowed_subjects=ann,bob", "ttl=10s", "max_ttl=10s")
	s.vault(t, "write", mountPath+"/roles/r2", "key=k", "audiences="+e2eAudience, "subject=svc", "ttl=10s", "max_ttl=10s")
	pub := lifecyclePublicKey(t, s, "k")

	byToken := s.issue(t, "r1")
	byJTI := s.issue(t, "r1")
	ann1 := s.issue(t, "r1", "subject=ann")
	ann2 := s.issue(t, "r1", "subject=ann")
	bob := s.issue(t, "r1", "subject=bob")
	role1 := s.issue(t, "r2")
	role2 := s.issue(t, "r2")
	all := map[string]issued{"by-token": byToken, "by-jti": byJTI, "ann-1": ann1, "ann-2": ann2, "bob": bob, "role-1": role1, "role-2": role2}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		if active, reason := lifecycleVerify(t, s, all[name].Token); !active {
			t.Fatalf("%s: jwt/verify says inactive (%s) before any revocation", name, reason)
		}
	}

	expires := map[string]time.Time{}
	revoke := func(what string, args ...string) map[string]any {
		t.Helper()
		d := s.vaultJSON(t, append([]string{"write", "-format=json", mountPath + "/revoke"}, args...)...).Data
		expires[what] = lifecycleTime(t, what+" expires_at", d["expires_at"])
		return d
	}
	if d := revoke("token", "token="+byToken.Token); d["revoked"] != "jti" {
		t.Errorf("revoke token=: revoked %v, want jti", d["revoked"])
	}
	exp := number(t, "exp", decodeJWT(t, byJTI.Token).Payload["exp"])
	if d := revoke("jti", "jti="+byJTI.Jti, "exp="+strconv.FormatInt(exp, 10)); d["revoked"] != "jti" {
		t.Errorf("revoke jti=: revoked %v, want jti", d["revoked"])
	}
	if d := revoke("subject", "subject=ann"); d["revoked"] != "subject" {
		t.Errorf("revoke subject=: revoked %v, want subject", d["revoked"])
	}

	// By role: tokens of r2 issued at or before now. iat has whole seconds,
	// so the token that must stay active is issued in a later second.
	roleOK := true
	if r := s.run(s.rootToken, "", "write", "-format=json", mountPath+"/revoke", "role=r2"); r.Err != nil {
		roleOK = false
		t.Errorf("revoke role=r2 failed (revocation by role missing from this plugin build?): %v\n%s", r.Err, redact(r.Stderr))
	} else {
		var sec secret
		if err := json.Unmarshal([]byte(r.Stdout), &sec); err != nil {
			t.Fatalf("revoke role=r2: %v", err)
		}
		expires["role"] = lifecycleTime(t, "role expires_at", sec.Data["expires_at"])
		if sec.Data["revoked"] != "role" {
			t.Errorf("revoke role=: revoked %v, want role", sec.Data["revoked"])
		}
	}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	role3 := s.issue(t, "r2")

	// Every revoked token, in every encoding, is inactive.
	revoked := []string{"by-token", "by-jti", "ann-1", "ann-2"}
	if roleOK {
		revoked = append(revoked, "role-1", "role-2")
	}
	for _, name := range revoked {
		tok := all[name].Token
		if active, reason := lifecycleVerify(t, s, tok); active || !strings.Contains(reason, "revoked") {
			t.Errorf("%s: jwt/verify active=%t reason %q, want inactive as revoked", name, active, reason)
		}
		for variant, v := range lifecycleVariants(t, tok, pub) {
			if active, reason := lifecycleVerify(t, s, v); active || reason == "" {
				t.Errorf("%s, %s: jwt/verify active=%t reason %q, want inactive with a reason", name, variant, active, reason)
			} else {
				t.Logf("%s, %s: inactive: %s", name, variant, reason)
			}
		}
	}
	if !roleOK {
		for _, name := range []string{"role-1", "role-2"} {
			active, reason := lifecycleVerify(t, s, all[name].Token)
			t.Logf("%s (role revocation failed): active=%t %s", name, active, reason)
		}
	}

	// Untouched: bob (another subject of r1) and r2's token from after the
	// role revocation. The strict parser still refuses stray bits on them.
	for name, tok := range map[string]string{"bob": bob.Token, "role-3 (issued after the role revocation)": role3.Token} {
		if active, reason := lifecycleVerify(t, s, tok); !active {
			t.Errorf("%s: jwt/verify inactive (%s), want active: it was not revoked", name, reason)
		}
		for variant, v := range lifecycleVariants(t, tok, pub) {
			active, reason := lifecycleVerify(t, s, v)
			if strings.HasPrefix(variant, "stray bits") && active {
				t.Errorf("%s, %s: jwt/verify active; docs/api.md: every segment is base64url with no stray bits", name, variant)
			}
			t.Logf("%s (not revoked), %s: active=%t %s", name, variant, active, reason)
		}
	}

	// The revocations are listed, and tidy keeps them while tokens they
	// cover may be valid.
	rev := s.vaultJSON(t, "read", "-format=json", mountPath+"/revocations").Data
	jtis := lifecycleEntries(t, rev, "jtis", "jti")
	for _, tk := range []issued{byToken, byJTI} {
		if !slices.Contains(jtis, tk.Jti) {
			t.Errorf("jwt/revocations jtis %v lacks %s", jtis, tk.Jti)
		}
	}
	if subs := lifecycleEntries(t, rev, "subjects", "sub"); !slices.Contains(subs, "ann") {
		t.Errorf("jwt/revocations subjects %v lacks ann", subs)
	}
	if roleOK {
		roles, tags := lifecycleEntries(t, rev, "roles", "role"), lifecycleEntries(t, rev, "roles", "role_tag")
		// The role is found by the tag that starts the jti of its tokens.
		tag, _, _ := strings.Cut(role1.Jti, ".")
		if !slices.Equal(roles, []string{"r2"}) || !slices.Equal(tags, []string{tag}) {
			t.Errorf("jwt/revocations roles %v with tags %v, want [r2] with r2's jti tag [%s]", roles, tags, tag)
		}
	}
	if n := lifecycleTidy(t, s); n != 0 {
		t.Errorf("tidy removed %d entries while the tokens they cover are live, want 0", n)
	}

	// Past every entry's expiry (exp + 30s leeway for jtis, the longest
	// max_ttl + leeway for subjects and roles), tidy removes them all.
	var last time.Time
	for _, e := range expires {
		last = lifecycleLatest(last, e)
	}
	wait := time.Until(last.Add(1500 * time.Millisecond))
	if wait > 50*time.Second {
		t.Logf("entries expire at %s; not waiting %s for tidy", last.Format(time.RFC3339), wait.Round(time.Second))
		return
	}
	time.Sleep(wait)
	if n := lifecycleTidy(t, s); n != int64(len(expires)) {
		t.Errorf("tidy after every entry expired removed %d, want %d (%v)", n, len(expires), slices.Sorted(maps.Keys(expires)))
	}
	rev = s.vaultJSON(t, "read", "-format=json", mountPath+"/revocations").Data
	for _, field := range []string{"jtis", "subjects", "roles"} {
		if l, ok := rev[field].([]any); ok && len(l) > 0 {
			t.Errorf("jwt/revocations %s still lists %d entries after tidy: %v", field, len(l), l)
		}
	}
	if n := lifecycleTidy(t, s); n != 0 {
		t.Errorf("a second tidy removed %d, want 0", n)
	}
	t.Logf("revocation: %s in all (waited %s for expiry)", time.Since(t0).Round(time.Second), wait.Round(time.Second))
}

// lifecycleVerify asks jwt/verify about a token.
func lifecycleVerify(t *testing.T, s *vaultServer, token string) (bool, string) {
	t.Helper()
	d := s.vaultJSON(t, "write", "-format=json", mountPath+"/verify", "token="+token).Data
	active, ok := d["active"].(bool)
	if !ok {
		t.Fatalf("jwt/verify: active is %T, want a bool", d["active"])
	}
	reason, _ := d["reason"].(string)
	if !active && reason == "" {
		t.Errorf("jwt/verify: inactive without a reason")
	}
	return active, redact(reason)
}

func lifecycleTidy(t *testing.T, s *vaultServer) int64 {
	t.Helper()
	return number(t, "tidy removed", s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/tidy").Data["removed"])
}

// lifecycleEntries lists field of every entry of jwt/revocations' list.
func lifecycleEntries(t *testing.T, d map[string]any, list, field string) []string {
	t.Helper()
	l, ok := d[list].([]any)
	if !ok {
		t.Errorf("jwt/revocations: %s is %T, want a list", list, d[list])
		return nil
	}
	var out []string
	for _, e := range l {
		m, _ := e.(map[string]any)
		s, _ := m[field].(string)
		out = append(out, s)
	}
	return out
}

// lifecycleVariants are other encodings of an ES256 token with the same
// claims: the high-S twin of its signature (valid per plain ECDSA; checked
// here against pub) and base64url with non-zero trailing bits in the last
// character of the signature and, where it has some, of the payload.
func lifecycleVariants(t *testing.T, token string, pub *ecdsa.PublicKey) map[string]string {
	t.Helper()
	segs := strings.Split(token, ".")
	out := map[string]string{}

	sig, err := base64.RawURLEncoding.Strict().DecodeString(segs[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("ES256 signature: %d bytes, %v", len(sig), err)
	}
	r, sv := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	hs := new(big.Int).Sub(elliptic.P256().Params().N, sv)
	twin := make([]byte, 64)
	r.FillBytes(twin[:32])
	hs.FillBytes(twin[32:])
	digest := sha256.Sum256([]byte(segs[0] + "." + segs[1]))
	if !ecdsa.Verify(pub, digest[:], r, hs) {
		t.Fatalf("the high-S twin does not verify with plain ECDSA; the malleation is wrong")
	}
	out["high-S signature"] = segs[0] + "." + segs[1] + "." + b64(twin)

	for i, name := range map[int]string{1: "payload", 2: "signature"} {
		seg, ok := lifecycleStrayBits(segs[i])
		if !ok {
			t.Logf("the %s segment has no trailing bits (length %d)", name, len(segs[i]))
			continue
		}
		// The same bytes to a lenient decoder; refused by a strict one.
		a, errA := base64.RawURLEncoding.DecodeString(segs[i])
		b, errB := base64.RawURLEncoding.DecodeString(seg)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("stray-bit %s decodes differently (%v, %v)", name, errA, errB)
		}
		if _, err := base64.RawURLEncoding.Strict().DecodeString(seg); err == nil {
			t.Fatalf("stray-bit %s is strict base64url; the malleation is wrong", name)
		}
		v := slices.Clone(segs)
		v[i] = seg
		out["stray bits in "+name] = strings.Join(v, ".")
	}
	return out
}

const lifecycleB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// lifecycleStrayBits sets the lowest unused bit of an unpadded base64url
// segment's last character, if the segment has unused bits.
func lifecycleStrayBits(seg string) (string, bool) {
	if len(seg)%4 != 2 && len(seg)%4 != 3 {
		return "", false
	}
	i := strings.IndexByte(lifecycleB64, seg[len(seg)-1])
	if i < 0 || i&1 != 0 {
		return "", false
	}
	return seg[:len(seg)-1] + string(lifecycleB64[i|1]), true
}

// lifecyclePublicKey is the current version's P-256 public key, from the
// key read.
func lifecyclePublicKey(t *testing.T, s *vaultServer, key string) *ecdsa.PublicKey {
	t.Helper()
	d := lifecycleKeyRead(t, s, key)
	jwk, ok := lifecycleVersion(t, d, int(number(t, "current_version", d["current_version"])))["public_key"].(map[string]any)
	if !ok {
		t.Fatalf("keys/%s: no public_key", key)
	}
	coord := func(name string) []byte {
		s, _ := jwk[name].(string)
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("keys/%s public_key.%s: %d bytes, %v", key, name, len(b), err)
		}
		return b
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, coord("x")...), coord("y")...))
	if err != nil {
		t.Fatalf("keys/%s public_key: %v", key, err)
	}
	return pub
}

// Refresh (acceptance 4).

func lifecycleRefresh(t *testing.T, tl *tools) {
	s := startDevServer(t, tl)
	s.installPlugin(t)
	if help := s.run(s.rootToken, "", "path-help", mountPath+"/refresh"); help.Err != nil {
		t.Fatalf("vault path-help %s/refresh: %v (refresh tokens missing from this plugin build?)\n%s", mountPath, help.Err, redact(help.Stderr))
	}
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/rf", "key=k", "audiences="+e2eAudience, "subject=svc-rf", "ttl=5m", "refresh_ttl=1h")
	s.vault(t, "write", mountPath+"/roles/plain", "key=k", "audiences="+e2eAudience, "subject=svc-plain", "ttl=5m")
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256"}

	// Issue: a token and a refresh token valid for refresh_ttl.
	before := time.Now()
	tok0, rt0 := lifecycleWithRefresh(t, s, "issue", s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/issue/rf"), before)
	p0 := tl.verifier.mustVerify(t, tok0, o).Payload

	// Refresh: a new token for the same subject and audience, and a new
	// refresh token.
	refresh := func(token, rt string) (string, string) {
		t.Helper()
		before := time.Now()
		return lifecycleWithRefresh(t, s, "refresh", s.vaultJSONAs(t, token, "write", "-format=json", mountPath+"/refresh", "refresh_token="+rt), before)
	}
	tok1, rt1 := refresh(s.rootToken, rt0)
	if rt1 == rt0 || tok1 == tok0 {
		t.Fatalf("refresh returned the same refresh token or token (refresh token same: %t, token same: %t)", rt1 == rt0, tok1 == tok0)
	}
	p1 := tl.verifier.mustVerify(t, tok1, o).Payload
	lifecycleSameGrant(t, "refreshed token", p0, p1)
	if active, reason := lifecycleVerify(t, s, tok1); !active {
		t.Fatalf("jwt/verify: the refreshed token is inactive (%s)", reason)
	}

	// Again, with the new refresh token.
	tok2, rt2 := refresh(s.rootToken, rt1)
	if rt2 == rt1 || rt2 == rt0 {
		t.Errorf("second refresh returned a refresh token already seen")
	}
	lifecycleSameGrant(t, "token of the second refresh", p0, tl.verifier.mustVerify(t, tok2, o).Payload)
	for i, tok := range []string{tok0, tok1, tok2} {
		if active, reason := lifecycleVerify(t, s, tok); !active {
			t.Fatalf("jwt/verify: token %d of the family is inactive (%s) before any reuse", i, reason)
		}
	}

	// Reuse of a used refresh token: refused, and the family is revoked.
	r := s.run(s.rootToken, "", "write", "-format=json", mountPath+"/refresh", "refresh_token="+rt0)
	msg := strings.ToLower(r.Stderr)
	switch {
	case r.Err == nil:
		t.Errorf("refreshing with an already used refresh token succeeded")
	case cliErrorCode(r.Stderr) != http.StatusBadRequest:
		t.Errorf("reused refresh token: want a 400, got: %s", redact(r.Stderr))
	case !strings.Contains(msg, "already used") || !strings.Contains(msg, "revoked"):
		t.Errorf("reused refresh token: the message does not say it was already used and the family revoked: %s", redact(r.Stderr))
	default:
		t.Logf("reused refresh token: %s", strings.TrimSpace(redact(r.Stderr)))
	}
	if r := s.run(s.rootToken, "", "write", "-format=json", mountPath+"/refresh", "refresh_token="+rt2); r.Err == nil {
		t.Errorf("after the reuse, the family's latest refresh token still works")
	} else if cliErrorCode(r.Stderr) != http.StatusBadRequest {
		t.Errorf("family's latest refresh token after the reuse: want a 400, got: %s", redact(r.Stderr))
	}
	for i, tok := range []string{tok0, tok1, tok2} {
		if active, reason := lifecycleVerify(t, s, tok); active || !strings.Contains(reason, "revoked") {
			t.Errorf("jwt/verify: token %d of the revoked family: active=%t reason %q, want inactive as revoked", i, active, reason)
		}
	}

	// A role without refresh_ttl gives no refresh token.
	plain := s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/issue/plain").Data
	secrets.add(fmt.Sprint(plain["token"]))
	for _, f := range []string{"refresh_token", "refresh_expires_at"} {
		if v, ok := plain[f]; ok && v != nil && v != "" {
			t.Errorf("issue from a role without refresh_ttl: %s is set", f)
		}
	}

	// A gateway with update on jwt/refresh only: it can refresh, not issue.
	policy := filepath.Join(s.dir, "refresh-only.hcl")
	writeFile(t, policy, `path "`+mountPath+`/refresh" { capabilities = ["update"] }`+"\n")
	s.vault(t, "policy", "write", "refresh-only", policy)
	child := s.vaultJSON(t, "token", "create", "-format=json", "-policy=refresh-only", "-no-default-policy", "-ttl=10m")
	if child.Auth == nil || child.Auth.ClientToken == "" {
		t.Fatal("vault token create printed no auth.client_token")
	}
	gw := child.Auth.ClientToken
	secrets.add(gw)
	gtok0, grt0 := lifecycleWithRefresh(t, s, "issue", s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/issue/rf"), time.Now())
	gp0 := tl.verifier.mustVerify(t, gtok0, o).Payload
	gtok1, grt1 := refresh(gw, grt0)
	lifecycleSameGrant(t, "token the gateway refreshed", gp0, tl.verifier.mustVerify(t, gtok1, o).Payload)
	gtok2, _ := refresh(gw, grt1)
	tl.verifier.mustVerify(t, gtok2, o)
	mustDeny(t, s, gw, "write", "-f", mountPath+"/issue/rf")
	mustDeny(t, s, gw, "write", "-f", mountPath+"/issue/plain")
	mustDeny(t, s, gw, "write", mountPath+"/verify", "token="+gtok2)
}

// lifecycleWithRefresh checks an issue or refresh answer with a refresh
// token and returns the token and the refresh token (both registered as
// secrets).
func lifecycleWithRefresh(t *testing.T, s *vaultServer, what string, sec secret, before time.Time) (string, string) {
	t.Helper()
	tok, _ := sec.Data["token"].(string)
	rt, _ := sec.Data["refresh_token"].(string)
	secrets.add(tok)
	secrets.add(rt)
	if tok == "" || rt == "" {
		t.Fatalf("%s: token set %t, refresh_token set %t; want both", what, tok != "", rt != "")
	}
	if jwtPattern.MatchString(rt) {
		t.Logf("%s: the refresh token is a JWT", what)
	}
	exp := lifecycleTime(t, what+" refresh_expires_at", sec.Data["refresh_expires_at"])
	if lo, hi := before.Add(time.Hour).Add(-2*time.Second), time.Now().Add(time.Hour).Add(2*time.Second); exp.Before(lo) || exp.After(hi) {
		t.Errorf("%s: refresh_expires_at %s, want refresh_ttl (1h) from now", what, exp)
	}
	return tok, rt
}

// lifecycleSameGrant checks that a refreshed token says what the original
// said: issuer, subject, audience; with a jti of its own.
func lifecycleSameGrant(t *testing.T, what string, orig, got map[string]any) {
	t.Helper()
	for _, c := range []string{"iss", "sub", "aud"} {
		if fmt.Sprint(got[c]) != fmt.Sprint(orig[c]) {
			t.Errorf("%s: %s %v, the original had %v", what, c, got[c], orig[c])
		}
	}
	if got["jti"] == nil || got["jti"] == orig["jti"] {
		t.Errorf("%s: jti %v, want a new one (the original's is %v)", what, got["jti"], orig["jti"])
	}
}

// Shared helpers.

func lifecycleKeyRead(t *testing.T, s *vaultServer, key string) map[string]any {
	t.Helper()
	return s.vaultJSON(t, "read", "-format=json", mountPath+"/keys/"+key).Data
}

func lifecycleVersion(t *testing.T, d map[string]any, n int) map[string]any {
	t.Helper()
	versions, ok := d["versions"].(map[string]any)
	if !ok {
		t.Fatalf("key: versions is %T, want an object", d["versions"])
	}
	v, ok := versions[strconv.Itoa(n)].(map[string]any)
	if !ok {
		t.Fatalf("key: no version %d (have %v)", n, slices.Sorted(maps.Keys(versions)))
	}
	return v
}

func lifecycleStr(t *testing.T, what string, v any) string {
	t.Helper()
	s, ok := v.(string)
	if !ok || s == "" {
		t.Fatalf("%s is %T %v, want a non-empty string", what, v, v)
	}
	return s
}

func lifecycleTime(t *testing.T, what string, v any) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, lifecycleStr(t, what, v))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return ts
}

// lifecycleRevokeVersion (acceptance 5 of issue 5): revoke-version takes a
// compromised version out of the JWKS at once; jwt/verify and a fresh jose
// verifier reject its tokens, and the current version's tokens still pass.
func lifecycleRevokeVersion(t *testing.T, tl *tools) {
	s := startDevServer(t, tl)
	s.installPlugin(t)
	s.vault(t, "write", mountPath+"/config", "jwks_max_age=40s") // as lifecycleCheckJWKS expects
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "subject=svc-rv", "ttl=5m")
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "ES256"}

	old := s.issue(t, "r")
	s.vault(t, "write", mountPath+"/keys/k/rotate", "immediate=true")
	cur := s.issue(t, "r")
	if old.Kid == cur.Kid {
		t.Fatal("immediate rotation did not change the signing kid")
	}
	lifecycleCheckJWKS(t, s, []string{old.Kid, cur.Kid})
	tl.verifier.mustVerify(t, old.Token, o)

	d := s.vaultJSON(t, "write", "-format=json", mountPath+"/keys/k/revoke-version", "version=1").Data
	if _, still := d["versions"].(map[string]any)["1"]; still {
		t.Fatalf("revoke-version: version 1 still listed: %v", d["versions"])
	}
	lifecycleCheckJWKS(t, s, []string{cur.Kid})
	if active, reason := lifecycleVerify(t, s, old.Token); active || !strings.Contains(reason, "no published key version") {
		t.Fatalf("jwt/verify of the revoked version's token: active=%v reason=%q", active, reason)
	}
	if msg := tl.verifier.mustReject(t, old.Token, o); msg == "" {
		t.Fatal("jose accepted a token of the revoked version")
	}
	if active, reason := lifecycleVerify(t, s, cur.Token); !active {
		t.Fatalf("the current version's token: %s", reason)
	}
	tl.verifier.mustVerify(t, cur.Token, o)

	// The current version cannot be revoked: that would leave nothing to sign.
	r := s.run(s.rootToken, "", "write", mountPath+"/keys/k/revoke-version", "version=2")
	if r.Err == nil || cliErrorCode(r.Stderr) != 400 || !strings.Contains(r.Stderr, "current version") {
		t.Fatalf("revoke-version of the current version: want a 400 naming it, got %v\n%s", r.Err, redact(r.Stderr))
	}
}
