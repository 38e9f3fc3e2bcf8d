package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/logical"
)

// Role settings' defaults and limits.
const (
	defaultTTL    = 5 * time.Minute
	defaultMaxTTL = time.Hour
	defaultTyp    = "JWT"
	// maxClaimsBytes caps a claims object, as JSON: a role's pinned claims
	// and a caller's claims each.
	maxClaimsBytes = 16 << 10
	// maxNotBeforeSkew caps how far iat and nbf may be backdated.
	maxNotBeforeSkew = time.Hour
	// maxTokenTTL caps ttl and max_ttl, and keys' verification_ttl and
	// rotation_period: 10 years, so that every sum the engine makes of them
	// (a revocation lasts max_ttl + not_before_skew + 30s) stays far from
	// time.Duration's limit of about 292 years. Checked on write only: a
	// role or key stored with more still loads.
	maxTokenTTL   = 10 * 365 * 24 * time.Hour
	maxSubjectLen = 1024
	maxListItems  = 256
)

// reservedClaims can never be set through a claims object: the engine sets
// them. "sub" and "aud" have fields of their own.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// typRe is what a "typ" header may hold: a media type name, short form
// ("JWT", "at+jwt", "application/secevent+jwt").
var typRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+\-/]{0,63}$`)

// role says what tokens a caller of issue/<name> gets, stored at
// role/<name>.
type role struct {
	Name string `json:"name"`
	// CreatedAt is when the role was created, so that a role deleted and
	// created again under the same name does not continue the old one's
	// refresh families (see continuesFamily). A role stored without it (by
	// an engine before it, or rewritten by one after a rollback) gets the
	// time of its next write, with CreatedBefore: created at or before then.
	CreatedAt        time.Time      `json:"created_at,omitzero"`
	CreatedBefore    bool           `json:"created_before,omitempty"`
	Key              string         `json:"key"`
	Issuer           string         `json:"issuer,omitempty"`
	TTL              time.Duration  `json:"ttl"`
	MaxTTL           time.Duration  `json:"max_ttl"`
	Audiences        []string       `json:"audiences,omitempty"`
	AllowedAudiences []string       `json:"allowed_audiences,omitempty"`
	Subject          string         `json:"subject,omitempty"`
	AllowedSubjects  []string       `json:"allowed_subjects,omitempty"`
	Claims           map[string]any `json:"claims,omitempty"`
	AllowedClaims    []string       `json:"allowed_claims,omitempty"`
	NotBeforeSkew    time.Duration  `json:"not_before_skew"`
	Typ              string         `json:"typ"`
	JTI              bool           `json:"jti"`
	// SubjectTemplate and ClaimsTemplate derive "sub" and claims from the
	// caller's Vault identity; their claims are pinned like Claims.
	SubjectTemplate string         `json:"subject_template,omitempty"`
	ClaimsTemplate  map[string]any `json:"claims_template,omitempty"`
	// RequireEntity refuses callers without an identity entity; unset, it
	// is true exactly when a template is used.
	RequireEntity  *bool    `json:"require_entity,omitempty"`
	RequiredClaims []string `json:"required_claims,omitempty"`
	// ClaimConstraints is as written; constraints is it parsed.
	ClaimConstraints map[string]any `json:"claim_constraints,omitempty"`
	MaxAudiences     int            `json:"max_audiences,omitempty"`
	// RefreshTTL, if set, makes issue also return a refresh token valid
	// this long; each refresh returns a new one (see refresh.go).
	RefreshTTL time.Duration `json:"refresh_ttl,omitempty"`
	// RefreshMaxTTL, if set, caps a refresh family's whole life from its
	// first issue, however often it is refreshed.
	RefreshMaxTTL time.Duration `json:"refresh_max_ttl,omitempty"`

	// tag prefixes the role's jtis, for revocation by role.
	tag string
	// pinned is Claims encoded once as JSON object members, for issue.
	pinned      []byte
	constraints map[string]*claimConstraint
	// needsGroups: a template reads the entity's groups.
	needsGroups bool
	// templated: a template reads the caller's identity.
	templated bool
}

// continuesFamily reports whether f was started by this role, and not by
// one deleted since that had the same name: a name holds one role at a
// time, so a family started before the role was created is another's. It
// compares times, not an id the family records, because both entries
// survive a rollback to an engine that drops members it does not know:
// the family's created_at is as old as refresh families. Where the role's
// creation is unknown (no created_at, or only a bound) it cannot tell, and
// lets the family go on.
func (r *role) continuesFamily(f *refreshFamily) bool {
	return r.CreatedAt.IsZero() || r.CreatedBefore || !f.CreatedAt.Before(r.CreatedAt)
}

// hasTemplates reports whether the role renders anything from identity.
func (r *role) hasTemplates() bool {
	if hasTemplate(r.SubjectTemplate) {
		return true
	}
	found := false
	_ = templateStrings(r.ClaimsTemplate, func(s string) error {
		found = found || hasTemplate(s)
		return nil
	})
	return found
}

// requireEntity is the effective require_entity.
func (r *role) requireEntity() bool {
	if r.RequireEntity != nil {
		return *r.RequireEntity
	}
	return r.hasTemplates()
}

// prepare derives what issue needs from the stored fields.
func (r *role) prepare() error {
	var err error
	r.tag = roleTag(r.Name)
	if r.pinned, err = objectMembers(r.Claims); err != nil {
		return err
	}
	if r.constraints, err = parseConstraints(r.ClaimConstraints); err != nil {
		return err
	}
	r.templated = r.hasTemplates()
	r.needsGroups = readsGroups(r.SubjectTemplate)
	_ = templateStrings(r.ClaimsTemplate, func(s string) error {
		r.needsGroups = r.needsGroups || readsGroups(s)
		return nil
	})
	return nil
}

// validate checks the invariants a stored role must keep on its own;
// save checks those that involve its key.
func (r *role) validate() error {
	if r.Name == "" {
		return fmt.Errorf(`invalid "name": must not be empty`)
	}
	if r.Key == "" {
		return fmt.Errorf(`invalid "key": required; name the signing key (one of this mount's keys/<name>)`)
	}
	if err := validateIssuer(r.Issuer); err != nil {
		return err
	}
	if r.TTL <= 0 {
		return fmt.Errorf(`invalid "ttl": must be positive`)
	}
	if r.MaxTTL <= 0 {
		return fmt.Errorf(`invalid "max_ttl": must be positive`)
	}
	if r.MaxTTL > maxTokenTTL {
		return fmt.Errorf(`invalid "max_ttl" %s: must be at most %s (10 years)`, r.MaxTTL, maxTokenTTL)
	}
	if r.TTL > r.MaxTTL {
		return fmt.Errorf(`invalid "ttl" %s: greater than max_ttl %s`, r.TTL, r.MaxTTL)
	}
	if r.NotBeforeSkew < 0 || r.NotBeforeSkew > maxNotBeforeSkew {
		return fmt.Errorf(`invalid "not_before_skew" %s: must be between 0 and %s`, r.NotBeforeSkew, maxNotBeforeSkew)
	}
	if !typRe.MatchString(r.Typ) {
		return fmt.Errorf(`invalid "typ" %q: must be 1 to 64 characters of letters, digits and . + - /, starting with a letter or digit, such as JWT or at+jwt`, r.Typ)
	}
	if len(r.Subject) > maxSubjectLen {
		return fmt.Errorf(`invalid "subject": longer than %d characters`, maxSubjectLen)
	}
	if err := validateText("subject", r.Subject); err != nil {
		return err
	}
	for field, list := range map[string][]string{
		"audiences": r.Audiences, "allowed_audiences": r.AllowedAudiences,
		"allowed_subjects": r.AllowedSubjects, "allowed_claims": r.AllowedClaims,
	} {
		if err := validateList(field, list); err != nil {
			return err
		}
	}
	if err := validateClaims("claims", r.Claims); err != nil {
		return err
	}
	if r.Subject != "" && r.SubjectTemplate != "" {
		return fmt.Errorf(`invalid "subject_template": set "subject" or "subject_template", not both`)
	}
	if err := validateTemplate("subject_template", r.SubjectTemplate); err != nil {
		return err
	}
	if err := validateClaims("claims_template", r.ClaimsTemplate); err != nil {
		return err
	}
	for name, v := range r.ClaimsTemplate {
		if _, pinned := r.Claims[name]; pinned {
			return fmt.Errorf(`invalid "claims_template": %q is also in "claims"; a claim comes from one of them`, name)
		}
		if err := templateStrings(v, func(tpl string) error { return validateTemplate("claims_template", tpl) }); err != nil {
			return err
		}
	}
	for _, name := range r.RequiredClaims {
		if !slices.Contains(r.AllowedClaims, name) {
			return fmt.Errorf(`invalid "required_claims": %q is not in allowed_claims`, name)
		}
	}
	if err := validateList("required_claims", r.RequiredClaims); err != nil {
		return err
	}
	for i, name := range r.RequiredClaims {
		if slices.Contains(r.RequiredClaims[:i], name) {
			return fmt.Errorf(`invalid "required_claims": %q is listed more than once`, name)
		}
	}
	if err := validateConstraints(r.ClaimConstraints); err != nil {
		return err
	}
	for name := range r.ClaimConstraints {
		if !slices.Contains(r.AllowedClaims, name) {
			return fmt.Errorf(`invalid "claim_constraints": %q is not in allowed_claims; constraints are for claims callers may set`, name)
		}
	}
	if r.MaxAudiences < 0 {
		return fmt.Errorf(`invalid "max_audiences": must not be negative (0 means no limit)`)
	}
	if r.RefreshTTL != 0 {
		if r.RefreshTTL < r.TTL || r.RefreshTTL > maxRefreshTTL {
			return fmt.Errorf(`invalid "refresh_ttl" %s: must be 0 (no refresh tokens) or between the role's ttl %s and %s`, r.RefreshTTL, r.TTL, maxRefreshTTL)
		}
		if !r.JTI {
			return fmt.Errorf(`invalid "refresh_ttl": refresh tokens need jti=true, so that reuse can revoke the family's access tokens`)
		}
	}
	if r.RefreshMaxTTL != 0 && (r.RefreshTTL == 0 || r.RefreshMaxTTL < r.RefreshTTL || r.RefreshMaxTTL > maxRefreshMaxTTL) {
		return fmt.Errorf(`invalid "refresh_max_ttl" %s: must be 0 (no limit) or, with refresh_ttl set, between refresh_ttl %s and %s`, r.RefreshMaxTTL, r.RefreshTTL, maxRefreshMaxTTL)
	}
	for _, name := range r.AllowedClaims {
		if slices.Contains(reservedClaims, name) {
			return fmt.Errorf(`invalid "allowed_claims": %q is reserved; the engine sets it (use "audience" or "subject" on issue where the role allows)`, name)
		}
		if _, pinned := r.Claims[name]; pinned {
			return fmt.Errorf(`invalid "allowed_claims": %q is pinned by "claims"; callers can never override a pinned claim`, name)
		}
		if _, pinned := r.ClaimsTemplate[name]; pinned {
			return fmt.Errorf(`invalid "allowed_claims": %q is pinned by "claims_template"; callers can never override a pinned claim`, name)
		}
	}
	return nil
}

