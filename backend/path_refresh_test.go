package backend

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"google.golang.org/protobuf/proto"
)

func refreshBackend(t *testing.T) *testBackend {
	t.Helper()
	return refreshBackendWithRole(t, map[string]any{"ttl": "5m", "refresh_ttl": "1h", "allowed_subjects": "user-*", "allowed_claims": "scope"})
}

// refreshBackendWithRole has an ES256 key k and role r on it with the
// given fields.
func refreshBackendWithRole(t *testing.T, role map[string]any) *testBackend {
	t.Helper()
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	role["key"] = "k"
	tb.mustWrite(t, "roles/r", role)
	return tb
}

// TestRefresh: each refresh returns a new token, issued as the original
// request was, and a new refresh token; the old one stops working and
// presenting it again revokes the whole family.
func TestRefresh(t *testing.T) {
	tb := refreshBackend(t)
	first := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a", "claims": map[string]any{"scope": "read"}}).Data
	rt1, _ := first["refresh_token"].(string)
	if rt1 == "" || first["refresh_expires_at"] != "2026-11-23T13:00:00Z" {
		t.Fatalf("issue: %#v", first)
	}

	tb.clock.Add(4 * time.Minute)
	second := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt1}).Data
	rt2 := second["refresh_token"].(string)
	if rt2 == rt1 || second["token"] == first["token"] || second["refresh_expires_at"] != "2026-11-23T13:04:00Z" {
		t.Fatalf("refresh: %#v", second)
	}
	active, _, claims := tb.verify(t, second["token"].(string), "")
	if !active || claims["sub"] != "user-a" || claims["scope"] != "read" {
		t.Fatalf("refreshed token: active=%v claims=%v", active, claims)
	}
	third := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt2}).Data

	// Reuse of rt1: refused, and the family is revoked (the one refusal
	// that changes storage, by design).
	resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt1})
	if err == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "already used") {
		t.Fatalf("reuse: %v %v", resp, err)
	}
	for name, tok := range map[string]any{"first": first["token"], "second": second["token"], "third": third["token"]} {
		if active, reason, _ := tb.verify(t, tok.(string), ""); active || !strings.Contains(reason, "revoked") {
			t.Fatalf("%s token after reuse: active=%v %s", name, active, reason)
		}
	}
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": third["refresh_token"]}, "family was revoked")
	if !strings.Contains(tb.logs.String(), "refresh token reused") {
		t.Error("reuse not logged")
	}
	for _, secret := range []string{rt1, rt2, third["refresh_token"].(string)} {
		if strings.Contains(tb.logs.String(), secret) {
			t.Fatal("a refresh token is in the log")
		}
	}
	// Only hashes are stored.
	for k, v := range tb.snapshot(t) {
		for _, secret := range []string{rt1, rt2, third["refresh_token"].(string)} {
			_, s, _ := strings.Cut(secret, ".")
			if strings.Contains(v, s) {
				t.Fatalf("storage entry %s holds a refresh secret", k)
			}
		}
	}
}

// TestRefreshEnds: expiry, a revoked subject or role, a role that no
// longer refreshes, and tidy.
func TestRefreshEnds(t *testing.T) {
	tb := refreshBackend(t)
	issue := func() string {
		return tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	}
	rt := issue()
	tb.clock.Add(time.Hour)
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, "expired")

	rt = issue()
	tb.clock.Add(time.Second)
	tb.mustWrite(t, "revoke", map[string]any{"subject": "user-a"})
	tb.refusedRefresh(t, rt, "revoked", "user-a") // and marks the family ended

	tb.clock.Add(time.Second)
	rt = issue()
	tb.clock.Add(time.Second)
	tb.mustWrite(t, "revoke", map[string]any{"role": "r"})
	tb.refusedRefresh(t, rt, "revoked", `role "r"`)

	tb.clock.Add(time.Second)
	rt = issue()
	tb.mustWrite(t, "roles/r", map[string]any{"refresh_ttl": 0})
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, "no longer issues refresh tokens")
	if _, ok := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"]; ok {
		t.Fatal("a role without refresh_ttl returned a refresh token")
	}

	// A policy change applies on refresh: the stored request is checked
	// against the role as it is now.
	tb.mustWrite(t, "roles/r", map[string]any{"refresh_ttl": "1h"})
	rt = issue()
	tb.mustWrite(t, "roles/r", map[string]any{"allowed_subjects": "svc-*"})
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, `"subject"`, "allowed_subjects")

	families, _ := tb.storage.List(t.Context(), refreshPrefix)
	tb.clock.Add(2 * time.Hour)
	if n := tb.mustWrite(t, "tidy", nil).Data["refresh_families_removed"]; n != len(families) || n == 0 {
		t.Fatalf("tidy removed %v families, want %d", n, len(families))
	}
	if left, _ := tb.storage.List(t.Context(), refreshPrefix); len(left) != 0 {
		t.Fatalf("families left after tidy: %v", left)
	}
}

