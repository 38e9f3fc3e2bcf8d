package backend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// apiDocFile is the API reference TestAPIDocMatchesPaths holds to the code.
const apiDocFile = "../docs/api.md"

// apiDocTypes are the type words of api.md's parameter lists, and the
// framework field types each stands for. A word not here fails the test.
// A list or an object may also arrive as a string (a comma-separated list,
// a JSON object or array), as the top of api.md says.
var apiDocTypes = map[string][]framework.FieldType{
	"string":                         {framework.TypeString},
	"int":                            {framework.TypeInt, framework.TypeInt64},
	"bool":                           {framework.TypeBool},
	"duration":                       {framework.TypeDurationSecond},
	"list":                           {framework.TypeCommaStringSlice},
	"string or list":                 {framework.TypeCommaStringSlice},
	"object or JSON string":          {framework.TypeMap},
	"list of objects or JSON string": {framework.TypeSlice},
}

// apiHandlerDefaults are the documented defaults that no FieldSchema holds:
// the handler works them out when the field is not sent. Each is written
// in api.md exactly as here, by "METHOD path-as-in-api.md field", and its
// field has no Default; one that gains a Default leaves this table, and
// api.md gives the Default instead.
var apiHandlerDefaults = map[string]string{
	"POST /jwt/issue/:role audience":       "role's audiences",
	"POST /jwt/issue/:role subject":        "role's subject",
	"POST /jwt/issue/:role ttl":            "role's ttl",
	"POST /jwt/issue/:role batch_input":    "none",
	"POST /jwt/revoke issuer":              "jwt/config's issuer",
	"POST /jwt/roles/:name require_entity": "true when a template is set",
}

// apiSection is one "## " section of api.md: one endpoint, or several that
// share a description (the two JWKS paths).
type apiSection struct {
	title string
	line  int
	// paramsLine is the line of its "### Parameters" heading; 0 without.
	paramsLine int
	ops        []apiRow
	params     []apiParam
	// payloads are the JSON blocks under "### Sample payload"; responses
	// every other JSON block (the sample responses, and examples in the
	// text such as a batch issue's answer).
	payloads, responses []apiJSON
	// sameAs are its sample responses given as "The same body as
	// [Title](#anchor)".
	sameAs []apiRef
}

// apiRef is a "The same body as [Title](#anchor)" line.
type apiRef struct {
	line   int
	anchor string
}

// apiRow is one row of a section's Method/Path table, as written:
// "LIST", "/jwt/keys".
type apiRow struct {
	line         int
	method, path string
}

// apiParam is one item of a "### Parameters" list: one name, or several
// that share a type and default.
type apiParam struct {
	line       int
	names      []string
	typ, deflt string
}

// apiJSON is a ```json block; line is its first line of JSON.
type apiJSON struct {
	line int
	text string
}

var (
	apiTableHead = regexp.MustCompile(`^\| Method +\| Path +\|$`)
	apiTableRule = regexp.MustCompile(`^\| :-+ +\| :-+ +\|$`)
	apiTableRow  = regexp.MustCompile("^\\| `([A-Z]+)` +\\| `(/[a-z.:_/-]+)` +\\|$")
	// - `name` `(type: default)` – text, or - `a`, `b` `(type: default)` – text
	apiParamItem = regexp.MustCompile("^- ((?:`[a-z_]+`, )*`[a-z_]+`) `\\(([A-Za-z ]+): ([^`]+)\\)` – \\S")
	apiSameAs    = regexp.MustCompile(`^The same body as \[[^\]]+\]\(#([a-z0-9-]+)\)[ .,]`)
	// a parameter of an OpenAPI path: {name}
	apiPathParam = regexp.MustCompile(`\{([a-z_]+)\}`)
)

