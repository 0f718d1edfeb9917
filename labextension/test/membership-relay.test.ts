/**
 * The browser sync client and our Python relay (`.venv/bin/secsync-relay`, real SQLite, on
 * loopback) in a document with a membership log (issue 11): the creator's root, reader proofs,
 * members added by identity string, a viewer read-only until promoted live, an editor demoted
 * live, a removed member cut off (725), a non-member refused (722), and a reconnect that
 * resumes the log as a delta (knownLogSeq / knownLogHash); and with a Python client
 * (test/interop/py_member.py): members added from Python are enforced in the browser and the
 * other way round.
 */
import { describe, expect, test } from 'vitest';
import {
  createSignatureKeyPair,
  generateKey,
  SecsyncYjsClientOptions,
  SignatureKeyPair
} from '../src/secsync';
import { b64encode } from '../src/secsync/base64';
import { createLogDocument } from '../src/secsync/document';
import { formatIdentity } from '../src/secsync/membership';
import { LocalStorageStore, REMEMBERED_LOG_PREFIX } from '../src/secsync/rememberedState';
import { pub, PyMember, usePythonRelay, waitFor } from './helpers/pythonRelay';
import { WsProxy } from './helpers/relays';

/* eslint-disable @typescript-eslint/no-explicit-any */

const env = usePythonRelay();

function open(
  docId: string,
  key: Uint8Array,
  keyPair: SignatureKeyPair,
  extra: Partial<SecsyncYjsClientOptions> = {},
  base?: string
) {
  return env.open(docId, keyPair, { key, ...extra }, base);
}

