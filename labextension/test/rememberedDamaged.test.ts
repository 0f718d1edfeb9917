/**
 * A damaged remembered state must not lock the user out (issues 11 / 13, part 3), browser
 * side: `LocalStorageStore` tells damage (an item that is not JSON, a log item that is not
 * `{logHead, log}`) with `RememberedDamagedError` and keeps damaged items under side keys
 * (`…:damaged`, `…:damaged:2`: never one overwritten); `SecsyncYjsClient` with such a store,
 * against our Python relay on loopback, opens the document from scratch (807), raises the
 * `remembered-damaged` alert, keeps the damaged value aside and writes a fresh state after the
 * load — or, when the damaged value cannot be kept (the quota), writes nothing. The engine rule
 * itself is pinned by the shared scenarios remembered-807-* / membership-remembered-807-*.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import {
  createSignatureKeyPair,
  generateId,
  generateKey,
  ready,
  SecsyncYjsClientOptions,
  SignatureKeyPair
} from '../src/secsync';
import { SyncEngine } from '../src/secsync/engine';
import {
  LocalStorageStore,
  REMEMBERED_LOG_PREFIX,
  REMEMBERED_PREFIX,
  RememberedDamagedError
} from '../src/secsync/rememberedState';
import { usePythonRelay } from './helpers/pythonRelay';
import { FakeStorage, nullAdapter } from './helpers/remembered';

const DAMAGED = 'SECSYNC_ERROR_807';

beforeAll(async () => {
  await ready();
});

const STATE = { snapshot: null, logHead: { seq: 0, hash: 'A'.repeat(43) } };

describe('LocalStorageStore: damaged items', () => {
  test('an item that is not JSON, or a log item that is not {logHead, log}, is damaged', () => {
    const storage = new FakeStorage();
    const store = new LocalStorageStore(storage);
    storage.items.set(REMEMBERED_PREFIX + 'd', '{"snapshot": nu');
    expect(() => store.load('d')).toThrow(RememberedDamagedError);
    expect(() => store.load('d')).toThrow(/remembered:d is not JSON/);
    storage.items.set(REMEMBERED_PREFIX + 'd', JSON.stringify(STATE));
    for (const bad of ['{not json', '[]', 'null', '{"logHead": null, "log": {}}']) {
      storage.items.set(REMEMBERED_LOG_PREFIX + 'd', bad);
      expect(() => store.load('d'), bad).toThrow(RememberedDamagedError);
    }
    // a log of another head is not damage: the state moved on, the log is not used
    storage.items.set(REMEMBERED_LOG_PREFIX + 'd', JSON.stringify({ logHead: { seq: 1, hash: 'B'.repeat(43) }, log: [] }));
    expect(store.load('d')).toEqual(STATE);
  });

  test('setAside moves both items to side keys and never overwrites an older one', () => {
    const storage = new FakeStorage();
    const store = new LocalStorageStore(storage);
    storage.items.set(REMEMBERED_PREFIX + 'd', 'first');
    storage.items.set(REMEMBERED_LOG_PREFIX + 'd', 'first log');
    expect(store.setAside('d')).toEqual([REMEMBERED_PREFIX + 'd:damaged', REMEMBERED_LOG_PREFIX + 'd:damaged']);
    expect(storage.getItem(REMEMBERED_PREFIX + 'd')).toBeNull();
    expect(storage.getItem(REMEMBERED_LOG_PREFIX + 'd')).toBeNull();
    storage.items.set(REMEMBERED_PREFIX + 'd', 'second');
    expect(store.setAside('d')).toEqual([REMEMBERED_PREFIX + 'd:damaged:2']);
    expect(storage.getItem(REMEMBERED_PREFIX + 'd:damaged')).toBe('first');
    expect(storage.getItem(REMEMBERED_PREFIX + 'd:damaged:2')).toBe('second');
    expect(storage.getItem(REMEMBERED_LOG_PREFIX + 'd:damaged')).toBe('first log');
    expect(store.load('d')).toBeNull();
  });

  test('when the side key cannot be written (quota) nothing is removed', () => {
    const storage = new FakeStorage();
    const store = new LocalStorageStore(storage);
    storage.items.set(REMEMBERED_PREFIX + 'd', 'damaged');
    storage.failOn = ':damaged';
    expect(() => store.setAside('d')).toThrow(/Quota/);
    expect(storage.getItem(REMEMBERED_PREFIX + 'd')).toBe('damaged');
  });
});

describe('the engine given a remembered state it cannot adopt', () => {
  test('records 807 without an event, takes nothing, and a driver may report unreadable data the same way', () => {
    const events: string[] = [];
    const engine = new SyncEngine('d', new Uint8Array(32), nullAdapter() as never, createSignatureKeyPair(), {
      remembered: { snapshot: { snapshotId: 7 }, logHead: null },
      onEvent: (event) => events.push(event)
    });
    expect(engine.errors.map((e) => e.code)).toEqual([DAMAGED]);
    expect(engine.rememberedDamaged).toMatch(/snapshot\.snapshotId must be a string/);
    expect(engine.remembered).toBeNull();
    expect(engine.connectionParams()).toEqual({ mode: 'complete' });
    expect(events).toEqual([]);
    expect(() => engine.rememberedUnusable('again')).not.toThrow(); // nothing was adopted
    expect(events).toEqual(['error']);

    const fine = new SyncEngine('d', new Uint8Array(32), nullAdapter() as never, createSignatureKeyPair(), {
      remembered: { snapshot: null, logHead: null }
    });
    expect(fine.errors).toEqual([]);
    expect(() => fine.rememberedUnusable('x')).toThrow(/already adopted/);
  });
});

describe('SecsyncYjsClient with a damaged remembered state (our relay)', () => {
  const py = usePythonRelay();

  function open(docId: string, key: Uint8Array, keyPair: SignatureKeyPair, extra: Partial<SecsyncYjsClientOptions>) {
    return py.open(docId, keyPair, { key, ...extra });
  }

  /** A document with one snapshot ("hello"), remembered in `storage`. */
  async function written(storage: FakeStorage) {
    const docId = generateId();
    const key = generateKey();
    const me = createSignatureKeyPair();
    const x = open(docId, key, me, { rememberedStore: new LocalStorageStore(storage) });
    await x.c.loaded;
    x.text.insert(0, 'hello');
    await x.c.createSnapshot();
    x.c.destroy(); // saves the state
    const saved = JSON.parse(storage.getItem(REMEMBERED_PREFIX + docId) as string);
    expect(saved.snapshot.snapshotId).toBe(x.c.engine.active?.snapshotId);
    return { docId, key, me };
  }

  test('an item that is not JSON: the document opens, the value is kept aside, a fresh state is written', async () => {
    const storage = new FakeStorage();
    const { docId, key, me } = await written(storage);
    storage.items.set(REMEMBERED_PREFIX + docId, '{"snapshot": {"snapshotId": "tru');
    const y = open(docId, key, me, { rememberedStore: new LocalStorageStore(storage) });
    // raised while the client was built: in alerts before anyone could subscribe
    expect(y.c.heads.alerts.map((a) => a.kind)).toEqual(['remembered-damaged']);
    expect(y.c.heads.alerts[0].data.aside).toEqual([REMEMBERED_PREFIX + docId + ':damaged']);
    expect(String(y.c.heads.alerts[0].data.detail)).toMatch(/is not JSON/);
    expect(storage.getItem(REMEMBERED_PREFIX + docId + ':damaged')).toBe('{"snapshot": {"snapshotId": "tru');
    await y.c.loaded;
    expect(y.text.toString()).toBe('hello');
    expect(y.c.engine.errors.map((e) => e.code)).toEqual([DAMAGED]);
    expect(y.c.engine.state).toBe('connected');
    y.c.heads.save();
    const fresh = JSON.parse(storage.getItem(REMEMBERED_PREFIX + docId) as string);
    expect(fresh.snapshot.snapshotId).toBe(y.c.engine.active?.snapshotId);
    y.c.destroy();
    // the next load uses the fresh state: nothing reported
    const z = open(docId, key, me, { rememberedStore: new LocalStorageStore(storage) });
    await z.c.loaded;
    expect(z.c.engine.errors).toEqual([]);
    expect(z.c.heads.alerts).toEqual([]);
    expect(z.c.engine.remembered?.snapshot?.snapshotId).toBe(fresh.snapshot.snapshotId);
  }, 60000);

  test('a state of the wrong shape that cannot be kept aside (quota): reported, loaded, nothing overwritten', async () => {
    const storage = new FakeStorage();
    const { docId, key, me } = await written(storage);
    const bad = JSON.stringify({ snapshot: { snapshotId: 'x', updateClocks: { a: 'one' } }, logHead: null });
    storage.items.set(REMEMBERED_PREFIX + docId, bad);
    storage.failOn = ':damaged';
    const y = open(docId, key, me, { rememberedStore: new LocalStorageStore(storage) });
    expect(y.c.heads.alerts.map((a) => a.kind)).toEqual(['remembered-damaged']);
    expect(y.c.heads.alerts[0].data.aside).toEqual([]);
    await y.c.loaded;
    expect(y.text.toString()).toBe('hello');
    expect(y.c.engine.errors.map((e) => e.code)).toEqual([DAMAGED]);
    y.c.destroy();
    expect(storage.getItem(REMEMBERED_PREFIX + docId)).toBe(bad); // never destroyed silently
  }, 60000);
});