// parseAPIDoc reads api.md's endpoint sections. Everything before the
// first "## " is the introduction. In a section it reads the Method/Path
// table, the "### Parameters" list (items and their indented lines, up to
// the first line of prose after it) and the ```json blocks. A table row or
// parameter item not in the expected form is an error, not skipped.
func parseAPIDoc(text string) ([]*apiSection, []string) {
	var (
		sections []*apiSection
		errs     []string
		sec      *apiSection
		sub      string   // the current "### " heading
		inParams bool     // in the Parameters list, before the prose after it
		inFence  bool     // in a ``` block
		block    *apiJSON // the ```json block being read
		table    int      // 1: after a table's header, 2: in its rows
	)
	bad := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("api.md:%d: ", n)+fmt.Sprintf(format, args...))
	}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if inFence {
			switch {
			case line != "```" && block != nil:
				block.text += line + "\n"
			case line == "```":
				inFence = false
				if block != nil && sub == "Sample payload" {
					sec.payloads = append(sec.payloads, *block)
				} else if block != nil {
					sec.responses = append(sec.responses, *block)
				}
				block = nil
			}
			continue
		}
		switch table {
		case 1:
			if !apiTableRule.MatchString(line) {
				bad(n, "Method/Path table without its | :--- | :--- | line: %s", line)
			}
			table = 2
			continue
		case 2:
			if m := apiTableRow.FindStringSubmatch(line); m != nil {
				sec.ops = append(sec.ops, apiRow{n, m[1], m[2]})
				continue
			}
			if strings.HasPrefix(line, "|") {
				bad(n, "table row not in the form | `METHOD` | `/jwt/path` |: %s", line)
				continue
			}
			table = 0
		}
		switch {
		case strings.HasPrefix(line, "```"):
			inFence = true
			if line == "```json" && sec != nil {
				block = &apiJSON{line: n + 1}
			}
			continue
		case strings.HasPrefix(line, "## "):
			sec = &apiSection{title: strings.TrimPrefix(line, "## "), line: n}
			sections = append(sections, sec)
			sub, inParams = "", false
			continue
		case sec == nil:
			continue
		case strings.HasPrefix(line, "### "):
			sub = strings.TrimPrefix(line, "### ")
			inParams = sub == "Parameters"
			if inParams {
				if sec.paramsLine != 0 {
					bad(n, "second ### Parameters in section %q", sec.title)
				}
				sec.paramsLine = n
			}
			continue
		case apiTableHead.MatchString(line):
			if len(sec.ops) > 0 {
				bad(n, "second Method/Path table in section %q", sec.title)
			}
			table = 1
			continue
		case strings.HasPrefix(line, "The same body as "):
			if m := apiSameAs.FindStringSubmatch(line); m != nil {
				sec.sameAs = append(sec.sameAs, apiRef{n, m[1]})
			} else {
				bad(n, "not in the form The same body as [Title](#anchor).: %s", line)
			}
			continue
		}
		if !inParams {
			continue
		}
		switch {
		case strings.HasPrefix(line, "- "):
			m := apiParamItem.FindStringSubmatch(line)
			if m == nil {
				bad(n, "parameter not in the form - `name` `(type: default)` – text: %s", line)
				continue
			}
			p := apiParam{line: n, typ: m[2], deflt: m[3]}
			for _, name := range strings.Split(m[1], ", ") {
				p.names = append(p.names, strings.Trim(name, "`"))
			}
			sec.params = append(sec.params, p)
		case line == "" || strings.HasPrefix(line, "  "):
		default:
			inParams = false // the prose after the list
		}
	}
	if inFence {
		bad(len(strings.Split(text, "\n")), "unclosed ``` block")
	}
	for _, s := range sections {
		if len(s.ops) == 0 {
			bad(s.line, "section %q has no Method/Path table", s.title)
		}
	}
	return sections, errs
}

