package backend

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

func pathRevoke(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "revoke",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "revoke", OperationSuffix: "token"},
			Fields: map[string]*framework.FieldSchema{
				"token":   {Type: framework.TypeString, Description: "A token this mount issued: revokes its jti. Its signature is checked; it may have expired."},
				"jti":     {Type: framework.TypeString, Description: `The "jti" to revoke; needs "exp".`},
				"exp":     {Type: framework.TypeInt64, Description: `With "jti": the token's "exp" (Unix seconds), after which the entry is tidied.`},
				"subject": {Type: framework.TypeString, Description: `Revoke every token of this "sub" issued before now.`},
				"issuer":  {Type: framework.TypeString, Description: `With "jti" or "subject": the tokens' "iss". Default: jwt/config's issuer.`},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathRevoke,
					Summary:  "Revoke a token (by the token, or its jti and exp) or every token of a subject issued before now.",
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"revoked":    {Type: framework.TypeString, Required: true, Description: `"jti" or "subject".`},
						"issuer":     {Type: framework.TypeString, Required: true},
						"expires_at": {Type: framework.TypeString, Required: true, Description: "When the entry can be tidied, RFC 3339."},
					}}}},
				},
			},
			HelpSynopsis:    "Revoke tokens.",
			HelpDescription: pathRevokeHelpDesc,
		},
		{
			Pattern:      "revocations",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "list", OperationSuffix: "revocations"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathRevocationsRead,
					Summary:  "Revoked jtis and subjects still in force, for verifiers that check tokens themselves.",
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"jtis":     {Type: framework.TypeSlice, Required: true, Description: "Objects with iss, jti, exp."},
						"subjects": {Type: framework.TypeSlice, Required: true, Description: "Objects with iss, sub, before: tokens of sub with iat before it are revoked."},
					}}}},
				},
			},
			HelpSynopsis:    "List revocations in force.",
			HelpDescription: "Returns every revoked jti (with its iss and exp) and every revoked subject (with its iss and the time before which its tokens are revoked), until tidy removes them after the tokens have expired.",
		},
		{
			Pattern:      "tidy",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "tidy", OperationSuffix: "revocations"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathTidy,
					Summary:  "Remove revocation entries whose tokens have all expired (the periodic function also does this).",
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"removed": {Type: framework.TypeInt, Required: true},
					}}}},
				},
			},
			HelpSynopsis:    "Tidy revocations.",
			HelpDescription: "Deletes revocation entries once no token they cover can still be valid. The engine's periodic function does the same on the active node.",
		},
	}
}

func (b *backend) pathRevoke(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	token, jti, subject := d.Get("token").(string), d.Get("jti").(string), d.Get("subject").(string)
	modes := 0
	for _, v := range []string{token, jti, subject} {
		if v != "" {
			modes++
		}
	}
	if modes != 1 {
		return badRequest(`give exactly one of "token", "jti" (with "exp") or "subject"`)
	}
	cfg, err := b.getConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "revoke: reading config failed")
	}
	iss := d.Get("issuer").(string)
	if iss == "" {
		iss = cfg.Issuer
	}
	now := b.now()
	r := &revocation{Issuer: iss, RevokedAt: now}

	switch {
	case token != "":
		claims, reason, err := b.ourTokenClaims(ctx, req.Storage, token)
		if err != nil {
			return b.respondErr(err, "revoke: checking token failed")
		}
		if reason != "" {
			return badRequest(`invalid "token": %s`, reason)
		}
		r.Issuer, _ = claims["iss"].(string)
		if r.JTI, _ = claims["jti"].(string); r.JTI == "" {
			return badRequest(`invalid "token": it has no "jti" (its role sets jti=false); revoke its subject instead`)
		}
		exp, err := numericDate(claims, "exp", true)
		if err != nil {
			return badRequest(`invalid "token": %v`, err)
		}
		r.Expires = exp.Add(verifyLeeway)
	case jti != "":
		exp, ok := d.GetOk("exp")
		if !ok || exp.(int64) <= 0 {
			return badRequest(`invalid "exp": required with "jti": the token's exp in Unix seconds, so the entry can be tidied after it`)
		}
		r.JTI, r.Expires = jti, time.Unix(exp.(int64), 0).Add(verifyLeeway)
	default:
		maxTTL, err := b.longestMaxTTL(ctx, req.Storage)
		if err != nil {
			return b.respondErr(err, "revoke: listing roles failed")
		}
		r.Subject, r.Before, r.Expires = subject, now, now.Add(maxTTL+verifyLeeway)
	}
	if r.Issuer == "" {
		return badRequest(`invalid "issuer": no issuer given and none configured in jwt/config`)
	}

	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	kind, prefix, id := "jti", revokedJTIPrefix, r.JTI
	if r.Subject != "" {
		kind, prefix, id = "subject", revokedSubPrefix, r.Subject
	}
	if err := b.saveRevocation(ctx, req.Storage, prefix, id, r); err != nil {
		return b.respondErr(err, "revoke: writing failed")
	}
	b.Logger().Info("revoked", "kind", kind, "issuer", r.Issuer)
	return &logical.Response{Data: map[string]any{
		"revoked": kind, "issuer": r.Issuer, "expires_at": r.Expires.UTC().Format(time.RFC3339),
	}}, nil
}

