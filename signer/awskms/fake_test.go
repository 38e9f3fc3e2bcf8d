package awskms

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/local"
)

// fakeKMS is an in-process stand-in for the narrow API, for tests that need
// exact control (a wrong signature, a clock, a precise failure). The real
// SDK against kmstest covers the wire.
type fakeKMS struct {
	mu   sync.Mutex
	keys map[string]*fakeKey
	// signHook, when set, replaces Sign's answer.
	signHook func(in *kms.SignInput) (*kms.SignOutput, error)
	calls    int
}

type fakeKey struct {
	md   types.KeyMetadata
	priv crypto.Signer
}

func newFakeKMS() *fakeKMS { return &fakeKMS{keys: map[string]*fakeKey{}} }

// add makes a key for alg and returns its ARN.
func (f *fakeKMS) add(t *testing.T, alg signer.Algorithm) string {
	t.Helper()
	priv, err := local.Generate(alg, 2048)
	if err != nil {
		t.Fatal(err)
	}
	in := alg.Info()
	spec := in.KMSKeySpec
	if spec == "" {
		spec = "RSA_2048"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("1234abcd-12ab-34cd-56ef-%012d", len(f.keys)+1)
	arn := "arn:aws:kms:us-east-1:111122223333:key/" + id
	algs := []types.SigningAlgorithmSpec{types.SigningAlgorithmSpec(in.KMSSigningAlgorithm)}
	if in.KeyType == signer.KeyTypeRSA {
		algs = []types.SigningAlgorithmSpec{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
			"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}
	}
	f.keys[arn] = &fakeKey{priv: priv, md: types.KeyMetadata{
		Arn: aws.String(arn), KeyId: aws.String(id), KeySpec: types.KeySpec(spec), KeyUsage: types.KeyUsageTypeSignVerify,
		KeyState: types.KeyStateEnabled, Enabled: true, SigningAlgorithms: algs,
	}}
	f.keys["alias/k"+fmt.Sprint(len(f.keys))] = f.keys[arn]
	return arn
}

func (f *fakeKMS) key(ref *string) (*fakeKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if k, ok := f.keys[aws.ToString(ref)]; ok {
		return k, nil
	}
	return nil, &types.NotFoundException{Message: aws.String("no such key")}
}

func (f *fakeKMS) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	k, err := f.key(in.KeyId)
	if err != nil {
		return nil, err
	}
	md := k.md
	return &kms.DescribeKeyOutput{KeyMetadata: &md}, nil
}

func (f *fakeKMS) GetPublicKey(_ context.Context, in *kms.GetPublicKeyInput, _ ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	k, err := f.key(in.KeyId)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	return &kms.GetPublicKeyOutput{KeyId: k.md.Arn, PublicKey: der, KeySpec: k.md.KeySpec}, err
}

func (f *fakeKMS) Sign(ctx context.Context, in *kms.SignInput, _ ...func(*kms.Options)) (*kms.SignOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.signHook != nil {
		return f.signHook(in)
	}
	k, err := f.key(in.KeyId)
	if err != nil {
		return nil, err
	}
	if k.md.KeyState == types.KeyStateDisabled {
		return nil, &types.DisabledException{Message: aws.String("disabled")}
	}
	var alg signer.Algorithm
	for _, a := range signer.Algorithms() {
		if a.Info().KMSSigningAlgorithm == string(in.SigningAlgorithm) {
			alg = a
		}
	}
	info := alg.Info()
	var opts crypto.SignerOpts = info.Hash
	if info.PSS {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: info.Hash}
	}
	if (in.MessageType == types.MessageTypeRaw) != (info.Hash == 0) {
		return nil, fmt.Errorf("fake: wrong message type %s for %s", in.MessageType, alg)
	}
	sig, err := k.priv.Sign(rand.Reader, in.Message, opts)
	if err != nil {
		return nil, err
	}
	return &kms.SignOutput{KeyId: k.md.Arn, Signature: sig, SigningAlgorithm: in.SigningAlgorithm}, nil
}
