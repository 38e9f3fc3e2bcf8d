//go:build unix

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// kmsSpec is the KMS key spec each algorithm's keys are made with here.
var kmsSpec = map[string]string{
	"RS256": "RSA_2048", "RS384": "RSA_2048", "RS512": "RSA_2048",
	"PS256": "RSA_2048", "PS384": "RSA_2048", "PS512": "RSA_2048",
	"ES256": "ECC_NIST_P256", "ES384": "ECC_NIST_P384", "ES512": "ECC_NIST_P521",
	"EdDSA": "ECC_NIST_EDWARDS25519",
}

// noCLIRetries makes the vault CLI report the first answer it gets: by
// default it retries 429s and 5xx twice, which would hide what the plugin
// answered.
var noCLIRetries = []string{"VAULT_MAX_RETRIES=0"}

// TestAWSKMS drives keys held in an AWS-KMS-compatible server (cmd/kmstest,
// a separate process on loopback, reached through the real AWS SDK in the
// plugin) through a real Vault: every algorithm, the checks made when a KMS
// key is bound, EdDSA's 4096-byte limit, rotation to a new KMS key, KMS
// faults (throttling, 5xx, an outage, a timeout, a disabled, deleted or
// denied key) turned into clear 429/503/502 answers, and the secret key
// never shown or logged.
func TestAWSKMS(t *testing.T) {
	tl := loadTools(t)
	// Only the test's access key is let in, so another one is a principal
	// without permission (AccessDeniedException).
	km := startKMSTest(t, "-access-keys", kmstest.AccessKeyID)
	// Trace: whatever the plugin logs at any level reaches the log file that
	// the Secrets subtest searches for the secret key.
	s := startDevServer(t, tl, "-log-level=trace")
	s.installPlugin(t)

	secretKey := "e2e-kms-secret-" + randomHex(t, 16)
	sessionToken := "e2e-kms-session-" + randomHex(t, 16)
	secrets.add(secretKey)
	secrets.add(sessionToken)
	// The secret key goes in on stdin ("-"), so it is not on a command line
	// either.
	r := s.run(s.rootToken, secretKey, "write", "-format=json", mountPath+"/config/aws",
		"access_key="+kmstest.AccessKeyID, "secret_key=-", "session_token="+sessionToken,
		"region="+kmstest.DefaultRegion, "endpoint="+km.url)
	if r.Err != nil {
		t.Fatalf("vault write config/aws: %v\nstderr: %s", r.Err, redact(r.Stderr))
	}
	for what, v := range map[string]string{"secret key": secretKey, "session token": sessionToken} {
		if strings.Contains(r.Stdout+r.Stderr, v) {
			t.Errorf("vault write config/aws printed the %s", what)
		}
	}

	t.Run("Algorithms", func(t *testing.T) { testKMSAlgorithms(t, s, km) })
	t.Run("KeyChecks", func(t *testing.T) { testKMSKeyChecks(t, s, km) })
	t.Run("EdDSAInputLimit", func(t *testing.T) { testKMSEdDSALimit(t, s, km) })
	t.Run("Rotation", func(t *testing.T) { testKMSRotation(t, s, km) })
	t.Run("Faults", func(t *testing.T) { testKMSFaults(t, s, km) })
	// Last, so that the log holds everything the other subtests made the
	// plugin do, failures included.
	t.Run("Secrets", func(t *testing.T) { testKMSSecrets(t, s, km, secretKey, sessionToken) })
}

// testKMSAlgorithms makes a KMS key for each algorithm, binds an awskms key
// to it (by key ID, key ARN, alias and alias ARN in turn), issues with the
// CLI and has jose verify the token from the JWKS.
func testKMSAlgorithms(t *testing.T, s *vaultServer, km *kmsProc) {
	kidAlg := map[string]string{}
	for i, a := range algorithms {
		t.Run(a.alg, func(t *testing.T) {
			keyID, arn := km.createKey(t, kmsSpec[a.alg])
			var ref string
			switch i % 4 {
			case 0:
				ref = keyID
			case 1:
				ref = arn
			case 2:
				ref = km.createAlias(t, "e2e-"+strings.ToLower(a.alg), keyID)
			case 3:
				alias := km.createAlias(t, "e2e-"+strings.ToLower(a.alg), keyID)
				ref = strings.Replace(arn, "key/"+keyID, alias, 1) // the alias ARN
			}
			key, role := "kms-"+strings.ToLower(a.alg), "r-kms-"+strings.ToLower(a.alg)
			s.vault(t, "write", mountPath+"/keys/"+key, "provider=awskms", "kms_key_id="+ref, "algorithm="+a.alg)
			s.vault(t, "write", mountPath+"/roles/"+role, "key="+key, "audiences="+e2eAudience, "ttl=5m")

			iss := s.issue(t, role)
			checkIssued(t, s, iss, a.alg, a.sigLen)
			o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: a.alg}
			out := s.tools.verifier.mustVerify(t, iss.Token, o)
			if out.Header["kid"] != iss.Kid || out.Payload["iss"] != s.issuer() {
				t.Errorf("jose verified kid %v iss %v, want %s %s", out.Header["kid"], out.Payload["iss"], iss.Kid, s.issuer())
			}
			checkKeyRead(t, s, key, a.alg, iss.Kid)
			if got := versionField(t, s, key, 1, "kms_key_arn"); got != arn {
				t.Errorf("keys/%s (kms_key_id %s): version 1 kms_key_arn = %v, want %s", key, ref, got, arn)
			}
			kidAlg[iss.Kid] = a.alg

			if strings.HasPrefix(a.alg, "ES") {
				checkECDSALengths(t, s, role, a.alg, a.sigLen, iss.Kid, o)
			}
		})
	}
	t.Run("JWKS", func(t *testing.T) {
		checkJWKS(t, s, "/v1/"+mountPath+"/jwks", kidAlg)
	})
}

