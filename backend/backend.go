// Package backend is the JWT secrets engine: a logical.Backend whose paths
// manage signing keys and roles and issue signed JWTs, and whose JWKS lets
// anyone verify them. backend.go is the table of contents; each resource
// lives in its own path_<resource>.go.
package backend

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-multierror"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// Storage prefixes. Key entries hold private keys and are seal-wrapped.
const (
	configPath = "config"
	keyPrefix  = "key/"
	rolePrefix = "role/"
)

// backend is one mount of the engine. Everything it knows lives on it, never
// in package globals: one plugin process serves many mounts.
type backend struct {
	*framework.Backend

	// clock is the host's clock; tests replace it. Read it through now.
	clock func() time.Time

	// providers make and load key versions, by provider name.
	providers map[string]keyProvider

	// awsMu guards aws, what config/aws builds: clients and governors.
	awsMu sync.Mutex
	aws   *awsState
	// newKMSAPI builds KMS clients; tests replace it.
	newKMSAPI newKMSAPIFunc
	// afterIssuerConfig, if set, runs in isOurIssuer once it has the
	// config: tests change the config there. Nil in production.
	afterIssuerConfig func()
	// afterRevocationsLoaded, if set, runs in getRevocations once a loaded
	// index is published: tests verify there. Nil in production.
	afterRevocationsLoaded func()

	// revMu serialises changes to revocation buckets.
	revMu sync.Mutex
	// revLoadMu serialises loading the revocation index; revInvalMu guards
	// revLoading and revPending, the invalidations that arrive during a
	// load.
	revLoadMu  sync.Mutex
	revInvalMu sync.Mutex
	revLoading bool
	revPending []string

	// expiresAt formats issue responses' expires_at.
	expiresAt rfc3339Cache

	// families indexes refresh families for tidy; tidyMu serialises
	// tidies.
	families familyIndex
	tidyMu   sync.Mutex

	// familyMu serialises the refreshes of each family (striped by family
	// id, see familyLock), so two uses of one refresh token cannot both
	// succeed, while refreshes of other families, which may wait on a KMS
	// call, go on.
	familyMu [familyLockStripes]sync.Mutex

	// writeMu serialises changes to keys, roles and config, so checks that
	// span them (a role's key exists; no role uses a key being deleted)
	// hold.
	writeMu sync.Mutex

	// cacheMu guards the caches below. Readers take it shared; a miss
	// loads from storage without it, and caches what it loaded only if gen
	// has not moved since the miss, so a load cannot put back an entry
	// that a concurrent write or Invalidate has just dropped.
	cacheMu sync.RWMutex
	config  *config
	keys    map[string]*keyEntry
	roles   map[string]*role
	jwks    *jwksDoc
	// issuers is every "iss" this mount signs with, for verify.
	issuers map[string]bool
	// revocations indexes revoked tokens and subjects, for verify.
	revocations *revocationIndex
	// gen counts cache drops (and saveKey's caching of what it wrote), so
	// that an entry, JWKS or issuer set loaded across a change is not
	// cached.
	gen uint64

	// logger is Vault's logger with the mount this backend serves; see
	// Logger.
	logger atomic.Pointer[mountLogger]
}

// mountLogger is a logger that names a mount on every line.
type mountLogger struct {
	mount string
	hclog.Logger
}

// Option configures a backend built by NewFactory.
type Option func(*backend)

// WithRunningVersion sets the version the backend reports to Vault.
func WithRunningVersion(v string) Option {
	return func(b *backend) { b.RunningVersion = v }
}

// Factory builds a backend with default options.
var Factory = NewFactory()

// NewFactory returns a logical.Factory that builds backends with opts.
func NewFactory(opts ...Option) logical.Factory {
	return func(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
		b := newBackend(opts...)
		if conf.System != nil {
			c := *conf
			c.System = &cachedSystemView{SystemView: conf.System}
			conf = &c
		}
		if err := b.Setup(ctx, conf); err != nil {
			return nil, err
		}
		return b, nil
	}
}

