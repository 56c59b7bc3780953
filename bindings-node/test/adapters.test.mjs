// Adapter-specific wiring: per-route settings and opt-outs (Fastify route config, Hapi route
// plugins), shared servers, CORS exposure, and the Express middleware mounted per route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import express from 'express';
import express4 from 'express4';
import Fastify from 'fastify';
import Hapi from '@hapi/hapi';
import { VlexivoServer, Wallet } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';
import { plugin as vlexivoHapi } from 'vlexivo/hapi';
import { mintProofToken } from './tokens.mjs';
import { listenExpress, listenFastify, listenHapi } from './helpers.mjs';

/** A browser's cross-origin request carries Origin; only then are our headers exposed. */
const ORIGIN = 'https://app.example';

const require = createRequire(import.meta.url);
const native = require('../native/index.js');
const secret = 'sk_test_' + Buffer.alloc(32, 5).toString('base64url');
const mint = (res, amt = '0.01') =>
  mintProofToken(secret, { sub: Wallet.generate().address, amt, res, iat: Math.floor(Date.now() / 1000) });

async function price(url, method = 'GET') {
  const r = await fetch(url, { method });
  return r.status === 402 ? (await r.json()).price : r.status;
}

test('fastify: plugin default, per-route price, free route, routes outside the scope', async () => {
  const app = Fastify();
  const vlx = new VlexivoServer({ apiSecret: secret });
  app.get('/before', async () => ({ free: true })); // declared before registration: not paywalled
  await app.register(async (paid) => {
    await paid.register(vlexivoFastify, { server: vlx, price: '0.001' });
    paid.get('/a', async (req) => ({ payer: req.vlxPayment?.payer ?? null }));
    paid.get('/b', { config: { vlexivo: { price: '0.01' } } }, async () => ({ ok: true }));
    paid.get('/c', { config: { vlexivo: false } }, async () => ({ free: true }));
  });
  app.get('/outside', async () => ({ free: true }));
  const s = await listenFastify(app);
  try {
    assert.equal(await price(`${s.url}/a`), '0.001');
    assert.equal(await price(`${s.url}/b`), '0.01');
    assert.equal(await price(`${s.url}/c`), 200);
    assert.equal(await price(`${s.url}/before`), 200);
    // skip-override: hooks reach the registering scope's routes, not its siblings.
    assert.equal(await price(`${s.url}/outside`), 200);
    const r = await fetch(`${s.url}/b`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/b`) } });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('vlexivo-receipt'), /amount=0.01/);
    const under = await fetch(`${s.url}/b`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/b`, '0.001') } });
    assert.equal(under.status, 402);
    assert.equal((await under.json()).error, 'token_underpaid');
  } finally {
    await s.close();
  }
});

test('fastify: request.vlxPayment is built on first read, the same object after, null when unpaid', async () => {
  const app = Fastify();
  await app.register(vlexivoFastify, { apiSecret: secret, price: '0.01' });
  app.get('/read', async (request) => {
    const a = request.vlxPayment;
    return { same: a === request.vlxPayment, keys: Object.keys(a), json: JSON.parse(JSON.stringify(a)) };
  });
  app.get('/skip', async () => ({ ok: true }));
  app.get('/free', { config: { vlexivo: false } }, async (request) => ({ payment: request.vlxPayment }));
  // Replacing the payment is the application's business; the nonce is still released on a 5xx.
  app.get('/replace', async (request, reply) => {
    request.vlxPayment = null;
    return reply.code(503).send({ payment: request.vlxPayment });
  });
  const s = await listenFastify(app);
  try {
    const r = await fetch(`${s.url}/read`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/read`) } });
    const body = await r.json();
    assert.equal(body.same, true);
    assert.deepEqual(body.keys, ['payer', 'amount', 'currency', 'txHash', 'nonce', 'paidAt', 'expiresAt', 'resource', 'storeKey', 'receipt']);
    assert.equal(body.json.amount, '0.01');
    assert.equal(body.json.resource, `GET ${s.url}/read`);
    assert.equal(typeof body.json.paidAt, 'number');
    // The receipt header is the payment's receipt, whether or not the handler read it.
    assert.equal(r.headers.get('vlexivo-receipt'), body.json.receipt);
    const skip = await fetch(`${s.url}/skip`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/skip`) } });
    assert.equal(skip.status, 200);
    assert.match(skip.headers.get('vlexivo-receipt'), /^tx=0x[0-9a-f]{64}; amount=0.01; currency=usd; payer=0x[0-9a-fA-F]{40}; nonce=/);
    assert.deepEqual(await (await fetch(`${s.url}/free`)).json(), { payment: null });
    const t = mint(`GET ${s.url}/replace`);
    for (let i = 0; i < 2; i++) {
      const x = await fetch(`${s.url}/replace`, { headers: { 'vlexivo-proof': t } });
      assert.equal(x.status, 503);
      assert.deepEqual(await x.json(), { payment: null });
    }
  } finally {
    await s.close();
  }
});

