package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

func TestKeyCreateEachAlgorithm(t *testing.T) {
	tb := getTestBackend(t)
	for _, alg := range signer.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			name := "k-" + strings.ToLower(string(alg))
			resp := tb.mustWrite(t, "keys/"+name, map[string]any{"algorithm": string(alg)})
			if resp.Data["algorithm"] != string(alg) || resp.Data["latest_version"] != 1 {
				t.Fatalf("created key: %#v", resp.Data)
			}
			read := tb.mustRead(t, "keys/"+name)
			versions := read.Data["versions"].(map[string]any)
			v1 := versions["1"].(map[string]any)
			if v1["state"] != stateCurrent || v1["kid"] != read.Data["current_kid"] {
				t.Fatalf("version 1: %#v", v1)
			}
			jwk := v1["public_key"].(signer.JWK)
			if jwk.Alg != string(alg) || jwk.Kid != v1["kid"] || jwk.Use != "sig" {
				t.Fatalf("public_key JWK: %#v", jwk)
			}
			assertNoPrivateMaterial(t, read.Data)
			if in := alg.Info(); in.KeyType == signer.KeyTypeRSA && read.Data["rsa_bits"] != 2048 {
				t.Fatalf("rsa_bits = %v, want the default 2048", read.Data["rsa_bits"])
			}
		})
	}
	list, err := tb.request(t, logical.ListOperation, "keys/", nil)
	if err != nil || len(list.Data["keys"].([]string)) != len(signer.Algorithms()) {
		t.Fatalf("list: %v %#v", err, list)
	}
}

// assertNoPrivateMaterial fails if anything that looks like private key
// material is in a response.
func assertNoPrivateMaterial(t *testing.T, data map[string]any) {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, vv := range v {
				switch k {
				case "d", "p", "q", "dp", "dq", "qi", "private_key", "privateKey":
					t.Errorf("response has private member %q", k)
				}
				walk(vv)
			}
		case []any:
			for _, vv := range v {
				walk(vv)
			}
		}
	}
	walk(generic)
	if strings.Contains(string(raw), "PRIVATE") {
		t.Error("response contains PRIVATE")
	}
}

func TestKeyRSABits(t *testing.T) {
	tb := getTestBackend(t)
	resp := tb.mustWrite(t, "keys/rsa3072", map[string]any{"algorithm": "PS384", "rsa_bits": 3072})
	if resp.Data["rsa_bits"] != 3072 {
		t.Fatalf("rsa_bits = %v", resp.Data["rsa_bits"])
	}
	e, err := tb.getKey(context.Background(), tb.storage, "rsa3072")
	if err != nil {
		t.Fatal(err)
	}
	jwk, _ := signer.PublicJWK(signer.PS384, "x", e.signers[e.key.current(time.Now()).Version].Public())
	if n := len(jwk.N); n != 512 { // 384 bytes base64url
		t.Fatalf("modulus is %d base64url chars, want 512", n)
	}
}

