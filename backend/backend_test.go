package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/helper/testhelpers/schema"
	"github.com/hashicorp/vault/sdk/logical"
)

// testBackend is a backend over in-memory storage with a clock the test
// moves and a log it can read.
type testBackend struct {
	*backend
	// handler is what requests go to: the backend itself, or the client
	// side of the plugin transport in front of it.
	handler logical.Backend
	t       *testing.T
	storage logical.Storage
	clock   *testClock
	logs    *syncBuffer
	// entityID goes on every request, as Vault sets it from the token.
	entityID string
	// mountPoint goes on every request, as Vault sets it ("jwt/"); empty
	// unless a test sets it.
	mountPoint string
	sys        *logical.StaticSystemView
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// getTestBackend returns a configured backend with issuer
// https://vault.test/v1/jwt and the clock at a fixed instant.
func getTestBackend(t testing.TB) *testBackend {
	t.Helper()
	return newTestBackend(t, &logical.InmemStorage{}, mountInProcess)
}

// mountFunc stands for Vault mounting the plugin: it builds a backend with
// factory from conf and returns what requests go to.
type mountFunc func(t testing.TB, factory logical.Factory, conf *logical.BackendConfig) logical.Backend

// mountInProcess calls the factory directly: requests go to the backend.
func mountInProcess(t testing.TB, factory logical.Factory, conf *logical.BackendConfig) logical.Backend {
	t.Helper()
	lb, err := factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	return lb
}

// newTestBackend is getTestBackend over storage, mounted by mount.
func newTestBackend(t testing.TB, storage logical.Storage, mount mountFunc) *testBackend {
	t.Helper()
	tb := newBareTestBackend(t, storage, mount)
	tb.mustWrite(t, "config", map[string]any{"issuer": "https://vault.test/v1/jwt"})
	return tb
}

// newBareTestBackend is newTestBackend without the config write: storage
// is left as it was given, for tests that pre-load it.
func newBareTestBackend(t testing.TB, storage logical.Storage, mount mountFunc) *testBackend {
	t.Helper()
	logs := &syncBuffer{}
	sys := &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}
	conf := &logical.BackendConfig{
		Logger:      hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace, JSONFormat: true}),
		System:      sys,
		StorageView: storage,
	}
	clock := &testClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	var b *backend
	factory := func(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
		lb, err := NewFactory(WithRunningVersion("v0.0.0-test"))(ctx, conf)
		if err != nil {
			return nil, err
		}
		b = lb.(*backend)
		b.clock = clock.Now
		return b, nil
	}
	handler := mount(t, factory, conf)
	tb := &testBackend{backend: b, handler: handler, storage: storage, clock: clock, logs: logs, sys: sys}
	if tt, ok := t.(*testing.T); ok {
		tb.t = tt
	}
	return tb
}

// request runs one request as Vault's router does: for create and update
// on a path with an existence check, HandleExistenceCheck first and the
// operation it picks, then HandleRequest. An existence-check error is a 400
// if it is an errutil.UserError (as the framework's field checks are), a
// 404 for an unknown path, and a 500 otherwise.
func (tb *testBackend) request(t testing.TB, op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	t.Helper()
	// Copy data: HandleRequest may rewrite fields in place.
	var d map[string]any
	if data != nil {
		d = maps.Clone(data)
	}
	req := &logical.Request{Operation: op, Path: path, Data: d, Storage: tb.storage, EntityID: tb.entityID, MountPoint: tb.mountPoint}
	if op == logical.CreateOperation || op == logical.UpdateOperation {
		checkFound, exists, err := tb.handler.HandleExistenceCheck(context.Background(), req)
		var userErr errutil.UserError
		switch {
		case errors.As(err, &userErr):
			return logical.ErrorResponse(userErr.Error()), logical.ErrInvalidRequest
		case errors.Is(err, logical.ErrUnsupportedPath):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("existence check failed (Vault answers 500): %w", err)
		}
		if checkFound {
			req.Operation = logical.CreateOperation
			if exists {
				req.Operation = logical.UpdateOperation
			}
		}
	}
	return tb.handler.HandleRequest(context.Background(), req)
}

