// (b) autocannon on 127.0.0.1, one run: bare Express vs Express + paywall (valid, distinct,
// pre-minted proofs; memory store) vs Express + jose verify + Set; bare Fastify vs Fastify +
// plugin; bare Hono vs Hono + paywall (@hono/node-server); a bare Next.js route handler vs the
// same behind vlexivo/next (test/next-app's production build, Next's own server). Each target
// runs in its own process. Every request of every scenario carries a fresh proof header (bare
// targets ignore it), so the client does the same work for all; every paid request must answer
// 200. Scenarios are interleaved over several rounds (the machine is shared)
// and reported per pair:
//   - CPU µs per request the paywall adds (server process CPU, paywalled − bare): robust to other
//     load on the machine, and comparable across frameworks (a ratio flatters a slow baseline);
//     of the median rounds, of each side's lowest round (the least disturbed), and the median
//     of each round's difference
//   - throughput: median over rounds of req/s(paywalled) / req/s(bare)
//   - CPU: server CPU µs per request, bare / paywalled
// A round lasts about `secondsPerRound` for every scenario (its request count is sized from its
// warm-up rate), so fast targets get rounds long enough to be stable; the spread of each
// scenario's req/s and CPU per request over the rounds is printed. With 2 CPUs or more the load
// generator (this process) runs on the first and every target on the last (PIN=0: unpinned).
// Run: node bench/http.mjs [secondsPerRound=2] [rounds=10] [connections=16]
// (ONLY=hono,next runs the scenarios whose names start with one of these; BASELINE=<dir>: the
// same scenarios also from another built bindings-node tree, interleaved: before/after;
// VARIANTS='{"<name>": {<env>}, …}': the same scenarios again as `<scenario>~<name>` with these
// environment variables in their targets, interleaved, e.g. '{"young0": {"YOUNG_MB": "0"}}'.)
// Instructions per request, which the machine's load does not move: bench/http-callgrind.mjs.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { mintVlexivo, mintJose } from './tokens.mjs';
import { startTarget, burst } from './http-targets.mjs';
import { installAndBuild } from '../test/next-build.mjs';
import { median } from './stats.mjs';

const SECONDS = Number(process.argv[2] ?? 2);
const ROUNDS = Number(process.argv[3] ?? 10);
const CONNECTIONS = Number(process.argv[4] ?? 16);
const WARMUP = Math.max(1000, Math.round(2500 * SECONDS));
const joseKey = randomBytes(32);
// Pinning (PIN=0 turns it off): this process (the load generator) on the first CPU, every target
// on the last, the same for bare and paywalled targets, so a target never waits behind the load
// generator for a CPU and the two never trade caches.
const CPUS = availableParallelism();
const PIN = process.env.PIN !== '0' && CPUS >= 2;
if (PIN) execFileSync('taskset', ['-a', '-cp', '0', String(process.pid)], { stdio: 'ignore' });
const targetPrefix = PIN ? ['taskset', '-c', String(CPUS - 1)] : [];
// DIAG=1 (or DIAG=<file>: also written there as JSON): each round's CPU of each target split by
// thread, its event loop's waits and preemptions and its GC pauses, per request (see
// bench/http-server.mjs).
const DIAG = process.env.DIAG;
/** A round's diagnostics per request: counters' differences over `n` requests (heap and RSS as they stand). */
function perRequest(before, after, n) {
  const out = {};
  for (const k of Object.keys(after)) out[k] = k.endsWith('Mb') ? after[k] : (after[k] - before[k]) / n;
  return out;
}
// BASELINE=<another bindings-node tree> (built: dist/ and native/) adds each scenario again from
// that tree, as `<scenario>@base`, interleaved in the same rounds: before/after in one run.
const BASELINE = process.env.BASELINE;
const baselineScript = BASELINE && fileURLToPath(new URL(`file://${BASELINE}/bench/http-server.mjs`));
// VARIANTS (JSON): each scenario again with other environment variables for its target (a
// target setting such as YOUNG_MB or VLX_BENCH_STORE), as `<scenario>~<variant>`, interleaved.
const VARIANTS = process.env.VARIANTS ? JSON.parse(process.env.VARIANTS) : {};

