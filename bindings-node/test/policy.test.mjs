// Core's response policy executed by every adapter on real servers (proofs signed with the
// provider's own HS256 key, as the facilitator would): only CORS preflights are free, HEAD pays
// as GET, the nonce's fate follows the handler's outcome and never the connection, receipts go
// out only with payments that are kept, and paywalls stacked on one request ask one price once
// and consume one nonce. Each case names the issue-15 item it covers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import http from 'node:http';
import express5 from 'express';
import express4 from 'express4';
import Fastify from 'fastify';
import Hapi from '@hapi/hapi';
import { VlexivoServer, Wallet } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';
import { plugin as vlexivoHapi } from 'vlexivo/hapi';
import { listenExpress, listenFastify, listenHapi } from './helpers.mjs';
import { mintProofToken } from './tokens.mjs';

const require = createRequire(import.meta.url);
const native = require('../native/index.js');
const secret = 'sk_test_' + Buffer.alloc(32, 7).toString('base64url');
const ORIGIN = 'http://api.test';
const mint = (res, amt = '0.01') =>
  mintProofToken(secret, { sub: Wallet.generate().address, amt, res: res.replace(' /', ` ${ORIGIN}/`), iat: Math.floor(Date.now() / 1000) });
const server = () => new VlexivoServer({ apiSecret: secret, origin: ORIGIN });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function call(url, { method = 'GET', proof, headers = {} } = {}) {
  const res = await fetch(url, { method, headers: { ...headers, ...(proof ? { 'vlexivo-proof': proof } : {}) } });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

/** Send a request and cut the connection once the handler has started (`started` resolves). */
function cutOff(url, proof, started) {
  const u = new URL(url);
  const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'GET', headers: { 'vlexivo-proof': proof } });
  req.on('error', () => {});
  req.end();
  return started.then(() => req.destroy());
}

/** A gate the test opens to let a waiting handler finish. */
function latch() {
  let open;
  const opened = new Promise((r) => (open = r));
  return { opened, open };
}

/** In a handler: the first run waits (its gate in `gates`) until the test lets it finish. */
async function firstRunWaits(gates) {
  if (gates.length > 0) return false;
  const g = latch();
  gates.push(g);
  await g.opened;
  return true;
}

/** Send a paid request, cut the connection while its handler runs, then let the handler end. */
async function leaveWhileRunning(url, proof, gates) {
  const started = new Promise((r) => {
    const iv = setInterval(() => gates.length === 1 && (clearInterval(iv), r()), 5);
  });
  await cutOff(url, proof, started);
  await sleep(50);
  gates[0].open();
  await sleep(50);
}

/** The proof's answer once the cut-off run gave it back: the release comes after the handler's
 * end, which a loaded machine may not have reached yet (409 meanwhile: the nonce is still held). */
async function onceReleased(url, proof) {
  for (let i = 0; i < 200; i++) {
    const r = await call(url, { proof });
    if (r.status !== 409) return r;
    await sleep(25);
  }
  assert.fail('the proof was never given back (409 for 5 s)');
}

/** Cut off a paid request whose handler then fails: the same proof buys the next run, once. */
async function failedRunGivesTheProofBack(url, gates, runs) {
  const p = mint('GET ' + new URL(url).pathname);
  await leaveWhileRunning(url, p, gates);
  assert.equal((await onceReleased(url, p)).status, 200, 'the failed run gave the payment back');
  assert.equal((await call(url, { proof: p })).status, 409);
  assert.equal(runs(), 2);
}

// --- Express (4 and 5) ----------------------------------------------------------------------

