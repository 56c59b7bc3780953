// The package surface without servers: error mapping exhaustive over core's codes, the money,
// challenge and client vectors through the native module, dual ESM/CJS loading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as vlx from 'vlexivo';
import { vectors, pkgRoot } from './helpers.mjs';
import { mintProofToken, providerKeys } from './tokens.mjs';

const require = createRequire(import.meta.url);
const native = require('../native/index.js');
const {
  ALL_CODES, ALL_CATEGORIES, CODE_CLASSES, CATEGORY_CLASSES, VlexivoError, VlexivoInsufficientFundsError,
  VlexivoBudgetError, VlexivoPaymentError, VlexivoProofError, VlexivoConfigError, VlexivoFacilitatorError,
  VlexivoAmountError, VlexivoReplayError, VlexivoUnderpaidError, createError, errorFromBody, parseMoney,
  VlexivoServer, Wallet,
} = vlx;

test('the error classes follow core\'s table: every code, its category\'s class, its status', () => {
  const table = native.errorTable();
  // A code core adds fails here until ALL_CODES (and so the VlexivoErrorCode type) has it.
  assert.deepEqual([...ALL_CODES].sort(), table.map((r) => r.code).sort());
  assert.deepEqual([...ALL_CODES].sort(), native.allCodes().sort());
  assert.deepEqual([...ALL_CATEGORIES].sort(), native.errorCategories().sort());
  assert.deepEqual(Object.keys(CATEGORY_CLASSES).sort(), native.errorCategories().sort());
  assert.equal(new Set(Object.values(CATEGORY_CLASSES)).size, ALL_CATEGORIES.length, 'one class per category');
  for (const row of table) {
    const info = native.describeCode(row.code, null, null);
    assert.ok(info, `core knows ${row.code}`);
    assert.deepEqual([info.code, info.status, info.category], [row.code, row.status, row.category]);
    // Without a status: core's status comes from the table.
    const err = createError(row.code, info.message, { details: info.details });
    assert.equal(err.constructor, CODE_CLASSES[row.code], row.code);
    assert.ok(err instanceof CATEGORY_CLASSES[row.category], `${row.code} is a ${row.category} error`);
    for (const [category, cls] of Object.entries(CATEGORY_CLASSES)) {
      if (category !== row.category) assert.ok(!(err instanceof cls), `${row.code} is not a ${category} error`);
    }
    assert.deepEqual([err.code, err.status, err.category, err.name], [row.code, row.status, row.category, CODE_CLASSES[row.code].name]);
  }
  assert.equal(native.describeCode('no_such_code', null, null), null);
  const unknown = createError('no_such_code', 'x');
  assert.deepEqual([unknown.code, unknown.category, unknown.details.unknownCode], ['internal', 'internal', 'no_such_code']);
  // A native throw carries its category too.
  assert.throws(() => native.parseMoney('abc', 'usd'), (e) => e.code === 'amount_malformed' && e.category === 'amount');
});

test('the published module has no test-only entry points; the tests\' own minter agrees with core', () => {
  for (const name of ['mintProofToken', 'randomId']) assert.equal(native[name], undefined, name);
  for (const name of ['mintProofToken', 'randomId']) assert.equal(vlx[name], undefined, name);
  // tokens.mjs derives keys from the spec (HKDF): the account matches core's.
  const secret = 'sk_test_' + Buffer.alloc(32, 7).toString('base64url');
  assert.equal(providerKeys(secret).account, native.accountForSecret(secret));
});

test('header names come from core', () => {
  assert.deepEqual(native.headerNames(), {
    challenge: 'Vlexivo-Challenge', proof: 'Vlexivo-Proof', receipt: 'Vlexivo-Receipt', payer: 'Vlexivo-Payer',
    expose: 'Vlexivo-Challenge, Vlexivo-Receipt',
  });
  assert.deepEqual(vlx.HEADERS, { challenge: 'Vlexivo-Challenge', proof: 'Vlexivo-Proof', receipt: 'Vlexivo-Receipt', payer: 'Vlexivo-Payer' });
  assert.equal(vlx.EXPOSED_HEADERS, native.headerNames().expose);
});