func TestRefreshBadInput(t *testing.T) {
	tb := refreshBackend(t)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	id, secret, _ := strings.Cut(rt, ".")
	for _, tc := range []struct {
		name string
		data map[string]any
		want []string
	}{
		{"missing", map[string]any{}, []string{`"refresh_token"`, "required"}},
		{"garbage", map[string]any{"refresh_token": "abc"}, []string{`"refresh_token"`, "not a refresh token"}},
		{"an access token", map[string]any{"refresh_token": "a.b.c"}, []string{`"refresh_token"`}},
		{"padded", map[string]any{"refresh_token": id + "." + secret + "="}, []string{`"refresh_token"`}},
		// 42 base64url characters and a line break, which encoding/base64
		// skips: 43 bytes that would decode.
		{"line break in the secret", map[string]any{"refresh_token": id + "." + secret[:41] + "A\n"}, []string{`"refresh_token"`, "not a refresh token"}},
		{"unknown family", map[string]any{"refresh_token": strings.Repeat("A", 22) + "." + secret}, []string{"unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tb.snapshot(t)
			tb.wantBadRequest(t, logical.UpdateOperation, "refresh", tc.data, tc.want...)
			if after := tb.snapshot(t); len(after) != len(before) {
				t.Fatal("a refused refresh changed storage")
			}
		})
	}
	// The family is untouched by those: rt still works.
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})

	for _, tc := range []struct {
		name string
		data map[string]any
		want string
	}{
		{"refresh_ttl below ttl", map[string]any{"key": "k", "ttl": "1h", "refresh_ttl": "10m"}, `"refresh_ttl"`},
		{"refresh_ttl too long", map[string]any{"key": "k", "refresh_ttl": "2400h"}, `"refresh_ttl"`},
		{"refresh without jti", map[string]any{"key": "k", "jti": false, "refresh_ttl": "1h"}, "jti=true"},
		{"refresh_max_ttl without refresh_ttl", map[string]any{"key": "k", "refresh_max_ttl": "24h"}, `"refresh_max_ttl"`},
		{"refresh_max_ttl below refresh_ttl", map[string]any{"key": "k", "refresh_ttl": "2h", "refresh_max_ttl": "1h"}, `"refresh_max_ttl"`},
		{"refresh_max_ttl too long", map[string]any{"key": "k", "refresh_ttl": "1h", "refresh_max_ttl": "9000h"}, `"refresh_max_ttl"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "roles/bad", tc.data, tc.want)
		})
	}
}

// TestRefreshRace: of concurrent refreshes with one token, exactly one
// succeeds, and the others count as reuse.
func TestRefreshRace(t *testing.T) {
	tb := refreshBackend(t)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Go(func() {
			resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt})
			if err == nil && !resp.IsError() {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d refreshes with one token succeeded, want 1", ok)
	}
}

// TestTidyRefreshFamiliesReadsOnlyDue: after its first scan, tidy reads only
// families whose expiry has passed or that another node changed, not every
// family each minute.
func TestTidyRefreshFamiliesReadsOnlyDue(t *testing.T) {
	tb := refreshBackend(t)
	for range 50 {
		tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"})
	}
	cs := &countingStorage{Storage: tb.storage}
	tidy := func() int {
		t.Helper()
		cs.reads.Store(0)
		n, err := tb.tidyRefreshFamilies(t.Context(), cs)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := tidy(); n != 0 || cs.reads.Load() != 51 {
		t.Fatalf("first tidy: removed %d, %d reads; want 0 and a full scan (a List and 50 reads)", n, cs.reads.Load())
	}
	if n := tidy(); n != 0 || cs.reads.Load() != 0 {
		t.Fatalf("second tidy: removed %d, %d reads; want none", n, cs.reads.Load())
	}
	// One family refreshed here, one written by another node.
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-b"}).Data["refresh_token"].(string)
	id, _, _ := strings.Cut(rt, ".")
	tb.Backend.InvalidateKey(t.Context(), refreshPrefix+id)
	if n := tidy(); n != 0 || cs.reads.Load() != 1 {
		t.Fatalf("after an invalidation: removed %d, %d reads; want 1 read", n, cs.reads.Load())
	}
	tb.clock.Add(2 * time.Hour)
	if n := tidy(); n != 51 || cs.reads.Load() != 51 {
		t.Fatalf("after expiry: removed %d, %d reads; want 51 and 51", n, cs.reads.Load())
	}
	if n := tidy(); n != 0 || cs.reads.Load() != 0 {
		t.Fatalf("after removal: removed %d, %d reads", n, cs.reads.Load())
	}
}

// TestRefreshMaxTTL: refresh_ttl is a family's idle lifetime,
// refresh_max_ttl its absolute one, counted from the first issue.
func TestRefreshMaxTTL(t *testing.T) {
	tb := refreshBackend(t)
	tb.mustWrite(t, "roles/r", map[string]any{"refresh_max_ttl": "2h"})
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	for _, at := range []string{"2026-11-23T13:50:00Z", "2026-11-23T14:00:00Z"} {
		tb.clock.Add(50 * time.Minute)
		d := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data
		if d["refresh_expires_at"] != at {
			t.Fatalf("refresh_expires_at %v, want %s (idle 1h, capped at 2h after the first issue)", d["refresh_expires_at"], at)
		}
		rt = d["refresh_token"].(string)
	}
	tb.clock.Add(19 * time.Minute) // 13:59
	rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)
	tb.clock.Add(time.Minute) // 14:00, two hours after the first issue
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, "expired")

	// Lowering refresh_max_ttl applies at the next refresh.
	rt = tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	tb.clock.Add(40 * time.Minute)
	tb.mustWrite(t, "roles/r", map[string]any{"refresh_max_ttl": "30m", "refresh_ttl": "30m"})
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, "refresh_max_ttl")
}

// refusedRefresh presents rt, which must be refused with a 400 whose
// message contains every string in want; unlike wantBadRequest it allows
// the refusal to write storage (marking the family ended).
func (tb *testBackend) refusedRefresh(t *testing.T, rt string, want ...string) string {
	t.Helper()
	resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt})
	if code := httpStatus(logical.UpdateOperation, "refresh", resp, err); code != 400 {
		got := "a new token and refresh token were issued"
		if resp != nil && resp.IsError() {
			got = resp.Error().Error()
		} else if err != nil {
			got = err.Error()
		}
		t.Fatalf("refresh: status %d, want 400: %s", code, got)
	}
	msg := resp.Error().Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("refresh refused with %q, want it to contain %q", msg, w)
		}
	}
	return msg
}

// revokeModes revoke a family's latest token by each kind of revocation
// entry; reason is part of the refusal each gives.
var revokeModes = []struct {
	name   string
	data   func(issued map[string]any) map[string]any
	reason string
}{
	{"subject", func(map[string]any) map[string]any { return map[string]any{"subject": "user-a"} }, `subject "user-a"`},
	{"role", func(map[string]any) map[string]any { return map[string]any{"role": "r"} }, `role "r"`},
	{"jti", func(d map[string]any) map[string]any { return map[string]any{"token": d["token"]} }, "token revoked at"},
}

// longRefreshBackend has role r with short tokens (revocation entries
// expire after max_ttl, 10m) and long-lived refresh families (24h).
func longRefreshBackend(t *testing.T) *testBackend {
	t.Helper()
	return refreshBackendWithRole(t, map[string]any{"ttl": "5m", "max_ttl": "10m", "refresh_ttl": "24h", "allowed_subjects": "user-*"})
}

// TestRefreshRevokedFamilyStaysEnded: a family ended by a revocation entry
// (of its subject, its role or its latest token) is marked revoked when a
// refresh finds the entry, so it stays ended after tidy removes the entry,
// which lives only as long as the access tokens it covers, not the family.
func TestRefreshRevokedFamilyStaysEnded(t *testing.T) {
	for _, mode := range revokeModes {
		t.Run(mode.name, func(t *testing.T) {
			tb := longRefreshBackend(t)
			d := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data
			rt := d["refresh_token"].(string)
			tb.clock.Add(time.Second)
			tb.mustWrite(t, "revoke", mode.data(d))
			tb.refusedRefresh(t, rt, "the family's tokens are revoked", mode.reason)

			tb.clock.Add(15 * time.Minute) // the entry has expired; the family (24h) has not
			if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 1 {
				t.Fatalf("tidy removed %v revocation entries, want the expired one", n)
			}
			msg := tb.refusedRefresh(t, rt, "the family's tokens are revoked", mode.reason)
			if strings.Contains(msg, "used") {
				t.Errorf("a family ended by a revocation is refused as reused: %q", msg)
			}
		})
	}

	// Marking the family is best effort: if storage fails, the refusal is
	// still the 400 (the entry is still there, and the next refresh tries
	// again), and the failure is logged.
	t.Run("storage fails", func(t *testing.T) {
		tb := longRefreshBackend(t)
		rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
		tb.clock.Add(time.Second)
		tb.mustWrite(t, "revoke", map[string]any{"subject": "user-a"})
		inner := tb.storage
		fs := &failingStorage{Storage: inner}
		fs.set(true, false, false)
		tb.storage = fs
		tb.refusedRefresh(t, rt, "the family's tokens are revoked", `subject "user-a"`)
		tb.storage = inner
		for _, want := range []string{`"@message":"refresh: marking a revoked family failed"`, `"role":"r"`, `"error":"writing refresh family: storage is down"`} {
			if !strings.Contains(tb.logs.String(), want) {
				t.Errorf("log lacks %s:\n%s", want, tb.logs.String())
			}
		}
		tb.refusedRefresh(t, rt, "the family's tokens are revoked") // marks it now
		tb.clock.Add(15 * time.Minute)
		tb.mustWrite(t, "tidy", nil)
		tb.refusedRefresh(t, rt, "the family's tokens are revoked", `subject "user-a"`)
	})
}

// listHookStorage runs onList once, after listing prefix and before
// returning the list.
type listHookStorage struct {
	logical.Storage
	prefix string
	once   sync.Once
	onList func()
}

func (h *listHookStorage) List(ctx context.Context, prefix string) ([]string, error) {
	out, err := h.Storage.List(ctx, prefix)
	if prefix == h.prefix {
		h.once.Do(h.onList)
	}
	return out, err
}

// TestTidyRefreshFamiliesSavedDuringScan: families started or refreshed
// while tidy's first full scan reads storage are tracked like the rest, and
// tidied once they expire.
func TestTidyRefreshFamiliesSavedDuringScan(t *testing.T) {
	tb := refreshBackend(t)
	before := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	ls := &listHookStorage{Storage: tb.storage, prefix: refreshPrefix, onList: func() {
		// Requests served while the scan reads the families it listed.
		tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-b"})
		tb.clock.Add(30 * time.Minute)
		tb.mustWrite(t, "refresh", map[string]any{"refresh_token": before}) // after the scan listed it
	}}
	if n, err := tb.tidyRefreshFamilies(t.Context(), ls); err != nil || n != 0 {
		t.Fatalf("first tidy: removed %d, %v", n, err)
	}
	tb.clock.Add(2 * time.Hour) // every family expired (refresh_ttl 1h)
	if n, err := tb.tidyRefreshFamilies(t.Context(), tb.storage); err != nil || n != 2 {
		t.Fatalf("tidy after expiry: removed %d, %v; want both families", n, err)
	}
	if left, _ := tb.storage.List(t.Context(), refreshPrefix); len(left) != 0 {
		t.Fatalf("families never tidied: %v", left)
	}
}

// TestTidyKeepsRevocationsOfLiveFamilies: tidy keeps a revocation entry past
// its expiry while a live refresh family may still need it to stay ended
// (its latest token is the revoked jti, or was issued at or before a
// subject or role revocation), and removes it once no live family does;
// entries no live family needs go on time; while tidy does not know every
// family, it removes no entry.
func TestTidyKeepsRevocationsOfLiveFamilies(t *testing.T) {
	tidy := func(t *testing.T, tb *testBackend) (removed, families any) {
		t.Helper()
		d := tb.mustWrite(t, "tidy", nil).Data
		return d["removed"], d["refresh_families_removed"]
	}
	for _, mode := range revokeModes {
		t.Run(mode.name, func(t *testing.T) {
			tb := longRefreshBackend(t)
			d := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data
			tb.clock.Add(time.Second)
			tb.mustWrite(t, "revoke", mode.data(d))
			tb.clock.Add(15 * time.Minute) // the entry has expired; the family (24h) has not, and was not refreshed
			if n, _ := tidy(t, tb); n != 0 {
				t.Fatalf("tidy removed %v revocation entries while a live family's latest token is covered", n)
			}
			// The kept entry's bucket is not read again each minute.
			cs := &countingStorage{Storage: tb.storage}
			tb.clock.Add(time.Minute)
			if n, err := tb.tidyRevocations(t.Context(), cs); n != 0 || err != nil || cs.reads.Load() != 0 {
				t.Fatalf("the next tidy removed %d (%v) with %d reads, want none", n, err, cs.reads.Load())
			}
			tb.refusedRefresh(t, d["refresh_token"].(string), "the family's tokens are revoked", mode.reason)

			tb.clock.Add(24 * time.Hour) // the family has expired
			if n, nf := tidy(t, tb); n != 1 || nf != 1 {
				t.Fatalf("after the family expired tidy removed %v entries and %v families, want 1 and 1", n, nf)
			}
		})
		t.Run(mode.name+" covering no live family", func(t *testing.T) {
			tb := longRefreshBackend(t)
			if mode.name == "jti" {
				// The family's latest token is no longer the revoked one.
				d := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data
				tb.clock.Add(time.Second)
				tb.mustWrite(t, "refresh", map[string]any{"refresh_token": d["refresh_token"]})
				tb.mustWrite(t, "revoke", mode.data(d))
			} else {
				// The family started after the revocation.
				tb.mustWrite(t, "revoke", mode.data(nil))
				tb.clock.Add(time.Second)
				tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"})
			}
			tb.clock.Add(15 * time.Minute)
			if n, _ := tidy(t, tb); n != 1 {
				t.Fatalf("tidy removed %v revocation entries, want the expired one no live family needs", n)
			}
		})
	}

	t.Run("families not all known", func(t *testing.T) {
		tb := longRefreshBackend(t)
		tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"})
		tb.clock.Add(time.Second)
		tb.mustWrite(t, "revoke", map[string]any{"jti": "not-a-family-token", "exp": tb.clock.Now().Add(5 * time.Minute).Unix()})
		tb.clock.Add(15 * time.Minute)
		// No scan of the families yet.
		if n, err := tb.tidyRevocations(t.Context(), tb.storage); err != nil || n != 0 {
			t.Fatalf("tidy before the families were scanned removed %d entries (%v), want none", n, err)
		}
		// A failed scan.
		fs := &failingStorage{Storage: tb.storage}
		fs.set(false, true, false)
		if _, err := tb.tidyRefreshFamilies(t.Context(), fs); err == nil {
			t.Fatal("the scan did not fail: the test proves nothing")
		}
		if n, err := tb.tidyRevocations(t.Context(), tb.storage); err != nil || n != 0 {
			t.Fatalf("tidy after a failed scan of the families removed %d entries (%v), want none", n, err)
		}
		if n, _ := tidy(t, tb); n != 1 {
			t.Fatalf("tidy with every family known removed %v entries, want 1", n)
		}
	})
}

// failNthPut fails the nth Put (1-based) made through it.
type failNthPut struct {
	logical.Storage
	n    int32
	puts atomic.Int32
}

func (f *failNthPut) Put(ctx context.Context, e *logical.StorageEntry) error {
	if f.puts.Add(1) == f.n {
		return errStorage
	}
	return f.Storage.Put(ctx, e)
}

// TestRefreshReuseSurvivesFailedWrites: reuse marks the family revoked
// before it revokes the family's access tokens one storage write at a
// time, so a write failing part way leaves no live family; presenting any of
// the family's refresh tokens again completes the access-token revocations,
// without duplicating entries.
func TestRefreshReuseSurvivesFailedWrites(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failPut  int32 // of the reuse request's writes: the family, then one per access token
		next     string
		nextWant string
	}{
		// Nothing was stored: the family is alive, and the reuse is seen
		// again.
		{"marking the family fails", 1, "stolen", "already used"},
		{"first token's revocation fails", 2, "thief's", "family was revoked"},
		{"second token's revocation fails", 3, "thief's", "family was revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := refreshBackend(t)
			first := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data
			stolen := first["refresh_token"].(string)
			second := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": stolen}).Data // the thief's
			thiefs := second["refresh_token"].(string)

			// The victim presents the used token; one write fails.
			inner := tb.storage
			tb.storage = &failNthPut{Storage: inner, n: tc.failPut}
			resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": stolen})
			if code := httpStatus(logical.UpdateOperation, "refresh", resp, err); code != 500 {
				t.Fatalf("reuse with write %d failing: status %d, want 500", tc.failPut, code)
			}
			tb.storage = inner

			rt := map[string]string{"stolen": stolen, "thief's": thiefs}[tc.next]
			tb.refusedRefresh(t, rt, tc.nextWant)
			for name, tok := range map[string]any{"first": first["token"], "thief's": second["token"]} {
				if active, reason, _ := tb.verify(t, tok.(string), ""); active || !strings.Contains(reason, "revoked") {
					t.Errorf("%s access token after the %s refresh token was presented again: active=%v %q", name, tc.next, active, reason)
				}
			}
			// Again: nothing more to write, and no entry twice.
			tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": thiefs}, "family was revoked")
			if jtis := tb.mustRead(t, "revocations").Data["jtis"].([]any); len(jtis) != 2 {
				t.Errorf("revocations list %d jtis, want the family's 2: %v", len(jtis), jtis)
			}
		})
	}
}

// TestTidyRefreshFamiliesKeepsChangesDuringReread: a family that another
// node changes while tidy re-reads it (after the read) is read again by the
// next tidy, not left in tidy's index as the older read: a revocation of
// the family's new latest token is kept while the family lives.
func TestTidyRefreshFamiliesKeepsChangesDuringReread(t *testing.T) {
	tb := longRefreshBackend(t)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	id, _, _ := strings.Cut(rt, ".")
	tb.mustWrite(t, "tidy", nil) // the first scan
	tb.Backend.InvalidateKey(t.Context(), refreshPrefix+id)

	// While tidy re-reads the family, the other node refreshes it again.
	inner := tb.storage
	hs := &hookGetStorage{Storage: inner, key: refreshPrefix + id, onGet: func() {
		f, err := loadFamily(t.Context(), inner, id)
		if err != nil {
			t.Fatal(err)
		}
		f.Tokens = append(f.Tokens, familyToken{JTI: "issued-elsewhere", Issuer: "https://vault.test/v1/jwt", Exp: tb.clock.Now().Add(5 * time.Minute)})
		f.LastIssuedAt = tb.clock.Now()
		entry, err := logical.StorageEntryJSON(refreshPrefix+id, f)
		if err != nil {
			t.Fatal(err)
		}
		if err := inner.Put(t.Context(), entry); err != nil {
			t.Fatal(err)
		}
		tb.Backend.InvalidateKey(t.Context(), refreshPrefix+id)
	}}
	if _, err := tb.tidyRefreshFamilies(t.Context(), hs); err != nil {
		t.Fatal(err)
	}
	tb.mustWrite(t, "revoke", map[string]any{"jti": "issued-elsewhere", "exp": tb.clock.Now().Add(5 * time.Minute).Unix()})
	tb.clock.Add(10 * time.Minute)
	if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != 0 {
		t.Fatalf("tidy removed %v entries: the revocation of a live family's latest token went", n)
	}
}

// TestRefreshResponseSchema: refresh's response schema lists exactly what a
// refresh returns (it never returns batch_results).
func TestRefreshResponseSchema(t *testing.T) {
	tb := refreshBackend(t)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	got := slices.Sorted(maps.Keys(tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data))
	op := tb.Route("refresh").Operations[logical.UpdateOperation].Properties()
	schema := slices.Sorted(maps.Keys(op.Responses[http.StatusOK][0].Fields))
	if !slices.Equal(got, schema) {
		t.Errorf("refresh returns %v; its response schema lists %v", got, schema)
	}
}

// TestRefreshEntity: a family issued for a Vault identity entity refreshes
// only while that entity exists and is enabled, as Vault accepts the
// entity's own tokens only then; whoever holds the refresh token (here
// the same backend, any caller) cannot outlast the identity.
func TestRefreshEntity(t *testing.T) {
	tb := refreshBackend(t)
	withEntity(tb)
	entity := tb.sys.EntityVal
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	tb.entityID = "" // a gateway's token without an entity presents it
	rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)

	disabled := proto.Clone(entity).(*logical.Entity)
	disabled.Disabled = true
	tb.sys.EntityVal = disabled
	before := tb.snapshot(t)
	tb.refusedRefresh(t, rt, `"refresh_token"`, "entity is disabled")
	if after := tb.snapshot(t); !maps.Equal(after, before) {
		t.Fatal("refusing a disabled entity's family changed storage")
	}
	// Enabled again (Vault's identity/entity/id/<id> disabled=false): the
	// family goes on, as the entity's tokens work again.
	tb.sys.EntityVal = entity
	rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)

	tb.sys.EntityVal = nil // deleted
	tb.refusedRefresh(t, rt, `"refresh_token"`, "entity no longer exists")

	// A performance standby may not know a new entity yet: it sends the
	// refresh to the active node, as Vault does a request of such a token.
	tb.sys.ReplicationStateVal = consts.ReplicationPerformanceStandby
	tb.System().(*cachedSystemView).until = time.Time{}
	if _, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}); err != logical.ErrReadOnly {
		t.Fatalf("refresh on a perf standby of an entity it does not know: err=%v, want logical.ErrReadOnly", err)
	}
	tb.sys.ReplicationStateVal = 0
	tb.System().(*cachedSystemView).until = time.Time{}

	// A lookup failure is a logged 500, never a refresh.
	tb.sys.EntityVal = entity
	failing := &entityErrSystemView{StaticSystemView: tb.sys}
	tb.System().(*cachedSystemView).SystemView = failing
	resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt})
	if code := httpStatus(logical.UpdateOperation, "refresh", resp, err); code != http.StatusInternalServerError {
		t.Fatalf("entity lookup failing: status %d (%v %v), want 500", code, resp, err)
	}
	if !strings.Contains(tb.logs.String(), "looking up the family's identity entity failed") {
		t.Fatal("the failed entity lookup was not logged")
	}
	tb.System().(*cachedSystemView).SystemView = tb.sys
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})
}

type entityErrSystemView struct{ *logical.StaticSystemView }

func (entityErrSystemView) EntityInfo(string) (*logical.Entity, error) {
	return nil, errors.New("identity store unavailable")
}

// TestRefreshRoleRecreated: a role deleted and created again under the
// same name is a new role; the old one's refresh families end, however
// alike the two are.
func TestRefreshRoleRecreated(t *testing.T) {
	role := map[string]any{"key": "k", "ttl": "5m", "refresh_ttl": "1h", "allowed_subjects": "user-*"}
	tb := refreshBackendWithRole(t, maps.Clone(role))
	tb.clock.Add(time.Second)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	// Changing the role keeps its families.
	tb.clock.Add(time.Second)
	tb.mustWrite(t, "roles/r", map[string]any{"ttl": "4m"})
	rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)

	tb.clock.Add(time.Second)
	if _, err := tb.request(t, logical.DeleteOperation, "roles/r", nil); err != nil {
		t.Fatal(err)
	}
	tb.mustWrite(t, "roles/r", maps.Clone(role))
	before := tb.snapshot(t)
	tb.refusedRefresh(t, rt, `"refresh_token"`, `role "r" was deleted and created again`)
	if after := tb.snapshot(t); !maps.Equal(after, before) {
		t.Fatal("refusing a family of a deleted role changed storage")
	}
	// The new role's own families refresh.
	rt = tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})
}

// TestRefreshRoleRecreatedDuringRefresh: the role a refresh checks and the
// one it issues under are read apart; a role created again in between is
// caught on the one the token was issued under, and no token goes out.
func TestRefreshRoleRecreatedDuringRefresh(t *testing.T) {
	role := map[string]any{"key": "k", "ttl": "5m", "refresh_ttl": "1h"}
	tb := refreshBackendWithRole(t, maps.Clone(role))
	withEntity(tb)
	tb.clock.Add(time.Second)
	rt := tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string)
	tb.clock.Add(time.Second)
	// The entity lookup comes between the two reads of the role.
	hook := &entityHookSystemView{StaticSystemView: tb.sys, hook: func() {
		if _, err := tb.request(t, logical.DeleteOperation, "roles/r", nil); err != nil {
			t.Error(err)
		}
		tb.mustWrite(t, "roles/r", maps.Clone(role))
	}}
	tb.System().(*cachedSystemView).SystemView = hook
	tb.refusedRefresh(t, rt, `role "r" was deleted and created again`)
}

// entityHookSystemView calls hook once, on the first EntityInfo.
type entityHookSystemView struct {
	*logical.StaticSystemView
	once sync.Once
	hook func()
}

func (s *entityHookSystemView) EntityInfo(id string) (*logical.Entity, error) {
	s.once.Do(s.hook)
	return s.StaticSystemView.EntityInfo(id)
}

// TestRefreshRoleWithoutCreatedAt: roles stored without created_at (by an
// engine before it, or rewritten by one after a rollback, which drops the
// members it does not know) keep their families; such a role gets a
// created_at bound at its next write, and a role created again after that
// still ends the old families.
func TestRefreshRoleWithoutCreatedAt(t *testing.T) {
	tb := refreshBackend(t)
	tb.clock.Add(time.Second)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	strip := func(key string, members ...string) {
		e, err := tb.storage.Get(t.Context(), key)
		if err != nil || e == nil {
			t.Fatalf("reading %s: %v", key, err)
		}
		var m map[string]any
		if err := json.Unmarshal(e.Value, &m); err != nil {
			t.Fatal(err)
		}
		for _, member := range members {
			delete(m, member)
		}
		v, _ := json.Marshal(m)
		if err := tb.storage.Put(t.Context(), &logical.StorageEntry{Key: key, Value: v}); err != nil {
			t.Fatal(err)
		}
		tb.backend.Invalidate(t.Context(), key)
	}
	// An older engine rewrote the role (a rollback, say).
	strip(rolePrefix+"r", "created_at", "created_before")
	tb.clock.Add(time.Second)
	rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)
	// Its next write here bounds its creation; the family goes on.
	tb.clock.Add(time.Second)
	tb.mustWrite(t, "roles/r", map[string]any{"ttl": "4m"})
	if r, _ := loadRole(t.Context(), tb.storage, "r"); r == nil || !r.CreatedAt.Equal(tb.clock.Now()) || !r.CreatedBefore {
		t.Fatalf("a role stored without created_at did not get a bound at its next write: %#v", r)
	}
	tb.clock.Add(time.Second)
	rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)

	// Deleted and created again: the new role was created after the family.
	tb.clock.Add(time.Second)
	if _, err := tb.request(t, logical.DeleteOperation, "roles/r", nil); err != nil {
		t.Fatal(err)
	}
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "5m", "refresh_ttl": "1h", "allowed_subjects": "user-*"})
	tb.refusedRefresh(t, rt, `role "r" was deleted and created again`)
}

// TestRefreshIDInOtherCase: on storage that ignores case, a family id in
// other case reads the family but is not its id: refused as unknown, so it
// cannot take another lock than the family's own refreshes, and it does
// not count as reuse.
func TestRefreshIDInOtherCase(t *testing.T) {
	tb := refreshBackend(t)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	id, secret, _ := strings.Cut(rt, ".")
	// The first letter flipped (not the last character, whose low bits a
	// strict decoder checks).
	flipped := []byte(id)
	for i, c := range flipped[:len(flipped)-1] {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			flipped[i] ^= 0x20
			break
		}
	}
	if string(flipped) == id {
		t.Fatalf("family id %q has no letter to flip", id) // fixed seed: never
	}
	tb.storage = &foldingStorage{Storage: tb.storage}
	tb.refusedRefresh(t, string(flipped)+"."+secret, "unknown or expired")
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})
}

// foldingStorage reads refresh/ entries ignoring case, as the file
// backend does on macOS and Windows.
type foldingStorage struct{ logical.Storage }

func (s *foldingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if strings.HasPrefix(key, refreshPrefix) {
		keys, err := s.Storage.List(ctx, refreshPrefix)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if strings.EqualFold(refreshPrefix+k, key) {
				key = refreshPrefix + k
				break
			}
		}
	}
	return s.Storage.Get(ctx, key)
}

// TestRefreshTokenCap: a family holds at most maxFamilyTokens unexpired
// access tokens; refreshing past that is a 429 that changes nothing, and
// works again once the oldest expires.
func TestRefreshTokenCap(t *testing.T) {
	tb := refreshBackend(t)
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	for range maxFamilyTokens - 1 {
		rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)
	}
	before := tb.snapshot(t)
	resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt})
	if code := httpStatus(logical.UpdateOperation, "refresh", resp, err); code != http.StatusTooManyRequests {
		t.Fatalf("refresh past the cap: status %d (%v %v), want 429", code, resp, err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"refresh_token"`) || !strings.Contains(msg, "100 unexpired access tokens") || !strings.Contains(msg, "2026-11-23T12:05:") {
		t.Fatalf("429 message %q should name the field, the cap and when to retry", msg)
	}
	if after := tb.snapshot(t); !maps.Equal(after, before) {
		t.Fatal("a refused refresh changed storage")
	}
	tb.clock.Add(5*time.Minute + verifyLeeway)
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})
}

