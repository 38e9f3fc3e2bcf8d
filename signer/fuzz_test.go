package signer

import (
	"bytes"
	"testing"
)

// FuzzECDSAToJOSE: the DER parser takes bytes from outside (an HSM's
// answer). Whatever it is given, it either refuses or returns exactly the
// JWS width, and what it accepts is the one strict DER encoding of the
// result (so no two inputs map to the same R‖S).
func FuzzECDSAToJOSE(f *testing.F) {
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, alg := range []Algorithm{ES256, ES384, ES512} {
			out, err := ECDSAToJOSE(alg, der)
			if err != nil {
				continue
			}
			in := alg.Info()
			if len(out) != in.SignatureSize {
				t.Fatalf("%s: %d bytes, want %d", alg, len(out), in.SignatureSize)
			}
			back, err := ecdsaToDER(in, out)
			if err != nil {
				t.Fatalf("%s: accepted DER gives unusable R‖S: %v", alg, err)
			}
			if !bytes.Equal(back, der) {
				t.Fatalf("%s: accepted non-canonical DER %x (canonical %x)", alg, der, back)
			}
		}
	})
}