test("CORS exposure is core's rule: only to a request carrying Origin, merged with the app's own list", () => {
  assert.equal(native.exposesHeaders(true), true);
  assert.equal(native.exposesHeaders(false), false);
  const ours = native.headerNames().expose;
  assert.equal(native.exposeValue(null), ours);
  assert.equal(native.exposeValue('X-Id'), `X-Id, ${ours}`);
  assert.equal(native.exposeValue('X-Id, vlexivo-receipt'), 'X-Id, vlexivo-receipt, Vlexivo-Challenge');
  assert.equal(native.exposeValue('Vlexivo-Challenge, Vlexivo-Receipt'), null);
  assert.equal(native.exposeValue('*'), null);
});

test('no header name is spelled in the package sources (they come from the native module)', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const dir = `${pkgRoot}/ts`;
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    // Comments may name them; code may not.
    const code = readFileSync(`${dir}/${f}`, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    assert.doesNotMatch(code, /vlexivo-(proof|challenge|receipt|payer)\b/i, f);
  }
});

test('typed errors carry their fields', () => {
  const insufficient = errorFromBody(402, JSON.stringify({ error: 'insufficient_funds', message: 'm', required: '0.01', balance: '0.004', currency: 'usd' }));
  assert.ok(insufficient instanceof VlexivoInsufficientFundsError);
  assert.ok(insufficient instanceof VlexivoPaymentError);
  assert.equal(insufficient.category, 'payment');
  assert.equal(insufficient.status, 402);
  assert.equal(insufficient.requiredAmount, '0.01');
  assert.equal(insufficient.balance, '0.004');
  assert.equal(insufficient.currency, 'usd');
  const budget = createError('budget_exceeded', 'm', { details: { limit: 'per_call', requested: '0.01', remaining: '0.001' } });
  assert.ok(budget instanceof VlexivoBudgetError);
  assert.deepEqual([budget.limit, budget.requested, budget.remaining], ['per_call', '0.01', '0.001']);
  assert.ok(createError('token_replayed', 'm') instanceof VlexivoReplayError);
  assert.ok(createError('token_replayed', 'm') instanceof VlexivoProofError);
  assert.equal(createError('token_replayed', 'm').status, 409);
  const under = createError('token_underpaid', 'm', { details: { paid: '0.001', price: '0.01' } });
  assert.ok(under instanceof VlexivoUnderpaidError && under instanceof VlexivoProofError);
  assert.deepEqual([under.paid, under.price], ['0.001', '0.01']);
  assert.ok(createError('price_invalid', 'm') instanceof VlexivoConfigError);
  assert.ok(createError('facilitator_unavailable', 'm') instanceof VlexivoFacilitatorError);
  assert.deepEqual(insufficient.toJSON().error, 'insufficient_funds');
});

test('client vectors: error_from_body', () => {
  for (const c of vectors('client').cases.filter((c) => c.op === 'error_from_body')) {
    const err = errorFromBody(c.status, c.body);
    assert.ok(err instanceof VlexivoError, c.name);
    assert.equal(err.code, c.expect.error, c.name);
    if (c.expect.required !== undefined) {
      assert.equal(err.requiredAmount, c.expect.required);
      assert.equal(err.balance, c.expect.balance);
      assert.equal(err.currency, c.expect.currency);
    }
  }
});

function payerFor(file, config, now) {
  return new native.Payer({
    walletKey: file.private_key,
    facilitators: config.trusted,
    maxPerCall: config.max_per_call,
    maxTotal: config.max_total,
    autoTopUp: config.auto_top_up && { triggerBalance: config.auto_top_up.trigger_balance, topUpAmount: config.auto_top_up.top_up_amount },
    fixedNow: now,
  });
}

test('client vectors: parse the 402 and quote the payment', () => {
  const file = vectors('client');
  const cases = file.cases.filter((c) => c.op === 'quote');
  assert.ok(cases.length >= 12);
  for (const c of cases) {
    const payer = payerFor(file, c.config, c.now);
    const headers = Object.fromEntries(c.response.headers ?? []);
    let outcome;
    try {
      const pr = native.parsePaymentRequired(c.response.status, headers, Buffer.from(c.response.body ?? ''));
      const q = payer.quote(pr, c.request.method, c.request.url);
      outcome = { price: q.price, currency: q.currency, nonce: q.nonce, pay_url: q.payUrl, payment_request: JSON.parse(q.body) };
    } catch (e) {
      const err = vlx.createError(e.code, e.message, { details: e.details });
      outcome = { error: err.code };
      if (err.code === 'budget_exceeded') assert.ok(err instanceof VlexivoBudgetError);
    }
    assert.deepEqual(outcome, c.expect, c.name);
    assert.equal(payer.reservedTotal, '0', `${c.name}: a quote reserves nothing`);
  }
});

