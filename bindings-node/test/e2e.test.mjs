// End to end against a real `vlexivo` facilitator process: real apps on every framework, the
// real client paying through the facilitator's ledger.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import {
  VlexivoClient, VlexivoServer, Wallet, VlexivoInsufficientFundsError, VlexivoBudgetError,
  VlexivoFacilitatorError, VlexivoRequestError, VlexivoError,
} from 'vlexivo';
import { adapters, headerOf } from './apps.mjs';
import { startFacilitator, onboard, topUp, balance, providerPayments, deadPort } from './helpers.mjs';

let fac;
let provider;

before(async () => {
  fac = await startFacilitator();
  provider = await onboard(fac.url);
});
after(async () => {
  await fac?.stop();
});

async function fundedClient(amount = '10', extra = {}) {
  const wallet = Wallet.generate();
  if (amount !== '0') await topUp(fac.url, wallet.address, amount);
  return { wallet, client: new VlexivoClient({ walletKey: wallet.exportKey(), facilitatorUrl: fac.url, ...extra }) };
}

const dec = (s) => Math.round(Number(s) * 1e6); // test-only comparison in atomic units

for (const name of ['express5', 'express4', 'fastify', 'hapi', 'koa', 'http', 'hono']) {
  describe(`${name} + client + facilitator`, () => {
    let app;
    let server;
    before(async () => {
      server = new VlexivoServer({ apiSecret: provider.api_secret, mode: 'sandbox', facilitatorUrl: fac.url });
      app = await adapters[name](server, {
        price: '0.001',
        currency: 'usd',
        scope: 'per-call',
        priceResolver: (req) => (headerOf(req, 'x-model').includes('large') ? '0.01' : '0.001'),
      });
    });
    after(() => app.close());

    test('a paid call: 402, pay, retry, receipt, payment facts', async () => {
      const payments = [];
      const { wallet, client } = await fundedClient('1', { onPayment: (p) => payments.push(p) });
      const res = await client.fetch(`${app.url}/api/v1/inference`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-model': 'large-v2', origin: 'https://app.example' },
        body: JSON.stringify({ model: 'large-v2', prompt: 'hi' }),
      });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.payment.payer, wallet.address);
      assert.equal(body.payment.amount, '0.01');
      assert.equal(body.payment.currency, 'usd');
      assert.match(body.payment.txHash, /^0x[0-9a-f]{64}$/);
      assert.equal(typeof body.payment.paidAt, 'number');
      assert.match(res.headers.get('vlexivo-receipt'), new RegExp(`tx=${body.payment.txHash}; amount=0.01`));
      assert.match(res.headers.get('access-control-expose-headers'), /Vlexivo-Receipt/);
      assert.equal(payments.length, 1);
      assert.equal(payments[0].price, '0.01');
      assert.equal(payments[0].txHash, body.payment.txHash);
      assert.equal(payments[0].balance, '0.99');
      assert.equal(await balance(fac.url, wallet.address), '0.99');
      assert.equal(client.spent, '0.01');
    });

    test('50 concurrent calls: exactly 50 payments, 50 handler runs, no replay accepted', async () => {
      const { wallet, client } = await fundedClient('1');
      const before = (await providerPayments(fac.url, provider.api_secret)).length;
      const runsBefore = app.counter.runs;
      const proofsBefore = app.counter.proofs.length;
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          client.fetch(`${app.url}/api/v1/inference?i=${i}`, { method: 'POST', body: JSON.stringify({ i }) }),
        ),
      );
      for (const r of results) assert.equal(r.status, 200);
      const nonces = new Set(await Promise.all(results.map(async (r) => (await r.json()).payment.nonce)));
      assert.equal(nonces.size, 50);
      assert.equal(app.counter.runs - runsBefore, 50);
      const after = (await providerPayments(fac.url, provider.api_secret)).length;
      assert.equal(after - before, 50);
      assert.equal(await balance(fac.url, wallet.address), '0.95');
      // Every proof again: refused, handler not run.
      const proofs = app.counter.proofs.slice(proofsBefore);
      assert.equal(proofs.length, 50);
      const replays = await Promise.all(
        proofs.map((p, i) => fetch(`${app.url}/api/v1/inference?i=${i}`, { method: 'POST', headers: { 'vlexivo-proof': p } })),
      );
      for (const r of replays) {
        assert.equal(r.status, 409);
        assert.equal((await r.json()).error, 'token_replayed');
      }
      assert.equal(app.counter.runs - runsBefore, 50);
    });

    for (const how of ['answers 500', 'throws']) {
      test(`a handler that ${how} is retried without paying twice`, async () => {
        const { wallet, client } = await fundedClient('1');
        const header = how === 'throws' ? { 'x-handler-throw': '1' } : { 'x-handler-status': '500' };
        const failed = await client.fetch(`${app.url}/api/v1/flaky`, { method: 'POST', headers: header, body: 'x' });
        assert.equal(failed.status, 500);
        assert.equal(await balance(fac.url, wallet.address), '0.999');
        const ok = await client.fetch(`${app.url}/api/v1/flaky`, { method: 'POST', body: 'x' });
        assert.equal(ok.status, 200);
        assert.equal(await balance(fac.url, wallet.address), '0.999', 'paid once');
        // Then the proof is spent: the next call pays again.
        const third = await client.fetch(`${app.url}/api/v1/flaky`, { method: 'POST', body: 'x' });
        assert.equal(third.status, 200);
        assert.equal(await balance(fac.url, wallet.address), '0.998');
      });
    }

    test('the resolver sees the payer: hinted on the 402, proven on the paid retry', async () => {
      const { wallet, client } = await fundedClient('1');
      const seen = [];
      const a = await adapters[name](server, {
        priceResolver: (_req, payer) => {
          seen.push(payer);
          return payer?.address === wallet.address ? '0.0005' : '0.001';
        },
      });
      try {
        const res = await client.fetch(`${a.url}/api/v1/loyal`);
        assert.equal(res.status, 200);
        assert.equal((await res.json()).payment.amount, '0.0005');
        assert.deepEqual(seen.map((p) => [p?.address, p?.proven]), [[wallet.address, false], [wallet.address, true]]);
        assert.equal(await balance(fac.url, wallet.address), '0.9995');
      } finally {
        await a.close();
      }
    });

    test('insufficient funds: typed error with required amount and balance', async () => {
      const { client } = await fundedClient('0');
      await assert.rejects(
        client.fetch(`${app.url}/api/v1/inference`, { method: 'POST', headers: { 'x-model': 'large' } }),
        (e) => {
          assert.ok(e instanceof VlexivoInsufficientFundsError, String(e));
          assert.equal(e.code, 'insufficient_funds');
          assert.equal(e.requiredAmount, '0.01');
          assert.equal(e.balance, '0');
          assert.equal(e.currency, 'usd');
          return true;
        },
      );
    });
  });
}

