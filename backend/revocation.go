package backend

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Revocations live in replicated storage, keyed by a hash of (iss, jti),
// (iss, sub) or the role tag — never by the token string, since one set of
// claims has many valid encodings — and are indexed in memory for O(1)
// checks in verify.
//
// Entries are grouped into revocationBuckets buckets per kind by the first
// 12 bits of their hash, one storage entry per bucket. A mount with a
// million revoked tokens then loads 4,096 storage entries at start-up, not
// a million (each a gRPC round trip from an external plugin, and a List too
// large for one message), and a write rewrites one bucket of a few hundred
// entries. Buckets that Vault invalidates (written on another node) are
// reloaded alone.
const (
	revokedJTIPrefix  = "revoked/jti/"
	revokedSubPrefix  = "revoked/sub/"
	revokedRolePrefix = "revoked/role/"
	revocationBuckets = 4096
)

// Revocation kinds, in the order revocations pages through them.
type revocationKind int

const (
	kindJTI revocationKind = iota
	kindSubject
	kindRole
	numKinds
)

var kindPrefixes = [numKinds]string{revokedJTIPrefix, revokedSubPrefix, revokedRolePrefix}
var kindNames = [numKinds]string{"jti", "sub", "role"}

// revocation is one stored entry.
type revocation struct {
	Issuer string `json:"iss,omitempty"`
	// JTI, for a revoked token; Subject or Role (with its RoleTag), for
	// every token of a subject or role issued at or before Before (to the
	// second).
	JTI     string    `json:"jti,omitempty"`
	Subject string    `json:"sub,omitempty"`
	Role    string    `json:"role,omitempty"`
	RoleTag string    `json:"role_tag,omitempty"`
	Before  time.Time `json:"before,omitzero"`
	// Expires is when no token the entry covers can still be valid; tidy
	// removes the entry then, or once no live refresh family needs it.
	Expires   time.Time `json:"expires"`
	RevokedAt time.Time `json:"revoked_at"`
}

// kind and key say where r is stored.
func (r *revocation) kind() revocationKind {
	switch {
	case r.Subject != "":
		return kindSubject
	case r.RoleTag != "":
		return kindRole
	}
	return kindJTI
}

func (r *revocation) key() revKey {
	switch r.kind() {
	case kindSubject:
		return newRevKey(r.Issuer, r.Subject)
	case kindRole:
		return newRevKey("", r.RoleTag)
	}
	return newRevKey(r.Issuer, r.JTI)
}

// revocationBucket is one stored bucket: entries by hex key.
type revocationBucket struct {
	Entries map[string]*revocation `json:"entries"`
}

// revKey is SHA-256 of "iss\x00id".
type revKey [sha256.Size]byte

func newRevKey(iss, id string) revKey { return sha256.Sum256([]byte(iss + "\x00" + id)) }

func (k revKey) hex() string { return hex.EncodeToString(k[:]) }
func (k revKey) bucket() int { return int(k[0])<<4 | int(k[1]>>4) }
func (k revKey) short() [16]byte {
	var s [16]byte
	copy(s[:], k[:16])
	return s
}

func bucketPath(kind revocationKind, bucket int) string {
	return fmt.Sprintf("%s%03x", kindPrefixes[kind], bucket)
}

