//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// TestDocsExamples runs every `$ ` command in the shell blocks of README.md
// and docs/*.md against a real Vault, in document order. Every command must
// succeed (or fail with the error text the doc shows), and no response may
// carry a warning the doc does not show (a misspelled parameter), read
// from an audit device of the test's own so that -field= and jq hide none.
// Where the doc shows output in the same block, it is compared: a JSON
// document's members and the values it does not elide, a table's keys, or
// literal lines; and a JSON block introduced by "claims include" after a
// command must be in the payload of the JWT the command printed. Few
// commands have output shown in their block; api.md's "Sample response"
// blocks are checked by the backend's TestAPIDocMatchesPaths, and claims
// the docs make in prose are not checked here. The project's rule is that
// the README, docs/ and `vault path-help` stay true to the code; this holds
// the docs' examples to it.
//
// Each file gets servers of its own (docFiles), so files do not depend on
// each other. A command runs under `bash -c`, in a directory of the file's
// own, with VAULT_ADDR, VAULT_TOKEN (root) and the vault binary on PATH, so
// heredocs, pipes and shell variables (`sha=$(...)`, then "$sha") work as
// written. The docs' placeholders become real values through one table
// (docSubstitutions). A command that cannot run here is in docSkips, with
// its reason; a command neither run nor skipped, and a skip entry that
// matches no command, fail the test.
func TestDocsExamples(t *testing.T) {
	tl := loadTools(t)
	requireCommands(t, "bash", "curl", "jq", "sha256sum", "cut", "go")
	root := mustAbs(t, "..")
	t0 := time.Now()

	// One KMS test server for every file: docs/awskms.md binds keys in it,
	// and every jwt/config/aws write is pointed at it (docSubstitutions). It
	// serves eu-west-1, the docs' region, so the docs' ARNs resolve there.
	km := startKMSTest(t, "-region", docsKMSRegion)
	km.client = kmstest.NewClient(km.url, func(o *kms.Options) { o.Region = docsKMSRegion })
	// What the skipped `aws kms` commands of docs/awskms.md make: the
	// Quick start's key behind alias/vault-jwt-es256, and the runbook's
	// <new> key to rotate to.
	quickID, _ := km.createKey(t, "ECC_NIST_P256")
	km.createAlias(t, "vault-jwt-es256", quickID)
	newKeyID, _ := km.createKey(t, "ECC_NIST_P256")

	// docs/operations.md upgrades the mount to v0.2.0: a build of the plugin
	// that reports that version.
	nextBin := buildPluginVersion(t, root, docsNextVersion)

	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	skipUsed := make([]bool, len(docSkips))
	ran := map[string]bool{}      // files whose subtest ran (-run may select a few)
	withCmds := map[string]bool{} // files that have commands
	for _, path := range files {
		rel, err := filepath.Rel(root, path)
		if err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cmds, err := parseDocCommands(rel, string(src))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(cmds) == 0 {
			continue
		}
		withCmds[rel] = true
		df, ok := docFiles[rel]
		if !ok {
			t.Errorf("%s has %d shell commands but no entry in docFiles saying what server its examples need", rel, len(cmds))
			continue
		}
		t.Run(filepath.Base(rel), func(t *testing.T) {
			ran[rel] = true
			r := &docsRun{
				tl: tl, km: km, file: rel, cmds: cmds, newKeyID: newKeyID, nextBin: nextBin,
				bound: map[string]string{}, skipUsed: skipUsed,
			}
			r.run(t, df)
		})
	}
	for i, used := range skipUsed {
		if s := docSkips[i]; !used && (ran[s.file] || !withCmds[s.file]) {
			t.Errorf("docSkips entry {%s, %q} matches no command: remove it", s.file, s.substr)
		}
	}
	for file := range docFiles {
		if !withCmds[file] {
			t.Errorf("docFiles has an entry for %s, which has no shell commands: remove it", file)
		}
	}
	t.Logf("docs examples: %d files in %.1fs", len(files), time.Since(t0).Seconds())
}

const (
	docsKMSRegion = "eu-west-1"
	// docsNextVersion is the version docs/operations.md upgrades to.
	docsNextVersion = "v0.2.0"
	// docsPassword stands for the docs' `password=...`.
	docsPassword = "docs-e2e-password"
)

// docServer is what a file's examples start from.
type docServer int

const (
	// mounted: a dev server with the plugin registered and enabled at jwt/,
	// its issuer set (installPlugin), as after `make dev`.
	mounted docServer = iota
	// bare: a dev server whose plugin directory holds the plugin binary,
	// not registered: the examples install it themselves.
	bare
	// raftBare: as bare, on a single-node Raft server (initialised and
	// unsealed), for `vault operator raft snapshot`.
	raftBare
)

