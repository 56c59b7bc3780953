// The paywall page: Chromium opening a paid URL of a real Express app meets core's HTML 402 page
// with the right price; an SDK client on the same URL still gets JSON and pays. In sandbox the
// page pays with a throwaway wallet made in the browser and shows the paid content.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { launch, startFacilitator, startPaidApp, api, allPayments, vlexivo } from './harness.mjs';

const shots = process.env.VLX_SCREENSHOTS;
let fac;
let app;
let browser;
let provider;

before(async () => {
  fac = await startFacilitator();
  provider = (await api(fac.url, '/v1/providers', { method: 'POST', body: { name: 'Weather API' } })).json;
  app = await startPaidApp(fac.url, provider.api_secret);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await fac?.stop();
});

test('a browser opening a paid URL sees the HTML paywall with the right price; an SDK client gets JSON', async () => {
  const ctx = await browser.newContext({ viewport: { width: 375, height: 740 } });
  const page = await ctx.newPage();
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  const path = "/api/forecast'\"><script>alert(1)</script>";
  const res = await page.goto(`${app.url}${path}`);
  assert.equal(res.status(), 402);
  assert.match(res.headers()['content-type'], /^text\/html/);
  assert.ok(res.headers()['vlexivo-challenge']);
  assert.equal(await page.locator('h1').textContent(), 'Payment required');
  // The price the app asks for this route (its resolver: 0.005 for routes it does not list).
  assert.equal(await page.locator('#price').textContent(), '0.005 USD');
  const resource = await page.locator('#resource').textContent();
  assert.ok(resource.startsWith(`GET ${app.url}/api/forecast`), resource);
  assert.deepEqual(dialogs, []);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `readable at 375 px (${overflow} px over)`);
  if (shots) await page.screenshot({ path: join(shots, 'paywall-page.png'), fullPage: true });

  const priced = await page.goto(`${app.url}/api/forecast`);
  assert.equal(priced.status(), 402);
  assert.equal(await page.locator('#price').textContent(), '0.02 USD');
  await ctx.close();

  // The same URL from code: JSON for fetch, and the SDK pays.
  const plain = await fetch(`${app.url}/api/forecast`);
  assert.equal(plain.status, 402);
  assert.equal((await plain.json()).price, '0.02');
  const wallet = vlexivo.Wallet.generate();
  await api(fac.url, `/v1/wallets/${wallet.address}/topup`, { method: 'POST', body: { amount: '1' } });
  const client = new vlexivo.VlexivoClient({ walletKey: wallet.exportKey(), facilitatorUrl: fac.url });
  const paid = await client.fetch(`${app.url}/api/forecast`, { headers: { accept: 'text/html,*/*;q=0.8' } });
  assert.equal(paid.status, 200, 'the SDK pays even when it asks for HTML: its paid retry carries the proof');
  assert.equal((await paid.json()).payer, wallet.address);
});

test('in sandbox the page pays with a throwaway wallet made in the browser, shows the paid content, and the dashboard lists it', async () => {
  const ctx = await browser.newContext({ viewport: { width: 375, height: 740 } });
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => {
    // A CSP violation or a failed call is reported here (the page's own 402 is expected).
    if (m.type() === 'error' && !/status of 402/.test(m.text())) problems.push(m.text());
  });
  const facRequests = [];
  page.on('request', (r) => {
    if (r.url().startsWith(fac.url)) facRequests.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });
  const before = await allPayments(fac.url, provider.api_secret);
  const res = await page.goto(`${app.url}/api/weather?city=Oslo`);
  assert.equal(res.status(), 402);
  const csp = res.headers()['content-security-policy'];
  assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
  assert.doesNotMatch(csp, /unsafe/);
  const pay = page.getByRole('button', { name: 'Pay 0.01 USD with a test wallet' });
  // Keyboard: the button is reachable with Tab and pays on Enter.
  for (let i = 0; i < 5 && !(await pay.evaluate((b) => b === document.activeElement)); i += 1) await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  const paid = page.locator('#paid');
  await paid.waitFor({ state: 'visible', timeout: 30000 });
  const content = JSON.parse(await paid.textContent());
  const status = await page.getByRole('status').textContent();
  const payer = /test wallet (0x[0-9a-fA-F]{40})/.exec(status)?.[1];
  assert.ok(payer, status);
  assert.deepEqual(content, { paid: true, path: '/weather', payer });
  assert.deepEqual(problems, []);
  assert.deepEqual(facRequests.filter((r) => !r.startsWith('OPTIONS')), [`POST /v1/wallets/${payer}/topup`, 'POST /v1/payments']);
  if (shots) await page.screenshot({ path: join(shots, 'paywall-paid.png'), fullPage: true });

  // The provider sees it in the dashboard, filtered by the page's wallet.
  await page.goto(`${fac.url}/dashboard`);
  await page.getByLabel('API secret').fill(provider.api_secret);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.goto(`${fac.url}/dashboard/payments?payer=${payer}`);
  const rows = await page.locator('#payments tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.deepEqual(rows[0].slice(1, 4), [`GET ${app.url}/api/weather`, payer, '0.01 USD']);
  await ctx.close();

  // The facilitator recorded exactly this payment, at the route's price, from the page's wallet.
  const after = await allPayments(fac.url, provider.api_secret);
  assert.equal(after.length, before.length + 1);
  const [row] = after.filter((r) => !before.some((b) => b.nonce === r.nonce));
  assert.equal(row.payer, payer);
  assert.equal(row.amount, '0.01');
  assert.equal(row.resource, `GET ${app.url}/api/weather`);

  // Its wallet is the faucet's top-up less the price.
  const wallet = await api(fac.url, `/v1/wallets/${payer}`);
  assert.equal(wallet.status, 200);
  assert.equal(Number(wallet.json.balance), 0);
});
