package backend

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathKeysRotate(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("name") + "/rotate",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "rotate",
			OperationSuffix: "key",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Required: true, Description: "Name of the key."},
			"kms_key_id": {
				Type:        framework.TypeString,
				Description: "For awskms keys, required: the new KMS key the new version signs with (AWS does not rotate asymmetric keys itself). Not for local keys.",
			},
			"immediate": {
				Type:        framework.TypeBool,
				Description: "Sign with the new version now, for a compromised key, instead of after jwks_max_age (or at jwt/config's jwks_old_max_age_until, if later). Verifiers holding a cached JWKS reject its tokens until they refetch. With a version already waiting (state next), make that one sign now.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:  b.pathKeyRotate,
				Summary:   "Rotate a key: a new version is published now and signs after the mount's jwks_max_age, or until config's jwks_old_max_age_until if later (or at once, with immediate).",
				Responses: keyResponses,
			},
		},
		HelpSynopsis:    "Rotate a signing key.",
		HelpDescription: pathKeysRotateHelpDesc,
	}
}

func (b *backend) pathKeyRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	opts := versionOptions{kmsKeyID: d.Get("kms_key_id").(string)}
	immediate := d.Get("immediate").(bool)
	cfg, err := b.getConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading config failed")
	}
	return b.changeKey(ctx, req, d.Get("name").(string), "rotating key failed", func(k *key) (func(), error) {
		now := b.now()
		if p := k.pending(now); p != nil {
			if !immediate {
				return nil, userError{fmt.Errorf(`key %q already has version %d waiting to sign at %s; rotate again after that, or pass immediate=true to make version %d sign now`,
					k.Name, p.Version, p.activation().UTC().Format(time.RFC3339), p.Version)}
			}
			if opts.kmsKeyID != "" {
				return nil, userError{fmt.Errorf(`invalid "kms_key_id": key %q already has version %d waiting to sign; immediate=true makes that version sign now and takes no new kms_key_id`, k.Name, p.Version)}
			}
			k.activatePending(now)
			return func() {
				b.Logger().Warn("activated pending key version early", "key", k.Name, "version", p.Version, "kid", p.KeyID)
			}, nil
		}
		at := now.Add(cfg.rotationLead(now))
		if immediate {
			at = now
		}
		if err := b.rotateKey(ctx, req.Storage, k, now, at, opts); err != nil {
			return nil, err
		}
		nv := k.Versions[len(k.Versions)-1]
		return func() {
			log := b.Logger().Info
			if immediate {
				log = b.Logger().Warn
			}
			log("rotated key", "key", k.Name, "version", nv.Version, "kid", nv.KeyID, "activates_at", at.UTC().Format(time.RFC3339), "immediate", immediate)
		}, nil
	})
}

// changeKey is the frame of a key action: under writeMu, load the key (404
// if missing), let change alter a copy, save it, run the func change
// returned (to log what happened, now that it has), and answer with the key
// as read. An error from change is answered by respondErr (a userError is a
// 400) and nothing is saved.
func (b *backend) changeKey(ctx context.Context, req *logical.Request, name, failMsg string, change func(k *key) (after func(), err error)) (*logical.Response, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	k, err := loadKey(ctx, req.Storage, name)
	if err != nil {
		return b.respondErr(err, "reading key failed", "key", name)
	}
	if k == nil {
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("key %q does not exist", name))
	}
	k = k.clone()
	after, err := change(k)
	if err != nil {
		return b.respondErr(err, failMsg, "key", name)
	}
	if err := b.saveKey(ctx, req.Storage, k); err != nil {
		return b.respondErr(err, "writing key failed", "key", name)
	}
	if after != nil {
		after()
	}
	e, err := b.getKey(ctx, req.Storage, name)
	if err != nil || e == nil {
		return b.respondErr(fmt.Errorf("reading back key %q: %v", name, err), failMsg, "key", name)
	}
	return b.keyResponse(name, e)
}

const pathKeysRotateHelpDesc = `
Adds a new version to the key in state "next": it is in the JWKS at once
but starts signing only after jwt/config's jwks_max_age (default 5m), so
every verifier that refreshes its cached JWKS as told (Cache-Control
max-age) has the new kid before the first token signed with it. After
jwks_max_age was lowered, it waits at least until jwt/config's
jwks_old_max_age_until, when copies served with the old max-age expire. Then the
old version becomes "previous" and stays in the JWKS for the key's
verification_ttl, so tokens it signed keep verifying; after that it is
removed, private key and all.

While a version is waiting, rotate refuses to add another. immediate=true
skips the wait (for a compromised key: rotate with immediate=true, then
revoke-version the old one); with a version waiting, it makes that version
sign now. Tokens from a version that signs at once fail at verifiers whose
cached JWKS lacks it until they refetch.
`
