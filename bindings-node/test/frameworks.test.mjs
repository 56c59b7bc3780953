// Koa, node:http and Hono specifics beyond the vectors (vectors.test.mjs) and the client e2e
// (e2e.test.mjs): the article's pricing examples, stacked Koa paywalls, bodies, fetch paywall API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Koa from 'koa';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { VlexivoServer, Wallet, fetchPaywall, withPaywall, getPayment } from 'vlexivo';
import { paywall as koaPaywall } from 'vlexivo/koa';
import { paywall as honoPaywall } from 'vlexivo/hono';
import { withPaywall as httpPaywall } from 'vlexivo/http';
import { adapters, jsonOf } from './apps.mjs';
import { articlePricingSuite, modelPrice, dataPrice } from './article-pricing.mjs';
import { listenHandler } from './helpers.mjs';
import { mintProofToken } from './tokens.mjs';

articlePricingSuite('hono', adapters.hono, {
  model: async (c) => modelPrice(await c.req.json()),
  data: (c) => dataPrice(c.req.query()),
});
articlePricingSuite('koa', adapters.koa, {
  model: (ctx) => modelPrice(jsonOf(ctx)),
  data: (ctx) => dataPrice(ctx.query),
});
articlePricingSuite('node:http', adapters.http, {
  model: (req) => modelPrice(req.body),
  data: (req) => dataPrice(Object.fromEntries(new URL(req.url, 'http://x').searchParams)),
});

const secret = 'sk_test_' + Buffer.alloc(32, 7).toString('base64url');
const mint = (res, amt = '0.01') =>
  mintProofToken(secret, { sub: Wallet.generate().address, amt, res, iat: Math.floor(Date.now() / 1000) });

test('koa: a zone paywall and a route paywall of one server charge once, at the higher price', async () => {
  const app = new Koa();
  const vlx = new VlexivoServer({ apiSecret: secret });
  let runs = 0;
  app.use(koaPaywall({ server: vlx, price: '0.001' }));
  app.use(async (ctx, next) => {
    if (ctx.path === '/dear') return koaPaywall({ server: vlx, price: '0.01' })(ctx, next);
    return next();
  });
  app.use((ctx) => {
    runs += 1;
    ctx.body = { amount: ctx.state.vlxPayment.amount };
  });
  const s = await listenHandler(app.callback());
  try {
    const cheap = mint(`GET ${s.url}/dear`, '0.001');
    const under = await fetch(`${s.url}/dear`, { headers: { 'vlexivo-proof': cheap } });
    assert.equal(under.status, 402);
    assert.equal((await under.json()).error, 'token_underpaid');
    assert.equal(runs, 0);
    const full = mint(`GET ${s.url}/dear`, '0.01');
    const ok = await fetch(`${s.url}/dear`, { headers: { 'vlexivo-proof': full } });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { amount: '0.01' });
    assert.match(ok.headers.get('vlexivo-receipt'), /amount=0\.01;/);
    assert.equal((await fetch(`${s.url}/dear`, { headers: { 'vlexivo-proof': full } })).status, 409);
    assert.equal(runs, 1);
  } finally {
    await s.close();
  }
});

test('node:http: a body over bodyLimit is 413 request_too_large, the handler does not run', async () => {
  let runs = 0;
  const handler = httpPaywall(
    (req, res) => {
      runs += 1;
      res.end('ran');
    },
    { apiSecret: secret, priceResolver: (req) => (req.body?.model === 'large' ? '0.01' : '0.001'), bodyLimit: 64 },
  );
  const s = await listenHandler(handler);
  try {
    const big = await fetch(`${s.url}/x`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'large', pad: 'x'.repeat(100) }) });
    assert.equal(big.status, 413);
    assert.equal((await big.json()).error, 'request_too_large');
    const small = await fetch(`${s.url}/x`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'large' }) });
    assert.equal(small.status, 402);
    assert.equal((await small.json()).price, '0.01');
    assert.equal(runs, 0);
  } finally {
    await s.close();
  }
});

