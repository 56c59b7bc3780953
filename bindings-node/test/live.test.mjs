// Live mode from Node: a real anvil with Circle's FiatTokenV2_2 and a live facilitator
// (`vlexivo demo --live --serve`), an Express paywall in live mode configured from the VLX_*
// settlement terms, and the Node client paying on chain. The balances are read from the chain
// (eth_call balanceOf), independently of the facilitator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VlexivoClient, VlexivoError, VlexivoPaymentError, VlexivoServer, Wallet, verifyPayment } from 'vlexivo';
import { adapters } from './apps.mjs';
import { deadPort, liveSkip, startLiveDevnet } from './helpers.mjs';

const skip = liveSkip;

let devnet;
let env;
before(async () => {
  if (skip) return;
  devnet = await startLiveDevnet();
  env = devnet.env;
});
after(() => devnet?.stop());

/** The token balance of `address` on chain, in atomic units. */
async function onChain(address) {
  const data = '0x70a08231' + address.slice(2).toLowerCase().padStart(64, '0');
  const res = await fetch(env.VLX_RPC_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_call', params: [{ to: env.VLX_ASSET, data }, 'latest'] }),
  });
  return BigInt((await res.json()).result);
}

test('the Node client pays a live Express paywall; the price moves payer -> payout on chain', { skip }, async () => {
  // The live paywall reads its settlement terms from the environment, as in production.
  for (const k of ['VLX_NETWORK', 'VLX_ASSET', 'VLX_ASSET_NAME', 'VLX_ASSET_VERSION', 'VLX_PAY_TO']) {
    process.env[k] = env[k];
  }
  const server = new VlexivoServer({ apiSecret: env.VLX_SECRET_KEY, mode: 'live', facilitatorUrl: env.VLX_FACILITATOR_URL });
  const app = await adapters.express5(server, { price: '0.001', currency: 'usd', scope: 'per-call' });
  try {
    const payer = Wallet.import(env.VLX_WALLET_KEY).address;
    const [payerBefore, payoutBefore] = [await onChain(payer), await onChain(env.VLX_PAY_TO)];
    const client = new VlexivoClient({ walletKey: env.VLX_WALLET_KEY, facilitatorUrl: env.VLX_FACILITATOR_URL });
    const hashes = new Set();
    for (let i = 0; i < 3; i++) {
      const res = await client.fetch(`${app.url}/api/v1/hello?i=${i}`);
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.payment.payer, payer);
      assert.equal(body.payment.amount, '0.001');
      assert.match(body.payment.txHash, /^0x[0-9a-f]{64}$/);
      hashes.add(body.payment.txHash);
    }
    assert.equal(hashes.size, 3, 'one transaction per call');
    // 0 confirmations: the proof comes once the node took the relay; read the chain after its block.
    for (const tx of hashes) await mined(tx);
    assert.equal(payerBefore - (await onChain(payer)), 3000n);
    assert.equal((await onChain(env.VLX_PAY_TO)) - payoutBefore, 3000n);
    assert.equal(client.spent, '0.003');
  } finally {
    await app.close();
  }
});

