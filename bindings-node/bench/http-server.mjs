// One benchmark target per process: `node bench/http-server.mjs <scenario>`; prints PORT=….
//   express-bare | express-paywall | express-jose-set | fastify-bare | fastify-paywall |
//   fastify-paywall-read | fastify-napi | hono-bare | hono-noop | hono-paywall | next-bare | next-paywall
// (next-*: test/next-app built first, as bench/http.mjs does.)
import express from 'express';
import Fastify from 'fastify';
import { jwtVerify } from 'jose';
import { VlexivoServer, parseMoney } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { paywall as honoPaywall } from 'vlexivo/hono';
import { createServer } from 'node:http';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { Session } from 'node:inspector';
import { SECRET, RESOURCE_PATH, ORIGIN } from './tokens.mjs';

const scenario = process.argv[2];
process.on('SIGTERM', () => process.exit(0)); // lets --cpu-prof write its profile
// The parent asks for this process's CPU time (user + system, µs) on stdin: CPU per request is
// robust to other load on the machine, where wall-clock req/s is not.
process.stdin.setEncoding('utf8');
// Requests seen since the last `cpu` query, and the span between the first and the last: the
// parent's own clock would include autocannon's 1 s completion ticker.
let count = 0;
let first = 0n;
let last = 0n;
const onRequest = () => {
  last = process.hrtime.bigint();
  if (count++ === 0) first = last;
};
process.stdin.on('data', (d) => {
  for (const line of d.split('\n')) {
    const [cmd, arg] = line.trim().split(' ');
    alloc?.[cmd]?.(arg);
    if (line.trim() === 'cpu') {
      const u = process.cpuUsage();
      const span = count > 1 ? Number(last - first) / 1e9 : 0;
      console.log(`CPU=${u.user + u.system} COUNT=${count} SPAN=${span}${diag ? ` DIAG=${JSON.stringify(diag())}` : ''}`);
      count = 0;
    }
  }
});
// DIAG=1: where the CPU went, with each answer (totals so far; the parent takes differences):
// per thread group (the event loop's thread, the store's page-making helper, the rest: V8's
// compiler and GC helpers, libuv's pool) from /proc schedstat in ns, the event loop thread's
// voluntary context switches (its waits for the next request: requests per wait is how much
// work each wake-up finds) and involuntary ones (preempted), the process's minor page faults,
// and V8's GC pauses by kind.
const diag = process.env.DIAG ? diagnostics() : undefined;
function diagnostics() {
  const gc = { minorMs: 0, majorMs: 0, incrementalMs: 0, weakMs: 0, minor: 0, major: 0 };
  const kinds = { [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak' };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const k = kinds[e.detail?.kind];
      if (k === undefined) continue;
      gc[`${k}Ms`] += e.duration;
      if (k === 'minor' || k === 'major') gc[k]++;
    }
  }).observe({ entryTypes: ['gc'] });
  const task = (tid, file) => readFileSync(`/proc/self/task/${tid}/${file}`, 'utf8');
  return () => {
    const threads = { mainNs: 0, storeNs: 0, otherNs: 0 };
    for (const tid of readdirSync('/proc/self/task')) {
      let ns;
      let comm;
      try {
        ns = Number(task(tid, 'schedstat').split(' ')[0]);
        comm = task(tid, 'comm').trim();
      } catch {
        continue; // the thread ended meanwhile
      }
      if (Number(tid) === process.pid) threads.mainNs += ns;
      else if (comm.startsWith('vlexivo-store')) threads.storeNs += ns;
      else threads.otherNs += ns;
    }
    const status = task(process.pid, 'status');
    const ctx = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    const heap = process.memoryUsage();
    const young = getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space');
    // Every thread's (getrusage): a first touch of a page costs 2-2.6 µs on a nested VM.
    const faults = process.resourceUsage().minorPageFault;
    return { ...threads, waits: ctx('voluntary_ctxt_switches'), preempted: ctx('nonvoluntary_ctxt_switches'), faults, ...gc, heapMb: heap.heapUsed / 2 ** 20, rssMb: heap.rss / 2 ** 20, youngMb: (young?.space_size ?? 0) / 2 ** 20 };
  };
}
// ALLOC=1 (bench/http-alloc.mjs): `alloc` prints the new space's bytes in use and the GCs so
// far: between two answers with no GC in between, their difference is what was allocated.
// `alloc-profile` / `alloc-profile-end <file>`: V8's sampling heap profiler over what is in
// between, objects already collected included (every allocation, not only what survives).
const alloc = process.env.ALLOC ? allocation() : undefined;
function allocation() {
  let gcs = 0;
  new PerformanceObserver((list) => {
    gcs += list.getEntries().length;
  }).observe({ entryTypes: ['gc'] });
  const used = () => getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space').space_used_size;
  const session = new Session();
  session.connect();
  return {
    alloc: () => console.log(`ALLOC=${used()} GCS=${gcs}`),
    'alloc-profile': () =>
      session.post('HeapProfiler.startSampling', { samplingInterval: 128, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true }, (e) =>
        console.log(`PROFILE=${e ? e.message : 'on'}`),
      ),
    'alloc-profile-end': (file) =>
      session.post('HeapProfiler.stopSampling', (e, r) => {
        if (!e) writeFileSync(file, JSON.stringify(r.profile));
        console.log(`PROFILE=${e ? e.message : 'off'}`);
      }),
  };
}
const joseKey = process.env.JOSE_KEY ? Buffer.from(process.env.JOSE_KEY, 'hex') : undefined;
const reply = { result: 'ok', usage: { tokens: 2 } };
// The paywalls' nonce store: memory by default, or any store URL (VLX_BENCH_STORE=redis://…).
const STORE = process.env.VLX_BENCH_STORE
  ? { nonceStore: process.env.VLX_BENCH_STORE }
  : { nonceStore: 'memory', nonceStoreOptions: { capacity: 2_000_000 } };

