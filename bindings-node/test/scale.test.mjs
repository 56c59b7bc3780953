// Several API instances (separate processes) sharing a Redis, then a PostgreSQL nonce store, for
// Express and Fastify: a proof used on one is refused on the other; 200 concurrent requests over
// both with 100 distinct proofs run the handler exactly 100 times. Faults: Redis SIGKILLed and
// restarted under load (paid requests fail closed with 503, then recover; no proof runs twice,
// every proof runs once in the end); Redis frozen (a paid request waits at most the timeout while
// the same process keeps serving). Bad store URLs and unknown option keys fail at construction.
// Real servers: scripts/test-services.sh starts throwaway Redis and PostgreSQL on loopback ports.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import Hapi from '@hapi/hapi';
import { VlexivoServer, Wallet } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';
import { plugin as vlexivoHapi } from 'vlexivo/hapi';
import { pkgRoot, repoRoot } from './helpers.mjs';
import { mintProofToken } from './tokens.mjs';

const SECRET = 'sk_test_' + Buffer.alloc(32, 11).toString('base64url');
const SERVICES = join(repoRoot, 'scripts', 'test-services.sh');
const PAYER = Wallet.generate().address;

function services(...args) {
  return execFileSync('bash', [SERVICES, ...args], { encoding: 'utf8', timeout: 120_000 }).trim();
}

const dirs = [];
let redisUrl;
let pgUrl;

before(() => {
  services('install');
  dirs.push(mkdtempSync(join(tmpdir(), 'vlx-node-redis-')), mkdtempSync(join(tmpdir(), 'vlx-node-pg-')));
  try {
    redisUrl = services('redis', 'start', dirs[0]);
    pgUrl = services('postgres', 'start', dirs[1]);
  } catch (e) {
    for (const d of dirs) execFileSync('bash', [SERVICES, 'stop', d], { stdio: 'ignore' });
    throw e;
  }
});

