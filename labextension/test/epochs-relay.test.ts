/**
 * Issue 12, the browser engine against our relay (`.venv/bin/secsync-relay`, real SQLite, on
 * loopback) and the Python client (test/interop/py_member.py): key epochs across languages.
 *
 * - Python removes a browser member (and so rotates the key): a browser that is still a
 *   member reads the new epoch through its lockbox and writes in it; the removed browser is
 *   cut off (725) and, given the new snapshot's ciphertext and someone else's lockbox, opens
 *   neither with any key it holds.
 * - Two browser admins rotate at once: one rotation is kept (707 for the other, which then
 *   finds none needed), both hold the new key; a member added afterwards gets its lockbox with
 *   the add-member and reads at once; the Python member reads what was written in the new epoch.
 * - A member leaves by itself: the admin's browser rotates on its next load (rotationNeeded).
 */
import WebSocket from 'ws';
import { describe, expect, test } from 'vitest';
import {
  createSignatureKeyPair,
  generateKey,
  SecsyncYjsClientOptions,
  SignatureKeyPair,
  verifyAndDecryptSnapshot,
  WebSocketConstructor
} from '../src/secsync';
import { b64decode, b64encode } from '../src/secsync/base64';
import { createLogDocument } from '../src/secsync/document';
import { openLockbox } from '../src/secsync/lockbox';
import { formatIdentity } from '../src/secsync/membership';
import { pub, PyMember, usePythonRelay, waitFor } from './helpers/pythonRelay';

/* eslint-disable @typescript-eslint/no-explicit-any */

const env = usePythonRelay();

/** A WebSocket that also keeps every frame it receives (to look at the relay's ciphertext). */
function recordingWebSocket(frames: any[]): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string) {
      super(url);
      this.addEventListener('message', (ev) => frames.push(JSON.parse(String(ev.data))));
    }
  } as unknown as WebSocketConstructor;
}

function open(docId: string, key: Uint8Array, keyPair: SignatureKeyPair, extra: Partial<SecsyncYjsClientOptions> = {}) {
  return env.open(docId, keyPair, { key, ...extra });
}

