package backend

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/local"
)

// storageFixtureNow is the clock of TestStorageFormatV1: 20 minutes after
// the v1 fixtures' last write (14:10), when the staged rotation of
// testonly-es256 is done (version 2 signs since 13:10), and the "live"
// refresh families and every revocation are still in force.
func storageFixtureNow() time.Time { return time.Date(2026, 11, 23, 14, 30, 0, 0, time.UTC) }

// newFixtureBackend is a test backend whose storage holds entries, less
// omit, and nothing else, with the clock at storageFixtureNow. Building a
// KMS client fails the test: stored keys load, publish and verify without
// AWS.
func newFixtureBackend(t *testing.T, entries map[string][]byte, omit ...string) (*testBackend, *recordingStorage) {
	t.Helper()
	rs := &recordingStorage{Storage: &logical.InmemStorage{}}
	for key, value := range entries {
		if slices.Contains(omit, key) {
			continue
		}
		if err := rs.Put(t.Context(), &logical.StorageEntry{Key: key, Value: bytes.Clone(value)}); err != nil {
			t.Fatal(err)
		}
	}
	rs.takePuts()
	tb := newBareTestBackend(t, rs, mountInProcess)
	tb.clock.Add(storageFixtureNow().Sub(tb.clock.Now()))
	tb.newKMSAPI = func(context.Context, awskms.ClientConfig) (awskms.API, error) {
		t.Error("a KMS client was built: stored keys must load, publish and verify without AWS")
		return nil, errors.New("no KMS in TestStorageFormat")
	}
	return tb, rs
}

// fixtureVersion is a key version as the fixture spells it, decoded by
// the v1 names written out below, not by the engine's types.
type fixtureVersion struct {
	alg  signer.Algorithm
	kid  string
	pub  crypto.PublicKey
	priv crypto.Signer // nil for awskms
}

func fixtureKeyVersions(t *testing.T, entries map[string][]byte, name string) map[int]fixtureVersion {
	t.Helper()
	raw, ok := entries[keyPrefix+name]
	if !ok {
		t.Fatalf("no fixture entry %s%s", keyPrefix, name)
	}
	var k struct {
		Algorithm string `json:"algorithm"`
		Versions  []struct {
			Version    int    `json:"version"`
			Kid        string `json:"kid"`
			PublicKey  []byte `json:"public_key"`
			PrivateKey []byte `json:"private_key"`
		} `json:"versions"`
	}
	decodeJSON(t, raw, &k)
	out := map[int]fixtureVersion{}
	for _, v := range k.Versions {
		fv := fixtureVersion{alg: signer.Algorithm(k.Algorithm), kid: v.Kid}
		var err error
		if fv.pub, err = x509.ParsePKIXPublicKey(v.PublicKey); err != nil {
			t.Fatalf("fixture %s%s version %d: public key: %v", keyPrefix, name, v.Version, err)
		}
		if v.PrivateKey != nil {
			priv, err := x509.ParsePKCS8PrivateKey(v.PrivateKey)
			if err != nil {
				t.Fatalf("fixture %s%s version %d: private key: %v", keyPrefix, name, v.Version, err)
			}
			fv.priv = priv.(crypto.Signer)
		}
		out[v.Version] = fv
	}
	return out
}

// checkPublished fails unless the JWKS publishes fv's kid with fv's public
// key and algorithm.
func checkPublished(t *testing.T, tb *testBackend, entry string, fv fixtureVersion) {
	t.Helper()
	set, _ := readJWKS(t, tb, "jwks")
	want, err := signer.PublicJWK(fv.alg, fv.kid, fv.pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, jwk := range set.Keys {
		if jwk.Kid == fv.kid {
			if jwk != want {
				t.Errorf("%s: the JWKS publishes kid %s as %+v, want the fixture's public key %+v", entry, fv.kid, jwk, want)
			}
			return
		}
	}
	t.Errorf("%s: kid %s is not in the JWKS", entry, fv.kid)
}

// parseWithFixtureKey checks token with golang-jwt against fv's public key
// from the fixture, and returns its header and claims.
func parseWithFixtureKey(t *testing.T, tb *testBackend, entry, token string, fv fixtureVersion) (map[string]any, jwt.MapClaims) {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, err := jwt.NewParser(jwt.WithValidMethods([]string{string(fv.alg)}), jwt.WithTimeFunc(tb.clock.Now),
		jwt.WithExpirationRequired(), jwt.WithJSONNumber()).
		ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return fv.pub, nil })
	if err != nil {
		t.Fatalf("%s: the token does not verify with the fixture's public key: %v", entry, err)
	}
	if parsed.Header["kid"] != fv.kid {
		t.Errorf("%s: kid %v, want the fixture's %s", entry, parsed.Header["kid"], fv.kid)
	}
	return parsed.Header, claims
}

