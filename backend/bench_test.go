package backend

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
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

// benchBackend is a backend with key k of alg and role r, the same for
// BenchmarkRawSign and BenchmarkIssue.
func benchBackend(b *testing.B, alg signer.Algorithm) *testBackend {
	tb := getTestBackend(b)
	tb.mustWrite(b, "keys/k", map[string]any{"algorithm": string(alg)})
	tb.mustWrite(b, "roles/r", map[string]any{"key": "k", "audiences": "https://api.example.com", "subject": "svc-a", "claims": `{"team":"payments"}`})
	return tb
}

// BenchmarkRawSign is the bare signature over the signing input of a token
// that BenchmarkIssue issues (365 bytes), so that the two sign the same
// number of bytes.
func BenchmarkRawSign(b *testing.B) {
	for _, alg := range []signer.Algorithm{signer.ES256, signer.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			tb := benchBackend(b, alg)
			token := tb.mustWrite(b, "issue/r", nil).Data["token"].(string)
			input := []byte(token[:strings.LastIndexByte(token, '.')])
			priv, err := local.Generate(alg, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if alg == signer.EdDSA {
					_, err = priv.Sign(rand.Reader, input, crypto.Hash(0))
				} else {
					digest := sha256.Sum256(input)
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
			tb := benchBackend(b, alg)
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

// stubSigner returns a fixed signature: with it, BenchmarkIssueOverhead
// measures everything issue does except the signature.
type stubSigner struct {
	signer.Signer
	sig []byte
}

func (s stubSigner) Sign(context.Context, []byte) ([]byte, error) { return s.sig, nil }

// BenchmarkIssueOverhead is the engine's own cost per issue: the whole
// request through HandleRequest with the signature replaced by a constant.
// Divided by BenchmarkRawSign it is the overhead ratio minus one, and far
// less noisy than the difference of two measurements dominated by the
// signature.
func BenchmarkIssueOverhead(b *testing.B) {
	tb := benchBackend(b, signer.ES256)
	tb.mustWrite(b, "issue/r", nil)
	e, err := tb.getKey(context.Background(), tb.storage, "k")
	if err != nil {
		b.Fatal(err)
	}
	for v, s := range e.signers {
		e.signers[v] = stubSigner{Signer: s, sig: make([]byte, 64)}
	}
	for _, iv := range e.issuing {
		iv.signer = e.signers[iv.version]
	}
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
}

// BenchmarkIssueBatch is one batch_input request of 100 items through
// HandleRequest, plus the JSON encoding the plugin's gRPC layer applies to
// the response; ns/token is comparable with BenchmarkRawSign divided by
// the number of cores.
func BenchmarkIssueBatch(b *testing.B) {
	for _, alg := range []signer.Algorithm{signer.ES256, signer.EdDSA} {
		b.Run(string(alg), func(b *testing.B) {
			tb := getTestBackend(b)
			tb.mustWrite(b, "keys/k", map[string]any{"algorithm": string(alg)})
			tb.mustWrite(b, "roles/r", map[string]any{"key": "k", "audiences": "https://api.example.com", "subject": "svc-a"})
			items := make([]any, 100)
			for i := range items {
				items[i] = map[string]any{}
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "issue/r", Storage: tb.storage}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				req.Data = map[string]any{"batch_input": items}
				resp, err := tb.HandleRequest(ctx, req)
				if err != nil || resp.IsError() {
					b.Fatal(err, resp.Error())
				}
				if _, err := json.Marshal(resp.Data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/token")
		})
	}
}
