/**
 * Paid MCP tools (`vlexivo/mcp`, over `@modelcontextprotocol/sdk`), on any transport (stdio,
 * streamable HTTP). The wire shape is docs/protocol.md §MCP:
 *
 * - A paid tool's resource is `POST <origin>/mcp/tools/<name, percent-encoded>`: challenges
 *   and proofs bind it as they bind an HTTP route (`origin`: the server's configured one).
 * - An unpaid call (or a refused proof) is a JSON-RPC error `-32402` whose `data` is the HTTP
 *   402 body (`error`, `price`, `currency`, `facilitator`, `challenge`, …) plus the HTTP
 *   `status` core chose (402, 409); a provider-side fault (a bad price, the nonce store down)
 *   is `-32603` with `data.error` its code.
 * - The proof rides in the call's `params._meta["vlexivo/proof"]`; a paid result carries
 *   `_meta["vlexivo/receipt"]`.
 * - The tool runs once per proof; a tool that fails (throws, or answers `isError: true`)
 *   releases the nonce, so the same proof pays for a retry. Core's response policy decides,
 *   fed a failed tool as a 500 and a result as a 200.
 *
 *   const mcp = new McpServer({ name: 'tools', version: '1.0.0' });
 *   paidTool(mcp, vlx, 'analyze', { inputSchema: { text: z.string() } }, { price: '0.01' },
 *     async ({ text }, extra) => ({ content: [{ type: 'text', text: `paid by ${extra.vlxPayment.payer}` }] }));
 *
 *   const result = await callPaidTool(client, payer, { name: 'analyze', arguments: { text } }, { origin });
 */
import type { McpServer, ToolCallback } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import native = require('./native');
import { VlexivoClient, type PayTransport, type VlexivoClientOptions } from './client';
import { VlexivoConfigError } from './errors';
import { releases, sendsReceipt } from './policy';
import { PAYWALL_KEYS, RECEIPT_HEADER_LC, isPaid, isThenable, paymentOf, pick, type PaidRoute, type PaywallOptions, type Rejection, type VlexivoPayer, type VlexivoPayment } from './route';
import type { VlexivoServer } from './server';

// Where Vlexivo's values ride in MCP messages and the JSON-RPC shape of a refusal are core's
// rules (vlexivo_core::mcp), shared with the Python package: this module only moves them
// between the SDK and the payer flow.
const NAMES = native.mcpNames();
/** JSON-RPC error code of a payment-required answer (the draft MCP payment proposal's). */
export const PAYMENT_REQUIRED: number = NAMES.paymentRequired;
/** JSON-RPC internal error (a provider-side fault). */
export const INTERNAL_ERROR: number = NAMES.internalError;
/** The `_meta` key that carries a Vlexivo header's value: `Vlexivo-<X>` is `vlexivo/<x>`. */
export function metaKey(header: string): string {
  return native.mcpMetaKey(header);
}
/** `_meta` key of the proof on a call (`vlexivo/proof`). */
export const PROOF_META: string = NAMES.proofMeta;
/** `_meta` key of the payer hint on a call (`vlexivo/payer`). */
export const PAYER_META: string = NAMES.payerMeta;
/** `_meta` key of the receipt on a paid result (`vlexivo/receipt`). */
export const RECEIPT_META: string = NAMES.receiptMeta;

/** The HTTP-shaped resource a tool's challenges and proofs bind. */
export function toolPath(name: string): string {
  return `/mcp/tools/${encodeURIComponent(name)}`;
}

/** What a paid tool's handler finds on its `extra`. */
export interface PaidExtra {
  vlxPayment: VlexivoPayment;
}

/** A tool's price: fixed, or from its arguments (sync or async; a string, a number or `{ price, currency }`). */
export type McpPaywallOptions = PaywallOptions<Record<string, unknown>>;

interface PaidToolEntry {
  route: PaidRoute<Record<string, unknown>>;
}