// signWithFixtureKey signs claims with fv's private key from the fixture:
// a token the engine never issued, for revocations stored in the fixture.
func signWithFixtureKey(t *testing.T, fv fixtureVersion, claims map[string]any) string {
	t.Helper()
	s, err := local.New(fv.alg, fv.kid, fv.priv)
	if err != nil {
		t.Fatal(err)
	}
	header, err := signer.EncodeHeader(s, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	token, err := signer.SignCompact(t.Context(), s, header, payload)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// assertJSON fails unless got, encoded as JSON, equals the JSON document
// want, naming each member that differs.
func assertJSON(t *testing.T, what, want string, got any) {
	t.Helper()
	raw, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := jsonDiffs([]byte(want), raw)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(diffs) > 0 {
		t.Errorf("%s differs from the v1 fixture's expectation:\n%s", what, strings.Join(diffs, "\n"))
	}
}

func unix(s string) int64 {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return tm.Unix()
}

// Kids of the v1 fixture's key versions: thumbprints of their public keys.
const (
	kidES256v1 = "W7X6pjlTmMTpFLyrS44fj2CTqApZBY5_5TQidgL4zZs"
	kidES256v2 = "2pqnT9LzPU9f9gTwhto7Su4g7LjYTH4tSAZvt_jLoKc"
	kidEdDSA   = "xhHa7Lt8LiIiyMIUV5VAOqxZC2CC8A4WICKb9GhHR10"
	kidRS256   = "XPxMPX5p9AxUVC8-2lT4YeHgkqR_EybL67eSZOAAQKw"
	kidKMS     = "kJe8K3nuL3FLR1SOpj0eIrSXOYNcG5kEybDlLS-XHFY"
	// fixtureMinimalTag is role minimal's tag as stored in revoked/role/.
	fixtureMinimalTag = "CFf1q-jA0Iw"
)

// TestStorageFormatV1 starts a backend on the v1 fixtures (the entries an
// engine of format v1 wrote; see storage_fixtures_test.go) and checks that
// it behaves as that engine did: settings read back, each stored key signs
// and is published under its stored kid, stored roles' constraints hold,
// stored revocations revoke and stored refresh families refresh or are
// refused. A renamed json tag, a changed encoding of a duration or time, a
// moved storage prefix or a changed revocation bucket fails a case named
// after the entry.
func TestStorageFormatV1(t *testing.T) {
	fx, inputs := loadStorageFixtures(t, "v1")
	es256 := fixtureKeyVersions(t, fx, "testonly-es256")
	eddsa := fixtureKeyVersions(t, fx, "testonly-eddsa")
	rs256 := fixtureKeyVersions(t, fx, "testonly-rs256")
	kmsKey := fixtureKeyVersions(t, fx, "testonly-kms")
	now := storageFixtureNow()

	for _, tc := range []struct {
		name string
		// omit leaves entries out of storage.
		omit []string
		// entity makes requests come from withEntity's entity.
		entity bool
		check  func(t *testing.T, tb *testBackend)
	}{
		{name: "every entry is under a prefix the engine reads", check: func(t *testing.T, _ *testBackend) {
			prefixes := []string{keyPrefix, rolePrefix, revokedJTIPrefix, revokedSubPrefix, revokedRolePrefix, refreshPrefix}
			for key := range fx {
				if key == configPath || key == configAWSPath {
					continue
				}
				if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(key, p) }) {
					t.Errorf("fixture entry %s is under none of the engine's storage prefixes %v: a moved prefix loses every stored entry", key, prefixes)
				}
			}
			for _, p := range append(prefixes, configPath, configAWSPath) {
				if !slices.ContainsFunc(slices.Collect(maps.Keys(fx)), func(k string) bool { return k == p || strings.HasPrefix(k, p) }) {
					t.Errorf("no fixture entry at %s: the engine stores there, and its v1 format is not covered", p)
				}
			}
		}},
		{name: "config", check: func(t *testing.T, tb *testBackend) {
			assertJSON(t, "config read", `{"issuer":"https://vault.test/v1/jwt","jwks_max_age":600}`, tb.mustRead(t, "config").Data)
		}},
		{name: "config/aws", check: func(t *testing.T, tb *testBackend) {
			assertJSON(t, "config/aws read", `{"access_key":"AKIATESTONLYFIXTURE0","secret_key_set":true,"session_token_set":true,
				"role_arn":"arn:aws:iam::111122223333:role/test-only-fixture","region":"eu-west-1","endpoint":"https://kms.test-only.invalid",
				"max_requests_per_second":100,"max_concurrency":16,"call_timeout":10,"max_attempts":5,"breaker_cooldown":30,"kms":{}}`,
				tb.mustRead(t, "config/aws").Data)
		}},
		{name: "key/testonly-es256 read", check: func(t *testing.T, tb *testBackend) {
			checkKeyRead(t, tb, "testonly-es256", es256, `{"name":"testonly-es256","algorithm":"ES256","provider":"local",
				"rotation_period":0,"verification_ttl":86400,"latest_version":2,"current_version":2,"current_kid":"`+kidES256v2+`",
				"versions":{
				 "1":{"kid":"`+kidES256v1+`","state":"previous","created_at":"2026-11-23T12:00:00Z","activates_at":"2026-11-23T12:00:00Z",
				      "rotated_at":"2026-11-23T13:10:00Z","published_until":"2026-11-24T13:10:00Z"},
				 "2":{"kid":"`+kidES256v2+`","state":"current","created_at":"2026-11-23T13:00:00Z","activates_at":"2026-11-23T13:10:00Z"}}}`)
		}},
		{name: "key/testonly-eddsa read", check: func(t *testing.T, tb *testBackend) {
			checkKeyRead(t, tb, "testonly-eddsa", eddsa, `{"name":"testonly-eddsa","algorithm":"EdDSA","provider":"local",
				"rotation_period":2592000,"verification_ttl":172800,"latest_version":1,"current_version":1,"current_kid":"`+kidEdDSA+`",
				"versions":{"1":{"kid":"`+kidEdDSA+`","state":"current","created_at":"2026-11-23T12:00:00Z","activates_at":"2026-11-23T12:00:00Z"}}}`)
		}},
		{name: "key/testonly-rs256 read", check: func(t *testing.T, tb *testBackend) {
			checkKeyRead(t, tb, "testonly-rs256", rs256, `{"name":"testonly-rs256","algorithm":"RS256","provider":"local","rsa_bits":2048,
				"rotation_period":0,"verification_ttl":86400,"latest_version":1,"current_version":1,"current_kid":"`+kidRS256+`",
				"versions":{"1":{"kid":"`+kidRS256+`","state":"current","created_at":"2026-11-23T12:00:00Z","activates_at":"2026-11-23T12:00:00Z"}}}`)
		}},
		{name: "key/testonly-kms read and published without AWS configuration", omit: []string{configAWSPath}, check: func(t *testing.T, tb *testBackend) {
			checkKeyRead(t, tb, "testonly-kms", kmsKey, `{"name":"testonly-kms","algorithm":"ES256","provider":"awskms",
				"region":"eu-west-1","endpoint":"https://kms.eu-west-1.test-only.invalid",
				"rotation_period":0,"verification_ttl":86400,"latest_version":1,"current_version":1,"current_kid":"`+kidKMS+`",
				"versions":{"1":{"kid":"`+kidKMS+`","state":"current","created_at":"2026-11-23T12:00:00Z","activates_at":"2026-11-23T12:00:00Z",
				  "kms_key_arn":"arn:aws:kms:eu-west-1:111122223333:key/5fc58ef6-36a0-4f48-9b30-30c920353891"}}}`)
		}},
		{name: "JWKS publishes exactly the stored versions", check: func(t *testing.T, tb *testBackend) {
			for entry, fv := range map[string]fixtureVersion{
				"key/testonly-es256 v1": es256[1], "key/testonly-es256 v2": es256[2], "key/testonly-eddsa": eddsa[1],
				"key/testonly-rs256": rs256[1], "key/testonly-kms": kmsKey[1],
			} {
				checkPublished(t, tb, entry, fv)
			}
			if kids := jwksKids(t, tb); len(kids) != 5 {
				t.Errorf("JWKS kids %v, want the 5 stored versions", kids)
			}
		}},
		{name: "role/full read", check: func(t *testing.T, tb *testBackend) {
			assertJSON(t, "role full read", `{"name":"full","key":"testonly-es256","issuer":"https://full.vault.test/v1/jwt",
				"ttl":600,"max_ttl":7200,"audiences":["api"],"allowed_audiences":["api","api-*"],"subject":"","allowed_subjects":[],
				"claims":{"tier":"gold","big":12345678901234567890},"allowed_claims":["scope","ticket"],"not_before_skew":30,
				"typ":"at+jwt","jti":true,"subject_template":"{{identity.entity.id}}",
				"claims_template":{"team":"{{identity.entity.metadata.team}}","groups":"{{identity.entity.groups.names}}"},
				"require_entity":true,"required_claims":["scope"],
				"claim_constraints":{"scope":{"type":"string","enum":["read","write"]},"ticket":"T-*"},
				"max_audiences":2,"refresh_ttl":86400,"refresh_max_ttl":259200}`, tb.mustRead(t, "roles/full").Data)
		}},
		{name: "role/minimal read", check: func(t *testing.T, tb *testBackend) {
			assertJSON(t, "role minimal read", `{"name":"minimal","key":"testonly-eddsa","issuer":"","ttl":300,"max_ttl":3600,
				"audiences":[],"allowed_audiences":[],"subject":"","allowed_subjects":[],"claims":{},"allowed_claims":[],
				"not_before_skew":0,"typ":"JWT","jti":true,"subject_template":"","claims_template":{},"require_entity":false,
				"required_claims":[],"claim_constraints":{},"max_audiences":0,"refresh_ttl":0,"refresh_max_ttl":0}`,
				tb.mustRead(t, "roles/minimal").Data)
		}},
		{name: "role/refresh read", check: func(t *testing.T, tb *testBackend) {
			assertJSON(t, "role refresh read", `{"name":"refresh","key":"testonly-rs256","issuer":"","ttl":300,"max_ttl":3600,
				"audiences":[],"allowed_audiences":[],"subject":"user-default","allowed_subjects":["user-*"],"claims":{},"allowed_claims":[],
				"not_before_skew":0,"typ":"JWT","jti":true,"subject_template":"","claims_template":{},"require_entity":false,
				"required_claims":[],"claim_constraints":{},"max_audiences":0,"refresh_ttl":3600,"refresh_max_ttl":0}`,
				tb.mustRead(t, "roles/refresh").Data)
		}},
		{name: "role/full issues with key/testonly-es256 v2", entity: true, check: func(t *testing.T, tb *testBackend) {
			resp := tb.mustWrite(t, "issue/full", map[string]any{"claims": map[string]any{"scope": "read", "ticket": "T-9"}, "audience": "api,api-web"})
			header, claims := parseWithFixtureKey(t, tb, "role/full", resp.Data["token"].(string), es256[2])
			checkPublished(t, tb, "key/testonly-es256 v2", es256[2])
			if header["typ"] != "at+jwt" {
				t.Errorf("role/full: typ %v, want the stored at+jwt", header["typ"])
			}
			assertJSON(t, "role/full token claims (less exp, jti)", `{"iss":"https://full.vault.test/v1/jwt","sub":"7d2e3a31-ent",
				"aud":["api","api-web"],"iat":`+fmt.Sprint(now.Unix()-30)+`,"nbf":`+fmt.Sprint(now.Unix()-30)+`,
				"tier":"gold","big":12345678901234567890,"team":"payments","groups":["payments-team","all-services"],
				"scope":"read","ticket":"T-9"}`, without(claims, "exp", "jti"))
			if exp, _ := claims.GetExpirationTime(); exp == nil || !exp.Equal(now.Add(10*time.Minute)) {
				t.Errorf("role/full: exp %v, want the stored ttl of 10m", exp)
			}
			if resp.Data["refresh_token"] == nil {
				t.Error("role/full: no refresh token, but refresh_ttl is stored")
			}
			if active, reason, _ := tb.verify(t, resp.Data["token"].(string), ""); !active {
				t.Errorf("role/full token not active: %s", reason)
			}
		}},
		{name: "role/minimal issues with key/testonly-eddsa", check: func(t *testing.T, tb *testBackend) {
			token := tb.mustWrite(t, "issue/minimal", nil).Data["token"].(string)
			_, claims := parseWithFixtureKey(t, tb, "role/minimal", token, eddsa[1])
			checkPublished(t, tb, "key/testonly-eddsa", eddsa[1])
			if jti, _ := claims["jti"].(string); !strings.HasPrefix(jti, fixtureMinimalTag+".") {
				t.Errorf("role/minimal: jti %q does not start with the stored role tag %s: revoked/role entries would miss the role's tokens", jti, fixtureMinimalTag)
			}
			// Issued after the role revocation (14:10): active.
			if active, reason, _ := tb.verify(t, token, ""); !active {
				t.Errorf("role/minimal token not active: %s", reason)
			}
		}},
		{name: "role/refresh issues with key/testonly-rs256", check: func(t *testing.T, tb *testBackend) {
			resp := tb.mustWrite(t, "issue/refresh", map[string]any{"subject": "user-x"})
			_, claims := parseWithFixtureKey(t, tb, "role/refresh", resp.Data["token"].(string), rs256[1])
			checkPublished(t, tb, "key/testonly-rs256", rs256[1])
			if claims["sub"] != "user-x" || claims["iss"] != fixtureIssuer {
				t.Errorf("role/refresh: claims %v", claims)
			}
			if resp.Data["refresh_token"] == nil {
				t.Error("role/refresh: no refresh token, but refresh_ttl is stored")
			}
		}},
		{name: "key/testonly-es256 v1 (previous) still verifies", check: func(t *testing.T, tb *testBackend) {
			token := signWithFixtureKey(t, es256[1], map[string]any{"iss": fixtureIssuer, "sub": "s", "iat": now.Unix(), "exp": fixtureFarFuture})
			if active, reason, _ := tb.verify(t, token, ""); !active {
				t.Errorf("a token of key/testonly-es256 v1 is not active: %s", reason)
			}
		}},
		{name: "role/full constraints hold", entity: true, check: func(t *testing.T, tb *testBackend) {
			ok := map[string]any{"scope": "read"}
			for _, c := range []struct {
				name string
				data map[string]any
				want string
			}{
				{"claim_constraints enum", map[string]any{"claims": map[string]any{"scope": "admin"}}, "claim_constraints"},
				{"claim_constraints type", map[string]any{"claims": map[string]any{"scope": 1}}, "claim_constraints"},
				{"claim_constraints glob", map[string]any{"claims": map[string]any{"scope": "read", "ticket": "X-1"}}, "claim_constraints"},
				{"required_claims", map[string]any{"claims": map[string]any{"ticket": "T-1"}}, "required_claims"},
				{"allowed_claims", map[string]any{"claims": map[string]any{"scope": "read", "other": "x"}}, "allowed_claims"},
				{"pinned claims", map[string]any{"claims": map[string]any{"scope": "read", "tier": "free"}}, "pinned"},
				{"pinned claims_template", map[string]any{"claims": map[string]any{"scope": "read", "team": "x"}}, "pinned"},
				{"allowed_audiences", map[string]any{"claims": ok, "audience": "web"}, `matches none of role "full"'s allowed_audiences`},
				{"max_audiences", map[string]any{"claims": ok, "audience": "api,api-a,api-b"}, "max_audiences 2"},
				{"subject_template", map[string]any{"claims": ok, "subject": "someone"}, "subject_template"},
				{"max_ttl", map[string]any{"claims": ok, "ttl": "3h"}, "max_ttl"},
			} {
				t.Run(c.name, func(t *testing.T) {
					tb.wantBadRequest(t, logical.UpdateOperation, "issue/full", c.data, c.want)
				})
			}
			t.Run("require_entity", func(t *testing.T) {
				tb.entityID = ""
				defer func() { tb.entityID = "7d2e3a31-ent" }()
				tb.wantBadRequest(t, logical.UpdateOperation, "issue/full", map[string]any{"claims": ok}, "require_entity")
			})
		}},
		{name: "role/refresh allowed_subjects holds", check: func(t *testing.T, tb *testBackend) {
			tb.wantBadRequest(t, logical.UpdateOperation, "issue/refresh", map[string]any{"subject": "admin"}, "allowed_subjects")
		}},
		{name: "revoked/jti entry revokes its jti", check: func(t *testing.T, tb *testBackend) {
			claims := map[string]any{"iss": fixtureIssuer, "sub": "s", "iat": now.Unix(), "exp": fixtureFarFuture, "jti": fixtureRevokedJTI}
			active, reason, _ := tb.verify(t, signWithFixtureKey(t, es256[2], claims), "")
			if active || reason != "token revoked at 2026-11-23T14:10:00Z" {
				t.Errorf("jti %s, revoked in revoked/jti/b18: active=%v reason=%q", fixtureRevokedJTI, active, reason)
			}
			claims["jti"] = "testonly-other-jti"
			if active, reason, _ := tb.verify(t, signWithFixtureKey(t, es256[2], claims), ""); !active {
				t.Errorf("a jti that is not revoked: %s", reason)
			}
		}},
		{name: "revoked/sub entry revokes its subject's earlier tokens", check: func(t *testing.T, tb *testBackend) {
			before := signWithFixtureKey(t, rs256[1], map[string]any{"iss": fixtureIssuer, "sub": fixtureRevokedSub, "iat": unix("2026-11-23T14:10:00Z"), "exp": fixtureFarFuture})
			active, reason, _ := tb.verify(t, before, "")
			if want := `every token of subject "user-revoked" issued at or before 2026-11-23T14:10:00Z is revoked`; active || reason != want {
				t.Errorf("subject %s, revoked in revoked/sub/e27: active=%v reason=%q", fixtureRevokedSub, active, reason)
			}
			after := signWithFixtureKey(t, rs256[1], map[string]any{"iss": fixtureIssuer, "sub": fixtureRevokedSub, "iat": unix("2026-11-23T14:10:01Z"), "exp": fixtureFarFuture})
			if active, reason, _ := tb.verify(t, after, ""); !active {
				t.Errorf("a token of %s issued after its revocation: %s", fixtureRevokedSub, reason)
			}
		}},
		{name: "revoked/role entry revokes its role's earlier tokens", check: func(t *testing.T, tb *testBackend) {
			claims := map[string]any{"iss": fixtureIssuer, "iat": unix("2026-11-23T14:09:00Z"), "exp": fixtureFarFuture, "jti": fixtureMinimalTag + ".testonly"}
			active, reason, _ := tb.verify(t, signWithFixtureKey(t, eddsa[1], claims), "")
			if want := `every token of role "minimal" issued at or before 2026-11-23T14:10:00Z is revoked`; active || reason != want {
				t.Errorf("role minimal, revoked in revoked/role/f95: active=%v reason=%q", active, reason)
			}
		}},
		{name: "revocations list", check: func(t *testing.T, tb *testBackend) {
			assertJSON(t, "revocations", fmt.Sprintf(`{
				"jtis":[
				  {"iss":"https://full.vault.test/v1/jwt","jti":"PnWzApuNyxk.PXNP87cLr68G6bIfETvQWw","exp":%d},
				  {"iss":"https://vault.test/v1/jwt","jti":"testonly-revoked-jti","exp":%d},
				  {"iss":"https://vault.test/v1/jwt","jti":"uPHsG03xDv4.MSxpektVNTmOBC8vWuojog","exp":%d},
				  {"iss":"https://vault.test/v1/jwt","jti":"uPHsG03xDv4.SwbsXZCcrSWZRMJWPuhmLg","exp":%d}],
				"subjects":[{"iss":"https://vault.test/v1/jwt","sub":"user-revoked","before":%d}],
				"roles":[{"role":"minimal","role_tag":"CFf1q-jA0Iw","before":%d}],
				"total":{"jtis":4,"subjects":1,"roles":1}}`,
				unix("2026-11-23T14:16:00Z"), fixtureFarFuture, unix("2026-11-23T14:07:00Z"), unix("2026-11-23T14:08:00Z"),
				unix("2026-11-23T14:10:00Z"), unix("2026-11-23T14:10:00Z")),
				tb.mustRead(t, "revocations").Data)
		}},
		{name: "refresh family live refreshes", check: func(t *testing.T, tb *testBackend) {
			d := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": inputs.RefreshTokens["live"]}).Data
			_, claims := parseWithFixtureKey(t, tb, "refresh/vz5tUTcTm73TrBOf_yuPaQ", d["token"].(string), rs256[1])
			// The stored request: subject user-a, ttl 2m.
			if claims["sub"] != "user-a" || d["expires_in"] != int64(120) || d["refresh_expires_at"] != "2026-11-23T15:30:00Z" {
				t.Errorf("refresh/vz5tUTcTm73TrBOf_yuPaQ: claims %v, expires_in %v, refresh_expires_at %v", claims, d["expires_in"], d["refresh_expires_at"])
			}
		}},
		{name: "refresh family live_entity refreshes", entity: true, check: func(t *testing.T, tb *testBackend) {
			d := tb.mustWrite(t, "refresh", map[string]any{"refresh_token": inputs.RefreshTokens["live_entity"]}).Data
			_, claims := parseWithFixtureKey(t, tb, "refresh/Dc4OKvbvoJ8jyAI9c_7eUQ", d["token"].(string), es256[2])
			// The stored request (audience api-x, scope read) for the stored entity.
			if claims["sub"] != "7d2e3a31-ent" || claims["scope"] != "read" || fmt.Sprint(claims["aud"]) != "api-x" || claims["iss"] != fixtureRoleIssuer {
				t.Errorf("refresh/Dc4OKvbvoJ8jyAI9c_7eUQ: claims %v", claims)
			}
		}},
		{name: "refresh family reused stays revoked", check: func(t *testing.T, tb *testBackend) {
			tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": inputs.RefreshTokens["reused"]},
				"its token family was revoked at 2026-11-23T14:04:00Z after a used refresh token was presented again")
		}},
		{name: "refresh family ended stays ended", check: func(t *testing.T, tb *testBackend) {
			tb.wantBadRequest(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": inputs.RefreshTokens["ended"]},
				"the family's tokens are revoked (token revoked at 2026-11-23T14:07:00Z)")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, _ := newFixtureBackend(t, fx, tc.omit...)
			if tc.entity {
				withEntity(tb)
			}
			tc.check(t, tb)
		})
	}
}

