package backend

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// highSTwin returns the other valid encoding of an ES256 token: the same
// header and claims with s replaced by n - s.
func highSTwin(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %v", err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	twin := append([]byte{}, sig[:32]...)
	twin = append(twin, s.FillBytes(make([]byte, 32))...)
	return parts[0] + "." + parts[1] + "." + b64s(twin)
}

func TestRevokeByToken(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "10m"})
	issuedTok := tb.issue(t, "r", nil)
	tok := issuedTok.data["token"].(string)
	other := tb.mustWrite(t, "issue/r", nil).Data["token"].(string)
	twin := highSTwin(t, tok)
	if twin == tok {
		t.Fatal("twin is the same string")
	}
	if active, reason, _ := tb.verify(t, twin, ""); !active {
		t.Fatalf("the high-S twin should verify before revocation (ECDSA allows it): %s", reason)
	}

	d := tb.mustWrite(t, "revoke", map[string]any{"token": tok}).Data
	if d["revoked"] != "jti" || d["issuer"] != "https://vault.test/v1/jwt" {
		t.Fatalf("revoke: %#v", d)
	}
	// What it takes to revoke it again by jti and exp (after restoring an
	// older snapshot), without the token.
	claims := issuedTok.claims
	if d["jti"] != claims["jti"] || fmt.Sprint(d["exp"]) != fmt.Sprint(claims["exp"]) {
		t.Fatalf("revoke by token answered jti=%v exp=%v, want the token's %v and %v", d["jti"], d["exp"], claims["jti"], claims["exp"])
	}
	for name, token := range map[string]string{"token": tok, "high-S twin": twin} {
		if active, reason, _ := tb.verify(t, token, ""); active || !strings.Contains(reason, "revoked") {
			t.Fatalf("%s after revocation: active=%v %s", name, active, reason)
		}
	}
	if active, _, _ := tb.verify(t, other, ""); !active {
		t.Fatal("revoking one token revoked another")
	}
	list := tb.mustRead(t, "revocations").Data
	if jtis := list["jtis"].([]any); len(jtis) != 1 {
		t.Fatalf("revocations: %#v", list)
	}

	// Tidy keeps the entry while the token could be valid, then removes it.
	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 0 {
		t.Fatalf("tidy removed %v too early", n)
	}
	tb.clock.Add(11 * time.Minute)
	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 1 {
		t.Fatalf("tidy removed %v after expiry", n)
	}
	if jtis := tb.mustRead(t, "revocations").Data["jtis"].([]any); len(jtis) != 0 {
		t.Fatalf("after tidy: %v", jtis)
	}
}

func TestRevokeBySubjectAndJTI(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "user-*", "max_ttl": "2h"})
	a := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data
	b := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-b"}).Data

	d := tb.mustWrite(t, "revoke", map[string]any{"subject": "user-a"}).Data
	if d["revoked"] != "subject" || d["expires_at"] != "2026-11-23T14:00:30Z" {
		t.Fatalf("revoke subject: %#v", d)
	}
	if active, reason, _ := tb.verify(t, a["token"].(string), ""); active || !strings.Contains(reason, `subject "user-a"`) {
		t.Fatalf("user-a's old token: %v %s", active, reason)
	}
	if active, _, _ := tb.verify(t, b["token"].(string), ""); !active {
		t.Fatal("user-b's token was revoked too")
	}
	tb.clock.Add(2 * time.Second)
	fresh := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["token"].(string)
	if active, reason, _ := tb.verify(t, fresh, ""); !active {
		t.Fatalf("user-a's token issued after the revocation: %s", reason)
	}

	tb.mustWrite(t, "revoke", map[string]any{"jti": b["jti"], "exp": tb.clock.Now().Add(time.Hour).Unix()})
	if active, _, _ := tb.verify(t, b["token"].(string), ""); active {
		t.Fatal("revoked by jti, still active")
	}

	// A revocation written by another node shows once Vault invalidates.
	c := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-c"}).Data
	if active, _, _ := tb.verify(t, c["token"].(string), ""); !active {
		t.Fatal("user-c inactive")
	}
	r := &revocation{Issuer: "https://vault.test/v1/jwt", JTI: c["jti"].(string), Expires: tb.clock.Now().Add(time.Hour), RevokedAt: tb.clock.Now()}
	k := r.key()
	rb, err := loadBucket(t.Context(), tb.storage, kindJTI, k.bucket())
	if err != nil {
		t.Fatal(err)
	}
	rb.Entries[k.hex()] = r
	if err := saveBucket(t.Context(), tb.storage, kindJTI, k.bucket(), rb); err != nil {
		t.Fatal(err)
	}
	if active, _, _ := tb.verify(t, c["token"].(string), ""); !active {
		t.Fatal("a write the node was not told of changed its answer: the test proves nothing")
	}
	tb.Backend.InvalidateKey(t.Context(), bucketPath(kindJTI, k.bucket()))
	if active, _, _ := tb.verify(t, c["token"].(string), ""); active {
		t.Fatal("revocation from another node not seen after Invalidate")
	}
}

