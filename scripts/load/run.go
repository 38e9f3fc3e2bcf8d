package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// roundStats is one target's run in one round.
type roundStats struct {
	elapsed  time.Duration
	requests int64 // that succeeded
	units    int64 // tokens or signatures made
	errors   int64 // requests that failed (a batch with a failed item counts once)
	p50, p99 time.Duration
	firstErr string
	// cpu is the CPU time Vault, its plugins and the harness used during
	// the run; 0 when not measured.
	cpu time.Duration
}

func (s roundStats) reqPerSec() float64   { return float64(s.requests) / s.elapsed.Seconds() }
func (s roundStats) unitsPerSec() float64 { return float64(s.units) / s.elapsed.Seconds() }

// cpuPerUnit is the CPU time per token (or signature) in microseconds; 0
// when not measured.
func (s roundStats) cpuPerUnit() float64 {
	if s.cpu <= 0 || s.units == 0 {
		return 0
	}
	return float64(s.cpu.Microseconds()) / float64(s.units)
}

// counters are shared by a target's workers and read by the progress line.
type counters struct {
	requests, units, errors atomic.Int64
	mu                      sync.Mutex
	firstErr                string
}

func (c *counters) fail(err error) {
	c.errors.Add(1)
	c.mu.Lock()
	if c.firstErr == "" {
		c.firstErr = err.Error()
	}
	c.mu.Unlock()
}

// runTarget runs t's workers until d has passed; requests in flight then
// finish (within the HTTP timeout) and count. Latency is measured per
// successful request. With a meter, the CPU time used during the run is
// measured too; a meter that cannot read it is reported and disabled.
func runTarget(ctx context.Context, t *target, d time.Duration, prog *progress, phase string, meter *cpuMeter) roundStats {
	var (
		cnt       counters
		mu        sync.Mutex
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	cpu0, cpuErr := meter.readIfOn()
	start := time.Now()
	deadline := start.Add(d)
	stop := prog.start(phase, t, d, start, &cnt)
	for range t.workers {
		wg.Go(func() {
			var local []time.Duration
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				n, err := t.op(ctx)
				cnt.units.Add(int64(n))
				if err != nil {
					if ctx.Err() == nil {
						cnt.fail(err)
					}
					continue
				}
				local = append(local, time.Since(t0))
				cnt.requests.Add(1)
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := meter.readIfOn()
	if cpuErr == nil {
		cpuErr = err
	}
	if cpuErr != nil {
		prog.note(fmt.Sprintf("CPU time not measured from now on: %v", cpuErr))
		meter.off()
	}
	st := roundStats{
		elapsed:  elapsed,
		cpu:      cpu1 - cpu0,
		requests: cnt.requests.Load(),
		units:    cnt.units.Load(),
		errors:   cnt.errors.Load(),
		firstErr: cnt.firstErr,
	}
	slices.Sort(latencies)
	st.p50, st.p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
	stop(st)
	return st
}

// percentile of sorted values, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// progress writes one line per target run to w (stderr): on a terminal it
// updates in place four times a second, elsewhere only the final line is
// written.
type progress struct {
	w   io.Writer
	tty bool
}

func newProgress(f *os.File) *progress {
	fi, err := f.Stat()
	return &progress{w: f, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) note(msg string) { fmt.Fprintf(p.w, "load: %s\n", msg) }

func (p *progress) line(phase string, t *target, d, elapsed time.Duration, reqs, units, errs int64) string {
	secs := elapsed.Seconds()
	return fmt.Sprintf("%-11s %-38s %5.1fs/%.1fs %9.0f req/s %10.0f %s/s  errors %d",
		phase, t.label, secs, d.Seconds(), float64(reqs)/secs, float64(units)/secs, t.unit, errs)
}

// start begins the line of one run; the function it returns ends it with
// the run's final figures.
func (p *progress) start(phase string, t *target, d time.Duration, start time.Time, c *counters) func(roundStats) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	if p.tty {
		wg.Go(func() {
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					el := time.Since(start)
					fmt.Fprintf(p.w, "\r\x1b[K%s", p.line(phase, t, d, el, c.requests.Load(), c.units.Load(), c.errors.Load()))
				}
			}
		})
	}
	return func(st roundStats) {
		close(done)
		wg.Wait()
		prefix := ""
		if p.tty {
			prefix = "\r\x1b[K"
		}
		fmt.Fprintf(p.w, "%s%s\n", prefix, p.line(phase, t, d, st.elapsed, st.requests, st.units, st.errors))
		if st.errors > 0 {
			fmt.Fprintf(p.w, "            first error: %s\n", st.firstErr)
		}
	}
}