func TestKeyBadInput(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/existing", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "keys/rsa", map[string]any{"algorithm": "RS256"})
	for _, tc := range []struct {
		name string
		op   logical.Operation
		path string
		data map[string]any
		want []string
	}{
		{"unknown algorithm", logical.CreateOperation, "keys/new", map[string]any{"algorithm": "HS256"}, []string{`"algorithm"`, "HS256", "must be one of"}},
		{"alg none", logical.CreateOperation, "keys/new", map[string]any{"algorithm": "none"}, []string{`"algorithm"`}},
		{"lower-case alg", logical.CreateOperation, "keys/new", map[string]any{"algorithm": "es256"}, []string{`"algorithm"`}},
		{"unknown provider", logical.CreateOperation, "keys/new", map[string]any{"provider": "cloudhsm"}, []string{`"provider"`, "cloudhsm", "local"}},
		{"rsa bits below 2048", logical.CreateOperation, "keys/new", map[string]any{"algorithm": "RS256", "rsa_bits": 1024}, []string{`"rsa_bits"`, "2048, 3072 or 4096"}},
		{"rsa bits not a size we offer", logical.CreateOperation, "keys/new", map[string]any{"algorithm": "PS256", "rsa_bits": 2560}, []string{`"rsa_bits"`}},
		{"rsa bits huge", logical.CreateOperation, "keys/new", map[string]any{"algorithm": "PS256", "rsa_bits": 16384}, []string{`"rsa_bits"`}},
		{"rsa bits on EC", logical.CreateOperation, "keys/new", map[string]any{"algorithm": "ES256", "rsa_bits": 2048}, []string{`"rsa_bits"`, "only RS* and PS*"}},
		{"verification ttl too short", logical.CreateOperation, "keys/new", map[string]any{"verification_ttl": "10s"}, []string{`"verification_ttl"`, "at least"}},
		{"rotation period too short", logical.CreateOperation, "keys/new", map[string]any{"rotation_period": "10m"}, []string{`"rotation_period"`, "at least 1h"}},
		{"negative rotation period", logical.CreateOperation, "keys/new", map[string]any{"rotation_period": "-1h"}, []string{`"rotation_period"`}},
		{"verification ttl above 10 years", logical.CreateOperation, "keys/new", map[string]any{"verification_ttl": "87601h"}, []string{`"verification_ttl"`, "at most 87600h"}},
		{"verification ttl near time.Duration's limit", logical.UpdateOperation, "keys/existing", map[string]any{"verification_ttl": "9223372036"}, []string{`"verification_ttl"`, "at most 87600h"}},
		{"rotation period above 10 years", logical.CreateOperation, "keys/new", map[string]any{"rotation_period": "87601h"}, []string{`"rotation_period"`, "at most 87600h"}},
		{"rotation period on an existing key above 10 years", logical.UpdateOperation, "keys/existing", map[string]any{"rotation_period": "9223372036"}, []string{`"rotation_period"`, "at most 87600h"}},
		{"region on a local key", logical.CreateOperation, "keys/new", map[string]any{"provider": "local", "region": "eu-west-1"}, []string{`"region"/"endpoint"`, "only provider awskms"}},
		{"endpoint on a local key", logical.CreateOperation, "keys/new", map[string]any{"endpoint": "https://kms.example.com"}, []string{`"region"/"endpoint"`, "only provider awskms"}},
		{"region and endpoint on a local key", logical.CreateOperation, "keys/new", map[string]any{"provider": "local", "region": "eu-west-1", "endpoint": "https://kms.example.com"}, []string{`"region"/"endpoint"`, "only provider awskms"}},
		{"change algorithm", logical.UpdateOperation, "keys/existing", map[string]any{"algorithm": "ES384"}, []string{`"algorithm"`, "cannot change"}},
		{"change provider", logical.UpdateOperation, "keys/existing", map[string]any{"provider": "awskms"}, []string{`"provider"`, "cannot change"}},
		{"change rsa bits", logical.UpdateOperation, "keys/rsa", map[string]any{"rsa_bits": 4096}, []string{`"rsa_bits"`, "cannot change"}},
		{"bad name", logical.CreateOperation, "keys/a b", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bad name" {
				resp, err := tb.request(t, tc.op, tc.path, tc.data)
				if err != logical.ErrUnsupportedPath && (resp == nil || !resp.IsError()) {
					t.Fatalf("key name with a space accepted: %v %#v", err, resp)
				}
				return
			}
			tb.wantBadRequest(t, tc.op, tc.path, tc.data, tc.want...)
		})
	}
}

func TestKeyUpdate(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	kid := tb.mustRead(t, "keys/k").Data["current_kid"]
	resp := tb.mustWrite(t, "keys/k", map[string]any{"rotation_period": "24h", "verification_ttl": "48h", "algorithm": "ES256"})
	if resp.Data["rotation_period"] != int64(86400) || resp.Data["verification_ttl"] != int64(172800) {
		t.Fatalf("update: %#v", resp.Data)
	}
	if resp.Data["current_kid"] != kid || resp.Data["latest_version"] != 1 {
		t.Fatal("updating settings must not rotate the key")
	}
}