// checkECDSALengths issues more ES* tokens over the HTTP API and checks that
// every signature is R‖S at its fixed length. KMS returns DER, whose
// integers are shorter when their top byte is zero (one time in 256 for
// P-256 and P-384, one in two for P-521); jose verifies a few of those, so a
// conversion that pads on the wrong side fails here.
func checkECDSALengths(t *testing.T, s *vaultServer, role, alg string, sigLen int, kid string, o verifyOpts) {
	t.Helper()
	const n = 40
	short, verified := 0, 0
	for i := range n {
		status, tok, errs := issueHTTP(t, s, role)
		if status != http.StatusOK {
			t.Fatalf("issue %d over HTTP: %d %v", i, status, errs)
		}
		p := decodeJWT(t, tok)
		if len(p.Signature) != sigLen {
			t.Errorf("%s token %d: signature is %d bytes, want %d", alg, i, len(p.Signature), sigLen)
			continue
		}
		if p.Header["kid"] != kid {
			t.Errorf("%s token %d: kid %v, want %s", alg, i, p.Header["kid"], kid)
		}
		if half := sigLen / 2; p.Signature[0] == 0 || p.Signature[half] == 0 {
			short++
			if verified < 2 {
				s.tools.verifier.mustVerify(t, tok, o)
				verified++
			}
		}
	}
	t.Logf("%s: %d signatures, %d with a zero top byte in R or S (%d verified by jose)", alg, n, short, verified)
}

// testKMSKeyChecks: a KMS key that cannot sign for the algorithm is refused
// when the key is created (400 naming the problem), and nothing is stored.
func testKMSKeyChecks(t *testing.T, s *vaultServer, km *kmsProc) {
	rsaID, _ := km.createKey(t, "RSA_2048")
	p384ID, _ := km.createKey(t, "ECC_NIST_P384")
	disabledID, _ := km.createKey(t, "ECC_NIST_P256")
	km.disableKey(t, disabledID)

	for _, c := range []struct {
		name string
		args []string
		want []string // in the error, case-insensitive
	}{
		{"rsa_bits", []string{"algorithm=RS256", "kms_key_id=" + rsaID, "rsa_bits=2048"}, []string{"rsa_bits"}},
		{"no kms_key_id", []string{"algorithm=ES256"}, []string{"kms_key_id"}},
		{"spec mismatch", []string{"algorithm=ES256", "kms_key_id=" + p384ID}, []string{"kms_key_id", "ECC_NIST_P256"}},
		{"RSA for EC", []string{"algorithm=ES384", "kms_key_id=" + rsaID}, []string{"kms_key_id", "ECC_NIST_P384"}},
		{"EC for RSA", []string{"algorithm=PS256", "kms_key_id=" + p384ID}, []string{"kms_key_id", "RSA"}},
		{"disabled", []string{"algorithm=ES256", "kms_key_id=" + disabledID}, []string{"kms_key_id", "disabled"}},
		{"not found", []string{"algorithm=ES256", "kms_key_id=0b0b0b0b-1111-4222-8333-444444444444"}, []string{"kms_key_id", "not found"}},
		{"AWS managed alias", []string{"algorithm=ES256", "kms_key_id=alias/aws/ebs"}, []string{"kms_key_id", "alias/aws/ebs"}},
		{"not a key reference", []string{"algorithm=ES256", "kms_key_id=my key"}, []string{"kms_key_id"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "kms-bad-" + strings.ReplaceAll(c.name, " ", "-")
			r := s.run(s.rootToken, "", append([]string{"write", mountPath + "/keys/" + name, "provider=awskms"}, c.args...)...)
			if r.Err == nil {
				t.Fatalf("keys/%s %v: accepted, want a 400", name, c.args)
			}
			if code := cliErrorCode(r.Stderr); code != http.StatusBadRequest {
				t.Errorf("keys/%s %v: code %d, want 400:\n%s", name, c.args, code, redact(r.Stderr))
			}
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(r.Stderr), strings.ToLower(w)) {
					t.Errorf("keys/%s %v: error does not mention %q:\n%s", name, c.args, w, redact(r.Stderr))
				}
			}
			if resp, _ := httpGet(t, s.addr+"/v1/"+mountPath+"/keys/"+name, s.rootToken); resp.StatusCode != http.StatusNotFound {
				t.Errorf("keys/%s was stored after a refused create: GET %s", name, resp.Status)
			}
		})
	}
}