async function rpc(method, params) {
  const res = await fetch(env.VLX_RPC_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await res.json();
  assert.equal(body.error, undefined, JSON.stringify(body));
  return body.result;
}

/** The receipt of `tx` once it is in a block, or a failure after 10 s. anvil answers
 * eth_sendTransaction, and the facilitator at 0 confirmations answers a payment, as soon as the
 * node took the transaction: its automined block may not be in yet, so nothing read from the
 * chain (a balance, a receipt) reflects it until then. */
async function mined(tx) {
  for (let i = 0; i < 400; i++) {
    const receipt = await rpc('eth_getTransactionReceipt', [tx]);
    if (receipt !== null) return receipt;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`no receipt for ${tx} within 10 s`);
}

/** A mined transaction whose status is 0: one of anvil's unlocked dev accounts, holding no
 * token, transfers 1 unit of it (gas given, so the node mines it rather than estimating). */
async function revertedTransaction() {
  const sender = (await rpc('eth_accounts', []))[5];
  const data = '0xa9059cbb' + env.VLX_PAY_TO.slice(2).toLowerCase().padStart(64, '0') + '1'.padStart(64, '0');
  const tx = await rpc('eth_sendTransaction', [{ from: sender, to: env.VLX_ASSET, data, gas: '0x30000' }]);
  assert.equal((await mined(tx)).status, '0x0');
  return tx;
}

test('a provider verifies a live payment on chain: the payment verifies, every wrong expectation has its code', { skip }, async () => {
  for (const k of ['VLX_NETWORK', 'VLX_ASSET', 'VLX_ASSET_NAME', 'VLX_ASSET_VERSION', 'VLX_PAY_TO']) {
    process.env[k] = env[k];
  }
  const server = new VlexivoServer({ apiSecret: env.VLX_SECRET_KEY, mode: 'live', facilitatorUrl: env.VLX_FACILITATOR_URL });
  const app = await adapters.express5(server, { price: '0.002', currency: 'usd', scope: 'per-call' });
  let txHash;
  try {
    const client = new VlexivoClient({ walletKey: env.VLX_WALLET_KEY, facilitatorUrl: env.VLX_FACILITATOR_URL });
    const res = await client.fetch(`${app.url}/api/v1/hello?verify`);
    assert.equal(res.status, 200);
    txHash = (await res.json()).payment.txHash;
  } finally {
    await app.close();
  }
  await mined(txHash);
  const payer = Wallet.import(env.VLX_WALLET_KEY).address;
  const rpcUrl = env.VLX_RPC_URL;

  // The real payment verifies (token and payout address from the environment).
  const v = await verifyPayment(txHash, { rpcUrl, payer, amount: '0.002' });
  assert.deepEqual(
    [v.txHash, v.payer, v.payee, v.token, v.amount, v.transfers, v.matching, v.authorizationChecked],
    [txHash, payer, env.VLX_PAY_TO, env.VLX_ASSET, '0.002', 1, 1, false],
  );
  assert.ok(v.block > 0 && v.confirmations >= 1 && v.gasUsed > 0, JSON.stringify(v));
  assert.equal((await verifyPayment(txHash, { rpcUrl, payer, amount: 0.002 })).block, v.block);

  const refused = async (hash, opts) => {
    try {
      await verifyPayment(hash, { rpcUrl, payer, amount: '0.002', ...opts });
    } catch (e) {
      assert.ok(e instanceof VlexivoError, String(e));
      return e;
    }
    assert.fail('verified');
  };
  // Each wrong expectation names its field.
  let e = await refused(txHash, { amount: '0.003' });
  assert.deepEqual([e.code, e.status, e.details], ['transfer_mismatch', 402, { field: 'amount', expected: '0.003', got: '0.002' }]);
  assert.ok(e instanceof VlexivoPaymentError);
  assert.equal((await refused(txHash, { payTo: payer })).details.field, 'payee');
  assert.equal((await refused(txHash, { payer: env.VLX_PAY_TO })).details.field, 'payer');
  e = await refused(txHash, { asset: payer });
  assert.deepEqual([e.details.field, e.details.got], ['token', env.VLX_ASSET]);
  assert.equal((await refused(txHash, { authorizationNonce: '0x' + '00'.repeat(32) })).details.field, 'authorization');
  // Not deep enough yet; an unknown hash; a reverted transaction.
  e = await refused(txHash, { confirmations: 10_000 });
  assert.deepEqual([e.code, e.details.required], ['confirmations_pending', 10_000]);
  assert.equal((await refused('0x' + 'ab'.repeat(32))).code, 'transaction_not_found');
  assert.equal((await refused(await revertedTransaction())).code, 'settlement_failed');
  // The RPC down: chain_unavailable, and the URL (its API key) is never in the error.
  e = await refused(txHash, { rpcUrl: `http://127.0.0.1:${await deadPort()}/v3/key-s3cr3t` });
  assert.deepEqual([e.code, e.status], ['chain_unavailable', 503]);
  assert.ok(!JSON.stringify(e.toJSON()).includes('s3cr3t') && !e.message.includes('s3cr3t'), e.message);
  // Bad input is refused before anything is sent.
  assert.equal((await refused('0x1234')).code, 'request_malformed');
  assert.equal((await refused(txHash, { amount: -1 })).code, 'amount_negative');
  delete process.env.VLX_RPC_URL;
  assert.equal((await refused(txHash, { rpcUrl: undefined })).code, 'config_invalid');
});

test('live auto top-up: a payer short of funds is topped up on chain from its funding wallet, once, then pays; the cap and an empty funding wallet refuse with their codes, nothing paid', { skip }, async () => {
  for (const k of ['VLX_NETWORK', 'VLX_ASSET', 'VLX_ASSET_NAME', 'VLX_ASSET_VERSION', 'VLX_PAY_TO']) {
    process.env[k] = env[k];
  }
  const server = new VlexivoServer({ apiSecret: env.VLX_SECRET_KEY, mode: 'live', facilitatorUrl: env.VLX_FACILITATOR_URL });
  const app = await adapters.express5(server, { price: '0.001', currency: 'usd', scope: 'per-call' });
  // The funding wallet: the demo's funded payer, given gas for the transfers it sends.
  const funder = Wallet.import(env.VLX_WALLET_KEY).address;
  const oneEth = '0xde0b6b3a7640000';
  await rpc('anvil_setBalance', [funder, oneEth]);
  const rpcUrl = env.VLX_RPC_URL;
  const clientFor = (walletKey, autoTopUp, onPayment) =>
    new VlexivoClient({ walletKey, facilitatorUrl: env.VLX_FACILITATOR_URL, autoTopUp, onPayment });
  try {
    const [funderBefore, payoutBefore] = [await onChain(funder), await onChain(env.VLX_PAY_TO)];
    const payerKey = Wallet.generate().exportKey();
    const payer = Wallet.import(payerKey).address;
    const events = [];
    const rule = { triggerBalance: '0', topUpAmount: '0.01', fundingWalletKey: env.VLX_WALLET_KEY, rpcUrl };
    const client = clientFor(payerKey, rule, (info) => events.push(info));
    for (let i = 0; i < 2; i++) {
      const res = await client.fetch(`${app.url}/api/v1/hello?topup=${i}`);
      assert.equal(res.status, 200);
    }
    assert.deepEqual(events.map((e) => e.toppedUp), ['0.01', undefined], 'one top-up, before the first payment');
    for (const e of events) await mined(e.txHash);
    assert.equal(funderBefore - (await onChain(funder)), 10000n);
    assert.equal(await onChain(payer), 8000n);

    // Over the cap: refused, nothing sent, nothing paid.
    await assert.rejects(
      clientFor(Wallet.generate().exportKey(), { ...rule, maxTotal: '0.0005' }).fetch(`${app.url}/api/v1/hello?cap`),
      (e) => e instanceof VlexivoPaymentError && e.code === 'top_up_refused' && /capped at 0\.0005/.test(e.message),
    );
    // A funding wallet without the token: funding_insufficient with the amounts, never its key.
    const emptyKey = Wallet.generate().exportKey();
    await rpc('anvil_setBalance', [Wallet.import(emptyKey).address, oneEth]);
    await assert.rejects(
      clientFor(Wallet.generate().exportKey(), { ...rule, fundingWalletKey: emptyKey }).fetch(`${app.url}/api/v1/hello?empty`),
      (e) =>
        e instanceof VlexivoPaymentError &&
        e.code === 'funding_insufficient' &&
        e.details.required === '0.01' &&
        e.details.balance === '0' &&
        !JSON.stringify(e.toJSON()).includes(emptyKey.slice(2)),
    );
    assert.equal(funderBefore - (await onChain(funder)), 10000n);
    assert.equal((await onChain(env.VLX_PAY_TO)) - payoutBefore, 2000n, 'the two paid calls only');
  } finally {
    await app.close();
  }
});
