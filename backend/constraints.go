package backend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ryanuber/go-glob"
)

// claimConstraint limits the values a caller may give one claim: a glob
// for strings, or a small subset of JSON Schema (type, enum, pattern,
// max_length). Every rule given must hold.
type claimConstraint struct {
	Glob      string `json:"glob,omitempty"`
	Type      string `json:"type,omitempty"`
	Enum      []any  `json:"enum,omitempty"`
	Pattern   string `json:"pattern,omitempty"`
	MaxLength int    `json:"max_length,omitempty"`

	re *regexp.Regexp
}

var constraintTypes = []string{"string", "number", "integer", "boolean", "array", "object"}

// parseConstraints reads claim_constraints: claim name → a glob string or a
// rule object. Unknown rule names are refused, so a typo cannot silently
// turn a rule off.
func parseConstraints(raw map[string]any) (map[string]*claimConstraint, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	out := make(map[string]*claimConstraint, len(raw))
	for name, v := range raw {
		c := &claimConstraint{}
		switch t := v.(type) {
		case string:
			c.Glob = t
		case map[string]any:
			enc, err := json.Marshal(t)
			if err != nil {
				return nil, err
			}
			dec := json.NewDecoder(bytes.NewReader(enc))
			dec.DisallowUnknownFields()
			dec.UseNumber()
			if err := dec.Decode(c); err != nil {
				return nil, fmt.Errorf(`invalid "claim_constraints": claim %q: %v (rules are glob, type, enum, pattern, max_length)`, name, err)
			}
		default:
			return nil, fmt.Errorf(`invalid "claim_constraints": claim %q: want a glob string or an object of rules, not %T`, name, v)
		}
		if err := c.compile(); err != nil {
			return nil, fmt.Errorf(`invalid "claim_constraints": claim %q: %v`, name, err)
		}
		out[name] = c
	}
	return out, nil
}

func (c *claimConstraint) compile() error {
	if c.Type != "" && !slices.Contains(constraintTypes, c.Type) {
		return fmt.Errorf("type %q is not one of %s", c.Type, strings.Join(constraintTypes, ", "))
	}
	if c.MaxLength < 0 {
		return fmt.Errorf("max_length must not be negative")
	}
	if c.Glob == "" && c.Type == "" && c.Enum == nil && c.Pattern == "" && c.MaxLength == 0 {
		return fmt.Errorf("no rule given")
	}
	if c.Pattern != "" {
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return fmt.Errorf("pattern: %v", err)
		}
		c.re = re
	}
	return nil
}

// validateConstraints is parseConstraints for a role being written: it
// also refuses rules that no value could meet or that could never apply,
// which are mistakes (an empty enum refuses every value; max_length on an
// integer checks nothing). A role stored before these checks still loads.
func validateConstraints(raw map[string]any) error {
	parsed, err := parseConstraints(raw)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(parsed)) { // the same error every time
		if err := parsed[name].sensible(); err != nil {
			return fmt.Errorf(`invalid "claim_constraints": claim %q: %v`, name, err)
		}
	}
	return nil
}

func (c *claimConstraint) sensible() error {
	if c.Enum != nil && len(c.Enum) == 0 {
		return fmt.Errorf("enum must list at least one value; an empty enum refuses every value")
	}
	if c.Type != "" && c.Type != "string" {
		switch {
		case c.Glob != "":
			return fmt.Errorf("glob applies to strings, not type %s", c.Type)
		case c.Pattern != "":
			return fmt.Errorf("pattern applies to strings, not type %s", c.Type)
		case c.MaxLength != 0 && c.Type != "array":
			return fmt.Errorf("max_length applies to strings and arrays, not type %s", c.Type)
		}
	}
	return nil
}

// check reports why v breaks the constraint, or nil.
func (c *claimConstraint) check(v any) error {
	s, isString := v.(string)
	if c.Glob != "" && (!isString || !glob.Glob(c.Glob, s)) {
		return fmt.Errorf("must be a string matching %q", c.Glob)
	}
	if c.Type != "" && jsonType(v) != c.Type && !(c.Type == "number" && jsonType(v) == "integer") {
		return fmt.Errorf("must be of type %s, not %s", c.Type, jsonType(v))
	}
	if c.Enum != nil {
		enc, _ := json.Marshal(v)
		ok := false
		for _, e := range c.Enum {
			if ee, _ := json.Marshal(e); bytes.Equal(ee, enc) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("must be one of the role's enum values")
		}
	}
	if c.re != nil && (!isString || !c.re.MatchString(s)) {
		return fmt.Errorf("must be a string matching the pattern %q", c.Pattern)
	}
	if c.MaxLength > 0 {
		switch t := v.(type) {
		case string:
			if utf8.RuneCountInString(t) > c.MaxLength {
				return fmt.Errorf("longer than %d characters", c.MaxLength)
			}
		case []any:
			if len(t) > c.MaxLength {
				return fmt.Errorf("more than %d items", c.MaxLength)
			}
		}
	}
	return nil
}

// jsonType names a decoded JSON value's type, as JSON Schema does.
func jsonType(v any) string {
	switch t := v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		if strings.ContainsAny(t.String(), ".eE") {
			return "number"
		}
		return "integer"
	case float64:
		if t == float64(int64(t)) {
			return "integer"
		}
		return "number"
	case int, int64:
		return "integer"
	case []any, []string:
		return "array"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
