package backend

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// FuzzParseJSONObject: claims strings come from callers. The parser must
// refuse anything but one JSON object within the size cap, without
// panicking.
func FuzzParseJSONObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `[1]`, `"x"`, `{"a":{"b":[1,2,{"c":null}]}}`, `{} {}`, `{"a":1e999}`, ``, `nul`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		obj, err := parseJSONObject(s)
		if err != nil {
			return
		}
		if obj == nil {
			t.Fatal("nil object without error")
		}
		if len(s) > maxClaimsBytes {
			t.Fatalf("accepted %d bytes", len(s))
		}
		if _, err := json.Marshal(obj); err != nil {
			t.Fatalf("accepted object cannot be encoded again: %v", err)
		}
	})
}

// FuzzIssueClaims: whatever claims a caller sends, issue either refuses
// with a 400 or returns a token whose engine-set and pinned claims are the
// engine's, and whose other claims are only allowed ones.
func FuzzIssueClaims(f *testing.F) {
	tb := getTestBackend(f)
	tb.mustWrite(f, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(f, "roles/r", map[string]any{
		"key": "k", "subject": "svc", "audiences": "aud", "claims": `{"team":"payments"}`, "allowed_claims": "scope,env",
	})
	for _, s := range []string{`{"scope":"read"}`, `{"iss":"x"}`, `{"team":"evil"}`, `{"scope":"a","env":1}`, `{"sub":"root"}`, `{"exp":1e12}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, claims string) {
		resp, err := tb.request(t, logical.UpdateOperation, "issue/r", map[string]any{"claims": claims})
		if resp != nil && resp.IsError() {
			if code := httpStatus(logical.UpdateOperation, "issue/r", resp, err); code != 400 {
				t.Fatalf("status %d for claims %q", code, claims)
			}
			return
		}
		if err != nil {
			t.Fatalf("internal error for claims %q: %v", claims, err)
		}
		token := resp.Data["token"].(string)
		payload := decodeSegment(t, strings.Split(token, ".")[1])
		if payload["iss"] != "https://vault.test/v1/jwt" || payload["sub"] != "svc" || payload["aud"] != "aud" || payload["team"] != "payments" {
			t.Fatalf("claims %q changed an engine or pinned claim: %v", claims, payload)
		}
		for name := range payload {
			switch name {
			case "iss", "sub", "aud", "iat", "nbf", "exp", "jti", "team", "scope", "env":
			default:
				t.Fatalf("claims %q smuggled %q into the token", claims, name)
			}
		}
	})
}

// FuzzRefreshToken: refresh tokens come from callers. Only the family's
// latest refresh token is ever accepted, and it always is; anything else is
// refused with a 400, never a 500 or a panic, and presenting a used one
// again revokes the family. Each input is presented as it is (mode 0) or
// turned into a token aimed at the live family: its latest token (1), its
// id with the input as the secret (2), the family's previous token (3), or
// the latest with its end replaced by the input (4). A wrong secret for
// the family's id revokes it; a new family is issued then, so later inputs
// still test a live one. The clock stands still, so a new family is also
// issued before one reaches maxFamilyTokens unexpired tokens (the cap that
// answers 429 has its own test, TestRefreshTokenCap).
func FuzzRefreshToken(f *testing.F) {
	tb := getTestBackend(f)
	tb.mustWrite(f, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(f, "roles/r", map[string]any{"key": "k", "refresh_ttl": "1h"})
	newFamily := func(t testing.TB) string {
		return tb.mustWrite(t, "issue/r", nil).Data["refresh_token"].(string)
	}
	latest, previous, tokens := newFamily(f), "", 1
	id, secret, _ := strings.Cut(latest, ".")
	for _, s := range []string{latest, id + ".", "." + secret, id + "." + secret + "=", id + "." + strings.ToUpper(secret), "a.b.c", "", strings.Repeat(".", 100), id + "\x00." + secret} {
		for mode := range uint8(5) {
			f.Add(mode, s)
		}
	}
	f.Fuzz(func(t *testing.T, mode uint8, s string) {
		familyID, _, _ := strings.Cut(latest, ".")
		rt := s
		switch mode % 5 {
		case 1:
			rt = latest
		case 2:
			rt = familyID + "." + s
		case 3:
			if previous == "" {
				return
			}
			rt = previous
		case 4:
			rt = latest[:len(latest)-min(len(s), len(latest))] + s
		}
		resp, err := tb.request(t, logical.UpdateOperation, "refresh", map[string]any{"refresh_token": rt})
		if err == nil && !resp.IsError() {
			if rt != latest {
				t.Fatalf("refresh accepted %q, which is not the latest refresh token", rt)
			}
			latest, previous = resp.Data["refresh_token"].(string), rt
			if tokens++; tokens == maxFamilyTokens {
				latest, previous, tokens = newFamily(t), "", 1
			}
			return
		}
		if code := httpStatus(logical.UpdateOperation, "refresh", resp, err); code != 400 {
			t.Fatalf("status %d for %q: %v", code, rt, err)
		}
		if rt == latest {
			t.Fatalf("the latest refresh token of a live family was refused: %v", resp.Error())
		}
		fam, err := loadFamily(t.Context(), tb.storage, familyID)
		if err != nil || fam == nil {
			t.Fatalf("family %s: %v %v", familyID, fam, err)
		}
		if previous != "" && rt == previous && fam.RevokedAt.IsZero() {
			t.Fatalf("presenting the family's previous refresh token again did not revoke the family")
		}
		if !fam.RevokedAt.IsZero() {
			latest, previous, tokens = newFamily(t), "", 1
		}
	})
}

// fuzzFieldTypes are the field types the engine's paths use.
var fuzzFieldTypes = []framework.FieldType{
	framework.TypeBool, framework.TypeInt, framework.TypeInt64, framework.TypeFloat,
	framework.TypeDurationSecond, framework.TypeSignedDurationSecond,
	framework.TypeString, framework.TypeLowerCaseString, framework.TypeNameString,
	framework.TypeMap, framework.TypeSlice, framework.TypeStringSlice,
	framework.TypeCommaStringSlice, framework.TypeCommaIntSlice,
}

// jsonNumberSyntax is a JSON number: the inputs whose value is plain.
var jsonNumberSyntax = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// FuzzCheckFields: request fields come from callers, as JSON numbers,
// floats (clients that do not decode JSON numbers exactly), strings (the
// vault CLI) or anything else. For every field type the engine uses,
// checkFields never panics; a value it accepts converts with the
// framework's own conversion, and a number converts to exactly its value
// (no truncation, no wrap); a value it refuses gets an error that names
// the field and is one of the fixed rules, so it cannot repeat the value.
func FuzzCheckFields(f *testing.F) {
	for _, seed := range []struct {
		kind uint8
		num  float64
		str  string
	}{
		{0, 9.223372036854775808e18, ""}, {0, -9.223372036854775808e18, ""}, {0, 1e30, ""}, {0, -1e30, ""},
		{0, 1.5, ""}, {0, 42, ""}, {0, -1, ""}, {0, 0.5, ""}, {0, 1e18, ""},
		{1, 0, "9223372036854775807"}, {1, 0, "9223372036854775808"}, {1, 0, "-9223372036854775809"},
		{1, 0, "1e3"}, {1, 0, "1.5"}, {1, 0, "1e30"}, {1, 0, "-1e30"}, {1, 0, "42"}, {1, 0, "-0"},
		{2, 0, "1e3"}, {2, 0, "9223372036854775808"}, {2, 0, "-9223372036854775809"}, {2, 0, "1.5"},
		{2, 0, "90s"}, {2, 0, "1.9s"}, {2, 0, "500ms"}, {2, 0, "-5"}, {2, 0, "3d"}, {2, 0, "true"},
		{2, 0, "a,b"}, {2, 0, "1,2"}, {2, 0, "secret-token-value"},
		{3, 0, "secret-token-value"}, {4, 0, "secret-token-value"}, {5, 0, ""}, {6, 0, ""},
	} {
		f.Add(seed.kind, seed.num, seed.str)
	}
	f.Fuzz(func(t *testing.T, kind uint8, num float64, str string) {
		var v any
		switch kind % 7 {
		case 0:
			v = num
		case 1:
			v = json.Number(str)
		case 2:
			v = str
		case 3:
			v = []any{str}
		case 4:
			v = map[string]any{"k": str}
		case 5:
			v = num > 0
		case 6:
			v = nil
		}
		// The exact value of a plain number, or nil.
		var exact *big.Rat
		switch x := v.(type) {
		case float64:
			if !math.IsInf(x, 0) && !math.IsNaN(x) {
				exact = new(big.Rat).SetFloat64(x)
			}
		case json.Number, string:
			// Only exponents a float64 or an int64 can hold: big.Rat
			// would compute 10^999999999 in full.
			if m := jsonNumberSyntax.FindStringSubmatch(fmt.Sprint(x)); m != nil && len(m[3]) <= 5 && len(m[0]) <= 400 {
				exact, _ = new(big.Rat).SetString(m[0])
			}
		}
		for _, ft := range fuzzFieldTypes {
			schema := map[string]*framework.FieldSchema{"n": {Type: ft}}
			data := map[string]any{"n": v}
			err := checkFields(schema, "p", data)
			if err != nil {
				rules := []string{typeRule(ft)}
				if ft == framework.TypeDurationSecond || ft == framework.TypeSignedDurationSecond {
					want := durationRule(ft, "x")
					rules = []string{want, want + ", and not this large", want + ", not negative", "must be a whole number of seconds"}
				}
				msg := err.Error()
				rule, named := strings.CutPrefix(msg, `invalid "n": `)
				if !named || !slices.Contains(rules, rule) {
					t.Fatalf("%s, %T %#v: error %q is not `invalid \"n\": ` and one of %q", ft, v, v, msg, rules)
				}
				continue
			}
			got, _, ferr := (&framework.FieldData{Raw: data, Schema: schema}).GetOkErr("n")
			if ferr != nil {
				t.Fatalf("%s, %T %#v: accepted, but the framework cannot convert it: %v", ft, v, v, ferr)
			}
			if exact == nil {
				continue
			}
			var as *big.Rat
			switch g := got.(type) {
			case int:
				as = new(big.Rat).SetInt64(int64(g))
			case int64:
				as = new(big.Rat).SetInt64(g)
			case float64:
				if want, _ := exact.Float64(); g != want {
					t.Fatalf("%s, %T %#v: accepted as %v, want %v", ft, v, v, g, want)
				}
			}
			if as != nil && as.Cmp(exact) != 0 {
				t.Fatalf("%s, %T %#v: accepted as %v, want %s", ft, v, v, got, exact.RatString())
			}
		}
	})
}

