#!/usr/bin/env bash
# dev.sh runs a Vault dev server with this plugin mounted at jwt/, for trying
# the plugin by hand.
#
#   scripts/dev.sh start   (what `make dev` runs, after `make build`)
#   scripts/dev.sh stop    (what `make dev-stop` runs)
#
# Everything lives under .dev/ in the repository: the plugin directory, the
# server's config, log and pid file, and the last token issued. The server
# listens on 127.0.0.1:${VAULT_DEV_PORT:-8200} with root token "root"; it keeps
# nothing on disk and forgets everything when stopped.
#
# Environment: PLUGIN_BIN (default bin/vault-plugin-secrets-jwt, built with
# `make build` when missing), VERSION (default: what the plugin's -version
# prints), VAULT_BIN (default: scripts/vault.sh), VAULT_DEV_PORT (8200),
# VAULT_DEV_RAW_STORAGE (1: enable sys/raw, for scripts/startup.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
devdir="$root/.dev"
plugin_name="vault-plugin-secrets-jwt"
port="${VAULT_DEV_PORT:-8200}"
addr="http://127.0.0.1:$port"
root_token="root"
pidfile="$devdir/vault.pid"
logfile="$devdir/vault.log"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'dev.sh: error: %s\n' "$*" >&2; exit 1; }

# running_pid prints the pid from the pid file if that process is still our
# dev server (not a recycled pid).
running_pid() {
	[[ -f "$pidfile" ]] || return 1
	local pid
	pid="$(<"$pidfile")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-config=$devdir/vault.hcl" || return 1
	printf '%s\n' "$pid"
}

stop() {
	local pid
	if ! pid="$(running_pid)"; then
		rm -f "$pidfile"
		log "no dev server running"
		return 0
	fi
	log "stopping dev server (pid $pid)"
	kill -TERM "$pid"
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "still running after 10s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
	log "stopped"
}

# vault runs the CLI against the dev server only, whatever VAULT_* the caller
# has set.
vault() {
	env -u VAULT_NAMESPACE -u VAULT_FORMAT -u VAULT_CACERT -u VAULT_CAPATH \
		-u VAULT_CLIENT_CERT -u VAULT_CLIENT_KEY -u VAULT_SKIP_VERIFY \
		VAULT_ADDR="$addr" VAULT_TOKEN="$root_token" "$vault_bin" "$@"
}

# decode prints a JWT's header and claims (never its signature).
decode() {
	node -e '
		const t = require("fs").readFileSync(0, "utf8").trim().split(".");
		for (const [i, name] of [[0, "header"], [1, "claims"]]) {
			const v = JSON.parse(Buffer.from(t[i], "base64url").toString("utf8"));
			console.log(name + ": " + JSON.stringify(v, null, 2));
		}'
}

