package signer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrJSONTrailing is DecodeJSON's error for anything but white space after
// the value.
var ErrJSONTrailing = errors.New("data after the JSON value")

// JSONSyntaxError is input DecodeJSON cannot read as JSON.
type JSONSyntaxError struct{ Err error }

func (e JSONSyntaxError) Error() string { return e.Err.Error() }

// DecodeJSON decodes data as exactly one JSON value, numbers as
// json.Number, so large integers keep every digit. It is the one strict
// JSON reader for untrusted input: token headers and claims at verify, and
// the JSON strings callers send to issue and roles. It refuses, where
// encoding/json accepts:
//   - bytes that are not UTF-8 (encoding/json replaces them);
//   - an object that repeats a member name, at any depth: encoding/json
//     keeps the last, other parsers the first, so a policy check and a
//     token's reader could see different values (the error names the
//     member);
//   - anything but white space after the value (ErrJSONTrailing).
//
// Syntax errors are a JSONSyntaxError. It does not recurse, so nesting
// depth costs memory in proportion to the input, not stack.
func DecodeJSON(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, JSONSyntaxError{errors.New("not UTF-8")}
	}
	type frame struct {
		obj    map[string]any
		arr    []any
		isArr  bool
		key    string
		hasKey bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
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
			return nil, ErrJSONTrailing
		case err == io.EOF:
			return nil, JSONSyntaxError{io.ErrUnexpectedEOF}
		case err != nil:
			return nil, JSONSyntaxError{err}
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

// JSONKind names the JSON type of a value DecodeJSON returned, for error
// messages ("must be a JSON object, not an array").
func JSONKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
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
