// The paywall page's sandbox payer (bundled into paywall_pay.js by rebuild.sh; the page embeds
// it inline, allowed by its hash in the page's CSP). Core renders everything the payer must
// agree on into the page: the challenge as received, the EIP-712 digest of the authorization
// it signs (payment::authorization, computed by core, so the rule lives in one place), the
// facilitator and the price. This script only holds a throwaway key: generate it, top it up at
// the sandbox faucet, sign the digest, pay, and call the URL again with the proof.
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

async function pay(cfg, say) {
  const key = secp256k1.utils.randomPrivateKey();
  const pub = secp256k1.getPublicKey(key, false).slice(1);
  const payer = checksum(bytesToHex(keccak_256(pub).slice(12)));
  say(`Test wallet ${payer}: topping up ${cfg.price} ${cfg.currency.toUpperCase()}…`);
  await post(`${cfg.facilitator}/v1/wallets/${payer}/topup`, { amount: cfg.price });
  say('Signing and paying…');
  const sig = secp256k1.sign(hexToBytes(cfg.digest.replace(/^0x/, "")), key);
  const signature = `0x${bytesToHex(sig.toCompactRawBytes())}${(27 + sig.recovery).toString(16)}`;
  const receipt = await post(`${cfg.facilitator}/v1/payments`, { challenge: cfg.challenge, payer, signature });
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
      say(`Paid with test wallet ${r.payer}. The resource:`);
      out.textContent = shown;
      out.hidden = false;
    } catch (e) {
      say(`Payment failed: ${e.message}`);
      button.disabled = false;
    }
  });
}