func TestKeyRotate(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA", "verification_ttl": "2h"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "max_ttl": "1h"})
	first := tb.mustRead(t, "keys/k").Data["current_kid"].(string)

	// A staged rotation publishes the new version at once; it signs after
	// jwks_max_age (default 5m), and the old one then stays published for
	// verification_ttl.
	tb.clock.Add(10 * time.Minute) // 12:10
	resp := tb.mustWrite(t, "keys/k/rotate", nil)
	versions := resp.Data["versions"].(map[string]any)
	v1, v2 := versions["1"].(map[string]any), versions["2"].(map[string]any)
	if resp.Data["latest_version"] != 2 || resp.Data["current_version"] != 1 || resp.Data["current_kid"] != first {
		t.Fatalf("after rotate: %#v", resp.Data)
	}
	if v2["state"] != stateNext || v2["activates_at"] != "2026-11-23T12:15:00Z" {
		t.Fatalf("version 2 after rotate: %#v", v2)
	}
	if v1["state"] != stateCurrent || v1["rotated_at"] != "2026-11-23T12:15:00Z" || v1["published_until"] != "2026-11-23T14:15:00Z" {
		t.Fatalf("version 1 after rotate: %#v", v1)
	}
	second := v2["kid"].(string)
	if kids := jwksKids(t, tb); len(kids) != 2 {
		t.Fatalf("JWKS has %v, want both versions", kids)
	}

	// A second rotation while one waits is refused and changes nothing.
	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k/rotate", nil, "version 2 waiting to sign", "immediate=true")

	tb.clock.Add(5*time.Minute - time.Second)
	if got := tb.issue(t, "r", nil).header["kid"]; got != first {
		t.Fatalf("signed by %v one second before version 2 activates", got)
	}
	tb.clock.Add(time.Second) // 12:15
	if got := tb.issue(t, "r", nil).header["kid"]; got != second {
		t.Fatalf("signed by %v once version 2 activated", got)
	}
	d := tb.mustRead(t, "keys/k").Data
	if d["current_version"] != 2 || d["versions"].(map[string]any)["1"].(map[string]any)["state"] != statePrevious {
		t.Fatalf("after activation: %#v", d)
	}

	// Just before verification_ttl ends the old version is still there.
	tb.clock.Add(2*time.Hour - time.Second)
	if kids := jwksKids(t, tb); len(kids) != 2 {
		t.Fatalf("JWKS has %v one second before the old version's publication ends", kids)
	}
	tb.clock.Add(time.Second)
	if kids := jwksKids(t, tb); len(kids) != 1 || kids[0] == first {
		t.Fatalf("JWKS has %v after the old version's publication ended", kids)
	}
	if _, ok := tb.mustRead(t, "keys/k").Data["versions"].(map[string]any)["1"]; ok {
		t.Fatal("read still shows a retired version")
	}

	// The periodic function removes it from storage, private key and all.
	if err := tb.periodic(context.Background(), &logical.Request{Storage: tb.storage}); err != nil {
		t.Fatal(err)
	}
	k, _ := loadKey(context.Background(), tb.storage, "k")
	if len(k.Versions) != 1 || k.Versions[0].Version != 2 {
		t.Fatalf("stored versions after tidy: %d", len(k.Versions))
	}

	tb.wantNotFound(t, logical.UpdateOperation, "keys/missing/rotate", nil)
}

// TestKeyRotateImmediate: immediate=true signs with the new version at
// once, or activates a waiting one; revoking a waiting version cancels the
// rotation; jwks_max_age sets the lead.
func TestKeyRotateImmediate(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "45s"})
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	kidOf := func(d map[string]any, v string) string {
		return d["versions"].(map[string]any)[v].(map[string]any)["kid"].(string)
	}

	d := tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true}).Data
	if d["current_version"] != 2 || tb.issue(t, "r", nil).header["kid"] != kidOf(d, "2") {
		t.Fatalf("immediate rotation: %#v", d)
	}

	d = tb.mustWrite(t, "keys/k/rotate", nil).Data
	if got := d["versions"].(map[string]any)["3"].(map[string]any)["activates_at"]; got != "2026-11-23T12:00:45Z" {
		t.Fatalf("with jwks_max_age 45s, version 3 activates at %v", got)
	}
	if _, resp := readJWKS(t, tb, "jwks"); resp.Data[logical.HTTPCacheControlHeader] != "public, max-age=45" {
		t.Fatalf("Cache-Control %v", resp.Data[logical.HTTPCacheControlHeader])
	}
	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k/rotate", map[string]any{"immediate": true, "kms_key_id": "alias/x"}, `"kms_key_id"`, "waiting")

	// Revoking the waiting version cancels the rotation: version 2 keeps
	// signing, and the number 3 is not reused.
	d = tb.mustWrite(t, "keys/k/revoke-version", map[string]any{"version": 3}).Data
	if d["current_version"] != 2 || d["latest_version"] != 3 || len(d["versions"].(map[string]any)) != 2 {
		t.Fatalf("after cancelling version 3: %#v", d)
	}
	if _, ok := d["versions"].(map[string]any)["2"].(map[string]any)["rotated_at"]; ok {
		t.Fatal("version 2 still has a rotation time after the cancel")
	}
	d = tb.mustWrite(t, "keys/k/rotate", nil).Data
	if _, ok := d["versions"].(map[string]any)["4"]; !ok {
		t.Fatalf("next rotation: %#v", d)
	}
	// immediate=true with a version waiting makes that version sign now.
	d = tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true}).Data
	if d["current_version"] != 4 || d["latest_version"] != 4 || tb.issue(t, "r", nil).header["kid"] != kidOf(d, "4") {
		t.Fatalf("immediate with a waiting version: %#v", d)
	}
	tb.wantBadRequest(t, logical.UpdateOperation, "config", map[string]any{"jwks_max_age": "5s"}, `"jwks_max_age"`, "between")
}

