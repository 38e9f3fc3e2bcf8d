package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// jwksDoc is the encoded JWK Set, cached until a key changes or a
// published version's publication ends.
type jwksDoc struct {
	body []byte
	// kids maps every published kid to its key's name, for verify.
	kids map[string]string
	// expires is when the earliest previous version leaves the set; zero
	// if none will.
	expires time.Time
	// maxAge is jwt/config's jwks_max_age when the set was built.
	maxAge time.Duration
}

func pathJWKS(b *backend) []*framework.Path {
	jwks := func(pattern, suffix, summary string) *framework.Path {
		return &framework.Path{
			Pattern:      pattern,
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "read", OperationSuffix: suffix},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathJWKSRead,
					Summary:  summary,
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "A JWK Set (RFC 7517), as the raw body with Content-Type application/jwk-set+json."}},
					},
				},
			},
			HelpSynopsis:    pathJWKSHelpSyn,
			HelpDescription: pathJWKSHelpDesc,
		}
	}
	return []*framework.Path{
		jwks("jwks$", "jwks", "The public keys of every published key version, as a JWK Set. No token needed."),
		jwks(`\.well-known/keys$`, "well-known-keys", "The same JWK Set as jwks, at the path OIDC discovery names. No token needed."),
		{
			Pattern:      `\.well-known/openid-configuration$`,
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "read", OperationSuffix: "openid-configuration"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathDiscoveryRead,
					Summary:  "OpenID Connect discovery document: issuer, jwks_uri and signing algorithms. No token needed.",
					Responses: map[int][]framework.Response{
						http.StatusOK: {{Description: "The discovery document as the raw JSON body."}},
					},
				},
			},
			HelpSynopsis:    "OpenID Connect discovery for this mount's issuer.",
			HelpDescription: pathDiscoveryHelpDesc,
		},
	}
}

func (b *backend) pathJWKSRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	doc, err := b.getJWKS(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "building JWKS failed")
	}
	return rawResponse("application/jwk-set+json", doc.body, b.maxAge(doc)), nil
}

func (b *backend) pathDiscoveryRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.getConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading config failed")
	}
	if cfg.Issuer == "" {
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf(`no issuer configured: write "issuer" to %s`, configAPIPath(req)))
	}
	if _, ok := issuerURL(cfg.Issuer); !ok {
		// A document naming it would have a relative jwks_uri that no
		// discovery client can follow.
		return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf(`discovery needs an issuer that is an http(s) URL, such as https://vault.example.com/v1/jwt: %s's issuer is not one`, configAPIPath(req)))
	}
	doc, err := b.getJWKS(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "building JWKS failed")
	}
	body, err := json.Marshal(map[string]any{
		"issuer":                                cfg.Issuer,
		"jwks_uri":                              strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/keys",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": signer.AlgorithmNames(),
	})
	if err != nil {
		return b.respondErr(err, "encoding discovery document failed")
	}
	return rawResponse("application/json", body, b.maxAge(doc)), nil
}

// configAPIPath is the config path as the caller reaches it: the request's
// mount point ("jwt/", "jwt-a/", "team/jwt/"; Vault's router sets it) and
// "config".
func configAPIPath(req *logical.Request) string {
	return req.MountPoint + "config"
}

func rawResponse(contentType string, body []byte, maxAge time.Duration) *logical.Response {
	return &logical.Response{Data: map[string]any{
		logical.HTTPStatusCode:         http.StatusOK,
		logical.HTTPContentType:        contentType,
		logical.HTTPRawBody:            body,
		logical.HTTPCacheControlHeader: fmt.Sprintf("public, max-age=%d", int64(maxAge.Seconds())),
	}}
}

// partialJWKSMaxAge bounds how long a JWK Set that lacks a key which could
// not be loaded is cached, by the engine and by verifiers.
const partialJWKSMaxAge = 30 * time.Second

// maxAge is how long a verifier may cache doc: jwks_max_age, but never
// past the end of a published version's publication.
func (b *backend) maxAge(doc *jwksDoc) time.Duration {
	age := doc.maxAge
	if !doc.expires.IsZero() {
		age = min(age, doc.expires.Sub(b.now()))
	}
	return max(age, 0).Truncate(time.Second)
}