/** One recorded input through the native call; the step in the vectors' form. */
function feed(flow, input) {
  const [kind, v] = Object.entries(input)[0];
  let step;
  try {
    if (kind === 'start') step = flow.start();
    else if (kind === 'response') {
      step = flow.response(v.status, Object.fromEntries(v.headers), v.body === null ? null : Buffer.from(v.body), v.url);
    } else if (kind === 'answer') step = flow.answer(v.status, Buffer.from(v.body));
    else if (kind === 'transport_error') step = flow.transportError(v.sent, 'vector');
    else if (kind === 'resume') step = flow.resume();
    else throw new Error(`input ${kind}`);
  } catch (e) {
    assert.equal(e.vlexivo, true, String(e));
    return { error: e.code };
  }
  switch (step.kind) {
    case 'send':
      return { send: { url: step.url, proof: step.headers[native.PROOF_HEADER] ?? null } };
    case 'read_body':
      return { read_body: { limit: step.limit } };
    case 'facilitator':
      return { facilitator: { method: step.request.method, url: step.request.url, body: step.request.body ?? null } };
    case 'paid': {
      const e = step.event;
      return { paid: { price: e.price, nonce: e.receipt.nonce, replayed: e.receipt.replayed, topped_up: e.toppedUp ?? null, reconciled: e.reconciled } };
    }
    case 'wait':
      return { wait: {} };
    case 'return':
      return { return: {} };
    default:
      throw new Error(`step ${step.kind}`);
  }
}

test('client vectors: the payer flow, exchange by exchange', () => {
  const file = vectors('client');
  const flows = file.cases.filter((c) => c.op === 'flow');
  assert.ok(flows.length >= 9);
  for (const c of flows) {
    const payer = payerFor(file, c.config, c.now);
    for (const call of c.calls) {
      const flow = payer.call(call.method, call.url, call.replayable);
      call.exchanges.forEach((ex, i) => assert.deepEqual(feed(flow, ex.input), ex.expect, `${c.name}: exchange ${i}`));
    }
    const b = c.expect_budget;
    assert.deepEqual({ spent: payer.spentTotal, reserved: payer.reservedTotal, in_doubt: payer.inDoubtTotal }, b, c.name);
  }
});

test('challenge vectors: decode (what a client does with a 402 header)', () => {
  const header = native.headerNames().challenge;
  for (const c of vectors('challenge').cases) {
    let pr;
    try {
      pr = native.parsePaymentRequired(402, { [header]: c.encoded }, null);
    } catch (e) {
      assert.equal(e.code, c.expect.decode, c.name);
      continue;
    }
    assert.equal('ok', c.expect.decode, c.name);
    const f = c.expect.fields;
    assert.deepEqual(
      [pr.price, pr.currency, pr.method, pr.path, pr.account, pr.nonce, pr.encoded],
      [f.amount, f.currency, f.method, f.path, f.account, f.nonce, c.encoded],
      c.name,
    );
  }
});

test('money vectors: exact parsing, codes and atomic units', () => {
  for (const c of vectors('money').cases) {
    let got;
    try {
      got = { amount: native.parseMoney(c.input, c.currency, c.positive ?? false), atomic: native.moneyToAtomic(c.input, c.currency) };
    } catch (e) {
      got = { error: e.code };
      assert.ok(createError(e.code, e.message) instanceof VlexivoAmountError, c.name);
    }
    assert.deepEqual(got, c.expect, c.name);
  }
  assert.throws(() => parseMoney('abc'), (e) => e instanceof VlexivoAmountError && e.code === 'amount_malformed');
  assert.equal(VlexivoServer.parsePrice(0.001), '0.001');
  assert.throws(() => VlexivoServer.parsePrice(0.1 + 0.2), (e) => e instanceof VlexivoConfigError && e.code === 'price_invalid');
  assert.throws(() => VlexivoServer.parsePrice(0), (e) => e.code === 'price_invalid');
});

