//go:build unix

// Package e2e drives a real Vault server, the real vault CLI and the plugin
// binary, and checks the tokens with outside verifiers (jose and
// jsonwebtoken under Node, PyJWT under Debian's Python), never with our own
// parser.
//
// The tests need three things, passed by `make test-e2e`:
//
//	VAULT_BIN       a vault binary (scripts/vault.sh builds and caches one)
//	PLUGIN_BIN      the plugin binary (make build)
//	VERIFY_DIR      scripts/verify with its node_modules installed (npm ci)
//	VERIFY_PYTHON   optional; a python3 with PyJWT and cryptography
//	                (default /usr/bin/python3, apt's python3-jwt)
//	PLUGIN_VERSION  optional; the version the plugin was built with
//
// Without them a test skips on a developer's machine and fails under CI.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	pluginName = "vault-plugin-secrets-jwt"
	mountPath  = "jwt"

	// Bounds on every wait, so a hung server fails a test instead of the
	// whole run.
	cliTimeout      = 60 * time.Second
	verifierTimeout = 30 * time.Second
	startTimeout    = 60 * time.Second
	stopTimeout     = 30 * time.Second
	activeTimeout   = 90 * time.Second
)

// requireEnv returns the named environment variables. When one is missing the
// test fails under CI (a test that skips in CI is a test we don't have) and
// skips elsewhere.
func requireEnv(t *testing.T, names ...string) map[string]string {
	t.Helper()
	vals := make(map[string]string, len(names))
	var missing []string
	for _, n := range names {
		v := os.Getenv(n)
		if v == "" {
			missing = append(missing, n)
		}
		vals[n] = v
	}
	if len(missing) == 0 {
		return vals
	}
	msg := fmt.Sprintf("%s not set; run `make test` (or `make test-e2e`)", strings.Join(missing, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

// tools is what the end-to-end tests run: the vault binary, the plugin and the
// outside verifier.
type tools struct {
	vaultBin      string
	pluginBin     string
	pluginVersion string
	verifier      *verifier
}

func loadTools(t *testing.T) *tools {
	t.Helper()
	env := requireEnv(t, "VAULT_BIN", "PLUGIN_BIN", "VERIFY_DIR")
	tl := &tools{
		vaultBin:  mustAbs(t, env["VAULT_BIN"]),
		pluginBin: mustAbs(t, env["PLUGIN_BIN"]),
		verifier:  newVerifier(t, env["VERIFY_DIR"]),
	}
	for _, f := range []string{tl.vaultBin, tl.pluginBin} {
		if fi, err := os.Stat(f); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Fatalf("%s is not an executable file (err=%v)", f, err)
		}
	}

	// The plugin answers -version with the version it was built with; Vault
	// refuses to register it under any other, so take it from there and check
	// it against PLUGIN_VERSION when that is set.
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, tl.pluginBin, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -version: %v\n%s", tl.pluginBin, err, out)
	}
	tl.pluginVersion = strings.TrimSpace(string(out))
	if !strings.HasPrefix(tl.pluginVersion, "v") || strings.ContainsAny(tl.pluginVersion, " \n") {
		t.Fatalf("%s -version printed %q, want a single vX.Y.Z version", tl.pluginBin, tl.pluginVersion)
	}
	if want := os.Getenv("PLUGIN_VERSION"); want != "" && want != tl.pluginVersion {
		t.Fatalf("PLUGIN_VERSION=%s but %s -version prints %s", want, tl.pluginBin, tl.pluginVersion)
	}
	return tl
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// freePort asks the kernel for a free loopback port. Another process can take
// it before Vault binds it; the window is small and a test fails loudly if it
// happens.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePortPair finds a free loopback port p whose neighbour p+1 is free too:
// a dev server puts its cluster listener on the API port plus one.
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 20 {
		p := freePort(t)
		if p >= 65535 {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no pair of free loopback ports found")
	return 0
}

// waitFor polls cond until it reports done, returns an error, or timeout
// passes.
func waitFor(timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("timed out after %s: %w", timeout, last)
			}
			return fmt.Errorf("timed out after %s", timeout)
		}
		time.Sleep(interval)
	}
}

