// Proof tokens for the tests and benchmarks, minted from the spec (docs/protocol.md §4 keys,
// §7 token) with node:crypto rather than by the native module: the published addon has no way
// to mint tokens, and this independent HS256 issuer checks core's key derivation and token
// format every time the paywall accepts one of its tokens.
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';

/** The keys core derives from an apiSecret (HKDF-SHA256, salt "vlexivo/v1"). */
export function providerKeys(apiSecret) {
  const m = /^sk_(test|live)_([A-Za-z0-9_-]{43})$/.exec(apiSecret);
  if (!m) throw new Error('not a Vlexivo apiSecret');
  const ikm = Buffer.from(m[2], 'base64url');
  const derive = (info) => Buffer.from(hkdfSync('sha256', ikm, 'vlexivo/v1', info, 32));
  return {
    mode: m[1] === 'test' ? 'sandbox' : 'live',
    account: `acct_${derive('account-id').subarray(0, 10).toString('hex')}`,
    tokenKey: derive('proof-token-hs256'),
  };
}

/** A fresh challenge nonce (18 random bytes, base64url). */
export function randomNonce() {
  return randomBytes(18).toString('base64url');
}

const HEADER = Buffer.from('{"typ":"vlexivo-proof+jwt","alg":"HS256"}').toString('base64url');

/**
 * An HS256 proof token under the provider's key, claims in the issuer's order. Required:
 * `sub`, `amt`, `res`, `iat`; the rest defaults as the facilitator would set it.
 */
export function mintProofToken(apiSecret, c) {
  const k = providerKeys(apiSecret);
  const claims = {
    jti: c.jti ?? randomNonce(),
    iss: c.iss ?? 'http://127.0.0.1:4020',
    aud: c.aud ?? k.account,
    sub: c.sub,
    txh: c.txh ?? `0x${'ab'.repeat(32)}`,
    amt: c.amt,
    cur: c.cur ?? 'usd',
    res: c.res,
    ...(c.bdy === undefined ? {} : { bdy: c.bdy }),
    mode: c.mode ?? k.mode,
    net: c.net ?? 'sandbox',
    iat: c.iat,
    exp: c.exp ?? c.iat + 300,
  };
  const input = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${input}.${createHmac('sha256', k.tokenKey).update(input).digest('base64url')}`;
}
