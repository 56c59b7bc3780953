// The article's usage-based discount end to end (issue 14), in Express and Fastify against a
// real facilitator: a resolver that halves the price after a wallet's 10th call this month,
// through vlx.usage(); the payer hint, payer-bound challenges and the retry priced again for
// the proven payer, so a wallet that borrows another's address is refused and never charged
// twice, and a missing or malformed hint is simply the full price.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import express from 'express';
import Fastify from 'fastify';
import { keccak256, toBytes } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { VlexivoServer, VlexivoClient, HEADERS } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';
import { startFacilitator, onboard, topUp, balance, providerPayments, listenExpress, listenFastify } from './helpers.mjs';
import { mintProofToken } from './tokens.mjs';

const FULL = '0.001';
const HALF = '0.0005';

/** The first instant of this month (UTC), as the article's "this month". */
function monthStart() {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}

/** The article's resolver: half price after a wallet's 10th call this month. */
function discountResolver(vlx) {
  return async (_req, payer) => {
    if (payer === null) return FULL;
    const { count } = await vlx.usage(payer, { since: monthStart() });
    return count >= 10 ? HALF : FULL;
  };
}

const apps = {
  async express(options, counter) {
    const vlx = new VlexivoServer(options);
    const app = express();
    app.get('/api/v1/data', vlx.paywall({ priceResolver: discountResolver(vlx) }), (req, res) => {
      counter.runs++;
      counter.payers.push(req.vlxPayer);
      res.json({ ok: true, paid: req.vlxPayment.amount });
    });
    return { vlx, ...(await listenExpress(app)) };
  },
  async fastify(options, counter) {
    const vlx = new VlexivoServer(options);
    const app = Fastify();
    await app.register(vlexivoFastify, { server: vlx });
    app.get('/api/v1/data', { config: { vlexivo: { priceResolver: discountResolver(vlx) } } }, async (request) => {
      counter.runs++;
      counter.payers.push(request.vlxPayer);
      return { ok: true, paid: request.vlxPayment.amount };
    });
    return { vlx, ...(await listenFastify(app)) };
  },
};

const PAYMENT_TYPES = {
  PaymentAuthorization: [
    { name: 'challenge', type: 'bytes32' },
    { name: 'payee', type: 'string' },
    { name: 'amount', type: 'uint256' },
    { name: 'currency', type: 'string' },
    { name: 'deadline', type: 'uint256' },
  ],
};

/** A payment of `encoded` signed with viem by `account` (docs/protocol.md §6), not the SDK. */
async function signWithViem(account, encoded) {
  const c = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
  const [whole, frac = ''] = c.amount.split('.');
  const atomic = BigInt(whole) * 1_000_000n + BigInt((frac + '000000').slice(0, 6));
  const signature = await account.signTypedData({
    domain: { name: 'Vlexivo', version: '1', chainId: 0 },
    types: PAYMENT_TYPES,
    primaryType: 'PaymentAuthorization',
    message: { challenge: keccak256(toBytes(encoded)), payee: c.account, amount: atomic, currency: c.currency, deadline: BigInt(c.exp) },
  });
  return { challenge: encoded, payer: account.address, signature };
}

/** A viem account that keeps its key (for the SDK client of the same wallet). */
function newAccount() {
  const key = generatePrivateKey();
  return Object.assign(privateKeyToAccount(key), { key });
}

const decode = (encoded) => JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));