test('server config errors are typed', () => {
  assert.throws(() => new VlexivoServer({ apiSecret: 'nope' }), (e) => e instanceof VlexivoConfigError && e.code === 'config_invalid');
  const secret = 'sk_test_' + Buffer.alloc(32, 1).toString('base64url');
  assert.throws(() => new VlexivoServer({ apiSecret: secret, mode: 'live' }), (e) => e.code === 'mode_mismatch');
  const s = new VlexivoServer({ apiSecret: secret, mode: 'sandbox' });
  assert.throws(() => s.paywall({}), (e) => e.code === 'config_invalid');
  assert.throws(() => s.paywall({ price: '0.0000001' }), (e) => e.code === 'price_invalid');
  assert.throws(() => new VlexivoServer({ apiSecret: secret, store: { type: 'sqlite' } }), (e) => e.code === 'config_invalid');
  assert.throws(() => new vlx.VlexivoClient({ walletKey: 'zz' }), (e) => e.code === 'wallet_key_invalid');
  assert.throws(() => Wallet.import('0x1234'), (e) => e.code === 'wallet_key_invalid');
});

test('server verify/release/challenge/reject API', () => {
  const secret = 'sk_test_' + Buffer.alloc(32, 2).toString('base64url');
  const now = 1_800_000_000;
  const s = new VlexivoServer({ apiSecret: secret, clock: () => now });
  const token = mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.002', res: 'GET https://api.example.com/a', iat: now });
  const target = { method: 'GET', path: '/a?x=1', host: 'API.example.com:443', secure: true, price: '0.001' };
  const p = s.verify(token, target);
  assert.equal(p.amount, '0.002');
  assert.equal(p.resource, 'GET https://api.example.com/a');
  // The same proof at another origin buys nothing.
  assert.throws(() => s.verify(token, { ...target, host: 'evil.example' }), (e) => e.code === 'token_resource');
  assert.throws(() => s.verify(token, { ...target, secure: false }), (e) => e.code === 'token_resource');
  // No Host and no configured origin: nothing to bind to.
  assert.throws(() => s.verify(token, { ...target, host: undefined }), (e) => e.code === 'request_malformed' && e.status === 400);
  assert.throws(() => s.verify(token, target), (e) => e instanceof VlexivoReplayError && e.status === 409);
  s.release(p);
  assert.equal(s.verify(token, target).nonce, p.nonce);
  assert.throws(() => s.verify(token, { ...target, price: '0.01' }), (e) => e.code === 'token_underpaid' && e.paid === '0.002' && e.price === '0.01');
  assert.throws(() => s.verify(null, target), (e) => e.code === 'payment_required');
  const ch = s.challenge({ method: 'POST', path: '/b', host: 'api.example.com', price: 0.01 });
  assert.equal(JSON.parse(ch.body).resource, 'POST http://api.example.com/b');
  assert.equal(ch.status, 402);
  assert.ok(ch.headers[native.headerNames().challenge]);
  const rj = s.reject('token_expired', { method: 'POST', path: '/b', host: 'api.example.com', price: '0.01' });
  assert.equal(rj.status, 402);
  assert.equal(JSON.parse(rj.body).error, 'token_expired');
  let underpaid;
  assert.throws(() => s.verify(token, { ...target, price: '0.01' }), (e) => (underpaid = e).code === 'token_underpaid');
  const r = s.reject(underpaid, { ...target, price: '0.01' });
  assert.equal(r.status, 402);
  assert.equal(JSON.parse(r.body).error, 'token_underpaid');
  assert.match(JSON.parse(r.body).message, /0\.002.*0\.01/);
  const bad = s.reject('price_invalid', { method: 'GET', path: '/a' });
  assert.equal(bad.status, 500);
  assert.equal(s.purge(), 0);
});