// TestRefreshOtherFamiliesDoNotWait: a refresh waiting on its signer (a
// slow KMS call) holds up only its own family, not the mount's other
// refreshes.
func TestRefreshOtherFamiliesDoNotWait(t *testing.T) {
	tb := refreshBackend(t)
	var rts []string
	for range 2 * familyLockStripes {
		rts = append(rts, tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string))
	}
	// Two families on different stripes.
	a := rts[0]
	aID, _, _ := strings.Cut(a, ".")
	var b string
	for _, rt := range rts[1:] {
		if id, _, _ := strings.Cut(rt, "."); tb.familyLock(id) != tb.familyLock(aID) {
			b = rt
			break
		}
	}
	if b == "" {
		t.Fatal("no two families on different stripes")
	}
	// Hold a's lock, as a refresh of a waiting on KMS does.
	mu := tb.familyLock(aID)
	mu.Lock()
	done := make(chan error, 1)
	go func() {
		_, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": b})
		done <- err
	}()
	err := <-done // deadlocks (and the test times out) if b waits for a
	mu.Unlock()
	if err != nil {
		t.Fatalf("refresh of another family: %v", err)
	}
}

// TestRefreshReuseAfterFamilyEnded: a used refresh token presented after
// its family ended at refresh_max_ttl still revokes the family's access
// tokens that live on, since the latest may be a thief's; the latest
// refresh token presented then is just expired.
func TestRefreshReuseAfterFamilyEnded(t *testing.T) {
	tb := refreshBackendWithRole(t, map[string]any{"ttl": "5m", "refresh_ttl": "1h", "refresh_max_ttl": "2h"})
	rt0 := tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string) // 12:00
	tb.clock.Add(59 * time.Minute)                                        // 12:59
	rt0 = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt0}).Data["refresh_token"].(string)
	tb.clock.Add(59 * time.Minute) // 13:58
	stolen := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt0}).Data
	if stolen["refresh_expires_at"] != "2026-11-23T14:00:00Z" {
		t.Fatalf("refresh_expires_at %v, want the family's end at 14:00", stolen["refresh_expires_at"])
	}
	tb.clock.Add(3 * time.Minute) // 14:01: the family has ended; the 13:58 token lives to 14:03

	before := tb.snapshot(t)
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": stolen["refresh_token"]}, "expired")
	if after := tb.snapshot(t); !maps.Equal(after, before) {
		t.Fatal("the latest refresh token of an ended family changed storage")
	}
	// Tidy keeps the ended family while its access tokens live.
	if n := tb.mustWrite(t, "tidy", nil).Data["refresh_families_removed"]; n != 0 {
		t.Fatalf("tidy removed %v families while an access token of an ended family lived", n)
	}
	tb.refusedRefresh(t, rt0, "already used")
	if active, reason, _ := tb.verify(t, stolen["token"].(string), ""); active || !strings.Contains(reason, "revoked") {
		t.Fatalf("the access token of an ended family's reused refresh token: active=%v %s, want revoked", active, reason)
	}
	// Once every access token has expired there is nothing to revoke.
	tb.clock.Add(10 * time.Minute)
	before = tb.snapshot(t)
	tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt0}, "expired")
	if after := tb.snapshot(t); !maps.Equal(after, before) {
		t.Fatal("a refused refresh changed storage")
	}
	if n := tb.mustWrite(t, "tidy", nil).Data["refresh_families_removed"]; n != 1 {
		t.Fatalf("tidy removed %v families once the ended family's tokens expired, want 1", n)
	}
}

