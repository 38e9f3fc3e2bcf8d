package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// verifyLeeway is the clock skew verify allows on exp, nbf and iat.
const verifyLeeway = 30 * time.Second

func pathVerify(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "verify",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "verify",
			OperationSuffix: "token",
		},
		Fields: map[string]*framework.FieldSchema{
			"token":    {Type: framework.TypeString, Required: true, Description: "The JWT to check, in compact serialization.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
			"audience": {Type: framework.TypeString, Description: `If set, the token's "aud" must contain it.`},
			"typ": {
				Type:        framework.TypeString,
				Description: `If set, the token's "typ" header must be this media type, such as JWT or at+jwt: compared case-insensitively, with "application/" implied where there is no "/" (RFC 7515 §4.1.9), so at+jwt matches application/AT+JWT.`,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathVerify,
				Summary:  "Check a token strictly against this mount's keys and issuer (RFC 7662-style answer).",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{
						Description: "OK",
						Fields: map[string]*framework.FieldSchema{
							"active": {Type: framework.TypeBool, Required: true, Description: "Whether the token is valid now."},
							"claims": {Type: framework.TypeMap, Description: "The token's claims, when active."},
							"kid":    {Type: framework.TypeString, Description: "The key version that signed it, when active."},
							"alg":    {Type: framework.TypeString, Description: "Its algorithm, when active."},
							"typ":    {Type: framework.TypeString, Description: `Its "typ" header as it is, when active and the token has one.`},
							"reason": {Type: framework.TypeString, Description: "Why it is not active; only when active is false."},
						},
					}},
				},
			},
		},
		HelpSynopsis:    "Check a token strictly.",
		HelpDescription: pathVerifyHelpDesc,
	}
}

func (b *backend) pathVerify(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	token := d.Get("token").(string)
	if token == "" {
		return badRequest(`invalid "token": required`)
	}
	typ := d.Get("typ").(string)
	if typ != "" && !typRe.MatchString(typ) {
		return badRequest(`invalid "typ": must be 1 to 64 characters of letters, digits and . + - /, starting with a letter or digit, such as JWT or at+jwt`)
	}
	res, err := b.verifyToken(ctx, req.Storage, token, d.Get("audience").(string), typ)
	if err != nil {
		return b.respondErr(err, "verify failed")
	}
	return &logical.Response{Data: res}, nil
}

// verifyToken answers for one token; an error is an internal failure,
// never a verdict on the token.
// ourTokenClaims checks that token is a compact JWS signed by one of this
// mount's published key versions with that key's algorithm, and returns
// its header and claims; reason says why not. Times, issuer and
// revocation are not checked. verify and revoke both start here.
func (b *backend) ourTokenClaims(ctx context.Context, s logical.Storage, token string) (*signer.Parsed, map[string]any, string, error) {
	p, err := signer.ParseCompact(token)
	if err != nil {
		return nil, nil, err.Error(), nil
	}
	if p.Kid == "" {
		return nil, nil, `no "kid" header: this engine's tokens always name their key`, nil
	}
	e, v, err := b.keyVersionByKid(ctx, s, p.Kid)
	if err != nil {
		return nil, nil, "", err
	}
	if v == nil {
		return nil, nil, fmt.Sprintf("no published key version has kid %q (unknown, deleted, or retired)", p.Kid), nil
	}
	if p.Alg != e.key.Algorithm {
		return nil, nil, fmt.Sprintf("alg %s does not match the key's algorithm %s", p.Alg, e.key.Algorithm), nil
	}
	if err := signer.Verify(p.Alg, e.signers[v.Version].Public(), p.SigningInput, p.Signature); err != nil {
		return nil, nil, err.Error(), nil
	}
	claims, err := signer.ParseClaims(p.Payload)
	if err != nil {
		return nil, nil, err.Error(), nil
	}
	return p, claims, "", nil
}

func (b *backend) verifyToken(ctx context.Context, s logical.Storage, token, audience, typ string) (map[string]any, error) {
	inactive := func(format string, args ...any) (map[string]any, error) {
		return map[string]any{"active": false, "reason": fmt.Sprintf(format, args...)}, nil
	}
	p, claims, reason, err := b.ourTokenClaims(ctx, s, token)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		return inactive("%s", reason)
	}
	// Explicit typing (RFC 8725 §3.11): a caller that expects, say,
	// access tokens refuses this mount's other kinds of token.
	switch {
	case typ == "":
	case p.Typ == "":
		return inactive("no %q header, want %q", "typ", typ)
	case !sameMediaType(p.Typ, typ):
		return inactive("typ %q is not %q", p.Typ, typ)
	}
	now := b.now()
	exp, err := numericDate(claims, "exp", true)
	if err != nil {
		return inactive("%v", err)
	}
	if !now.Before(exp.Add(verifyLeeway)) {
		return inactive("expired at %s", exp.UTC().Format(time.RFC3339))
	}
	for _, name := range []string{"nbf", "iat"} {
		t, err := numericDate(claims, name, false)
		if err != nil {
			return inactive("%v", err)
		}
		if !t.IsZero() && t.After(now.Add(verifyLeeway)) {
			return inactive("%q is in the future (%s)", name, t.UTC().Format(time.RFC3339))
		}
	}
	iss, _ := claims["iss"].(string)
	ok, err := b.isOurIssuer(ctx, s, iss)
	if err != nil {
		return nil, err
	}
	if !ok {
		return inactive("issuer %q is not this mount's", iss)
	}
	if audience != "" && !hasAudience(claims["aud"], audience) {
		return inactive("audience %q is not in the token's aud", audience)
	}
	revs, err := b.getRevocations(ctx, s)
	if err != nil {
		return nil, err
	}
	if reason := revs.revokedReason(claims); reason != "" {
		return inactive("%s", reason)
	}
	res := map[string]any{"active": true, "claims": claims, "kid": p.Kid, "alg": string(p.Alg)}
	if p.Typ != "" {
		res["typ"] = p.Typ
	}
	return res, nil
}

