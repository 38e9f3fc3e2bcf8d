package backend

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// jsonObjectFields are the request fields, by path prefix, that hold a JSON
// object. Over HTTP they may arrive as an object; from the vault CLI
// (claims='{"team":"x"}') and from form-style clients, as a string.
var jsonObjectFields = map[string][]string{
	"roles/": {"claims", "claims_template", "claim_constraints"},
	"issue/": {"claims"},
}

// decodeJSONFields turns such string fields into objects in place, so the
// framework's TypeMap sees an object either way. It returns a 400 response
// naming the field when a value is not a JSON object or is too large, and
// nil otherwise.
func decodeJSONFields(req *logical.Request) *logical.Response {
	if len(req.Data) == 0 || req.Operation != logical.CreateOperation && req.Operation != logical.UpdateOperation {
		return nil
	}
	for prefix, fields := range jsonObjectFields {
		if !strings.HasPrefix(req.Path, prefix) {
			continue
		}
		for _, field := range fields {
			raw, ok := req.Data[field]
			if !ok || raw == nil {
				continue
			}
			switch v := raw.(type) {
			case map[string]any:
			case string:
				obj, err := parseJSONObject(v)
				if err != nil {
					return logical.ErrorResponse("invalid %q: %s", field, err)
				}
				req.Data[field] = obj
			default:
				return logical.ErrorResponse("invalid %q: must be a JSON object, not a %T", field, raw)
			}
		}
	}
	return nil
}

// parseJSONObject decodes s, which must be one JSON object of at most
// maxClaimsBytes, with signer.DecodeJSON: no object in it repeats a member
// name, and numbers stay json.Number so large integers keep every digit.
// An empty string is an empty object.
//
// Only JSON that arrives as a string can repeat a name: Vault decodes a
// request's JSON body into maps before the plugin sees it, keeping the last
// of each name, so object-valued fields reach the engine without
// duplicates.
func parseJSONObject(s string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	if len(s) > maxClaimsBytes {
		return nil, fmt.Errorf("%d bytes of JSON, more than the limit of %d", len(s), maxClaimsBytes)
	}
	v, err := signer.DecodeJSON([]byte(s))
	var syntax signer.JSONSyntaxError
	switch {
	case errors.As(err, &syntax):
		return nil, fmt.Errorf("must be a JSON object: %v", err)
	case errors.Is(err, signer.ErrJSONTrailing):
		return nil, fmt.Errorf("must be a single JSON object, with nothing after it")
	case err != nil:
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a JSON object, not %s", signer.JSONKind(v))
	}
	return obj, nil
}
