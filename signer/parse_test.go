package signer

import (
	"encoding/base64"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func seg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestParseCompact(t *testing.T) {
	good := seg(`{"alg":"ES256","kid":"k1","typ":"JWT"}`) + "." + seg(`{"sub":"a"}`) + "." + seg("sig")
	p, err := ParseCompact(good)
	if err != nil {
		t.Fatal(err)
	}
	if p.Alg != ES256 || p.Kid != "k1" || p.Typ != "JWT" || string(p.Payload) != `{"sub":"a"}` || string(p.Signature) != "sig" ||
		string(p.SigningInput) != good[:strings.LastIndex(good, ".")] {
		t.Fatalf("parsed %+v", p)
	}
	body := "." + seg(`{}`) + "." + seg("sig")
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", seg(`{"alg":"none"}`) + body, ErrUnknownAlgorithm},
		{"alg None", seg(`{"alg":"None"}`) + body, ErrUnknownAlgorithm},
		{"alg NONE", seg(`{"alg":"NONE"}`) + body, ErrUnknownAlgorithm},
		{"alg nOnE", seg(`{"alg":"nOnE"}`) + body, ErrUnknownAlgorithm},
		{"HS256", seg(`{"alg":"HS256"}`) + body, ErrUnknownAlgorithm},
		{"lower-case es256", seg(`{"alg":"es256"}`) + body, ErrUnknownAlgorithm},
		{"alg not a string", seg(`{"alg":["ES256"]}`) + body, ErrMalformed},
		{"no alg", seg(`{"kid":"k"}`) + body, ErrMalformed},
		{"duplicate alg", seg(`{"alg":"HS256","alg":"ES256"}`) + body, ErrMalformed},
		{"duplicate nested name", seg(`{"alg":"ES256","ext":{"a":1,"a":2}}`) + body, ErrMalformed},
		{"embedded jwk", seg(`{"alg":"ES256","jwk":{"kty":"EC"}}`) + body, ErrMalformed},
		{"jku", seg(`{"alg":"ES256","jku":"http://127.0.0.1:1/keys"}`) + body, ErrMalformed},
		{"x5u", seg(`{"alg":"ES256","x5u":"http://127.0.0.1:1/cert"}`) + body, ErrMalformed},
		{"x5c", seg(`{"alg":"ES256","x5c":["MII"]}`) + body, ErrMalformed},
		{"crit", seg(`{"alg":"ES256","crit":["exp"]}`) + body, ErrMalformed},
		{"empty crit", seg(`{"alg":"ES256","crit":[]}`) + body, ErrMalformed},
		{"b64 false", seg(`{"alg":"ES256","b64":false,"crit":["b64"]}`) + body, ErrMalformed},
		{"b64 false without crit", seg(`{"alg":"ES256","b64":false}`) + body, ErrMalformed},
		{"x5t", seg(`{"alg":"ES256","x5t":"3q2-7w"}`) + body, ErrMalformed},
		{"x5t#S256", seg(`{"alg":"ES256","x5t#S256":"3q2-7w"}`) + body, ErrMalformed},
		{"zip", seg(`{"alg":"ES256","zip":"DEF"}`) + body, ErrMalformed},
		{"JWE header", seg(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + body, ErrMalformed},
		{"JWE five parts", seg(`{"alg":"ES256"}`) + ".a.b.c.d", ErrMalformed},
		{"JSON serialization", `{"payload":"e30","signatures":[]}`, ErrMalformed},
		{"one dot", seg(`{"alg":"ES256"}`) + "." + seg("x"), ErrMalformed},
		{"empty signature", seg(`{"alg":"ES256"}`) + "." + seg("{}") + ".", ErrMalformed},
		{"padding", seg(`{"alg":"ES256"}`) + "=" + body, ErrMalformed},
		{"standard base64", strings.ReplaceAll(seg(`{"alg":"ES256","kid":"??>"}`), "_", "/") + body, ErrMalformed},
		{"line break in the signature", seg(`{"alg":"ES256"}`) + "." + seg("{}") + ".c2ln\nc2ln", ErrMalformed},
		{"carriage return in the header", seg(`{"alg":"ES256"}`)[:4] + "\r" + seg(`{"alg":"ES256"}`)[4:] + body, ErrMalformed},
		{"signature only a line break", seg(`{"alg":"ES256"}`) + "." + seg("{}") + ".\r", ErrMalformed},
		{"stray bits", seg(`{"alg":"ES256"}`) + "." + seg("{}") + ".c2lnB", ErrMalformed},
		{"header not an object", seg(`"ES256"`) + body, ErrMalformed},
		{"header not UTF-8", seg("{\"alg\":\"ES256\",\"x\":\"\xff\"}") + body, ErrMalformed},
		{"trailing data after header", seg(`{"alg":"ES256"} {}`) + body, ErrMalformed},
		{"kid not a string", seg(`{"alg":"ES256","kid":7}`) + body, ErrMalformed},
		{"typ not a string", seg(`{"alg":"ES256","typ":["JWT"]}`) + body, ErrMalformed},
		{"typ null", seg(`{"alg":"ES256","typ":null}`) + body, ErrMalformed},
		{"header null", seg(`null`) + body, ErrMalformed},
		{"too long", seg(`{"alg":"ES256"}`) + "." + strings.Repeat("A", MaxTokenLength) + ".c2ln", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseCompact(tc.token); !errors.Is(err, tc.want) {
				t.Fatalf("ParseCompact = %v, want %v", err, tc.want)
			}
		})
	}
	// Every refused name, including any added later, is refused by name.
	for _, name := range refusedHeaders {
		t.Run("refused "+name, func(t *testing.T) {
			_, err := ParseCompact(seg(`{"alg":"ES256","kid":"k",`+strconv.Quote(name)+`:"x"}`) + body)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), strconv.Quote(name)+" is not accepted") {
				t.Fatalf("ParseCompact = %v, want %q refused", err, name)
			}
		})
	}
}

