package backend

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// tokenClaims are the claims of one token, in the order they are encoded:
// the engine's, then the role's pinned claims, then the caller's.
type tokenClaims struct {
	iss           string
	sub           string
	aud           []string
	iat, nbf, exp int64
	jti           string
	// pinned is the role's claims as JSON object members, without braces.
	pinned []byte
	// extra are the caller's claims.
	extra map[string]any
}

// appendJSON appends the JSON payload to buf. Every name appears once: validation
// keeps the engine's reserved names, the role's pinned names and the
// caller's names apart (validateClaims, role.validate and pathIssue), and
// TestIssuedClaimsHaveNoDuplicateNames holds that.
//
// It writes JSON by hand rather than marshalling a map: issuing is the hot
// path, and this keeps encoding to a small share of the signature's cost.
func (c *tokenClaims) appendJSON(buf []byte) ([]byte, error) {
	buf = append(buf, `{"iss":`...)
	buf = appendJSONString(buf, c.iss)
	if c.sub != "" {
		buf = append(buf, `,"sub":`...)
		buf = appendJSONString(buf, c.sub)
	}
	switch len(c.aud) {
	case 0:
	case 1:
		buf = append(buf, `,"aud":`...)
		buf = appendJSONString(buf, c.aud[0])
	default:
		buf = append(buf, `,"aud":[`...)
		for i, a := range c.aud {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, a)
		}
		buf = append(buf, ']')
	}
	buf = append(buf, `,"iat":`...)
	buf = strconv.AppendInt(buf, c.iat, 10)
	buf = append(buf, `,"nbf":`...)
	buf = strconv.AppendInt(buf, c.nbf, 10)
	buf = append(buf, `,"exp":`...)
	buf = strconv.AppendInt(buf, c.exp, 10)
	if c.jti != "" {
		buf = append(buf, `,"jti":`...)
		buf = appendJSONString(buf, c.jti)
	}
	if len(c.pinned) > 0 {
		buf = append(buf, ',')
		buf = append(buf, c.pinned...)
	}
	if len(c.extra) > 0 {
		members, err := objectMembers(c.extra)
		if err != nil {
			return nil, err
		}
		buf = append(buf, ',')
		buf = append(buf, members...)
	}
	return append(buf, '}'), nil
}

// objectMembers encodes m as JSON object members without the braces; nil
// for an empty map.
func objectMembers(m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	return raw[1 : len(raw)-1], nil
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it.
func appendJSONString(buf []byte, s string) []byte {
	if plainJSON(s) {
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	raw, _ := json.Marshal(s) // a string always encodes
	return append(buf, raw...)
}

// plainJSON reports whether s needs no escaping: printable ASCII other than
// '"', '\\' and the characters encoding/json escapes for HTML.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
