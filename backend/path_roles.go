package backend

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathRolesList(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "roles/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "roles"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback: b.pathRolesList,
				Summary:  "List roles.",
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"keys": {Type: framework.TypeStringSlice, Required: true, Description: "Names of the roles."},
				}}}},
			},
		},
		HelpSynopsis:    "List the names of the roles.",
		HelpDescription: "Lists every role of this mount by name.",
	}
}

func pathRoles(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "roles/" + framework.GenericNameRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "role"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Required: true, Description: "Name of the role."},
			"key": {
				Type:        framework.TypeString,
				Description: "Name of the signing key (jwt/keys/<name>). Required when the role is created; an update that does not send it keeps the role's key.",
			},
			"issuer": {
				Type:        framework.TypeString,
				Description: `"iss" of this role's tokens; overrides the issuer in jwt/config. The same rules, and the same warnings, as jwt/config's issuer. ` + textRule,
			},
			"ttl": {
				Type:        framework.TypeDurationSecond,
				Default:     int(defaultTTL.Seconds()),
				Description: "Default token lifetime; at most max_ttl.",
			},
			"max_ttl": {
				Type:        framework.TypeDurationSecond,
				Default:     int(defaultMaxTTL.Seconds()),
				Description: "Longest lifetime a caller may ask for. At most the key's verification_ttl, and at most 87600h (10 years). The mount's max_lease_ttl does not apply: tokens are not leases.",
			},
			"audiences": {
				Type:        framework.TypeCommaStringSlice,
				Description: `Default "aud": used when the caller asks for none. ` + textRule,
			},
			"allowed_audiences": {
				Type:        framework.TypeCommaStringSlice,
				Description: `Glob patterns ("*" matches any run of characters) a caller's "audience" must match. Empty: callers may not choose the audience. ` + textRule,
			},
			"subject": {
				Type:        framework.TypeString,
				Description: `Default "sub": used when the caller asks for none. At most 1024 characters. ` + textRule,
			},
			"allowed_subjects": {
				Type:        framework.TypeCommaStringSlice,
				Description: `Glob patterns a caller's "subject" must match. Empty: callers may not choose the subject. ` + textRule,
			},
			"claims": {
				Type:        framework.TypeMap,
				Description: fmt.Sprintf(`JSON object of claims pinned into every token; callers can never override them. Reserved names (iss, sub, aud, exp, nbf, iat, jti) are refused. At most %d bytes, and no number beyond a 64-bit float's range. As a JSON string, no object in it may repeat a member name.`, maxClaimsBytes),
			},
			"allowed_claims": {
				Type:        framework.TypeCommaStringSlice,
				Description: `Names of claims a caller may set on issue. Reserved and pinned names are refused.`,
			},
			"not_before_skew": {
				Type:        framework.TypeDurationSecond,
				Default:     0,
				Description: `Backdate "iat" and "nbf" by this much, for verifiers whose clocks run slow. At most 1h.`,
			},
			"typ": {
				Type:        framework.TypeString,
				Default:     defaultTyp,
				Description: `"typ" header of the tokens, such as JWT or at+jwt.`,
			},
			"jti": {
				Type:        framework.TypeBool,
				Default:     true,
				Description: `Give each token a unique "jti": the role's tag, ".", and 128 random bits (the tag lets jwt/revoke role=<name> find the role's tokens).`,
			},
			"subject_template": {
				Type:        framework.TypeString,
				Description: `Vault identity template for "sub", such as {{identity.entity.id}}. Callers then cannot choose the subject. Not with "subject". A rendered value that breaks the rules of "subject" fails the request with a 400.`,
			},
			"claims_template": {
				Type: framework.TypeMap,
				Description: `JSON object of claims pinned into every token whose string values may hold Vault identity templates: {{identity.entity.id}}, .name, ` +
					`.metadata.<key>, .aliases.<mount accessor>.name and .metadata.<key>; a value that is exactly {{identity.entity.groups.names}} or ` +
					`{{identity.entity.groups.ids}} becomes a JSON array. A template the caller's identity cannot fill fails the request.`,
			},
			"require_entity": {
				Type:        framework.TypeBool,
				Description: "Refuse callers whose token has no Vault identity entity (such as root). Default: true when a template is set.",
			},
			"required_claims": {
				Type:        framework.TypeCommaStringSlice,
				Description: "Names of claims the caller must set on issue; each must be in allowed_claims, listed once.",
			},
			"claim_constraints": {
				Type: framework.TypeMap,
				Description: `JSON object: claim name (in allowed_claims) → a glob string, or rules {"glob": "<glob>", "type": string|number|integer|boolean|array|object, ` +
					`"enum": [...], "pattern": "<RE2, unanchored>", "max_length": n}. A caller's value must meet every rule. An empty enum, and glob, pattern or ` +
					`max_length with a type they cannot apply to, are refused.`,
			},
			"max_audiences": {
				Type:        framework.TypeInt,
				Description: "Most audiences a caller may request; 0 means no limit.",
			},
			"refresh_max_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "If set, a refresh token family ends this long after its first issue, however often it is refreshed (an absolute lifetime; refresh_ttl is the idle one). Between refresh_ttl and 365 days; 0 (default) means no limit.",
			},
			"refresh_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "If set, issue also returns a refresh token valid this long, which jwt/refresh exchanges once for a new token and refresh token; reusing one revokes its whole family. At least ttl, at most 90 days; needs jti=true. 0 (default) turns refresh tokens off.",
			},
		},
		ExistenceCheck: b.roleExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: &framework.PathOperation{
				Callback:     b.pathRoleWrite,
				Summary:      "Create a role.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"},
				Responses:    roleResponses,
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     b.pathRoleWrite,
				Summary:      "Update a role; fields not sent keep their values.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "write"},
				Responses:    roleResponses,
			},
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathRoleRead,
				Summary:      "Read a role.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses:    roleResponses,
			},
			logical.DeleteOperation: &framework.PathOperation{
				Callback:     b.pathRoleDelete,
				Summary:      "Delete a role.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "delete"},
				Responses: map[int][]framework.Response{
					http.StatusNoContent: {{Description: "No Content"}},
				},
			},
		},
		HelpSynopsis:    pathRolesHelpSyn,
		HelpDescription: pathRolesHelpDesc,
	}
}

