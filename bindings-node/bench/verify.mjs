// (a) Verify + consume through napi vs jose and fast-jwt HS256 verify, same process, same
// claim sizes. Vlexivo's figures include the nonce insert (replay protection); the others are
// signature + claims only. The machine is shared, so the four paths run interleaved in chunks
// and each path's total time is summed over its chunks.
// Run: node bench/verify.mjs [count=100000] [chunks=20]
import { jwtVerify } from 'jose';
import { createVerifier } from 'fast-jwt';
import { randomBytes } from 'node:crypto';
import { native, SECRET, RESOURCE_PATH, ORIGIN, mintVlexivo, mintJose } from './tokens.mjs';

const N = Number(process.argv[2] ?? 100000);
const CHUNKS = Number(process.argv[3] ?? 20);
const C = Math.floor(N / CHUNKS);
const key = randomBytes(32);

console.log(`minting ${N} distinct tokens per path…`);
const vTokens = mintVlexivo(N);
const rTokens = mintVlexivo(N);
const jTokens = await mintJose(N, key);
console.log(`token sizes: vlexivo ${vTokens[0].length} B, jose-signed ${jTokens[0].length} B`);

const pw = new native.Paywall({ apiSecret: SECRET, origin: ORIGIN, nonceStoreOptions: { capacity: '2000000' } });
const pw2 = new native.Paywall({ apiSecret: SECRET, origin: ORIGIN, nonceStoreOptions: { capacity: '2000000' } });
const route = pw2.route('0.001', 'usd', 'per-call');
const fast = createVerifier({ key, algorithms: ['HS256'], cache: false });

const paths = {
  // The public API: verify + consume, facts returned as an object.
  verify: (lo, hi) => {
    for (let i = lo; i < hi; i++) pw.verify(vTokens[i], 'POST', RESOURCE_PATH, undefined, false, '0.001', 'usd');
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
  verify: 'vlexivo Paywall.verify (verify + consume)',
  route: 'vlexivo PricedRoute.authorize (adapter path)',
  fastJwt: 'fast-jwt createVerifier HS256 (no cache)',
  jose: 'jose jwtVerify HS256',
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
console.log(`adapter path / fast-jwt:   ${(ops.route / ops.fastJwt).toFixed(2)}x   verify (object) / fast-jwt: ${(ops.verify / ops.fastJwt).toFixed(2)}x   (target >= 2x)`);
console.log(`adapter path / jose:       ${(ops.route / ops.jose).toFixed(2)}x   verify (object) / jose:     ${(ops.verify / ops.jose).toFixed(2)}x   (target >= 10x)`);
console.log(JSON.stringify({ bench: 'verify', timed, opsPerSec: Object.fromEntries(Object.entries(ops).map(([k, v]) => [k, Math.round(v)])) }));