func validateList(field string, list []string) error {
	if len(list) > maxListItems {
		return fmt.Errorf("invalid %q: more than %d entries", field, maxListItems)
	}
	for _, v := range list {
		if v == "" {
			return fmt.Errorf("invalid %q: entries must not be empty", field)
		}
		if len(v) > maxSubjectLen {
			return fmt.Errorf("invalid %q: entry longer than %d characters", field, maxSubjectLen)
		}
		if err := validateText(field, v); err != nil {
			return err
		}
	}
	return nil
}

// validateText checks a value that becomes (or matches) a token's "sub",
// "aud" or "iss", or names a claim: valid UTF-8 without control characters
// (C0, DEL, C1), bidirectional formatting characters (U+061C, U+200E,
// U+200F, U+202A-U+202E, U+2066-U+2069) or line and paragraph separators
// (U+2028, U+2029). Such characters hide or reorder text where the value
// is shown ("admin\u202e..." displays reversed) and a NUL can cut it short
// in a verifier written in C. The error names the character, never the
// value.
func validateText(field, v string) error {
	if p := textProblem(v); p != "" {
		return fmt.Errorf("invalid %q: %s", field, p)
	}
	return nil
}

// textProblem says what validateText refuses in v ("not valid UTF-8",
// "contains U+202E, …"), or "" if nothing.
func textProblem(v string) string {
	if !utf8.ValidString(v) {
		return "not valid UTF-8"
	}
	for _, r := range v {
		what := ""
		switch {
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			what = "a control character"
		case r == 0x061c || r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			what = "a bidirectional formatting character"
		case r == 0x2028 || r == 0x2029:
			what = "a line or paragraph separator"
		default:
			continue
		}
		return fmt.Sprintf("contains U+%04X, %s; control characters, bidirectional formatting characters and line separators are not allowed", r, what)
	}
	return ""
}

