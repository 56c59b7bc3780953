/**
 * `verifyPayment(txHash, { rpcUrl, payer, amount })`: a provider checks a live payment on chain,
 * without the facilitator. One JSON-RPC batch (the transaction's receipt and the head block) goes
 * to the chain's node; the native core decides: the receipt must be successful and carry the
 * token's `Transfer(payer, payee, amount)`, at least `confirmations` deep. Failures are typed
 * errors with stable codes: `transaction_not_found`, `settlement_failed` (reverted),
 * `transfer_mismatch` (`details.field` names what differs), `confirmations_pending`,
 * `chain_unavailable` (never naming the node's URL, which often holds an API key).
 */
import native = require('./native');
import { VlexivoConfigError, call } from './errors';

export interface VerifyPaymentOptions {
  /** The chain's JSON-RPC URL; default `process.env.VLX_RPC_URL`. */
  rpcUrl?: string;
  /** The EIP-3009 token (the challenge's `asset`); default `process.env.VLX_ASSET`. */
  asset?: string;
  /** Who was paid: the provider's payout address; default `process.env.VLX_PAY_TO`. */
  payTo?: string;
  /** Who paid (a payment's `payer`, the proof's `sub`). */
  payer: string;
  /** The amount in usd, a decimal string (`'0.001'`) or a number read exactly. */
  amount: string | number;
  /** Least depth: 1 = mined (default). */
  confirmations?: number;
  /** The payment's EIP-3009 authorization nonce (`0x` + 64 hex digits): pins the check to its
   * own Transfer in a transaction that settled several payments. */
  authorizationNonce?: string;
  /** Time allowed for the node's answer (default 15 000 ms). */
  timeoutMs?: number;
}

/** A transaction that pays as expected. */
export interface VerifiedPayment {
  txHash: string;
  block: number;
  /** How deep its block is (1 = the head block). */
  confirmations: number;
  gasUsed: number;
  /** The matching Transfer log's index in its block. */
  logIndex: number;
  /** The token's Transfer logs in the transaction: more than 1 when it settled several payments
   * (a batched relay). */
  transfers: number;
  /** How many of them are this very transfer: more than 1 means the hash alone cannot tell
   * those payments apart (pass `authorizationNonce`). */
  matching: number;
  /** Whether the match was pinned by `authorizationNonce`. */
  authorizationChecked: boolean;
  token: string;
  payer: string;
  payee: string;
  /** Decimal usd. */
  amount: string;
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** Largest answer read (a batched relay's receipt carries a log per payment). */
const MAX_ANSWER = 8 * 1024 * 1024;

function envOr(value: string | undefined, name: string, option: string): string {
  const v = value ?? call(() => native.envVar(name, process.env as Record<string, string>));
  if (!v) throw new VlexivoConfigError('config_invalid', `verifyPayment needs ${option} (or ${name})`, { status: 500 });
  return v;
}

/** What failed, without where: a fetch error's cause names the host, the URL its key. */
function failureOf(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; cause?: { code?: string } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const code = err?.cause?.code;
  return typeof code === 'string' ? `the node could not be reached (${code})` : 'the node could not be reached';
}

async function readCapped(res: Response): Promise<Buffer | string> {
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > MAX_ANSWER) return `the node's answer is larger than ${MAX_ANSWER} bytes`;
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** Check a live payment's transaction on chain (see the module's comment for the codes). */
export async function verifyPayment(txHash: string, options: VerifyPaymentOptions): Promise<VerifiedPayment> {
  const rpcUrl = envOr(options.rpcUrl, 'VLX_RPC_URL', 'rpcUrl');
  const expected = {
    token: envOr(options.asset, 'VLX_ASSET', 'asset'),
    payer: options.payer,
    payee: envOr(options.payTo, 'VLX_PAY_TO', 'payTo'),
    amount: options.amount,
    confirmations: options.confirmations,
    authorizationNonce: options.authorizationNonce,
  };
  const body = call(() => native.paymentCheckRequest(txHash, expected));
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let status = 0;
  let answer: Buffer = Buffer.alloc(0);
  let failure: string | undefined;
  try {
    const res = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(timeoutMs),
    });
    status = res.status;
    const read = await readCapped(res);
    if (typeof read === 'string') failure = read;
    else answer = read;
  } catch (e) {
    failure = failureOf(e, timeoutMs);
  }
  return call(() => native.paymentCheckAnswer(txHash, expected, status, answer, failure));
}
