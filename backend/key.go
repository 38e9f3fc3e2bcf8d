package backend

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/local"
)

// Key settings' defaults and limits.
const (
	defaultAlgorithm       = signer.ES256
	defaultVerificationTTL = 24 * time.Hour
	minVerificationTTL     = time.Minute
	minRotationPeriod      = time.Hour
)

// Key version states.
const (
	// stateNext is published but does not sign yet: verifiers that cache
	// the JWKS see it before the first token it signs.
	stateNext = "next"
	// stateCurrent signs new tokens and is published.
	stateCurrent = "current"
	// statePrevious no longer signs but stays published for the key's
	// verification_ttl after it stopped signing.
	statePrevious = "previous"
	// stateRetired is past its publication; it is removed from storage.
	stateRetired = "retired"
)

// key is a named signing key with its versions, stored at key/<name>. The
// entry holds private keys, so its prefix is seal-wrapped and nothing in it
// but public material is ever returned.
type key struct {
	Name      string           `json:"name"`
	Algorithm signer.Algorithm `json:"algorithm"`
	Provider  string           `json:"provider"`
	RSABits   int              `json:"rsa_bits,omitempty"`
	// Region and Endpoint override config/aws for an awskms key.
	Region   string `json:"region,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	// RotationPeriod, if set, rotates the key automatically.
	RotationPeriod time.Duration `json:"rotation_period"`
	// VerificationTTL is how long a version stays published after it
	// stops signing. It must cover the longest token it may have signed.
	VerificationTTL time.Duration `json:"verification_ttl"`
	LatestVersion   int           `json:"latest_version"`
	// Versions are in ascending order; the last is current.
	Versions []*keyVersion `json:"versions"`
}

// keyVersion is one generation of key material.
type keyVersion struct {
	Version   int       `json:"version"`
	KeyID     string    `json:"kid"`
	CreatedAt time.Time `json:"created_at"`
	// ActivatesAt is when this version starts signing; zero (in entries
	// written before staged rotation) means CreatedAt.
	ActivatesAt time.Time `json:"activates_at,omitzero"`
	// RotatedAt is when a newer version takes over signing, which may be
	// in the future while that version is next; zero while no newer version
	// exists.
	RotatedAt time.Time `json:"rotated_at,omitzero"`
	// PublicKey is PKIX DER.
	PublicKey []byte `json:"public_key"`
	// PrivateKey is PKCS #8 DER, for provider "local" only.
	PrivateKey []byte `json:"private_key,omitempty"`
	// KMSKeyARN is the KMS key that signs, for provider "awskms" only.
	KMSKeyARN string `json:"kms_key_arn,omitempty"`
}

// validate checks the invariants every stored key must keep.
func (k *key) validate() error {
	if k.Name == "" {
		return fmt.Errorf(`invalid "name": must not be empty`)
	}
	in, err := signer.Lookup(string(k.Algorithm))
	if err != nil {
		return fmt.Errorf(`invalid "algorithm": %w`, err)
	}
	switch k.Provider {
	case providerLocal:
		if in.KeyType == signer.KeyTypeRSA {
			if !slices.Contains(local.RSABits, k.RSABits) {
				return fmt.Errorf(`invalid "rsa_bits" %d: must be 2048, 3072 or 4096`, k.RSABits)
			}
		} else if k.RSABits != 0 {
			return fmt.Errorf(`invalid "rsa_bits": only RS* and PS* keys take rsa_bits, not %s`, k.Algorithm)
		}
		if k.Region != "" || k.Endpoint != "" {
			return fmt.Errorf(`invalid "region"/"endpoint": only provider awskms keys take them`)
		}
	case providerAWSKMS:
		if k.RSABits != 0 {
			return fmt.Errorf(`invalid "rsa_bits": not for provider awskms; the KMS key's spec sets the size`)
		}
		if k.RotationPeriod != 0 {
			return fmt.Errorf(`invalid "rotation_period": awskms keys rotate only to a new KMS key, with keys/%s/rotate and a new kms_key_id`, k.Name)
		}
		if err := validateRegion(k.Region); err != nil {
			return err
		}
		if err := validateEndpoint(k.Endpoint); err != nil {
			return err
		}
	default:
		return fmt.Errorf(`invalid "provider" %q: must be one of: %s, %s`, k.Provider, providerLocal, providerAWSKMS)
	}
	if k.VerificationTTL < minVerificationTTL {
		return fmt.Errorf(`invalid "verification_ttl" %s: must be at least %s`, k.VerificationTTL, minVerificationTTL)
	}
	if k.RotationPeriod != 0 && k.RotationPeriod < minRotationPeriod {
		return fmt.Errorf(`invalid "rotation_period" %s: must be 0 (never) or at least %s`, k.RotationPeriod, minRotationPeriod)
	}
	if len(k.Versions) == 0 {
		return fmt.Errorf("key %q has no versions", k.Name)
	}
	kids := map[string]bool{}
	for i, v := range k.Versions {
		if i > 0 && v.Version <= k.Versions[i-1].Version {
			return fmt.Errorf("key %q: versions out of order", k.Name)
		}
		if kids[v.KeyID] || v.KeyID == "" {
			return fmt.Errorf("key %q: duplicate or empty kid in version %d", k.Name, v.Version)
		}
		kids[v.KeyID] = true
		if (k.Provider == providerAWSKMS) != (v.KMSKeyARN != "") {
			return fmt.Errorf("key %q version %d: a KMS key ARN belongs to awskms versions only", k.Name, v.Version)
		}
		// Signing periods [activation, RotatedAt) follow each other without
		// overlap, so exactly one version signs at any time.
		last := i == len(k.Versions)-1
		if last != v.RotatedAt.IsZero() {
			return fmt.Errorf("key %q: every version but the latest must have a rotation time", k.Name)
		}
		if !last && (v.RotatedAt.Before(v.activation()) || k.Versions[i+1].activation().Before(v.RotatedAt)) {
			return fmt.Errorf("key %q: version %d's signing period overlaps version %d's", k.Name, v.Version, k.Versions[i+1].Version)
		}
	}
	// A cancelled pending version leaves latest_version past the last one;
	// version numbers are never reused.
	if k.Versions[len(k.Versions)-1].Version > k.LatestVersion {
		return fmt.Errorf("key %q: latest_version %d is below the last version", k.Name, k.LatestVersion)
	}
	return nil
}

