// The soak benchmark's Node load generator (scripts/soak.sh runs it): until SOAK_DEADLINE_MS
// (and at most SOAK_MAX_CALLS calls), SOAK_WORKERS workers at SOAK_RATE calls/s in all send a
// mix to each API in SOAK_TARGETS (comma-separated name=base URL, 127.0.0.1 only):
//   paid     a call paid through VlexivoClient (402, payment at the facilitator, paid retry)
//   replay   a proof one of those calls used, sent again (refused: the nonce is spent)
//   expired  a proof used more than SOAK_EXPIRED_AFTER_S seconds ago (the token's 300 s
//            lifetime is over); until such proofs exist, a forged one instead
//   garbage  a forged proof: random text, a real token with its signature or claims altered,
//            an oversized header, another API's proof
// Every SOAK_WINDOW_S seconds it prints one JSON line: per "api:kind", the status counts and
// each call's latency in ms (scripts/soak.py takes the percentiles over all generators).
import { VlexivoClient, Wallet } from 'vlexivo';

const env = process.env;
const named = new Map(env.SOAK_TARGETS.split(',').map((p) => p.split('=')).map(([n, u]) => [u, n]));
const targets = [...named.keys()];
const t0 = Number(env.SOAK_T0_MS);
const deadline = Number(env.SOAK_DEADLINE_MS);
const maxCalls = Number(env.SOAK_MAX_CALLS ?? 1e9);
const workers = Number(env.SOAK_WORKERS ?? 4);
const rate = Number(env.SOAK_RATE ?? 20);
const windowMs = Number(env.SOAK_WINDOW_S ?? 10) * 1000;
const expiredAfterMs = Number(env.SOAK_EXPIRED_AFTER_S ?? 305) * 1000;

// Proofs as each client sent them, captured on their way out and kept once the call that
// sent them has finished (a replay must come after the first use, never race it).
const fresh = new Map(targets.map((t) => [t, []]));
const aging = new Map(targets.map((t) => [t, []]));
const replayableMs = 280_000; // younger than the token's 300 s lifetime, with a margin
const keep = (list, item, cap) => {
  if (list.length < cap) list.push(item);
  else list[Math.floor(Math.random() * cap)] = item;
};
function kept(sent) {
  for (const { api, proof } of sent.splice(0)) {
    keep(fresh.get(api), { at: Date.now(), proof }, 512);
    const q = aging.get(api);
    if (q.length < 4096 && Math.random() < 0.25) q.push({ at: Date.now(), proof });
  }
}
const clients = Array.from({ length: workers }, () => {
  const sent = [];
  const capture = async (input, init = {}) => {
    const proof = new Headers(init.headers).get('vlexivo-proof');
    const url = String(input);
    const api = targets.find((t) => url.startsWith(t));
    if (proof && api) sent.push({ api, proof });
    return fetch(input, init);
  };
  const client = new VlexivoClient({
    walletKey: Wallet.generate().exportKey(),
    facilitatorUrl: env.VLX_FACILITATOR_URL,
    autoTopUp: { enabled: true, triggerBalance: '1.00', topUpAmount: '50.00' },
    fetch: capture,
  });
  return { client, sent };
});

const rnd = (n) => Math.floor(Math.random() * n);
const pick = (list) => (list.length ? list[rnd(list.length)] : undefined);
function forged(api) {
  const real = (pick(fresh.get(api)) ?? pick(fresh.get(pick(targets))))?.proof;
  const other = pick(fresh.get(pick(targets.filter((t) => t !== api))))?.proof;
  const choices = [
    () => Buffer.from(Array.from({ length: 20 + rnd(200) }, () => rnd(256))).toString('base64url'),
    () => (real ? `${real.slice(0, -4)}${real.slice(-4).split('').reverse().join('')}` : 'x.y.z'),
    () => (real ? real.replace(/\.[A-Za-z0-9_-]{8}/, '.AAAAAAAA') : 'a.b.c'),
    () => 'e'.repeat(6000),
    () => other ?? 'not-a-token',
  ];
  const f = choices[rnd(choices.length)]();
  // A change that happens to give the real token back (a palindromic tail) is no forgery.
  return f === real ? `${f}x` : f;
}

let window = { w: Math.floor((Date.now() - t0) / windowMs), cells: {} };
function record(api, kind, status, ms) {
  const w = Math.floor((Date.now() - t0) / windowMs);
  if (w !== window.w) flush(w);
  const key = `${named.get(api)}:${kind}`;
  const cell = (window.cells[key] ??= { status: {}, ms: [] });
  cell.status[status] = (cell.status[status] ?? 0) + 1;
  cell.ms.push(Math.round(ms * 100) / 100);
}
function flush(next) {
  console.log(JSON.stringify({ gen: 'node', ...window }));
  window = { w: next, cells: {} };
}

let calls = 0;
async function one({ client, sent }) {
  const api = pick(targets);
  const r = Math.random();
  const started = performance.now();
  let kind;
  let status;
  try {
    if (r < 0.5) {
      kind = 'paid';
      try {
        const res = await client.fetch(`${api}/paid?n=${calls}`);
        await res.arrayBuffer();
        status = res.status;
      } finally {
        kept(sent);
      }
    } else {
      let proof;
      if (r < 0.7) {
        const p = pick(fresh.get(api));
        if (p && Date.now() - p.at < replayableMs) {
          kind = 'replay';
          proof = p.proof;
        }
      } else if (r < 0.85) {
        const q = aging.get(api);
        if (q.length && Date.now() - q[0].at > expiredAfterMs) {
          kind = 'expired';
          proof = q.shift().proof;
        }
      }
      if (!proof) {
        kind = 'garbage';
        proof = forged(api);
      }
      const res = await fetch(`${api}/paid?n=${calls}`, { headers: { 'vlexivo-proof': proof } });
      await res.arrayBuffer();
      status = res.status;
    }
  } catch (e) {
    status = `error:${e?.code ?? e?.name ?? 'unknown'}`;
  }
  record(api, kind ?? 'paid', status, performance.now() - started);
}

async function worker(client) {
  const every = (1000 * workers) / rate;
  let next = Date.now() + rnd(every);
  while (Date.now() < deadline && calls < maxCalls) {
    const wait = next - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // Late by more than a second: start again from now rather than sending a burst.
    next = Math.max(next + every, Date.now() - 1000);
    calls += 1;
    await one(client);
  }
}

await Promise.all(clients.map((c) => worker(c)));
flush(window.w + 1);
console.log(JSON.stringify({ gen: 'node', done: true, calls, spent: clients.map((c) => c.client.spent) }));
