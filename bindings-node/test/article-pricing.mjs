// The article's two pricing examples (SEED.md: the model-priced inference route, the
// data-complexity-priced data route) through one adapter, its resolvers written the
// framework's way: the 402's price for several inputs, then a real client paying the priced
// call through a real facilitator.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VlexivoClient, Wallet } from 'vlexivo';
import { startFacilitator, onboard, topUp, balance } from './helpers.mjs';

/** The article's model pricing over a parsed body. */
export function modelPrice(body) {
  const model = body?.model;
  if (model?.includes('large')) return '0.01';
  if (model?.includes('embed')) return '0.0001';
  return '0.001';
}

function getDaysBetween(dateRange) {
  const [from, to] = String(dateRange ?? '').split('..');
  if (!to) return 365;
  return Math.max(1, Math.round((Date.parse(to) - Date.parse(from)) / 86_400_000));
}

/** The article's data pricing over the query's fields. */
export function dataPrice({ dateRange, granularity }) {
  const dayCount = getDaysBetween(dateRange);
  const isRealTime = granularity === 'tick';
  const isHistorical = new Date().getFullYear() - parseInt(dateRange) > 2;
  let price = 0.001;
  price += dayCount * 0.00001;
  if (isRealTime) price *= 10;
  if (isHistorical) price *= 0.5;
  return price.toFixed(6);
}

/** Canonical decimal of a toFixed string, as the 402 states it ("0.004650" → "0.00465"). */
const canonical = (s) => s.replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');

/**
 * `start(serverOptions, paywallOptions)` as in apps.mjs; `resolvers.model` and `resolvers.data`
 * are the article's two resolvers written for this framework (over `modelPrice`/`dataPrice`).
 */
export function articlePricingSuite(name, start, resolvers) {
  describe(`the article's pricing examples through ${name}`, () => {
    let fac;
    let provider;
    before(async () => {
      fac = await startFacilitator();
      provider = await onboard(fac.url);
    });
    after(() => fac?.stop());

    test('model pricing: large 0.01, embed 0.0001, others 0.001; a client pays the large price', async () => {
      const app = await start({ apiSecret: provider.api_secret, facilitatorUrl: fac.url }, { price: '0.001', currency: 'usd', scope: 'per-call', priceResolver: resolvers.model });
      try {
        for (const [model, price] of [['large-v2', '0.01'], ['embed-3', '0.0001'], ['small', '0.001']]) {
          const res = await fetch(`${app.url}/api/v1/inference`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model, prompt: 'hi' }),
          });
          assert.equal(res.status, 402);
          assert.equal((await res.json()).price, price, model);
        }
        const wallet = Wallet.generate();
        await topUp(fac.url, wallet.address, '1');
        const client = new VlexivoClient({ walletKey: wallet.exportKey(), facilitatorUrl: fac.url });
        const res = await client.fetch(`${app.url}/api/v1/inference`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'large-v2', prompt: 'hi' }),
        });
        assert.equal(res.status, 200);
        const body = await res.json();
        assert.equal(body.payment.amount, '0.01');
        assert.equal(body.payment.payer, wallet.address);
        assert.equal(body.bodyLength, JSON.stringify({ model: 'large-v2', prompt: 'hi' }).length, 'the body replayed to the handler');
        assert.match(res.headers.get('vlexivo-receipt'), /amount=0\.01;/);
        assert.equal(await balance(fac.url, wallet.address), '0.99');
      } finally {
        await app.close();
      }
    });

    test('data pricing from the query: days, real time, historical; a client pays it', async () => {
      const app = await start({ apiSecret: provider.api_secret, facilitatorUrl: fac.url }, { priceResolver: resolvers.data });
      const year = new Date().getFullYear();
      const queries = [
        { dateRange: '2025-01-01..2025-03-31', granularity: 'day' },
        { dateRange: '2025-01-01..2025-01-08', granularity: 'tick' },
        { dateRange: String(year - 5), granularity: 'day' },
        { dateRange: String(year), granularity: 'tick' },
      ];
      try {
        for (const q of queries) {
          const res = await fetch(`${app.url}/api/v1/data?${new URLSearchParams({ dataType: 'ohlc', ...q })}`);
          assert.equal(res.status, 402);
          assert.equal((await res.json()).price, canonical(dataPrice(q)), JSON.stringify(q));
        }
        const wallet = Wallet.generate();
        await topUp(fac.url, wallet.address, '1');
        const client = new VlexivoClient({ walletKey: wallet.exportKey(), facilitatorUrl: fac.url });
        const q = queries[0];
        const res = await client.fetch(`${app.url}/api/v1/data?${new URLSearchParams({ dataType: 'ohlc', ...q })}`);
        assert.equal(res.status, 200);
        const body = await res.json();
        assert.equal(body.payment.amount, canonical(dataPrice(q)));
      } finally {
        await app.close();
      }
    });
  });
}
