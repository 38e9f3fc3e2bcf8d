package backend

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// stagedKey is key k of a fresh test backend with version 1 current and
// version 2 staged (next), as stored.
func stagedKey(t *testing.T) (*testBackend, *key) {
	t.Helper()
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "keys/k/rotate", nil)
	k, err := loadKey(t.Context(), tb.storage, "k")
	if err != nil || k == nil || len(k.Versions) != 2 {
		t.Fatalf("loading the staged key: %v %#v", err, k)
	}
	return tb, k
}

// asAWSKMS is k as an awskms key would be stored: an ARN per version and
// no private keys.
func asAWSKMS(k *key) *key {
	c := k.clone()
	c.Provider = providerAWSKMS
	for _, v := range c.Versions {
		v.PrivateKey = nil
		v.KMSKeyARN = fmt.Sprintf("arn:aws:kms:us-east-1:111122223333:key/v%d", v.Version)
	}
	return c
}

// TestKeyValidateRefusesBrokenStoredKeys: validate is what stands between
// a stored key entry (written by an older or newer version, restored from
// a backup, edited) and signing with it. Each invariant it keeps is
// refused on its own, naming the rule.
func TestKeyValidateRefusesBrokenStoredKeys(t *testing.T) {
	_, staged := stagedKey(t)
	for _, base := range []*key{staged, asAWSKMS(staged)} {
		if err := base.validate(); err != nil {
			t.Fatalf("the %s base key is invalid: %v", base.Provider, err)
		}
	}
	for _, tc := range []struct {
		name    string
		awskms  bool
		corrupt func(k *key)
		want    string
	}{
		{"rsa_bits on a local EC key", false, func(k *key) { k.RSABits = 2048 }, `invalid "rsa_bits": only RS* and PS* keys take rsa_bits, not ES256`},
		{"rsa_bits on an awskms key", true, func(k *key) { k.RSABits = 2048 }, `invalid "rsa_bits": not for provider awskms`},
		{"two versions with one number", false, func(k *key) { k.Versions[1].Version = 1 }, "versions out of order"},
		{"versions in descending order", false, func(k *key) { k.Versions[0].Version, k.Versions[1].Version = 2, 1 }, "versions out of order"},
		{"an empty kid", false, func(k *key) { k.Versions[1].KeyID = "" }, "duplicate or empty kid in version 2"},
		{"a kid twice", false, func(k *key) { k.Versions[1].KeyID = k.Versions[0].KeyID }, "duplicate or empty kid in version 2"},
		{"a KMS key ARN on a local version", false, func(k *key) { k.Versions[0].KMSKeyARN = "arn:aws:kms:us-east-1:111122223333:key/x" }, "a KMS key ARN belongs to awskms versions only"},
		{"an awskms version without a KMS key ARN", true, func(k *key) { k.Versions[1].KMSKeyARN = "" }, "a KMS key ARN belongs to awskms versions only"},
		{"an older version without a rotation time", false, func(k *key) { k.Versions[0].RotatedAt = time.Time{} }, "every version but the latest must have a rotation time"},
		{"the latest version with a rotation time", false, func(k *key) { k.Versions[1].RotatedAt = k.Versions[1].activation().Add(time.Hour) }, "every version but the latest must have a rotation time"},
		{"an older version signing after the next one starts", false, func(k *key) { k.Versions[0].RotatedAt = k.Versions[1].activation().Add(time.Second) }, "version 1's signing period overlaps version 2's"},
		{"an older version rotated before it signed", false, func(k *key) { k.Versions[0].RotatedAt = k.Versions[0].activation().Add(-time.Second) }, "version 1's signing period overlaps version 2's"},
		{"latest_version below the last version", false, func(k *key) { k.LatestVersion = 1 }, "latest_version 1 is below the last version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := staged.clone()
			if tc.awskms {
				k = asAWSKMS(staged)
			}
			tc.corrupt(k)
			err := k.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestKeyDurationBoundsAreInclusive: the documented limits themselves are
// allowed: verification_ttl of exactly 1m and 87600h, rotation_period of
// exactly 87600h (1h is pinned by TestStagedRotationAfterLoweringJWKSMaxAge).
func TestKeyDurationBoundsAreInclusive(t *testing.T) {
	tb := getTestBackend(t)
	for _, tc := range []struct {
		name string
		data map[string]any
		want map[string]int64
	}{
		{"shortest verification_ttl", map[string]any{"verification_ttl": "1m"}, map[string]int64{"verification_ttl": 60}},
		{"longest verification_ttl", map[string]any{"verification_ttl": "87600h"}, map[string]int64{"verification_ttl": 87600 * 3600}},
		{"longest rotation_period", map[string]any{"rotation_period": "87600h"}, map[string]int64{"rotation_period": 87600 * 3600}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			d := tb.mustWrite(t, "keys/"+name, tc.data).Data
			for field, want := range tc.want {
				if d[field] != want {
					t.Fatalf("%s = %v, want %d", field, d[field], want)
				}
			}
		})
	}
	tb.wantBadRequest(t, logical.CreateOperation, "keys/under", map[string]any{"verification_ttl": "59s"}, `invalid "verification_ttl" 59s: must be at least 1m0s`)
}

// TestRotateRemovesRetiredVersions: a rotation removes from storage the
// versions whose publication has ended, private keys and all, without
// waiting for the periodic function.
func TestRotateRemovesRetiredVersions(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": "1h"})
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	tb.clock.Add(time.Hour) // version 1's publication ends now
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	k, err := loadKey(t.Context(), tb.storage, "k")
	if err != nil {
		t.Fatal(err)
	}
	var stored []int
	for _, v := range k.Versions {
		stored = append(stored, v.Version)
	}
	if fmt.Sprint(stored) != "[2 3]" {
		t.Fatalf("stored versions %v after the rotation, want [2 3]: retired version 1's private key is still stored", stored)
	}
}

// TestRevokeVersionRefusesRetiredVersion: a version whose publication has
// ended, but which the periodic function has not yet removed from
// storage, is not published: revoke-version refuses it as it refuses an
// unknown version, and changes nothing. So is a request without a version.
func TestRevokeVersionRefusesRetiredVersion(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": "1h"})
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	tb.clock.Add(time.Hour) // version 1 is retired, still stored
	if k, _ := loadKey(t.Context(), tb.storage, "k"); len(k.Versions) != 2 {
		t.Fatalf("%d stored versions, want retired version 1 still stored: the test proves nothing", len(k.Versions))
	}
	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k/revoke-version", map[string]any{"version": 1},
		`invalid "version" 1: key "k" has no such published version`)
	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k/revoke-version", nil, `invalid "version": required`)
}

// TestKeyDeleteRefusedWhileOneRoleUsesIt: a single role using a key is
// enough to refuse its deletion.
func TestKeyDeleteRefusedWhileOneRoleUsesIt(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/only", map[string]any{"key": "k"})
	tb.wantBadRequest(t, logical.DeleteOperation, "keys/k", nil, `cannot delete key "k": roles only use it`)
}

// logLine is one line of the test backend's JSON log.
type logLine struct {
	Level     string `json:"@level"`
	Message   string `json:"@message"`
	Key       string `json:"key"`
	Version   int    `json:"version"`
	Immediate *bool  `json:"immediate"`
}

func (l logLine) String() string {
	imm := "absent"
	if l.Immediate != nil {
		imm = fmt.Sprint(*l.Immediate)
	}
	return fmt.Sprintf("%s %q key=%s version=%d immediate=%s", l.Level, l.Message, l.Key, l.Version, imm)
}

// takeLogs returns the log lines written since the last call, and forgets
// them.
func takeLogs(t *testing.T, tb *testBackend) []logLine {
	t.Helper()
	tb.logs.mu.Lock()
	raw := tb.logs.buf.String()
	tb.logs.buf.Reset()
	tb.logs.mu.Unlock()
	var out []logLine
	for line := range strings.Lines(raw) {
		var l logLine
		decodeJSON(t, []byte(line), &l)
		out = append(out, l)
	}
	return out
}

// TestKeyActionsLogged: every key action that changes which version signs
// or is published is logged once it has been stored, with the key and
// version; those that skip the wait for verifiers (immediate) or pull a
// version are at WARN, for the audit of a compromise.
func TestKeyActionsLogged(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	yes, no := true, false
	for _, tc := range []struct {
		name string
		path string
		data map[string]any
		want logLine
	}{
		{"staged rotation", "keys/k/rotate", nil, logLine{Level: "info", Message: "rotated key", Key: "k", Version: 2, Immediate: &no}},
		{"immediate with a version waiting", "keys/k/rotate", map[string]any{"immediate": true}, logLine{Level: "warn", Message: "activated pending key version early", Key: "k", Version: 2}},
		{"immediate rotation", "keys/k/rotate", map[string]any{"immediate": true}, logLine{Level: "warn", Message: "rotated key", Key: "k", Version: 3, Immediate: &yes}},
		{"revoke-version", "keys/k/revoke-version", map[string]any{"version": 2}, logLine{Level: "warn", Message: "key version revoked", Key: "k", Version: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			takeLogs(t, tb)
			tb.mustWrite(t, tc.path, tc.data)
			lines := takeLogs(t, tb)
			if len(lines) != 1 || lines[0].String() != tc.want.String() {
				var got []string
				for _, l := range lines {
					got = append(got, l.String())
				}
				t.Fatalf("logged %v, want one line %v", got, tc.want)
			}
		})
	}
}

// keyReads counts storage reads of key entries.
type keyReads struct {
	logical.Storage
	n atomic.Int64
}

func (s *keyReads) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	if strings.HasPrefix(k, keyPrefix) {
		s.n.Add(1)
	}
	return s.Storage.Get(ctx, k)
}

// TestPeriodicReadsNoKeyWhileAVersionWaits: once rotation_period has
// staged the next version, the periodic runs while it waits have nothing
// to do on the key and read no key entry, though the period is over.
func TestPeriodicReadsNoKeyWhileAVersionWaits(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"rotation_period": "24h"})
	tb.clock.Add(24*time.Hour - defaultJWKSMaxAge)
	ks := &keyReads{Storage: tb.storage}
	run := func() {
		t.Helper()
		if err := tb.periodic(t.Context(), &logical.Request{Storage: ks}); err != nil {
			t.Fatal(err)
		}
	}
	run() // stages version 2
	if d := tb.mustRead(t, "keys/k").Data; d["latest_version"] != 2 || d["current_version"] != 1 {
		t.Fatalf("not staged: %#v", d)
	}
	for range 3 {
		tb.clock.Add(time.Minute)
		ks.n.Store(0)
		run()
		if n := ks.n.Load(); n != 0 {
			t.Fatalf("a periodic run while version 2 waits read %d key entries, want none", n)
		}
	}
}
