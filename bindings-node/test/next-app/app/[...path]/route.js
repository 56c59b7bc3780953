// One catch-all route handler behind vlexivo/next: the test (same process, Next's programmatic
// server) puts the paywall's options and the echo in globalThis.__vlexivoNext; a new value
// builds a new paywall, as a fresh app would. `bare` (bench/http.mjs' baseline) skips it.
import { withPaywall, getPayment } from 'vlexivo/next';

export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

let current;
let handler;

async function echo(req) {
  const cfg = globalThis.__vlexivoNext;
  const raw = Buffer.from(await req.arrayBuffer());
  const a = cfg.answer(Object.fromEntries(req.headers), getPayment(req), raw);
  if (a.throws) throw new Error('handler exploded');
  return Response.json(a.body, { status: a.status });
}

function paid(req) {
  const cfg = globalThis.__vlexivoNext;
  if (cfg.bare) return echo(req); // the benchmark's baseline: the same route, no paywall
  if (cfg !== current) {
    current = cfg;
    handler = withPaywall(echo, cfg.options);
  }
  return handler(req);
}

export const GET = paid;
export const HEAD = paid;
export const POST = paid;
export const PUT = paid;
export const PATCH = paid;
export const DELETE = paid;
export const OPTIONS = paid;
