//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// auditRunbookHeading is the section of docs/operations.md whose audit log
// commands TestAuditRunbook runs.
const auditRunbookHeading = "After restoring an older snapshot"

// TestAuditRunbook stages the incident that docs/operations.md's "Finding
// what changed" looks for, under a file audit device, and runs the doc's own
// commands, as parseDocCommands extracts them, over its log: the `vault
// secrets tune` of the mount (with the response keys the prose adds to it),
// then the three `jq ... audit.log` queries, with bash, in the log's
// directory. TestDocsExamples skips those queries (docSkips), as it stages
// no incident.
//
// One substitution: the queries' fixed cutoff (`.time >= "<time>"`, the
// same in all three) becomes the second in which the incident's first
// request was answered, written in the doc's layout (with or without the
// "Z"). Everything before that second must be left out, and everything from
// it on, that first request included, must be in.
//
// Before the cutoff: the keys, roles and config the incident starts from,
// and a revocation. After it: a revocation of each kind (jti and exp, role,
// subject, subject with issuer, token), failed revocations and failed key
// and config writes, reads and lists, a key rotation and a version revoked,
// a role created, updated and deleted, a key created, a config write, and
// tokens issued and refreshed. The queries must print exactly the
// revocations (values in clear), exactly the changes (operation and path),
// and the jti, exp and issuer of the token revoked by token= (from a role
// with an issuer of its own); no token or refresh token may be anywhere in
// the log in clear. The doc's sample lines must
// have a counterpart in what the queries print (the same members, or the
// same line but for its time): the test names things as the doc does.
func TestAuditRunbook(t *testing.T) {
	tl := loadTools(t)
	requireCommands(t, "bash", "jq")
	t0 := time.Now()
	phase := func(format string, args ...any) {
		t.Helper()
		t.Logf("[%5.1fs] %s", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	rb := loadAuditRunbook(t)

	s := startDevServer(t, tl)
	s.installPlugin(t)
	r := auditShell(t, s)
	logPath := filepath.Join(r.dir, "audit.log")
	s.vault(t, "audit", "enable", "file", "file_path="+logPath)
	if stdout, stderr, err := r.bash(rb.tune); err != nil {
		t.Fatalf("the doc's tune command: %v\n$ %s\nstdout: %s\nstderr: %s", err, rb.tune, stdout, stderr)
	}
	phase("plugin mounted; file audit device on %s; mount tuned as the doc says:\n$ %s", logPath, rb.tune)

	// Before the cutoff: where the incident starts from.
	s.vault(t, "write", mountPath+"/config", "jwks_max_age=6m")
	s.vault(t, "write", mountPath+"/keys/k", "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r", "key=k", "audiences="+e2eAudience, "subject=svc-r", "ttl=10m", "refresh_ttl=1h")
	s.vault(t, "write", mountPath+"/roles/billing", "key=k", "audiences="+e2eAudience, "subject=svc-billing", "ttl=10m")
	s.vault(t, "write", mountPath+"/roles/old", "key=k", "audiences="+e2eAudience, "ttl=10m")
	// A role with an issuer of its own: re-revoking its token by jti needs
	// that issuer.
	s.vault(t, "write", mountPath+"/roles/partner", "key=k", "audiences="+e2eAudience, "subject=svc-partner", "ttl=10m", "issuer="+auditPartnerIssuer)
	t1 := s.issue(t, "r")
	t2 := s.issue(t, "partner")
	t1Exp := number(t, "T1 exp", decodeJWT(t, t1.Token).Payload["exp"])
	t2Exp := number(t, "T2 exp", decodeJWT(t, t2.Token).Payload["exp"])
	s.vault(t, "write", mountPath+"/revoke", "subject=early-user")
	// The incident starts in a second of its own, the cutoff's: nothing
	// above is in it, and its first requests are, with a fraction after the
	// whole second that a text comparison with "...:SSZ" would miss.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))

	// The incident.
	exp1 := strconv.FormatInt(t1Exp, 10)
	s.vault(t, "write", mountPath+"/revoke", "jti="+t1.Jti, "exp="+exp1)
	s.vault(t, "write", mountPath+"/revoke", "role=billing")
	s.vault(t, "write", mountPath+"/revoke", "subject=user-42")
	s.vault(t, "write", mountPath+"/revoke", "subject=user-7", "issuer="+s.issuer())
	s.vault(t, "write", mountPath+"/revoke", "token="+t2.Token)
	// Refused: not in any query's output.
	for _, args := range [][]string{
		{"write", mountPath + "/revoke", "jti=no-exp"},
		{"write", mountPath + "/revoke", "jti=bad-exp", "exp=soon"},
		{"write", mountPath + "/revoke", "role=nope"},
		{"write", mountPath + "/revoke", "subject=user-9", "role=billing"},
		{"write", mountPath + "/keys/bad", "algorithm=XX256"},
		{"write", mountPath + "/roles/bad", "ttl=5m"},
		{"write", mountPath + "/config", "jwks_max_age=soon"},
	} {
		if res := s.runEnv(s.rootToken, "", noCLIRetries, args...); res.Err == nil || cliErrorCode(res.Stderr)/100 != 4 {
			t.Fatalf("vault %s: want a 4xx, got err=%v: %s", strings.Join(args, " "), res.Err, redact(res.Stderr))
		}
	}
	// Reads and lists: not changes.
	s.vault(t, "read", mountPath+"/keys/k")
	s.vault(t, "list", mountPath+"/keys")
	s.vault(t, "read", mountPath+"/roles/billing")
	s.vault(t, "read", mountPath+"/config")
	s.vault(t, "read", mountPath+"/revocations")
	// The changes, with the doc's names.
	s.vault(t, "write", mountPath+"/keys/k/rotate", "immediate=true")
	s.vault(t, "write", mountPath+"/keys/k/revoke-version", "version=1")
	s.vault(t, "write", mountPath+"/roles/new", "key=k", "audiences="+e2eAudience, "ttl=10m")
	s.vault(t, "write", mountPath+"/roles/new", "ttl=5m")
	s.vault(t, "delete", mountPath+"/roles/old")
	s.vault(t, "write", mountPath+"/keys/k2", "algorithm=EdDSA")
	s.vault(t, "write", mountPath+"/config", "jwks_max_age=10m")
	// Tokens and refresh tokens through the log: none may be in clear.
	a1, rt1 := lifecycleWithRefresh(t, s, "issue", s.vaultJSON(t, "write", "-format=json", "-f", mountPath+"/issue/r"), time.Now())
	a2, rt2 := lifecycleWithRefresh(t, s, "refresh", s.vaultJSON(t, "write", "-format=json", mountPath+"/refresh", "refresh_token="+rt1), time.Now())
	s.vault(t, "write", mountPath+"/verify", "token="+a2)
	phase("incident staged")

	alog := readAuditLog(t, logPath)
	cutoff := alog.cutoff(t, t1.Jti)
	alog.checkStaged(t, cutoff)

	// The queries, with the cutoff in the doc's layout.
	wantRevocations := []string{
		auditJSON(t, map[string]any{"jti": t1.Jti, "exp": exp1}),
		auditJSON(t, map[string]any{"role": "billing"}),
		auditJSON(t, map[string]any{"subject": "user-42"}),
		auditJSON(t, map[string]any{"subject": "user-7", "issuer": s.issuer()}),
		auditJSON(t, map[string]any{"token": auditHMACShown}),
	}
	wantChanges := []string{
		"update\tjwt/keys/k/rotate",
		"update\tjwt/keys/k/revoke-version",
		"create\tjwt/roles/new",
		"update\tjwt/roles/new",
		"delete\tjwt/roles/old",
		"create\tjwt/keys/k2",
		"update\tjwt/config",
	}
	wantByToken := []string{auditJSON(t, map[string]any{"jti": t2.Jti, "exp": t2Exp, "issuer": auditPartnerIssuer})}
	for i, q := range rb.queries {
		cmd := strings.ReplaceAll(q.text, rb.cutoffQuoted(), rb.cutoffQuotedAt(cutoff))
		stdout, stderr, err := r.bash(cmd)
		if err != nil || stderr != "" {
			t.Errorf("%s: %v\n$ %s\nstderr: %s", q.name(), err, cmd, stderr)
			continue
		}
		lines := auditLines(stdout)
		t.Logf("%s:\n$ %s\n%s", q.name(), cmd, redact(stdout))
		var got, want []string
		switch i {
		case 0:
			got, want = auditCanonicalJSON(t, q.name(), lines), wantRevocations
		case 1:
			got, want = auditChanges(t, q.name(), lines, cutoff), wantChanges
		case 2:
			got, want = auditCanonicalJSON(t, q.name(), lines), wantByToken
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s printed (in canonical form):\n  %s\nwant:\n  %s\n(the incident's responses are from %s to %s)\n$ %s\nstdout:\n%s", q.name(),
				strings.Join(got, "\n  "), strings.Join(want, "\n  "), alog.first(t, t1.Jti).Time, alog.entries[len(alog.entries)-1].Time, cmd, redact(stdout))
		}
		auditCheckSample(t, q, lines)
	}

	// No token or refresh token in clear anywhere in the log; the
	// revocation by token shows the token's HMAC, not the token.
	raw := string(alog.raw)
	for name, tok := range map[string]string{"T1": t1.Token, "T2": t2.Token, "the issued token": a1, "the refreshed token": a2,
		"the issued refresh token": rt1, "the refreshed refresh token": rt2} {
		if strings.Contains(raw, tok) {
			t.Errorf("audit.log holds %s in clear", name)
		}
		if _, sec, ok := strings.Cut(tok, "."); ok && refreshTokenPattern.MatchString(tok) && strings.Contains(raw, sec) {
			t.Errorf("audit.log holds the secret part of %s in clear", name)
		}
	}
	if m := jwtPattern.FindString(raw); m != "" {
		t.Errorf("audit.log holds a JWT in clear: %s", redact(m))
	}
	secrets.mu.Lock()
	registered := slices.Clone(secrets.secrets)
	secrets.mu.Unlock()
	for _, sec := range registered {
		if strings.Contains(raw, sec) {
			t.Errorf("audit.log holds a secret the tests registered (%d characters) in clear", len(sec))
		}
	}

	// The doc's last claim: the server log names key changes in clear.
	serverLog, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{{"rotated key", "key=k", "version=2", "kid="}, {"key version revoked", "key=k", "version=1", "kid=" + t1.Kid}} {
		if !slices.ContainsFunc(strings.Split(string(serverLog), "\n"), func(l string) bool {
			return !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(l, w) })
		}) {
			t.Errorf("the server log has no line with %q", want)
		}
	}
	phase("checked the doc's %d queries over %d audit entries (cutoff %s)", len(rb.queries), len(alog.entries), cutoff.Format(time.RFC3339))
}