// mustWrite writes and fails the test on any error; it validates the
// response against the path's schema.
func (tb *testBackend) mustWrite(t testing.TB, path string, data map[string]any) *logical.Response {
	t.Helper()
	var op logical.Operation = logical.UpdateOperation
	if exists, err := tb.exists(path); err == nil && !exists {
		op = logical.CreateOperation
	}
	resp, err := tb.request(t, logical.UpdateOperation, path, data)
	if err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("write %s: err=%v resp=%#v", path, err, resp)
	}
	tb.validateSchema(t, op, path, resp)
	return resp
}

func (tb *testBackend) mustRead(t testing.TB, path string) *logical.Response {
	t.Helper()
	resp, err := tb.request(t, logical.ReadOperation, path, nil)
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("read %s: err=%v resp=%#v", path, err, resp)
	}
	tb.validateSchema(t, logical.ReadOperation, path, resp)
	return resp
}

func (tb *testBackend) exists(path string) (bool, error) {
	for _, prefix := range []string{"keys/", "roles/"} {
		if name, ok := strings.CutPrefix(path, prefix); ok && !strings.Contains(name, "/") {
			storagePrefix := map[string]string{"keys/": keyPrefix, "roles/": rolePrefix}[prefix]
			e, err := tb.storage.Get(context.Background(), storagePrefix+name)
			return e != nil, err
		}
	}
	return true, nil
}

func (tb *testBackend) validateSchema(t testing.TB, op logical.Operation, path string, resp *logical.Response) {
	t.Helper()
	tt, ok := t.(*testing.T)
	if !ok || resp == nil {
		return
	}
	route := tb.Route(path)
	if route == nil {
		t.Fatalf("no route for %s", path)
	}
	schema.ValidateResponse(tt, schema.GetResponseSchema(tt, route, op), resp, true)
}

// snapshot returns every storage entry, for checking that a refused
// request changed nothing.
func (tb *testBackend) snapshot(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := tb.storage.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				walk(prefix + k)
				continue
			}
			e, err := tb.storage.Get(context.Background(), prefix+k)
			if err != nil {
				t.Fatal(err)
			}
			out[prefix+k] = string(e.Value)
		}
	}
	walk("")
	return out
}

// wantBadRequest runs a request that must be refused with a 400 whose
// message contains every string in want, and must change no storage.
func (tb *testBackend) wantBadRequest(t *testing.T, op logical.Operation, path string, data map[string]any, want ...string) {
	t.Helper()
	before := tb.snapshot(t)
	resp, err := tb.request(t, op, path, data)
	if resp == nil || !resp.IsError() {
		t.Fatalf("%s %s: want an error response, got resp=%#v err=%v", op, path, resp, err)
	}
	if code := httpStatus(op, path, resp, err); code != 400 {
		t.Fatalf("%s %s: status %d, want 400 (%v)", op, path, code, resp.Error())
	}
	msg := resp.Error().Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s %s: error %q does not contain %q", op, path, msg, w)
		}
	}
	if after := tb.snapshot(t); !maps.Equal(before, after) {
		t.Errorf("%s %s: refused request changed storage", op, path)
	}
}

// httpStatus is the status Vault's HTTP layer sends for a handler result.
func httpStatus(op logical.Operation, path string, resp *logical.Response, err error) int {
	code, _ := logical.RespondErrorCommon(&logical.Request{Operation: op, Path: path}, resp, err)
	if code == 0 {
		return 200
	}
	logical.AdjustErrorStatusCode(&code, err)
	return code
}

func decodeJSON(t testing.TB, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decoding %q: %v", raw, err)
	}
}

func TestBackendWiring(t *testing.T) {
	tb := getTestBackend(t)
	if got := tb.PathsSpecial.SealWrapStorage; !slices.Equal(got, []string{keyPrefix, configAWSPath}) {
		t.Errorf("SealWrapStorage = %v: private keys and AWS credentials must be seal-wrapped", got)
	}
	for _, p := range []string{"jwks", ".well-known/keys", ".well-known/openid-configuration"} {
		found := false
		for _, u := range tb.PathsSpecial.Unauthenticated {
			if u == p || (strings.HasSuffix(u, "*") && strings.HasPrefix(p, strings.TrimSuffix(u, "*"))) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s is not unauthenticated", p)
		}
	}
	for _, p := range []string{"keys", "keys/", "roles/x", "issue/x", "config"} {
		if tb.PathsSpecial != nil && slicesContainsPrefix(tb.PathsSpecial.Unauthenticated, p) {
			t.Errorf("%s must need a token", p)
		}
	}
	if v := tb.PluginVersion().Version; v != "v0.0.0-test" {
		t.Errorf("running version = %q", v)
	}
	for _, p := range tb.Paths {
		if p.HelpSynopsis == "" || p.HelpDescription == "" {
			t.Errorf("path %s has no help", p.Pattern)
		}
		for op, h := range p.Operations {
			if h.Properties().Summary == "" {
				t.Errorf("path %s %s has no summary", p.Pattern, op)
			}
		}
	}
}

