package backend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// rawBodyPaths answer with a raw HTTP body (a JWK Set, a discovery
// document), not Vault's JSON envelope: their responses have a
// description and no fields. TestOpenAPIResponsesMatchHandlers checks that
// these, and only these, return a raw body.
var rawBodyPaths = map[string]bool{
	"/jwks":                             true,
	"/.well-known/keys":                 true,
	"/.well-known/openid-configuration": true,
}

// oasOperations are item's operations by HTTP method.
func oasOperations(item *framework.OASPathItem) map[string]*framework.OASOperation {
	ops := map[string]*framework.OASOperation{}
	for method, op := range map[string]*framework.OASOperation{
		"get": item.Get, "post": item.Post, "delete": item.Delete, "patch": item.Patch,
	} {
		if op != nil {
			ops[method] = op
		}
	}
	return ops
}

// oasSchema resolves a "#/components/schemas/..." reference.
func oasSchema(doc *framework.OASDocument, s *framework.OASSchema) *framework.OASSchema {
	if s == nil || s.Ref == "" {
		return s
	}
	return doc.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
}

// oasResponseSchema is the JSON schema of op's 200 response, or nil.
func oasResponseSchema(doc *framework.OASDocument, op *framework.OASOperation) *framework.OASSchema {
	r := op.Responses[http.StatusOK]
	if r == nil || r.Content["application/json"] == nil {
		return nil
	}
	return oasSchema(doc, r.Content["application/json"].Schema)
}

// TestOpenAPIDocumented: the OpenAPI document, from which Vault generates
// its clients and UI and `vault path-help` shows the same text, describes
// every path, operation, parameter, request field and response field, and
// every operation that returns data declares what it returns.
func TestOpenAPIDocumented(t *testing.T) {
	tb := getTestBackend(t)
	doc := tb.openAPI(t)
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		item := doc.Paths[path]
		if item.Description == "" {
			t.Errorf("%s: no description (HelpSynopsis)", path)
		}
		for _, p := range item.Parameters {
			if p.Description == "" {
				t.Errorf("%s: path parameter %q has no description", path, p.Name)
			}
		}
		ops := oasOperations(item)
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			op, where := ops[method], method+" "+path
			if op.Summary == "" && op.Description == "" {
				t.Errorf("%s: no summary or description", where)
			}
			for _, p := range op.Parameters {
				if p.Description == "" {
					t.Errorf("%s: %s parameter %q has no description", where, p.In, p.Name)
				}
			}
			if op.RequestBody != nil {
				body := oasSchema(doc, op.RequestBody.Content["application/json"].Schema)
				for _, name := range slices.Sorted(maps.Keys(body.Properties)) {
					if body.Properties[name].Description == "" {
						t.Errorf("%s: request field %q has no description", where, name)
					}
				}
			}

			if method == "delete" {
				if r := op.Responses[http.StatusNoContent]; r == nil || len(r.Content) != 0 || len(op.Responses) != 1 {
					t.Errorf("%s: responses %v, want only 204 without a body", where, op.Responses)
				}
				continue
			}
			r := op.Responses[http.StatusOK]
			if r == nil || r.Description == "" {
				t.Errorf("%s: no described 200 response", where)
				continue
			}
			s := oasResponseSchema(doc, op)
			switch {
			case rawBodyPaths[path]:
				if s != nil {
					t.Errorf("%s: a raw body is declared as a JSON response", where)
				}
				continue
			case s == nil:
				t.Errorf("%s: returns data but declares no response fields", where)
				continue
			case len(s.Properties) == 0:
				t.Errorf("%s: response schema has no fields", where)
			}
			for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
				if s.Properties[name].Description == "" {
					t.Errorf("%s: response field %q has no description", where, name)
				}
			}
		}
	}
}

// oasCall is one request the handlers answer, for the OpenAPI operation
// oasPath and method it is an instance of.
type oasCall struct {
	oasPath, method string
	op              logical.Operation
	path            string
	resp            *logical.Response
}

// oasCallLog records requests made through it, in order.
type oasCallLog struct {
	tb *testBackend
	// endpoint is the fake KMS's, for more awskms calls.
	endpoint string
	calls    []oasCall
}

