package backend

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// Refresh tokens. A role with refresh_ttl makes issue start a family: the
// access token plus a refresh token "<family id>.<secret>". Each refresh
// exchanges the family's latest refresh token for a new access token and a
// new refresh token. Presenting any other secret for the family (a used
// one, most likely stolen) revokes the family: its refresh tokens stop
// working and its unexpired access tokens are revoked by jti. Only a hash
// of the latest secret is stored.

const (
	refreshPrefix    = "refresh/"
	maxRefreshTTL    = 90 * 24 * time.Hour
	maxRefreshMaxTTL = 365 * 24 * time.Hour
	// maxFamilyTokens caps a family's unexpired access tokens: a client
	// refreshes about once per access token lifetime, and each refresh
	// adds one to the family's stored entry (for revoking them on reuse),
	// so a holder refreshing in a loop could otherwise mint tokens without
	// bound and grow the entry past the storage's size limit.
	maxFamilyTokens = 100
	// familyLockStripes is how many locks refreshes are spread over.
	familyLockStripes = 64
)

// familyLock is the lock of family id's refreshes.
func (b *backend) familyLock(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &b.familyMu[h.Sum32()%familyLockStripes]
}

// refreshFamily is stored at refresh/<id>.
type refreshFamily struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	// Params and EntityID are the original request, issued again on each
	// refresh and checked against the role as it is then.
	Params   issueParams `json:"params"`
	EntityID string      `json:"entity_id,omitempty"`
	// SecretHash is SHA-256 of the latest refresh token's secret, hex.
	SecretHash string    `json:"secret_hash"`
	Expires    time.Time `json:"expires"`
	CreatedAt  time.Time `json:"created_at"`
	Refreshes  int       `json:"refreshes"`
	// Tokens are the family's access tokens that have not expired, for
	// revoking them on reuse.
	Tokens []familyToken `json:"tokens"`
	// Subject and LastIssuedAt are of the latest access token, for
	// revocations by subject or role.
	Subject      string    `json:"sub,omitempty"`
	LastIssuedAt time.Time `json:"last_issued_at"`
	// RevokedAt is when the family ended for good: on reuse of a refresh
	// token, or when a refresh found a revocation entry covering its latest
	// token (then RevokedReason says which), so it stays ended once tidy
	// has removed the entry.
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
	RevokedReason string    `json:"revoked_reason,omitempty"`
}

type familyToken struct {
	JTI    string    `json:"jti"`
	Issuer string    `json:"iss"`
	Exp    time.Time `json:"exp"`
}

// newRandomID returns n random bytes, base64url-encoded.
func newRandomID(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never returns an error
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// splitRefreshToken parses "<id>.<secret>"; ok is false for anything else.
func splitRefreshToken(t string) (id, secret string, ok bool) {
	id, secret, ok = strings.Cut(t, ".")
	if !ok || len(id) != 22 || len(secret) != 43 {
		return "", "", false
	}
	for _, part := range []string{id, secret} {
		if _, err := signer.DecodeBase64URL(part); err != nil {
			return "", "", false
		}
	}
	return id, secret, true
}

func loadFamily(ctx context.Context, s logical.Storage, id string) (*refreshFamily, error) {
	entry, err := s.Get(ctx, refreshPrefix+id)
	if err != nil || entry == nil {
		return nil, err
	}
	f := &refreshFamily{}
	if err := entry.DecodeJSON(f); err != nil {
		return nil, fmt.Errorf("decoding refresh family: %w", err)
	}
	return f, nil
}

func (b *backend) saveFamily(ctx context.Context, s logical.Storage, f *refreshFamily) error {
	entry, err := logical.StorageEntryJSON(refreshPrefix+f.ID, f)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing refresh family: %w", err)
	}
	b.noteFamily(f.ID, infoOf(f))
	return nil
}

