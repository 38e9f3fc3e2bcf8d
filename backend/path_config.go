package backend

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// config is the mount-wide configuration, stored at "config".
type config struct {
	// Issuer is the "iss" of tokens from roles that set none.
	Issuer string `json:"issuer"`
	// JWKSMaxAge is how long verifiers may cache the JWKS (Cache-Control
	// max-age), and so how long a new key version is published before it
	// signs. Zero means defaultJWKSMaxAge.
	JWKSMaxAge time.Duration `json:"jwks_max_age,omitempty"`
	// JWKSOldMaxAgeUntil is when JWKS copies served under an earlier,
	// larger jwks_max_age stop being fresh, set by a write that lowers it:
	// until then a staged rotation waits for it (rotationLead). Zero, and
	// not stored, otherwise.
	JWKSOldMaxAgeUntil time.Time `json:"jwks_old_max_age_until,omitzero"`
}

// Bounds of jwks_max_age.
const (
	defaultJWKSMaxAge = 5 * time.Minute
	minJWKSMaxAge     = 10 * time.Second
	maxJWKSMaxAge     = 24 * time.Hour
)

func (c *config) validate() error {
	if c.JWKSMaxAge != 0 && (c.JWKSMaxAge < minJWKSMaxAge || c.JWKSMaxAge > maxJWKSMaxAge) {
		return fmt.Errorf(`invalid "jwks_max_age" %s: must be between %s and %s`, c.JWKSMaxAge, minJWKSMaxAge, maxJWKSMaxAge)
	}
	return validateIssuer(c.Issuer)
}

// jwksMaxAge is the configured JWKS cache lifetime, which is also the
// lead of a staged rotation.
func (c *config) jwksMaxAge() time.Duration {
	if c.JWKSMaxAge == 0 {
		return defaultJWKSMaxAge
	}
	return c.JWKSMaxAge
}

// rotationLead is how long before it signs a rotation staged at now
// publishes the new version: jwks_max_age, so a verifier that honours
// Cache-Control has the new kid first; but while a copy served under an
// earlier, larger jwks_max_age may still be fresh (JWKSOldMaxAgeUntil), up
// to then, as a shared cache or CDN keeps serving that copy until it
// expires. Every staged rotation takes its lead from here; immediate=true
// takes none.
func (c *config) rotationLead(now time.Time) time.Duration {
	return max(c.jwksMaxAge(), c.JWKSOldMaxAgeUntil.Sub(now))
}

// validateIssuer checks an "iss" value: a StringOrURI (RFC 7519 §2), so a
// value with a colon must be an absolute URI. Empty means unset.
func validateIssuer(iss string) error {
	if iss == "" {
		return nil
	}
	if len(iss) > 1024 {
		return fmt.Errorf(`invalid "issuer": longer than 1024 characters`)
	}
	if err := validateText("issuer", iss); err != nil {
		return err
	}
	if strings.ContainsAny(iss, " \t\r\n") {
		return fmt.Errorf(`invalid "issuer": must not contain white space`)
	}
	if strings.Contains(iss, ":") {
		u, err := url.Parse(iss)
		if err != nil || u.Scheme == "" || (u.Opaque == "" && u.Host == "") {
			return fmt.Errorf(`invalid "issuer": a value containing ':' must be an absolute URI, such as https://vault.example.com/v1/jwt`)
		}
		if u.Fragment != "" || u.RawQuery != "" {
			return fmt.Errorf(`invalid "issuer": must not have a query or fragment`)
		}
	}
	return nil
}

// issuerURL returns iss parsed if it can name an OpenID provider: an
// absolute http or https URL with a host and no query or fragment (OIDC
// Discovery 1.0 §3 asks for https; http is allowed for dev servers). Any
// other issuer is a fine "iss" (a StringOrURI) but cannot be the prefix of a
// discovery URL, nor give an absolute jwks_uri.
func issuerURL(iss string) (*url.URL, bool) {
	u, err := url.Parse(iss)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.Hostname() == "" ||
		u.RawQuery != "" || u.ForceQuery || strings.Contains(iss, "#") {
		// "#" alone parses as no fragment, as "?" alone sets ForceQuery.
		return nil, false
	}
	return u, true
}

