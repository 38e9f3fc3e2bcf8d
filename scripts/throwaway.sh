# throwaway.sh is sourced by scripts/load.sh and scripts/startup.sh: the
# parts of running a measurement against a throwaway dev Vault that both
# share. The caller sets root (the repository), me (its name, for messages),
# workdir and VAULT_DEV_PORT, and calls throwaway_stop_vault from its EXIT
# trap.

plugin_name="vault-plugin-secrets-jwt"
module="github.com/vault-jwt/vault-plugin-secrets-jwt"
vault_started=""

log() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# throwaway_check refuses to run without go and curl, or while a dev server
# from `make dev` is up (dev.sh keeps one server's state in .dev/).
throwaway_check() {
	command -v go >/dev/null 2>&1 || die "go is not on PATH"
	command -v curl >/dev/null 2>&1 || die "curl is needed (by scripts/dev.sh)"
	if [[ -f "$root/.dev/vault.pid" ]] && kill -0 "$(<"$root/.dev/vault.pid")" 2>/dev/null; then
		die "a dev server from scripts/dev.sh is running (pid $(<"$root/.dev/vault.pid")); stop it with make dev-stop first"
	fi
	mkdir -p "$workdir"
}

# throwaway_build builds the plugin stamped with version $1, and the
# harness, into $workdir, and sets vault_bin.
throwaway_build() {
	go build -ldflags "-X $module/plugin.Version=$1" -o "$workdir/$plugin_name" "./cmd/$plugin_name" ||
		die "building the plugin failed"
	go build -o "$workdir/load" ./scripts/load || die "building the harness failed"
	vault_bin="${VAULT_BIN:-$(scripts/vault.sh)}"
}

# throwaway_start_vault starts the dev server (scripts/dev.sh) with the
# plugin of version $1 mounted at jwt/; extra VAR=value arguments go to
# dev.sh's environment.
throwaway_start_vault() {
	local version=$1
	shift
	log "starting a dev Vault on http://127.0.0.1:$VAULT_DEV_PORT (scripts/dev.sh; output in ${workdir#"$root"/}/dev.out)"
	vault_started=1
	env PLUGIN_BIN="$workdir/$plugin_name" VERSION="$version" VAULT_BIN="$vault_bin" "$@" \
		scripts/dev.sh start >"$workdir/dev.out" 2>&1 || {
		tail -n 30 "$workdir/dev.out" >&2
		die "scripts/dev.sh start failed"
	}
}

# throwaway_stop_vault stops the dev server if this script started it.
throwaway_stop_vault() {
	if [[ -n "$vault_started" ]]; then
		scripts/dev.sh stop >/dev/null 2>&1 || log "stopping the dev Vault failed; see scripts/dev.sh stop"
	fi
}