// checkKeyRead reads keys/<name> and compares it with want, after checking
// each version's public JWK against the fixture and leaving out KMS
// metrics, which are counters since the key was loaded.
func checkKeyRead(t *testing.T, tb *testBackend, name string, fixture map[int]fixtureVersion, want string) {
	t.Helper()
	d := maps.Clone(tb.mustRead(t, "keys/"+name).Data)
	versions := map[string]any{}
	for num, v := range d["versions"].(map[string]any) {
		v := maps.Clone(v.(map[string]any))
		n, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("key/%s: version %q", name, num)
		}
		fv, ok := fixture[n]
		if !ok {
			t.Errorf("key/%s: version %s is not in the fixture", name, num)
			continue
		}
		if wantJWK, err := signer.PublicJWK(fv.alg, fv.kid, fv.pub); err != nil || v["public_key"] != wantJWK {
			t.Errorf("key/%s version %d: public key %+v, want the fixture's %+v (%v)", name, n, v["public_key"], wantJWK, err)
		}
		delete(v, "public_key")
		delete(v, "kms_metrics")
		versions[num] = v
	}
	d["versions"] = versions
	assertJSON(t, "key "+name+" read", want, d)
	for _, fv := range fixture {
		checkPublished(t, tb, keyPrefix+name, fv)
	}
}

