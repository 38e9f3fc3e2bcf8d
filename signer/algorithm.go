package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"

	// Register the hashes the table names, so Hash.Available is true.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Algorithm is a JWS "alg" value (RFC 7518 §3.1, RFC 8037 §3.1).
type Algorithm string

// The algorithms this project signs with. Nothing else is accepted anywhere.
const (
	RS256 Algorithm = "RS256"
	RS384 Algorithm = "RS384"
	RS512 Algorithm = "RS512"
	PS256 Algorithm = "PS256"
	PS384 Algorithm = "PS384"
	PS512 Algorithm = "PS512"
	ES256 Algorithm = "ES256"
	ES384 Algorithm = "ES384"
	ES512 Algorithm = "ES512"
	EdDSA Algorithm = "EdDSA"
)

// KeyType is a JWK "kty" value.
type KeyType string

// JWK key types.
const (
	KeyTypeRSA KeyType = "RSA"
	KeyTypeEC  KeyType = "EC"
	KeyTypeOKP KeyType = "OKP"
)

// MinRSABits is the smallest RSA modulus this project accepts, for signing
// and for verifying.
const MinRSABits = 2048

// Info describes one algorithm: the key it needs and how it signs.
type Info struct {
	Alg     Algorithm
	KeyType KeyType
	// Hash is the message digest; zero for EdDSA, which hashes internally.
	Hash crypto.Hash
	// PSS is true for RSASSA-PSS, signed with a salt as long as the hash
	// (RFC 7518 §3.5).
	PSS bool
	// Curve is the ECDSA curve; nil unless KeyType is EC.
	Curve elliptic.Curve
	// Crv is the JWK "crv" name: P-256, P-384, P-521 or Ed25519.
	Crv string
	// SignatureSize is the exact JWS signature length in bytes for EC
	// (R‖S) and EdDSA; zero for RSA, where it is the modulus size.
	SignatureSize int
	// KMSSigningAlgorithm is the AWS KMS SigningAlgorithmSpec that makes
	// this JWS algorithm's signatures.
	KMSSigningAlgorithm string
	// KMSKeySpec is the AWS KMS KeySpec a key for this algorithm must
	// have; empty for RSA, where any of RSA_2048, RSA_3072, RSA_4096 fits.
	KMSKeySpec string
}

// table is the one algorithm table. Every provider, the JWK encoder and the
// verifier read it; nothing else decides what an algorithm means.
var table = []Info{
	{Alg: RS256, KeyType: KeyTypeRSA, Hash: crypto.SHA256, KMSSigningAlgorithm: "RSASSA_PKCS1_V1_5_SHA_256"},
	{Alg: RS384, KeyType: KeyTypeRSA, Hash: crypto.SHA384, KMSSigningAlgorithm: "RSASSA_PKCS1_V1_5_SHA_384"},
	{Alg: RS512, KeyType: KeyTypeRSA, Hash: crypto.SHA512, KMSSigningAlgorithm: "RSASSA_PKCS1_V1_5_SHA_512"},
	{Alg: PS256, KeyType: KeyTypeRSA, Hash: crypto.SHA256, PSS: true, KMSSigningAlgorithm: "RSASSA_PSS_SHA_256"},
	{Alg: PS384, KeyType: KeyTypeRSA, Hash: crypto.SHA384, PSS: true, KMSSigningAlgorithm: "RSASSA_PSS_SHA_384"},
	{Alg: PS512, KeyType: KeyTypeRSA, Hash: crypto.SHA512, PSS: true, KMSSigningAlgorithm: "RSASSA_PSS_SHA_512"},
	{Alg: ES256, KeyType: KeyTypeEC, Hash: crypto.SHA256, Curve: elliptic.P256(), Crv: "P-256", SignatureSize: 64,
		KMSSigningAlgorithm: "ECDSA_SHA_256", KMSKeySpec: "ECC_NIST_P256"},
	{Alg: ES384, KeyType: KeyTypeEC, Hash: crypto.SHA384, Curve: elliptic.P384(), Crv: "P-384", SignatureSize: 96,
		KMSSigningAlgorithm: "ECDSA_SHA_384", KMSKeySpec: "ECC_NIST_P384"},
	{Alg: ES512, KeyType: KeyTypeEC, Hash: crypto.SHA512, Curve: elliptic.P521(), Crv: "P-521", SignatureSize: 132,
		KMSSigningAlgorithm: "ECDSA_SHA_512", KMSKeySpec: "ECC_NIST_P521"},
	{Alg: EdDSA, KeyType: KeyTypeOKP, Crv: "Ed25519", SignatureSize: ed25519.SignatureSize,
		KMSSigningAlgorithm: "ED25519_SHA_512", KMSKeySpec: "ECC_NIST_EDWARDS25519"},
}