// apiTarget is an api.md table row resolved in the OpenAPI document.
type apiTarget struct {
	key     string // "get /keys/", as TestOpenAPIResponsesMatchHandlers names it
	oasPath string
	op      *framework.OASOperation
	// fields are the operation's request fields and where they go: "path",
	// "query" or "body". Vault's own "list" query parameter of a LIST is
	// not one.
	fields map[string]string
	// route is the framework path, for the fields' types and defaults.
	route *framework.Path
}

// resolveAPIRow finds the operation row documents. api.md writes the
// mount as /jwt and parameters as :name; the OpenAPI document has neither
// the mount nor a LIST method: a LIST is a GET of the path with a trailing
// slash and Vault's query parameter list=true.
func resolveAPIRow(tb *testBackend, doc *framework.OASDocument, row apiRow) (*apiTarget, error) {
	rest, ok := strings.CutPrefix(row.path, "/jwt/")
	if !ok {
		return nil, fmt.Errorf("the path does not start with the mount, /jwt/")
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			segs[i] = "{" + name + "}"
		}
	}
	oasPath := "/" + strings.Join(segs, "/")
	var method string
	switch row.method {
	case "GET", "POST", "DELETE":
		method = strings.ToLower(row.method)
	case "LIST":
		method, oasPath = "get", oasPath+"/"
	default:
		return nil, fmt.Errorf("method %s: api.md documents GET, LIST, POST and DELETE", row.method)
	}
	item := doc.Paths[oasPath]
	if item == nil {
		for _, p := range slices.Sorted(maps.Keys(doc.Paths)) {
			if apiPathParam.ReplaceAllString(p, "{}") == apiPathParam.ReplaceAllString(oasPath, "{}") {
				return nil, fmt.Errorf("the engine's path is %s, not %s: name its parameters as it does", p, oasPath)
			}
		}
		return nil, fmt.Errorf("no path %s in the OpenAPI document", oasPath)
	}
	ops := oasOperations(item)
	op := ops[method]
	if op == nil {
		return nil, fmt.Errorf("%s has no %s operation, only %v", oasPath, strings.ToUpper(method), slices.Sorted(maps.Keys(ops)))
	}
	target := &apiTarget{key: method + " " + oasPath, oasPath: oasPath, op: op, fields: map[string]string{}}
	for _, p := range item.Parameters {
		target.fields[p.Name] = p.In
	}
	list := false
	for _, p := range op.Parameters {
		if p.In == "query" && p.Name == "list" {
			list = true // Vault's marker of a LIST
			continue
		}
		target.fields[p.Name] = p.In
	}
	if list != (row.method == "LIST") {
		return nil, fmt.Errorf("documented as %s, but the OpenAPI operation %s list=true", row.method, map[bool]string{true: "takes", false: "does not take"}[list])
	}
	if op.RequestBody != nil {
		body := oasSchema(doc, op.RequestBody.Content["application/json"].Schema)
		for name := range body.Properties {
			target.fields[name] = "body"
		}
	}
	concrete := apiPathParam.ReplaceAllString(strings.TrimPrefix(oasPath, "/"), "$1")
	if target.route = tb.Route(concrete); target.route == nil {
		return nil, fmt.Errorf("no framework path routes %q", concrete)
	}
	return target, nil
}

