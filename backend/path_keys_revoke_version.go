package backend

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathKeysRevokeVersion(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("name") + "/revoke-version",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "revoke-version",
			OperationSuffix: "key",
		},
		Fields: map[string]*framework.FieldSchema{
			"name":    {Type: framework.TypeString, Required: true, Description: "Name of the key."},
			"version": {Type: framework.TypeInt, Required: true, Description: "The version to retire at once. Not the current version: rotate first."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:  b.pathKeyRevokeVersion,
				Summary:   "Retire a compromised key version at once: out of the JWKS, and its tokens no longer verify.",
				Responses: keyResponses,
			},
		},
		HelpSynopsis:    "Retire a key version at once.",
		HelpDescription: pathKeysRevokeVersionHelpDesc,
	}
}

func (b *backend) pathKeyRevokeVersion(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	version, ok := d.GetOk("version")
	if !ok {
		return badRequest(`invalid "version": required`)
	}
	v := version.(int)
	return b.changeKey(ctx, req, d.Get("name").(string), "revoking key version failed", func(k *key) (func(), error) {
		now := b.now()
		i := slices.IndexFunc(k.Versions, func(kv *keyVersion) bool { return kv.Version == v })
		if i < 0 || k.state(k.Versions[i], now) == stateRetired {
			return nil, userError{fmt.Errorf(`invalid "version" %d: key %q has no such published version`, v, k.Name)}
		}
		kid := k.Versions[i].KeyID
		switch k.state(k.Versions[i], now) {
		case stateCurrent:
			return nil, userError{fmt.Errorf(`invalid "version" %d: it is key %q's current version; rotate first (keys/%s/rotate immediate=true), then revoke it`, v, k.Name, k.Name)}
		case stateNext:
			// A version that never signed: the rotation is cancelled and the
			// current version keeps signing.
			k.cancelPending()
		default:
			k.Versions = slices.Delete(k.Versions, i, i+1)
		}
		return func() { b.Logger().Warn("key version revoked", "key", k.Name, "version", v, "kid", kid) }, nil
	})
}

const pathKeysRevokeVersionHelpDesc = `
Retires a previous version of a key at once, for a compromised key: it leaves
the JWKS, its private key (or KMS binding) is deleted, and jwt/verify treats
its tokens as unknown. Verifiers that cached the JWKS drop it when their copy
expires (Cache-Control max-age is jwt/config's jwks_max_age, default 5m). The current version
cannot be revoked: rotate with immediate=true first, then revoke the old one.
Revoking a version still waiting to sign (state next) cancels that rotation.
`
