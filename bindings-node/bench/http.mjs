// (b) autocannon on 127.0.0.1, one run: bare Express vs Express + paywall (valid, distinct,
// pre-minted proofs; memory store) vs Express + jose verify + Set; bare Fastify vs Fastify +
// plugin. Each target runs in its own process; every paid request carries a fresh proof and
// must answer 200 (a 402/409 would be counted as a non-2xx and fail the run).
// Run: node bench/http.mjs [requestsPerScenario=60000] [connections=16]
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { mintVlexivo, mintJose, RESOURCE_PATH } from './tokens.mjs';

const AMOUNT = Number(process.argv[2] ?? 60000);
const CONNECTIONS = Number(process.argv[3] ?? 16);
const WARMUP = Math.min(10000, Math.floor(AMOUNT / 5));
const joseKey = randomBytes(32);
const serverScript = fileURLToPath(new URL('./http-server.mjs', import.meta.url));

function startTarget(scenario) {
  const child = spawn(process.execPath, [serverScript, scenario], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, JOSE_KEY: joseKey.toString('hex'), NODE_ENV: 'production' },
  });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (l) => {
      const m = /^PORT=(\d+)/.exec(l);
      if (m) resolve({ child, url: `http://127.0.0.1:${m[1]}` });
    });
    child.on('exit', (c) => reject(new Error(`${scenario} exited ${c}`)));
  });
}

function run(url, amount, tokens) {
  let i = 0;
  const body = JSON.stringify({ model: 'small-v1', prompt: 'hello' });
  const request = tokens
    ? {
        method: 'POST',
        path: RESOURCE_PATH,
        body,
        setupRequest: (req) => {
          req.headers = { 'content-type': 'application/json', 'vlexivo-proof': tokens[i++] };
          return req;
        },
      }
    : { method: 'POST', path: RESOURCE_PATH, body, headers: { 'content-type': 'application/json' } };
  return new Promise((resolve, reject) => {
    autocannon({ url, connections: CONNECTIONS, pipelining: 1, amount, requests: [request] }, (err, res) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}

async function scenario(name, mint) {
  const target = await startTarget(name);
  try {
    const tokens = mint ? await mint(WARMUP + AMOUNT) : undefined;
    await run(target.url, WARMUP, tokens?.slice(0, WARMUP));
    const res = await run(target.url, AMOUNT, tokens?.slice(WARMUP));
    const non2xx = res.non2xx + res.errors + res.timeouts;
    const rps = res.requests.total / (res.duration || 1);
    console.log(
      `${name.padEnd(18)} ${Math.round(rps).toLocaleString('en-US').padStart(8)} req/s  p50 ${res.latency.p50} ms  p99 ${res.latency.p99} ms  non-2xx/errors ${non2xx}`,
    );
    if (non2xx > 0) throw new Error(`${name}: ${non2xx} requests were not 2xx`);
    return rps;
  } finally {
    target.child.kill('SIGTERM');
  }
}

console.log(`autocannon: ${AMOUNT} requests per scenario after ${WARMUP} warm-up, ${CONNECTIONS} connections, 127.0.0.1`);
const r = {};
r.expressBare = await scenario('express-bare');
r.expressPaywall = await scenario('express-paywall', (n) => mintVlexivo(n));
r.expressJose = await scenario('express-jose-set', (n) => mintJose(n, joseKey));
r.fastifyBare = await scenario('fastify-bare');
r.fastifyPaywall = await scenario('fastify-paywall', (n) => mintVlexivo(n));
console.log('');
console.log(`Express + paywall / bare Express:     ${(r.expressPaywall / r.expressBare).toFixed(2)} (target >= 0.85)`);
console.log(`Express + jose + Set / bare Express:  ${(r.expressJose / r.expressBare).toFixed(2)} (reference ~0.5)`);
console.log(`Fastify + plugin / bare Fastify:      ${(r.fastifyPaywall / r.fastifyBare).toFixed(2)} (target >= 0.80)`);
console.log(JSON.stringify({ bench: 'http', amount: AMOUNT, connections: CONNECTIONS, rps: Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)])) }));
