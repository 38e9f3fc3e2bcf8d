// Package local is the in-process signer provider: keys generated here with
// crypto/rand, held in memory, and stored by the caller as PKCS #8.
package local

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// RSABits lists the RSA modulus sizes Generate accepts.
var RSABits = []int{2048, 3072, 4096}

// DefaultRSABits is the modulus size used when none is asked for.
const DefaultRSABits = 2048

// Generate makes a new private key for alg. rsaBits is used only for RS*
// and PS*, and must be one of RSABits (0 means DefaultRSABits).
func Generate(alg signer.Algorithm, rsaBits int) (crypto.Signer, error) {
	in, err := signer.Lookup(string(alg))
	if err != nil {
		return nil, err
	}
	switch in.KeyType {
	case signer.KeyTypeRSA:
		if rsaBits == 0 {
			rsaBits = DefaultRSABits
		}
		if !validRSABits(rsaBits) {
			return nil, fmt.Errorf("%w: rsa_bits must be one of 2048, 3072, 4096, not %d", signer.ErrKeyMismatch, rsaBits)
		}
		return rsa.GenerateKey(rand.Reader, rsaBits)
	case signer.KeyTypeEC:
		return ecdsa.GenerateKey(in.Curve, rand.Reader)
	default:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
}

func validRSABits(n int) bool {
	for _, b := range RSABits {
		if n == b {
			return true
		}
	}
	return false
}

// MarshalPrivateKey encodes a key made by Generate as PKCS #8 DER.
func MarshalPrivateKey(priv crypto.Signer) ([]byte, error) {
	return x509.MarshalPKCS8PrivateKey(priv)
}

// ParsePrivateKey decodes PKCS #8 DER written by MarshalPrivateKey.
func ParsePrivateKey(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parsing private key: %T cannot sign", k)
	}
	return s, nil
}

// Signer signs with an in-memory private key. It is safe for concurrent use.
type Signer struct {
	info signer.Info
	kid  string
	priv crypto.Signer
	opts crypto.SignerOpts
}

var _ signer.Signer = (*Signer)(nil)

// New returns a signer for alg over priv. It refuses a key that does not
// match alg (wrong type, wrong curve, RSA under 2048 bits). An empty kid
// means the key's RFC 7638 thumbprint.
func New(alg signer.Algorithm, kid string, priv crypto.Signer) (*Signer, error) {
	in, err := signer.Lookup(string(alg))
	if err != nil {
		return nil, err
	}
	if err := in.CheckKey(priv.Public()); err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = signer.Thumbprint(priv.Public()); err != nil {
			return nil, err
		}
	}
	var opts crypto.SignerOpts = in.Hash
	if in.PSS {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: in.Hash}
	}
	return &Signer{info: in, kid: kid, priv: priv, opts: opts}, nil
}

// Algorithm implements signer.Signer.
func (s *Signer) Algorithm() signer.Algorithm { return s.info.Alg }

// KeyID implements signer.Signer.
func (s *Signer) KeyID() string { return s.kid }

// Public implements signer.Signer.
func (s *Signer) Public() crypto.PublicKey { return s.priv.Public() }

// Sign implements signer.Signer. It does no I/O and ignores ctx.
func (s *Signer) Sign(_ context.Context, signingInput []byte) ([]byte, error) {
	sig, err := s.priv.Sign(rand.Reader, s.info.Digest(signingInput), s.opts)
	if err != nil {
		return nil, fmt.Errorf("signing with %s: %w", s.info.Alg, err)
	}
	if s.info.KeyType == signer.KeyTypeEC {
		// crypto/ecdsa signs in ASN.1 DER; JWS wants R‖S.
		return signer.ECDSAToJOSE(s.info.Alg, sig)
	}
	return sig, nil
}
