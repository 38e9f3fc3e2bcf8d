package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The startup subcommand measures what a node pays for a large revocation
// list when the plugin starts: it stores n revoked jtis in the mount's
// storage through Vault's sys/raw endpoint (the server needs
// raw_storage_endpoint = true; scripts/startup.sh sets up such a dev
// server), reloads the plugin, and times the first jwt/verify (which loads
// the revocation index: one storage read per bucket, over the plugin's gRPC
// storage) against later ones, with the plugin process's resident memory
// before and after. A round with no revocations comes first, for the ratio.
//
// It writes the buckets in the plugin's storage format (backend/revocation.go:
// revoked/jti/<3 hex digits>, entries keyed by hex SHA-256 of
// "iss\x00jti"), and fails unless jwt/revocations then counts exactly n.

const (
	startupBuckets   = 4096
	startupJTIPrefix = "revoked/jti/"
)

type startupConfig struct {
	addr, token, mount, plugin, role string
	entries, rounds, verifies        int
	vaultPID                         int
	timeout                          time.Duration
}

func parseStartupFlags(args []string) (*startupConfig, error) {
	c := &startupConfig{}
	fs := flag.NewFlagSet("load startup", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: load startup -vault-pid PID [flags]\n\n"+
			"Times the plugin's first verify after a reload with N stored revocations\n"+
			"(written through sys/raw: the server needs raw_storage_endpoint = true;\n"+
			"scripts/startup.sh sets one up). The Vault token comes from VAULT_TOKEN.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.addr, "addr", "http://127.0.0.1:8298", "Vault `address` (loopback only)")
	fs.StringVar(&c.mount, "jwt-mount", "jwt", "mount `path` of this plugin")
	fs.StringVar(&c.plugin, "plugin", "vault-plugin-secrets-jwt", "the plugin's registered `name`, to reload it")
	fs.StringVar(&c.role, "role", "default", "`role` to issue the token that is verified")
	fs.IntVar(&c.entries, "entries", 1_000_000, "revoked jtis to store (1-10000000)")
	fs.IntVar(&c.rounds, "rounds", 3, "reloads measured with the entries stored (1-20)")
	fs.IntVar(&c.verifies, "verifies", 50, "verify requests after the first, for the steady latency (1-10000)")
	fs.IntVar(&c.vaultPID, "vault-pid", 0, "`pid` of the Vault server, to find the plugin process and read its memory")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "deadline of one HTTP request (1s-30m)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.entries < 1 || c.entries > 10_000_000:
		return nil, fmt.Errorf("-entries %d: must be between 1 and 10000000", c.entries)
	case c.rounds < 1 || c.rounds > 20:
		return nil, fmt.Errorf("-rounds %d: must be between 1 and 20", c.rounds)
	case c.verifies < 1 || c.verifies > 10_000:
		return nil, fmt.Errorf("-verifies %d: must be between 1 and 10000", c.verifies)
	case c.vaultPID <= 0:
		return nil, errors.New("-vault-pid: required, the Vault server's pid")
	case c.timeout < time.Second || c.timeout > 30*time.Minute:
		return nil, fmt.Errorf("-timeout %s: must be between 1s and 30m", c.timeout)
	}
	if err := checkLoopbackURL(c.addr); err != nil {
		return nil, fmt.Errorf("-addr: %w", err)
	}
	c.addr = strings.TrimSuffix(c.addr, "/")
	return c, nil
}

// startupRound is one reload's measurements.
type startupRound struct {
	entries   int
	reload    time.Duration
	first     time.Duration // the first verify: plugin start-up work and the index load
	steady    time.Duration // median of the later verifies
	rssBefore int64         // the plugin process's VmRSS after the reload, in bytes
	rssAfter  int64         // and after the first verify
}