func without(m map[string]any, names ...string) map[string]any {
	out := maps.Clone(m)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// TestStorageFormatV1Rewrite: writing a stored entry again without change
// stores the fixture's bytes, at the fixture's key. Keys, roles and both
// configs are written back through the API; revocations by the same
// request at the instant the fixture's was made, and refresh families,
// which no request rewrites unchanged, through loadFamily and saveFamily.
// A renamed json tag, a changed encoding or a moved prefix each fails
// here, naming the entry and the member.
func TestStorageFormatV1Rewrite(t *testing.T) {
	fx, _ := loadStorageFixtures(t, "v1")
	keys := slices.Sorted(maps.Keys(fx))
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			tb, rs := newFixtureBackend(t, fx)
			rewriteEntry(t, tb, key, fx[key])
			puts := rs.takePuts()
			if !slices.Equal(puts, []string{key}) {
				t.Fatalf("rewriting %s wrote %v, want exactly %s: a storage path moved", key, puts, key)
			}
			e, err := rs.Get(t.Context(), key)
			if err != nil || e == nil {
				t.Fatalf("%s: %v %v", key, e, err)
			}
			// Byte for byte: member names, order and encodings must not
			// change, and times stay in UTC (TestStoredTimesAreUTC).
			if got, want := withoutAddedMembers(key, e.Value, fx[key]), fx[key]; !bytes.Equal(got, want) {
				t.Errorf("writing %s back unchanged stored other bytes. Mounts hold v1 entries: never edit v1; a new format needs a new fixture version, and a migration if v1 entries need one:\n%s", key, diffJSON(want, got))
			}
		})
	}
}