// textRule is what values that become a token's "sub", "aud" or "iss" (and
// the patterns matched against them) must be; see validateText.
const textRule = "Valid UTF-8 without control characters, bidirectional formatting characters (such as U+202E) or line separators (U+2028, U+2029)."

var roleResponses = map[int][]framework.Response{
	http.StatusOK: {{
		Description: "OK",
		Fields: map[string]*framework.FieldSchema{
			"name":              {Type: framework.TypeString, Required: true, Description: "Name of the role."},
			"key":               {Type: framework.TypeString, Required: true, Description: "Name of the signing key (jwt/keys/<name>)."},
			"issuer":            {Type: framework.TypeString, Required: true, Description: `"iss" of this role's tokens; empty: jwt/config's issuer.`},
			"ttl":               {Type: framework.TypeInt64, Required: true, Description: "Default token lifetime, in seconds."},
			"max_ttl":           {Type: framework.TypeInt64, Required: true, Description: "Longest lifetime a caller may ask for, in seconds."},
			"audiences":         {Type: framework.TypeStringSlice, Required: true, Description: `Default "aud": used when the caller asks for none.`},
			"allowed_audiences": {Type: framework.TypeStringSlice, Required: true, Description: `Glob patterns a caller's "audience" must match. Empty: callers may not choose the audience.`},
			"subject":           {Type: framework.TypeString, Required: true, Description: `Default "sub": used when the caller asks for none.`},
			"allowed_subjects":  {Type: framework.TypeStringSlice, Required: true, Description: `Glob patterns a caller's "subject" must match. Empty: callers may not choose the subject.`},
			"claims":            {Type: framework.TypeMap, Required: true, Description: "Claims pinned into every token; callers can never override them."},
			"allowed_claims":    {Type: framework.TypeStringSlice, Required: true, Description: "Names of claims a caller may set on issue."},
			"not_before_skew":   {Type: framework.TypeInt64, Required: true, Description: `Seconds "iat" and "nbf" are backdated by.`},
			"typ":               {Type: framework.TypeString, Required: true, Description: `"typ" header of the tokens.`},
			"jti":               {Type: framework.TypeBool, Required: true, Description: `Whether each token gets a unique "jti": the role's tag, ".", and 128 random bits.`},
			"subject_template":  {Type: framework.TypeString, Required: true, Description: `Vault identity template for "sub"; empty if none.`},
			"claims_template":   {Type: framework.TypeMap, Required: true, Description: "Claims pinned into every token whose string values may hold Vault identity templates."},
			"require_entity":    {Type: framework.TypeBool, Required: true, Description: "Whether callers whose token has no Vault identity entity are refused: the value written, or, if none was, whether subject_template or claims_template holds a template."},
			"required_claims":   {Type: framework.TypeStringSlice, Required: true, Description: "Names of claims the caller must set on issue."},
			"claim_constraints": {Type: framework.TypeMap, Required: true, Description: "Per claim name: a glob string, or an object of rules (glob, type, enum, pattern, max_length) a caller's value must meet."},
			"max_audiences":     {Type: framework.TypeInt, Required: true, Description: "Most audiences a caller may request; 0 means no limit."},
			"refresh_ttl":       {Type: framework.TypeInt64, Required: true, Description: "Lifetime of each refresh token (a family's idle lifetime), in seconds; 0: issue returns no refresh token."},
			"refresh_max_ttl":   {Type: framework.TypeInt64, Required: true, Description: "Absolute lifetime of a refresh token family from its first issue, in seconds; 0 means no limit."},
		},
	}},
}

