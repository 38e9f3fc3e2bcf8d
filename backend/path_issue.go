package backend

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/ryanuber/go-glob"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

func pathIssue(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: issuePattern,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "issue",
			OperationSuffix: "token",
		},
		Fields: issueFields(),
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathIssue,
				Summary:  "Issue a signed JWT for a role, or one per item of batch_input.",
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK: the token and its details, or with batch_input only batch_results.", Fields: issueResponseFields}},
				},
			},
		},
		HelpSynopsis:    pathIssueHelpSyn,
		HelpDescription: pathIssueHelpDesc,
	}
}

// itemFields are the fields of one token request, at the top level or in
// each batch_input item.
func itemFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"audience": {
			Type:        framework.TypeCommaStringSlice,
			Description: `"aud" of the token, a string or a list; each must match the role's allowed_audiences. Default: the role's audiences. ` + textRule,
		},
		"subject": {
			Type:        framework.TypeString,
			Description: `"sub" of the token; must match the role's allowed_subjects. At most 1024 characters. Default: the role's subject. ` + textRule,
		},
		"claims": {
			Type:        framework.TypeMap,
			Description: fmt.Sprintf(`JSON object of extra claims; each name must be in the role's allowed_claims and not pinned or reserved. At most %d bytes, and no number beyond a 64-bit float's range. As a JSON string, no object in it may repeat a member name.`, maxClaimsBytes),
		},
		"ttl": {
			Type:        framework.TypeDurationSecond,
			Description: "Token lifetime: a whole number of seconds, at least 1s and at most the role's max_ttl. Default: the role's ttl.",
		},
	}
}

// issueFields are itemFields plus the role and batch_input.
func issueFields() map[string]*framework.FieldSchema {
	f := itemFields()
	f["role"] = &framework.FieldSchema{Type: framework.TypeString, Required: true, Description: "Name of the role."}
	f["batch_input"] = &framework.FieldSchema{
		Type: framework.TypeSlice,
		Description: fmt.Sprintf(`Issue one token per item instead: a list (or a JSON array as a string, with nothing after it and no object repeating a member name) of at most %d objects, `+
			`each with optional audience, subject, claims, ttl and reference (echoed back). Each item is checked like a single request `+
			`and gets its own result or error in batch_results; the others are still issued.`, maxBatchItems),
	}
	return f
}

// tokenResponseFields describe a single token: what issue returns, and
// refresh.
var tokenResponseFields = map[string]*framework.FieldSchema{
	"token":              {Type: framework.TypeString, Description: "The signed JWT, compact serialization."},
	"alg":                {Type: framework.TypeString, Description: "JWS algorithm."},
	"kid":                {Type: framework.TypeString, Description: "Key ID of the signing key version."},
	"jti":                {Type: framework.TypeString, Description: `The token's "jti" (the role's tag, ".", 128 random bits); empty when the role sets jti=false.`},
	"expires_at":         {Type: framework.TypeString, Description: "Expiry time, RFC 3339."},
	"expires_in":         {Type: framework.TypeInt64, Description: "Seconds until expiry."},
	"refresh_token":      {Type: framework.TypeString, Description: "Only for roles with refresh_ttl: exchange it at jwt/refresh, once."},
	"refresh_expires_at": {Type: framework.TypeString, Description: "Only with refresh_token: when it expires, RFC 3339."},
}

// issueResponseFields are tokenResponseFields; a batch_input request gets
// batch_results instead, a list of the same objects or {"error": ...}.
var issueResponseFields = func() map[string]*framework.FieldSchema {
	f := maps.Clone(tokenResponseFields)
	f["batch_results"] = &framework.FieldSchema{Type: framework.TypeSlice, Description: "Only with batch_input, and then instead of every other field: one object per item, in order: token (and refresh_token, refresh_expires_at for refresh roles), its reference if it had one; or error."}
	return f
}()

// pathIssue signs a token. It writes nothing to storage and takes role,
// key and config from the in-memory caches, so performance standbys serve it
// and it costs little more than the signature.
func (b *backend) pathIssue(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.issueRequest(ctx, req, d.Get("role").(string), d)
}

