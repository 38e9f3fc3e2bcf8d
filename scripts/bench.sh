#!/usr/bin/env bash
# Compares the whole issue request (through HandleRequest) with the bare
# signature, in the same process and interleaved: each round runs the raw
# sign and issue benchmarks back to back, and the ratio reported is the
# median over rounds of issue/raw. It also runs BenchmarkIssueOverhead, the
# issue request with the signature stubbed out: the engine's own cost,
# which is small next to the signature and so better measured alone than
# as the difference of two noisy figures. The machine is noisy; ratios taken this
# way are steadier than absolute times.
#
#   scripts/bench.sh              # 7 rounds of 1s per benchmark
#   ROUNDS=15 BENCHTIME=2s scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-7}
benchtime=${BENCHTIME:-1s}
bin=$(mktemp -d)/backend.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./backend/

for _ in $(seq "$rounds"); do
  "$bin" -test.run '^$' -test.bench '^Benchmark(RawSign|Issue|IssueOverhead)$' -test.benchtime "$benchtime"
done | awk '
  /^BenchmarkIssueOverhead/ { no++; over[no] = $3; next }
  /^Benchmark(RawSign|Issue)\// {
    split($1, name, "/"); kind = name[1]; sub(/^Benchmark/, "", kind)
    alg = name[2]; sub(/-[0-9]+$/, "", alg)
    ns = $3
    if (kind == "RawSign") { raw[alg] = ns } else {
      n[alg]++; ratio[alg, n[alg]] = ns / raw[alg]; issue[alg, n[alg]] = ns; rawk[alg, n[alg]] = raw[alg]
    }
  }
  function median(arr, alg, count,   i, j, t, v) {
    for (i = 1; i <= count; i++) v[i] = arr[alg, i]
    for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (count % 2) ? v[(count + 1) / 2] : (v[count / 2] + v[count / 2 + 1]) / 2
  }
  function median1(arr, count,   i, j, t, v) {
    for (i = 1; i <= count; i++) v[i] = arr[i]
    for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (count % 2) ? v[(count + 1) / 2] : (v[count / 2] + v[count / 2 + 1]) / 2
  }
  END {
    o = median1(over, no)
    printf "%-6s %8s %14s %12s %22s %26s\n", "alg", "rounds", "raw sign ns", "issue ns", "issue / raw (median)", "(raw + overhead) / raw"
    for (alg in n) printf "%-6s %8d %14.0f %12.0f %22.2f %26.2f\n", alg, n[alg], median(rawk, alg, n[alg]), median(issue, alg, n[alg]), median(ratio, alg, n[alg]), 1 + o / median(rawk, alg, n[alg])
    printf "\nengine overhead per token, signature stubbed (BenchmarkIssueOverhead): %.0f ns (median of %d)\n", o, no
  }'