test('the adapters\' path reads the proof as header bytes: non-ASCII text never verifies', () => {
  const secret = 'sk_test_' + Buffer.alloc(32, 3).toString('base64url');
  const now = 1_800_000_000;
  const pw = new native.Paywall({ apiSecret: secret, origin: 'https://api.example.com' });
  assert.equal(pw.origin, 'https://api.example.com');
  const route = pw.route('0.001', 'usd', 'per-call');
  const mint = () => mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.001', res: 'GET https://api.example.com/a', iat: now });
  const good = mint();
  assert.equal(typeof route.authorize(good, 'GET', '/a', undefined, false, now), 'string');
  // Latin-1 text as Node gives a header with such bytes, a character above U+00FF whose low
  // byte is a valid base64url character ('Ł' is U+0141, low byte 'A'), a lone surrogate.
  for (const [i, ch] of [['latin1', '\u00e9'], ['two-byte', '\u0141'], ['surrogate', '\ud800']].entries()) {
    const t = mint();
    const bad = t.slice(0, 40) + ch[1] + t.slice(41);
    const r = route.authorize(bad, 'GET', '/a', undefined, false, now);
    assert.equal(typeof r, 'object', ch[0]);
    assert.equal(r.status, 402, ch[0]);
    assert.ok(['token_malformed', 'token_invalid'].includes(r.code), `${ch[0]}: ${r.code}`);
    // The untouched token still pays once (a refused variant consumed nothing).
    assert.equal(typeof route.authorize(t, 'GET', '/a', undefined, false, now), 'string', `${i}`);
  }
});

test('authorizeFixed: the usual methods by number, the path exactly as JS has it', () => {
  const secret = 'sk_test_' + Buffer.alloc(32, 4).toString('base64url');
  const origin = 'https://api.example.com';
  const pw = new native.Paywall({ apiSecret: secret, origin });
  const route = pw.route('0.001', 'usd', 'per-call');
  const methods = native.httpMethods();
  for (const m of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) assert.ok(methods.includes(m), m);
  const GET = methods.indexOf('GET');
  const mint = (path) =>
    mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.001', res: `GET ${origin}${path}`, iat: Math.floor(Date.now() / 1000) });
  // The resource of a paid result (the line, or the array form when a field is not ASCII).
  const resourceOf = (r) => (typeof r === 'string' ? r.split('\u001f')[8] : r[7]);
  const long = '/' + 'x'.repeat(300);
  // [path as JS has it, the path the resource names]: ASCII, a query, Latin-1 characters as
  // Node's parser makes them of UTF-8 bytes, a character above U+00FF (as a rewritten URL
  // may hold), a lone surrogate (U+FFFD, as the by-name path reads it), longer than the ASCII
  // stack buffer; the argument's own stack buffer (512 UTF-16 units): the longest path it
  // holds, one that fills it (read again whole), a longer one, and one with a character above
  // U+00FF past its end.
  for (const [path, bound] of [
    ['/a', '/a'],
    ['/a?x=1#f', '/a'],
    ['/caf\u00c3\u00a9', '/caf\u00c3\u00a9'],
    ['/\u0141\u00f3d\u017a', '/\u0141\u00f3d\u017a'],
    ['/\ud800', '/\ufffd'],
    [long, long],
    ['/' + 'x'.repeat(509), '/' + 'x'.repeat(509)],
    ['/' + 'y'.repeat(510), '/' + 'y'.repeat(510)],
    ['/' + 'z'.repeat(1500), '/' + 'z'.repeat(1500)],
    ['/' + 'w'.repeat(600) + '\u0141', '/' + 'w'.repeat(600) + '\u0141'],
  ]) {
    const r = native.authorizeFixed(route.handle, mint(bound), GET, path);
    assert.equal(resourceOf(r), `GET ${origin}${bound}`, JSON.stringify(path));
    // The by-name path reads the same path the same way.
    assert.equal(resourceOf(route.authorize(mint(bound), 'GET', path)), `GET ${origin}${bound}`, JSON.stringify(path));
  }
  // 'Ł' (U+0141) is not 'A' (its low byte): a proof for /A\u00f3d\u017a buys nothing at /\u0141\u00f3d\u017a.
  const other = native.authorizeFixed(route.handle, mint('/A\u00f3d\u017a'), GET, '/\u0141\u00f3d\u017a');
  assert.equal(other.code, 'token_resource');
  assert.throws(() => native.authorizeFixed(route.handle, mint('/a'), methods.length, '/a'), /not an index of httpMethods/);
  // The proof argument: none (undefined or null) is a challenge; a proof with surrounding
  // whitespace that fills the proof's stack buffer (2048 bytes) or goes past it is read whole
  // and pays; Latin-1 text never verifies; anything but a string is refused.
  for (const none of [undefined, null]) assert.equal(native.authorizeFixed(route.handle, none, GET, '/a').code, 'payment_required');
  for (const total of [2047, 2048, 3000]) {
    const t = mint('/a');
    const padded = ' '.repeat(total - t.length - 1) + t + ' ';
    assert.equal(padded.length, total);
    assert.equal(resourceOf(native.authorizeFixed(route.handle, padded, GET, '/a')), `GET ${origin}/a`, `${total}`);
    assert.equal(native.authorizeFixed(route.handle, padded, GET, '/a').code, 'token_replayed', `${total}`);
  }
  const latin = mint('/a');
  assert.equal(native.authorizeFixed(route.handle, latin.slice(0, 40) + '\u00e9' + latin.slice(41), GET, '/a').status, 402);
  assert.throws(() => native.authorizeFixed(route.handle, 42, GET, '/a'), /string/);
  assert.throws(() => native.authorizeFixed(route.handle, mint('/a'), GET, 42), /string/);
  // Without a configured origin the request's own Host binds the proof; a call without one
  // has none to bind to.
  const own = new native.Paywall({ apiSecret: secret }).route('0.001', 'usd', 'per-call');
  const t = mintProofToken(secret, { sub: Wallet.generate().address, amt: '0.001', res: 'GET http://h.example/a', iat: Math.floor(Date.now() / 1000) });
  assert.equal(native.authorizeFixed(own.handle, t, GET, '/a').code, 'request_malformed');
  assert.equal(native.authorizeFixed(own.handle, t, GET, '/a', undefined, false).code, 'request_malformed');
  assert.equal(resourceOf(native.authorizeFixed(own.handle, t, GET, '/a', 'h.example', false)), 'GET http://h.example/a');
});

