// Instructions per request of each HTTP target (bench/http-server.mjs) under callgrind: a
// figure the machine's other load does not move, for comparing a change to the paywall's path
// (bare vs paywalled, before vs after). Each target runs under `valgrind --tool=callgrind` with
// instrumentation off while it starts and serves `warmup` requests (V8 tiers its code up), then
// on for `requests` requests, `connections` at a time (the same for every target), then off
// again: the count covers exactly the measured requests, every thread of the process (V8's
// compiler and GC threads included). Needs valgrind (Debian package `valgrind`).
// Run: node bench/http-callgrind.mjs [requests=5000] [warmup=20000] [connections=8]
// (ONLY=fastify-bare,fastify-paywall: the scenarios; ROUNDS=3: each scenario that many times,
// ABBA, the median reported (bench/stats.mjs: the mean of the two middle values for an even
// ROUNDS); CACHE=1: first-level cache misses too, see below; BASELINE=<another built
// bindings-node tree>: each scenario also from there, as `<scenario>@base`, for before/after;
// KEEP=1 keeps the callgrind files.)
// valgrind runs without the CPU's SHA extensions, so core's HMAC counts several times what it
// costs natively (callgrind_annotate shows it as sha2::sha256::soft): compare like with like.
// CACHE=1 also simulates the caches (valgrind's model of this CPU's L1 and last level, not its
// L2) and prints each scenario's first-level instruction and data misses per request by where
// the missing code ran: the addon, node (C++ and builtins), JIT-compiled JavaScript (no
// object), libc; the addon's software SHA-256 apart, as it has no such cost natively.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTarget, stopTarget, burst } from './http-targets.mjs';
import { mintVlexivo } from './tokens.mjs';
import { median } from './stats.mjs';

const REQUESTS = Number(process.argv[2] ?? 5000);
const WARMUP = Number(process.argv[3] ?? 20000);
const CONNECTIONS = Number(process.argv[4] ?? 8);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const BASELINE = process.env.BASELINE;
const scenarios = (process.env.ONLY ?? 'fastify-bare,fastify-paywall').split(',');
if (BASELINE) scenarios.push(...scenarios.map((s) => `${s}@base`));

/** Switch a callgrind process's instrumentation on or off (callgrind_control). */
function instrument(pid, on) {
  execFileSync('callgrind_control', ['-i', on ? 'on' : 'off', String(pid)], { stdio: 'ignore' });
}

/** CPU time (clock ticks, every thread) a process has used so far. */
function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name: state is the first, utime and stime the 12th and 13th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** Until a process has used no CPU for a second (its background threads are done). */
async function idle(pid) {
  for (let last = cpuTicks(pid), quiet = 0; quiet < 2; ) {
    await new Promise((r) => setTimeout(r, 500));
    const now = cpuTicks(pid);
    quiet = now - last <= 1 ? quiet + 1 : 0;
    last = now;
  }
}

/**
 * The instructions of a callgrind output file, less those of V8's optimising compiler jobs: a
 * function the warm-up left for later (or that a loaded machine kept the background compiler
 * from finishing) is compiled once, whenever, and not per request.
 */
