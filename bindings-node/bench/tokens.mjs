// Pre-minted, distinct, valid proof tokens for the benchmarks: the same claims the facilitator
// issues, signed with the provider's HS256 key by the tests' spec-based minter (bounded count).
import { createRequire } from 'node:module';
import { SignJWT } from 'jose';
import { randomBytes } from 'node:crypto';
import { mintProofToken, randomNonce } from '../test/tokens.mjs';

const require = createRequire(import.meta.url);
export const native = require('../native/index.js');

export const SECRET = 'sk_test_' + Buffer.alloc(32, 9).toString('base64url');
export const RESOURCE_PATH = '/api/v1/inference';
/** The paywalls' configured origin (as in production): proofs are bound to it. */
export const ORIGIN = 'http://bench.test';
const PAYER = '0x063a6Db64b4784deD0f350938bdb63Be12d3Db5a';

function claims(now, ttl = 300) {
  return {
    jti: randomNonce(),
    iss: 'http://127.0.0.1:4020',
    sub: PAYER,
    txh: '0x' + randomBytes(32).toString('hex'),
    amt: '0.001',
    cur: 'usd',
    res: `POST ${ORIGIN}${RESOURCE_PATH}`,
    mode: 'sandbox',
    net: 'sandbox',
    iat: now,
    exp: now + ttl,
  };
}

/** `n` distinct proofs, valid for `ttl` seconds from `now` (the store holds each nonce that long). */
export function mintVlexivo(n, now = Math.floor(Date.now() / 1000), ttl = 300) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = mintProofToken(SECRET, claims(now, ttl));
  return out;
}

/** Same claims and header shape, signed by jose under a random 32-byte HS256 key. */
export async function mintJose(n, key, now = Math.floor(Date.now() / 1000), ttl = 300) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const c = claims(now, ttl);
    out[i] = await new SignJWT({ ...c, aud: 'acct_bench' })
      .setProtectedHeader({ alg: 'HS256', typ: 'vlexivo-proof+jwt' })
      .sign(key);
  }
  return out;
}
