package backend

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathRevoke(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "revoke",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "revoke", OperationSuffix: "token"},
			Fields: map[string]*framework.FieldSchema{
				"token":   {Type: framework.TypeString, Description: "A token this mount issued: revokes its jti. Its signature is checked; it may have expired (more than 30s ago: a 200 with a warning, and nothing is stored, unless it is a live refresh token family's latest token).", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
				"jti":     {Type: framework.TypeString, Description: `The "jti" to revoke, at most 1024 characters; needs "exp".`},
				"exp":     {Type: framework.TypeInt64, Description: `Only with "jti": the token's "exp" (Unix seconds, 1 to 100000000000), after which the entry can be tidied. An exp more than 30s past gets a 200 with a warning, and nothing is stored, unless the jti is a live refresh token family's latest token.`},
				"subject": {Type: framework.TypeString, Description: `Revoke every token of this "sub" issued at or before now, and its tokens without "iat". At most 1024 characters.`},
				"role":    {Type: framework.TypeString, Description: `Revoke every token this role issued at or before now (found by the role tag that starts each jti; roles with jti=false cannot be revoked this way).`},
				"issuer":  {Type: framework.TypeString, Description: `Only with "jti" or "subject": the tokens' "iss", checked like jwt/config's issuer. Default: jwt/config's issuer.`},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathRevoke,
					Summary:  "Revoke a token (by the token, or its jti and exp), or every token of a subject or role issued at or before now.",
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"revoked":    {Type: framework.TypeString, Required: true, Description: `"jti", "subject" or "role".`},
						"issuer":     {Type: framework.TypeString, Required: true, Description: `The revoked tokens' "iss": the token's own, the one given, or jwt/config's; "" for a role, whose revocation covers every issuer.`},
						"expires_at": {Type: framework.TypeString, Required: true, Description: "The earliest the entry can be tidied, RFC 3339; tidy keeps it longer while a live refresh token family needs it."},
						"jti":        {Type: framework.TypeString, Description: `Only when "revoked" is "jti": the revoked jti, also when the token was given, so that with audit_non_hmac_response_keys=jti,exp,issuer the audit log holds what to revoke again (jti, exp and issuer) after restoring an older snapshot.`},
						"exp":        {Type: framework.TypeInt64, Description: `Only when "revoked" is "jti": the exp (Unix seconds) the stored entry covers, as jwt/revoke's "exp" takes it: the token's, or a later one an earlier revocation of the jti gave.`},
					}}}},
				},
			},
			HelpSynopsis:    "Revoke tokens.",
			HelpDescription: pathRevokeHelpDesc,
		},
		{
			Pattern:      "revocations",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "list", OperationSuffix: "revocations"},
			Fields: map[string]*framework.FieldSchema{
				"after": {Type: framework.TypeString, Query: true, Description: `The "next" value of the previous page; empty for the first page.`},
				"limit": {Type: framework.TypeInt, Query: true, Default: defaultRevocationsPage, Description: "Entries per page, at least (whole storage buckets are returned); at most 100000."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.pathRevocationsRead,
					Summary:  "Revoked jtis, subjects and roles still in force, for verifiers that check tokens themselves.",
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"jtis":     {Type: framework.TypeSlice, Required: true, Description: "Objects with iss, jti, exp."},
						"subjects": {Type: framework.TypeSlice, Required: true, Description: "Objects with iss, sub, before: tokens of sub with iat at or before it, and tokens of sub without iat, are revoked."},
						"roles":    {Type: framework.TypeSlice, Required: true, Description: `Objects with role, role_tag, before: tokens whose jti starts with role_tag + "." and whose iat is at or before it are revoked.`},
						"total":    {Type: framework.TypeMap, Required: true, Description: "Entries in force of each kind: jtis, subjects, roles."},
						"next":     {Type: framework.TypeString, Description: `Present when there are more entries: pass it as "after" for the next page.`},
					}}}},
				},
			},
			HelpSynopsis:    "List revocations in force.",
			HelpDescription: "Returns revoked jtis (with their iss and exp), revoked subjects (with their iss and the time before which their tokens are revoked) and revoked roles (with the tag their jtis start with), until tidy removes them after the tokens have expired (and no live refresh token family needs them). Large lists come in pages of at least limit entries: pass each page's next as after until a page has no next.",
		},
		{
			Pattern:      "tidy",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "tidy"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.pathTidy,
					Summary:  "Remove expired refresh token families (once their access tokens have expired too), and revocation entries whose tokens have all expired and that no live family needs (the periodic function also does this).",
					Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
						"removed":                  {Type: framework.TypeInt, Required: true, Description: "Revocation entries removed."},
						"refresh_families_removed": {Type: framework.TypeInt, Required: true, Description: "Expired refresh token families removed."},
					}}}},
				},
			},
			HelpSynopsis:    "Tidy expired refresh token families and revocations.",
			HelpDescription: "Deletes refresh token families whose latest refresh token has expired, then revocation entries once no token they cover can still be valid and no live refresh token family needs them to stay ended (its latest token is the revoked jti, or was issued at or before a subject or role revocation); until it has read every family once it deletes no revocation entry. The engine's periodic function does the same on the active node.",
		},
	}
}

