package kmstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	// Register SHA-256 for crypto.SHA256.New; sha512 is imported above.
	_ "crypto/sha256"
)

// Key states, as KeyMetadata.KeyState reports them.
const (
	stateEnabled         = "Enabled"
	stateDisabled        = "Disabled"
	statePendingDeletion = "PendingDeletion"
)

// keySpec is one KMS KeySpec this server implements.
type keySpec struct {
	name string
	// algs are the SigningAlgorithms AWS lists for the spec, in AWS's order.
	algs []string
	gen  func() (crypto.Signer, error)
}

var rsaAlgs = []string{
	"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
	"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
}

// keySpecs are the implemented specs: every SIGN_VERIFY spec a JWT can use.
var keySpecs = map[string]keySpec{
	"RSA_2048":              {"RSA_2048", rsaAlgs, genRSA(2048)},
	"RSA_3072":              {"RSA_3072", rsaAlgs, genRSA(3072)},
	"RSA_4096":              {"RSA_4096", rsaAlgs, genRSA(4096)},
	"ECC_NIST_P256":         {"ECC_NIST_P256", []string{"ECDSA_SHA_256"}, genEC(elliptic.P256())},
	"ECC_NIST_P384":         {"ECC_NIST_P384", []string{"ECDSA_SHA_384"}, genEC(elliptic.P384())},
	"ECC_NIST_P521":         {"ECC_NIST_P521", []string{"ECDSA_SHA_512"}, genEC(elliptic.P521())},
	"ECC_NIST_EDWARDS25519": {"ECC_NIST_EDWARDS25519", []string{"ED25519_SHA_512", "ED25519_PH_SHA_512"}, genEd25519},
}

// otherKeySpecs are valid in AWS but not implemented here: asking for one is
// UnsupportedOperationException, not ValidationException.
var otherKeySpecs = []string{
	"ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512",
	"SM2", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024",
}

// KeySpecs returns the KeySpec values CreateKey accepts, sorted.
func KeySpecs() []string {
	out := make([]string, 0, len(keySpecs))
	for name := range keySpecs {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// SigningAlgorithms returns the SigningAlgorithmSpec values AWS lists for
// spec, in AWS's order; nil for a spec this server does not implement.
func SigningAlgorithms(spec string) []string {
	return slices.Clone(keySpecs[spec].algs)
}

func genRSA(bits int) func() (crypto.Signer, error) {
	return func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, bits) }
}

func genEC(c elliptic.Curve) func() (crypto.Signer, error) {
	return func() (crypto.Signer, error) { return ecdsa.GenerateKey(c, rand.Reader) }
}

func genEd25519() (crypto.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// specOf names the KeySpec of an existing private key, for AddKeyForTest.
func specOf(priv crypto.Signer) (string, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		switch k.N.BitLen() {
		case 2048, 3072, 4096:
			return fmt.Sprintf("RSA_%d", k.N.BitLen()), nil
		}
		return "", fmt.Errorf("kmstest: KMS has no RSA key spec with %d bits", k.N.BitLen())
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return "ECC_NIST_P256", nil
		case elliptic.P384():
			return "ECC_NIST_P384", nil
		case elliptic.P521():
			return "ECC_NIST_P521", nil
		}
		return "", fmt.Errorf("kmstest: KMS has no key spec for curve %s", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return "ECC_NIST_EDWARDS25519", nil
	}
	return "", fmt.Errorf("kmstest: KMS has no key spec for %T", priv)
}

// sigKind is how a SigningAlgorithmSpec signs.
type sigKind int

const (
	kindUnsupported sigKind = iota // a valid AWS name no spec here offers
	kindPKCS1
	kindPSS
	kindECDSA
	kindEd25519   // pure Ed25519 over the message; RAW only
	kindEd25519ph // Ed25519ph (RFC 8032 §5.1); DIGEST only
)

type sigAlg struct {
	kind sigKind
	hash crypto.Hash
}

// sigAlgs holds every SigningAlgorithmSpec AWS defines, so an unknown name is
// ValidationException and a known one the key lacks is InvalidKeyUsage.
var sigAlgs = map[string]sigAlg{
	"RSASSA_PSS_SHA_256":        {kindPSS, crypto.SHA256},
	"RSASSA_PSS_SHA_384":        {kindPSS, crypto.SHA384},
	"RSASSA_PSS_SHA_512":        {kindPSS, crypto.SHA512},
	"RSASSA_PKCS1_V1_5_SHA_256": {kindPKCS1, crypto.SHA256},
	"RSASSA_PKCS1_V1_5_SHA_384": {kindPKCS1, crypto.SHA384},
	"RSASSA_PKCS1_V1_5_SHA_512": {kindPKCS1, crypto.SHA512},
	"ECDSA_SHA_256":             {kindECDSA, crypto.SHA256},
	"ECDSA_SHA_384":             {kindECDSA, crypto.SHA384},
	"ECDSA_SHA_512":             {kindECDSA, crypto.SHA512},
	"ED25519_SHA_512":           {kindEd25519, crypto.SHA512},
	"ED25519_PH_SHA_512":        {kindEd25519ph, crypto.SHA512},
	"SM2DSA":                    {kind: kindUnsupported},
	"ML_DSA_SHAKE_256":          {kind: kindUnsupported},
}

// maxRawMessage is the largest RAW message Sign and Verify accept.
const maxRawMessage = 4096