func runStartup(ctx context.Context, args []string) error {
	c, err := parseStartupFlags(args)
	if err != nil {
		return err
	}
	if c.token = os.Getenv("VAULT_TOKEN"); c.token == "" {
		return errors.New("VAULT_TOKEN is not set")
	}
	vc := newVaultClient(c.addr, c.token, 4, c.timeout)

	var mounts struct {
		Data map[string]struct {
			UUID string `json:"uuid"`
		} `json:"data"`
	}
	if err := vc.get(ctx, "sys/mounts", &mounts); err != nil {
		return err
	}
	uuid := mounts.Data[c.mount+"/"].UUID
	if uuid == "" {
		return fmt.Errorf("no mount %s/ with a uuid in sys/mounts", c.mount)
	}
	var cfg struct {
		Data struct {
			Issuer string `json:"issuer"`
		} `json:"data"`
	}
	if err := vc.get(ctx, c.mount+"/config", &cfg); err != nil {
		return err
	}
	if cfg.Data.Issuer == "" {
		return fmt.Errorf("%s/config has no issuer", c.mount)
	}
	var issued struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if err := vc.post(ctx, c.mount+"/issue/"+c.role, []byte(`{}`), &issued); err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"token": issued.Data.Token})
	if err != nil {
		return err
	}

	measure := func(entries int) (startupRound, error) {
		r := startupRound{entries: entries}
		start := time.Now()
		reload, err := json.Marshal(map[string]string{"plugin": c.plugin})
		if err != nil {
			return r, err
		}
		if err := vc.do(ctx, "PUT", "sys/plugins/reload/backend", reload, nil); err != nil {
			return r, err
		}
		r.reload = time.Since(start)
		pid, err := childByExe(c.vaultPID, c.plugin)
		if err != nil {
			return r, err
		}
		if r.rssBefore, err = vmRSS(pid); err != nil {
			return r, err
		}
		verify := func() (time.Duration, error) {
			var v struct {
				Data struct {
					Active *bool `json:"active"`
				} `json:"data"`
			}
			start := time.Now()
			if err := vc.post(ctx, c.mount+"/verify", body, &v); err != nil {
				return 0, err
			}
			d := time.Since(start)
			if v.Data.Active == nil || !*v.Data.Active {
				return 0, fmt.Errorf("%s/verify: the token is not active", c.mount)
			}
			return d, nil
		}
		if r.first, err = verify(); err != nil {
			return r, err
		}
		if r.rssAfter, err = vmRSS(pid); err != nil {
			return r, err
		}
		times := make([]time.Duration, c.verifies)
		for i := range times {
			if times[i], err = verify(); err != nil {
				return r, err
			}
		}
		slices.Sort(times)
		r.steady = times[len(times)/2]
		var list struct {
			Data struct {
				Total map[string]int `json:"total"`
			} `json:"data"`
		}
		if err := vc.get(ctx, c.mount+"/revocations?limit=1", &list); err != nil {
			return r, err
		}
		if got := list.Data.Total["jtis"]; got != entries {
			return r, fmt.Errorf("%s/revocations counts %d revoked jtis, want %d", c.mount, got, entries)
		}
		return r, nil
	}

	var rounds []startupRound
	fmt.Fprintf(os.Stderr, "startup: reload with no revocations\n")
	r, err := measure(0)
	if err != nil {
		return err
	}
	rounds = append(rounds, r)

	fmt.Fprintf(os.Stderr, "startup: storing %d revoked jtis in %d buckets through sys/raw\n", c.entries, startupBuckets)
	start := time.Now()
	if err := storeRevocations(ctx, vc, uuid, cfg.Data.Issuer, c.entries, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "startup: stored in %s\n", time.Since(start).Round(time.Millisecond))
	for i := range c.rounds {
		fmt.Fprintf(os.Stderr, "startup: reload %d/%d with %d revocations\n", i+1, c.rounds, c.entries)
		r, err := measure(c.entries)
		if err != nil {
			return err
		}
		rounds = append(rounds, r)
	}
	printStartup(os.Stdout, rounds)
	return nil
}

