// The provider dashboard in headless Chromium against a real facilitator and a real paid
// Express app: 250 payments made by the npm client, then what the dashboard shows is compared
// with the facilitator API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, startFacilitator, startPaidApp, api, allPayments, vlexivo, repoRoot } from './harness.mjs';

const XSS_NAME = '<img src=x onerror="window.__xss=1">';
// A path the URL parser leaves as it is (quotes and parentheses): it reaches the recorded route.
const XSS_PATH = "/api/x'onmouseover='window.__xss=2'(1)";
const shots = process.env.VLX_SCREENSHOTS;

let fac;
let app;
let browser;
let provider;
let wallets;
const atomic = (s) => BigInt(Math.round(Number(s) * 1e6)); // amounts have at most 6 decimals

before(async () => {
  fac = await startFacilitator();
  provider = (await api(fac.url, '/v1/providers', { method: 'POST', body: { name: XSS_NAME } })).json;
  app = await startPaidApp(fac.url, provider.api_secret);
  wallets = [vlexivo.Wallet.generate(), vlexivo.Wallet.generate()];
  for (const w of wallets) await api(fac.url, `/v1/wallets/${w.address}/topup`, { method: 'POST', body: { amount: '10' } });
  const clients = wallets.map((w) => new vlexivo.VlexivoClient({ walletKey: w.exportKey(), facilitatorUrl: fac.url, maxPerCall: '1' }));
  const paths = ['/api/weather', '/api/forecast', '/api/other', XSS_PATH];
  for (let i = 0; i < 250; i += 1) {
    const res = await clients[i % 2].fetch(`${app.url}${paths[i % 4]}`);
    const text = await res.text();
    assert.equal(res.status, 200, text);
  }
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await fac?.stop();
});

/** A fresh browser context watching for any script the pages did not mean to run. */
async function context(viewport = { width: 1200, height: 900 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  return { ctx, page, dialogs, errors };
}

async function signIn(page, secret = provider.api_secret) {
  await page.goto(`${fac.url}/dashboard`);
  assert.match(page.url(), /\/dashboard\/login$/);
  await page.getByLabel('API secret').fill(secret);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
}

test('a wrong secret is refused; the right one signs in without the secret reaching the browser', async () => {
  const { ctx, page } = await context();
  const refused = page.waitForResponse((r) => r.url().endsWith('/dashboard/login') && r.request().method() === 'POST');
  await signIn(page, `${provider.api_secret.slice(0, -2)}xx`);
  assert.equal((await refused).status(), 401);
  await assert.doesNotReject(page.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor());
  assert.equal((await ctx.cookies()).some((c) => c.name === 'vlx_session'), false);

  await signIn(page);
  assert.equal(new URL(page.url()).pathname, '/dashboard');
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === 'vlx_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
  for (const c of cookies) assert.ok(!c.value.includes(provider.api_secret.slice(8)), 'no cookie holds the secret');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  assert.ok(!stored.includes(provider.api_secret.slice(8)));
  await ctx.close();
});

test('overview: counts, sums and the chart equal the API; the chart is drawn', async () => {
  const { ctx, page, dialogs, errors } = await context();
  await signIn(page);
  await page.goto(`${fac.url}/dashboard?range=24h`);
  const rows = await allPayments(fac.url, provider.api_secret);
  assert.equal(rows.length, 250);
  const sum = rows.reduce((a, r) => a + atomic(r.amount), 0n);
  assert.equal(await page.locator('#count').textContent(), '250');
  assert.equal(atomic((await page.locator('#revenue').textContent()).slice(1)), sum);
  assert.equal(atomic((await page.locator('#average').textContent()).slice(1)), sum / 250n);

  // The chart's data points add up to the API's sum, and its canvas has ink on it.
  const series = JSON.parse(await page.locator('#vlx-series').textContent());
  assert.equal(series.usd.reduce((a, v) => a + atomic(String(v)), 0n), sum);
  const canvas = page.locator('#vlx-chart canvas');
  await canvas.waitFor();
  const inked = await canvas.evaluate((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;
    return n;
  });
  assert.ok(inked > 500, `chart pixels drawn: ${inked}`);
  const png = await page.locator('#vlx-chart').screenshot();
  assert.ok(png.length > 2000, 'the chart screenshot is not blank');

  // Per route and top payers equal the API's groups.
  const byRoute = new Map();
  const byPayer = new Map();
  for (const r of rows) {
    byRoute.set(r.resource, (byRoute.get(r.resource) ?? 0n) + atomic(r.amount));
    byPayer.set(r.payer, (byPayer.get(r.payer) ?? 0n) + atomic(r.amount));
  }
  for (const [id, want] of [['#routes', byRoute], ['#payers', byPayer]]) {
    const got = await page.locator(`${id} tbody tr`).evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    assert.equal(got.length, want.size);
    for (const [key, , revenue] of got) assert.equal(atomic(revenue), want.get(key), key);
  }
  // Inert: the provider's name and the route with quotes are shown as text, nothing ran.
  assert.equal(await page.locator('#provider-name').textContent(), XSS_NAME);
  assert.ok([...byRoute.keys()].some((k) => k.includes("x'onmouseover")), 'the quoted route was recorded');
  await page.locator('#routes a', { hasText: "x'onmouseover" }).hover();
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.deepEqual(dialogs, []);
  assert.deepEqual(errors, []);
  if (shots) {
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, 'dashboard-overview.png'), fullPage: true });
  }
  await ctx.close();
});

