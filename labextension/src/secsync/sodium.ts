/**
 * libsodium access. Call `await ready()` once before using any function of this library
 * that touches crypto (the sync client does it in `connect()`).
 */
import _sodium from 'libsodium-wrappers';

export type Sodium = typeof _sodium;

let isReady = false;
let readyPromise: Promise<void> | null = null;

export function ready(): Promise<void> {
  if (!readyPromise) {
    readyPromise = _sodium.ready.then(() => {
      isReady = true;
    });
  }
  return readyPromise;
}

export function sodium(): Sodium {
  if (!isReady) {
    throw new Error('secsync: libsodium is not initialised, await ready() first');
  }
  return _sodium;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Strict UTF-8 decoding (throws on invalid sequences). */
export function utf8Decode(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) {
    total += p.length;
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Constant-time comparison of two byte arrays. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false;
  }
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    diff |= a[i] ^ b[i];
  }
  return diff === 0;
}
