package backend

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/local"
)

func pathKeysList(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "keys"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback: b.pathKeysList,
				Summary:  "List signing keys.",
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"keys": {Type: framework.TypeStringSlice, Required: true, Description: "Names of the signing keys."},
				}}}},
			},
		},
		HelpSynopsis:    "List the names of the signing keys.",
		HelpDescription: "Lists every signing key of this mount by name.",
	}
}

func pathKeys(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "key"},
		Fields: map[string]*framework.FieldSchema{
			"name": {
				Type:        framework.TypeString,
				Description: "Name of the key.",
				Required:    true,
			},
			"algorithm": {
				Type:        framework.TypeString,
				Default:     string(defaultAlgorithm),
				Description: "JWS algorithm the key signs with: " + strings.Join(signer.AlgorithmNames(), ", ") + ". Fixed at creation.",
			},
			"provider": {
				Type:    framework.TypeString,
				Default: providerLocal,
				Description: `Where the private key lives. "local": generated in the engine and stored in a seal-wrapped path. ` +
					`"awskms": an AWS KMS key named by kms_key_id, which never leaves KMS. Fixed at creation.`,
			},
			"kms_key_id": {
				Type:        framework.TypeString,
				Description: "For provider awskms: the KMS key (key ID, key ARN, alias/<name> or alias ARN). Checked now: enabled, SIGN_VERIFY, a key spec and public key that fit the algorithm, one probe Sign, and not used by any version of any key on the mount. An alias is resolved to its key ARN once.",
			},
			"region": {
				Type:        framework.TypeString,
				Description: "For provider awskms: the KMS key's region, if not jwt/config/aws's. Fixed at creation. Refused for local keys.",
			},
			"endpoint": {
				Type:        framework.TypeString,
				Description: "For provider awskms: a KMS endpoint URL, if not jwt/config/aws's. Fixed at creation. Refused for local keys.",
			},
			"rsa_bits": {
				Type:        framework.TypeInt,
				Default:     local.DefaultRSABits,
				Description: "RSA modulus size for local RS* and PS* keys: 2048, 3072 or 4096. Fixed at creation; not allowed for other algorithms or for awskms keys (the KMS key's spec decides).",
			},
			"rotation_period": {
				Type:        framework.TypeDurationSecond,
				Default:     0,
				Description: "Rotate a local key automatically this long after its current version started signing: the next version is published jwt/config's jwks_max_age before that and signs from then on; while jwt/config's jwks_old_max_age_until is ahead, it is published earlier and signs no earlier than that time. 0 never rotates. At least 1h, at most 87600h (10 years). awskms keys rotate only to a new KMS key, with keys/<name>/rotate.",
			},
			"verification_ttl": {
				Type:        framework.TypeDurationSecond,
				Default:     int(defaultVerificationTTL.Seconds()),
				Description: "How long a version stays published in the JWKS after it stops signing. Must be at least the max_ttl of every role using the key. At least 1m, at most 87600h (10 years).",
			},
		},
		ExistenceCheck: b.keyExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: &framework.PathOperation{
				Callback:     b.pathKeyWrite,
				Summary:      "Create a signing key.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"},
				Responses:    keyResponses,
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     b.pathKeyWrite,
				Summary:      "Update a signing key's rotation_period or verification_ttl.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"},
				Responses:    keyResponses,
			},
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathKeyRead,
				Summary:      "Read a signing key's settings and the public JWK of every published version.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses:    keyResponses,
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:     b.pathKeyDelete,
				Summary:      "Delete a signing key that no role uses.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "delete"},
				Responses: map[int][]framework.Response{
					http.StatusNoContent: {{Description: "No Content"}},
				},
			},
		},
		HelpSynopsis:    pathKeysHelpSyn,
		HelpDescription: pathKeysHelpDesc,
	}
}

