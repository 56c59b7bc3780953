// (b) autocannon on 127.0.0.1, one run: bare Express vs Express + paywall (valid, distinct,
// pre-minted proofs; memory store) vs Express + jose verify + Set; bare Fastify vs Fastify +
// plugin; bare Hono vs Hono + paywall (@hono/node-server); a bare Next.js route handler vs the
// same behind vlexivo/next (test/next-app's production build, Next's own server). Each target runs in its own process. Every request of every scenario carries a fresh
// proof header (bare targets ignore it), so the client does the same work for all; every paid
// request must answer 200. Scenarios are interleaved over several rounds (the machine is shared)
// and reported per pair:
//   - CPU µs per request the paywall adds (server process CPU, paywalled − bare): robust to other
//     load on the machine, and comparable across frameworks (a ratio flatters a slow baseline);
//     of the median rounds, and of each side's lowest round (the least disturbed)
//   - throughput: median over rounds of req/s(paywalled) / req/s(bare)
//   - CPU: server CPU µs per request, bare / paywalled
// A round lasts about `secondsPerRound` for every scenario (its request count is sized from its
// warm-up rate), so fast targets get rounds long enough to be stable; the spread of each
// scenario's req/s over the rounds is printed.
// Run: node bench/http.mjs [secondsPerRound=2] [rounds=10] [connections=16]
// (ONLY=hono,next runs the scenarios whose names start with one of these.)
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { mintVlexivo, mintJose, RESOURCE_PATH } from './tokens.mjs';
import { installAndBuild } from '../test/next-build.mjs';

const SECONDS = Number(process.argv[2] ?? 2);
const ROUNDS = Number(process.argv[3] ?? 10);
const CONNECTIONS = Number(process.argv[4] ?? 16);
const WARMUP = Math.max(1000, Math.round(2500 * SECONDS));
const joseKey = randomBytes(32);
const serverScript = fileURLToPath(new URL('./http-server.mjs', import.meta.url));

function startTarget(scenario) {
  const child = spawn(process.execPath, [serverScript, scenario], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, JOSE_KEY: joseKey.toString('hex'), NODE_ENV: 'production' },
  });
  const rl = createInterface({ input: child.stdout });
  const waiters = [];
  let url;
  return new Promise((resolve, reject) => {
    rl.on('line', (l) => {
      const port = /^PORT=(\d+)/.exec(l);
      if (port) {
        url = `http://127.0.0.1:${port[1]}`;
        resolve({
          child,
          url,
          cpu: () =>
            new Promise((r) => {
              waiters.push(r);
              child.stdin.write('cpu\n');
            }),
        });
      }
      const cpu = /^CPU=(\d+) COUNT=(\d+) SPAN=([\d.e-]+)/.exec(l);
      if (cpu) waiters.shift()?.({ cpu: Number(cpu[1]), count: Number(cpu[2]), span: Number(cpu[3]) });
    });
    child.on('exit', (c) => reject(new Error(`${scenario} exited ${c}`)));
  });
}

function burst(url, tokens) {
  let i = 0;
  const body = JSON.stringify({ model: 'small-v1', prompt: 'hello' });
  const request = {
    method: 'POST',
    path: RESOURCE_PATH,
    body,
    setupRequest: (req) => {
      req.headers = { 'content-type': 'application/json', 'vlexivo-proof': tokens[i++] };
      return req;
    },
  };
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    autocannon({ url, connections: CONNECTIONS, pipelining: 1, amount: tokens.length, requests: [request] }, (err, res) => {
      if (err) reject(err);
      // autocannon's own duration is coarse for fixed-count runs: time the burst here.
      else resolve({ ...res, wallSeconds: (performance.now() - t0) / 1000 });
    });
  });
}

// ONLY=fastify (or express) runs one framework's scenarios.
const scenarios = [
  ['express-bare', (n) => mintVlexivo(n)],
  ['express-paywall', (n) => mintVlexivo(n)],
  ['express-jose-set', (n) => mintJose(n, joseKey)],
  ['fastify-bare', (n) => mintVlexivo(n)],
  ['fastify-paywall', (n) => mintVlexivo(n)],
  // READ=1: also a Fastify handler that reads request.vlxPayment (built on first read).
  ...(process.env.READ ? [['fastify-paywall-read', (n) => mintVlexivo(n)]] : []),
  ['hono-bare', (n) => mintVlexivo(n)],
  ['hono-paywall', (n) => mintVlexivo(n)],
  ['next-bare', (n) => mintVlexivo(n)],
  ['next-paywall', (n) => mintVlexivo(n)],
].filter(([name]) => !process.env.ONLY || process.env.ONLY.split(',').some((o) => name.startsWith(o)));

// The Next.js targets serve test/next-app's production build (installed and built once here).
if (scenarios.some(([name]) => name.startsWith('next'))) installAndBuild();

