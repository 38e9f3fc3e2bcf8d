package kmstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Main is cmd/kmstest: it parses args, serves a kmstest server with the
// control endpoint on a loopback address, writes
// "KMSTEST_URL=http://127.0.0.1:PORT" as the first line of stdout, and
// serves until ctx is done. It returns flag.ErrHelp for -h.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kmstest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kmstest [flags]\n\n"+
			"Serves an AWS KMS endpoint for tests on a loopback address and prints\n"+
			"KMSTEST_URL=<base URL> as its first line. Faults apply to %s and can be\n"+
			"changed at run time: GET/PUT %sfaults, GET/DELETE %sstats.\n\n",
			strings.Join(FaultedOperations(), ", "), controlPrefix, controlPrefix)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:0", "loopback `address` to listen on (port 0 picks a free port)")
	var f Faults
	fs.DurationVar(&f.Latency, "latency", 0, "delay before each faulted request is answered")
	fs.Float64Var(&f.ThrottleRate, "throttle-rate", 0, "probability (0-1) of a ThrottlingException")
	fs.Float64Var(&f.ServerErrorRate, "error-rate", 0, "probability (0-1) of a 500 KMSInternalException")
	fs.Float64Var(&f.QuotaPerSecond, "quota", 0, "requests per second allowed before ThrottlingException (0: no quota)")
	fs.IntVar(&f.QuotaBurst, "quota-burst", 0, "token bucket size for -quota (0: a second's worth)")
	fs.StringVar(&f.DenySign, "deny-sign", "", "key ID or key ARN whose Sign requests get AccessDeniedException")
	region := fs.String("region", DefaultRegion, "region in ARNs and the SigV4 credential scope")
	account := fs.String("account", DefaultAccount, "account ID in ARNs")
	accessKeys := fs.String("access-keys", "", "comma-separated access key IDs allowed (empty: any)")
	credsFile := fs.String("credentials-file", "", "JSON `file` of the credentials whose SigV4 signatures are checked, "+
		`[{"access_key_id": ..., "secret_access_key": ..., "session_token": ...}] (empty: signatures are not checked)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kmstest: unexpected arguments %q", fs.Args())
	}
	if err := f.Validate(); err != nil {
		return err
	}
	var err error
	opts := Options{Region: *region, Account: *account, Control: true, Faults: f}
	for id := range strings.SplitSeq(*accessKeys, ",") {
		if id = strings.TrimSpace(id); id != "" {
			opts.AllowedAccessKeys = append(opts.AllowedAccessKeys, id)
		}
	}

	if *credsFile != "" {
		if opts.Credentials, err = readCredentials(*credsFile); err != nil {
			return err
		}
	}

	ln, err := ListenLoopback(*listen)
	if err != nil {
		return err
	}
	s := New(opts)
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(stderr, "kmstest: ", log.LstdFlags),
	}
	if _, err := fmt.Fprintf(stdout, "KMSTEST_URL=http://%s\n", ln.Addr()); err != nil {
		ln.Close()
		return fmt.Errorf("kmstest: writing URL: %w", err)
	}
	fmt.Fprintf(stderr, "kmstest: serving KMS for region %s, account %s, on %s\n", s.Region(), s.Account(), ln.Addr())

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("kmstest: %w", err)
	case <-ctx.Done():
	}
	s.stopWaits()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		return fmt.Errorf("kmstest: shutting down: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("kmstest: %w", err)
	}
	return nil
}

// ListenLoopback listens on addr, which must be a loopback address
// ("127.0.0.1:0", "[::1]:8080", "localhost:0"): the server has no real
// authentication and must not be reachable from elsewhere.
func ListenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kmstest: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("kmstest: listen address %q is not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kmstest: %w", err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("kmstest: %q resolved to %s, which is not a loopback address", addr, ln.Addr())
	}
	return ln, nil
}

// readCredentials reads -credentials-file. A file keeps the secrets off the
// command line, where process listings would show them; errors never quote
// the file's contents.
func readCredentials(path string) ([]Credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kmstest: -credentials-file: %w", err)
	}
	var creds []Credential
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&creds); err != nil {
		return nil, fmt.Errorf("kmstest: -credentials-file %s is not a JSON array of {access_key_id, secret_access_key, session_token, expires}", path)
	}
	for i, c := range creds {
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return nil, fmt.Errorf("kmstest: -credentials-file %s: entry %d needs access_key_id and secret_access_key", path, i)
		}
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("kmstest: -credentials-file %s lists no credentials", path)
	}
	return creds, nil
}