describe('membership log against the Python relay', () => {
  test('owner, editor and viewer: roles enforced by the relay and the clients, live', async () => {
    const key = generateKey();
    const A = createSignatureKeyPair();
    const E = createSignatureKeyPair();
    const V = createSignatureKeyPair();
    const X = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A, 'Ada');

    const a = open(docId, key, A, { rootEntry });
    await a.c.loaded;
    expect(a.c.myRole).toBe('admin');
    a.text.insert(0, 'hello');
    await a.c.synced();
    await a.c.addMember(formatIdentity(E.publicKey, 'Eve'), 'editor');
    await a.c.addMember(formatIdentity(V.publicKey, 'Vic'), 'viewer');
    expect(a.c.membership?.head.seq).toBe(2);
    expect(a.c.membership?.members.get(pub(E))?.name).toBe('Eve');

    // concurrent calls go one at a time, each on the head the previous one made
    const others = [0, 1, 2, 3].map(() => createSignatureKeyPair());
    await Promise.all(others.map((k, i) => a.c.addMember(formatIdentity(k.publicKey, `O${i}`), 'viewer')));
    await Promise.all(others.map((k) => a.c.removeMember(pub(k))));
    // issue 12: the removals are followed by one rotation (the later ones find none needed)
    expect(a.c.membership?.head.seq).toBe(11);
    expect(a.c.epoch).toBe(1);
    expect(a.c.keyring?.epochs).toEqual([0, 1]);
    expect(others.every((k) => !a.c.membership?.isMember(pub(k)))).toBe(true);

    // the viewer reads, cannot write
    const v = open(docId, key, V);
    await v.c.loaded;
    expect(v.text.toString()).toBe('hello');
    expect(v.c.myRole).toBe('viewer');
    expect(v.c.readOnly).toBe(true);
    v.text.insert(0, 'V:');
    await waitFor(() => v.c.status.pendingChanges === 1, "the viewer's change pending");

    // the editor writes; everyone sees it
    const e = open(docId, key, E);
    await e.c.loaded;
    e.text.insert(e.text.length, ' world');
    await e.c.synced();
    await waitFor(() => a.text.toString() === 'hello world', "the editor's change at A");
    await waitFor(() => v.text.toString() === 'V:hello world', "the editor's change at V");

    // the viewer promoted live: its pending change goes out and reaches the owner
    await a.c.setRole(pub(V), 'editor');
    await waitFor(() => a.text.toString() === 'V:hello world', "the promoted viewer's change");
    expect(v.c.readOnly).toBe(false);
    await v.c.synced();

    // the editor demoted live: read-only, its change stays local
    await a.c.setRole(pub(E), 'viewer');
    await waitFor(() => e.c.readOnly, 'the editor read-only');
    e.text.insert(0, 'E:');
    await waitFor(() => e.c.status.pendingChanges === 1, "the demoted editor's change pending");
    expect(e.c.status.connection).toBe('connected');

    // removed: the relay cuts the connection with 725, the client stops
    await a.c.removeMember(pub(V));
    await waitFor(() => v.c.status.connection === 'failed', 'the removed member cut off');
    expect(v.c.status.failureReason).toBe('SECSYNC_ERROR_725');
    expect(v.c.myRole).toBeNull();

    // a key holder who is no member gets nothing
    const x = open(docId, key, X);
    await expect(x.c.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_722' });
    expect(x.text.toString()).toBe('');
    expect(x.c.status.failureReason).toBe('SECSYNC_ERROR_722');

    // the owner's document: everything the writers wrote, nothing of the others
    expect(a.text.toString()).toBe('V:hello world');
    expect(a.c.errors.snapshotAndUpdate).toEqual([]);
  });

  test("two admins append at once: one gets 707, verifies the relay's entry and retries", async () => {
    const key = generateKey();
    const A = createSignatureKeyPair();
    const D = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A);
    const a = open(docId, key, A, { rootEntry });
    await a.c.loaded;
    a.text.insert(0, 'x');
    await a.c.synced();
    await a.c.addMember(formatIdentity(D.publicKey), 'admin');
    const proxy = await WsProxy.start(env.relay.base);
    try {
      const d = open(docId, key, D, {}, proxy.base);
      await d.c.loaded;
      const P = createSignatureKeyPair();
      const Q = createSignatureKeyPair();
      // D does not hear of A's entry before it appends its own on the same head
      proxy.hold();
      await a.c.addMember(formatIdentity(Q.publicKey), 'editor');
      const added = d.c.addMember(formatIdentity(P.publicKey), 'viewer');
      const frames = () => proxy.downstream.map((f) => JSON.parse(f.frame));
      await waitFor(() => frames().some((f) => f.type === 'log-entry-failed'), "the relay refusing D's entry");
      proxy.release();
      await added;
      const failed = frames().filter((f) => f.type === 'log-entry-failed');
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ seq: 2, code: 'SECSYNC_ERROR_707' });
      expect(failed[0].log.length).toBe(1); // A's entry, verified by D before its retry
      await waitFor(() => a.c.membership?.head.seq === 3, 'A at head 3');
      for (const c of [a.c, d.c]) {
        expect(c.membership?.role(pub(P))).toBe('viewer');
        expect(c.membership?.role(pub(Q))).toBe('editor');
        expect(c.membership?.head.seq).toBe(3);
        expect(c.membership?.head.hash).toBe(d.c.membership?.head.hash);
      }
    } finally {
      await proxy.stop();
    }
  });

  test('an editor demoted while writing: the relay refuses (724), the client turns read-only', async () => {
    const key = generateKey();
    const A = createSignatureKeyPair();
    const E = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A);
    const a = open(docId, key, A, { rootEntry });
    await a.c.loaded;
    a.text.insert(0, 'a');
    await a.c.synced();
    await a.c.addMember(formatIdentity(E.publicKey), 'editor');
    const proxy = await WsProxy.start(env.relay.base);
    try {
      const e = open(docId, key, E, {}, proxy.base);
      await e.c.loaded;
      proxy.hold(); // E does not hear of its demotion before it writes
      await a.c.setRole(pub(E), 'viewer');
      e.text.insert(1, 'e');
      const frames = () => proxy.downstream.map((f) => JSON.parse(f.frame));
      await waitFor(() => frames().some((f) => f.type === 'write-refused'), 'the relay refusing');
      expect(e.c.readOnly).toBe(false); // not told yet
      proxy.release();
      await waitFor(() => e.c.readOnly && e.c.errors.snapshotAndUpdate.length > 0, 'read-only');
      expect(e.c.errors.snapshotAndUpdate.map((x) => x.code)).toEqual(['SECSYNC_ERROR_724']);
      expect(e.c.myRole).toBe('viewer');
      expect(e.c.status.pendingChanges).toBe(1);
      expect(e.c.status.connection).toBe('connected');
      expect(frames().find((f) => f.type === 'write-refused')).toMatchObject({ of: 'update', code: 'SECSYNC_ERROR_724' });
      await a.c.synced();
      expect(a.text.toString()).toBe('a');
    } finally {
      await proxy.stop();
    }
  });

  test('a reconnect resumes the log as a delta; a new entry meanwhile is verified', async () => {
    const key = generateKey();
    const A = createSignatureKeyPair();
    const E = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A);
    const a = open(docId, key, A, { rootEntry });
    await a.c.loaded;
    a.text.insert(0, 'x');
    await a.c.synced();
    await a.c.addMember(formatIdentity(E.publicKey), 'editor');
    const proxy = await WsProxy.start(env.relay.base);
    try {
      const e = open(docId, key, E, {}, proxy.base);
      await e.c.loaded;
      e.c.disconnect();
      await a.c.setRole(pub(E), 'viewer');
      e.c.connect();
      await waitFor(() => e.c.myRole === 'viewer', 'the demotion after the reconnect');
      expect(e.c.membership?.head.seq).toBe(2);
      expect(e.c.readOnly).toBe(true);
      expect(e.c.errors.snapshotAndUpdate).toEqual([]);
      expect(proxy.urls[0]).not.toContain('knownLogSeq');
      expect(proxy.urls[1]).toContain(`knownLogSeq=1&knownLogHash=`);
      // the relay sent only the entry after our head
      const docs = proxy.downstream.map((d) => JSON.parse(d.frame)).filter((f) => f.type === 'document');
      expect(docs.map((f) => [f.logFrom, f.log.length])).toEqual([
        [0, 2],
        [2, 1]
      ]);
    } finally {
      await proxy.stop();
    }
  });

  test('a reload with the remembered state (localStorage) verifies only the new entries', async () => {
    const key = generateKey();
    const A = createSignatureKeyPair();
    const E = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A);
    const a = open(docId, key, A, { rootEntry });
    await a.c.loaded;
    a.text.insert(0, 'x');
    await a.c.synced();
    await a.c.addMember(formatIdentity(E.publicKey), 'editor');
    const storage = new Map<string, string>();
    const localStorage = {
      getItem: (k: string) => storage.get(k) ?? null,
      setItem: (k: string, v: string) => void storage.set(k, v),
      removeItem: (k: string) => void storage.delete(k)
    };
    const proxy = await WsProxy.start(env.relay.base);
    try {
      const e1 = open(docId, key, E, { rememberedStore: new LocalStorageStore(localStorage) }, proxy.base);
      await e1.c.loaded;
      e1.c.destroy(); // saves the remembered state: the log of 2 entries
      expect(JSON.parse(storage.get(REMEMBERED_LOG_PREFIX + docId) as string).log).toHaveLength(2);
      await a.c.setRole(pub(E), 'viewer');
      // the reload: a new client with the same storage
      const e2 = open(docId, key, E, { rememberedStore: new LocalStorageStore(localStorage) }, proxy.base);
      expect(e2.c.myRole).toBe('editor'); // the remembered log, before the load
      await e2.c.loaded;
      await waitFor(() => e2.c.myRole === 'viewer', 'the demotion in the delta');
      expect(e2.text.toString()).toBe('x');
      expect(e2.c.errors.snapshotAndUpdate).toEqual([]);
      expect(proxy.urls[0]).not.toContain('knownLogSeq');
      expect(proxy.urls[1]).toContain(`knownLogSeq=1&knownLogHash=`);
      const docs = proxy.downstream.map((d) => JSON.parse(d.frame)).filter((f) => f.type === 'document');
      expect(docs.map((f) => [f.logFrom, f.log.length])).toEqual([
        [0, 2],
        [2, 1]
      ]);
      e2.c.destroy();
      expect(JSON.parse(storage.get(REMEMBERED_LOG_PREFIX + docId) as string).log).toHaveLength(3);
    } finally {
      await proxy.stop();
    }
  });
});