func slicesContainsPrefix(list []string, p string) bool {
	for _, u := range list {
		if u == p || (strings.HasSuffix(u, "*") && strings.HasPrefix(p, strings.TrimSuffix(u, "*"))) {
			return true
		}
	}
	return false
}

// TestFieldTypeErrorsEchoNoValue: a value of the wrong type is a 400 naming
// the field and the type it needs, and never quotes the value: the
// framework's own conversion error would put a refresh token, a token or an
// AWS secret sent as a list or an object into the error, and from there
// into clients' logs. It holds on every path, including the issue fast
// path, batch items and the existence check of keys and roles.
func TestFieldTypeErrorsEchoNoValue(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/rr", map[string]any{"key": "k", "refresh_ttl": "1h", "allowed_subjects": "*"})
	issued := tb.mustWrite(t, "issue/rr", nil).Data
	rt, tok := issued["refresh_token"].(string), issued["token"].(string)
	const aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	const sess = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
	const marker = "SeCrEtMaRkEr"
	for _, tc := range []struct {
		name, path string
		data       map[string]any
		secret     string
		want       []string
	}{
		{"refresh_token as a list", "refresh", map[string]any{"refresh_token": []any{rt}}, rt, []string{`invalid "refresh_token": must be a string`}},
		{"refresh_token as an object", "refresh", map[string]any{"refresh_token": map[string]any{"t": rt}}, rt, []string{`invalid "refresh_token": must be a string`}},
		{"verify token as a list", "verify", map[string]any{"token": []any{tok}}, tok, []string{`invalid "token": must be a string`}},
		{"revoke token as an object", "revoke", map[string]any{"token": map[string]any{"t": tok}}, tok, []string{`invalid "token": must be a string`}},
		{"secret_key as a list", "config/aws", map[string]any{"access_key": "AKID", "secret_key": []any{aws}}, aws, []string{`invalid "secret_key": must be a string`}},
		{"session_token as an object", "config/aws", map[string]any{"session_token": map[string]any{"v": sess}}, sess, []string{`invalid "session_token": must be a string`}},
		{"revoke exp as a string", "revoke", map[string]any{"jti": "x", "exp": marker}, marker, []string{`invalid "exp": must be an integer`}},
		{"issue subject as a list", "issue/rr", map[string]any{"subject": []any{marker}}, marker, []string{`invalid "subject": must be a string`}},
		{"issue ttl not a duration", "issue/rr", map[string]any{"ttl": marker}, marker, []string{`invalid "ttl": must be a duration`}},
		{"batch item subject as a list", "issue/rr", map[string]any{"batch_input": []any{map[string]any{"subject": []any{marker}}}}, marker, nil},
		{"role jti not a boolean", "roles/rr", map[string]any{"jti": marker}, marker, []string{`invalid "jti": must be a boolean`}},
		{"role ttl not a duration", "roles/rr", map[string]any{"ttl": []any{marker}}, marker, []string{`invalid "ttl": must be a duration`}},
		{"new role max_audiences not an integer", "roles/new", map[string]any{"key": "k", "max_audiences": marker}, marker, []string{`invalid "max_audiences": must be an integer`}},
		{"key verification_ttl not a duration", "keys/k", map[string]any{"verification_ttl": marker}, marker, []string{`invalid "verification_ttl": must be a duration`}},
		{"config jwks_max_age negative", "config", map[string]any{"jwks_max_age": "-5"}, "-5", []string{`invalid "jwks_max_age"`, "negative"}},
		{"revocations limit not an integer", "revocations", map[string]any{"limit": marker}, marker, []string{`invalid "limit": must be an integer`}},
		{"max_audiences a float beyond int64", "roles/new", map[string]any{"key": "k", "max_audiences": 1e30}, "1e+30", []string{`invalid "max_audiences": must be an integer`}},
		{"max_audiences a fractional float", "roles/new", map[string]any{"key": "k", "max_audiences": 2.5}, "2.5", []string{`invalid "max_audiences": must be an integer`}},
		// The framework reads "010" as octal 8, "0x10" as 16, "1_0" as 10
		// and true as 1: only decimal is a number here.
		{"max_audiences in octal", "roles/new", map[string]any{"key": "k", "max_audiences": "010"}, "010", []string{`invalid "max_audiences": must be an integer`}},
		{"max_attempts in hex", "config/aws", map[string]any{"max_attempts": "0x3"}, "0x3", []string{`invalid "max_attempts": must be an integer`}},
		{"rsa_bits with an underscore", "keys/new", map[string]any{"algorithm": "RS256", "rsa_bits": "3_072"}, "3_072", []string{`invalid "rsa_bits": must be an integer`}},
		{"max_audiences a boolean", "roles/new", map[string]any{"key": "k", "max_audiences": true}, "true", []string{`invalid "max_audiences": must be an integer`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var op logical.Operation = logical.UpdateOperation
			if tc.path == "revocations" {
				op = logical.ReadOperation
			}
			if tc.want == nil {
				// A batch item's error is its result, in a 200.
				resp := tb.mustWrite(t, tc.path, tc.data)
				got := fmt.Sprint(resp.Data["batch_results"])
				if !strings.Contains(got, `invalid "subject": must be a string`) || strings.Contains(got, tc.secret) {
					t.Fatalf("batch result %s", got)
				}
				return
			}
			tb.wantBadRequest(t, op, tc.path, tc.data, tc.want...)
			resp, err := tb.request(t, op, tc.path, tc.data)
			if msg := fmt.Sprint(resp.Error(), err); strings.Contains(msg, tc.secret) {
				t.Fatalf("the error quotes the value: %s", msg)
			}
			if strings.Contains(tb.logs.String(), tc.secret) {
				t.Fatal("the value is in the log")
			}
		})
	}
}