// TestAPIDocMatchesPaths holds docs/api.md to the paths:
//
//   - every (method, path) of a Method/Path table is an operation of the
//     OpenAPI document, and every operation there is in api.md;
//   - a section's "### Parameters" names exactly the request fields of its
//     operations (path parameters, query parameters, body fields), each
//     with the type word apiDocTypes gives its field type, and the field's
//     default (see apiDefaultMismatch);
//   - a sample payload sends only request fields, which the engine's own
//     field check accepts;
//   - a sample response is Vault's envelope, {"data": {...}}, whose members
//     are response fields the document declares, of the declared JSON type
//     (TestOpenAPIResponsesMatchHandlers ties those to the handlers); the
//     raw bodies (JWKS, discovery) are not in an envelope;
//   - every sample response, raw bodies included, is like the real
//     responses of its operation, to every depth (apiSampleMismatches):
//     the real ones are those of oasCalls, the calls
//     TestOpenAPIResponsesMatchHandlers makes, and apiDocMoreCalls.
func TestAPIDocMatchesPaths(t *testing.T) {
	text, err := os.ReadFile(apiDocFile)
	if err != nil {
		t.Fatal(err)
	}
	sections, errs := parseAPIDoc(string(text))
	for _, e := range errs {
		t.Error(e)
	}
	if len(sections) < 20 {
		t.Fatalf("api.md: only %d sections found", len(sections))
	}
	tb, doc, l := oasCalls(t)
	apiDocMoreCalls(t, l)
	actual := apiRealResponses(t, l.calls)

	documented := map[string]string{}
	usedDefaults := map[string]bool{}
	targets := map[*apiSection][]*apiTarget{}
	byAnchor := map[string]*apiSection{}
	for _, sec := range sections {
		byAnchor[apiAnchor(sec.title)] = sec
		for _, row := range sec.ops {
			where := fmt.Sprintf("api.md:%d: %s %s", row.line, row.method, row.path)
			target, err := resolveAPIRow(tb, doc, row)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if prev, dup := documented[target.key]; dup {
				t.Errorf("%s: documented twice, also at %s", where, prev)
			}
			documented[target.key] = where
			targets[sec] = append(targets[sec], target)
			checkAPIParams(t, sec, row, target, usedDefaults)
			checkAPISamples(t, doc, sec, row, target, actual[target.key])
		}
	}
	// "The same body as [Read key](#read-key)": the operations declare the
	// same response fields.
	for _, sec := range sections {
		for _, ref := range sec.sameAs {
			other := byAnchor[ref.anchor]
			if other == nil {
				t.Errorf("api.md:%d: no section #%s", ref.line, ref.anchor)
				continue
			}
			for _, a := range targets[sec] {
				for _, b := range targets[other] {
					if msg := apiSameFields(doc, a.op, b.op); msg != "" {
						t.Errorf("api.md:%d: %s: \"the same body as\" %s (%s), but %s", ref.line, a.key, other.title, b.key, msg)
					}
				}
			}
		}
	}
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		ops := oasOperations(doc.Paths[path])
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			if documented[method+" "+path] == "" {
				t.Errorf("%s %s (%s): not in api.md", strings.ToUpper(method), path, ops[method].OperationID)
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(apiHandlerDefaults)) {
		if !usedDefaults[key] {
			t.Errorf("apiHandlerDefaults[%q]: no such parameter in api.md", key)
		}
	}
}

// apiAnchor is the anchor GitHub gives a heading: "Create/update key" is
// #createupdate-key.
func apiAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// apiSameFields says how the response fields of a and b differ, or "".
func apiSameFields(doc *framework.OASDocument, a, b *framework.OASOperation) string {
	names := func(op *framework.OASOperation) []string {
		if s := oasResponseSchema(doc, op); s != nil {
			return slices.Sorted(maps.Keys(s.Properties))
		}
		return nil
	}
	na, nb := names(a), names(b)
	if slices.Equal(na, nb) {
		return ""
	}
	return fmt.Sprintf("its response fields are %v, and those are %v", na, nb)
}

