package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/scripts/load/internal/jwssign"
)

// target is one thing measured: op does one request (or one signature) and
// returns how many tokens or signatures it produced.
type target struct {
	id      string // group/alg, unique
	group   string
	alg     string
	label   string
	unit    string // "tokens" or "sigs"
	workers int
	op      func(ctx context.Context) (int, error)
	// check does one op and verifies what it produced.
	check func(ctx context.Context) error
}

// Claims of the tokens: the roles load.sh creates pin the same audience,
// subject and ttl, so both sides make tokens of the same size and content.
const (
	tokenAudience = "load"
	tokenSubject  = "load"
	tokenTTL      = 15 * time.Minute
)

// signInput is what the floor plugin and the raw target sign (300 bytes,
// about a JWT's header and claims); keep in step with floorplugin.
var signInput = []byte(strings.Repeat("x", 300))

func buildTargets(ctx context.Context, c *config, vc *vaultClient) ([]*target, error) {
	jwks := &jwksCache{vc: vc, path: c.jwtMount + "/jwks"}
	var out []*target
	for _, g := range c.groups {
		for _, alg := range c.algs {
			var (
				t   *target
				err error
			)
			name := c.prefix + strings.ToLower(alg)
			switch g {
			case "jwt":
				t = jwtTarget(vc, jwks, alg, c.jwtMount+"/issue/"+name, "jwt issue "+alg)
			case "jwt-batch":
				t = jwtBatchTarget(vc, jwks, alg, c.jwtMount+"/issue/"+name, c.batch)
			case "kms":
				if alg != "ES256" || c.kmsRole == "" {
					continue
				}
				t = jwtTarget(vc, jwks, alg, c.jwtMount+"/issue/"+c.kmsRole, "jwt issue "+alg+" awskms")
			case "transit", "transit-batch", "transit-batch-sigs":
				var ts *transitSigner
				if ts, err = newTransitSigner(ctx, vc, c, alg, name); err == nil {
					switch g {
					case "transit":
						t = ts.target()
					case "transit-batch":
						t = ts.batchTarget(c.batch)
					default:
						t, err = ts.sigsTarget(c.batch)
					}
				}
			case "floor":
				t = floorTarget(vc, alg, c.floorMount+"/sign")
			case "raw":
				t, err = rawTarget(alg)
			}
			if err != nil {
				return nil, err
			}
			t.id, t.group, t.alg = g+"/"+alg, g, alg
			if t.workers == 0 {
				t.workers = c.concurrency
			}
			out = append(out, t)
		}
	}
	return out, nil
}

type issueAnswer struct {
	Data struct {
		Token        string `json:"token"`
		BatchResults []struct {
			Token string `json:"token"`
			Error string `json:"error"`
		} `json:"batch_results"`
	} `json:"data"`
}

func jwtTarget(vc *vaultClient, jwks *jwksCache, alg, path, label string) *target {
	body := []byte(`{}`)
	issue := func(ctx context.Context) (string, error) {
		var a issueAnswer
		if err := vc.post(ctx, path, body, &a); err != nil {
			return "", err
		}
		if a.Data.Token == "" {
			return "", fmt.Errorf("POST %s: %w: no token", path, errNoResult)
		}
		return a.Data.Token, nil
	}
	return &target{
		label: label, unit: "tokens",
		op: func(ctx context.Context) (int, error) {
			_, err := issue(ctx)
			if err != nil {
				return 0, err
			}
			return 1, nil
		},
		check: func(ctx context.Context) error {
			tok, err := issue(ctx)
			if err != nil {
				return err
			}
			return jwks.verify(ctx, tok, alg)
		},
	}
}