func (b *backend) roleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	entry, err := req.Storage.Get(ctx, rolePrefix+d.Get("name").(string))
	if err != nil {
		return false, fmt.Errorf("reading role: %w", err)
	}
	return entry != nil, nil
}

func (b *backend) pathRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, rolePrefix)
	if err != nil {
		return b.respondErr(fmt.Errorf("listing roles: %w", err), "listing roles failed")
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	r, err := b.getRole(ctx, req.Storage, name)
	if err != nil {
		return b.respondErr(err, "reading role failed", "role", name)
	}
	if r == nil {
		return nil, nil
	}
	return &logical.Response{Data: r.responseData()}, nil
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	r, err := loadRole(ctx, req.Storage, name)
	if err != nil {
		return b.respondErr(err, "reading role failed", "role", name)
	}
	if r == nil {
		r = &role{Name: name, CreatedAt: b.now(), TTL: defaultTTL, MaxTTL: defaultMaxTTL, Typ: defaultTyp, JTI: true}
		// A role created with only a short max_ttl gets it as its ttl.
		if v, ok := d.GetOk("max_ttl"); ok {
			if _, ttlSet := d.GetOk("ttl"); !ttlSet {
				r.TTL = min(r.TTL, time.Duration(v.(int))*time.Second)
			}
		}
	}
	if r.CreatedAt.IsZero() {
		// Stored without it: it existed before now.
		r.CreatedAt, r.CreatedBefore = b.now(), true
	}
	strs := map[string]*string{"key": &r.Key, "issuer": &r.Issuer, "subject": &r.Subject, "typ": &r.Typ, "subject_template": &r.SubjectTemplate}
	for field, dst := range strs {
		if v, ok := d.GetOk(field); ok {
			*dst = v.(string)
		}
	}
	var warnings []string
	if _, ok := d.GetOk("issuer"); ok {
		warnings = issuerWarnings(r.Issuer, req.MountPoint)
	}
	lists := map[string]*[]string{
		"audiences": &r.Audiences, "allowed_audiences": &r.AllowedAudiences,
		"allowed_subjects": &r.AllowedSubjects, "allowed_claims": &r.AllowedClaims, "required_claims": &r.RequiredClaims,
	}
	for field, dst := range lists {
		if v, ok := d.GetOk(field); ok {
			*dst = v.([]string)
		}
	}
	durations := map[string]*time.Duration{"ttl": &r.TTL, "max_ttl": &r.MaxTTL, "not_before_skew": &r.NotBeforeSkew, "refresh_ttl": &r.RefreshTTL, "refresh_max_ttl": &r.RefreshMaxTTL}
	for field, dst := range durations {
		if v, ok := d.GetOk(field); ok {
			*dst = time.Duration(v.(int)) * time.Second
		}
	}
	if v, ok := d.GetOk("claims"); ok {
		r.Claims = v.(map[string]any)
	}
	if v, ok := d.GetOk("jti"); ok {
		r.JTI = v.(bool)
	}
	for field, dst := range map[string]*map[string]any{"claims_template": &r.ClaimsTemplate, "claim_constraints": &r.ClaimConstraints} {
		if v, ok := d.GetOk(field); ok {
			*dst = v.(map[string]any)
		}
	}
	if v, ok := d.GetOk("require_entity"); ok {
		b := v.(bool)
		r.RequireEntity = &b
	}
	if v, ok := d.GetOk("max_audiences"); ok {
		r.MaxAudiences = v.(int)
	}

	if err := b.saveRole(ctx, req.Storage, r); err != nil {
		return b.respondErr(err, "writing role failed", "role", name)
	}
	return &logical.Response{Data: r.responseData(), Warnings: warnings}, nil
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	if err := req.Storage.Delete(ctx, rolePrefix+name); err != nil {
		return b.respondErr(fmt.Errorf("deleting role %q: %w", name, err), "deleting role failed", "role", name)
	}
	b.dropRole(name)
	return nil, nil
}