// TestParseCompactManyDots: a token of dots is refused by counting, without
// splitting it into a thousand pieces, and one over MaxTokenLength by its
// length before anything else.
func TestParseCompactManyDots(t *testing.T) {
	for _, tc := range []struct {
		tok, want string
	}{
		{strings.Repeat(".", MaxTokenLength), "has exactly 2 dots, this has 16384"},
		{strings.Repeat(".", 10<<20), "token is 10485760 bytes, more than 16384"},
	} {
		_, err := ParseCompact(tc.tok)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%d dots: %v, want %q", len(tc.tok), err, tc.want)
		}
		// Splitting MaxTokenLength dots would allocate 16385 strings
		// (256 KiB); the error alone is a few hundred bytes.
		if n := bytesAllocated(func() { _, _ = ParseCompact(tc.tok) }); n > 16<<10 {
			t.Fatalf("%d dots: refusing them allocated %d bytes", len(tc.tok), n)
		}
	}
}

// bytesAllocated is how many heap bytes f allocates, on average over a
// few runs.
func bytesAllocated(f func()) uint64 {
	const runs = 10
	var before, after runtime.MemStats
	f() // warm up, as testing.AllocsPerRun does
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// BenchmarkParseCompactManyDots is the speed of refusing a token of dots,
// at the length cap and far over it.
func BenchmarkParseCompactManyDots(b *testing.B) {
	for _, n := range []int{MaxTokenLength, 10 << 20} {
		tok := strings.Repeat(".", n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = ParseCompact(tok)
			}
		})
	}
}

func TestParseClaims(t *testing.T) {
	c, err := ParseClaims([]byte(`{"sub":"a","n":12345678901234567890}`))
	if err != nil || c["sub"] != "a" || c["n"].(interface{ String() string }).String() != "12345678901234567890" {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{`{"sub":"a","sub":"b"}`, `{"act":{"sub":"a","sub":"b"}}`, `[]`, `{"a":1}x`, "{\"a\":\"\xff\"}", `foo`, `null`, `"sub"`} {
		if _, err := ParseClaims([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseClaims(%q) = %v", bad, err)
		}
	}
}

// FuzzParseCompact: the parser takes tokens from anyone who calls verify.
// It must never panic, and what it accepts must be a well-formed compact
// JWS of a known algorithm whose parts re-encode to the input.
func FuzzParseCompact(f *testing.F) {
	f.Add(seg(`{"alg":"ES256","kid":"k"}`) + "." + seg(`{"sub":"a"}`) + "." + seg("sig"))
	f.Add(seg(`{"alg":"none"}`) + "." + seg(`{}`) + ".")
	f.Add("..")
	f.Add(seg(`{"alg":"EdDSA","crit":["x"]}`) + ".e30.c2ln")
	f.Fuzz(func(t *testing.T, token string) {
		p, err := ParseCompact(token)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownAlgorithm) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if _, err := Lookup(string(p.Alg)); err != nil {
			t.Fatalf("accepted unknown alg %q", p.Alg)
		}
		again := string(p.SigningInput) + "." + base64.RawURLEncoding.EncodeToString(p.Signature)
		if again != token {
			t.Fatalf("accepted %q, which does not re-encode to itself (%q)", token, again)
		}
	})
}
