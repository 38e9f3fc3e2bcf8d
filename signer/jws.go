package signer

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
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
	bp := inputPool.Get().(*[]byte)
	buf := append((*bp)[:0], header...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, payload)
	sig, err := s.Sign(ctx, buf)
	var token string
	if err == nil {
		buf = append(buf, '.')
		buf = b64.AppendEncode(buf, sig)
		token = string(buf)
	}
	if cap(buf) <= maxPooledInput {
		*bp = buf[:0]
		inputPool.Put(bp)
	}
	return token, err
}

// inputPool holds SignCompact's buffers. Signer.Sign does not keep its
// input, so a buffer is reused once the token is copied out of it.
var inputPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledInput keeps buffers of rare, very large tokens out of the pool.
const maxPooledInput = 16 << 10
