// Young-generation bytes each HTTP target (bench/http-server.mjs) allocates per request: a
// figure the machine's other load does not move, for where a paywall's scavenges come from.
// Each target runs with a 64 MB semi-space, serves `warmup` requests, then bursts of `requests`
// requests (`connections` at a time): the growth of the new space's bytes in use over a burst
// that no GC interrupted, over its requests, is what one request allocated, its garbage
// included (a burst during which a GC ran is not counted, and another is run).
// Run: node bench/http-alloc.mjs [requests=1000] [warmup=10000] [connections=8]
// (ONLY=hono-bare,hono-paywall: the scenarios; ROUNDS=3 counted bursts each, the median reported;
// BASELINE=<another built bindings-node tree>: each scenario also from there, as
// `<scenario>@base`; PROFILE=1: one more burst under V8's sampling heap profiler, collected
// objects included, and the functions that allocated most printed per request (TOP=25 of them,
// each with its caller).)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTarget, stopTarget, burst } from './http-targets.mjs';
import { mintVlexivo } from './tokens.mjs';
import { median } from './stats.mjs';

const REQUESTS = Number(process.argv[2] ?? 1000);
const WARMUP = Number(process.argv[3] ?? 10000);
const CONNECTIONS = Number(process.argv[4] ?? 8);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const BASELINE = process.env.BASELINE;
const TOP = Number(process.env.TOP ?? 25);
const scenarios = (process.env.ONLY ?? 'hono-bare,hono-paywall').split(',');
if (BASELINE) scenarios.push(...scenarios.map((s) => `${s}@base`));

/** A request burst that must answer 2xx throughout. */
async function served(target, name, n) {
  const res = await burst(target.url, mintVlexivo(n), CONNECTIONS);
  if (res.non2xx + res.errors + res.timeouts > 0) throw new Error(`${name}: requests were not 2xx`);
}

/** Self bytes per request by function (and its caller) of a sampling heap profile, largest first. */
function topAllocations(file, requests) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const frame = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/node_modules\//, '').replace(/^.*\/bindings-node\//, '')}:${n.callFrame.lineNumber + 1}`;
  const names = new Map();
  const walk = (node, caller) => {
    names.set(node.id, `${frame(node)} <- ${caller}`);
    for (const c of node.children) walk(c, frame(node));
  };
  walk(profile.head, '');
  const bytes = new Map();
  for (const s of profile.samples) bytes.set(names.get(s.nodeId), (bytes.get(names.get(s.nodeId)) ?? 0) + s.size);
  return [...bytes].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v / requests]);
}

async function measure(name, dir) {
  const [scenario, base] = name.split('@');
  const target = await startTarget(scenario, {
    env: { ALLOC: '1', YOUNG_MB: '64' },
    script: base ? join(BASELINE, 'bench', 'http-server.mjs') : undefined,
  });
  try {
    await served(target, name, WARMUP);
    const perRequest = [];
    for (let tries = 0; perRequest.length < ROUNDS && tries < ROUNDS * 3; tries++) {
      const before = await target.alloc('alloc');
      await served(target, name, REQUESTS);
      const after = await target.alloc('alloc');
      if (after.gcs === before.gcs) perRequest.push((after.used - before.used) / REQUESTS);
    }
    if (perRequest.length < ROUNDS) throw new Error(`${name}: GCs ran during too many bursts (fewer requests?)`);
    let top;
    if (process.env.PROFILE) {
      const file = join(dir, `${name}.heapprofile`);
      await target.alloc('alloc-profile');
      await served(target, name, REQUESTS);
      await target.alloc(`alloc-profile-end ${file}`);
      top = topAllocations(file, REQUESTS);
    }
    return { perRequest, top };
  } finally {
    await stopTarget(target);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'vlx-alloc-'));
const results = {};
try {
  for (const name of scenarios) {
    const { perRequest, top } = await measure(name, dir);
    results[name] = median(perRequest);
    console.log(`${name.padEnd(26)} ${Math.round(results[name]).toLocaleString('en-US').padStart(7)} bytes per request (bursts: ${perRequest.map((b) => Math.round(b)).join(', ')})`);
    for (const [k, v] of top?.slice(0, TOP) ?? []) console.log(`  ${Math.round(v).toString().padStart(6)}  ${k}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log('BENCH ' + JSON.stringify({ bench: 'http-alloc', requests: REQUESTS, warmup: WARMUP, connections: CONNECTIONS, perRequest: results }));