// testKMSEdDSALimit: KMS signs Ed25519 only over the raw message, at most
// 4096 bytes, so an EdDSA token whose signing input is longer cannot be
// made. Asking for one is the caller's doing (their claims), not KMS
// failing: a 400 that names the limit, and no call to KMS.
func testKMSEdDSALimit(t *testing.T, s *vaultServer, km *kmsProc) {
	keyID, _ := km.createKey(t, "ECC_NIST_EDWARDS25519")
	s.vault(t, "write", mountPath+"/keys/kms-eddsa-limit", "provider=awskms", "kms_key_id="+keyID, "algorithm=EdDSA")
	s.vault(t, "write", mountPath+"/roles/r-kms-eddsa-limit", "key=kms-eddsa-limit", "audiences="+e2eAudience, "ttl=5m", "allowed_claims=blob")
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: "EdDSA"}

	// Base64url makes 3 bytes 4: a 2,000-byte claim keeps the signing
	// input under 4096 bytes, a 4,000-byte one takes it over.
	status, tok, errs := issueHTTPBody(t, s, "r-kms-eddsa-limit", `{"claims":{"blob":"`+strings.Repeat("a", 2000)+`"}}`)
	if status != http.StatusOK {
		t.Fatalf("EdDSA token with a 2,000-byte claim: %d %v, want 200", status, errs)
	}
	if n := len(tok) - len(tok[strings.LastIndexByte(tok, '.'):]); n > 4096 {
		t.Fatalf("the test's small token has a %d-byte signing input; make its claim smaller", n)
	}
	s.tools.verifier.mustVerify(t, tok, o)

	km.resetStats(t)
	status, _, errs = issueHTTPBody(t, s, "r-kms-eddsa-limit", `{"claims":{"blob":"`+strings.Repeat("a", 4000)+`"}}`)
	if status != http.StatusBadRequest || !strings.Contains(strings.Join(errs, " "), "4096") {
		t.Errorf("EdDSA token with a signing input over 4096 bytes: %d %v, want a 400 naming the 4096-byte limit", status, errs)
	}
	if st := km.stats(t); st.Total() != 0 {
		t.Errorf("a signing input KMS cannot take was sent to it: %v", st.Requests)
	}
}

// testKMSRotation rotates an awskms key to a new KMS key: the old version
// stays in the JWKS, so a token it signed still verifies; new tokens carry
// the new kid.
func testKMSRotation(t *testing.T, s *vaultServer, km *kmsProc) {
	const (
		key  = "kms-rotate"
		role = "r-kms-rotate"
		alg  = "RS256"
	)
	oldID, oldARN := km.createKey(t, "RSA_2048")
	_, newARN := km.createKey(t, "RSA_2048")
	p256ID, _ := km.createKey(t, "ECC_NIST_P256")
	s.vault(t, "write", mountPath+"/keys/"+key, "provider=awskms", "kms_key_id="+oldID, "algorithm="+alg)
	s.vault(t, "write", mountPath+"/roles/"+role, "key="+key, "audiences="+e2eAudience, "ttl=5m")
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: alg}

	before := s.issue(t, role)
	s.tools.verifier.mustVerify(t, before.Token, o)

	// Rotations that must be refused and change nothing.
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"without kms_key_id", nil, "kms_key_id"},
		{"to a key of another spec", []string{"kms_key_id=" + p256ID}, "kms_key_id"},
		{"to the same KMS key", []string{"kms_key_id=" + oldARN}, "kms_key_id"},
	} {
		r := s.run(s.rootToken, "", append([]string{"write", "-f", mountPath + "/keys/" + key + "/rotate"}, c.args...)...)
		if r.Err == nil {
			t.Errorf("rotate %s: accepted, want a 400", c.name)
			continue
		}
		if code := cliErrorCode(r.Stderr); code != http.StatusBadRequest || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("rotate %s: want a 400 naming %q, got code %d:\n%s", c.name, c.want, code, redact(r.Stderr))
		}
	}
	if d := s.vaultJSON(t, "read", "-format=json", mountPath+"/keys/"+key).Data; number(t, "latest_version", d["latest_version"]) != 1 {
		t.Fatalf("a refused rotation changed the key: latest_version %v", d["latest_version"])
	}

	// immediate=true: the staged default is covered by TestLifecycle.
	rot := s.vaultJSON(t, "write", "-format=json", mountPath+"/keys/"+key+"/rotate", "kms_key_id="+newARN, "immediate=true").Data
	if number(t, "latest_version", rot["latest_version"]) != 2 {
		t.Fatalf("after rotate: latest_version %v, want 2", rot["latest_version"])
	}
	if got := versionField(t, s, key, 1, "kms_key_arn"); got != oldARN {
		t.Errorf("version 1 kms_key_arn = %v, want %s", got, oldARN)
	}
	if got := versionField(t, s, key, 2, "kms_key_arn"); got != newARN {
		t.Errorf("version 2 kms_key_arn = %v, want %s", got, newARN)
	}
	if st := versionField(t, s, key, 1, "state"); st != "previous" {
		t.Errorf("version 1 state = %v, want previous", st)
	}

	after := s.issue(t, role)
	if after.Kid == before.Kid {
		t.Fatalf("token after rotation has the old kid %s", after.Kid)
	}
	if cur := versionField(t, s, key, 2, "kid"); cur != after.Kid {
		t.Errorf("token after rotation has kid %s, version 2 is %v", after.Kid, cur)
	}
	if out := s.tools.verifier.mustVerify(t, after.Token, o); out.Header["kid"] != after.Kid {
		t.Errorf("jose verified kid %v, want %s", out.Header["kid"], after.Kid)
	}
	s.tools.verifier.mustVerify(t, before.Token, o)
	checkJWKS(t, s, "/v1/"+mountPath+"/jwks", map[string]string{before.Kid: alg, after.Kid: alg})

	// The engine publishes the old version from the public key it stored;
	// it never calls KMS for a version that no longer signs. So disabling
	// the old KMS key changes nothing for verifiers or for issuing.
	km.disableKey(t, oldID)
	s.tools.verifier.mustVerify(t, before.Token, o)
	again := s.issue(t, role)
	if again.Kid != after.Kid {
		t.Errorf("after disabling the old KMS key: kid %s, want %s", again.Kid, after.Kid)
	}
	s.vault(t, "read", mountPath+"/keys/"+key)
}