func (b *backend) pathRevoke(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	token, jti, subject, roleName := d.Get("token").(string), d.Get("jti").(string), d.Get("subject").(string), d.Get("role").(string)
	modes := 0
	for _, v := range []string{token, jti, subject, roleName} {
		if v != "" {
			modes++
		}
	}
	if modes != 1 {
		return badRequest(`give exactly one of "token", "jti" (with "exp"), "subject" or "role"`)
	}
	// Fields the chosen mode would ignore are refused, not ignored.
	iss := d.Get("issuer").(string)
	switch {
	case d.Get("exp").(int64) != 0 && jti == "":
		return badRequest(`invalid "exp": only with "jti"; a token, subject or role revocation does not take it`)
	case iss != "" && token != "":
		return badRequest(`invalid "issuer": not with "token"; the token's own "iss" is used`)
	case iss != "" && roleName != "":
		return badRequest(`invalid "issuer": not with "role"; a role revocation covers every issuer the role used`)
	case len(subject) > maxSubjectLen:
		return badRequest(`invalid "subject": longer than %d characters, so no token of this engine has it`, maxSubjectLen)
	case len(jti) > maxSubjectLen:
		return badRequest(`invalid "jti": longer than %d characters, so no token of this engine has it`, maxSubjectLen)
	}
	if err := validateIssuer(iss); err != nil {
		return badRequest("%s", err)
	}
	cfg, err := b.getConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "revoke: reading config failed")
	}
	if iss == "" {
		iss = cfg.Issuer
	}
	now := b.now()
	r := &revocation{Issuer: iss, RevokedAt: now}

	switch {
	case token != "":
		_, claims, reason, err := b.ourTokenClaims(ctx, req.Storage, token)
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
		if !ok || exp.(int64) == 0 {
			return badRequest(`invalid "exp": required with "jti": the token's exp in Unix seconds, so the entry can be tidied after it`)
		}
		if e := exp.(int64); e < 0 || e > maxNumericDate {
			return badRequest(`invalid "exp" %d: must be between 1 and %d, the token's exp in Unix seconds (as jwt/verify reads it)`, e, int64(maxNumericDate))
		}
		r.JTI, r.Expires = jti, time.Unix(exp.(int64), 0).UTC().Add(verifyLeeway)
	case roleName != "":
		role, err := b.getRole(ctx, req.Storage, roleName)
		if err != nil {
			return b.respondErr(err, "revoke: reading role failed", "role", roleName)
		}
		if role == nil {
			return nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf(`role %q does not exist; revoke a role's tokens before deleting it`, roleName))
		}
		// A token issued up to not_before_skew after now has an iat at or
		// before now, so it is covered too and may live that much longer.
		r.Role, r.RoleTag, r.Before, r.Expires = roleName, roleTag(roleName), now, now.Add(addDurations(role.MaxTTL, role.NotBeforeSkew, verifyLeeway))
	default:
		maxTTL, err := b.longestMaxTTL(ctx, req.Storage)
		if err != nil {
			return b.respondErr(err, "revoke: listing roles failed")
		}
		r.Subject, r.Before, r.Expires = subject, now, now.Add(addDurations(maxTTL, verifyLeeway))
	}
	if r.Issuer == "" && roleName == "" {
		return badRequest(`invalid "issuer": no issuer given and none configured in %s`, b.mountPath("config"))
	}

	kind := "jti"
	switch {
	case r.Subject != "":
		kind = "subject"
	case r.Role != "":
		kind = "role"
		r.Issuer = "" // a role revocation covers every issuer the role used
	}
	// The answer is made after saveRevocation, which may lengthen
	// r.Expires to an earlier revocation's.
	answer := func() *logical.Response {
		data := map[string]any{"revoked": kind, "issuer": r.Issuer, "expires_at": r.Expires.UTC().Format(time.RFC3339)}
		if kind == "jti" {
			// What jwt/revoke jti=... exp=... takes to make this
			// revocation again, e.g. after restoring an older snapshot;
			// neither is secret, where a token given is.
			data["jti"], data["exp"] = r.JTI, r.Expires.Add(-verifyLeeway).Unix()
		}
		return &logical.Response{Data: data}
	}
	if !r.Expires.After(now) && !b.familyMayNeedJTI(r.JTI, now) {
		// Past exp and verify's leeway: verify already refuses the token,
		// and the entry would be tidied at once. Scripts revoking a list
		// get a 200, not a failure. (The latest token of a live refresh
		// family is stored all the same: revoking it ends the family, and
		// tidy keeps the entry while the family needs it.)
		resp := answer()
		resp.AddWarning(fmt.Sprintf("the token already expired at %s (more than %s ago), so jwt/verify refuses it anyway; nothing was stored",
			r.Expires.Add(-verifyLeeway).UTC().Format(time.RFC3339), verifyLeeway))
		return resp, nil
	}
	if err := b.saveRevocation(ctx, req.Storage, r); err != nil {
		return b.respondErr(err, "revoke: writing failed")
	}
	b.Logger().Info("revoked", "kind", kind, "issuer", r.Issuer, "role", r.Role, "jti", r.JTI)
	return answer(), nil
}

