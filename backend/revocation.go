package backend

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
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
	revokedJTIPrefix  = "revoked/jti/"
	revokedSubPrefix  = "revoked/sub/"
	revokedRolePrefix = "revoked/role/"
)

// revocation is one stored entry.
type revocation struct {
	Issuer string `json:"iss"`
	// JTI, for a revoked token; Subject or Role (with its RoleTag), for
	// every token of a subject or role issued at or before Before (to the
	// second).
	JTI     string    `json:"jti,omitempty"`
	Subject string    `json:"sub,omitempty"`
	Role    string    `json:"role,omitempty"`
	RoleTag string    `json:"role_tag,omitempty"`
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

// revocationIndex is the in-memory copy of every entry.
type revocationIndex struct {
	jti map[string]*revocation
	sub map[string]*revocation
	// role is keyed by role tag.
	role map[string]*revocation
}

// maps pairs each storage prefix with its map.
func (idx *revocationIndex) maps() map[string]map[string]*revocation {
	return map[string]map[string]*revocation{revokedJTIPrefix: idx.jti, revokedSubPrefix: idx.sub, revokedRolePrefix: idx.role}
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
	idx = &revocationIndex{jti: map[string]*revocation{}, sub: map[string]*revocation{}, role: map[string]*revocation{}}
	for prefix, m := range idx.maps() {
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
			if prefix == revokedRolePrefix {
				k = r.RoleTag
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
	// NumericDates have whole seconds, so a token of the same second as the
	// revocation counts as before it; a token without iat cannot show it
	// came after.
	issuedBy := func(before time.Time) bool {
		iat, err := numericDate(claims, "iat", false)
		return err != nil || iat.IsZero() || !iat.After(before.Truncate(time.Second))
	}
	if sub, _ := claims["sub"].(string); sub != "" {
		if r := idx.sub[revocationKey(iss, sub)]; r != nil && issuedBy(r.Before) {
			return fmt.Sprintf("every token of subject %q issued at or before %s is revoked", sub, r.Before.UTC().Format(time.RFC3339))
		}
	}
	if jti, _ := claims["jti"].(string); jti != "" {
		if r := idx.role[jtiRoleTag(jti)]; r != nil && issuedBy(r.Before) {
			return fmt.Sprintf("every token of role %q issued at or before %s is revoked", r.Role, r.Before.UTC().Format(time.RFC3339))
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
	for prefix, m := range idx.maps() {
		for k, r := range m {
			if now.Before(r.Expires) {
				continue
			}
			if prefix == revokedRolePrefix {
				k = revocationKey("", r.RoleTag)
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