// testKMSFaults injects KMS faults through kmstest's control endpoint and
// checks what callers of jwt/issue see.
func testKMSFaults(t *testing.T, s *vaultServer, km *kmsProc) {
	const (
		key  = "kms-faults"
		role = "r-kms-faults"
		alg  = "ES256"
	)
	keyID, arn := km.createKey(t, "ECC_NIST_P256")
	s.vault(t, "write", mountPath+"/keys/"+key, "provider=awskms", "kms_key_id="+arn, "algorithm="+alg)
	s.vault(t, "write", mountPath+"/roles/"+role, "key="+key, "audiences="+e2eAudience, "ttl=5m")
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: alg}
	kid := s.issue(t, role).Kid
	t.Cleanup(func() { km.setFaults(t, kmstest.Faults{}) })

	// With the SDK's retries (max_attempts 3, the default) most issues ride
	// out 20% throttling and 5% 5xx; any that do not must fail cleanly.
	t.Run("ThrottlingAndErrors", func(t *testing.T) {
		km.setFaults(t, kmstest.Faults{ThrottleRate: 0.2, ServerErrorRate: 0.05})
		km.resetStats(t)
		const n = 40
		attempts := issueConcurrently(s, role, n, 4)
		st := km.stats(t)
		km.setFaults(t, kmstest.Faults{})

		var tokens []string
		codes := map[int]int{}
		for i, a := range attempts {
			if a.err != "" {
				t.Errorf("issue %d: %s", i, a.err)
				continue
			}
			codes[a.code]++
			if a.code == 0 {
				checkIssuedToken(t, a, alg, 64, kid)
				tokens = append(tokens, a.token)
				continue
			}
			checkKMSFailure(t, i, a, map[int]string{
				http.StatusTooManyRequests:    "throttled",
				http.StatusServiceUnavailable: "KMS unavailable",
			})
		}
		t.Logf("%d issues: %v (0 = issued); kmstest: Sign %d, throttled %d, 5xx %d",
			n, codes, st.Requests["Sign"], st.Throttled, st.ServerErrors)
		if st.Throttled+st.ServerErrors == 0 {
			t.Fatalf("kmstest injected no fault into %d Sign calls; the test proved nothing", st.Requests["Sign"])
		}
		// Every Sign either succeeded (one per token) or met a fault that
		// was retried or reported: nothing more, nothing less.
		if want := int64(len(tokens)) + st.Throttled + st.ServerErrors; st.Requests["Sign"] != want || st.Total() != st.Requests["Sign"] {
			t.Errorf("kmstest saw %v; want only Sign, %d of them (%d tokens + %d throttled + %d 5xx)",
				st.Requests, want, len(tokens), st.Throttled, st.ServerErrors)
		}
		if len(tokens) < n/2 {
			t.Errorf("only %d of %d issues succeeded with retries on", len(tokens), n)
		}
		verifyAll(t, s.tools.verifier, tokens, o, kid)
	})

	// Without retries each fault reaches the caller: throttling is a 429,
	// a 5xx from KMS a 503.
	t.Run("NoRetries", func(t *testing.T) {
		s.vault(t, "write", mountPath+"/config/aws", "max_attempts=1")
		km.setFaults(t, kmstest.Faults{ThrottleRate: 0.2, ServerErrorRate: 0.05})
		km.resetStats(t)
		const n = 40
		codes := map[int]int{}
		for i := range n {
			status, tok, errs := issueHTTP(t, s, role)
			codes[status]++
			switch status {
			case http.StatusOK:
				if p := decodeJWT(t, tok); len(p.Signature) != 64 || p.Header["kid"] != kid {
					t.Errorf("issue %d: signature %d bytes, kid %v; want 64, %s", i, len(p.Signature), p.Header["kid"], kid)
				}
			case http.StatusTooManyRequests:
				wantMessage(t, i, status, errs, "throttled")
			case http.StatusServiceUnavailable:
				wantMessage(t, i, status, errs, "KMS unavailable")
			default:
				t.Errorf("issue %d: status %d, want 200, 429 or 503: %v", i, status, errs)
			}
		}
		st := km.stats(t)
		km.setFaults(t, kmstest.Faults{})
		t.Logf("%d issues: %v; kmstest: Sign %d, throttled %d, 5xx %d", n, codes, st.Requests["Sign"], st.Throttled, st.ServerErrors)
		if st.Requests["Sign"] != n {
			t.Errorf("max_attempts=1: kmstest saw %d Sign calls for %d issues, want one each", st.Requests["Sign"], n)
		}
		if int64(codes[http.StatusTooManyRequests]) != st.Throttled || int64(codes[http.StatusServiceUnavailable]) != st.ServerErrors {
			t.Errorf("callers got %d 429s and %d 503s; kmstest throttled %d and failed %d",
				codes[http.StatusTooManyRequests], codes[http.StatusServiceUnavailable], st.Throttled, st.ServerErrors)
		}
		if codes[http.StatusTooManyRequests] == 0 {
			t.Errorf("no 429 in %d issues at 20%% throttling", n)
		}
	})

	// An outage: the first calls fail with 503 "KMS unavailable"; after
	// five the breaker opens and calls fail fast, without reaching KMS;
	// once KMS is back and the cooldown has passed, issuing works again
	// with nothing restarted.
	t.Run("Outage", func(t *testing.T) {
		const cooldown = 3 * time.Second
		s.vault(t, "write", mountPath+"/config/aws", "max_attempts=1", "breaker_cooldown=3s")
		km.setFaults(t, kmstest.Faults{Outage: true})
		km.resetStats(t)
		vaultPID := s.cmd.Process.Pid

		want503 := map[int]string{http.StatusServiceUnavailable: "KMS unavailable"}
		for i := range 5 {
			a := tryIssueCLI(s, role)
			checkKMSFailure(t, i, a, want503)
		}
		if st := km.stats(t); st.Dropped != 5 {
			t.Errorf("5 issues during the outage: kmstest dropped %d calls, want 5", st.Dropped)
		}
		gov := kmsGovernor(t, s, km.url)
		if gov["breaker_state"] != "open" {
			t.Fatalf("after 5 failed calls the breaker is %v, want open (governor %v)", gov["breaker_state"], gov)
		}
		fastBefore := number(t, "fast_fails", gov["fast_fails"])
		opened := time.Now()

		for i := range 2 {
			a := tryIssueCLI(s, role)
			checkKMSFailure(t, 5+i, a, want503)
		}
		st := km.stats(t)
		if time.Since(opened) < cooldown-500*time.Millisecond && (st.Dropped != 5 || st.Requests["Sign"] != 5) {
			t.Errorf("with the breaker open, issues still reached KMS: Sign %d, dropped %d (want 5, 5)", st.Requests["Sign"], st.Dropped)
		}
		gov = kmsGovernor(t, s, km.url)
		if ff := number(t, "fast_fails", gov["fast_fails"]); ff < fastBefore+2 {
			t.Errorf("fast_fails went from %d to %d over 2 refused issues", fastBefore, ff)
		}

		km.setFaults(t, kmstest.Faults{})
		cleared := time.Now()
		var tok string
		err := waitFor(cooldown+15*time.Second, 500*time.Millisecond, func() (bool, error) {
			a := tryIssueCLI(s, role)
			switch {
			case a.err != "":
				return false, fmt.Errorf("%s", a.err)
			case a.code == 0:
				tok = a.token
				return true, nil
			case a.code != http.StatusServiceUnavailable:
				return false, fmt.Errorf("after the outage: code %d, want 503 or success:\n%s", a.code, a.stderr)
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("issuing did not recover after the outage: %v", err)
		}
		t.Logf("issuing recovered %s after the outage ended", time.Since(cleared).Round(100*time.Millisecond))
		if out := s.tools.verifier.mustVerify(t, tok, o); out.Header["kid"] != kid {
			t.Errorf("token after the outage: kid %v, want %s", out.Header["kid"], kid)
		}
		if gov := kmsGovernor(t, s, km.url); gov["breaker_state"] != "closed" {
			t.Errorf("after recovery the breaker is %v, want closed", gov["breaker_state"])
		}
		if s.cmd == nil || s.cmd.Process.Pid != vaultPID {
			t.Errorf("the Vault server was restarted")
		}
	})

	// A key KMS will not use is a 502 naming the problem; it is not an
	// outage, so the breaker stays closed however often it happens.
	t.Run("KeyProblems", func(t *testing.T) {
		s.vault(t, "write", mountPath+"/config/aws", "max_attempts=3")
		km.disableKey(t, keyID)
		a := tryIssueCLI(s, role)
		checkKMSFailure(t, 0, a, map[int]string{http.StatusBadGateway: "disabled"})
		if !strings.Contains(a.stderr, arn) && !strings.Contains(a.stderr, key) {
			t.Errorf("the 502 names neither the KMS key %s nor the key %s:\n%s", arn, key, a.stderr)
		}
		for i := range 6 {
			if status, _, errs := issueHTTP(t, s, role); status != http.StatusBadGateway {
				t.Errorf("issue %d with the KMS key disabled: %d %v, want 502", i+1, status, errs)
			}
		}
		if gov := kmsGovernor(t, s, km.url); gov["breaker_state"] != "closed" {
			t.Errorf("7 refusals of a disabled key opened the breaker: %v", gov)
		}
		km.enableKey(t, keyID)
		tok := s.issue(t, role).Token
		s.tools.verifier.mustVerify(t, tok, o)

		km.scheduleDeletion(t, keyID)
		a = tryIssueCLI(s, role)
		checkKMSFailure(t, 0, a, map[int]string{http.StatusBadGateway: "pending deletion"})
		km.cancelDeletion(t, keyID)
		km.enableKey(t, keyID)
		s.issue(t, role)

		// A principal KMS does not let use the key.
		s.vault(t, "write", mountPath+"/config/aws", "access_key=AKIDDENIEDE2E")
		a = tryIssueCLI(s, role)
		s.vault(t, "write", mountPath+"/config/aws", "access_key="+kmstest.AccessKeyID)
		checkKMSFailure(t, 0, a, map[int]string{http.StatusBadGateway: "access denied"})
		s.issue(t, role)
	})

	// A KMS that answers too late: the call gives up at call_timeout, and
	// the caller gets a 503, not a hung request.
	t.Run("Timeout", func(t *testing.T) {
		s.vault(t, "write", mountPath+"/config/aws", "call_timeout=1s", "max_attempts=1")
		km.setFaults(t, kmstest.Faults{Latency: 3 * time.Second})
		start := time.Now()
		a := tryIssueCLI(s, role)
		took := time.Since(start)
		km.setFaults(t, kmstest.Faults{})
		s.vault(t, "write", mountPath+"/config/aws", "call_timeout=5s", "max_attempts=3")
		checkKMSFailure(t, 0, a, map[int]string{http.StatusServiceUnavailable: "KMS unavailable"})
		if took > 2500*time.Millisecond {
			t.Errorf("with call_timeout=1s, issue took %s", took.Round(time.Millisecond))
		}
		s.issue(t, role)
	})
}

// testKMSSecrets: the secret key and session token are never returned, and
// neither Vault's log nor the plugin's output (which Vault logs) holds them.
func testKMSSecrets(t *testing.T, s *vaultServer, km *kmsProc, secretKey, sessionToken string) {
	// Make the plugin log something of its own: a failed signature is a
	// warning naming the KMS key's ARN, which only the plugin knows (Vault
	// logs request paths, never bodies), so finding the ARN in the log
	// shows that the plugin's output is there to be searched.
	keyID, arn := km.createKey(t, "ECC_NIST_P256")
	s.vault(t, "write", mountPath+"/keys/kms-secrets", "provider=awskms", "kms_key_id="+keyID, "algorithm=ES256")
	s.vault(t, "write", mountPath+"/roles/r-kms-secrets", "key=kms-secrets", "audiences="+e2eAudience, "ttl=5m")
	km.disableKey(t, keyID)
	if status, _, errs := issueHTTP(t, s, "r-kms-secrets"); status != http.StatusBadGateway {
		t.Errorf("issue with a disabled KMS key: %d %v, want 502", status, errs)
	}

	raw := s.vault(t, "read", "-format=json", mountPath+"/config/aws")
	_, body := httpGet(t, s.addr+"/v1/"+mountPath+"/config/aws", s.rootToken)
	for what, v := range map[string]string{"secret key": secretKey, "session token": sessionToken} {
		if strings.Contains(raw, v) || strings.Contains(string(body), v) {
			t.Errorf("reading config/aws returns the %s", what)
		}
	}
	var sec secret
	if err := json.Unmarshal([]byte(raw), &sec); err != nil {
		t.Fatalf("config/aws: %v", err)
	}
	d := sec.Data
	for _, f := range []string{"secret_key", "session_token"} {
		if _, ok := d[f]; ok {
			t.Errorf("config/aws read has a %q field", f)
		}
	}
	if d["secret_key_set"] != true || d["access_key"] != kmstest.AccessKeyID {
		t.Errorf("config/aws: secret_key_set %v access_key %v, want true and %s", d["secret_key_set"], d["access_key"], kmstest.AccessKeyID)
	}

	logs, _ := filepath.Glob(filepath.Join(s.dir, "vault-*.log"))
	if len(logs) == 0 {
		t.Fatal("no Vault log file to search")
	}
	arnHits := 0 // places the KMS key's ARN appears
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for what, v := range map[string]string{"secret key": secretKey, "session token": sessionToken} {
			if i := bytes.Index(b, []byte(v)); i >= 0 {
				line := 1 + bytes.Count(b[:i], []byte("\n"))
				t.Errorf("%s line %d holds the %s", filepath.Base(p), line, what)
			}
		}
		arnHits += bytes.Count(b, []byte(arn))
	}
	if arnHits == 0 {
		t.Errorf("the Vault log does not have the plugin's warning about KMS key %s; the search for secrets covered nothing of the plugin's output", arn)
	}
}

