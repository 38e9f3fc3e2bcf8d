package signer

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"
)

// The Wycheproof files this project's algorithms are checked against.
// "valid" vectors must verify, "invalid" ones must not; "acceptable" ones
// (legacy encodings) may go either way. The salt-0 PSS file checks that PS256
// refuses signatures with the wrong salt length even though they are valid
// RSASSA-PSS signatures.
var wycheproofFiles = []struct {
	file string
	alg  Algorithm
	// flip means every "valid" vector here must be refused by alg.
	flip bool
	// der means signatures are ASN.1 DER and go through ECDSAToJOSE.
	der bool
	// vectors and valid are how many vectors the file has, and how many of
	// them are labelled "valid": a loader that drops groups, tests or
	// signatures cannot pass. A new Wycheproof version may change them.
	vectors, valid int
}{
	{file: "rsa_signature_2048_sha256_test.json", vectors: 259, valid: 9, alg: RS256},
	{file: "rsa_signature_2048_sha384_test.json", vectors: 258, valid: 7, alg: RS384},
	{file: "rsa_signature_2048_sha512_test.json", vectors: 259, valid: 8, alg: RS512},
	{file: "rsa_signature_4096_sha512_test.json", vectors: 259, valid: 7, alg: RS512},
	{file: "rsa_pss_2048_sha256_mgf1_32_test.json", vectors: 108, valid: 63, alg: PS256},
	{file: "rsa_pss_3072_sha256_mgf1_32_test.json", vectors: 108, valid: 63, alg: PS256},
	{file: "rsa_pss_2048_sha384_mgf1_48_test.json", vectors: 141, valid: 95, alg: PS384},
	{file: "rsa_pss_4096_sha512_mgf1_64_test.json", vectors: 179, valid: 132, alg: PS512},
	{file: "rsa_pss_2048_sha256_mgf1_0_test.json", vectors: 103, valid: 61, alg: PS256, flip: true},
	{file: "rsa_pss_4096_sha512_mgf1_32_test.json", vectors: 177, valid: 132, alg: PS512, flip: true},
	{file: "ecdsa_secp256r1_sha256_p1363_test.json", vectors: 262, valid: 173, alg: ES256},
	{file: "ecdsa_secp384r1_sha384_p1363_test.json", vectors: 280, valid: 193, alg: ES384},
	{file: "ecdsa_secp521r1_sha512_p1363_test.json", vectors: 318, valid: 231, alg: ES512},
	{file: "ecdsa_secp256r1_sha256_test.json", vectors: 484, valid: 174, alg: ES256, der: true},
	{file: "ecdsa_secp384r1_sha384_test.json", vectors: 504, valid: 194, alg: ES384, der: true},
	{file: "ecdsa_secp521r1_sha512_test.json", vectors: 542, valid: 232, alg: ES512, der: true},
	{file: "ed25519_test.json", vectors: 151, valid: 88, alg: EdDSA},
}

type wycheproofFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		PublicKeyDer string `json:"publicKeyDer"`
		// SLen is the salt length of an RSASSA-PSS file's signatures.
		SLen  int `json:"sLen"`
		Tests []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Msg     string   `json:"msg"`
			Sig     string   `json:"sig"`
			Result  string   `json:"result"`
			Flags   []string `json:"flags"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func TestWycheproof(t *testing.T) {
	for _, wf := range wycheproofFiles {
		t.Run(wf.file, func(t *testing.T) {
			raw, err := fs.ReadFile(wycheproof.TestVectors, wf.file)
			if err != nil {
				t.Fatal(err)
			}
			var f wycheproofFile
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			// valid counts "valid" vectors; in a flip file, realPSS
			// counts those that verify with the file's own salt length
			// (so the signature was really read) and that alg refuses.
			var checked, accepted, valid, realPSS int
			for _, g := range f.TestGroups {
				pub, err := x509.ParsePKIXPublicKey(mustHex(t, g.PublicKeyDer))
				if err != nil {
					t.Fatalf("public key: %v", err)
				}
				for _, tc := range g.Tests {
					msg, sig := mustHex(t, tc.Msg), mustHex(t, tc.Sig)
					if wf.der {
						jose, err := ECDSAToJOSE(wf.alg, sig)
						if err != nil {
							if tc.Result == "valid" {
								t.Errorf("tcId %d (%s): valid DER refused: %v", tc.TcID, tc.Comment, err)
							}
							checked++
							continue
						}
						sig = jose
					}
					err := Verify(wf.alg, pub, msg, sig)
					checked++
					if tc.Result == "valid" {
						valid++
						if wf.flip && err != nil && verifyPSSSalt(wf.alg, pub, msg, sig, g.SLen) == nil {
							realPSS++
						}
					}
					switch {
					case tc.Result == "valid" && !wf.flip && err != nil:
						t.Errorf("tcId %d (%s): valid signature refused: %v", tc.TcID, tc.Comment, err)
					case tc.Result == "valid" && wf.flip && err == nil:
						t.Errorf("tcId %d (%s): accepted a signature with the wrong PSS salt length", tc.TcID, tc.Comment)
					case wf.flip:
						// "invalid" here means invalid for salt length 0,
						// which says nothing about PS256's fixed salt.
					case tc.Result == "invalid" && err == nil:
						t.Errorf("tcId %d (%s) %v: invalid signature accepted", tc.TcID, tc.Comment, tc.Flags)
					case err == nil:
						accepted++
					}
					if err != nil && !errors.Is(err, ErrInvalidSignature) && !errors.Is(err, ErrKeyMismatch) && !errors.Is(err, ErrMalformed) {
						t.Errorf("tcId %d: error %v wraps no sentinel", tc.TcID, err)
					}
				}
			}
			if checked != wf.vectors || f.NumberOfTests != wf.vectors || valid != wf.valid {
				t.Fatalf("checked %d vectors, %d of them valid; the file says it has %d, the table %d with %d valid", checked, valid, f.NumberOfTests, wf.vectors, wf.valid)
			}
			if !wf.flip && accepted < valid {
				t.Fatalf("%d vectors verified, fewer than the %d valid ones: the harness is broken", accepted, valid)
			}
			if wf.flip && (realPSS != valid || valid == 0) {
				t.Fatalf("%d of %d valid vectors verify with salt length %d and are refused by %s: the harness is broken", realPSS, valid, f.TestGroups[0].SLen, wf.alg)
			}
			t.Logf("%d vectors, %d valid, %d accepted", checked, valid, accepted)
		})
	}
}

// verifyPSSSalt verifies an RSASSA-PSS signature whose salt has saltLen
// bytes (MGF1 with the signature's own hash), as a flip file's signatures
// were made.
func verifyPSSSalt(alg Algorithm, pub crypto.PublicKey, msg, sig []byte, saltLen int) error {
	in := alg.Info()
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("not an RSA key: %T", pub)
	}
	if saltLen == 0 {
		saltLen = rsa.PSSSaltLengthAuto // Go reads a SaltLength of 0 as auto
	}
	return rsa.VerifyPSS(k, in.Hash, in.Digest(msg), sig, &rsa.PSSOptions{SaltLength: saltLen})
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