for (const [name, express] of [['express5', express5], ['express4', express4]]) {
  test(`${name}: an exception after a complete 200 keeps the nonce (item 1)`, async () => {
    const app = express();
    const vlx = server();
    let runs = 0;
    app.get('/x', vlx.paywall({ price: '0.01' }), (req, res) => {
      runs++;
      res.json({ ok: true });
      throw new Error('after the response');
    });
    app.use(vlx.errorHandler());
    app.use((err, _req, res, _next) => (res.headersSent ? undefined : res.status(500).end()));
    const s = await listenExpress(app);
    try {
      const p = mint('GET /x');
      assert.equal((await call(`${s.url}/x`, { proof: p })).status, 200);
      for (let i = 0; i < 2; i++) assert.equal((await call(`${s.url}/x`, { proof: p })).status, 409);
      assert.equal(runs, 1, 'one payment, one run');
    } finally {
      await s.close();
    }
  });

  test(`${name}: a throw before the response releases; a 5xx releases without a receipt`, async () => {
    const app = express();
    const vlx = server();
    app.get('/throw', vlx.paywall({ price: '0.01' }), () => {
      throw new Error('before the response');
    });
    app.get('/down', vlx.paywall({ price: '0.01' }), (_req, res) => res.status(503).json({ down: true }));
    app.get('/teapot', vlx.paywall({ price: '0.01' }), (_req, res) => res.status(418).json({ short: true }));
    app.use(vlx.errorHandler());
    // The app's own handler answers a thrown error with a 4xx: the throw, not the status, decides.
    app.use((_err, _req, res, _next) => res.status(400).json({ error: 'bad' }));
    const s = await listenExpress(app);
    try {
      const t = mint('GET /throw');
      for (let i = 0; i < 2; i++) assert.equal((await call(`${s.url}/throw`, { proof: t })).status, 400);
      const d = mint('GET /down');
      for (let i = 0; i < 2; i++) {
        const r = await call(`${s.url}/down`, { proof: d });
        assert.equal(r.status, 503);
        assert.equal(r.headers.get('vlexivo-receipt'), null, 'no receipt for a released payment');
      }
      const k = mint('GET /teapot');
      const r = await call(`${s.url}/teapot`, { proof: k });
      assert.equal(r.status, 418);
      assert.match(r.headers.get('vlexivo-receipt'), /^tx=/);
      assert.equal((await call(`${s.url}/teapot`, { proof: k })).status, 409);
    } finally {
      await s.close();
    }
  });

  test(`${name}: a client that goes away does not free the nonce; the handler's end decides (item 2)`, async () => {
    const app = express();
    const vlx = server();
    let runs = 0;
    const gates = [];
    app.get('/slow', vlx.paywall({ price: '0.01' }), async (req, res, next) => {
      runs++;
      await firstRunWaits(gates);
      res.json({ late: true });
    });
    app.use(vlx.errorHandler());
    app.use((_err, _req, res, _next) => res.status(500).end());
    const s = await listenExpress(app);
    try {
      // Cut off while the handler runs; the handler then completes its 200: the payment is spent.
      const p = mint('GET /slow');
      await leaveWhileRunning(`${s.url}/slow`, p, gates);
      const again = await call(`${s.url}/slow`, { proof: p });
      assert.equal(again.status, 409, 'released by the disconnect: bought another run');
      assert.equal(runs, 1);
    } finally {
      await s.close();
    }
  });

  test(`${name}: a handler that fails after its client left releases the nonce`, async () => {
    const app = express();
    const vlx = server();
    let runs = 0;
    const gates = [];
    app.get('/slow', vlx.paywall({ price: '0.01' }), async (_req, res, next) => {
      runs++;
      if (await firstRunWaits(gates)) return next(new Error('failed late'));
      res.json({ second: true });
    });
    app.use(vlx.errorHandler());
    app.use((_err, _req, res, _next) => res.status(500).end());
    const s = await listenExpress(app);
    try {
      await failedRunGivesTheProofBack(`${s.url}/slow`, gates, () => runs);
    } finally {
      await s.close();
    }
  });

  test(`${name}: OPTIONS pays unless it is a CORS preflight, also through app.use (item 3)`, async () => {
    const app = express();
    const vlx = server();
    let runs = 0;
    // A proxy-style handler that answers every method with paid content.
    app.use('/proxy', vlx.paywall({ price: '0.01' }), (_req, res) => {
      runs++;
      res.json({ paid: 'content' });
    });
    const s = await listenExpress(app);
    try {
      const plain = await call(`${s.url}/proxy/x`, { method: 'OPTIONS' });
      assert.equal(plain.status, 402);
      assert.equal(plain.body.error, 'payment_required');
      assert.equal(runs, 0);
      const pre = await call(`${s.url}/proxy/x`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
      assert.equal(pre.status, 200);
      assert.equal(runs, 1, 'a preflight passes unpaid');
      assert.throws(() => vlx.paywall({ price: '0.01', freeMethods: ['OPTIONS'] }), (e) => e.code === 'config_invalid' && /freeMethods/.test(e.message));
    } finally {
      await s.close();
    }
  });

  test(`${name}: HEAD costs what GET costs, bound to HEAD`, async () => {
    const app = express();
    const vlx = server();
    app.get('/h', vlx.paywall({ price: '0.004' }), (_req, res) => res.json({ ok: true }));
    const s = await listenExpress(app);
    try {
      const r = await fetch(`${s.url}/h`, { method: 'HEAD' });
      assert.equal(r.status, 402);
      assert.equal(native.parsePaymentRequired(402, { 'vlexivo-challenge': r.headers.get('vlexivo-challenge') }).method, 'HEAD');
      assert.equal((await fetch(`${s.url}/h`, { method: 'HEAD', headers: { 'vlexivo-proof': mint('GET /h', '0.004') } })).status, 402);
      const ok = await fetch(`${s.url}/h`, { method: 'HEAD', headers: { 'vlexivo-proof': mint('HEAD /h', '0.004') } });
      assert.equal(ok.status, 200);
      assert.match(ok.headers.get('vlexivo-receipt'), /amount=0.004/);
    } finally {
      await s.close();
    }
  });

  // The paywall follows an Express response through hooks on the outermost app's
  // `app.response` and keeps `req.vlxPayment` behind an accessor on its `app.request`: a mounted
  // app inherits both, whichever app the paywall and the handler run in.
  test(`${name}: mounted apps: paywall in the sub-app and handler in the parent, and the reverse`, async () => {
    const app = express();
    const sub = express();
    const inner = express();
    const vlx = server();
    const runs = { parent: 0, inner: 0 };
    // The sub-app only takes the payment; its router falls through to the parent's route.
    sub.use(vlx.paywall({ price: '0.01' }));
    app.use('/s', sub);
    app.get('/s/x', (req, res) => {
      runs.parent++;
      const again = req.vlxPayment;
      res.status(req.headers['x-fail'] ? 500 : 200).json({ payer: req.vlxPayment.payer, same: again === req.vlxPayment });
    });
    // The reverse: the parent's paywall, the handler in a mounted app.
    inner.get('/y', (req, res) => {
      runs.inner++;
      res.json({ amount: req.vlxPayment.amount });
    });
    app.use('/t', vlx.paywall({ price: '0.02' }), inner);
    app.get('/free', (req, res) => res.json({ payment: req.vlxPayment ?? null }));
    const s = await listenExpress(app);
    try {
      const p = mint('GET /s/x');
      const ok = await call(`${s.url}/s/x`, { proof: p });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.same, true, 'one payment object per request');
      assert.match(ok.body.payer, /^0x[0-9a-fA-F]{40}$/);
      assert.match(ok.headers.get('vlexivo-receipt'), /amount=0.01/);
      assert.equal((await call(`${s.url}/s/x`, { proof: p })).status, 409);
      const f = mint('GET /s/x');
      for (let i = 0; i < 2; i++) {
        const r = await call(`${s.url}/s/x`, { proof: f, headers: { 'x-fail': '1' } });
        assert.equal(r.status, 500, 'a 5xx gives the proof back each time');
        assert.equal(r.headers.get('vlexivo-receipt'), null);
      }
      const q = mint('GET /t/y', '0.02');
      const y = await call(`${s.url}/t/y`, { proof: q });
      assert.equal(y.status, 200);
      assert.deepEqual(y.body, { amount: '0.02' });
      assert.match(y.headers.get('vlexivo-receipt'), /amount=0.02/);
      assert.equal((await call(`${s.url}/t/y`, { proof: q })).status, 409);
      assert.deepEqual(runs, { parent: 3, inner: 1 });
      assert.deepEqual((await call(`${s.url}/free`)).body, { payment: null }, 'no payment on a free route of the same app');
    } finally {
      await s.close();
    }
  });

  test(`${name}: other writeHead/end hooks on the response keep working; the handler may set req.vlxPayment`, async () => {
    const app = express();
    const vlx = server();
    let ends = 0;
    // A per-response hook in front of ours (as on-headers or compression install them).
    app.use((_req, res, next) => {
      const writeHead = res.writeHead;
      const end = res.end;
      res.writeHead = function (...a) {
        this.setHeader('x-hooked', 'yes');
        return writeHead.apply(this, a);
      };
      res.end = function (...a) {
        ends++;
        return end.apply(this, a);
      };
      next();
    });
    app.get('/h', vlx.paywall({ price: '0.01' }), (req, res) => {
      const own = { replaced: true };
      req.vlxPayment = own;
      res.json({ kept: req.vlxPayment === own });
    });
    const s = await listenExpress(app);
    try {
      const p = mint('GET /h');
      const r = await call(`${s.url}/h`, { proof: p });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-hooked'), 'yes');
      assert.match(r.headers.get('vlexivo-receipt'), /^tx=/);
      assert.deepEqual(r.body, { kept: true });
      assert.equal((await call(`${s.url}/h`, { proof: p })).status, 409, 'the payment was kept through both hooks');
      assert.equal(ends, 2);
    } finally {
      await s.close();
    }
  });

  test(`${name}: nested paywalls ask the effective price once and consume once (item 5)`, async () => {
    const app = express();
    const vlx = server();
    const runs = { premium: 0, basic: 0, deep: 0 };
    app.use('/zone', vlx.paywall({ price: '0.001' }));
    app.get('/zone/premium', vlx.paywall({ price: '0.05' }), (req, res) => {
      runs.premium++;
      res.json({ amount: req.vlxPayment.amount });
    });
    app.get('/zone/basic', (_req, res) => {
      runs.basic++;
      res.json({ basic: true });
    });
    // The same through a nested router, its paywall priced by a resolver.
    const router = express.Router();
    router.get('/deep', vlx.paywall({ priceResolver: async () => '0.02' }), (_req, res) => {
      runs.deep++;
      res.json({ deep: true });
    });
    app.use('/zone/r', router);
    const s = await listenExpress(app);
    try {
      const first = await call(`${s.url}/zone/premium`);
      assert.equal(first.status, 402);
      assert.equal(first.body.price, '0.05', 'the first 402 asks the effective price');
      assert.equal((await call(`${s.url}/zone/basic`)).body.price, '0.001');
      assert.equal((await call(`${s.url}/zone/r/deep`)).body.price, '0.02');
      // The outer paywall's price does not buy the inner route (it did before the fix).
      const cheap = await call(`${s.url}/zone/premium`, { proof: mint('GET /zone/premium', '0.001') });
      assert.equal(cheap.status, 402);
      assert.equal(cheap.body.error, 'token_underpaid');
      assert.equal(runs.premium, 0);
      const p = mint('GET /zone/premium', '0.05');
      const ok = await call(`${s.url}/zone/premium`, { proof: p });
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.body, { amount: '0.05' });
      assert.equal(ok.headers.get('vlexivo-receipt').split('tx=').length, 2, 'one receipt');
      assert.equal((await call(`${s.url}/zone/premium`, { proof: p })).status, 409);
      assert.equal(runs.premium, 1);
      const d = await call(`${s.url}/zone/r/deep`, { proof: mint('GET /zone/r/deep', '0.02') });
      assert.equal(d.status, 200);
      assert.equal(runs.deep, 1);
    } finally {
      await s.close();
    }
  });
}

