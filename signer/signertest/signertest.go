// Package signertest is the conformance suite every signer provider must
// pass: each algorithm signs, the signature verifies under the strict
// reference verifier (signer.Verify), lengths are fixed where JWS fixes
// them, and a key refuses an algorithm it does not match.
package signertest

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// Provider builds signers for the suite.
type Provider interface {
	// New returns a signer for alg over a fresh key.
	New(t *testing.T, alg signer.Algorithm) signer.Signer
	// NewMismatched tries to build a signer for alg over a key made for
	// keyAlg. A conforming provider returns an error.
	NewMismatched(t *testing.T, alg, keyAlg signer.Algorithm) error
}

// Options tune the suite for slow providers.
type Options struct {
	// Signatures is how many inputs each algorithm signs (default 16).
	// ES512's R‖S is checked to be 132 bytes on every one of them.
	Signatures int
}

// Run runs the suite against p.
func Run(t *testing.T, p Provider, opts Options) {
	if opts.Signatures == 0 {
		opts.Signatures = 16
	}
	for _, alg := range signer.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			s := p.New(t, alg)
			if s.Algorithm() != alg {
				t.Fatalf("Algorithm() = %q, want %q", s.Algorithm(), alg)
			}
			if err := CheckSigner(context.Background(), s, opts.Signatures); err != nil {
				t.Fatal(err)
			}
			for _, other := range signer.Algorithms() {
				if sameKeyShape(alg, other) {
					continue
				}
				if err := p.NewMismatched(t, other, alg); err == nil {
					t.Errorf("a %s key was accepted for %s", alg, other)
				}
			}
		})
	}
}

// CheckSigner signs n inputs with s and returns the first way s breaks the
// contract: empty kid, a public key unfit for its algorithm, a signature of
// the wrong length (ES512 must be 132 bytes every time), one the strict
// verifier refuses, one that survives a changed input, or one that also
// verifies under another algorithm.
func CheckSigner(ctx context.Context, s signer.Signer, n int) error {
	alg := s.Algorithm()
	in, err := signer.Lookup(string(alg))
	if err != nil {
		return err
	}
	if s.KeyID() == "" {
		return fmt.Errorf("%s: KeyID() is empty", alg)
	}
	if err := in.CheckKey(s.Public()); err != nil {
		return fmt.Errorf("%s: Public() does not fit: %w", alg, err)
	}
	wantLen := in.SignatureSize
	if k, ok := s.Public().(*rsa.PublicKey); ok {
		wantLen = k.Size()
	}
	for i := range n {
		input := fmt.Appendf(nil, "%s.%s", b64(`{"alg":"`+string(alg)+`"}`), b64(fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", i*37))))
		sig, err := s.Sign(ctx, input)
		if err != nil {
			return fmt.Errorf("%s: Sign: %w", alg, err)
		}
		if len(sig) != wantLen {
			return fmt.Errorf("%s: signature %d has %d bytes, want exactly %d", alg, i, len(sig), wantLen)
		}
		if err := signer.Verify(alg, s.Public(), input, sig); err != nil {
			return fmt.Errorf("%s: strict verify of signature %d: %w", alg, i, err)
		}
		tampered := append([]byte{}, input...)
		tampered[len(tampered)-1] ^= 1
		if signer.Verify(alg, s.Public(), tampered, sig) == nil {
			return fmt.Errorf("%s: signature %d verifies over a changed input", alg, i)
		}
		for _, other := range signer.Algorithms() {
			if other != alg && signer.Verify(other, s.Public(), input, sig) == nil {
				return fmt.Errorf("%s: signature %d also verifies as %s", alg, i, other)
			}
		}
	}
	return nil
}

// sameKeyShape reports whether a key for a would legitimately serve b: any
// RSA key serves every RS*/PS* algorithm.
func sameKeyShape(a, b signer.Algorithm) bool {
	ia, ib := a.Info(), b.Info()
	if ia.KeyType == signer.KeyTypeRSA && ib.KeyType == signer.KeyTypeRSA {
		return true
	}
	return a == b
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