func jwtBatchTarget(vc *vaultClient, jwks *jwksCache, alg, path string, n int) *target {
	body := []byte(`{"batch_input":[` + strings.TrimSuffix(strings.Repeat(`{},`, n), ",") + `]}`)
	issue := func(ctx context.Context) ([]string, error) {
		var a issueAnswer
		if err := vc.post(ctx, path, body, &a); err != nil {
			return nil, err
		}
		toks := make([]string, 0, n)
		failed, first := 0, ""
		for _, r := range a.Data.BatchResults {
			switch {
			case r.Token != "":
				toks = append(toks, r.Token)
			case failed == 0:
				first = r.Error
				fallthrough
			default:
				failed++
			}
		}
		if len(a.Data.BatchResults) != n {
			return toks, fmt.Errorf("POST %s: %d batch_results for %d items", path, len(a.Data.BatchResults), n)
		}
		if failed > 0 {
			return toks, fmt.Errorf("POST %s: %d of %d items failed; first: %s", path, failed, n, first)
		}
		return toks, nil
	}
	return &target{
		label: fmt.Sprintf("jwt issue %s batch %d", alg, n), unit: "tokens",
		op: func(ctx context.Context) (int, error) {
			toks, err := issue(ctx)
			return len(toks), err
		},
		check: func(ctx context.Context) error {
			toks, err := issue(ctx)
			if err != nil {
				return err
			}
			return jwks.verify(ctx, toks[len(toks)-1], alg)
		},
	}
}

func floorTarget(vc *vaultClient, alg, path string) *target {
	body := []byte(`{"alg":"` + alg + `"}`)
	sigLen := map[string]int{"ES256": 64, "EdDSA": 64, "RS256": 256}[alg]
	sign := func(ctx context.Context) (string, error) {
		var a struct {
			Data struct {
				Signature string `json:"signature"`
			} `json:"data"`
		}
		if err := vc.post(ctx, path, body, &a); err != nil {
			return "", err
		}
		if a.Data.Signature == "" {
			return "", fmt.Errorf("POST %s: %w: no signature", path, errNoResult)
		}
		return a.Data.Signature, nil
	}
	return &target{
		label: "floor plugin sign " + alg, unit: "sigs",
		op: func(ctx context.Context) (int, error) {
			if _, err := sign(ctx); err != nil {
				return 0, err
			}
			return 1, nil
		},
		check: func(ctx context.Context) error {
			s, err := sign(ctx)
			if err != nil {
				return err
			}
			// The floor keeps its keys to itself: only the form is checked.
			if b, err := base64.RawURLEncoding.DecodeString(s); err != nil || len(b) != sigLen {
				return fmt.Errorf("POST %s: signature is not %d bytes of base64url", path, sigLen)
			}
			return nil
		},
	}
}

// rawTarget signs signInput in this process with every core: the most
// signatures this machine can make.
func rawTarget(alg string) (*target, error) {
	key, err := generateKey(alg)
	if err != nil {
		return nil, err
	}
	n := runtime.NumCPU()
	return &target{
		label: fmt.Sprintf("raw sign %s (%d cores)", alg, n), unit: "sigs", workers: n,
		op: func(context.Context) (int, error) {
			if _, err := signJWS(key, signInput); err != nil {
				return 0, fmt.Errorf("raw %s sign: %w", alg, err)
			}
			return 1, nil
		},
		check: func(context.Context) error {
			sig, err := signJWS(key, signInput)
			if err != nil {
				return fmt.Errorf("raw %s sign: %w", alg, err)
			}
			return verifySig(alg, key.Public(), signInput, sig)
		},
	}, nil
}

func generateKey(alg string) (crypto.Signer, error) {
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "RS256":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		err = fmt.Errorf("unsupported algorithm %s", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generating a %s key: %w", alg, err)
	}
	return k, nil
}

// signJWS signs msg as a JWS signer does (jwssign.Sign).
func signJWS(key crypto.Signer, msg []byte) ([]byte, error) { return jwssign.Sign(key, msg) }

