// Command load is the load harness (issue 6). It drives a running Vault
// over HTTP on loopback and compares, on the same server and under the same
// load, what it costs to get a signed JWT:
//
//   - jwt/issue/<role> of this plugin, for local ES256, EdDSA and RS256 keys,
//     singly and with batch_input, and for an ES256 key in AWS KMS (kmstest
//     with injected latency);
//   - Vault's built-in transit/sign/<key> for the same key types, plus the
//     work a client does to make a JWT of it (header and claims with iat,
//     exp and jti, base64url, the vault:v1: signature turned into JWS form),
//     singly and with batch_input; and transit's batch_input alone, the same
//     signing inputs signed again with no JWT made (signatures per second);
//   - the floor: scripts/load/floorplugin's sign path, one signature behind
//     the same gRPC hop every external plugin pays;
//   - raw crypto: the same signatures in this process on every core, the
//     machine's limit.
//
// Rounds run every target in turn, each round starting at a different
// target, so a noisy machine disturbs all of them alike; the tables report
// medians over rounds, and ratios are medians of per-round ratios. Before
// the rounds, one answer of each target is verified (JWTs against the JWKS
// or the transit public key) and each is warmed up.
//
// scripts/load.sh sets up a throwaway dev Vault with the keys, roles and
// mounts this expects and runs it:
//
//	scripts/load.sh -duration 3s -rounds 3 -concurrency 8
//	go run ./scripts/load -addr http://127.0.0.1:8298 -targets jwt,transit -algs ES256
//
// `load startup` (scripts/startup.sh) is a separate measurement: the first
// jwt/verify after a plugin reload with a million stored revocations.
//
// It only talks to loopback addresses (checked when each connection is
// dialled, proxies ignored, redirects refused), every loop is bounded in
// time, and it never prints a token or signature. The Vault token comes
// from VAULT_TOKEN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// groups are the kinds of target, in the order the tables list them.
var groups = []string{"jwt", "jwt-batch", "kms", "transit", "transit-batch", "transit-batch-sigs", "floor", "raw"}

// algs are the algorithms measured; the KMS target is ES256 only.
var algs = []string{"ES256", "EdDSA", "RS256"}

type config struct {
	addr         string
	token        string
	jwtMount     string
	transitMount string
	floorMount   string
	prefix       string
	kmsRole      string
	kmstestURL   string
	vaultPID     int
	groups       []string
	algs         []string
	batch        int
	concurrency  int
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	timeout      time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "create-kms-key":
		err = createKMSKey(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "startup":
		err = runStartup(ctx, os.Args[2:])
	default:
		err = run(ctx, os.Args[1:])
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: load [flags]\n"+
			"       load create-kms-key -kmstest-url URL [-spec ECC_NIST_P256]\n"+
			"       load startup -vault-pid PID [-entries N] (see: load startup -h)\n\n"+
			"Load-tests jwt/issue against transit/sign, the floor plugin and raw signing\n"+
			"on a Vault at a loopback address (scripts/load.sh sets one up).\n"+
			"Targets (-targets): %s. Names it expects, for alg in %s:\n"+
			"  <jwt-mount>/issue/<prefix><alg>, <transit-mount>/sign/<prefix><alg>,\n"+
			"  <floor-mount>/sign, <jwt-mount>/issue/<kms-role>; alg lower-cased.\n\n",
			strings.Join(groups, ","), strings.Join(algs, ","))
		fs.PrintDefaults()
	}
	fs.StringVar(&c.addr, "addr", "http://127.0.0.1:8298", "Vault `address` (loopback only)")
	fs.StringVar(&c.jwtMount, "jwt-mount", "jwt", "mount `path` of this plugin")
	fs.StringVar(&c.transitMount, "transit-mount", "transit", "mount `path` of Vault's transit engine")
	fs.StringVar(&c.floorMount, "floor-mount", "floor", "mount `path` of scripts/load/floorplugin")
	fs.StringVar(&c.prefix, "prefix", "load-", "prefix of the roles and transit keys, before the lower-cased alg")
	fs.StringVar(&c.kmsRole, "kms-role", "load-kms-es256", "role with an awskms ES256 key (empty: no kms target)")
	fs.StringVar(&c.kmstestURL, "kmstest-url", "", "kmstest `URL`, to report its latency and Sign calls (optional)")
	fs.IntVar(&c.vaultPID, "vault-pid", 0, "`pid` of the Vault server: also report CPU time per token of Vault, its plugin processes and this harness, from /proc (0: not measured)")
	targets := fs.String("targets", strings.Join(groups, ","), "comma-separated target `groups` to run")
	algList := fs.String("algs", strings.Join(algs, ","), "comma-separated `algorithms`")
	fs.IntVar(&c.batch, "batch", 100, "items per batch_input request (1-1000)")
	fs.IntVar(&c.concurrency, "concurrency", 8, "HTTP requests in flight per target (1-1024)")
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "length of each target's run in a round (100ms-10m)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured run of each target before the rounds (0-1m)")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds (1-100); medians are reported")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline of one HTTP request (1s-5m)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.groups, err = pickList("-targets", *targets, groups); err != nil {
		return nil, err
	}
	if c.algs, err = pickList("-algs", *algList, algs); err != nil {
		return nil, err
	}
	switch {
	case c.batch < 1 || c.batch > 1000:
		return nil, fmt.Errorf("-batch %d: must be between 1 and 1000", c.batch)
	case c.concurrency < 1 || c.concurrency > 1024:
		return nil, fmt.Errorf("-concurrency %d: must be between 1 and 1024", c.concurrency)
	case c.duration < 100*time.Millisecond || c.duration > 10*time.Minute:
		return nil, fmt.Errorf("-duration %s: must be between 100ms and 10m", c.duration)
	case c.warmup < 0 || c.warmup > time.Minute:
		return nil, fmt.Errorf("-warmup %s: must be between 0 and 1m", c.warmup)
	case c.rounds < 1 || c.rounds > 100:
		return nil, fmt.Errorf("-rounds %d: must be between 1 and 100", c.rounds)
	case c.timeout < time.Second || c.timeout > 5*time.Minute:
		return nil, fmt.Errorf("-timeout %s: must be between 1s and 5m", c.timeout)
	case c.vaultPID < 0:
		return nil, fmt.Errorf("-vault-pid %d: must be a pid, or 0", c.vaultPID)
	}
	if err := checkLoopbackURL(c.addr); err != nil {
		return nil, fmt.Errorf("-addr: %w", err)
	}
	if c.kmstestURL != "" {
		if err := checkLoopbackURL(c.kmstestURL); err != nil {
			return nil, fmt.Errorf("-kmstest-url: %w", err)
		}
	}
	c.addr = strings.TrimSuffix(c.addr, "/")
	return c, nil
}