// auditPartnerIssuer is the iss of the token TestAuditRunbook revokes by
// token=, not jwt/config's.
const auditPartnerIssuer = "https://partner.example.com/jwt"

// auditRunbook is what TestAuditRunbook takes from docs/operations.md.
type auditRunbook struct {
	tune    string       // the doc's tune command, with the response keys the prose adds
	queries []docCommand // the three jq commands over audit.log, in order
	cutoff  string       // their fixed cutoff, as the doc writes it
}

var (
	// auditResponseKeysRe finds, in the prose, the flags to add to the
	// tuning for the revocations by token (a code span may wrap).
	auditResponseKeysRe = regexp.MustCompile("`((?:-audit-non-hmac-response-keys=[a-z_]+\\s*)+)`")
	// auditCutoffRe finds a query's cutoff.
	auditCutoffRe = regexp.MustCompile(`\.time >= "([^"]*)"`)
	// auditConfigPathRe matches the paths of keys, roles and config.
	auditConfigPathRe = regexp.MustCompile(`^jwt/(config|keys/|roles/)`)
)

func loadAuditRunbook(t *testing.T) auditRunbook {
	t.Helper()
	const file = "docs/operations.md"
	src, err := os.ReadFile(filepath.Join(mustAbs(t, ".."), file))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := parseDocCommands(file, string(src))
	if err != nil {
		t.Fatal(err)
	}
	var rb auditRunbook
	var tunes []string
	for _, c := range cmds {
		if c.heading != auditRunbookHeading {
			continue
		}
		switch {
		case strings.Contains(c.text, "audit.log"):
			rb.queries = append(rb.queries, c)
		case strings.Contains(c.text, "secrets tune") && strings.Contains(c.text, "-audit-non-hmac-request-keys"):
			tunes = append(tunes, c.text)
		}
	}
	if len(tunes) != 1 || len(rb.queries) != 3 {
		t.Fatalf("%s, %q: found %d tune commands and %d audit.log queries, want 1 and 3", file, auditRunbookHeading, len(tunes), len(rb.queries))
	}
	// "add -audit-non-hmac-response-keys=... to the tuning above": in the
	// same command, before its mount path.
	_, section, _ := strings.Cut(string(src), "### "+auditRunbookHeading)
	section, _, _ = strings.Cut(section, "\n#")
	m := auditResponseKeysRe.FindStringSubmatch(section)
	if m == nil {
		t.Fatalf("%s, %q: no `-audit-non-hmac-response-keys=...` flags in the prose", file, auditRunbookHeading)
	}
	tune, ok := strings.CutSuffix(tunes[0], " jwt/")
	if !ok {
		t.Fatalf("%s: the tune command does not end in its mount path jwt/: %s", file, tunes[0])
	}
	rb.tune = tune + " " + strings.Join(strings.Fields(m[1]), " ") + " jwt/"
	for _, q := range rb.queries {
		ms := auditCutoffRe.FindAllStringSubmatch(q.text, -1)
		if len(ms) != 1 || (rb.cutoff != "" && ms[0][1] != rb.cutoff) {
			t.Fatalf("%s: want one `.time >= \"<time>\"`, the same in each query: %s", q.name(), q.text)
		}
		rb.cutoff = ms[0][1]
	}
	if _, err := time.Parse(rb.layout(), rb.cutoff); err != nil {
		t.Fatalf("%s: the queries' cutoff %q: %v", file, rb.cutoff, err)
	}
	return rb
}