// A client that goes away decides nothing (the handler's outcome does): test/policy.test.mjs.

test('fastify: a 5xx releases the proof under fastify.inject() too', async () => {
  const app = Fastify();
  await app.register(vlexivoFastify, { apiSecret: secret, price: '0.01' });
  app.get('/boom', async () => {
    throw new Error('x');
  });
  app.get('/ok', async () => ({ ok: true }));
  const t = mint('GET http://localhost/boom');
  for (let i = 0; i < 2; i++) {
    assert.equal((await app.inject({ method: 'GET', url: '/boom', headers: { 'vlexivo-proof': t } })).statusCode, 500);
    await new Promise((r) => setImmediate(r)); // inject's response emits close on the next tick
  }
  const ok = mint('GET http://localhost/ok');
  assert.equal((await app.inject({ method: 'GET', url: '/ok', headers: { 'vlexivo-proof': ok } })).statusCode, 200);
  await new Promise((r) => setImmediate(r));
  assert.equal((await app.inject({ method: 'GET', url: '/ok', headers: { 'vlexivo-proof': ok } })).statusCode, 409);
  await app.close();
});

test('fastify: a hijacked reply that writes its own response still carries the receipt once', async () => {
  // The receipt normally joins Fastify's own header object; a hijacked reply never hands that
  // object to writeHead, so the receipt must go on the response itself.
  const app = Fastify();
  await app.register(vlexivoFastify, { apiSecret: secret, price: '0.01' });
  const own = { 'content-type': 'application/json' }; // one object for every request, as apps do
  app.get('/own-headers', async (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, own);
    reply.raw.end(JSON.stringify({ payer: request.vlxPayment.payer }));
  });
  app.get('/implicit', async (request, reply) => {
    reply.hijack();
    reply.raw.setHeader('content-type', 'text/plain');
    reply.raw.end('ok');
  });
  app.get('/with-reason', async (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(201, 'Made', { 'content-type': 'text/plain' });
    reply.raw.end('made');
  });
  app.get('/fails', async (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(500, { 'content-type': 'text/plain' });
    reply.raw.end('no');
  });
  app.get('/free', { config: { vlexivo: false } }, async (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, own);
    reply.raw.end('{}');
  });
  const s = await listenFastify(app);
  try {
    for (const path of ['/own-headers', '/implicit', '/with-reason']) {
      const r = await fetch(`${s.url}${path}`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}${path}`) } });
      assert.ok(r.status === 200 || r.status === 201, `${path}: ${r.status}`);
      assert.match(r.headers.get('vlexivo-receipt') ?? '', /^tx=0x[0-9a-f]{64}; amount=0.01; currency=usd; payer=0x[0-9a-fA-F]{40}; nonce=[^,]+$/, path);
      await r.text();
    }
    // The application's own header object is left as it was: a free route sending it after a
    // paid one carries no receipt.
    assert.deepEqual(own, { 'content-type': 'application/json' });
    const free = await fetch(`${s.url}/free`);
    assert.equal(free.status, 200);
    assert.equal(free.headers.get('vlexivo-receipt'), null);
    // A 5xx releases the payment: no receipt, and the same proof buys the call again.
    const t = mint(`GET ${s.url}/fails`);
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${s.url}/fails`, { headers: { 'vlexivo-proof': t } });
      assert.equal(r.status, 500);
      assert.equal(r.headers.get('vlexivo-receipt'), null);
      await r.text();
    }
  } finally {
    await s.close();
  }
});

