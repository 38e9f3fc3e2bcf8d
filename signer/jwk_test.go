package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"testing"
)

// TestThumbprintKnownAnswers: the kid is the RFC 7638 thumbprint, which
// anyone holding the public key must be able to recompute. The RSA and
// Ed25519 answers are the RFCs' own (RFC 7638 §3.1, RFC 8037 Appendix
// A.3); an EC key's is recomputed here from the RFC's rule (the required
// members crv, kty, x, y in that order, no white space).
func TestThumbprintKnownAnswers(t *testing.T) {
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rsaKey := &rsa.PublicKey{
		N: new(big.Int).SetBytes(dec("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")),
		E: 65537,
	}
	edKey := ed25519.PublicKey(dec("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"))
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
		want string
	}{
		{"RFC 7638 §3.1 RSA", rsaKey, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		{"RFC 8037 A.3 Ed25519", edKey, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
	} {
		if got, err := Thumbprint(tc.pub); err != nil || got != tc.want {
			t.Errorf("%s: Thumbprint = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, alg := range []Algorithm{ES256, ES384, ES512} {
		in := alg.Info()
		priv, err := ecdsa.GenerateKey(in.Curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		j, err := PublicJWK(alg, "k", &priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(fmt.Appendf(nil, `{"crv":%q,"kty":"EC","x":%q,"y":%q}`, in.Crv, j.X, j.Y))
		if got, err := Thumbprint(&priv.PublicKey); err != nil || got != base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Errorf("%s: Thumbprint = %q, %v; want the SHA-256 of crv, kty, x, y", alg, got, err)
		}
	}
}

// TestPublicJWK: the JWKS entry for a key is a signing key ("use":"sig")
// pinned to its algorithm and kid, whose members decode back to the same
// public key (EC coordinates at full width, RFC 7518 §6.2.1.2); a key that
// does not fit the algorithm is never published.
func TestPublicJWK(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			in := alg.Info()
			var pub crypto.PublicKey
			switch in.KeyType {
			case KeyTypeRSA:
				pub = testRSAKey(t)
			case KeyTypeEC:
				priv, err := ecdsa.GenerateKey(in.Curve, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				pub = &priv.PublicKey
			default:
				edPub, _, err := ed25519.GenerateKey(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				pub = edPub
			}
			j, err := PublicJWK(alg, "kid-1", pub)
			if err != nil {
				t.Fatal(err)
			}
			if j.Kty != string(in.KeyType) || j.Use != "sig" || j.Alg != string(alg) || j.Kid != "kid-1" || j.Crv != in.Crv {
				t.Fatalf("JWK %+v: want kty %s, use sig, alg %s, kid kid-1, crv %q", j, in.KeyType, alg, in.Crv)
			}
			back, err := testJWKKey(mustJSON(t, j))
			if err != nil {
				t.Fatal(err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(back) {
				t.Fatalf("JWK %+v decodes to another key", j)
			}
		})
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg Algorithm
		pub crypto.PublicKey
	}{
		{ES256, &p384.PublicKey},
		{RS256, &p384.PublicKey},
		{ES384, edPub},
		{EdDSA, &p384.PublicKey},
	} {
		if j, err := PublicJWK(tc.alg, "k", tc.pub); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("PublicJWK(%s, %T) = %+v, %v; want ErrKeyMismatch", tc.alg, tc.pub, j, err)
		}
	}
}

// TestCheckKeyRSABoundary: MinRSABits is the smallest modulus accepted,
// to the bit: 2047 bits is refused (for signing and for verifying).
func TestCheckKeyRSABoundary(t *testing.T) {
	short, err := rsa.GenerateKey(rand.Reader, MinRSABits-1)
	if err != nil {
		t.Fatal(err)
	}
	if short.N.BitLen() != MinRSABits-1 {
		t.Fatalf("generated %d bits", short.N.BitLen())
	}
	for _, alg := range []Algorithm{RS256, PS512} {
		if err := alg.Info().CheckKey(&short.PublicKey); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("%s with a %d-bit key: %v, want ErrKeyMismatch", alg, MinRSABits-1, err)
		}
		if err := alg.Info().CheckKey(testRSAKey(t)); err != nil {
			t.Errorf("%s with a %d-bit key: %v", alg, MinRSABits, err)
		}
	}
	msg := []byte("header.payload")
	sig, err := rsa.SignPKCS1v15(rand.Reader, short, crypto.SHA256, RS256.Info().Digest(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(RS256, &short.PublicKey, msg, sig); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Verify with a %d-bit key: %v, want ErrKeyMismatch", MinRSABits-1, err)
	}
}

var testRSA *rsa.PrivateKey

// testRSAKey is one MinRSABits-bit public key shared by the tests.
func testRSAKey(t *testing.T) *rsa.PublicKey {
	t.Helper()
	if testRSA == nil {
		k, err := rsa.GenerateKey(rand.Reader, MinRSABits)
		if err != nil {
			t.Fatal(err)
		}
		testRSA = k
	}
	return &testRSA.PublicKey
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// failingSigner is a Signer whose Sign always fails.
type failingSigner struct{ Signer }

func (failingSigner) Algorithm() Algorithm { return ES256 }
func (failingSigner) KeyID() string        { return "k" }
func (failingSigner) Sign(context.Context, []byte) ([]byte, error) {
	return []byte("partial"), errors.New("provider down")
}

// TestSignCompactFailure: when the signer fails, SignCompact returns its
// error and no token, not a token ending in a signature it never made.
func TestSignCompactFailure(t *testing.T) {
	h, err := EncodeHeader(failingSigner{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := SignCompact(context.Background(), failingSigner{}, h, []byte(`{}`)); err == nil || tok != "" {
		t.Fatalf("SignCompact = %q, %v; want no token and the signer's error", tok, err)
	}
}

// TestEncodeHeader: the protected header is exactly alg and kid, plus typ
// only when one is asked for: never "typ":"".
func TestEncodeHeader(t *testing.T) {
	for typ, want := range map[string]string{
		"":    `{"alg":"ES256","kid":"k"}`,
		"JWT": `{"alg":"ES256","kid":"k","typ":"JWT"}`,
	} {
		h, err := EncodeHeader(failingSigner{}, typ)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := DecodeBase64URL(h); err != nil || string(got) != want {
			t.Errorf("typ %q: header %s (%v), want %s", typ, got, err, want)
		}
	}
}