// familyIndex lets tidy find expired refresh families without reading
// every family from storage each time (one gRPC round trip each): after a
// first full scan it knows every family, kept current by this node's
// writes (the active node makes them all; standbys forward) and by
// Invalidate, which marks a family written elsewhere for a re-read. It also
// tells revocation tidy which expired entries live families still need
// (see familyCover).
type familyIndex struct {
	mu sync.Mutex
	// exp is nil until the first scan; a zero expires means "read it
	// again".
	exp map[string]familyInfo
	// pending, while the first scan runs, holds the families noted
	// meanwhile; they are merged over what the scan read, which may be
	// older or miss them.
	pending map[string]familyInfo
	// seq numbers notes, so tidy can tell a family noted after it chose
	// to re-read it: that note is newer than the read and is kept.
	seq uint64
}

// familyInfo is what the index keeps of a family.
type familyInfo struct {
	expires time.Time
	// tidyAt is when tidy may delete the family (tidyAfter).
	tidyAt time.Time
	// lastIssuedAt and lastJTI are of the family's latest access token,
	// which revocation entries are checked against on refresh.
	lastIssuedAt time.Time
	lastJTI      string
	// revoked families have ended for good and need no entry.
	revoked bool
	// seq is the note's number (see familyIndex.seq).
	seq uint64
}

func infoOf(f *refreshFamily) familyInfo {
	fi := familyInfo{expires: f.Expires, tidyAt: f.tidyAfter(), lastIssuedAt: f.LastIssuedAt, revoked: !f.RevokedAt.IsZero()}
	if n := len(f.Tokens); n > 0 {
		fi.lastJTI = f.Tokens[n-1].JTI
	}
	return fi
}

func (b *backend) noteFamily(id string, fi familyInfo) {
	b.families.mu.Lock()
	defer b.families.mu.Unlock()
	b.families.seq++
	fi.seq = b.families.seq
	switch {
	case b.families.exp != nil:
		b.families.exp[id] = fi
	case b.families.pending != nil:
		b.families.pending[id] = fi
	}
}

// familyCover is what live refresh families need kept of the revocation
// entries: refresh checks a family's latest token against them, so an
// entry that covers the latest token of a family that has neither expired
// nor been marked revoked must outlive the tokens it was made for.
type familyCover struct {
	// oldest is the earliest iat (Unix seconds) of such a family's latest
	// token, if any: a subject or role entry with before at or after it
	// may cover that family. (The subject and role are not compared, so
	// this keeps more than it must, never less.)
	oldest int64
	any    bool
	// jtis are those families' latest tokens' jtis.
	jtis map[string]bool
}

// familyCover returns what live families need, or ok=false if the index
// does not know every family: the first scan has not completed, or a
// family changed elsewhere awaits a re-read.
func (b *backend) familyCover(now time.Time) (c familyCover, ok bool) {
	b.families.mu.Lock()
	defer b.families.mu.Unlock()
	if b.families.exp == nil {
		return familyCover{}, false
	}
	c.jtis = map[string]bool{}
	for _, fi := range b.families.exp {
		if fi.expires.IsZero() {
			return familyCover{}, false
		}
		if fi.revoked || !now.Before(fi.expires) {
			continue
		}
		if iat := fi.lastIssuedAt.Unix(); !c.any || iat < c.oldest {
			c.oldest, c.any = iat, true
		}
		if fi.lastJTI != "" {
			c.jtis[fi.lastJTI] = true
		}
	}
	return c, true
}

// familyMayNeedJTI reports whether jti may be the latest token of a live
// refresh family, whose refresh checks that token against revocations: a
// revocation of it must be stored even once the token has expired. It is
// true whenever the index does not know every family (on a standby, before
// the active node's first tidy scan).
func (b *backend) familyMayNeedJTI(jti string, now time.Time) bool {
	c, ok := b.familyCover(now)
	return !ok || c.jtis[jti]
}

// needs reports whether a live family may need r to stay ended.
func (c familyCover) needs(r *revocation) bool {
	if r.kind() == kindJTI {
		return c.jtis[r.JTI]
	}
	return c.any && c.oldest <= r.Before.Unix()
}

// invalidateFamily marks a family changed by another node.
func (b *backend) invalidateFamily(id string) { b.noteFamily(id, familyInfo{}) }