// kmsProc is a cmd/kmstest process.
type kmsProc struct {
	url    string
	remote kmstest.Remote
	client *kms.Client
}

// startKMSTest builds cmd/kmstest (or takes KMSTEST_BIN), starts it on a
// free loopback port and stops it when the test ends.
func startKMSTest(t *testing.T, args ...string) *kmsProc {
	t.Helper()
	bin := kmstestBinary(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "kmstest.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	first := &firstLineWriter{line: make(chan string, 1)}
	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	cmd.Dir = dir
	cmd.Env = processEnv(dir)
	cmd.Stdout = first
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting kmstest: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("kmstest log:\n%s", redact(tail(logPath, 40)))
		}
	})

	var line string
	select {
	case line = <-first.line:
	case <-exited:
		t.Fatalf("kmstest exited before printing its URL: %v\n%s", waitErr, tail(logPath, 20))
	case <-time.After(startTimeout):
		t.Fatalf("kmstest printed no URL within %s", startTimeout)
	}
	url, ok := strings.CutPrefix(line, "KMSTEST_URL=")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("kmstest's first line is %q, want KMSTEST_URL=http://127.0.0.1:PORT", line)
	}
	return &kmsProc{url: url, remote: kmstest.Remote{URL: url}, client: kmstest.NewClient(url)}
}