describe('membership log between Python and the browser (Python relay)', () => {
  test('members added from Python are enforced in the browser', async () => {
    const py = PyMember.start(env.relay.base);
    try {
      const { docId, key } = await py.call({ op: 'create', name: 'Py' });
      await py.call({ op: 'append', text: 'py1 ' });
      const B = createSignatureKeyPair();
      await py.call({ op: 'add', identity: formatIdentity(B.publicKey, 'Browser'), role: 'viewer' });
      const b = open(docId, b64decodeKey(key), B);
      await b.c.loaded;
      expect(b.text.toString()).toBe('py1 ');
      expect(b.c.myRole).toBe('viewer');
      expect(b.c.readOnly).toBe(true);
      expect(b.c.membership?.members.get(pub(B))?.name).toBe('Browser');
      await py.call({ op: 'setRole', pubKey: pub(B), role: 'editor' });
      await waitFor(() => !b.c.readOnly, 'promoted by Python');
      b.text.insert(b.text.length, 'js1');
      await b.c.synced();
      await py.call({ op: 'waitText', text: 'py1 js1' });
      await py.call({ op: 'remove', pubKey: pub(B) });
      await waitFor(() => b.c.status.connection === 'failed', 'removed by Python');
      expect(b.c.status.failureReason).toBe('SECSYNC_ERROR_725');
      expect(b.c.errors.snapshotAndUpdate.map((e) => e.code)).toEqual(['SECSYNC_ERROR_725']);
    } finally {
      await py.stop();
    }
  });

  test('members added from the browser are enforced in Python', async () => {
    const py = PyMember.start(env.relay.base);
    try {
      const { identity, pubKey } = await py.call({ op: 'identity' });
      const A = createSignatureKeyPair();
      const key = generateKey();
      const { docId, rootEntry } = createLogDocument(A, 'Ada');
      const a = open(docId, key, A, { rootEntry });
      await a.c.loaded;
      a.text.insert(0, 'js0 ');
      await a.c.synced();
      await a.c.addMember(identity, 'viewer');
      await py.call({ op: 'open', docId, key: b64encode(key) });
      let state = (await py.call({ op: 'state' })) as any;
      expect(state).toMatchObject({ text: 'js0 ', role: 'viewer', readOnly: true, errors: [] });
      await a.c.setRole(pubKey, 'editor');
      await py.call({ op: 'waitRole', role: 'editor' });
      await py.call({ op: 'append', text: 'py2' });
      await waitFor(() => a.text.toString() === 'js0 py2', "Python's edit in the browser");
      expect(a.c.membership?.members.get(pubKey)).toMatchObject({ role: 'editor', name: 'Py', addedBy: pub(A) });
      await a.c.removeMember(pubKey);
      await waitFor(() => a.c.membership?.isMember(pubKey) === false, 'removed');
      state = await py.call({ op: 'state' });
      expect(state.state).toBe('no-access');
      expect(state.errors[0]).toBe('SECSYNC_ERROR_725');
    } finally {
      await py.stop();
    }
  });
});

function b64decodeKey(key: string): Uint8Array {
  return new Uint8Array(Buffer.from(key, 'base64url'));
}
