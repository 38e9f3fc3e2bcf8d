package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTransit answers transit/keys/<key> and transit/sign/<key> as Vault's
// transit engine does for the three key types, with the key given.
func fakeTransit(t *testing.T, alg string, key crypto.Signer) *httptest.Server {
	t.Helper()
	var pub string
	switch k := key.Public().(type) {
	case ed25519.PublicKey:
		pub = base64.StdEncoding.EncodeToString(k)
	default:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pub = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	sign := func(input string, req transitSignRequest) map[string]any {
		in, err := base64.StdEncoding.DecodeString(input)
		if err != nil {
			return map[string]any{"error": "unable to decode input"}
		}
		sig, err := signJWS(key, in)
		if err != nil {
			t.Error(err)
		}
		enc := base64.StdEncoding.EncodeToString(sig)
		if alg == "ES256" {
			if req.MarshalingAlgorithm != "jws" {
				t.Errorf("ES256: marshaling_algorithm %q, want jws", req.MarshalingAlgorithm)
			}
			enc = base64.RawURLEncoding.EncodeToString(sig)
		}
		if alg == "RS256" && req.SignatureAlgorithm != "pkcs1v15" {
			t.Errorf("RS256: signature_algorithm %q, want pkcs1v15", req.SignatureAlgorithm)
		}
		return map[string]any{"signature": "vault:v1:" + enc, "key_version": 1}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "test-token" {
			http.Error(w, `{"errors":["permission denied"]}`, http.StatusForbidden)
			return
		}
		var data map[string]any
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/transit/keys/k":
			data = map[string]any{"type": transitTypes[alg], "latest_version": 1,
				"keys": map[string]any{"1": map[string]any{"public_key": pub}}}
		case r.Method == http.MethodPost && r.URL.Path == "/v1/transit/sign/k":
			var req transitSignRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				t.Error(err)
			}
			if req.BatchInput == nil {
				data = sign(req.Input, req)
			} else {
				var res []any
				for _, it := range req.BatchInput {
					res = append(res, sign(it.Input, req))
				}
				data = map[string]any{"batch_results": res}
			}
		default:
			http.Error(w, `{"errors":["no handler"]}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTransitClientWork(t *testing.T) {
	for _, alg := range algs {
		t.Run(alg, func(t *testing.T) {
			key, err := generateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			srv := fakeTransit(t, alg, key)
			c := &config{addr: srv.URL, transitMount: "transit"}
			vc := newVaultClient(srv.URL, "test-token", 2, 5*time.Second)
			ts, err := newTransitSigner(context.Background(), vc, c, alg, "k")
			if err != nil {
				t.Fatal(err)
			}
			if err := ts.target().check(context.Background()); err != nil {
				t.Errorf("single: %v", err)
			}
			if err := ts.batchTarget(5).check(context.Background()); err != nil {
				t.Errorf("batch: %v", err)
			}
			sigs, err := ts.sigsTarget(4)
			if err != nil {
				t.Fatal(err)
			}
			if err := sigs.check(context.Background()); err != nil {
				t.Errorf("signatures only: %v", err)
			}
			if n, err := sigs.op(context.Background()); n != 4 || err != nil {
				t.Errorf("signatures only: op made %d signatures, %v; want 4", n, err)
			}
			toks, err := ts.signBatch(context.Background(), 3)
			if err != nil || len(toks) != 3 {
				t.Fatalf("signBatch: %d tokens, %v", len(toks), err)
			}
			if toks[0] == toks[1] {
				t.Error("two tokens of a batch are the same (jti not fresh)")
			}
			// A token signed with another key must not verify.
			other, _ := generateKey(alg)
			parts := strings.Split(toks[0], ".")
			sig, _ := signJWS(other, []byte(parts[0]+"."+parts[1]))
			forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
			if err := ts.verify(context.Background(), forged); err == nil {
				t.Error("a token signed with another key verified")
			}
		})
	}
}

func TestVaultSigToJWS(t *testing.T) {
	raw := []byte{0xfb, 0xff, 0x01}
	for _, c := range []struct {
		in   string
		jws  bool
		want string
		err  bool
	}{
		{"vault:v1:" + base64.StdEncoding.EncodeToString(raw), false, "-_8B", false},
		{"vault:v12:-_8B", true, "-_8B", false},
		{"vault:v1:", true, "", true},
		{"v1:abc", false, "", true},
		{"vault:v1:-_8B", false, "", true}, // base64url where base64 was due
	} {
		got, err := vaultSigToJWS(c.in, c.jws)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("vaultSigToJWS(%q, %v) = %q, %v; want %q, error %v", c.in, c.jws, got, err, c.want, c.err)
		}
	}
}

func TestJWKSetPublicKeys(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	ec, _ := generateKey("ES256")
	ed, _ := generateKey("EdDSA")
	rs, _ := generateKey("RS256")
	ecPub := ec.Public().(*ecdsa.PublicKey)
	ecBytes, _ := ecPub.Bytes()
	rsPub := rs.Public().(*rsa.PublicKey)
	raw := fmt.Sprintf(`{"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":%q,"y":%q},{"kty":"OKP","kid":"o","crv":"Ed25519","x":%q},{"kty":"RSA","kid":"r","n":%q,"e":"AQAB"},{"kty":"EC","kid":"p384","crv":"P-384","x":"","y":""}]}`,
		b64(ecBytes[1:33]), b64(ecBytes[33:]), b64(ed.Public().(ed25519.PublicKey)), b64(rsPub.N.Bytes()))
	var set jwkSet
	if err := json.Unmarshal([]byte(raw), &set); err != nil {
		t.Fatal(err)
	}
	keys, err := set.publicKeys()
	if err != nil {
		t.Fatal(err)
	}
	for kid, k := range map[string]crypto.Signer{"e": ec, "o": ed, "r": rs} {
		sig, _ := signJWS(k, signInput)
		alg := map[string]string{"e": "ES256", "o": "EdDSA", "r": "RS256"}[kid]
		if err := verifySig(alg, keys[kid], signInput, sig); err != nil {
			t.Errorf("kid %s: %v", kid, err)
		}
	}
	if _, ok := keys["p384"]; ok {
		t.Error("P-384 key parsed; the harness only reads P-256")
	}
}

func TestSignJWSForms(t *testing.T) {
	for alg, n := range map[string]int{"ES256": 64, "EdDSA": 64, "RS256": 256} {
		k, _ := generateKey(alg)
		sig, err := signJWS(k, signInput)
		if err != nil || len(sig) != n {
			t.Errorf("%s: %d bytes, %v; want %d", alg, len(sig), err, n)
		}
		bad := bytes.Clone(sig)
		bad[len(bad)-1] ^= 1
		if verifySig(alg, k.Public(), signInput, bad) == nil {
			t.Errorf("%s: a changed signature verified", alg)
		}
	}
}

func TestCheckLoopbackURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"http://127.0.0.1:8200": true, "http://localhost:1": true, "http://[::1]:8200": true,
		"http://10.0.0.1:8200": false, "https://vault.example.com": false, "ftp://127.0.0.1": false,
	} {
		if err := checkLoopbackURL(u); (err == nil) != ok {
			t.Errorf("checkLoopbackURL(%q) = %v", u, err)
		}
	}
	if err := loopbackOnly("tcp", "192.0.2.1:80", nil); err == nil {
		t.Error("dialling 192.0.2.1 allowed")
	}
}

func TestPickList(t *testing.T) {
	got, err := pickList("-algs", "RS256, ES256", algs)
	if err != nil || strings.Join(got, ",") != "ES256,RS256" {
		t.Errorf("pickList = %v, %v", got, err)
	}
	if _, err := pickList("-algs", "HS256", algs); err == nil {
		t.Error("HS256 accepted")
	}
	if _, err := pickList("-algs", " , ", algs); err == nil {
		t.Error("empty list accepted")
	}
}

func TestPercentileMedian(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if p := percentile(d, 0.5); p != 50 {
		t.Errorf("p50 = %d", p)
	}
	if p := percentile(d, 0.99); p != 99 {
		t.Errorf("p99 = %d", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("p50 of nothing = %d", p)
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, [][]string{{"a", "bb"}, {"ccc", "1"}}, []bool{false, true})
	want := "| a   |  bb |\n| --- | --: |\n| ccc |   1 |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestRunTarget(t *testing.T) {
	calls := 0
	var mu sync.Mutex
	tg := &target{label: "fake", unit: "tokens", workers: 3, op: func(context.Context) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		time.Sleep(time.Millisecond)
		if calls%3 == 0 {
			return 5, fmt.Errorf("item failed")
		}
		return 10, nil
	}}
	var out bytes.Buffer
	st := runTarget(context.Background(), tg, 100*time.Millisecond, &progress{w: &out}, "test", nil)
	if st.requests == 0 || st.errors == 0 || st.units != 10*st.requests+5*st.errors {
		t.Errorf("stats %+v: want requests and errors, units = 10 per request + 5 per failed one", st)
	}
	if st.firstErr != "item failed" || st.p50 <= 0 || st.p99 < st.p50 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(out.String(), "fake") || !strings.Contains(out.String(), "first error: item failed") {
		t.Errorf("progress wrote %q", out.String())
	}
}