// kmstestBinary returns KMSTEST_BIN if set, else builds cmd/kmstest.
func kmstestBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KMSTEST_BIN"); p != "" {
		return mustAbs(t, p)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is needed to build cmd/kmstest (or set KMSTEST_BIN): %v", err)
	}
	out := filepath.Join(t.TempDir(), "kmstest")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/vault-jwt/vault-plugin-secrets-jwt/cmd/kmstest").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/kmstest: %v\n%s", err, b)
	}
	return out
}

// firstLineWriter hands on the first line written to it and discards the
// rest.
type firstLineWriter struct {
	mu   sync.Mutex
	buf  []byte
	done bool
	line chan string
}

func (w *firstLineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.buf = append(w.buf, p...)
		if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
			w.done = true
			w.line <- strings.TrimSpace(string(w.buf[:i]))
			w.buf = nil
		}
	}
	return len(p), nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ctx bounds one call to kmstest.
func (k *kmsProc) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cliTimeout)
}

// createKey makes a SIGN_VERIFY key of spec with the real SDK and returns
// its key ID and ARN.
func (k *kmsProc) createKey(t *testing.T, spec string) (keyID, arn string) {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	out, err := k.client.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:     types.KeySpec(spec),
		KeyUsage:    types.KeyUsageTypeSignVerify,
		Description: aws.String("e2e " + t.Name()),
	})
	if err != nil {
		t.Fatalf("kms CreateKey %s: %v", spec, err)
	}
	return aws.ToString(out.KeyMetadata.KeyId), aws.ToString(out.KeyMetadata.Arn)
}