// maxNumericDate is the largest exp, iat or nbf numericDate (path_verify.go)
// accepts, in Unix seconds: in the year 5138, so every time the engine
// derives from one can still be stored (time.Time's JSON stops at 9999).
const maxNumericDate = 1e11

// longestMaxTTL is the longest any role's token covered by a revocation
// made now can live: max_ttl plus not_before_skew (a token issued within
// the skew after the revocation has an iat before it).
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
			longest = max(longest, addDurations(r.MaxTTL, r.NotBeforeSkew))
		}
	}
	return longest, nil
}

// addDurations is the sum of ds, which are not negative, saturating at the
// largest time.Duration instead of wrapping into the past. Written roles
// keep these sums far from the limit (maxTokenTTL); a role stored before
// the bound existed may not.
func addDurations(ds ...time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		if d > math.MaxInt64-sum {
			return math.MaxInt64
		}
		sum += d
	}
	return sum
}

// Pages of jwt/revocations.
const (
	defaultRevocationsPage = 10000
	maxRevocationsPage     = 100000
)

func (b *backend) pathRevocationsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	limit := d.Get("limit").(int)
	if limit <= 0 || limit > maxRevocationsPage {
		return badRequest(`invalid "limit" %d: must be between 1 and %d`, limit, maxRevocationsPage)
	}
	from, err := parseRevocationsCursor(d.Get("after").(string))
	if err != nil {
		return badRequest(`invalid "after": %s`, err)
	}
	idx, err := b.getRevocations(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading revocations failed")
	}
	entries, next, err := b.revocationPage(ctx, req.Storage, idx, from, limit)
	if err != nil {
		return b.respondErr(err, "reading revocations failed")
	}
	jtis, subs, roles := []any{}, []any{}, []any{}
	for _, r := range entries {
		switch r.kind() {
		case kindJTI:
			jtis = append(jtis, map[string]any{"iss": r.Issuer, "jti": r.JTI, "exp": r.Expires.Add(-verifyLeeway).Unix()})
		case kindSubject:
			subs = append(subs, map[string]any{"iss": r.Issuer, "sub": r.Subject, "before": r.Before.Unix()})
		case kindRole:
			roles = append(roles, map[string]any{"role": r.Role, "role_tag": r.RoleTag, "before": r.Before.Unix()})
		}
	}
	// Sorted by the fields that identify each entry (a page holds up to
	// 100,000 entries: no formatting inside the comparisons).
	sortBy := func(l []any, fields ...string) {
		sort.Slice(l, func(i, j int) bool {
			a, b := l[i].(map[string]any), l[j].(map[string]any)
			for _, f := range fields {
				if x, y := a[f].(string), b[f].(string); x != y {
					return x < y
				}
			}
			return false
		})
	}
	sortBy(jtis, "iss", "jti")
	sortBy(subs, "iss", "sub")
	sortBy(roles, "role")
	n := idx.size()
	data := map[string]any{
		"jtis": jtis, "subjects": subs, "roles": roles,
		"total": map[string]any{"jtis": n[kindJTI], "subjects": n[kindSubject], "roles": n[kindRole]},
	}
	if next >= 0 {
		data["next"] = fmt.Sprintf("%s/%03x", kindNames[next/revocationBuckets], next%revocationBuckets)
	}
	return &logical.Response{Data: data}, nil
}