// call makes a request, which must succeed, and records it. Calls run in
// order: later ones depend on the state earlier ones leave.
func (l *oasCallLog) call(t *testing.T, oasPath, method string, op logical.Operation, path string, data map[string]any) *logical.Response {
	t.Helper()
	resp, err := l.tb.request(t, op, path, data)
	if err != nil || resp != nil && resp.IsError() {
		t.Fatalf("%s %s: err=%v resp=%#v", op, path, err, resp)
	}
	l.calls = append(l.calls, oasCall{oasPath, method, op, path, resp})
	return resp
}

func (l *oasCallLog) read(t *testing.T, oasPath, path string, data map[string]any) *logical.Response {
	t.Helper()
	return l.call(t, oasPath, "get", logical.ReadOperation, path, data)
}

func (l *oasCallLog) write(t *testing.T, oasPath, path string, data map[string]any) *logical.Response {
	t.Helper()
	return l.call(t, oasPath, "post", logical.UpdateOperation, path, data)
}

// oasCalls calls every operation of the OpenAPI document on a backend with
// realistic data: local, RSA and awskms keys mid-rotation, roles with
// refresh tokens, revocations of every kind, a lowered jwks_max_age, and
// the calls that make each conditional field appear and disappear. It
// returns the backend, its OpenAPI document and the calls, for
// TestOpenAPIResponsesMatchHandlers and TestAPIDocMatchesPaths; a caller
// may make more calls through the log.
func oasCalls(t *testing.T) (*testBackend, *framework.OASDocument, *oasCallLog) {
	t.Helper()
	tb, srv, _ := kmsBackend(t)
	doc := tb.openAPI(t)
	endpoint := tb.mustRead(t, "config/aws").Data["endpoint"].(string)

	l := &oasCallLog{tb: tb, endpoint: endpoint}
	call := func(oasPath, method string, op logical.Operation, path string, data map[string]any) *logical.Response {
		t.Helper()
		return l.call(t, oasPath, method, op, path, data)
	}
	read := func(oasPath, path string, data map[string]any) *logical.Response {
		t.Helper()
		return l.read(t, oasPath, path, data)
	}
	write := func(oasPath, path string, data map[string]any) *logical.Response {
		t.Helper()
		return l.write(t, oasPath, path, data)
	}

	// Config: jwks_old_max_age_until appears once jwks_max_age is lowered
	// while keys exist.
	read("/config", "config", nil)
	write("/config", "config", map[string]any{"jwks_max_age": "1h"})
	read("/config/aws", "config/aws", nil)
	write("/config/aws", "config/aws", map[string]any{"max_concurrency": 32})

	// Keys: local ES256 and RSA, and awskms with its own region and
	// endpoint.
	write("/keys/{name}", "keys/k", map[string]any{"algorithm": "ES256"})
	write("/keys/{name}", "keys/rsa", map[string]any{"algorithm": "RS256", "rsa_bits": 2048, "rotation_period": "24h"})
	write("/keys/{name}", "keys/kms", map[string]any{
		"provider": "awskms", "algorithm": "ES256", "kms_key_id": newKMSKey(t, srv, signer.ES256),
		"region": "us-east-1", "endpoint": endpoint,
	})
	write("/keys/{name}", "keys/k", map[string]any{"verification_ttl": "48h"})
	write("/config", "config", map[string]any{"jwks_max_age": "10s"})
	read("/config", "config", nil)
	write("/keys/{name}/rotate", "keys/k/rotate", nil)
	read("/keys/{name}", "keys/k", nil) // a next version: rotated_at, published_until
	write("/keys/{name}/rotate", "keys/k/rotate", map[string]any{"immediate": true})
	write("/keys/{name}/rotate", "keys/rsa/rotate", map[string]any{"immediate": true})
	write("/keys/{name}/rotate", "keys/kms/rotate", map[string]any{"immediate": true, "kms_key_id": newKMSKey(t, srv, signer.ES256)})
	write("/keys/{name}/revoke-version", "keys/k/revoke-version", map[string]any{"version": 1})
	write("/keys/{name}/revoke-version", "keys/rsa/revoke-version", map[string]any{"version": 1})
	write("/keys/{name}/revoke-version", "keys/kms/revoke-version", map[string]any{"version": 1})
	read("/keys/{name}", "keys/rsa", nil)
	read("/keys/{name}", "keys/kms", nil)
	write("/keys/{name}", "keys/tmp", nil)
	call("/keys/{name}", "delete", logical.DeleteOperation, "keys/tmp", nil)
	call("/keys/", "get", logical.ListOperation, "keys/", nil)

	// Roles.
	write("/roles/{name}", "roles/r", map[string]any{
		"key": "k", "issuer": "https://vault.test/v1/jwt", "audiences": "api", "allowed_audiences": "api,*.example.com",
		"subject": "svc", "allowed_subjects": "svc-*", "claims": map[string]any{"team": "payments"},
		"allowed_claims": "scope", "required_claims": "scope", "claim_constraints": map[string]any{"scope": "read*"},
		"max_audiences": 2, "not_before_skew": "10s", "typ": "at+jwt", "refresh_ttl": "1h", "refresh_max_ttl": "24h",
	})
	write("/roles/{name}", "roles/plain", map[string]any{"key": "kms", "subject": "svc", "jti": false})
	write("/roles/{name}", "roles/tmpl", map[string]any{"key": "rsa", "subject_template": "{{identity.entity.id}}",
		"claims_template": map[string]any{"name": "{{identity.entity.name}}"}})
	read("/roles/{name}", "roles/r", nil)
	call("/roles/{name}", "delete", logical.DeleteOperation, "roles/tmpl", nil)
	call("/roles/", "get", logical.ListOperation, "roles/", nil)

	// Issuing, refreshing, verifying.
	issued := write("/issue/{role}", "issue/r", map[string]any{"claims": map[string]any{"scope": "read"}})
	plain := write("/issue/{role}", "issue/plain", nil).Data["token"]
	write("/issue/{role}", "issue/plain", map[string]any{"batch_input": []any{map[string]any{"reference": "a"}, map[string]any{"subject": "other"}}})
	refreshed := write("/refresh", "refresh", map[string]any{"refresh_token": issued.Data["refresh_token"]})
	token := refreshed.Data["token"].(string)
	write("/verify", "verify", map[string]any{"token": token, "typ": "at+jwt"})
	write("/verify", "verify", map[string]any{"token": plain})
	write("/verify", "verify", map[string]any{"token": "not.a.token"})

	// Revoking, listing revocations (over two pages), tidying.
	now := tb.clock.Now().Unix()
	write("/revoke", "revoke", map[string]any{"token": token})
	write("/revoke", "revoke", map[string]any{"jti": "j1", "exp": now + 60})
	write("/revoke", "revoke", map[string]any{"jti": "old", "exp": now - 3600}) // expired: a warning, nothing stored
	write("/revoke", "revoke", map[string]any{"subject": "user-42"})
	write("/revoke", "revoke", map[string]any{"role": "plain"})
	read("/revocations", "revocations", map[string]any{"limit": 1})
	read("/revocations", "revocations", nil)
	write("/tidy", "tidy", nil)

	// Public key discovery: raw bodies.
	read("/jwks", "jwks", nil)
	read("/.well-known/keys", ".well-known/keys", nil)
	read("/.well-known/openid-configuration", ".well-known/openid-configuration", nil)

	// Last, as it changes what awskms keys can do.
	call("/config/aws", "delete", logical.DeleteOperation, "config/aws", nil)
	return tb, doc, l
}

