// The same paid app on every framework: every path is paywalled; the handler answers the
// status asked in `x-handler-status` (or throws with `x-handler-throw`), echoing the payment
// and the raw body it received.
import { createHash } from 'node:crypto';
import express5 from 'express';
import express4 from 'express4';
import Fastify from 'fastify';
import Hapi from '@hapi/hapi';
import { VlexivoServer } from 'vlexivo';
import vlexivoFastify from 'vlexivo/fastify';
import { plugin as vlexivoHapi } from 'vlexivo/hapi';
import { listenExpress, listenFastify, listenHapi } from './helpers.mjs';

function answer(headers, payment, raw, counter) {
  counter.runs += 1;
  if (payment) counter.proofs.push(headers['vlexivo-proof']);
  const status = Number(headers['x-handler-status'] ?? 200);
  const body = {
    payment: payment ?? null,
    bodySha256: raw ? createHash('sha256').update(raw).digest('hex') : null,
    bodyLength: raw ? raw.length : 0,
    contentType: headers['content-type'] ?? null,
  };
  return { status, body, throws: headers['x-handler-throw'] !== undefined };
}

function makeExpress(express, label) {
  return async function start(serverOptions, paywallOptions, counter = { runs: 0, proofs: [] }) {
    const app = express();
    // Raw bytes for every content type: the echo (and bindBody) needs them; resolvers that
    // read JSON parse it themselves via req.json.
    app.use(express.raw({ type: () => true, limit: '1mb' }));
    app.use((req, _res, next) => {
      req.rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      try {
        req.json = req.rawBody.length ? JSON.parse(req.rawBody.toString('utf8')) : undefined;
      } catch {
        req.json = undefined;
      }
      next();
    });
    const vlx = serverOptions instanceof VlexivoServer ? serverOptions : new VlexivoServer(serverOptions);
    app.use(vlx.paywall(paywallOptions));
    app.use((req, res) => {
      const a = answer(req.headers, req.vlxPayment, req.rawBody, counter);
      if (a.throws) throw new Error('handler exploded');
      res.status(a.status).json(a.body);
    });
    app.use(vlx.errorHandler());
    // The app's own error handler after ours (quiet 500; Express's default would log).
    app.use((err, _req, res, _next) => res.status(500).json({ error: 'handler_failed', message: err.message }));
    const s = await listenExpress(app);
    return { ...s, counter, server: vlx, label };
  };
}

async function startFastify(serverOptions, paywallOptions, counter = { runs: 0, proofs: [] }) {
  const app = Fastify({ logger: false });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
    req.rawBody = body;
    let parsed;
    try {
      parsed = body.length ? JSON.parse(body.toString('utf8')) : undefined;
    } catch {
      parsed = undefined;
    }
    done(null, parsed);
  });
  const vlx = serverOptions instanceof VlexivoServer ? serverOptions : new VlexivoServer(serverOptions);
  await app.register(vlexivoFastify, { server: vlx, ...paywallOptions });
  app.all('/*', async (request, reply) => {
    const a = answer(request.headers, request.vlxPayment, request.rawBody, counter);
    if (a.throws) throw new Error('handler exploded');
    reply.code(a.status);
    return a.body;
  });
  const s = await listenFastify(app);
  return { ...s, counter, server: vlx, label: 'fastify' };
}

async function startHapi(serverOptions, paywallOptions, counter = { runs: 0, proofs: [] }) {
  const server = Hapi.server({ port: 0, host: '127.0.0.1', routes: { payload: { parse: 'gunzip', output: 'data' } } });
  const vlx = serverOptions instanceof VlexivoServer ? serverOptions : new VlexivoServer(serverOptions);
  // Keep the raw payload (bindBody and the echo need the bytes) and a parsed view for resolvers.
  server.ext('onPostAuth', (request, h) => {
    const raw = Buffer.isBuffer(request.payload) ? request.payload : Buffer.alloc(0);
    request.rawBody = raw;
    try {
      request.json = raw.length ? JSON.parse(raw.toString('utf8')) : undefined;
    } catch {
      request.json = undefined;
    }
    return h.continue;
  });
  await server.register({ plugin: vlexivoHapi, options: { server: vlx, ...paywallOptions } });
  server.route({
    method: '*',
    path: '/{p*}',
    options: { payload: { parse: false, output: 'data' } },
    handler: (request, h) => {
      const a = answer(request.headers, request.vlxPayment, request.rawBody, counter);
      if (a.throws) throw new Error('handler exploded');
      return h.response(a.body).code(a.status);
    },
  });
  const s = await listenHapi(server);
  return { ...s, counter, server: vlx, label: 'hapi' };
}

export const adapters = {
  express5: makeExpress(express5, 'express5'),
  express4: makeExpress(express4, 'express4'),
  fastify: startFastify,
  hapi: startHapi,
};

/** Each adapter's request object exposes the parsed JSON body as `req.json` in these apps. */
export const jsonOf = (req) => (req.json !== undefined ? req.json : Buffer.isBuffer(req.body) ? undefined : req.body);
