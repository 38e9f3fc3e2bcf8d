#!/usr/bin/env bash
# fuzz.sh runs every Fuzz* target of the given packages for FUZZTIME each
# (go test -fuzz takes one target at a time) and fails on any finding.
#
#   scripts/fuzz.sh ./backend ./signer
#   FUZZTIME=1m scripts/fuzz.sh ./signer
#
# Go 1.26's fuzzing coordinator has a race at the end of a duration
# -fuzztime (golang/go#75804, fixed in Go 1.27): a worker's shutdown can
# surface as "--- FAIL: FuzzX" with the single line "context deadline
# exceeded", after the whole budget ran and with no failing input. Such a
# run is not a finding, but it did not pass either, so the target is run
# again, once; any failure of the second run fails. A real finding always
# writes its input to testdata/fuzz/<target>/, and a run that writes one
# fails at once. Drop the retry when go.mod moves to Go 1.27.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
(($# > 0)) || { echo "usage: scripts/fuzz.sh package..." >&2; exit 2; }

# corpus_files lists the files of a target's corpus, one per line.
corpus_files() { if [[ -d $1 ]]; then find "$1" -type f | sort; fi; }

# is_coordinator_race reports whether output (of a failed run) is the
# race's signature and nothing else: one failing fuzz target whose only
# message is "context deadline exceeded".
is_coordinator_race() {
	local output=$1 target=$2
	grep -q -- "^--- FAIL: $target " <<<"$output" &&
		[[ "$(grep -c -- '^--- FAIL' <<<"$output")" == 1 ]] &&
		[[ "$(sed -n "/^--- FAIL: $target /{n;p;}" <<<"$output")" == "    context deadline exceeded" ]] &&
		! grep -q -- '^    [a-z_]*_test\.go:[0-9]' <<<"$output"
}

n=0
for pkg in "$@"; do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		corpus="$dir/testdata/fuzz/$target"
		for attempt in 1 2; do
			echo "==> fuzz $pkg $target ($fuzztime)"
			before=$(corpus_files "$corpus")
			rc=0
			output=$(go test -run='^$' -fuzz="^$target\$" -fuzztime="$fuzztime" "$pkg" 2>&1) || rc=$?
			printf '%s\n' "$output"
			((rc != 0)) || break
			if [[ "$(corpus_files "$corpus")" != "$before" ]]; then
				echo "fuzz.sh: $target found a failing input; it is in ${corpus#"$PWD"/}/" >&2
				exit 1
			fi
			if ((attempt == 1)) && is_coordinator_race "$output" "$target"; then
				echo "fuzz.sh: $target ended with Go's fuzzing coordinator race (golang/go#75804), not a finding; running it again" >&2
				continue
			fi
			echo "fuzz.sh: $target failed" >&2
			exit 1
		done
		n=$((n + 1))
	done
done
echo "fuzzed $n target(s) for $fuzztime each"
