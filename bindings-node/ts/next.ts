/**
 * Next.js App Router route handlers (`vlexivo/next`), over the fetch-standard paywall
 * (`fetch.ts`). Node.js runtime only: the core is a native addon, which the Edge runtime
 * cannot load (it runs V8 isolates without Node's module loader or `process.dlopen`).
 *
 *   // app/api/inference/route.ts
 *   import { withPaywall, getPayment } from 'vlexivo/next';
 *   export const runtime = 'nodejs';
 *   export const POST = withPaywall(async (req) => Response.json({ paidBy: getPayment(req)?.payer }), {
 *     priceResolver: async (req) => ((await req.json()).model.includes('large') ? 0.01 : 0.001),
 *   });
 *
 *   // next.config.mjs: keep the addon out of the bundle
 *   export default { serverExternalPackages: ['vlexivo'] };
 *
 * The resolver receives a clone of the request (it may read the body; the handler still can).
 * A handler that throws releases the nonce and the error goes on to Next (its 500).
 */
export { withPaywall, getPayment, fetchPaywall, FetchPaywall, type FetchPaywallOptions, type FetchPayment } from './fetch';
export type { VlexivoPayment } from './route';
export { VlexivoServer } from './server';
