// vlexivo/axios against a real facilitator and a real paid Express app: concurrent calls pay
// once each, caps and insufficient funds are typed errors before anything is paid, the body
// axios serialized goes out again byte for byte, auto top-up, axios's own status check.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { createRequire } from 'node:module';
import axios, { AxiosError } from 'axios';
import { VlexivoClient, VlexivoServer, Wallet, VlexivoInsufficientFundsError, VlexivoBudgetError, VlexivoRequestError } from 'vlexivo';
import { withPaymentInterceptor } from 'vlexivo/axios';
import { adapters, headerOf } from './apps.mjs';
import { startFacilitator, onboard, topUp, balance, providerPayments } from './helpers.mjs';

let fac;
let provider;
let app;

before(async () => {
  fac = await startFacilitator();
  provider = await onboard(fac.url);
  const server = new VlexivoServer({ apiSecret: provider.api_secret, facilitatorUrl: fac.url });
  app = await adapters.express5(server, { priceResolver: (req) => (headerOf(req, 'x-model').includes('large') ? '0.01' : '0.001') });
});
after(async () => {
  await app?.close();
  await fac?.stop();
});

async function payingAxios(amount, options = {}) {
  const wallet = Wallet.generate();
  if (amount !== '0') await topUp(fac.url, wallet.address, amount);
  const client = new VlexivoClient({ walletKey: wallet.exportKey(), facilitatorUrl: fac.url, ...options });
  return { wallet, client, api: withPaymentInterceptor(axios.create({ baseURL: app.url }), client) };
}

test('a paid call: JSON body and answer as axios makes them, the receipt, the payment', async () => {
  const { wallet, api } = await payingAxios('1');
  const body = { model: 'large-v2', prompt: 'hi' };
  const res = await api.post('/api/v1/inference', body, { headers: { 'x-model': 'large-v2' } });
  assert.equal(res.status, 200);
  assert.equal(typeof res.data, 'object');
  assert.equal(res.data.payment.payer, wallet.address);
  assert.equal(res.data.payment.amount, '0.01');
  assert.equal(res.data.bodySha256, createHash('sha256').update(JSON.stringify(body)).digest('hex'), 'the JSON axios serialized, replayed');
  assert.match(res.headers['vlexivo-receipt'], /amount=0\.01;/);
  assert.equal(await balance(fac.url, wallet.address), '0.99');
});

test('20 concurrent paid calls: exactly 20 payments and handler runs', async () => {
  const { wallet, api } = await payingAxios('1');
  const before = (await providerPayments(fac.url, provider.api_secret)).length;
  const runs = app.counter.runs;
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => api.get('/api/v1/items', { params: { i } })));
  assert.equal(new Set(results.map((r) => r.data.payment.nonce)).size, 20);
  assert.equal(app.counter.runs - runs, 20);
  assert.equal((await providerPayments(fac.url, provider.api_secret)).length - before, 20);
  assert.equal(await balance(fac.url, wallet.address), '0.98');
});

test('a binary body is sent again byte for byte', async () => {
  const { api } = await payingAxios('1');
  const bytes = randomBytes(4096);
  const res = await api.put('/api/v1/blob', bytes, { headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(res.status, 200);
  assert.equal(res.data.bodyLength, bytes.length);
  assert.equal(res.data.bodySha256, createHash('sha256').update(bytes).digest('hex'));
});

test('insufficient funds: VlexivoInsufficientFundsError with the amount, nothing run', async () => {
  const { api } = await payingAxios('0');
  const runs = app.counter.runs;
  await assert.rejects(api.post('/api/v1/inference', { model: 'large' }, { headers: { 'x-model': 'large' } }), (e) => {
    assert.ok(e instanceof VlexivoInsufficientFundsError, String(e));
    assert.equal(e.requiredAmount, '0.01');
    assert.equal(e.balance, '0');
    return true;
  });
  assert.equal(app.counter.runs, runs);
});

test('a price over maxPerCall is refused before paying', async () => {
  const { wallet, api } = await payingAxios('1', { maxPerCall: '0.005' });
  await assert.rejects(api.get('/api/v1/x', { headers: { 'x-model': 'large' } }), (e) => e instanceof VlexivoBudgetError && e.code === 'budget_exceeded');
  assert.equal(await balance(fac.url, wallet.address), '1');
  // Within the cap it pays.
  assert.equal((await api.get('/api/v1/x')).status, 200);
  assert.equal(await balance(fac.url, wallet.address), '0.999');
});

test('auto top-up from an empty wallet', async () => {
  const { wallet, api } = await payingAxios('0', { autoTopUp: { triggerBalance: '0.005', topUpAmount: '0.5' } });
  const res = await api.get('/api/v1/x');
  assert.equal(res.status, 200);
  assert.equal(await balance(fac.url, wallet.address), '0.499');
});

test('a stream body cannot be sent twice: body_not_replayable with the price, nothing paid', async () => {
  const { wallet, api } = await payingAxios('1');
  await assert.rejects(
    api.post('/api/v1/upload', Readable.from([Buffer.from('one-shot')]), { headers: { 'content-type': 'application/octet-stream' } }),
    (e) => e instanceof VlexivoRequestError && e.code === 'body_not_replayable' && e.details.price === '0.001',
  );
  assert.equal(await balance(fac.url, wallet.address), '1');
});

test("axios's status check applies to the paid answer; responseType is honoured", async () => {
  const { api } = await payingAxios('1');
  await assert.rejects(api.get('/api/v1/missing', { headers: { 'x-handler-status': '404' } }), (e) => {
    assert.ok(e instanceof AxiosError);
    assert.equal(e.response.status, 404);
    assert.equal(e.response.data.payment.amount, '0.001', 'a 4xx keeps the payment');
    return true;
  });
  const text = await api.get('/api/v1/x', { responseType: 'text' });
  assert.equal(typeof text.data, 'string');
  assert.equal(JSON.parse(text.data).payment.amount, '0.001');
  const buf = await api.get('/api/v1/x', { responseType: 'arraybuffer' });
  assert.ok(Buffer.isBuffer(buf.data));
  // A free answer passes untouched.
  const plain = await axios.get(`${app.url}/api/v1/x`, { validateStatus: () => true });
  assert.equal(plain.status, 402);
});

test('require("vlexivo/axios") works with axios\'s CommonJS build (its own AxiosError)', async () => {
  const require = createRequire(import.meta.url);
  const axiosCjs = require('axios');
  const { withPaymentInterceptor: cjsInterceptor } = require('vlexivo/axios');
  const wallet = Wallet.generate();
  await topUp(fac.url, wallet.address, '1');
  const api = cjsInterceptor(axiosCjs.create({ baseURL: app.url }), { walletKey: wallet.exportKey(), facilitatorUrl: fac.url });
  await assert.rejects(api.get('/api/v1/missing', { headers: { 'x-handler-status': '404' } }), (e) => e instanceof axiosCjs.AxiosError && e.response.status === 404);
  assert.equal(await balance(fac.url, wallet.address), '0.999');
});
