package awskms

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// GovernorOptions bound the KMS calls of every signer that shares a
// Governor: one per AWS account and region, since that is where KMS counts
// its request quota.
type GovernorOptions struct {
	// MaxRequestsPerSecond caps calls per second; keep it under the
	// account's shared KMS quota for asymmetric signing in the region.
	// Callers over the rate wait their turn, within their own deadline,
	// instead of being throttled by AWS. Default 250.
	MaxRequestsPerSecond float64
	// Burst is how many calls may start at once after a quiet spell.
	// Default: a tenth of a second's worth, at least 1.
	Burst int
	// MaxConcurrency caps calls in flight. Default 64.
	MaxConcurrency int
	// CallTimeout bounds each call, retries included. Default 5s.
	CallTimeout time.Duration
	// BreakerThreshold is how many calls in a row must find KMS
	// unavailable (5xx, network error, timeout) before the breaker opens
	// and calls fail fast. Default 5.
	BreakerThreshold int
	// BreakerCooldown is how long the breaker stays open before one call
	// is let through to probe KMS. Default 5s.
	BreakerCooldown time.Duration
	// Now is the clock; tests replace it.
	Now func() time.Time
	// OnBreakerChange, if set, is called (outside the governor's lock)
	// when the breaker changes state, so the caller can log it, with the
	// run of consecutive failures that led there (for a close, the run
	// that just ended).
	OnBreakerChange func(from, to string, consecutiveFailures int)
}

// Breaker states, as Metrics report them.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// Governor paces, bounds and guards KMS calls. It is safe for concurrent
// use.
type Governor struct {
	opts    GovernorOptions
	limiter *rate.Limiter
	sem     chan struct{}

	mu        sync.Mutex
	state     string
	failures  int
	openUntil time.Time
	probing   bool

	waits     atomic.Int64 // calls that waited for the rate limiter
	fastFails atomic.Int64 // calls refused while the breaker was open
}

// NewGovernor returns a Governor with opts, defaults filled in.
func NewGovernor(opts GovernorOptions) *Governor {
	if opts.MaxRequestsPerSecond <= 0 {
		opts.MaxRequestsPerSecond = 250
	}
	if opts.Burst <= 0 {
		opts.Burst = max(1, int(opts.MaxRequestsPerSecond/10))
	}
	if opts.MaxConcurrency <= 0 {
		opts.MaxConcurrency = 64
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 5 * time.Second
	}
	if opts.BreakerThreshold <= 0 {
		opts.BreakerThreshold = 5
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Governor{
		opts:    opts,
		limiter: rate.NewLimiter(rate.Limit(opts.MaxRequestsPerSecond), opts.Burst),
		sem:     make(chan struct{}, opts.MaxConcurrency),
		state:   BreakerClosed,
	}
}

// Do runs call under the governor: the breaker may refuse it at once with
// ErrUnavailable; otherwise it waits for a rate token and a concurrency
// slot (giving up with ErrThrottled if ctx would expire first), then runs
// call with a context bounded by CallTimeout. call's error must already be
// classified; Do feeds it to the breaker and returns it, unless ctx itself
// ended first (the caller's cancellation or deadline, not CallTimeout):
// such a failure is not fed to the breaker.
func (g *Governor) Do(ctx context.Context, call func(context.Context) error) error {
	probe, err := g.admit()
	if err != nil {
		return err
	}
	defer func() {
		if probe {
			g.mu.Lock()
			g.probing = false
			g.mu.Unlock()
		}
	}()

	if r := g.limiter.Reserve(); !r.OK() {
		return fmt.Errorf("%w: rate governor refused the call", ErrThrottled)
	} else if d := r.Delay(); d > 0 {
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
			r.Cancel()
			return fmt.Errorf("%w: the call would wait %s for the rate governor (max_requests_per_second), past its deadline", ErrThrottled, d.Round(time.Millisecond))
		}
		g.waits.Add(1)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			r.Cancel()
			return fmt.Errorf("%w: gave up waiting for the rate governor: %v", ErrThrottled, ctx.Err())
		}
	}

	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: gave up waiting for a KMS call slot: %v", ErrThrottled, ctx.Err())
	}
	defer func() { <-g.sem }()

	callCtx, cancel := context.WithTimeout(ctx, g.opts.CallTimeout)
	defer cancel()
	err = call(callCtx)
	if err != nil && ctx.Err() != nil {
		// The caller gave up (cancelled, or its own deadline passed before
		// CallTimeout's): the failure says nothing about KMS, which may
		// never have answered. It neither counts toward opening the
		// breaker nor ends a failure run, and a half-open probe only
		// gives its slot back (the deferred release above).
		return err
	}
	g.record(err)
	return err
}

// admit checks the breaker. While open it refuses; after the cooldown it
// lets exactly one probe through (half-open).
func (g *Governor) admit() (probe bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case BreakerClosed:
		return false, nil
	case BreakerOpen:
		if g.opts.Now().Before(g.openUntil) {
			g.fastFails.Add(1)
			return false, fmt.Errorf("%w: circuit breaker open after %d failed calls; next probe in %s",
				ErrUnavailable, g.failures, g.openUntil.Sub(g.opts.Now()).Round(time.Millisecond))
		}
		g.state = BreakerHalfOpen
		fallthrough
	default: // half-open
		if g.probing {
			g.fastFails.Add(1)
			return false, fmt.Errorf("%w: circuit breaker half-open, probe in flight", ErrUnavailable)
		}
		g.probing = true
		return true, nil
	}
}

// record feeds a call's outcome to the breaker.
func (g *Governor) record(err error) {
	g.mu.Lock()
	from, failures := g.state, g.failures
	if !unavailable(err) {
		// Success, or KMS answered (even with a refusal): it is up.
		g.failures = 0
		g.state = BreakerClosed
	} else {
		g.failures++
		failures = g.failures
		if g.state == BreakerHalfOpen || g.failures >= g.opts.BreakerThreshold {
			g.state = BreakerOpen
			g.openUntil = g.opts.Now().Add(g.opts.BreakerCooldown)
		}
	}
	to := g.state
	g.mu.Unlock()
	// A half-open probe that fails goes back to open; report that too.
	if (from != to || from == BreakerHalfOpen) && g.opts.OnBreakerChange != nil {
		g.opts.OnBreakerChange(from, to, failures)
	}
}

// GovernorStats is a snapshot for operators.
type GovernorStats struct {
	BreakerState     string
	ConsecutiveFails int
	RateWaits        int64
	FastFails        int64
	InFlight         int
}

// Stats returns a snapshot of the governor.
func (g *Governor) Stats() GovernorStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	state := g.state
	if state == BreakerOpen && !g.opts.Now().Before(g.openUntil) {
		state = BreakerHalfOpen
	}
	return GovernorStats{
		BreakerState:     state,
		ConsecutiveFails: g.failures,
		RateWaits:        g.waits.Load(),
		FastFails:        g.fastFails.Load(),
		InFlight:         len(g.sem),
	}
}
