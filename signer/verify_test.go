package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
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