// issuePattern and issuePathFields are the issue path's, for handleIssue.
var (
	issuePattern    = "issue/" + framework.GenericNameRegex("role")
	issuePathFields = issueFields()
)

// handleIssue does for issue/<name> what viaFramework does for any path —
// field validation (checkFields), and warnings for unknown fields
// and for a "role" field the URL overrides — without matching the request
// against every path's regular expression and building a copy of its
// data: a third of the engine's own cost per token, measured with
// BenchmarkIssueOverhead. TestIssueFastPath checks that both give the same
// answers.
func (b *backend) handleIssue(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var ignored []string
	for k := range req.Data {
		if issuePathFields[k] == nil {
			ignored = append(ignored, k)
		}
	}
	d := &framework.FieldData{Raw: req.Data, Schema: issuePathFields}
	if err := checkFields(issuePathFields, issuePattern, req.Data); err != nil {
		return badRequest("%s", err)
	}
	resp, err := b.issueRequest(ctx, req, name, d)
	if err != nil || resp == nil {
		return resp, err
	}
	if len(ignored) != 0 {
		sort.Strings(ignored)
		resp.AddWarning(fmt.Sprintf("Endpoint ignored these unrecognized parameters: %v", ignored))
	}
	if req.Data["role"] != nil {
		resp.AddWarning("Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [role]")
	}
	return resp, nil
}