// validateClaims checks a claims object, a role's or a caller's: at most
// maxClaimsBytes as JSON, no empty names, no names validateText refuses, no
// reserved names, and no number (at any depth) beyond what a 64-bit float
// holds.
func validateClaims(field string, claims map[string]any) error {
	if len(claims) == 0 {
		return nil
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		return fmt.Errorf("invalid %q: not encodable as JSON: %v", field, err)
	}
	if len(raw) > maxClaimsBytes {
		return fmt.Errorf("invalid %q: %d bytes of JSON, more than the limit of %d", field, len(raw), maxClaimsBytes)
	}
	for name := range claims {
		if name == "" {
			return fmt.Errorf("invalid %q: claim names must not be empty", field)
		}
		if p := textProblem(name); p != "" {
			return fmt.Errorf("invalid %q: claim name %s", field, p)
		}
		if slices.Contains(reservedClaims, name) {
			return fmt.Errorf(`invalid %q: %q is a reserved claim; the engine sets iss, exp, nbf, iat and jti, and sub and aud come only from the "subject" and "audience(s)" fields`, field, name)
		}
	}
	for name, v := range claims {
		if !finiteNumbers(v) {
			return fmt.Errorf(`invalid %q: claim %q holds a number beyond the range of a 64-bit float (about ±1.8e308); most JWT libraries cannot read the token`, field, name)
		}
	}
	return nil
}