for (const [name, start] of Object.entries(apps)) {
  describe(`usage-based discounts through ${name}`, () => {
    let fac;
    let provider;
    let api;
    const counter = { runs: 0, payers: [] };
    before(async () => {
      fac = await startFacilitator();
      provider = await onboard(fac.url);
      api = await start({ apiSecret: provider.api_secret, facilitatorUrl: fac.url }, counter);
    });
    after(async () => {
      await api?.close();
      await fac?.stop();
    });

    const client = (walletKey, extra = {}) => new VlexivoClient({ walletKey, facilitatorUrl: fac.url, ...extra });

    test("the 11th call of a wallet costs half, a fresh wallet pays full, and the facilitator's records agree", async () => {
      const loyal = newAccount();
      const fresh = newAccount();
      await topUp(fac.url, loyal.address, '1');
      await topUp(fac.url, fresh.address, '1');
      const paid = [];
      const c = client(loyal.key, { onPayment: (p) => paid.push(p.amount) });
      const runsBefore = counter.runs;
      for (let i = 0; i < 12; i++) {
        const res = await c.fetch(`${api.url}/api/v1/data`);
        assert.equal(res.status, 200, await res.clone().text());
        assert.equal((await res.json()).paid, i < 10 ? FULL : HALF, `call ${i + 1}`);
      }
      assert.deepEqual(paid, [...Array(10).fill(FULL), HALF, HALF]);
      const f = client(fresh.key);
      const res = await f.fetch(`${api.url}/api/v1/data`);
      assert.equal((await res.json()).paid, FULL);
      assert.equal(counter.runs - runsBefore, 13);
      // The resolver saw the hinted payer, then the proven one: the handler's is proven.
      assert.deepEqual(counter.payers.at(-1), { address: fresh.address, proven: true });

      // The facilitator's records: exactly what was charged, to whom.
      const records = await providerPayments(fac.url, provider.api_secret);
      const of = (a) => records.filter((r) => r.payer === a).map((r) => r.amount).reverse();
      assert.deepEqual(of(loyal.address), [...Array(10).fill(FULL), HALF, HALF]);
      assert.deepEqual(of(fresh.address), [FULL]);
      assert.equal(await balance(fac.url, loyal.address), '0.989');
      const u = await api.vlx.usage(loyal.address, { since: monthStart() });
      assert.deepEqual({ count: u.count, total: u.total }, { count: 12, total: '0.011' });
      assert.equal((await api.vlx.usage(fresh.address.toLowerCase())).count, 1);
    });

    test('a wallet hinting another wallet\'s address is refused: nothing charged twice, the handler does not run', async () => {
      const loyal = newAccount();
      const liar = newAccount();
      await topUp(fac.url, loyal.address, '1');
      await topUp(fac.url, liar.address, '1');
      const lc = client(loyal.key);
      for (let i = 0; i < 10; i++) assert.equal((await lc.fetch(`${api.url}/api/v1/data`)).status, 200);
      const runs = counter.runs;

      // The liar's first request names the loyal wallet: the half price, a challenge for it.
      const first = await fetch(`${api.url}/api/v1/data`, { headers: { [HEADERS.payer]: loyal.address } });
      assert.equal(first.status, 402);
      const encoded = first.headers.get(HEADERS.challenge);
      assert.deepEqual([decode(encoded).amount, decode(encoded).payer], [HALF, loyal.address]);
      // Paid with the liar's own key: the facilitator refuses, nothing moves.
      const pay = await fetch(`${fac.url}/v1/payments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(await signWithViem(liar, encoded)),
      });
      const refused = await pay.json();
      assert.deepEqual([pay.status, refused.error], [400, 'challenge_mismatch']);
      assert.equal(await balance(fac.url, liar.address), '1');

      // The SDK refuses such a challenge before signing anything (a transport that lies).
      const lying = client(liar.key, {
        fetch: (url, init) => {
          const h = new Headers(init.headers);
          if (h.has(HEADERS.payer)) h.set(HEADERS.payer, loyal.address);
          return fetch(url, { ...init, headers: h });
        },
      });
      await assert.rejects(lying.fetch(`${api.url}/api/v1/data`), (e) => e.code === 'challenge_mismatch');
      assert.equal(await balance(fac.url, liar.address), '1');

      // A half-price proof the liar holds (however it got one) is priced again for the payer it
      // proves: token_underpaid, with a full-price challenge, even with the loyal hint beside it.
      const now = Math.floor(Date.now() / 1000);
      const host = new URL(api.url).host;
      const cheap = mintProofToken(provider.api_secret, { sub: liar.address, amt: HALF, res: `GET http://${host}/api/v1/data`, iat: now, iss: fac.url });
      const retry = await fetch(`${api.url}/api/v1/data`, { headers: { [HEADERS.proof]: cheap, [HEADERS.payer]: loyal.address } });
      const body = await retry.json();
      assert.deepEqual([retry.status, body.error, body.price], [402, 'token_underpaid', FULL]);
      assert.equal(decode(retry.headers.get(HEADERS.challenge)).payer, loyal.address, 'bound to the hint it carried');
      assert.equal(counter.runs, runs, 'the handler did not run');
      // The loyal wallet's own half-price proof buys the call once.
      const own = mintProofToken(provider.api_secret, { sub: loyal.address, amt: HALF, res: `GET http://${host}/api/v1/data`, iat: now, iss: fac.url });
      assert.equal((await fetch(`${api.url}/api/v1/data`, { headers: { [HEADERS.proof]: own } })).status, 200);
      assert.equal((await fetch(`${api.url}/api/v1/data`, { headers: { [HEADERS.proof]: own } })).status, 409);
      assert.equal(counter.runs, runs + 1);
    });

    test('a missing or malformed hint is the full price, no error; the hint can be turned off', async () => {
      for (const headers of [{}, { [HEADERS.payer]: '0xnope' }, { [HEADERS.payer]: 'a'.repeat(500) }]) {
        const res = await fetch(`${api.url}/api/v1/data`, { headers });
        assert.equal(res.status, 402);
        const c = decode(res.headers.get(HEADERS.challenge));
        assert.deepEqual([c.amount, c.payer], [FULL, undefined]);
      }
      // A loyal wallet that keeps its address to itself pays the full price on the 402 (the
      // retry's proven payer costs less, which the full payment covers).
      const quiet = newAccount();
      await topUp(fac.url, quiet.address, '1');
      const hinted = client(quiet.key);
      for (let i = 0; i < 10; i++) assert.equal((await hinted.fetch(`${api.url}/api/v1/data`)).status, 200);
      const paid = [];
      const off = client(quiet.key, { payerHint: false, onPayment: (p) => paid.push(p.amount) });
      assert.equal((await off.fetch(`${api.url}/api/v1/data`)).status, 200);
      assert.deepEqual(paid, [FULL]);
    });

    test('vlx.usage: cached briefly, bad input refused with stable codes', async () => {
      // Another instance's answers are reused for usageCacheMs; payments it did not see show up after.
      // (`elsewhere` keeps its answers far longer than the paid call can take however loaded the
      // machine is; `brief` shows the expiry, read only once its time is surely over.)
      const paying = newAccount();
      await topUp(fac.url, paying.address, '1');
      const elsewhere = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url, usageCacheMs: 600_000 });
      const brief = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url, usageCacheMs: 200 });
      const fresh = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url, usageCacheMs: 0 });
      assert.equal((await elsewhere.usage(paying.address)).count, 0);
      assert.equal((await brief.usage(paying.address)).count, 0);
      assert.equal((await client(paying.key).fetch(`${api.url}/api/v1/data`)).status, 200);
      assert.equal((await elsewhere.usage(paying.address.toLowerCase())).count, 0, 'cached (the same address in any case)');
      assert.equal((await fresh.usage(paying.address)).count, 1);
      await new Promise((r) => setTimeout(r, 250));
      assert.equal((await brief.usage(paying.address)).count, 1, 'at most usageCacheMs stale');

      const w = newAccount();
      assert.deepEqual(await api.vlx.usage(w.address, { since: 0 }), { payer: w.address, since: 0, count: 0, total: '0', currency: 'usd' });
      await assert.rejects(api.vlx.usage('0x1234'), (e) => e.code === 'address_invalid');
      await assert.rejects(api.vlx.usage(w.address, { since: -1 }), (e) => e.code === 'request_malformed' && e.status === 400);
      await assert.rejects(api.vlx.usage(w.address, { since: new Date(NaN) }), (e) => e.code === 'request_malformed');
      const other = new VlexivoServer({ apiSecret: (await onboard(fac.url)).api_secret, facilitatorUrl: fac.url });
      assert.equal((await other.usage(w.address)).count, 0, "another provider's secret sees nothing");
      const down = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: 'http://127.0.0.1:9' });
      await assert.rejects(down.usage(w.address), (e) => e.code === 'facilitator_unavailable');
    });
  });
}

