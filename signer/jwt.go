package signer

import (
	"context"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Compact returns a compact JWS (RFC 7515 §7.1) of claims signed by s, with
// the protected header {"alg", "kid", "typ"}. golang-jwt assembles the
// signing input; the signature comes from s, so providers that call out to
// an HSM get ctx. Nothing here touches golang-jwt's global registry.
func Compact(ctx context.Context, s Signer, typ string, claims map[string]any) (string, error) {
	alg := s.Algorithm()
	method := jwt.GetSigningMethod(string(alg))
	if method == nil {
		return "", fmt.Errorf("%w %q", ErrUnknownAlgorithm, alg)
	}
	token := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	token.Header["kid"] = s.KeyID()
	if typ != "" {
		token.Header["typ"] = typ
	} else {
		delete(token.Header, "typ")
	}
	signingInput, err := token.SigningString()
	if err != nil {
		return "", fmt.Errorf("encoding token: %w", err)
	}
	sig, err := s.Sign(ctx, []byte(signingInput))
	if err != nil {
		return "", err
	}
	return signingInput + "." + token.EncodeSegment(sig), nil
}