// finiteNumbers reports whether every number in v, a decoded JSON value,
// fits a finite float64. A json.Number such as 1e999 is valid JSON and
// would be signed verbatim, but verifiers that decode numbers as float64
// (golang-jwt, JavaScript) refuse the whole token.
func finiteNumbers(v any) bool {
	switch t := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		return err == nil || !math.IsInf(f, 0)
	case map[string]any:
		for _, e := range t {
			if !finiteNumbers(e) {
				return false
			}
		}
	case []any:
		for _, e := range t {
			if !finiteNumbers(e) {
				return false
			}
		}
	}
	return true
}

// getRole returns the cached role named name, loading it on a miss; nil if
// there is no such role.
func (b *backend) getRole(ctx context.Context, s logical.Storage, name string) (*role, error) {
	return cachedLoad(b, b.roles, name, func() (*role, error) { return loadRole(ctx, s, name) })
}

func loadRole(ctx context.Context, s logical.Storage, name string) (*role, error) {
	entry, err := s.Get(ctx, rolePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading role %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	r := &role{}
	if err := entry.DecodeJSON(r); err != nil {
		return nil, fmt.Errorf("decoding role %q: %w", name, err)
	}
	if err := r.prepare(); err != nil {
		return nil, fmt.Errorf("role %q: %w", name, err)
	}
	return r, nil
}

// saveRole validates r, checks its key exists and publishes long enough,
// writes it and drops the cached copy. Call with writeMu held.
func (b *backend) saveRole(ctx context.Context, s logical.Storage, r *role) error {
	if err := r.validate(); err != nil {
		return userError{err}
	}
	k, err := loadKey(ctx, s, r.Key)
	if err != nil {
		return err
	}
	if k == nil {
		return userError{fmt.Errorf(`invalid "key": key %q does not exist; create it with %s first`, r.Key, b.mountPath("keys/"+r.Key))}
	}
	if r.MaxTTL > k.VerificationTTL {
		return userError{fmt.Errorf(`invalid "max_ttl" %s: longer than the verification_ttl %s of key %q, so tokens could outlive their key's publication`,
			r.MaxTTL, k.VerificationTTL, k.Name)}
	}
	entry, err := logical.StorageEntryJSON(rolePrefix+r.Name, r)
	if err != nil {
		return fmt.Errorf("encoding role %q: %w", r.Name, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing role %q: %w", r.Name, err)
	}
	b.dropRole(r.Name)
	return nil
}

func (b *backend) dropRole(name string) {
	b.cacheMu.Lock()
	delete(b.roles, name)
	b.issuers = nil
	b.gen++
	b.cacheMu.Unlock()
}

// rolesUsingKey returns the roles that sign with the key named keyName.
func (b *backend) rolesUsingKey(ctx context.Context, s logical.Storage, keyName string) ([]*role, error) {
	names, err := s.List(ctx, rolePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing roles: %w", err)
	}
	var out []*role
	for _, n := range names {
		r, err := loadRole(ctx, s, n)
		if err != nil {
			return nil, err
		}
		if r != nil && r.Key == keyName {
			out = append(out, r)
		}
	}
	return out, nil
}
