package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// The storage format's golden data: testdata/storage/<version>/entries
// holds one file per storage entry, named by its storage key plus ".json"
// and holding exactly the bytes the engine wrote there; testonly-inputs.json
// holds what a test needs that storage has only a hash of (refresh tokens).
// Every key in it is a test-only key, made from a fixed seed.
//
// -update writes the current format's directory if it does not exist, by
// driving the API of a test backend over a fixed clock and a fixed random
// seed. It never overwrites: a released version is locked, and a change to
// the stored format gets a new version directory and a migration.
var updateStorageFixtures = flag.Bool("update", false, "write testdata/storage/"+storageFormatVersion+" from the current code, if it does not exist (TestStorageFormatGenerator)")

const (
	// storageFormatVersion is the stored format the current code writes.
	storageFormatVersion = "v1"
	// storageFixturesDir holds a directory per stored format version.
	storageFixturesDir = "testdata/storage"
	// storageInputsFile holds a version's test-only inputs.
	storageInputsFile = "testonly-inputs.json"
)

// storageInputs is what TestStorageFormat needs besides storage: the
// refresh tokens of the stored families, whose secrets are stored only as
// hashes. All of it is test-only material.
type storageInputs struct {
	Note string `json:"note"`
	// RefreshTokens by family: "live" (role refresh), "live_entity" (role
	// full, with an identity entity), "reused" (revoked after reuse: its
	// latest token) and "ended" (ended by the revocation of its latest
	// access token).
	RefreshTokens map[string]string `json:"refresh_tokens"`
}

// Fixture settings the generator writes and TestStorageFormat expects.
const (
	fixtureIssuer      = "https://vault.test/v1/jwt"
	fixtureRoleIssuer  = "https://full.vault.test/v1/jwt"
	fixtureRevokedJTI  = "testonly-revoked-jti"
	fixtureRevokedSub  = "user-revoked"
	fixtureFarFuture   = 4102444800 // 2100-01-01T00:00:00Z
	fixtureKMSRegion   = "eu-west-1"
	fixtureKMSAccount  = "111122223333"
	fixtureKMSEndpoint = "https://kms.eu-west-1.test-only.invalid"
	fixtureAWSEndpoint = "https://kms.test-only.invalid"
	fixtureAccessKey   = "AKIATESTONLYFIXTURE0"
	fixtureSecretKey   = "TEST-ONLY-fixture-secret-key-not-a-real-one"
	fixtureSession     = "TEST-ONLY-fixture-session-token"
	fixtureRoleARN     = "arn:aws:iam::111122223333:role/test-only-fixture"
)

