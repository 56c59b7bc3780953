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
import Koa from 'koa';
import { paywall as koaPaywall } from 'vlexivo/koa';
import { withPaywall as httpPaywall } from 'vlexivo/http';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { paywall as honoPaywall } from 'vlexivo/hono';
import { listenExpress, listenFastify, listenHapi, listenHandler } from './helpers.mjs';

export function answer(headers, payment, raw, counter) {
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

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

function jsonBody(raw) {
  try {
    return raw.length ? JSON.parse(raw.toString('utf8')) : undefined;
  } catch {
    return undefined;
  }
}

async function startKoa(serverOptions, paywallOptions, counter = { runs: 0, proofs: [] }) {
  const app = new Koa();
  app.silent = true;
  // The app's own error handler (quiet JSON 500), outermost as Koa apps put it.
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      ctx.status = 500;
      ctx.body = { error: 'handler_failed', message: err.message };
    }
  });
  // A body parser's part: raw bytes kept, the JSON parsed (ctx.json for the resolvers).
  app.use(async (ctx, next) => {
    const raw = await readBody(ctx.req);
    ctx.request.rawBody = raw;
    ctx.json = jsonBody(raw);
    await next();
  });
  const vlx = serverOptions instanceof VlexivoServer ? serverOptions : new VlexivoServer(serverOptions);
  app.use(koaPaywall({ server: vlx, ...paywallOptions }));
  app.use((ctx) => {
    const a = answer(ctx.headers, ctx.state.vlxPayment, ctx.request.rawBody, counter);
    if (a.throws) throw new Error('handler exploded');
    ctx.status = a.status;
    ctx.body = a.body;
  });
  const s = await listenHandler(app.callback());
  return { ...s, counter, server: vlx, label: 'koa' };
}

async function startHttp(serverOptions, paywallOptions, counter = { runs: 0, proofs: [] }) {
  const vlx = serverOptions instanceof VlexivoServer ? serverOptions : new VlexivoServer(serverOptions);
  // The paywall reads the body itself (readBody): the echo needs it on every route.
  const handler = httpPaywall(
    async (req, res) => {
      req.json ??= req.body;
      const a = answer(req.headers, req.vlxPayment, req.rawBody, counter);
      if (a.throws) throw new Error('handler exploded');
      res.writeHead(a.status, { 'content-type': 'application/json' }).end(JSON.stringify(a.body));
    },
    { server: vlx, readBody: true, ...paywallOptions },
  );
  const s = await listenHandler(handler);
  return { ...s, counter, server: vlx, label: 'http' };
}

async function startHono(serverOptions, paywallOptions, counter = { runs: 0, proofs: [] }) {
  const app = new Hono();
  // The app's own error handler (quiet JSON 500).
  app.onError((err, c) => c.json({ error: 'handler_failed', message: err.message }, 500));
  // A body parser's part: raw bytes kept, the JSON parsed (c.get('json') for the resolvers).
  app.use(async (c, next) => {
    const raw = Buffer.from(await c.req.arrayBuffer());
    c.set('rawBody', raw);
    c.set('json', jsonBody(raw));
    await next();
  });
  const vlx = serverOptions instanceof VlexivoServer ? serverOptions : new VlexivoServer(serverOptions);
  app.use(honoPaywall({ server: vlx, ...paywallOptions }));
  app.all('*', (c) => {
    const a = answer(Object.fromEntries(c.req.raw.headers), c.get('vlxPayment'), c.get('rawBody'), counter);
    if (a.throws) throw new Error('handler exploded');
    return c.json(a.body, a.status);
  });
  const server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections?.();
        server.close(() => done());
      }),
    counter,
    server: vlx,
    label: 'hono',
  };
}

export const adapters = {
  express5: makeExpress(express5, 'express5'),
  express4: makeExpress(express4, 'express4'),
  fastify: startFastify,
  hapi: startHapi,
  koa: startKoa,
  http: startHttp,
  hono: startHono,
};

/** A request header as each adapter's resolver argument carries it (Node headers, Koa ctx, fetch Request, Hono context). */
export function headerOf(req, name) {
  if (typeof req.header === 'function' && req.req !== undefined && typeof req.req.header === 'function') return req.req.header(name) ?? ''; // Hono
  const h = req.headers;
  if (h !== undefined && typeof h.get === 'function') return h.get(name) ?? ''; // fetch Request
  return String(h?.[name] ?? '');
}

/** Each adapter's request object exposes the parsed JSON body as `req.json` in these apps. */
export const jsonOf = (req) =>
  typeof req.req?.json === 'function' // Hono's context
    ? req.get('json')
    : req.json !== undefined
      ? req.json
      : Buffer.isBuffer(req.body)
        ? undefined
        : req.body;
