package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Verify checks a JWS signature strictly: the key must match alg (CheckKey),
// the signature must have the exact length for the key, ECDSA signatures are
// R‖S with neither half zero, and RSASSA-PSS salts must be as long as the
// hash. It is the reference every provider is tested against; it is not a
// JWT parser and checks no claims.
func Verify(alg Algorithm, pub crypto.PublicKey, signingInput, sig []byte) error {
	in, err := Lookup(string(alg))
	if err != nil {
		return err
	}
	if err := in.CheckKey(pub); err != nil {
		return err
	}
	if want := in.signatureLen(pub); len(sig) != want {
		return fmt.Errorf("%w: %s signature has %d bytes, want %d", ErrInvalidSignature, alg, len(sig), want)
	}
	switch in.KeyType {
	case KeyTypeRSA:
		k := pub.(*rsa.PublicKey)
		digest := in.Digest(signingInput)
		if in.PSS {
			err = rsa.VerifyPSS(k, in.Hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			err = rsa.VerifyPKCS1v15(k, in.Hash, digest, sig)
		}
		if err != nil {
			return fmt.Errorf("%w: %s", ErrInvalidSignature, alg)
		}
	case KeyTypeEC:
		der, err := ecdsaToDER(in, sig)
		if err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), in.Digest(signingInput), der) {
			return fmt.Errorf("%w: %s", ErrInvalidSignature, alg)
		}
	case KeyTypeOKP:
		if !ed25519.Verify(pub.(ed25519.PublicKey), signingInput, sig) {
			return fmt.Errorf("%w: %s", ErrInvalidSignature, alg)
		}
	}
	return nil
}

// ecdsaToDER turns a JWS R‖S signature into ASN.1 DER, refusing a half that
// is zero or not below the group order.
func ecdsaToDER(in Info, sig []byte) ([]byte, error) {
	half := in.SignatureSize / 2
	r := new(big.Int).SetBytes(sig[:half])
	s := new(big.Int).SetBytes(sig[half:])
	if err := checkScalar(in, r, s); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.Bytes()
}

// ECDSAToJOSE converts an ASN.1 DER ECDSA signature, as crypto/ecdsa and
// AWS KMS produce it, into the fixed-width R‖S form JWS requires (RFC 7518
// §3.4): 64, 96 or 132 bytes for ES256, ES384, ES512. It accepts only
// strict DER: minimal lengths and integers, no trailing bytes, and
// 0 < r, s < n.
func ECDSAToJOSE(alg Algorithm, der []byte) ([]byte, error) {
	in, err := Lookup(string(alg))
	if err != nil {
		return nil, err
	}
	if in.KeyType != KeyTypeEC {
		return nil, fmt.Errorf("%w: %s is not an ECDSA algorithm", ErrUnknownAlgorithm, alg)
	}
	var (
		r, s  = new(big.Int), new(big.Int)
		inner cryptobyte.String
	)
	input := cryptobyte.String(der)
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() ||
		!inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() {
		return nil, fmt.Errorf("%w: ECDSA signature is not a DER SEQUENCE of two INTEGERs", ErrMalformed)
	}
	if err := checkScalar(in, r, s); err != nil {
		return nil, err
	}
	half := in.SignatureSize / 2
	out := make([]byte, in.SignatureSize)
	r.FillBytes(out[:half])
	s.FillBytes(out[half:])
	return out, nil
}

func checkScalar(in Info, r, s *big.Int) error {
	n := in.Curve.Params().N
	for _, v := range []*big.Int{r, s} {
		if v.Sign() <= 0 || v.Cmp(n) >= 0 {
			return fmt.Errorf("%w: ECDSA r and s must be in [1, n-1]", ErrInvalidSignature)
		}
	}
	return nil
}