// TestOpenAPIResponsesMatchHandlers: what the handlers return is what the
// OpenAPI document says. Each operation is called on a backend with
// realistic data (oasCalls). For each operation:
//
//   - every key a response returns is declared, with the JSON type the
//     document gives it (a generated client decodes into that type);
//   - every declared field is returned by some call;
//   - a Required field is returned by every call, and one that is not
//     Required (its description says when it is present) is missing from
//     some call: otherwise it should be Required, or a call is missing here.
//
// Every operation in the document must be called, so a new path cannot
// escape the check.
func TestOpenAPIResponsesMatchHandlers(t *testing.T) {
	tb, doc, l := oasCalls(t)
	calls := l.calls

	byOp := map[string][]int{}
	for i, c := range calls {
		byOp[c.method+" "+c.oasPath] = append(byOp[c.method+" "+c.oasPath], i)
	}
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		ops := oasOperations(doc.Paths[path])
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			where := method + " " + path
			idx := byOp[where]
			delete(byOp, where)
			if len(idx) == 0 {
				t.Errorf("%s: not called here; add a call", where)
				continue
			}
			checkOASResponses(t, tb, doc, where, path, ops[method], calls, idx)
		}
	}
	for where := range byOp {
		t.Errorf("%s: called, but not in the OpenAPI document", where)
	}
}