// checkAPIParams compares sec's parameter list with target's request
// fields.
func checkAPIParams(t *testing.T, sec *apiSection, row apiRow, target *apiTarget, usedDefaults map[string]bool) {
	op := row.method + " " + row.path
	seen := map[string]bool{}
	for _, p := range sec.params {
		types, known := apiDocTypes[p.typ]
		if !known {
			t.Errorf("api.md:%d: type %q is not one of api.md's type words (apiDocTypes)", p.line, p.typ)
		}
		for _, name := range p.names {
			if seen[name] {
				t.Errorf("api.md:%d: %s: parameter %q listed twice", p.line, op, name)
			}
			seen[name] = true
			f := target.route.Fields[name]
			if target.fields[name] == "" || f == nil {
				t.Errorf("api.md:%d: %s: parameter %q is not a request field of %s (%s)", p.line, op, name, target.key, target.op.OperationID)
				continue
			}
			if known && !slices.Contains(types, f.Type) {
				t.Errorf("api.md:%d: %s: parameter %q is documented as %q, but the field is a %s", p.line, op, name, p.typ, f.Type)
			}
			key := op + " " + name
			if want, ok := apiHandlerDefaults[key]; ok {
				usedDefaults[key] = true
				switch {
				case f.Default != nil:
					t.Errorf("api.md:%d: %s: parameter %q: the field has a Default now (%v): document it and drop it from apiHandlerDefaults", p.line, op, name, f.Default)
				case f.Required:
					t.Errorf("api.md:%d: %s: parameter %q: the field is Required: document <required> and drop it from apiHandlerDefaults", p.line, op, name)
				case p.deflt != want:
					t.Errorf("api.md:%d: %s: parameter %q: default %s, but apiHandlerDefaults says %s", p.line, op, name, p.deflt, want)
				}
				continue
			}
			if msg := apiDefaultMismatch(f, p.deflt); msg != "" {
				t.Errorf("api.md:%d: %s: parameter %q: %s", p.line, op, name, msg)
			}
		}
	}
	at := sec.paramsLine
	if at == 0 {
		at = row.line
	}
	for _, name := range slices.Sorted(maps.Keys(target.fields)) {
		if !seen[name] {
			t.Errorf("api.md:%d: %s: request field %q (%s) of %s is not in the section's ### Parameters", at, op, name, target.fields[name], target.op.OperationID)
		}
	}
}

// apiDefaultMismatch says how default, as api.md gives it, disagrees with
// field f, or "". The conventions:
//
//   - <required>: the field is Required (every path parameter is), and
//     only then;
//   - <required for …>: required in some cases (a provider, a new role);
//     the field is neither Required nor has a Default;
//   - otherwise the field's Default, or its type's zero value without one:
//     a string as a quoted JSON string ("" for none); an int in decimal; a
//     bool as true or false; a duration as 0 or a quoted Go duration in
//     whole units ("5m", "24h"); an empty list as []; an empty object as {}.
//
// Other types, and non-empty list or object defaults, have no convention;
// defaults a handler works out are in apiHandlerDefaults.
func apiDefaultMismatch(f *framework.FieldSchema, deflt string) string {
	required := deflt == "<required>"
	conditional := strings.HasPrefix(deflt, "<required for ") && strings.HasSuffix(deflt, ">")
	switch {
	case f.Required && !required:
		return fmt.Sprintf("default %s, but the field is Required: document <required>", deflt)
	case required && !f.Required:
		return "documented <required>, but the field is not Required (one required only in some cases is <required for …>)"
	case required:
		return ""
	case conditional && f.Default != nil:
		return fmt.Sprintf("documented %s, but the field has a Default, %v", deflt, f.Default)
	case conditional:
		return ""
	}
	want, err := apiDocDefault(f)
	switch {
	case err != nil:
		return err.Error()
	case deflt != want:
		return fmt.Sprintf("default %s, but the field's is %s", deflt, want)
	}
	return ""
}

// apiDocDefault is f's Default (or its type's zero value) as api.md writes
// it; see apiDefaultMismatch.
func apiDocDefault(f *framework.FieldSchema) (string, error) {
	v := f.DefaultOrZero()
	switch f.Type {
	case framework.TypeString:
		return strconv.Quote(v.(string)), nil
	case framework.TypeInt, framework.TypeInt64, framework.TypeBool:
		return fmt.Sprint(v), nil
	case framework.TypeDurationSecond:
		d := time.Duration(0)
		if f.Default != nil {
			var err error
			if d, err = parseutil.ParseDurationSecond(f.Default); err != nil {
				return "", fmt.Errorf("the field's Default %v is not a duration: %v", f.Default, err)
			}
		}
		if d == 0 {
			return "0", nil
		}
		s := d.String() // "24h0m0s": drop the zero units
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return strconv.Quote(s), nil
	case framework.TypeCommaStringSlice:
		if len(v.([]string)) == 0 {
			return "[]", nil
		}
	case framework.TypeMap:
		if len(v.(map[string]any)) == 0 {
			return "{}", nil
		}
	}
	return "", fmt.Errorf("api.md has no convention for a %s field's default %v: add it to apiHandlerDefaults", f.Type, v)
}

