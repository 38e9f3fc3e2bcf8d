package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/big"
	"slices"
	"testing"

	"github.com/c2sp/wycheproof"
)

// jwsContradictions are the Wycheproof JWS vectors whose label a verifier
// with this project's policy must contradict, and why. Each is checked to
// go the other way, so the list cannot hide a regression.
var jwsContradictions = map[string]string{
	"rfc7520/346 (Figure20): label valid, ours false (alg PS384, key pinned to PS256)":           pinnedAlgReason,
	"rfc7520WithKeyOps/350 (Figure20): label valid, ours false (alg PS384, key pinned to PS256)": pinnedAlgReason,
}

// pinnedAlgReason: RFC 7520 signs Figure 20 with PS384, but Wycheproof's
// copy of the key says "alg":"PS256". A verifier that pins each key to one
// algorithm (as jwt/verify does, and RFC 8725 §3.1 advises) must refuse it.
const pinnedAlgReason = "the key's JWK pins PS256 and the token says PS384; an algorithm-pinning verifier refuses it"

// TestWycheproofJWS runs json_web_signature_test.json through
// ParseCompact and Verify, as jwt/verify does: the key is the group's
// public JWK (a JWKS entry), the algorithm the header's, which must fit
// the key. HMAC groups have no public key: this project never accepts HS*,
// so their "valid" vectors must be refused.
func TestWycheproofJWS(t *testing.T) {
	raw, err := fs.ReadFile(wycheproof.TestVectors, "json_web_signature_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		NumberOfTests int `json:"numberOfTests"`
		TestGroups    []struct {
			Comment string          `json:"comment"`
			Public  json.RawMessage `json:"public"`
			Tests   []struct {
				TcID    any    `json:"tcId"`
				Comment string `json:"comment"`
				JWS     any    `json:"jws"`
				Result  string `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var checked, accepted, refusedHMAC int
	var contradicted []string
	for _, g := range f.TestGroups {
		pub, pinned, keyErr := testJWKPublic(g.Public)
		for _, tc := range g.Tests {
			id := fmt.Sprintf("%s/%v (%s)", g.Comment, tc.TcID, tc.Comment)
			token, isCompact := tc.JWS.(string)
			ok := false
			var why error
			switch {
			case !isCompact:
				why = fmt.Errorf("JSON serialization")
			case keyErr != nil:
				why = keyErr
			default:
				p, err := ParseCompact(token)
				if err == nil && pinned != "" && p.Alg != pinned {
					// jwt/verify likewise requires the key's own algorithm.
					err = fmt.Errorf("alg %s, key pinned to %s", p.Alg, pinned)
				}
				if err == nil {
					if err = Verify(p.Alg, pub, p.SigningInput, p.Signature); err == nil {
						ok = true
					}
				}
				why = err
			}
			checked++
			if ok {
				accepted++
			}
			switch {
			case ok == (tc.Result == "valid"):
			case g.Public == nil && tc.Result == "valid":
				refusedHMAC++ // HS*: refused by design
			default:
				contradicted = append(contradicted, fmt.Sprintf("%s: label %s, ours %v (%v)", id, tc.Result, ok, why))
			}
		}
	}
	for _, c := range contradicted {
		if reason, known := jwsContradictions[c]; !known {
			t.Errorf("unexplained: %s", c)
		} else {
			t.Logf("contradicted on purpose: %s: %s", c, reason)
		}
	}
	// 401 vectors, 34 of which verify: a new Wycheproof version may change
	// these, a broken loader must not.
	if checked != 401 || f.NumberOfTests != checked || accepted != 34 {
		t.Fatalf("checked %d (the file says %d, want 401), accepted %d (want 34): the harness is broken", checked, f.NumberOfTests, accepted)
	}
	t.Logf("%d vectors, %d accepted, %d HMAC vectors refused by design", checked, accepted, refusedHMAC)
}

// testJWKPublic reads a public JWK as a JWKS entry for verification: a key
// whose "use" is not "sig", or whose "key_ops" lacks "verify", is not one.
// Its "alg", when it names one of ours, pins the algorithm (RFC 7520's
// "ES521" names none and pins nothing).
func testJWKPublic(raw json.RawMessage) (crypto.PublicKey, Algorithm, error) {
	pub, err := testJWKKey(raw)
	if err != nil {
		return nil, "", err
	}
	var j struct{ Alg string }
	_ = json.Unmarshal(raw, &j)
	if in, err := Lookup(j.Alg); err == nil {
		return pub, in.Alg, nil
	}
	return pub, "", nil
}

func testJWKKey(raw json.RawMessage) (crypto.PublicKey, error) {
	if raw == nil {
		return nil, fmt.Errorf("no public key (HMAC)")
	}
	var j struct {
		Kty, Use, Crv, X, Y, N, E string
		KeyOps                    []string `json:"key_ops"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, err
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("key use %q", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return nil, fmt.Errorf("key_ops %v", j.KeyOps)
	}
	num := func(s string) (*big.Int, error) {
		b, err := strictB64.DecodeString(s)
		return new(big.Int).SetBytes(b), err
	}
	switch j.Kty {
	case "RSA":
		n, err1 := num(j.N)
		e, err2 := num(j.E)
		if err1 != nil || err2 != nil || !e.IsInt64() {
			return nil, fmt.Errorf("bad RSA JWK")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		for _, in := range table {
			if in.Crv == j.Crv && in.KeyType == KeyTypeEC {
				x, err1 := strictB64.DecodeString(j.X)
				y, err2 := strictB64.DecodeString(j.Y)
				if err1 != nil || err2 != nil {
					return nil, fmt.Errorf("bad EC JWK")
				}
				return ecdsa.ParseUncompressedPublicKey(in.Curve, append(append([]byte{4}, x...), y...))
			}
		}
	case "OKP":
		x, err := strictB64.DecodeString(j.X)
		if err != nil || j.Crv != "Ed25519" {
			return nil, fmt.Errorf("bad OKP JWK")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported JWK kty %q", j.Kty)
}
