// The paywall page in live mode: Chromium opens a paid URL of a live Express app (a live
// facilitator relaying EIP-3009 transfers on a real anvil with Circle's FiatTokenV2_2, from
// `vlexivo demo --live --serve`), the page asks the injected EIP-1193 wallet to sign the
// transfer authorization, pays, and shows the paid content. The wallet stands in for a browser
// extension: window.ethereum in the page, its key and signing (viem) in the test process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { launch, repoRoot, express, vlexivo, allPayments, liveSkip, startLiveDevnet } from './harness.mjs';

const skip = liveSkip;
const { privateKeyToAccount } = createRequire(join(repoRoot, 'bindings-node', 'package.json'))('viem/accounts');

let devnet;
let env;
let browser;
let http;
let appUrl;

before(async () => {
  if (skip) return;
  devnet = await startLiveDevnet();
  env = devnet.env;
  // The live paywall reads its settlement terms from the environment, as in production.
  for (const k of ['VLX_NETWORK', 'VLX_ASSET', 'VLX_ASSET_NAME', 'VLX_ASSET_VERSION', 'VLX_PAY_TO']) process.env[k] = env[k];
  const server = new vlexivo.VlexivoServer({ apiSecret: env.VLX_SECRET_KEY, mode: 'live', facilitatorUrl: env.VLX_FACILITATOR_URL });
  const app = express();
  app.use('/api', server.paywall({ price: '0.001', currency: 'usd' }));
  app.use('/api', (req, res) => res.json({ paid: true, path: req.path, payer: req.vlxPayment?.payer }));
  app.use(server.errorHandler());
  http = await new Promise((ok) => {
    const s = app.listen(0, '127.0.0.1', () => ok(s));
  });
  appUrl = `http://127.0.0.1:${http.address().port}`;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (http) {
    http.closeAllConnections?.();
    await new Promise((r) => http.close(() => r()));
  }
  devnet?.stop();
});

test('live: the page pays with the injected EIP-1193 wallet and shows the paid content', { skip }, async () => {
  const account = privateKeyToAccount(env.VLX_WALLET_KEY);
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const asked = [];
  await page.exposeFunction('__vlxWallet', async (method, params) => {
    asked.push(method);
    if (method === 'eth_requestAccounts') return [account.address.toLowerCase()];
    if (method === 'eth_signTypedData_v4') {
      assert.equal(params[0].toLowerCase(), account.address.toLowerCase());
      const { domain, types, primaryType, message } = JSON.parse(params[1]);
      delete types.EIP712Domain;
      const big = (k) => BigInt(message[k]);
      return account.signTypedData({
        domain,
        types,
        primaryType,
        message: { ...message, value: big('value'), validAfter: big('validAfter'), validBefore: big('validBefore') },
      });
    }
    throw new Error(`unsupported ${method}`);
  });
  await page.addInitScript(() => {
    window.ethereum = { request: ({ method, params }) => window.__vlxWallet(method, params) };
  });
  const problems = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 402/.test(m.text())) problems.push(m.text());
  });
  const res = await page.goto(`${appUrl}/api/report`);
  assert.equal(res.status(), 402);
  assert.doesNotMatch(res.headers()['content-security-policy'], /unsafe/);
  await page.getByRole('button', { name: 'Pay 0.001 USD with your wallet' }).click();
  const paid = page.locator('#paid');
  await paid.waitFor({ state: 'visible', timeout: 60000 });
  assert.deepEqual(JSON.parse(await paid.textContent()), { paid: true, path: '/report', payer: account.address });
  assert.deepEqual(asked, ['eth_requestAccounts', 'eth_signTypedData_v4']);
  assert.deepEqual(problems, []);
  await ctx.close();

  // Settled on chain by the facilitator: the provider's records show it with its transaction.
  const rows = (await allPayments(env.VLX_FACILITATOR_URL, env.VLX_SECRET_KEY)).filter((r) => r.payer === account.address);
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(rows[0].amount, '0.001');
  assert.match(rows[0].tx_hash, /^0x[0-9a-f]{64}$/);
});