// TestRevocationsScopedByIssuer: a jti or subject revocation covers the
// tokens of one issuer only. Role a issues under the mount's issuer
// (jwt/config), role b under its own; both give the subject "svc".
func TestRevocationsScopedByIssuer(t *testing.T) {
	const issA, issB = "https://vault.test/v1/jwt", "https://b.test"
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/a", map[string]any{"key": "k", "subject": "svc"})
	tb.mustWrite(t, "roles/b", map[string]any{"key": "k", "subject": "svc", "issuer": issB})
	a, b := tb.issue(t, "a", nil), tb.issue(t, "b", nil)
	if a.claims["iss"] != issA || b.claims["iss"] != issB || a.claims["sub"] != "svc" || b.claims["sub"] != "svc" {
		t.Fatalf("claims: a %v, b %v", a.claims, b.claims)
	}
	wantActive := func(what string, tok issued, want bool) {
		t.Helper()
		if active, reason, _ := tb.verify(t, tok.data["token"].(string), ""); active != want {
			t.Fatalf("%s: active=%v (%s), want %v", what, active, reason, want)
		}
	}
	exp := tb.clock.Now().Add(time.Hour).Unix()

	// Each jti revoked under the other token's issuer: neither token is.
	d := tb.mustWrite(t, "revoke", map[string]any{"jti": b.data["jti"], "exp": exp}).Data
	if d["issuer"] != issA {
		t.Fatalf("revoke without issuer: issuer %v, want jwt/config's %s", d["issuer"], issA)
	}
	tb.mustWrite(t, "revoke", map[string]any{"jti": a.data["jti"], "exp": exp, "issuer": issB})
	wantActive("b's jti revoked under the mount's issuer: b's token", b, true)
	wantActive("a's jti revoked under b's issuer: a's token", a, true)
	tb.mustWrite(t, "revoke", map[string]any{"jti": b.data["jti"], "exp": exp, "issuer": issB})
	wantActive("b's jti revoked under b's issuer: b's token", b, false)

	// The subject revoked under the mount's issuer: a's tokens only.
	a2, b2 := tb.issue(t, "a", nil), tb.issue(t, "b", nil)
	tb.mustWrite(t, "revoke", map[string]any{"subject": "svc"})
	wantActive("svc revoked under the mount's issuer: a's token", a2, false)
	wantActive("svc revoked under the mount's issuer: b's token", b2, true)
	tb.mustWrite(t, "revoke", map[string]any{"subject": "svc", "issuer": issB})
	wantActive("svc revoked under b's issuer: b's token", b2, false)
}

// TestRevokeNeverShortens: revoking a jti again with an earlier exp keeps
// the first, longer entry, so tidy does not drop it while the token lives.
func TestRevokeNeverShortens(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "1h"})
	tok := tb.issue(t, "r", nil)
	jti, now := tok.data["jti"], tb.clock.Now()

	far := tb.mustWrite(t, "revoke", map[string]any{"jti": jti, "exp": now.Add(2 * time.Hour).Unix()}).Data["expires_at"]
	if far != "2026-11-23T14:00:30Z" {
		t.Fatalf("first revocation expires_at %v", far)
	}
	second := tb.mustWrite(t, "revoke", map[string]any{"jti": jti, "exp": now.Add(time.Minute).Unix()}).Data
	if got := second["expires_at"]; got != far {
		t.Fatalf("a second revocation with an earlier exp: expires_at %v, want the first one's %v", got, far)
	}
	if second["jti"] != jti || second["exp"] != now.Add(2*time.Hour).Unix() {
		t.Fatalf("a second revocation with an earlier exp answered jti=%v exp=%v, want %v and the first one's exp %d", second["jti"], second["exp"], jti, now.Add(2*time.Hour).Unix())
	}
	tb.clock.Add(5 * time.Minute) // past the second exp and its leeway; the token lives on
	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 0 {
		t.Fatalf("tidy removed %v entries", n)
	}
	if active, reason, _ := tb.verify(t, tok.data["token"].(string), ""); active || !strings.Contains(reason, "revoked") {
		t.Fatalf("after tidy: active=%v %s", active, reason)
	}
}