test('express5: a paywall the router walk cannot see checks the amount itself and asks once more', async () => {
  // A sub-app is opaque to the walk (Express mounts it through a closure): its paywall checks
  // the payment the outer one consumed, gives the nonce back if it falls short, asks its price.
  const app = express5();
  const sub = express5();
  const vlx = server();
  let runs = 0;
  sub.get('/premium', vlx.paywall({ price: '0.05' }), (_req, res) => {
    runs++;
    res.json({ ok: true });
  });
  app.use('/zone', vlx.paywall({ price: '0.001' }), sub);
  const s = await listenExpress(app);
  try {
    const cheap = mint('GET /zone/premium', '0.001');
    const r = await call(`${s.url}/zone/premium`, { proof: cheap });
    assert.equal(r.status, 402);
    assert.equal(r.body.error, 'token_underpaid');
    assert.equal(r.body.price, '0.05');
    assert.equal(r.headers.get('vlexivo-receipt'), null);
    // Given back: the same proof is not spent (it still buys what it paid for elsewhere).
    assert.equal((await call(`${s.url}/zone/premium`, { proof: cheap })).body.error, 'token_underpaid');
    const ok = await call(`${s.url}/zone/premium`, { proof: mint('GET /zone/premium', '0.05') });
    assert.equal(ok.status, 200);
    assert.equal(runs, 1);
  } finally {
    await s.close();
  }
});