// TestRefreshAccessTokensLiveThroughLeeway: a family's access token counts
// as live until its exp plus verify's leeway, as long as jwt/verify
// accepts it: a used refresh token presented then, after the family has
// ended, still revokes it, and tidy keeps the family until then.
func TestRefreshAccessTokensLiveThroughLeeway(t *testing.T) {
	tb := refreshBackendWithRole(t, map[string]any{"ttl": "5m", "refresh_ttl": "1h", "refresh_max_ttl": "2h"})
	rt := tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string) // 12:00
	tb.clock.Add(59 * time.Minute)                                       // 12:59
	used := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)
	tb.clock.Add(59 * time.Minute) // 13:58: the family ends at 14:00, this token at 14:03
	stolen := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": used}).Data["token"].(string)

	tb.clock.Add(5*time.Minute + verifyLeeway - time.Second) // 14:03:29
	if active, reason, _ := tb.verify(t, stolen, ""); !active {
		t.Fatalf("token 29s past its exp: inactive (%s), want active within verify's leeway", reason)
	}
	if n := tb.mustWrite(t, "tidy", nil).Data["refresh_families_removed"]; n != 0 {
		t.Fatalf("tidy removed %v families while an access token verified within the leeway", n)
	}
	tb.refusedRefresh(t, used, "already used")
	if active, reason, _ := tb.verify(t, stolen, ""); active || !strings.Contains(reason, "revoked") {
		t.Fatalf("token of a reused refresh token within the leeway: active=%v %s, want revoked", active, reason)
	}
	tb.clock.Add(time.Second) // 14:03:30: exp plus the leeway
	if n := tb.mustWrite(t, "tidy", nil).Data["refresh_families_removed"]; n != 1 {
		t.Fatalf("tidy removed %v families once every access token was past the leeway, want 1", n)
	}
}

