package backend

import (
	"context"
	"fmt"
	"net/http"

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
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:  b.pathKeyRotate,
				Summary:   "Rotate a key: a new version starts signing now.",
				Responses: keyResponses,
			},
		},
		HelpSynopsis:    "Rotate a signing key.",
		HelpDescription: pathKeysRotateHelpDesc,
	}
}

func (b *backend) pathKeyRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	opts := versionOptions{kmsKeyID: d.Get("kms_key_id").(string)}
	return b.changeKey(ctx, req, d.Get("name").(string), "rotating key failed", func(k *key) (func(), error) {
		if err := b.rotateKey(ctx, req.Storage, k, b.now(), opts); err != nil {
			return nil, err
		}
		return func() {
			b.Logger().Info("rotated key", "key", k.Name, "version", k.LatestVersion, "kid", k.current().KeyID)
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
Adds a new version to the key and makes it the signing version at once.
The previous version stays in the JWKS for the key's verification_ttl, so
tokens it signed keep verifying; after that it is removed, private key and
all. Verifiers that cache the JWKS see the new kid on their next fetch.
`