func TestRevokeBadInput(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	tb.mustWrite(t, "roles/nojti", map[string]any{"key": "k", "jti": false})
	nojti := tb.mustWrite(t, "issue/nojti", nil).Data["token"].(string)
	foreign := strings.Split(nojti, ".")[0] + "." + b64s([]byte(`{"iss":"x","jti":"y","exp":1}`)) + "." + strings.Split(nojti, ".")[2]
	for _, tc := range []struct {
		name string
		data map[string]any
		want string
	}{
		{"nothing", map[string]any{}, "exactly one"},
		{"two modes", map[string]any{"jti": "a", "subject": "b"}, "exactly one"},
		{"jti without exp", map[string]any{"jti": "a"}, `"exp"`},
		{"exp past year 5138", map[string]any{"jti": "a", "exp": int64(1e15)}, `invalid "exp" 1000000000000000: must be between 1 and 100000000000`},
		{"exp just past the NumericDate bound", map[string]any{"jti": "a", "exp": int64(1e11) + 1}, `invalid "exp"`},
		{"negative exp", map[string]any{"jti": "a", "exp": -5}, `invalid "exp"`},
		{"exp -1", map[string]any{"jti": "a", "exp": -1}, `invalid "exp" -1: must be between 1 and`},
		{"exp 0", map[string]any{"jti": "a", "exp": 0}, `invalid "exp": required with "jti"`},
		{"issuer with white space", map[string]any{"subject": "s", "issuer": "not an issuer\n"}, `invalid "issuer"`},
		{"issuer with a space", map[string]any{"subject": "s", "issuer": "has space"}, `invalid "issuer"`},
		{"issuer with a query", map[string]any{"jti": "a", "exp": 2000000000, "issuer": "https://vault.test/v1/jwt?x=1"}, `invalid "issuer"`},
		{"subject too long", map[string]any{"subject": strings.Repeat("s", 1<<20)}, `invalid "subject": longer than 1024`},
		{"subject of 1025 bytes", map[string]any{"subject": strings.Repeat("s", 1025)}, `invalid "subject": longer than 1024`},
		{"jti too long", map[string]any{"jti": strings.Repeat("j", 1025), "exp": 2000000000}, `invalid "jti": longer than 1024`},
		{"exp with subject", map[string]any{"subject": "s", "exp": 5}, `invalid "exp": only with "jti"`},
		{"exp with role", map[string]any{"role": "r", "exp": 2000000000}, `invalid "exp": only with "jti"`},
		{"exp with token", map[string]any{"token": nojti, "exp": 2000000000}, `invalid "exp": only with "jti"`},
		{"issuer with role", map[string]any{"role": "r", "issuer": "https://other.example.com"}, `invalid "issuer": not with "role"`},
		{"issuer with token", map[string]any{"token": nojti, "issuer": "https://vault.test/v1/jwt"}, `invalid "issuer": not with "token"`},
		{"not our token", map[string]any{"token": foreign}, `"token"`},
		{"garbage token", map[string]any{"token": "a.b"}, `"token"`},
		{"token without jti", map[string]any{"token": nojti}, `no "jti"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "revoke", tc.data, tc.want)
		})
	}
}

// TestRevokeByRole: every token a role issued up to now is revoked, with
// every encoding of it; later tokens of the role and other roles' tokens
// stay active; the entry is listed and tidied after the role's max_ttl.
func TestRevokeByRole(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "roles/web", map[string]any{"key": "k", "ttl": "10m", "max_ttl": "1h"})
	tb.mustWrite(t, "roles/batch", map[string]any{"key": "k", "ttl": "10m"})
	old := tb.mustWrite(t, "issue/web", nil).Data["token"].(string)
	other := tb.mustWrite(t, "issue/batch", nil).Data["token"].(string)

	d := tb.mustWrite(t, "revoke", map[string]any{"role": "web"}).Data
	if d["revoked"] != "role" || d["expires_at"] != "2026-11-23T13:00:30Z" {
		t.Fatalf("revoke: %#v", d)
	}
	for name, token := range map[string]string{"token": old, "high-S twin": highSTwin(t, old)} {
		if active, reason, _ := tb.verify(t, token, ""); active || !strings.Contains(reason, `role "web"`) {
			t.Fatalf("%s after revoking its role: active=%v %s", name, active, reason)
		}
	}
	if active, reason, _ := tb.verify(t, other, ""); !active {
		t.Fatalf("another role's token: %s", reason)
	}
	tb.clock.Add(time.Second)
	if active, reason, _ := tb.verify(t, tb.mustWrite(t, "issue/web", nil).Data["token"].(string), ""); !active {
		t.Fatalf("a token the role issued after the revocation: %s", reason)
	}
	roles := tb.mustRead(t, "revocations").Data["roles"].([]any)
	if len(roles) != 1 || roles[0].(map[string]any)["role_tag"] != roleTag("web") {
		t.Fatalf("revocations: %#v", roles)
	}

	// The index is rebuilt from storage (as on another node or a restart).
	tb.dropRevocations()
	if active, _, _ := tb.verify(t, old, ""); active {
		t.Fatal("role revocation lost when the index was reloaded from storage")
	}

	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 0 {
		t.Fatalf("tidy removed %v while tokens may be live", n)
	}
	tb.clock.Add(time.Hour + time.Minute)
	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 1 {
		t.Fatalf("tidy removed %v after the role's max_ttl", n)
	}
	if keys, _ := tb.storage.List(t.Context(), revokedRolePrefix); len(keys) != 0 {
		t.Fatalf("stored role revocations after tidy: %v", keys)
	}
	tb.wantNotFound(t, logical.UpdateOperation, "revoke", map[string]any{"role": "missing"})
	tb.wantBadRequest(t, logical.UpdateOperation, "revoke", map[string]any{"role": "web", "subject": "x"}, "exactly one")
}

// TestRevokeCoversSkew: with not_before_skew, tokens issued within the skew
// after a revocation have an iat before it and count as revoked, so the
// entry lives that much longer; a role revocation needs no issuer.
func TestRevokeCoversSkew(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "config", map[string]any{"issuer": ""})
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "issuer": "https://r.example", "max_ttl": "1h", "not_before_skew": "10m", "allowed_subjects": "*"})
	d := tb.mustWrite(t, "revoke", map[string]any{"role": "r"}).Data
	if d["expires_at"] != "2026-11-23T13:10:30Z" {
		t.Fatalf("role revocation expires_at %v, want max_ttl + not_before_skew + 30s leeway", d["expires_at"])
	}
	d = tb.mustWrite(t, "revoke", map[string]any{"subject": "s", "issuer": "https://r.example"}).Data
	if d["expires_at"] != "2026-11-23T13:10:30Z" {
		t.Fatalf("subject revocation expires_at %v", d["expires_at"])
	}
}

// TestRevocationsPaging: a long list comes in pages of whole buckets; the
// pages hold every entry once; a bad cursor or limit is a 400.
func TestRevocationsPaging(t *testing.T) {
	tb := getTestBackend(t)
	fillRevocations(t, tb.storage, 5000, tb.clock.Now())
	tb.dropRevocations()
	seen := map[string]bool{}
	after, pages := "", 0
	for {
		resp, err := tb.request(t, logical.ReadOperation, "revocations", map[string]any{"limit": 1000, "after": after})
		if err != nil || resp.IsError() {
			t.Fatal(err, resp.Error())
		}
		tb.validateSchema(t, logical.ReadOperation, "revocations", resp)
		d := resp.Data
		if pages == 0 && d["total"].(map[string]any)["jtis"] != 5000 {
			t.Fatalf("total %v", d["total"])
		}
		jtis := d["jtis"].([]any)
		for _, j := range jtis {
			id := j.(map[string]any)["jti"].(string)
			if seen[id] {
				t.Fatalf("%s on two pages", id)
			}
			seen[id] = true
		}
		pages++
		next, ok := d["next"].(string)
		if !ok {
			break
		}
		if len(jtis) < 1000 {
			t.Fatalf("page %d has %d entries and a next", pages, len(jtis))
		}
		after = next
	}
	if len(seen) != 5000 || pages != 5 {
		t.Fatalf("%d entries in %d pages", len(seen), pages)
	}
	tb.wantBadRequest(t, logical.ReadOperation, "revocations", map[string]any{"after": "jti/zzz"}, `"after"`)
	tb.wantBadRequest(t, logical.ReadOperation, "revocations", map[string]any{"limit": 0}, `"limit"`)
}

// gatedStorage holds reads of revocation buckets until released.
type gatedStorage struct {
	logical.Storage
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (g *gatedStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if strings.HasPrefix(key, "revoked/") {
		g.once.Do(func() { close(g.entered) })
		<-g.gate
	}
	return g.Storage.Get(ctx, key)
}

// TestRevocationLoadDoesNotBlockIssue: loading the revocation index (seconds
// for a million entries) holds no lock that issue needs, and a bucket
// invalidated during the load is reloaded afterwards.
func TestRevocationLoadDoesNotBlockIssue(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "10m"})
	tok := tb.mustWrite(t, "issue/r", nil).Data
	fillRevocations(t, tb.storage, 100, tb.clock.Now())
	tb.dropRevocations()

	g := &gatedStorage{Storage: tb.storage, gate: make(chan struct{}), entered: make(chan struct{})}
	inner := tb.storage
	tb.storage = g
	done := make(chan bool)
	go func() {
		resp, err := tb.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Data: map[string]any{"token": tok["token"]}, Storage: g})
		done <- err == nil && resp.Data["active"] == false
	}()
	select {
	case <-g.entered: // the load is under way and stuck on storage
	case <-done:
		t.Fatal("verify answered without loading the revocation index")
	}

	// Issue still works, promptly.
	issued := make(chan error, 1)
	go func() {
		resp, err := tb.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "issue/r", Storage: g})
		if err == nil && resp.IsError() {
			err = resp.Error()
		}
		issued <- err
	}()
	select {
	case err := <-issued:
		if err != nil {
			t.Fatalf("issue during the index load: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(g.gate)
		t.Fatal("issue waited for the revocation index load")
	}
	// Another node revokes the token meanwhile; Vault invalidates its bucket.
	r := &revocation{Issuer: "https://vault.test/v1/jwt", JTI: tok["jti"].(string), Expires: tb.clock.Now().Add(time.Hour), RevokedAt: tb.clock.Now()}
	k := r.key()
	rb, _ := loadBucket(t.Context(), inner, kindJTI, k.bucket())
	rb.Entries[k.hex()] = r
	if err := saveBucket(t.Context(), inner, kindJTI, k.bucket(), rb); err != nil {
		t.Fatal(err)
	}
	tb.Backend.InvalidateKey(t.Context(), bucketPath(kindJTI, k.bucket()))

	close(g.gate)
	if !<-done {
		// The load may have read the bucket after the write; either way the
		// answer must be "revoked".
		t.Fatal("verify during the load did not report the token revoked")
	}
	if active, _, _ := tb.verify(t, tok["token"].(string), ""); active {
		t.Fatal("a bucket invalidated during the index load was not reloaded")
	}
}

// TestRevocationInvalidatedDuringLoad: a bucket that Vault invalidates
// while the index is first loading is stale as soon as the index is
// published, so a verify that starts then reloads it instead of answering
// from what the load read before the invalidation.
func TestRevocationInvalidatedDuringLoad(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "10m"})
	d := tb.mustWrite(t, "issue/r", nil).Data
	token := d["token"].(string)
	tb.dropRevocations()

	inner := tb.storage
	// The load has listed the jti buckets when another node revokes the
	// token (in a bucket the load did not list) and Vault invalidates it.
	tb.storage = &listHookStorage{Storage: inner, prefix: revokedJTIPrefix, onList: func() {
		revokeElsewhere(t, tb, inner, d["jti"].(string))
	}}
	var published bool
	tb.afterRevocationsLoaded = func() {
		published = true
		if active, reason, _ := tb.verify(t, token, ""); active || !strings.Contains(reason, "revoked") {
			t.Errorf("verify starting once the index is published: active=%v %q; the bucket invalidated during the load was not stale", active, reason)
		}
	}
	if active, reason, _ := tb.verify(t, token, ""); active { // loads the index
		t.Errorf("verify that loaded the index: active, want revoked (%s)", reason)
	}
	if !published {
		t.Fatal("the verify did not load the revocation index")
	}
}

// overlapStorage holds the first revocation bucket read until a second one
// starts (or 5 s pass), and records whether one did.
type overlapStorage struct {
	logical.Storage
	arrived    chan struct{}
	overlapped atomic.Bool
	started    atomic.Int32
}

func (o *overlapStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if strings.HasPrefix(key, "revoked/") {
		switch o.started.Add(1) {
		case 1:
			select {
			case <-o.arrived:
				o.overlapped.Store(true)
			case <-time.After(5 * time.Second):
			}
		case 2:
			close(o.arrived)
		}
	}
	return o.Storage.Get(ctx, key)
}

// TestRevocationLoadReadsBucketsConcurrently: the index load does not wait
// for one bucket's round trip to Vault before asking for the next (one at
// a time, a million entries took 6 s through a real Vault), and every
// entry is loaded.
func TestRevocationLoadReadsBucketsConcurrently(t *testing.T) {
	tb := getTestBackend(t)
	fillRevocations(t, tb.storage, 2000, tb.clock.Now())
	tb.dropRevocations()
	o := &overlapStorage{Storage: tb.storage, arrived: make(chan struct{})}
	idx, err := tb.getRevocations(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !o.overlapped.Load() {
		t.Error("the load read revocation buckets one at a time")
	}
	if got := idx.size()[kindJTI]; got != 2000 {
		t.Errorf("index holds %d revoked jtis, want 2000", got)
	}
}

// failOneStorage fails reads of one key while fail is set.
type failOneStorage struct {
	logical.Storage
	key  string
	fail atomic.Bool
}

func (f *failOneStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if key == f.key && f.fail.Load() {
		return nil, errStorage
	}
	return f.Storage.Get(ctx, key)
}

// TestRevocationLoadFails: one bucket that cannot be read fails the whole
// load, and no partial index is kept: the next load reads everything.
func TestRevocationLoadFails(t *testing.T) {
	tb := getTestBackend(t)
	fillRevocations(t, tb.storage, 2000, tb.clock.Now())
	tb.dropRevocations()
	names, err := tb.storage.List(t.Context(), revokedJTIPrefix)
	if err != nil || len(names) < 100 {
		t.Fatalf("stored buckets: %d, %v", len(names), err)
	}
	fs := &failOneStorage{Storage: tb.storage, key: revokedJTIPrefix + names[len(names)/2]}
	fs.fail.Store(true)
	if _, err := tb.getRevocations(t.Context(), fs); !errors.Is(err, errStorage) {
		t.Fatalf("load with one failing read: %v, want %v", err, errStorage)
	}
	fs.fail.Store(false)
	idx, err := tb.getRevocations(t.Context(), fs)
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.size()[kindJTI]; got != 2000 {
		t.Errorf("index after a failed load holds %d revoked jtis, want 2000", got)
	}
}

// revokeElsewhere writes a jti revocation straight to storage, as another
// node would, and has Vault call Invalidate for its bucket. It returns the
// bucket's storage key.
func revokeElsewhere(t *testing.T, tb *testBackend, s logical.Storage, jti string) string {
	t.Helper()
	r := &revocation{Issuer: "https://vault.test/v1/jwt", JTI: jti, Expires: tb.clock.Now().Add(time.Hour), RevokedAt: tb.clock.Now()}
	k := r.key()
	rb, err := loadBucket(t.Context(), s, kindJTI, k.bucket())
	if err != nil {
		t.Fatal(err)
	}
	rb.Entries[k.hex()] = r
	if err := saveBucket(t.Context(), s, kindJTI, k.bucket(), rb); err != nil {
		t.Fatal(err)
	}
	tb.Backend.InvalidateKey(t.Context(), bucketPath(kindJTI, k.bucket()))
	return bucketPath(kindJTI, k.bucket())
}

// jtiInSameBucket returns a jti whose revocation lands in jti's bucket.
func jtiInSameBucket(jti string) string {
	want := (&revocation{Issuer: "https://vault.test/v1/jwt", JTI: jti}).key().bucket()
	for i := 0; ; i++ {
		other := fmt.Sprintf("other-%d", i)
		if (&revocation{Issuer: "https://vault.test/v1/jwt", JTI: other}).key().bucket() == want {
			return other
		}
	}
}

// hookGetStorage runs onGet once, after reading key and before returning
// what it read.
type hookGetStorage struct {
	logical.Storage
	key   string
	once  sync.Once
	onGet func()
}

func (h *hookGetStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := h.Storage.Get(ctx, key)
	if key == h.key {
		h.once.Do(h.onGet)
	}
	return e, err
}

// TestRevocationInvalidateDuringReload: a bucket that Vault invalidates
// while this node is reloading it (after the reload's read, before the
// bucket is replaced) is reloaded again on next use; a verify that starts
// while a reload of an invalidated bucket is in flight does not answer from
// the bucket's old content; a reload that fails leaves the bucket stale.
func TestRevocationInvalidateDuringReload(t *testing.T) {
	setup := func(t *testing.T) (tb *testBackend, token, jti, bucket string) {
		tb = getTestBackend(t)
		tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
		tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "10m"})
		d := tb.mustWrite(t, "issue/r", nil).Data
		token, jti = d["token"].(string), d["jti"].(string)
		if active, reason, _ := tb.verify(t, token, ""); !active { // loads the index
			t.Fatalf("fresh token: %s", reason)
		}
		// Another node revokes some other token in the same bucket: the
		// bucket is stale here.
		bucket = revokeElsewhere(t, tb, tb.storage, jtiInSameBucket(jti))
		return tb, token, jti, bucket
	}

	t.Run("invalidated again during the reload", func(t *testing.T) {
		tb, token, jti, bucket := setup(t)
		inner := tb.storage
		// The next verify reloads the bucket. Just after its read, the other
		// node revokes our token in that bucket and Vault invalidates it
		// again.
		tb.storage = &hookGetStorage{Storage: inner, key: bucket, onGet: func() { revokeElsewhere(t, tb, inner, jti) }}
		tb.verify(t, token, "") // raced with the revocation: either answer is right
		tb.storage = inner
		if active, reason, _ := tb.verify(t, token, ""); active || !strings.Contains(reason, "revoked") {
			t.Fatalf("token revoked on another node, bucket invalidated after the reload's read: active=%v %q; the second invalidation was lost", active, reason)
		}
	})

	t.Run("verify during a reload waits for it", func(t *testing.T) {
		tb, token, jti, _ := setup(t)
		revokeElsewhere(t, tb, tb.storage, jti) // before either verify starts
		g := &gatedStorage{Storage: tb.storage, gate: make(chan struct{}), entered: make(chan struct{})}
		first := make(chan bool)
		go func() {
			resp, err := tb.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Data: map[string]any{"token": token}, Storage: g})
			first <- err != nil || resp.Data["active"] != false
		}()
		<-g.entered // the first verify is reloading the bucket
		second := make(chan bool)
		go func() {
			active, _, _ := tb.verify(t, token, "")
			second <- active
		}()
		var active bool
		select {
		case active = <-second:
			close(g.gate)
		case <-time.After(500 * time.Millisecond):
			close(g.gate) // the second verify is waiting, as it should
			active = <-second
		}
		if <-first {
			t.Error("the verify that reloaded the invalidated bucket found the token active")
		}
		if active {
			t.Error("a verify that started after the invalidation answered from the bucket's old content while it was being reloaded")
		}
	})
	t.Run("failed reload", func(t *testing.T) {
		tb, token, jti, bucket := setup(t)
		revokeElsewhere(t, tb, tb.storage, jti)
		inner := tb.storage
		fs := &failOneStorage{Storage: inner, key: bucket}
		fs.fail.Store(true)
		tb.storage = fs
		resp, err := tb.request(t, logical.UpdateOperation, "verify", map[string]any{"token": token})
		if code := httpStatus(logical.UpdateOperation, "verify", resp, err); code != 500 {
			t.Fatalf("verify while the bucket cannot be read: status %d, want 500", code)
		}
		tb.storage = inner
		if active, reason, _ := tb.verify(t, token, ""); active {
			t.Fatalf("after a failed reload, the bucket was not read again: active, %q", reason)
		}
	})
}

// TestRevokeLongMaxTTLRole: a role revocation lasts max_ttl +
// not_before_skew + 30s. A role stored with a max_ttl near time.Duration's
// limit (from before max_ttl had a bound) must not overflow that sum into
// the past, where tidy would delete the entry at once and its tokens would
// be active again.
func TestRevokeLongMaxTTLRole(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "10m", "not_before_skew": "1h", "allowed_subjects": "*"})
	tok := tb.mustWrite(t, "issue/r", map[string]any{"subject": "alice"}).Data["token"].(string)
	r, err := loadRole(t.Context(), tb.storage, "r")
	if err != nil {
		t.Fatal(err)
	}
	r.MaxTTL = 9223372036 * time.Second
	entry, _ := logical.StorageEntryJSON(rolePrefix+"r", r)
	if err := tb.storage.Put(t.Context(), entry); err != nil {
		t.Fatal(err)
	}
	tb.dropRole("r")
	for _, data := range []map[string]any{{"role": "r"}, {"subject": "alice"}} {
		d := tb.mustWrite(t, "revoke", data).Data
		if exp, _ := time.Parse(time.RFC3339, d["expires_at"].(string)); exp.Before(tb.clock.Now().Add(100 * 365 * 24 * time.Hour)) {
			t.Fatalf("revoke %v: expires_at %v", data, d["expires_at"])
		}
	}
	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 0 {
		t.Fatalf("tidy removed %v revocations of live tokens", n)
	}
	if active, _, _ := tb.verify(t, tok, ""); active {
		t.Fatal("revoked token active after tidy")
	}
}

// TestRevokeExpired: revoking a jti whose exp is more than the 30s verify
// leeway in the past (or a token that expired that long ago) answers 200
// with a warning and stores nothing: verify refuses the token anyway, and
// incident-response scripts that revoke lists must not fail on it.
func TestRevokeExpired(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "1m"})
	tok := tb.mustWrite(t, "issue/r", nil).Data["token"].(string)
	tb.clock.Add(2 * time.Minute)
	now := tb.clock.Now().Unix()
	// Until tidy has read every refresh family once, an expired jti may be
	// some family's latest token, so it is stored.
	if resp := tb.mustWrite(t, "revoke", map[string]any{"jti": "early", "exp": now - 31}); len(resp.Warnings) != 0 {
		t.Fatalf("before the first tidy: warnings %q, want the entry stored", resp.Warnings)
	}
	tb.mustWrite(t, "tidy", nil) // removes "early" and learns every family
	for _, tc := range []struct {
		name string
		data map[string]any
	}{
		{"jti expired 31s ago", map[string]any{"jti": "a", "exp": now - 31}},
		{"jti expired 30s ago, where verify's leeway ends", map[string]any{"jti": "e", "exp": now - 30}},
		{"jti expired in 2001", map[string]any{"jti": "b", "exp": 1000000000}},
		{"jti with exp 1", map[string]any{"jti": "c", "exp": 1}},
		{"token expired a minute ago", map[string]any{"token": tok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tb.snapshot(t)
			resp := tb.mustWrite(t, "revoke", tc.data)
			if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "already expired") || !strings.Contains(resp.Warnings[0], "nothing was stored") {
				t.Fatalf("warnings %q", resp.Warnings)
			}
			if resp.Data["revoked"] != "jti" {
				t.Fatalf("data %v", resp.Data)
			}
			if after := tb.snapshot(t); !maps.Equal(before, after) {
				t.Fatal("stored a revocation of an expired token")
			}
		})
	}
	// Within the leeway, verify could still accept the token: stored.
	if resp := tb.mustWrite(t, "revoke", map[string]any{"jti": "d", "exp": now - 29}); len(resp.Warnings) != 0 {
		t.Fatalf("warnings %q", resp.Warnings)
	}
	if jtis := tb.mustRead(t, "revocations").Data["jtis"].([]any); len(jtis) != 1 {
		t.Fatalf("revocations %v", jtis)
	}
}

// TestRevokeExpiredLatestTokenOfFamily: a refresh family's latest access
// token has expired, as it does before every refresh; revoking it still
// ends the family (refresh checks the latest token against revocations),
// so the entry is stored and tidy keeps it while the family lives.
func TestRevokeExpiredLatestTokenOfFamily(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "1m", "refresh_ttl": "1h"})
	d := tb.mustWrite(t, "issue/r", nil).Data
	tb.mustWrite(t, "tidy", nil) // the index knows every family
	tb.clock.Add(5 * time.Minute)
	for _, data := range []map[string]any{
		{"token": d["token"]},
		{"jti": d["jti"], "exp": tb.clock.Now().Add(-4 * time.Minute).Unix()},
	} {
		if resp := tb.mustWrite(t, "revoke", data); len(resp.Warnings) != 0 {
			t.Fatalf("revoke %v of a live family's latest token: warnings %q, want it stored", data, resp.Warnings)
		}
	}
	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 0 {
		t.Fatalf("tidy removed %v entries a live family needs", n)
	}
	resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": d["refresh_token"]})
	if err == nil && !resp.IsError() {
		t.Fatalf("refresh after its latest token was revoked: %v, want a 400", resp.Data)
	}
	if msg := resp.Error().Error(); !strings.Contains(msg, "revoked") {
		t.Fatalf("refresh refused with %q, want the revocation named", msg)
	}
}