// TestStorageFormatGenerator runs the fixture generator, which must be
// deterministic. With -update it writes the current format's fixtures (it
// comes before TestStorageFormatV1 in this package's files, so `go test
// ./backend -run TestStorageFormat -update` writes, then checks). Without
// it, it checks that what the current code writes still has every kind
// of entry and every JSON member path of the current version's fixtures.
// Values are not compared (keys, jtis and refresh secrets come from the Go
// version's key generation). So a renamed or dropped member, or a kind of
// entry no longer written, fails here even where no rewrite in
// TestStorageFormatV1Rewrite reaches it. A new member or kind passes (a
// rename is caught as the old name's absence): entries written before it
// lack it, which TestStorageFormatV1 checks they still work without.
func TestStorageFormatGenerator(t *testing.T) {
	entries, inputs := generateStorageFixtures(t)
	// A second run from the same seed must write the same bytes, or the
	// files would change on every regeneration.
	again, againInputs := generateStorageFixtures(t)
	if diff := diffEntries(entries, again); diff != "" || !equalJSON(t, inputs, againInputs) {
		t.Fatalf("the generator is not deterministic: %s", diff)
	}
	dir := filepath.Join(storageFixturesDir, storageFormatVersion)
	if !*updateStorageFixtures {
		fixtures, _ := loadStorageFixtures(t, storageFormatVersion)
		if diff := missingShapes(entryShapes(t, fixtures), entryShapes(t, entries)); diff != "" {
			t.Fatalf("the current code no longer writes what %s's fixtures hold:\n%s\n"+
				"Mounts hold %s entries: a change to the stored format needs a new version (storageFormatVersion), its own fixtures and a migration",
				dir, diff, storageFormatVersion)
		}
		return
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("%s exists and is locked: stores written in that format must keep loading. "+
			"A change to the stored format needs a new version (storageFormatVersion), its own fixtures and a migration; "+
			"delete %s only if it was never released", dir, dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for key, value := range entries {
		writeFixtureFile(t, filepath.Join(dir, "entries", filepath.FromSlash(key)+".json"), value)
	}
	raw, err := json.MarshalIndent(inputs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFixtureFile(t, filepath.Join(dir, storageInputsFile), append(raw, '\n'))
	t.Logf("wrote %d storage entries to %s", len(entries), dir)
}

// entryShapes maps each kind of entry to the JSON member paths its entries
// hold. An entry's kind is its storage key, except under revoked/ and
// refresh/, whose names are bucket numbers and family ids drawn from
// random jtis: there it is the prefix, and the paths are those of all its
// entries.
func entryShapes(t *testing.T, entries map[string][]byte) map[string]map[string]bool {
	t.Helper()
	shapes := map[string]map[string]bool{}
	for key, raw := range entries {
		kind := key
		if strings.HasPrefix(key, "revoked/") || strings.HasPrefix(key, "refresh/") {
			kind = key[:strings.LastIndex(key, "/")+1] + "*"
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if shapes[kind] == nil {
			shapes[kind] = map[string]bool{}
		}
		memberPaths("", v, shapes[kind])
	}
	return shapes
}

// memberPaths adds the path of every member of v to paths: .a.b for
// objects, [] for any element of an array, and .entries.* for any entry of
// a revocation bucket, whose names are hashes of what was revoked.
func memberPaths(path string, v any, paths map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for name, member := range v {
			if path == ".entries" {
				name = "*"
			}
			p := path + "." + name
			paths[p] = true
			memberPaths(p, member, paths)
		}
	case []any:
		for _, elem := range v {
			memberPaths(path+"[]", elem, paths)
		}
	}
}

// missingShapes names the kinds of entry and the member paths that want
// has and got does not; "" if there are none.
func missingShapes(want, got map[string]map[string]bool) string {
	var out []string
	for kind, w := range want {
		g, ok := got[kind]
		if !ok {
			out = append(out, fmt.Sprintf("%s: no longer written", kind))
			continue
		}
		for p := range w {
			if !g[p] {
				out = append(out, fmt.Sprintf("%s: %s in the fixtures, not written", kind, p))
			}
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func writeFixtureFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// generateStorageFixtures builds a store holding every stored type and
// variant through the API, and returns its entries and the test-only
// inputs. Randomness (keys, jtis, refresh tokens, KMS key IDs) comes from a
// fixed seed and the clock is fixed, so it is deterministic.
func generateStorageFixtures(t *testing.T) (map[string][]byte, storageInputs) {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 20261123)
	kmstest.IsolateAWSEnvironment(t)

	storage := &logical.InmemStorage{}
	tb := newBareTestBackend(t, storage, mountInProcess)
	// KMS keys come from a kmstest server; the stored endpoints are
	// fixed, fake ones, so every client goes to the server whatever the
	// configuration says.
	srv, url := kmstest.NewTestServer(t, kmstest.Options{Region: fixtureKMSRegion, Account: fixtureKMSAccount})
	tb.newKMSAPI = func(context.Context, awskms.ClientConfig) (awskms.API, error) {
		return kmstest.NewClient(url, func(o *kms.Options) { o.Region = fixtureKMSRegion }), nil
	}
	step := func(d time.Duration) { tb.clock.Add(d) }
	// Stored times carry nanoseconds, as time.Now gives them in production.
	step(123456789 * time.Nanosecond)

	// 12:00: configuration, keys and roles.
	tb.mustWrite(t, "config", map[string]any{"issuer": fixtureIssuer, "jwks_max_age": "10m"})
	tb.mustWrite(t, "config/aws", map[string]any{
		"access_key": fixtureAccessKey, "secret_key": fixtureSecretKey, "session_token": fixtureSession,
		"role_arn": fixtureRoleARN, "region": fixtureKMSRegion, "endpoint": fixtureAWSEndpoint,
		"max_requests_per_second": 100, "max_concurrency": 16, "call_timeout": "10s", "max_attempts": 5, "breaker_cooldown": "30s",
	})
	tb.mustWrite(t, "keys/testonly-es256", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "keys/testonly-eddsa", map[string]any{"algorithm": "EdDSA", "rotation_period": "720h", "verification_ttl": "48h"})
	tb.mustWrite(t, "keys/testonly-rs256", map[string]any{"algorithm": "RS256", "rsa_bits": 2048})
	_, arn, err := srv.CreateKeyForTest("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	tb.mustWrite(t, "keys/testonly-kms", map[string]any{
		"provider": "awskms", "algorithm": "ES256", "kms_key_id": arn, "region": fixtureKMSRegion, "endpoint": fixtureKMSEndpoint,
	})
	tb.mustWrite(t, "roles/full", map[string]any{
		"key": "testonly-es256", "issuer": fixtureRoleIssuer, "ttl": "10m", "max_ttl": "2h",
		"audiences": "api", "allowed_audiences": "api,api-*", "max_audiences": 2,
		"claims":            `{"tier":"gold","big":12345678901234567890}`,
		"allowed_claims":    "scope,ticket",
		"required_claims":   "scope",
		"claim_constraints": `{"scope":{"type":"string","enum":["read","write"]},"ticket":"T-*"}`,
		"subject_template":  "{{identity.entity.id}}",
		"claims_template":   `{"team":"{{identity.entity.metadata.team}}","groups":"{{identity.entity.groups.names}}"}`,
		"require_entity":    true, "not_before_skew": "30s", "typ": "at+jwt", "jti": true,
		"refresh_ttl": "24h", "refresh_max_ttl": "72h",
	})
	tb.mustWrite(t, "roles/minimal", map[string]any{"key": "testonly-eddsa"})
	tb.mustWrite(t, "roles/refresh", map[string]any{
		"key": "testonly-rs256", "subject": "user-default", "allowed_subjects": "user-*", "ttl": "5m", "refresh_ttl": "1h",
	})

	// 13:00: a staged rotation; version 2 signs from 13:10.
	step(time.Hour)
	tb.mustWrite(t, "keys/testonly-es256/rotate", nil)

	// 14:00: refresh families and revocations.
	step(time.Hour)
	inputs := storageInputs{
		Note:          "TEST-ONLY material for backend/storage_format_test.go; see ../README.md. Never use these tokens or keys anywhere else.",
		RefreshTokens: map[string]string{},
	}
	refreshToken := func(resp *logical.Response) string {
		t.Helper()
		rt, _ := resp.Data["refresh_token"].(string)
		if rt == "" {
			t.Fatalf("no refresh token in %v", resp.Data)
		}
		return rt
	}
	// live: issued, then refreshed once.
	rt := refreshToken(tb.mustWrite(t, "issue/refresh", map[string]any{"subject": "user-a", "ttl": "120"}))
	step(time.Minute)
	inputs.RefreshTokens["live"] = refreshToken(tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}))

	// reused: issued, refreshed, and its first refresh token presented
	// again, which revokes the family and its access tokens by jti.
	step(time.Minute)
	rt = refreshToken(tb.mustWrite(t, "issue/refresh", map[string]any{"subject": "user-b"}))
	step(time.Minute)
	inputs.RefreshTokens["reused"] = refreshToken(tb.mustWrite(t, "refresh", map[string]any{"refresh_token": rt}))
	step(time.Minute)
	if resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt}); err == nil || !resp.IsError() {
		t.Fatalf("reuse was not refused: %v", resp)
	}

	// live_entity and ended: role full, for an identity entity.
	withEntity(tb)
	step(time.Minute)
	inputs.RefreshTokens["live_entity"] = refreshToken(tb.mustWrite(t, "issue/full", map[string]any{
		"audience": "api-x", "claims": map[string]any{"scope": "read"},
	}))
	step(time.Minute)
	ended := tb.mustWrite(t, "issue/full", map[string]any{"claims": map[string]any{"scope": "write", "ticket": "T-1"}})
	inputs.RefreshTokens["ended"] = refreshToken(ended)
	step(time.Minute)
	tb.mustWrite(t, "revoke", map[string]any{"token": ended.Data["token"]})
	step(time.Minute)
	if resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": inputs.RefreshTokens["ended"]}); err == nil || !resp.IsError() {
		t.Fatalf("refresh of a family whose token is revoked was not refused: %v", resp)
	}
	tb.entityID = ""

	// One revocation of each kind, at 14:10.
	step(2 * time.Minute)
	tb.mustWrite(t, "revoke", map[string]any{"jti": fixtureRevokedJTI, "exp": fixtureFarFuture})
	tb.mustWrite(t, "revoke", map[string]any{"subject": fixtureRevokedSub})
	tb.mustWrite(t, "revoke", map[string]any{"role": "minimal"})

	entries := map[string][]byte{}
	for key, value := range tb.snapshot(t) {
		entries[key] = []byte(value)
	}
	return entries, inputs
}