// parseRevocationsCursor turns a "next" value ("<kind>/<bucket>") back into
// a position; "" is the start.
func parseRevocationsCursor(c string) (int, error) {
	if c == "" {
		return 0, nil
	}
	kindName, bucketHex, ok := strings.Cut(c, "/")
	kind := slices.Index(kindNames[:], kindName)
	bucket, err := strconv.ParseUint(bucketHex, 16, 12)
	if !ok || kind < 0 || err != nil || len(bucketHex) != 3 {
		return 0, fmt.Errorf(`%q is not a "next" value from a previous page`, c)
	}
	return kind*revocationBuckets + int(bucket), nil
}

func (b *backend) pathTidy(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	// Families first: revocation tidy keeps entries that live families
	// need, and needs to know every family.
	nf, err := b.tidyRefreshFamilies(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "tidying refresh families failed")
	}
	n, err := b.tidyRevocations(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "tidy failed")
	}
	return &logical.Response{Data: map[string]any{"removed": n, "refresh_families_removed": nf}}, nil
}

const pathRevokeHelpDesc = `
Revokes one token, or every token of a subject or of a role issued at or
before now (a token without "iat" cannot show it came later, so it counts
as revoked too). Give the token itself (its signature must be this mount's;
it may have expired), or its "jti" and "exp", or a "subject", or a "role";
"issuer" only with "jti" or "subject", "exp" only with "jti". A token or
jti whose exp is more than 30s past is answered with a warning, and
nothing is stored: jwt/verify refuses it anyway (unless it is the latest
token of a live refresh token family: the entry is stored, and ends the
family). Entries are
keyed by (iss, jti), (iss, sub) or the role's tag, never by the token
string, so every encoding of the same claims is revoked. A role's tag is the
part of each jti it issues before the "." (64 bits of SHA-256 of the role
name); roles with jti=false cannot be revoked by role. jwt/verify reports
revoked tokens inactive, and refresh token families of a revoked subject or
role, or whose latest token is revoked, end. Entries stay in replicated
storage until the tokens they cover have expired and no live refresh token
family needs them; then tidy (or the periodic function) removes them. A
revocation by token or jti answers the token's jti and the exp the stored
entry covers (the token's, or a later one an earlier revocation gave), what
revoking it again by jti takes (after restoring an older snapshot, say).
`