// docFile is the server a file's examples start on, and the sections (by
// heading) that start over on a fresh one.
type docFile struct {
	server   docServer
	sections map[string]docServer
}

// docFiles says what server each file's examples need, and which sections
// describe a separate setup and so start over on a fresh server. A file with
// commands and no entry fails the test.
var docFiles = map[string]docFile{
	"README.md": {server: mounted, sections: map[string]docServer{
		// Installs the plugin into a Vault that does not have it yet.
		"Install in your Vault": bare,
	}},
	"docs/api.md":        {server: mounted},
	"docs/policy.md":     {server: mounted},
	"docs/awskms.md":     {server: mounted},
	"docs/operations.md": {server: raftBare},
}

// docSkips are the commands that cannot run here, by file and a substring of
// the command. An entry that matches no command fails the test.
var docSkips = []struct{ file, substr, why string }{
	{"README.md", "make build", "builds the plugin into the repository's bin/; the commands run that build (PLUGIN_BIN), copied to bin/ in their directory"},
	{"docs/awskms.md", "aws kms ", "the aws CLI is not one of the project's tools: the test makes the keys these create (alias/vault-jwt-es256's key, <new>) on kmstest with the SDK; disabling and deleting <old> follows the last vault command"},
	{"docs/awskms.md", "jwt/keys/<name> provider=awskms", "a synopsis with <placeholders> and [optional] parts, not a command"},
	{"docs/awskms.md", "-tags awsreal", "needs real AWS credentials and KMS keys"},
	{"docs/operations.md", "audit.log", "reads a file audit device's log of an incident that the file does not stage: TestAuditRunbook (audit_test.go) stages one and runs these commands over its log"},
}

// docCommand is one `$ ` command of a doc.
type docCommand struct {
	file    string
	line    int
	heading string   // the nearest heading above it, without #s
	text    string   // as bash takes it: continuation lines and heredoc body included
	output  []string // the sample output shown after it, up to the next `$ ` or the block's end
	payload string   // the latest "Sample payload" JSON block above it, written to payload.json
	// claims is a JSON block the doc introduces, after the command's shell
	// block, with text ending in "claims include": the JWT the command
	// printed must carry those claims (checkDocOutput's JSON rules).
	claims string
}

func (c docCommand) name() string { return fmt.Sprintf("%s:%d", filepath.Base(c.file), c.line) }

var shellLangs = map[string]bool{"shell-session": true, "sh": true, "shell": true, "bash": true, "console": true}

// parseDocCommands finds the `$ ` commands in the fenced shell blocks of a
// markdown file.
func parseDocCommands(file, src string) ([]docCommand, error) {
	lines := strings.Split(src, "\n")
	var (
		cmds             []docCommand
		heading, payload string
		inFence, shell   bool
		isPayload        bool
		indent           int
		cur              *docCommand
		payloadBuf       []string
		fenceLine        int
		prose            string // the last line of text outside a block
		isClaims         bool
	)
	finish := func() {
		if cur == nil {
			return
		}
		for len(cur.output) > 0 && strings.TrimSpace(cur.output[len(cur.output)-1]) == "" {
			cur.output = cur.output[:len(cur.output)-1]
		}
		cmds = append(cmds, *cur)
		cur = nil
	}
	// strip removes the fence's indentation from a line inside it.
	strip := func(l string) string {
		n := 0
		for n < indent && n < len(l) && l[n] == ' ' {
			n++
		}
		return l[n:]
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		trimmed := strings.TrimLeft(l, " ")
		if !inFence {
			if strings.HasPrefix(trimmed, "#") {
				heading = strings.TrimSpace(strings.TrimLeft(trimmed, "#"))
			}
			if t := strings.TrimSpace(trimmed); t != "" && !strings.HasPrefix(t, "```") {
				prose = t
			}
			if strings.HasPrefix(trimmed, "```") {
				inFence, fenceLine = true, i+1
				indent = len(l) - len(trimmed)
				lang := strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))
				shell = shellLangs[lang]
				isPayload = lang == "json" && heading == "Sample payload"
				isClaims = lang == "json" && strings.HasSuffix(prose, "claims include") && len(cmds) > 0
				payloadBuf = nil
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			inFence = false
			finish()
			if isPayload {
				payload = strings.Join(payloadBuf, "\n") + "\n"
			}
			if isClaims {
				cmds[len(cmds)-1].claims = strings.Join(payloadBuf, "\n")
			}
			continue
		}
		body := strip(l)
		switch {
		case isPayload || isClaims:
			payloadBuf = append(payloadBuf, body)
		case !shell:
		case strings.HasPrefix(body, "$ "):
			finish()
			cur = &docCommand{file: file, line: i + 1, heading: heading, payload: payload}
			text := body[2:]
			for shellIncomplete(text) {
				i++
				if i >= len(lines) || strings.HasPrefix(strings.TrimLeft(lines[i], " "), "```") {
					return nil, fmt.Errorf("%s:%d: command does not end before its block does", file, cur.line)
				}
				text += "\n" + strip(lines[i])
			}
			if delim := heredocDelimiter(text); delim != "" {
				for {
					i++
					if i >= len(lines) || strings.HasPrefix(strings.TrimLeft(lines[i], " "), "```") {
						return nil, fmt.Errorf("%s:%d: heredoc %s does not end before its block does", file, cur.line, delim)
					}
					text += "\n" + strip(lines[i])
					if strip(lines[i]) == delim {
						break
					}
				}
			}
			cur.text = text
		case cur != nil:
			cur.output = append(cur.output, body)
		}
	}
	if inFence {
		return nil, fmt.Errorf("%s:%d: fenced block is not closed", file, fenceLine)
	}
	return cmds, nil
}

