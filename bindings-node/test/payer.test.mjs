// The payer flow's security rules through the Node client, against real servers: a real
// `vlexivo` facilitator, a real Express paid API, and a real relay facilitator in between that
// forwards each payment to the real one (which charges) and answers the client 502 (issue 15
// items 6, 9 and 13); and servers that send endless bodies (issue 18 item 7).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VlexivoClient, VlexivoServer, Wallet } from 'vlexivo';
import { adapters } from './apps.mjs';
import { startFacilitator, onboard, topUp, balance, startRelay, listenHandler } from './helpers.mjs';

// Trust must come from the options in these tests, never from the environment.
delete process.env.VLX_FACILITATOR_URL;
delete process.env.VLEXIVO_FACILITATOR_URL;

let fac;
let relay;
let app;

before(async () => {
  // The relay listens first: the real facilitator is told it is reached at the relay's URL,
  // so it accepts challenges naming the relay.
  relay = await startRelay();
  fac = await startFacilitator({ publicUrl: relay.url });
  relay.upstream = fac.url;
  const provider = await onboard(fac.url);
  const server = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: relay.url });
  app = await adapters.express5(server, { price: '0.001' });
});
after(async () => {
  await app?.close();
  await relay?.close();
  await fac?.stop();
});

async function wallet(amount = '1') {
  const w = Wallet.generate();
  await topUp(fac.url, w.address, amount);
  return w;
}

describe('trusted facilitators and payments in doubt (real relay)', () => {
  test('item 6: a client without a configured facilitator pays nothing to the one a 402 names', async () => {
    relay.lie = true;
    const before = relay.payments;
    const w = await wallet();
    const client = new VlexivoClient({ walletKey: w.exportKey(), maxTotal: '0.001' });
    for (let i = 0; i < 2; i++) {
      await assert.rejects(client.fetch(`${app.url}/a`), (e) => {
        assert.equal(e.code, 'facilitator_untrusted');
        assert.equal(e.status, 403);
        assert.equal(e.details.facilitator, relay.url);
        return true;
      });
    }
    assert.equal(relay.payments, before, 'nothing signed or sent');
    assert.equal(await balance(fac.url, w.address), '1');
  });

  test('item 13: a payment answered 502 stays counted until the facilitator tells its fate', async () => {
    relay.lie = true;
    const w = await wallet();
    const payments = [];
    const client = new VlexivoClient({ walletKey: w.exportKey(), facilitatorUrl: relay.url, maxTotal: '0.001', onPayment: (p) => payments.push(p) });
    await assert.rejects(client.fetch(`${app.url}/a`), (e) => {
      assert.equal(e.code, 'payment_in_doubt');
      assert.equal(e.details.amount, '0.001');
      return true;
    });
    assert.equal(await balance(fac.url, w.address), '0.999', 'charged once: the resend was the same payment');
    assert.deepEqual([client.spent, client.reserved, client.inDoubt], ['0', '0.001', '0.001']);
    // The next call re-sends it first (502 again), then the cap refuses: never past maxTotal.
    await assert.rejects(client.fetch(`${app.url}/b`), (e) => e.code === 'budget_exceeded' && e.limit === 'total');
    assert.equal(await balance(fac.url, w.address), '0.999');
    // Once the relay tells the truth, the next call to that resource settles the payment and
    // uses the proof it bought.
    relay.lie = false;
    const res = await client.fetch(`${app.url}/a`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).payment.amount, '0.001');
    assert.equal(await balance(fac.url, w.address), '0.999', 'paid once in all');
    assert.deepEqual([client.spent, client.reserved, client.inDoubt], ['0.001', '0', '0']);
    assert.equal(payments.length, 1);
    assert.equal(payments[0].reconciled, true);
  });
});

describe('response-size limits (issue 18 item 7)', () => {
  /** Writes 16 KiB chunks until the client goes away; counts what it wrote. */
  function endless(status, headers) {
    const state = { written: 0 };
    const chunk = Buffer.alloc(16 * 1024, 'x');
    state.handler = (req, res) => {
      res.writeHead(status, headers);
      const pump = () => {
        while (!res.destroyed && state.written < 512 * 1024 * 1024) {
          state.written += chunk.length;
          if (!res.write(chunk)) return res.once('drain', pump);
        }
      };
      req.resume();
      res.on('close', () => (state.closed = true));
      pump();
    };
    return state;
  }

  test('an endless 402 body is not read past the limit; the response goes back to the caller', async () => {
    const srv = endless(402, { 'content-type': 'text/plain' });
    const s = await listenHandler(srv.handler);
    try {
      const client = new VlexivoClient({ walletKey: Wallet.generate().exportKey(), facilitatorUrl: fac.url });
      const res = await client.fetch(`${s.url}/endless`);
      assert.equal(res.status, 402);
      const reader = res.body.getReader();
      const first = await reader.read();
      assert.ok(first.value.length > 0);
      await reader.cancel();
      assert.ok(srv.written < 64 * 1024 * 1024, `${srv.written} bytes written`);
    } finally {
      await s.close();
    }
  });

  test('an endless facilitator answer is cut at the limit: the payment is in doubt, nothing hangs', async () => {
    const srv = endless(200, { 'content-type': 'application/json' });
    const f = await listenHandler(srv.handler);
    const provider = await onboard(fac.url);
    const a = await adapters.express5(new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: f.url }), { price: '0.001' });
    try {
      const client = new VlexivoClient({ walletKey: Wallet.generate().exportKey(), facilitatorUrl: f.url, facilitatorTimeoutMs: 120000 });
      const started = Date.now();
      await assert.rejects(client.fetch(`${a.url}/x`), (e) => {
        assert.equal(e.code, 'payment_in_doubt');
        assert.match(e.details.reason, /larger than 65536/);
        return true;
      });
      assert.ok(Date.now() - started < 60000, 'stopped reading instead of waiting for the timeout');
      assert.equal(client.inDoubt, '0.001');
      assert.ok(srv.written < 64 * 1024 * 1024, `${srv.written} bytes written`);
    } finally {
      await a.close();
      await f.close();
    }
  });
});
