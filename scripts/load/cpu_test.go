package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       procStat
		err        string
	}{
		{"plain", "123 (vault) S 1 123 123 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 12 0 100 0 0", procStat{ppid: 1, ticks: 320}, ""},
		{"name with spaces and parentheses", "77 (a) b (c)) R 42 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 0 0", procStat{ppid: 42, ticks: 11}, ""},
		{"no name", "77 a R 42", procStat{}, "no ')'"},
		{"short", "77 (x) R 42 1 2", procStat{}, "fields after the command name"},
		{"bad utime", "77 (x) R 42 0 0 0 0 0 0 0 0 0 x 6", procStat{}, "utime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.line))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestCPUMeterCountsVaultItsDescendantsAndItself builds a fake /proc: Vault
// (pid 100) with a plugin (101) that has a child (102), an unrelated process
// (200), and this test process, whose parent is not Vault.
func TestCPUMeterCountsVaultItsDescendantsAndItself(t *testing.T) {
	proc := t.TempDir()
	self := os.Getpid()
	write := func(pid, ppid int, utime, stime int64) {
		dir := filepath.Join(proc, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("%d (p %d) S %d 0 0 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 1 0 0\n", pid, pid, ppid, utime, stime)
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 0, 1000, 1000)
	write(100, 1, 300, 100)  // Vault: 4 s
	write(101, 100, 150, 50) // plugin: 2 s
	write(102, 101, 10, 0)   // the plugin's child: 0.1 s
	write(200, 1, 5000, 0)   // unrelated
	write(self, 1, 40, 10)   // the harness: 0.5 s
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err) // not a pid: skipped
	}

	m := &cpuMeter{vaultPID: 100, proc: proc}
	got, err := m.read()
	if err != nil {
		t.Fatal(err)
	}
	if want := 6600 * time.Millisecond; got != want {
		t.Fatalf("read = %v, want %v (Vault, its descendants and the harness only)", got, want)
	}

	m.vaultPID = 999
	if _, err := m.read(); err == nil || !strings.Contains(err.Error(), "no process 999") {
		t.Fatalf("read with a missing Vault pid: err = %v", err)
	}
	m.off()
	if d, err := m.readIfOn(); d != 0 || err != nil {
		t.Fatalf("readIfOn after off = %v, %v; want 0, nil", d, err)
	}
}

func TestCPUPerUnitRatio(t *testing.T) {
	jwt := roundStats{units: 1000, cpu: 80 * time.Millisecond, elapsed: time.Second}
	transit := roundStats{units: 1000, cpu: 100 * time.Millisecond, elapsed: time.Second}
	if got := jwt.cpuPerUnit(); got != 80 {
		t.Fatalf("cpuPerUnit = %v µs, want 80", got)
	}
	if got := (roundStats{units: 5}).cpuPerUnit(); got != 0 {
		t.Fatalf("cpuPerUnit without a measurement = %v, want 0", got)
	}
	results := map[string][]roundStats{"jwt-batch/ES256": {jwt}, "transit-batch/ES256": {transit}}
	var out strings.Builder
	printRatios(&out, results, 1)
	want := "by CPU per token: jwt batch vs transit batch +client (transit's ÷ jwt's)"
	var line string
	for l := range strings.SplitSeq(out.String(), "\n") {
		if strings.Contains(l, want) {
			line = l
		}
	}
	if !strings.Contains(line, "**1.25**") {
		t.Fatalf("ratio line %q, want 1.25 (100 µs ÷ 80 µs); table:\n%s", line, out.String())
	}
}