// shellIncomplete reports whether bash would read another line to finish
// text: it ends in a backslash, or a quote is still open. A `#` that starts
// a word outside quotes starts a comment.
func shellIncomplete(text string) bool {
	var single, double, escaped bool
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case escaped:
			escaped = false
		case single:
			single = c != '\''
		case c == '\\':
			escaped = true
		case double:
			double = c != '"'
		case c == '\'':
			single = true
		case c == '"':
			double = true
		case c == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t'):
			for i < len(text) && text[i] != '\n' {
				i++
			}
		}
	}
	return single || double || escaped
}

var heredocRe = regexp.MustCompile(`(?:^|[^<])<<-?\s*['"]?([A-Za-z_]+)['"]?`)

// heredocDelimiter returns the delimiter of a heredoc the command starts
// ("<<'EOF'"), or "" if it starts none. A here-string (<<<) is not one.
func heredocDelimiter(text string) string {
	if m := heredocRe.FindStringSubmatch(text); m != nil {
		return m[1]
	}
	return ""
}

// docsRun runs one file's commands.
type docsRun struct {
	tl       *tools
	km       *kmsProc
	file     string
	cmds     []docCommand
	newKeyID string
	nextBin  string
	skipUsed []bool

	s     *vaultServer
	dir   string // the commands' working directory
	state string // the shell variables the commands set, as `declare -p` prints them
	env   []string
	vars  []string // names the commands assign, carried from one command to the next

	// auditLog is the server's file audit device's log, and auditRead how
	// much of it earlier commands' checks have read.
	auditLog  string
	auditRead int64

	// bound maps a placeholder to the real value it stands for, captured
	// from an earlier command's output.
	bound   map[string]string
	lastJWT string
	lastID  string
}

func (r *docsRun) run(t *testing.T, df docFile) {
	t0 := time.Now()
	r.dir = t.TempDir()
	// The build the examples install: `make build` puts it in bin/, and
	// docs/operations.md copies it from the current directory.
	copyFile(t, r.tl.pluginBin, filepath.Join(r.dir, pluginName), 0o755)
	if err := os.MkdirAll(filepath.Join(r.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, r.tl.pluginBin, filepath.Join(r.dir, "bin", pluginName), 0o755)
	// `vault` on PATH, whatever VAULT_BIN's file is called.
	binDir := filepath.Join(r.dir, ".bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(r.tl.vaultBin, filepath.Join(binDir, "vault")); err != nil {
		t.Fatal(err)
	}
	r.state = filepath.Join(r.dir, ".docs-shell-state")
	writeFile(t, r.state, "")
	r.vars = assignedNames(r.cmds)
	secrets.add(docsPassword)

	section := ""
	failed := false
	for i, c := range r.cmds {
		if next, ok := df.sections[c.heading]; (ok && c.heading != section) || r.s == nil {
			kind := df.server
			if ok {
				kind = next
			}
			section = c.heading
			r.start(t, kind, binDir)
		}
		if j := r.skipIndex(c); j >= 0 {
			r.skipUsed[j] = true
			t.Run(c.name(), func(t *testing.T) { t.Skipf("%s: %s", firstLine(c.text), docSkips[j].why) })
			continue
		}
		if failed {
			// Later commands depend on earlier ones: after a command that
			// did not run as the doc says they are not run, and that is a
			// failure of its own.
			t.Errorf("%s: not run, an earlier command failed: %s", c.name(), firstLine(c.text))
			continue
		}
		t.Run(c.name(), func(t *testing.T) { failed = !r.runCommand(t, i, c) })
	}
	t.Logf("%s: %d commands in %.1fs", r.file, len(r.cmds), time.Since(t0).Seconds())
}

// start gives the file a fresh server of the kind asked for.
func (r *docsRun) start(t *testing.T, kind docServer, binDir string) {
	t.Helper()
	if r.s != nil {
		r.s.kill()
	}
	switch kind {
	case mounted:
		r.s = startDevServer(t, r.tl)
		r.s.installPlugin(t)
	case bare:
		r.s = startDevServer(t, r.tl)
	case raftBare:
		r.s = newPersistentServer(t, r.tl)
		r.s.startPersistent(t)
		r.s.initialize(t)
		r.s.unseal(t)
	}
	// A file audit device of the test's own, under a path no doc uses: it
	// sees every response's warnings, which the CLI does not print with
	// -field= and jq drops (auditWarnings).
	r.auditLog, r.auditRead = filepath.Join(r.s.dir, "docs-warnings.log"), 0
	r.s.vault(t, "audit", "enable", "-path=docs-warnings", "file", "file_path="+r.auditLog)
	// Step 1 of the upgrade in docs/operations.md, which the doc gives in
	// prose: the new version's file beside the old one.
	copyFile(t, r.nextBin, filepath.Join(r.s.pluginDir, pluginName+"-"+docsNextVersion), 0o755)
	// The AWS SDK's default chain in the plugin (docs/awskms.md's Quick
	// start sets no credentials) finds kmstest's in the shared credentials
	// file: the server's HOME is its own.
	aws := filepath.Join(r.s.dir, "home", ".aws")
	if err := os.MkdirAll(aws, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(aws, "credentials"), fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
		kmstest.AccessKeyID, kmstest.SecretAccessKey))
	r.env = processEnv(filepath.Join(r.s.dir, "home"),
		"VAULT_ADDR="+r.s.addr,
		"VAULT_TOKEN="+r.s.rootToken,
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		// awskms.md writes the secret key from "$SECRET".
		"SECRET="+kmstest.SecretAccessKey,
	)
}

