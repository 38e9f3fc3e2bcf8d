#!/usr/bin/env node
// stream.mjs is a long-running relying party: it verifies a stream of JWTs
// with ONE jose remote JWK Set for its whole life, created with jose's
// default options (30 s cooldown, 10 min cacheMaxAge), the way a service
// that verifies tokens all day does. The end-to-end tests use it to watch a
// key rotation from a verifier's side.
//
//   node stream.mjs --jwks-url URL --issuer ISS --audience AUD
//
// Standard input: one token per line, as "<id> <token>". Tokens are verified
// one after the other, in order. Standard output: one JSON object per line:
//
//   {"type":"ready","t":ms}
//   {"type":"fetch","t":ms,"status":200,"cache_control":"...","kids":[...]}
//       each time jose fetches the JWK Set (seen by wrapping the global
//       fetch, which jose calls; jose's own options stay the defaults)
//   {"type":"result","id":"...","t":ms,"ok":true,"kid":"...","sub":"...",
//    "aud":...,"cooling_down":bool}
//   {"type":"result","id":"...","t":ms,"ok":false,"kid":"...",
//    "error":"...","code":"...","cooling_down":bool}
//
// cooling_down is jose's JWKS.coolingDown just before the token was
// verified: true means jose would not have refetched the set for an unknown
// kid. t is Date.now(). Tokens are never printed, not even in errors.

import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function usage(msg) {
  process.stderr.write(`${msg}\nusage: node stream.mjs --jwks-url URL --issuer ISS --audience AUD < "id token" lines\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      'jwks-url': { type: 'string' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
    },
  }));
} catch (err) {
  usage(err.message);
}
for (const name of ['jwks-url', 'issuer', 'audience']) {
  if (!values[name]) {
    usage(`--${name} is required`);
  }
}
let url;
try {
  url = new URL(values['jwks-url']);
} catch {
  usage(`--jwks-url is not a URL: ${JSON.stringify(values['jwks-url'])}`);
}

// Observe jose's fetches of the JWK Set. jose calls the global fetch at
// request time; the wrapper only reports, it changes nothing.
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const res = await realFetch(input, init);
  let kids = null;
  try {
    const body = await res.clone().json();
    kids = Array.isArray(body?.keys) ? body.keys.map((k) => k?.kid) : null;
  } catch {
    // Not JSON; jose reports that itself.
  }
  emit({
    type: 'fetch',
    t: Date.now(),
    status: res.status,
    cache_control: res.headers.get('cache-control'),
    kids,
  });
  return res;
};

// One set for the life of the process, default options.
const JWKS = createRemoteJWKSet(url);

function redact(message, token) {
  let out = String(message);
  const parts = [token, ...token.split('.')].filter((p) => p.length >= 8);
  for (const part of parts) {
    out = out.split(part).join('[redacted]');
  }
  return out;
}

async function verifyOne(id, token) {
  let kid = null;
  try {
    kid = decodeProtectedHeader(token).kid ?? null;
  } catch {
    // jwtVerify below reports it.
  }
  const coolingDown = JWKS.coolingDown;
  try {
    const { payload } = await jwtVerify(token, JWKS, {
      issuer: values.issuer,
      audience: values.audience,
    });
    emit({
      type: 'result', id, t: Date.now(), ok: true, kid, sub: payload.sub ?? null, aud: payload.aud ?? null, cooling_down: coolingDown,
    });
  } catch (err) {
    emit({
      type: 'result',
      id,
      t: Date.now(),
      ok: false,
      kid,
      error: redact(err?.message ?? err, token),
      code: err?.code ?? err?.name ?? null,
      cooling_down: coolingDown,
    });
  }
}

emit({ type: 'ready', t: Date.now() });

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  const trimmed = line.trim();
  if (trimmed === '') {
    continue;
  }
  const sp = trimmed.indexOf(' ');
  if (sp <= 0) {
    emit({ type: 'result', id: null, t: Date.now(), ok: false, error: 'input line is not "<id> <token>"', code: 'USAGE' });
    continue;
  }
  await verifyOne(trimmed.slice(0, sp), trimmed.slice(sp + 1).trim());
}
