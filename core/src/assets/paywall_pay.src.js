// The paywall page's payer (bundled into paywall_pay.js by rebuild.sh; the page embeds
// it inline, allowed by its hash in the page's CSP). Core renders everything the payer must
// agree on into the page: the challenge as received, the EIP-712 digest of the authorization
// it signs (payment::authorization, computed by core, so the rule lives in one place), the
// facilitator and the price. In sandbox this script holds a throwaway key: generate it, top it
// up at the sandbox faucet, sign the digest. In live mode the injected EIP-1193 wallet signs the
// EIP-3009 typed data core rendered. Then: pay, and call the URL again with the proof.
import { secp256k1 } from '@noble/curves/secp256k1';
import { keccak_256 } from '@noble/hashes/sha3';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils';

function checksum(addrHex) {
  const h = bytesToHex(keccak_256(utf8ToBytes(addrHex)));
  let out = '0x';
  for (let i = 0; i < 40; i++) out += parseInt(h[i], 16) >= 8 ? addrHex[i].toUpperCase() : addrHex[i];
  return out;
}

async function post(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${json.error || res.status}: ${json.message || 'request failed'}`);
  return json;
}

async function testWallet(cfg, say) {
  const key = secp256k1.utils.randomPrivateKey();
  const pub = secp256k1.getPublicKey(key, false).slice(1);
  const payer = checksum(bytesToHex(keccak_256(pub).slice(12)));
  say(`Test wallet ${payer}: topping up ${cfg.price} ${cfg.currency.toUpperCase()}…`);
  await post(`${cfg.facilitator}/v1/wallets/${payer}/topup`, { amount: cfg.price });
  say('Signing and paying…');
  const sig = secp256k1.sign(hexToBytes(cfg.digest.replace(/^0x/, '')), key);
  const signature = `0x${bytesToHex(sig.toCompactRawBytes())}${(27 + sig.recovery).toString(16)}`;
  return { challenge: cfg.challenge, payer, signature };
}

// The one spelling the facilitator takes: 0x, lower-case hex, v 27/28 (some wallets send 0/1).
function canonical(sig) {
  const hex = String(sig).toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]{130}$/.test(hex)) throw new Error('the wallet returned no signature');
  const v = parseInt(hex.slice(128), 16);
  return `0x${hex.slice(0, 128)}${(v < 27 ? v + 27 : v).toString(16)}`;
}

async function injectedWallet(cfg, say) {
  const eth = window.ethereum;
  if (!eth || typeof eth.request !== 'function') throw new Error('no browser wallet (EIP-1193) found');
  say('Asking your wallet for an account…');
  const [account] = await eth.request({ method: 'eth_requestAccounts' });
  if (!/^0x[0-9a-fA-F]{40}$/.test(account || '')) throw new Error('the wallet shared no account');
  const payer = checksum(account.slice(2).toLowerCase());
  const typed = JSON.parse(cfg.typed);
  typed.message.from = payer;
  say('Sign the transfer authorization in your wallet…');
  const signature = canonical(await eth.request({ method: 'eth_signTypedData_v4', params: [payer, JSON.stringify(typed)] }));
  say('Paying…');
  return { challenge: cfg.challenge, payer, signature, valid_after: 0, valid_before: Number(cfg.validBefore) };
}

async function pay(cfg, say) {
  const request = cfg.typed ? await injectedWallet(cfg, say) : await testWallet(cfg, say);
  const payer = request.payer;
  const receipt = await post(`${cfg.facilitator}/v1/payments`, request);
  say('Paid. Loading the resource…');
  const res = await fetch(location.href, { headers: { 'Vlexivo-Proof': receipt.token } });
  const text = await res.text();
  if (!res.ok) throw new Error(`the paid call answered ${res.status}: ${text.slice(0, 200)}`);
  return { payer, text, type: res.headers.get('content-type') || '' };
}

const button = document.getElementById('pay');
const status = document.getElementById('pay-status');
const out = document.getElementById('paid');
if (button && status && out) {
  const say = (m) => {
    status.textContent = m;
  };
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const r = await pay(button.dataset, say);
      let shown = r.text;
      if (/json/.test(r.type)) {
        try {
          shown = JSON.stringify(JSON.parse(r.text), null, 2);
        } catch {}
      }
      say(`Paid with ${button.dataset.typed ? 'wallet' : 'test wallet'} ${r.payer}. The resource:`);
      out.textContent = shown;
      out.hidden = false;
    } catch (e) {
      say(`Payment failed: ${e.message}`);
      button.disabled = false;
    }
  });
}
