package signer

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeJSON(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // a substring of the error; "" for success
	}{
		{"object", `{"a":[1,{"b":null}],"c":"d"}`, ""},
		{"same name in sibling objects", `[{"a":1},{"a":1}]`, ""},
		{"same name at two depths", `{"a":{"a":1}}`, ""},
		{"scalar", ` 12345678901234567890 `, ""},
		{"repeated name", `{"a":1,"a":2}`, `repeats the member name "a"`},
		{"repeated nested name", `{"x":{"b":1,"b":2}}`, `repeats the member name "b"`},
		{"repeated name in an array's object", `[{"c":1,"c":1}]`, `repeats the member name "c"`},
		{"escaped repeat", `{"\u0061":1,"a":2}`, `repeats the member name "a"`},
		{"trailing value", `{} {}`, ErrJSONTrailing.Error()},
		{"trailing garbage", `[1] x`, ErrJSONTrailing.Error()},
		{"truncated", `{"a":`, "unexpected EOF"},
		{"not UTF-8", "\"\xff\"", "not UTF-8"},
		{"empty", ``, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := DecodeJSON([]byte(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("DecodeJSON(%q) = %v", tc.in, err)
				}
				var std any
				dec := json.NewDecoder(strings.NewReader(tc.in))
				dec.UseNumber()
				if err := dec.Decode(&std); err != nil || !reflect.DeepEqual(v, std) {
					t.Fatalf("DecodeJSON(%q) = %#v, encoding/json %#v (%v)", tc.in, v, std, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeJSON(%q) = %#v, %v; want an error with %q", tc.in, v, err, tc.want)
			}
		})
	}
}

// FuzzDecodeJSON: DecodeJSON reads token headers and claims at verify and
// JSON strings callers send. It must accept exactly what encoding/json
// accepts as one value, less invalid UTF-8, objects that repeat a member
// name and trailing data, decode it to the same value, and never panic.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `[{"a":1},{"a":1}]`, `{"a":1,"b":{"a":1}}`,
		`[1] [2]`, `{} x`, `1e999`, `"\u0000"`, `{"a":`, `[[[[[[[[]]]]]]]]`, ` null `, `{"\u0061":1,"a":2}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeJSON(data)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		stdErr := dec.Decode(&want)
		if stdErr == nil {
			if _, tokErr := dec.Token(); tokErr != io.EOF {
				stdErr = errors.New("trailing data")
			}
		}
		if err != nil {
			if stdErr == nil && utf8.Valid(data) && !strings.Contains(err.Error(), "repeats the member name") {
				t.Fatalf("refused %q, which encoding/json reads as one value: %v", data, err)
			}
			return
		}
		if stdErr != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", data, stdErr)
		}
		if !utf8.Valid(data) {
			t.Fatalf("accepted %q, which is not UTF-8", data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q decoded to %#v, encoding/json to %#v", data, got, want)
		}
		if hasDuplicateNames(t, data) {
			t.Fatalf("accepted %q, which repeats a member name", data)
		}
	})
}

// hasDuplicateNames reports whether the valid JSON s repeats a member name
// in any object, by comparing each object's member count with the size of
// the map encoding/json makes of it.
func hasDuplicateNames(t *testing.T, data []byte) bool {
	t.Helper()
	var walk func(raw json.RawMessage) bool
	walk = func(raw json.RawMessage) bool {
		switch strings.TrimLeft(string(raw), " \t\r\n")[0] {
		case '{':
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.Token()
			n := 0
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			for dec.More() {
				dec.Token()
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					t.Fatal(err)
				}
				if walk(v) {
					return true
				}
				n++
			}
			return n != len(m)
		case '[':
			var l []json.RawMessage
			if err := json.Unmarshal(raw, &l); err != nil {
				t.Fatal(err)
			}
			for _, v := range l {
				if walk(v) {
					return true
				}
			}
		}
		return false
	}
	return walk(json.RawMessage(data))
}