test('fetch paywall: protect/complete/fail by hand; an immutable response gets the receipt on a copy', async () => {
  const paywall = fetchPaywall({ apiSecret: secret, price: '0.01' });
  const url = 'http://api.example/x';
  const unpaid = await paywall.protect(new Request(url));
  assert.ok(unpaid instanceof Response);
  assert.equal(unpaid.status, 402);
  assert.equal(await paywall.protect(new Request(url, { method: 'OPTIONS', headers: { origin: 'https://a.example', 'access-control-request-method': 'GET' } })), null);
  const proof = mint(`GET ${url}`);
  const req = new Request(url, { headers: { 'vlexivo-proof': proof } });
  const paid = await paywall.protect(req);
  assert.equal(paid.amount, '0.01');
  assert.equal(getPayment(req), paid);
  // The handler threw: released, the same proof buys the call again.
  paywall.fail(paid);
  const again = await paywall.protect(new Request(url, { headers: { 'vlexivo-proof': proof } }));
  assert.equal(again.amount, '0.01');
  const upstream = await fetch('data:text/plain,hello'); // a fetch() answer: immutable headers
  const out = paywall.complete(again, upstream);
  assert.notEqual(out, upstream);
  assert.match(out.headers.get('vlexivo-receipt'), /amount=0\.01;/);
  assert.equal(await out.text(), 'hello');
  // Settled once: the proof is spent.
  const replay = await paywall.protect(new Request(url, { headers: { 'vlexivo-proof': proof } }));
  assert.equal(replay.status, 409);
});

test('withPaywall: a 5xx from the handler releases the proof; a 2xx keeps it', async () => {
  let status = 503;
  const h = withPaywall(() => new Response('x', { status }), { apiSecret: secret, price: '0.01' });
  const url = 'http://api.example/y';
  const proof = mint(`GET ${url}`);
  const first = await h(new Request(url, { headers: { 'vlexivo-proof': proof } }));
  assert.equal(first.status, 503);
  assert.equal(first.headers.get('vlexivo-receipt'), null);
  status = 200;
  const second = await h(new Request(url, { headers: { 'vlexivo-proof': proof } }));
  assert.equal(second.status, 200);
  assert.match(second.headers.get('vlexivo-receipt'), /tx=/);
  assert.equal((await h(new Request(url, { headers: { 'vlexivo-proof': proof } }))).status, 409);
});

test('hono: a paywall on one route leaves the others free; the payment is c.get("vlxPayment")', async () => {
  const app = new Hono();
  const vlx = new VlexivoServer({ apiSecret: secret });
  app.get('/paid', honoPaywall({ server: vlx, price: '0.01' }), (c) => c.json({ payer: c.get('vlxPayment').payer }));
  app.get('/free', (c) => c.json({ free: true }));
  const server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    assert.equal((await fetch(`${base}/paid`)).status, 402);
    assert.equal((await fetch(`${base}/free`)).status, 200);
    const ok = await fetch(`${base}/paid`, { headers: { 'vlexivo-proof': mint(`GET ${base}/paid`) } });
    assert.equal(ok.status, 200);
    assert.match((await ok.json()).payer, /^0x[0-9a-fA-F]{40}$/);
  } finally {
    server.closeAllConnections?.();
    await new Promise((r) => server.close(r));
  }
});

