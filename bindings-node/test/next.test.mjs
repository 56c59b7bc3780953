// vlexivo/next in a real Next.js app: test/next-app is built with `next build` (production,
// Turbopack), then served by Next's programmatic server in this process (its route handler
// reads the paywall's options from globalThis.__vlexivoNext). Through it: the shared vectors,
// the article's pricing examples with a real client and facilitator, a throwing handler.
// The app gets the package as an install would lay it out (next-build.mjs).
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { answer } from './apps.mjs';
import { vectors } from './helpers.mjs';
import { installAndBuild, nextDir as dir } from './next-build.mjs';
import { vectorSuites } from './vector-suites.mjs';
import { articlePricingSuite, modelPrice, dataPrice } from './article-pricing.mjs';

let url;
let httpServer;
let nextApp;

before(async () => {
  installAndBuild();
  const next = (await import('next')).default;
  nextApp = next({ dev: false, dir, quiet: true });
  await nextApp.prepare();
  const handle = nextApp.getRequestHandler();
  httpServer = createServer((req, res) => handle(req, res));
  await new Promise((r) => httpServer.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${httpServer.address().port}`;
});

after(async () => {
  httpServer?.closeAllConnections?.();
  await new Promise((r) => (httpServer ? httpServer.close(() => r()) : r()));
  await nextApp?.close?.();
});

/** The Next app as apps.mjs' adapters are: a fresh paywall per call (a new options object). */
async function startNext(serverOptions, paywallOptions, counter = { runs: 0, proofs: [] }) {
  // The app has its own copy of the package: server options, not a VlexivoServer of ours.
  assert.equal(Object.getPrototypeOf(serverOptions), Object.prototype, 'next: plain server options');
  globalThis.__vlexivoNext = {
    options: { ...serverOptions, ...paywallOptions },
    answer: (headers, payment, raw) => answer(headers, payment, raw, counter),
  };
  return { url, close: async () => {}, counter, label: 'next' };
}

vectorSuites('next', startNext, { fetchRequests: true });

articlePricingSuite('next', startNext, {
  model: async (req) => modelPrice(await req.json()),
  data: (req) => dataPrice(Object.fromEntries(new URL(req.url).searchParams)),
});

test('next: a handler that throws releases the proof (Next answers 500), the same proof then buys the call', async () => {
  const paywall = vectors('paywall');
  const c = paywall.cases.find((k) => k.requests.length === 1 && k.requests[0].expect.status === 200 && k.requests[0].proof);
  assert.ok(c, 'a vector case with one paid request');
  let now = c.requests[0].now;
  const app = await startNext(
    { apiSecret: paywall.api_secret, facilitatorUrl: paywall.facilitator_url, origin: paywall.origin, leeway: paywall.leeway_secs, clock: () => now },
    { price: c.price, currency: c.currency },
  );
  const r = c.requests[0];
  const thrown = await fetch(app.url + r.path, { method: r.method, headers: { 'vlexivo-proof': r.proof, 'x-handler-throw': '1' } });
  assert.equal(thrown.status, 500);
  assert.equal(thrown.headers.get('vlexivo-receipt'), null);
  const ok = await fetch(app.url + r.path, { method: r.method, headers: { 'vlexivo-proof': r.proof } });
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('vlexivo-receipt'), /tx=/);
  const again = await fetch(app.url + r.path, { method: r.method, headers: { 'vlexivo-proof': r.proof } });
  assert.equal(again.status, 409);
  assert.equal(app.counter.runs, 2);
});
