#!/usr/bin/env bash
# startup.sh measures, through a real Vault, what a large revocation list
# costs when the plugin starts: it runs `load startup` (scripts/load) against
# a throwaway dev Vault with sys/raw enabled, which stores ENTRIES revoked
# jtis in the mount's storage, reloads the plugin and times the first
# verify (the revocation index's load) against later ones, with the plugin
# process's memory. It stops the server when it ends, however it ends.
#
#   scripts/startup.sh                       # 1,000,000 entries, 3 reloads
#   scripts/startup.sh -entries 100000 -rounds 5
#
# Environment: VAULT_DEV_PORT (8297), VAULT_BIN (default: scripts/vault.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export VAULT_DEV_PORT="${VAULT_DEV_PORT:-8297}"
addr="http://127.0.0.1:$VAULT_DEV_PORT"
workdir="$root/.dev/startup"
plugin_name="vault-plugin-secrets-jwt"
plugin_version="v0.1.0-startup"
module="github.com/vault-jwt/vault-plugin-secrets-jwt"

log() { printf 'startup.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

vault_started=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n "$vault_started" ]]; then
		scripts/dev.sh stop >/dev/null 2>&1 || log "stopping the dev Vault failed; see scripts/dev.sh stop"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -f "$root/.dev/vault.pid" ]] && kill -0 "$(<"$root/.dev/vault.pid")" 2>/dev/null; then
	die "a dev server from scripts/dev.sh is running (pid $(<"$root/.dev/vault.pid")); stop it with make dev-stop first"
fi

mkdir -p "$workdir"
log "building the plugin and the harness into ${workdir#"$root"/}"
go build -ldflags "-X $module/plugin.Version=$plugin_version" -o "$workdir/$plugin_name" "./cmd/$plugin_name" ||
	die "building the plugin failed"
go build -o "$workdir/load" ./scripts/load || die "building the harness failed"
vault_bin="${VAULT_BIN:-$(scripts/vault.sh)}"

log "starting a dev Vault with sys/raw on $addr (scripts/dev.sh; output in ${workdir#"$root"/}/dev.out)"
vault_started=1
PLUGIN_BIN="$workdir/$plugin_name" VERSION="$plugin_version" VAULT_BIN="$vault_bin" VAULT_DEV_RAW_STORAGE=1 \
	scripts/dev.sh start >"$workdir/dev.out" 2>&1 || {
	tail -n 30 "$workdir/dev.out" >&2
	die "scripts/dev.sh start failed"
}

VAULT_TOKEN=root "$workdir/load" startup -addr "$addr" -vault-pid "$(<"$root/.dev/vault.pid")" "$@"
