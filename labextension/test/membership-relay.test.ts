/**
 * The browser sync client and our Python relay (`.venv/bin/secsync-relay`, real SQLite, on
 * loopback) in a document with a membership log (issue 11): the creator's root, reader proofs,
 * members added by identity string, a viewer read-only until promoted live, an editor demoted
 * live, a removed member cut off (725), a non-member refused (722), and a reconnect that
 * resumes the log as a delta (knownLogSeq / knownLogHash).
 */
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import * as Y from 'yjs';
import {
  createSignatureKeyPair,
  generateKey,
  ready,
  SecsyncYjsClient,
  SecsyncYjsClientOptions,
  SignatureKeyPair,
  WebSocketConstructor
} from '../src/secsync';
import { b64encode } from '../src/secsync/base64';
import { createLogDocument } from '../src/secsync/document';
import { formatIdentity } from '../src/secsync/membership';
import { RelayHandle, startRelay, WsProxy } from './helpers/relays';

const WS = WebSocket as unknown as WebSocketConstructor;

async function waitFor(cond: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

let relay: RelayHandle;
const clients: SecsyncYjsClient[] = [];

beforeAll(async () => {
  await ready();
  relay = await startRelay('python');
});
afterAll(async () => {
  await relay?.stop();
});
afterEach(() => {
  for (const c of clients.splice(0)) {
    c.destroy();
  }
});

function open(
  docId: string,
  key: Uint8Array,
  keyPair: SignatureKeyPair,
  extra: Partial<SecsyncYjsClientOptions> = {},
  base = relay.base
) {
  const ydoc = new Y.Doc();
  const c = new SecsyncYjsClient({
    url: `${base}/${docId}`,
    docId,
    key,
    signatureKeyPair: keyPair,
    ydoc,
    WebSocketImpl: WS,
    batchDelayMs: 0,
    maxReconnectDelayMs: 300,
    ...extra
  });
  clients.push(c);
  c.connect();
  return { c, text: ydoc.getText('content') };
}

const pub = (k: SignatureKeyPair) => b64encode(k.publicKey);

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
    const proxy = await WsProxy.start(relay.base);
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
});