type RequestHandler = (request: { method: string; params?: Record<string, unknown> }, extra: Record<string, unknown>) => Promise<unknown>;

/** The paid tools of each MCP server, and the tools/call handler in front of the SDK's. */
const PAID = new WeakMap<McpServer, Map<string, PaidToolEntry>>();

/** The SDK's error class (from the server's own SDK copy, so `instanceof McpError` holds for its caller). */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- an optional peer, loaded when a tool is registered
const sdkTypes = (): typeof import('@modelcontextprotocol/sdk/types.js') => require('@modelcontextprotocol/sdk/types.js') as typeof import('@modelcontextprotocol/sdk/types.js');

/** The SDK's error for a refusal: core's JSON-RPC error of that HTTP status and body. */
function mcpErrorOf(r: Pick<Rejection, 'status' | 'body'>): Error {
  const { McpError } = sdkTypes();
  const e = native.mcpRejectionError(r.status, r.body);
  return new McpError(e.code, e.message, e.data);
}

/** Put our tools/call handler in front of the SDK's (once per server; the SDK's stays for free tools). */
function install(mcp: McpServer): Map<string, PaidToolEntry> {
  let tools = PAID.get(mcp);
  if (tools !== undefined) return tools;
  const paid = new Map<string, PaidToolEntry>();
  tools = paid;
  PAID.set(mcp, paid);
  const handlers = (mcp.server as unknown as { _requestHandlers?: Map<string, RequestHandler> })._requestHandlers;
  const sdk = handlers?.get('tools/call');
  if (handlers === undefined || sdk === undefined) {
    throw new VlexivoConfigError('config_invalid', 'this @modelcontextprotocol/sdk version has no tools/call handler to put the paywall in front of', { status: 500 });
  }
  handlers.set('tools/call', async (request, extra) => {
    const name = request.params?.name;
    const entry = typeof name === 'string' ? paid.get(name) : undefined;
    if (entry === undefined) return sdk(request, extra);
    return callPaid(entry, name as string, request, extra, sdk);
  });
  return tools;
}

async function callPaid(
  entry: PaidToolEntry,
  name: string,
  request: { method: string; params?: Record<string, unknown> },
  extra: Record<string, unknown>,
  sdk: RequestHandler,
): Promise<unknown> {
  const route = entry.route;
  const path = toolPath(name);
  const params = request.params ?? {};
  const args = (params.arguments ?? {}) as Record<string, unknown>;
  const meta = native.mcpCallMeta(params._meta);
  const proof = meta.proof;
  // Who the call is priced for (core decides: the proof's payer, else the `vlexivo/payer` hint).
  let hint: string | undefined;
  let payer: VlexivoPayer | null = null;
  if (route.resolver !== undefined) {
    hint = meta.payer;
    payer = route.payerFor(proof, hint);
  }
  let price: unknown;
  try {
    price = route.priceFor(args, payer);
    if (isThenable(price)) price = await price;
  } catch (e) {
    throw mcpErrorOf(route.resolverFailed(e, 'POST', path));
  }
  let r = route.authorize(proof, 'POST', path, { host: undefined, secure: true }, price, undefined, hint);
  if (isThenable(r)) r = await r;
  if (!isPaid(r)) throw mcpErrorOf(r);
  const payment = paymentOf(r);
  (extra as Partial<PaidExtra>).vlxPayment = payment;
  let result: CallToolResult;
  try {
    result = (await sdk(request, extra)) as CallToolResult;
  } catch (e) {
    if (releases(0, true, false)) route.release(payment.storeKey);
    throw e;
  }
  // The SDK answers a tool that threw (or had bad arguments) with isError: the tool failed.
  const status = result?.isError === true ? 500 : 200;
  if (releases(status, false, true)) {
    route.release(payment.storeKey);
    return result;
  }
  if (sendsReceipt(status)) result._meta = { ...(result._meta ?? {}), [RECEIPT_META]: payment.receipt };
  return result;
}

