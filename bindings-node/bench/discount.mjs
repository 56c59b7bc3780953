// Pricing by payer (issue 14), two figures in one run against a real facilitator on 127.0.0.1:
//  (a) the article's resolver's own latency: `await vlx.usage(payer, { since })` answered from
//      the cache vs asked of the facilitator every time (usageCacheMs: 0), interleaved rounds;
//  (b) Express paywall throughput, usage-based resolver vs fixed price: whole paid calls as a
//      client makes them (the unpaid request with the payer hint -> 402, then the retry with a
//      proof -> 200), `CONC` in flight, the two routes alternated over rounds in one server
//      process (its own process; proofs minted beforehand by the spec-based minter), ratio of
//      calls/s per round. Each paid call drops its payer's cached count, so a usage-priced call
//      asks the facilitator once (on its 402) and answers its retry from the cache.
// Run: node bench/discount.mjs [rounds=5] [callsPerRound=400] [conc=8]
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { VlexivoServer } from 'vlexivo';
import { startFacilitator, onboard } from '../test/helpers.mjs';
import { mintProofToken } from '../test/tokens.mjs';
import { median } from './stats.mjs';

const ROUNDS = Number(process.argv[2] ?? 5);
const CALLS = Number(process.argv[3] ?? 400);
const CONC = Number(process.argv[4] ?? 8);
const PAYERS = 32;

const range = (xs) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)} (median ${median(xs).toFixed(2)})`;

async function startServer(env) {
  const script = fileURLToPath(new URL('./discount-server.mjs', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env, NODE_ENV: 'production' } });
  const url = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      const m = /^PORT=(\d+)/.exec(l);
      if (m) resolve(`http://127.0.0.1:${m[1]}`);
    });
    child.on('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  return { url, stop: () => child.kill('SIGTERM') };
}

async function pool(n, conc, f) {
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) await f(next++);
  }));
}

const fac = await startFacilitator();
try {
  const provider = await onboard(fac.url);
  const payers = Array.from({ length: PAYERS }, () => privateKeyToAccount(generatePrivateKey()).address);

  // (a) resolver latency: cached vs uncached, interleaved.
  const cached = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url });
  const uncached = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url, usageCacheMs: 0 });
  const since = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1));
  const lat = { cached: [], uncached: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, vlx] of [['cached', cached], ['uncached', uncached]]) {
      await vlx.usage(payers[0], { since }); // warm (fills the cache)
      const times = [];
      for (let i = 0; i < 200; i++) {
        const t = performance.now();
        await vlx.usage(payers[i % 4], { since });
        times.push((performance.now() - t) * 1000);
      }
      lat[name].push(median(times));
    }
  }

  // (b) throughput of whole paid calls, fixed vs usage-priced, same server process.
  const srv = await startServer({ FAC: fac.url, SECRET: provider.api_secret });
  const host = new URL(srv.url).host;
  const now = Math.floor(Date.now() / 1000);
  const call = async (path, i) => {
    const payer = payers[i % PAYERS];
    const first = await fetch(`${srv.url}${path}`, { headers: { 'vlexivo-payer': payer } });
    const c = JSON.parse(Buffer.from(first.headers.get('vlexivo-challenge'), 'base64url').toString('utf8'));
    await first.arrayBuffer();
    const proof = mintProofToken(provider.api_secret, { sub: payer, amt: c.amount, res: `GET http://${host}${path}`, iat: now, iss: fac.url });
    const paid = await fetch(`${srv.url}${path}`, { headers: { 'vlexivo-proof': proof } });
    if (paid.status !== 200) throw new Error(`${path}: ${paid.status} ${await paid.text()}`);
    await paid.arrayBuffer();
  };
  const rate = { fixed: [], usage: [] };
  await pool(200, CONC, (i) => call('/fixed', i));
  await pool(200, CONC, (i) => call('/usage', i));
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['fixed', 'usage'] : ['usage', 'fixed'];
    for (const name of order) {
      const t = performance.now();
      await pool(CALLS, CONC, (i) => call(`/${name}`, i));
      rate[name].push(CALLS / ((performance.now() - t) / 1000));
    }
  }
  srv.stop();
  const ratios = rate.usage.map((u, i) => u / rate.fixed[i]);
  const lRatio = lat.uncached.map((u, i) => u / lat.cached[i]);
  console.log(`resolver's usage() p50 µs: cached ${range(lat.cached)}, uncached ${range(lat.uncached)}; uncached/cached ${range(lRatio)}`);
  console.log(`paid calls/s (402 + retry, ${CONC} in flight): fixed ${range(rate.fixed)}, usage-priced ${range(rate.usage)}; usage/fixed ${range(ratios)}`);
  console.log('BENCH ' + JSON.stringify({ bench: 'discount', rounds: ROUNDS, latency_us: lat, calls_per_s: rate, ratio: ratios }));
} finally {
  await fac.stop();
}
