package awskms_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// BenchmarkKMSThroughput signs through the real SDK against kmstest with
// 30 ms of injected latency and a KMS quota of N requests/s, the governor
// set to 95% of N. It reports:
//
//	req/s      signatures per second achieved
//	of_bound   req/s ÷ min(N, concurrency ÷ latency), the best possible
//	throttled  callers that got ErrThrottled (the governor should make them
//	           wait within their 10 s deadline instead)
//	kms_429    requests KMS throttled
//
// "2x" cases offer twice the quota. Run with a fixed count so every case
// makes the same number of calls:
//
//	go test -run '^$' -bench KMSThroughput -benchtime 400x ./signer/awskms/
func BenchmarkKMSThroughput(b *testing.B) {
	const latency = 30 * time.Millisecond
	for _, tc := range []struct {
		quota float64
		conc  int
	}{
		{quota: 100, conc: 2},  // concurrency-bound: 2 / 30 ms ≈ 67/s
		{quota: 100, conc: 4},  // near the quota: 4 / 30 ms ≈ 133/s
		{quota: 100, conc: 8},  // 2x offered load: 267/s offered
		{quota: 200, conc: 16}, // 2x offered load at a higher quota
	} {
		bound := min(tc.quota, float64(tc.conc)/latency.Seconds())
		offered := float64(tc.conc) / latency.Seconds() / tc.quota
		b.Run(fmt.Sprintf("quota=%.0f/conc=%d/offered=%.1fx", tc.quota, tc.conc, offered), func(b *testing.B) {
			kmstest.IsolateAWSEnvironment(b)
			srv, url := kmstest.NewTestServer(b, kmstest.Options{})
			_, arn, err := srv.CreateKeyForTest("ECC_NIST_P256")
			if err != nil {
				b.Fatal(err)
			}
			client, err := awskms.NewClient(context.Background(), awskms.ClientConfig{
				Region: "us-east-1", Endpoint: url, AccessKeyID: "AKIDTEST", SecretAccessKey: "secret",
			})
			if err != nil {
				b.Fatal(err)
			}
			gov := awskms.NewGovernor(awskms.GovernorOptions{MaxRequestsPerSecond: tc.quota * 0.95, Burst: 1, MaxConcurrency: 256})
			s, err := awskms.New(context.Background(), client, gov, arn, signer.ES256)
			if err != nil {
				b.Fatal(err)
			}
			srv.SetFaults(kmstest.Faults{Latency: latency, QuotaPerSecond: tc.quota})
			time.Sleep(time.Second) // let the server's quota bucket fill: AWS allows a second's worth of burst
			srv.ResetStats()

			var next, throttled atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range tc.conc {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						_, err := s.Sign(ctx, []byte("header.payload"))
						cancel()
						if errors.Is(err, awskms.ErrThrottled) {
							throttled.Add(1)
						} else if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			rps := float64(b.N) / elapsed.Seconds()
			b.ReportMetric(rps, "req/s")
			b.ReportMetric(rps/bound, "of_bound")
			b.ReportMetric(float64(throttled.Load()), "throttled")
			b.ReportMetric(float64(srv.Stats().Throttled), "kms_429")
		})
	}
}
