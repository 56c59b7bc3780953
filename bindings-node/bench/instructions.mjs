// (c) Instructions per request under callgrind: each target of bench/http-server.mjs runs under
// `valgrind --tool=callgrind` with instrumentation off while it warms up (V8 tiers the hot code
// up), then on for a fixed number of paid requests; the server's instruction count divided by
// the request count is a load-independent figure (wall-clock ratios need a quiet machine). The
// difference paywalled − bare is what the paywall costs per request.
// Run: node bench/instructions.mjs [requests=3000] [warmup=4000] [runs=3]   (ONLY=express|fastify)
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { mintVlexivo, RESOURCE_PATH } from './tokens.mjs';
import { median } from './stats.mjs';

const N = Number(process.argv[2] ?? 3000);
const WARMUP = Number(process.argv[3] ?? 4000);
const RUNS = Number(process.argv[4] ?? 3);
const CONCURRENCY = 4;
const serverScript = fileURLToPath(new URL('./http-server.mjs', import.meta.url));
const scenarios = ['express-bare', 'express-paywall', 'fastify-bare', 'fastify-paywall'].filter(
  (s) => !process.env.ONLY || s.startsWith(process.env.ONLY),
);
const dir = mkdtempSync(join(tmpdir(), 'vlx-callgrind-'));

function start(scenario, out) {
  const child = spawn('valgrind', ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${out}`, process.execPath, serverScript, scenario], {
    stdio: ['pipe', 'pipe', 'ignore'],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  const rl = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    rl.on('line', (l) => {
      const m = /^PORT=(\d+)/.exec(l);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on('exit', (c) => reject(new Error(`${scenario} exited ${c}`)));
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
const body = JSON.stringify({ model: 'small-v1', prompt: 'hello' });

function request(port, token) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: RESOURCE_PATH, agent, headers: { 'content-type': 'application/json', 'vlexivo-proof': token } },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function drive(port, tokens) {
  let next = 0;
  const worker = async () => {
    while (next < tokens.length) await request(port, tokens[next++]);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

function totalIr(file) {
  const text = readFileSync(file, 'utf8');
  const m = /^totals:\s+(\d+)/m.exec(text);
  if (!m) throw new Error(`no totals in ${file}`);
  return Number(m[1]);
}

const results = Object.fromEntries(scenarios.map((s) => [s, []]));
try {
  for (let run = 0; run < RUNS; run++) {
    for (const scenario of scenarios) {
      const out = join(dir, `${scenario}.${run}.out`);
      const { child, port } = await start(scenario, out);
      const exited = new Promise((r) => child.on('exit', r));
      await drive(port, mintVlexivo(WARMUP));
      const tokens = mintVlexivo(N);
      execFileSync('callgrind_control', ['-i', 'on', String(child.pid)], { stdio: 'ignore' });
      await drive(port, tokens);
      execFileSync('callgrind_control', ['-i', 'off', String(child.pid)], { stdio: 'ignore' });
      child.kill('SIGTERM');
      await exited;
      results[scenario].push(totalIr(out) / N);
      console.log(`run ${run + 1} ${scenario.padEnd(16)} ${Math.round(totalIr(out) / N).toLocaleString('en-US')} instructions/request`);
    }
  }
} finally {
  agent.destroy();
  if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
}
const k = (v) => `${(v / 1000).toFixed(1)}k`;
for (const fw of ['express', 'fastify']) {
  const bare = results[`${fw}-bare`];
  const paid = results[`${fw}-paywall`];
  if (!bare || !paid) continue;
  const extra = paid.map((p, i) => p - bare[i]);
  console.log(
    `${fw}: bare ${k(median(bare))}, paywalled ${k(median(paid))} instructions/request; the paywall adds ${k(Math.min(...extra))}–${k(Math.max(...extra))} (median ${k(median(extra))}); ratio bare/paid ${(median(bare) / median(paid)).toFixed(3)}`,
  );
}
console.log(JSON.stringify({ bench: 'instructions', requests: N, warmup: WARMUP, runs: RUNS, perRequest: results }));
