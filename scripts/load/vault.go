package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// maxBody bounds what is read of one answer: a batch of 1000 RSA tokens is
// about 1 MB.
const maxBody = 16 << 20

// checkLoopbackURL refuses a URL whose host is not a loopback address.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing %q: the load harness only talks to loopback addresses", raw)
}

// loopbackOnly is a net.Dialer Control that refuses any address that is not
// loopback, whatever a name resolved to.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("dialling %q: %w", address, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to dial %s: not a loopback address", address)
	}
	return nil
}

// newHTTPClient keeps up to conns connections open, never uses a proxy and
// never follows a redirect.
func newHTTPClient(conns int, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: loopbackOnly}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type vaultClient struct {
	addr  string
	token string
	hc    *http.Client
}

func newVaultClient(addr, token string, conc int, timeout time.Duration) *vaultClient {
	// Enough idle connections for every worker of one target, and the raw
	// target's don't use any.
	return &vaultClient{addr: addr, token: token, hc: newHTTPClient(conc+4, timeout)}
}

// vaultError is a Vault answer other than 200. Its message is Vault's
// "errors" list, which never holds a token.
type vaultError struct {
	method, path string
	status       int
	msgs         []string
}

func (e *vaultError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.method, e.path, e.status, strings.Join(e.msgs, "; "))
}

// do sends body (nil: none) to /v1/<path> and decodes the answer's JSON
// into out (nil: discarded).
func (c *vaultClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.addr+"/v1/"+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("X-Vault-Token", c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error names the method and URL; the token is in a header,
		// never in it.
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxBody)
	}
	if resp.StatusCode == http.StatusNoContent && out == nil {
		// A write with nothing to answer.
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(b, &e) != nil || len(e.Errors) == 0 {
			e.Errors = []string{strings.TrimSpace(string(b[:min(len(b), 200)]))}
		}
		return &vaultError{method: method, path: path, status: resp.StatusCode, msgs: e.Errors}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

func (c *vaultClient) post(ctx context.Context, path string, body []byte, out any) error {
	return c.do(ctx, http.MethodPost, path, body, out)
}

func (c *vaultClient) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// errNoResult is an answer of 200 without what was asked for.
var errNoResult = errors.New("answer has no result")