describe('client features (Express 5)', () => {
  let app;
  let server;
  before(async () => {
    server = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url, bindBody: true });
    app = await adapters.express5(server, { price: '0.001' });
  });
  after(() => app.close());

  test('spending caps: per call, total, window; budget errors say which', async () => {
    const perCall = (await fundedClient('1', { maxPerCall: '0.0005' })).client;
    await assert.rejects(perCall.fetch(`${app.url}/a`), (e) => {
      assert.ok(e instanceof VlexivoBudgetError);
      assert.equal(e.code, 'budget_exceeded');
      assert.equal(e.limit, 'per_call');
      assert.equal(e.requested, '0.001');
      return true;
    });
    const { wallet, client } = await fundedClient('1', { maxTotal: '0.002', maxPerHost: 1 });
    assert.equal((await client.fetch(`${app.url}/a`)).status, 200);
    assert.equal((await client.fetch(`${app.url}/b`)).status, 200);
    await assert.rejects(client.fetch(`${app.url}/c`), (e) => e instanceof VlexivoBudgetError && e.limit === 'total' && e.remaining === '0');
    assert.equal(await balance(fac.url, wallet.address), '0.998', 'nothing paid past the cap');
    const win = (await fundedClient('1', { window: { seconds: 60, max: '0.001' } })).client;
    assert.equal((await win.fetch(`${app.url}/a`)).status, 200);
    await assert.rejects(win.fetch(`${app.url}/a`), (e) => e instanceof VlexivoBudgetError && e.limit === 'window');
  });

  test('auto top-up before the wallet runs dry', async () => {
    const payments = [];
    const { wallet, client } = await fundedClient('0', {
      autoTopUp: { enabled: true, triggerBalance: '1.00', topUpAmount: '10.00' },
      onPayment: (p) => payments.push(p),
    });
    const res = await client.fetch(`${app.url}/api/v1/inference`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 200);
    assert.equal(payments[0].toppedUp, '10');
    assert.equal(await balance(fac.url, wallet.address), '9.999');
    // Above the trigger: no top-up.
    await client.fetch(`${app.url}/api/v1/inference`, { method: 'POST', body: '{}' });
    assert.equal(payments[1].toppedUp, undefined);
    assert.equal(await balance(fac.url, wallet.address), '9.998');
    // Concurrent calls from an empty wallet top up once, not once per call.
    const c2 = await fundedClient('0', { autoTopUp: { triggerBalance: '1.00', topUpAmount: '10.00' } });
    const rs = await Promise.all(Array.from({ length: 10 }, () => c2.client.fetch(`${app.url}/x`)));
    for (const r of rs) assert.equal(r.status, 200);
    assert.equal(await balance(fac.url, c2.wallet.address), '9.99');
  });

  test('bodies of every replayable kind are sent again byte for byte (body-bound paywall)', async () => {
    const { client } = await fundedClient('1');
    const bytes = Buffer.from('{"k":"v","n":[1,2,3]}');
    const fd = new FormData();
    fd.append('model', 'large-v2');
    fd.append('file', new Blob([Buffer.from('hello')], { type: 'text/plain' }), 'a.txt');
    const kinds = {
      string: [bytes.toString(), bytes],
      Buffer: [Buffer.from(bytes), bytes],
      Uint8Array: [new Uint8Array(bytes), bytes],
      Float32Array: [new Float32Array([1.5, 2.5]), Buffer.from(new Float32Array([1.5, 2.5]).buffer)],
      DataView: [new DataView(new Uint8Array(bytes).buffer), bytes],
      ArrayBuffer: [new Uint8Array(bytes).buffer, bytes],
      URLSearchParams: [new URLSearchParams({ a: '1', b: 'two words' }), Buffer.from('a=1&b=two+words')],
      Blob: [new Blob([bytes]), bytes],
      FormData: [fd, null],
    };
    const { createHash } = await import('node:crypto');
    for (const [kind, [body, expected]] of Object.entries(kinds)) {
      const res = await client.fetch(`${app.url}/api/v1/upload`, { method: 'POST', body });
      assert.equal(res.status, 200, `${kind}: ${res.status}`);
      const echo = await res.json();
      if (expected) assert.equal(echo.bodySha256, createHash('sha256').update(expected).digest('hex'), kind);
      else {
        assert.match(echo.contentType, /^multipart\/form-data; boundary=/, kind);
        assert.ok(echo.bodyLength > 0);
      }
    }
  });

  test('a one-shot stream body fails with body_not_replayable before anything is paid', async () => {
    const { wallet, client } = await fundedClient('1');
    const before = (await providerPayments(fac.url, provider.api_secret)).length;
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('chunk'));
        c.close();
      },
    });
    await assert.rejects(client.fetch(`${app.url}/api/v1/upload`, { method: 'POST', body: stream }), (e) => {
      assert.ok(e instanceof VlexivoRequestError);
      assert.equal(e.code, 'body_not_replayable');
      assert.match(e.message, /0\.001/);
      return true;
    });
    await assert.rejects(client.fetch(`${app.url}/api/v1/upload`, { method: 'POST', body: Readable.from(['a', 'b']) }), (e) => e.code === 'body_not_replayable');
    assert.equal(await balance(fac.url, wallet.address), '1');
    assert.equal((await providerPayments(fac.url, provider.api_secret)).length, before);
    assert.equal(client.reserved, '0');
  });

  test('facilitator down: facilitator_unavailable and the budget is released', async () => {
    const port = await deadPort();
    const downServer = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: `http://127.0.0.1:${port}` });
    const down = await adapters.express5(downServer, { price: '0.001' });
    try {
      const { client } = await fundedClient('1', { maxTotal: '0.001', facilitators: [`http://127.0.0.1:${port}`] });
      await assert.rejects(client.fetch(`${down.url}/a`), (e) => {
        assert.ok(e instanceof VlexivoFacilitatorError);
        assert.equal(e.code, 'facilitator_unavailable');
        return true;
      });
      assert.equal(client.reserved, '0');
      assert.equal(client.spent, '0');
      // The whole (tiny) budget is still there for a working provider.
      assert.equal((await client.fetch(`${app.url}/a`)).status, 200);
    } finally {
      await down.close();
    }
  });

  test('non-Vlexivo 402 and free routes pass through untouched', async () => {
    const express = (await import('express')).default;
    const { listenExpress } = await import('./helpers.mjs');
    const other = express();
    other.get('/other402', (_req, res) => res.status(402).set('www-authenticate', 'L402 x').send('pay me elsewhere'));
    other.get('/free', (_req, res) => res.json({ free: true }));
    const s = await listenExpress(other);
    try {
      const { client } = await fundedClient('0');
      const r = await client.fetch(`${s.url}/other402`);
      assert.equal(r.status, 402);
      assert.equal(await r.text(), 'pay me elsewhere');
      assert.deepEqual(await (await client.fetch(`${s.url}/free`)).json(), { free: true });
      await assert.rejects(client.fetch('/relative'), (e) => e instanceof VlexivoError && e.code === 'request_malformed');
      const based = new VlexivoClient({ walletKey: Wallet.generate().exportKey(), baseUrl: s.url });
      assert.equal((await based.fetch('/free')).status, 200);
    } finally {
      await s.close();
    }
  });

  test('dynamic data pricing (async resolver on app.use mount)', async () => {
    const express = (await import('express')).default;
    const { listenExpress } = await import('./helpers.mjs');
    const vlx = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url });
    const a = express();
    a.use(
      '/api/v1/data',
      vlx.paywall({
        priceResolver: async (req) => {
          const days = Number(req.query.days ?? 1);
          let price = 0.001 + days * 0.00001;
          if (req.query.granularity === 'tick') price *= 10;
          return price.toFixed(6);
        },
      }),
    );
    a.get('/api/v1/data', (req, res) => res.json({ paid: req.vlxPayment.amount }));
    const s = await listenExpress(a);
    try {
      const { client } = await fundedClient('1');
      const r = await client.fetch(`${s.url}/api/v1/data?days=90&granularity=tick`);
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { paid: '0.019' });
    } finally {
      await s.close();
    }
  });
});