// layout is the doc's layout for the cutoff: RFC 3339 in UTC, with or
// without its "Z".
func (rb auditRunbook) layout() string {
	if strings.HasSuffix(rb.cutoff, "Z") {
		return "2006-01-02T15:04:05Z"
	}
	return "2006-01-02T15:04:05"
}

func (rb auditRunbook) cutoffQuoted() string { return strconv.Quote(rb.cutoff) }

func (rb auditRunbook) cutoffQuotedAt(cutoff time.Time) string {
	return strconv.Quote(cutoff.UTC().Format(rb.layout()))
}

// auditShell is a shell for the doc's commands: the vault CLI on PATH,
// VAULT_ADDR and VAULT_TOKEN set, in a directory of its own, where the
// audit log goes.
func auditShell(t *testing.T, s *vaultServer) *docsRun {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.tools.vaultBin, filepath.Join(binDir, "vault")); err != nil {
		t.Fatal(err)
	}
	r := &docsRun{dir: dir, state: filepath.Join(t.TempDir(), "shell-state")}
	writeFile(t, r.state, "")
	r.env = processEnv(filepath.Join(s.dir, "home"),
		"VAULT_ADDR="+s.addr,
		"VAULT_TOKEN="+s.rootToken,
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	return r
}

// auditEntry is what the test reads of one audit log entry.
type auditEntry struct {
	Type    string `json:"type"`
	Time    string `json:"time"`
	Error   string `json:"error"`
	Request struct {
		Path      string         `json:"path"`
		Operation string         `json:"operation"`
		Data      map[string]any `json:"data"`
	} `json:"request"`
	Response struct {
		Data map[string]any `json:"data"`
	} `json:"response"`
	time time.Time
}

