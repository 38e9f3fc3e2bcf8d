package backend

import (
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms"
	"github.com/vault-jwt/vault-plugin-secrets-jwt/signer/awskms/kmstest"
)

// countingKMS is kmstest served over TLS (HTTP/1.1 only, as httptest's
// StartTLS offers it: one request per connection at a time), or plain
// HTTP, counting the connections it accepts, each of which over TLS costs
// a handshake, and those still open. hold makes the next n requests wait
// until all n are in flight.
type countingKMS struct {
	srv      *kmstest.Server
	ts       *httptest.Server
	newConns atomic.Int64
	open     atomic.Int64

	mu      sync.Mutex
	gate    chan struct{} // closed when want requests have arrived
	want    int
	arrived int
}

func newCountingKMS(t *testing.T, useTLS bool) *countingKMS {
	t.Helper()
	k := &countingKMS{srv: kmstest.New(kmstest.Options{})}
	k.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		gate := k.gate
		if gate != nil {
			if k.arrived++; k.arrived == k.want {
				close(gate)
				k.gate = nil
			}
		}
		k.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-time.After(10 * time.Second): // the test then fails on its count
			}
		}
		k.srv.ServeHTTP(w, r)
	}))
	k.ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			k.newConns.Add(1)
			k.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			k.open.Add(-1)
		}
	}
	if useTLS {
		k.ts.StartTLS()
	} else {
		k.ts.Start()
	}
	t.Cleanup(k.ts.Close)
	return k
}

// bind points tb's config/aws at the server (with extra settings), trusting
// its TLS certificate through AWS_CA_BUNDLE as an operator would a private
// CA, and writes key "k" on a new KMS key and role "r" on it. Binding the
// key makes three KMS calls: DescribeKey, GetPublicKey and a test Sign.
func (k *countingKMS) bind(t *testing.T, tb *testBackend, extra map[string]any) {
	t.Helper()
	if k.ts.TLS != nil {
		bundle := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.ts.Certificate().Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_CA_BUNDLE", bundle)
	}
	cfg := map[string]any{"access_key": "AKIDTEST", "secret_key": testSecretKey, "region": "us-east-1", "endpoint": k.ts.URL}
	maps.Copy(cfg, extra)
	tb.mustWrite(t, "config/aws", cfg)
	_, arn, err := k.srv.CreateKeyForTest(kmsSpec(signer.ES256))
	if err != nil {
		t.Fatal(err)
	}
	tb.mustWrite(t, "keys/k", map[string]any{"provider": "awskms", "kms_key_id": arn})
	tb.mustWrite(t, "roles/r", map[string]any{"key": "k"})
}

// hold makes the next n requests wait until all n have arrived.
func (k *countingKMS) hold(n int) {
	k.mu.Lock()
	k.gate, k.want, k.arrived = make(chan struct{}), n, 0
	k.mu.Unlock()
}

// TestKMSConnectionReuse: KMS calls reuse keep-alive connections, so that
// each costs no TLS handshake once the pool holds as many connections as
// there are callers. Calls go the production way (issue, the key's
// signer, the governor, the SDK, the backend's HTTP client) to kmstest
// over TLS; the test only makes the client trust the test certificate.
//
// One caller at a time needs one connection. C callers at once need C: the
// test first holds C calls at the server until all are in flight, which
// dials exactly C connections (none can be returned to the pool while all
// are held, so no caller gets another's); after that every caller finds
// one idle, since the other C-1 hold at most C-1, unless the pool closed
// one. Without the hold, a caller whose dial is still in its TLS handshake
// can take a connection another caller just returned, and the dialled one
// joins the pool as a C+1th: net/http's race, not a reuse failure.
func TestKMSConnectionReuse(t *testing.T) {
	for _, callers := range []int{4, 16, 64} { // 64: max_concurrency's default
		t.Run(fmt.Sprintf("%d callers", callers), func(t *testing.T) {
			kmstest.IsolateAWSEnvironment(t)
			k := newCountingKMS(t, true)
			tb := getTestBackend(t)
			k.bind(t, tb, map[string]any{"max_requests_per_second": 100000})
			issue := func() error {
				resp, err := tb.request(t, logical.UpdateOperation, "issue/r", nil)
				if err == nil && resp.IsError() {
					err = resp.Error()
				}
				return err
			}

			for range 200 {
				if err := issue(); err != nil {
					t.Fatal(err)
				}
			}
			if n := k.newConns.Load(); n != 1 {
				t.Fatalf("binding a key and 200 sequential issues opened %d connections to KMS, want 1", n)
			}

			run := func(rounds int) {
				t.Helper()
				errs := make(chan error, callers)
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for range rounds {
							if err := issue(); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			}
			k.hold(callers)
			run(1)
			if n := k.newConns.Load(); n != int64(callers) {
				t.Fatalf("%d issues held in flight together: %d connections to KMS, want %d", callers, n, callers)
			}
			run(50)
			if n := k.newConns.Load(); n != int64(callers) {
				t.Errorf("%d callers × 50 issues: %d connections to KMS opened, want none after the first %d", callers, n, callers)
			}
		})
	}
}

// TestKMSTrustsTheSDKsCABundle: the backend's own HTTP client for KMS calls
// keeps what the SDK's configuration adds to its transport, such as the
// private CA of AWS_CA_BUNDLE (a VPC endpoint or a TLS-inspecting proxy
// behind a private CA). Binding a key through a TLS server trusted only by
// that bundle works.
func TestKMSTrustsTheSDKsCABundle(t *testing.T) {
	kmstest.IsolateAWSEnvironment(t)
	k := newCountingKMS(t, true)
	tb := getTestBackend(t)
	k.bind(t, tb, nil)
	tb.issue(t, "r", nil)
}

// TestKMSHTTPClientHoldsMaxConcurrency: a KMS client's transport lets
// max_concurrency calls each have a connection, and keeps them all when
// idle, over the whole range config/aws allows (1 to 4096); the SDK's
// transport keeps 10 idle and opens at most 2048 per host.
func TestKMSHTTPClientHoldsMaxConcurrency(t *testing.T) {
	for _, n := range []int{1, 64, 2048, 2049, 4096} {
		tr := newKMSHTTPClient(awskms.BaseTransport(nil), n).Transport.(*http.Transport)
		if tr.MaxIdleConnsPerHost != n || tr.MaxIdleConns < n || (tr.MaxConnsPerHost != 0 && tr.MaxConnsPerHost < n) {
			t.Errorf("max_concurrency %d: MaxIdleConnsPerHost %d, MaxIdleConns %d, MaxConnsPerHost %d; want %d, at least %d, and 0 or at least %d",
				n, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tr.MaxConnsPerHost, n, n, n)
		}
	}
}
