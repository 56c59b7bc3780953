// (a) Verify + consume through napi vs jose and fast-jwt HS256 verify, same process, same
// claim sizes, every token distinct (so every Vlexivo call consumes a fresh nonce). What each
// path does:
//   - Vlexivo (every path): signature, typ, alg, exp/iat with leeway, aud, mode, resource
//     (origin + method + path), currency, amount >= price, then the nonce insert.
//   - fast-jwt: signature, alg, exp/nbf only (no cache); fastJwtMap adds what Vlexivo checks
//     (typ, aud, resource, currency, amount) and a Map insert of the nonce: like for like.
//   - jose: signature, alg, exp/nbf; async, so its figure includes one await per call.
// The machine is shared, so the paths run interleaved in chunks and each path's total time is
// summed over its chunks.
// Run: node bench/verify.mjs [count=100000] [chunks=20]
import { jwtVerify } from 'jose';
import { createVerifier } from 'fast-jwt';
import { randomBytes } from 'node:crypto';
import { VlexivoServer } from 'vlexivo';
import { native, SECRET, RESOURCE_PATH, ORIGIN, mintVlexivo, mintJose } from './tokens.mjs';

const N = Number(process.argv[2] ?? 100000);
const CHUNKS = Number(process.argv[3] ?? 20);
const C = Math.floor(N / CHUNKS);
const key = randomBytes(32);

console.log(`minting ${N} distinct tokens per path…`);
const vTokens = mintVlexivo(N);
const sTokens = mintVlexivo(N);
const rTokens = mintVlexivo(N);
const jTokens = await mintJose(N, key);
const mTokens = await mintJose(N, key);
console.log(`token sizes: vlexivo ${vTokens[0].length} B, jose-signed ${jTokens[0].length} B`);

const pw = new native.Paywall({ apiSecret: SECRET, origin: ORIGIN, nonceStoreOptions: { capacity: '2000000' } });
const pw2 = new native.Paywall({ apiSecret: SECRET, origin: ORIGIN, nonceStoreOptions: { capacity: '2000000' } });
const route = pw2.route('0.001', 'usd', 'per-call');
const server = new VlexivoServer({ apiSecret: SECRET, origin: ORIGIN, store: { type: 'memory', capacity: 2_000_000 } });
const target = { method: 'POST', path: RESOURCE_PATH, price: '0.001' };
const fast = createVerifier({ key, algorithms: ['HS256'], cache: false });
const fastTyp = createVerifier({ key, algorithms: ['HS256'], cache: false, checkTyp: 'vlexivo-proof+jwt', clockTolerance: 30_000 });
const seen = new Map();
const resource = `POST ${ORIGIN}${RESOURCE_PATH}`;

const paths = {
  // The native Paywall.verify: verify + consume, the paid facts in their compact form.
  verify: (lo, hi) => {
    for (let i = lo; i < hi; i++) pw.verify(vTokens[i], 'POST', RESOURCE_PATH, undefined, false, '0.001', 'usd');
  },
  // The public TypeScript API: VlexivoServer.verify, returning the payment object.
  server: (lo, hi) => {
    for (let i = lo; i < hi; i++) if (server.verify(sTokens[i], target).amount !== '0.001') throw new Error('amount');
  },
  // What the Express/Fastify/Hapi adapters call (price parsed once, facts as one string).
  route: (lo, hi) => {
    for (let i = lo; i < hi; i++) {
      const r = route.authorize(rTokens[i], 'POST', RESOURCE_PATH, undefined, false);
      if (typeof r !== 'string') throw new Error(r.body);
    }
  },
  fastJwt: (lo, hi) => {
    for (let i = lo; i < hi; i++) fast(jTokens[i]);
  },
  // fast-jwt doing what Vlexivo does: the same claim checks and a nonce insert.
  fastJwtMap: (lo, hi) => {
    for (let i = lo; i < hi; i++) {
      const p = fastTyp(mTokens[i]);
      if (p.aud !== 'acct_bench' || p.mode !== 'sandbox' || p.res !== resource || p.cur !== 'usd' || !(Number(p.amt) >= 0.001)) {
        throw new Error('claims');
      }
      if (seen.has(p.jti)) throw new Error('replay');
      seen.set(p.jti, p.exp);
    }
  },
  jose: async (lo, hi) => {
    for (let i = lo; i < hi; i++) await jwtVerify(jTokens[i], key, { algorithms: ['HS256'] });
  },
};

// Warm-up on the first chunk of each path (not timed).
for (const fn of Object.values(paths)) await fn(0, C);
const ns = Object.fromEntries(Object.keys(paths).map((k) => [k, 0]));
for (let c = 1; c < CHUNKS; c++) {
  for (const [k, fn] of Object.entries(paths)) {
    const t0 = process.hrtime.bigint();
    await fn(c * C, (c + 1) * C);
    ns[k] += Number(process.hrtime.bigint() - t0);
  }
}
const timed = (CHUNKS - 1) * C;
const ops = Object.fromEntries(Object.entries(ns).map(([k, v]) => [k, timed / (v / 1e9)]));
const label = {
  verify: 'vlexivo native Paywall.verify (verify + consume)',
  server: 'vlexivo VlexivoServer.verify (payment object)',
  route: 'vlexivo PricedRoute.authorize (adapter path)',
  fastJwt: 'fast-jwt HS256 (signature + exp, no cache)',
  fastJwtMap: 'fast-jwt + claim checks + Map insert',
  jose: 'jose jwtVerify HS256 (await per call)',
};
for (const k of Object.keys(paths)) {
  console.log(`${label[k].padEnd(46)} ${Math.round(ops[k]).toLocaleString('en-US').padStart(9)} ops/s  ${(ns[k] / timed / 1000).toFixed(2)} µs/op`);
}
// Replays are refused (the consume is real).
let replays = 0;
for (let i = C; i < C + 1000; i++) {
  const r = route.authorize(rTokens[i], 'POST', RESOURCE_PATH, undefined, false);
  if (typeof r !== 'string' && !Array.isArray(r) && r.code === 'token_replayed') replays++;
}
if (replays !== 1000) throw new Error('a replay was accepted');
console.log('');
const x = (a, b) => (ops[a] / ops[b]).toFixed(2) + 'x';
console.log(`vs fast-jwt:            native verify ${x('verify', 'fastJwt')}, VlexivoServer.verify ${x('server', 'fastJwt')}, adapter path ${x('route', 'fastJwt')}   (target >= 2x)`);
console.log(`vs fast-jwt + Map:      native verify ${x('verify', 'fastJwtMap')}, VlexivoServer.verify ${x('server', 'fastJwtMap')}, adapter path ${x('route', 'fastJwtMap')}`);
console.log(`vs jose:                native verify ${x('verify', 'jose')}, VlexivoServer.verify ${x('server', 'jose')}, adapter path ${x('route', 'jose')}   (target >= 10x)`);
const usPerOp = Object.fromEntries(Object.entries(ns).map(([k, v]) => [k, Number((v / timed / 1000).toFixed(4))]));
console.log('BENCH ' + JSON.stringify({ bench: 'verify', timed, usPerOp }));