// key is one KMS key. The fields above mu-guarded ones never change after
// creation, so signing needs no lock once the key is found.
type key struct {
	id, arn     string
	spec        keySpec
	priv        crypto.Signer
	pubDER      []byte
	created     time.Time
	description string

	// Guarded by Server.mu.
	state        string
	deletionDate time.Time
	pendingDays  int
	tags         map[string]string
}

func newKey(id, arn string, spec keySpec, priv crypto.Signer, created time.Time, description string) (*key, error) {
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("kmstest: encoding public key: %w", err)
	}
	return &key{
		id: id, arn: arn, spec: spec, priv: priv, pubDER: der,
		created: created, description: description,
		state: stateEnabled, tags: map[string]string{},
	}, nil
}

// gone reports whether the key's deletion window has passed: from then on
// it does not exist.
func (k *key) gone(now time.Time) bool {
	return k.state == statePendingDeletion && !now.Before(k.deletionDate)
}

// usable is the state check Sign, Verify and GetPublicKey make.
func (k *key) usable() *apiError {
	switch k.state {
	case stateDisabled:
		return errorf(errDisabled, "%s is disabled.", k.arn)
	case statePendingDeletion:
		return errorf(errInvalidState, "%s is pending deletion.", k.arn)
	}
	return nil
}

// prepare checks a Sign or Verify request against the key and AWS's rules
// and returns the algorithm and the bytes the primitive takes: the digest
// for RSA and ECDSA, the message for Ed25519, the SHA-512 prehash for
// Ed25519ph.
func (k *key) prepare(algName, messageType string, msg []byte) (sigAlg, []byte, *apiError) {
	alg, ok := sigAlgs[algName]
	if !ok {
		return sigAlg{}, nil, errorf(errValidation, "1 validation error detected: Value '%s' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set", algName)
	}
	if !slices.Contains(k.spec.algs, algName) {
		return sigAlg{}, nil, errorf(errInvalidKeyUsage, "%s key %s does not support signing algorithm %s; it supports %v", k.spec.name, k.arn, algName, k.spec.algs)
	}
	if messageType == "" {
		messageType = "RAW"
	}
	if len(msg) == 0 {
		return sigAlg{}, nil, errorf(errValidation, "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	switch messageType {
	case "RAW":
		if len(msg) > maxRawMessage {
			return sigAlg{}, nil, errorf(errValidation, "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length less than or equal to %d", maxRawMessage)
		}
		switch alg.kind {
		case kindEd25519:
			return alg, msg, nil
		case kindEd25519ph:
			return sigAlg{}, nil, errorf(errValidation, "Signing algorithm %s requires MessageType DIGEST", algName)
		}
		h := alg.hash.New()
		h.Write(msg)
		return alg, h.Sum(nil), nil
	case "DIGEST":
		if alg.kind == kindEd25519 {
			return sigAlg{}, nil, errorf(errValidation, "Signing algorithm %s requires MessageType RAW", algName)
		}
		if len(msg) != alg.hash.Size() {
			return sigAlg{}, nil, errorf(errValidation, "Digest is invalid length for algorithm %s: %d bytes, want %d", algName, len(msg), alg.hash.Size())
		}
		if alg.kind == kindEd25519ph {
			// AWS still applies the Ed25519ph prehash to the digest
			// it is given: the digest is the message M of RFC 8032.
			ph := sha512.Sum512(msg)
			return alg, ph[:], nil
		}
		return alg, msg, nil
	case "EXTERNAL_MU":
		return sigAlg{}, nil, errorf(errInvalidKeyUsage, "MessageType EXTERNAL_MU is only for ML-DSA keys")
	}
	return sigAlg{}, nil, errorf(errValidation, "1 validation error detected: Value '%s' at 'messageType' failed to satisfy constraint: Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]", messageType)
}

// sign signs the bytes prepare returned. ECDSA signatures are ASN.1 DER,
// as AWS returns them.
func (k *key) sign(alg sigAlg, in []byte) ([]byte, error) {
	switch alg.kind {
	case kindPKCS1:
		return k.priv.Sign(rand.Reader, in, alg.hash)
	case kindPSS:
		return k.priv.Sign(rand.Reader, in, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: alg.hash})
	case kindECDSA:
		return ecdsa.SignASN1(rand.Reader, k.priv.(*ecdsa.PrivateKey), in)
	case kindEd25519:
		return k.priv.Sign(rand.Reader, in, crypto.Hash(0))
	case kindEd25519ph:
		return k.priv.Sign(rand.Reader, in, &ed25519.Options{Hash: crypto.SHA512})
	}
	return nil, fmt.Errorf("kmstest: no signer for kind %d", alg.kind)
}

// verify checks sig over the bytes prepare returned.
func (k *key) verify(alg sigAlg, in, sig []byte) bool {
	switch pub := k.priv.Public().(type) {
	case *rsa.PublicKey:
		if alg.kind == kindPSS {
			return rsa.VerifyPSS(pub, alg.hash, in, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(pub, alg.hash, in, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(pub, in, sig)
	case ed25519.PublicKey:
		opts := &ed25519.Options{}
		if alg.kind == kindEd25519ph {
			opts.Hash = crypto.SHA512
		}
		return ed25519.VerifyWithOptions(pub, in, sig, opts) == nil
	}
	return false
}

// newKeyID returns a random version-4 UUID, the form of KMS key IDs.
func newKeyID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
