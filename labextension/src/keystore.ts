/**
 * Browser-side key storage. Document keys and this browser's signing key pair live only
 * here (window.localStorage, scoped to the JupyterLab origin) and in share links; they are
 * never sent to the Jupyter server.
 */
import { b64decode, b64encode } from './secsync/base64';
import { createSignatureKeyPair } from './secsync/crypto';
import type { KeyringStore } from './secsync/engineEpochs';
import { Keyring } from './secsync/lockbox';
import { ready as sodiumReady, sodium } from './secsync/sodium';

const PREFIX = 'secsync-jupyter:';
const KEY_PREFIX = PREFIX + 'doc-key:';
const POINTER_PREFIX = PREFIX + 'pointer:';
const RELAY_PREFIX = PREFIX + 'approved-relay:';
const SIGNING_KEY = PREFIX + 'signing-key-pair';
const INFO_PREFIX = PREFIX + 'key-info:';
const IDENTITY_INFO = PREFIX + 'identity-info';
const KEYRING_PREFIX = PREFIX + 'keyring:';

/**
 * Where a stored key came from and when it was last exported in a key backup (backup.ts).
 * `created`: made in this browser (it exists nowhere else until it is backed up or its share
 * link is kept); `link`: from a share link; `backup`: from a key backup.
 */
export interface IKeyInfo {
  origin: 'created' | 'link' | 'backup';
  /** when the key was stored here (ms since the epoch) */
  stored: number;
  /** when the key was last written to a key backup (ms), null if never */
  backedUp: number | null;
}

/** Keys made by newDocumentKey() and not stored yet: storing one records origin 'created'. */
const freshKeys = new WeakSet<Uint8Array>();
const keyCreatedListeners = new Set<(docId: string) => void>();

/** Calls `listener(docId)` whenever a key made in this browser is stored (a new document). */
export function onKeyCreated(listener: (docId: string) => void): () => void {
  keyCreatedListeners.add(listener);
  return () => keyCreatedListeners.delete(listener);
}

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

/**
 * Stores the key of `docId`. `origin` defaults to 'created' for a key made by
 * newDocumentKey() and 'link' otherwise; storing the key already stored changes nothing.
 */
export function setDocumentKey(docId: string, key: Uint8Array, origin?: IKeyInfo['origin']): void {
  if (key.length !== 32) {
    throw new Error('a document key has 32 bytes');
  }
  const previous = getDocumentKey(docId);
  if (previous && keysEqual(previous, key)) {
    return;
  }
  const created = freshKeys.has(key);
  freshKeys.delete(key);
  storage().setItem(KEY_PREFIX + docId, b64encode(key));
  const info: IKeyInfo = {
    origin: origin ?? (created ? 'created' : 'link'),
    stored: Date.now(),
    backedUp: null
  };
  storage().setItem(INFO_PREFIX + docId, JSON.stringify(info));
  if (info.origin === 'created') {
    for (const listener of keyCreatedListeners) {
      try {
        listener(docId);
      } catch (e) {
        console.warn('secsync-jupyter: key listener failed', e);
      }
    }
  }
}

export function forgetDocumentKey(docId: string): void {
  storage().removeItem(KEY_PREFIX + docId);
  storage().removeItem(INFO_PREFIX + docId);
}

// ---- issue 12: the keyring of a document with a membership log (epoch -> key) ----------

/**
 * The epoch keys this browser holds for `docId` and the newest epoch of a snapshot it
 * accepted (`seen`, the 769 rule). Epoch 0 is the document key (`getDocumentKey`); the later
 * epochs are in `secsync-jupyter:keyring:<docId>` = `{"keys": {"1": b64, …}, "seen": n}`. A
 * damaged entry is an error (never read as empty, never overwritten by saveKeyring).
 */
export function getKeyring(docId: string): { keyring: Keyring; seen: number | null } {
  const keyring = new Keyring();
  const key0 = getDocumentKey(docId);
  if (key0) {
    keyring.add(0, key0);
  }
  const raw = storage().getItem(KEYRING_PREFIX + docId);
  if (raw === null) {
    return { keyring, seen: null };
  }
  const entry = parseKeyringEntry(docId, raw);
  for (const epoch of entry.keyring.epochs) {
    if (epoch !== 0) {
      keyring.add(epoch, entry.keyring.key(epoch));
    }
  }
  return { keyring, seen: entry.seen };
}

function parseKeyringEntry(docId: string, raw: string): { keyring: Keyring; seen: number | null } {
  try {
    const data = JSON.parse(raw);
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      throw new Error('expected a JSON object');
    }
    const seen = data.seen;
    if (seen != null && !(typeof seen === 'number' && Number.isSafeInteger(seen) && seen >= 0)) {
      throw new Error('bad seen epoch');
    }
    return { keyring: Keyring.fromJson(data.keys ?? {}), seen: seen ?? null };
  } catch (e) {
    throw new Error(`the stored keyring of ${docId} is damaged: ${(e as Error).message}`);
  }
}

