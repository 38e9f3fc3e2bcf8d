package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// checkFields converts every value in data that schema knows to its
// field's type, as the framework's FieldData.Validate does (with the same
// weak typing: numbers for strings, "true" for booleans, duration strings,
// comma-separated lists), and reports the first field, in name order, that
// does not convert. Unlike the framework's error, which quotes the value,
// its message names only the field and the type the field needs: a refresh
// token, a token or an AWS secret sent as a list or an object must never be
// echoed. Durations must also be whole seconds: the framework would
// truncate 1.9s to 1s, and 500ms to 0, silently.
//
// Fields the path's pattern captures from the URL are skipped: the
// framework replaces their values with the URL's.
//
// On success it costs the conversions themselves (the framework repeats
// them) and, for routed paths, one route lookup: about 0.7µs on verify.
func checkFields(schema map[string]*framework.FieldSchema, pattern string, data map[string]any) error {
	var bad []string
	fd := framework.FieldData{Raw: data, Schema: schema}
	for k, v := range data {
		s := schema[k]
		if s == nil {
			continue
		}
		if rule := fieldRule(&fd, k, s, v); rule != "" && !strings.Contains(pattern, "(?P<"+k+">") {
			bad = append(bad, k, rule)
		}
	}
	if bad == nil {
		return nil
	}
	first := 0
	for i := 2; i < len(bad); i += 2 {
		if bad[i] < bad[first] {
			first = i
		}
	}
	return fmt.Errorf("invalid %q: %s", bad[first], bad[first+1])
}

// fieldRule returns the rule value v of field k breaks, or "".
func fieldRule(fd *framework.FieldData, k string, s *framework.FieldSchema, v any) string {
	switch s.Type {
	case framework.TypeDurationSecond, framework.TypeSignedDurationSecond:
		return durationRule(s.Type, v)
	case framework.TypeInt, framework.TypeInt64:
		// The framework converts a float64 (what callers that do not
		// decode JSON numbers as json.Number send) by truncating it, and
		// one beyond int64 wraps: 1e30 became negative.
		if f, ok := v.(float64); ok && (f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64) {
			return typeRule(s.Type)
		}
		// Its weak typing reads a string with strconv.ParseInt in base 0,
		// so "010" is 8, "0x10" 16 and "1_000" 1000, and true is 1. Only
		// decimal strings are numbers here ("" stays the default, 0).
		switch x := v.(type) {
		case bool:
			return typeRule(s.Type)
		case string:
			if x != "" && !isDecimal(x) {
				return typeRule(s.Type)
			}
		}
	}
	if _, _, err := fd.GetOkErr(k); err != nil {
		return typeRule(s.Type)
	}
	return ""
}

// isDecimal reports whether s is an integer in plain decimal: an optional
// minus sign, then 0 or digits without a leading zero.
func isDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" || s[0] == '0' && len(s) > 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// durationRule checks a duration as the framework's TypeDurationSecond
// reads it (an integer number of seconds, a Go duration string, or an
// integer with the suffix d), and that it is a whole number of seconds.
func durationRule(t framework.FieldType, v any) string {
	const want = "must be a duration: whole seconds (90) or a number with a unit (90s, 10m, 24h)"
	if v == nil {
		return ""
	}
	d, err := parseutil.ParseDurationSecond(v)
	switch {
	case errors.Is(err, parseutil.ErrDurationMultiplicationOverflow):
		return want + ", and not this large"
	case err != nil:
		return want
	case t == framework.TypeDurationSecond && d < 0:
		return want + ", not negative"
	}
	frac := d%time.Second != 0
	switch f := v.(type) {
	case float64: // parseutil truncates a float to whole seconds
		frac = frac || f != math.Trunc(f)
	case float32:
		frac = frac || float64(f) != math.Trunc(float64(f))
	}
	if frac {
		return "must be a whole number of seconds"
	}
	return ""
}

// typeRule names what a field of type t must be.
func typeRule(t framework.FieldType) string {
	switch t {
	case framework.TypeString, framework.TypeLowerCaseString, framework.TypeNameString:
		return "must be a string"
	case framework.TypeBool:
		return "must be a boolean (true or false)"
	case framework.TypeInt, framework.TypeInt64:
		return "must be an integer"
	case framework.TypeFloat:
		return "must be a number"
	case framework.TypeMap:
		return "must be a JSON object"
	case framework.TypeSlice:
		return "must be a list"
	case framework.TypeStringSlice, framework.TypeCommaStringSlice:
		return "must be a string or a list of strings"
	case framework.TypeCommaIntSlice:
		return "must be a list of integers"
	}
	return "has the wrong type"
}

// routedFields checks req's fields against the schema of the path it
// routes to, as the framework would before calling the handler (it checks
// every operation but help); a 400 naming the field if one does not
// convert, nil otherwise.
func (b *backend) routedFields(req *logical.Request) *logical.Response {
	if len(req.Data) == 0 || req.Operation == logical.HelpOperation {
		return nil
	}
	p := b.Route(req.Path)
	if p == nil {
		return nil
	}
	if err := checkFields(p.Fields, p.Pattern, req.Data); err != nil {
		return logical.ErrorResponse(err.Error())
	}
	return nil
}

// viaFramework answers req through the framework's routing, after the
// engine's own field check.
func (b *backend) viaFramework(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if resp := b.routedFields(req); resp != nil {
		return resp, logical.ErrInvalidRequest
	}
	return b.Backend.HandleRequest(ctx, req)
}