// checkAPISamples checks sec's sample payloads and responses against
// target.
func checkAPISamples(t *testing.T, doc *framework.OASDocument, sec *apiSection, row apiRow, target *apiTarget, actual []any) {
	op := row.method + " " + row.path
	for _, js := range sec.payloads {
		obj, err := decodeAPIJSON(js.text)
		if err != nil {
			t.Errorf("api.md:%d: %s: sample payload: %v", js.line, op, err)
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(obj)) {
			if in := target.fields[name]; in != "body" && in != "query" {
				t.Errorf("api.md:%d: %s: sample payload member %q is not a request field of %s", js.line, op, name, target.op.OperationID)
			}
		}
		if err := checkFields(target.route.Fields, target.route.Pattern, obj); err != nil {
			t.Errorf("api.md:%d: %s: sample payload: %v", js.line, op, err)
		}
	}
	for _, js := range sec.responses {
		obj, err := decodeAPIJSON(js.text)
		if err != nil {
			t.Errorf("api.md:%d: %s: sample response: %v", js.line, op, err)
			continue
		}
		if len(actual) == 0 {
			t.Errorf("api.md:%d: %s: sample response, but no call of %s to compare it with: add one to apiDocMoreCalls", js.line, op, target.key)
			continue
		}
		if rawBodyPaths[target.oasPath] {
			if _, ok := obj["data"]; ok {
				t.Errorf("api.md:%d: %s: the response is a raw body, but the sample has Vault's \"data\"", js.line, op)
			}
			for _, msg := range apiSampleMismatches("body", "", obj, actual) {
				t.Errorf("api.md:%d: %s: sample response: %s", js.line, op, msg)
			}
			continue
		}
		data, ok := obj["data"].(map[string]any)
		if len(obj) != 1 || !ok {
			t.Errorf("api.md:%d: %s: sample response is not Vault's envelope, {\"data\": {...}}", js.line, op)
			continue
		}
		s := oasResponseSchema(doc, target.op)
		if s == nil {
			t.Errorf("api.md:%d: %s: sample response, but %s declares no response fields", js.line, op, target.op.OperationID)
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(data)) {
			prop := s.Properties[name]
			if prop == nil {
				t.Errorf("api.md:%d: %s: sample response field %q is not a response field of %s (it declares %v)",
					js.line, op, name, target.op.OperationID, slices.Sorted(maps.Keys(s.Properties)))
				continue
			}
			if msg := oasTypeMismatch(prop, data[name]); msg != "" {
				t.Errorf("api.md:%d: %s: sample response field %q: %s", js.line, op, name, msg)
			}
		}
		for _, msg := range apiSampleMismatches("data", "", data, actual) {
			t.Errorf("api.md:%d: %s: sample response: %s", js.line, op, msg)
		}
	}
}

// decodeAPIJSON decodes a sample: one JSON object, numbers as json.Number.
func decodeAPIJSON(text string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return obj, nil
}

