package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
)

// JWK is a public JSON Web Key (RFC 7517). It has no field for private
// members, so none can ever be encoded.
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// JWKSet is a JWK Set (RFC 7517 §5).
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

var b64 = base64.RawURLEncoding

// PublicJWK encodes pub as a signing JWK for alg with the given kid. EC
// coordinates are always full width (RFC 7518 §6.2.1.2).
func PublicJWK(alg Algorithm, kid string, pub crypto.PublicKey) (JWK, error) {
	in, err := Lookup(string(alg))
	if err != nil {
		return JWK{}, err
	}
	if err := in.CheckKey(pub); err != nil {
		return JWK{}, err
	}
	j, err := baseJWK(pub)
	if err != nil {
		return JWK{}, err
	}
	j.Use, j.Alg, j.Kid = "sig", string(alg), kid
	return j, nil
}

// baseJWK holds only the members RFC 7638 hashes, plus kty.
func baseJWK(pub crypto.PublicKey) (JWK, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return JWK{Kty: string(KeyTypeRSA), N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		point, err := k.Bytes() // 0x04 ‖ X ‖ Y, each full width
		if err != nil {
			return JWK{}, fmt.Errorf("%w: %v", ErrKeyMismatch, err)
		}
		var crv string
		for _, in := range table {
			if in.Curve == k.Curve {
				crv = in.Crv
			}
		}
		if crv == "" {
			return JWK{}, fmt.Errorf("%w: unsupported curve %s", ErrKeyMismatch, k.Curve.Params().Name)
		}
		size := (len(point) - 1) / 2
		return JWK{Kty: string(KeyTypeEC), Crv: crv, X: b64.EncodeToString(point[1 : 1+size]), Y: b64.EncodeToString(point[1+size:])}, nil
	case ed25519.PublicKey:
		return JWK{Kty: string(KeyTypeOKP), Crv: "Ed25519", X: b64.EncodeToString(k)}, nil
	}
	return JWK{}, fmt.Errorf("%w: unsupported key type %T", ErrKeyMismatch, pub)
}

// Thumbprint returns the RFC 7638 SHA-256 JWK thumbprint of pub, base64url
// encoded. This project uses it as the "kid": stable, unique per key, and
// checkable by anyone holding the public key.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := baseJWK(pub)
	if err != nil {
		return "", err
	}
	// RFC 7638 §3.2: the required members only, in lexicographic order,
	// no white space. encoding/json sorts map keys.
	m := map[string]string{"kty": j.Kty}
	switch KeyType(j.Kty) {
	case KeyTypeRSA:
		m["n"], m["e"] = j.N, j.E
	case KeyTypeEC:
		m["crv"], m["x"], m["y"] = j.Crv, j.X, j.Y
	case KeyTypeOKP:
		m["crv"], m["x"] = j.Crv, j.X
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return b64.EncodeToString(sum[:]), nil
}
