// One API instance for the scale tests, run as its own process:
//   node test/scale-app.mjs express|fastify STORE_URL SECRET [TIMEOUT_MS]
// Prints PORT=<n> once it listens on 127.0.0.1 (a port the OS picked). GET /paid costs 0.001;
// GET /runs (free) says which nonces this process ran the paid handler for, and the store's
// failure count; GET /free answers at once (is the event loop free?).
import express from 'express';
import Fastify from 'fastify';
import { VlexivoServer } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';

const [framework, nonceStore, apiSecret, timeoutMs = '1000'] = process.argv.slice(2);
const serverOptions = { apiSecret, nonceStore, origin: 'http://api.test', nonceStoreOptions: { timeoutMs: Number(timeoutMs), connectTimeoutMs: 2000 } };
const nonces = [];

let port;
if (framework === 'express') {
  const vlx = new VlexivoServer(serverOptions);
  const app = express();
  app.get('/paid', vlx.paywall({ price: '0.001' }), (req, res) => {
    nonces.push(req.vlxPayment.nonce);
    res.json({ run: nonces.length, nonce: req.vlxPayment.nonce });
  });
  app.get('/runs', (_req, res) => res.json({ nonces, storeFailures: vlx.storeFailures }));
  app.get('/free', (_req, res) => res.json({ ok: true }));
  app.use(vlx.errorHandler());
  const server = await new Promise((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
  port = server.address().port;
} else if (framework === 'fastify') {
  const vlx = new VlexivoServer(serverOptions);
  const app = Fastify({ logger: false });
  await app.register(vlexivoFastify, { server: vlx });
  app.get('/paid', { config: { vlexivo: { price: '0.001' } } }, async (request) => {
    nonces.push(request.vlxPayment.nonce);
    return { run: nonces.length, nonce: request.vlxPayment.nonce };
  });
  app.get('/runs', async () => ({ nonces, storeFailures: vlx.storeFailures }));
  app.get('/free', async () => ({ ok: true }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = app.server.address().port;
} else {
  throw new Error(`unknown framework ${framework}`);
}
process.stdout.write(`PORT=${port}\n`);
