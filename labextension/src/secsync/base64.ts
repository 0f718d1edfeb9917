/**
 * Strict URL-safe base64 without padding (RFC 4648 §5), the libsodium
 * `URLSAFE_NO_PADDING` variant used everywhere on the Secsync wire.
 *
 * The decoder rejects padding, characters outside the URL-safe alphabet, impossible
 * lengths and non-zero trailing bits (as libsodium's `sodium_base642bin` does).
 */
import { ProtocolError } from './errors';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const LOOKUP: Int16Array = (() => {
  const table = new Int16Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) {
    table[ALPHABET.charCodeAt(i)] = i;
  }
  return table;
})();

export function b64encode(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out +=
      ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/** Decodes strict base64url (no padding). Throws `ProtocolError` on any malformed input. */
export function b64decode(text: string): Uint8Array {
  if (typeof text !== 'string') {
    throw new ProtocolError('base64: not a string');
  }
  const len = text.length;
  if (len % 4 === 1) {
    throw new ProtocolError('base64: impossible length');
  }
  const out = new Uint8Array(Math.floor((len * 3) / 4));
  let acc = 0;
  let accBits = 0;
  let o = 0;
  for (let i = 0; i < len; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? LOOKUP[c] : -1;
    if (v < 0) {
      throw new ProtocolError(`base64: invalid character at ${i}`);
    }
    acc = ((acc << 6) | v) & 0xffffff;
    accBits += 6;
    if (accBits >= 8) {
      accBits -= 8;
      out[o++] = (acc >> accBits) & 0xff;
    }
  }
  if (accBits > 4 || (acc & ((1 << accBits) - 1)) !== 0) {
    throw new ProtocolError('base64: non-canonical trailing bits');
  }
  return o === out.length ? out : out.slice(0, o);
}

/** True when `text` is strict base64url that decodes to exactly `byteLength` bytes (if given). */
export function isB64(text: unknown, byteLength?: number): text is string {
  if (typeof text !== 'string') {
    return false;
  }
  try {
    const bytes = b64decode(text);
    return byteLength === undefined || bytes.length === byteLength;
  } catch {
    return false;
  }
}
