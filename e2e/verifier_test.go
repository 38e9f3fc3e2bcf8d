//go:build unix

package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestVerifierIsStrict is the negative control for every other test here: it
// shows that the outside verifier rejects tokens that are subtly wrong, so
// that its "yes" about a token from Vault means something. No Vault is
// involved; the keys and tokens are made here with the standard library.
func TestVerifierIsStrict(t *testing.T) {
	env := requireEnv(t, "VERIFY_DIR")
	v := newVerifier(t, env["VERIFY_DIR"])

	rsaKey := mustRSAKey(t)
	otherRSAKey := mustRSAKey(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	jwks := map[string]any{"keys": []any{
		rsaJWK(t, "ps", "PS256", &rsaKey.PublicKey),
		ecJWK(t, "es", "ES256", &ecKey.PublicKey),
	}}
	url := serveJWKS(t, jwks)

	const (
		issuer   = "https://issuer.e2e.invalid/v1/jwt"
		audience = "e2e-aud"
	)
	now := time.Now().Unix()
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": issuer, "aud": audience, "sub": "e2e",
			"iat": now, "nbf": now - 5, "exp": now + 300,
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	header := func(alg, kid string) map[string]any {
		return map[string]any{"alg": alg, "kid": kid, "typ": "JWT"}
	}
	pss := func(key *rsa.PrivateKey, salt int) func([]byte) []byte {
		return func(in []byte) []byte {
			d := sha256.Sum256(in)
			sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: salt})
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
	}
	es256 := func(der bool) func([]byte) []byte {
		return func(in []byte) []byte {
			d := sha256.Sum256(in)
			sig, err := ecdsa.SignASN1(rand.Reader, ecKey, d[:])
			if err != nil {
				t.Fatal(err)
			}
			if der {
				return sig
			}
			return derToRaw(t, sig, 32)
		}
	}

	tests := []struct {
		name   string
		token  string
		alg    string // the one algorithm the verifier allows
		accept bool
	}{
		{
			name:   "PS256 good",
			token:  signJWT(t, header("PS256", "ps"), claims(nil), pss(rsaKey, rsa.PSSSaltLengthEqualsHash)),
			alg:    "PS256",
			accept: true,
		},
		{
			name:   "ES256 good (r||s)",
			token:  signJWT(t, header("ES256", "es"), claims(nil), es256(false)),
			alg:    "ES256",
			accept: true,
		},
		{
			// RFC 7518 3.5: the salt is as long as the hash. Go's Auto uses
			// the longest salt that fits (222 bytes for 2048 bits/SHA-256).
			name:  "PS256 salt length not 32",
			token: signJWT(t, header("PS256", "ps"), claims(nil), pss(rsaKey, rsa.PSSSaltLengthAuto)),
			alg:   "PS256",
		},
		{
			name:  "signed by a key not in the JWKS, kid of one that is",
			token: signJWT(t, header("PS256", "ps"), claims(nil), pss(otherRSAKey, rsa.PSSSaltLengthEqualsHash)),
			alg:   "PS256",
		},
		{
			name:  "signed by a key not in the JWKS, unknown kid",
			token: signJWT(t, header("PS256", "stranger"), claims(nil), pss(otherRSAKey, rsa.PSSSaltLengthEqualsHash)),
			alg:   "PS256",
		},
		{
			name:  "wrong audience",
			token: signJWT(t, header("PS256", "ps"), claims(func(c map[string]any) { c["aud"] = "someone-else" }), pss(rsaKey, rsa.PSSSaltLengthEqualsHash)),
			alg:   "PS256",
		},
		{
			name:  "wrong issuer",
			token: signJWT(t, header("PS256", "ps"), claims(func(c map[string]any) { c["iss"] = "https://elsewhere.invalid" }), pss(rsaKey, rsa.PSSSaltLengthEqualsHash)),
			alg:   "PS256",
		},
		{
			name:  "expired",
			token: signJWT(t, header("PS256", "ps"), claims(func(c map[string]any) { c["iat"], c["nbf"], c["exp"] = now-7200, now-7200, now-3600 }), pss(rsaKey, rsa.PSSSaltLengthEqualsHash)),
			alg:   "PS256",
		},
		{
			name:  "algorithm not the one allowed",
			token: signJWT(t, header("PS256", "ps"), claims(nil), pss(rsaKey, rsa.PSSSaltLengthEqualsHash)),
			alg:   "RS256",
		},
		{
			name:  "ES256 signature in DER form",
			token: signJWT(t, header("ES256", "es"), claims(nil), es256(true)),
			alg:   "ES256",
		},
	}
	for _, tc := range tests {
		for _, lib := range []string{"jose", "jsonwebtoken", "pyjwt"} {
			t.Run(tc.name+"/"+lib, func(t *testing.T) {
				o := verifyOpts{JWKSURL: url, Issuer: issuer, Audience: audience, Alg: tc.alg, Lib: lib}
				if tc.accept {
					out := v.mustVerify(t, tc.token, o)
					if out.Header["alg"] != tc.alg || out.Payload["sub"] != "e2e" {
						t.Errorf("verified header/payload = %v / %v, want alg %s and sub e2e", out.Header, out.Payload, tc.alg)
					}
					return
				}
				msg := v.mustReject(t, tc.token, o)
				t.Logf("rejected: %s", strings.TrimSpace(msg))
			})
		}
	}

	t.Run("jsonwebtoken says it cannot do EdDSA", func(t *testing.T) {
		r := v.run(t, "a.b.c", verifyOpts{JWKSURL: url, Issuer: issuer, Audience: audience, Alg: "EdDSA", Lib: "jsonwebtoken"})
		if r.Code != 2 || !strings.Contains(r.Stderr, "does not support EdDSA") {
			t.Errorf("exit %d, stderr %q; want exit 2 and a message that jsonwebtoken does not support EdDSA", r.Code, r.Stderr)
		}
	})
}

func mustRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// serveJWKS serves a JWK Set on a loopback port for the life of the test.
func serveJWKS(t *testing.T, jwks any) string {
	t.Helper()
	body, err := json.Marshal(jwks)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + "/jwks"
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(t *testing.T, kid, alg string, pub *rsa.PublicKey) map[string]any {
	t.Helper()
	return map[string]any{
		"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
		"n": b64(pub.N.Bytes()),
		"e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}
}

func ecJWK(t *testing.T, kid, alg string, pub *ecdsa.PublicKey) map[string]any {
	t.Helper()
	pt, err := pub.Bytes() // 0x04 || X || Y, each padded to the field size
	if err != nil {
		t.Fatal(err)
	}
	n := (len(pt) - 1) / 2
	return map[string]any{
		"kty": "EC", "kid": kid, "alg": alg, "use": "sig",
		"crv": pub.Curve.Params().Name,
		"x":   b64(pt[1 : 1+n]),
		"y":   b64(pt[1+n:]),
	}
}

// signJWT assembles a compact JWS: sign is handed the signing input.
func signJWT(t *testing.T, header, claims map[string]any, sign func([]byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(c)
	tok := input + "." + b64(sign([]byte(input)))
	secrets.add(tok)
	return tok
}

// derToRaw turns an ASN.1 DER ECDSA signature into JWS form: r and s, each
// left-padded to size bytes.
func derToRaw(t *testing.T, der []byte, size int) []byte {
	t.Helper()
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 {
		t.Fatalf("bad DER signature: %v", err)
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out
}