test('sqlite nonce store survives a new server on the same file', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'vlx-sqlite-'));
  try {
    const secret = 'sk_test_' + Buffer.alloc(32, 3).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const token = mintProofToken(secret, { sub: Wallet.generate().address, amt: '1', res: 'GET http://h/a', iat: now });
    const path = join(dir, 'nonces.db');
    const a = new VlexivoServer({ apiSecret: secret, store: { type: 'sqlite', path } });
    assert.equal(a.native.storeKind, 'sqlite');
    a.verify(token, { method: 'GET', path: '/a', host: 'h', price: '1' });
    const b = new VlexivoServer({ apiSecret: secret, store: { type: 'sqlite', path } });
    assert.throws(() => b.verify(token, { method: 'GET', path: '/a', host: 'h', price: '1' }), (e) => e.code === 'token_replayed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dual package: import and require share one set of classes', async () => {
  const cjs = require('vlexivo');
  assert.equal(cjs.VlexivoError, VlexivoError);
  assert.equal(cjs.VlexivoServer, VlexivoServer);
  const fastifyCjs = require('vlexivo/fastify');
  const fastifyEsm = await import('vlexivo/fastify');
  assert.equal(typeof fastifyCjs.default, 'function');
  assert.equal(fastifyEsm.default, fastifyCjs.default);
  const hapiCjs = require('vlexivo/hapi');
  const hapiEsm = await import('vlexivo/hapi');
  assert.equal(hapiEsm.plugin, hapiCjs.plugin);
  assert.equal(hapiCjs.plugin.name, 'vlexivo');
  const { readFileSync } = await import('node:fs');
  const pkg = JSON.parse(readFileSync(`${pkgRoot}/package.json`, 'utf8'));
  for (const entry of ['.', './fastify', './hapi', './express']) {
    assert.ok(pkg.exports[entry].import.types.endsWith('.d.mts'));
    assert.ok(pkg.exports[entry].require.types.endsWith('.d.ts'));
  }
});

test('wallet generate / import / address', () => {
  const w = Wallet.generate();
  const again = Wallet.import(w.exportKey());
  assert.equal(again.address, w.address);
  assert.match(w.address, /^0x[0-9a-fA-F]{40}$/);
  assert.deepEqual(JSON.parse(JSON.stringify(w)), { address: w.address });
  const file = vectors('client');
  assert.equal(Wallet.import(file.private_key).address, '0x063a6Db64b4784deD0f350938bdb63Be12d3Db5a');
});

test('autoTopUpAmount follows core', () => {
  assert.equal(native.autoTopUpAmount('5', '0.001', '1.00', '10.00'), null);
  assert.equal(native.autoTopUpAmount('1.0005', '0.001', '1.00', '10.00'), '10');
  assert.equal(native.autoTopUpAmount('0', '25', '1.00', '10.00'), '25');
});
