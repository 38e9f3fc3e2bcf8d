package backend

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathRefresh(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "refresh",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "refresh",
			OperationSuffix: "token",
		},
		Fields: map[string]*framework.FieldSchema{
			"refresh_token": {Type: framework.TypeString, Required: true, Description: "The latest refresh token of a token family, from issue or the previous refresh.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathRefresh,
				Summary:  "Exchange a refresh token for a new token and a new refresh token; reusing a refresh token revokes its family.",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: refreshResponseFields}},
				},
			},
		},
		HelpSynopsis:    "Refresh a token.",
		HelpDescription: pathRefreshHelpDesc,
	}
}

// refreshResponseFields are tokenResponseFields, all of them present in
// every answer: a refresh always returns a new refresh token.
var refreshResponseFields = func() map[string]*framework.FieldSchema {
	f := map[string]*framework.FieldSchema{}
	for name, s := range tokenResponseFields {
		c := *s
		c.Required = true
		f[name] = &c
	}
	f["refresh_token"].Description = "The family's new refresh token, for the next refresh; the one presented stops working."
	f["refresh_expires_at"].Description = "When the new refresh token expires (now plus the role's refresh_ttl, but never past the family's first issue plus its refresh_max_ttl), RFC 3339."
	return f
}()

func (b *backend) pathRefresh(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	rt := d.Get("refresh_token").(string)
	if rt == "" {
		return badRequest(`invalid "refresh_token": required`)
	}
	return b.refresh(ctx, req.Storage, rt)
}

const pathRefreshHelpDesc = `
Roles with refresh_ttl make jwt/issue also return a refresh token. Writing
it here returns a new token, issued as the original request was (same
subject, audience, claims and ttl, for the same identity entity, checked
against the role as it is now), and a new refresh token; the one presented
stops working. Each refresh token is valid for the role's refresh_ttl, but
never past the family's first issue plus the role's refresh_max_ttl.

A refresh token that is not its family's latest (one already used) is taken
as stolen: the whole family is revoked, its refresh tokens stop working and
its access tokens that have not expired are revoked (jwt/verify reports them
inactive, jwt/revocations lists their jtis), also after the family itself has
expired, while one of its access tokens has not. Revoking the family's subject or
role, or its latest token, also ends it for good: the refresh that finds the
revocation marks the family ended, so tidying the revocation does not bring
it back. Refresh tokens are stored only as SHA-256 hashes.

A family issued for a Vault identity entity refreshes only while the entity
exists and is enabled (disabled: refused until it is enabled again; deleted:
refused). A role deleted and created again under the same name does not
continue the old role's families. A family holds at most 100 unexpired
access tokens; a refresh past that is a 429 until the oldest expires.

This is an ordinary policy-gated path: a gateway may hold update on
jwt/refresh to refresh on behalf of its users without being able to issue.
`