// TestRefreshPrunesExpiredTokens: a refresh drops from the family's entry
// the access tokens past their exp plus verify's leeway, so the entry does
// not grow with every refresh, and keeps those within it.
func TestRefreshPrunesExpiredTokens(t *testing.T) {
	tb := refreshBackend(t) // ttl 5m
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	id, _, _ := strings.Cut(rt, ".")
	tokens := func() int {
		t.Helper()
		f, err := loadFamily(t.Context(), tb.storage, id)
		if err != nil || f == nil {
			t.Fatalf("loading family: %v %v", f, err)
		}
		return len(f.Tokens)
	}
	for range 3 {
		tb.clock.Add(5*time.Minute + verifyLeeway) // the latest token is exactly past the leeway
		rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)
		if n := tokens(); n != 1 {
			t.Fatalf("family holds %d access tokens, want 1: expired ones are pruned", n)
		}
	}
	tb.clock.Add(5 * time.Minute) // the latest token is at its exp, within the leeway
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})
	if n := tokens(); n != 2 {
		t.Fatalf("family holds %d access tokens, want 2: one at its exp is still within the leeway", n)
	}
}

// TestRefreshAfterFamilyEndedChangesNothing: after a family has ended, a
// used refresh token of it (which, while an access token of the family
// lives, revokes them) is refused as expired, changing nothing, when the family id comes in other
// case (on storage that ignores case: it is not the family's id), when the
// family was already revoked for reuse, or once every access token of it
// is past verify's leeway.
func TestRefreshAfterFamilyEndedChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		present func(t *testing.T, tb *testBackend, used string) string
	}{
		{"id in other case", func(t *testing.T, tb *testBackend, used string) string {
			id, secret, _ := strings.Cut(used, ".")
			tb.storage = &foldingStorage{Storage: tb.storage}
			return flipFirstLetter(t, id) + "." + secret
		}},
		{"every access token expired", func(t *testing.T, tb *testBackend, used string) string {
			tb.clock.Add(2*time.Minute + verifyLeeway) // 13:03:30: nothing left to revoke
			return used
		}},
		{"already revoked for reuse", func(t *testing.T, tb *testBackend, used string) string {
			tb.clock.Add(-2 * time.Minute) // 12:59, before the family ends
			tb.refusedRefresh(t, used, "already used")
			tb.clock.Add(2 * time.Minute)
			return used
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := refreshBackendWithRole(t, map[string]any{"ttl": "5m", "refresh_ttl": "1h", "refresh_max_ttl": "1h"})
			used := tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string) // 12:00; the family ends at 13:00
			tb.clock.Add(58 * time.Minute)
			tb.mustWrite(t, "refresh", map[string]any{"refresh_token": used}) // 12:58: a token until 13:03
			tb.clock.Add(3 * time.Minute)                                     // 13:01
			rt := tc.present(t, tb, used)
			tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, "unknown or expired")
		})
	}
}

