// The HTTP benchmarks' plumbing (bench/http.mjs, bench/http-callgrind.mjs): a target process
// per scenario (bench/http-server.mjs) and fixed-count bursts of fresh-proof requests from
// autocannon in this process.
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { RESOURCE_PATH } from './tokens.mjs';

const serverScript = fileURLToPath(new URL('./http-server.mjs', import.meta.url));

/**
 * Every target's young generation is held at the size V8 itself grows it to under steady load
 * (8 MB semi-spaces: a 16 MB new space, ~1.5 scavenges per 1,000 Fastify requests, bare or
 * paywalled, rounds back to back). Interleaved rounds leave each target idle for seconds
 * between its bursts, and V8 then shrinks it (low allocation throughput) by a different amount
 * in each process: 2 to 16 MB, 1.4 to 12 scavenges per 1,000 requests from one process to the
 * next, up to ~2 µs of CPU per request whatever the paywall did. YOUNG_MB sets another
 * semi-space size; YOUNG_MB=0 leaves V8's sizing alone (the method before). A target's own `env`
 * (startTarget) may set YOUNG_MB too.
 */
function heapArgs(env) {
  const mb = Number(env.YOUNG_MB ?? process.env.YOUNG_MB ?? 8);
  return mb > 0 ? [`--min-semi-space-size=${mb}`, `--max-semi-space-size=${mb}`] : [];
}

/**
 * Start `node bench/http-server.mjs <scenario>`, optionally under a wrapper command (`prefix`:
 * `taskset -c 0`, `valgrind --tool=callgrind …`) or with Node options (`nodeArgs`); `script`: another
 * tree's bench/http-server.mjs (a baseline build). Resolves once it prints its port, with `cpu()`
 * (the process's CPU µs, requests and their span since the last ask; with DIAG=1 in the target's
 * environment also `diag`, see bench/http-server.mjs).
 */
export function startTarget(scenario, { prefix = [], nodeArgs = [], env = {}, script = serverScript } = {}) {
  const argv = [...prefix, process.execPath, ...heapArgs(env), ...nodeArgs, script, scenario];
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, NODE_ENV: 'production', ...env },
  });
  const rl = createInterface({ input: child.stdout });
  const waiters = [];
  const allocWaiters = [];
  return new Promise((resolve, reject) => {
    rl.on('line', (l) => {
      const port = /^PORT=(\d+)/.exec(l);
      if (port) {
        resolve({
          child,
          url: `http://127.0.0.1:${port[1]}`,
          cpu: () =>
            new Promise((r) => {
              waiters.push(r);
              child.stdin.write('cpu\n');
            }),
          // ALLOC=1 targets (bench/http-server.mjs): `alloc` answers the new space's bytes in use
          // and the GCs so far; `alloc-profile[-end <file>]` the profiler's state.
          alloc: (cmd) =>
            new Promise((r) => {
              allocWaiters.push(r);
              child.stdin.write(`${cmd}\n`);
            }),
        });
      }
      const cpu = /^CPU=(\d+) COUNT=(\d+) SPAN=([\d.e-]+)(?: DIAG=(.*))?/.exec(l);
      if (cpu) waiters.shift()?.({ cpu: Number(cpu[1]), count: Number(cpu[2]), span: Number(cpu[3]), diag: cpu[4] && JSON.parse(cpu[4]) });
      const alloc = /^ALLOC=(\d+) GCS=(\d+)/.exec(l);
      if (alloc) allocWaiters.shift()?.({ used: Number(alloc[1]), gcs: Number(alloc[2]) });
      const profile = /^PROFILE=(.*)/.exec(l);
      if (profile) allocWaiters.shift()?.(profile[1]);
    });
    child.on('exit', (c) => reject(new Error(`${scenario} exited ${c}`)));
  });
}

/** Stop a target and wait for it to exit (a callgrind target writes its profile then). */
export function stopTarget(target) {
  return new Promise((resolve) => {
    if (target.child.exitCode !== null || target.child.signalCode !== null) return resolve();
    target.child.removeAllListeners('exit');
    target.child.once('exit', () => resolve());
    target.child.kill('SIGTERM');
  });
}

/** POST one request per token (each carries its own proof), `connections` at a time. */
export function burst(url, tokens, connections) {
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
    autocannon({ url, connections, pipelining: 1, amount: tokens.length, requests: [request] }, (err, res) => {
      if (err) reject(err);
      // autocannon's own duration is coarse for fixed-count runs: time the burst here.
      else resolve({ ...res, wallSeconds: (performance.now() - t0) / 1000 });
    });
  });
}
