// The browser suites' plumbing: Debian's chromium driven by playwright-core, a real `vlexivo`
// facilitator process (started as the npm package's tests start it) and a real paid Express app
// (the npm package built in bindings-node), all on 127.0.0.1 with ports the OS picks.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');
// The package as its users get it (its own dependencies: express).
const fromPackage = createRequire(join(repoRoot, 'bindings-node', 'package.json'));
export const vlexivo = fromPackage('./dist/index.js');
export const express = fromPackage('express');

export function chromiumPath() {
  const p = process.env.CHROMIUM_BIN ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((c) => existsSync(c));
  if (!p) throw new Error('chromium not found (apt-get install chromium)');
  return p;
}

export async function launch() {
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox'] });
}

// A real `vlexivo serve` on a free port, as the npm package's own tests start it.
export { startFacilitator, startLiveDevnet, liveSkip } from '../../bindings-node/test/helpers.mjs';

export async function api(url, path, { secret, method = 'GET', body } = {}) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(secret ? { authorization: `Bearer ${secret}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** Every payment through the API's cursor paging, newest first. */
export async function allPayments(url, secret, filters = '') {
  const rows = [];
  let cursor = '';
  for (;;) {
    const r = await api(url, `/v1/providers/me/payments?limit=1000${filters}${cursor ? `&cursor=${cursor}` : ''}`, { secret });
    if (r.status !== 200) throw new Error(`payments: ${r.status} ${r.text}`);
    rows.push(...r.json.payments);
    if (!r.json.next_cursor) return rows;
    cursor = r.json.next_cursor;
  }
}

/** A paid Express app: every route under /api is paywalled at the price its path names. */
export async function startPaidApp(facilitatorUrl, apiSecret) {
  const app = express();
  const server = new vlexivo.VlexivoServer({ apiSecret, mode: 'sandbox', facilitatorUrl });
  const prices = { '/api/weather': '0.01', '/api/forecast': '0.02' };
  app.use(
    '/api',
    server.paywall({
      currency: 'usd',
      priceResolver: (req) => prices[`/api${req.path}`] ?? '0.005',
    }),
  );
  app.use('/api', (req, res) => res.json({ paid: true, path: req.path, payer: req.vlxPayment?.payer }));
  app.use(server.errorHandler());
  const http = await new Promise((ok) => {
    const s = app.listen(0, '127.0.0.1', () => ok(s));
  });
  return {
    url: `http://127.0.0.1:${http.address().port}`,
    close: () =>
      new Promise((r) => {
        http.closeAllConnections?.();
        http.close(() => r());
      }),
  };
}