// transitSigner makes JWTs with transit/sign/<key> the way a client of
// transit must: it builds and encodes the header and claims, has transit
// sign the signing input, turns "vault:v1:<sig>" into base64url and joins
// the three parts.
type transitSigner struct {
	vc      *vaultClient
	alg     string
	path    string // transit/sign/<key>
	keyPath string // transit/keys/<key>
	builder *tokenBuilder
	// jws: the key's signatures come back base64url (ECDSA with
	// marshaling_algorithm=jws, R‖S); otherwise base64 and converted here.
	jws    bool
	params transitSignRequest
}

type transitSignRequest struct {
	Input               string             `json:"input,omitempty"`
	BatchInput          []transitBatchItem `json:"batch_input,omitempty"`
	HashAlgorithm       string             `json:"hash_algorithm,omitempty"`
	MarshalingAlgorithm string             `json:"marshaling_algorithm,omitempty"`
	SignatureAlgorithm  string             `json:"signature_algorithm,omitempty"`
}

type transitBatchItem struct {
	Input string `json:"input"`
}

type transitSignAnswer struct {
	Data struct {
		Signature    string `json:"signature"`
		BatchResults []struct {
			Signature string `json:"signature"`
			Error     string `json:"error"`
		} `json:"batch_results"`
	} `json:"data"`
}

type transitKeyAnswer struct {
	Data struct {
		Type          string `json:"type"`
		LatestVersion int    `json:"latest_version"`
		Keys          map[string]struct {
			PublicKey string `json:"public_key"`
		} `json:"keys"`
	} `json:"data"`
}

// transitTypes are the transit key type each algorithm needs.
var transitTypes = map[string]string{"ES256": "ecdsa-p256", "EdDSA": "ed25519", "RS256": "rsa-2048"}

func newTransitSigner(ctx context.Context, vc *vaultClient, c *config, alg, key string) (*transitSigner, error) {
	ts := &transitSigner{
		vc: vc, alg: alg,
		path:    c.transitMount + "/sign/" + key,
		keyPath: c.transitMount + "/keys/" + key,
	}
	var k transitKeyAnswer
	if err := vc.get(ctx, ts.keyPath, &k); err != nil {
		return nil, fmt.Errorf("transit key for %s: %w", alg, err)
	}
	if want := transitTypes[alg]; k.Data.Type != want {
		return nil, fmt.Errorf("transit key %s is of type %q; %s needs %q", ts.keyPath, k.Data.Type, alg, want)
	}
	switch alg {
	case "ES256":
		ts.jws = true
		ts.params = transitSignRequest{HashAlgorithm: "sha2-256", MarshalingAlgorithm: "jws"}
	case "RS256":
		ts.params = transitSignRequest{HashAlgorithm: "sha2-256", SignatureAlgorithm: "pkcs1v15"}
	}
	kid := fmt.Sprintf("%s:v%d", key, k.Data.LatestVersion)
	b, err := newTokenBuilder(alg, kid, c.addr+"/v1/"+c.transitMount, tokenSubject, tokenAudience, tokenTTL)
	if err != nil {
		return nil, err
	}
	ts.builder = b
	return ts, nil
}

// signOne makes one token with one transit request.
func (ts *transitSigner) signOne(ctx context.Context) (string, error) {
	in, err := ts.builder.signingInput(time.Now())
	if err != nil {
		return "", err
	}
	req := ts.params
	req.Input = base64.StdEncoding.EncodeToString([]byte(in))
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("encoding the transit request: %w", err)
	}
	var a transitSignAnswer
	if err := ts.vc.post(ctx, ts.path, body, &a); err != nil {
		return "", err
	}
	sig, err := vaultSigToJWS(a.Data.Signature, ts.jws)
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", ts.path, err)
	}
	return in + "." + sig, nil
}