func (r *docsRun) skipIndex(c docCommand) int {
	for j, s := range docSkips {
		if s.file == c.file && strings.Contains(c.text, s.substr) {
			return j
		}
	}
	return -1
}

// docSubst is one rule of the substitution table: every match of re in a
// command (and, with output set, in its sample output) becomes what value
// returns.
type docSubst struct {
	re     *regexp.Regexp
	output bool
	value  func(match string) (string, error)
}

func fixed(v string) func(string) (string, error) {
	return func(string) (string, error) { return v, nil }
}

// docSubstitutions is the table that turns the docs' placeholders into
// real values. Values an earlier command printed are captured from its
// real output: a one-word sample output that a later command uses (such as
// `3c1f0a4e-...`, an entity ID, or a refresh token) stands for whatever the
// command really printed (r.bound), and the rules below capture the rest.
func (r *docsRun) docSubstitutions() []docSubst {
	return []docSubst{
		// The docs' Vault is https://vault.example.com; ours is on loopback.
		{regexp.MustCompile(`https://vault\.example\.com`), true, fixed(r.s.addr)},
		// A curl request that Vault answers with an error fails, as a CLI
		// command does, and curl prints no progress meter.
		{regexp.MustCompile(`^curl `), false, fixed("curl --silent --show-error --fail-with-body ")},
		// The token, from the environment (so it is in no log).
		{regexp.MustCompile(`X-Vault-Token: \.\.\.`), false, fixed("X-Vault-Token: $VAULT_TOKEN")},
		{regexp.MustCompile(`/etc/vault/plugins`), false, fixed(r.s.pluginDir)},
		// The version the plugin under test was built as (v0.2.0 is the
		// test's own build, docsNextVersion).
		{regexp.MustCompile(`v0\.1\.0`), true, fixed(r.tl.pluginVersion)},
		// AWS credentials: kmstest's.
		{regexp.MustCompile(`AKIA\.\.\.`), true, fixed(kmstest.AccessKeyID)},
		{regexp.MustCompile(`secret_key=\.\.\.`), false, fixed("secret_key=" + kmstest.SecretAccessKey)},
		// Every jwt/config/aws write reaches kmstest: endpoint= is added.
		{regexp.MustCompile(`jwt/config/aws `), false, fixed("jwt/config/aws endpoint=" + r.km.url + " ")},
		// The key docs/awskms.md's rotation runbook creates (aws kms
		// create-key, skipped): made by the test on kmstest.
		{regexp.MustCompile(`<new>`), false, fixed(r.newKeyID)},
		{regexp.MustCompile(`password=\.\.\.`), false, fixed("password=" + docsPassword)},
		// The `data.id` of the last JSON an earlier command printed (the
		// entity `vault write -format=json identity/entity` made).
		{regexp.MustCompile(`<entity id>`), false, func(string) (string, error) {
			if r.lastID == "" {
				return "", fmt.Errorf("no earlier command printed JSON with data.id")
			}
			return r.lastID, nil
		}},
		// An elided JWT in a command: the last token an earlier command printed.
		{regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.\.\.`), false, func(string) (string, error) {
			if r.lastJWT == "" {
				return "", fmt.Errorf("no earlier command printed a JWT")
			}
			return r.lastJWT, nil
		}},
	}
}

// substitute applies the bound values and the table to s.
func (r *docsRun) substitute(s string, output bool) (string, error) {
	// Longest first, so that no bound value is replaced inside another.
	keys := make([]string, 0, len(r.bound))
	for k := range r.bound {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) })
	for _, k := range keys {
		s = strings.ReplaceAll(s, k, r.bound[k])
	}
	var firstErr error
	for _, sub := range r.docSubstitutions() {
		if output && !sub.output {
			continue
		}
		s = sub.re.ReplaceAllStringFunc(s, func(m string) string {
			v, err := sub.value(m)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%q: %w", m, err)
				}
				return m
			}
			return v
		})
	}
	return s, firstErr
}

// assignedNames are the shell variables the commands assign at their
// start (`sha=$(...)`), which later commands read.
func assignedNames(cmds []docCommand) []string {
	re := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=`)
	var names []string
	for _, c := range cmds {
		if m := re.FindStringSubmatch(c.text); m != nil && !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	return names
}

// runCommand runs the i-th command and checks it against its sample output.
// It reports whether the command ran as the doc says (exit status, error
// text, a captured value), which later commands rely on; a differing output
// or a warning fails the test without stopping the file.
func (r *docsRun) runCommand(t *testing.T, i int, c docCommand) (ran bool) {
	cmd, err := r.substitute(c.text, false)
	if err != nil {
		t.Errorf("%s: %s: %v", c.name(), firstLine(c.text), err)
		return false
	}
	if c.payload != "" {
		p, err := r.substitute(c.payload, false)
		if err != nil {
			t.Errorf("%s: payload.json: %v", c.name(), err)
			return false
		}
		writeFile(t, filepath.Join(r.dir, "payload.json"), p)
	}
	stdout, stderr, runErr := r.bash(cmd)
	t.Logf("$ %s", redact(cmd))
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s\n$ %s\nstdout: %s\nstderr: %s", c.name(), redact(fmt.Sprintf(format, args...)),
			redact(cmd), redact(stdout), redact(stderr))
	}

	sample := c.output
	if wantErr := docErrorText(sample); wantErr != nil {
		if runErr == nil {
			fail("succeeded, but the doc shows an error")
			return false
		}
		ran = true
		for _, w := range wantErr {
			w, _ = r.substitute(w, true)
			if !wildcardContains(stdout+stderr, w) {
				fail("failed (%v) without the doc's error text %q", runErr, w)
				ran = false
			}
		}
		return ran
	}
	if runErr != nil {
		fail("%v", runErr)
		return false
	}
	// A warning is a failure unless the doc shows it: Vault warns of a
	// parameter it ignored, so a renamed parameter is found here. The CLI
	// prints no warning with -field=, and jq drops them, so the audit log
	// is read too.
	warnings := vaultWarnings(stdout, stderr)
	audited, err := r.auditWarnings()
	if err != nil {
		t.Errorf("%s: reading the audit log: %v", c.name(), err)
	}
	for _, w := range append(warnings, audited...) {
		if !strings.Contains(strings.Join(sample, "\n"), w) {
			fail("Vault warned %q, which the doc does not show", w)
		}
	}
	r.capture(stdout)
	if c.claims != "" && !r.checkClaims(c, stdout, fail) {
		return false
	}
	if len(sample) == 0 {
		return true
	}
	// A one-word sample that a later command uses is a placeholder for
	// what this command really prints.
	if len(sample) == 1 && !strings.ContainsAny(strings.TrimSpace(sample[0]), " \t") && r.usedLater(i, strings.TrimSpace(sample[0])) {
		got := strings.TrimSpace(stdout)
		if got == "" || got == "null" || strings.ContainsAny(got, " \t\n") {
			fail("printed %q, want one value that stands for the doc's %q", got, sample[0])
			return false
		}
		r.bound[strings.TrimSpace(sample[0])] = got
		if refreshTokenPattern.MatchString(got) || jwtPattern.MatchString(got) {
			secrets.add(got) // not ids and accessors, which Vault logs
		}
		return true
	}
	want, err := r.substitute(strings.Join(sample, "\n"), true)
	if err != nil {
		t.Errorf("%s: sample output: %v", c.name(), err)
		return true
	}
	for _, p := range checkDocOutput(want, stdout) {
		fail("%s", p)
	}
	return true
}

