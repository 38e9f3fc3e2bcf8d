package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
)

// jsonObjectFields are the request fields, by path prefix, that hold a JSON
// object. Over HTTP they may arrive as an object; from the vault CLI
// (claims='{"team":"x"}') and from form-style clients, as a string.
var jsonObjectFields = map[string][]string{
	"roles/": {"claims", "claims_template", "claim_constraints"},
	"issue/": {"claims"},
}

// decodeJSONFields turns such string fields into objects in place, so the
// framework's TypeMap sees an object either way. It returns a 400 response
// naming the field when a value is not a JSON object or is too large, and
// nil otherwise.
func decodeJSONFields(req *logical.Request) *logical.Response {
	if len(req.Data) == 0 || req.Operation != logical.CreateOperation && req.Operation != logical.UpdateOperation {
		return nil
	}
	for prefix, fields := range jsonObjectFields {
		if !strings.HasPrefix(req.Path, prefix) {
			continue
		}
		for _, field := range fields {
			raw, ok := req.Data[field]
			if !ok || raw == nil {
				continue
			}
			switch v := raw.(type) {
			case map[string]any:
			case string:
				obj, err := parseJSONObject(v)
				if err != nil {
					return logical.ErrorResponse("invalid %q: %s", field, err)
				}
				req.Data[field] = obj
			default:
				return logical.ErrorResponse("invalid %q: must be a JSON object, not a %T", field, raw)
			}
		}
	}
	return nil
}

// withoutJSONFields returns a copy of req without its JSON-object fields,
// and whether there were any. req is left as it is.
func withoutJSONFields(req *logical.Request) (*logical.Request, bool) {
	for prefix, fields := range jsonObjectFields {
		if !strings.HasPrefix(req.Path, prefix) {
			continue
		}
		var data map[string]any
		for _, field := range fields {
			if _, ok := req.Data[field]; !ok {
				continue
			}
			if data == nil {
				data = maps.Clone(req.Data)
			}
			delete(data, field)
		}
		if data != nil {
			cp := *req
			cp.Data = data
			return &cp, true
		}
	}
	return nil, false
}

// parseJSONObject decodes s, which must be one JSON object of at most
// maxClaimsBytes, whose objects repeat no member name (see parseJSONValue).
// Numbers stay json.Number so large integers keep every digit. An empty
// string is an empty object.
func parseJSONObject(s string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	if len(s) > maxClaimsBytes {
		return nil, fmt.Errorf("%d bytes of JSON, more than the limit of %d", len(s), maxClaimsBytes)
	}
	v, err := parseJSONValue(s)
	var syntax jsonSyntaxError
	switch {
	case errors.As(err, &syntax):
		return nil, fmt.Errorf("must be a JSON object: %v", err)
	case errors.Is(err, errJSONTrailing):
		return nil, fmt.Errorf("must be a single JSON object, with nothing after it")
	case err != nil:
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a JSON object, not %s", jsonKind(v))
	}
	return obj, nil
}

// errJSONTrailing: parseJSONValue found more after the value.
var errJSONTrailing = errors.New("data after the JSON value")

// jsonSyntaxError is input parseJSONValue cannot read as JSON.
type jsonSyntaxError struct{ err error }

func (e jsonSyntaxError) Error() string { return e.err.Error() }

// parseJSONValue decodes s as exactly one JSON value, numbers as
// json.Number. It refuses, where encoding/json accepts:
//   - an object that repeats a member name, at any depth: encoding/json
//     keeps the last, other parsers the first, so a policy check and a
//     token's reader could see different values (errors name the member);
//   - anything but white space after the value (errJSONTrailing).
//
// Syntax errors are a jsonSyntaxError. It does not recurse, so nesting
// depth costs memory in proportion to the input, not stack.
//
// Only JSON that arrives as a string can repeat a name: Vault decodes a
// request's JSON body into maps before the plugin sees it, keeping the
// last of each name, so object-valued fields reach the engine without
// duplicates.
func parseJSONValue(s string) (any, error) {
	type frame struct {
		obj    map[string]any
		arr    []any
		isArr  bool
		key    string
		hasKey bool
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var (
		stack []*frame
		root  any
		done  bool
	)
	add := func(v any) {
		if len(stack) == 0 {
			root, done = v, true
			return
		}
		top := stack[len(stack)-1]
		if top.isArr {
			top.arr = append(top.arr, v)
			return
		}
		top.obj[top.key] = v
		top.hasKey = false
	}
	for {
		tok, err := dec.Token()
		switch {
		case done && err == io.EOF:
			return root, nil
		case done:
			return nil, errJSONTrailing
		case err == io.EOF:
			return nil, jsonSyntaxError{io.ErrUnexpectedEOF}
		case err != nil:
			return nil, jsonSyntaxError{err}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{obj: map[string]any{}})
			case '[':
				stack = append(stack, &frame{arr: []any{}, isArr: true})
			default: // '}' or ']': the decoder has checked they match
				top := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				if top.isArr {
					add(top.arr)
				} else {
					add(top.obj)
				}
			}
		default:
			if n := len(stack); n > 0 && !stack[n-1].isArr && !stack[n-1].hasKey {
				top := stack[n-1]
				name := t.(string) // the decoder only returns strings as names
				if _, dup := top.obj[name]; dup {
					return nil, fmt.Errorf("repeats the member name %q; each name may appear once in an object", name)
				}
				top.key, top.hasKey = name, true
				continue
			}
			add(t)
		}
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
