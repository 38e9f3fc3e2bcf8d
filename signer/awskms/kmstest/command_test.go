package kmstest

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// readURL reads the first line the command writes and returns the URL.
func readURL(t *testing.T, r io.Reader) string {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the first line: %v", err)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "KMSTEST_URL=")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("first line %q is not KMSTEST_URL=http://127.0.0.1:PORT", line)
	}
	return url
}

func TestMainServes(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"-listen", "127.0.0.1:0", "-throttle-rate", "1", "-latency", "1ms", "-quota", "50",
			"-region", "eu-west-1", "-account", "999988887777", "-access-keys", "AKIDTEST, AKIDOTHER"}, pw, io.Discard)
		pw.Close()
	}()
	url := readURL(t, pr)
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	got, err := Remote{URL: url}.Faults(t.Context())
	if want := (Faults{Latency: time.Millisecond, ThrottleRate: 1, QuotaPerSecond: 50}); err != nil || got != want {
		t.Errorf("faults from flags = %+v, %v; want %+v", got, err, want)
	}
	c := NewClient(url, noRetry, func(o *kms.Options) { o.Region = "eu-west-1" })
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{KeySpec: types.KeySpecEccNistP256, KeyUsage: types.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if arn := aws.ToString(out.KeyMetadata.Arn); !strings.HasPrefix(arn, "arn:aws:kms:eu-west-1:999988887777:key/") {
		t.Errorf("ARN %s does not use the flags' region and account", arn)
	}
	if _, err := c.DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: out.KeyMetadata.KeyId}); apiCode(err) != "ThrottlingException" {
		t.Errorf("DescribeKey with -throttle-rate 1: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Main after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after its context was cancelled")
	}
}

func TestMainBadArgs(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error
	}{
		{[]string{"-listen", "0.0.0.0:0"}, "not a loopback"},
		{[]string{"-listen", ":0"}, "not a loopback"},
		{[]string{"-throttle-rate", "1.5"}, "throttle_rate"},
		{[]string{"-error-rate", "-1"}, "server_error_rate"},
		{[]string{"-quota", "-5"}, "quota_per_second"},
		{[]string{"-latency", "soon"}, "invalid value"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-credentials-file", "/nonexistent/creds.json"}, "-credentials-file"},
	}
	for _, tt := range tests {
		err := Main(t.Context(), tt.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Main(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
	if err := Main(t.Context(), []string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Main(-h) = %v, want flag.ErrHelp", err)
	}
}

func TestListenLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"localhost:0", true},
		{"127.0.0.2:0", true},
		{"0.0.0.0:0", false},
		{":0", false},
		{"[::]:0", false},
		{"192.0.2.1:0", false},
		{"example.com:0", false},
		{"127.0.0.1", false}, // no port
	}
	for _, tt := range tests {
		ln, err := ListenLoopback(tt.addr)
		if ln != nil {
			ln.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("ListenLoopback(%q) error = %v, want ok %v", tt.addr, err, tt.ok)
		}
	}
}

// TestCommand builds cmd/kmstest and runs it as the end-to-end tests will:
// the first line is the URL, SIGTERM stops it cleanly.
func TestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build cmd/kmstest with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kmstest")
	build := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "github.com/vault-jwt/vault-plugin-secrets-jwt/cmd/kmstest")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(t.Context(), bin, "-listen", "127.0.0.1:0", "-error-rate", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // if a check below fails first
	url := readURL(t, stdout)

	err = faultedCalls(NewClient(url, noRetry), "alias/none")["GetPublicKey"](t.Context())
	if !isA[*types.KMSInternalException](err) {
		t.Errorf("GetPublicKey with -error-rate 1: %v, want KMSInternalException", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("kmstest after SIGTERM: %v, want exit status 0", err)
	}
}

// TestMainCredentialsFile: -credentials-file turns on signature checks
// with the credentials it lists; a malformed file is refused without
// quoting it.
func TestMainCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(good, []byte(`[{"access_key_id": "ASIAFILE", "secret_access_key": "file-secret", "session_token": "file-token"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"-credentials-file", good}, pw, io.Discard)
		pw.Close()
	}()
	url := readURL(t, pr)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	for secret, want := range map[string]string{"file-secret": "", "other-secret": "InvalidSignatureException"} {
		c := NewClient(url, noRetry, func(o *kms.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider("ASIAFILE", secret, "file-token")
		})
		if _, err := c.ListKeys(t.Context(), &kms.ListKeysInput{}); apiCode(err) != want || (want == "") != (err == nil) {
			t.Errorf("ListKeys signed with %s: %v, want %q", secret, err, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Main: %v", err)
	}

	for name, content := range map[string]string{
		"not JSON":   `SECRET-in-a-bad-file`,
		"no secret":  `[{"access_key_id": "AKID"}]`,
		"empty":      `[]`,
		"misspelled": `[{"access_key_id": "AKID", "secret_key": "SECRET-x"}]`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		err := Main(t.Context(), []string{"-credentials-file", path}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-credentials-file") || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: Main = %v, want a -credentials-file error that does not quote the file", name, err)
		}
	}
}
