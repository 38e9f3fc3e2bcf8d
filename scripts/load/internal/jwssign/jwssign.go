// Package jwssign signs as a JWS signer does, for the load harness and its
// floor plugin: both must produce the same kind of signature, so both use
// this one function.
package jwssign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
)

// Sign signs msg: SHA-256 then ECDSA P-256 as fixed-width R‖S, pure
// Ed25519 over msg, or RSA PKCS #1 v1.5 over SHA-256.
func Sign(key crypto.Signer, msg []byte) ([]byte, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(msg)
		r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			return nil, err
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out, nil
	case ed25519.PrivateKey:
		return ed25519.Sign(k, msg), nil
	case *rsa.PrivateKey:
		h := sha256.Sum256(msg)
		return rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
}