var keyResponses = map[int][]framework.Response{
	http.StatusOK: {{
		Description: "OK",
		Fields: map[string]*framework.FieldSchema{
			"name":             {Type: framework.TypeString, Required: true, Description: "Name of the key."},
			"algorithm":        {Type: framework.TypeString, Required: true, Description: "JWS algorithm."},
			"provider":         {Type: framework.TypeString, Required: true, Description: `Where the private key lives: "local" or "awskms".`},
			"rsa_bits":         {Type: framework.TypeInt, Description: "RSA modulus size; present for local RS* and PS* keys only."},
			"region":           {Type: framework.TypeString, Description: "The awskms key's own region, if set."},
			"endpoint":         {Type: framework.TypeString, Description: "The awskms key's own KMS endpoint, if set."},
			"rotation_period":  {Type: framework.TypeInt64, Required: true, Description: "Automatic rotation period in seconds; 0 never."},
			"verification_ttl": {Type: framework.TypeInt64, Required: true, Description: "Seconds a version stays published after it stops signing."},
			"latest_version":   {Type: framework.TypeInt, Required: true, Description: "Number of the newest version (it may be waiting to sign)."},
			"current_version":  {Type: framework.TypeInt, Required: true, Description: "Number of the version that signs now."},
			"current_kid":      {Type: framework.TypeString, Required: true, Description: "kid of the version that signs now."},
			"versions": {Type: framework.TypeMap, Required: true, Description: "Published versions by number: kid, state (next, current or previous), " +
				"created_at, activates_at (when it starts signing), rotated_at and published_until (once a newer version exists), public_key (the public JWK), and for awskms keys kms_key_arn and kms_metrics " +
				"(signs, failures, throttles, retries, bad_signatures, mean_latency_ms, since the plugin loaded the key or, after jwt/config/aws changed, since the version's first sign under it)."},
		},
	}},
}

func (b *backend) keyExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	entry, err := req.Storage.Get(ctx, keyPrefix+d.Get("name").(string))
	if err != nil {
		return false, fmt.Errorf("reading key: %w", err)
	}
	return entry != nil, nil
}

func (b *backend) pathKeysList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, keyPrefix)
	if err != nil {
		return b.respondErr(fmt.Errorf("listing keys: %w", err), "listing keys failed")
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathKeyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	e, err := b.getKey(ctx, req.Storage, name)
	if err != nil {
		return b.respondErr(err, "reading key failed", "key", name)
	}
	if e == nil {
		return nil, nil
	}
	return b.keyResponse(e.key.Name, e)
}

