package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// printSummary writes the per-target table (Markdown): medians over rounds,
// the range of throughput across rounds, and errors summed; with CPU time
// measured, also the median CPU time per token or signature.
func printSummary(w io.Writer, targets []*target, results map[string][]roundStats) {
	withCPU := cpuMeasured(results)
	head := []string{"target", "req/s", "tokens or sigs/s", "range over rounds", "p50 ms", "p99 ms", "errors"}
	right := []bool{false, true, true, true, true, true, true}
	if withCPU {
		head = append(head, "CPU µs per token or sig")
		right = append(right, true)
	}
	rows := [][]string{head}
	var firstErrs []string
	for _, t := range targets {
		rs := results[t.id]
		units := collect(rs, roundStats.unitsPerSec)
		var (
			errs  int64
			first string
		)
		for _, s := range rs {
			errs += s.errors
			if first == "" {
				first = s.firstErr
			}
		}
		if first != "" {
			firstErrs = append(firstErrs, t.label+": "+first)
		}
		row := []string{
			t.label,
			fmt.Sprintf("%.0f", median(collect(rs, roundStats.reqPerSec))),
			fmt.Sprintf("%.0f %s", median(units), t.unit),
			fmt.Sprintf("%.0f–%.0f", slices.Min(units), slices.Max(units)),
			ms(median(collect(rs, func(s roundStats) float64 { return float64(s.p50) }))),
			ms(median(collect(rs, func(s roundStats) float64 { return float64(s.p99) }))),
			fmt.Sprint(errs),
		}
		if withCPU {
			row = append(row, fmt.Sprintf("%.1f", median(collect(rs, roundStats.cpuPerUnit))))
		}
		rows = append(rows, row)
	}
	writeTable(w, rows, right)
	for _, e := range firstErrs {
		fmt.Fprintf(w, "first error of %s\n", e)
	}
}

type ratioDef struct {
	name     string
	num, den string // target groups
	algs     []string
	// byCPU divides the den target's CPU time per token by the num
	// target's, instead of num's tokens per second by den's: above 1, num
	// costs the machine less per token, as a throughput ratio above 1 says
	// num makes more tokens per second.
	byCPU bool
}

// ratioDefs are the comparisons the harness is for. All but the byCPU ones
// divide tokens (or signatures) per second.
var ratioDefs = []ratioDef{
	{"jwt issue ÷ floor plugin sign (the gRPC hop + a signature)", "jwt", "floor", algs, false},
	{"jwt issue ÷ transit sign +client, single", "jwt", "transit", algs, false},
	{"jwt batch ÷ transit batch +client (tokens/s)", "jwt-batch", "transit-batch", algs, false},
	{"jwt batch ÷ transit batch, signatures only (tokens/s ÷ sigs/s)", "jwt-batch", "transit-batch-sigs", algs, false},
	{"jwt batch ÷ raw sign, all cores (tokens/s ÷ sigs/s)", "jwt-batch", "raw", algs, false},
	{"jwt batch ÷ jwt issue single (tokens/s)", "jwt-batch", "jwt", algs, false},
	{"jwt issue single ÷ raw sign, all cores", "jwt", "raw", algs, false},
	{"jwt issue awskms ÷ jwt issue local key", "kms", "jwt", []string{"ES256"}, false},
	{"by CPU per token: jwt issue vs floor plugin sign (floor's ÷ jwt's)", "jwt", "floor", algs, true},
	{"by CPU per token: jwt issue vs transit sign +client, single (transit's ÷ jwt's)", "jwt", "transit", algs, true},
	{"by CPU per token: jwt batch vs transit batch +client (transit's ÷ jwt's)", "jwt-batch", "transit-batch", algs, true},
	{"by CPU per token: jwt batch vs raw sign (raw's ÷ jwt's)", "jwt-batch", "raw", algs, true},
}

// cpuMeasured reports whether any round measured CPU time.
func cpuMeasured(results map[string][]roundStats) bool {
	for _, rs := range results {
		for _, s := range rs {
			if s.cpu > 0 {
				return true
			}
		}
	}
	return false
}

// printRatios writes the ratio table (Markdown): per algorithm, the median
// of the per-round ratios, with their range.
func printRatios(w io.Writer, results map[string][]roundStats, rounds int) {
	head := append([]string{"ratio (median of rounds, range)"}, algs...)
	rows := [][]string{head}
	for _, d := range ratioDefs {
		row := []string{d.name}
		found := false
		for _, alg := range algs {
			num, den := results[d.num+"/"+alg], results[d.den+"/"+alg]
			if !slices.Contains(d.algs, alg) || len(num) != rounds || len(den) != rounds {
				row = append(row, "")
				continue
			}
			var rs []float64
			for r := range rounds {
				if d.byCPU {
					if n, v := num[r].cpuPerUnit(), den[r].cpuPerUnit(); n > 0 && v > 0 {
						rs = append(rs, v/n)
					}
				} else if v := den[r].unitsPerSec(); v > 0 {
					rs = append(rs, num[r].unitsPerSec()/v)
				}
			}
			if len(rs) == 0 {
				row = append(row, "n/a")
				continue
			}
			found = true
			row = append(row, fmt.Sprintf("**%.2f** (%.2f–%.2f)", median(rs), slices.Min(rs), slices.Max(rs)))
		}
		if found {
			rows = append(rows, row)
		}
	}
	if len(rows) == 1 {
		fmt.Fprintln(w, "(no ratios: a ratio needs both of its targets)")
		return
	}
	writeTable(w, rows, []bool{false, true, true, true})
}

// writeTable writes rows as an aligned Markdown table; right[i] aligns
// column i to the right.
func writeTable(w io.Writer, rows [][]string, right []bool) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)), 3)
		}
	}
	pad := func(s string, i int) string {
		n := width[i] - len([]rune(s))
		if right[i] {
			return strings.Repeat(" ", n) + s
		}
		return s + strings.Repeat(" ", n)
	}
	for ri, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = pad(c, i)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		if ri == 0 {
			for i := range cells {
				dash := strings.Repeat("-", width[i])
				if right[i] {
					dash = dash[:len(dash)-1] + ":"
				}
				cells[i] = dash
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
}

// ms formats nanoseconds as milliseconds, with a third decimal below 1 ms
// (raw signatures).
func ms(ns float64) string {
	v := ns / float64(time.Millisecond)
	if v < 1 {
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func collect(rs []roundStats, f func(roundStats) float64) []float64 {
	out := make([]float64, len(rs))
	for i, s := range rs {
		out[i] = f(s)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