test('express: without a configured origin the request\'s own Host is bound', async () => {
  const app = express5();
  const vlx = new VlexivoServer({ apiSecret: secret });
  app.get('/o', vlx.paywall({ price: '0.01' }), (_req, res) => res.json({ ok: true }));
  const s = await listenExpress(app);
  try {
    const r = await call(`${s.url}/o`);
    assert.equal(r.body.resource, `GET ${s.url}/o`);
    const t = (res) => mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.01', res, iat: Math.floor(Date.now() / 1000) });
    assert.equal((await call(`${s.url}/o`, { proof: t('GET http://evil.example/o') })).body.error, 'token_resource');
    assert.equal((await call(`${s.url}/o`, { proof: t(`GET ${s.url}/o`) })).status, 200);
  } finally {
    await s.close();
  }
});

// --- Fastify --------------------------------------------------------------------------------

test('fastify: an exception after a complete response keeps the nonce; a throw before releases (item 1)', async () => {
  const app = Fastify();
  let runs = 0;
  await app.register(vlexivoFastify, { server: server(), price: '0.01' });
  app.get('/after', async (_request, reply) => {
    runs++;
    await reply.send({ ok: true });
    throw new Error('after the response');
  });
  app.get('/before', async () => {
    throw new Error('before the response');
  });
  const s = await listenFastify(app);
  try {
    const p = mint('GET /after');
    assert.equal((await call(`${s.url}/after`, { proof: p })).status, 200);
    await sleep(20);
    assert.equal((await call(`${s.url}/after`, { proof: p })).status, 409);
    assert.equal(runs, 1);
    const b = mint('GET /before');
    for (let i = 0; i < 2; i++) {
      const r = await call(`${s.url}/before`, { proof: b });
      assert.equal(r.status, 500);
      assert.equal(r.headers.get('vlexivo-receipt'), null);
    }
  } finally {
    await s.close();
  }
});

