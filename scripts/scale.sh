#!/usr/bin/env bash
# Scale figures (issue 6): issue latency with 10, 1,000 and 10,000 roles and
# keys in the mount (all of them in use, and 10,000 with traffic to 10), the
# signature alone with the same signers, and verify and issue latency with 0 and 1,000,000
# revoked jtis, plus the revocation index's memory per entry and load time.
# Rounds repeat everything; the figures are medians and the ratios are to
# the smallest size in the same round, so a noisy machine disturbs both
# sides alike.
#
#   scripts/scale.sh              # 5 rounds, 5000 iterations per benchmark (about a minute)
#   ROUNDS=9 ITERATIONS=10000 scripts/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
iterations=${ITERATIONS:-5000}
bin=$(mktemp -d)/backend.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./backend/

for _ in $(seq "$rounds"); do
  "$bin" -test.run '^$' -test.bench '^Benchmark(RolesAndKeys|Revocations)/' -test.benchtime "${iterations}x" -test.timeout 30m
done | awk '
  /^Benchmark(RolesAndKeys|Revocations)\// {
    name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
    n[name]++; ns[name, n[name]] = $3
    for (i = 4; i < NF; i++) if ($(i+1) == "load-ms") load[name, n[name]] = $i; else if ($(i+1) == "bytes/entry") bpe[name] = $i
    order[name] = ++seen
  }
  function median(arr, name, count,   i, j, t, v) {
    for (i = 1; i <= count; i++) v[i] = arr[name, i]
    for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (count % 2) ? v[(count + 1) / 2] : (v[count / 2] + v[count / 2 + 1]) / 2
  }
  function ratio(big, small,   i, c) {
    c = n[big]; for (i = 1; i <= c; i++) r[big, i] = ns[big, i] / ns[small, i]
    return median(r, big, c)
  }
  END {
    printf "%-44s %7s %12s %10s\n", "benchmark", "rounds", "median ns/op", "vs small"
    split("RolesAndKeys/issue/roles=10 RolesAndKeys/issue/roles=1000 RolesAndKeys/issue/roles=10000 RolesAndKeys/issue/roles=10000,hot=10", ra, " ")
    split("Revocations/verify/entries=0 Revocations/verify/entries=1000000 Revocations/issue/entries=0 Revocations/issue/entries=1000000", rv, " ")
    for (i = 1; i <= 4; i++) printf "%-44s %7d %12.0f %10.2f\n", ra[i], n[ra[i]], median(ns, ra[i], n[ra[i]]), ratio(ra[i], ra[1])
    # The signature alone, with the signers of the engine, in the same order:
    # what N keys in use cost the cryptography; and the time of the engine
    # per issue (issue minus signature, median over rounds).
    split("RolesAndKeys/sign/keys=10 RolesAndKeys/sign/keys=1000 RolesAndKeys/sign/keys=10000", rs, " ")
    for (i = 1; i <= 3; i++) if (n[rs[i]]) {
      printf "%-44s %7d %12.0f %10.2f\n", rs[i], n[rs[i]], median(ns, rs[i], n[rs[i]]), ratio(rs[i], rs[1])
      for (j = 1; j <= n[rs[i]]; j++) eng[rs[i], j] = ns[ra[i], j] - ns[rs[i], j]
    }
    for (i = 1; i <= 4; i++) { small = (i <= 2) ? rv[1] : rv[3]; printf "%-44s %7d %12.0f %10.2f\n", rv[i], n[rv[i]], median(ns, rv[i], n[rv[i]]), ratio(rv[i], small) }
    if (n[rs[1]]) {
      printf "\nengine time per issue (issue minus signature): "
      for (i = 1; i <= 3; i++) printf "%s%.0f ns (%s)", (i > 1 ? ", " : ""), median(eng, rs[i], n[rs[i]]), substr(rs[i], 19)
      printf "\n"
    }
    l = "Revocations/load/entries=1000000"
    printf "\nrevocation index, 1,000,000 entries: %.0f bytes/entry, loaded in %.0f ms (median of %d)\n", bpe[l], median(load, l, n[l]), n[l]
  }'
