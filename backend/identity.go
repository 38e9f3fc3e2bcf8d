package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/vault/sdk/helper/identitytpl"
	"github.com/hashicorp/vault/sdk/logical"
)

// Identity templates let a role derive "sub" and claims from the Vault
// identity of the caller (sdk/helper/identitytpl). A template that cannot be
// rendered fails the request: a token never goes out with a claim silently
// missing.

// listDirectives render as JSON arrays when a value is exactly one of them.
var listDirectives = []string{"{{identity.entity.groups.names}}", "{{identity.entity.groups.ids}}"}

func hasTemplate(s string) bool { return strings.Contains(s, "{{") }

// directiveRe is the grammar of the identity template directives this
// engine renders (Vault's identity templating, without namespaces).
var directiveRe = regexp.MustCompile(`^(?:` +
	`identity\.entity\.(?:id|name|metadata\.[^.{}\s]+|groups\.(?:ids|names)|` +
	`aliases\.[^.{}\s]+\.(?:id|name|metadata\.[^.{}\s]+|custom_metadata\.[^.{}\s]+))|` +
	`identity\.groups\.(?:ids\.[^.{}\s]+\.(?:name|metadata\.[^.{}\s]+)|names\.[^.{}\s]+\.(?:id|metadata\.[^.{}\s]+))|` +
	`time\.now(?:\.(?:plus|minus)\.[0-9]+[smhd])?)$`)

var directiveFindRe = regexp.MustCompile(`{{([^{}]*)}}`)

// validateTemplate checks a template's syntax at role write time: balanced
// braces and known directives, so a typo fails here and not on issue.
func validateTemplate(field, tpl string) error {
	if !hasTemplate(tpl) {
		return nil
	}
	for _, m := range directiveFindRe.FindAllStringSubmatch(tpl, -1) {
		if d := strings.TrimSpace(m[1]); !directiveRe.MatchString(d) {
			return fmt.Errorf("invalid %q: template %q: unknown directive {{%s}}", field, tpl, d)
		}
	}
	mode := identitytpl.ACLTemplating
	if isListDirective(tpl) {
		mode = identitytpl.JSONTemplating
	}
	if _, _, err := identitytpl.PopulateString(identitytpl.PopulateStringInput{String: tpl, ValidityCheckOnly: true, Mode: mode}); err != nil {
		return fmt.Errorf("invalid %q: template %q: %v", field, tpl, err)
	}
	return nil
}

// readsGroups reports whether tpl has a directive that reads the caller's
// groups: identity.entity.groups.* or identity.groups.*.
func readsGroups(tpl string) bool {
	return strings.Contains(tpl, "identity.entity.groups.") || strings.Contains(tpl, "identity.groups.")
}

func isListDirective(tpl string) bool {
	t := strings.TrimSpace(tpl)
	for _, d := range listDirectives {
		if t == d {
			return true
		}
	}
	return false
}

// identityInput is what templates render from: the caller's entity and
// groups, fetched once per request and only when a template needs them.
type identityInput struct {
	entity *logical.Entity
	groups []*logical.Group
}

// loadIdentity fetches the entity and, if needGroups, its groups.
func (b *backend) loadIdentity(entityID string, needGroups bool) (*identityInput, error) {
	if entityID == "" {
		return &identityInput{}, nil
	}
	e, err := b.System().EntityInfo(entityID)
	if err != nil {
		return nil, fmt.Errorf("looking up entity %s: %w", entityID, err)
	}
	in := &identityInput{entity: e}
	if needGroups && e != nil {
		if in.groups, err = b.System().GroupsForEntity(entityID); err != nil {
			return nil, fmt.Errorf("looking up groups of entity %s: %w", entityID, err)
		}
	}
	return in, nil
}

// render fills one template. A list directive gives a JSON array; anything
// else a string. A missing value is a userError naming field and template.
func (in *identityInput) render(field, tpl string) (any, error) {
	if !hasTemplate(tpl) {
		return tpl, nil
	}
	if in.entity == nil {
		return nil, userError{fmt.Errorf("cannot render %q template %q: the request's token has no Vault identity entity", field, tpl)}
	}
	mode := identitytpl.ACLTemplating
	if isListDirective(tpl) {
		mode = identitytpl.JSONTemplating
	}
	_, out, err := identitytpl.PopulateString(identitytpl.PopulateStringInput{
		String: tpl, Entity: in.entity, Groups: in.groups, Mode: mode, NamespaceID: in.entity.NamespaceID,
	})
	if err != nil {
		what := err.Error()
		if errors.Is(err, identitytpl.ErrTemplateValueNotFound) {
			what = "the entity has no value for it (missing metadata key or alias?)"
		}
		return nil, userError{fmt.Errorf("cannot render %q template %q: %s", field, tpl, what)}
	}
	if mode == identitytpl.ACLTemplating {
		return out, nil
	}
	var list []string
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("template %q rendered %q, not a list: %w", tpl, out, err)
	}
	if list == nil {
		list = []string{}
	}
	return list, nil
}

// renderValue renders every template string inside a JSON value.
func (in *identityInput) renderValue(field string, v any) (any, error) {
	switch t := v.(type) {
	case string:
		return in.render(field, t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, vv := range t {
			r, err := in.renderValue(field, vv)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, vv := range t {
			r, err := in.renderValue(field, vv)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// templateStrings calls f on every string inside a JSON value.
func templateStrings(v any, f func(string) error) error {
	switch t := v.(type) {
	case string:
		return f(t)
	case map[string]any:
		for _, vv := range t {
			if err := templateStrings(vv, f); err != nil {
				return err
			}
		}
	case []any:
		for _, vv := range t {
			if err := templateStrings(vv, f); err != nil {
				return err
			}
		}
	}
	return nil
}