test('fastify: a client that goes away does not free the nonce (item 2)', async () => {
  const app = Fastify();
  let runs = 0;
  const gates = [];
  await app.register(vlexivoFastify, { server: server(), price: '0.01' });
  app.get('/slow', async () => {
    runs++;
    await firstRunWaits(gates);
    return { late: true };
  });
  const s = await listenFastify(app);
  try {
    const p = mint('GET /slow');
    await leaveWhileRunning(`${s.url}/slow`, p, gates);
    assert.equal((await call(`${s.url}/slow`, { proof: p })).status, 409);
    assert.equal(runs, 1);
  } finally {
    await s.close();
  }
});

test('fastify: a handler that fails after its client left releases the nonce', async () => {
  const app = Fastify();
  let runs = 0;
  const gates = [];
  await app.register(vlexivoFastify, { server: server(), price: '0.01' });
  app.get('/slow', async () => {
    runs++;
    if (await firstRunWaits(gates)) throw new Error('failed late');
    return { second: true };
  });
  const s = await listenFastify(app);
  try {
    await failedRunGivesTheProofBack(`${s.url}/slow`, gates, () => runs);
  } finally {
    await s.close();
  }
});

test('fastify: the status the handler sets decides release and receipt (4xx kept, 5xx released)', async () => {
  const app = Fastify();
  await app.register(vlexivoFastify, { server: server(), price: '0.01' });
  app.get('/teapot', async (_request, reply) => reply.code(418).send({ short: true }));
  app.get('/down', async (_request, reply) => reply.code(503).send({ down: true }));
  const s = await listenFastify(app);
  try {
    const t = mint('GET /teapot');
    const r = await call(`${s.url}/teapot`, { proof: t });
    assert.equal(r.status, 418);
    assert.match(r.headers.get('vlexivo-receipt'), /^tx=/);
    assert.equal((await call(`${s.url}/teapot`, { proof: t })).status, 409);
    const d = mint('GET /down');
    for (let i = 0; i < 2; i++) {
      const x = await call(`${s.url}/down`, { proof: d });
      assert.equal(x.status, 503, 'a released proof buys the retry');
      assert.equal(x.headers.get('vlexivo-receipt'), null);
    }
  } finally {
    await s.close();
  }
});