// Redaction: nothing secret reaches the test log. JWTs and Vault tokens are
// recognised by shape; unseal keys and other secrets are registered exactly.

var (
	// A JWS header is a JSON object, so its base64url starts with "eyJ".
	jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	// refreshTokenShape is a refresh token anywhere in a text: a family id
	// and a secret, base64url (22 and 43 characters).
	refreshTokenShape = regexp.MustCompile(`[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}`)
	vaultTokenPattern = regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{16,}|\bs\.[A-Za-z0-9]{24}\b`)
)

type redactor struct {
	mu      sync.Mutex
	secrets []string
}

var secrets redactor

// add registers a secret so that it is redacted from anything logged.
func (r *redactor) add(s string) {
	if len(s) < 8 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = append(r.secrets, s)
}

func (r *redactor) redact(s string) string {
	r.mu.Lock()
	list := append([]string(nil), r.secrets...)
	r.mu.Unlock()
	for _, sec := range list {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	s = jwtPattern.ReplaceAllString(s, "[redacted-jwt]")
	s = refreshTokenShape.ReplaceAllString(s, "[redacted-refresh-token]")
	s = vaultTokenPattern.ReplaceAllString(s, "[redacted-token]")
	return s
}

func redact(s string) string { return secrets.redact(s) }

// processEnv is the environment for vault processes: the caller's, less every
// VAULT_* variable (VAULT_FORMAT or VAULT_NAMESPACE would change what the CLI
// prints) and every AWS_* variable (the plugin inherits the server's
// environment, and AWS_PROFILE or AWS_REGION there would change how it
// reaches KMS), with HOME pointed at a directory of the test's own so that no
// ~/.vault-token or ~/.aws is read or written.
func processEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home)
	return append(env, extra...)
}

// vaultServer is one Vault server process on loopback.
type vaultServer struct {
	t     *testing.T
	tools *tools

	dir       string // everything of this server's: config, data, logs, HOME
	pluginDir string
	port      int
	addr      string // http://127.0.0.1:port
	rootToken string
	dev       bool

	// Persistent servers only.
	clusterPort int
	dataDir     string
	unsealKey   string

	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

func newServer(t *testing.T, tl *tools, dev bool) *vaultServer {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &vaultServer{
		t:         t,
		tools:     tl,
		dir:       dir,
		pluginDir: filepath.Join(dir, "plugins"),
		dev:       dev,
	}
	if dev {
		s.port = freePortPair(t)
	} else {
		s.port = freePort(t)
	}
	s.addr = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	for _, d := range []string{s.pluginDir, filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Vault resolves symlinks under plugin_directory and refuses ones that
	// leave it, so the plugin is copied, not linked.
	copyFile(t, tl.pluginBin, filepath.Join(s.pluginDir, pluginName), 0o755)
	return s
}

// startDevServer starts `vault server -dev` with a root token of its own and
// a config file that gives it a plugin directory. extraArgs go to `vault
// server` as well, e.g. "-log-level=trace".
func startDevServer(t *testing.T, tl *tools, extraArgs ...string) *vaultServer {
	t.Helper()
	s := newServer(t, tl, true)
	s.rootToken = "e2e-root-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	secrets.add(s.rootToken)
	cfg := filepath.Join(s.dir, "vault.hcl")
	writeFile(t, cfg, fmt.Sprintf("plugin_directory = %q\ndisable_mlock = true\n", s.pluginDir))
	s.start(t, append([]string{
		"server", "-dev",
		"-dev-root-token-id=" + s.rootToken,
		"-dev-listen-address=" + fmt.Sprintf("127.0.0.1:%d", s.port),
		"-dev-no-store-token",
		"-config=" + cfg,
	}, extraArgs...)...)
	s.waitHealthy(t, startTimeout, http.StatusOK)
	return s
}

// newPersistentServer writes the config of a raft-backed server. Call
// startPersistent, then initialize and unseal (first time) or unseal alone
// (after a restart).
func newPersistentServer(t *testing.T, tl *tools) *vaultServer {
	t.Helper()
	s := newServer(t, tl, false)
	s.clusterPort = freePort(t)
	s.dataDir = filepath.Join(s.dir, "raft")
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.dir, "vault.hcl"), fmt.Sprintf(`
storage "raft" {
  path    = %q
  node_id = "n1"
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:%d"
cluster_addr     = "http://127.0.0.1:%d"
disable_mlock    = true
plugin_directory = %q
ui               = false
`, s.dataDir, s.port, s.clusterPort, s.port, s.clusterPort, s.pluginDir))
	return s
}