// addToken records the access token in resp, rotates the family's secret
// and adds the new refresh token to resp.
func (f *refreshFamily) addToken(res *issueResult, now time.Time) {
	f.Tokens = append(f.liveTokens(now), familyToken{JTI: res.jti, Issuer: res.iss, Exp: res.exp})
	f.Subject, f.LastIssuedAt = res.sub, res.iat
	secret := newRandomID(32)
	f.SecretHash = hashSecret(secret)
	f.Expires = now.Add(res.role.RefreshTTL)
	// The role's refresh_max_ttl, as it is now, caps the family's life.
	if m := res.role.RefreshMaxTTL; m > 0 && f.CreatedAt.Add(m).Before(f.Expires) {
		f.Expires = f.CreatedAt.Add(m)
	}
	res.refreshToken = f.ID + "." + secret
	res.refreshExpires = f.Expires
}

// tidyAfter is when the family may be deleted: once it has expired and so
// have its access tokens, since until then presenting a used refresh token
// of it still revokes them (see refresh).
func (f *refreshFamily) tidyAfter() time.Time {
	t := f.Expires
	for _, tok := range f.Tokens {
		if e := tok.Exp.Add(verifyLeeway); e.After(t) {
			t = e
		}
	}
	return t
}

// liveTokens returns the family's access tokens that have not expired,
// oldest first. f.Tokens is left as it is: the latest token's revocation
// ends the family even once it has expired.
func (f *refreshFamily) liveTokens(now time.Time) []familyToken {
	var live []familyToken
	for _, t := range f.Tokens {
		if now.Before(t.Exp.Add(verifyLeeway)) {
			live = append(live, t)
		}
	}
	return live
}

// checkFamilyEntity refuses to refresh a family whose Vault identity
// entity has been disabled or deleted, as Vault refuses every request of a
// token of such an entity ("permission denied as the entity on the token
// is disabled" / "is invalid"): the refresh token's holder, perhaps a
// gateway with its own token, must not outlast the identity the family was
// issued for. A re-enabled entity's families refresh again, as its tokens
// work again. An entity merged into another counts as deleted: Vault
// follows a merge for the old entity's tokens, but its system view gives
// plugins no way to. A non-nil answer or error ends the request.
func (b *backend) checkFamilyEntity(f *refreshFamily) (*logical.Response, error) {
	if f.EntityID == "" {
		return nil, nil
	}
	e, err := b.System().EntityInfo(f.EntityID)
	switch {
	case err != nil:
		return b.respondErr(err, "refresh: looking up the family's identity entity failed", "role", f.Role)
	case e == nil && b.System().ReplicationState().HasState(consts.ReplicationPerformanceStandby):
		// A performance standby may not have a new entity yet; Vault
		// itself sends such requests to the active node.
		return nil, logical.ErrReadOnly
	case e == nil:
		return badRequest(`invalid "refresh_token": its family's Vault identity entity no longer exists (deleted, or merged into another entity); issue a new token`)
	case e.Disabled:
		return badRequest(`invalid "refresh_token": its family's Vault identity entity is disabled; refreshing works again if the entity is enabled`)
	}
	return nil, nil
}

// startRefreshFamily stores a new family for the token res and adds its
// refresh token to res. A non-nil answer or error ends the request.
func (b *backend) startRefreshFamily(ctx context.Context, s logical.Storage, res *issueResult, p issueParams, entityID string) (*logical.Response, error) {
	now := b.now()
	f := &refreshFamily{ID: newRandomID(16), Role: res.role.Name, Params: p, EntityID: entityID, CreatedAt: now}
	f.addToken(res, now)
	if err := b.saveFamily(ctx, s, f); err != nil {
		return b.respondErr(err, "issue: storing refresh family failed", "role", f.Role)
	}
	return nil, nil
}