// validateBounds checks the upper bounds of k's durations, which a write
// must keep. validate does not check them: a key stored with more, before
// the bounds existed, still loads and is maintained.
func (k *key) validateBounds() error {
	if k.VerificationTTL > maxTokenTTL {
		return fmt.Errorf(`invalid "verification_ttl" %s: must be at most %s (10 years)`, k.VerificationTTL, maxTokenTTL)
	}
	if k.RotationPeriod > maxTokenTTL {
		return fmt.Errorf(`invalid "rotation_period" %s: must be 0 (never) or at most %s (10 years)`, k.RotationPeriod, maxTokenTTL)
	}
	return nil
}

// activation is when v starts (or started) signing.
func (v *keyVersion) activation() time.Time {
	if v.ActivatesAt.IsZero() {
		return v.CreatedAt
	}
	return v.ActivatesAt
}

// current is the version that signs at now: the newest one whose
// activation has come. States follow from the clock, so every node agrees
// on them without a write.
func (k *key) current(now time.Time) *keyVersion {
	return k.Versions[k.currentIndex(now)]
}

// currentIndex is current's index in k.Versions.
func (k *key) currentIndex(now time.Time) int {
	for i := len(k.Versions) - 1; i > 0; i-- {
		if !now.Before(k.Versions[i].activation()) {
			return i
		}
	}
	return 0
}

// pending is the version waiting to sign (state next), or nil.
func (k *key) pending(now time.Time) *keyVersion {
	if v := k.Versions[len(k.Versions)-1]; now.Before(v.activation()) {
		return v
	}
	return nil
}

// publishedUntil is when v leaves the JWKS; zero while no version
// follows it.
func (k *key) publishedUntil(v *keyVersion) time.Time {
	if v.RotatedAt.IsZero() {
		return time.Time{}
	}
	return v.RotatedAt.Add(k.VerificationTTL)
}

func (k *key) state(v *keyVersion, now time.Time) string {
	switch until := k.publishedUntil(v); {
	case now.Before(v.activation()):
		return stateNext
	case until.IsZero() || now.Before(v.RotatedAt):
		return stateCurrent
	case now.Before(until):
		return statePrevious
	default:
		return stateRetired
	}
}