// On @hono/node-server the paywall reads Node's parsed headers and puts the receipt on Node's
// response (the fetch objects' Headers are never built); elsewhere (app.request, other
// servers) and for a cross-origin request it goes through the Response. Same decisions both ways.
test('hono: receipt, release on 5xx and CORS on @hono/node-server and through app.request()', async () => {
  const app = new Hono();
  const vlx = new VlexivoServer({ apiSecret: secret, origin: 'http://hono.test' });
  let runs = 0;
  app.get('/paid', honoPaywall({ server: vlx, price: '0.01' }), (c) => {
    runs++;
    return c.req.header('x-fail') ? c.json({ down: true }, 503) : c.json({ amount: c.get('vlxPayment').amount });
  });
  const server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  const proof = () => mint('GET http://hono.test/paid');
  const ways = {
    'node-server': (headers) => fetch(`${base}/paid`, { headers }),
    'app.request': (headers) => app.request('/paid', { headers }),
  };
  try {
    for (const [way, get] of Object.entries(ways)) {
      const p = proof();
      const ok = await get({ 'vlexivo-proof': p });
      assert.equal(ok.status, 200, way);
      assert.deepEqual(await ok.json(), { amount: '0.01' });
      assert.match(ok.headers.get('vlexivo-receipt'), /amount=0.01/, way);
      assert.equal((await get({ 'vlexivo-proof': p })).status, 409, way);
      const f = proof();
      for (let i = 0; i < 2; i++) {
        const down = await get({ 'vlexivo-proof': f, 'x-fail': '1' });
        assert.equal(down.status, 503, `${way}: a 5xx gives the proof back`);
        assert.equal(down.headers.get('vlexivo-receipt'), null, way);
      }
      const cors = await get({ 'vlexivo-proof': proof(), origin: 'https://app.example' });
      assert.equal(cors.status, 200, way);
      assert.match(cors.headers.get('vlexivo-receipt'), /^tx=/, way);
      assert.match(cors.headers.get('access-control-expose-headers'), /Vlexivo-Receipt/i, way);
    }
    assert.equal(runs, 8, "a replay never runs the handler");
  } finally {
    server.closeAllConnections?.();
    await new Promise((r) => server.close(r));
  }
});

/** Serve a Hono app on @hono/node-server for `use(base)`, then close it. */
async function onNodeServer(app, use) {
  const server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  try {
    await use(`http://127.0.0.1:${server.address().port}`);
  } finally {
    server.closeAllConnections?.();
    await new Promise((r) => server.close(r));
  }
}

// On @hono/node-server the receipt joins the header object the server hands to Node's
// writeHead, whatever the handler's response is made of; that object may be the handler's own
// (a shared one here), which must not keep the receipt for the next response.
test('hono on @hono/node-server: the receipt goes with every kind of response, and only with the paid one', async () => {
  const app = new Hono();
  const vlx = new VlexivoServer({ apiSecret: secret, origin: 'http://hono.test' });
  const shared = { 'content-type': 'text/plain', 'x-shared': '1' };
  const answers = {
    json: (c) => c.json({ ok: true }),
    text: (c) => c.text('ok'),
    shared: () => new Response('ok', { headers: shared }),
    stream: () => new Response(new ReadableStream({ start(s) { s.enqueue(new TextEncoder().encode('ok')); s.close(); } })),
    empty: (c) => c.body(null, 200),
  };
  for (const [name, answer] of Object.entries(answers)) {
    app.get(`/paid/${name}`, honoPaywall({ server: vlx, price: '0.01' }), answer);
    app.get(`/free/${name}`, answer);
  }
  await onNodeServer(app, async (base) => {
    for (const name of Object.keys(answers)) {
      const paid = await fetch(`${base}/paid/${name}`, { headers: { 'vlexivo-proof': mint(`GET http://hono.test/paid/${name}`) } });
      assert.equal(paid.status, 200, name);
      await paid.arrayBuffer();
      assert.match(paid.headers.get('vlexivo-receipt') ?? '', /^tx=.*amount=0\.01/, name);
      const free = await fetch(`${base}/free/${name}`);
      assert.equal(free.status, 200, name);
      await free.arrayBuffer();
      assert.equal(free.headers.get('vlexivo-receipt'), null, `${name}: no receipt on a free response`);
    }
    assert.deepEqual(shared, { 'content-type': 'text/plain', 'x-shared': '1' });
  });
});

test('hono: two paywalls of two servers on one route each take the proof; the response carries one receipt', async () => {
  const app = new Hono();
  const a = new VlexivoServer({ apiSecret: secret, origin: 'http://hono.test' });
  const b = new VlexivoServer({ apiSecret: secret, origin: 'http://hono.test' });
  app.use('/paid', honoPaywall({ server: a, price: '0.01' }));
  app.get('/paid', honoPaywall({ server: b, price: '0.01' }), (c) => c.json({ ok: true }));
  await onNodeServer(app, async (base) => {
    const ok = await fetch(`${base}/paid`, { headers: { 'vlexivo-proof': mint('GET http://hono.test/paid') } });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true });
    assert.match(ok.headers.get('vlexivo-receipt') ?? '', /^tx=[^,]*amount=0\.01/);
  });
});

