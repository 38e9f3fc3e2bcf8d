package backend

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// withEntity makes the backend's requests come from a token with this
// entity, and the system view know it and its groups.
func withEntity(tb *testBackend) {
	tb.entityID = "7d2e3a31-ent"
	tb.sys.EntityVal = &logical.Entity{
		ID: "7d2e3a31-ent", Name: "svc-payments",
		Metadata: map[string]string{"team": "payments", "env": "prod"},
		Aliases: []*logical.Alias{{
			MountAccessor: "auth_approle_12ab", MountType: "approle", Name: "4f0d-role-id",
			Metadata: map[string]string{"role_name": "payments-api"},
		}},
	}
	tb.sys.GroupsVal = []*logical.Group{{ID: "g-1", Name: "payments-team"}, {ID: "g-2", Name: "all-services"}}
}

func TestIdentityTemplates(t *testing.T) {
	tb := getTestBackend(t)
	withEntity(tb)
	tb.mustWrite(t, "keys/k", nil)
	d := tb.mustWrite(t, "roles/svc", map[string]any{
		"key":              "k",
		"audiences":        "svc-aud",
		"subject_template": "{{identity.entity.id}}",
		"claims_template": `{"team":"{{identity.entity.metadata.team}}","env":"env-{{identity.entity.metadata.env}}",` +
			`"groups":"{{identity.entity.groups.names}}","login":"{{identity.entity.aliases.auth_approle_12ab.name}}",` +
			`"role":"{{identity.entity.aliases.auth_approle_12ab.metadata.role_name}}","nested":{"name":"{{identity.entity.name}}"},"static":7}`,
		"claims": `{"tier":"gold"}`,
	}).Data
	if d["require_entity"] != true {
		t.Fatalf("require_entity should default to true with templates: %#v", d["require_entity"])
	}
	tok := tb.issue(t, "svc", nil)
	want := map[string]string{
		"sub": "7d2e3a31-ent", "team": "payments", "env": "env-prod", "groups": "[payments-team all-services]",
		"login": "4f0d-role-id", "role": "payments-api", "nested": "map[name:svc-payments]", "static": "7", "tier": "gold",
	}
	for k, v := range want {
		if got := fmt.Sprint(tok.claims[k]); got != v {
			t.Errorf("claim %s = %q, want %q", k, got, v)
		}
	}
}

func TestIdentityFailures(t *testing.T) {
	tb := getTestBackend(t)
	withEntity(tb)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/missing-meta", map[string]any{"key": "k", "claims_template": `{"cost":"{{identity.entity.metadata.cost_center}}"}`})
	tb.mustWrite(t, "roles/missing-alias", map[string]any{"key": "k", "subject_template": "{{identity.entity.aliases.auth_nope.name}}"})
	tb.mustWrite(t, "roles/svc", map[string]any{"key": "k", "subject_template": "{{identity.entity.id}}", "allowed_subjects": "*",
		"claims_template": `{"team":"{{identity.entity.metadata.team}}"}`, "allowed_claims": "scope"})
	tb.mustWrite(t, "roles/no-require", map[string]any{"key": "k", "subject_template": "{{identity.entity.id}}", "require_entity": false})

	for _, tc := range []struct {
		name, role string
		data       map[string]any
		want       []string
	}{
		{"missing metadata key", "missing-meta", nil, []string{`"claims_template"`, "cost_center", "the entity has no value for it (missing metadata key or alias?)"}},
		{"missing alias", "missing-alias", nil, []string{`"subject_template"`, "auth_nope"}},
		{"caller subject over a template", "svc", map[string]any{"subject": "admin"}, []string{`"subject"`, "subject_template"}},
		{"caller claim over a template claim", "svc", map[string]any{"claims": `{"team":"other"}`}, []string{`"claims"`, `"team" is pinned`}},
		{"caller sub through claims", "svc", map[string]any{"claims": `{"sub":"admin"}`}, []string{`"claims"`, "reserved"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "issue/"+tc.role, tc.data, tc.want...)
		})
	}

	tb.entityID = "" // a root token, say
	t.Run("no entity, require_entity", func(t *testing.T) {
		tb.wantBadRequest(t, logical.UpdateOperation, "issue/svc", nil, "require_entity", "root")
	})
	t.Run("no entity, require_entity=false still cannot fill a template", func(t *testing.T) {
		tb.wantBadRequest(t, logical.UpdateOperation, "issue/no-require", nil, `"subject_template"`, "no Vault identity entity")
	})
}