// sameMediaType compares two "typ" values as RFC 7515 §4.1.9 says
// recipients must: media type names are case-insensitive, and a value
// without "/" stands for "application/" + it.
func sameMediaType(a, b string) bool {
	full := func(t string) string {
		if !strings.Contains(t, "/") {
			return "application/" + t
		}
		return t
	}
	return strings.EqualFold(full(a), full(b))
}

// keyVersionByKid finds a published version by kid, through the cached
// JWKS's kid index: no storage read once the caches are warm.
func (b *backend) keyVersionByKid(ctx context.Context, s logical.Storage, kid string) (*keyEntry, *keyVersion, error) {
	doc, err := b.getJWKS(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	name, ok := doc.kids[kid]
	if !ok {
		return nil, nil, nil
	}
	e, err := b.getKey(ctx, s, name)
	if err != nil || e == nil {
		return nil, nil, err
	}
	for _, v := range e.key.published(b.now()) {
		if v.KeyID == kid {
			return e, v, nil
		}
	}
	return nil, nil, nil
}

// isOurIssuer: iss is the configured issuer or a role's own. The set is
// cached and dropped with any role or config change. gen is read before
// anything the set is built from, as getJWKS does: a drop after that point
// changes gen and the set is not cached.
func (b *backend) isOurIssuer(ctx context.Context, s logical.Storage, iss string) (bool, error) {
	if iss == "" {
		return false, nil
	}
	b.cacheMu.RLock()
	set := b.issuers
	b.cacheMu.RUnlock()
	if set == nil {
		b.cacheMu.RLock()
		gen := b.gen
		b.cacheMu.RUnlock()
		cfg, err := b.getConfig(ctx, s)
		if err != nil {
			return false, err
		}
		if b.afterIssuerConfig != nil {
			b.afterIssuerConfig()
		}
		names, err := s.List(ctx, rolePrefix)
		if err != nil {
			return false, fmt.Errorf("listing roles: %w", err)
		}
		set = map[string]bool{}
		if cfg.Issuer != "" {
			set[cfg.Issuer] = true
		}
		for _, n := range names {
			r, err := b.getRole(ctx, s, n)
			if err != nil {
				return false, err
			}
			if r != nil && r.Issuer != "" {
				set[r.Issuer] = true
			}
		}
		b.cacheMu.Lock()
		if b.gen == gen {
			b.issuers = set
		}
		b.cacheMu.Unlock()
	}
	return set[iss], nil
}

func numericDate(claims map[string]any, name string, required bool) (time.Time, error) {
	raw, ok := claims[name]
	if !ok {
		if required {
			return time.Time{}, fmt.Errorf("no %q claim", name)
		}
		return time.Time{}, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, fmt.Errorf("%q is not a number", name)
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > maxNumericDate {
		return time.Time{}, fmt.Errorf("%q is not a valid NumericDate", name)
	}
	return time.Unix(int64(f), 0), nil
}

func hasAudience(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		return slices.ContainsFunc(a, func(v any) bool { s, _ := v.(string); return s == want })
	}
	return false
}

const pathVerifyHelpDesc = `
Checks a token as strictly as the engine signs it, and answers in the style of
RFC 7662 token introspection: "active" true with the claims, kid, alg and
typ, or false with a "reason" for operators.

The token must be a compact JWS of at most 16 KiB with exactly two dots, in
unpadded base64url without stray bits or bytes outside the alphabet (a line
break included), with a UTF-8 JSON header and claims in which no object, at
any depth, repeats a member name. Its "alg" must be one of the ten this
engine signs with ("none" in any casing and HS* are not), and equal the
algorithm of the published key version its "kid" names. Headers that carry
or point to keys (jwk, jku, x5u, x5c, x5t, x5t#S256), crit, b64 and JWE
headers are refused and never followed. Signatures are checked strictly:
exact lengths, ECDSA as R‖S with neither half zero, PSS with the salt as
long as the hash. "exp" is required; "exp", "nbf" and "iat" are checked with
30s of leeway; "iss" must be this mount's issuer or a role's; "aud" must
contain "audience" when given. With "typ" given, the token's "typ" header
must be that media type (RFC 8725 §3.11 explicit typing; compared as RFC
7515 §4.1.9 says: case-insensitively, "application/" implied where there is
no "/"), so a service that takes only at+jwt access tokens can refuse this
mount's other tokens. Retired and deleted key versions are unknown.
A malformed or invalid token is a 200 with active=false; a missing "token",
or a "typ" that is not 1 to 64 letters, digits and . + - / (starting with a
letter or digit), is a 400.
`