test('option keys nobody reads are config_invalid in every new adapter', () => {
  for (const make of [
    () => koaPaywall({ apiSecret: secret, price: '0.01', pricer: 1 }),
    () => httpPaywall(() => {}, { apiSecret: secret, price: '0.01', readbody: true }),
    () => honoPaywall({ apiSecret: secret, price: '0.01', priceresolver: () => 1 }),
    () => withPaywall(() => new Response(), { apiSecret: secret, prices: '0.01' }),
  ]) {
    assert.throws(make, (e) => e.code === 'config_invalid');
  }
});

test('koa, node:http, hono (fetch paywall): a browser without a proof gets core\'s HTML 402 page; fetch keeps JSON', async () => {
  const browser = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
  for (const name of ['koa', 'http', 'hono']) {
    const app = await adapters[name](new VlexivoServer({ apiSecret: secret }), { price: '0.25' });
    try {
      const page = await fetch(`${app.url}/paid`, { headers: { accept: browser } });
      assert.equal(page.status, 402, name);
      assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8', name);
      assert.ok(page.headers.get('vlexivo-challenge'), name);
      assert.match(await page.text(), /<p class="price" id="price">0\.25 <abbr title="usd">USD<\/abbr><\/p>/);
      const json = await fetch(`${app.url}/paid`, { headers: { accept: '*/*' } });
      assert.equal(json.status, 402);
      assert.match(json.headers.get('content-type'), /^application\/json/, name);
      assert.equal((await json.json()).price, '0.25');
      const bad = await fetch(`${app.url}/paid`, { headers: { accept: browser, 'vlexivo-proof': 'x.y.z' } });
      assert.match(bad.headers.get('content-type'), /^application\/json/, `${name}: a proof gets JSON`);
      await bad.arrayBuffer();
    } finally {
      await app.close();
    }
  }
});

test('fetch paywall completeOn: the receipt goes out with each of Node\'s writeHead forms, the caller\'s header object untouched', async () => {
  const fp = fetchPaywall({ apiSecret: secret, origin: 'http://node.test', price: '0.01' });
  const own = { 'content-type': 'text/plain', 'x-own': '1' };
  // Each form of `writeHead(status, reason?, headers?)` Node accepts.
  const forms = {
    headers: (res) => res.writeHead(200, own),
    reason: (res) => res.writeHead(201, 'Made', own),
    'reason only': (res) => res.writeHead(202, 'Taken'),
    'status only': (res) => res.writeHead(200),
    'undefined reason': (res) => res.writeHead(200, undefined, own),
    'header array': (res) => res.writeHead(200, ['content-type', 'text/plain', 'x-own', '1']),
  };
  const app = await listenHandler(async (req, res) => {
    const name = decodeURIComponent(new URL(req.url, 'http://x').pathname.slice(1));
    const request = new Request(`http://node.test${req.url}`, { headers: req.headers });
    const payment = await fp.protect(request);
    if (payment === null || payment instanceof Response) {
      res.writeHead(payment === null ? 500 : payment.status).end();
      return;
    }
    fp.completeOn(payment, 200, res);
    forms[name](res);
    res.end('ok');
  });
  try {
    for (const name of Object.keys(forms)) {
      const path = `/${encodeURIComponent(name)}`;
      const r = await fetch(app.url + path, { headers: { 'vlexivo-proof': mint(`GET http://node.test${path}`) } });
      assert.equal(await r.text(), 'ok', name);
      assert.match(r.headers.get('vlexivo-receipt') ?? '', /^tx=.*amount=0\.01/, name);
      if (name === 'reason') assert.equal(r.statusText, 'Made');
      if (name === 'reason only') assert.equal(r.statusText, 'Taken');
      if (name !== 'reason only' && name !== 'status only') assert.equal(r.headers.get('x-own'), '1', name);
    }
    assert.deepEqual(own, { 'content-type': 'text/plain', 'x-own': '1' });
  } finally {
    await app.close();
  }
});
