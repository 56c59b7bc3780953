// Where two HTTP targets spend their CPU, natively, side by side: `perf record -e cpu-clock`
// (a software clock: this VM has no hardware counters) over both target processes while they
// take the same bursts of fresh-proof requests, alternated, then each target's samples split
// by shared object (kernel, node, V8's JIT code, the native addon, libc) and the addon's memory
// store and SHA-256 symbols. Both targets serve the same number of requests, so their sample
// counts compare as CPU per request; the shares are of each target's own samples. Unlike
// callgrind, this counts cache and TLB misses and the kernel as they cost here.
// Run: node bench/http-perf.mjs [scenario=fastify-paywall] [bursts=4] [requests=40000]
//   BASELINE=<another built bindings-node tree>: the same scenario from there (before/after);
//   OTHER=<scenario>: another scenario from this tree instead (fastify-bare: what the plugin adds).
// Needs perf (Debian package linux-perf). Both targets on the last CPU, this process on the first.
import { execFileSync, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { startTarget, stopTarget, burst } from './http-targets.mjs';
import { mintVlexivo } from './tokens.mjs';

const SCENARIO = process.argv[2] ?? 'fastify-paywall';
const BURSTS = Number(process.argv[3] ?? 4);
const REQUESTS = Number(process.argv[4] ?? 40000);
const { BASELINE, OTHER } = process.env;
if (!BASELINE && !OTHER) throw new Error('set BASELINE=<built bindings-node tree> or OTHER=<scenario>');
const CPUS = availableParallelism();
if (CPUS >= 2) execFileSync('taskset', ['-a', '-cp', '0', String(process.pid)], { stdio: 'ignore' });
const prefix = CPUS >= 2 ? ['taskset', '-c', String(CPUS - 1)] : [];

const names = [SCENARIO, OTHER ?? `${SCENARIO}@base`];
const targets = [
  await startTarget(SCENARIO, { prefix }),
  OTHER ? await startTarget(OTHER, { prefix }) : await startTarget(SCENARIO, { prefix, script: join(BASELINE, 'bench', 'http-server.mjs') }),
];
const dir = mkdtempSync(join(tmpdir(), 'vlx-perf-'));
const data = join(dir, 'perf.data');
const pids = targets.map((t) => t.child.pid);
/** Each target's threads (perf names samples by thread id), read while they run. */
const threadsOf = (pid) => new Set(readdirSync(`/proc/${pid}/task`).map(Number));
let tids;
let bySym;
try {
  // Warm: V8 tiers up, the store makes its tables (unrecorded).
  for (const t of targets) for (const n of [20000, REQUESTS]) await burst(t.url, mintVlexivo(n), 16);
  const perf = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '10000', '-p', targets.map((t) => t.child.pid).join(','), '-o', data], { stdio: 'inherit' });
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < BURSTS; i++) {
    for (const t of i % 2 ? targets : [...targets].reverse()) {
      const res = await burst(t.url, mintVlexivo(REQUESTS), 16);
      if (res.non2xx + res.errors + res.timeouts > 0) throw new Error('requests were not 2xx');
    }
  }
  tids = pids.map(threadsOf);
  perf.kill('SIGINT');
  await new Promise((r) => perf.on('exit', r));
  bySym = execFileSync('perf', ['report', '-i', data, '--no-children', '--sort', 'pid,dso,sym', '-g', 'none', '--percent-limit', '0'], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
} finally {
  for (const t of targets) await stopTarget(t);
}
rmSync(dir, { recursive: true, force: true });

// `  12.34%  1234:node  vlexivo.linux-x64-gnu.node  [.] symbol`: perf names a sample by its
// thread; each target's threads are summed.
const groups = { kernel: /\[kernel/, node: /^node$/, jit: /^\[JIT\]/, addon: /^vlexivo/, libc: /^libc/ };
const out = names.map(() => ({ total: 0, kernel: 0, node: 0, jit: 0, addon: 0, libc: 0, store: 0, sha: 0 }));
for (const line of bySym.split('\n')) {
  const m = /^\s*([\d.]+)%\s+(\d+):\S+\s+(\[kernel\.kallsyms\]|\[JIT\] tid \d+|\S+)\s+\[.\]\s+(.*)$/.exec(line);
  if (!m) continue;
  const tid = Number(m[2]);
  const i = tids.findIndex((t) => t.has(tid));
  if (i < 0) continue;
  const pct = Number(m[1]);
  const o = out[i];
  o.total += pct;
  for (const [g, re] of Object.entries(groups)) if (re.test(m[3])) o[g] += pct;
  if (/store::memory|hashbrown/.test(m[4])) o.store += pct;
  if (/sha2::/.test(m[4])) o.sha += pct;
}
console.log(`perf cpu-clock, ${BURSTS} x ${REQUESTS} requests per target, alternated; % of each target's own samples (all its threads)`);
console.log('target                          samples   kernel    node     JIT    addon    libc   memory store  SHA-256');
names.forEach((n, i) => {
  const o = out[i];
  const s = (k) => `${((100 * o[k]) / o.total).toFixed(2).padStart(6)}%`;
  console.log(`${n.padEnd(30)} ${o.total.toFixed(1).padStart(7)}%  ${s('kernel')} ${s('node')} ${s('jit')} ${s('addon')} ${s('libc')}   ${s('store')}     ${s('sha')}`);
});
console.log(`${names[0]} / ${names[1]}: samples ${(out[0].total / out[1].total).toFixed(3)} (CPU per request)`);
console.log('BENCH ' + JSON.stringify({ bench: 'http-perf', bursts: BURSTS, requests: REQUESTS, targets: Object.fromEntries(names.map((n, i) => [n, out[i]])) }));
