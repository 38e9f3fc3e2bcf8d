package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRoleCRUD(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	resp := tb.mustWrite(t, "roles/r", map[string]any{
		"key":               "k",
		"ttl":               "10m",
		"max_ttl":           "2h",
		"audiences":         "api,web",
		"allowed_audiences": []string{"https://*.example.com"},
		"subject":           "svc",
		"claims":            `{"team":"payments","n":12345678901234567890}`,
		"allowed_claims":    "scope",
		"not_before_skew":   "60s",
		"typ":               "at+jwt",
		"jti":               false,
	})
	want := map[string]any{
		"name": "r", "key": "k", "issuer": "", "ttl": int64(600), "max_ttl": int64(7200),
		"audiences": []string{"api", "web"}, "allowed_audiences": []string{"https://*.example.com"},
		"subject": "svc", "allowed_subjects": []string{}, "allowed_claims": []string{"scope"},
		"not_before_skew": int64(60), "typ": "at+jwt", "jti": false,
	}
	read := tb.mustRead(t, "roles/r")
	for k, v := range want {
		if fmt.Sprint(read.Data[k]) != fmt.Sprint(v) || fmt.Sprint(resp.Data[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %#v (write: %#v), want %#v", k, read.Data[k], resp.Data[k], v)
		}
	}
	// Large integers keep every digit.
	raw, _ := json.Marshal(read.Data["claims"])
	if string(raw) != `{"n":12345678901234567890,"team":"payments"}` {
		t.Errorf("claims = %s", raw)
	}

	// An update changes only the fields sent.
	tb.mustWrite(t, "roles/r", map[string]any{"ttl": "20m"})
	read = tb.mustRead(t, "roles/r")
	if read.Data["ttl"] != int64(1200) || read.Data["subject"] != "svc" || read.Data["typ"] != "at+jwt" {
		t.Fatalf("after partial update: %#v", read.Data)
	}

	list, err := tb.request(t, logical.ListOperation, "roles/", nil)
	if err != nil || fmt.Sprint(list.Data["keys"]) != "[r]" {
		t.Fatalf("list: %v %#v", err, list)
	}
	if resp, err := tb.request(t, logical.DeleteOperation, "roles/r", nil); err != nil || resp != nil {
		t.Fatalf("delete: %v %#v", err, resp)
	}
	if resp, err := tb.request(t, logical.ReadOperation, "roles/r", nil); err != nil || resp != nil {
		t.Fatalf("read after delete: %v %#v", err, resp)
	}
}

func TestRoleDefaults(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	d := tb.mustWrite(t, "roles/r", map[string]any{"key": "k"}).Data
	if d["ttl"] != int64(300) || d["max_ttl"] != int64(3600) || d["typ"] != "JWT" || d["jti"] != true || d["not_before_skew"] != int64(0) {
		t.Fatalf("defaults: %#v", d)
	}
	// A role created with only a short max_ttl takes it as its ttl.
	d = tb.mustWrite(t, "roles/short", map[string]any{"key": "k", "max_ttl": "60s"}).Data
	if d["ttl"] != int64(60) {
		t.Fatalf("ttl = %v, want 60", d["ttl"])
	}
}

func TestRoleBadInput(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"verification_ttl": "24h"})
	tb.mustWrite(t, "roles/existing", map[string]any{"key": "k", "claims": `{"team":"a"}`})
	big := `{"blob":"` + strings.Repeat("x", maxClaimsBytes) + `"}`
	cases := []struct {
		name string
		data map[string]any
		want []string
	}{
		{"no key", map[string]any{}, []string{`"key"`, "required"}},
		{"missing key", map[string]any{"key": "nope"}, []string{`"key"`, `"nope" does not exist`}},
		{"ttl above max_ttl", map[string]any{"key": "k", "ttl": "2h", "max_ttl": "1h"}, []string{`"ttl"`, "greater than max_ttl"}},
		{"max_ttl above verification_ttl", map[string]any{"key": "k", "max_ttl": "48h"}, []string{`"max_ttl"`, "verification_ttl"}},
		{"claims not JSON", map[string]any{"key": "k", "claims": `{"a":`}, []string{`"claims"`, "must be a JSON object"}},
		{"claims an array", map[string]any{"key": "k", "claims": `[1,2]`}, []string{`"claims"`, "not an array"}},
		{"claims a string", map[string]any{"key": "k", "claims": `"x"`}, []string{`"claims"`, "not a string"}},
		{"claims two objects", map[string]any{"key": "k", "claims": `{} {}`}, []string{`"claims"`, "nothing after it"}},
		{"pinned claim number past float64", map[string]any{"key": "k", "claims": `{"big":1e999}`}, []string{`"claims"`, `"big"`, "64-bit"}},
		{"templated claim number past float64", map[string]any{"key": "k", "claims_template": `{"big":{"n":-1e400}}`}, []string{`"claims_template"`, `"big"`, "64-bit"}},
		{"claims repeat a name", map[string]any{"key": "k", "claims": `{"team":"a","team":"b"}`}, []string{`"claims"`, `repeats the member name "team"`}},
		{"claims repeat a nested name", map[string]any{"key": "k", "claims": `{"t":[{"a":1,"a":1}]}`}, []string{`"claims"`, `repeats the member name "a"`}},
		{"claims_template repeats a name", map[string]any{"key": "k", "claims_template": `{"e":"{{identity.entity.id}}","e":"x"}`}, []string{`"claims_template"`, `repeats the member name "e"`}},
		{"claim_constraints repeat a name", map[string]any{"key": "k", "allowed_claims": "s", "claim_constraints": `{"s":"a*","s":{"enum":["b"]}}`}, []string{`"claim_constraints"`, `repeats the member name "s"`}},
		{"claims a JSON array value", map[string]any{"key": "k", "claims": []any{1}}, []string{`"claims"`, "must be a JSON object"}},
		{"claims too large", map[string]any{"key": "k", "claims": big}, []string{`"claims"`, "limit of 16384"}},
		{"claims too large as object", map[string]any{"key": "k", "claims": map[string]any{"blob": strings.Repeat("x", maxClaimsBytes)}}, []string{`"claims"`, "limit of 16384"}},
		{"empty claim name", map[string]any{"key": "k", "claims": `{"":1}`}, []string{`"claims"`, "must not be empty"}},
		{"reserved allowed claim", map[string]any{"key": "k", "allowed_claims": "exp"}, []string{`"allowed_claims"`, `"exp" is reserved`}},
		{"pinned allowed claim", map[string]any{"key": "k", "claims": `{"team":"x"}`, "allowed_claims": "team"}, []string{`"allowed_claims"`, "pinned"}},
		{"bad typ", map[string]any{"key": "k", "typ": "JWT; evil"}, []string{`"typ"`}},
		{"skew too large", map[string]any{"key": "k", "not_before_skew": "2h"}, []string{`"not_before_skew"`}},
		{"bad issuer", map[string]any{"key": "k", "issuer": "https://"}, []string{`"issuer"`, "absolute URI"}},
		{"empty audience", map[string]any{"key": "k", "audiences": []string{"a", ""}}, []string{`"audiences"`, "must not be empty"}},
		{"zero ttl", map[string]any{"key": "k", "ttl": "0s"}, []string{`"ttl"`, "positive"}},
		{"negative ttl", map[string]any{"key": "k", "ttl": "-5m"}, []string{"ttl"}},
		{"fractional max_ttl", map[string]any{"key": "k", "max_ttl": "90.5s"}, []string{`invalid "max_ttl": must be a whole number of seconds`}},
		{"max_ttl above 10 years", map[string]any{"key": "k", "max_ttl": "87601h"}, []string{`"max_ttl"`, "at most 87600h"}},
		{"max_ttl near time.Duration's limit", map[string]any{"key": "k", "max_ttl": "9223372036"}, []string{`"max_ttl"`, "at most 87600h"}},
		{"ttl above 10 years", map[string]any{"key": "k", "ttl": "87601h", "max_ttl": "87601h"}, []string{"at most 87600h"}},
	}
	for _, c := range reservedClaims {
		cases = append(cases, struct {
			name string
			data map[string]any
			want []string
		}{"reserved pinned claim " + c, map[string]any{"key": "k", "claims": fmt.Sprintf(`{%q:"x"}`, c)}, []string{`"claims"`, fmt.Sprintf("%q is a reserved claim", c)}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.CreateOperation, "roles/new", tc.data, tc.want...)
			// The same input on an existing role changes nothing either.
			if _, hasKey := tc.data["key"]; hasKey || tc.name != "no key" {
				tb.wantBadRequest(t, logical.UpdateOperation, "roles/existing", tc.data, tc.want...)
			}
		})
	}
}

