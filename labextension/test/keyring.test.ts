/**
 * Issue 12 in the browser: the keyring store of JupyterLab (keystore.ts getKeyring /
 * saveKeyring / browserKeyringStore: epoch 0 is the document key, later epochs in their own
 * localStorage item, keys only added, damaged entries an error that overwrites nothing) and
 * EpochKeys (engineEpochs.ts) over it. localStorage is a Map-backed Storage here (node).
 */
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { createSignatureKeyPair, generateKey, ready } from '../src/secsync';
import { b64encode } from '../src/secsync/base64';
import { EpochKeys } from '../src/secsync/engineEpochs';
import { Keyring } from '../src/secsync/lockbox';

class MapStorage {
  private readonly m = new Map<string, string>();
  get length(): number {
    return this.m.size;
  }
  key(i: number): string | null {
    return [...this.m.keys()][i] ?? null;
  }
  getItem(k: string): string | null {
    return this.m.has(k) ? (this.m.get(k) as string) : null;
  }
  setItem(k: string, v: string): void {
    this.m.set(k, String(v));
  }
  removeItem(k: string): void {
    this.m.delete(k);
  }
  clear(): void {
    this.m.clear();
  }
}

const storage = new MapStorage();
(globalThis as unknown as { window: { localStorage: MapStorage } }).window = { localStorage: storage };

// imported after window exists (keystore reads window.localStorage on each call)
const keystore = await import('../src/keystore');

const DOC = 'm1_doc';
const KEYRING_ITEM = 'secsync-jupyter:keyring:' + DOC;

beforeAll(async () => {
  await ready();
});
beforeEach(() => storage.clear());

describe('keystore keyrings', () => {
  it('epoch 0 is the document key; later epochs and seen in the keyring item', () => {
    const k0 = generateKey();
    const k1 = generateKey();
    expect(keystore.getKeyring(DOC).keyring.size).toBe(0);
    keystore.setDocumentKey(DOC, k0, 'link');
    expect(keystore.getKeyring(DOC).keyring.epochs).toEqual([0]);
    keystore.saveKeyring(DOC, new Keyring([[0, k0], [1, k1]]), 1);
    const { keyring, seen } = keystore.getKeyring(DOC);
    expect(keyring.epochs).toEqual([0, 1]);
    expect(b64encode(keyring.key(1))).toBe(b64encode(k1));
    expect(seen).toBe(1);
    expect(JSON.parse(storage.getItem(KEYRING_ITEM) as string)).toEqual({ keys: { '1': b64encode(k1) }, seen: 1 });
    expect(keystore.storedKeyringDocIds()).toEqual([DOC]);
    // the document key API is unchanged
    expect(b64encode(keystore.getDocumentKey(DOC) as Uint8Array)).toBe(b64encode(k0));
  });

  it('an epoch-0 key from a lockbox becomes the document key when there was none', () => {
    const k0 = generateKey();
    keystore.saveKeyring(DOC, new Keyring([[0, k0]]), 0);
    expect(b64encode(keystore.getDocumentKey(DOC) as Uint8Array)).toBe(b64encode(k0));
    expect(keystore.keyInfo(DOC)?.origin).toBe('link');
  });

  it('keys are only added: another key for a stored epoch is refused, nothing written', () => {
    const k0 = generateKey();
    keystore.setDocumentKey(DOC, k0, 'link');
    keystore.saveKeyring(DOC, new Keyring([[1, generateKey()]]), 1);
    const before = storage.getItem(KEYRING_ITEM);
    expect(() => keystore.saveKeyring(DOC, new Keyring([[1, generateKey()]]), 1)).toThrow(/762/);
    expect(storage.getItem(KEYRING_ITEM)).toBe(before);
    expect(() => keystore.saveKeyring(DOC, new Keyring([[0, generateKey()]]), 1)).toThrow(/another document key/);
    expect(b64encode(keystore.getDocumentKey(DOC) as Uint8Array)).toBe(b64encode(k0));
  });

  it('a damaged keyring item is an error, never read as empty nor overwritten', () => {
    storage.setItem(KEYRING_ITEM, '{"keys": {"1": "not a key"}}');
    expect(() => keystore.getKeyring(DOC)).toThrow(/damaged/);
    expect(() => keystore.saveKeyring(DOC, new Keyring([[1, generateKey()]]), 1)).toThrow(/damaged/);
    expect(storage.getItem(KEYRING_ITEM)).toBe('{"keys": {"1": "not a key"}}');
    storage.setItem(KEYRING_ITEM, '{"keys": {}, "seen": -1}');
    expect(() => keystore.getKeyring(DOC)).toThrow(/seen/);
  });

  it('EpochKeys over the browser store: a trusted key is kept at once, keys and seen persist', () => {
    const me = createSignatureKeyPair();
    const k0 = generateKey();
    const k1 = generateKey();
    const a = new EpochKeys(DOC, me, { docKey: k0, store: keystore.browserKeyringStore, trusted: true });
    expect(b64encode(keystore.getDocumentKey(DOC) as Uint8Array)).toBe(b64encode(k0));
    a.addKey(1, k1);
    a.accepted(1);
    const b = new EpochKeys(DOC, me, { store: keystore.browserKeyringStore });
    expect(b.keyring.epochs).toEqual([0, 1]);
    expect(b.seen).toBe(1);
    expect(b.confirmed0).toBe(true);
  });

  it('EpochKeys: a store that cannot keep a key does not stop the session (the key stays in memory)', () => {
    const me = createSignatureKeyPair();
    storage.setItem(KEYRING_ITEM, '{"keys": {"1": "damaged"}}');
    const k0 = generateKey();
    keystore.setDocumentKey(DOC, k0, 'link');
    expect(() => new EpochKeys(DOC, me, { store: keystore.browserKeyringStore })).toThrow(/damaged/);
    storage.removeItem(KEYRING_ITEM);
    const e = new EpochKeys(DOC, me, { store: keystore.browserKeyringStore });
    storage.setItem(KEYRING_ITEM, '{"keys": {"1": "damaged"}}'); // damaged meanwhile
    e.addKey(2, generateKey());
    expect(e.keyring.epochs).toEqual([0, 2]);
    expect(e.storeError?.message).toMatch(/damaged/);
    expect(storage.getItem(KEYRING_ITEM)).toBe('{"keys": {"1": "damaged"}}');
  });

  it('EpochKeys: an unconfirmed epoch-0 key from a lockbox is not written to the store', () => {
    const me = createSignatureKeyPair();
    const k0 = generateKey();
    const e = new EpochKeys(DOC, me, {
      keyring: new Keyring([[0, k0]]),
      store: keystore.browserKeyringStore,
      epoch0FromLockbox: true
    });
    expect(e.unconfirmed0).toBe(true);
    expect(keystore.getDocumentKey(DOC)).toBe(null);
    e.accepted(0); // it decrypted a writer's epoch-0 snapshot
    expect(e.unconfirmed0).toBe(false);
    expect(b64encode(keystore.getDocumentKey(DOC) as Uint8Array)).toBe(b64encode(k0));
  });
});