// signBatch makes n tokens with one transit request.
func (ts *transitSigner) signBatch(ctx context.Context, n int) ([]string, error) {
	now := time.Now()
	inputs := make([]string, n)
	req := ts.params
	req.BatchInput = make([]transitBatchItem, n)
	for i := range inputs {
		in, err := ts.builder.signingInput(now)
		if err != nil {
			return nil, err
		}
		inputs[i] = in
		req.BatchInput[i].Input = base64.StdEncoding.EncodeToString([]byte(in))
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the transit request: %w", err)
	}
	var a transitSignAnswer
	if err := ts.vc.post(ctx, ts.path, body, &a); err != nil {
		return nil, err
	}
	if len(a.Data.BatchResults) != n {
		return nil, fmt.Errorf("POST %s: %d batch_results for %d items", ts.path, len(a.Data.BatchResults), n)
	}
	toks := make([]string, 0, n)
	failed, first := 0, ""
	for i, r := range a.Data.BatchResults {
		sig, err := vaultSigToJWS(r.Signature, ts.jws)
		if r.Error != "" {
			err = fmt.Errorf("%s", r.Error)
		}
		if err != nil {
			if failed == 0 {
				first = err.Error()
			}
			failed++
			continue
		}
		toks = append(toks, inputs[i]+"."+sig)
	}
	if failed > 0 {
		return toks, fmt.Errorf("POST %s: %d of %d items failed; first: %s", ts.path, failed, n, first)
	}
	return toks, nil
}

func (ts *transitSigner) target() *target {
	return &target{
		label: "transit sign " + ts.alg + " +client", unit: "tokens",
		op: func(ctx context.Context) (int, error) {
			if _, err := ts.signOne(ctx); err != nil {
				return 0, err
			}
			return 1, nil
		},
		check: func(ctx context.Context) error {
			tok, err := ts.signOne(ctx)
			if err != nil {
				return err
			}
			return ts.verify(ctx, tok)
		},
	}
}

func (ts *transitSigner) batchTarget(n int) *target {
	return &target{
		label: fmt.Sprintf("transit sign %s batch %d +client", ts.alg, n), unit: "tokens",
		op: func(ctx context.Context) (int, error) {
			toks, err := ts.signBatch(ctx, n)
			return len(toks), err
		},
		check: func(ctx context.Context) error {
			toks, err := ts.signBatch(ctx, n)
			if err != nil {
				return err
			}
			return ts.verify(ctx, toks[len(toks)-1])
		},
	}
}

// sigsTarget is transit's batch_input alone: the same n signing inputs,
// encoded once, signed again in every request, and no JWT made of the
// signatures. It counts signatures: the most transit's batch does, without
// the client's work that turns a signature into a token.
func (ts *transitSigner) sigsTarget(n int) (*target, error) {
	req := ts.params
	req.BatchInput = make([]transitBatchItem, n)
	inputs := make([]string, n)
	for i := range req.BatchInput {
		in, err := ts.builder.signingInput(time.Now())
		if err != nil {
			return nil, err
		}
		inputs[i] = in
		req.BatchInput[i].Input = base64.StdEncoding.EncodeToString([]byte(in))
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the transit request: %w", err)
	}
	sign := func(ctx context.Context) (*transitSignAnswer, int, error) {
		var a transitSignAnswer
		if err := ts.vc.post(ctx, ts.path, body, &a); err != nil {
			return nil, 0, err
		}
		ok := 0
		for _, r := range a.Data.BatchResults {
			if r.Error == "" && r.Signature != "" {
				ok++
			}
		}
		if len(a.Data.BatchResults) != n || ok != n {
			return &a, ok, fmt.Errorf("POST %s: %d signatures for %d items", ts.path, ok, n)
		}
		return &a, ok, nil
	}
	return &target{
		label: fmt.Sprintf("transit sign %s batch %d, signatures only", ts.alg, n), unit: "sigs",
		op: func(ctx context.Context) (int, error) {
			_, ok, err := sign(ctx)
			return ok, err
		},
		check: func(ctx context.Context) error {
			a, _, err := sign(ctx)
			if err != nil {
				return err
			}
			sig, err := vaultSigToJWS(a.Data.BatchResults[n-1].Signature, ts.jws)
			if err != nil {
				return fmt.Errorf("POST %s: %w", ts.path, err)
			}
			return ts.verify(ctx, inputs[n-1]+"."+sig)
		},
	}, nil
}

