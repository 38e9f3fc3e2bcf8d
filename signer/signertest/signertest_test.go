package signertest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// brokenSigner lets each test case break one rule of the contract.
type brokenSigner struct {
	alg  signer.Algorithm
	kid  string
	priv crypto.Signer
	sign func(priv crypto.Signer, input []byte) ([]byte, error)
}

func (b brokenSigner) Algorithm() signer.Algorithm { return b.alg }
func (b brokenSigner) KeyID() string               { return b.kid }
func (b brokenSigner) Public() crypto.PublicKey    { return b.priv.Public() }
func (b brokenSigner) Sign(_ context.Context, in []byte) ([]byte, error) {
	return b.sign(b.priv, in)
}

// TestCheckSignerCatchesBrokenProviders proves the suite can fail: each
// signer below breaks the contract in one way a real provider might.
func TestCheckSignerCatchesBrokenProviders(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	digest := func(alg signer.Algorithm, in []byte) []byte { return alg.Info().Digest(in) }

	cases := []struct {
		name string
		s    brokenSigner
		want string
	}{
		{
			name: "PSS with the maximum salt length (Go's default), not the hash length",
			s: brokenSigner{alg: signer.PS256, kid: "k", priv: rsaKey, sign: func(p crypto.Signer, in []byte) ([]byte, error) {
				return p.Sign(rand.Reader, digest(signer.PS256, in), &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthAuto})
			}},
			want: "strict verify",
		},
		{
			name: "ECDSA in DER instead of R‖S",
			s: brokenSigner{alg: signer.ES256, kid: "k", priv: p256, sign: func(p crypto.Signer, in []byte) ([]byte, error) {
				return p.Sign(rand.Reader, digest(signer.ES256, in), crypto.SHA256)
			}},
			want: "bytes, want exactly 64",
		},
		{
			name: "ES512 with leading zero bytes of R or S dropped",
			s: brokenSigner{alg: signer.ES512, kid: "k", priv: p521, sign: func(p crypto.Signer, in []byte) ([]byte, error) {
				der, err := p.Sign(rand.Reader, digest(signer.ES512, in), crypto.SHA512)
				if err != nil {
					return nil, err
				}
				sig, err := signer.ECDSAToJOSE(signer.ES512, der)
				return sig[1:], err // one byte short, as a minimal-width encoder would be
			}},
			want: "want exactly 132",
		},
		{
			name: "RS256 label on a PS256 signature",
			s: brokenSigner{alg: signer.RS256, kid: "k", priv: rsaKey, sign: func(p crypto.Signer, in []byte) ([]byte, error) {
				return p.Sign(rand.Reader, digest(signer.RS256, in), &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
			}},
			want: "strict verify",
		},
		{
			name: "EdDSA over a pre-hashed input",
			s: brokenSigner{alg: signer.EdDSA, kid: "k", priv: edKey, sign: func(p crypto.Signer, in []byte) ([]byte, error) {
				return p.Sign(rand.Reader, digest(signer.ES256, in), crypto.Hash(0))
			}},
			want: "strict verify",
		},
		{
			name: "empty kid",
			s: brokenSigner{alg: signer.EdDSA, priv: edKey, sign: func(p crypto.Signer, in []byte) ([]byte, error) {
				return p.Sign(rand.Reader, in, crypto.Hash(0))
			}},
			want: "KeyID() is empty",
		},
		{
			name: "key on the wrong curve",
			s: brokenSigner{alg: signer.ES512, kid: "k", priv: p256, sign: func(p crypto.Signer, in []byte) ([]byte, error) {
				return nil, nil
			}},
			want: "does not fit",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSigner(context.Background(), tc.s, 8)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckSigner = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
