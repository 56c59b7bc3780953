// Independent oracles (viem): signatures made by core verify in viem, and signatures made by
// viem are accepted by core, both ways on EIP-712 PaymentAuthorization (docs/protocol.md §6);
// addresses and EIP-55 checksums agree. The viem → core direction goes through a real
// facilitator, which recovers the payer from the signature before it charges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { getAddress, hashTypedData, keccak256, recoverTypedDataAddress, toBytes } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { vectors, startFacilitator, onboard, topUp, balance } from './helpers.mjs';

const require = createRequire(import.meta.url);
const native = require('../native/index.js');

const TYPES = {
  PaymentAuthorization: [
    { name: 'challenge', type: 'bytes32' },
    { name: 'payee', type: 'string' },
    { name: 'amount', type: 'uint256' },
    { name: 'currency', type: 'string' },
    { name: 'deadline', type: 'uint256' },
  ],
};

/** The EIP-712 typed data of §6 for a challenge as a payer receives it (base64url text). */
function typedData(encoded, { account, amountAtomic, currency, exp, chainId }) {
  return {
    domain: { name: 'Vlexivo', version: '1', chainId },
    types: TYPES,
    primaryType: 'PaymentAuthorization',
    message: {
      challenge: keccak256(toBytes(encoded)),
      payee: account,
      amount: BigInt(amountAtomic),
      currency,
      deadline: BigInt(exp),
    },
  };
}

const decode = (encoded) => JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
const atomic = (amount) => {
  const [i, f = ''] = amount.split('.');
  return BigInt(i) * 1_000_000n + BigInt(f.padEnd(6, '0'));
};

test('core\'s signing hash and signature are viem\'s (the wallet vector)', async () => {
  const c = vectors('wallet').cases.find((x) => x.op === 'sign');
  const a = c.authorization;
  const td = {
    domain: { name: 'Vlexivo', version: '1', chainId: a.chain_id },
    types: TYPES,
    primaryType: 'PaymentAuthorization',
    message: { challenge: a.challenge, payee: a.payee, amount: BigInt(a.amount), currency: a.currency, deadline: BigInt(a.deadline) },
  };
  assert.equal(hashTypedData(td), c.expect.signing_hash);
  assert.equal(await recoverTypedDataAddress({ ...td, signature: c.expect.signature }), c.expect.signer);
  // viem signs deterministically (RFC 6979, low-s, v 27/28) to the very same bytes.
  assert.equal(await privateKeyToAccount(c.private_key).signTypedData(td), c.expect.signature);
});

test('payments signed by core recover to the payer in viem', async () => {
  const secret = 'sk_test_' + Buffer.alloc(32, 11).toString('base64url');
  const pw = new native.Paywall({ apiSecret: secret, facilitatorUrl: 'http://127.0.0.1:4020' });
  const header = native.headerNames().challenge;
  for (const price of ['0.001', '0.0123', '7', '999999.999999']) {
    const key = generatePrivateKey();
    const payer = new native.Payer({ walletKey: key, facilitatorUrl: 'http://127.0.0.1:4020' });
    const ch = pw.challenge('POST', '/api/v1/inference', 'api.example.com', false, price, 'usd');
    const encoded = ch.headers[header];
    const pr = native.parsePaymentRequired(402, { [header]: encoded }, null);
    const quote = payer.quote(pr, 'POST', 'http://api.example.com/api/v1/inference');
    const req = JSON.parse(quote.body);
    const c = decode(encoded);
    const td = typedData(encoded, { account: c.account, amountAtomic: atomic(c.amount), currency: c.currency, exp: c.exp, chainId: 0 });
    const signer = await recoverTypedDataAddress({ ...td, signature: req.signature });
    assert.equal(signer, privateKeyToAccount(key).address, price);
    assert.equal(req.payer, signer, price);
    // Any other amount recovers someone else.
    const other = { ...td, message: { ...td.message, amount: td.message.amount + 1n } };
    assert.notEqual(await recoverTypedDataAddress({ ...other, signature: req.signature }), signer);
  }
});

test('payments signed by viem are accepted by a real facilitator; a tampered one is refused', async () => {
  const fac = await startFacilitator();
  try {
    const provider = await onboard(fac.url);
    const pw = new native.Paywall({ apiSecret: provider.api_secret, facilitatorUrl: fac.url });
    const header = native.headerNames().challenge;
    const account = privateKeyToAccount(generatePrivateKey());
    await topUp(fac.url, account.address, '1');
    const pay = (body) => fetch(`${fac.url}/v1/payments`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });

    const encoded = pw.challenge('GET', '/report', 'api.example.com', false, '0.25', 'usd').headers[header];
    const c = decode(encoded);
    const td = typedData(encoded, { account: c.account, amountAtomic: atomic(c.amount), currency: 'usd', exp: c.exp, chainId: 0 });
    // Signed for one unit more than the challenge asks: core recovers another address.
    const tampered = await account.signTypedData({ ...td, message: { ...td.message, amount: td.message.amount + 1n } });
    const refused = await pay({ challenge: encoded, payer: account.address, signature: tampered });
    assert.equal(refused.status, 401);
    assert.equal((await refused.json()).error, 'signature_invalid');
    assert.equal(await balance(fac.url, account.address), '1');

    const signature = await account.signTypedData(td);
    const ok = await pay({ challenge: encoded, payer: account.address, signature });
    const receipt = await ok.json();
    assert.equal(ok.status, 200, JSON.stringify(receipt));
    assert.equal(receipt.payer, account.address);
    assert.equal(receipt.amount, '0.25');
    assert.equal(await balance(fac.url, account.address), '0.75');
    // The proof the facilitator issued buys the request at the paywall.
    const facts = pw.verify(receipt.token, 'GET', '/report', 'api.example.com', false, '0.25', 'usd');
    // The compact result (ts/route.ts paymentOf): receipt␟payer␟… or, rarely, [payer, …].
    const payer = typeof facts === 'string' ? facts.split('\u001f')[1] : facts[0];
    assert.equal(payer, account.address);
  } finally {
    await fac.stop();
  }
});

test('addresses and EIP-55 checksums agree with viem', () => {
  for (let i = 0; i < 32; i++) {
    const key = generatePrivateKey();
    const ours = native.Wallet.import(key).address;
    assert.equal(ours, privateKeyToAccount(key).address);
    assert.equal(native.checksumAddress(ours.toLowerCase()), getAddress(ours.toLowerCase()));
    assert.equal(native.checksumAddress(`0x${ours.slice(2).toUpperCase()}`), ours);
  }
  for (const c of vectors('wallet').cases.filter((x) => x.op === 'address' && x.expect.address)) {
    assert.equal(privateKeyToAccount(c.private_key).address, c.expect.address, c.name);
  }
});
