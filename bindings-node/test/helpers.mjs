// Shared test plumbing: a real `vlexivo` facilitator process and real HTTP servers, all on
// 127.0.0.1 with ports picked by the OS.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
export const pkgRoot = resolve(here, '..');
export const repoRoot = resolve(pkgRoot, '..');

/** Shared vectors, read in place (never copied). */
export function vectors(name) {
  return JSON.parse(readFileSync(join(repoRoot, 'tests', 'vectors', `${name}.json`), 'utf8'));
}

export function facilitatorBin() {
  const candidates = [
    process.env.VLEXIVO_BIN,
    join(repoRoot, 'target', 'debug', 'vlexivo'),
    join(repoRoot, 'target', 'release', 'vlexivo'),
  ].filter(Boolean);
  const bin = candidates.find((p) => existsSync(p));
  if (!bin) throw new Error(`vlexivo binary not found (cargo build -p vlexivo-facilitator); tried ${candidates.join(', ')}`);
  return bin;
}

/** anvil from live/devnet's npm install; the live suites skip without it. */
const anvilBin = join(repoRoot, 'live', 'devnet', 'node_modules', '@foundry-rs', 'anvil-linux-amd64', 'bin', 'anvil');
export const liveSkip = existsSync(anvilBin) ? false : 'the devnet is not installed (npm ci --prefix live/devnet)';

/**
 * A real anvil with Circle's FiatTokenV2_2 and a live facilitator (`vlexivo demo --live
 * --serve`): resolves with the VLX_* settlement terms it prints before READY, and `stop()`
 * (closing its stdin ends the demo, the devnet with it).
 */
export async function startLiveDevnet() {
  const child = spawn(facilitatorBin(), ['demo', '--live', '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const env = {};
  for await (const line of createInterface({ input: child.stdout })) {
    if (line === 'READY') break;
    const i = line.indexOf('=');
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  if (!env.VLX_SECRET_KEY?.startsWith('sk_live_')) {
    child.stdin.end();
    throw new Error(`vlexivo demo --live --serve printed no live key before READY: ${Object.keys(env).join(', ')}`);
  }
  return { env, stop: () => child.stdin.end() };
}

/** Start `vlexivo serve` on a free port; resolves once it prints VLEXIVO_URL. */
export async function startFacilitator({ faucetCap, publicUrl } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vlx-node-'));
  const args = ['serve', '--addr', '127.0.0.1:0', '--db', join(dir, 'f.db')];
  if (faucetCap !== undefined) args.push('--faucet-cap', String(faucetCap));
  if (publicUrl !== undefined) args.push('--public-url', publicUrl);
  const child = spawn(facilitatorBin(), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 20000) stderr = stderr.slice(-10000);
  });
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`facilitator did not start in 30 s: ${stderr}`)), 30000);
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const m = /^VLEXIVO_URL=(\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`facilitator exited (${code}): ${stderr}`));
    });
  });
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => {
          const t = setTimeout(() => {
            child.kill('SIGKILL');
            r();
          }, 5000);
          child.once('exit', () => {
            clearTimeout(t);
            r();
          });
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function json(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${res.status}: ${text}`);
  }
}

export async function onboard(url) {
  const res = await fetch(`${url}/v1/providers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ mode: 'sandbox' }),
  });
  if (res.status !== 201 && res.status !== 200) throw new Error(`onboard: ${res.status} ${await res.text()}`);
  return json(res);
}

export async function topUp(url, address, amount) {
  const res = await fetch(`${url}/v1/wallets/${address}/topup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ amount }),
  });
  if (!res.ok) throw new Error(`topup: ${res.status} ${await res.text()}`);
  return json(res);
}

export async function balance(url, address) {
  return (await json(await fetch(`${url}/v1/wallets/${address}`))).balance;
}

export async function providerPayments(url, apiSecret) {
  const res = await fetch(`${url}/v1/providers/me/payments?limit=1000`, { headers: { authorization: `Bearer ${apiSecret}` } });
  if (!res.ok) throw new Error(`payments: ${res.status} ${await res.text()}`);
  return (await json(res)).payments;
}

/** Listen a Node http.Server (Express app.listen, etc.) on 127.0.0.1:0. */
export function listenExpress(app) {
  return new Promise((r, reject) => {
    const server = app.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      r({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
    server.on('error', reject);
  });
}

export async function listenFastify(app) {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

export async function listenHapi(server) {
  await server.start();
  return { url: `http://127.0.0.1:${server.info.port}`, close: () => server.stop({ timeout: 100 }) };
}

/** A loopback port that refuses connections: 2, a privileged port nothing on a test machine
 * serves (ports picked by the OS are far above it) and not one of fetch's forbidden ports, as 1
 * is. (A port picked free and released again may be taken by another process before the test
 * connects; a listener that resets connections is another failure: the request may have gone.) */
export async function deadPort() {
  return 2;
}

/** Capturing logger for provider-side fault lines. */
export function captureLogger() {
  const lines = [];
  return { lines, error: (m) => lines.push(m), warn: (m) => lines.push(m) };
}

/** Listen a plain `http` request handler on 127.0.0.1:0. */
export async function listenHandler(handler) {
  const http = await import('node:http');
  const server = http.createServer(handler);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections?.();
        server.close(() => done());
      }),
  };
}

/**
 * A facilitator relay: forwards every request to `upstream` (a real facilitator, which
 * charges); while `lie` is set, answers payments 502 after forwarding them.
 */
export async function startRelay(port) {
  const state = { upstream: undefined, lie: true, payments: 0 };
  const server = (await import('node:http')).createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const up = await fetch(`${state.upstream}${req.url}`, {
      method: req.method,
      headers: { 'content-type': 'application/json' },
      body: req.method === 'GET' ? undefined : Buffer.concat(chunks),
    });
    const body = Buffer.from(await up.arrayBuffer());
    if (req.url === '/v1/payments') {
      state.payments += 1;
      if (state.lie) {
        res.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>');
        return;
      }
    }
    res.writeHead(up.status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise((r) => server.listen(port ?? 0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${server.address().port}`;
  state.close = () =>
    new Promise((done) => {
      server.closeAllConnections?.();
      server.close(() => done());
    });
  return state;
}
