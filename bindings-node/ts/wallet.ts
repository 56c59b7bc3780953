import native = require('./native');
import { VlexivoError, call, fromData } from './errors';

/** A secp256k1 payer wallet (EIP-55 address). The key never leaves the process. */
export class Wallet {
  private readonly inner: native.Wallet;

  private constructor(inner: native.Wallet) {
    this.inner = inner;
  }

  /** A new random key. */
  static generate(): Wallet {
    return new Wallet(native.Wallet.generate());
  }

  /** A key as 64 hex digits (`0x` optional); throws `wallet_key_invalid`. */
  static import(key: string): Wallet {
    return new Wallet(call(() => native.Wallet.import(key)));
  }

  get address(): string {
    return this.inner.address;
  }

  /** The private key, `0x` + 64 hex digits: store it like a password. */
  exportKey(): string {
    return this.inner.exportKey();
  }

  toJSON(): { address: string } {
    return { address: this.address };
  }
}

/** Map a Vlexivo JSON error body (`{"error": code, …}`) to its typed error. */
export function errorFromBody(status: number, body: string | Uint8Array): VlexivoError {
  const buf = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return fromData(native.errorFromBody(status, buf));
}