// usedLater reports whether a command after the i-th uses s.
func (r *docsRun) usedLater(i int, s string) bool {
	for _, c := range r.cmds[i+1:] {
		if strings.Contains(c.text, s) {
			return true
		}
	}
	return false
}

// refreshTokenPattern is a whole refresh token: a family id and a secret,
// base64url.
var refreshTokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$`)

// capture keeps what later placeholders stand for: the last JWT printed,
// and the data.id of JSON output.
func (r *docsRun) capture(stdout string) {
	if toks := jwtPattern.FindAllString(stdout, -1); len(toks) > 0 {
		r.lastJWT = toks[len(toks)-1]
		secrets.add(r.lastJWT)
	}
	var doc struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.Unmarshal([]byte(stdout), &doc) == nil && doc.Data.ID != "" {
		r.lastID = doc.Data.ID
	}
}

// checkClaims checks the claims the doc says the JWT that c printed
// carries.
func (r *docsRun) checkClaims(c docCommand, stdout string, fail func(string, ...any)) bool {
	toks := jwtPattern.FindAllString(stdout, -1)
	if len(toks) == 0 {
		fail("printed no JWT, and the doc shows the claims of one")
		return false
	}
	parts := strings.Split(toks[len(toks)-1], ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var got any
	if err == nil {
		err = json.Unmarshal(payload, &got)
	}
	if err != nil {
		fail("the JWT's payload does not decode: %v", err)
		return false
	}
	want, err := r.substitute(c.claims, true)
	var wantJSON any
	if err == nil {
		err = json.Unmarshal([]byte(want), &wantJSON)
	}
	if err != nil {
		fail("the doc's claims: %v", err)
		return false
	}
	probs := matchJSON("the JWT's claims", wantJSON, got)
	for _, p := range probs {
		fail("%s", p)
	}
	return len(probs) == 0
}

// auditWarnings returns the warnings of the responses the audit device
// logged since the last call.
func (r *docsRun) auditWarnings() ([]string, error) {
	f, err := os.Open(r.auditLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(r.auditRead, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	// Only whole lines: Vault may be writing the next one.
	end := bytes.LastIndexByte(b, '\n') + 1
	r.auditRead += int64(end)
	var out []string
	for line := range bytes.Lines(b[:end]) {
		var e struct {
			Type     string `json:"type"`
			Response struct {
				Warnings []string `json:"warnings"`
			} `json:"response"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return out, fmt.Errorf("a line that is not JSON: %v", err)
		}
		if e.Type == "response" {
			out = append(out, e.Response.Warnings...)
		}
	}
	return out, nil
}