// TestKeyRevokeVersionNearActivation: a next version can be cancelled until
// cancelMargin before it signs (a minute, or half its wait if that is
// shorter), and not after: an issue that read the key before the cancel, or
// a standby that sees it late, would sign with a version that is gone from
// the JWKS.
func TestKeyRevokeVersionNearActivation(t *testing.T) {
	for _, tc := range []struct {
		name       string
		jwksMaxAge string
		before     time.Duration // how long before version 2 signs revoke-version is sent
		want       string        // the refusal, or "" if the cancel is allowed
	}{
		{"default lead, just staged", "", 5 * time.Minute, ""},
		{"default lead, a minute left", "", time.Minute, ""},
		{"default lead, under a minute left", "", time.Minute - time.Second, "less than 1m0s from now"},
		{"default lead, an instant left", "", time.Millisecond, "less than 1m0s from now"},
		{"shortest lead, just staged", "10s", 10 * time.Second, ""},
		{"shortest lead, half left", "10s", 5 * time.Second, ""},
		{"shortest lead, under half left", "10s", 5*time.Second - time.Millisecond, "less than 5s from now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := getTestBackend(t)
			if tc.jwksMaxAge != "" {
				tb.mustWrite(t, "config", map[string]any{"jwks_max_age": tc.jwksMaxAge})
			}
			tb.mustWrite(t, "keys/k", nil)
			tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
			tb.mustWrite(t, "keys/k/rotate", nil)
			k, err := loadKey(t.Context(), tb.storage, "k")
			if err != nil {
				t.Fatal(err)
			}
			v2 := k.Versions[1]
			tb.clock.Add(v2.activation().Sub(tb.clock.Now()) - tc.before)

			if tc.want == "" {
				d := tb.mustWrite(t, "keys/k/revoke-version", map[string]any{"version": 2}).Data
				if d["current_version"] != 1 || len(d["versions"].(map[string]any)) != 1 {
					t.Fatalf("version 2 not cancelled: %#v", d)
				}
				return
			}
			tb.wantBadRequest(t, logical.UpdateOperation, "keys/k/revoke-version", map[string]any{"version": 2},
				`invalid "version" 2`, "next version", tc.want, "Let it activate, then rotate")
			// Version 2 signs as staged, and verifiers can find it.
			tb.clock.Add(tc.before)
			if kid := tb.issue(t, "r", nil).header["kid"]; kid != v2.KeyID || !slices.Contains(jwksKids(t, tb), v2.KeyID) {
				t.Fatalf("issued with kid %v, want version 2's %s, published in %v", kid, v2.KeyID, jwksKids(t, tb))
			}
		})
	}
}

// TestKeyAutomaticRotation: rotation_period stages the next version
// jwks_max_age before the period ends, and it signs when the period ends.
func TestKeyAutomaticRotation(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/auto", map[string]any{"rotation_period": "24h"})
	tb.mustWrite(t, "keys/manual", nil)
	run := func() {
		t.Helper()
		if err := tb.periodic(context.Background(), &logical.Request{Storage: tb.storage}); err != nil {
			t.Fatal(err)
		}
	}
	read := func() map[string]any { return tb.mustRead(t, "keys/auto").Data }
	tb.clock.Add(24*time.Hour - defaultJWKSMaxAge - time.Second)
	run()
	if v := read()["latest_version"]; v != 1 {
		t.Fatalf("staged early: version %v", v)
	}
	tb.clock.Add(time.Second)
	run()
	d := read()
	if d["latest_version"] != 2 || d["current_version"] != 1 {
		t.Fatalf("not staged jwks_max_age before rotation_period ends: %#v", d)
	}
	if got := d["versions"].(map[string]any)["2"].(map[string]any)["activates_at"]; got != "2026-11-24T12:00:00Z" {
		t.Fatalf("version 2 activates at %v, want the end of the period", got)
	}
	run() // nothing more to do while version 2 waits
	tb.clock.Add(defaultJWKSMaxAge)
	run()
	if d := read(); d["current_version"] != 2 || d["latest_version"] != 2 {
		t.Fatalf("at the end of the period: %#v", d)
	}
	if v := tb.mustRead(t, "keys/manual").Data["latest_version"]; v != 1 {
		t.Fatalf("key without rotation_period rotated: version %v", v)
	}
	if !strings.Contains(tb.logs.String(), `"@message":"staged key rotation"`) {
		t.Error("automatic rotation was not logged")
	}
}

