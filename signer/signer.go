// Package signer defines how this project signs JWTs: the Signer contract
// every key provider implements, the one table of JWS algorithms, a strict
// verifier, and the JOSE encodings (JWK, compact JWS, ECDSA R‖S).
//
// It imports nothing from Vault; providers live in subpackages
// (signer/local, ...), and signer/signertest is the conformance suite each
// of them must pass.
package signer

import (
	"context"
	"crypto"
	"errors"
)

// Signer signs JWS signing inputs with one key version.
type Signer interface {
	// Algorithm is the JWS "alg" this signer produces, from the table.
	Algorithm() Algorithm
	// KeyID is the JWS "kid" verifiers use to find Public in the JWKS.
	KeyID() string
	// Public returns the public key. It does no I/O: providers resolve it
	// when the signer is built.
	Public() crypto.PublicKey
	// Sign returns the JWS signature of signingInput (the ASCII bytes
	// "b64(header).b64(payload)") in JWS form: R‖S for ECDSA, the raw
	// signature otherwise. Providers that make network calls honour ctx.
	// Sign must not keep signingInput after it returns: callers reuse
	// the buffer.
	Sign(ctx context.Context, signingInput []byte) ([]byte, error)
}

// Sentinel errors; callers test them with errors.Is.
var (
	ErrUnknownAlgorithm = errors.New("unknown algorithm")
	ErrKeyMismatch      = errors.New("key does not match algorithm")
	ErrInvalidSignature = errors.New("invalid signature")
	ErrMalformed        = errors.New("malformed input")
)