// refresh exchanges refreshToken for a new access token and refresh token.
func (b *backend) refresh(ctx context.Context, s logical.Storage, refreshToken string) (*logical.Response, error) {
	id, secret, ok := splitRefreshToken(refreshToken)
	if !ok {
		return badRequest(`invalid "refresh_token": not a refresh token from this engine`)
	}
	mu := b.familyLock(id)
	mu.Lock()
	defer mu.Unlock()

	now := b.now()
	f, err := loadFamily(ctx, s, id)
	if err != nil {
		return b.respondErr(err, "refresh: reading family failed")
	}
	// f.ID == id: on storage that ignores case (the file backend on macOS
	// or Windows), an id in other case reads the same entry, but would
	// take another lock.
	if f != nil && f.ID == id && !now.Before(f.Expires) && f.RevokedAt.IsZero() &&
		len(f.liveTokens(now)) > 0 && !secretMatches(f, secret) {
		// A used refresh token presented after its family expired (at
		// refresh_max_ttl, say): the family's access tokens may outlive
		// it, and one may be a thief's, so it is revoked as before expiry.
		return b.revokeFamily(ctx, s, f, now)
	}
	if f == nil || f.ID != id || !now.Before(f.Expires) {
		return badRequest(`invalid "refresh_token": unknown or expired (a family lives refresh_ttl after its last refresh, and at most the role's refresh_max_ttl after its first issue); issue a new token`)
	}
	if !f.RevokedAt.IsZero() {
		if f.RevokedReason != "" {
			return revokedFamilyRefusal(f.RevokedReason)
		}
		// Revoked for reuse: finish revoking its access tokens, in case a
		// write failed part way.
		if resp, err := b.revokeFamilyTokens(ctx, s, f, now); resp != nil || err != nil {
			return resp, err
		}
		return badRequest(`invalid "refresh_token": its token family was revoked at %s after a used refresh token was presented again; issue a new token`, f.RevokedAt.UTC().Format(time.RFC3339))
	}
	if !secretMatches(f, secret) {
		return b.revokeFamily(ctx, s, f, now)
	}
	r, err := b.getRole(ctx, s, f.Role)
	if err != nil {
		return b.respondErr(err, "refresh: reading role failed", "role", f.Role)
	}
	if r != nil && !r.continuesFamily(f) {
		return recreatedRoleRefusal(f.Role)
	}
	// A refresh_max_ttl lowered since the last refresh applies now.
	if r != nil && r.RefreshMaxTTL > 0 && !now.Before(f.CreatedAt.Add(r.RefreshMaxTTL)) {
		return refreshMaxTTLRefusal(f.Role, r.RefreshMaxTTL)
	}

	// A revocation of the family's subject or role, or of its latest
	// token, ends the family too.
	idx, err := b.getRevocations(ctx, s)
	if err != nil {
		return b.respondErr(err, "refresh: reading revocations failed")
	}
	if n := len(f.Tokens); n > 0 {
		last := f.Tokens[n-1]
		claims := map[string]any{"iss": last.Issuer, "jti": last.JTI, "iat": json.Number(strconv.FormatInt(f.LastIssuedAt.Unix(), 10))}
		if f.Subject != "" {
			claims["sub"] = f.Subject
		}
		if reason := idx.revokedReason(claims); reason != "" {
			return b.endRevokedFamily(ctx, s, f, now, reason)
		}
	}

	if resp, err := b.checkFamilyEntity(f); resp != nil || err != nil {
		return resp, err
	}
	if live := f.liveTokens(now); len(live) >= maxFamilyTokens {
		return nil, logical.CodedError(http.StatusTooManyRequests, fmt.Sprintf(`invalid "refresh_token": its family already has %d unexpired access tokens, the most a family may have; refresh again after %s, when the oldest expires`, len(live), live[0].Exp.Add(verifyLeeway).UTC().Format(time.RFC3339)))
	}

	res, resp, err := b.issueToken(ctx, s, f.Role, f.Params, f.EntityID)
	if resp != nil || err != nil {
		return resp, err
	}
	if res.role.RefreshTTL == 0 {
		return badRequest(`invalid "refresh_token": role %q no longer issues refresh tokens (refresh_ttl is 0)`, f.Role)
	}
	// The role issueToken read may be newer than the one checked above (a
	// role created again meanwhile): check the one the token was issued
	// under. The token is dropped unseen.
	if !res.role.continuesFamily(f) {
		return recreatedRoleRefusal(f.Role)
	}
	if m := res.role.RefreshMaxTTL; m > 0 && !now.Before(f.CreatedAt.Add(m)) {
		return refreshMaxTTLRefusal(f.Role, m)
	}
	f.addToken(&res, now)
	f.Refreshes++
	if err := b.saveFamily(ctx, s, f); err != nil {
		// Nothing was stored: the presented refresh token is still the
		// latest, and the new one is not returned.
		return b.respondErr(err, "refresh: storing family failed", "role", f.Role)
	}
	return res.response(&b.expiresAt), nil
}