// TestWeaklyTypedInputs: the conversions the framework makes (numbers for
// strings, strings for numbers and booleans, duration strings, comma lists)
// still work with the engine's own type check in front of it.
func TestWeaklyTypedInputs(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": json.Number("86400"), "rotation_period": "0"})
	d := tb.mustWrite(t, "roles/r", map[string]any{
		"key": "k", "subject": json.Number("12345"), "audiences": "a,b", "allowed_audiences": []any{"a", "b", "c"},
		"allowed_subjects": "user-*", "jti": "false", "ttl": "10m", "max_ttl": 7200, "not_before_skew": json.Number("30"),
		"max_audiences": "2", "allowed_claims": "n",
	}).Data
	if d["subject"] != "12345" || d["jti"] != false || d["ttl"] != int64(600) || d["max_ttl"] != int64(7200) ||
		d["not_before_skew"] != int64(30) || d["max_audiences"] != 2 || fmt.Sprint(d["audiences"]) != "[a b]" {
		t.Fatalf("role: %#v", d)
	}
	tok := tb.issue(t, "r", map[string]any{"ttl": "120", "audience": "a,c"})
	if fmt.Sprint(tok.claims["aud"]) != "[a c]" || tok.data["expires_in"] != int64(120) {
		t.Fatalf("issue: %v %v", tok.claims, tok.data)
	}
	tb.mustWrite(t, "revoke", map[string]any{"jti": json.Number("42"), "exp": "2000000000"})
	tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "1h"})
}

// TestExistenceCheckIgnoresBody: Vault runs the existence check before its
// ACL check, so it must look only at the path. A malformed body is for
// HandleRequest, which comes after the ACL check, to refuse: otherwise a
// caller without permission gets a 400 naming a field instead of a 403,
// and Vault logs each such request at ERROR.
func TestExistenceCheckIgnoresBody(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	for _, tc := range []struct {
		path             string
		data             map[string]any
		checkFound, want bool
	}{
		{"issue/r", map[string]any{"ttl": "abc"}, false, false},
		{"issue/r", map[string]any{"claims": "not json"}, false, false},
		{"verify", map[string]any{"token": []any{"x"}}, false, false},
		{"config", map[string]any{"jwks_max_age": "abc"}, false, false},
		{"keys/k", map[string]any{"rsa_bits": "abc"}, true, true},
		{"keys/new", map[string]any{"rsa_bits": "abc"}, true, false},
		{"roles/r", map[string]any{"ttl": "1.5s", "claims": "not json"}, true, true},
		{"roles/new", map[string]any{"max_audiences": []any{1}}, true, false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			req := &logical.Request{Operation: logical.UpdateOperation, Path: tc.path, Data: maps.Clone(tc.data), Storage: tb.storage}
			checkFound, exists, err := tb.HandleExistenceCheck(context.Background(), req)
			if err != nil || checkFound != tc.checkFound || exists != tc.want {
				t.Fatalf("HandleExistenceCheck(update, %s, %v) = (%v, %v, %v), want (%v, %v, nil)",
					tc.path, tc.data, checkFound, exists, err, tc.checkFound, tc.want)
			}
			// HandleRequest, after the ACL check, still refuses the body.
			tb.wantBadRequest(t, logical.UpdateOperation, tc.path, tc.data)
		})
	}
}

