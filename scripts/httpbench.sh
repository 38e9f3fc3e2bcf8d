#!/usr/bin/env bash
# Runs scripts/httpbench against a throwaway dev Vault: the plugin at jwt/
# with its default ES256 key and role (from scripts/dev.sh), and Vault's
# transit engine with an ecdsa-p256 key. Stops the server afterwards.
#
#   scripts/httpbench.sh                 # 5 rounds of 3s each
#   scripts/httpbench.sh -rounds 9 -duration 5s -concurrency 8
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export VAULT_DEV_PORT="${VAULT_DEV_PORT:-8299}"
addr="http://127.0.0.1:$VAULT_DEV_PORT"
trap 'scripts/dev.sh stop >/dev/null 2>&1 || true' EXIT
scripts/dev.sh start >/dev/null
vault_bin="$(scripts/vault.sh)"
export VAULT_ADDR="$addr" VAULT_TOKEN=root
"$vault_bin" secrets enable transit >/dev/null
"$vault_bin" write -f transit/keys/bench type=ecdsa-p256 >/dev/null
go run ./scripts/httpbench -addr "$addr" -role default -transit-key bench "$@"
