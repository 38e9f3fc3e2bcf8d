package backend

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/local"
)

// providerLocal generates keys in the engine and stores them seal-wrapped.
const providerLocal = "local"

// keyProvider is where a key's versions come from and how they sign. The
// backend holds one per provider name in a field, so tests inject their own
// and mounts never share state.
type keyProvider interface {
	// create makes the material for a new version of k, filling in
	// KeyID and PublicKey (and whatever the provider stores to sign).
	// Errors the caller can fix are userErrors.
	create(ctx context.Context, s logical.Storage, k *key, opts versionOptions) (*keyVersion, error)
	// signer builds the signer for a stored version of k, without I/O to
	// the key's holder.
	signer(ctx context.Context, s logical.Storage, k *key, v *keyVersion) (signer.Signer, error)
}

// versionOptions are the request's say in a new version.
type versionOptions struct {
	// kmsKeyID is the KMS key a new awskms version is bound to.
	kmsKeyID string
}

func (b *backend) provider(name string) (keyProvider, error) {
	p, ok := b.providers[name]
	if !ok {
		return nil, fmt.Errorf("no key provider %q", name)
	}
	return p, nil
}

// localProvider generates keys with crypto/rand; the private key is kept as
// PKCS #8 in the seal-wrapped key entry.
type localProvider struct{}

func (localProvider) create(_ context.Context, _ logical.Storage, k *key, opts versionOptions) (*keyVersion, error) {
	if opts.kmsKeyID != "" {
		return nil, userError{fmt.Errorf(`invalid "kms_key_id": only provider awskms keys are bound to KMS keys`)}
	}
	priv, err := local.Generate(k.Algorithm, k.RSABits)
	if err != nil {
		return nil, err
	}
	der, err := local.MarshalPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	kid, err := signer.Thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	return &keyVersion{KeyID: kid, PublicKey: pub, PrivateKey: der}, nil
}

func (localProvider) signer(_ context.Context, _ logical.Storage, k *key, v *keyVersion) (signer.Signer, error) {
	priv, err := local.ParsePrivateKey(v.PrivateKey)
	if err != nil {
		return nil, err
	}
	return local.New(k.Algorithm, v.KeyID, priv)
}