// flipFirstLetter returns id with the case of its first letter (not its
// last character, whose low bits a strict decoder checks) flipped.
func flipFirstLetter(t *testing.T, id string) string {
	t.Helper()
	flipped := []byte(id)
	for i, c := range flipped[:len(flipped)-1] {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			flipped[i] ^= 0x20
			return string(flipped)
		}
	}
	t.Fatalf("family id %q has no letter to flip", id) // fixed seed: never
	return ""
}

// TestRefreshRoleRecreatedUnlike: a family of a role deleted and created
// again is refused for that, before anything the new role would refuse
// the stored request for (and before a token is signed under it).
func TestRefreshRoleRecreatedUnlike(t *testing.T) {
	for name, recreated := range map[string]map[string]any{
		"no refresh tokens":      {"key": "k", "ttl": "5m", "refresh_ttl": 0, "allowed_subjects": "user-*"},
		"other allowed_subjects": {"key": "k", "ttl": "5m", "refresh_ttl": "1h", "allowed_subjects": "svc-*"},
	} {
		t.Run(name, func(t *testing.T) {
			tb := refreshBackendWithRole(t, map[string]any{"ttl": "5m", "refresh_ttl": "1h", "allowed_subjects": "user-*"})
			rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
			tb.clock.Add(time.Second)
			if _, err := tb.request(t, logical.DeleteOperation, "roles/r", nil); err != nil {
				t.Fatal(err)
			}
			tb.mustWrite(t, "roles/r", recreated)
			tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, `role "r" was deleted and created again`)
		})
	}
}