type auditLog struct {
	raw     []byte
	entries []auditEntry
}

func readAuditLog(t *testing.T, path string) auditLog {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := auditLog{raw: raw}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit.log line %d is not JSON: %v", len(l.entries)+1, err)
		}
		if e.time, err = time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Fatalf("audit.log line %d: time %q: %v", len(l.entries)+1, e.Time, err)
		}
		l.entries = append(l.entries, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return l
}

// first is the response to the revocation of jti, the incident's first
// request.
func (l auditLog) first(t *testing.T, jti string) auditEntry {
	t.Helper()
	for _, e := range l.entries {
		if e.Type == "response" && e.Request.Path == mountPath+"/revoke" && e.Request.Data["jti"] == jti {
			return e
		}
	}
	t.Fatalf("audit.log has no response to the revocation of jti %s (is jti HMACed?)", jti)
	return auditEntry{}
}

// cutoff is the second in which the incident's first request, the
// revocation of jti, was answered.
func (l auditLog) cutoff(t *testing.T, jti string) time.Time {
	t.Helper()
	return l.first(t, jti).time.Truncate(time.Second)
}

// checkStaged checks that the log holds what the queries must leave out, so
// that their leaving it out means something: a successful revocation and
// changes before the cutoff, and after it refused requests and reads.
func (l auditLog) checkStaged(t *testing.T, cutoff time.Time) {
	t.Helper()
	count := func(match func(e auditEntry) bool) int {
		n := 0
		for _, e := range l.entries {
			if e.Type == "response" && match(e) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		what  string
		want  int
		match func(e auditEntry) bool
	}{
		{"successful revocations before the cutoff", 1, func(e auditEntry) bool {
			return e.Error == "" && e.Request.Path == mountPath+"/revoke" && e.time.Before(cutoff)
		}},
		{"successful changes to keys, roles and config before the cutoff", 6, func(e auditEntry) bool {
			return e.Error == "" && e.Request.Operation != "read" && e.Request.Operation != "list" && e.time.Before(cutoff) &&
				auditConfigPathRe.MatchString(e.Request.Path)
		}},
		{"refused revocations after the cutoff", 4, func(e auditEntry) bool {
			return e.Error != "" && e.Request.Path == mountPath+"/revoke" && !e.time.Before(cutoff)
		}},
		{"refused writes to keys, roles and config after the cutoff", 3, func(e auditEntry) bool {
			return e.Error != "" && e.Request.Path != mountPath+"/revoke" && !e.time.Before(cutoff)
		}},
		{"reads and lists of keys, roles and config after the cutoff", 4, func(e auditEntry) bool {
			return (e.Request.Operation == "read" || e.Request.Operation == "list") && !e.time.Before(cutoff) &&
				auditConfigPathRe.MatchString(e.Request.Path+"/")
		}},
	} {
		if n := count(c.match); n != c.want {
			t.Errorf("audit.log holds %d %s, want %d: the queries' exclusion of them is not tested", n, c.what, c.want)
		}
	}
}

// auditHMACShown stands for any HMAC in a canonical line.
const auditHMACShown = "hmac-sha256:..."

var auditHMACRe = regexp.MustCompile(`^hmac-sha256:[0-9a-f]{64}$`)

// auditCanonicalJSON reads lines of JSON objects and writes each back with
// its members sorted and any HMAC as auditHMACShown.
func auditCanonicalJSON(t *testing.T, what string, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("%s printed %q, not a JSON object: %v", what, redact(l), err)
			continue
		}
		for k, v := range m {
			if s, ok := v.(string); ok && auditHMACRe.MatchString(s) {
				m[k] = auditHMACShown
			}
		}
		out = append(out, auditJSON(t, m))
	}
	return out
}