// secretMatches reports whether secret is the family's latest, in
// constant time.
func secretMatches(f *refreshFamily, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(f.SecretHash)) == 1
}

func recreatedRoleRefusal(role string) (*logical.Response, error) {
	return badRequest(`invalid "refresh_token": role %q was deleted and created again since its family started, and a new role does not continue the old one's families; issue a new token`, role)
}

func refreshMaxTTLRefusal(role string, m time.Duration) (*logical.Response, error) {
	return badRequest(`invalid "refresh_token": its family reached role %q's refresh_max_ttl %s; issue a new token`, role, m)
}

// endRevokedFamily answers a refresh of a family whose latest token a
// revocation entry covers. The entry lasts only until tidy removes it, so
// the family is marked revoked in storage and stays ended without it. If
// that write fails the refusal stands (the entry is still there; the next
// refresh tries again), except on a performance standby, where the request
// goes to the active node to make the write.
func (b *backend) endRevokedFamily(ctx context.Context, s logical.Storage, f *refreshFamily, now time.Time, reason string) (*logical.Response, error) {
	f.RevokedAt, f.RevokedReason = now, reason
	if err := b.saveFamily(ctx, s, f); err != nil {
		if isReadOnly(err) {
			return nil, logical.ErrReadOnly
		}
		b.Logger().Error("refresh: marking a revoked family failed", "role", f.Role, "family", hashSecret(f.ID)[:16], "error", err)
	}
	return revokedFamilyRefusal(reason)
}

func revokedFamilyRefusal(reason string) (*logical.Response, error) {
	return badRequest(`invalid "refresh_token": the family's tokens are revoked (%s); issue a new token`, reason)
}

// revokeFamily answers a refresh token that is not its family's latest:
// the family is revoked, with every access token of it not yet expired.
// The family is marked first, so a write failing after it leaves no live
// family; the access tokens are revoked one bucket write at a time, and
// whatever a failure leaves undone is done when any of the family's refresh
// tokens is presented again.
func (b *backend) revokeFamily(ctx context.Context, s logical.Storage, f *refreshFamily, now time.Time) (*logical.Response, error) {
	f.RevokedAt = now
	if err := b.saveFamily(ctx, s, f); err != nil {
		return b.respondErr(err, "refresh: revoking family failed", "role", f.Role)
	}
	if resp, err := b.revokeFamilyTokens(ctx, s, f, now); resp != nil || err != nil {
		return resp, err
	}
	b.Logger().Warn("refresh token reused: token family revoked", "role", f.Role, "family", hashSecret(f.ID)[:16], "access_tokens_revoked", len(f.Tokens), "refreshes", f.Refreshes)
	return badRequest(`invalid "refresh_token": already used (or not its family's latest); a used refresh token presented again suggests theft, so every token of its family is now revoked; issue a new token`)
}

