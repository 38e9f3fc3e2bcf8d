#!/usr/bin/env bash
# pydeps.sh makes sure the PyJWT verifier (verify_pyjwt.py) can run: a
# python3 that imports jwt and cryptography, from Debian's packages
# (python3-jwt, python3-cryptography) when they are missing. The
# interpreter is $VERIFY_PYTHON, or /usr/bin/python3, where apt puts them.
set -euo pipefail
py="${VERIFY_PYTHON:-/usr/bin/python3}"
check() { "$py" -c 'import jwt, cryptography' >/dev/null 2>&1; }
check && exit 0
if [[ -n "${VERIFY_PYTHON:-}" ]]; then
	echo "error: VERIFY_PYTHON=$py cannot import jwt and cryptography" >&2
	exit 1
fi
echo "==> installing PyJWT from Debian: python3 python3-jwt python3-cryptography"
sudo=()
if [[ "$(id -u)" != 0 ]]; then
	sudo=(sudo)
fi
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends python3 python3-jwt python3-cryptography
check || { echo "error: $py still cannot import jwt and cryptography" >&2; exit 1; }
