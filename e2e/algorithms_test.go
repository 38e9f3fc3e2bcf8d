//go:build unix

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	e2eAudience = "e2e-aud"
	e2eTTL      = 5 * time.Minute
)

// algorithms is every algorithm the plugin offers, with the length of a JWS
// signature: r||s for ECDSA (RFC 7518 3.4), the modulus for RSA at 2048 bits.
var algorithms = []struct {
	alg    string
	sigLen int
	rsa    bool
}{
	{"RS256", 256, true},
	{"RS384", 256, true},
	{"RS512", 256, true},
	{"PS256", 256, true},
	{"PS384", 256, true},
	{"PS512", 256, true},
	{"ES256", 64, false},
	{"ES384", 96, false},
	{"ES512", 132, false},
	{"EdDSA", 64, false},
}

// keyCase is a key TestAllAlgorithms issues with: every algorithm, RSA at
// 2048 bits, and RSA at 3072 and 4096 bits as well.
type keyCase struct {
	alg    string
	sigLen int
	bits   int // rsa_bits; 0 for EC and EdDSA keys
}

func (c keyCase) name() string {
	if c.bits > 2048 {
		return c.alg + "-" + strconv.Itoa(c.bits)
	}
	return c.alg
}

// TestAllAlgorithms issues tokens with a key of each algorithm (and of each
// RSA size) from a real Vault, and has jose, PyJWT and jsonwebtoken (which
// has no EdDSA) verify every one against the plugin's public JWKS endpoint. Each
// also refuses, for every key, a token with a flipped signature bit and one
// whose payload was changed under the original signature.
func TestAllAlgorithms(t *testing.T) {
	tl := loadTools(t)
	s := startDevServer(t, tl)
	s.installPlugin(t)

	var cases []keyCase
	for _, a := range algorithms {
		c := keyCase{alg: a.alg, sigLen: a.sigLen}
		if a.rsa {
			c.bits = 2048
		}
		cases = append(cases, c)
	}
	cases = append(cases, keyCase{alg: "RS256", sigLen: 384, bits: 3072}, keyCase{alg: "PS512", sigLen: 512, bits: 4096})

	var mu sync.Mutex
	kidAlg := map[string]string{} // every kid a token was signed with -> alg
	// The keys are independent: two at a time (or -parallel) halves the
	// time the CLI and the verifier take.
	t.Run("keys", func(t *testing.T) {
		for _, a := range cases {
			t.Run(a.name(), func(t *testing.T) {
				t.Parallel()
				kid := checkAlgorithm(t, tl, s, a)
				mu.Lock()
				kidAlg[kid] = a.alg
				mu.Unlock()
			})
		}
	})
	t.Run("JWKS", func(t *testing.T) {
		a := checkJWKS(t, s, "/v1/"+mountPath+"/jwks", kidAlg)
		b := checkJWKS(t, s, "/v1/"+mountPath+"/.well-known/keys", kidAlg)
		if !slices.Equal(sortedKids(a), sortedKids(b)) {
			t.Errorf("jwks has kids %v, .well-known/keys has %v", sortedKids(a), sortedKids(b))
		}
	})

	t.Run("OpenIDConfiguration", func(t *testing.T) {
		resp, body := s.get(t, "/v1/"+mountPath+"/.well-known/openid-configuration")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET openid-configuration: %s: %s", resp.Status, body)
		}
		var doc struct {
			Issuer  string   `json:"issuer"`
			JWKSURI string   `json:"jwks_uri"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("openid-configuration is not JSON: %v\n%s", err, body)
		}
		if doc.Issuer != s.issuer() {
			t.Errorf("issuer = %q, want %q", doc.Issuer, s.issuer())
		}
		for _, a := range algorithms {
			if !slices.Contains(doc.Algs, a.alg) {
				t.Errorf("id_token_signing_alg_values_supported = %v, lacks %s (a key of it exists)", doc.Algs, a.alg)
			}
		}
		if !strings.HasPrefix(doc.JWKSURI, s.addr+"/") {
			t.Fatalf("jwks_uri = %q, want a URL on %s", doc.JWKSURI, s.addr)
		}
		checkJWKS(t, s, strings.TrimPrefix(doc.JWKSURI, s.addr), kidAlg)
	})
}

// checkAlgorithm creates a key and a role for a, issues tokens, has every
// outside verifier accept each of them and refuse tampered copies of the
// first, and returns the kid they were signed with.
func checkAlgorithm(t *testing.T, tl *tools, s *vaultServer, a keyCase) string {
	key, role := "k-"+strings.ToLower(a.name()), "r-"+a.name()
	args := []string{"write", mountPath + "/keys/" + key, "algorithm=" + a.alg}
	if a.bits != 0 {
		args = append(args, "rsa_bits="+strconv.Itoa(a.bits))
	}
	s.vault(t, args...)
	s.vault(t, "write", mountPath+"/roles/"+role, "key="+key, "audiences="+e2eAudience, "ttl=5m")
	libs := []string{"jose", "pyjwt"}
	if a.alg != "EdDSA" { // jsonwebtoken has no EdDSA
		libs = append(libs, "jsonwebtoken")
	}
	o := verifyOpts{JWKSURL: s.jwksURL(), Issuer: s.issuer(), Audience: e2eAudience, Alg: a.alg}

	// ECDSA signatures are padded to a fixed length; a short r or s
	// (about one signature in 256 for each) shows up only over a few
	// tokens, so issue several.
	n := 1
	if strings.HasPrefix(a.alg, "ES") {
		n = 10
	}
	jtis := map[string]bool{}
	var kid, first string
	for i := range n {
		iss := s.issue(t, role)
		checkIssued(t, s, iss, a.alg, a.sigLen)
		if kid == "" {
			kid, first = iss.Kid, iss.Token
		} else if iss.Kid != kid {
			t.Errorf("token %d has kid %q, token 0 had %q (no rotation happened)", i, iss.Kid, kid)
		}
		if iss.Jti != "" {
			if jtis[iss.Jti] {
				t.Errorf("jti %q issued twice", iss.Jti)
			}
			jtis[iss.Jti] = true
		}
		for _, lib := range libs {
			o.Lib = lib
			out := tl.verifier.mustVerify(t, iss.Token, o)
			if out.Header["kid"] != iss.Kid || out.Payload["iss"] != s.issuer() {
				t.Errorf("%s verified kid %v iss %v, want %s %s", lib, out.Header["kid"], out.Payload["iss"], iss.Kid, s.issuer())
			}
		}
	}

	for _, tc := range []struct{ name, token string }{
		{"signature bit flipped", flipSignatureBit(t, first)},
		{"payload changed, signature kept", changePayload(t, first)},
	} {
		for _, lib := range libs {
			o.Lib = lib
			if msg := tl.verifier.mustReject(t, tc.token, o); !strings.Contains(strings.ToLower(msg), "signature") {
				t.Errorf("%s: %s refused it, but not for its signature: %s", tc.name, lib, msg)
			}
		}
	}
	checkKeyRead(t, s, key, a.alg, kid)
	return kid
}

// flipSignatureBit returns token with one bit of its signature flipped.
func flipSignatureBit(t *testing.T, token string) string {
	t.Helper()
	i := strings.LastIndexByte(token, '.')
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil || len(sig) == 0 {
		t.Fatalf("signature: %v", err)
	}
	sig[len(sig)/2] ^= 0x01
	bad := token[:i+1] + b64(sig)
	secrets.add(bad)
	return bad
}

// changePayload returns token with "sub" set to "admin" in its payload and
// its header and signature as they were.
func changePayload(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	claims := decodeJWT(t, token).Payload
	claims["sub"] = "admin"
	raw, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	bad := parts[0] + "." + b64(raw) + "." + parts[2]
	secrets.add(bad)
	return bad
}

// checkIssued checks a jwt/issue response and the token's shape. Whether the
// signature is good is left to the outside verifier.
func checkIssued(t *testing.T, s *vaultServer, iss issued, alg string, sigLen int) {
	t.Helper()
	p := decodeJWT(t, iss.Token)
	if iss.Alg != alg || p.Header["alg"] != alg {
		t.Errorf("alg: response %q, header %v; want %s", iss.Alg, p.Header["alg"], alg)
	}
	if iss.Kid == "" || p.Header["kid"] != iss.Kid {
		t.Errorf("kid: response %q, header %v; want equal and not empty", iss.Kid, p.Header["kid"])
	}
	if len(p.Signature) != sigLen {
		t.Errorf("%s signature is %d bytes, want %d", alg, len(p.Signature), sigLen)
	}
	if p.Payload["iss"] != s.issuer() {
		t.Errorf("iss = %v, want %s", p.Payload["iss"], s.issuer())
	}
	if !audienceHas(p.Payload["aud"], e2eAudience) {
		t.Errorf("aud = %v, want it to hold %s", p.Payload["aud"], e2eAudience)
	}
	if jti, ok := p.Payload["jti"]; ok && jti != iss.Jti {
		t.Errorf("jti: token %v, response %q", jti, iss.Jti)
	} else if !ok && iss.Jti != "" {
		t.Errorf("response has jti %q, the token none", iss.Jti)
	}
	iat := number(t, "iat", p.Payload["iat"])
	exp := number(t, "exp", p.Payload["exp"])
	if d := exp - iat; d < int64(e2eTTL.Seconds())-1 || d > int64(e2eTTL.Seconds()) {
		t.Errorf("exp - iat = %ds, want the role's ttl %s", d, e2eTTL)
	}
	now := time.Now().Unix()
	if iat > now+5 || iat < now-60 {
		t.Errorf("iat = %d, now is %d", iat, now)
	}
	if in := number(t, "expires_in", iss.ExpiresIn); in <= 0 || in > int64(e2eTTL.Seconds()) || exp-now-in > 5 || in-(exp-now) > 5 {
		t.Errorf("expires_in = %d, want about exp - now = %d", in, exp-now)
	}
	switch at := iss.ExpiresAt.(type) {
	case string:
		ts, err := time.Parse(time.RFC3339, at)
		if err != nil {
			t.Errorf("expires_at = %q, not RFC 3339: %v", at, err)
		} else if ts.Unix() != exp {
			t.Errorf("expires_at = %s (%d), exp = %d", at, ts.Unix(), exp)
		}
	default:
		if got := number(t, "expires_at", at); got != exp {
			t.Errorf("expires_at = %d, exp = %d", got, exp)
		}
	}
}

func audienceHas(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, v := range a {
			if v == want {
				return true
			}
		}
	}
	return false
}

// checkKeyRead reads jwt/keys/<name> and checks that its latest version is
// the key the tokens were signed with, with a public JWK only.
func checkKeyRead(t *testing.T, s *vaultServer, key, alg, kid string) {
	t.Helper()
	d := s.vaultJSON(t, "read", "-format=json", mountPath+"/keys/"+key).Data
	if d["algorithm"] != alg {
		t.Errorf("keys/%s: algorithm = %v, want %s", key, d["algorithm"], alg)
	}
	latest := number(t, "latest_version", d["latest_version"])
	versions, ok := d["versions"].(map[string]any)
	if !ok {
		t.Fatalf("keys/%s: versions is %T, want an object", key, d["versions"])
	}
	v, ok := versions[strconv.FormatInt(latest, 10)].(map[string]any)
	if !ok {
		t.Fatalf("keys/%s: versions has no entry for latest_version %d: %v", key, latest, versions)
	}
	if v["kid"] != kid {
		t.Errorf("keys/%s: latest version's kid = %v, tokens were signed with %s", key, v["kid"], kid)
	}
	jwk, ok := v["public_key"].(map[string]any)
	if !ok {
		t.Fatalf("keys/%s: public_key is %T, want a JWK object", key, v["public_key"])
	}
	checkPublicJWK(t, "keys/"+key+" public_key", jwk)
}

// privateMembers are the JWK members that carry private or secret key
// material (RFC 7518 6.2.2, 6.3.2, 6.4.1; RFC 8037 2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

func checkPublicJWK(t *testing.T, what string, jwk map[string]any) {
	t.Helper()
	for _, m := range privateMembers {
		if _, ok := jwk[m]; ok {
			t.Errorf("%s has private member %q", what, m)
		}
	}
	if kty, _ := jwk["kty"].(string); kty == "" {
		t.Errorf("%s has no kty", what)
	}
}

// checkJWKS fetches a JWK Set without a token and checks its headers and
// keys; every kid in want must be there with its alg.
func checkJWKS(t *testing.T, s *vaultServer, path string, want map[string]string) []map[string]any {
	t.Helper()
	resp, body := s.get(t, path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/jwk-set+json" {
		t.Errorf("GET %s: Content-Type %q, want application/jwk-set+json", path, resp.Header.Get("Content-Type"))
	}
	cc := resp.Header.Get("Cache-Control")
	public, maxAge := false, -1
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "public":
			public = true
		case strings.HasPrefix(d, "max-age="):
			if n, err := strconv.Atoi(strings.TrimPrefix(d, "max-age=")); err == nil {
				maxAge = n
			}
		}
	}
	if !public || maxAge <= 0 {
		t.Errorf("GET %s: Cache-Control %q, want public and max-age=N with N > 0", path, cc)
	}

	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("GET %s: not a JWK Set: %v\n%s", path, err, body)
	}
	seen := map[string]bool{}
	for i, k := range set.Keys {
		kid, _ := k["kid"].(string)
		what := "GET " + path + " key " + strconv.Itoa(i) + " (kid " + kid + ")"
		checkPublicJWK(t, what, k)
		if kid == "" {
			t.Errorf("%s: no kid", what)
			continue
		}
		if seen[kid] {
			t.Errorf("GET %s: kid %q appears twice", path, kid)
		}
		seen[kid] = true
		if alg, ok := k["alg"]; ok && want[kid] != "" && alg != want[kid] {
			t.Errorf("%s: alg %v, want %s", what, alg, want[kid])
		}
		if use, ok := k["use"]; ok && use != "sig" {
			t.Errorf("%s: use %v, want sig", what, use)
		}
	}
	for kid, alg := range want {
		if !seen[kid] {
			t.Errorf("GET %s: no key %q (%s) though tokens were signed with it", path, kid, alg)
		}
	}
	return set.Keys
}

func sortedKids(keys []map[string]any) []string {
	var kids []string
	for _, k := range keys {
		kid, _ := k["kid"].(string)
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	return kids
}
