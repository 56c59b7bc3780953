// The dashboard's figures against a running facilitator (not a test):
//
//   node tests/browser/figures.mjs http://127.0.0.1:PORT sk_test_… [runs=3]
//
// For the overview and the payments page, each in a fresh browser context (empty cache): the
// first contentful paint after navigation starts, the requests and the bytes transferred.
// With a ledger filled by `cargo run -p vlexivo-facilitator --example dashboard_fill`.
import { launch } from './harness.mjs';

const [url, secret, runsArg] = process.argv.slice(2);
if (!url || !secret) {
  console.error('usage: node figures.mjs FACILITATOR_URL API_SECRET [runs]');
  process.exit(2);
}
const runs = Number(runsArg ?? 3);
const browser = await launch();
try {
  // One sign-in; every measured context starts with only its session cookie.
  const signIn = await browser.newContext();
  const p = await signIn.newPage();
  await p.goto(`${url}/dashboard/login`);
  await p.getByLabel('API secret').fill(secret);
  await Promise.all([p.waitForNavigation(), p.keyboard.press('Enter')]);
  const cookies = (await signIn.cookies()).filter((c) => c.name === 'vlx_session');
  await signIn.close();
  for (const path of ['/dashboard/payments', '/dashboard?range=7d']) {
    const rows = [];
    for (let i = 0; i < runs; i += 1) {
      const ctx = await browser.newContext();
      await ctx.addCookies(cookies);
      const page = await ctx.newPage();
      const sizes = [];
      page.on('requestfinished', async (r) => {
        const s = await r.sizes();
        sizes.push(s.responseBodySize + s.responseHeadersSize);
      });
      await page.goto(`${url}${path}`, { waitUntil: 'load' });
      await page.waitForTimeout(300);
      const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN);
      const ttfb = await page.evaluate(() => performance.getEntriesByType('navigation')[0].responseStart);
      rows.push({ fcp, ttfb, requests: sizes.length, bytes: sizes.reduce((a, b) => a + b, 0) });
      await ctx.close();
    }
    const fcps = rows.map((r) => r.fcp.toFixed(0)).join(', ');
    const ttfbs = rows.map((r) => r.ttfb.toFixed(0)).join(', ');
    console.log(`${path}: first contentful paint ${fcps} ms; first byte ${ttfbs} ms; ${rows[0].requests} requests, ${rows[0].bytes} bytes`);
  }
} finally {
  await browser.close();
}