// bash runs one command with the file's environment, in its directory, with
// the shell variables earlier commands set.
func (r *docsRun) bash(command string) (stdout, stderr string, err error) {
	// pipefail: a failing vault command is not hidden by the jq after it.
	script := fmt.Sprintf("set -o pipefail\n. %q\n%s\n__docs_rc=$?\n", r.state, command)
	if len(r.vars) > 0 {
		script += fmt.Sprintf("declare -p %s >%q 2>/dev/null\n", strings.Join(r.vars, " "), r.state)
	}
	script += "exit $__docs_rc\n"
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = r.dir
	cmd.Env = r.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// On a timeout, end the command's children (vault, curl) too.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", cliTimeout, err)
	}
	return out.String(), errb.String(), err
}

// vaultWarnings returns the warnings Vault answered with: the CLI prints
// them to stderr after "WARNING!", and JSON output has them in "warnings".
func vaultWarnings(stdout, stderr string) []string {
	var warns []string
	if _, rest, ok := strings.Cut(stderr, "WARNING! The following warnings were returned from Vault:"); ok {
		for _, l := range strings.Split(rest, "\n") {
			if w, ok := strings.CutPrefix(strings.TrimSpace(l), "* "); ok {
				warns = append(warns, w)
			}
		}
	}
	var doc struct {
		Warnings []string `json:"warnings"`
	}
	if json.Unmarshal([]byte(stdout), &doc) == nil {
		warns = append(warns, doc.Warnings...)
	}
	return warns
}

// docErrorText returns the error texts a sample output shows, or nil if it
// shows none: a sample starting with "Error" is the CLI's error; the lines
// that start with "* " are the messages, else the first line is.
func docErrorText(sample []string) []string {
	if len(sample) == 0 || !strings.HasPrefix(strings.TrimSpace(sample[0]), "Error") {
		return nil
	}
	var msgs []string
	for _, l := range sample {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "* "); ok {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) == 0 {
		msgs = []string{strings.TrimSpace(sample[0])}
	}
	return msgs
}

var (
	tableHeaderRe = regexp.MustCompile(`^Key\s+Value\s*$`)
	uuidRe        = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timeRe        = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
)