// verify checks a token against the transit key's public key.
func (ts *transitSigner) verify(ctx context.Context, tok string) error {
	var k transitKeyAnswer
	if err := ts.vc.get(ctx, ts.keyPath, &k); err != nil {
		return err
	}
	v, ok := k.Data.Keys[fmt.Sprint(k.Data.LatestVersion)]
	if !ok {
		return fmt.Errorf("GET %s: no version %d", ts.keyPath, k.Data.LatestVersion)
	}
	pub, err := parseTransitPublicKey(v.PublicKey)
	if err != nil {
		return fmt.Errorf("GET %s: %w", ts.keyPath, err)
	}
	return verifyJWT(tok, ts.alg, func(string) (crypto.PublicKey, error) { return pub, nil })
}

// tokenBuilder is the client side of a transit-signed JWT.
type tokenBuilder struct {
	header   string // base64url, encoded once
	iss, sub string
	aud      string
	ttl      time.Duration
}

type tokenClaims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Exp int64  `json:"exp"`
	Nbf int64  `json:"nbf"`
	Iat int64  `json:"iat"`
	Jti string `json:"jti"`
}

func newTokenBuilder(alg, kid, iss, sub, aud string, ttl time.Duration) (*tokenBuilder, error) {
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, "JWT"})
	if err != nil {
		return nil, fmt.Errorf("encoding the JWT header: %w", err)
	}
	return &tokenBuilder{header: base64.RawURLEncoding.EncodeToString(h), iss: iss, sub: sub, aud: aud, ttl: ttl}, nil
}

// signingInput is base64url(header) "." base64url(claims), with a fresh
// 128-bit jti.
func (b *tokenBuilder) signingInput(now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("making a jti: %w", err)
	}
	c, err := json.Marshal(tokenClaims{
		Iss: b.iss, Sub: b.sub, Aud: b.aud,
		Exp: now.Add(b.ttl).Unix(), Nbf: now.Unix(), Iat: now.Unix(),
		Jti: base64.RawURLEncoding.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", fmt.Errorf("encoding the JWT claims: %w", err)
	}
	return b.header + "." + base64.RawURLEncoding.EncodeToString(c), nil
}

// vaultSigToJWS turns transit's "vault:v<N>:<sig>" into a JWS signature:
// with marshaling_algorithm=jws the part after the prefix already is
// base64url; otherwise it is standard base64 and is re-encoded.
func vaultSigToJWS(s string, jws bool) (string, error) {
	rest, ok := strings.CutPrefix(s, "vault:v")
	if !ok {
		return "", fmt.Errorf("signature does not start with vault:v")
	}
	_, sig, ok := strings.Cut(rest, ":")
	if !ok || sig == "" {
		return "", fmt.Errorf("signature is not vault:v<version>:<signature>")
	}
	if jws {
		return sig, nil
	}
	b, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return "", fmt.Errorf("signature is not base64: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// jwksCache fetches the plugin's JWKS once, for the checks.
type jwksCache struct {
	vc   *vaultClient
	path string
	once sync.Once
	keys map[string]crypto.PublicKey
	err  error
}

func (j *jwksCache) verify(ctx context.Context, tok, alg string) error {
	j.once.Do(func() {
		var set jwkSet
		if j.err = j.vc.get(ctx, j.path, &set); j.err == nil {
			j.keys, j.err = set.publicKeys()
		}
	})
	if j.err != nil {
		return fmt.Errorf("reading the JWKS: %w", j.err)
	}
	return verifyJWT(tok, alg, func(kid string) (crypto.PublicKey, error) {
		if k, ok := j.keys[kid]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("kid %q is not in %s", kid, j.path)
	})
}