// startPersistent starts (or restarts) a persistent server and waits until
// its API answers; it is sealed then.
func (s *vaultServer) startPersistent(t *testing.T) {
	t.Helper()
	s.start(t, "server", "-config="+filepath.Join(s.dir, "vault.hcl"))
	// 501: not initialised; 503: sealed. Either means the API is up.
	s.waitHealthy(t, startTimeout, http.StatusNotImplemented, http.StatusServiceUnavailable, http.StatusOK)
}

func (s *vaultServer) start(t *testing.T, args ...string) {
	t.Helper()
	if s.cmd != nil {
		t.Fatal("server already running")
	}
	n := 1
	for {
		s.logPath = filepath.Join(s.dir, fmt.Sprintf("vault-%d.log", n))
		if _, err := os.Stat(s.logPath); errors.Is(err, os.ErrNotExist) {
			break
		}
		n++
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.tools.vaultBin, args...)
	cmd.Dir = s.dir
	cmd.Env = processEnv(filepath.Join(s.dir, "home"))
	cmd.Stdout = logf
	cmd.Stderr = logf
	// A process group of its own, so cleanup also reaches the plugin
	// processes Vault started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting vault: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if n == 1 { // one cleanup for every start of this server
		t.Cleanup(func() {
			s.kill()
			s.checkLogs(t)
			if t.Failed() {
				s.dumpLogs()
			}
		})
	}
}

// stop sends SIGTERM and waits for Vault to shut down.
func (s *vaultServer) stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.kill()
		t.Fatalf("vault did not stop within %s of SIGTERM", stopTimeout)
	}
	// Vault stops its plugins on the way out; make sure none is left.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd = nil
}

// kill ends the server and everything in its process group.
func (s *vaultServer) kill() {
	if s.cmd == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

func (s *vaultServer) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(s.dir, "vault-*.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		var buf strings.Builder
		for _, l := range lines {
			if strings.Contains(l, "Root Token:") || strings.Contains(l, "Unseal Key") {
				continue
			}
			buf.WriteString(redact(l))
			buf.WriteByte('\n')
		}
		s.t.Logf("last lines of %s:\n%s", p, buf.String())
	}
}

// checkLogs fails the test if any of the server's logs (Vault's, with the
// lines the plugin logs through it) holds a JWT, something shaped like a
// refresh token, or a secret the test registered: no token, refresh token, credential or password may ever be
// logged. The dev server's banner, which prints the root token and unseal
// key it was given, is Vault's own and skipped.
func (s *vaultServer) checkLogs(t *testing.T) {
	t.Helper()
	secrets.mu.Lock()
	list := slices.Clone(secrets.secrets)
	secrets.mu.Unlock()
	logs, _ := filepath.Glob(filepath.Join(s.dir, "vault-*.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("reading %s: %v", p, err)
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "Root Token:") || strings.Contains(line, "Unseal Key:") {
				continue
			}
			leak := jwtPattern.MatchString(line) || refreshTokenShape.MatchString(line)
			for _, sec := range list {
				leak = leak || strings.Contains(line, sec)
			}
			if leak {
				t.Errorf("%s:%d logs a token or a secret: %s", filepath.Base(p), i+1, redact(line))
			}
		}
	}
}

