// The shared vectors (../tests/vectors) through one adapter on a real server: each paywall
// case's requests in order (status, error code, fresh challenge, payment facts), and every
// money input as a price from a resolver (bad ones must be a logged 500 price_invalid).
// vectors.test.mjs runs them through every adapter; next.test.mjs through a built Next.js app.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { jsonOf } from './apps.mjs';
import { vectors, captureLogger } from './helpers.mjs';

const paywall = vectors('paywall');
const money = vectors('money');
const FACT_FIELDS = ['payer', 'amount', 'currency', 'txHash', 'nonce', 'paidAt', 'expiresAt', 'resource'];

/** A resolver argument's JSON body: a fetch Request is read (it is a clone), others as the apps parsed it. */
async function bodyJson(req) {
  if (req instanceof Request) return req.json().catch(() => undefined);
  return jsonOf(req);
}

/**
 * Every vector suite through `start` (an app factory of apps.mjs). `fetchRequests`: the
 * resolver receives a WHATWG Request (its body is read asynchronously only).
 */
export function vectorSuites(name, start, { fetchRequests = false } = {}) {
  describe(`paywall vectors through ${name}`, () => {
    for (const c of paywall.cases) {
      test(c.name, async () => {
        let now = c.requests[0].now;
        const logger = captureLogger();
        // A fresh server (and nonce store) per case, as the vectors require.
        const app = await start(
          {
            apiSecret: paywall.api_secret,
            facilitatorUrl: paywall.facilitator_url,
            origin: paywall.origin,
            leeway: paywall.leeway_secs,
            jwks: c.jwks ? paywall.jwks : undefined,
            clock: () => now,
            logger,
          },
          { price: c.price, currency: c.currency },
        );
        try {
          for (const [i, r] of c.requests.entries()) {
            now = r.now;
            // A browser-style cross-origin request, so the CORS expose header is due too.
            const headers = { origin: 'https://app.example' };
            if (r.proof !== null && r.proof !== undefined) headers['vlexivo-proof'] = r.proof;
            if (r.handler_status !== undefined) headers['x-handler-status'] = String(r.handler_status);
            const res = await fetch(app.url + r.path, { method: r.method, headers });
            const body = await res.json();
            const where = `${c.name} #${i} (${name})`;
            assert.equal(res.status, r.expect.status, `${where}: status ${JSON.stringify(body)}`);
            if (r.expect.error !== undefined) {
              assert.equal(body.error, r.expect.error, where);
              assert.equal(res.headers.has('vlexivo-challenge'), Boolean(r.expect.challenge), `${where}: challenge header`);
              if (r.expect.challenge) {
                assert.equal(body.challenge, res.headers.get('vlexivo-challenge'), where);
                assert.equal(body.price, c.price, where);
              }
              assert.equal(res.headers.has('vlexivo-receipt'), false, where);
            }
            if (r.expect.payment !== undefined) {
              for (const f of FACT_FIELDS) assert.deepEqual(body.payment[f], r.expect.payment[f], `${where}: ${f}`);
              if (res.status >= 500) continue; // released: no receipt promised
              const receipt = res.headers.get('vlexivo-receipt');
              assert.match(receipt, new RegExp(`tx=${r.expect.payment.txHash}; amount=${r.expect.payment.amount}; currency=usd; payer=${r.expect.payment.payer}; nonce=${r.expect.payment.nonce}`), where);
              assert.match(res.headers.get('access-control-expose-headers') ?? '', /Vlexivo-Receipt/i, where);
            }
          }
        } finally {
          await app.close();
        }
      });
    }
  });

  describe(`money vectors as resolver prices through ${name}`, () => {
    let app;
    let current;
    const logger = captureLogger();
    before(async () => {
      app = await start(
        { apiSecret: paywall.api_secret, facilitatorUrl: paywall.facilitator_url, logger },
        { priceResolver: () => ({ price: current.input, currency: current.currency }) },
      );
    });
    after(() => app.close());

    test('every money case', async () => {
      for (const c of money.cases) {
        current = c;
        logger.lines.length = 0;
        const res = await fetch(`${app.url}/api/v1/priced`, { method: 'POST' });
        const body = await res.json();
        const bad = c.expect.error !== undefined || c.expect.amount === '0';
        if (bad) {
          assert.equal(res.status, 500, `${c.name}: ${JSON.stringify(body)}`);
          assert.equal(body.error, 'price_invalid', c.name);
          assert.equal(res.headers.has('vlexivo-challenge'), false, c.name);
          assert.equal(logger.lines.length, 1, `${c.name}: one log line`);
          assert.match(logger.lines[0], /price_invalid/);
          // The public body does not leak the provider's details.
          assert.doesNotMatch(body.message, /decimal|precision|NaN/i, c.name);
        } else {
          assert.equal(res.status, 402, `${c.name}: ${JSON.stringify(body)}`);
          assert.equal(body.price, c.expect.amount, c.name);
          assert.equal(body.currency, 'usd', c.name);
        }
      }
      assert.equal(app.counter.runs, 0, 'no handler ran unpaid');
    });
  });

  describe(`resolver edge cases through ${name}`, () => {
    const cases = [
      ['throws', () => { throw new Error('pricing db down'); }, /priceResolver threw: pricing db down/],
      ['rejects', async () => { throw new Error('pricing db down'); }, /priceResolver threw/],
      ['returns undefined', () => undefined, /returned undefined/],
      ['returns an object', () => ({}), /returned object/],
      ['returns NaN', () => NaN, /price_invalid/],
      ['returns a negative number', () => -0.001, /price_invalid/],
      ['returns 0.1 + 0.2', () => 0.1 + 0.2, /more than 6 decimals/],
      ['async returns over-precise string', async () => '0.0000001', /more than 6 decimals/],
    ];
    for (const [label, resolver, logRe] of cases) {
      test(label, async () => {
        const logger = captureLogger();
        const app = await start({ apiSecret: paywall.api_secret, logger }, { priceResolver: resolver });
        try {
          const res = await fetch(`${app.url}/api/x`, { method: 'POST' });
          const body = await res.json();
          assert.equal(res.status, 500);
          assert.equal(body.error, 'price_invalid');
          assert.equal(app.counter.runs, 0);
          assert.equal(logger.lines.length, 1);
          assert.match(logger.lines[0], logRe);
        } finally {
          await app.close();
        }
      });
    }

    test('sync and async resolvers read the request', async () => {
      const resolvers = [async (req) => ((await bodyJson(req))?.model?.includes('large') ? 0.01 : '0.001')];
      // A fetch Request's body can only be read asynchronously.
      if (!fetchRequests) resolvers.push((req) => (jsonOf(req)?.model?.includes('large') ? '0.01' : 0.001));
      for (const resolver of resolvers) {
        const app = await start({ apiSecret: paywall.api_secret }, { priceResolver: resolver });
        try {
          const big = await fetch(`${app.url}/api/v1/inference`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'large-v2' }),
          });
          assert.equal(big.status, 402);
          assert.equal((await big.json()).price, '0.01');
          const small = await fetch(`${app.url}/api/v1/inference`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'small' }),
          });
          assert.equal((await small.json()).price, '0.001');
        } finally {
          await app.close();
        }
      }
    });

    test('a CORS preflight passes unpaid; a plain OPTIONS pays', async () => {
      const app = await start({ apiSecret: paywall.api_secret }, { price: '0.001' });
      try {
        const plain = await fetch(`${app.url}/api/x`, { method: 'OPTIONS' });
        assert.equal(plain.status, 402);
        assert.equal((await plain.json()).error, 'payment_required');
        assert.equal(app.counter.runs, 0);
        const pre = await fetch(`${app.url}/api/x`, {
          method: 'OPTIONS',
          headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
        });
        assert.equal(pre.status, 200);
        assert.equal(app.counter.runs, 1, 'the preflight reached the handler, unpaid');
        assert.equal(pre.headers.get('vlexivo-receipt'), null);
      } finally {
        await app.close();
      }
    });
  });
}