func auditJSON(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// auditChanges reads lines of time, operation and path, and returns
// operation and path; the times must be RFC 3339, at or after the cutoff,
// and in order.
func auditChanges(t *testing.T, what string, lines []string, cutoff time.Time) []string {
	t.Helper()
	var out []string
	var prev time.Time
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Errorf("%s printed %q, want time, operation and path, tab-separated", what, l)
			continue
		}
		tm, err := time.Parse(time.RFC3339Nano, f[0])
		switch {
		case err != nil:
			t.Errorf("%s printed %q: time: %v", what, l, err)
		case tm.Before(cutoff) || tm.Before(prev):
			t.Errorf("%s printed %q: before the cutoff %s or the line above", what, l, cutoff.Format(time.RFC3339))
		}
		prev = tm
		out = append(out, f[1]+"\t"+f[2])
	}
	return out
}

func auditLines(stdout string) []string {
	s := strings.TrimRight(stdout, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// auditCheckSample checks the doc's sample output of a query against what
// it printed: each sample line must have a counterpart, a JSON object with
// the same members, or a line equal but for its time (wildcardMatch).
func auditCheckSample(t *testing.T, q docCommand, got []string) {
	t.Helper()
	members := func(l string) (string, bool) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			return "", false
		}
		for k := range m {
			m[k] = nil
		}
		b, _ := json.Marshal(m)
		return string(b), true
	}
	if len(q.output) == 0 {
		t.Errorf("%s: the doc shows no sample output", q.name())
	}
	for _, w := range q.output {
		found := slices.ContainsFunc(got, func(g string) bool {
			if wm, ok := members(w); ok {
				gm, ok := members(g)
				return ok && gm == wm
			}
			return wildcardMatch(w, g)
		})
		if !found {
			t.Errorf("%s: the doc's sample line %q has no counterpart in what the query printed:\n%s", q.name(), w, redact(strings.Join(got, "\n")))
		}
	}
}
