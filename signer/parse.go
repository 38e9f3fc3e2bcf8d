package signer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
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
// a UTF-8 JSON object without duplicate names, whose "alg" is exactly one
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
	b, err := strictB64.DecodeString(seg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not unpadded base64url: %v", ErrMalformed, name, err)
	}
	return b, nil
}

func stringMember(m map[string]json.RawMessage, name string, dst *string, required bool) error {
	raw, ok := m[name]
	if !ok {
		if required {
			return fmt.Errorf("%w: header has no %q", ErrMalformed, name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: header %q is not a string", ErrMalformed, name)
	}
	return nil
}

// jsonObject decodes data as one UTF-8 JSON object whose member names do not
// repeat: verifiers disagree on which duplicate wins, so none is accepted.
func jsonObject(what string, data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, what)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: %s is not a JSON object", ErrMalformed, what)
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
		}
		name := tok.(string)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%w: %s repeats member %q", ErrMalformed, what, name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
		}
		out[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s has data after the object", ErrMalformed, what)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("%w: %s has data after the object", ErrMalformed, what)
	}
	return out, nil
}

// ParseClaims decodes a JWT payload strictly: one UTF-8 JSON object, no
// repeated names, numbers kept as json.Number.
func ParseClaims(payload []byte) (map[string]any, error) {
	members, err := jsonObject("claims", payload)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(members))
	for name, raw := range members {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: claim %q: %v", ErrMalformed, name, err)
		}
		out[name] = v
	}
	return out, nil
}