// TestRefreshTokenCapRetryAfterOldest: the 429 of a family at its token
// cap names when its oldest access token expires (plus verify's leeway),
// and the cap frees a slot then, not before.
func TestRefreshTokenCapRetryAfterOldest(t *testing.T) {
	tb := refreshBackend(t) // ttl 5m
	// The oldest token at 12:00:00, expiring at 12:05:00.
	rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
	for range maxFamilyTokens - 1 {
		tb.clock.Add(time.Second) // the latest at 12:01:39
		rt = tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}).Data["refresh_token"].(string)
	}
	refuse := func() {
		t.Helper()
		resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt})
		if code := httpStatus(logical.UpdateOperation, "refresh", resp, err); code != http.StatusTooManyRequests {
			t.Fatalf("refresh past the cap at %s: status %d (%v %v), want 429", tb.clock.Now().Format(time.TimeOnly), code, resp, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "refresh again after 2026-11-23T12:05:30Z") {
			t.Fatalf("429 message %q should name when the oldest token (exp 12:05:00) is past the leeway", msg)
		}
	}
	refuse()
	tb.clock.Add(time.Date(2026, 11, 23, 12, 5, 29, 0, time.UTC).Sub(tb.clock.Now()))
	refuse()
	tb.clock.Add(time.Second) // 12:05:30
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt})
}