// roleTag is the prefix of the jti of every token a role issues, before a
// ".": 64 bits of SHA-256 of the role name, so revocation by role needs
// nothing stored per token and the jti does not spell out the role name.
func roleTag(role string) string {
	sum := sha256.Sum256([]byte("vault-plugin-secrets-jwt role\x00" + role))
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// jtiRoleTag is the role tag of a jti this engine made, or "".
func jtiRoleTag(jti string) string {
	if i := strings.IndexByte(jti, '.'); i > 0 {
		return jti[:i]
	}
	return ""
}

// revoked is an entry as indexed: 128 bits of its key map to this.
type revoked struct {
	revokedAt, before int64
	// name is the subject or role, for the reason verify gives.
	name string
}

// revocationIndex is the in-memory copy of every entry, by kind and
// bucket.
type revocationIndex struct {
	mu      sync.RWMutex
	buckets [numKinds][revocationBuckets]map[[16]byte]revoked
	// minExpires is each bucket's earliest expiry (Unix seconds), 0 if
	// empty, so tidy reads only buckets with something to remove; for a
	// bucket whose expired entries tidy kept for live refresh families,
	// when tidy should read it again.
	minExpires [numKinds][revocationBuckets]int64
	// stale buckets were written elsewhere and are reloaded on next use.
	// Each mark holds the value of staleSeq when it was set, so a reload
	// clears only the mark it read for: an invalidation that arrives
	// during the reload (which may have read the bucket before the write)
	// leaves a newer mark, and the bucket is read again.
	stale    map[[2]int]uint64
	staleSeq uint64
}

// set replaces one bucket's entries with those of rb.
func (idx *revocationIndex) set(kind revocationKind, bucket int, rb *revocationBucket) {
	m := make(map[[16]byte]revoked, len(rb.Entries))
	var minExp int64
	for _, r := range rb.Entries {
		e := revoked{revokedAt: r.RevokedAt.Unix(), before: r.Before.Unix(), name: r.Subject + r.Role}
		if r.Before.IsZero() {
			e.before = 0
		}
		m[r.key().short()] = e
		if exp := r.Expires.Unix(); minExp == 0 || exp < minExp {
			minExp = exp
		}
	}
	if len(m) == 0 {
		m = nil
	}
	idx.buckets[kind][bucket] = m
	idx.minExpires[kind][bucket] = minExp
}

func (idx *revocationIndex) lookup(kind revocationKind, k revKey) (revoked, bool) {
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	e, ok := idx.buckets[kind][k.bucket()][k.short()]
	return e, ok
}

// size is the number of indexed entries of each kind.
func (idx *revocationIndex) size() [numKinds]int {
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	var n [numKinds]int
	for kind := range numKinds {
		for _, m := range idx.buckets[kind] {
			n[kind] += len(m)
		}
	}
	return n
}

func loadBucket(ctx context.Context, s logical.Storage, kind revocationKind, bucket int) (*revocationBucket, error) {
	entry, err := s.Get(ctx, bucketPath(kind, bucket))
	if err != nil {
		return nil, fmt.Errorf("reading revocations: %w", err)
	}
	rb := &revocationBucket{Entries: map[string]*revocation{}}
	if entry == nil {
		return rb, nil
	}
	if err := entry.DecodeJSON(rb); err != nil {
		return nil, fmt.Errorf("decoding revocations %s: %w", bucketPath(kind, bucket), err)
	}
	if rb.Entries == nil {
		rb.Entries = map[string]*revocation{}
	}
	return rb, nil
}

func saveBucket(ctx context.Context, s logical.Storage, kind revocationKind, bucket int, rb *revocationBucket) error {
	if len(rb.Entries) == 0 {
		if err := s.Delete(ctx, bucketPath(kind, bucket)); err != nil {
			return fmt.Errorf("deleting revocations: %w", err)
		}
		return nil
	}
	entry, err := logical.StorageEntryJSON(bucketPath(kind, bucket), rb)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing revocation: %w", err)
	}
	return nil
}

// getRevocations returns the index, loading it on first use and reloading
// buckets Vault has invalidated since.
func (b *backend) getRevocations(ctx context.Context, s logical.Storage) (*revocationIndex, error) {
	b.cacheMu.RLock()
	idx := b.revocations
	b.cacheMu.RUnlock()
	if idx != nil {
		idx.mu.RLock()
		fresh := len(idx.stale) == 0
		idx.mu.RUnlock()
		if fresh {
			return idx, nil
		}
		return idx, b.reloadStale(ctx, s, idx)
	}

	// Load without holding cacheMu: a million entries take seconds, and
	// issue must not wait for them. Invalidations that arrive meanwhile are
	// kept and marked as stale buckets before the index is published.
	b.revLoadMu.Lock()
	defer b.revLoadMu.Unlock()
	b.cacheMu.RLock()
	idx = b.revocations
	b.cacheMu.RUnlock()
	if idx != nil {
		return idx, nil
	}
	b.revInvalMu.Lock()
	b.revLoading, b.revPending = true, nil
	b.revInvalMu.Unlock()
	defer func() {
		b.revInvalMu.Lock()
		b.revLoading, b.revPending = false, nil
		b.revInvalMu.Unlock()
	}()
	idx, err := b.loadRevocations(ctx, s)
	if err != nil {
		return nil, err
	}
	b.revInvalMu.Lock()
	pending := b.revPending
	b.revLoading, b.revPending = false, nil
	// Marked before the index is published, under revInvalMu: a reader
	// that finds the index finds the marks, and waits for the reload
	// instead of answering from a bucket read before its invalidation.
	for _, key := range pending {
		idx.markStale(key)
	}
	b.cacheMu.Lock()
	b.revocations = idx
	b.cacheMu.Unlock()
	b.revInvalMu.Unlock()
	if b.afterRevocationsLoaded != nil {
		b.afterRevocationsLoaded()
	}
	if len(pending) == 0 {
		return idx, nil
	}
	return idx, b.reloadStale(ctx, s, idx)
}