// issuerWarnings are the warnings for writing the http(s) URL issuer iss on
// the mount at mountPoint (req.MountPoint, such as "jwt/" or "team/jwt/";
// in a namespace Vault's router puts the namespace's path first, "ns1/jwt/",
// and that is the URL path discovery clients must use, as they cannot send
// an X-Vault-Namespace header). Warnings, not errors: a reverse proxy may
// serve this mount under another path.
//
//   - Its path does not end in /<mount>: discovery clients start from
//     <issuer>/.well-known/openid-configuration and require the document's
//     issuer to be that prefix (OIDC Discovery 1.0 §4.3), so the document
//     this mount serves names an issuer that its own URL does not match.
//     Unchecked when the mount point is unknown.
//   - It is http://: AWS IAM, GCP and Azure workload identity federation
//     fetch discovery and keys only over https. Not said for a loopback
//     host (127.0.0.0/8, ::1, localhost): no cloud service can reach it at
//     all, so it is a local setup (make dev, the e2e tests) where the
//     warning would only be noise.
func issuerWarnings(iss, mountPoint string) []string {
	u, ok := issuerURL(iss)
	if !ok {
		return nil
	}
	var warnings []string
	if mount := strings.TrimSuffix(mountPoint, "/"); mount != "" && !strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/"+mount) {
		warnings = append(warnings, fmt.Sprintf(`issuer %q does not end in %q, this mount's path: the discovery document served at this mount (%s/.well-known/openid-configuration, after /v1/) will not match it, and discovery clients that start from the issuer will not find this mount's keys, unless a reverse proxy maps the issuer's URL to this mount`,
			iss, "/"+mount, mount))
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		warnings = append(warnings, `issuer is an http:// URL: cloud federation (AWS IAM, GCP and Azure workload identity) accepts only an https issuer`)
	}
	return warnings
}

// isLoopbackHost reports whether host (a URL's Hostname) is localhost or
// a loopback IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func pathConfig(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"issuer": {
				Type:        framework.TypeString,
				Description: `Default "iss" claim for roles that do not set their own. A value with ':' must be an absolute URI. OIDC discovery is served only for an http(s) URL, and works when it is the URL at which this mount is reachable, such as https://vault.example.com/v1/jwt. ` + textRule,
			},
			"jwks_max_age": {
				Type: framework.TypeDurationSecond,
				// Shown in path-help and OpenAPI; a write that does not
				// send the field keeps the stored value (GetOk).
				Default:     int(defaultJWKSMaxAge / time.Second),
				Description: "How long verifiers may cache the JWKS (its Cache-Control max-age), and so how long a new key version is published before it starts signing (or until jwks_old_max_age_until, if later). Between 10s and 24h; default 5m.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				Summary:      "Read the engine's configuration.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "configuration"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: configResponseFields}},
				},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     b.pathConfigWrite,
				Summary:      "Configure the engine.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "configure"},
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: configResponseFields}},
				},
			},
		},
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}
}

var configResponseFields = map[string]*framework.FieldSchema{
	"issuer":       {Type: framework.TypeString, Required: true, Description: `Default "iss" claim.`},
	"jwks_max_age": {Type: framework.TypeInt64, Required: true, Description: "JWKS cache lifetime and staged-rotation lead, in seconds."},
	"jwks_old_max_age_until": {
		Type:        framework.TypeString,
		Description: "Present after jwks_max_age was lowered, until JWKS copies served with the old, larger max-age are no longer fresh (RFC 3339): a rotation staged before then signs no earlier than then.",
	},
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.getConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading config failed")
	}
	return &logical.Response{Data: cfg.responseData(b.now())}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	cfg, err := b.getConfig(ctx, req.Storage)
	if err != nil {
		return b.respondErr(err, "reading config failed")
	}
	next := *cfg
	var warnings []string
	if v, ok := d.GetOk("issuer"); ok {
		next.Issuer = v.(string)
		warnings = issuerWarnings(next.Issuer, req.MountPoint)
	}
	if v, ok := d.GetOk("jwks_max_age"); ok {
		if next.JWKSMaxAge = time.Duration(v.(int)) * time.Second; next.JWKSMaxAge == 0 {
			next.JWKSMaxAge = defaultJWKSMaxAge
		}
	}
	now := b.now()
	lowered, err := b.lowersJWKSMaxAge(ctx, req.Storage, cfg, &next)
	if err != nil {
		return b.respondErr(err, "writing config failed")
	}
	if lowered {
		// Copies served until now carried max-age=old; a cache may serve
		// them until now+old, and they lack any version staged later.
		if until := now.Add(cfg.jwksMaxAge()).UTC(); until.After(next.JWKSOldMaxAgeUntil) {
			next.JWKSOldMaxAgeUntil = until
		}
		at := next.JWKSOldMaxAgeUntil.UTC().Format(time.RFC3339)
		warnings = append(warnings, fmt.Sprintf(`jwks_max_age lowered from %s to %s: JWKS copies served with the old max-age may be cached until %s, so a rotation staged before %s signs no earlier than then (keys/<name>/rotate immediate=true does not wait)`,
			cfg.jwksMaxAge(), next.jwksMaxAge(), at, at))
	}
	if !next.JWKSOldMaxAgeUntil.After(now) {
		next.JWKSOldMaxAgeUntil = time.Time{} // passed: nothing left to wait for
	}
	if err := b.saveConfig(ctx, req.Storage, &next); err != nil {
		return b.respondErr(err, "writing config failed")
	}
	return &logical.Response{Data: next.responseData(now), Warnings: warnings}, nil
}