// createAlias points alias/<name> at keyID and returns "alias/<name>".
func (k *kmsProc) createAlias(t *testing.T, name, keyID string) string {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	alias := "alias/" + name
	if _, err := k.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("kms CreateAlias %s: %v", alias, err)
	}
	return alias
}

func (k *kmsProc) disableKey(t *testing.T, keyID string) {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if _, err := k.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("kms DisableKey: %v", err)
	}
}

func (k *kmsProc) enableKey(t *testing.T, keyID string) {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if _, err := k.client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("kms EnableKey: %v", err)
	}
}

func (k *kmsProc) scheduleDeletion(t *testing.T, keyID string) {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if _, err := k.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keyID), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatalf("kms ScheduleKeyDeletion: %v", err)
	}
}

func (k *kmsProc) cancelDeletion(t *testing.T, keyID string) {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if _, err := k.client.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(keyID)}); err != nil {
		t.Fatalf("kms CancelKeyDeletion: %v", err)
	}
}

func (k *kmsProc) setFaults(t *testing.T, f kmstest.Faults) {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if err := k.remote.SetFaults(ctx, f); err != nil {
		t.Fatal(err)
	}
}

func (k *kmsProc) resetStats(t *testing.T) {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	if _, err := k.remote.ResetStats(ctx); err != nil {
		t.Fatal(err)
	}
}

