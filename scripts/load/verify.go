package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// The checks verify with golang-jwt and a JWK parser of their own, not with
// the plugin's signer package, so they do not share its mistakes.

type jwkSet struct {
	Keys []struct {
		Kty string `json:"kty"`
		Kid string `json:"kid"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
		N   string `json:"n"`
		E   string `json:"e"`
	} `json:"keys"`
}

// publicKeys returns the set's P-256, Ed25519 and RSA keys by kid; other
// curves are skipped (the harness does not issue with them).
func (s jwkSet) publicKeys() (map[string]crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding
	out := map[string]crypto.PublicKey{}
	for _, k := range s.Keys {
		switch {
		case k.Kty == "EC" && k.Crv == "P-256":
			x, errX := b64.DecodeString(k.X)
			y, errY := b64.DecodeString(k.Y)
			if err := errors.Join(errX, errY); err != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("JWK %s: bad P-256 coordinates", k.Kid)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("JWK %s: %w", k.Kid, err)
			}
			out[k.Kid] = pub
		case k.Kty == "OKP" && k.Crv == "Ed25519":
			x, err := b64.DecodeString(k.X)
			if err != nil || len(x) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("JWK %s: bad Ed25519 key", k.Kid)
			}
			out[k.Kid] = ed25519.PublicKey(x)
		case k.Kty == "RSA":
			n, errN := b64.DecodeString(k.N)
			e, errE := b64.DecodeString(k.E)
			if err := errors.Join(errN, errE); err != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
				return nil, fmt.Errorf("JWK %s: bad RSA key", k.Kid)
			}
			out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		}
	}
	return out, nil
}

// verifyJWT checks tok's signature with the key keyFor gives for its kid,
// that its alg is alg, and its exp, nbf and iat.
func verifyJWT(tok, alg string, keyFor func(kid string) (crypto.PublicKey, error)) error {
	p := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	_, err := p.Parse(tok, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return keyFor(kid)
	})
	if err != nil {
		return fmt.Errorf("%s token does not verify: %w", alg, err)
	}
	return nil
}

// verifySig checks a JWS-form signature over msg.
func verifySig(alg string, pub crypto.PublicKey, msg, sig []byte) error {
	h := sha256.Sum256(msg)
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = len(sig) == 64 && ecdsa.Verify(k, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) == nil
	}
	if !ok {
		return fmt.Errorf("%s signature does not verify", alg)
	}
	return nil
}

// parseTransitPublicKey reads transit's public_key: PEM (PKIX) for ECDSA
// and RSA keys, standard base64 of the 32 bytes for Ed25519.
func parseTransitPublicKey(s string) (crypto.PublicKey, error) {
	if strings.HasPrefix(s, "-----BEGIN") {
		block, _ := pem.Decode([]byte(s))
		if block == nil {
			return nil, errors.New("public_key is not PEM")
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		return pub, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("public_key is neither PEM nor a base64 Ed25519 key")
	}
	return ed25519.PublicKey(b), nil
}