// apiDocMoreCalls are the calls, beyond oasCalls, that make what api.md's
// samples show: the sample payload's jwks_max_age of 5m, config/aws's
// statistics of a KMS governor in use, and an EdDSA key in the JWKS beside
// the others.
func apiDocMoreCalls(t *testing.T, l *oasCallLog) {
	t.Helper()
	l.write(t, "/config", "config", map[string]any{"jwks_max_age": "5m"})
	// oasCalls deletes config/aws last, and reads it before a KMS call.
	l.write(t, "/config/aws", "config/aws", map[string]any{
		"access_key": "AKIDTEST", "secret_key": testSecretKey, "region": "us-east-1", "endpoint": l.endpoint,
	})
	l.write(t, "/issue/{role}", "issue/plain", nil) // signs with the awskms key
	l.read(t, "/config/aws", "config/aws", nil)
	l.write(t, "/keys/{name}", "keys/ed", map[string]any{"algorithm": "EdDSA"})
	l.read(t, "/jwks", "jwks", nil)
	l.read(t, "/.well-known/keys", ".well-known/keys", nil)
}

// apiRealResponses are the responses of calls as a client decodes them
// (numbers as json.Number), by operation ("get /keys/{name}"): the data of
// Vault's envelope, or the decoded raw body.
func apiRealResponses(t *testing.T, calls []oasCall) map[string][]any {
	t.Helper()
	actual := map[string][]any{}
	for _, c := range calls {
		if c.resp == nil {
			continue
		}
		key := c.method + " " + c.oasPath
		if !rawBodyPaths[c.oasPath] {
			actual[key] = append(actual[key], jsonRoundTrip(t, c.resp.Data))
			continue
		}
		body, ok := c.resp.Data[logical.HTTPRawBody].([]byte)
		if !ok {
			t.Fatalf("%s %s: raw body is a %T", c.op, c.path, c.resp.Data[logical.HTTPRawBody])
		}
		obj, err := decodeAPIJSON(string(body))
		if err != nil {
			t.Fatalf("%s %s: raw body: %v", c.op, c.path, err)
		}
		actual[key] = append(actual[key], obj)
	}
	return actual
}

// apiValueMembers are the sample members compared by value, and why: each
// takes its values from a closed set, or is a setting of the engine's
// configuration (jwt/config, jwt/config/aws), whose samples show the
// defaults (or, for jwks_max_age, values the calls also set). The sample's
// value must be one some real response has at the same place; of an
// array, each item must be. Every boolean is compared too: a bool is a
// setting or a state, never random, and the calls give both values where
// api.md shows both.
//
// Every other value is compared by JSON type only: names (of keys, roles,
// regions, issuers), kids, key material (x, y, n, e), times (created_at,
// exp, before), jtis, role tags, tokens, error texts, counters and version
// numbers differ from one backend to the next, and a key's or role's
// settings (ttl, typ, verification_ttl, ...), and what a request chooses
// (expires_in), are whatever the sample's caller chose.
var apiValueMembers = map[string]string{
	"state":         "a key version's state: next, current or previous",
	"algorithm":     "a key's JWS algorithm, from the signer's table",
	"alg":           "the JWS algorithm of a JWK, a token or a key, from the signer's table",
	"provider":      "local or awskms",
	"kty":           "the JWK key type the algorithm implies",
	"crv":           "the JWK curve the algorithm implies",
	"use":           `a JWK's use: always "sig"`,
	"revoked":       "what a revocation covers: jti, subject or role",
	"breaker_state": "a KMS governor's circuit breaker: closed, open or half-open",
	// The discovery document's fixed lists.
	"response_types_supported":              "fixed by the engine",
	"subject_types_supported":               "fixed by the engine",
	"id_token_signing_alg_values_supported": "the signer's algorithms",
	// The configuration's settings.
	"jwks_max_age":            "jwt/config: the JWKS Cache-Control max-age",
	"max_requests_per_second": "jwt/config/aws: its default",
	"max_concurrency":         "jwt/config/aws: its default",
	"call_timeout":            "jwt/config/aws: its default",
	"max_attempts":            "jwt/config/aws: its default",
	"breaker_cooldown":        "jwt/config/aws: its default",
}