// storeRevocations writes n revoked jtis of issuer iss, expiring in an
// hour, as the plugin's revocation buckets under the mount's storage.
func storeRevocations(ctx context.Context, vc *vaultClient, uuid, iss string, n int, now time.Time) error {
	type entry struct {
		Issuer    string    `json:"iss"`
		JTI       string    `json:"jti"`
		Expires   time.Time `json:"expires"`
		RevokedAt time.Time `json:"revoked_at"`
	}
	buckets := make([]map[string]entry, startupBuckets)
	for i := range n {
		jti := fmt.Sprintf("AAAAAAAAAAA.%022d", i)
		k := sha256.Sum256([]byte(iss + "\x00" + jti))
		b := int(k[0])<<4 | int(k[1]>>4)
		if buckets[b] == nil {
			buckets[b] = map[string]entry{}
		}
		buckets[b][hex.EncodeToString(k[:])] = entry{Issuer: iss, JTI: jti, Expires: now.Add(time.Hour), RevokedAt: now}
	}
	work := make(chan int)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for b := range work {
				value, err := json.Marshal(map[string]any{"entries": buckets[b]})
				if err == nil {
					var body []byte
					body, err = json.Marshal(map[string]string{"value": string(value)})
					if err == nil {
						err = vc.do(ctx, "PUT", fmt.Sprintf("sys/raw/logical/%s/%s%03x", uuid, startupJTIPrefix, b), body, nil)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for b := range buckets {
		if buckets[b] == nil {
			continue
		}
		select {
		case work <- b:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// childByExe finds the descendant of pid whose executable is named name.
func childByExe(pid int, name string) (int, error) {
	m := &cpuMeter{vaultPID: pid, proc: "/proc"}
	procs, err := m.scan()
	if err != nil {
		return 0, err
	}
	for _, p := range descendants(procs, pid) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && filepath.Base(exe) == name {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no process %s under Vault (pid %d)", name, pid)
}

// vmRSS reads a process's resident memory from /proc/<pid>/status.
func vmRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(raw))
}

// parseVmRSS returns the VmRSS line of a /proc/<pid>/status text, in bytes.
func parseVmRSS(status string) (int64, error) {
	for line := range strings.SplitSeq(status, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want \"<n> kB\"", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line")
}

// printStartup writes the rounds as a Markdown table, the first with no
// revocations, then the medians of the others and their ratios to it.
func printStartup(w *os.File, rounds []startupRound) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	mb := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	fmt.Fprintln(w, "| revocations | reload ms | first verify ms | later verify ms (median) | plugin RSS after reload MB | after first verify MB |")
	fmt.Fprintln(w, "| ----------: | --------: | --------------: | -----------------------: | -------------------------: | --------------------: |")
	for _, r := range rounds {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s |\n", r.entries, ms(r.reload), ms(r.first), ms(r.steady), mb(r.rssBefore), mb(r.rssAfter))
	}
	if len(rounds) < 2 {
		return
	}
	base, big := rounds[0], rounds[1:]
	med := func(f func(startupRound) float64) float64 {
		v := make([]float64, len(big))
		for i, r := range big {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	n := big[0].entries
	first := med(func(r startupRound) float64 { return float64(r.first) })
	steady := med(func(r startupRound) float64 { return float64(r.steady) })
	grown := med(func(r startupRound) float64 { return float64(r.rssAfter - r.rssBefore) })
	fmt.Fprintf(w, "\nWith %d revocations (median of %d reloads): first verify after a reload %.0f ms (%.0f ms more than with none);\n", n, len(big), first/1e6, (first-float64(base.first))/1e6)
	fmt.Fprintf(w, "later verifies %.2f× the latency with none; the plugin's resident memory grew %.0f MB on the first verify, %.0f bytes per entry.\n",
		steady/float64(base.steady), grown/(1<<20), grown/float64(n))
}
