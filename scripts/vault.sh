#!/usr/bin/env bash
# vault.sh prints the path of a Vault server binary built from source, building
# it first if the cache does not have it yet.
#
# No Vault release can be downloaded here, so the binary is built from the
# module pinned in tools/vault (go.mod and go.sum). The cache key is a short
# sha256 of those two files, `go version` and the build recipe below, so a
# version bump or a new toolchain builds a fresh binary and an unchanged tree
# reuses the old one:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-jwt/vault-<key>/vault
#
# A cold build takes about five minutes on two cores; later builds with a warm
# Go build cache take seconds. Progress goes to stderr; stdout gets only the
# path, so callers can write VAULT_BIN="$(scripts/vault.sh)".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tooldir="$root/tools/vault"

# Keep the recipe in the key: changing how Vault is built must not reuse a
# binary built the old way.
build_tags="minimal"
recipe="go build -mod=readonly -tags $build_tags github.com/hashicorp/vault"

log() { printf 'vault.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH"
[[ -f "$tooldir/go.mod" ]] || die "$tooldir/go.mod is missing"
[[ -f "$tooldir/go.sum" ]] || die "$tooldir/go.sum is missing"

key="$(
	{
		cat "$tooldir/go.mod" "$tooldir/go.sum"
		go version
		printf '%s\n' "$recipe"
	} | sha256sum | cut -c1-12
)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-jwt"
dir="$cache_root/vault-$key"
bin="$dir/vault"

# check_binary runs `vault version` so a truncated or foreign binary is
# never handed out.
check_binary() {
	local out
	out="$("$1" version 2>&1)" || return 1
	[[ "$out" == Vault\ v* ]] || return 1
	printf '%s\n' "$out"
}

if [[ -x "$bin" ]] && check_binary "$bin" >/dev/null; then
	printf '%s\n' "$bin"
	exit 0
fi

mkdir -p "$dir"

# Serialise builds of the same key (make dev and make test-e2e started side
# by side) so the second one waits and then reuses the first one's binary.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$dir/.lock"
	if ! flock -n 9; then
		log "another build of $bin is running; waiting for it"
		flock 9
	fi
	if [[ -x "$bin" ]] && check_binary "$bin" >/dev/null; then
		printf '%s\n' "$bin"
		exit 0
	fi
fi

tmp="$(mktemp "$dir/vault.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

log "building Vault from source ($(sed -n 's/^require github.com\/hashicorp\/vault \(v[^ ]*\).*/\1/p' "$tooldir/go.mod")) into $dir"
log "a cold build takes about 5 minutes on 2 cores; a warm Go build cache makes it quick"
start=$SECONDS
(
	cd "$tooldir"
	# -mod=readonly: build exactly what go.mod and go.sum pin; a missing
	# go.sum entry is an error, never a silent download of something new.
	go build -mod=readonly -tags "$build_tags" -o "$tmp" github.com/hashicorp/vault
) >&2 || die "building Vault failed (tools/vault/go.sum incomplete? see above)"

version="$(check_binary "$tmp")" || die "the freshly built binary does not run: $("$tmp" version 2>&1 | head -n 3)"
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
trap - EXIT
log "built $version in $((SECONDS - start))s"
printf '%s\n' "$bin"