describe('key epochs between Python and the browser (Python relay)', () => {
  test('Python removes a browser member and rotates: the remaining browser reads the new epoch, the removed one cannot', async () => {
    const py = PyMember.start(env.relay.base);
    try {
      const { docId, key } = await py.call({ op: 'create', name: 'Py' });
      const key0 = b64decode(key);
      await py.call({ op: 'append', text: 'before ' });
      const B = createSignatureKeyPair();
      const X = createSignatureKeyPair();
      await py.call({ op: 'add', identity: formatIdentity(B.publicKey, 'Bea'), role: 'editor' });
      await py.call({ op: 'add', identity: formatIdentity(X.publicKey, 'Xan'), role: 'editor' });
      const b = open(docId, key0, B);
      const x = open(docId, key0, X);
      await Promise.all([b.c.loaded, x.c.loaded]);
      expect(b.text.toString()).toBe('before ');
      expect(x.text.toString()).toBe('before ');
      expect(b.c.epoch).toBe(0);

      await py.call({ op: 'remove', pubKey: pub(X) }); // then rotate_key (Python's rule)
      expect((await py.call({ op: 'state' })).epoch).toBe(1);
      await waitFor(() => x.c.engine.state === 'no-access', 'the removed browser cut off');
      expect(x.c.engine.errors.map((e) => e.code)).toContain('SECSYNC_ERROR_725');

      await py.call({ op: 'append', text: 'after' });
      await waitFor(() => b.text.toString() === 'before after', 'the epoch-1 content at B');
      expect(b.c.epoch).toBe(1);
      expect(b.c.keyring?.epochs).toEqual([0, 1]);
      expect(b.c.engine.active?.epoch).toBe(1);
      b.text.insert(b.text.length, ' +b');
      await b.c.synced();
      await py.call({ op: 'waitText', text: 'before after +b' });

      // the removed member: no key of epoch 1, and neither the new ciphertext nor B's
      // lockbox opens with anything it holds (a relay handing them over gains it nothing)
      expect(x.c.keyring?.epochs).toEqual([0]);
      expect(x.text.toString()).toBe('before ');
      const frames: any[] = [];
      const spy = open(docId, key0, B, { WebSocketImpl: recordingWebSocket(frames) });
      await spy.c.loaded;
      const doc = frames.find((f) => f.type === 'document');
      expect(doc.snapshot.publicData.epoch).toBe(1);
      const bLockbox = doc.lockboxes.find((lb: any) => lb.epoch === 1);
      expect(bLockbox.recipient).toBe(pub(B));
      const state = b.c.membership!;
      for (const epoch of x.c.keyring!.epochs) {
        const r = verifyAndDecryptSnapshot(doc.snapshot, {
          key: x.c.keyring!.key(epoch),
          currentDocId: docId,
          currentClientPublicKey: pub(X)
        });
        expect(r.error?.code).toBe('SECSYNC_ERROR_101');
      }
      expect(() => openLockbox(state, X, bLockbox)).toThrow(/763/);
      expect(() => openLockbox(state, X, { ...bLockbox, recipient: pub(X) })).toThrow(/761/);
      const ok = verifyAndDecryptSnapshot(doc.snapshot, {
        key: b.c.keyring!.key(1),
        currentDocId: docId,
        currentClientPublicKey: pub(B)
      });
      expect(ok.error).toBe(null);
    } finally {
      await py.stop();
    }
  });

  test('two browser admins rotate at once: one chain; a member added later and the Python member read epoch 1', async () => {
    const py = PyMember.start(env.relay.base);
    try {
      const key0 = generateKey();
      const A = createSignatureKeyPair();
      const C = createSignatureKeyPair();
      const { docId, rootEntry } = createLogDocument(A, 'Ada');
      const a = open(docId, key0, A, { rootEntry });
      await a.c.loaded;
      a.text.insert(0, 'v0 ');
      await a.c.synced();
      await a.c.addMember(formatIdentity(C.publicKey, 'Cy'), 'admin');
      const { identity: pyIdentity } = await py.call({ op: 'identity' });
      await a.c.addMember(pyIdentity, 'editor');
      const c = open(docId, key0, C);
      await c.c.loaded;

      // each client's answers to its entries (one of the two rotations loses the race: 707)
      const failed: string[] = [];
      for (const x of [a, c]) {
        const orig = x.c.engine.onEvent;
        x.c.engine.onEvent = (event, data) => {
          if (event === 'log-entry-failed') {
            failed.push(String(data.code));
          }
          orig?.(event, data);
        };
      }
      await Promise.all([a.c.rotateKey(), c.c.rotateKey()]);
      expect(failed).toEqual(['SECSYNC_ERROR_707']); // rebuilt on the new head: none needed
      await waitFor(() => a.c.epoch === 1 && c.c.epoch === 1, 'both at epoch 1');
      await waitFor(
        () => a.c.keyring?.has(1) === true && c.c.keyring?.has(1) === true,
        'both hold the epoch-1 key (the loser from its lockbox)'
      );
      expect(b64encode(a.c.keyring!.key(1))).toBe(b64encode(c.c.keyring!.key(1)));
      expect(a.c.membership!.head.seq).toBe(3); // root, 2 adds, ONE rotate-key
      await a.c.synced();
      await c.c.synced();

      a.text.insert(a.text.length, 'v1');
      await a.c.synced();
      expect(a.c.engine.active?.epoch).toBe(1);
      await waitFor(() => c.text.toString() === 'v0 v1', 'C reads epoch 1');

      // a member added after the rotation gets its lockbox with the add-member
      const D = createSignatureKeyPair();
      await a.c.addMember(formatIdentity(D.publicKey, 'Di'), 'viewer');
      const d = open(docId, key0, D);
      await d.c.loaded;
      expect(d.text.toString()).toBe('v0 v1');
      expect(d.c.keyring?.epochs).toEqual([0, 1]);

      // the Python member (given the epoch-0 key only) reads through its lockbox
      await py.call({ op: 'open', docId, key: b64encode(key0) });
      await py.call({ op: 'waitText', text: 'v0 v1' });
      const st = await py.call({ op: 'state' });
      expect(st.epoch).toBe(1);
      expect(st.keyring).toEqual([0, 1]);
      await py.call({ op: 'append', text: ' py' });
      await waitFor(() => a.text.toString() === 'v0 v1 py', "Python's epoch-1 update at A");
    } finally {
      await py.stop();
    }
  });

  test('a member offline during a rotation catches up on reconnect with its new lockbox (delta load)', async () => {
    const key0 = generateKey();
    const A = createSignatureKeyPair();
    const B = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A, 'Ada');
    const a = open(docId, key0, A, { rootEntry });
    await a.c.loaded;
    a.text.insert(0, 'one');
    await a.c.synced();
    await a.c.addMember(formatIdentity(B.publicKey, 'Bo'), 'editor');
    const b = open(docId, key0, B);
    await b.c.loaded;
    b.c.disconnect();
    b.text.insert(b.text.length, ' (b offline)');
    await a.c.rotateKey();
    a.text.insert(a.text.length, ' two');
    await a.c.synced();
    expect(b.c.keyring?.epochs).toEqual([0]);
    b.c.connect();
    await waitFor(() => b.text.toString().includes(' two'), "A's epoch-1 change at B");
    expect(b.c.keyring?.epochs).toEqual([0, 1]);
    expect(b.c.engine.lastDocument?.mode).toBe('delta');
    await b.c.synced(); // its offline change goes out in epoch 1
    expect(b.c.engine.active?.epoch).toBe(1);
    await waitFor(() => a.text.toString() === b.text.toString(), 'both converge');
    expect(a.text.toString()).toContain('(b offline)');
  });

  test('a member leaves by itself: the admin browser rotates on its next load', async () => {
    const key0 = generateKey();
    const A = createSignatureKeyPair();
    const L = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A, 'Ada');
    const a = open(docId, key0, A, { rootEntry });
    await a.c.loaded;
    await a.c.addMember(formatIdentity(L.publicKey, 'Lee'), 'editor');
    const l = open(docId, key0, L);
    await l.c.loaded;
    await l.c.removeMember(pub(L)); // leaving: no rotation (not an admin any more)
    await waitFor(() => a.c.membership?.head.seq === 2, 'the leave at A');
    expect(a.c.epoch).toBe(0);
    expect(a.c.membership!.rotationNeeded(Date.now())).toBe(true);
    a.c.disconnect();
    a.c.connect();
    await waitFor(() => a.c.epoch === 1 && a.c.keyring?.has(1) === true, 'the automatic rotation');
    expect(a.c.membership!.rotationNeeded(Date.now())).toBe(false);
    await a.c.synced();
    expect(a.c.engine.active?.epoch).toBe(1);
  });
});