/**
 * Register a paid tool on `mcp` (an `McpServer`): `config` and `handler` as for
 * `mcp.registerTool`, the handler's `extra.vlxPayment` holding the payment. `vlx` must have
 * an `origin` (the resource challenges bind: this MCP server's public origin).
 */
export function paidTool<Args>(
  mcp: McpServer,
  vlx: VlexivoServer,
  name: string,
  config: Parameters<McpServer['registerTool']>[1],
  pricing: McpPaywallOptions,
  handler: (args: Args, extra: Parameters<ToolCallback>[0] & PaidExtra) => CallToolResult | Promise<CallToolResult>,
): ReturnType<McpServer['registerTool']> {
  if (vlx.origin === null) {
    throw new VlexivoConfigError('config_invalid', 'paid MCP tools need the server\'s origin (new VlexivoServer({ origin })): challenges bind it', { status: 500 });
  }
  const route = vlx.route<Record<string, unknown>>(pick(pricing, PAYWALL_KEYS));
  const registered = mcp.registerTool(name, config, handler as unknown as ToolCallback);
  install(mcp).set(name, { route });
  return registered;
}

/** Options of `callPaidTool`. */
export interface CallPaidToolOptions {
  /**
   * The MCP server's origin as the payer knows it (for streamable HTTP, its URL's origin): a
   * challenge bound to another is refused before paying.
   */
  origin: string;
}

/** The JSON-RPC error of an SDK call, if that is what it threw. */
function rpcError(e: unknown): { code: number; data: unknown } | undefined {
  if (e === null || typeof e !== 'object') return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'number') return undefined;
  return { code, data: (e as { data?: unknown }).data };
}

interface McpAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  result?: CallToolResult;
}

/**
 * Call a tool, paying when it asks (core's payer flow: the caps, trusted facilitators and
 * typed errors of `VlexivoClient`). Resolves with the tool's result (its receipt in
 * `_meta["vlexivo/receipt"]`); rejects with a `VlexivoError` when the payment cannot be made
 * (a price over a cap: before paying), or the SDK's error for anything else.
 */
export async function callPaidTool(
  client: Pick<Client, 'callTool'>,
  payer: VlexivoClient | VlexivoClientOptions,
  call: { name: string; arguments?: Record<string, unknown> },
  options: CallPaidToolOptions,
): Promise<CallToolResult> {
  const vlx = payer instanceof VlexivoClient ? payer : new VlexivoClient(payer);
  const base = options.origin.replace(/\/$/, '');
  const url = base + toolPath(call.name);
  const transport: PayTransport<McpAnswer> = {
    send: async (_to, headers): Promise<McpAnswer> => {
      const meta = native.mcpRequestMeta(headers) as Record<string, unknown>;
      try {
        const result = (await client.callTool({ name: call.name, arguments: call.arguments, _meta: meta })) as CallToolResult;
        const receipt = native.mcpResultReceipt(result._meta);
        const status = result.isError === true ? 500 : 200;
        const h: Record<string, string> = {};
        if (receipt !== null) h[RECEIPT_HEADER_LC] = receipt;
        return { status, headers: h, body: Buffer.alloc(0), result };
      } catch (e) {
        const err = rpcError(e);
        const answer = err === undefined ? null : native.mcpPaymentRequiredAnswer(err.code, err.data);
        if (answer === null) throw e;
        return { status: answer.status, headers: answer.headers, body: Buffer.from(answer.body) };
      }
    },
    status: (a) => a.status,
    headers: (a) => a.headers,
    url: () => null,
    prefix: (a, limit) => Promise.resolve({ bytes: a.body.length > limit + 1 ? a.body.subarray(0, limit + 1) : a.body, response: a }),
  };
  const answer = await vlx.pay('POST', url, true, transport);
  if (answer.result !== undefined) return answer.result;
  // The flow gave up without an error of its own (a refusal it does not pay for): the server's.
  throw mcpErrorOf({ status: answer.status, body: answer.body.toString('utf8') });
}

export { VlexivoClient };