// checkOASResponses compares the responses to calls[idx], all instances of
// operation op at path, with what the document declares for it.
func checkOASResponses(t *testing.T, tb *testBackend, doc *framework.OASDocument, where, path string, op *framework.OASOperation, calls []oasCall, idx []int) {
	t.Helper()
	for _, i := range idx {
		resp := calls[i].resp
		if calls[i].op == logical.DeleteOperation {
			if resp != nil {
				t.Errorf("%s: returned %#v, want no body (204)", where, resp)
			}
			continue
		}
		if _, raw := resp.Data[logical.HTTPRawBody]; raw != rawBodyPaths[path] {
			t.Errorf("%s: raw body %v, want %v", where, raw, rawBodyPaths[path])
		}
	}
	if op.Responses[http.StatusNoContent] != nil || rawBodyPaths[path] {
		return
	}
	s := oasResponseSchema(doc, op)
	if s == nil {
		t.Errorf("%s: returns data but the document declares no response fields", where)
		return
	}
	// Required is the framework's; the document does not carry it.
	route := tb.Route(calls[idx[0]].path)
	required := map[string]bool{}
	if rs := route.Operations[calls[idx[0]].op].Properties().Responses[http.StatusOK]; len(rs) > 0 {
		for name, f := range rs[0].Fields {
			required[name] = f.Required
		}
	}

	seen, mistyped := map[string]int{}, map[string]bool{}
	for _, i := range idx {
		data := jsonRoundTrip(t, calls[i].resp.Data)
		for _, k := range slices.Sorted(maps.Keys(data)) {
			seen[k]++
			prop := s.Properties[k]
			if prop == nil {
				t.Errorf("%s: %s %s returned %q, which the document does not declare", where, calls[i].op, calls[i].path, k)
				continue
			}
			if msg := oasTypeMismatch(prop, data[k]); msg != "" && !mistyped[k] {
				mistyped[k] = true
				t.Errorf("%s: field %q: %s", where, k, msg)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
		switch n := seen[name]; {
		case n == 0:
			t.Errorf("%s: declared field %q is never returned", where, name)
		case required[name] && n < len(idx):
			t.Errorf("%s: field %q is Required but missing from %d of %d calls", where, name, len(idx)-n, len(idx))
		case !required[name] && n == len(idx):
			t.Errorf("%s: field %q is returned by every call (%d) but not Required: mark it Required, or add a call where it is absent", where, name, n)
		}
	}
}

// jsonRoundTrip is data as a client decodes it, numbers as json.Number.
func jsonRoundTrip(t *testing.T, data map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonKind is the JSON type of a value decoded with UseNumber: "number"
// for every number.
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// oasTypeMismatch says how the JSON value v does not fit schema s, or "".
func oasTypeMismatch(s *framework.OASSchema, v any) string {
	got, want := jsonKind(v), s.Type
	if n, ok := v.(json.Number); ok {
		if _, err := n.Int64(); err == nil {
			got = "integer"
		}
	}
	if got == want || got == "integer" && want == "number" {
		if want == "array" && s.Items != nil {
			for _, item := range v.([]any) {
				if msg := oasTypeMismatch(s.Items, item); msg != "" {
					return "item: " + msg
				}
			}
		}
		return ""
	}
	format := ""
	if s.Format != "" {
		format = " (format " + s.Format + ")"
	}
	return fmt.Sprintf("declared %s%s, returned %s %v", want, format, got, v)
}