/** Listen a node:http server, count its requests, print its port. */
function announce(server) {
  server.on('request', onRequest);
  console.log(`PORT=${server.address().port}`);
}

async function main() {
  if (scenario.startsWith('hono')) {
    const app = new Hono();
    if (scenario === 'hono-paywall') {
      app.post(RESOURCE_PATH, honoPaywall({ apiSecret: SECRET, origin: ORIGIN, ...STORE, price: '0.001' }), (c) => c.json(reply));
    } else if (scenario === 'hono-noop') {
      // A control: bare Hono behind one middleware that does nothing. A route with a middleware
      // runs through Hono's compose and @hono/node-server's asynchronous answer, where a lone
      // synchronous handler (hono-bare) takes a shortcut: the paywall pays that too.
      app.post(
        RESOURCE_PATH,
        async (_c, next) => {
          await next();
        },
        (c) => c.json(reply),
      );
    } else {
      app.post(RESOURCE_PATH, (c) => c.json(reply));
    }
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => announce(server));
    return;
  }
  if (scenario.startsWith('next')) {
    // test/next-app's route handler (built by the parent): bare, or behind vlexivo/next. Both
    // read the body, as the paid one's echo does.
    globalThis.__vlexivoNext = {
      bare: scenario === 'next-bare',
      options: { apiSecret: SECRET, origin: ORIGIN, ...STORE, price: '0.001' },
      answer: () => ({ status: 200, body: reply, throws: false }),
      quiet: true,
    };
    const next = (await import('next')).default;
    const app = next({ dev: false, dir: new URL('../test/next-app', import.meta.url).pathname, quiet: true });
    await app.prepare();
    const handle = app.getRequestHandler();
    const server = createServer((req, res) => handle(req, res));
    server.listen(0, '127.0.0.1', () => announce(server));
    return;
  }
  if (scenario.startsWith('express')) {
    const app = express();
    if (scenario === 'express-paywall') {
      const vlx = new VlexivoServer({ apiSecret: SECRET, origin: ORIGIN, ...STORE });
      app.post(RESOURCE_PATH, vlx.paywall({ price: '0.001' }), (req, res) => res.json(reply));
    } else if (scenario === 'express-jose-set') {
      // What one would write without Vlexivo: async jose verify and a growing Set of nonces.
      const seen = new Set();
      const guard = async (req, res, next) => {
        try {
          const { payload } = await jwtVerify(req.headers['vlexivo-proof'] ?? '', joseKey, { algorithms: ['HS256'] });
          if (payload.res !== `POST ${ORIGIN}${RESOURCE_PATH}`) return res.status(402).json({ error: 'token_resource' });
          if (seen.has(payload.jti)) return res.status(409).json({ error: 'token_replayed' });
          seen.add(payload.jti);
          req.vlxPayment = payload;
          next();
        } catch {
          res.status(402).json({ error: 'token_invalid' });
        }
      };
      app.post(RESOURCE_PATH, guard, (req, res) => res.json(reply));
    } else {
      app.post(RESOURCE_PATH, (req, res) => res.json(reply));
    }
    const server = app.listen(0, '127.0.0.1', () => console.log(`PORT=${server.address().port}`));
    server.on('request', onRequest);
  } else {
    const app = Fastify({ logger: false });
    if (scenario.startsWith('fastify-paywall')) {
      await app.register(vlexivoFastify, { apiSecret: SECRET, origin: ORIGIN, ...STORE, price: '0.001' });
    }
    if (scenario === 'fastify-napi') {
      // A control: bare Fastify with a preHandler that makes one small native call (core's
      // decimal parse of the price): what crossing into the addon at all costs a request here.
      app.addHook('onRoute', (route) => {
        route.preHandler = (_request, _reply, done) => {
          if (parseMoney('0.001') !== '0.001') throw new Error('parseMoney');
          done();
        };
      });
    }
    if (scenario === 'fastify-paywall-read') {
      // A handler that reads the payment (the plugin builds it on first read).
      app.post(RESOURCE_PATH, async (request) => {
        if (request.vlxPayment.payer.length !== 42) throw new Error('payer');
        return reply;
      });
    } else {
      app.post(RESOURCE_PATH, async () => reply);
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    app.server.on('request', onRequest);
    console.log(`PORT=${app.server.address().port}`);
  }
}
main();
