/**
 * vlexivo: HTTP 402 per-call API payments.
 *
 * Provider: `new VlexivoServer({ apiSecret }).paywall({ price: '0.001' })` (Express; Fastify,
 * Hapi, Koa, node:http, Hono and Next.js in `vlexivo/fastify`, `/hapi`, `/koa`, `/http`, `/hono`,
 * `/next`); `withPaywall(handler, { price })` for any WHATWG `Request` → `Response` handler.
 * Payer: `new VlexivoClient({ walletKey }).fetch(url)`.
 */
import native = require('./native');

export { VlexivoServer, type VlexivoServerOptions, type NonceStoreOption, type NonceStoreOptions, type NonceStoreUrl, type RequestTarget } from './server';
export {
  PaidRoute,
  EXPOSED_HEADERS,
  type PaywallOptions,
  type PriceValue,
  type ResolvedPrice,
  type VlexivoPayment,
  type VlexivoPayer,
  type VlexivoLogger,
  type Rejection,
} from './route';
export type { Usage, UsageOptions } from './usage';
export { VlexivoClient, type VlexivoClientOptions, type AutoTopUpOptions, type SpendingWindow, type PaymentInfo } from './client';
export { Wallet, errorFromBody } from './wallet';
export { verifyPayment, type VerifyPaymentOptions, type VerifiedPayment } from './onchain';
export type { PaywallMiddleware, PaywallErrorMiddleware } from './express';
export { FetchPaywall, fetchPaywall, withPaywall, getPayment, type FetchPaywallOptions, type FetchPayment } from './fetch';
export {
  ALL_CODES,
  ALL_CATEGORIES,
  CODE_CLASSES,
  CATEGORY_CLASSES,
  VlexivoError,
  VlexivoAmountError,
  VlexivoChallengeError,
  VlexivoWalletError,
  VlexivoProofError,
  VlexivoPaymentError,
  VlexivoReplayError,
  VlexivoUnderpaidError,
  VlexivoInsufficientFundsError,
  VlexivoBudgetError,
  VlexivoNonceStoreError,
  VlexivoFacilitatorError,
  VlexivoRequestError,
  VlexivoConfigError,
  VlexivoInternalError,
  createError,
  type VlexivoErrorCode,
  type VlexivoErrorCategory,
  type VlexivoErrorInit,
} from './errors';

/** Header names as core spells them (case-insensitive on the wire). */
export const HEADERS: Readonly<{ challenge: string; proof: string; receipt: string; payer: string }> = (() => {
  const h = native.headerNames();
  return Object.freeze({ challenge: h.challenge, proof: h.proof, receipt: h.receipt, payer: h.payer });
})();

/** Every error code the native core defines (kept equal to `ALL_CODES`; tested). */
export function nativeCodes(): string[] {
  return native.allCodes();
}

/** Parse an amount exactly to its canonical decimal string (throws `amount_*` errors). */
export function parseMoney(value: string | number, currency = 'usd'): string {
  try {
    return native.parseMoney(value, currency);
  } catch (e) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on this error path only
    throw (require('./errors') as typeof import('./errors')).fromNative(e);
  }
}