func TestKeyDelete(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r1", map[string]any{"key": "k"})
	tb.mustWrite(t, "roles/r2", map[string]any{"key": "k"})
	tb.wantBadRequest(t, logical.DeleteOperation, "keys/k", nil, "cannot delete key", "r1, r2")

	for _, r := range []string{"roles/r1", "roles/r2"} {
		if _, err := tb.request(t, logical.DeleteOperation, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := tb.request(t, logical.DeleteOperation, "keys/k", nil); err != nil || resp != nil {
		t.Fatalf("delete: %v %#v", err, resp)
	}
	if resp, err := tb.request(t, logical.ReadOperation, "keys/k", nil); err != nil || resp != nil {
		t.Fatalf("read after delete: %v %#v", err, resp)
	}
	if kids := jwksKids(t, tb); len(kids) != 0 {
		t.Fatalf("deleted key still in JWKS: %v", kids)
	}
}

// TestKeyVerificationTTLCoversRoles: a key's verification_ttl may not drop
// below the max_ttl of a role that uses it.
func TestKeyVerificationTTLCoversRoles(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": "10h"})
	tb.mustWrite(t, "roles/long", map[string]any{"key": "k", "max_ttl": "8h"})
	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k", map[string]any{"verification_ttl": "4h"}, `"verification_ttl"`, `role "long"`)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": "8h"})
}

func (tb *testBackend) wantNotFound(t *testing.T, op logical.Operation, path string, data map[string]any) {
	t.Helper()
	resp, err := tb.request(t, op, path, data)
	if code := httpStatus(op, path, resp, err); code != 404 {
		t.Fatalf("%s %s: status %d (%v %v), want 404", op, path, httpStatus(op, path, resp, err), resp, err)
	}
}

// TestPeriodicReadsLittle: the periodic function runs every minute over
// every key; when nothing is due it reads no key from storage.
func TestPeriodicReadsLittle(t *testing.T) {
	tb := getTestBackend(t)
	for i := range 20 {
		tb.mustWrite(t, fmt.Sprintf("keys/k%d", i), map[string]any{"rotation_period": "24h"})
	}
	cs := &countingStorage{Storage: tb.storage}
	run := func() int64 {
		t.Helper()
		cs.reads.Store(0)
		if err := tb.periodic(context.Background(), &logical.Request{Storage: cs}); err != nil {
			t.Fatal(err)
		}
		return cs.reads.Load()
	}
	run() // loads what is not cached yet
	if n := run(); n > 4 {
		t.Fatalf("a periodic run with nothing due made %d storage reads; want only its Lists", n)
	}
	// When rotation is due, it still happens.
	tb.clock.Add(24 * time.Hour)
	run()
	for i := range 20 {
		if v := tb.mustRead(t, fmt.Sprintf("keys/k%d", i)).Data["latest_version"]; v != 2 {
			t.Fatalf("k%d not staged: latest_version %v", i, v)
		}
	}
}

// TestPeriodicMaintainsUnloadableKey: a key whose signers cannot be built
// is still pruned from storage by the periodic function.
func TestPeriodicMaintainsUnloadableKey(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": "1h"})
	tb.mustWrite(t, "keys/k/rotate", map[string]any{"immediate": true})
	k, _ := loadKey(t.Context(), tb.storage, "k")
	k.Versions[1].PublicKey = k.Versions[0].PublicKey // version 2's private key no longer matches
	entry, _ := logical.StorageEntryJSON(keyPrefix+"k", k)
	if err := tb.storage.Put(t.Context(), entry); err != nil {
		t.Fatal(err)
	}
	tb.dropKey("k")
	if _, err := tb.getKey(t.Context(), tb.storage, "k"); err == nil {
		t.Fatal("the corrupted key still loads: the test proves nothing")
	}
	tb.clock.Add(2 * time.Hour)
	if err := tb.periodic(t.Context(), &logical.Request{Storage: tb.storage}); err != nil {
		t.Fatal(err)
	}
	if k, _ := loadKey(t.Context(), tb.storage, "k"); len(k.Versions) != 1 || k.Versions[0].Version != 2 {
		t.Fatalf("retired version 1 not pruned: %d versions", len(k.Versions))
	}
}