// checkDocOutput compares what a command printed with the doc's sample and
// returns the differences. A JSON sample: every member the doc shows must be
// there, and every value it shows equal, except those it elides with "...".
// A `Key  Value` table: every key the doc shows must be there. Anything
// else, line by line, "..." matching any text. UUIDs and RFC 3339 times
// differ from run to run and match any other.
func checkDocOutput(want, got string) []string {
	var wantJSON any
	if json.Valid([]byte(want)) {
		if err := json.Unmarshal([]byte(want), &wantJSON); err == nil {
			var gotJSON any
			dec := json.NewDecoder(strings.NewReader(got))
			if err := dec.Decode(&gotJSON); err != nil {
				return []string{fmt.Sprintf("the doc shows JSON, but the output is not JSON: %v", err)}
			}
			return matchJSON("", wantJSON, gotJSON)
		}
	}
	wantLines := strings.Split(want, "\n")
	gotLines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	if tableHeaderRe.MatchString(wantLines[0]) {
		keys := map[string]bool{}
		for _, l := range gotLines {
			if f := strings.Fields(l); len(f) > 0 {
				keys[f[0]] = true
			}
		}
		var probs []string
		for _, l := range wantLines[1:] {
			f := strings.Fields(l)
			if len(f) == 0 || strings.HasPrefix(f[0], "---") {
				continue
			}
			if !keys[f[0]] {
				probs = append(probs, fmt.Sprintf("the doc's table shows key %q, the output has none", f[0]))
			}
		}
		return probs
	}
	if len(gotLines) != len(wantLines) {
		return []string{fmt.Sprintf("printed %d lines, the doc shows %d:\n%s", len(gotLines), len(wantLines), want)}
	}
	var probs []string
	for i := range wantLines {
		if !wildcardMatch(wantLines[i], gotLines[i]) {
			probs = append(probs, fmt.Sprintf("line %d is %q, the doc shows %q", i+1, gotLines[i], wantLines[i]))
		}
	}
	return probs
}

func matchJSON(path string, want, got any) []string {
	where := path
	if where == "" {
		where = "the output"
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s is %T, the doc shows an object", where, got)}
		}
		var probs []string
		for _, k := range slices.Sorted(maps.Keys(w)) {
			gv, ok := g[k]
			if !ok {
				probs = append(probs, fmt.Sprintf("%s has no member %q, which the doc shows", where, k))
				continue
			}
			probs = append(probs, matchJSON(path+"."+k, w[k], gv)...)
		}
		return probs
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s is %T, the doc shows an array", where, got)}
		}
		if len(g) < len(w) {
			return []string{fmt.Sprintf("%s has %d elements, the doc shows %d", where, len(g), len(w))}
		}
		var probs []string
		for i := range w {
			probs = append(probs, matchJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return probs
	case string:
		g, ok := got.(string)
		if !ok {
			return []string{fmt.Sprintf("%s is %T, the doc shows a string", where, got)}
		}
		if !wildcardMatch(w, g) {
			return []string{fmt.Sprintf("%s is %q, the doc shows %q", where, redact(g), w)}
		}
		return nil
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return []string{fmt.Sprintf("%s is %v, the doc shows %v", where, got, want)}
		}
		return nil
	}
}

// wildcardRe turns a doc's text into a pattern: "..." matches any text,
// a UUID or an RFC 3339 time any other.
func wildcardRe(doc string) *regexp.Regexp {
	doc = uuidRe.ReplaceAllString(doc, "\x00uuid\x00")
	doc = timeRe.ReplaceAllString(doc, "\x00time\x00")
	q := regexp.QuoteMeta(doc)
	q = strings.ReplaceAll(q, regexp.QuoteMeta("..."), ".*")
	q = strings.ReplaceAll(q, "\x00uuid\x00", uuidRe.String())
	q = strings.ReplaceAll(q, "\x00time\x00", timeRe.String())
	return regexp.MustCompile(q)
}

func wildcardMatch(doc, got string) bool {
	return regexp.MustCompile(`^(?:` + wildcardRe(doc).String() + `)$`).MatchString(got)
}

func wildcardContains(got, doc string) bool { return wildcardRe(doc).MatchString(got) }

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// requireCommands looks up programs on PATH; a missing one fails the test
// under CI and skips it elsewhere, as requireEnv does.
func requireCommands(t *testing.T, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("%s not found on PATH", strings.Join(missing, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// buildPluginVersion builds the plugin stamped as version, as `make build
// VERSION=...` does.
func buildPluginVersion(t *testing.T, root, version string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), pluginName+"-"+version)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags",
		"-X github.com/vault-jwt/vault-plugin-secrets-jwt/plugin.Version="+version, "-o", out, "./cmd/"+pluginName)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", version, err, b)
	}
	return out
}