// lowersJWKSMaxAge reports whether going from cfg to next lowers
// jwks_max_age while keys exist. A copy of the JWKS served when no key
// existed holds no kid, so it verifies nothing: a verifier holding it must
// refetch for any token, and nothing is lost by staging with the new lead.
func (b *backend) lowersJWKSMaxAge(ctx context.Context, s logical.Storage, cfg, next *config) (bool, error) {
	if next.jwksMaxAge() >= cfg.jwksMaxAge() {
		return false, nil
	}
	names, err := s.List(ctx, keyPrefix)
	if err != nil {
		return false, fmt.Errorf("listing keys: %w", err)
	}
	return len(names) > 0, nil
}

func (c *config) responseData(now time.Time) map[string]any {
	d := map[string]any{"issuer": c.Issuer, "jwks_max_age": int64(c.jwksMaxAge().Seconds())}
	if c.JWKSOldMaxAgeUntil.After(now) {
		d["jwks_old_max_age_until"] = c.JWKSOldMaxAgeUntil.UTC().Format(time.RFC3339)
	}
	return d
}

// getConfig returns the cached configuration, loading it on first use. It
// never returns nil. It loads without cacheMu and caches as cachedLoad
// does: only if no drop came while it loaded.
func (b *backend) getConfig(ctx context.Context, s logical.Storage) (*config, error) {
	b.cacheMu.RLock()
	cfg, gen := b.config, b.gen
	b.cacheMu.RUnlock()
	if cfg != nil {
		return cfg, nil
	}

	entry, err := s.Get(ctx, configPath)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg = &config{}
	if entry != nil {
		if err := entry.DecodeJSON(cfg); err != nil {
			return nil, fmt.Errorf("decoding config: %w", err)
		}
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	if b.config != nil {
		return b.config, nil
	}
	if b.gen == gen {
		b.config = cfg
	}
	return cfg, nil
}

func (b *backend) saveConfig(ctx context.Context, s logical.Storage, cfg *config) error {
	if err := cfg.validate(); err != nil {
		return userError{err}
	}
	entry, err := logical.StorageEntryJSON(configPath, cfg)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	b.dropConfig()
	return nil
}

func (b *backend) dropConfig() {
	b.cacheMu.Lock()
	b.config = nil
	b.jwks = nil
	b.issuers = nil
	b.gen++
	b.cacheMu.Unlock()
}

const pathConfigHelpSyn = `Configure the JWT secrets engine.`

const pathConfigHelpDesc = `
Sets the default issuer ("iss") of tokens. A role's own "issuer" overrides it.

jwks_max_age is the Cache-Control max-age of the JWKS (default 5m). It is
also the lead of a staged rotation: a new key version is published that long
before it signs, so a verifier that refreshes its copy as told has every kid
before it sees a token signed with it. Lowering it does not shorten the life
of copies already served with the old max-age (a CDN or shared cache keeps
them that long), so while keys exist the write records when they expire
(jwks_old_max_age_until, shown on read until then, with a warning on the
write): a rotation staged before that time, manual or by rotation_period,
signs no earlier than it. rotate with immediate=true does not wait.
The issuer also names this mount in the OIDC discovery document at
.well-known/openid-configuration, whose jwks_uri is <issuer>/.well-known/keys;
for discovery to work, set it to the URL at which this mount is reachable,
for example https://vault.example.com/v1/jwt. An issuer that is not an
absolute http(s) URL with a host (a name, a URN) is a valid "iss" for tokens,
but discovery then answers 404. Writing an http(s) issuer whose path does not
end in this mount's full path (/jwt for a mount at jwt/, /ns1/jwt for jwt/ in
namespace ns1) returns a warning, as
discovery clients would find the document served here naming another issuer;
so does an http:// issuer other than a loopback one, which cloud federation
(AWS IAM, GCP, Azure) refuses. They are warnings, not errors: a reverse proxy
may serve this mount under another path.
`
