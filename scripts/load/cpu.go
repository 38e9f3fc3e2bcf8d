package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// cpuMeter reads how much CPU time (user and system) the Vault server, its
// descendants (the plugin processes) and this harness have used so far,
// from Linux's /proc. Divided by the tokens a round made, it is the whole
// machine's cost of a token, which a noisy neighbour disturbs far less than
// it disturbs throughput: a neighbour takes CPU away from a run (fewer
// tokens per second) but does not add CPU time to these processes. Other
// processes, such as kmstest for the awskms target, are not counted.
type cpuMeter struct {
	vaultPID int
	proc     string // /proc, or a test's copy of it
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's utime and stime:
// 100 on every Linux architecture Go runs on.
const clockTicks = 100

// read returns the CPU time used so far by Vault, its descendants and this
// process.
func (m *cpuMeter) read() (time.Duration, error) {
	procs, err := m.scan()
	if err != nil {
		return 0, err
	}
	if _, ok := procs[m.vaultPID]; !ok {
		return 0, fmt.Errorf("no process %d (the Vault server) in %s", m.vaultPID, m.proc)
	}
	var ticks int64
	for _, pid := range descendants(procs, m.vaultPID, os.Getpid()) {
		ticks += procs[pid].ticks
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// descendants returns roots and every process below them in procs, each
// once, parents before children.
func descendants(procs map[int]procStat, roots ...int) []int {
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var out []int
	seen := map[int]bool{}
	queue := roots
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// readIfOn is read, or 0 for a nil or disabled meter.
func (m *cpuMeter) readIfOn() (time.Duration, error) {
	if m == nil || m.vaultPID == 0 {
		return 0, nil
	}
	return m.read()
}

// off disables m.
func (m *cpuMeter) off() { m.vaultPID = 0 }

type procStat struct {
	ppid  int
	ticks int64 // utime + stime
}

// scan reads the stat file of every process. Processes that end while it
// reads are skipped.
func (m *cpuMeter) scan() (map[int]procStat, error) {
	entries, err := os.ReadDir(m.proc)
	if err != nil {
		return nil, err
	}
	out := map[int]procStat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(m.proc, e.Name(), "stat"))
		if err != nil {
			continue
		}
		st, err := parseProcStat(raw)
		if err != nil {
			return nil, fmt.Errorf("%s/%d/stat: %w", m.proc, pid, err)
		}
		out[pid] = st
	}
	return out, nil
}

// parseProcStat reads the parent pid and utime+stime from a
// /proc/<pid>/stat line. The command name, in parentheses, may itself hold
// spaces and parentheses, so fields are counted after its last ')'.
func parseProcStat(raw []byte) (procStat, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return procStat{}, errors.New("no ')' after the command name")
	}
	// After the name: state(3) ppid(4) ... utime(14) stime(15), numbered
	// as in proc(5).
	f := bytes.Fields(raw[i+1:])
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procStat{}, fmt.Errorf("ppid: %w", err)
	}
	utime, err := strconv.ParseInt(string(f[11]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseInt(string(f[12]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stime: %w", err)
	}
	return procStat{ppid: ppid, ticks: utime + stime}, nil
}