// openAPI returns the OpenAPI document the framework builds for the
// backend, as Vault asks for it: a help request on the mount's root.
func (tb *testBackend) openAPI(t *testing.T) *framework.OASDocument {
	t.Helper()
	tb.sys.PluginEnvironment = &logical.PluginEnvironment{VaultVersion: "1.21.1"}
	resp, err := tb.handler.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.HelpOperation, Path: "", Storage: tb.storage,
		Data: map[string]any{"requestResponsePrefix": "jwt"},
	})
	if err != nil || resp == nil {
		t.Fatalf("root help: resp=%v err=%v", resp, err)
	}
	doc, ok := resp.Data["openapi"].(*framework.OASDocument)
	if !ok || len(doc.Paths) == 0 {
		t.Fatalf("root help has no OpenAPI document: %T", resp.Data["openapi"])
	}
	return doc
}

// TestOpenAPIOperationIDs: every operation has an ID, no two share one, and
// each starts with the engine's prefix, which must not be Vault's JWT auth
// method's "jwt": clients generated from Vault's spec name their methods
// after these IDs.
func TestOpenAPIOperationIDs(t *testing.T) {
	tb := getTestBackend(t)
	doc := tb.openAPI(t)
	seen := map[string]string{}
	for path, item := range doc.Paths {
		for method, op := range map[string]*framework.OASOperation{
			"get": item.Get, "post": item.Post, "delete": item.Delete, "patch": item.Patch,
		} {
			if op == nil {
				continue
			}
			where := method + " " + path
			id := op.OperationID
			if !strings.HasPrefix(id, "jwt-secrets-") {
				t.Errorf("%s: operationId %q does not start with jwt-secrets-", where, id)
			}
			if other, dup := seen[id]; dup {
				t.Errorf("operationId %q on both %s and %s", id, other, where)
			}
			seen[id] = where
		}
	}
	if len(seen) < 20 {
		t.Errorf("only %d operations in the spec", len(seen))
	}
	// The spec merges create and update into one POST: "write", as the
	// SDK's default and Vault's JWT auth method name it. Tidy also removes
	// refresh families, not only revocations.
	for id, where := range map[string]string{
		"jwt-secrets-write-key":  "post /keys/{name}",
		"jwt-secrets-write-role": "post /roles/{name}",
		"jwt-secrets-tidy":       "post /tidy",
	} {
		if seen[id] != where {
			t.Errorf("operationId %q is on %q, want %s", id, seen[id], where)
		}
	}
}

// TestOpenAPIQueryParameters: for a GET, the spec lists only fields marked
// Query, so a read-only path's own fields must be: without it a generated
// client cannot page through jwt/revocations.
func TestOpenAPIQueryParameters(t *testing.T) {
	tb := getTestBackend(t)
	doc := tb.openAPI(t)
	op := doc.Paths["/revocations"].Get
	if op == nil {
		t.Fatal("no GET /revocations in the spec")
	}
	got := map[string]string{}
	for _, p := range op.Parameters {
		got[p.Name] = p.In
	}
	for _, name := range []string{"after", "limit"} {
		if got[name] != "query" {
			t.Errorf("GET /revocations: parameter %q is %q, want in: query (parameters %v)", name, got[name], got)
		}
	}
	// Every path that only reads: each field not taken from the URL is a
	// query parameter.
	for _, p := range tb.Paths {
		readOnly := len(p.Operations) > 0
		for op := range p.Operations {
			readOnly = readOnly && (op == logical.ReadOperation || op == logical.ListOperation)
		}
		for name, f := range p.Fields {
			if readOnly && !f.Query && !strings.Contains(p.Pattern, "(?P<"+name+">") {
				t.Errorf("%s: field %q is not Query: the spec leaves it out", p.Pattern, name)
			}
		}
	}
}

