package backend

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/local"
)

// The benchmarks compare, in one run, the bare signature with the whole
// issue request through HandleRequest (field parsing, policy checks, claims
// assembly, JSON and base64, jti). scripts/bench.sh turns them into the
// ratios recorded in docs/performance.md.

// benchSigningInput is the size of a typical token's signing input.
var benchSigningInput = []byte(strings.Repeat("x", 300))

func BenchmarkRawSign(b *testing.B) {
	for _, alg := range []signer.Algorithm{signer.ES256, signer.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			priv, err := local.Generate(alg, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if alg == signer.EdDSA {
					_, err = priv.Sign(rand.Reader, benchSigningInput, crypto.Hash(0))
				} else {
					digest := sha256.Sum256(benchSigningInput)
					_, err = priv.Sign(rand.Reader, digest[:], crypto.SHA256)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, alg := range []signer.Algorithm{signer.ES256, signer.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			tb := getTestBackend(b)
			tb.mustWrite(b, "keys/k", map[string]any{"algorithm": string(alg)})
			tb.mustWrite(b, "roles/r", map[string]any{"key": "k", "audiences": "https://api.example.com", "subject": "svc-a", "claims": `{"team":"payments"}`})
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "issue/r", Storage: tb.storage}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				req.Data = nil
				resp, err := tb.HandleRequest(ctx, req)
				if err != nil || resp.IsError() {
					b.Fatal(err, resp.Error())
				}
			}
		})
	}
}