// ourTokenClaims checks that token was signed by one of this mount's
// published key versions and returns its claims; reason says why not.
// Expiry is not checked: revoking an expired token is harmless.
func (b *backend) ourTokenClaims(ctx context.Context, s logical.Storage, token string) (map[string]any, string, error) {
	p, err := signer.ParseCompact(token)
	if err != nil {
		return nil, err.Error(), nil
	}
	e, v, err := b.keyVersionByKid(ctx, s, p.Kid)
	if err != nil {
		return nil, "", err
	}
	if v == nil || p.Alg != e.key.Algorithm {
		return nil, "not signed by a published key version of this mount", nil
	}
	if err := signer.Verify(p.Alg, e.signers[v.Version].Public(), p.SigningInput, p.Signature); err != nil {
		return nil, err.Error(), nil
	}
	claims, err := signer.ParseClaims(p.Payload)
	if err != nil {
		return nil, err.Error(), nil
	}
	return claims, "", nil
}

// longestMaxTTL is the longest token lifetime any role allows.
func (b *backend) longestMaxTTL(ctx context.Context, s logical.Storage) (time.Duration, error) {
	names, err := s.List(ctx, rolePrefix)
	if err != nil {
		return 0, err
	}
	longest := time.Duration(0)
	for _, n := range names {
		r, err := b.getRole(ctx, s, n)
		if err != nil {
			return 0, err
		}
		if r != nil {
			longest = max(longest, r.MaxTTL)
		}
	}
	return longest, nil
}

func (b *backend) pathRevocationsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	idx, err := b.getRevocations(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading revocations failed")
	}
	jtis, subs := []any{}, []any{}
	for _, r := range idx.jti {
		jtis = append(jtis, map[string]any{"iss": r.Issuer, "jti": r.JTI, "exp": r.Expires.Add(-verifyLeeway).Unix()})
	}
	for _, r := range idx.sub {
		subs = append(subs, map[string]any{"iss": r.Issuer, "sub": r.Subject, "before": r.Before.Unix()})
	}
	for _, l := range [][]any{jtis, subs} {
		sort.Slice(l, func(i, j int) bool { return fmt.Sprint(l[i]) < fmt.Sprint(l[j]) })
	}
	return &logical.Response{Data: map[string]any{"jtis": jtis, "subjects": subs}}, nil
}

func (b *backend) pathTidy(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	n, err := b.tidyRevocations(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "tidy failed")
	}
	return &logical.Response{Data: map[string]any{"removed": n}}, nil
}

const pathRevokeHelpDesc = `
Revokes one token, or every token of a subject issued before now. Give the
token itself (its signature must be this mount's; it may have expired), or
its "jti" and "exp", or a "subject". Entries are keyed by (iss, jti) or
(iss, sub), never by the token string, so every encoding of the same claims
is revoked. jwt/verify reports revoked tokens inactive. Entries stay in
replicated storage until the tokens they cover have expired; then tidy (or
the periodic function) removes them. Revocation by role is not available yet.
`