// TestStagedRotationAfterLoweringJWKSMaxAge: a JWKS copy served with
// max-age=3600 may be cached (by a CDN or shared cache too) for that hour,
// whatever jwks_max_age says later; so after jwks_max_age is lowered, a
// staged rotation, manual or by rotation_period, does not sign before that
// hour is over. Once it is, the lead is jwks_max_age again. immediate=true
// skips the wait on purpose, as for a compromised key.
func TestStagedRotationAfterLoweringJWKSMaxAge(t *testing.T) {
	const (
		servedAt   = "2026-11-23T13:00:00Z" // the JWKS copy with max-age=3600
		freshUntil = "2026-11-23T14:00:00Z"
	)
	for _, tc := range []struct {
		name  string
		wait  time.Duration // after lowering, before staging
		stage func(t *testing.T, tb *testBackend)
		want  string // version 2's activates_at
	}{
		{"rotate at once", 0, rotateK(nil), freshUntil},
		{"rotate half an hour later", 30 * time.Minute, rotateK(nil), freshUntil},
		{"rotate with less than jwks_max_age left", time.Hour - 5*time.Second, rotateK(nil), "2026-11-23T14:00:05Z"},
		{"rotate once the old copies are stale", 2 * time.Hour, rotateK(nil), "2026-11-23T15:00:10Z"},
		{"rotate immediate=true", 0, rotateK(map[string]any{"immediate": true}), servedAt},
		{"rotation_period, at once", 0, periodicK, freshUntil},
		{"rotation_period, half an hour later", 30 * time.Minute, periodicK, freshUntil},
		{"rotation_period, once the old copies are stale", 2 * time.Hour, periodicK, "2026-11-23T15:00:10Z"},
		// Due at 13:30: within the old max-age of now, not within the new.
		{"rotation_period due within the old max-age", 0, periodicKPeriod("1h30m"), freshUntil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := getTestBackend(t)
			tb.mustWrite(t, "keys/k", nil) // version 1 signs from 12:00
			tb.clock.Add(time.Hour)
			tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "1h"})
			_, resp := readJWKS(t, tb, "jwks")
			if cc := resp.Data[logical.HTTPCacheControlHeader]; cc != "public, max-age=3600" || tb.clock.Now().Format(time.RFC3339) != servedAt {
				t.Fatalf("Cache-Control %v at %s", cc, tb.clock.Now().Format(time.RFC3339))
			}
			tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "10s"})

			tb.clock.Add(tc.wait)
			tc.stage(t, tb)
			d := tb.mustRead(t, "keys/k").Data
			v2, ok := d["versions"].(map[string]any)["2"].(map[string]any)
			if !ok {
				t.Fatalf("no version 2: %#v", d)
			}
			if got := v2["activates_at"]; got != tc.want {
				t.Fatalf("version 2 staged at %s signs at %v, want %s: a JWKS copy without it, served at %s with max-age=3600, is fresh until %s",
					tb.clock.Now().Format(time.RFC3339), got, tc.want, servedAt, freshUntil)
			}
		})
	}
}

// rotateK stages a rotation of key k with keys/k/rotate.
func rotateK(data map[string]any) func(t *testing.T, tb *testBackend) {
	return func(t *testing.T, tb *testBackend) {
		t.Helper()
		tb.mustWrite(t, "keys/k/rotate", data)
	}
}

// periodicK gives key k a rotation_period that is already over (version 1
// signed from 12:00) and runs the periodic function, which stages the
// rotation.
func periodicK(t *testing.T, tb *testBackend) { periodicKPeriod("1h")(t, tb) }

// periodicKPeriod gives key k the rotation_period period (version 1 signed
// from 12:00) and runs the periodic function.
func periodicKPeriod(period string) func(t *testing.T, tb *testBackend) {
	return func(t *testing.T, tb *testBackend) {
		t.Helper()
		tb.mustWrite(t, "keys/k", map[string]any{"rotation_period": period})
		if err := tb.periodic(t.Context(), &logical.Request{Storage: tb.storage}); err != nil {
			t.Fatal(err)
		}
	}
}