// revocationLoaders is how many buckets loadRevocations reads at once.
// Each read is a gRPC round trip to Vault (about 0.4 ms on loopback), so
// reading one at a time left a million entries taking 6 s to load through
// a real Vault, three quarters of it waiting; decoding uses every core.
const revocationLoaders = 8

// loadRevocations reads every stored bucket into a new index, several at
// a time. A failed read fails the load.
func (b *backend) loadRevocations(ctx context.Context, s logical.Storage) (*revocationIndex, error) {
	var jobs [][2]int
	for kind := range numKinds {
		names, err := s.List(ctx, kindPrefixes[kind])
		if err != nil {
			return nil, fmt.Errorf("listing revocations: %w", err)
		}
		for _, name := range names {
			bucket, err := strconv.ParseUint(name, 16, 12)
			if err != nil || len(name) != 3 {
				b.Logger().Warn("ignoring an unknown revocation storage entry", "key", kindPrefixes[kind]+name)
				continue
			}
			jobs = append(jobs, [2]int{int(kind), int(bucket)})
		}
	}
	idx := &revocationIndex{stale: map[[2]int]uint64{}}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(revocationLoaders, len(jobs)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				kind, bucket := revocationKind(jobs[i][0]), jobs[i][1]
				rb, err := loadBucket(ctx, s, kind, bucket)
				if err != nil {
					cancel(err)
					return
				}
				// Each job sets its own bucket's elements: no lock needed
				// until the index is published.
				idx.set(kind, bucket, rb)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return idx, nil
}

// reloadStale re-reads the buckets marked stale. A bucket keeps its mark
// while it is read, so readers that arrive meanwhile wait here (on revMu)
// instead of answering from its old content; the mark is cleared only if
// no invalidation re-marked the bucket since it was read, and stays if the
// read fails.
func (b *backend) reloadStale(ctx context.Context, s logical.Storage, idx *revocationIndex) error {
	b.revMu.Lock()
	defer b.revMu.Unlock()
	idx.mu.RLock()
	stale := maps.Clone(idx.stale)
	idx.mu.RUnlock()
	for kb, seq := range stale {
		rb, err := loadBucket(ctx, s, revocationKind(kb[0]), kb[1])
		if err != nil {
			return err
		}
		idx.mu.Lock()
		idx.set(revocationKind(kb[0]), kb[1], rb)
		if idx.stale[kb] == seq {
			delete(idx.stale, kb)
		}
		idx.mu.Unlock()
	}
	return nil
}

// invalidateRevocations marks the bucket at storage key stale.
func (b *backend) invalidateRevocations(key string) {
	b.revInvalMu.Lock()
	b.cacheMu.RLock()
	idx := b.revocations
	b.cacheMu.RUnlock()
	if idx == nil {
		if b.revLoading {
			b.revPending = append(b.revPending, key)
		}
		b.revInvalMu.Unlock()
		return
	}
	b.revInvalMu.Unlock()
	idx.markStale(key)
}

// markStale marks the bucket at storage key stale, so the next reader
// reloads it.
func (idx *revocationIndex) markStale(key string) {
	for kind := range numKinds {
		name, ok := strings.CutPrefix(key, kindPrefixes[kind])
		if !ok {
			continue
		}
		bucket, err := strconv.ParseUint(name, 16, 12)
		if err != nil || len(name) != 3 {
			return
		}
		idx.mu.Lock()
		idx.staleSeq++
		idx.stale[[2]int{int(kind), int(bucket)}] = idx.staleSeq
		idx.mu.Unlock()
	}
}

func (b *backend) dropRevocations() {
	b.cacheMu.Lock()
	b.revocations = nil
	b.cacheMu.Unlock()
}

// revokedReason says why claims are revoked, or "".
func (idx *revocationIndex) revokedReason(claims map[string]any) string {
	iss, _ := claims["iss"].(string)
	jti, _ := claims["jti"].(string)
	if jti != "" {
		if r, ok := idx.lookup(kindJTI, newRevKey(iss, jti)); ok {
			return fmt.Sprintf("token revoked at %s", time.Unix(r.revokedAt, 0).UTC().Format(time.RFC3339))
		}
	}
	// NumericDates have whole seconds, so a token of the same second as the
	// revocation counts as before it; a token without iat cannot show it
	// came after.
	issuedBy := func(before int64) bool {
		iat, err := numericDate(claims, "iat", false)
		return err != nil || iat.IsZero() || iat.Unix() <= before
	}
	if sub, _ := claims["sub"].(string); sub != "" {
		if r, ok := idx.lookup(kindSubject, newRevKey(iss, sub)); ok && issuedBy(r.before) {
			return fmt.Sprintf("every token of subject %q issued at or before %s is revoked", r.name, time.Unix(r.before, 0).UTC().Format(time.RFC3339))
		}
	}
	if tag := jtiRoleTag(jti); tag != "" {
		if r, ok := idx.lookup(kindRole, newRevKey("", tag)); ok && issuedBy(r.before) {
			return fmt.Sprintf("every token of role %q issued at or before %s is revoked", r.name, time.Unix(r.before, 0).UTC().Format(time.RFC3339))
		}
	}
	return ""
}

// saveRevocation adds r to its bucket in storage and in the index.
func (b *backend) saveRevocation(ctx context.Context, s logical.Storage, r *revocation) error {
	idx, err := b.getRevocations(ctx, s)
	if err != nil {
		return err
	}
	b.revMu.Lock()
	defer b.revMu.Unlock()
	kind, k := r.kind(), r.key()
	rb, err := loadBucket(ctx, s, kind, k.bucket())
	if err != nil {
		return err
	}
	if old := rb.Entries[k.hex()]; old != nil && old.Expires.After(r.Expires) {
		r.Expires = old.Expires // never shorten what an earlier revocation covers
	}
	rb.Entries[k.hex()] = r
	if err := saveBucket(ctx, s, kind, k.bucket(), rb); err != nil {
		return err
	}
	idx.mu.Lock()
	idx.set(kind, k.bucket(), rb)
	idx.mu.Unlock()
	return nil
}

// revocationHoldRecheck is how often tidy reads again a bucket whose
// expired entries live refresh families still needed at its last read:
// they can go only once those families refresh or expire, and re-reading
// such buckets every minute would cost a storage read each.
const revocationHoldRecheck = time.Hour

// tidyRevocations deletes entries whose tokens have all expired and that
// no live refresh family needs (see familyCover), and returns how many it
// deleted. It reads only buckets whose earliest expiry (or recheck time)
// has passed. Until tidy knows every refresh family it deletes nothing.
func (b *backend) tidyRevocations(ctx context.Context, s logical.Storage) (int, error) {
	idx, err := b.getRevocations(ctx, s)
	if err != nil {
		return 0, err
	}
	b.revMu.Lock()
	defer b.revMu.Unlock()
	now, n := b.now(), 0
	// What live families need is a pass over every family, made only once
	// some bucket is due: most runs find none.
	var cover *familyCover
	for kind := range numKinds {
		for bucket := range revocationBuckets {
			idx.mu.RLock()
			due := idx.minExpires[kind][bucket]
			idx.mu.RUnlock()
			if due == 0 || now.Unix() < due {
				continue
			}
			if cover == nil {
				c, ok := b.familyCover(now)
				if !ok {
					b.Logger().Debug("tidy: keeping expired revocations until every refresh family is known")
					return 0, nil
				}
				cover = &c
			}
			rb, err := loadBucket(ctx, s, kind, bucket)
			if err != nil {
				return n, err
			}
			removed, held := 0, false
			var nextExpiry int64
			for key, r := range rb.Entries {
				switch {
				case now.Before(r.Expires):
					if exp := r.Expires.Unix(); nextExpiry == 0 || exp < nextExpiry {
						nextExpiry = exp
					}
				case cover.needs(r):
					held = true
				default:
					delete(rb.Entries, key)
					removed++
				}
			}
			if removed > 0 {
				if err := saveBucket(ctx, s, kind, bucket, rb); err != nil {
					return n, err
				}
			}
			n += removed
			idx.mu.Lock()
			idx.set(kind, bucket, rb)
			if held {
				recheck := now.Add(revocationHoldRecheck).Unix()
				if nextExpiry != 0 && nextExpiry < recheck {
					recheck = nextExpiry
				}
				idx.minExpires[kind][bucket] = recheck
			}
			idx.mu.Unlock()
		}
	}
	return n, nil
}

// revocationPage reads stored entries from position from (kind*buckets +
// bucket) on, whole buckets at a time, until it has at least limit; next
// is where the following page starts, or -1 at the end.
func (b *backend) revocationPage(ctx context.Context, s logical.Storage, idx *revocationIndex, from, limit int) (entries []*revocation, next int, err error) {
	for pos := from; pos < int(numKinds)*revocationBuckets; pos++ {
		kind, bucket := revocationKind(pos/revocationBuckets), pos%revocationBuckets
		idx.mu.RLock()
		empty := idx.buckets[kind][bucket] == nil
		idx.mu.RUnlock()
		if empty {
			continue
		}
		if len(entries) >= limit {
			return entries, pos, nil
		}
		rb, err := loadBucket(ctx, s, kind, bucket)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range rb.Entries {
			entries = append(entries, r)
		}
	}
	return entries, -1, nil
}

// isRevocationKey reports whether a storage key is a revocation entry.
func isRevocationKey(key string) bool { return strings.HasPrefix(key, "revoked/") }
