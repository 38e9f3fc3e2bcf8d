#!/usr/bin/python3
"""verify_pyjwt.py checks a JWT issued by vault-plugin-secrets-jwt with PyJWT
(Debian's python3-jwt, with python3-cryptography), as a Python relying party
would: the key picked by "kid" from the plugin's public JWKS, issuer, audience
and exactly one algorithm pinned.

    python3 verify_pyjwt.py --jwks-url URL --issuer ISS --audience AUD --alg ALG < token

The contract is verify.mjs's: the token is read from standard input so that
it never appears in a process listing. On success it prints
{"header":...,"payload":...} as JSON on standard output and exits 0. A
rejected token prints {"error":...} on standard error and exits 1; a usage
error exits 2. The token itself is never printed.
"""

import argparse
import json
import socket
import sys

import jwt
from jwt import PyJWKClient

ALGORITHMS = [
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
]

FETCH_TIMEOUT_S = 5


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main():
    parser = Parser(description="Verify the JWT on standard input against a JWK Set with PyJWT.")
    parser.add_argument("--jwks-url", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--alg", required=True)
    try:
        args = parser.parse_args()
        if args.alg not in ALGORITHMS:
            raise UsageError("--alg must be one of " + " ".join(ALGORITHMS))
    except UsageError as e:
        print(json.dumps({"error": str(e)}), file=sys.stderr)
        return 2

    token = sys.stdin.read().strip()
    try:
        if not token:
            raise jwt.InvalidTokenError("no token on standard input")
        # PyJWT 2.6's PyJWKClient has no timeout of its own.
        socket.setdefaulttimeout(FETCH_TIMEOUT_S)
        key = PyJWKClient(args.jwks_url).get_signing_key_from_jwt(token)
        payload = jwt.decode(
            token,
            key.key,
            algorithms=[args.alg],
            audience=args.audience,
            issuer=args.issuer,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
        # The signature is verified: the header is the one it covers.
        header = jwt.get_unverified_header(token)
    except Exception as e:  # every failure is a rejection, never a crash
        # PyJWT's messages do not quote the token; keep the type for context.
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}), file=sys.stderr)
        return 1
    print(json.dumps({"header": header, "payload": payload}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