// ONLY=fastify (or express) runs one framework's scenarios.
const scenarios = [
  ['express-bare', (n, ttl) => mintVlexivo(n, undefined, ttl)],
  ['express-paywall', (n, ttl) => mintVlexivo(n, undefined, ttl)],
  ['express-jose-set', (n, ttl) => mintJose(n, joseKey, undefined, ttl)],
  ['fastify-bare', (n, ttl) => mintVlexivo(n, undefined, ttl)],
  ['fastify-paywall', (n, ttl) => mintVlexivo(n, undefined, ttl)],
  // READ=1: also a Fastify handler that reads request.vlxPayment (built on first read).
  ...(process.env.READ ? [['fastify-paywall-read', (n, ttl) => mintVlexivo(n, undefined, ttl)]] : []),
  // NAPI=1: also bare Fastify with a preHandler making one small native call (no paywall).
  ...(process.env.NAPI ? [['fastify-napi', (n, ttl) => mintVlexivo(n, undefined, ttl)]] : []),
  ['hono-bare', (n, ttl) => mintVlexivo(n, undefined, ttl)],
  // NOOP=1: also bare Hono behind a middleware that does nothing (Hono's own cost of one).
  ...(process.env.NOOP ? [['hono-noop', (n, ttl) => mintVlexivo(n, undefined, ttl)]] : []),
  ['hono-paywall', (n, ttl) => mintVlexivo(n, undefined, ttl)],
  ['next-bare', (n, ttl) => mintVlexivo(n, undefined, ttl)],
  ['next-paywall', (n, ttl) => mintVlexivo(n, undefined, ttl)],
].filter(([name]) => !process.env.ONLY || process.env.ONLY.split(',').some((o) => name.startsWith(o)));

// The Next.js targets serve test/next-app's production build (installed and built once here).
if (scenarios.some(([name]) => name.startsWith('next'))) installAndBuild();