func (k *kmsProc) stats(t *testing.T) kmstest.Stats {
	t.Helper()
	ctx, cancel := k.ctx()
	defer cancel()
	st, err := k.remote.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// issueAttempt is one CLI jwt/issue that may fail. It holds no *testing.T,
// so attempts can run in goroutines; the caller checks them.
type issueAttempt struct {
	code           int // the HTTP status the CLI reports; 0 when it issued
	token, kid     string
	stdout, stderr string // as printed: redact before logging
	err            string // the attempt itself went wrong (not a Vault answer)
}

func tryIssueCLI(s *vaultServer, role string) issueAttempt {
	r := s.runEnv(s.rootToken, "", noCLIRetries, "write", "-f", "-format=json", mountPath+"/issue/"+role)
	a := issueAttempt{stdout: r.Stdout, stderr: r.Stderr}
	if r.Err != nil {
		if a.code = cliErrorCode(r.Stderr); a.code == 0 {
			a.err = fmt.Sprintf("vault write failed without an HTTP status: %v\n%s", r.Err, redact(r.Stderr))
		}
	} else {
		var sec secret
		if err := json.Unmarshal([]byte(r.Stdout), &sec); err != nil {
			a.err = fmt.Sprintf("decoding the CLI's output: %v", err)
		} else {
			a.token, _ = sec.Data["token"].(string)
			a.kid, _ = sec.Data["kid"].(string)
			secrets.add(a.token)
			if a.token == "" {
				a.err = "issued, but data.token is empty"
			}
		}
	}
	return a
}

// issueConcurrently runs n CLI issues, workers at a time.
func issueConcurrently(s *vaultServer, role string, n, workers int) []issueAttempt {
	out := make([]issueAttempt, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				out[i] = tryIssueCLI(s, role)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// checkKMSFailure checks a failed issue: a status in want, whose message
// holds want's text; no token printed, no 500.
func checkKMSFailure(t *testing.T, i int, a issueAttempt, want map[int]string) {
	t.Helper()
	if a.err != "" {
		t.Errorf("issue %d: %s", i, a.err)
		return
	}
	if jwtPattern.MatchString(a.stdout) || jwtPattern.MatchString(a.stderr) {
		t.Errorf("issue %d: the CLI printed a token (code %d)", i, a.code)
	}
	if a.code == 0 {
		t.Errorf("issue %d: issued a token, want a failure with one of %v", i, want)
		return
	}
	text, ok := want[a.code]
	if !ok {
		t.Errorf("issue %d: code %d, want one of %v:\n%s", i, a.code, want, redact(a.stderr))
		return
	}
	if !strings.Contains(strings.ToLower(a.stderr), strings.ToLower(text)) {
		t.Errorf("issue %d: code %d, but the message does not say %q:\n%s", i, a.code, text, redact(a.stderr))
	}
}

// checkIssuedToken checks a token from a successful attempt: alg, kid and
// a fixed-length signature. jose checks the rest.
func checkIssuedToken(t *testing.T, a issueAttempt, alg string, sigLen int, kid string) {
	t.Helper()
	p := decodeJWT(t, a.token)
	if p.Header["alg"] != alg || p.Header["kid"] != kid || a.kid != kid {
		t.Errorf("token: alg %v kid %v (response kid %s), want %s %s", p.Header["alg"], p.Header["kid"], a.kid, alg, kid)
	}
	if len(p.Signature) != sigLen {
		t.Errorf("%s signature is %d bytes, want %d", alg, len(p.Signature), sigLen)
	}
}

// verifyAll has jose verify every token, two verifier processes at a time.
func verifyAll(t *testing.T, v *verifier, tokens []string, o verifyOpts, kid string) {
	t.Helper()
	const workers = 2
	t.Run("jose", func(t *testing.T) {
		for w := range workers {
			t.Run(strconv.Itoa(w), func(t *testing.T) {
				t.Parallel()
				for i := w; i < len(tokens); i += workers {
					if out := v.mustVerify(t, tokens[i], o); out.Header["kid"] != kid {
						t.Errorf("token %d: jose verified kid %v, want %s", i, out.Header["kid"], kid)
					}
				}
			})
		}
	})
}

// issueHTTP writes jwt/issue/<role> over the HTTP API: the status, the
// token (registered as a secret) and the error messages.
func issueHTTP(t *testing.T, s *vaultServer, role string) (status int, token string, errs []string) {
	t.Helper()
	return issueHTTPBody(t, s, role, "{}")
}

// issueHTTPBody is issueHTTP with a request body (JSON).
func issueHTTPBody(t *testing.T, s *vaultServer, role, reqBody string) (status int, token string, errs []string) {
	t.Helper()
	resp, body := httpDo(t, http.MethodPost, s.addr+"/v1/"+mountPath+"/issue/"+role, s.rootToken, reqBody)
	var out struct {
		Data   struct{ Token string } `json:"data"`
		Errors []string               `json:"errors"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("issue over HTTP: %s: body is not JSON: %v", resp.Status, err)
	}
	secrets.add(out.Data.Token)
	if resp.StatusCode == http.StatusOK && out.Data.Token == "" {
		t.Fatalf("issue over HTTP: 200 without a token")
	}
	if resp.StatusCode != http.StatusOK && (out.Data.Token != "" || jwtPattern.Match(body)) {
		t.Errorf("issue over HTTP: %s with a token in the body", resp.Status)
	}
	return resp.StatusCode, out.Data.Token, out.Errors
}

func wantMessage(t *testing.T, i, status int, errs []string, text string) {
	t.Helper()
	if !strings.Contains(strings.ToLower(strings.Join(errs, "\n")), strings.ToLower(text)) {
		t.Errorf("issue %d: %d, but the message does not say %q: %v", i, status, text, errs)
	}
}

var cliCodeRe = regexp.MustCompile(`(?m)^Code: (\d{3})\. Errors:`)

// cliErrorCode is the HTTP status in the vault CLI's error output, 0 if
// there is none.
func cliErrorCode(stderr string) int {
	m := cliCodeRe.FindStringSubmatch(stderr)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// versionField reads one field of one version of jwt/keys/<key>.
func versionField(t *testing.T, s *vaultServer, key string, version int, field string) any {
	t.Helper()
	d := s.vaultJSON(t, "read", "-format=json", mountPath+"/keys/"+key).Data
	versions, ok := d["versions"].(map[string]any)
	if !ok {
		t.Fatalf("keys/%s: versions is %T, want an object", key, d["versions"])
	}
	v, ok := versions[strconv.Itoa(version)].(map[string]any)
	if !ok {
		t.Fatalf("keys/%s: no version %d in %v", key, version, versions)
	}
	return v[field]
}

// kmsGovernor returns the config/aws "kms" entry of the governor for
// endpoint: there must be exactly one.
func kmsGovernor(t *testing.T, s *vaultServer, endpoint string) map[string]any {
	t.Helper()
	d := s.vaultJSON(t, "read", "-format=json", mountPath+"/config/aws").Data
	all, ok := d["kms"].(map[string]any)
	if !ok {
		t.Fatalf("config/aws: kms is %T, want an object", d["kms"])
	}
	var found map[string]any
	for id, v := range all {
		if !strings.Contains(id, endpoint) {
			continue
		}
		g, ok := v.(map[string]any)
		if !ok || found != nil {
			t.Fatalf("config/aws: kms = %v, want one object for %s", all, endpoint)
		}
		found = g
	}
	if found == nil {
		t.Fatalf("config/aws: kms = %v, has no governor for %s", all, endpoint)
	}
	return found
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
