package backend

import (
	"context"
	"fmt"
	"slices"
	"time"

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
			"version": {Type: framework.TypeInt, Required: true, Description: "The version to retire at once. Not the current version: rotate first. A next version is cancelled, until 1 minute (or half its wait, if shorter) before it signs."},
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
			// current version keeps signing; but not once it is so close to
			// signing that a node may sign with it before it sees the cancel.
			at := k.Versions[i].activation()
			if margin := cancelMargin(k.Versions[i]); at.Sub(now) < margin {
				return nil, userError{fmt.Errorf(`invalid "version" %d: it is key %q's next version and signs at %s, less than %s from now; a next version that close to signing cannot be cancelled, as a node that has not yet seen the cancel may sign with it. Let it activate, then rotate (keys/%s/rotate, immediate=true if it is compromised) and revoke version %d once it is previous`,
					v, k.Name, at.UTC().Format(time.RFC3339), margin, k.Name, v)}
			}
			k.cancelPending()
		default:
			k.Versions = slices.Delete(k.Versions, i, i+1)
		}
		return func() { b.Logger().Warn("key version revoked", "key", k.Name, "version", v, "kid", kid) }, nil
	})
}

// maxCancelMargin is how long before a next version signs revoke-version
// stops cancelling it. An issue that read the key before the cancel, or a
// performance standby that sees it late (replication lag, clock skew),
// would sign with a version that is gone from storage and the JWKS, so its
// tokens never verify. A minute is far beyond normal lag and NTP skew.
const maxCancelMargin = time.Minute

// cancelMargin is v's margin: maxCancelMargin, but at most half of v's wait
// from staging to signing, so a version staged with a short jwks_max_age
// (10s is allowed) can still be cancelled for a while.
func cancelMargin(v *keyVersion) time.Duration {
	return min(maxCancelMargin, v.activation().Sub(v.CreatedAt)/2)
}

const pathKeysRevokeVersionHelpDesc = `
Retires a previous version of a key at once, for a compromised key: it leaves
the JWKS, its private key (or KMS binding) is deleted, and jwt/verify treats
its tokens as unknown. The current version cannot be revoked: rotate with
immediate=true first, then revoke the old one, back to back.

Verifiers that cache the JWKS drop the version when they next fetch it, and
jwks_max_age does not bound that: JWT libraries ignore Cache-Control (npm
jose keeps a set for 10 minutes by default, PyJWT's PyJWKClient for 300
seconds, go-oidc until a token names a kid it lacks or it restarts). They
refetch, replacing the whole set, on a token with an unknown kid: the first
token of the version rotate just made, so one that arrives after the revoke
makes them drop the compromised version, which is why the two writes go back
to back. Tell relying parties to flush their JWKS caches or restart.
Revoking a version still waiting to sign (state next) cancels that rotation,
until 1 minute before it signs (or half its wait, if it waits less than 2
minutes): closer than that, a node that has not yet seen the cancel may sign
with it, so it is refused; let it activate, then rotate and revoke it.
`
