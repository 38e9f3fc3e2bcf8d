package backend

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestRevokeLimitsAtTheirEdges: a subject or jti of 1024 bytes, the most a
// token of this engine can carry, is revoked (TestRevokeBadInput refuses
// 1025).
func TestRevokeLimitsAtTheirEdges(t *testing.T) {
	tb := getTestBackend(t)
	for _, data := range []map[string]any{
		{"subject": strings.Repeat("s", maxSubjectLen)},
		{"jti": strings.Repeat("j", maxSubjectLen), "exp": tb.clock.Now().Unix() + 60},
	} {
		if resp := tb.mustWrite(t, "revoke", data); len(resp.Warnings) != 0 {
			t.Fatalf("warnings %q", resp.Warnings)
		}
	}
	if n := tb.mustRead(t, "revocations").Data["total"].(map[string]any); n["jtis"] != 1 || n["subjects"] != 1 {
		t.Fatalf("revocations stored: %v, want one jti and one subject", n)
	}
}

// TestRevokeIsLogged: every stored revocation leaves an info line saying
// what was revoked (kind, issuer, role, jti) for operators, and never the
// token it was given. A revocation of an expired token stores nothing and
// logs nothing.
func TestRevokeIsLogged(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	tok := tb.issue(t, "r", nil)
	tb.mustWrite(t, "tidy", nil) // knows every refresh family: an expired jti is not stored
	tb.mustWrite(t, "revoke", map[string]any{"jti": "gone", "exp": 1000000000})
	tb.mustWrite(t, "revoke", map[string]any{"token": tok.data["token"]})
	tb.mustWrite(t, "revoke", map[string]any{"role": "r"})
	tb.mustWrite(t, "revoke", map[string]any{"subject": "svc"})
	type line struct {
		Level   string `json:"@level"`
		Message string `json:"@message"`
		Kind    string `json:"kind"`
		Issuer  string `json:"issuer"`
		Role    string `json:"role"`
		JTI     string `json:"jti"`
	}
	var got []line
	for l := range strings.Lines(tb.logs.String()) {
		var e line
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, l)
		}
		if e.Message == "revoked" {
			got = append(got, e)
		}
	}
	want := []line{
		{"info", "revoked", "jti", "https://vault.test/v1/jwt", "", tok.claims["jti"].(string)},
		{"info", "revoked", "role", "", "r", ""},
		{"info", "revoked", "subject", "https://vault.test/v1/jwt", "", ""},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("revoke log lines:\n%+v\nwant\n%+v", got, want)
	}
	assertNoSecretsInLogs(t, tb)
}

// TestRevocationsPageBounds: jwt/revocations takes a limit of 1 to 100000,
// and as "after" only a "next" it gave: a kind, "/", and three hex digits.
func TestRevocationsPageBounds(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustRead(t, "revocations") // the default limit
	tb.mustWrite(t, "revoke", map[string]any{"subject": "s"})
	for _, limit := range []int{1, maxRevocationsPage} {
		resp, err := tb.request(t, logical.ReadOperation, "revocations", map[string]any{"limit": limit})
		if err != nil || resp.IsError() || len(resp.Data["subjects"].([]any)) != 1 {
			t.Fatalf("limit %d: %v %v", limit, resp, err)
		}
	}
	tb.wantBadRequest(t, logical.ReadOperation, "revocations", map[string]any{"limit": maxRevocationsPage + 1}, `invalid "limit" 100001`)
	for _, after := range []string{"jti/1", "sub/0001", "role/fff0", "jti/", "subject/000", "sub/xyz", "sub000"} {
		tb.wantBadRequest(t, logical.ReadOperation, "revocations", map[string]any{"after": after}, `invalid "after"`)
	}
	for _, after := range []string{"jti/000", "sub/fff", "role/a0b"} {
		resp, err := tb.request(t, logical.ReadOperation, "revocations", map[string]any{"after": after})
		if err != nil || resp.IsError() {
			t.Fatalf("after %q: %v %v", after, resp, err)
		}
	}
}

// TestTidyRemovesEachEntryWhenItExpires: tidy removes an entry as soon as
// its tokens have all expired (exp + 30s), not a second earlier or later,
// also when entries that expire later share its storage bucket (tidy reads
// a bucket once its earliest entry is due).
func TestTidyRemovesEachEntryWhenItExpires(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "tidy", nil) // learns every refresh family: none
	now := tb.clock.Now().Unix()
	var inBucket []string // jtis in the bucket of "early"
	bucket := (&revocation{Issuer: "https://vault.test/v1/jwt", JTI: "early"}).key().bucket()
	for i := 0; len(inBucket) < 2; i++ {
		if jti := fmt.Sprintf("j-%d", i); (&revocation{Issuer: "https://vault.test/v1/jwt", JTI: jti}).key().bucket() == bucket {
			inBucket = append(inBucket, jti)
		}
	}
	tb.mustWrite(t, "revoke", map[string]any{"jti": inBucket[1], "exp": now + 3600})
	tb.mustWrite(t, "revoke", map[string]any{"jti": "early", "exp": now + 60})
	tb.mustWrite(t, "revoke", map[string]any{"jti": inBucket[0], "exp": now + 61})
	for _, step := range []struct {
		at      int64 // seconds after now
		removed int
		left    int
	}{
		{89, 0, 3},   // early's exp + 30s leeway is not yet past
		{90, 1, 2},   // early goes; the one a second later stays
		{91, 1, 1},   // it goes
		{3629, 0, 1}, // the last stays until its own exp + 30s
		{3630, 1, 0},
	} {
		tb.clock.Add(time.Duration(now+step.at-tb.clock.Now().Unix()) * time.Second)
		if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != step.removed {
			t.Fatalf("at +%ds: tidy removed %v, want %d", step.at, n, step.removed)
		}
		if n := tb.mustRead(t, "revocations").Data["total"].(map[string]any)["jtis"]; n != step.left {
			t.Fatalf("at +%ds: %v revocations left, want %d", step.at, n, step.left)
		}
	}
}

