package signer

import (
	"context"
	"encoding/json"
	"fmt"
)

// EncodeHeader returns the base64url-encoded protected header
// {"alg","kid","typ"} for tokens signed by s; typ is left out when empty.
// The header depends only on the signer and typ, so callers may cache it.
func EncodeHeader(s Signer, typ string) (string, error) {
	raw, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ,omitempty"`
	}{string(s.Algorithm()), s.KeyID(), typ})
	if err != nil {
		return "", fmt.Errorf("encoding header: %w", err)
	}
	return b64.EncodeToString(raw), nil
}

// SignCompact returns the compact JWS (RFC 7515 §7.1)
// header.base64url(payload).base64url(signature), where header comes from
// EncodeHeader for the same signer. payload must be the JSON claims.
func SignCompact(ctx context.Context, s Signer, header string, payload []byte) (string, error) {
	in := s.Algorithm().Info()
	sigLen := in.SignatureSize
	if sigLen == 0 {
		sigLen = 512 // up to RSA-4096
	}
	n := len(header) + 1 + b64.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+b64.EncodedLen(sigLen))
	copy(buf, header)
	buf[len(header)] = '.'
	b64.Encode(buf[len(header)+1:], payload)
	sig, err := s.Sign(ctx, buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}