// published returns the versions in the JWKS at now, newest first: the
// next version, if any, the current one, and previous ones.
func (k *key) published(now time.Time) []*keyVersion {
	var out []*keyVersion
	for i := len(k.Versions) - 1; i >= 0; i-- {
		if v := k.Versions[i]; k.state(v, now) != stateRetired {
			out = append(out, v)
		}
	}
	return out
}

// prune removes retired versions, with their private keys, and reports
// whether it removed any.
func (k *key) prune(now time.Time) bool {
	n := len(k.Versions)
	k.Versions = slices.DeleteFunc(k.Versions, func(v *keyVersion) bool {
		return k.state(v, now) == stateRetired
	})
	return len(k.Versions) != n
}

// rotate adds nv as the newest version, signing from activatesAt (now for
// the first version or an immediate rotation). The caller has checked
// that no version is pending.
func (k *key) rotate(nv *keyVersion, now, activatesAt time.Time) {
	if len(k.Versions) > 0 {
		k.Versions[len(k.Versions)-1].RotatedAt = activatesAt
	}
	k.LatestVersion++
	nv.Version = k.LatestVersion
	nv.CreatedAt = now
	nv.ActivatesAt = activatesAt
	k.Versions = append(k.Versions, nv)
	k.prune(now)
}

// activatePending makes the pending version sign at now.
func (k *key) activatePending(now time.Time) {
	p := k.pending(now)
	p.ActivatesAt = now
	k.Versions[len(k.Versions)-2].RotatedAt = now
}

// cancelPending removes the pending version; the current one keeps
// signing.
func (k *key) cancelPending() {
	k.Versions = k.Versions[:len(k.Versions)-1]
	k.Versions[len(k.Versions)-1].RotatedAt = time.Time{}
}

// clone copies k deeply enough that changing the copy's versions leaves k,
// which may be shared through the cache, as it was.
func (k *key) clone() *key {
	c := *k
	c.Versions = make([]*keyVersion, len(k.Versions))
	for i, v := range k.Versions {
		vv := *v
		c.Versions[i] = &vv
	}
	return &c
}

// keyEntry is a key as cached: the stored form plus a ready signer per
// published version.
type keyEntry struct {
	key     *key
	signers map[int]signer.Signer
	// issuing holds what the issue path needs of each version, in the
	// order of key.Versions, so that an issue finds it without a map
	// lookup: with many keys in use, each lookup is a few CPU cache misses.
	issuing []*issueVersion
	// headers caches encoded JWS headers by version and typ, for typs
	// other than defaultTyp.
	headers sync.Map
}

// issueVersion is one version as the issue path uses it. It does not
// change once built.
type issueVersion struct {
	version int
	signer  signer.Signer
	// alg and kid are boxed once, so the issue response does not allocate
	// them anew for every token.
	alg, kid any
	// header is the encoded JWS header for defaultTyp.
	header string
}

type headerKey struct {
	version int
	typ     string
}

// current is the issueVersion of the version that signs at now.
func (e *keyEntry) current(now time.Time) *issueVersion {
	return e.issuing[e.key.currentIndex(now)]
}

// header is the encoded JWS header of iv's signer for typ.
func (e *keyEntry) header(iv *issueVersion, typ string) (string, error) {
	if typ == defaultTyp {
		return iv.header, nil
	}
	hk := headerKey{iv.version, typ}
	if h, ok := e.headers.Load(hk); ok {
		return h.(string), nil
	}
	h, err := signer.EncodeHeader(iv.signer, typ)
	if err != nil {
		return "", err
	}
	e.headers.Store(hk, h)
	return h, nil
}

