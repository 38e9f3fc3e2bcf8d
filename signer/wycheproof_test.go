package signer

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
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
}{
	{file: "rsa_signature_2048_sha256_test.json", alg: RS256},
	{file: "rsa_signature_2048_sha384_test.json", alg: RS384},
	{file: "rsa_signature_2048_sha512_test.json", alg: RS512},
	{file: "rsa_signature_4096_sha512_test.json", alg: RS512},
	{file: "rsa_pss_2048_sha256_mgf1_32_test.json", alg: PS256},
	{file: "rsa_pss_3072_sha256_mgf1_32_test.json", alg: PS256},
	{file: "rsa_pss_2048_sha384_mgf1_48_test.json", alg: PS384},
	{file: "rsa_pss_4096_sha512_mgf1_64_test.json", alg: PS512},
	{file: "rsa_pss_2048_sha256_mgf1_0_test.json", alg: PS256, flip: true},
	{file: "rsa_pss_4096_sha512_mgf1_32_test.json", alg: PS512, flip: true},
	{file: "ecdsa_secp256r1_sha256_p1363_test.json", alg: ES256},
	{file: "ecdsa_secp384r1_sha384_p1363_test.json", alg: ES384},
	{file: "ecdsa_secp521r1_sha512_p1363_test.json", alg: ES512},
	{file: "ecdsa_secp256r1_sha256_test.json", alg: ES256, der: true},
	{file: "ecdsa_secp384r1_sha384_test.json", alg: ES384, der: true},
	{file: "ecdsa_secp521r1_sha512_test.json", alg: ES512, der: true},
	{file: "ed25519_test.json", alg: EdDSA},
}

type wycheproofFile struct {
	TestGroups []struct {
		PublicKeyDer string `json:"publicKeyDer"`
		Tests        []struct {
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
			var checked, accepted int
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
			if checked < 8 {
				t.Fatalf("only %d vectors checked", checked)
			}
			if !wf.flip && accepted == 0 {
				t.Fatal("no vector verified: the harness is broken")
			}
			t.Logf("%d vectors, %d accepted", checked, accepted)
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
