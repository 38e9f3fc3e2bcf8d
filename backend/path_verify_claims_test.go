package backend

import (
	"fmt"
	"strings"
	"testing"
)

// TestVerifyClaimValues: verify's checks of claim values at their edges:
// NumericDates between 0 and 1e11 (year 5138), and "audience" found in a
// list "aud" only when one of its strings is exactly it.
func TestVerifyClaimValues(t *testing.T) {
	tb := getTestBackend(t)
	tb.mustWrite(t, "keys/k", map[string]any{"algorithm": "EdDSA"})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
	header := strings.Split(tb.mustWrite(t, "issue/r", nil).Data["token"].(string), ".")[0]
	exp := tb.clock.Now().Unix() + 600
	for _, tc := range []struct {
		name     string
		claims   string // after iss
		audience string
		want     string // the reason, or "" for active
	}{
		{"exp at the NumericDate bound", `"exp":1e11`, "", ""},
		{"exp past the NumericDate bound", `"exp":100000000001`, "", `"exp" is not a valid NumericDate`},
		{"exp in year 9999", `"exp":253402300799`, "", `"exp" is not a valid NumericDate`},
		{"iat 0", fmt.Sprintf(`"exp":%d,"iat":0`, exp), "", ""},
		{"iat -1", fmt.Sprintf(`"exp":%d,"iat":-1`, exp), "", `"iat" is not a valid NumericDate`},
		{"nbf -1", fmt.Sprintf(`"exp":%d,"nbf":-1`, exp), "", `"nbf" is not a valid NumericDate`},
		{"nbf a string", fmt.Sprintf(`"exp":%d,"nbf":"1"`, exp), "", `"nbf" is not a number`},
		{"audience in a list", fmt.Sprintf(`"exp":%d,"aud":["a","b"]`, exp), "b", ""},
		{"audience not in a list", fmt.Sprintf(`"exp":%d,"aud":["a","b"]`, exp), "c", `audience "c" is not in the token's aud`},
		{"audience not in a list of non-strings", fmt.Sprintf(`"exp":%d,"aud":[1,true]`, exp), "1", `audience "1" is not in the token's aud`},
		{"audience a prefix of the aud", fmt.Sprintf(`"exp":%d,"aud":"api-b"`, exp), "api", `audience "api" is not in the token's aud`},
		{"no aud", fmt.Sprintf(`"exp":%d`, exp), "api", `audience "api" is not in the token's aud`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tb.signClaims(t, "k", header, `{"iss":"https://vault.test/v1/jwt",`+tc.claims+`}`)
			active, reason, _ := tb.verify(t, tok, tc.audience)
			if active != (tc.want == "") || !strings.Contains(reason, tc.want) {
				t.Fatalf("active=%v reason=%q, want %q (empty: active)", active, reason, tc.want)
			}
		})
	}
}
