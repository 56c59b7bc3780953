// Run by ci.sh against a test-only build of the addon (cargo feature `test-panic`, loaded through
// NAPI_RS_NATIVE_LIBRARY_PATH): a panic inside a binding call must reach JS as an `internal`
// VlexivoError, and the process must go on working. Not part of `npm test` (the normal build
// has no way to panic on purpose).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const vlexivo = require('../dist/index.js');

test('a panic in a binding call is an internal error, not a crash', () => {
  assert.ok(process.env.NAPI_RS_NATIVE_LIBRARY_PATH, 'run by ci.sh with the test-panic build');
  for (let i = 0; i < 3; i++) {
    assert.throws(
      () => vlexivo.parseMoney('1.00', 'test-panic'),
      (e) => {
        assert.ok(e instanceof vlexivo.VlexivoInternalError, `got ${e?.constructor?.name}: ${e}`);
        assert.equal(e.code, 'internal');
        assert.equal(e.status, 500);
        assert.match(e.message, /forced by the test-panic feature/);
        return true;
      },
    );
    // The addon still answers after the panic.
    assert.equal(vlexivo.parseMoney('1.50', 'usd'), '1.5');
  }
});

test('a panic inside a class method is an internal error too', () => {
  const server = new vlexivo.VlexivoServer({
    apiSecret: 'sk_test_' + Buffer.alloc(32, 5).toString('base64url'),
    origin: 'https://api.example.com',
  });
  const target = { method: 'GET', path: '/x', price: '0.01', currency: 'test-panic' };
  assert.throws(() => server.verify(undefined, target), (e) => e instanceof vlexivo.VlexivoInternalError);
  assert.throws(() => server.verify(undefined, { ...target, currency: 'usd' }), (e) => e.code === 'payment_required');
});
