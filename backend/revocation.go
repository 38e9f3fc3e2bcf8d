package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Revocations live in replicated storage, keyed by a hash of (iss, jti) or
// (iss, sub) — never by the token string, since one set of claims has many
// valid encodings — and are indexed in memory for O(1) checks in verify.
const (
	revokedJTIPrefix = "revoked/jti/"
	revokedSubPrefix = "revoked/sub/"
)

// revocation is one stored entry.
type revocation struct {
	Issuer string `json:"iss"`
	// JTI, for a revoked token; Subject, for every token of a subject
	// issued at or before Before (to the second).
	JTI     string    `json:"jti,omitempty"`
	Subject string    `json:"sub,omitempty"`
	Before  time.Time `json:"before,omitzero"`
	// Expires is when no token the entry covers can still be valid; tidy
	// removes the entry then.
	Expires   time.Time `json:"expires"`
	RevokedAt time.Time `json:"revoked_at"`
}

func revocationKey(iss, id string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + id))
	return hex.EncodeToString(sum[:])
}

// revocationIndex is the in-memory copy of every entry.
type revocationIndex struct {
	jti map[string]*revocation
	sub map[string]*revocation
}

// getRevocations returns the index, loading it on first use.
func (b *backend) getRevocations(ctx context.Context, s logical.Storage) (*revocationIndex, error) {
	b.cacheMu.RLock()
	idx := b.revocations
	b.cacheMu.RUnlock()
	if idx != nil {
		return idx, nil
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	if b.revocations != nil {
		return b.revocations, nil
	}
	idx = &revocationIndex{jti: map[string]*revocation{}, sub: map[string]*revocation{}}
	for prefix, m := range map[string]map[string]*revocation{revokedJTIPrefix: idx.jti, revokedSubPrefix: idx.sub} {
		keys, err := s.List(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("listing revocations: %w", err)
		}
		for _, k := range keys {
			entry, err := s.Get(ctx, prefix+k)
			if err != nil {
				return nil, fmt.Errorf("reading revocation: %w", err)
			}
			if entry == nil {
				continue
			}
			r := &revocation{}
			if err := entry.DecodeJSON(r); err != nil {
				return nil, fmt.Errorf("decoding revocation %s: %w", k, err)
			}
			m[k] = r
		}
	}
	b.revocations = idx
	return idx, nil
}

func (b *backend) dropRevocations() {
	b.cacheMu.Lock()
	b.revocations = nil
	b.cacheMu.Unlock()
}

// revokedReason says why claims are revoked, or "".
func (idx *revocationIndex) revokedReason(claims map[string]any) string {
	iss, _ := claims["iss"].(string)
	if jti, _ := claims["jti"].(string); jti != "" {
		if r := idx.jti[revocationKey(iss, jti)]; r != nil {
			return fmt.Sprintf("token revoked at %s", r.RevokedAt.UTC().Format(time.RFC3339))
		}
	}
	if sub, _ := claims["sub"].(string); sub != "" {
		if r := idx.sub[revocationKey(iss, sub)]; r != nil {
			iat, err := numericDate(claims, "iat", false)
			// NumericDates have whole seconds, so a token of the same second
			// as the revocation counts as before it; a token without iat
			// cannot show it came after.
			if err != nil || iat.IsZero() || !iat.After(r.Before.Truncate(time.Second)) {
				return fmt.Sprintf("every token of subject %q issued at or before %s is revoked", sub, r.Before.UTC().Format(time.RFC3339))
			}
		}
	}
	return ""
}

// saveRevocation writes an entry and drops the index.
func (b *backend) saveRevocation(ctx context.Context, s logical.Storage, prefix, id string, r *revocation) error {
	entry, err := logical.StorageEntryJSON(prefix+revocationKey(r.Issuer, id), r)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("writing revocation: %w", err)
	}
	b.dropRevocations()
	return nil
}

// tidyRevocations deletes entries whose tokens have all expired and
// returns how many it deleted.
func (b *backend) tidyRevocations(ctx context.Context, s logical.Storage) (int, error) {
	now := b.now()
	idx, err := b.getRevocations(ctx, s)
	if err != nil {
		return 0, err
	}
	n := 0
	for prefix, m := range map[string]map[string]*revocation{revokedJTIPrefix: idx.jti, revokedSubPrefix: idx.sub} {
		for k, r := range m {
			if now.Before(r.Expires) {
				continue
			}
			if err := s.Delete(ctx, prefix+k); err != nil {
				return n, fmt.Errorf("deleting revocation: %w", err)
			}
			n++
		}
	}
	if n > 0 {
		b.dropRevocations()
	}
	return n, nil
}

// isRevocationKey reports whether a storage key is a revocation entry.
func isRevocationKey(key string) bool { return strings.HasPrefix(key, "revoked/") }