test('fastify: plain OPTIONS pays, a preflight is free, HEAD pays as GET', async () => {
  const app = Fastify();
  let runs = 0;
  await app.register(vlexivoFastify, { server: server(), price: '0.003' });
  app.route({ method: ['GET', 'OPTIONS'], url: '/r', handler: async () => (runs++, { ok: true }) });
  const s = await listenFastify(app);
  try {
    assert.equal((await call(`${s.url}/r`, { method: 'OPTIONS' })).status, 402);
    assert.equal(runs, 0);
    const pre = await call(`${s.url}/r`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } });
    assert.equal(pre.status, 200);
    assert.equal(runs, 1);
    const head = await fetch(`${s.url}/r`, { method: 'HEAD' });
    assert.equal(head.status, 402);
    const ok = await fetch(`${s.url}/r`, { method: 'HEAD', headers: { 'vlexivo-proof': mint('HEAD /r', '0.003') } });
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('vlexivo-receipt'), /amount=0.003/);
  } finally {
    await s.close();
  }
});

test('fastify: registrations in nested scopes ask one price once and consume once (items 5, 11)', async () => {
  const app = Fastify();
  const vlx = server();
  let runs = 0;
  await app.register(vlexivoFastify, { server: vlx, price: '0.001' });
  await app.register(async (zone) => {
    await zone.register(vlexivoFastify, { server: vlx, price: '0.05' });
    zone.get('/premium', async (request) => (runs++, { amount: request.vlxPayment.amount }));
  });
  app.get('/basic', async () => ({ basic: true }));
  const s = await listenFastify(app);
  try {
    assert.equal((await call(`${s.url}/basic`)).body.price, '0.001');
    const first = await call(`${s.url}/premium`);
    assert.equal(first.body.price, '0.05');
    assert.equal((await call(`${s.url}/premium`, { proof: mint('GET /premium', '0.001') })).body.error, 'token_underpaid');
    const p = mint('GET /premium', '0.05');
    const ok = await call(`${s.url}/premium`, { proof: p });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { amount: '0.05' });
    assert.equal((await call(`${s.url}/premium`, { proof: p })).status, 409);
    assert.equal(runs, 1);
  } finally {
    await s.close();
  }
});

// --- Hapi -----------------------------------------------------------------------------------

test('hapi: a client that goes away does not free the nonce (item 2)', async () => {
  const hapi = Hapi.server({ port: 0, host: '127.0.0.1' });
  await hapi.register({ plugin: vlexivoHapi, options: { server: server(), price: '0.01' } });
  let runs = 0;
  const gates = [];
  hapi.route({
    method: 'GET',
    path: '/slow',
    handler: async (request) => {
      runs++;
      await firstRunWaits(gates);
      return { late: true };
    },
  });
  const s = await listenHapi(hapi);
  try {
    const p = mint('GET /slow');
    await leaveWhileRunning(`${s.url}/slow`, p, gates);
    assert.equal((await call(`${s.url}/slow`, { proof: p })).status, 409, 'spent: the handler completed');
    assert.equal(runs, 1);
  } finally {
    await s.close();
  }
});