// waitHealthy polls /v1/sys/health until it answers with one of the codes.
func (s *vaultServer) waitHealthy(t *testing.T, timeout time.Duration, codes ...int) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	err := waitFor(timeout, 200*time.Millisecond, func() (bool, error) {
		select {
		case <-s.exited:
			return false, fmt.Errorf("vault exited: %v", s.waitErr)
		default:
		}
		resp, err := client.Get(s.addr + "/v1/sys/health")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		resp.Body.Close()
		last = resp.Status
		for _, c := range codes {
			if resp.StatusCode == c {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("vault at %s not ready (want HTTP %v; last: %s): %v", s.addr, codes, last, err)
	}
}

// cliResult is one run of the vault CLI.
type cliResult struct {
	Stdout, Stderr string
	Err            error
}

// run runs the vault CLI against this server with the given token ("" for
// none). It never fails the test.
func (s *vaultServer) run(token string, stdin string, args ...string) cliResult {
	return s.runEnv(token, stdin, nil, args...)
}

// runEnv is run with more environment variables for the CLI, e.g.
// VAULT_MAX_RETRIES=0 to see every error the server answers rather than the
// CLI retrying 429s and 5xx. It never fails the test, so it may be called
// from any goroutine.
func (s *vaultServer) runEnv(token, stdin string, env []string, args ...string) cliResult {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.tools.vaultBin, args...)
	cmd.Dir = s.dir
	extra := []string{"VAULT_ADDR=" + s.addr}
	if token != "" {
		extra = append(extra, "VAULT_TOKEN="+token)
	}
	extra = append(extra, env...)
	cmd.Env = processEnv(filepath.Join(s.dir, "home"), extra...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", cliTimeout, err)
	}
	return cliResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// vault runs the CLI with the root token and fails the test on error.
func (s *vaultServer) vault(t *testing.T, args ...string) string {
	t.Helper()
	return s.vaultAs(t, s.rootToken, args...)
}

// vaultAs runs the CLI with token and fails the test on error.
func (s *vaultServer) vaultAs(t *testing.T, token string, args ...string) string {
	t.Helper()
	r := s.run(token, "", args...)
	if r.Err != nil {
		t.Fatalf("vault %s: %v\nstderr: %s\nstdout: %s", redact(strings.Join(args, " ")), r.Err, redact(r.Stderr), redact(r.Stdout))
	}
	return r.Stdout
}

// secret is the JSON the CLI prints for -format=json.
type secret struct {
	Data     map[string]any `json:"data"`
	Warnings []string       `json:"warnings"`
	Auth     *struct {
		ClientToken string   `json:"client_token"`
		Policies    []string `json:"policies"`
	} `json:"auth"`
}

// vaultJSON runs a CLI command that must be given -format=json and decodes
// its output.
func (s *vaultServer) vaultJSON(t *testing.T, args ...string) secret {
	t.Helper()
	return s.vaultJSONAs(t, s.rootToken, args...)
}

func (s *vaultServer) vaultJSONAs(t *testing.T, token string, args ...string) secret {
	t.Helper()
	out := s.vaultAs(t, token, args...)
	var sec secret
	if err := json.Unmarshal([]byte(out), &sec); err != nil {
		t.Fatalf("vault %s: decoding output: %v\n%s", strings.Join(args, " "), err, redact(out))
	}
	return sec
}

// issuer is the issuer every test configures: the mount's own address, so
// that iss + "/jwks" is where a relying party finds the keys.
func (s *vaultServer) issuer() string { return s.addr + "/v1/" + mountPath }

func (s *vaultServer) jwksURL() string { return s.issuer() + "/jwks" }

// installPlugin registers the copied plugin by its sha256 and version,
// enables it at jwt/ and sets the issuer. It checks that the plugin reports
// its version itself (plugin.Run's running version): registered without
// -version, Vault asks the plugin and catalogs what it reports, while a
// plugin reporting none would be catalogued unversioned, and Vault would
// still accept -version for it. It also checks that the mount runs the
// registered binary.
func (s *vaultServer) installPlugin(t *testing.T) {
	t.Helper()
	sum := fileSHA256(t, filepath.Join(s.pluginDir, pluginName))
	v := s.tools.pluginVersion
	s.vault(t, "plugin", "register", "-sha256="+sum, "secret", pluginName)
	if r := s.run(s.rootToken, "", "plugin", "info", "-format=json", "-version="+v, "secret", pluginName); r.Err != nil {
		t.Fatalf("registered without -version, the plugin is not catalogued as %s: it does not report its version (%v: %s)", v, r.Err, redact(r.Stderr))
	}
	s.vault(t, "plugin", "register", "-sha256="+sum, "-version="+v, "secret", pluginName)
	s.vault(t, "secrets", "enable", "-path="+mountPath, "-plugin-version="+v, pluginName)
	s.vault(t, "write", mountPath+"/config", "issuer="+s.issuer())

	var mounts map[string]struct {
		RunningPluginVersion string `json:"running_plugin_version"`
		RunningSHA256        string `json:"running_sha256"`
	}
	if err := json.Unmarshal([]byte(s.vault(t, "secrets", "list", "-detailed", "-format=json")), &mounts); err != nil {
		t.Fatalf("vault secrets list: %v", err)
	}
	if m := mounts[mountPath+"/"]; m.RunningPluginVersion != v || m.RunningSHA256 != sum {
		t.Fatalf("%s/: running_plugin_version %q, running_sha256 %q; want %q and %q", mountPath, m.RunningPluginVersion, m.RunningSHA256, v, sum)
	}
}

// issued is the data of a jwt/issue/<role> response.
type issued struct {
	Token     string
	Alg       string
	Kid       string
	Jti       string
	ExpiresAt any
	ExpiresIn any
}

// issue writes jwt/issue/<role> with token and returns the response data. The
// JWT is registered as a secret so it is never logged.
func (s *vaultServer) issueAs(t *testing.T, token, role string, args ...string) issued {
	t.Helper()
	// -f: the CLI refuses a write with no data without it.
	sec := s.vaultJSONAs(t, token, append([]string{"write", "-f", "-format=json", mountPath + "/issue/" + role}, args...)...)
	str := func(k string) string {
		v, ok := sec.Data[k].(string)
		if !ok {
			t.Fatalf("jwt/issue/%s: data.%s is %T, want a string", role, k, sec.Data[k])
		}
		return v
	}
	tok := str("token")
	secrets.add(tok)
	return issued{
		Token:     tok,
		Alg:       str("alg"),
		Kid:       str("kid"),
		Jti:       str("jti"),
		ExpiresAt: sec.Data["expires_at"],
		ExpiresIn: sec.Data["expires_in"],
	}
}

func (s *vaultServer) issue(t *testing.T, role string, args ...string) issued {
	t.Helper()
	return s.issueAs(t, s.rootToken, role, args...)
}

// get does an unauthenticated GET on the server.
func (s *vaultServer) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	return httpGet(t, s.addr+path, "")
}

func httpGet(t *testing.T, url, token string) (*http.Response, []byte) {
	t.Helper()
	return httpDo(t, http.MethodGet, url, token, "")
}

// httpDo sends one request with an optional Vault token and JSON body and
// returns the response with its body read (at most 1 MiB).
func httpDo(t *testing.T, method, url, token, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// Outside verifier.

type verifier struct {
	node   string
	python string // for PyJWT (Lib "pyjwt")
	dir    string
}

// pythonWithPyJWT is the interpreter scripts/verify/verify_pyjwt.py runs
// under: $VERIFY_PYTHON, or Debian's /usr/bin/python3, where apt's
// python3-jwt and python3-cryptography live (a python3 earlier on PATH, as
// pyenv's, may not have them). It is checked once per test binary.
var pythonWithPyJWT = sync.OnceValues(func() (string, error) {
	py := os.Getenv("VERIFY_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	out, err := exec.Command(py, "-c", "import jwt, cryptography; print(jwt.__version__)").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s cannot import PyJWT with cryptography (apt-get install python3-jwt python3-cryptography, or set VERIFY_PYTHON): %v\n%s", py, err, out)
	}
	return py, nil
})

func newVerifier(t *testing.T, dir string) *verifier {
	t.Helper()
	dir = mustAbs(t, dir)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run the verifier: %v", err)
	}
	for _, p := range []string{"verify.mjs", "verify_pyjwt.py", "node_modules/jose/package.json", "node_modules/jsonwebtoken/package.json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Fatalf("VERIFY_DIR=%s: %v (run `npm ci` there)", dir, err)
		}
	}
	py, err := pythonWithPyJWT()
	if err != nil {
		t.Fatal(err)
	}
	return &verifier{node: node, python: py, dir: dir}
}