// pickList parses a comma-separated subset of allowed, kept in allowed's
// order.
func pickList(flagName, s string, allowed []string) ([]string, error) {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !slices.Contains(allowed, v) {
			return nil, fmt.Errorf("%s: unknown %q; choose from %s", flagName, v, strings.Join(allowed, ","))
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty; choose from %s", flagName, strings.Join(allowed, ","))
	}
	return slices.DeleteFunc(slices.Clone(allowed), func(v string) bool { return !slices.Contains(out, v) }), nil
}

func run(ctx context.Context, args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	if c.token = os.Getenv("VAULT_TOKEN"); c.token == "" {
		return errors.New("VAULT_TOKEN is not set")
	}
	vc := newVaultClient(c.addr, c.token, c.concurrency, c.timeout)
	targets, err := buildTargets(ctx, c, vc)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("no targets: check -targets, -algs and -kms-role")
	}
	prog := newProgress(os.Stderr)
	var meter *cpuMeter
	if c.vaultPID != 0 {
		meter = &cpuMeter{vaultPID: c.vaultPID, proc: "/proc"}
		if _, err := meter.read(); err != nil {
			return fmt.Errorf("-vault-pid: %w", err)
		}
	}

	kms := newKMSReport(c.kmstestURL)
	kms.before(ctx)

	prog.note("checking one answer of each target (tokens verified against their public keys)")
	for _, t := range targets {
		if err := t.check(ctx); err != nil {
			return fmt.Errorf("%s: %w", t.label, err)
		}
	}
	if c.warmup > 0 {
		prog.note(fmt.Sprintf("warming up each target for %s", c.warmup))
		for _, t := range targets {
			st := runTarget(ctx, t, c.warmup, prog, "warmup", meter)
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: %w", ctx.Err())
			}
			if st.errors > 0 {
				prog.note(fmt.Sprintf("%s: %d errors while warming up; first: %s", t.label, st.errors, st.firstErr))
			}
		}
	}

	results := make(map[string][]roundStats, len(targets))
	start := time.Now()
	for r := range c.rounds {
		// Each round starts at a different target, so that none is always
		// first (after a pause) or last (after the others' garbage).
		off := r * len(targets) / c.rounds
		for i := range targets {
			t := targets[(off+i)%len(targets)]
			st := runTarget(ctx, t, c.duration, prog, fmt.Sprintf("round %d/%d", r+1, c.rounds), meter)
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: %w", ctx.Err())
			}
			results[t.id] = append(results[t.id], st)
		}
	}
	prog.note(fmt.Sprintf("done in %s", time.Since(start).Round(time.Second)))

	fmt.Printf("%d rounds of %s per target, concurrency %d, batch %d, on %s; GOMAXPROCS %d (this process; Vault runs on the same machine)\n",
		c.rounds, c.duration, c.concurrency, c.batch, c.addr, runtime.GOMAXPROCS(0))
	kms.after(ctx)
	fmt.Println()
	printSummary(os.Stdout, targets, results)
	fmt.Println()
	printRatios(os.Stdout, results, c.rounds)
	return nil
}