// TestTidyRecheckOfHeldBucket: a bucket whose expired entry tidy keeps for
// a live refresh family is read again when its next entry expires, when
// that is sooner than the hourly recheck: that entry goes on time.
func TestTidyRecheckOfHeldBucket(t *testing.T) {
	tb := longRefreshBackend(t)
	start := tb.clock.Now()
	d := tb.mustWrite(t, "issue/r", map[string]any{"subject": "user-a"}).Data
	tb.mustWrite(t, "revoke", map[string]any{"token": d["token"]}) // the family's latest token: held while it lives
	other := jtiInSameBucket(d["jti"].(string))
	tb.mustWrite(t, "revoke", map[string]any{"jti": other, "exp": start.Add(30 * time.Minute).Unix()})
	for _, step := range []struct {
		at      time.Duration
		removed int
	}{
		{15 * time.Minute, 0},                // the token's entry has expired but is held; the other has not expired
		{30*time.Minute + 30*time.Second, 1}, // the other's exp + 30s: it goes, not an hour after the last read
		{2 * time.Hour, 0},                   // the held entry stays while the family (24h) lives
	} {
		tb.clock.Add(start.Add(step.at).Sub(tb.clock.Now()))
		if n := tb.mustWrite(t, "tidy", nil).Data["removed"]; n != step.removed {
			t.Fatalf("at +%s: tidy removed %v, want %d", step.at, n, step.removed)
		}
	}
}

// TestRevocationsPageStopsAtLimit: a page ends at the first bucket that
// starts at or past limit entries, and the next page goes on from there.
func TestRevocationsPageStopsAtLimit(t *testing.T) {
	tb := getTestBackend(t)
	key := func(sub string) revKey { return (&revocation{Issuer: "https://vault.test/v1/jwt", Subject: sub}).key() }
	subs := []string{"s-0"}
	for i := 1; len(subs) < 3; i++ {
		if s := fmt.Sprintf("s-%d", i); !slices.ContainsFunc(subs, func(o string) bool { return key(o).bucket() == key(s).bucket() }) {
			subs = append(subs, s)
		}
	}
	for _, s := range subs {
		tb.mustWrite(t, "revoke", map[string]any{"subject": s})
	}
	var seen []string
	after := ""
	for page := 1; ; page++ {
		resp, err := tb.request(t, logical.ReadOperation, "revocations", map[string]any{"limit": 1, "after": after})
		if err != nil || resp.IsError() {
			t.Fatalf("page %d: %v %v", page, resp, err)
		}
		got := resp.Data["subjects"].([]any)
		if len(got) != 1 {
			t.Fatalf("page %d holds %d subjects, want 1 (one bucket each)", page, len(got))
		}
		seen = append(seen, got[0].(map[string]any)["sub"].(string))
		next, more := resp.Data["next"].(string)
		if !more {
			break
		}
		after = next
	}
	if slices.Sort(seen); !slices.Equal(seen, subs) {
		t.Fatalf("pages held %v, want %v", seen, subs)
	}
}

// TestRevocationLoadWarnsOfUnknownEntries: a storage entry under a
// revocation prefix that is not a bucket (three hex digits) is logged and
// left out of the index.
func TestRevocationLoadWarnsOfUnknownEntries(t *testing.T) {
	tb := getTestBackend(t)
	for _, key := range []string{"revoked/jti/1", "revoked/sub/0001", "revoked/role/xyz"} {
		if err := tb.storage.Put(t.Context(), &logical.StorageEntry{Key: key, Value: []byte(`{"entries":{}}`)}); err != nil {
			t.Fatal(err)
		}
	}
	tb.mustRead(t, "revocations")
	warned := map[string]string{}
	for l := range strings.Lines(tb.logs.String()) {
		var e struct {
			Level   string `json:"@level"`
			Message string `json:"@message"`
			Key     string `json:"key"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, l)
		}
		if e.Message == "ignoring an unknown revocation storage entry" {
			warned[e.Key] = e.Level
		}
	}
	want := map[string]string{"revoked/jti/1": "warn", "revoked/sub/0001": "warn", "revoked/role/xyz": "warn"}
	if !maps.Equal(warned, want) {
		t.Fatalf("warnings of unknown entries: %v, want %v", warned, want)
	}
}