// verifyOpts are the verifier's flags.
type verifyOpts struct {
	JWKSURL, Issuer, Audience, Alg string
	Lib                            string // "jose" (default), "jsonwebtoken" or "pyjwt"
}

// verified is what the verifier prints for a good token.
type verified struct {
	Header  map[string]any `json:"header"`
	Payload map[string]any `json:"payload"`
}

// verifyResult is one run of the verifier; Stderr is already redacted.
type verifyResult struct {
	Code   int
	Out    verified
	Stderr string
}

func (v *verifier) run(t *testing.T, token string, o verifyOpts) verifyResult {
	t.Helper()
	if o.Lib == "" {
		o.Lib = "jose"
	}
	ctx, cancel := context.WithTimeout(context.Background(), verifierTimeout)
	defer cancel()
	flags := []string{"--jwks-url", o.JWKSURL, "--issuer", o.Issuer, "--audience", o.Audience, "--alg", o.Alg}
	var cmd *exec.Cmd
	if o.Lib == "pyjwt" {
		cmd = exec.CommandContext(ctx, v.python, append([]string{filepath.Join(v.dir, "verify_pyjwt.py")}, flags...)...)
	} else {
		cmd = exec.CommandContext(ctx, v.node, append([]string{filepath.Join(v.dir, "verify.mjs")}, append(flags, "--lib", o.Lib)...)...)
	}
	cmd.Dir = v.dir
	cmd.Stdin = strings.NewReader(token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("verifier (%s, %s) timed out after %s", o.Lib, o.Alg, verifierTimeout)
	}
	res := verifyResult{Stderr: redact(stderr.String())}
	// The verifier must never print the token, not even when it rejects it.
	if token != "" && (strings.Contains(stdout.String(), token) || strings.Contains(stderr.String(), token)) {
		t.Errorf("verifier (%s, %s) printed the token", o.Lib, o.Alg)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.Code = exit.ExitCode()
		return res
	default:
		t.Fatalf("running verifier: %v", err)
	}
	if err := json.Unmarshal(stdout.Bytes(), &res.Out); err != nil {
		t.Fatalf("verifier (%s, %s): decoding output: %v\n%s", o.Lib, o.Alg, err, redact(stdout.String()))
	}
	return res
}