// revokeFamilyTokens revokes by jti each access token of a family revoked
// for reuse that has not expired and is not revoked yet, as of the
// family's RevokedAt: doing it again changes nothing. A non-nil answer or
// error ends the request.
func (b *backend) revokeFamilyTokens(ctx context.Context, s logical.Storage, f *refreshFamily, now time.Time) (*logical.Response, error) {
	idx, err := b.getRevocations(ctx, s)
	if err != nil {
		return b.respondErr(err, "refresh: reading revocations failed")
	}
	for _, t := range f.Tokens {
		if !now.Before(t.Exp.Add(verifyLeeway)) {
			continue
		}
		if _, done := idx.lookup(kindJTI, newRevKey(t.Issuer, t.JTI)); done {
			continue
		}
		r := &revocation{Issuer: t.Issuer, JTI: t.JTI, Expires: t.Exp.Add(verifyLeeway), RevokedAt: f.RevokedAt}
		if err := b.saveRevocation(ctx, s, r); err != nil {
			return b.respondErr(err, "refresh: revoking family tokens failed", "role", f.Role)
		}
	}
	return nil, nil
}

// tidyRefreshFamilies deletes families whose refresh token has expired and
// returns how many it deleted. The first call reads every family; later
// ones read only those whose known expiry has passed or that another node
// changed. Reading holds no lock, so refreshes do not wait for a scan;
// each deletion re-reads its family under its familyLock.
func (b *backend) tidyRefreshFamilies(ctx context.Context, s logical.Storage) (int, error) {
	b.tidyMu.Lock()
	defer b.tidyMu.Unlock()
	now := b.now()

	b.families.mu.Lock()
	var due []string
	seen := map[string]uint64{} // the note each due family had
	scan := b.families.exp == nil
	for id, fi := range b.families.exp {
		if !now.Before(fi.tidyAt) {
			due = append(due, id)
			seen[id] = fi.seq
		}
	}
	if scan {
		b.families.pending = map[string]familyInfo{}
		defer func() {
			b.families.mu.Lock()
			b.families.pending = nil
			b.families.mu.Unlock()
		}()
	}
	b.families.mu.Unlock()
	if scan {
		ids, err := s.List(ctx, refreshPrefix)
		if err != nil {
			return 0, fmt.Errorf("listing refresh families: %w", err)
		}
		due = ids
	}

	known := make(map[string]familyInfo, len(due))
	n := 0
	for _, id := range due {
		if scan {
			// Learn the expiry without the lock; most families are live.
			f, err := loadFamily(ctx, s, id)
			if err != nil {
				return n, err
			}
			if f == nil {
				continue
			}
			if now.Before(f.tidyAfter()) {
				known[id] = infoOf(f)
				continue
			}
		}
		deleted, live, err := b.deleteFamilyIfExpired(ctx, s, id, now)
		if err != nil {
			return n, err
		}
		if deleted {
			n++
		} else if live != nil {
			known[id] = *live // refreshed since: still live
		}
	}

	b.families.mu.Lock()
	if scan {
		// Families saved or invalidated during the scan were noted in
		// pending: what they say is newer than what the scan read.
		for id, fi := range b.families.pending {
			known[id] = fi
		}
		b.families.exp, b.families.pending = known, nil
	} else {
		for _, id := range due {
			if b.families.exp[id].seq != seen[id] {
				continue // noted since it was read: the note is newer
			}
			if fi, ok := known[id]; ok {
				b.families.exp[id] = fi
			} else {
				delete(b.families.exp, id)
			}
		}
	}
	b.families.mu.Unlock()
	return n, nil
}

// deleteFamilyIfExpired reads family id under its familyLock and deletes it if
// it has expired and so have its access tokens (tidyAfter); otherwise it returns what the index keeps of it (nil if
// it is gone).
func (b *backend) deleteFamilyIfExpired(ctx context.Context, s logical.Storage, id string, now time.Time) (deleted bool, live *familyInfo, err error) {
	mu := b.familyLock(id)
	mu.Lock()
	defer mu.Unlock()
	f, err := loadFamily(ctx, s, id)
	if err != nil || f == nil {
		return false, nil, err
	}
	if now.Before(f.tidyAfter()) {
		fi := infoOf(f)
		return false, &fi, nil
	}
	if err := s.Delete(ctx, refreshPrefix+id); err != nil {
		return false, nil, fmt.Errorf("deleting refresh family: %w", err)
	}
	return true, nil, nil
}