// TestRoleBeyondBoundsStillLoads: a role stored with a max_ttl beyond
// today's bound (written before the bound existed) still loads and issues;
// only a write must bring it within bounds. So do roles with rules refused
// since on write: a repeated required claim, max_length on an integer.
func TestRoleBeyondBoundsStillLoads(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	k, err := loadKey(t.Context(), tb.storage, "k")
	if err != nil {
		t.Fatal(err)
	}
	k.VerificationTTL = 200 * 365 * 24 * time.Hour
	entry, _ := logical.StorageEntryJSON(keyPrefix+"k", k)
	r := &role{Name: "old", Key: "k", TTL: time.Hour, MaxTTL: 150 * 365 * 24 * time.Hour, Typ: defaultTyp, JTI: true,
		AllowedClaims: []string{"n"}, RequiredClaims: []string{"n", "n"}, ClaimConstraints: map[string]any{"n": map[string]any{"type": "integer", "max_length": 3}}}
	roleEntry, _ := logical.StorageEntryJSON(rolePrefix+"old", r)
	for _, e := range []*logical.StorageEntry{entry, roleEntry} {
		if err := tb.storage.Put(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	tb.dropKey("k")
	tb.issue(t, "old", map[string]any{"ttl": "1000h", "claims": map[string]any{"n": 12345}})
	tb.mustRead(t, "keys/k")
	tb.mustRead(t, "roles/old")
	tb.wantBadRequest(t, logical.UpdateOperation, "roles/old", map[string]any{"typ": "at+jwt"}, `"max_ttl"`, "at most 87600h")
	tb.wantBadRequest(t, logical.UpdateOperation, "keys/k", map[string]any{"rotation_period": "24h"}, `"verification_ttl"`, "at most 87600h")
}

// TestControlCharactersRefused: "sub", "aud" and "iss" may not hold control
// characters (C0, DEL, C1), bidirectional formatting characters, line or
// paragraph separators, or invalid UTF-8: they can hide or reorder text in
// logs and consoles ("admin\u202e..." displays reversed), and a NUL can cut
// a value short in a verifier written in C. Every field they come from is
// checked, by one validator, and the 400 names the field.
func TestControlCharactersRefused(t *testing.T) {
	tb := getTestBackend(t)
	withEntity(tb)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "allowed_subjects": "*-readonly", "allowed_audiences": "*"})
	chars := map[string]string{
		"NUL": "\x00", "US": "\x1f", "TAB": "\t", "LF": "\n", "DEL": "\x7f", "PAD": "\u0080", "NEL": "\u0085", "CSI": "\u009b", "APC": "\u009f",
		"ALM": "\u061c", "LRM": "\u200e", "RLM": "\u200f", "LRE": "\u202a", "RLO": "\u202e",
		"LRI": "\u2066", "PDI": "\u2069", "LSEP": "\u2028", "PSEP": "\u2029", "invalid UTF-8": "\xff",
	}
	for name, c := range chars {
		rule := "UTF-8"
		if utf8.ValidString(c) {
			rule = fmt.Sprintf("U+%04X", []rune(c)[0])
		}
		for _, tc := range []struct {
			path  string
			data  map[string]any
			field string
		}{
			{"issue/r", map[string]any{"subject": "admin" + c + "-readonly"}, `invalid "subject"`},
			{"issue/r", map[string]any{"audience": "ap" + c + "i"}, `invalid "audience"`},
			{"roles/r", map[string]any{"subject": "svc" + c + "admin"}, `invalid "subject"`},
			{"roles/r", map[string]any{"audiences": "a" + c + "b"}, `invalid "audiences"`},
			{"roles/r", map[string]any{"issuer": "vault" + c + "jwt"}, `invalid "issuer"`},
			{"roles/r", map[string]any{"allowed_subjects": "user-" + c + "*"}, `invalid "allowed_subjects"`},
			{"roles/r", map[string]any{"allowed_audiences": "a" + c + "*"}, `invalid "allowed_audiences"`},
			{"config", map[string]any{"issuer": "https://vault.example.com/" + c}, `invalid "issuer"`},
			{"roles/r", map[string]any{"claims": map[string]any{"ro" + c + "le": "x"}}, `invalid "claims": claim name`},
			{"roles/r", map[string]any{"claims_template": map[string]any{"te" + c + "am": "{{identity.entity.name}}"}}, `invalid "claims_template": claim name`},
			{"issue/r", map[string]any{"claims": map[string]any{"sc" + c + "ope": "x"}}, `invalid "claims": claim name`},
		} {
			t.Run(name+" in "+tc.path+" "+tc.field, func(t *testing.T) {
				tb.wantBadRequest(t, logical.UpdateOperation, tc.path, tc.data, tc.field, rule)
			})
		}
	}
	t.Run("a role stored earlier with such a claim name still issues, and must be fixed to be written", func(t *testing.T) {
		tb.mustWrite(t, "roles/old-claim", map[string]any{"key": "k"})
		r, err := loadRole(context.Background(), tb.storage, "old-claim")
		if err != nil || r == nil {
			t.Fatal(r, err)
		}
		r.Claims = map[string]any{"ro\u202ele": "x"}
		entry, _ := logical.StorageEntryJSON(rolePrefix+"old-claim", r)
		if err := tb.storage.Put(context.Background(), entry); err != nil {
			t.Fatal(err)
		}
		tb.invalidate(context.Background(), rolePrefix+"old-claim")
		if got := tb.issue(t, "old-claim", nil).claims["ro\u202ele"]; got != "x" {
			t.Fatalf("claim = %v, want x", got)
		}
		tb.wantBadRequest(t, logical.UpdateOperation, "roles/old-claim", map[string]any{"ttl": "2m"}, `invalid "claims": claim name contains U+202E`)
		tb.mustWrite(t, "roles/old-claim", map[string]any{"claims": map[string]any{"role": "x"}})
	})
	t.Run("from an identity template into sub", func(t *testing.T) {
		tb.sys.EntityVal.Metadata["team"] = "pay\u202ements"
		defer func() { tb.sys.EntityVal.Metadata["team"] = "payments" }()
		tb.mustWrite(t, "roles/tpl", map[string]any{"key": "k", "subject_template": "team-{{identity.entity.metadata.team}}"})
		tb.wantBadRequest(t, logical.UpdateOperation, "issue/tpl", nil, `"subject_template"`, "U+202E")
	})
	t.Run("the characters next to each refused range are fine", func(t *testing.T) {
		edges := " ~\u00a0\u061b\u061d\u200d\u2027\u202f\u2065\u206a"
		tb.mustWrite(t, "roles/edges", map[string]any{"key": "k", "subject": "s" + edges, "audiences": "a" + edges})
		if tok := tb.issue(t, "edges", nil); tok.claims["sub"] != "s"+edges || tok.claims["aud"] != "a"+edges {
			t.Fatalf("claims %v", tok.claims)
		}
	})
	t.Run("printable Unicode is fine", func(t *testing.T) {
		tb.mustWrite(t, "roles/u", map[string]any{"key": "k", "subject": "J\u00f6rg \u6771\u4eac <&>", "audiences": "caf\u00e9", "issuer": "urn:example:\u00e9"})
		tok := tb.issue(t, "u", nil)
		if tok.claims["sub"] != "J\u00f6rg \u6771\u4eac <&>" || tok.claims["aud"] != "caf\u00e9" {
			t.Fatalf("claims %v", tok.claims)
		}
	})
}
