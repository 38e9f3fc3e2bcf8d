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
me="startup.sh"
plugin_version="v0.1.0-startup"
# shellcheck source=scripts/throwaway.sh
source "$root/scripts/throwaway.sh"

trap 'rc=$?; trap - EXIT INT TERM; throwaway_stop_vault; exit "$rc"' EXIT
trap 'exit 130' INT TERM

throwaway_check
log "building the plugin and the harness into ${workdir#"$root"/}"
throwaway_build "$plugin_version"
throwaway_start_vault "$plugin_version" VAULT_DEV_RAW_STORAGE=1

VAULT_TOKEN=root "$workdir/load" startup -addr "$addr" -vault-pid "$(<"$root/.dev/vault.pid")" "$@"
