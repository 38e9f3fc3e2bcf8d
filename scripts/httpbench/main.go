// Command httpbench compares, over Vault's HTTP API on one server, the cost
// of issuing a JWT through this plugin (jwt/issue/<role>) with Vault's own
// transit engine signing the same kind of input (transit/sign/<key>, ECDSA
// P-256, JWS marshaling). Both go through the same listener, token lookup
// and policy checks; the difference is the plugin (gRPC hop included) versus
// a built-in engine. Rounds alternate between the two so that a noisy
// machine disturbs both alike; the reported ratio is the median of per-round
// ratios.
//
// It only talks to loopback addresses, and every loop is bounded in time.
//
//	go run ./scripts/httpbench -addr http://127.0.0.1:8200 -role default -transit-key bench
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "http://127.0.0.1:8200", "Vault address (loopback only)")
	mount := flag.String("mount", "jwt", "mount path of the plugin")
	role := flag.String("role", "default", "role to issue from")
	transitKey := flag.String("transit-key", "bench", "transit key (type ecdsa-p256) to sign with")
	rounds := flag.Int("rounds", 5, "rounds of each")
	per := flag.Duration("duration", 3*time.Second, "length of each round")
	conc := flag.Int("concurrency", 4, "requests in flight")
	flag.Parse()
	token := os.Getenv("VAULT_TOKEN")
	if token == "" {
		fail("VAULT_TOKEN is not set")
	}
	if err := checkLoopback(*addr); err != nil {
		fail(err.Error())
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	input := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 300))
	targets := []target{
		{name: "jwt/issue (plugin, ES256)", url: *addr + "/v1/" + *mount + "/issue/" + *role, body: `{}`},
		{name: "transit/sign (built-in, P-256)", url: *addr + "/v1/transit/sign/" + *transitKey,
			body: `{"input":"` + input + `","hash_algorithm":"sha2-256","marshaling_algorithm":"jws"}`},
	}
	for _, t := range targets { // one request each first: fail fast on setup errors
		if err := t.do(client, token); err != nil {
			fail(fmt.Sprintf("%s: %v", t.name, err))
		}
	}

	results := make([][]stats, len(targets))
	for r := 0; r < *rounds; r++ {
		for i, t := range targets {
			results[i] = append(results[i], t.run(client, token, *per, *conc))
		}
	}

	fmt.Printf("%d rounds of %s, concurrency %d, on %s\n", *rounds, *per, *conc, *addr)
	fmt.Printf("%-32s %12s %10s %10s %8s\n", "endpoint", "req/s", "p50 ms", "p99 ms", "errors")
	for i, t := range targets {
		rps := median(mapf(results[i], func(s stats) float64 { return s.rps }))
		p50 := median(mapf(results[i], func(s stats) float64 { return s.p50 }))
		p99 := median(mapf(results[i], func(s stats) float64 { return s.p99 }))
		errs := 0
		for _, s := range results[i] {
			errs += s.errors
		}
		fmt.Printf("%-32s %12.0f %10.2f %10.2f %8d\n", t.name, rps, p50, p99, errs)
	}
	ratios := make([]float64, *rounds)
	for r := range ratios {
		ratios[r] = results[1][r].rps / results[0][r].rps
	}
	fmt.Printf("throughput transit/sign ÷ jwt/issue (median of rounds): %.2f\n", median(ratios))
}

type target struct{ name, url, body string }

type stats struct {
	rps, p50, p99 float64
	errors        int
}

func (t target) do(c *http.Client, token string) error {
	req, err := http.NewRequest(http.MethodPost, t.url, strings.NewReader(t.body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		// The body of an error has no token in it; of a success we never print.
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// run sends requests from conc workers for d and returns the throughput and
// latency percentiles.
func (t target) run(c *http.Client, token string, d time.Duration, conc int) stats {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []float64
		errs      atomic.Int64
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			var local []float64
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := t.do(c, token); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, float64(time.Since(t0).Microseconds())/1000)
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	slices.Sort(latencies)
	return stats{
		rps:    float64(len(latencies)) / elapsed,
		p50:    percentile(latencies, 0.50),
		p99:    percentile(latencies, 0.99),
		errors: int(errs.Load()),
	}
}

func checkLoopback(addr string) error {
	u, err := url.Parse(addr)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing %s: httpbench only loads loopback addresses", addr)
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mapf[T any](in []T, f func(T) float64) []float64 {
	out := make([]float64, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "httpbench:", msg)
	os.Exit(1)
}