func (r *role) responseData() map[string]any {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	orEmpty := func(m map[string]any) map[string]any {
		if m == nil {
			return map[string]any{}
		}
		return m
	}
	return map[string]any{
		"name":              r.Name,
		"key":               r.Key,
		"issuer":            r.Issuer,
		"ttl":               int64(r.TTL.Seconds()),
		"max_ttl":           int64(r.MaxTTL.Seconds()),
		"audiences":         nonNil(r.Audiences),
		"allowed_audiences": nonNil(r.AllowedAudiences),
		"subject":           r.Subject,
		"allowed_subjects":  nonNil(r.AllowedSubjects),
		"claims":            orEmpty(r.Claims),
		"allowed_claims":    nonNil(r.AllowedClaims),
		"not_before_skew":   int64(r.NotBeforeSkew.Seconds()),
		"typ":               r.Typ,
		"jti":               r.JTI,
		"subject_template":  r.SubjectTemplate,
		"claims_template":   orEmpty(r.ClaimsTemplate),
		"require_entity":    r.requireEntity(),
		"required_claims":   nonNil(r.RequiredClaims),
		"claim_constraints": orEmpty(r.ClaimConstraints),
		"max_audiences":     r.MaxAudiences,
		"refresh_ttl":       int64(r.RefreshTTL.Seconds()),
		"refresh_max_ttl":   int64(r.RefreshMaxTTL.Seconds()),
	}
}

const pathRolesHelpSyn = `Manage roles: which key signs, and what claims a token may carry.`

const pathRolesHelpDesc = `
A role names a signing key and fixes what the tokens issued through
jwt/issue/<role> may say. Claims in "claims", "subject" and "audiences" are
the defaults or pins; a caller may only choose an audience matching
"allowed_audiences", a subject matching "allowed_subjects", and claims named
in "allowed_claims", and never a pinned or reserved claim (iss, sub, aud,
exp, nbf, iat, jti). Subjects, audiences, issuers, their patterns and claim
names must be valid UTF-8 without control characters, bidirectional
formatting characters or line separators. Guard jwt/roles/* with Vault policy for the security
team, and give applications only "update" on jwt/issue/<role>.
`
