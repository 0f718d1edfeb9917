/**
 * Browser-side key storage. Document keys and this browser's signing key pair live only
 * here (window.localStorage, scoped to the JupyterLab origin) and in share links; they are
 * never sent to the Jupyter server.
 */
import { b64decode, b64encode } from './secsync/base64';
import { createSignatureKeyPair } from './secsync/crypto';
import { ready as sodiumReady, sodium } from './secsync/sodium';

const PREFIX = 'secsync-jupyter:';
const KEY_PREFIX = PREFIX + 'doc-key:';
const POINTER_PREFIX = PREFIX + 'pointer:';
const RELAY_PREFIX = PREFIX + 'approved-relay:';
const SIGNING_KEY = PREFIX + 'signing-key-pair';

export interface ISigningKeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

function storage(): Storage {
  return window.localStorage;
}

export function getDocumentKey(docId: string): Uint8Array | null {
  const value = storage().getItem(KEY_PREFIX + docId);
  if (!value) {
    return null;
  }
  try {
    const key = b64decode(value);
    return key.length === 32 ? key : null;
  } catch {
    return null;
  }
}

export function setDocumentKey(docId: string, key: Uint8Array): void {
  if (key.length !== 32) {
    throw new Error('a document key has 32 bytes');
  }
  storage().setItem(KEY_PREFIX + docId, b64encode(key));
}

export function forgetDocumentKey(docId: string): void {
  storage().removeItem(KEY_PREFIX + docId);
}

export function keysEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Remembers that the user confirmed a foreign relay (normalized base, see relaypolicy.ts);
 * this browser then connects to it without asking again.
 */
export function approveRelay(normalizedRelay: string): void {
  storage().setItem(RELAY_PREFIX + normalizedRelay, '1');
}

export function isRelayApproved(normalizedRelay: string): boolean {
  return storage().getItem(RELAY_PREFIX + normalizedRelay) === '1';
}

/** Remembers where this browser last saw the pointer file of a document (per server). */
export function rememberPointerPath(serverKey: string, docId: string, path: string): void {
  storage().setItem(POINTER_PREFIX + serverKey + ':' + docId, path);
}

export function knownPointerPath(serverKey: string, docId: string): string | null {
  return storage().getItem(POINTER_PREFIX + serverKey + ':' + docId);
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  crypto.getRandomValues(out);
  return out;
}

/** A fresh Secsync id: b64url of 24 random bytes. */
export function newDocId(): string {
  return b64encode(randomBytes(24));
}

export function newDocumentKey(): Uint8Array {
  return randomBytes(32);
}

let cachedKeyPair: ISigningKeyPair | null = null;

/** This browser's Ed25519 signing key pair (created on first use). */
export async function getSigningKeyPair(): Promise<ISigningKeyPair> {
  if (cachedKeyPair) {
    return cachedKeyPair;
  }
  await sodiumReady();
  const stored = storage().getItem(SIGNING_KEY);
  if (stored) {
    try {
      const parsed = JSON.parse(stored);
      const publicKey = b64decode(parsed.publicKey);
      const privateKey = b64decode(parsed.privateKey);
      if (publicKey.length === 32 && privateKey.length === 64) {
        cachedKeyPair = { publicKey, privateKey };
        return cachedKeyPair;
      }
    } catch {
      // fall through: replace an unreadable entry
    }
  }
  const pair = createSignatureKeyPair();
  cachedKeyPair = { publicKey: pair.publicKey, privateKey: pair.privateKey };
  storage().setItem(
    SIGNING_KEY,
    JSON.stringify({
      publicKey: b64encode(cachedKeyPair.publicKey),
      privateKey: b64encode(cachedKeyPair.privateKey)
    })
  );
  return cachedKeyPair;
}

function hexGroups(digest: Uint8Array): string {
  const hex = Array.from(digest, b => b.toString(16).padStart(2, '0')).join('');
  return hex.match(/.{4}/g)!.join(' ');
}

/** A short human-comparable fingerprint of a b64url public key: BLAKE2b-64, hex groups. */
export function fingerprint(pubKeyB64: string): string {
  try {
    return hexGroups(sodium().crypto_generichash(8, b64decode(pubKeyB64)));
  } catch {
    return '????';
  }
}

const KEY_FINGERPRINT_LABEL = new TextEncoder().encode('secsync document key\n');

/**
 * Fingerprint of a document key, to compare two keys without showing them:
 * BLAKE2b-64 of `"secsync document key\n" || key`, hex in groups of 4 (reveals nothing
 * usable about the key).
 */
export async function keyFingerprint(key: Uint8Array): Promise<string> {
  await sodiumReady();
  const input = new Uint8Array(KEY_FINGERPRINT_LABEL.length + key.length);
  input.set(KEY_FINGERPRINT_LABEL);
  input.set(key, KEY_FINGERPRINT_LABEL.length);
  return hexGroups(sodium().crypto_generichash(8, input));
}

