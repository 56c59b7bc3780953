// vlexivo/next in a real Next.js app: test/next-app is built with `next build` (production,
// Turbopack), then served by Next's programmatic server in this process (its route handler
// reads the paywall's options from globalThis.__vlexivoNext). Through it: the shared vectors,
// the article's pricing examples with a real client and facilitator, a throwing handler.
//
// The app gets the package as an install would lay it out (node_modules/vlexivo: the manifest,
// dist/, native/index.js, the addon): `serverExternalPackages` only keeps packages in
// node_modules out of the bundle, and a bundled addon does not build.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, symlinkSync, realpathSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { answer } from './apps.mjs';
import { pkgRoot, vectors } from './helpers.mjs';
import { vectorSuites } from './vector-suites.mjs';
import { articlePricingSuite, modelPrice, dataPrice } from './article-pricing.mjs';

const dir = join(pkgRoot, 'test', 'next-app');
let url;
let httpServer;
let nextApp;

/** node_modules/vlexivo of the app, as npm would install the package (the addon linked, not copied). */
function install() {
  const to = join(dir, 'node_modules', 'vlexivo');
  rmSync(to, { recursive: true, force: true });
  mkdirSync(join(to, 'native'), { recursive: true });
  cpSync(join(pkgRoot, 'package.json'), join(to, 'package.json'));
  cpSync(join(pkgRoot, 'dist'), join(to, 'dist'), { recursive: true });
  for (const f of ['index.js', 'index.d.ts']) cpSync(join(pkgRoot, 'native', f), join(to, 'native', f));
  const addon = 'vlexivo.linux-x64-gnu.node';
  symlinkSync(realpathSync(join(pkgRoot, 'native', addon)), join(to, 'native', addon));
}

before(async () => {
  install();
  const build = spawnSync(process.execPath, [join(pkgRoot, 'node_modules', 'next', 'dist', 'bin', 'next'), 'build'], {
    cwd: dir,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' },
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(build.status, 0, `next build failed:\n${build.stdout}\n${build.stderr}`);
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