// Algorithms returns every supported algorithm, in table order.
func Algorithms() []Algorithm {
	out := make([]Algorithm, len(table))
	for i, in := range table {
		out[i] = in.Alg
	}
	return out
}

// AlgorithmNames returns the supported "alg" values as strings, in table
// order; handy for help text and error messages.
func AlgorithmNames() []string {
	out := make([]string, len(table))
	for i, in := range table {
		out[i] = string(in.Alg)
	}
	return out
}

// Lookup returns the table entry for an "alg" value. Matching is exact and
// case-sensitive, as JWS requires: "es256" and "none" are unknown.
func Lookup(alg string) (Info, error) {
	if in, ok := byAlg[Algorithm(alg)]; ok {
		return *in, nil
	}
	return Info{}, fmt.Errorf("%w %q: must be one of %s", ErrUnknownAlgorithm, alg, strings.Join(AlgorithmNames(), ", "))
}

// byAlg indexes table; issue looks algorithms up on every token.
var byAlg = func() map[Algorithm]*Info {
	m := make(map[Algorithm]*Info, len(table))
	for i := range table {
		m[table[i].Alg] = &table[i]
	}
	return m
}()

// Info returns the table entry for a. It panics for an algorithm not in the
// table, which only a programming error can produce: values of Algorithm
// from outside come through Lookup.
func (a Algorithm) Info() Info {
	in, err := Lookup(string(a))
	if err != nil {
		panic(err)
	}
	return in
}

// CheckKey reports whether pub is a key this algorithm may use: the right
// type, the right curve, and for RSA at least MinRSABits.
func (in Info) CheckKey(pub crypto.PublicKey) error {
	switch in.KeyType {
	case KeyTypeRSA:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an RSA key, not %T", ErrKeyMismatch, in.Alg, pub)
		}
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("%w: %s key has %d bits, fewer than %d", ErrKeyMismatch, in.Alg, k.N.BitLen(), MinRSABits)
		}
	case KeyTypeEC:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an ECDSA %s key, not %T", ErrKeyMismatch, in.Alg, in.Crv, pub)
		}
		if k.Curve != in.Curve {
			return fmt.Errorf("%w: %s needs curve %s, key is on %s", ErrKeyMismatch, in.Alg, in.Crv, k.Curve.Params().Name)
		}
	case KeyTypeOKP:
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an Ed25519 key, not %T", ErrKeyMismatch, in.Alg, pub)
		}
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: Ed25519 public key has %d bytes", ErrKeyMismatch, len(k))
		}
	}
	return nil
}

// signatureLen is the exact signature length for pub under this algorithm.
func (in Info) signatureLen(pub crypto.PublicKey) int {
	if k, ok := pub.(*rsa.PublicKey); ok {
		return k.Size()
	}
	return in.SignatureSize
}

// Digest hashes msg with the algorithm's hash. For EdDSA it returns msg.
func (in Info) Digest(msg []byte) []byte {
	if in.Hash == 0 {
		return msg
	}
	h := in.Hash.New()
	h.Write(msg)
	return h.Sum(nil)
}