/**
 * Keep the epoch keys of `docId` (and `seen`): epochs >= 1 in its keyring entry, epoch 0 as
 * the document key when none is stored yet (origin 'link': it came from a lockbox). Keys are
 * only added: a stored key of an epoch is never replaced by another (762, nothing written).
 */
export function saveKeyring(docId: string, ring: Keyring, seen: number | null): void {
  const raw = storage().getItem(KEYRING_PREFIX + docId);
  const merged = raw === null ? new Keyring() : parseKeyringEntry(docId, raw).keyring;
  for (const epoch of ring.epochs) {
    if (epoch !== 0) {
      merged.add(epoch, ring.key(epoch)); // 762 if it conflicts: nothing written
    }
  }
  const key0 = ring.has(0) ? ring.key(0) : null;
  const stored0 = getDocumentKey(docId);
  if (key0 && stored0 && !keysEqual(key0, stored0)) {
    throw new Error(`epoch 0 of ${docId}: another document key is stored here (kept)`);
  }
  const keys = merged.toJson();
  const entry = JSON.stringify({ keys, ...(seen !== null ? { seen } : {}) });
  if (Object.keys(keys).length > 0 || seen !== null) {
    if (storage().getItem(KEYRING_PREFIX + docId) !== entry) {
      storage().setItem(KEYRING_PREFIX + docId, entry);
    }
  }
  if (key0 && !stored0) {
    setDocumentKey(docId, key0, 'link');
  }
}

/** The document ids with a keyring entry (keys of epochs after 0, or a seen epoch). */
export function storedKeyringDocIds(): string[] {
  const ids: string[] = [];
  const store = storage();
  for (let i = 0; i < store.length; i++) {
    const name = store.key(i);
    if (name?.startsWith(KEYRING_PREFIX)) {
      ids.push(name.slice(KEYRING_PREFIX.length));
    }
  }
  return ids.sort();
}

/** The SecsyncYjsClient `keyringStore` of JupyterLab: this browser's localStorage. */
export const browserKeyringStore: KeyringStore = { load: getKeyring, save: saveKeyring };

/** The document ids this browser has a key for. */
export function storedDocIds(): string[] {
  const ids: string[] = [];
  const store = storage();
  for (let i = 0; i < store.length; i++) {
    const name = store.key(i);
    if (name?.startsWith(KEY_PREFIX) && getDocumentKey(name.slice(KEY_PREFIX.length))) {
      ids.push(name.slice(KEY_PREFIX.length));
    }
  }
  return ids.sort();
}

/** What this browser knows about a stored key (null for keys stored before this was kept). */
export function keyInfo(docId: string): IKeyInfo | null {
  try {
    const info = JSON.parse(storage().getItem(INFO_PREFIX + docId) ?? 'null');
    if (info && typeof info === 'object' && typeof info.origin === 'string') {
      return info as IKeyInfo;
    }
  } catch {
    // unreadable: unknown
  }
  return null;
}

/** Records that the keys of `docIds` (and the signing identity) went into a key backup. */
export function markBackedUp(docIds: string[], when = Date.now()): void {
  for (const docId of docIds) {
    const info = keyInfo(docId) ?? { origin: 'created', stored: when, backedUp: null };
    info.backedUp = when;
    storage().setItem(INFO_PREFIX + docId, JSON.stringify(info));
  }
  storage().setItem(IDENTITY_INFO, JSON.stringify({ backedUp: when }));
}

/**
 * True when the key of `docId` exists only in this browser as far as it knows: made here (or
 * of unknown origin) and not written to a key backup since. Keys from a share link or a
 * backup exist elsewhere.
 */
export function keyOnlyHere(docId: string): boolean {
  if (!getDocumentKey(docId)) {
    return false;
  }
  const info = keyInfo(docId);
  return !info || (info.origin === 'created' && !info.backedUp);
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

/** A new random document key; storing it records it as made in this browser. */
export function newDocumentKey(): Uint8Array {
  const key = randomBytes(32);
  freshKeys.add(key);
  return key;
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

/** Replaces this browser's signing key pair (a key backup's identity). */
export function setSigningKeyPair(pair: ISigningKeyPair): void {
  if (pair.publicKey.length !== 32 || pair.privateKey.length !== 64) {
    throw new Error('an Ed25519 key pair has a 32-byte public and a 64-byte private key');
  }
  storage().setItem(
    SIGNING_KEY,
    JSON.stringify({ publicKey: b64encode(pair.publicKey), privateKey: b64encode(pair.privateKey) })
  );
  cachedKeyPair = { publicKey: pair.publicKey, privateKey: pair.privateKey };
}

/** The stored signing key pair without creating one (null if this browser has none yet). */
export function storedSigningKeyPair(): ISigningKeyPair | null {
  if (cachedKeyPair) {
    return cachedKeyPair;
  }
  try {
    const parsed = JSON.parse(storage().getItem(SIGNING_KEY) ?? 'null');
    if (parsed) {
      const publicKey = b64decode(parsed.publicKey);
      const privateKey = b64decode(parsed.privateKey);
      if (publicKey.length === 32 && privateKey.length === 64) {
        return { publicKey, privateKey };
      }
    }
  } catch {
    // unreadable: none
  }
  return null;
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