start() {
	command -v node >/dev/null 2>&1 || die "node is needed for the verifier"
	command -v curl >/dev/null 2>&1 || die "curl is needed"

	vault_bin="${VAULT_BIN:-$("$root/scripts/vault.sh")}"
	plugin_bin="${PLUGIN_BIN:-$root/bin/$plugin_name}"
	if [[ ! -x "$plugin_bin" ]]; then
		log "building the plugin"
		make -C "$root" --no-print-directory build
	fi
	version="${VERSION:-$("$plugin_bin" -version)}"
	if [[ "$("$plugin_bin" -version)" != "$version" ]]; then
		die "$plugin_bin -version prints $("$plugin_bin" -version), not $version; rebuild with make build VERSION=$version"
	fi
	if [[ ! -d "$root/scripts/verify/node_modules/jose" ]]; then
		log "installing the verifier's node modules"
		(cd "$root/scripts/verify" && npm ci --no-audit --no-fund >&2)
	fi

	if pid="$(running_pid)"; then
		log "a dev server is already running (pid $pid); restarting it"
		stop
	fi
	if curl -s -o /dev/null --max-time 2 "$addr/v1/sys/health"; then
		die "something already listens on 127.0.0.1:$port; stop it or set VAULT_DEV_PORT"
	fi

	mkdir -p "$devdir/plugins"
	# Vault resolves symlinks in plugin_directory: copy, do not link.
	cp -f "$plugin_bin" "$devdir/plugins/$plugin_name"
	chmod 0755 "$devdir/plugins/$plugin_name"
	cat >"$devdir/vault.hcl" <<-EOF
		plugin_directory = "$devdir/plugins"
		disable_mlock    = true
		api_addr         = "$addr"
	EOF
	if [[ "${VAULT_DEV_RAW_STORAGE:-}" == 1 ]]; then
		# For scripts/startup.sh only: sys/raw reads and writes storage
		# under Vault's seal, bypassing every plugin.
		echo 'raw_storage_endpoint = true' >>"$devdir/vault.hcl"
	fi

	log "starting vault server -dev on $addr (log: ${logfile#"$root"/})"
	# HOME is .dev so the server does not touch ~/.vault-token.
	nohup env HOME="$devdir" "$vault_bin" server -dev \
		-dev-root-token-id="$root_token" \
		-dev-listen-address="127.0.0.1:$port" \
		-dev-no-store-token \
		-config="$devdir/vault.hcl" \
		</dev/null >"$logfile" 2>&1 &
	echo $! >"$pidfile"

	local ready=""
	for _ in $(seq 1 150); do
		if ! kill -0 "$(<"$pidfile")" 2>/dev/null; then
			tail -n 30 "$logfile" >&2 || true
			rm -f "$pidfile"
			die "vault exited during startup; see $logfile"
		fi
		if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$addr/v1/sys/health" || true)" == 200 ]]; then
			ready=1
			break
		fi
		sleep 0.2
	done
	[[ -n "$ready" ]] || die "vault did not become ready within 30s; see $logfile"

	local sha
	sha="$(sha256sum "$devdir/plugins/$plugin_name" | cut -d' ' -f1)"
	log "registering $plugin_name $version (sha256 $sha)"
	vault plugin register -sha256="$sha" -version="$version" secret "$plugin_name" >&2
	vault secrets enable -path=jwt -plugin-version="$version" "$plugin_name" >&2

	local issuer="$addr/v1/jwt"
	log "configuring issuer, key \"default\" (ES256) and role \"default\""
	vault write jwt/config issuer="$issuer" >/dev/null
	vault write jwt/keys/default algorithm=ES256 >/dev/null
	vault write jwt/roles/default key=default audiences=dev ttl=15m >/dev/null

	log "issuing a token from role default"
	umask 077
	vault write -f -field=token jwt/issue/default >"$devdir/token.jwt"
	decode <"$devdir/token.jwt"

	log "verifying it with jose against the JWKS"
	node "$root/scripts/verify/verify.mjs" --jwks-url "$issuer/jwks" \
		--issuer "$issuer" --audience dev --alg ES256 <"$devdir/token.jwt" >/dev/null
	echo "verified by jose (scripts/verify/verify.mjs)"

	cat <<-EOF

		Vault dev server with $plugin_name $version at jwt/:
		  export VAULT_ADDR=$addr VAULT_TOKEN=$root_token
		  vault write -f jwt/issue/default        # issue a token
		  (the vault CLI: $vault_bin)
		  JWKS:      $issuer/jwks
		  Discovery: $issuer/.well-known/openid-configuration
		  Token:     ${devdir#"$root"/}/token.jwt (the one above)
		  Verify:    node scripts/verify/verify.mjs --jwks-url $issuer/jwks --issuer $issuer --audience dev --alg ES256 < .dev/token.jwt
		  Log:       ${logfile#"$root"/}
		Stop it with: make dev-stop
	EOF
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
*) die "usage: $0 [start|stop]" ;;
esac