// getJWKS returns the cached JWK Set, rebuilding it when a key changed or
// a version's publication ended.
func (b *backend) getJWKS(ctx context.Context, s logical.Storage) (*jwksDoc, error) {
	now := b.now()
	b.cacheMu.RLock()
	doc, gen := b.jwks, b.gen
	b.cacheMu.RUnlock()
	if doc != nil && (doc.expires.IsZero() || now.Before(doc.expires)) {
		return doc, nil
	}

	cfg, err := b.getConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	names, err := s.List(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	sort.Strings(names)
	set := signer.JWKSet{Keys: []signer.JWK{}}
	next := &jwksDoc{kids: map[string]string{}, maxAge: cfg.jwksMaxAge()}
	seen := map[string]string{}
	for _, name := range names {
		e, err := b.getKey(ctx, s, name)
		var unloadable keyLoadError
		switch {
		case errors.As(err, &unloadable):
			// One stored key that cannot load must not take down every
			// other key's verification: serve the rest, say so at ERROR,
			// and let the set be cached (here and by verifiers) only
			// briefly, so the key is back soon after the cause is fixed.
			b.Logger().Error("JWKS: key cannot be loaded; publishing the other keys without it", "key", name, "error", err)
			if until := now.Add(partialJWKSMaxAge); next.expires.IsZero() || until.Before(next.expires) {
				next.expires = until
			}
			continue
		case err != nil:
			// Storage failing is not a key to leave out: a set served
			// without it would fail that key's valid tokens.
			return nil, err
		}
		if e == nil {
			continue // deleted since the list
		}
		for _, v := range e.key.published(now) {
			if other, dup := seen[v.KeyID]; dup {
				// Thumbprint kids collide only if two keys hold the same
				// material; publish it once.
				b.Logger().Warn("same key material in two keys; publishing it once", "kid", v.KeyID, "key", name, "other_key", other)
				continue
			}
			seen[v.KeyID] = name
			next.kids[v.KeyID] = name
			jwk, err := signer.PublicJWK(e.key.Algorithm, v.KeyID, e.signers[v.Version].Public())
			if err != nil {
				return nil, fmt.Errorf("key %q version %d: %w", name, v.Version, err)
			}
			set.Keys = append(set.Keys, jwk)
			if until := e.key.publishedUntil(v); !until.IsZero() && (next.expires.IsZero() || until.Before(next.expires)) {
				next.expires = until
			}
		}
	}
	if next.body, err = json.Marshal(set); err != nil {
		return nil, err
	}

	// Cache it unless a key or the config changed while it was built.
	b.cacheMu.Lock()
	if b.gen == gen {
		b.jwks = next
	}
	b.cacheMu.Unlock()
	return next, nil
}

const pathJWKSHelpSyn = `Public keys for verifying this mount's tokens (JWK Set).`

const pathJWKSHelpDesc = `
Returns the public JWK of every published key version: the current version
of each key, a next version waiting to sign, and previous versions until
their verification_ttl after rotation has passed. No Vault token is needed.
The body is a JWK Set with Content-Type application/jwk-set+json, and
Cache-Control max-age is jwt/config's jwks_max_age (default 5 minutes) but
never outlasts the publication of a key in the set.
jwks and .well-known/keys return the same set.

A key whose stored entry cannot be loaded (it does not decode or is
invalid) is left out, logged at ERROR, and the set is then cached for at
most 30 seconds; the other keys are still served. A storage failure is a
500, not a smaller set. Publishing needs only stored public keys: AWS configuration
never affects this path.
`

const pathDiscoveryHelpDesc = `
Returns a minimal OpenID Connect discovery document for the issuer set in
jwt/config: issuer, jwks_uri (<issuer>/.well-known/keys), and the signing
algorithms. No Vault token is needed. Returns 404 until an issuer is set, and
while it is not an absolute http(s) URL with a host and no query or fragment
(OIDC Discovery 1.0 §3): such an issuer is fine as a token's "iss", but a
document naming it would have no usable jwks_uri.
`
