/**
 * The browser's remembered state with a membership log (issue 11, speed of a reload):
 * `LocalStorageStore` keeps the verified log in its own item, written only when its head
 * moves, used only when its head is the remembered one, dropped when it cannot be stored;
 * and an engine given a remembered log starts from it (only the entries after its head are
 * asked for and verified; the same rule as the Python engine, scenario
 * membership-remembered-log-delta).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { createSignatureKeyPair, ready } from '../src/secsync';
import { createEntry, createLog, entryToJson } from '../src/secsync/membership';
import {
  LocalStorageStore,
  REMEMBERED_LOG_PREFIX,
  REMEMBERED_PREFIX,
  RememberedDamagedError
} from '../src/secsync/rememberedState';
import { SyncEngine } from '../src/secsync/engine';
import { b64encode } from '../src/secsync/base64';
import { FakeStorage, nullAdapter } from './helpers/remembered';

beforeAll(async () => {
  await ready();
});

function makeLog(n: number) {
  const owner = createSignatureKeyPair();
  const me = createSignatureKeyPair();
  const made = createLog(owner, { at: 1000 });
  let state = made.state;
  const entries: Record<string, unknown>[] = [entryToJson(made.entry)];
  const next = createEntry(state, owner, 'add-member', b64encode(me.publicKey), 'editor', { at: 2000 });
  entries.push(entryToJson(next.entry));
  state = next.state;
  for (let i = 2; i < n; i++) {
    const other = b64encode(createSignatureKeyPair().publicKey);
    const e = createEntry(state, owner, 'add-member', other, 'viewer', { at: 2000 + i });
    entries.push(entryToJson(e.entry));
    state = e.state;
  }
  return { owner, me, state, entries, docId: state.docId };
}

const head = (state: { head: { seq: number; hash: string } }) => ({ seq: state.head.seq, hash: state.head.hash });

describe('LocalStorageStore with a membership log', () => {
  test('the log is kept in its own item, written again only when its head moves', () => {
    const { state, entries, docId } = makeLog(5);
    const storage = new FakeStorage();
    const store = new LocalStorageStore(storage);
    store.save(docId, { snapshot: null, logHead: head(state), log: entries });
    store.save(docId, { snapshot: null, logHead: head(state), log: entries });
    expect(storage.writes).toEqual([REMEMBERED_LOG_PREFIX + docId, REMEMBERED_PREFIX + docId, REMEMBERED_PREFIX + docId]);
    expect(JSON.parse(storage.getItem(REMEMBERED_PREFIX + docId) as string).log).toBeUndefined();
    const loaded = store.load(docId) as { logHead: unknown; log: unknown[] };
    expect(loaded.logHead).toEqual(head(state));
    expect(loaded.log).toEqual(entries);
    // a new store (a reload) that loaded it does not write the same log again
    const again = new LocalStorageStore(storage);
    again.load(docId);
    storage.writes = [];
    again.save(docId, { snapshot: null, logHead: head(state), log: entries });
    expect(storage.writes).toEqual([REMEMBERED_PREFIX + docId]);
  });

  test('a log whose head is not the remembered head is not used', () => {
    const { state, entries, docId } = makeLog(4);
    const storage = new FakeStorage();
    const store = new LocalStorageStore(storage);
    store.save(docId, { snapshot: null, logHead: head(state), log: entries });
    const main = JSON.parse(storage.getItem(REMEMBERED_PREFIX + docId) as string);
    main.logHead = { seq: 2, hash: state.hashes[2] };
    storage.items.set(REMEMBERED_PREFIX + docId, JSON.stringify(main));
    expect((store.load(docId) as { log?: unknown }).log).toBeUndefined();
    // an item that is not JSON is damaged (807: kept aside, checked from scratch)
    storage.items.set(REMEMBERED_LOG_PREFIX + docId, '{not json');
    expect(() => store.load(docId)).toThrow(RememberedDamagedError);
  });

  test('a log that cannot be stored (quota) is dropped, the rest is saved', () => {
    const { state, entries, docId } = makeLog(3);
    const storage = new FakeStorage();
    const store = new LocalStorageStore(storage);
    store.save(docId, { snapshot: null, logHead: { seq: 1, hash: state.hashes[1] }, log: entries.slice(0, 2) });
    storage.failOn = REMEMBERED_LOG_PREFIX;
    store.save(docId, { snapshot: null, logHead: head(state), log: entries });
    expect(storage.getItem(REMEMBERED_LOG_PREFIX + docId)).toBeNull();
    const loaded = store.load(docId) as { logHead: unknown; log?: unknown };
    expect(loaded.logHead).toEqual(head(state));
    expect(loaded.log).toBeUndefined();
  });
});

describe('an engine with a remembered log', () => {
  test('starts from it: role known, only the delta asked for, the whole log remembered again', () => {
    const { state, entries, docId, me } = makeLog(6);
    const engine = new SyncEngine(docId, new Uint8Array(32), nullAdapter() as never, me, {
      remembered: { snapshot: null, logHead: head(state), log: entries }
    });
    expect(engine.log?.role).toBe('editor');
    expect(engine.log?.state?.head.seq).toBe(5);
    expect(engine.connectionParams()).toMatchObject({ knownLogSeq: '5', knownLogHash: state.head.hash });
    expect(engine.log?.rememberedLog()).toEqual(entries);
  });

  test('a remembered log without its head, or for another document, is not used (807)', () => {
    const { state, entries, docId, me } = makeLog(4);
    const short = new SyncEngine(docId, new Uint8Array(32), nullAdapter() as never, me, {
      remembered: { snapshot: null, logHead: head(state), log: entries.slice(0, 3) }
    });
    expect(short.errors.map((e) => e.code)).toEqual(['SECSYNC_ERROR_807']);
    expect(short.rememberedDamaged).toMatch(/logHead not in its log/);
    expect(short.log?.state).toBeNull();
    expect(short.connectionParams()).toEqual({ mode: 'complete' }); // the whole log
    const other = makeLog(2);
    const elsewhere = new SyncEngine(docId, new Uint8Array(32), nullAdapter() as never, me, {
      remembered: { snapshot: null, logHead: head(other.state), log: other.entries }
    });
    expect(elsewhere.rememberedDamaged).toMatch(/remembered state of .*: log: /);
    expect(elsewhere.log?.state).toBeNull();
    expect(elsewhere.log?.knownHead).toBeNull();
  });
});