// TestLogLinesNameTheMount: one plugin process serves every mount, and
// Vault gives them one logger, so each line the backend writes names its
// mount: a security WARN from a request, and the periodic function's
// lines, which Vault sends through HandleRequest with the mount point too.
func TestLogLinesNameTheMount(t *testing.T) {
	for _, mount := range []string{"jwt/", "ns1/jwt-b/"} {
		tb := getTestBackend(t)
		tb.mountPoint = mount
		tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "24h"})
		tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "refresh_ttl": "1h"})
		rt := tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string)
		tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})
		if resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}); err == nil || !resp.IsError() {
			t.Fatalf("%s: reuse not refused: %v %v", mount, resp, err)
		}
		tb.clock.Add(24 * time.Hour)
		if _, err := tb.handler.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.RollbackOperation, Storage: tb.storage, MountPoint: mount,
		}); err != nil {
			t.Fatalf("%s: periodic: %v", mount, err)
		}

		seen := map[string]string{}
		for line := range strings.Lines(tb.logs.String()) {
			var l struct {
				Level   string `json:"@level"`
				Message string `json:"@message"`
				Mount   string `json:"mount"`
			}
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("log line is not JSON: %v: %s", err, line)
			}
			if l.Mount != mount {
				t.Errorf("%s: log line with mount %q: %s", mount, l.Mount, line)
			}
			seen[l.Message] = l.Level
		}
		for msg, level := range map[string]string{"refresh token reused: token family revoked": "warn", "staged key rotation": "info"} {
			if seen[msg] != level {
				t.Errorf("%s: %q not logged at %s", mount, msg, level)
			}
		}
	}
}

// TestSecretFieldsAreSensitive: request fields that carry a bearer secret
// (a token, a refresh token, an AWS secret) are marked Sensitive, so the UI
// and generated clients treat them as secrets.
func TestSecretFieldsAreSensitive(t *testing.T) {
	tb := getTestBackend(t)
	secret := map[string]bool{"token": true, "refresh_token": true, "secret_key": true, "session_token": true}
	found := 0
	for _, p := range tb.Paths {
		for name, f := range p.Fields {
			if !secret[name] {
				continue
			}
			found++
			if f.DisplayAttrs == nil || !f.DisplayAttrs.Sensitive {
				t.Errorf("%s: field %q is not marked Sensitive", p.Pattern, name)
			}
		}
	}
	if found < 5 {
		t.Errorf("found %d secret fields, want verify's and revoke's token, refresh_token, secret_key and session_token", found)
	}
}

// TestMountFollowsRequests: messages that name a path to write name the
// mount requests arrive on: "<mount>/" until one has said, the new one
// after a remount (Vault keeps the backend when it moves a mount), and
// still the known one after a request without a mount point. So do log
// lines.
func TestMountFollowsRequests(t *testing.T) {
	tb := getTestBackend(t) // its config write had no mount point
	tb.mustWrite(t, "keys/k", nil)
	missingKey := func(want string) {
		t.Helper()
		tb.wantBadRequest(t, logical.UpdateOperation, "roles/r", map[string]any{"key": "missing"}, "create it with "+want+" first")
	}
	missingKey("<mount>/keys/missing")
	tb.mountPoint = "jwt/"
	missingKey("jwt/keys/missing")
	tb.mountPoint = "jwt-moved/"
	missingKey("jwt-moved/keys/missing")
	tb.Logger().Info("after the remount")
	tb.mountPoint = ""
	missingKey("jwt-moved/keys/missing")
	tb.Logger().Info("after a request without a mount point")
	mounts := map[string]string{}
	for line := range strings.Lines(tb.logs.String()) {
		var l struct {
			Message string `json:"@message"`
			Mount   string `json:"mount"`
		}
		decodeJSON(t, []byte(line), &l)
		mounts[l.Message] = l.Mount
	}
	for msg, want := range map[string]string{"after the remount": "jwt-moved/", "after a request without a mount point": "jwt-moved/"} {
		if mounts[msg] != want {
			t.Errorf("log line %q names mount %q, want %q", msg, mounts[msg], want)
		}
	}
}