// mustVerify fails the test unless the verifier accepts the token.
func (v *verifier) mustVerify(t *testing.T, token string, o verifyOpts) verified {
	t.Helper()
	r := v.run(t, token, o)
	if r.Code != 0 {
		t.Fatalf("verifier (%s, %s) rejected a token it should accept (exit %d): %s", libName(o), o.Alg, r.Code, r.Stderr)
	}
	return r.Out
}

// mustReject fails the test unless the verifier rejects the token (exit 1,
// not a usage error) and returns its error output.
func (v *verifier) mustReject(t *testing.T, token string, o verifyOpts) string {
	t.Helper()
	r := v.run(t, token, o)
	if r.Code != 1 {
		t.Fatalf("verifier (%s, %s): exit %d, want 1 (rejected); stderr: %s", libName(o), o.Alg, r.Code, r.Stderr)
	}
	return r.Stderr
}

func libName(o verifyOpts) string {
	if o.Lib == "" {
		return "jose"
	}
	return o.Lib
}

// Small helpers.

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReader(f)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// initialize runs `vault operator init` with a single key share and keeps the
// unseal key and root token (registered as secrets, never logged).
func (s *vaultServer) initialize(t *testing.T) {
	t.Helper()
	r := s.run("", "", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json")
	if r.Err != nil {
		t.Fatalf("vault operator init: %v\n%s", r.Err, redact(r.Stderr))
	}
	var out struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("vault operator init: decoding output: %v", err)
	}
	if len(out.Keys) != 1 || out.RootToken == "" {
		t.Fatalf("vault operator init: got %d unseal keys and root token set=%t, want 1 and true", len(out.Keys), out.RootToken != "")
	}
	secrets.add(out.Keys[0])
	secrets.add(out.RootToken)
	s.unsealKey, s.rootToken = out.Keys[0], out.RootToken
}

