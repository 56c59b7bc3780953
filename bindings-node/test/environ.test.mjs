// Environment names: core's VLX_* names, the older VLEXIVO_* ones when those are unset, and a
// config_invalid error (naming both, never the values) when both are set to different values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VlexivoServer, VlexivoClient, VlexivoConfigError, Wallet } from 'vlexivo';

const SECRET = 'sk_test_6pmpFeivHgqW7JxfnBXZje6aGyg3nqjNmwfgLHfp7bM';
const OTHER = 'sk_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const NAMES = ['VLX_SECRET_KEY', 'VLEXIVO_API_SECRET', 'VLX_WALLET_KEY', 'VLEXIVO_WALLET_KEY', 'VLX_FACILITATOR_URL', 'VLEXIVO_FACILITATOR_URL'];

function withEnv(vars, fn) {
  const saved = Object.fromEntries(NAMES.map((n) => [n, process.env[n]]));
  for (const n of NAMES) delete process.env[n];
  Object.assign(process.env, vars);
  try {
    return fn();
  } finally {
    for (const n of NAMES) {
      if (saved[n] === undefined) delete process.env[n];
      else process.env[n] = saved[n];
    }
  }
}

test('new names and their older aliases', () => {
  const account = withEnv({ VLX_SECRET_KEY: SECRET, VLEXIVO_FACILITATOR_URL: 'http://127.0.0.1:4999' }, () => {
    const vlx = new VlexivoServer();
    assert.equal(vlx.facilitatorUrl, 'http://127.0.0.1:4999');
    return vlx.account;
  });
  withEnv({ VLEXIVO_API_SECRET: SECRET, VLX_FACILITATOR_URL: 'http://127.0.0.1:4998' }, () => {
    const vlx = new VlexivoServer();
    assert.equal(vlx.account, account);
    assert.equal(vlx.facilitatorUrl, 'http://127.0.0.1:4998');
  });
  const wallet = Wallet.generate();
  withEnv({ VLEXIVO_WALLET_KEY: wallet.exportKey() }, () => {
    assert.equal(new VlexivoClient().address, wallet.address);
  });
});

test('both names set to different values: config_invalid, naming both, no values', () => {
  withEnv({ VLX_SECRET_KEY: SECRET, VLEXIVO_API_SECRET: OTHER }, () => {
    assert.throws(() => new VlexivoServer(), (e) => {
      assert.ok(e instanceof VlexivoConfigError, String(e));
      assert.equal(e.code, 'config_invalid');
      assert.match(e.message, /VLX_SECRET_KEY/);
      assert.match(e.message, /VLEXIVO_API_SECRET/);
      assert.ok(!e.message.includes(SECRET) && !e.message.includes(OTHER), e.message);
      return true;
    });
  });
});