// loadStorageFixtures reads a version's entries, by storage key, and its
// inputs.
func loadStorageFixtures(t *testing.T, version string) (map[string][]byte, storageInputs) {
	t.Helper()
	dir := filepath.Join(storageFixturesDir, version)
	root := filepath.Join(dir, "entries")
	entries := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		key, ok := strings.CutSuffix(filepath.ToSlash(rel), ".json")
		if !ok {
			return fmt.Errorf("%s: fixture entries end in .json", path)
		}
		entries[key], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatalf("reading %s (run `go test ./backend -run TestStorageFormat -update` to write the current version): %v", root, err)
	}
	var inputs storageInputs
	raw, err := os.ReadFile(filepath.Join(dir, storageInputsFile))
	if err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, raw, &inputs)
	return entries, inputs
}

// diffEntries describes how two stores differ, entry by entry; "" if they
// do not.
func diffEntries(want, got map[string][]byte) string {
	var out []string
	for key, w := range want {
		g, ok := got[key]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: missing", key))
		case !bytes.Equal(w, g):
			out = append(out, fmt.Sprintf("%s: %s", key, diffJSON(w, g)))
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			out = append(out, fmt.Sprintf("%s: not in the fixtures", key))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// rfc3339Re matches a JSON string holding an RFC 3339 time, as
// time.Time's MarshalJSON writes it.
var rfc3339Re = regexp.MustCompile(`"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"`)

// diffJSON names the members, by path, in which two JSON documents differ,
// with both values shortened; or says they are equal as JSON and differ
// only in their bytes.
func diffJSON(want, got []byte) string {
	diffs, err := jsonDiffs(want, got)
	switch {
	case err != nil:
		return err.Error()
	case len(diffs) == 0:
		return "equal as JSON, but the bytes differ (member order, spacing or number spelling)"
	}
	return strings.Join(diffs, "\n")
}

// jsonDiffs lists the members in which two JSON documents differ, by path.
// Numbers compare by their spelling, so large integers keep every digit.
func jsonDiffs(want, got []byte) ([]string, error) {
	decode := func(what string, raw []byte) (any, error) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s is not JSON: %v", what, err)
		}
		return v, nil
	}
	w, err := decode("the fixture", want)
	if err != nil {
		return nil, err
	}
	g, err := decode("the written value", got)
	if err != nil {
		return nil, err
	}
	var diffs []string
	walkDiff("", w, g, &diffs)
	slices.Sort(diffs)
	return diffs, nil
}