// now is the time in UTC, so that every time the engine stores or returns is
// spelled in UTC, whatever the host's zone: the nodes of a cluster may run in
// different zones, and a stored entry reads the same on all of them.
func (b *backend) now() time.Time { return b.clock().UTC() }

func newBackend(opts ...Option) *backend {
	b := &backend{
		clock:     time.Now,
		newKMSAPI: defaultNewKMSAPI,
	}
	b.providers = map[string]keyProvider{providerLocal: localProvider{}, providerAWSKMS: awskmsProvider{b: b}}
	b.resetCaches()
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			Unauthenticated: []string{"jwks", ".well-known/*"},
			SealWrapStorage: []string{keyPrefix, configAWSPath},
		},
		// The framework tries each pattern in order; no two overlap, so
		// order only affects speed, and the hot paths come first.
		Paths: framework.PathAppend(
			// Issuing and checking tokens.
			[]*framework.Path{pathIssue(b), pathVerify(b), pathRefresh(b)},
			// Revoking tokens.
			pathRevoke(b),
			// Public, unauthenticated key discovery.
			pathJWKS(b),
			// Mount-wide settings.
			[]*framework.Path{pathConfig(b), pathConfigAWS(b)},
			// Signing keys and their lifecycle.
			[]*framework.Path{pathKeysList(b), pathKeys(b), pathKeysRotate(b), pathKeysRevokeVersion(b)},
			// Roles: who may get what token.
			[]*framework.Path{pathRolesList(b), pathRoles(b)},
		),
		Invalidate:   b.invalidate,
		PeriodicFunc: b.periodic,
		Clean:        b.clean,
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// HandleRequest decodes JSON-object fields that arrive as strings (as the
// vault CLI sends `claims='{"a":1}'`) before the framework sees them; see
// decodeJSONFields. Then every field must convert to its type (see
// checkFields: the 400 names the field and never quotes the value). Issue
// requests, the hot path, skip the framework's routing (see handleIssue);
// everything else goes through it.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	b.noteMount(req.MountPoint)
	if resp := decodeJSONFields(req); resp != nil {
		return resp, logical.ErrInvalidRequest
	}
	if req.Operation == logical.UpdateOperation {
		if name, ok := strings.CutPrefix(req.Path, "issue/"); ok && isGenericName(name) {
			return b.handleIssue(ctx, req, name)
		}
	}
	return b.viaFramework(ctx, req)
}

// HandleExistenceCheck runs before HandleRequest on create and update, and
// before Vault's ACL check: it must answer from the path alone. Vault logs
// any error here at ERROR and sends it to the caller, so a body checked here
// would give a caller without permission a 400 naming a field instead of a
// 403. The framework's check sees a copy of the request without the body:
// it still takes the name from the path's captures, and HandleRequest, after
// the ACL check, refuses a malformed body.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	pathOnly := *req
	pathOnly.Data = nil
	return b.Backend.HandleExistenceCheck(ctx, &pathOnly)
}

// Logger is the logger for everything the backend writes: the one Vault
// gave it, with "mount" set to the mount point requests arrive on. Vault
// gives every mount of a multiplexed plugin the same logger, so without it
// one mount's lines cannot be told from another's. A backend serves one
// mount, and every request, the periodic function's too, carries its mount
// point (Vault's router sets req.MountPoint), so HandleRequest records it
// (noteMount) before anything can log. Until a request has, lines have no
// mount.
func (b *backend) Logger() hclog.Logger {
	if l := b.logger.Load(); l != nil {
		return l.Logger
	}
	return b.Backend.Logger()
}

// noteMount makes mount the one Logger names. It costs one atomic load
// unless the mount has changed (a remount).
func (b *backend) noteMount(mount string) {
	if l := b.logger.Load(); mount == "" || l != nil && l.mount == mount {
		return
	}
	b.logger.Store(&mountLogger{mount: mount, Logger: b.Backend.Logger().With("mount", mount)})
}

// mountPath is p under the mount requests arrive on ("jwt/config" for
// "config" on a mount at jwt/), for messages that name a path to write;
// "<mount>/config" before any request has said which mount.
func (b *backend) mountPath(p string) string {
	if l := b.logger.Load(); l != nil {
		return l.mount + p
	}
	return "<mount>/" + p
}