test('hapi: a handler that fails after its client left releases the nonce', async () => {
  const hapi = Hapi.server({ port: 0, host: '127.0.0.1' });
  await hapi.register({ plugin: vlexivoHapi, options: { server: server(), price: '0.01' } });
  let runs = 0;
  const gates = [];
  hapi.route({
    method: 'GET',
    path: '/slow',
    handler: async () => {
      runs++;
      if (await firstRunWaits(gates)) throw new Error('failed late');
      return { second: true };
    },
  });
  const late503 = [];
  hapi.route({
    method: 'GET',
    path: '/down',
    handler: async (_request, h) => ((await firstRunWaits(late503)) ? h.response({ down: true }).code(503) : { up: true }),
  });
  const s = await listenHapi(hapi);
  try {
    await failedRunGivesTheProofBack(`${s.url}/slow`, gates, () => runs);
    // A 5xx the handler answers after its client left releases too.
    const d = mint('GET /down');
    await leaveWhileRunning(`${s.url}/down`, d, late503);
    assert.equal((await onceReleased(`${s.url}/down`, d)).status, 200);
    assert.equal((await call(`${s.url}/down`, { proof: d })).status, 409);
  } finally {
    await s.close();
  }
});

test('hapi: a client that leaves while the price is resolved gets its nonce back (the handler never runs)', async () => {
  const hapi = Hapi.server({ port: 0, host: '127.0.0.1' });
  const gates = [];
  let resolving = 0;
  const priceResolver = async () => {
    resolving++;
    await firstRunWaits(gates);
    return '0.01';
  };
  await hapi.register({ plugin: vlexivoHapi, options: { server: server(), priceResolver } });
  let runs = 0;
  hapi.route({ method: 'GET', path: '/slow', handler: () => (runs++, { ok: true }) });
  const s = await listenHapi(hapi);
  try {
    const p = mint('GET /slow');
    await leaveWhileRunning(`${s.url}/slow`, p, gates);
    assert.equal(runs, 0, 'Hapi does not run the handler of a request whose client left');
    assert.equal((await onceReleased(`${s.url}/slow`, p)).status, 200, 'the proof bought nothing yet');
    assert.equal(runs, 1);
    assert.equal(resolving, 2);
  } finally {
    await s.close();
  }
});

test('hapi: receipts only with kept payments; 5xx and throws release; preflight free; HEAD pays', async () => {
  const hapi = Hapi.server({ port: 0, host: '127.0.0.1' });
  await hapi.register({ plugin: vlexivoHapi, options: { server: server(), price: '0.01' } });
  let runs = 0;
  hapi.route({ method: 'GET', path: '/ok', handler: () => (runs++, { ok: true }) });
  hapi.route({ method: 'GET', path: '/teapot', handler: (_r, h) => h.response({ short: true }).code(418) });
  hapi.route({ method: 'GET', path: '/down', handler: (_r, h) => h.response({ down: true }).code(503) });
  hapi.route({ method: 'GET', path: '/boom', handler: () => { throw new Error('x'); } });
  hapi.route({ method: 'OPTIONS', path: '/ok', handler: () => (runs++, 'options') });
  const s = await listenHapi(hapi);
  try {
    const t = mint('GET /teapot');
    const r = await call(`${s.url}/teapot`, { proof: t });
    assert.equal(r.status, 418);
    assert.match(r.headers.get('vlexivo-receipt'), /^tx=/);
    assert.equal((await call(`${s.url}/teapot`, { proof: t })).status, 409);
    for (const path of ['/down', '/boom']) {
      const p = mint(`GET ${path}`);
      for (let i = 0; i < 2; i++) {
        const x = await call(`${s.url}${path}`, { proof: p });
        assert.ok(x.status >= 500, path);
        assert.equal(x.headers.get('vlexivo-receipt'), null, path);
      }
    }
    assert.equal((await call(`${s.url}/ok`, { method: 'OPTIONS' })).status, 402);
    assert.equal(runs, 0);
    const pre = await call(`${s.url}/ok`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } });
    assert.equal(pre.status, 200);
    assert.equal(runs, 1);
    assert.equal((await fetch(`${s.url}/ok`, { method: 'HEAD' })).status, 402);
    const head = await fetch(`${s.url}/ok`, { method: 'HEAD', headers: { 'vlexivo-proof': mint('HEAD /ok') } });
    assert.equal(head.status, 200);
    assert.match(head.headers.get('vlexivo-receipt'), /^tx=/);
  } finally {
    await s.close();
  }
});
