// Command floorplugin is the load harness's floor: the least a Vault
// secrets-engine plugin can do per signing request. It has one path, sign
// (update), which signs a fixed 300-byte input with an in-memory key made
// when the mount starts, and returns the signature in JWS form. No storage,
// no claims, no caches: what a request to it costs is Vault's routing and
// the gRPC hop to an external plugin, plus one signature. See
// scripts/load.sh, which builds, registers and mounts it at floor/.
//
//	vault write floor/sign alg=ES256
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/scripts/load/internal/jwssign"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "floorplugin:", err)
		os.Exit(1)
	}
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	})
	if err != nil {
		hclog.New(&hclog.LoggerOptions{}).Error("floorplugin: serving failed", "error", err)
		os.Exit(1)
	}
}

// signInputSize is the size of what the floor signs: about a JWT's header
// and claims, as in BenchmarkRawSign.
const signInputSize = 300

type backend struct {
	*framework.Backend
	input []byte
	keys  map[string]crypto.Signer // by JWS alg
}

// factory makes a backend with fresh keys: each mount has its own, and
// nothing is kept in package globals (one process serves every mount).
func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b, err := newBackend()
	if err != nil {
		return nil, err
	}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, fmt.Errorf("floorplugin: setting up the backend: %w", err)
	}
	return b, nil
}

func newBackend() (*backend, error) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("floorplugin: generating the P-256 key: %w", err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("floorplugin: generating the Ed25519 key: %w", err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("floorplugin: generating the RSA key: %w", err)
	}
	b := &backend{
		input: []byte(strings.Repeat("x", signInputSize)),
		keys:  map[string]crypto.Signer{"ES256": ec, "EdDSA": ed, "RS256": rs},
	}
	b.Backend = &framework.Backend{
		BackendType: logical.TypeLogical,
		Help:        "The load harness's floor: one path, sign, that signs a fixed 300-byte input.",
		Paths: []*framework.Path{{
			Pattern: "sign",
			Fields: map[string]*framework.FieldSchema{
				"alg": {Type: framework.TypeString, Default: "ES256", Description: "ES256, EdDSA or RS256."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathSign,
					Summary:  "Sign the fixed input; returns the signature, base64url, in JWS form.",
				},
			},
			HelpSynopsis: "Sign a fixed 300-byte input with an in-memory key.",
		}},
	}
	return b, nil
}

func (b *backend) pathSign(_ context.Context, _ *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	alg := d.Get("alg").(string)
	key, ok := b.keys[alg]
	if !ok {
		return logical.ErrorResponse(`invalid "alg" %q: must be ES256, EdDSA or RS256`, alg), logical.ErrInvalidRequest
	}
	sig, err := sign(key, b.input)
	if err != nil {
		return nil, fmt.Errorf("signing with %s: %w", alg, err)
	}
	return &logical.Response{Data: map[string]any{"signature": base64.RawURLEncoding.EncodeToString(sig)}}, nil
}

// sign signs msg as a JWS signer does (jwssign.Sign).
func sign(key crypto.Signer, msg []byte) ([]byte, error) { return jwssign.Sign(key, msg) }