// TestRefreshMaxTTLLoweredDuringRefresh: the role a refresh checks and the
// one it issues under are read apart; a refresh_max_ttl lowered in between
// below the family's age is caught on the one the token was issued under,
// and no token goes out.
func TestRefreshMaxTTLLoweredDuringRefresh(t *testing.T) {
	tb := refreshBackendWithRole(t, map[string]any{"ttl": "5m", "refresh_ttl": "1h"})
	withEntity(tb)
	rt := tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string)
	tb.clock.Add(40 * time.Minute)
	// The entity lookup comes between the two reads of the role.
	hook := &entityHookSystemView{StaticSystemView: tb.sys, hook: func() {
		tb.mustWrite(t, "roles/r", map[string]any{"refresh_max_ttl": "30m", "refresh_ttl": "30m"})
	}}
	tb.System().(*cachedSystemView).SystemView = hook
	before := tb.snapshot(t)
	tb.refusedRefresh(t, rt, "refresh_max_ttl")
	after := tb.snapshot(t)
	delete(before, rolePrefix+"r")
	delete(after, rolePrefix+"r")
	if !maps.Equal(after, before) {
		t.Fatal("a refresh refused for refresh_max_ttl changed the family")
	}
}

// TestTidyEndedFamilyWithLiveTokens: tidy keeps a family that has ended
// while an access token of it lives (a used refresh token presented then
// still revokes it), without reading it again at every run, also when
// another node changed it; and removes it once that token is past verify's
// leeway.
func TestTidyEndedFamilyWithLiveTokens(t *testing.T) {
	tb := refreshBackendWithRole(t, map[string]any{"ttl": "5m", "refresh_ttl": "1h", "refresh_max_ttl": "1h"})
	rt := tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string) // 12:00; the family ends at 13:00
	id, _, _ := strings.Cut(rt, ".")
	tb.clock.Add(58 * time.Minute)
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}) // 12:58: a token until 13:03
	tb.clock.Add(3 * time.Minute)                                   // 13:01
	cs := &countingStorage{Storage: tb.storage}
	tidy := func(wantRemoved int, wantReads int64, when string) {
		t.Helper()
		cs.reads.Store(0)
		n, err := tb.tidyRefreshFamilies(t.Context(), cs)
		if err != nil {
			t.Fatal(err)
		}
		if n != wantRemoved || cs.reads.Load() != wantReads {
			t.Fatalf("%s: tidy removed %d families with %d reads, want %d with %d", when, n, cs.reads.Load(), wantRemoved, wantReads)
		}
	}
	tidy(0, 2, "first tidy (a List and the family)")
	tidy(0, 0, "second tidy (nothing due before 13:03:30)")
	tb.Backend.InvalidateKey(t.Context(), refreshPrefix+id) // another node changed it
	tidy(0, 1, "after an invalidation")
	tidy(0, 0, "after the family was read again")
	tb.clock.Add(2*time.Minute + verifyLeeway) // 13:03:30
	tidy(1, 1, "once the token is past the leeway")
}

// TestRefreshMaxTTLRefusedFirst: a family that has reached its role's
// refresh_max_ttl (lowered since its last refresh, to exactly its age here)
// is refused for that, changing nothing, before a revocation of its
// subject would mark it revoked or the role's policy would refuse its
// stored request.
func TestRefreshMaxTTLRefusedFirst(t *testing.T) {
	for name, change := range map[string]func(t *testing.T, tb *testBackend){
		"subject revoked": func(t *testing.T, tb *testBackend) { tb.mustWrite(t, "revoke", map[string]any{"subject": "user-a"}) },
		"subject no longer allowed": func(t *testing.T, tb *testBackend) {
			tb.mustWrite(t, "roles/r", map[string]any{"allowed_subjects": "svc-*"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			tb := refreshBackend(t) // refresh_ttl 1h
			rt := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data["refresh_token"].(string)
			tb.clock.Add(30 * time.Minute)
			tb.mustWrite(t, "roles/r", map[string]any{"refresh_max_ttl": "30m", "refresh_ttl": "30m"})
			change(t, tb)
			tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}, "refresh_max_ttl")
		})
	}
}