func TestIdentityRoleBadInput(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	for _, tc := range []struct {
		name string
		data map[string]any
		want []string
	}{
		{"subject and subject_template", map[string]any{"subject": "a", "subject_template": "{{identity.entity.id}}"}, []string{`"subject_template"`, "not both"}},
		{"unbalanced template", map[string]any{"subject_template": "{{identity.entity.id"}, []string{`"subject_template"`, "unbalanced"}},
		{"unknown directive", map[string]any{"claims_template": `{"x":"{{identity.nope}}"}`}, []string{`"claims_template"`}},
		{"reserved name in claims_template", map[string]any{"claims_template": `{"sub":"{{identity.entity.id}}"}`}, []string{`"claims_template"`, "reserved"}},
		{"template claim also pinned", map[string]any{"claims": `{"team":"x"}`, "claims_template": `{"team":"{{identity.entity.name}}"}`}, []string{`"claims_template"`, "also in"}},
		{"template claim allowed to callers", map[string]any{"claims_template": `{"team":"{{identity.entity.name}}"}`, "allowed_claims": "team"}, []string{`"allowed_claims"`, "claims_template"}},
		{"required claim not allowed", map[string]any{"required_claims": "scope"}, []string{`"required_claims"`, "allowed_claims"}},
		{"constraint for a claim not allowed", map[string]any{"claim_constraints": `{"scope":"read*"}`}, []string{`"claim_constraints"`, "allowed_claims"}},
		{"unknown constraint rule", map[string]any{"allowed_claims": "scope", "claim_constraints": `{"scope":{"maxLength":3}}`}, []string{`"claim_constraints"`, "maxLength"}},
		{"bad pattern", map[string]any{"allowed_claims": "scope", "claim_constraints": `{"scope":{"pattern":"(("}}`}, []string{`"claim_constraints"`, "pattern"}},
		{"bad type", map[string]any{"allowed_claims": "scope", "claim_constraints": `{"scope":{"type":"str"}}`}, []string{`"claim_constraints"`, "type"}},
		{"empty rule", map[string]any{"allowed_claims": "scope", "claim_constraints": `{"scope":{}}`}, []string{`"claim_constraints"`, "no rule"}},
		{"empty enum", map[string]any{"allowed_claims": "scope", "claim_constraints": `{"scope":{"enum":[]}}`}, []string{`"claim_constraints"`, `"scope"`, "enum", "at least one value"}},
		{"max_length on an integer", map[string]any{"allowed_claims": "n", "claim_constraints": `{"n":{"type":"integer","max_length":3}}`}, []string{`"claim_constraints"`, `"n"`, "max_length", "type integer"}},
		{"max_length on a number", map[string]any{"allowed_claims": "n", "claim_constraints": `{"n":{"type":"number","max_length":3}}`}, []string{`"claim_constraints"`, "max_length", "type number"}},
		{"max_length on a boolean", map[string]any{"allowed_claims": "n", "claim_constraints": `{"n":{"type":"boolean","max_length":3}}`}, []string{`"claim_constraints"`, "max_length", "type boolean"}},
		{"max_length on an object", map[string]any{"allowed_claims": "n", "claim_constraints": `{"n":{"type":"object","max_length":3}}`}, []string{`"claim_constraints"`, "max_length", "type object"}},
		{"pattern on an integer", map[string]any{"allowed_claims": "n", "claim_constraints": `{"n":{"type":"integer","pattern":"^1"}}`}, []string{`"claim_constraints"`, "pattern", "type integer"}},
		{"glob on an array", map[string]any{"allowed_claims": "n", "claim_constraints": `{"n":{"type":"array","glob":"a*"}}`}, []string{`"claim_constraints"`, "glob", "type array"}},
		{"required claim twice", map[string]any{"allowed_claims": "scope", "required_claims": "scope,scope"}, []string{`"required_claims"`, `"scope"`, "more than once"}},
		{"negative max_audiences", map[string]any{"max_audiences": -1}, []string{`"max_audiences"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := map[string]any{"key": "k"}
			for k, v := range tc.data {
				data[k] = v
			}
			tb.wantBadRequest(t, logical.CreateOperation, "roles/new", data, tc.want...)
		})
	}
}

func TestClaimPolicy(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{
		"key": "k", "allowed_audiences": "https://*.example.com", "max_audiences": 2,
		"allowed_claims": "scope,tenant,env,tags,ref,blob,n,label", "required_claims": "scope",
		"claim_constraints": `{"scope":{"enum":["read","write"]},"tenant":{"type":"integer"},"env":"prod-*",` +
			`"tags":{"type":"array","max_length":2},"ref":{"pattern":"^refs/heads/[a-z]+$","max_length":20},` +
			`"n":{"type":"number"},"label":{"max_length":20}}`,
	})
	ok := map[string]any{"scope": "read", "tenant": 42, "env": "prod-eu", "tags": []any{"a", "b"}, "ref": "refs/heads/main"}
	tok := tb.issue(t, "r", map[string]any{"claims": ok, "audience": "https://a.example.com,https://b.example.com"})
	if tok.claims["scope"] != "read" || fmt.Sprint(tok.claims["tenant"]) != "42" {
		t.Fatalf("claims %v", tok.claims)
	}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range ok {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return map[string]any{"claims": m}
	}
	// Values at a rule's edge that it must let through.
	for _, tc := range []struct {
		name string
		k    string
		v    any
	}{
		{"type number, a fraction", "n", 4.5},
		{"type number, an integer", "n", 4},
		{"pattern and max_length, exactly 20 characters", "ref", "refs/heads/abcdefghi"},
		{"max_length counts characters: 20 of 2 bytes each", "label", strings.Repeat("é", 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tb.issue(t, "r", with(tc.k, tc.v))
			if got, want := fmt.Sprint(tok.claims[tc.k]), fmt.Sprint(tc.v); got != want {
				t.Fatalf("claim %q = %s, want %s", tc.k, got, want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		data map[string]any
		want []string
	}{
		{"required claim missing", with("scope", nil), []string{`"claims"`, `requires claim "scope"`}},
		{"enum", with("scope", "admin"), []string{`"scope"`, "enum"}},
		{"type integer", with("tenant", "42"), []string{`"tenant"`, "type integer"}},
		{"type integer, not a fraction", with("tenant", 4.5), []string{`"tenant"`, "integer"}},
		{"glob", with("env", "dev-eu"), []string{`"env"`, "prod-*"}},
		{"glob needs a string", with("env", 1), []string{`"env"`}},
		{"array too long", with("tags", []any{"a", "b", "c"}), []string{`"tags"`, "more than 2"}},
		{"pattern", with("ref", "refs/tags/v1"), []string{`"ref"`, "pattern"}},
		{"max_length", with("ref", "refs/heads/abcdefghijklmnop"), []string{`"ref"`, "longer than 20"}},
		{"max_length, 21 characters", with("ref", "refs/heads/abcdefghij"), []string{`"ref"`, "longer than 20"}},
		{"max_length, 21 characters of 2 bytes", with("label", strings.Repeat("é", 21)), []string{`"label"`, "longer than 20"}},
		{"type number, not a numeric string", with("n", "42"), []string{`"n"`, "type number, not string"}},
		{"type number, not an array", with("n", []any{1}), []string{`"n"`, "type number, not array"}},
		{"type number, not an object", with("n", map[string]any{"v": 1}), []string{`"n"`, "type number, not object"}},
		{"pattern needs a string, not a number", with("ref", 1), []string{`"ref"`, "pattern"}},
		{"pattern needs a string, not a list of a matching one", with("ref", []any{"refs/heads/main"}), []string{`"ref"`, "pattern"}},
		{"too many audiences", map[string]any{"claims": ok, "audience": "https://a.example.com,https://b.example.com,https://c.example.com"}, []string{`"audience"`, "max_audiences"}},
		{"token over 8 KiB", with("blob", strings.Repeat("x", 7000)), []string{"8192-byte cap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", tc.data, tc.want...)
		})
	}
}

// TestIdentityGroupsDirectives: a template that reads the caller's groups
// (identity.entity.groups.* or identity.groups.*) gets them, in
// subject_template and in claims_template alike.
func TestIdentityGroupsDirectives(t *testing.T) {
	tb := getTestBackend(t)
	withEntity(tb)
	tb.mustWrite(t, "keys/k", nil)
	for i, tc := range []struct {
		name  string
		role  map[string]any
		claim string
		want  string
	}{
		{"identity.groups in claims_template", map[string]any{"claims_template": `{"grp":"{{identity.groups.ids.g-1.name}}"}`}, "grp", "payments-team"},
		{"identity.groups by name in claims_template", map[string]any{"claims_template": `{"grp":"{{identity.groups.names.all-services.id}}"}`}, "grp", "g-2"},
		{"identity.groups in subject_template", map[string]any{"subject_template": "{{identity.groups.ids.g-2.name}}"}, "sub", "all-services"},
		{"identity.entity.groups in claims_template", map[string]any{"claims_template": `{"grp":"{{identity.entity.groups.ids}}"}`}, "grp", "[g-1 g-2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := map[string]any{"key": "k"}
			maps.Copy(data, tc.role)
			name := fmt.Sprintf("groups-%d", i)
			tb.mustWrite(t, "roles/"+name, data)
			tok := tb.issue(t, name, nil)
			if got := fmt.Sprint(tok.claims[tc.claim]); got != tc.want {
				t.Fatalf("claim %q = %q, want %q", tc.claim, got, tc.want)
			}
		})
	}
}

// TestIdentityNoGroups: a list directive for an entity in no group renders
// as an empty JSON array, not null.
func TestIdentityNoGroups(t *testing.T) {
	tb := getTestBackend(t)
	withEntity(tb)
	tb.sys.GroupsVal = nil
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "claims_template": `{"groups":"{{identity.entity.groups.names}}"}`})
	tok := tb.issue(t, "r", nil)
	if g, ok := tok.claims["groups"].([]any); !ok || len(g) != 0 {
		t.Fatalf(`claim "groups" = %#v, want []`, tok.claims["groups"])
	}
}

// TestIdentityEmptySubject: a subject_template that renders to the empty
// string (an empty metadata value) fails the request: a token never goes
// out without the subject the role derives.
func TestIdentityEmptySubject(t *testing.T) {
	tb := getTestBackend(t)
	withEntity(tb)
	tb.sys.EntityVal.Metadata["blank"] = ""
	tb.mustWrite(t, "keys/k", nil)
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k", "subject_template": "{{identity.entity.metadata.blank}}"})
	tb.wantBadRequest(t, logical.UpdateOperation, "issue/r", nil, `"subject_template"`, "non-empty string")
}