after(() => {
  for (const d of dirs) {
    try {
      services('stop', d);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }
});

/** A fresh PostgreSQL database on the throwaway server. */
function database() {
  const name = 'n' + randomUUID().replace(/-/g, '').slice(0, 12);
  execFileSync('psql', ['-q', pgUrl, '-c', `CREATE DATABASE "${name}"`], { stdio: 'ignore' });
  return pgUrl.slice(0, pgUrl.lastIndexOf('/') + 1) + name;
}

/** One API instance: `node test/scale-app.mjs framework store` in its own process. */
async function instance(framework, store, timeoutMs = 1000) {
  const child = spawn(process.execPath, [join(pkgRoot, 'test', 'scale-app.mjs'), framework, store, SECRET, String(timeoutMs)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`instance did not start in 30 s: ${stderr}`)), 30_000);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      if (line.startsWith('PORT=')) resolve(Number(line.slice(5)));
      else reject(new Error(`instance said ${line}: ${stderr}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`instance exited (${code}): ${stderr}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    stderr: () => stderr,
    runs: async () => (await (await fetch(`${url}/runs`)).json()),
    stop: () =>
      new Promise((r) => {
        if (child.exitCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGKILL');
      }),
  };
}

function proof() {
  return mintProofToken(SECRET, { jti: randomUUID().replace(/-/g, ''), sub: PAYER, amt: '0.001', res: 'GET http://api.test/paid', iat: Math.floor(Date.now() / 1000) });
}

async function paid(url, p) {
  const res = await fetch(`${url}/paid`, { headers: { 'vlexivo-proof': p } });
  return { status: res.status, body: await res.json() };
}

for (const framework of ['express', 'fastify']) {
  for (const kind of ['redis', 'postgres']) {
    test(`${framework}: two instances share a ${kind} store`, async () => {
      const store = kind === 'redis' ? `${redisUrl}?prefix=${randomUUID()}:` : database();
      const [a, b] = await Promise.all([instance(framework, store), instance(framework, store)]);
      try {
        // A proof used on one instance is refused on the other.
        const first = proof();
        assert.equal((await paid(a.url, first)).status, 200);
        const again = await paid(b.url, first);
        assert.equal(again.status, 409);
        assert.equal(again.body.error, 'token_replayed');

        // 200 concurrent requests: each of 100 proofs sent to both instances at once.
        const proofs = Array.from({ length: 100 }, proof);
        const results = await Promise.all(proofs.flatMap((p) => [paid(a.url, p), paid(b.url, p)]));
        const count = (s) => results.filter((r) => r.status === s).length;
        assert.equal(count(200), 100, JSON.stringify(results.filter((r) => r.status !== 200 && r.status !== 409).slice(0, 3)));
        assert.equal(count(409), 100);
        const ran = [...(await a.runs()).nonces, ...(await b.runs()).nonces];
        assert.equal(ran.length, 101);
        assert.equal(new Set(ran).size, 101);
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    });
  }
}

test('Redis SIGKILLed and restarted under load: fail closed, recover, no proof runs twice', async () => {
  // A Redis that loses no acknowledged write (appendfsync always), as a deployment that relies
  // on it across restarts runs it; in its own directory, restarted on the same port.
  const dir = mkdtempSync(join(tmpdir(), 'vlx-node-redis-kill-'));
  const persist = ['--appendonly', 'yes', '--appendfsync', 'always'];
  // A port the script picks (and retries if taken meanwhile); the restart below reuses it.
  const url = services('redis', 'start', dir, '', ...persist);
  const port = url.slice(url.lastIndexOf(':') + 1);
  const [a, b] = await Promise.all([instance('express', url, 500), instance('fastify', url, 500)]);
  try {
    const proofs = Array.from({ length: 300 }, proof);
    const outcome = new Map(proofs.map((p) => [p, []]));
    let sent = 0;
    let killed = false;
    let restarted;
    // 16 workers, alternating instances; Redis dies after 100 requests and is back 1 s later.
    const worker = async (w) => {
      while (sent < proofs.length) {
        const i = sent++;
        if (i === 100 && !killed) {
          killed = true;
          const pid = readFileSync(join(dir, `redis-${port}.pid`), 'utf8').trim();
          process.kill(Number(pid), 'SIGKILL');
          restarted = new Promise((r) => setTimeout(r, 1000)).then(() => services('redis', 'start', dir, port, ...persist));
        }
        const r = await paid((i + w) % 2 === 0 ? a.url : b.url, proofs[i]);
        outcome.get(proofs[i]).push(r);
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    await restarted;
    const all = [...outcome.values()].flat();
    const down = all.filter((r) => r.status === 503);
    assert.ok(down.length > 0, 'some paid requests met the store down');
    for (const r of down) assert.equal(r.body.error, 'nonce_store_unavailable');
    for (const r of all) assert.ok([200, 503].includes(r.status), JSON.stringify(r));
    // Every proof that met the store down works once it is back (its lost consume is undone in
    // the background: a replay answer meanwhile is retried, as a client retrying a 503 would).
    const deadline = Date.now() + 20_000;
    for (const [p, rs] of outcome) {
      while (!rs.some((r) => r.status === 200)) {
        assert.ok(Date.now() < deadline, `proof never recovered: ${JSON.stringify(rs)}`);
        const r = await paid(rs.length % 2 === 0 ? a.url : b.url, p);
        rs.push(r);
        if (r.status !== 200) {
          assert.ok([409, 503].includes(r.status), JSON.stringify(r));
          await new Promise((res) => setTimeout(res, 100));
        }
      }
    }
    // Exactly one run per proof over both instances: none twice, none lost.
    const [ra, rb] = await Promise.all([a.runs(), b.runs()]);
    const ran = [...ra.nonces, ...rb.nonces];
    assert.equal(ran.length, proofs.length);
    assert.equal(new Set(ran).size, proofs.length);
    // The failures are counted and logged by each instance that saw them.
    assert.ok(ra.storeFailures + rb.storeFailures >= down.length, `${ra.storeFailures} + ${rb.storeFailures} < ${down.length}`);
    assert.match(a.stderr() + b.stderr(), /\[vlexivo\] nonce_store_unavailable: /);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    services('stop', dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const framework of ['express', 'fastify']) {
  test(`${framework}: Redis frozen = 503 within the timeout while the event loop keeps serving`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vlx-node-redis-stop-'));
    const url = services('redis', 'start', dir);
    const pid = Number(readFileSync(join(dir, `redis-${url.slice(url.lastIndexOf(':') + 1)}.pid`), 'utf8').trim());
    // A store timeout well above what the free request below takes on a loaded machine: the
    // paid request is surely still waiting when the free one is answered.
    const inst = await instance(framework, url, 2000);
    try {
      const p = proof();
      process.kill(pid, 'SIGSTOP');
      const slow = paid(inst.url, p);
      let settled = false;
      slow.then(() => (settled = true));
      await new Promise((r) => setTimeout(r, 100));
      // While the paid request waits on the frozen store, the same process answers others.
      const free = await fetch(`${inst.url}/free`);
      assert.equal(free.status, 200);
      assert.equal(settled, false, 'the paid request waits on the store');
      // Answered while Redis is still stopped: only the store timeout can have ended the wait.
      const r = await slow;
      assert.equal(r.status, 503);
      assert.equal(r.body.error, 'nonce_store_unavailable');
      assert.equal((await inst.runs()).nonces.length, 0);
      process.kill(pid, 'SIGCONT');
      // The lost consume is undone in the background; the same proof then buys one run.
      let last;
      for (let i = 0; i < 200; i++) {
        last = await paid(inst.url, p);
        if (last.status === 200) break;
        assert.ok([409, 503].includes(last.status), JSON.stringify(last));
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(last.status, 200);
      assert.equal((await paid(inst.url, p)).status, 409);
      assert.equal((await inst.runs()).nonces.length, 1);
    } finally {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {}
      await inst.stop();
      services('stop', dir);
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('nonceStoreOptions takes every option core has, camelCased; pagesThread: false starts no page-making thread', () => {
  // Every option core names reaches core (a bad value is core's error naming the option), none
  // is refused as unknown by the TypeScript layer.
  const names = createRequire(import.meta.url)('../native/index.js').storeOptionNames();
  assert.ok(names.includes('pages_thread') && names.includes('pool_size'), names.join());
  for (const name of names) {
    const key = name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
    assert.throws(
      () => new VlexivoServer({ apiSecret: SECRET, nonceStore: 'memory', nonceStoreOptions: { [key]: 'x?' } }),
      (e) => e.code === 'config_invalid' && !e.message.includes('nonceStoreOptions') && e.message.includes(name),
      key,
    );
  }
  assert.throws(
    () => new VlexivoServer({ apiSecret: SECRET, nonceStoreOptions: { pagesThread: 'no' } }),
    (e) => e.code === 'config_invalid' && /pages_thread must be true or false/.test(e.message),
  );
  // In a process of its own: the helper thread is per process, started by the first store that
  // wants it (the kernel keeps 15 bytes of its name, vlexivo-store-pages). The thread names
  // itself once it runs: looked for until it shows (bounded), or for 2 s where none is expected.
  const helpers = (options) => {
    const script = `
      import { readdirSync, readFileSync } from 'node:fs';
      import { setTimeout as sleep } from 'node:timers/promises';
      import { VlexivoServer } from 'vlexivo';
      const vlx = new VlexivoServer({ apiSecret: ${JSON.stringify(SECRET)}, nonceStoreOptions: ${JSON.stringify(options)} });
      const named = (t) => { try { return readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim(); } catch { return ''; } };
      const count = () => readdirSync('/proc/self/task').filter((t) => named(t) === 'vlexivo-store-p').length;
      const until = Date.now() + (${JSON.stringify(options.pagesThread)} === false ? 2_000 : 30_000);
      let n = count();
      while (n === 0 && Date.now() < until) { await sleep(10); n = count(); }
      console.log(JSON.stringify([vlx.nonceStore, n]));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: pkgRoot, encoding: 'utf8', timeout: 60_000 });
    return JSON.parse(out.trim().split('\n').pop());
  };
  assert.deepEqual(helpers({ pagesThread: false }), ['memory', 0]);
  assert.deepEqual(helpers({ pagesThread: false, capacity: 5000 }), ['memory', 0]);
  assert.deepEqual(helpers({}), ['memory', 1]);
  assert.deepEqual(helpers({ pagesThread: true }), ['memory', 1]);
});

test('store URLs and option keys are checked at construction (no fallback to a per-process store)', async () => {
  const cases = [
    [{ nonceStore: 'redis//localhost' }, /not a store URL/],
    [{ nonceStore: 'mongodb://h' }, /unknown scheme/],
    [{ nonceStore: '/var/tmp/nonces.db' }, /not a store URL/],
    [{ nonceStore: redisUrl, nonceStoreOptions: { timeout: 5 } }, /unknown nonceStoreOptions option "timeout"/],
    [{ nonceStore: redisUrl, nonceStoreOptions: { poolSize: 'lots' } }, /pool_size/],
    [{ nonceStore: `${redisUrl}?pool=3` }, /unknown option "pool"/],
    [{ nonceStore: 'redis://:hunter2@127.0.0.1:1', nonceStoreOptions: { connectTimeoutMs: 300 } }, /cannot connect/],
    [{ nonceStore: 'postgres://postgres:hunter2@127.0.0.1:1/x', nonceStoreOptions: { connectTimeoutMs: 300 } }, /cannot use/],
    [{ store: 'mongodb://h' }, /unknown scheme/],
    [{ store: { type: 'redis', url: redisUrl } }, /store must be/],
    [{ nonceStore: 'memory', store: 'memory' }, /not both/],
    [{ nonceStore: 42 }, /nonceStore must be/],
    [{ noncestore: redisUrl }, /unknown VlexivoServer option "noncestore"/],
    [{ storeUrl: redisUrl }, /unknown VlexivoServer option "storeUrl"/],
  ];
  for (const [opts, what] of cases) {
    assert.throws(
      () => new VlexivoServer({ apiSecret: SECRET, ...opts }),
      (e) => e.code === 'config_invalid' && what.test(e.message) && !e.message.includes('hunter2'),
      JSON.stringify(opts),
    );
  }
  // A good URL: the store is the one named, with its kind and a failure count to export.
  const ok = new VlexivoServer({ apiSecret: SECRET, nonceStore: redisUrl, nonceStoreOptions: { prefix: 'api1:', poolSize: 2, timeoutMs: 800 } });
  assert.equal(ok.nonceStore, 'redis');
  assert.equal(ok.storeFailures, 0);
  assert.equal(new VlexivoServer({ apiSecret: SECRET, store: redisUrl }).nonceStore, 'redis');
  assert.equal(new VlexivoServer({ apiSecret: SECRET }).nonceStore, 'memory');
  // A misspelt paywall option is refused too (a typo must not leave a route at another price).
  assert.throws(() => ok.paywall({ price: '0.01', priceResolve: () => '1' }), (e) => e.code === 'config_invalid' && /priceResolve/.test(e.message));
  // verify() would hold the event loop on a networked store: verifyAsync instead.
  assert.throws(() => ok.verify(proof(), { method: 'GET', path: '/paid', price: '0.001' }), (e) => e.code === 'config_invalid' && /verifyAsync/.test(e.message));
  const viaAsync = new VlexivoServer({ apiSecret: SECRET, nonceStore: `${redisUrl}?prefix=${randomUUID()}:`, origin: 'http://api.test' });
  const p = proof();
  const payment = await viaAsync.verifyAsync(p, { method: 'GET', path: '/paid', price: '0.001' });
  assert.equal(payment.payer, PAYER);
  await assert.rejects(viaAsync.verifyAsync(p, { method: 'GET', path: '/paid', price: '0.001' }), (e) => e.code === 'token_replayed');

  // The plugins refuse the same at registration.
  const f = Fastify({ logger: false });
  f.register(vlexivoFastify, { apiSecret: SECRET, nonceStore: 'mongodb://h' });
  await assert.rejects(f.ready(), (e) => e.code === 'config_invalid');
  await f.close();
  const f2 = Fastify({ logger: false });
  f2.register(vlexivoFastify, { apiSecret: SECRET, price: '0.001', nonceStoreOption: {} });
  await assert.rejects(f2.ready(), (e) => e.code === 'config_invalid' && /nonceStoreOption/.test(e.message));
  await f2.close();
  const f3 = Fastify({ logger: false });
  f3.register(vlexivoFastify, { server: ok, apiSecret: SECRET });
  await assert.rejects(f3.ready(), (e) => e.code === 'config_invalid' && /belong in new VlexivoServer/.test(e.message));
  await f3.close();
  const h = Hapi.server({ port: 0, host: '127.0.0.1' });
  await assert.rejects(h.register({ plugin: vlexivoHapi, options: { apiSecret: SECRET, nonceStore: 'redis://127.0.0.1:1', nonceStoreOptions: { connectTimeoutMs: 200 } } }), (e) => e.code === 'config_invalid');
  const h2 = Hapi.server({ port: 0, host: '127.0.0.1' });
  await assert.rejects(h2.register({ plugin: vlexivoHapi, options: { apiSecret: SECRET, prize: '0.001' } }), (e) => e.code === 'config_invalid' && /prize/.test(e.message));

  // A process started with a bad store stops at once with the error (no request is served).
  await assert.rejects(instance('express', 'redis://:hunter2@127.0.0.1:1'), (e) => /config_invalid|cannot connect/.test(e.message) && !e.message.includes('hunter2'));
});