func (b *backend) resetCaches() {
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	b.config = nil
	b.keys = map[string]*keyEntry{}
	b.roles = map[string]*role{}
	b.jwks = nil
	b.issuers = nil
	b.revocations = nil
	b.gen++
}

// cachedLoad returns m[name], calling load on a miss and caching a non-nil
// result. load runs without cacheMu, so a slow storage read or signer build
// for one name holds up no other reader of the mount. What it loaded is
// cached only if gen is what the miss saw: writes and Invalidate drop
// entries and bump gen under the lock, after storage has the new value, so
// an entry loaded before a drop is never served to a reader that comes
// after it. Concurrent misses for one name each load; the first to finish
// is cached and the others get it. m must be one of the backend's cache
// maps.
func cachedLoad[T any](b *backend, m map[string]*T, name string, load func() (*T, error)) (*T, error) {
	b.cacheMu.RLock()
	v, gen := m[name], b.gen
	b.cacheMu.RUnlock()
	if v != nil {
		return v, nil
	}

	v, err := load()
	if err != nil || v == nil {
		return nil, err
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	if cached := m[name]; cached != nil {
		return cached, nil
	}
	if b.gen == gen {
		m[name] = v
	}
	return v, nil
}

// invalidate drops what a storage change on another node (a performance
// standby, a replicated cluster) has made stale.
func (b *backend) invalidate(_ context.Context, key string) {
	switch {
	case key == configPath:
		b.dropConfig()
	case key == configAWSPath:
		b.dropAWS()
	case strings.HasPrefix(key, keyPrefix):
		b.dropKey(strings.TrimPrefix(key, keyPrefix))
	case strings.HasPrefix(key, rolePrefix):
		b.dropRole(strings.TrimPrefix(key, rolePrefix))
	case isRevocationKey(key):
		b.invalidateRevocations(key)
	case strings.HasPrefix(key, refreshPrefix):
		b.invalidateFamily(strings.TrimPrefix(key, refreshPrefix))
	}
}

// periodic rotates keys whose rotation_period has passed and removes key
// versions whose publication has ended. Like transit, it only runs where
// storage is writable and owned: not on performance standbys or DR
// secondaries, nor on performance secondaries for replicated mounts.
func (b *backend) periodic(ctx context.Context, req *logical.Request) error {
	state := b.System().ReplicationState()
	if state.HasState(consts.ReplicationDRSecondary|consts.ReplicationPerformanceStandby) ||
		(!b.System().LocalMount() && state.HasState(consts.ReplicationPerformanceSecondary)) {
		return nil
	}
	names, err := req.Storage.List(ctx, keyPrefix)
	if err != nil {
		return err
	}
	var errs *multierror.Error
	// Families first: revocation tidy keeps entries that live families
	// need, and deletes none until it knows every family.
	if _, err := b.tidyRefreshFamilies(ctx, req.Storage); err != nil && !isReadOnly(err) {
		b.Logger().Error("tidying refresh families failed", "error", err)
		errs = multierror.Append(errs, err)
	}
	if _, err := b.tidyRevocations(ctx, req.Storage); err != nil && !isReadOnly(err) {
		b.Logger().Error("tidying revocations failed", "error", err)
		errs = multierror.Append(errs, err)
	}
	for _, name := range names {
		if err := b.maintainKey(ctx, req.Storage, name); err != nil {
			if isReadOnly(err) {
				return nil
			}
			b.Logger().Error("periodic key maintenance failed", "key", name, "error", err)
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
}

const backendHelp = `
The JWT secrets engine issues signed JSON Web Tokens.

Security teams define signing keys (jwt/keys/<name>) and roles
(jwt/roles/<name>) and guard them with Vault policy; applications write to
jwt/issue/<role> to get a token. Local keys are generated in the engine and
stored in a seal-wrapped path (a second layer of encryption on Vault
Enterprise with a seal that supports it); awskms keys stay in AWS KMS, which signs for them. No
path returns a private key. Verifiers fetch the public
keys, without a Vault token, from jwt/jwks or jwt/.well-known/keys.
`
