package backend

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
)

// The scale benchmarks (issue 6) check that issue and verify cost the same
// with 10 or 10,000 roles and keys in the mount, and with no or a million
// revocations; scripts/scale.sh runs them and docs/performance.md records
// the figures.

// fillRevocations stores n jti revocations straight into their buckets,
// as a mount that has revoked n tokens holds them.
func fillRevocations(t testing.TB, s logical.Storage, n int, now time.Time) {
	t.Helper()
	var buckets [revocationBuckets]*revocationBucket
	for i := range n {
		r := &revocation{Issuer: "https://vault.test/v1/jwt", JTI: fmt.Sprintf("AAAAAAAAAAA.%022d", i), Expires: now.Add(time.Hour), RevokedAt: now}
		k := r.key()
		if buckets[k.bucket()] == nil {
			buckets[k.bucket()] = &revocationBucket{Entries: map[string]*revocation{}}
		}
		buckets[k.bucket()].Entries[k.hex()] = r
	}
	for i, rb := range buckets {
		if rb == nil {
			continue
		}
		if err := saveBucket(context.Background(), s, kindJTI, i, rb); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkRevocations: verify and issue with 0 and 1,000,000 revoked
// jtis, the index's memory per entry, and the time to load it (what a
// node pays once, on its first verify after start-up).
func BenchmarkRevocations(b *testing.B) {
	for _, n := range []int{0, 1_000_000} {
		tb := getTestBackend(b)
		tb.mustWrite(b, "keys/k", map[string]any{"algorithm": "ES256"})
		tb.mustWrite(b, "roles/r", map[string]any{"key": "k"})
		fillRevocations(b, tb.storage, n, tb.clock.Now())
		token := tb.mustWrite(b, "issue/r", nil).Data["token"].(string)

		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		tb.dropRevocations()
		idx, err := tb.getRevocations(context.Background(), tb.storage)
		if err != nil {
			b.Fatal(err)
		}
		load := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := idx.size()[kindJTI]; got != n {
			b.Fatalf("index has %d entries, want %d", got, n)
		}

		b.Run(fmt.Sprintf("load/entries=%d", n), func(b *testing.B) {
			for b.Loop() {
			}
			b.ReportMetric(float64(load.Milliseconds()), "load-ms")
			if n > 0 {
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/entry")
			}
		})
		verifyReq := &logical.Request{Operation: logical.UpdateOperation, Path: "verify", Storage: tb.storage}
		b.Run(fmt.Sprintf("verify/entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				verifyReq.Data = map[string]any{"token": token}
				resp, err := tb.HandleRequest(context.Background(), verifyReq)
				if err != nil || resp.Data["active"] != true {
					b.Fatal(err, resp)
				}
			}
		})
		issueReq := &logical.Request{Operation: logical.UpdateOperation, Path: "issue/r", Storage: tb.storage}
		b.Run(fmt.Sprintf("issue/entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				issueReq.Data = nil
				if resp, err := tb.HandleRequest(context.Background(), issueReq); err != nil || resp.IsError() {
					b.Fatal(err, resp.Error())
				}
			}
		})
		runtime.KeepAlive(idx)
	}
}

// BenchmarkRolesAndKeys: issue from one of n roles, each with its own key,
// visiting all n out of order: the worst case, whose working set outgrows
// the CPU caches. The hot=10 case keeps 10,000 roles and keys in the mount
// but issues from 10 of them, as a mount whose traffic goes mostly to a few
// roles does; it isolates what the mount's size costs the engine (its maps
// and caches) from what a large working set costs the hardware.
func BenchmarkRolesAndKeys(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000} {
		tb := getTestBackend(b)
		for i := range n {
			tb.mustWrite(b, fmt.Sprintf("keys/k%d", i), map[string]any{"algorithm": "ES256"})
			tb.mustWrite(b, fmt.Sprintf("roles/r%d", i), map[string]any{"key": fmt.Sprintf("k%d", i)})
		}
		paths := make([]string, n)
		for i := range n {
			paths[i] = fmt.Sprintf("issue/r%d", i)
			tb.mustWrite(b, paths[i], nil) // warm the caches, as a running node has them
		}
		req := &logical.Request{Operation: logical.UpdateOperation, Storage: tb.storage}
		issue := func(b *testing.B, visit []string) {
			i := 0
			for b.Loop() {
				req.Path, req.Data = visit[i%len(visit)], nil
				i += 7919 // a prime: visit roles out of order
				if resp, err := tb.HandleRequest(context.Background(), req); err != nil || resp.IsError() {
					b.Fatal(err, resp.Error())
				}
			}
		}
		b.Run(fmt.Sprintf("issue/roles=%d", n), func(b *testing.B) { issue(b, paths) })
		// The signature alone, with the same signers the engine holds
		// (same memory), in the same order: what N keys in use cost the
		// cryptography, apart from the engine.
		signers := make([]signer.Signer, n)
		for i := range n {
			e, err := tb.getKey(context.Background(), tb.storage, fmt.Sprintf("k%d", i))
			if err != nil {
				b.Fatal(err)
			}
			signers[i] = e.current(tb.clock.Now()).signer
		}
		input := []byte(strings.Repeat("x", 365))
		b.Run(fmt.Sprintf("sign/keys=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				sg := signers[i%n]
				i += 7919
				if _, err := sg.Sign(context.Background(), input); err != nil {
					b.Fatal(err)
				}
			}
		})
		if n == 10_000 {
			hot := make([]string, 0, 10)
			for i := 0; i < n; i += n / 10 { // spread over the mount, not its first 10 roles
				hot = append(hot, paths[i])
			}
			b.Run(fmt.Sprintf("issue/roles=%d,hot=10", n), func(b *testing.B) { issue(b, hot) })
		}
	}
}