console.log(`autocannon: ${ROUNDS} rounds of ~${SECONDS} s per scenario (+${WARMUP} warm-up requests), ${CONNECTIONS} connections, 127.0.0.1`);
const state = {};
for (const [name, mint] of scenarios) {
  const target = await startTarget(name);
  state[name] = { target, mint, perRound: 0, rps: [], cpuPerReq: [] };
}
try {
  for (const s of Object.values(state)) {
    const res = await burst(s.target.url, await s.mint(WARMUP));
    s.perRound = Math.max(1000, Math.round((WARMUP / res.wallSeconds) * SECONDS));
  }
  for (let round = 0; round < ROUNDS; round++) {
    // ABBA order: alternate the order every round so drift in the machine's load (it is shared)
    // falls evenly on every scenario.
    const order = round % 2 === 0 ? scenarios : [...scenarios].reverse();
    for (const [name] of order) {
      const s = state[name];
      // Minted per round (outside the timing): memory stays bounded however long the rounds.
      const tokens = await s.mint(s.perRound);
      const before = await s.target.cpu();
      const res = await burst(s.target.url, tokens);
      const after = await s.target.cpu();
      const bad = res.non2xx + res.errors + res.timeouts;
      if (bad > 0) throw new Error(`${name}: ${bad} requests were not 2xx`);
      // Server-side span from the first to the last request of the burst.
      s.rps.push(after.count / after.span);
      s.cpuPerReq.push((after.cpu - before.cpu) / res.requests.total);
    }
  }
} finally {
  for (const s of Object.values(state)) s.target.child.kill('SIGTERM');
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const spreadPct = (a) => (100 * (Math.max(...a) - Math.min(...a))) / median(a);
for (const [name] of scenarios) {
  const s = state[name];
  console.log(
    `${name.padEnd(20)} median ${Math.round(median(s.rps)).toLocaleString('en-US').padStart(7)} req/s (spread ${spreadPct(s.rps).toFixed(0)}%, ${s.perRound} requests per round)   server CPU ${median(s.cpuPerReq).toFixed(1).padStart(6)} µs/req   rounds: ${s.rps.map((r) => Math.round(r)).join(', ')} req/s; ${s.cpuPerReq.map((c) => c.toFixed(0)).join(', ')} µs`,
  );
}
function pair(paid, bare) {
  if (!state[paid] || !state[bare]) return undefined;
  const p = state[paid];
  const b = state[bare];
  return {
    tput: median(p.rps.map((r, i) => r / b.rps[i])),
    cpu: median(b.cpuPerReq) / median(p.cpuPerReq),
    cpuAddedUs: median(p.cpuPerReq) - median(b.cpuPerReq),
    // Lowest round against lowest round: a round the shared machine slowed (fewer requests per
    // wake-up, so more CPU per request) weighs on neither side.
    cpuAddedLowUs: Math.min(...p.cpuPerReq) - Math.min(...b.cpuPerReq),
    bareCpuUs: median(b.cpuPerReq),
    bareSpreadPct: spreadPct(b.rps),
    paidSpreadPct: spreadPct(p.rps),
  };
}
const pairs = Object.fromEntries(
  [
    ['express', pair('express-paywall', 'express-bare')],
    ['joseSet', pair('express-jose-set', 'express-bare')],
    ['fastify', pair('fastify-paywall', 'fastify-bare')],
    ['fastifyRead', pair('fastify-paywall-read', 'fastify-bare')],
    ['hono', pair('hono-paywall', 'hono-bare')],
    ['next', pair('next-paywall', 'next-bare')],
  ].filter(([, r]) => r),
);
const row = (label, r, note) =>
  r &&
  console.log(
    `${label}+${r.cpuAddedUs.toFixed(1).padStart(5)} µs on ${r.bareCpuUs.toFixed(1).padStart(5)} (lowest rounds +${r.cpuAddedLowUs.toFixed(1)})   ${r.tput.toFixed(2)}        ${r.cpu.toFixed(2)}   (${note})`,
  );
console.log('');
console.log('                                      CPU/request added (median rounds)               throughput   CPU/request');
row('Express + paywall / bare Express:       ', pairs.express, 'target >= 0.85');
row('Express + jose + Set / bare Express:    ', pairs.joseSet, 'hand-written guard');
row('Fastify + plugin / bare Fastify:        ', pairs.fastify, 'target >= 0.90');
row('  handler reading vlxPayment / bare:     ', pairs.fastifyRead, 'payment object built');
row('Hono + paywall / bare Hono (node-server):', pairs.hono, 'fetch-standard paywall');
row('Next.js route + withPaywall / bare route:', pairs.next, 'next start, Node.js runtime');
console.log('BENCH ' + JSON.stringify({ bench: 'http', secondsPerRound: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, pairs }));
