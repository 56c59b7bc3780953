/**
 * axios (`vlexivo/axios`): an axios instance that pays for 402 responses, with the same payer
 * as `VlexivoClient.fetch` (core's payer flow: spending caps, auto top-up, trusted
 * facilitators, typed errors with the amount).
 *
 *   import axios from 'axios';
 *   import { withPaymentInterceptor } from 'vlexivo/axios';
 *   const api = withPaymentInterceptor(axios.create({ baseURL: 'https://api.example.com' }), { walletKey, maxPerCall: '0.05' });
 *   const { data } = await api.post('/api/v1/inference', { model: 'large-v2' });
 *
 * It wraps the instance's adapter rather than adding a response interceptor: axios has already
 * serialized the body when its adapter runs, so the retry sends those very bytes (a stream body
 * cannot be sent twice: `body_not_replayable` with the price), and the flow sees each answer
 * before axios's own status check. Request interceptors run once; response interceptors see
 * the final answer (or the `VlexivoError`, which rejects the request).
 */
import { Readable } from 'node:stream';
import type * as axiosModule from 'axios';
import type { AxiosAdapter, AxiosInstance, AxiosResponse, InternalAxiosRequestConfig } from 'axios';
import { VlexivoClient, type PayTransport, type VlexivoClientOptions } from './client';

/**
 * The parts of axios this module uses. axios ships an ESM and a CommonJS build, each with its
 * own classes: `import` of `vlexivo/axios` passes the ESM build's (so `instanceof AxiosError`
 * and the adapters are the caller's), `require` the CommonJS one's.
 */
export type AxiosLib = Pick<typeof axiosModule, 'AxiosError' | 'AxiosHeaders' | 'getAdapter'>;

/** Bodies that go out the same twice (axios has serialized objects to JSON or form text already). */
function replayable(data: unknown): boolean {
  return (
    data === undefined ||
    data === null ||
    typeof data === 'string' ||
    data instanceof ArrayBuffer ||
    ArrayBuffer.isView(data) ||
    data instanceof URLSearchParams
  );
}

function headersOf(lib: AxiosLib, res: AxiosResponse): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(lib.AxiosHeaders.from(res.headers as Record<string, string>).toJSON())) {
    if (v === undefined || v === null) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return out;
}

const asBuffer = (data: unknown): Buffer =>
  Buffer.isBuffer(data) ? data : data instanceof ArrayBuffer ? Buffer.from(data) : typeof data === 'string' ? Buffer.from(data) : Buffer.alloc(0);

/** What axios would have made of the bytes for the caller's `responseType` (the http adapter's rules). */
function asRequested(config: InternalAxiosRequestConfig, res: AxiosResponse): AxiosResponse {
  const bytes = asBuffer(res.data);
  const type = config.responseType;
  let data: unknown;
  if (type === 'arraybuffer') data = bytes;
  else if (type === 'blob') data = new Blob([bytes]);
  else if (type === 'stream') data = Readable.from([bytes]);
  else data = bytes.toString((config.responseEncoding as BufferEncoding | undefined) ?? 'utf8');
  return { ...res, data, config };
}

/** axios's own status check (`settle`) on the final answer. */
function settle(lib: AxiosLib, config: InternalAxiosRequestConfig, res: AxiosResponse): AxiosResponse {
  const ok = config.validateStatus;
  if (!res.status || ok === undefined || ok === null || ok(res.status)) return res;
  throw new lib.AxiosError(
    `Request failed with status code ${res.status}`,
    res.status >= 500 ? lib.AxiosError.ERR_BAD_RESPONSE : lib.AxiosError.ERR_BAD_REQUEST,
    config,
    res.request,
    res,
  );
}

/** A paying adapter around `inner` (the instance's own). */
export function payingAdapter(lib: AxiosLib, inner: AxiosAdapter, client: VlexivoClient, uri: (config: InternalAxiosRequestConfig) => string): AxiosAdapter {
  return async function vlexivoAdapter(config: InternalAxiosRequestConfig): Promise<AxiosResponse> {
    const method = (config.method ?? 'get').toUpperCase();
    const url = uri(config);
    const transport: PayTransport<AxiosResponse> = {
      send: (to, extra) => {
        const headers = lib.AxiosHeaders.from(config.headers);
        for (const [k, v] of Object.entries(extra)) headers.set(k, v);
        // `to` is the whole URL, query included (axios's getUri of this config).
        return inner({
          ...config,
          url: to,
          baseURL: undefined,
          params: undefined,
          headers,
          responseType: 'arraybuffer',
          validateStatus: () => true,
        } as InternalAxiosRequestConfig);
      },
      status: (r) => r.status,
      headers: (r) => headersOf(lib, r),
      url: () => null,
      prefix: (r, limit) => {
        const bytes = asBuffer(r.data);
        return Promise.resolve({ bytes: bytes.length > limit + 1 ? bytes.subarray(0, limit + 1) : bytes, response: r });
      },
    };
    const res = await client.pay(method, url, replayable(config.data), transport);
    return settle(lib, config, asRequested(config, res));
  };
}

/** `withPaymentInterceptor` over a given axios build (the ESM entry passes axios's ESM build). */
export function bindAxios(lib: AxiosLib): <T extends AxiosInstance>(instance: T, client?: VlexivoClient | VlexivoClientOptions) => T {
  return function withPaymentInterceptor<T extends AxiosInstance>(instance: T, client: VlexivoClient | VlexivoClientOptions = {}): T {
    const payer = client instanceof VlexivoClient ? client : new VlexivoClient(client);
    const inner = lib.getAdapter(instance.defaults.adapter ?? ['xhr', 'http', 'fetch']);
    instance.defaults.adapter = payingAdapter(lib, inner, payer, (config) => instance.getUri(config));
    return instance;
  };
}

/**
 * Make `instance` pay for 402 responses (its adapter wrapped; returns the instance). `client`:
 * a `VlexivoClient` (shared caps and wallet with its `fetch`) or the options of a new one.
 */
export function withPaymentInterceptor<T extends AxiosInstance>(instance: T, client: VlexivoClient | VlexivoClientOptions = {}): T {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- axios's CommonJS build, loaded on use (an optional peer)
  return bindAxios(require('axios') as AxiosLib)(instance, client);
}

export { VlexivoClient };
