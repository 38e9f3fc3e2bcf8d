package awskms

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestGovernorDefaults: options left at zero get the documented defaults
// (docs/awskms.md): 250 calls/s with a burst of a tenth of a second's worth
// but at least 1, 64 in flight, 5s per call, a breaker that opens after 5
// failures and cools down for 5s.
func TestGovernorDefaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  GovernorOptions
		rate  rate.Limit
		burst int
	}{
		{"all defaults", GovernorOptions{}, 250, 25},
		{"a slow rate still lets one call through", GovernorOptions{MaxRequestsPerSecond: 5}, 5, 1},
		{"explicit burst", GovernorOptions{MaxRequestsPerSecond: 100, Burst: 3}, 100, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGovernor(tc.opts)
			o := g.opts
			if g.limiter.Limit() != tc.rate || g.limiter.Burst() != tc.burst {
				t.Errorf("rate %v burst %d, want %v and %d", g.limiter.Limit(), g.limiter.Burst(), tc.rate, tc.burst)
			}
			if cap(g.sem) != 64 || o.CallTimeout != 5*time.Second || o.BreakerThreshold != 5 || o.BreakerCooldown != 5*time.Second || o.Now == nil {
				t.Errorf("concurrency %d, call timeout %s, breaker threshold %d, cooldown %s; want 64, 5s, 5, 5s",
					cap(g.sem), o.CallTimeout, o.BreakerThreshold, o.BreakerCooldown)
			}
			if err := g.Do(context.Background(), func(context.Context) error { return nil }); err != nil {
				t.Fatalf("first call: %v", err)
			}
		})
	}
}

// TestBreakerHalfOpenAdmitsOneProbe: once the cooldown has passed, Stats
// says half-open before any call is made; exactly one call goes through as
// the probe, and while it is in flight every other call fails fast without
// reaching KMS. The probe's success closes the breaker.
func TestBreakerHalfOpenAdmitsOneProbe(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	g := NewGovernor(GovernorOptions{BreakerThreshold: 1, BreakerCooldown: 10 * time.Second, Now: clock.Now, MaxRequestsPerSecond: 1e6})
	ctx := context.Background()
	if err := g.Do(ctx, func(context.Context) error { return classify("Sign", "k", errors.New("connection refused")) }); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
	if st := g.Stats().BreakerState; st != BreakerOpen {
		t.Fatalf("after the failure: %s, want open", st)
	}
	clock.Add(10*time.Second - time.Nanosecond)
	if st := g.Stats().BreakerState; st != BreakerOpen {
		t.Fatalf("a nanosecond before the cooldown ends: %s, want open", st)
	}
	clock.Add(time.Nanosecond)
	if st := g.Stats().BreakerState; st != BreakerHalfOpen {
		t.Fatalf("cooldown over, no call yet: %s, want half-open", st)
	}

	inProbe, release := make(chan struct{}), make(chan struct{})
	probeDone := make(chan error, 1)
	go func() {
		probeDone <- g.Do(ctx, func(context.Context) error { close(inProbe); <-release; return nil })
	}()
	<-inProbe
	if st := g.Stats(); st.BreakerState != BreakerHalfOpen || st.InFlight != 1 {
		t.Fatalf("during the probe: %+v, want half-open with 1 in flight", st)
	}
	for range 3 {
		err := g.Do(ctx, func(context.Context) error {
			t.Error("a second call went through while the probe was in flight")
			return nil
		})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "probe in flight") {
			t.Fatalf("during the probe: %v, want a fast failure", err)
		}
	}
	close(release)
	if err := <-probeDone; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := g.Stats(); st.BreakerState != BreakerClosed || st.InFlight != 0 || st.FastFails != 3 {
		t.Fatalf("after the probe: %+v, want closed, nothing in flight, 3 fast failures", st)
	}
}

// TestGovernorReturnsUnusedRateTokens: a caller that does not wait for its
// rate token (its deadline comes first, or it gives up while waiting) gives
// the token back, so the callers after it are not pushed further out. At
// one call per 100 s, the next token is about 100 s away, and one given up
// and not returned would put it about 200 s away: a caller with a 150 s
// deadline waits for the first and is refused at once for the second.
func TestGovernorReturnsUnusedRateTokens(t *testing.T) {
	g := NewGovernor(GovernorOptions{MaxRequestsPerSecond: 0.01, Burst: 1})
	never := func(context.Context) error { t.Error("call made"); return nil }
	if err := g.Do(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// Its deadline comes before the token: refused at once.
	short, cancelShort := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShort()
	if err := g.Do(short, never); !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "past its deadline") {
		t.Fatalf("short deadline: %v", err)
	}
	// Twice: a caller that waits and gives up must return its token too.
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
		done := make(chan error, 1)
		go func() { done <- g.Do(ctx, never) }()
		var err error
	wait:
		for {
			select {
			case err = <-done:
				break wait
			default:
				if g.Stats().RateWaits == int64(i+1) {
					cancel() // it is waiting for the token: hang up
				}
				time.Sleep(time.Millisecond)
			}
		}
		cancel()
		if !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "gave up waiting for the rate governor") {
			t.Fatalf("caller %d with a 150 s deadline: %v; want it to wait for the token about 100 s away and give up", i, err)
		}
	}
}