function requestIr(file) {
  const m = /^totals: (\d+)/m.exec(readFileSync(file, 'utf8'));
  if (!m) throw new Error(`no totals in ${file}`);
  const annotated = execFileSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const jobs = /^\s*([\d,]+) .*OptimizedCompilationJob::ExecuteJob\(/m.exec(annotated);
  return Number(m[1]) - (jobs ? Number(jobs[1].replaceAll(',', '')) : 0);
}

const CACHE = process.env.CACHE === '1';
/** Where code ran, for the misses (CACHE=1): the object's file name, grouped. */
function placeOf(object, fn) {
  if (object === undefined || object === '???') return 'jit';
  if (object.endsWith('.node')) return fn.startsWith('sha2::sha256::soft') ? 'addon-soft-sha' : 'addon';
  if (object.endsWith('/node')) return fn.startsWith('v8::internal::compiler::') ? 'v8-compiler' : 'node';
  if (object.includes('/libc.so')) return 'libc';
  return 'other';
}

/**
 * First-level misses of a callgrind file (made with --cache-sim=yes), self cost by place (a
 * `calls=` line's following cost is the callee's, counted where the callee is). V8's optimising
 * compiler is a place of its own, left out of the totals as its instructions are.
 */
function missesByPlace(file) {
  const text = readFileSync(file, 'utf8');
  const events = /^events: (.*)$/m.exec(text)[1].split(' ');
  const i1 = events.indexOf('I1mr');
  const d1 = [events.indexOf('D1mr'), events.indexOf('D1mw')];
  const names = { ob: new Map(), fn: new Map() };
  const out = {};
  let object;
  let fn = '';
  let callee = false;
  for (const line of text.split('\n')) {
    const named = /^(c?)(ob|fn)=(?:\((\d+)\))? ?(.*)$/.exec(line);
    if (named) {
      const [, called, kind, id, name] = named;
      if (id !== undefined && name !== '') names[kind].set(id, name);
      const resolved = id !== undefined ? names[kind].get(id) : name;
      if (called === '') {
        if (kind === 'ob') object = resolved;
        else fn = resolved ?? '';
      }
      continue;
    }
    if (line.startsWith('calls=')) {
      callee = true;
      continue;
    }
    if (!/^[0-9+*-]/.test(line)) continue;
    if (callee) {
      callee = false;
      continue;
    }
    const v = line.split(' ');
    const place = (out[placeOf(object, fn)] ??= { i1: 0, d1: 0 });
    // The cost columns follow the position column; a line may leave trailing zeroes out.
    place.i1 += Number(v[1 + i1] ?? 0);
    place.d1 += Number(v[1 + d1[0]] ?? 0) + Number(v[1 + d1[1]] ?? 0);
  }
  return out;
}

async function measure(name, dir) {
  const out = join(dir, `${name}.%p.out`);
  const [scenario, base] = name.split('@');
  const target = await startTarget(scenario, {
    prefix: ['valgrind', '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`, '--quiet', ...(CACHE ? ['--cache-sim=yes'] : [])],
    script: base ? join(BASELINE, 'bench', 'http-server.mjs') : undefined,
  });
  const prefix = `${name}.${target.child.pid}.`;
  try {
    // Under valgrind the threads take turns: V8's background compiler finishes what the warm-up
    // asked for while the target is otherwise idle, which is waited for (however long the
    // machine's load makes it), not inside the measured burst.
    for (const n of [WARMUP, Math.ceil(WARMUP / 10)]) {
      const warm = await burst(target.url, mintVlexivo(n), CONNECTIONS);
      if (warm.non2xx + warm.errors + warm.timeouts > 0) throw new Error(`${name}: warm-up requests were not 2xx`);
      await idle(target.child.pid);
    }
    const tokens = mintVlexivo(REQUESTS);
    instrument(target.child.pid, true);
    const res = await burst(target.url, tokens, CONNECTIONS);
    instrument(target.child.pid, false);
    if (res.non2xx + res.errors + res.timeouts > 0) throw new Error(`${name}: requests were not 2xx`);
  } finally {
    await stopTarget(target);
  }
  const files = readdirSync(dir).filter((f) => f.startsWith(prefix));
  const ir = files.reduce((sum, f) => sum + requestIr(join(dir, f)), 0);
  const misses = {};
  if (CACHE) {
    for (const f of files) {
      for (const [place, m] of Object.entries(missesByPlace(join(dir, f)))) {
        const to = (misses[place] ??= { i1: 0, d1: 0 });
        to.i1 += m.i1 / REQUESTS;
        to.d1 += m.d1 / REQUESTS;
      }
    }
  }
  if (!process.env.KEEP) for (const f of files) rmSync(join(dir, f));
  return { ir: ir / REQUESTS, misses };
}

const dir = mkdtempSync(join(tmpdir(), 'vlx-callgrind-'));
const results = Object.fromEntries(scenarios.map((s) => [s, []]));
const missRounds = Object.fromEntries(scenarios.map((s) => [s, []]));
const PLACES = ['addon', 'addon-soft-sha', 'node', 'jit', 'libc', 'other'];
/** Misses of kind `k` ('i1' or 'd1') per request over the places counted. */
const total = (misses, k) => PLACES.reduce((sum, p) => sum + (misses[p]?.[k] ?? 0), 0);
/** Those misses place by place, for printing. */
const byPlace = (misses, k) => PLACES.map((p) => `${p} ${Math.round(misses[p]?.[k] ?? 0)}`).join(', ');
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of round % 2 === 0 ? scenarios : [...scenarios].reverse()) {
      const { ir, misses } = await measure(name, dir);
      results[name].push(ir);
      console.log(`${name.padEnd(26)} ${Math.round(ir).toLocaleString('en-US').padStart(9)} instructions per request`);
      if (CACHE) {
        missRounds[name].push(misses);
        console.log(`${''.padEnd(26)} L1 instruction misses ${Math.round(total(misses, 'i1'))} per request (${byPlace(misses, 'i1')})`);
        console.log(`${''.padEnd(26)} L1 data misses ${Math.round(total(misses, 'd1'))} per request (${byPlace(misses, 'd1')})`);
      }
    }
  }
} finally {
  if (process.env.KEEP) console.log(`callgrind files: ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
const perRequest = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
for (const suffix of BASELINE ? ['', '@base'] : ['']) {
  const bare = perRequest[`fastify-bare${suffix}`];
  const paid = perRequest[`fastify-paywall${suffix}`];
  if (bare === undefined || paid === undefined) continue;
  console.log(`Fastify + plugin${suffix} adds ${Math.round(paid - bare).toLocaleString('en-US')} instructions per request (bare/paywalled ${(bare / paid).toFixed(3)})`);
}
if (CACHE) {
  // Each place's median over the rounds; the added misses are the paywalled medians less the bare.
  const medians = (name) =>
    Object.fromEntries(PLACES.map((p) => [p, Object.fromEntries(['i1', 'd1'].map((k) => [k, median(missRounds[name].map((m) => m[p]?.[k] ?? 0))]))]));
  for (const suffix of BASELINE ? ['', '@base'] : ['']) {
    const [bareName, paidName] = [`fastify-bare${suffix}`, `fastify-paywall${suffix}`];
    if (!missRounds[bareName]?.length || !missRounds[paidName]?.length) continue;
    const [bare, paid] = [medians(bareName), medians(paidName)];
    const added = Object.fromEntries(PLACES.map((p) => [p, { i1: paid[p].i1 - bare[p].i1, d1: paid[p].d1 - bare[p].d1 }]));
    for (const [k, what] of [['i1', 'instruction'], ['d1', 'data']]) {
      console.log(`Fastify + plugin${suffix} adds ${Math.round(total(added, k))} L1 ${what} misses per request on bare's ${Math.round(total(bare, k))} (${byPlace(added, k)})`);
    }
  }
}
console.log('BENCH ' + JSON.stringify({ bench: 'http-callgrind', requests: REQUESTS, warmup: WARMUP, connections: CONNECTIONS, perRequest, ...(CACHE ? { misses: missRounds } : {}) }));