// addedMembers are the optional members added to v1 entries since the
// fixtures were made, by storage prefix, that a write adds to an entry
// without them: a role gets its "created_at" (and "created_before") on its
// next write (see role.CreatedAt). They
// are the only difference TestStorageFormatV1Rewrite allows.
var addedMembers = map[string]*regexp.Regexp{
	rolePrefix: regexp.MustCompile(`,"created_at":"[^"]+","created_before":true`),
}

// withoutAddedMembers removes from written what addedMembers lets a write
// add to an entry of key whose fixture lacks it.
func withoutAddedMembers(key string, written, fixture []byte) []byte {
	for prefix, re := range addedMembers {
		if strings.HasPrefix(key, prefix) && !re.Match(fixture) {
			return re.ReplaceAll(written, nil)
		}
	}
	return written
}

// rewriteEntry writes the stored entry key again, unchanged, as the engine
// would.
func rewriteEntry(t *testing.T, tb *testBackend, key string, fixture []byte) {
	t.Helper()
	ctx := t.Context()
	switch {
	case key == configPath:
		tb.mustWrite(t, "config", map[string]any{"issuer": fixtureIssuer})
	case key == configAWSPath:
		tb.mustWrite(t, "config/aws", map[string]any{"region": fixtureKMSRegion})
	case strings.HasPrefix(key, keyPrefix):
		tb.mustWrite(t, "keys/"+strings.TrimPrefix(key, keyPrefix), nil)
	case strings.HasPrefix(key, rolePrefix):
		tb.mustWrite(t, "roles/"+strings.TrimPrefix(key, rolePrefix), nil)
	case isRevocationKey(key):
		// The bucket's one entry, by the v1 names.
		var rb struct {
			Entries map[string]struct {
				Issuer    string `json:"iss"`
				JTI       string `json:"jti"`
				Subject   string `json:"sub"`
				Role      string `json:"role"`
				Expires   string `json:"expires"`
				RevokedAt string `json:"revoked_at"`
			} `json:"entries"`
		}
		decodeJSON(t, fixture, &rb)
		if len(rb.Entries) != 1 {
			t.Fatalf("%s: %d entries; the v1 fixtures hold one per bucket", key, len(rb.Entries))
		}
		for _, r := range rb.Entries {
			// Revoke again at the instant of the stored revocation.
			revokedAt, err := time.Parse(time.RFC3339, r.RevokedAt)
			if err != nil {
				t.Fatalf("%s: revoked_at: %v", key, err)
			}
			tb.clock.Add(revokedAt.Sub(tb.clock.Now()))
			switch {
			case r.Role != "":
				tb.mustWrite(t, "revoke", map[string]any{"role": r.Role})
			case r.Subject != "":
				tb.mustWrite(t, "revoke", map[string]any{"subject": r.Subject, "issuer": r.Issuer})
			default:
				expires, err := time.Parse(time.RFC3339, r.Expires)
				if err != nil {
					t.Fatalf("%s: expires: %v", key, err)
				}
				tb.mustWrite(t, "revoke", map[string]any{"jti": r.JTI, "issuer": r.Issuer, "exp": expires.Add(-verifyLeeway).Unix()})
			}
		}
	case strings.HasPrefix(key, refreshPrefix):
		f, err := loadFamily(ctx, tb.storage, strings.TrimPrefix(key, refreshPrefix))
		if err != nil || f == nil {
			t.Fatalf("%s does not load: %v", key, err)
		}
		if err := tb.saveFamily(ctx, tb.storage, f); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("no rewrite for fixture entry %s: it is under none of the engine's storage prefixes", key)
	}
}

