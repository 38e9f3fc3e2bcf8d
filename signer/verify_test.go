package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// TestVerifyRejectsWrongKeys: Verify checks the key against the algorithm
// (CheckKey) before the signature. Each signature here is real, made by
// the key it is checked with, so only the key check can refuse it.
func TestVerifyRejectsWrongKeys(t *testing.T) {
	msg := []byte("header.payload")
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(alg Algorithm) []byte { return alg.Info().Digest(msg) }
	must := func(sig []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	p384Sig := must(ecdsa.SignASN1(rand.Reader, p384, digest(ES384)))
	p384Sig = must(ECDSAToJOSE(ES384, p384Sig))

	for _, tc := range []struct {
		name string
		alg  Algorithm
		pub  crypto.PublicKey
		sig  []byte
	}{
		{"RS256 with a 1024-bit RSA key", RS256, &rsa1024.PublicKey, must(rsa.SignPKCS1v15(rand.Reader, rsa1024, crypto.SHA256, digest(RS256)))},
		{"PS256 with a 1024-bit RSA key", PS256, &rsa1024.PublicKey,
			must(rsa.SignPSS(rand.Reader, rsa1024, crypto.SHA256, digest(PS256), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}))},
		{"ES256 with a P-384 key", ES256, &p384.PublicKey, p384Sig},
		{"RS256 with an EC key", RS256, &p256.PublicKey, make([]byte, 256)},
		{"ES256 with an Ed25519 key", ES256, edPub, ed25519.Sign(edPriv, msg)},
		{"EdDSA with an EC key", EdDSA, &p256.PublicKey, ed25519.Sign(edPriv, msg)},
		{"EdDSA with a 31-byte key", EdDSA, edPub[:31], ed25519.Sign(edPriv, msg)},
		{"EdDSA with a nil key", EdDSA, nil, ed25519.Sign(edPriv, msg)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify(tc.alg, tc.pub, msg, tc.sig); !errors.Is(err, ErrKeyMismatch) {
				t.Fatalf("Verify = %v, want %v", err, ErrKeyMismatch)
			}
		})
	}
	// The control: the same Ed25519 signature with the whole key.
	if err := Verify(EdDSA, edPub, msg, ed25519.Sign(edPriv, msg)); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// TestVerifyRefusesPaddedSignatures: a signature must have exactly the
// length the key fixes. ES256's R‖S with a zero byte put in front of S
// (65 bytes) still reads as the same r and s if the split is at 32, so a
// verifier that only refuses short signatures accepts a second spelling
// of every signature. Each case starts from a signature that verifies.
func TestVerifyRefusesPaddedSignatures(t *testing.T) {
	msg := []byte("header.payload")
	for _, alg := range []Algorithm{ES256, ES384, ES512, EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			in := alg.Info()
			var (
				pub crypto.PublicKey
				sig []byte
			)
			if alg == EdDSA {
				edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				pub, sig = edPub, ed25519.Sign(edPriv, msg)
			} else {
				priv, err := ecdsa.GenerateKey(in.Curve, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				der, err := ecdsa.SignASN1(rand.Reader, priv, in.Digest(msg))
				if err != nil {
					t.Fatal(err)
				}
				if sig, err = ECDSAToJOSE(alg, der); err != nil {
					t.Fatal(err)
				}
				pub = &priv.PublicKey
			}
			if err := Verify(alg, pub, msg, sig); err != nil {
				t.Fatalf("control: %v", err)
			}
			half := len(sig) / 2
			for name, bad := range map[string][]byte{
				"zero byte before S":  append(append(append([]byte{}, sig[:half]...), 0), sig[half:]...),
				"zero byte appended":  append(append([]byte{}, sig...), 0),
				"zero byte prepended": append([]byte{0}, sig...),
			} {
				if err := Verify(alg, pub, msg, bad); !errors.Is(err, ErrInvalidSignature) || !strings.Contains(err.Error(), "want "+strconv.Itoa(len(sig))) {
					t.Errorf("%s (%d bytes): Verify = %v, want ErrInvalidSignature naming the length %d", name, len(bad), err, len(sig))
				}
			}
		})
	}
}

// TestECDSAToJOSERefusesOutOfRangeScalars: ECDSAToJOSE promises 0 < r, s
// < n for what it returns, whatever DER it is given (an HSM's answer).
// Each DER here is well formed; only the range of r or s is wrong.
func TestECDSAToJOSERefusesOutOfRangeScalars(t *testing.T) {
	der := func(r, s *big.Int) []byte {
		var b cryptobyte.Builder
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(r)
			b.AddASN1BigInt(s)
		})
		return b.BytesOrPanic()
	}
	one := big.NewInt(1)
	for _, alg := range []Algorithm{ES256, ES384, ES512} {
		n := alg.Info().Curve.Params().N
		nMinus1 := new(big.Int).Sub(n, one)
		if _, err := ECDSAToJOSE(alg, der(nMinus1, one)); err != nil {
			t.Fatalf("%s: control r = n-1, s = 1: %v", alg, err)
		}
		for _, tc := range []struct {
			name string
			r, s *big.Int
		}{
			{"r = 0", big.NewInt(0), one},
			{"s = 0", one, big.NewInt(0)},
			{"r = n", n, one},
			{"s = n", one, n},
			{"r = -1", big.NewInt(-1), one},
			{"s = n+1", one, new(big.Int).Add(n, one)},
		} {
			t.Run(string(alg)+" "+tc.name, func(t *testing.T) {
				if out, err := ECDSAToJOSE(alg, der(tc.r, tc.s)); !errors.Is(err, ErrInvalidSignature) {
					t.Fatalf("ECDSAToJOSE = %x, %v; want ErrInvalidSignature", out, err)
				}
			})
		}
	}
}

// TestECDSAToJOSERefusesOtherAlgorithms: only ES* signatures are DER;
// asked to convert one for any other algorithm, ECDSAToJOSE says so.
func TestECDSAToJOSERefusesOtherAlgorithms(t *testing.T) {
	der := []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}
	for _, alg := range []Algorithm{RS256, PS512, EdDSA} {
		if out, err := ECDSAToJOSE(alg, der); !errors.Is(err, ErrUnknownAlgorithm) || !strings.Contains(err.Error(), "not an ECDSA algorithm") {
			t.Errorf("ECDSAToJOSE(%s) = %x, %v; want ErrUnknownAlgorithm", alg, out, err)
		}
	}
}