console.log(`autocannon: ${ROUNDS} rounds of ~${SECONDS} s per scenario (+${WARMUP} warm-up requests), ${CONNECTIONS} connections, 127.0.0.1${PIN ? `; load generator on CPU 0, targets on CPU ${CPUS - 1}` : ''}${BASELINE ? `; @base: ${BASELINE}` : ''}`);
const state = {};
const plain = [...scenarios];
if (BASELINE) scenarios.push(...plain.map(([name, mint]) => [`${name}@base`, mint]));
for (const v of Object.keys(VARIANTS)) scenarios.push(...plain.map(([name, mint]) => [`${name}~${v}`, mint]));
for (const [name, mint] of scenarios) {
  const [scenario, variant] = name.split('~');
  const [plainName, base] = scenario.split('@');
  const env = { JOSE_KEY: joseKey.toString('hex'), ...(variant ? VARIANTS[variant] : {}) };
  const target = await startTarget(plainName, { prefix: targetPrefix, env, script: base ? baselineScript : undefined });
  // TOKEN_TTL (seconds, default 300, also per variant): how long each proof is valid, so how
  // long the paywall's store holds its nonce.
  const ttl = Number(env.TOKEN_TTL ?? process.env.TOKEN_TTL ?? 300);
  state[name] = { target, mint: (n) => mint(n, ttl), perRound: 0, rps: [], cpuPerReq: [], diag: [] };
}
try {
  // Rounds are sized from the target's own rate (its requests over their span): autocannon ends
  // a fixed-count run on its 1 s ticker, so the client's clock reads at least 1 s per burst.
  const sized = (after) => Math.max(1000, Math.round((after.span > 0 ? after.count / after.span : 1000) * SECONDS));
  for (const s of Object.values(state)) {
    await s.target.cpu();
    await burst(s.target.url, await s.mint(WARMUP), CONNECTIONS);
    s.perRound = sized(await s.target.cpu());
  }
  // Round 0 is a second warm-up, not counted: V8 is still optimising after the first burst (its
  // rounds came out up to half again slower in CPU per request).
  for (let round = 0; round <= ROUNDS; round++) {
    // ABBA order: alternate the order every round so drift in the machine's load (it is shared)
    // falls evenly on every scenario.
    const order = round % 2 === 1 ? scenarios : [...scenarios].reverse();
    for (const [name] of order) {
      const s = state[name];
      // Minted per round (outside the timing): memory stays bounded however long the rounds.
      const tokens = await s.mint(s.perRound);
      const before = await s.target.cpu();
      const res = await burst(s.target.url, tokens, CONNECTIONS);
      const after = await s.target.cpu();
      const bad = res.non2xx + res.errors + res.timeouts;
      if (bad > 0) throw new Error(`${name}: ${bad} requests were not 2xx`);
      if (round === 0) {
        // Sized again from this warm round: the first warm-up ran partly unoptimised (a paywalled
        // target's rounds came out half as long as its bare one's).
        s.perRound = sized(after);
        continue;
      }
      // Server-side span from the first to the last request of the burst.
      s.rps.push(after.count / after.span);
      s.cpuPerReq.push((after.cpu - before.cpu) / res.requests.total);
      if (after.diag) s.diag.push(perRequest(before.diag, after.diag, res.requests.total));
    }
  }
} finally {
  for (const s of Object.values(state)) s.target.child.kill('SIGTERM');
}

