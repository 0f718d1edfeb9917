/**
 * Canonical JSON (RFC 8785 / JCS as implemented by npm `canonicalize`).
 *
 * `canonicalize()` is the plain npm function (what the reference uses, floats included).
 * `canonicalizeStrict()` first checks the protocol's domain — valid Unicode strings (no lone
 * surrogates), safe integers, booleans, null, and plain objects/arrays of those — and throws
 * `ProtocolError` for anything else. Every message this library creates or verifies goes
 * through the strict variant.
 */
import canonicalizeNpm from 'canonicalize';
import { b64encode } from './base64';
import { ProtocolError } from './errors';
import { utf8Encode } from './sodium';

export function canonicalize(value: unknown): string {
  const out = canonicalizeNpm(value);
  if (typeof out !== 'string') {
    throw new ProtocolError('canonicalize: value has no JSON representation');
  }
  return out;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

/** Throws `ProtocolError` when `value` lies outside the canonical-JSON domain of the protocol. */
export function assertCanonicalDomain(value: unknown, depth = 0): void {
  if (depth > 64) {
    throw new ProtocolError('canonical JSON: nesting too deep');
  }
  if (value === null || typeof value === 'boolean') {
    return;
  }
  if (typeof value === 'string') {
    if (hasLoneSurrogate(value)) {
      throw new ProtocolError('canonical JSON: lone surrogate in string');
    }
    return;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new ProtocolError('canonical JSON: number is not an integer with |n| <= 2^53-1');
    }
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) {
      assertCanonicalDomain(item, depth + 1);
    }
    return;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new ProtocolError('canonical JSON: not a plain object');
    }
    for (const key of Object.keys(value as object)) {
      if (hasLoneSurrogate(key)) {
        throw new ProtocolError('canonical JSON: lone surrogate in key');
      }
      assertCanonicalDomain((value as Record<string, unknown>)[key], depth + 1);
    }
    return;
  }
  throw new ProtocolError(`canonical JSON: unsupported type ${typeof value}`);
}

export function canonicalizeStrict(value: unknown): string {
  assertCanonicalDomain(value);
  return canonicalize(value);
}

/** `b64(canon(publicData))`: the AEAD additional data and the signed `publicData` string. */
export function canonicalizeAndToBase64(value: unknown): string {
  return b64encode(utf8Encode(canonicalizeStrict(value)));
}
