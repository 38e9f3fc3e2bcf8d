#!/usr/bin/env node
// verify.mjs checks a JWT issued by vault-plugin-secrets-jwt the way a
// relying party would: with a third-party library, against the plugin's
// public JWKS, pinning issuer, audience and exactly one algorithm.
//
//   node verify.mjs --jwks-url URL --issuer ISS --audience AUD --alg ALG [--lib jose|jsonwebtoken] < token
//
// The token is read from standard input so that it never appears in a
// process listing. On success it prints {"header":...,"payload":...} as JSON
// on standard output and exits 0. A rejected token prints {"error":...} on
// standard error and exits 1; a usage error (or an algorithm the chosen
// library cannot verify) exits 2. The token itself is never printed.

import { createPublicKey } from 'node:crypto';
import { parseArgs } from 'node:util';

import { createRemoteJWKSet, jwtVerify } from 'jose';
import jsonwebtoken from 'jsonwebtoken';

const ALGORITHMS = [
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA',
];

// jsonwebtoken verifies through Node's crypto but only for the algorithms it
// knows; it has no EdDSA (RFC 8037) support.
const JSONWEBTOKEN_ALGORITHMS = ALGORITHMS.filter((a) => a !== 'EdDSA');

const FETCH_TIMEOUT_MS = 5000;

const USAGE = `usage: node verify.mjs --jwks-url URL --issuer ISS --audience AUD --alg ALG [--lib jose|jsonwebtoken] < token

Verifies the JWT on standard input against the JWK Set at URL.
  --lib jose          (default) jose createRemoteJWKSet + jwtVerify
  --lib jsonwebtoken  fetch the JWK Set, pick the key by "kid", jsonwebtoken.verify
                      (jsonwebtoken does not support EdDSA)
Algorithms: ${ALGORITHMS.join(' ')}
Exit status: 0 verified, 1 rejected, 2 usage error.`;

class UsageError extends Error {}

function parse(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        'jwks-url': { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
        alg: { type: 'string' },
        lib: { type: 'string', default: 'jose' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError(err.message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  for (const name of ['jwks-url', 'issuer', 'audience', 'alg']) {
    if (!values[name]) {
      throw new UsageError(`--${name} is required`);
    }
  }
  if (!ALGORITHMS.includes(values.alg)) {
    throw new UsageError(`unknown --alg ${JSON.stringify(values.alg)}; one of ${ALGORITHMS.join(' ')}`);
  }
  if (values.lib !== 'jose' && values.lib !== 'jsonwebtoken') {
    throw new UsageError(`unknown --lib ${JSON.stringify(values.lib)}; jose or jsonwebtoken`);
  }
  if (values.lib === 'jsonwebtoken' && !JSONWEBTOKEN_ALGORITHMS.includes(values.alg)) {
    throw new UsageError(`jsonwebtoken does not support ${values.alg}; verify ${values.alg} tokens with --lib jose`);
  }
  let url;
  try {
    url = new URL(values['jwks-url']);
  } catch {
    throw new UsageError(`--jwks-url is not a URL: ${JSON.stringify(values['jwks-url'])}`);
  }
  return { url, issuer: values.issuer, audience: values.audience, alg: values.alg, lib: values.lib };
}

async function readToken() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  const token = Buffer.concat(chunks).toString('utf8').trim();
  if (token === '') {
    throw new UsageError('no token on standard input');
  }
  return token;
}

async function verifyWithJose(token, opts) {
  const jwks = createRemoteJWKSet(opts.url, { timeoutDuration: FETCH_TIMEOUT_MS });
  const { protectedHeader, payload } = await jwtVerify(token, jwks, {
    issuer: opts.issuer,
    audience: opts.audience,
    algorithms: [opts.alg],
  });
  return { header: protectedHeader, payload };
}

async function fetchJWKS(url) {
  const res = await fetch(url, {
    headers: { accept: 'application/jwk-set+json, application/json' },
    redirect: 'error',
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  if (res.status !== 200) {
    throw new Error(`fetching JWKS: HTTP ${res.status}`);
  }
  const body = await res.json();
  if (body === null || typeof body !== 'object' || !Array.isArray(body.keys)) {
    throw new Error('fetching JWKS: response is not a JWK Set (no "keys" array)');
  }
  return body.keys;
}

async function verifyWithJsonwebtoken(token, opts) {
  // The header is read unverified only to find the key; jsonwebtoken.verify
  // below checks the signature with the algorithm pinned by the caller.
  const decoded = jsonwebtoken.decode(token, { complete: true });
  if (decoded === null || typeof decoded.header !== 'object') {
    throw new Error('token is not a JWS compact serialization');
  }
  const { kid } = decoded.header;
  if (typeof kid !== 'string' || kid === '') {
    throw new Error('token header has no "kid"');
  }
  const keys = await fetchJWKS(opts.url);
  const matches = keys.filter((k) => k && k.kid === kid);
  if (matches.length === 0) {
    throw new Error(`no key with kid ${JSON.stringify(kid)} in the JWKS`);
  }
  if (matches.length > 1) {
    throw new Error(`${matches.length} keys with kid ${JSON.stringify(kid)} in the JWKS`);
  }
  const [jwk] = matches;
  if (jwk.alg !== undefined && jwk.alg !== opts.alg) {
    throw new Error(`key ${JSON.stringify(kid)} is for ${jwk.alg}, not ${opts.alg}`);
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') {
    throw new Error(`key ${JSON.stringify(kid)} has use ${JSON.stringify(jwk.use)}, not "sig"`);
  }
  const key = createPublicKey({ key: jwk, format: 'jwk' });
  const { header, payload } = jsonwebtoken.verify(token, key, {
    algorithms: [opts.alg],
    issuer: opts.issuer,
    audience: opts.audience,
    complete: true,
  });
  return { header, payload };
}

// redact removes the token, and each of its segments, from a message, in case
// a library ever quotes its input in an error.
function redact(message, token) {
  let out = String(message);
  if (!token) {
    return out;
  }
  const parts = [token, ...token.split('.')].filter((p) => p.length >= 8);
  for (const part of parts) {
    out = out.split(part).join('[redacted]');
  }
  return out;
}

async function main() {
  let token = '';
  try {
    const opts = parse(process.argv.slice(2));
    token = await readToken();
    const result = opts.lib === 'jose'
      ? await verifyWithJose(token, opts)
      : await verifyWithJsonwebtoken(token, opts);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  } catch (err) {
    const usage = err instanceof UsageError;
    const out = { error: redact(err?.message ?? err, token) };
    if (err?.code) {
      out.code = err.code;
    } else if (err?.name && err.name !== 'Error') {
      out.code = err.name;
    }
    process.stderr.write(`${JSON.stringify(out)}\n`);
    if (usage) {
      process.stderr.write(`${USAGE}\n`);
    }
    return usage ? 2 : 1;
  }
}

process.exitCode = await main();