// FuzzClaimConstraints: claim_constraints and claim values come from
// callers. Parsing a rule and checking a value against it never panics,
// and a value a rule accepts really satisfies it: the JSON type its text
// has (an integer only if its value is whole), a match of the pattern, a
// member of the enum, and at most max_length characters or items.
func FuzzClaimConstraints(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"type":"number"}`, `"42"`}, {`{"type":"number"}`, `[1]`}, {`{"type":"number"}`, `4.5`},
		{`{"type":"integer"}`, `4`}, {`{"type":"integer"}`, `4.5`}, {`{"type":"integer"}`, `1e3`},
		{`{"type":"string"}`, `1`}, {`{"type":"boolean"}`, `"true"`}, {`{"type":"array"}`, `{}`}, {`{"type":"object"}`, `[]`},
		{`{"pattern":"^refs/heads/main$"}`, `123`}, {`{"pattern":"^refs/heads/main$"}`, `["refs/heads/main"]`},
		{`{"pattern":"^a+$"}`, `"aaa"`}, {`{"enum":["read","write"]}`, `"admin"`}, {`{"enum":[1,{"a":[true]}]}`, `{"a":[true]}`},
		{`{"max_length":2}`, `"ééé"`}, {`{"max_length":2}`, `"éé"`}, {`{"type":"array","max_length":1}`, `[1,2]`},
		{`{"glob":"prod-*","max_length":8}`, `"prod-eu-west"`}, {`"prod-*"`, `"prod-eu"`}, {`{"typo":1}`, `1`},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, spec, value string) {
		rule, err := signer.DecodeJSON([]byte(spec))
		if err != nil {
			return
		}
		parsed, err := parseConstraints(map[string]any{"c": rule})
		if err != nil {
			return
		}
		c := parsed["c"]
		obj, err := parseJSONObject(`{"v":` + value + `}`)
		if err != nil {
			return
		}
		v := obj["v"]
		if c.check(v) != nil {
			return
		}
		text := strings.TrimLeft(value, " \t\r\n")
		if c.Type != "" {
			var is string
			switch {
			case text[0] == '"':
				is = "string"
			case text[0] == '[':
				is = "array"
			case text[0] == '{':
				is = "object"
			case text[0] == 't' || text[0] == 'f':
				is = "boolean"
			case text[0] == 'n':
				is = "null"
			default:
				is = "number"
				if r, ok := new(big.Rat).SetString(string(v.(json.Number))); ok && r.IsInt() {
					is = "integer"
				}
			}
			if is != c.Type && (c.Type != "number" || is != "integer") {
				t.Fatalf("rule %s accepted %s, which is of type %s", spec, value, is)
			}
		}
		s, isString := v.(string)
		if c.Pattern != "" && (!isString || !regexp.MustCompile(c.Pattern).MatchString(s)) {
			t.Fatalf("rule %s accepted %s, which does not match the pattern", spec, value)
		}
		if c.Glob != "" && !isString {
			t.Fatalf("rule %s accepted %s, which is not a string", spec, value)
		}
		if c.Enum != nil && !slices.ContainsFunc(c.Enum, func(e any) bool { return reflect.DeepEqual(e, v) }) {
			t.Fatalf("rule %s accepted %s, which is not in the enum", spec, value)
		}
		if c.MaxLength > 0 {
			if a, ok := v.([]any); (isString && utf8.RuneCountInString(s) > c.MaxLength) || (ok && len(a) > c.MaxLength) {
				t.Fatalf("rule %s accepted %s, longer than %d", spec, value, c.MaxLength)
			}
		}
	})
}
