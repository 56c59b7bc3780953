// Live mode from Node: a real anvil with Circle's FiatTokenV2_2 and a live facilitator
// (`vlexivo demo --live --serve`), an Express paywall in live mode configured from the VLX_*
// settlement terms, and the Node client paying on chain. The balances are read from the chain
// (eth_call balanceOf), independently of the facilitator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VlexivoClient, VlexivoServer, Wallet } from 'vlexivo';
import { adapters } from './apps.mjs';
import { facilitatorBin, repoRoot } from './helpers.mjs';

const anvil = join(repoRoot, 'live', 'devnet', 'node_modules', '@foundry-rs', 'anvil-linux-amd64', 'bin', 'anvil');
const skip = existsSync(anvil) ? false : 'the devnet is not installed (npm ci --prefix live/devnet)';

let child;
let env;
before(async () => {
  if (skip) return;
  child = spawn(facilitatorBin(), ['demo', '--live', '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  env = {};
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === 'READY') break;
    const i = line.indexOf('=');
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  assert.ok(env.VLX_SECRET_KEY?.startsWith('sk_live_'), JSON.stringify(env));
});
after(() => child?.stdin.end());

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
    // Automine: each relay is in a block by the time it is read.
    assert.equal(payerBefore - (await onChain(payer)), 3000n);
    assert.equal((await onChain(env.VLX_PAY_TO)) - payoutBefore, 3000n);
    assert.equal(client.spent, '0.003');
  } finally {
    await app.close();
  }
});
