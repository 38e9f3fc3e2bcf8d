package signer

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MaxTokenLength caps what ParseCompact reads, before any splitting or
// decoding.
const MaxTokenLength = 16 << 10

// Parsed is a compact JWS that passed ParseCompact. Its signature is not
// yet verified: find the key by Kid (never by a header that carries or
// points to a key), check that its algorithm is Alg, then Verify.
type Parsed struct {
	Alg          Algorithm
	Kid          string
	Typ          string
	Payload      []byte
	SigningInput []byte
	Signature    []byte
}

// Header parameters ParseCompact refuses. This engine never sets them, and
// a verifier that honours them can be pointed at an attacker's key: jwk,
// jku, x5u and x5c carry or locate a key; crit names extensions this
// verifier does not implement (RFC 7515 §4.1.11 says to reject); b64
// (RFC 7797) changes what is signed; enc and zip mean a JWE.
var refusedHeaders = []string{"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64", "enc", "zip"}

var strictB64 = base64.RawURLEncoding.Strict()

// ParseCompact parses a JWS in compact serialization strictly: at most
// MaxTokenLength bytes; exactly two dots (counted before splitting);
// unpadded base64url with no stray bits in every segment; a header that is
// a UTF-8 JSON object without duplicate names at any depth, whose "alg" is exactly one
// of the ten in the table (so "none" in any casing and HS* are unknown), and
// without the refusedHeaders. The payload is returned as decoded; see
// ParseClaims.
func ParseCompact(token string) (*Parsed, error) {
	if len(token) > MaxTokenLength {
		return nil, fmt.Errorf("%w: token is %d bytes, more than %d", ErrMalformed, len(token), MaxTokenLength)
	}
	if n := strings.Count(token, "."); n != 2 {
		return nil, fmt.Errorf("%w: compact JWS has exactly 2 dots, this has %d (JWE and JSON serialization are not accepted)", ErrMalformed, n)
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	if h == "" || s == "" {
		return nil, fmt.Errorf("%w: empty header or signature", ErrMalformed)
	}
	header, err := decodeSegment("header", h)
	if err != nil {
		return nil, err
	}
	payload, err := decodeSegment("payload", p)
	if err != nil {
		return nil, err
	}
	sig, err := decodeSegment("signature", s)
	if err != nil {
		return nil, err
	}
	members, err := jsonObject("header", header)
	if err != nil {
		return nil, err
	}
	for _, name := range refusedHeaders {
		if _, ok := members[name]; ok {
			return nil, fmt.Errorf("%w: header parameter %q is not accepted", ErrMalformed, name)
		}
	}
	out := &Parsed{Payload: payload, SigningInput: []byte(token[:len(h)+1+len(p)]), Signature: sig}
	var alg string
	if err := stringMember(members, "alg", &alg, true); err != nil {
		return nil, err
	}
	in, err := Lookup(alg)
	if err != nil {
		return nil, err
	}
	out.Alg = in.Alg
	if err := stringMember(members, "kid", &out.Kid, false); err != nil {
		return nil, err
	}
	if err := stringMember(members, "typ", &out.Typ, false); err != nil {
		return nil, err
	}
	return out, nil
}

func decodeSegment(name, seg string) ([]byte, error) {
	b, err := DecodeBase64URL(seg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not unpadded base64url: %v", ErrMalformed, name, err)
	}
	return b, nil
}

// notBase64URL is the index of the first byte of s outside the base64url
// alphabet (A-Z a-z 0-9 - _), or -1.
func notBase64URL(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return i
		}
	}
	return -1
}

// DecodeBase64URL decodes s as unpadded base64url, strictly: only the
// alphabet's bytes (encoding/base64 would skip line breaks), no padding,
// no stray bits. One spelling per value.
func DecodeBase64URL(s string) ([]byte, error) {
	if i := notBase64URL(s); i >= 0 {
		return nil, fmt.Errorf("byte %d is not in the base64url alphabet", i)
	}
	return strictB64.DecodeString(s)
}

func stringMember(m map[string]any, name string, dst *string, required bool) error {
	v, ok := m[name]
	if !ok {
		if required {
			return fmt.Errorf("%w: header has no %q", ErrMalformed, name)
		}
		return nil
	}
	str, ok := v.(string)
	if !ok {
		return fmt.Errorf("%w: header %q is not a string", ErrMalformed, name)
	}
	*dst = str
	return nil
}

// jsonObject decodes data with DecodeJSON as one JSON object: UTF-8, no
// member name repeated at any depth (verifiers disagree on which duplicate
// wins, so none is accepted), nothing after it.
func jsonObject(what string, data []byte) (map[string]any, error) {
	v, err := DecodeJSON(data)
	var syntax JSONSyntaxError
	switch {
	case errors.As(err, &syntax):
		return nil, fmt.Errorf("%w: %s is not JSON: %v", ErrMalformed, what, err)
	case errors.Is(err, ErrJSONTrailing):
		return nil, fmt.Errorf("%w: %s has data after the object", ErrMalformed, what)
	case err != nil: // a repeated name
		return nil, fmt.Errorf("%w: %s %v", ErrMalformed, what, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a JSON object but %s", ErrMalformed, what, JSONKind(v))
	}
	return obj, nil
}

// ParseClaims decodes a JWT payload strictly (see jsonObject), numbers
// kept as json.Number.
func ParseClaims(payload []byte) (map[string]any, error) {
	return jsonObject("claims", payload)
}