// apiSampleMismatches compares sample, at path in a sample response (its
// member name name, "" for none), with reals, the values at the same path
// in the real responses of its operation, and says how they differ:
//
//   - sample must have the JSON type of some real value (a null sample is
//     null in some real response);
//   - every member of an object must be a member of some real object at
//     the same path, and is compared with the real values there;
//   - an object keyed by data, not by names the code chooses, is one
//     wildcard level, shown as path["name"]: each of its members is
//     compared with every member of every real object there. An object is
//     keyed by data when, in the real responses, every member of it is an
//     object: a collection of records by a name the data gives (a key's
//     versions by number, config/aws's kms by "<region> <endpoint>"); a
//     record with fixed names (a JWK, revocations' total) has scalars.
//     So does a map of scalars (a token's claims, a role's claims): its
//     names are compared as fixed names, and a sample's must be ones the
//     calls use (iss, sub, exp; the docs' "team" and "scope");
//   - the items of an array are compared with every item of the real
//     arrays there (so a sample's items need a real non-empty array);
//   - a scalar is compared by value if apiValueMembers names it or it is a
//     boolean: it must equal some real value; otherwise by type only.
func apiSampleMismatches(path, name string, sample any, reals []any) []string {
	kind := jsonKind(sample)
	var same []any
	kinds := map[string]bool{}
	for _, r := range reals {
		kinds[jsonKind(r)] = true
		if jsonKind(r) == kind {
			same = append(same, r)
		}
	}
	if len(same) == 0 {
		return []string{fmt.Sprintf("%s is %s %s, but the real responses have %s there",
			path, kind, apiShort(sample), strings.Join(slices.Sorted(maps.Keys(kinds)), " or "))}
	}
	var msgs []string
	switch v := sample.(type) {
	case map[string]any:
		if apiKeyedByData(same) {
			var members []any
			for _, r := range same {
				for _, k := range slices.Sorted(maps.Keys(r.(map[string]any))) {
					members = append(members, r.(map[string]any)[k])
				}
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				msgs = append(msgs, apiSampleMismatches(fmt.Sprintf("%s[%q]", path, k), "", v[k], members)...)
			}
			return msgs
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			var at []any
			names := map[string]bool{}
			for _, r := range same {
				for n, x := range r.(map[string]any) {
					names[n] = true
					if n == k {
						at = append(at, x)
					}
				}
			}
			if len(at) == 0 {
				msgs = append(msgs, fmt.Sprintf("%s.%s: no real response has this member; they have %v",
					path, k, slices.Sorted(maps.Keys(names))))
				continue
			}
			msgs = append(msgs, apiSampleMismatches(path+"."+k, k, v[k], at)...)
		}
	case []any:
		var items []any
		for _, r := range same {
			items = append(items, r.([]any)...)
		}
		if len(v) > 0 && len(items) == 0 {
			return []string{fmt.Sprintf("%s has items, but the real responses' arrays there are all empty", path)}
		}
		for i, item := range v {
			msgs = append(msgs, apiSampleMismatches(fmt.Sprintf("%s[%d]", path, i), name, item, items)...)
		}
	default:
		if _, ok := apiValueMembers[name]; !ok && kind != "boolean" {
			return nil
		}
		values := map[string]bool{}
		for _, r := range same {
			values[apiShort(r)] = true
		}
		if !values[apiShort(sample)] {
			msgs = append(msgs, fmt.Sprintf("%s is %s, but the real responses have only %s there",
				path, apiShort(sample), strings.Join(slices.Sorted(maps.Keys(values)), ", ")))
		}
	}
	return msgs
}

// apiKeyedByData says whether objects, the real objects at one path, are
// keyed by data: some has members, and every member of every one is an
// object.
func apiKeyedByData(objects []any) bool {
	some := false
	for _, o := range objects {
		for _, m := range o.(map[string]any) {
			if _, ok := m.(map[string]any); !ok {
				return false
			}
			some = true
		}
	}
	return some
}

// apiShort is v as JSON, cut short for a message.
func apiShort(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}