// isGenericName reports whether s matches framework.GenericNameRegex, as
// the issue path's pattern requires of the role name.
func isGenericName(s string) bool {
	word := func(c byte) bool {
		return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
	}
	if s == "" || !word(s[0]) || !word(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !word(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// issueRequest answers an issue request for role name.
func (b *backend) issueRequest(ctx context.Context, req *logical.Request, name string, d *framework.FieldData) (*logical.Response, error) {
	if raw, ok := d.Raw["batch_input"]; ok {
		for _, f := range []string{"audience", "subject", "claims", "ttl"} {
			if _, ok := d.Raw[f]; ok {
				return badRequest(`invalid %q: with "batch_input", give it in each item instead`, f)
			}
		}
		return b.issueBatch(ctx, req, name, raw)
	}
	p, err := issueParamsFrom(d)
	if err != nil {
		return badRequest("%s", err)
	}
	res, resp, err := b.issueOne(ctx, req, name, p)
	if resp != nil || err != nil {
		return resp, err
	}
	return res.response(&b.expiresAt), nil
}

// issueOne issues one token, and starts its refresh family if the role
// has refresh_ttl.
// It returns what it issued, or the answer (a refusal) or error that
// ends the request.
func (b *backend) issueOne(ctx context.Context, req *logical.Request, name string, p issueParams) (issueResult, *logical.Response, error) {
	res, resp, err := b.issueToken(ctx, req.Storage, name, p, req.EntityID)
	if resp != nil || err != nil || res.role.RefreshTTL == 0 {
		return res, resp, err
	}
	resp, err = b.startRefreshFamily(ctx, req.Storage, &res, p, req.EntityID)
	return res, resp, err
}

// issueParamsFrom reads a request's (or a batch item's) fields.
func issueParamsFrom(d *framework.FieldData) (issueParams, error) {
	var p issueParams
	if len(d.Raw) == 0 {
		return p, nil
	}
	if v, ok := d.GetOk("ttl"); ok {
		if p.TTL = time.Duration(v.(int)) * time.Second; p.TTL <= 0 {
			return p, fmt.Errorf(`invalid "ttl": must be positive: a whole number of seconds, at least 1s`)
		}
	}
	if v, ok := d.GetOk("subject"); ok {
		p.Subject = v.(string)
	}
	if v, ok := d.GetOk("audience"); ok {
		p.Audience = v.([]string)
	}
	if v, ok := d.GetOk("claims"); ok {
		p.Claims = v.(map[string]any)
	}
	return p, nil
}

// issueParams is what a caller asks of issue; zero fields take the role's
// defaults. A refresh family stores them, to issue again the same way.
type issueParams struct {
	TTL      time.Duration  `json:"ttl,omitempty"`
	Subject  string         `json:"sub,omitempty"`
	Audience []string       `json:"aud,omitempty"`
	Claims   map[string]any `json:"claims,omitempty"`
}

// issueResult is a token issueToken signed, with what its callers need
// to answer and to start or extend a refresh family.
type issueResult struct {
	role     *role
	iss, sub string
	iat      time.Time
	exp      time.Time
	// expiresIn is exp less the request's time truncated to the second.
	expiresIn int64
	token     string
	jti       string
	// alg and kid are the key version's, boxed once per version.
	alg, kid any
	// refreshToken and refreshExpires are set when a refresh family
	// was started or extended with the token.
	refreshToken   string
	refreshExpires time.Time
}

// response is the answer to a single issue or refresh request.
func (res *issueResult) response(expiresAt *rfc3339Cache) *logical.Response {
	data := map[string]any{
		"token":      res.token,
		"alg":        res.alg,
		"kid":        res.kid,
		"jti":        res.jti,
		"expires_at": expiresAt.format(res.exp),
		"expires_in": res.expiresIn,
	}
	if res.refreshToken != "" {
		data["refresh_token"] = res.refreshToken
		data["refresh_expires_at"] = res.refreshExpires.UTC().Format(time.RFC3339)
	}
	return &logical.Response{Data: data}
}

// issueToken checks p against role name's policy and signs a token for
// the identity entityID. It returns what it issued, or the refusal (an
// error response) or error that ends the request.
func (b *backend) issueToken(ctx context.Context, s logical.Storage, name string, p issueParams, entityID string) (issueResult, *logical.Response, error) {
	badRequest := func(format string, args ...any) (issueResult, *logical.Response, error) {
		resp, err := badRequest(format, args...)
		return issueResult{}, resp, err
	}
	respondErr := func(err error, msg string, kv ...any) (issueResult, *logical.Response, error) {
		resp, err := b.respondErr(err, msg, kv...)
		return issueResult{}, resp, err
	}
	r, err := b.getRole(ctx, s, name)
	if err != nil {
		return respondErr(err, "issue: reading role failed", "role", name)
	}
	if r == nil {
		return issueResult{}, nil, logical.CodedError(http.StatusNotFound, fmt.Sprintf("role %q does not exist", name))
	}

	if r.requireEntity() && entityID == "" {
		return badRequest(`role %q requires a Vault identity entity (require_entity), and the request's token has none; log in through an auth method (root and other entity-less tokens cannot issue from this role)`, name)
	}

	ttl := r.TTL
	if p.TTL != 0 {
		ttl = p.TTL
		if ttl > r.MaxTTL {
			return badRequest(`invalid "ttl" %s: greater than role %q's max_ttl %s`, ttl, name, r.MaxTTL)
		}
	}

	sub := r.Subject
	if p.Subject != "" {
		sub = p.Subject
		if len(sub) > maxSubjectLen {
			return badRequest(`invalid "subject": longer than %d characters`, maxSubjectLen)
		}
		if err := validateText("subject", sub); err != nil {
			return badRequest("%s", err)
		}
		if r.SubjectTemplate != "" {
			return badRequest(`invalid "subject": role %q sets the subject from the caller's identity (subject_template)`, name)
		}
		if len(r.AllowedSubjects) == 0 {
			return badRequest(`invalid "subject": role %q does not let callers choose the subject (allowed_subjects is empty)`, name)
		}
		if !matchAny(r.AllowedSubjects, sub) {
			return badRequest(`invalid "subject" %q: matches none of role %q's allowed_subjects`, sub, name)
		}
	}

	aud := r.Audiences
	if len(p.Audience) > 0 {
		aud = p.Audience
		if len(r.AllowedAudiences) == 0 {
			return badRequest(`invalid "audience": role %q does not let callers choose the audience (allowed_audiences is empty)`, name)
		}
		if err := validateList("audience", aud); err != nil {
			return badRequest("%s", err)
		}
		if r.MaxAudiences > 0 && len(aud) > r.MaxAudiences {
			return badRequest(`invalid "audience": %d audiences, more than role %q's max_audiences %d`, len(aud), name, r.MaxAudiences)
		}
		for _, a := range aud {
			if !matchAny(r.AllowedAudiences, a) {
				return badRequest(`invalid "audience" %q: matches none of role %q's allowed_audiences`, a, name)
			}
		}
	}

	var extra map[string]any
	if p.Claims != nil {
		extra = p.Claims
		if err := validateClaims("claims", extra); err != nil {
			return badRequest("%s", err)
		}
		for c, v := range extra {
			_, pinned := r.Claims[c]
			_, templated := r.ClaimsTemplate[c]
			if pinned || templated {
				return badRequest(`invalid "claims": %q is pinned by role %q and cannot be overridden`, c, name)
			}
			if !slices.Contains(r.AllowedClaims, c) {
				return badRequest(`invalid "claims": %q is not in role %q's allowed_claims`, c, name)
			}
			if con := r.constraints[c]; con != nil {
				if err := con.check(v); err != nil {
					return badRequest(`invalid "claims": %q %s (role %q's claim_constraints)`, c, err, name)
				}
			}
		}
	}
	for _, c := range r.RequiredClaims {
		if _, ok := extra[c]; !ok {
			return badRequest(`invalid "claims": role %q requires claim %q (required_claims)`, name, c)
		}
	}

	pinned := r.pinned
	if r.templated {
		id, err := b.loadIdentity(entityID, r.needsGroups)
		if err != nil {
			return respondErr(err, "issue: reading identity failed", "role", name)
		}
		if r.SubjectTemplate != "" {
			v, err := id.render("subject_template", r.SubjectTemplate)
			if err != nil {
				return respondErr(err, "issue: rendering subject failed", "role", name)
			}
			str, isString := v.(string)
			if !isString || str == "" {
				return badRequest(`cannot render "subject_template" %q: it must give a non-empty string`, r.SubjectTemplate)
			}
			if err := validateText("sub", str); err != nil {
				return badRequest(`cannot render "subject_template" %q for this caller: %s`, r.SubjectTemplate, err)
			}
			sub = str
		}
		if len(r.ClaimsTemplate) > 0 {
			rendered, err := id.renderValue("claims_template", map[string]any(r.ClaimsTemplate))
			if err != nil {
				return respondErr(err, "issue: rendering claims failed", "role", name)
			}
			members, err := objectMembers(rendered.(map[string]any))
			if err != nil {
				return respondErr(err, "issue: encoding claims failed", "role", name)
			}
			if len(pinned) > 0 {
				pinned = append(append(append([]byte{}, pinned...), ','), members...)
			} else {
				pinned = members
			}
		}
	}

	iss := r.Issuer
	if iss == "" {
		cfg, err := b.getConfig(ctx, s)
		if err != nil {
			return respondErr(err, "issue: reading config failed", "role", name)
		}
		iss = cfg.Issuer
	}
	if iss == "" {
		return badRequest(`no issuer: set "issuer" on %s or on role %q`, b.mountPath("config"), name)
	}

	k, err := b.getKey(ctx, s, r.Key)
	if err != nil {
		return respondErr(err, "issue: reading key failed", "role", name, "key", r.Key)
	}
	if k == nil {
		return respondErr(fmt.Errorf("role %q names key %q, which does not exist", name, r.Key), "issue: key missing", "role", name, "key", r.Key)
	}
	now := b.now()
	iv := k.current(now)
	sg := iv.signer

	// Both are moved back by not_before_skew (some verifiers refuse an iat
	// ahead of their clock), so a revocation "before now" also covers
	// tokens issued within the skew after it.
	issuedAt := now.Add(-r.NotBeforeSkew).Unix()
	exp := now.Add(ttl).Truncate(time.Second)
	claims := tokenClaims{iss: iss, sub: sub, aud: aud, iat: issuedAt, nbf: issuedAt, exp: exp.Unix(), pinned: pinned, extra: extra}
	if r.JTI {
		claims.jti = newJTI(r.tag)
	}
	pb := payloadPool.Get().(*[]byte)
	defer putPayload(pb)
	payload, err := claims.appendJSON((*pb)[:0])
	*pb = payload[:0]
	if err != nil {
		return respondErr(err, "issue: encoding claims failed", "role", name)
	}
	header, err := k.header(iv, r.Typ)
	if err != nil {
		return respondErr(err, "issue: encoding header failed", "role", name, "key", r.Key)
	}
	if size := tokenSize(header, payload, sg); size > maxTokenBytes {
		return badRequest(`invalid "claims": the token would be %d bytes, over the %d-byte cap; send fewer or smaller claims`, size, maxTokenBytes)
	}
	token, err := signer.SignCompact(ctx, sg, header, payload)
	if err != nil {
		return respondErr(kmsError(fmt.Sprintf("signing with key %q", r.Key), err, false), "issue: signing failed", "role", name, "key", r.Key, "kid", sg.KeyID())
	}
	return issueResult{
		role: r, iss: iss, sub: sub, iat: time.Unix(issuedAt, 0).UTC(), exp: exp,
		expiresIn: int64(exp.Sub(now.Truncate(time.Second)).Seconds()),
		token:     token, jti: claims.jti, alg: iv.alg, kid: iv.kid,
	}, nil, nil
}

// payloadPool holds the buffers issueToken encodes claims into; the token
// is a copy, made by signer.SignCompact.
var payloadPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// putPayload returns pb to payloadPool unless an outsized request grew it
// past the token cap.
func putPayload(pb *[]byte) {
	if cap(*pb) <= 2*maxTokenBytes {
		payloadPool.Put(pb)
	}
}

// maxTokenBytes caps an encoded token: most HTTP stacks refuse header
// lines, and many proxies whole header blocks, past 8 KiB.
const maxTokenBytes = 8 << 10

// tokenSize is the length of the compact JWS that header, payload and s
// would make.
func tokenSize(header string, payload []byte, s signer.Signer) int {
	sigLen := s.Algorithm().Info().SignatureSize
	if k, ok := s.Public().(interface{ Size() int }); ok {
		sigLen = k.Size()
	}
	enc := base64.RawURLEncoding
	return len(header) + 1 + enc.EncodedLen(len(payload)) + 1 + enc.EncodedLen(sigLen)
}

func matchAny(patterns []string, v string) bool {
	for _, p := range patterns {
		if glob.Glob(p, v) {
			return true
		}
	}
	return false
}

// newJTI returns the role's tag, a ".", and 128 random bits,
// base64url-encoded.
func newJTI(tag string) string {
	var r [16]byte
	rand.Read(r[:]) // never returns an error; crashes the program if the OS cannot provide randomness
	var enc [22]byte
	base64.RawURLEncoding.Encode(enc[:], r[:])
	var sb strings.Builder
	sb.Grow(len(tag) + 1 + len(enc))
	sb.WriteString(tag)
	sb.WriteByte('.')
	sb.Write(enc[:])
	return sb.String()
}

// rfc3339Cache remembers the last expiry it formatted: tokens issued in
// the same second with the same ttl share it, boxed once.
type rfc3339Cache struct {
	last atomic.Pointer[formattedTime]
}

type formattedTime struct {
	unix  int64
	boxed any
}

func (c *rfc3339Cache) format(t time.Time) any {
	if f := c.last.Load(); f != nil && f.unix == t.Unix() {
		return f.boxed
	}
	f := &formattedTime{unix: t.Unix(), boxed: t.UTC().Format(time.RFC3339)}
	c.last.Store(f)
	return f.boxed
}

const pathIssueHelpSyn = `Issue a signed JWT for a role.`

const pathIssueHelpDesc = `
Returns a JWT signed by the current version of the role's key, with
"iss", "iat", "nbf", "exp" and (unless the role turns it off) a random
"jti" set by the engine. The caller may ask for an audience, a subject,
extra claims and a ttl, each only as far as the role allows; anything else
is refused with a 400 that names the field. No lease is created (revoke
tokens with jwt/revoke), so the mount's default_lease_ttl and max_lease_ttl
do not apply: the role's ttl and max_ttl set the lifetime. Nothing is
stored unless the role has refresh_ttl: then a refresh token family is
stored and a refresh token is returned too (see jwt/refresh), and on a
performance standby the request is forwarded to the active node.

batch_input issues one token per item, each checked like a single request,
signing on every core: each item gets its own result or error in
batch_results, in order, and refused items do not stop the others. Vault
policy's allowed_parameters and denied_parameters see only top-level
fields, not what is inside batch_input: put limits on the role, or deny
batches with denied_parameters = { "batch_input" = [] }.
`