// responseData is what reading a key returns: settings and the public JWK
// of every published version. Private keys never leave.
func (e *keyEntry) responseData(now time.Time) (map[string]any, error) {
	k := e.key
	versions := map[string]any{}
	for _, v := range k.published(now) {
		s := e.signers[v.Version]
		jwk, err := signer.PublicJWK(k.Algorithm, v.KeyID, s.Public())
		if err != nil {
			return nil, err
		}
		entry := map[string]any{
			"kid":          v.KeyID,
			"state":        k.state(v, now),
			"created_at":   v.CreatedAt.UTC().Format(time.RFC3339),
			"activates_at": v.activation().UTC().Format(time.RFC3339),
			"public_key":   jwk,
		}
		if until := k.publishedUntil(v); !until.IsZero() {
			entry["rotated_at"] = v.RotatedAt.UTC().Format(time.RFC3339)
			entry["published_until"] = until.UTC().Format(time.RFC3339)
		}
		if v.KMSKeyARN != "" {
			entry["kms_key_arn"] = v.KMSKeyARN
		}
		if ks, ok := s.(*kmsSigner); ok {
			m := ks.metrics()
			entry["kms_metrics"] = map[string]any{
				"signs": m.Signs, "failures": m.Failures, "throttles": m.Throttles, "retries": m.Retries,
				"bad_signatures": m.BadSignatures, "mean_latency_ms": float64(m.MeanLatency.Microseconds()) / 1000,
			}
		}
		versions[strconv.Itoa(v.Version)] = entry
	}
	data := map[string]any{
		"name":             k.Name,
		"algorithm":        string(k.Algorithm),
		"provider":         k.Provider,
		"rotation_period":  int64(k.RotationPeriod.Seconds()),
		"verification_ttl": int64(k.VerificationTTL.Seconds()),
		"latest_version":   k.LatestVersion,
		"current_version":  k.current(now).Version,
		"current_kid":      k.current(now).KeyID,
		"versions":         versions,
	}
	if k.RSABits != 0 {
		data["rsa_bits"] = k.RSABits
	}
	if k.Region != "" {
		data["region"] = k.Region
	}
	if k.Endpoint != "" {
		data["endpoint"] = k.Endpoint
	}
	return data, nil
}

// getKey returns the cached key named name, loading it on a miss; nil if
// there is no such key.
func (b *backend) getKey(ctx context.Context, s logical.Storage, name string) (*keyEntry, error) {
	return cachedLoad(b, b.keys, name, func() (*keyEntry, error) {
		k, err := loadKey(ctx, s, name)
		if err != nil || k == nil {
			return nil, err
		}
		e, err := b.newKeyEntry(ctx, s, k)
		if err != nil {
			return nil, keyLoadError{err}
		}
		return e, nil
	})
}

// keyLoadError is a stored key that storage returned but the engine cannot
// use: it does not decode, is invalid, or its signers cannot be built. A
// storage failure is not one.
type keyLoadError struct{ err error }

func (e keyLoadError) Error() string { return e.err.Error() }
func (e keyLoadError) Unwrap() error { return e.err }