// TestStoredTimesAreUTC: whatever the host's zone, every time the engine
// writes is spelled in UTC, so that an entry reads the same on every node of
// a cluster. The host's zone here is +05:30: the clock answers in it, as
// time.Now does on such a host, and so does time.Unix. (No test in this
// package runs in parallel, so setting time.Local is safe.)
func TestStoredTimesAreUTC(t *testing.T) {
	zone := time.FixedZone("IST", 5*3600+1800)
	local := time.Local
	time.Local = zone
	t.Cleanup(func() { time.Local = local })
	tb := getTestBackend(t)
	tb.backend.clock = func() time.Time { return tb.clock.Now().In(zone) }

	tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "10m"})
	tb.mustWrite(t, "config", map[string]any{"jwks_max_age": "1m"}) // lowered: jwks_old_max_age_until
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "ES256"})
	tb.mustWrite(t, "keys/k/rotate", map[string]any{})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "ttl": "5m", "refresh_ttl": "1h", "allowed_subjects": "*"})
	first := tb.mustWrite(t, "issue/r", map[string]any{"subject": "a"}).Data
	tb.clock.Add(time.Minute)
	tb.mustWrite(t, "refresh", map[string]any{"refresh_token": first["refresh_token"]})
	tb.mustWrite(t, "revoke", map[string]any{"jti": "x", "exp": tb.clock.Now().Add(time.Hour).Unix()})
	tb.mustWrite(t, "revoke", map[string]any{"subject": "a"})
	tb.mustWrite(t, "revoke", map[string]any{"role": "r"})

	utc := 0
	for key, value := range tb.snapshot(t) {
		for _, m := range rfc3339Re.FindAllString(value, -1) {
			if !strings.HasSuffix(m, `Z"`) {
				t.Errorf("%s stores the time %s, not in UTC", key, m)
				continue
			}
			utc++
		}
	}
	// config, key versions, role, refresh family, revocations.
	if utc < 8 {
		t.Errorf("found %d times in UTC in storage, want at least 8: is the check still looking at them?", utc)
	}
}