// unseal unseals the server and waits until it is the active node. The key
// goes in a request body (sys/unseal), not on a command line: the CLI only
// takes it as an argument or from a terminal.
func (s *vaultServer) unseal(t *testing.T) {
	t.Helper()
	body, err := json.Marshal(map[string]string{"key": s.unsealKey})
	if err != nil {
		t.Fatal(err)
	}
	resp, out := httpDo(t, http.MethodPut, s.addr+"/v1/sys/unseal", "", string(body))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/sys/unseal: %s: %s", resp.Status, redact(string(out)))
	}
	var st struct {
		Sealed bool `json:"sealed"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Sealed {
		t.Fatalf("PUT /v1/sys/unseal: still sealed or bad answer (err=%v): %s", err, redact(string(out)))
	}
	// 200 is an unsealed, active node: raft has elected itself leader.
	s.waitHealthy(t, activeTimeout, http.StatusOK)
}

// JWT helpers. These only split and decode; whether a token is good is the
// outside verifier's call.

type jwtParts struct {
	Header    map[string]any
	Payload   map[string]any
	Signature []byte
}

func decodeJWT(t *testing.T, token string) jwtParts {
	t.Helper()
	segs := strings.Split(token, ".")
	if len(segs) != 3 {
		t.Fatalf("token has %d segments, want 3", len(segs))
	}
	var p jwtParts
	for i, dst := range []*map[string]any{&p.Header, &p.Payload} {
		raw, err := base64.RawURLEncoding.DecodeString(segs[i])
		if err != nil {
			t.Fatalf("token segment %d is not unpadded base64url: %v", i, err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			t.Fatalf("token segment %d is not a JSON object: %v", i, err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(segs[2])
	if err != nil {
		t.Fatalf("token signature is not unpadded base64url: %v", err)
	}
	p.Signature = sig
	return p
}

// number reads a JSON number (json.Number or float64) as int64.
func number(t *testing.T, what string, v any) int64 {
	t.Helper()
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			t.Fatalf("%s = %s, want an integer", what, n)
		}
		return i
	case float64:
		if n != float64(int64(n)) {
			t.Fatalf("%s = %v, want an integer", what, n)
		}
		return int64(n)
	default:
		t.Fatalf("%s is %T (%v), want a number", what, v, v)
		return 0
	}
}