test('payments: 250 paged in the browser equal the API, route filter, CSV export, tampered cursor refused', async () => {
  const { ctx, page, dialogs } = await context();
  await signIn(page);
  const api250 = await allPayments(fac.url, provider.api_secret);
  await page.goto(`${fac.url}/dashboard/payments`);
  if (shots) await page.screenshot({ path: join(shots, 'dashboard-payments.png'), fullPage: false });
  const seen = [];
  let pages = 0;
  for (;;) {
    pages += 1;
    seen.push(...(await page.locator('#payments tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.nonce))));
    const older = page.locator('#older');
    if ((await older.count()) === 0) break;
    await Promise.all([page.waitForNavigation(), older.click()]);
  }
  assert.equal(pages, 5);
  assert.deepEqual(seen, api250.map((r) => r.nonce));

  // Filter by route, from the form.
  const route = api250.find((r) => r.resource.endsWith('/api/forecast')).resource;
  await page.goto(`${fac.url}/dashboard/payments`);
  await page.getByLabel('Route').fill(route);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Filter' }).click()]);
  const filtered = await page.locator('#payments tbody tr td:nth-child(2)').allTextContents();
  const apiFiltered = api250.filter((r) => r.resource === route);
  assert.equal(filtered.length, Math.min(50, apiFiltered.length));
  assert.ok(filtered.every((t) => t === route));

  // CSV of the whole filtered list equals the API's.
  const csvHref = await page.locator('#csv').getAttribute('href');
  const csv = await ctx.request.get(`${fac.url}${csvHref}`);
  assert.equal(csv.status(), 200);
  const lines = (await csv.text()).trim().split('\r\n');
  assert.equal(lines[0], 'paid_at,time_utc,resource,payer,amount,currency,tx_hash,nonce,state');
  const parsed = lines.slice(1).map((l) => l.split(','));
  assert.deepEqual(
    parsed.map(([paidAt, , resource, payer, amount, currency, tx, nonce]) => ({ paidAt: Number(paidAt), resource, payer, amount, currency, tx, nonce })),
    apiFiltered.map((r) => ({ paidAt: r.paid_at, resource: r.resource, payer: r.payer, amount: r.amount, currency: r.currency, tx: r.tx_hash, nonce: r.nonce })),
  );

  // A cursor edited by hand is refused, and the page says so.
  await page.goto(`${fac.url}/dashboard/payments`);
  const href = await page.locator('#older').getAttribute('href');
  const cursor = new URL(href, fac.url).searchParams.get('cursor');
  const tampered = `${cursor.slice(0, 5)}${cursor[5] === 'A' ? 'B' : 'A'}${cursor.slice(6)}`;
  const resp = await page.goto(`${fac.url}/dashboard/payments?cursor=${tampered}`);
  assert.equal(resp.status(), 400);
  assert.match(await page.locator('#error').textContent(), /cursor/);

  // Filter values echo into the form inert.
  const evil = '"><script>window.__xss=3</script>';
  const r2 = await page.goto(`${fac.url}/dashboard/payments?route=${encodeURIComponent(evil)}&payer=${encodeURIComponent(evil)}`);
  assert.equal(r2.status(), 400); // the payer is not an address
  assert.equal(await page.getByLabel('Payer').inputValue(), evil);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.deepEqual(dialogs, []);
  await ctx.close();
});

test('without the session cookie, or with a forged CSRF token, requests are refused; sign-out ends the session', async () => {
  const { ctx: anon, page: anonPage } = await context();
  await anonPage.goto(`${fac.url}/dashboard/payments`);
  assert.match(anonPage.url(), /\/dashboard\/login$/);
  assert.equal((await anon.request.get(`${fac.url}/dashboard/payments.csv`)).status(), 401);
  assert.equal((await anon.request.post(`${fac.url}/dashboard/wallets/topup`, { form: { csrf: 'x', address: wallets[0].address, amount: '1' } })).status(), 401);
  await anon.close();

  const { ctx, page } = await context();
  await signIn(page);
  const before0 = (await api(fac.url, `/v1/wallets/${wallets[0].address}`)).json.balance;
  const forged = await ctx.request.post(`${fac.url}/dashboard/wallets/topup`, {
    form: { csrf: 'forged-token', address: wallets[0].address, amount: '5' },
  });
  assert.equal(forged.status(), 403);
  assert.equal((await api(fac.url, `/v1/wallets/${wallets[0].address}`)).json.balance, before0, 'nothing topped up');
  assert.equal((await ctx.request.post(`${fac.url}/dashboard/logout`, { form: { csrf: 'forged' } })).status(), 403);

  // The sandbox wallet tools, with the page's own token: look up, then top up.
  await page.goto(`${fac.url}/dashboard/wallets`);
  await page.locator('#w-address').fill(wallets[1].address);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Look up' }).click()]);
  const bal = (await api(fac.url, `/v1/wallets/${wallets[1].address}`)).json.balance;
  assert.equal(await page.locator('#balance').textContent(), `$${bal}`);
  await page.locator('#t-amount').fill('2.5');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Top up' }).click()]);
  const after = (await api(fac.url, `/v1/wallets/${wallets[1].address}`)).json.balance;
  assert.equal(atomic(after) - atomic(bal), atomic('2.5'));
  assert.equal(await page.locator('#balance').textContent(), `$${after}`);

  // Sign out; the old session id no longer opens anything.
  const sessionId = (await ctx.cookies()).find((c) => c.name === 'vlx_session').value;
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/dashboard\/login$/);
  await page.goto(`${fac.url}/dashboard`);
  assert.match(page.url(), /\/dashboard\/login$/);
  const replay = await fetch(`${fac.url}/dashboard/payments.csv`, { headers: { cookie: `vlx_session=${sessionId}` } });
  assert.equal(replay.status, 401);
  await ctx.close();
});

test('readable at 375 px, keyboard reachable, CSP without unsafe-inline; page weight', async () => {
  const signed = await context();
  await signIn(signed.page);
  // A fresh context (empty cache) holding only the session cookie: the page's full weight.
  const { ctx, page, errors } = await context({ width: 375, height: 800 });
  await ctx.addCookies(await signed.ctx.cookies());
  await signed.ctx.close();
  const requests = [];
  page.on('requestfinished', async (r) => {
    const s = await r.sizes();
    requests.push({ url: r.url(), bytes: s.responseBodySize + s.responseHeadersSize });
  });
  const resp = await page.goto(`${fac.url}/dashboard`);
  await page.locator('#vlx-chart canvas').waitFor();
  const csp = resp.headers()['content-security-policy'];
  assert.ok(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), csp);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling at 375 px (${overflow} px over)`);
  // Tab reaches the navigation links and the sign-out button.
  const reached = [];
  for (let i = 0; i < 6; i += 1) {
    await page.keyboard.press('Tab');
    reached.push(await page.evaluate(() => document.activeElement?.textContent?.trim()));
  }
  assert.ok(reached.includes('Payments') && reached.includes('Sign out'), reached.join(' | '));
  assert.deepEqual(errors, []);
  await page.waitForLoadState('networkidle');
  const bytes = requests.reduce((a, r) => a + r.bytes, 0);
  console.log(`dashboard overview weight: ${requests.length} requests, ${bytes} bytes`);
  await ctx.close();
});

export { repoRoot };
