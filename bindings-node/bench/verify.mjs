// (a) Verify + consume through napi vs jose and fast-jwt HS256 verify, same process, same
// claim sizes. Vlexivo's figure includes the nonce insert (replay protection); the others are
// signature + claims only. Run: node bench/verify.mjs [count]
import { jwtVerify } from 'jose';
import { createVerifier } from 'fast-jwt';
import { randomBytes } from 'node:crypto';
import { native, SECRET, RESOURCE_PATH, mintVlexivo, mintJose } from './tokens.mjs';

const N = Number(process.argv[2] ?? 100000);
const key = randomBytes(32);

function rate(label, n, ns) {
  const perSec = n / (Number(ns) / 1e9);
  console.log(`${label.padEnd(44)} ${Math.round(perSec).toLocaleString('en-US').padStart(10)} ops/s  ${(Number(ns) / n / 1000).toFixed(2)} µs/op`);
  return perSec;
}

console.log(`minting ${N} distinct tokens of each kind…`);
const vTokens = mintVlexivo(N);
const vTokens2 = mintVlexivo(N);
const jTokens = await mintJose(N, key);
console.log(`token sizes: vlexivo ${vTokens[0].length} B, jose-signed ${jTokens[0].length} B`);

const results = {};
// Warm up each path on tokens not used in the timed run.
{
  const warm = new native.Paywall({ apiSecret: SECRET, storeCapacity: 2_000_000 });
  for (const t of mintVlexivo(5000)) warm.verify(t, 'POST', RESOURCE_PATH, '0.001', 'usd');
}

{
  const pw = new native.Paywall({ apiSecret: SECRET, storeCapacity: 2_000_000 });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) pw.verify(vTokens[i], 'POST', RESOURCE_PATH, '0.001', 'usd');
  results.vlexivo = rate('vlexivo Paywall.verify (verify + consume)', N, process.hrtime.bigint() - t0);
  let replays = 0;
  for (let i = 0; i < 1000; i++) {
    try {
      pw.verify(vTokens[i], 'POST', RESOURCE_PATH, '0.001', 'usd');
    } catch (e) {
      if (e.code === 'token_replayed') replays++;
    }
  }
  if (replays !== 1000) throw new Error('replays were accepted');
}
{
  // What the Express/Fastify/Hapi adapters call for a static price.
  const pw = new native.Paywall({ apiSecret: SECRET, storeCapacity: 2_000_000 });
  const route = pw.route('0.001', 'usd', 'per-call');
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const r = route.authorize(vTokens2[i], 'POST', RESOURCE_PATH);
    if (!Array.isArray(r)) throw new Error(r.body);
  }
  results.route = rate('vlexivo PricedRoute.authorize (adapter path)', N, process.hrtime.bigint() - t0);
}
{
  const verify = createVerifier({ key, algorithms: ['HS256'], cache: false });
  for (let i = 0; i < 5000; i++) verify(jTokens[i]);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) verify(jTokens[i]);
  results.fastJwt = rate('fast-jwt createVerifier HS256 (no cache)', N, process.hrtime.bigint() - t0);
}
{
  for (let i = 0; i < 5000; i++) await jwtVerify(jTokens[i], key, { algorithms: ['HS256'] });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await jwtVerify(jTokens[i], key, { algorithms: ['HS256'] });
  results.jose = rate('jose jwtVerify HS256', N, process.hrtime.bigint() - t0);
}

console.log('');
console.log(`verify+consume / fast-jwt:  ${(results.vlexivo / results.fastJwt).toFixed(2)}x   adapter path / fast-jwt: ${(results.route / results.fastJwt).toFixed(2)}x (target >= 2x)`);
console.log(`verify+consume / jose:      ${(results.vlexivo / results.jose).toFixed(2)}x   adapter path / jose:     ${(results.route / results.jose).toFixed(2)}x (target >= 10x)`);
console.log(JSON.stringify({ bench: 'verify', n: N, opsPerSec: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Math.round(v)])) }));
