#!/usr/bin/env bash
# load.sh runs the load harness (scripts/load) against a throwaway dev Vault
# and stops everything it started when it ends, however it ends.
#
#   scripts/load.sh                                        # 3 rounds of 3s, 8 in flight
#   scripts/load.sh -duration 3s -rounds 3 -concurrency 8  # arguments go to the harness
#   scripts/load.sh -targets jwt,floor -algs ES256         # a subset (see: go run ./scripts/load -h)
#
# It builds into .dev/load/ the plugin (stamped v0.1.0-load), the floor plugin
# (scripts/load/floorplugin), cmd/kmstest and the harness; starts kmstest on
# loopback with KMS_LATENCY of latency per call; starts a dev Vault with
# scripts/dev.sh on 127.0.0.1:$VAULT_DEV_PORT; then sets up, with the vault CLI
# and the dev root token:
#
#   jwt/        keys and roles load-es256, load-eddsa, load-rs256 (local keys,
#               RSA 2048), and load-kms-es256: an awskms ES256 key made in
#               kmstest, with jwt/config/aws pointing at kmstest (its test
#               credentials) and max_requests_per_second=$KMS_MAX_RPS
#   transit/    keys load-es256 (ecdsa-p256), load-eddsa (ed25519),
#               load-rs256 (rsa-2048)
#   floor/      the floor plugin, registered by sha256 as vault-load-floor
#
# Every role has audiences=load subject=load ttl=15m, the claims the harness
# puts in the tokens it builds from transit signatures.
#
# Environment: VAULT_DEV_PORT (8298), KMS_LATENCY (10ms), KMS_MAX_RPS (100000:
# the KMS governor out of the way, so the awskms figure shows latency, not the
# default limit of 250/s), VAULT_BIN (default: scripts/vault.sh).
#
# dev.sh keeps one server's state in .dev/, so this refuses to run while a dev
# server from `make dev` is up.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export VAULT_DEV_PORT="${VAULT_DEV_PORT:-8298}"
addr="http://127.0.0.1:$VAULT_DEV_PORT"
kms_latency="${KMS_LATENCY:-10ms}"
kms_max_rps="${KMS_MAX_RPS:-100000}"
workdir="$root/.dev/load"
me="load.sh"
plugin_version="v0.1.0-load"
floor_name="vault-load-floor"
floor_dst="$root/.dev/plugins/$floor_name"
# shellcheck source=scripts/throwaway.sh
source "$root/scripts/throwaway.sh"

kms_pid=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	throwaway_stop_vault
	if [[ -n "$kms_pid" ]] && kill -0 "$kms_pid" 2>/dev/null; then
		kill -TERM "$kms_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$kms_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$kms_pid" 2>/dev/null || true
	fi
	rm -f "$floor_dst"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

throwaway_check
mkdir -p "$root/.dev/plugins"
log "building the plugin, the floor plugin, kmstest and the harness into ${workdir#"$root"/}"
throwaway_build "$plugin_version"
go build -o "$workdir/$floor_name" ./scripts/load/floorplugin || die "building the floor plugin failed"
go build -o "$workdir/kmstest" ./cmd/kmstest || die "building kmstest failed"

log "starting kmstest with $kms_latency of latency per call"
"$workdir/kmstest" -listen 127.0.0.1:0 -latency "$kms_latency" \
	>"$workdir/kmstest.out" 2>"$workdir/kmstest.log" </dev/null &
kms_pid=$!
kms_url=""
for _ in $(seq 1 100); do
	line="$(head -n 1 "$workdir/kmstest.out" 2>/dev/null || true)"
	if [[ "$line" == KMSTEST_URL=http://127.0.0.1:* ]]; then
		kms_url="${line#KMSTEST_URL=}"
		break
	fi
	kill -0 "$kms_pid" 2>/dev/null || die "kmstest exited: $(tail -n 5 "$workdir/kmstest.log")"
	sleep 0.1
done
[[ -n "$kms_url" ]] || die "kmstest printed no KMSTEST_URL within 10s; see ${workdir#"$root"/}/kmstest.log"

# The plugin process inherits Vault's environment: keep it from any AWS
# setup of this machine; it reaches kmstest with static test credentials.
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN \
	AWS_REGION AWS_DEFAULT_REGION AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE
export AWS_EC2_METADATA_DISABLED=true
throwaway_start_vault "$plugin_version"

# vault runs the CLI against the dev server only, whatever VAULT_* the caller
# has set.
vault() {
	env -u VAULT_NAMESPACE -u VAULT_FORMAT -u VAULT_CACERT -u VAULT_CAPATH \
		-u VAULT_CLIENT_CERT -u VAULT_CLIENT_KEY -u VAULT_SKIP_VERIFY \
		VAULT_ADDR="$addr" VAULT_TOKEN=root "$vault_bin" "$@"
}

log "registering the floor plugin and mounting it at floor/"
cp -f "$workdir/$floor_name" "$floor_dst"
chmod 0755 "$floor_dst"
sha="$(sha256sum "$floor_dst" | cut -d' ' -f1)"
vault plugin register -sha256="$sha" secret "$floor_name" >/dev/null
vault secrets enable -path=floor "$floor_name" >/dev/null

log "transit/: keys load-es256 (ecdsa-p256), load-eddsa (ed25519), load-rs256 (rsa-2048)"
vault secrets enable transit >/dev/null
vault write -f transit/keys/load-es256 type=ecdsa-p256 >/dev/null
vault write -f transit/keys/load-eddsa type=ed25519 >/dev/null
vault write -f transit/keys/load-rs256 type=rsa-2048 >/dev/null

log "jwt/: keys and roles load-es256, load-eddsa, load-rs256"
role_args=(audiences=load subject=load ttl=15m)
vault write jwt/keys/load-es256 algorithm=ES256 >/dev/null
vault write jwt/keys/load-eddsa algorithm=EdDSA >/dev/null
vault write jwt/keys/load-rs256 algorithm=RS256 rsa_bits=2048 >/dev/null
for k in load-es256 load-eddsa load-rs256; do
	vault write "jwt/roles/$k" key="$k" "${role_args[@]}" >/dev/null
done

log "jwt/: key and role load-kms-es256 (awskms, in kmstest at $kms_url)"
# kmstest's test credentials; the secret goes in on stdin all the same.
vault write jwt/config/aws access_key=AKIDTEST secret_key=- region=us-east-1 \
	endpoint="$kms_url" max_requests_per_second="$kms_max_rps" >/dev/null <<<"secret"
kms_key_id="$("$workdir/load" create-kms-key -kmstest-url "$kms_url" -spec ECC_NIST_P256)" ||
	die "creating the KMS key in kmstest failed"
vault write jwt/keys/load-kms-es256 provider=awskms kms_key_id="$kms_key_id" algorithm=ES256 >/dev/null
vault write jwt/roles/load-kms-es256 key=load-kms-es256 "${role_args[@]}" >/dev/null

vault_pid="$(<"$root/.dev/vault.pid")"
log "running the harness: ${workdir#"$root"/}/load -addr $addr -kmstest-url $kms_url -vault-pid $vault_pid $*"
VAULT_TOKEN=root "$workdir/load" -addr "$addr" -kmstest-url "$kms_url" -vault-pid "$vault_pid" "$@"