test('fastify: a bad per-route price fails at route registration', async () => {
  const app = Fastify();
  await app.register(vlexivoFastify, { apiSecret: secret });
  assert.throws(() => app.get('/x', { config: { vlexivo: { price: 'abc' } } }, async () => 1), (e) => e.code === 'price_invalid');
  await app.close();
});

test('hapi: plugin default, per-route price, free route; payment on request.plugins.vlexivo', async () => {
  const server = Hapi.server({ port: 0, host: '127.0.0.1' });
  await server.register({ plugin: vlexivoHapi, options: { apiSecret: secret, price: '0.001' } });
  server.route({ method: 'GET', path: '/a', handler: (req) => ({ p: req.plugins.vlexivo?.payment?.amount ?? null, same: req.plugins.vlexivo?.payment === req.vlxPayment }) });
  server.route({ method: 'GET', path: '/b', options: { plugins: { vlexivo: { price: 0.01 } } }, handler: () => ({ ok: true }) });
  server.route({ method: 'GET', path: '/c', options: { plugins: { vlexivo: false } }, handler: () => ({ free: true }) });
  server.route({ method: 'GET', path: '/boom', handler: () => { throw new Error('x'); } });
  const s = await listenHapi(server);
  try {
    assert.equal(await price(`${s.url}/a`), '0.001');
    assert.equal(await price(`${s.url}/b`), '0.01');
    assert.equal(await price(`${s.url}/c`), 200);
    const r = await fetch(`${s.url}/a`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/a`), origin: ORIGIN } });
    assert.deepEqual(await r.json(), { p: '0.01', same: true });
    assert.match(r.headers.get('vlexivo-receipt'), /amount=0.01/);
    assert.match(r.headers.get('access-control-expose-headers'), /Vlexivo-Receipt/);
    // Not a CORS request (no Origin): nothing to expose.
    const plain = await fetch(`${s.url}/a`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/a`) } });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get('access-control-expose-headers'), null);
    assert.equal((await fetch(`${s.url}/a`)).headers.get('access-control-expose-headers'), null);
    // A failing handler (Boom 500) releases: the same proof works once more.
    const t = mint(`GET ${s.url}/boom`);
    assert.equal((await fetch(`${s.url}/boom`, { headers: { 'vlexivo-proof': t } })).status, 500);
    assert.equal((await fetch(`${s.url}/boom`, { headers: { 'vlexivo-proof': t } })).status, 500);
  } finally {
    await s.close();
  }
});