func walkDiff(path string, want, got any, out *[]string) {
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if wok && gok {
		for k, wv := range wm {
			gv, ok := gm[k]
			if !ok {
				*out = append(*out, fmt.Sprintf("%s: in the fixture, not written", path+"."+k))
				continue
			}
			walkDiff(path+"."+k, wv, gv, out)
		}
		for k, gv := range gm {
			if _, ok := wm[k]; !ok {
				*out = append(*out, fmt.Sprintf("%s: written (%s), not in the fixture", path+"."+k, shortJSON(gv)))
			}
		}
		return
	}
	wa, wok := want.([]any)
	ga, gok := got.([]any)
	if wok && gok && len(wa) == len(ga) {
		for i := range wa {
			walkDiff(fmt.Sprintf("%s[%d]", path, i), wa[i], ga[i], out)
		}
		return
	}
	if w, g := shortJSON(want), shortJSON(got); w != g {
		if path == "" {
			path = "."
		}
		*out = append(*out, fmt.Sprintf("%s: fixture %s, written %s", path, w, g))
	}
}

// shortJSON is v as JSON, cut to 60 bytes: fixture values hold test-only
// keys, but a message need not carry all of one.
func shortJSON(v any) string {
	raw, _ := json.Marshal(v)
	if len(raw) > 60 {
		return string(raw[:57]) + "..."
	}
	return string(raw)
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ra, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ra, rb)
}

// recordingStorage records the keys written, so a test can check where a
// write went.
type recordingStorage struct {
	logical.Storage
	mu   sync.Mutex
	puts []string
}

func (r *recordingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	r.mu.Lock()
	r.puts = append(r.puts, e.Key)
	r.mu.Unlock()
	return r.Storage.Put(ctx, e)
}

// takePuts returns the keys written since the last call.
func (r *recordingStorage) takePuts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.puts
	r.puts = nil
	return p
}