const spreadPct = (a) => (100 * (Math.max(...a) - Math.min(...a))) / median(a);
for (const [name] of scenarios) {
  const s = state[name];
  console.log(
    `${name.padEnd(20)} median ${Math.round(median(s.rps)).toLocaleString('en-US').padStart(7)} req/s (spread ${spreadPct(s.rps).toFixed(0)}%, ${s.perRound} requests per round)   server CPU ${median(s.cpuPerReq).toFixed(1).padStart(6)} µs/req   rounds: ${s.rps.map((r) => Math.round(r)).join(', ')} req/s; ${s.cpuPerReq.map((c) => c.toFixed(0)).join(', ')} µs`,
  );
}
if (DIAG) {
  // Per round: µs per request on the event loop's thread / the store's helper / other threads,
  // requests per wait of the event loop, preemptions and minor page faults per 1k requests, GC ms
  // per 1k requests.
  const f = (d) =>
    `${(d.mainNs / 1e3).toFixed(2)}/${(d.storeNs / 1e3).toFixed(2)}/${(d.otherNs / 1e3).toFixed(2)} ${(1 / d.waits).toFixed(1)}r/w ${(d.preempted * 1e3).toFixed(1)}p ${(d.faults * 1e3).toFixed(0)}f ${((d.minorMs + d.majorMs + d.incrementalMs) * 1e3).toFixed(1)}gc ${(d.major * 1e3).toFixed(2)}M ${d.heapMb.toFixed(0)}/${d.rssMb.toFixed(0)}MB young ${d.youngMb.toFixed(1)}MB ${(d.minor * 1e3).toFixed(1)}s/k`;
  console.log('\nper round (µs/request on loop/store/other threads, requests per loop wait, preemptions and minor page faults per 1k requests, GC ms and major GCs per 1k requests, heap/RSS, young generation, scavenges per 1k requests):');
  for (const [name] of scenarios) {
    const s = state[name];
    s.diag.forEach((d, i) => console.log(`${name.padEnd(20)} ${String(i + 1).padStart(2)} ${s.cpuPerReq[i].toFixed(2).padStart(6)} µs  ${f(d)}`));
  }
  if (DIAG !== '1') {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(DIAG, JSON.stringify(Object.fromEntries(scenarios.map(([name]) => [name, { cpuPerReq: state[name].cpuPerReq, rps: state[name].rps, diag: state[name].diag }]))));
  }
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
    // Each round's paywalled minus its bare (run next to each other): drift between rounds
    // cancels.
    cpuAddedPairedUs: median(p.cpuPerReq.map((c, i) => c - b.cpuPerReq[i])),
    bareCpuUs: median(b.cpuPerReq),
    bareSpreadPct: spreadPct(b.rps),
    paidSpreadPct: spreadPct(p.rps),
    // The rounds' spread of CPU per request (the figure the ratios are taken from).
    bareCpuSpreadPct: spreadPct(b.cpuPerReq),
    paidCpuSpreadPct: spreadPct(p.cpuPerReq),
  };
}
const PAIRS = [
  ['express', 'express-paywall', 'express-bare'],
  ['joseSet', 'express-jose-set', 'express-bare'],
  ['fastify', 'fastify-paywall', 'fastify-bare'],
  ['fastifyRead', 'fastify-paywall-read', 'fastify-bare'],
  ['fastifyNapi', 'fastify-napi', 'fastify-bare'],
  ['hono', 'hono-paywall', 'hono-bare'],
  ['honoNoop', 'hono-paywall', 'hono-noop'],
  ['next', 'next-paywall', 'next-bare'],
];
const SUFFIXES = ['', ...(BASELINE ? ['@base'] : []), ...Object.keys(VARIANTS).map((v) => `~${v}`)];
const pairs = Object.fromEntries(
  PAIRS.flatMap(([id, paid, bare]) => SUFFIXES.map((x) => [`${id}${x}`, pair(`${paid}${x}`, `${bare}${x}`)])).filter(([, r]) => r),
);
const row = (label, r, note) =>
  r &&
  console.log(
    `${label}+${r.cpuAddedUs.toFixed(1).padStart(5)} µs on ${r.bareCpuUs.toFixed(1).padStart(5)} (lowest rounds +${r.cpuAddedLowUs.toFixed(1)}, per round +${r.cpuAddedPairedUs.toFixed(1)}; CPU spread ${r.bareCpuSpreadPct.toFixed(0)}%/${r.paidCpuSpreadPct.toFixed(0)}%)   ${r.tput.toFixed(2)}        ${r.cpu.toFixed(2)}   (${note})`,
  );
console.log('');
console.log('                                      CPU/request added (median rounds)               throughput   CPU/request');
for (const suffix of SUFFIXES) {
  if (suffix === '@base') console.log(`baseline (${BASELINE}):`);
  else if (suffix) console.log(`variant ${suffix.slice(1)} (${JSON.stringify(VARIANTS[suffix.slice(1)])}):`);
  row('Express + paywall / bare Express:       ', pairs[`express${suffix}`], 'target >= 0.85');
  row('Express + jose + Set / bare Express:    ', pairs[`joseSet${suffix}`], 'hand-written guard');
  row('Fastify + plugin / bare Fastify:        ', pairs[`fastify${suffix}`], 'target >= 0.90');
  row('  handler reading vlxPayment / bare:     ', pairs[`fastifyRead${suffix}`], 'payment object built');
  row('  one small native call / bare:          ', pairs[`fastifyNapi${suffix}`], 'parseMoney in a preHandler');
  row('Hono + paywall / bare Hono (node-server):', pairs[`hono${suffix}`], 'fetch-standard paywall');
  row('  / Hono + a no-op middleware:           ', pairs[`honoNoop${suffix}`], 'both through compose');
  row('Next.js route + withPaywall / bare route:', pairs[`next${suffix}`], 'next start, Node.js runtime');
}
console.log('BENCH ' + JSON.stringify({ bench: 'http', secondsPerRound: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, pairs }));