func (b *backend) keyResponse(name string, e *keyEntry) (*logical.Response, error) {
	data, err := e.responseData(b.now())
	if err != nil {
		return b.respondErr(err, "encoding key failed", "key", name)
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathKeyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	existing, err := loadKey(ctx, req.Storage, name)
	if err != nil {
		return b.respondErr(err, "reading key failed", "key", name)
	}

	var k *key
	if existing == nil {
		k = &key{Name: name, Algorithm: defaultAlgorithm, Provider: providerLocal, VerificationTTL: defaultVerificationTTL}
		if v, ok := d.GetOk("algorithm"); ok {
			in, err := signer.Lookup(v.(string))
			if err != nil {
				return badRequest(`invalid "algorithm": %s`, err)
			}
			k.Algorithm = in.Alg
		}
		if v, ok := d.GetOk("provider"); ok {
			k.Provider = v.(string)
		}
		if _, ok := b.providers[k.Provider]; !ok {
			return badRequest(`invalid "provider" %q: must be one of: %s`, k.Provider, strings.Join(b.providerNames(), ", "))
		}
		// Taken whatever the provider, so that validate refuses them on a
		// local key instead of their being dropped.
		k.Region, k.Endpoint = d.Get("region").(string), d.Get("endpoint").(string)
		rsaBits, bitsSet := d.GetOk("rsa_bits")
		switch {
		case bitsSet && k.Provider != providerLocal:
			return badRequest(`invalid "rsa_bits": not for provider %s; the KMS key's spec sets the size`, k.Provider)
		case k.Algorithm.Info().KeyType == signer.KeyTypeRSA && k.Provider != providerLocal:
		case k.Algorithm.Info().KeyType == signer.KeyTypeRSA && bitsSet:
			k.RSABits = rsaBits.(int)
		case k.Algorithm.Info().KeyType == signer.KeyTypeRSA:
			k.RSABits = local.DefaultRSABits
		case bitsSet:
			return badRequest(`invalid "rsa_bits": only RS* and PS* keys take rsa_bits, not %s`, k.Algorithm)
		}
	} else {
		k = existing.clone()
		if _, ok := d.GetOk("kms_key_id"); ok {
			return badRequest(`invalid "kms_key_id": key %q exists; bind a new KMS key with keys/%s/rotate kms_key_id=...`, name, name)
		}
		for field, have := range map[string]any{"algorithm": string(k.Algorithm), "provider": k.Provider, "rsa_bits": k.RSABits, "region": k.Region, "endpoint": k.Endpoint} {
			if v, ok := d.GetOk(field); ok && v != have {
				return badRequest(`invalid %q: cannot change the %s of existing key %q (it is %v); create a new key and point roles at it`, field, field, name, have)
			}
		}
	}
	if v, ok := d.GetOk("rotation_period"); ok {
		k.RotationPeriod = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("verification_ttl"); ok {
		k.VerificationTTL = time.Duration(v.(int)) * time.Second
	}
	if err := k.validateBounds(); err != nil {
		return badRequest("%s", err)
	}

	if existing != nil {
		// Check the settings before anything is generated; for a new key
		// validate runs on a complete key below.
		if err := k.validate(); err != nil {
			return badRequest("%s", err)
		}
		if k.VerificationTTL < existing.VerificationTTL {
			if resp, err := b.checkRolesFitKey(ctx, req.Storage, k); resp != nil || err != nil {
				return resp, err
			}
		}
	} else {
		probe := k.clone()
		probe.Versions, probe.LatestVersion = []*keyVersion{{Version: 1, KeyID: "-"}}, 1
		if k.Provider == providerAWSKMS {
			probe.Versions[0].KMSKeyARN = "-"
		}
		if err := probe.validate(); err != nil {
			return badRequest("%s", err)
		}
		opts := versionOptions{kmsKeyID: d.Get("kms_key_id").(string)}
		now := b.now()
		if err := b.rotateKey(ctx, req.Storage, k, now, now, opts); err != nil {
			return b.respondErr(err, "creating key failed", "key", name, "algorithm", k.Algorithm, "provider", k.Provider)
		}
	}

	if err := b.saveKey(ctx, req.Storage, k); err != nil {
		return b.respondErr(err, "writing key failed", "key", name)
	}
	e, err := b.getKey(ctx, req.Storage, name)
	if err != nil || e == nil {
		return b.respondErr(fmt.Errorf("reading back key %q: %v", name, err), "writing key failed", "key", name)
	}
	return b.keyResponse(name, e)
}

// checkRolesFitKey refuses a verification_ttl shorter than the max_ttl of a
// role using k: its tokens would outlive their key's publication.
func (b *backend) checkRolesFitKey(ctx context.Context, s logical.Storage, k *key) (*logical.Response, error) {
	roles, err := b.rolesUsingKey(ctx, s, k.Name)
	if err != nil {
		return b.respondErr(err, "listing roles failed", "key", k.Name)
	}
	for _, r := range roles {
		if r.MaxTTL > k.VerificationTTL {
			return badRequest(`invalid "verification_ttl" %s: role %q signs with this key and has max_ttl %s; its tokens would outlive the key's publication`,
				k.VerificationTTL, r.Name, r.MaxTTL)
		}
	}
	return nil, nil
}

func (b *backend) pathKeyDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	roles, err := b.rolesUsingKey(ctx, req.Storage, name)
	if err != nil {
		return b.respondErr(err, "listing roles failed", "key", name)
	}
	if len(roles) > 0 {
		names := make([]string, len(roles))
		for i, r := range roles {
			names[i] = r.Name
		}
		return badRequest(`cannot delete key %q: roles %s use it; delete them or point their "key" elsewhere first`, name, strings.Join(names, ", "))
	}
	if err := req.Storage.Delete(ctx, keyPrefix+name); err != nil {
		return b.respondErr(fmt.Errorf("deleting key %q: %w", name, err), "deleting key failed", "key", name)
	}
	b.dropKey(name)
	return nil, nil
}

func (b *backend) providerNames() []string {
	names := make([]string, 0, len(b.providers))
	for n := range b.providers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

const pathKeysHelpSyn = `Manage the signing keys tokens are signed with.`

const pathKeysHelpDesc = `
A key has an algorithm, fixed at creation, and one or more versions. One
version signs (state current). A new version from a rotation is published
first (state next) and signs once jwt/config's jwks_max_age has passed (or
its jwks_old_max_age_until, after jwks_max_age was lowered);
older versions stay published in the JWKS (state previous) for
verification_ttl after they stop signing, so every token they signed can
still be verified. Reading a key returns the public JWK of each published
version and never any private material. A key cannot be deleted while a
role uses it; after moving the last role off it, wait a minute before
deleting it, since a node that has not yet seen the move may still sign with
it.

With provider "local" the engine generates the private key with a
cryptographically secure random source and stores it in a seal-wrapped
path (a second layer of encryption on Vault Enterprise with a seal that
supports it).
`