// TestDocsParse checks parseDocCommands on the forms the docs use: a
// continuation, a quote open across lines, a heredoc, an indented block,
// sample output, a comment with a quote in it, and a sample payload.
func TestDocsParse(t *testing.T) {
	src := strings.Join([]string{
		"# T",
		"### Sample payload",
		"```json",
		`{ "a": 1 }`,
		"```",
		"```shell-session",
		"$ vault write x a=1 \\",
		"    b=2   # it's a comment",
		"out 1",
		"",
		"$ vault write x c='{",
		`  "d": 1`,
		"}'",
		"$ vault policy write p - <<'EOF'",
		"$ not a command",
		"EOF",
		"```",
		"1. Step:",
		"   ```sh",
		"   $ echo <<<\"$S\"",
		"   out 2",
		"   ```",
		"```text",
		"$ not shell",
		"```",
	}, "\n")
	got, err := parseDocCommands("f.md", src)
	if err != nil {
		t.Fatal(err)
	}
	want := []docCommand{
		{file: "f.md", line: 7, heading: "Sample payload", text: "vault write x a=1 \\\n    b=2   # it's a comment", output: []string{"out 1"}, payload: "{ \"a\": 1 }\n"},
		{file: "f.md", line: 11, heading: "Sample payload", text: "vault write x c='{\n  \"d\": 1\n}'", payload: "{ \"a\": 1 }\n"},
		{file: "f.md", line: 14, heading: "Sample payload", text: "vault policy write p - <<'EOF'\n$ not a command\nEOF", payload: "{ \"a\": 1 }\n"},
		{file: "f.md", line: 20, heading: "Sample payload", text: "echo <<<\"$S\"", output: []string{"out 2"}, payload: "{ \"a\": 1 }\n"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d commands, want %d: %#v", len(got), len(want), got)
	}
	for i := range want {
		if g, w := fmt.Sprintf("%#v", got[i]), fmt.Sprintf("%#v", want[i]); g != w {
			t.Errorf("command %d:\n got %s\nwant %s", i, g, w)
		}
	}
	if _, err := parseDocCommands("f.md", "```sh\n$ echo 'open\n```\n"); err == nil {
		t.Error("a quote left open at the block's end parsed")
	}
}

// TestDocsCheckOutput checks how a sample output is compared.
func TestDocsCheckOutput(t *testing.T) {
	for _, c := range []struct {
		name, want, got string
		ok              bool
	}{
		{"JSON members and shown values", `{"keys":[{"kty":"EC","kid":"..."}]}`, `{"keys":[{"kty":"EC","kid":"abc","x":"1"}]}`, true},
		{"JSON member missing", `{"keys":[{"kty":"EC","fake":"..."}]}`, `{"keys":[{"kty":"EC"}]}`, false},
		{"JSON value differs", `{"v":"v0.2.0"}`, `{"v":"v0.1.0"}`, false},
		{"JSON array too short", `{"a":[1,2]}`, `{"a":[1]}`, false},
		{"JSON wanted, text got", `{"a":1}`, "a 1", false},
		{"table keys", "Key    Value\n---    -----\nname   ...\nttl    5m", "Key  Value\n---  -----\nname x\nttl  10m\ntyp JWT", true},
		{"table key missing", "Key    Value\n---    -----\nnope   1", "Key  Value\n---  -----\nname x", false},
		{"literal with ...", "eyJhbGciOi...", "eyJhbGciOiJFUzI1NiJ9.e30.sig", true},
		{"literal prefix differs", "eyJhbGciOi...", "eyJ0eXAi.e30.sig", false},
		{"UUID and time", "id 3c1f0a4e-5e63-a78e-74c2-026a8a41ffe7 at 2026-11-29T11:20:00Z", "id f25fe7c8-5e63-a78e-74c2-026a8a41ffe7 at 2026-12-05T17:04:15.5Z", true},
		{"line count", "a", "a\nb", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			probs := checkDocOutput(c.want, c.got)
			if (len(probs) == 0) != c.ok {
				t.Errorf("checkDocOutput(%q, %q) = %q, want ok=%t", c.want, c.got, probs, c.ok)
			}
		})
	}
	if got := docErrorText([]string{"Error writing data to jwt/x: Error making API request.", "", "Code: 400. Errors:", "", `* invalid "ttl"`}); !slices.Equal(got, []string{`invalid "ttl"`}) {
		t.Errorf("docErrorText = %q", got)
	}
	if got := vaultWarnings(`{"warnings":["w1"]}`, "WARNING! The following warnings were returned from Vault:\n\n  * w2\n\n"); !slices.Equal(got, []string{"w2", "w1"}) {
		t.Errorf("vaultWarnings = %q", got)
	}
}