func loadKey(ctx context.Context, s logical.Storage, name string) (*key, error) {
	entry, err := s.Get(ctx, keyPrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	k := &key{}
	if err := entry.DecodeJSON(k); err != nil {
		return nil, keyLoadError{fmt.Errorf("decoding key %q: %w", name, err)}
	}
	if err := k.validate(); err != nil {
		return nil, keyLoadError{fmt.Errorf("stored key %q is invalid: %w", name, err)}
	}
	return k, nil
}

// newKeyEntry builds the signers for k's versions.
func (b *backend) newKeyEntry(ctx context.Context, s logical.Storage, k *key) (*keyEntry, error) {
	p, err := b.provider(k.Provider)
	if err != nil {
		return nil, err
	}
	e := &keyEntry{key: k, signers: make(map[int]signer.Signer, len(k.Versions)), issuing: make([]*issueVersion, len(k.Versions))}
	for i, v := range k.Versions {
		sg, err := versionSigner(ctx, s, p, k, v)
		if err != nil {
			return nil, fmt.Errorf("key %q version %d: %w", k.Name, v.Version, err)
		}
		h, err := signer.EncodeHeader(sg, defaultTyp)
		if err != nil {
			return nil, fmt.Errorf("key %q version %d: encoding its header: %w", k.Name, v.Version, err)
		}
		e.signers[v.Version] = sg
		e.issuing[i] = &issueVersion{version: v.Version, signer: sg, alg: string(sg.Algorithm()), kid: sg.KeyID(), header: h}
	}
	return e, nil
}

// versionSigner builds v's signer as getKey does, and checks that it
// holds v's public key.
func versionSigner(ctx context.Context, s logical.Storage, p keyProvider, k *key, v *keyVersion) (signer.Signer, error) {
	sg, err := p.signer(ctx, s, k, v)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(sg.Public())
	if err != nil || string(pub) != string(v.PublicKey) {
		return nil, errors.New("private and public keys do not match")
	}
	return sg, nil
}

// saveKey validates k, writes it, and caches it as loaded (newKeyEntry,
// before the write), so that reading k back after a successful write needs
// no storage read and cannot fail. k belongs to the cache afterwards and
// must not be changed. A key that does not load is still written, and its
// cached copy dropped: only a stored key that was corrupted already can be
// such (rotateKey checks every new version loads), and maintainKey must
// still prune it.
func (b *backend) saveKey(ctx context.Context, s logical.Storage, k *key) error {
	if err := k.validate(); err != nil {
		return userError{err}
	}
	e, loadErr := b.newKeyEntry(ctx, s, k)
	entry, err := logical.StorageEntryJSON(keyPrefix+k.Name, k)
	if err != nil {
		return fmt.Errorf("encoding key %q: %w", k.Name, err)
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing key %q: %w", k.Name, err)
	}
	// As dropKey: under the same lock, after storage has the new value.
	b.cacheMu.Lock()
	if loadErr == nil {
		b.keys[k.Name] = e
	} else {
		delete(b.keys, k.Name)
	}
	b.jwks = nil
	b.gen++
	b.cacheMu.Unlock()
	return nil
}

func (b *backend) dropKey(name string) {
	b.cacheMu.Lock()
	delete(b.keys, name)
	b.jwks = nil
	b.gen++
	b.cacheMu.Unlock()
}

// maintainKey is the periodic work on one key: stage the next version when
// rotation_period is about to pass, and remove retired versions. The next
// version is published the rotation lead (the JWKS max-age, or longer after
// it was lowered) before it signs, so a verifier that honours Cache-Control
// has it before its first token.
func (b *backend) maintainKey(ctx context.Context, s logical.Storage, name string) error {
	// Decide from the cached key, kept current by writes and Invalidate,
	// so that a run with nothing to do reads no storage: the periodic
	// function runs every minute over every key.
	cfg, err := b.getConfig(ctx, s)
	if err != nil {
		return err
	}
	// A key whose signers cannot be built (stored material that does not
	// load, say) is still maintained, from storage.
	e, err := b.getKey(ctx, s, name)
	if now := b.now(); err == nil && (e == nil || !e.key.maintenanceDue(now, cfg.rotationLead(now))) {
		return nil
	}

	b.writeMu.Lock()
	defer b.writeMu.Unlock()

	k, err := loadKey(ctx, s, name)
	if err != nil || k == nil {
		return err
	}
	now := b.now()
	k = k.clone()
	changed := k.prune(now)
	if k.RotationPeriod > 0 && k.pending(now) == nil {
		cfg, err := b.getConfig(ctx, s)
		if err != nil {
			return err
		}
		lead := cfg.rotationLead(now)
		due := k.current(now).activation().Add(k.RotationPeriod)
		if !now.Before(due.Add(-lead)) {
			at := due
			if soonest := now.Add(lead); at.Before(soonest) {
				at = soonest
			}
			if err := b.rotateKey(ctx, s, k, now, at, versionOptions{}); err != nil {
				return err
			}
			nv := k.Versions[len(k.Versions)-1]
			b.Logger().Info("staged key rotation", "key", name, "version", nv.Version, "kid", nv.KeyID, "activates_at", at.UTC().Format(time.RFC3339))
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return b.saveKey(ctx, s, k)
}

// maintenanceDue reports whether maintainKey has work on k at now: a
// retired version to remove, or the next version to stage.
func (k *key) maintenanceDue(now time.Time, lead time.Duration) bool {
	for _, v := range k.Versions {
		if k.state(v, now) == stateRetired {
			return true
		}
	}
	if k.RotationPeriod == 0 || k.pending(now) != nil {
		return false
	}
	due := k.current(now).activation().Add(k.RotationPeriod)
	return !now.Before(due.Add(-lead))
}

// rotateKey adds a new version to k, signing from activatesAt, in memory
// only.
func (b *backend) rotateKey(ctx context.Context, s logical.Storage, k *key, now, activatesAt time.Time, opts versionOptions) error {
	p, err := b.provider(k.Provider)
	if err != nil {
		return err
	}
	nv, err := p.create(ctx, s, k, opts)
	if err != nil {
		if _, ok := err.(userError); ok {
			return err
		}
		return fmt.Errorf("creating a version of key %q: %w", k.Name, err)
	}
	// Refuse, before anything is stored, a version that getKey would not
	// load: the write would succeed and every later read of the key fail.
	if _, err := versionSigner(ctx, s, p, k, nv); err != nil {
		return fmt.Errorf("the new version of key %q would not load: %w", k.Name, err)
	}
	k.rotate(nv, now, activatesAt)
	return nil
}
