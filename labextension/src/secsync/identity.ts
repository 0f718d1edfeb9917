/**
 * Identity strings and box keys: the TypeScript twin of secsync_jupyter/protocol/identity.py
 * (same checks, same error codes and fields). See docs/protocol.md, section "Membership log".
 */
import { b64decode, b64encode } from './base64';
import { hasLoneSurrogate } from './canonical';
import { SignatureKeyPair } from './crypto';
import { B64_RE, err, MembershipError } from './membershipError';
import { sodium, utf8Decode, utf8Encode } from './sodium';

export const IDENTITY_PREFIX = 'secsync-id:1:';
export const MAX_NAME_BYTES = 100;
export const MAX_IDENTITY_CHARS = 512;

// ---------------------------------------------------------------------------------------
// identities
// ---------------------------------------------------------------------------------------

/** control, soft hyphen, invisible and bidirectional formatting characters, separators, BOM */
const FORBIDDEN_NAME_CHARS = new RegExp(
  '[\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u2028-\\u202e' +
    '\\u2060-\\u206f\\ufeff\\ufff9-\\ufffb]'
);
const NAME_SPACE = new Set(
  ' \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a' +
    '\u202f\u205f\u3000'
);
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const FINGERPRINT_RE = /^[0-9a-f]{16}$/;

/** The reason `name` is not an acceptable display name, or null if it is. */
export function checkDisplayName(name: unknown): string | null {
  if (typeof name !== 'string') {
    return 'expected a string';
  }
  if (name.length === 0) {
    return 'must not be empty';
  }
  if (FORBIDDEN_NAME_CHARS.test(name) || hasLoneSurrogate(name)) {
    return 'contains a control, invisible or bidirectional formatting character';
  }
  if (utf8Encode(name).length > MAX_NAME_BYTES) {
    return `longer than ${MAX_NAME_BYTES} bytes of UTF-8`;
  }
  if (NAME_SPACE.has(name[0]) || NAME_SPACE.has(name[name.length - 1])) {
    return 'begins or ends with white space';
  }
  return null;
}

/** BLAKE2b-64 of the 32 key bytes as 16 lowercase hex digits. */
export function fingerprintHex(pubKey: Uint8Array): string {
  let hex = '';
  for (const b of sodium().crypto_generichash(8, pubKey)) {
    hex += b.toString(16).padStart(2, '0');
  }
  return hex;
}

export interface Identity {
  pubKey: string;
  name: string | null;
}

function identityError(field: string, detail?: string, code = 730): MembershipError {
  return err(code, field, detail);
}

export function keyBytes(pubKey: string | Uint8Array, field = 'pubKey'): Uint8Array {
  if (pubKey instanceof Uint8Array) {
    if (pubKey.length !== 32) {
      throw identityError(field, 'expected 32 bytes');
    }
    return pubKey;
  }
  if (typeof pubKey !== 'string' || !B64_RE[32].test(pubKey)) {
    throw identityError(field, 'expected base64url of 32 bytes');
  }
  return b64decode(pubKey);
}

export function checkPoint(key: Uint8Array): void {
  try {
    sodium().crypto_sign_ed25519_pk_to_curve25519(key);
  } catch {
    throw identityError('pubKey', 'not a valid Ed25519 public key');
  }
}

function pctEncode(name: string): string {
  let out = '';
  for (const b of utf8Encode(name)) {
    const c = String.fromCharCode(b);
    out += b < 128 && UNRESERVED.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function pctDecode(text: string): string {
  const raw: number[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === '%') {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) {
        throw identityError('name', "'%' not followed by two upper-case hex digits");
      }
      raw.push(parseInt(hex, 16));
      i += 3;
      continue;
    }
    if (!UNRESERVED.test(c)) {
      throw identityError('name', `character ${JSON.stringify(c)} must be percent-encoded`);
    }
    raw.push(c.charCodeAt(0));
    i += 1;
  }
  let name: string;
  try {
    name = utf8Decode(new Uint8Array(raw));
  } catch {
    throw identityError('name', 'not valid UTF-8');
  }
  if (pctEncode(name) !== text) {
    throw identityError('name', 'not in canonical percent-encoding');
  }
  return name;
}

/** The identity string of a public key (bytes or base64url) and optional display name. */
export function formatIdentity(pubKey: string | Uint8Array, name: string | null = null): string {
  const key = keyBytes(pubKey);
  checkPoint(key);
  let text = `${IDENTITY_PREFIX}${b64encode(key)}:${fingerprintHex(key)}`;
  if (name !== null) {
    const reason = checkDisplayName(name);
    if (reason) {
      throw identityError('name', reason);
    }
    text += ':' + pctEncode(name);
  }
  return text;
}

function stripAsciiSpace(text: string): string {
  const ws = ' \t\r\n';
  let a = 0;
  let b = text.length;
  while (a < b && ws.includes(text[a])) {
    a++;
  }
  while (b > a && ws.includes(text[b - 1])) {
    b--;
  }
  return text.slice(a, b);
}

/** Parse an identity string strictly: 730 malformed, 731 fingerprint does not match. */
export function parseIdentity(input: unknown): Identity {
  if (typeof input !== 'string') {
    throw identityError('identity', 'expected a string');
  }
  const text = stripAsciiSpace(input);
  if (text.length > MAX_IDENTITY_CHARS) {
    throw identityError('identity', `longer than ${MAX_IDENTITY_CHARS} characters`);
  }
  if (!text.startsWith(IDENTITY_PREFIX)) {
    throw identityError('identity', `does not start with '${IDENTITY_PREFIX}'`);
  }
  const parts = text.slice(IDENTITY_PREFIX.length).split(':');
  if (parts.length !== 2 && parts.length !== 3) {
    throw identityError('identity', 'expected pubKey:fingerprint[:name]');
  }
  const key = keyBytes(parts[0]);
  if (!FINGERPRINT_RE.test(parts[1])) {
    throw identityError('fingerprint', 'expected 16 lowercase hex digits');
  }
  if (parts[1] !== fingerprintHex(key)) {
    throw identityError('fingerprint', undefined, 731);
  }
  checkPoint(key);
  let name: string | null = null;
  if (parts.length === 3) {
    name = pctDecode(parts[2]);
    const reason = checkDisplayName(name);
    if (reason) {
      throw identityError('name', reason);
    }
  }
  return { pubKey: b64encode(key), name };
}

/** The X25519 box public key of a member (`crypto_sign_ed25519_pk_to_curve25519`). */
export function boxPublicKey(pubKey: string | Uint8Array): Uint8Array {
  const key = keyBytes(pubKey);
  try {
    return sodium().crypto_sign_ed25519_pk_to_curve25519(key);
  } catch {
    throw identityError('pubKey', 'not a valid Ed25519 public key');
  }
}

/** The X25519 box secret key matching `boxPublicKey` of `keyPair`. */
export function boxSecretKey(keyPair: SignatureKeyPair): Uint8Array {
  return sodium().crypto_sign_ed25519_sk_to_curve25519(keyPair.privateKey);
}
