package local

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/signertest"
)

type provider struct{}

func (provider) New(t *testing.T, alg signer.Algorithm) signer.Signer {
	t.Helper()
	priv, err := Generate(alg, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Store and load, as the backend does, so the suite covers PKCS #8.
	der, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if priv, err = ParsePrivateKey(der); err != nil {
		t.Fatal(err)
	}
	s, err := New(alg, "", priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (provider) NewMismatched(t *testing.T, alg, keyAlg signer.Algorithm) error {
	priv, err := Generate(keyAlg, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(alg, "", priv)
	return err
}

func TestConformance(t *testing.T) {
	signertest.Run(t, provider{}, signertest.Options{Signatures: 24})
}

func TestGenerateRSABits(t *testing.T) {
	for _, tc := range []struct {
		bits    int
		wantErr bool
	}{
		{bits: 0}, {bits: 2048}, {bits: 3072}, {bits: 4096},
		{bits: 1024, wantErr: true}, {bits: 2047, wantErr: true}, {bits: 2560, wantErr: true}, {bits: 8192, wantErr: true},
	} {
		if testing.Short() && tc.bits == 4096 {
			continue
		}
		t.Run("", func(t *testing.T) {
			priv, err := Generate(signer.PS256, tc.bits)
			if tc.wantErr {
				if !errors.Is(err, signer.ErrKeyMismatch) {
					t.Fatalf("Generate(%d) err = %v, want ErrKeyMismatch", tc.bits, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.bits
			if want == 0 {
				want = DefaultRSABits
			}
			if got := priv.(*rsa.PrivateKey).N.BitLen(); got != want {
				t.Fatalf("modulus has %d bits, want %d", got, want)
			}
		})
	}
}

func TestNewRefusesSmallRSA(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(signer.RS256, "", small); !errors.Is(err, signer.ErrKeyMismatch) {
		t.Fatalf("New with a 1024-bit key: err = %v, want ErrKeyMismatch", err)
	}
}

// TestParsePrivateKeyRefusesKeysThatCannotSign: PKCS #8 also holds X25519
// keys, which crypto/x509 parses but which cannot sign; stored bytes that
// decode to one are an error, never a nil signer.
func TestParsePrivateKeyRefusesKeysThatCannotSign(t *testing.T) {
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(x)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := ParsePrivateKey(der); err == nil || !strings.Contains(err.Error(), "cannot sign") {
		t.Fatalf("ParsePrivateKey(X25519) = %v, %v; want an error saying it cannot sign", s, err)
	}
	if s, err := ParsePrivateKey([]byte("not DER")); err == nil || s != nil {
		t.Fatalf("ParsePrivateKey(garbage) = %v, %v", s, err)
	}
}