for (const [name, ex] of [['express5', express], ['express4', express4]]) {
  test(`${name}: per-route middleware, existing CORS expose header kept, free routes`, async () => {
    const app = ex();
    const vlx = new VlexivoServer({ apiSecret: secret });
    app.use((_req, res, next) => {
      res.setHeader('Access-Control-Expose-Headers', 'X-Request-Id');
      next();
    });
    app.get('/paid', vlx.paywall({ price: '0.01' }), (req, res) => res.json({ payer: req.vlxPayment.payer }));
    app.get('/free', (_req, res) => res.json({ free: true }));
    const s = await listenExpress(app);
    try {
      const ch = await fetch(`${s.url}/paid`, { headers: { origin: ORIGIN } });
      assert.equal(ch.status, 402);
      assert.equal(ch.headers.get('access-control-expose-headers'), 'X-Request-Id, Vlexivo-Challenge, Vlexivo-Receipt');
      assert.equal(ch.headers.get('cache-control'), 'no-store');
      const ok = await fetch(`${s.url}/paid`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/paid`), origin: ORIGIN } });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('access-control-expose-headers'), 'X-Request-Id, Vlexivo-Challenge, Vlexivo-Receipt');
      // Without Origin the app's own value is left as it was.
      const plain = await fetch(`${s.url}/paid`, { headers: { 'vlexivo-proof': mint(`GET ${s.url}/paid`) } });
      assert.equal(plain.headers.get('access-control-expose-headers'), 'X-Request-Id');
      assert.equal((await fetch(`${s.url}/free`)).status, 200);
    } finally {
      await s.close();
    }
  });
}

test('paid facts survive any claim content (separator in a signed claim falls back to the array form)', async () => {
  const vlx = new VlexivoServer({ apiSecret: secret });
  const route = vlx.route({ price: '0.001' });
  const now = Math.floor(Date.now() / 1000);
  const AT = { host: 'api.test', secure: false };
  const weird = mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.001', res: 'GET http://api.test/w', iat: now, txh: 'tx\u001fwith;sep' });
  const p = route.decide(weird, 'GET', '/w', AT, undefined);
  assert.equal(p.txHash, 'tx\u001fwith;sep');
  assert.equal(p.amount, '0.001');
  assert.equal(p.paidAt, now);
  // Non-ASCII text (a signed claim, a path) cannot ride the one-byte line: exact via the array form.
  const uni = mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.001', res: 'GET http://api.test/caf\u00e9/\u6771', iat: now, txh: 'tx-\u00e9\u6771-\u{1f600}' });
  const u = route.decide(uni, 'GET', '/caf\u00e9/\u6771', AT, undefined);
  assert.equal(u.txHash, 'tx-\u00e9\u6771-\u{1f600}');
  assert.equal(u.resource, 'GET http://api.test/caf\u00e9/\u6771');
  assert.ok(u.receipt.startsWith('tx=tx-\u00e9\u6771-\u{1f600}; amount=0.001;'));
  const normal = mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.002', res: 'GET http://api.test/w', iat: now });
  const q = route.decide(normal, 'GET', '/w', AT, undefined);
  assert.deepEqual(Object.keys(q), ['payer', 'amount', 'currency', 'txHash', 'nonce', 'paidAt', 'expiresAt', 'resource', 'storeKey', 'receipt']);
  assert.equal(q.expiresAt, now + 300);
  assert.equal(typeof q.paidAt, 'number');
  assert.match(q.receipt, /^tx=0x[0-9a-f]{64}; amount=0.002; currency=usd; payer=0x[0-9a-fA-F]{40}; nonce=/);
  assert.match(q.storeKey, new RegExp(`^${vlx.account}:${q.nonce}~[0-9a-f]{16}$`));
});

test('every adapter: a browser without a proof gets core\'s HTML 402 page; fetch, SDKs and proofs keep JSON', async () => {
  const browser = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
  const vlx = new VlexivoServer({ apiSecret: secret, origin: 'http://api.test' });
  const ex = express();
  ex.get('/paid', vlx.paywall({ price: '0.25' }), (_req, res) => res.json({ ok: true }));
  const fa = Fastify();
  await fa.register(vlexivoFastify, { server: vlx, price: '0.25' });
  fa.get('/paid', async () => ({ ok: true }));
  const ha = Hapi.server({ port: 0, host: '127.0.0.1' });
  await ha.register({ plugin: vlexivoHapi, options: { server: vlx, price: '0.25' } });
  ha.route({ method: 'GET', path: '/paid', handler: () => ({ ok: true }) });
  const apps = [await listenExpress(ex), await listenFastify(fa), await listenHapi(ha)];
  try {
    for (const app of apps) {
      const page = await fetch(`${app.url}/paid`, { headers: { accept: browser } });
      assert.equal(page.status, 402, app.url);
      assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.ok(page.headers.get('vlexivo-challenge'));
      assert.ok(!page.headers.get('content-security-policy').includes('unsafe-inline'));
      const html = await page.text();
      assert.match(html, /<p class="price" id="price">0\.25 <abbr title="usd">USD<\/abbr><\/p>/);
      assert.match(html, /GET http:\/\/api\.test\/paid/);
      for (const accept of ['*/*', 'application/json']) {
        const r = await fetch(`${app.url}/paid`, { headers: { accept } });
        assert.equal(r.status, 402);
        assert.match(r.headers.get('content-type'), /^application\/json/);
        assert.equal((await r.json()).price, '0.25');
      }
      // A proof that fails is answered in JSON even to a browser.
      const bad = await fetch(`${app.url}/paid`, { headers: { accept: browser, 'vlexivo-proof': 'x.y.z' } });
      assert.equal(bad.status, 402);
      assert.match(bad.headers.get('content-type'), /^application\/json/);
      await bad.arrayBuffer();
    }
  } finally {
    for (const app of apps) await app.close();
  }
});
