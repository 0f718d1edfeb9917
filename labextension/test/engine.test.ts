/**
 * SecsyncYjsClient against real relays: the reference relay (secsync-server 0.5.0 via the
 * shared harness) and, when `.venv/bin/secsync-relay` exists, the Python relay.
 * Select with SECSYNC_TEST_RELAYS=reference,python (default: both, python when installed).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import * as Y from 'yjs';
import { Awareness } from 'y-protocols/awareness';
import {
  b64encode,
  createSignatureKeyPair,
  createUpdate,
  generateId,
  generateKey,
  ready,
  SecsyncYjsClient,
  SecsyncYjsClientOptions,
  serializeUpdates,
  SignatureKeyPair,
  WebSocketConstructor
} from '../src/secsync';
import { HARNESS_HOME, LABEXT_DIR, REPO_DIR } from './helpers/paths';
import { availableRelayKinds, freePort, RelayHandle, startRelay, WsProxy } from './helpers/relays';

const execFileP = promisify(execFile);
const WS = WebSocket as unknown as WebSocketConstructor;

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Peer {
  client: SecsyncYjsClient;
  ydoc: Y.Doc;
  awareness: Awareness;
  text: Y.Text;
  keyPair: SignatureKeyPair;
}

const peers: Peer[] = [];

function makePeer(
  base: string,
  docId: string,
  key: Uint8Array,
  extra: Partial<SecsyncYjsClientOptions> = {}
): Peer {
  const ydoc = extra.ydoc ?? new Y.Doc();
  const awareness = extra.awareness ?? new Awareness(ydoc);
  const keyPair = extra.signatureKeyPair ?? createSignatureKeyPair();
  const client = new SecsyncYjsClient({
    url: `${base}/${docId}`,
    docId,
    key,
    signatureKeyPair: keyPair,
    ydoc,
    awareness,
    WebSocketImpl: WS,
    sessionKey: 'vitest',
    maxReconnectDelayMs: 500,
    ...extra
  });
  const peer = { client, ydoc, awareness, text: ydoc.getText('content'), keyPair };
  peers.push(peer);
  return peer;
}

afterEach(() => {
  for (const p of peers.splice(0)) {
    p.client.destroy();
    p.awareness.destroy();
  }
});

beforeAll(async () => {
  await ready();
});

const kinds = availableRelayKinds();
console.log(`engine tests run against: ${kinds.join(', ')}`);

describe.each(kinds)('sync engine against the %s relay', (kind) => {
  let relay: RelayHandle;

  beforeAll(async () => {
    relay = await startRelay(kind);
  });
  afterAll(async () => {
    await relay?.stop();
  });

  test('two clients converge (text and awareness)', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key);
    a.client.connect();
    await a.client.loaded;
    expect(a.client.status.documentState).toBe('complete');
    a.text.insert(0, 'hello from A. ');
    await a.client.synced();
    expect(a.client.stats.snapshotsSent).toBe(1); // first change -> initial snapshot

    let progress: Array<[number, number]> = [];
    const b = makePeer(relay.base, docId, key, { onProgress: (l, t) => progress.push([l, t]) });
    b.client.connect();
    await b.client.loaded;
    expect(b.text.toString()).toBe('hello from A. ');
    expect(progress[progress.length - 1][0]).toBe(progress[progress.length - 1][1]);

    // concurrent edits on both sides
    for (let i = 0; i < 5; i++) {
      a.text.insert(a.text.length, `a${i} `);
      b.text.insert(0, `b${i} `);
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all([a.client.synced(), b.client.synced()]);
    await waitFor(() => a.text.toString() === b.text.toString(), 'convergence');
    for (let i = 0; i < 5; i++) {
      expect(a.text.toString()).toContain(`a${i} `);
      expect(a.text.toString()).toContain(`b${i} `);
    }
    // batching: 5 quick edits do not make 5 updates each
    expect(a.client.stats.updatesSent).toBeLessThan(5);
    expect(a.client.errors.snapshotAndUpdate).toEqual([]);
    expect(b.client.errors.snapshotAndUpdate).toEqual([]);

    // awareness travels over ephemeral messages, with the signer's pubKey
    a.awareness.setLocalStateField('user', { name: 'Alice' });
    await waitFor(() => {
      const s = b.awareness.getStates().get(a.awareness.clientID);
      return !!s && s.user?.name === 'Alice';
    }, 'A awareness at B');
    expect(b.awareness.getStates().get(a.awareness.clientID)?.pubKey).toBe(b64encode(a.keyPair.publicKey));
    b.awareness.setLocalStateField('user', { name: 'Bob' });
    await waitFor(() => a.awareness.getStates().get(b.awareness.clientID)?.user?.name === 'Bob', 'B awareness at A');

    // a peer that leaves is removed from the others' awareness
    const aId = a.awareness.clientID;
    a.client.destroy();
    await waitFor(() => !b.awareness.getStates().has(aId), 'A removed from B awareness');
    progress = [];
  });

  test('batchDelayMs 0 sends the edits of one task as one update, without waiting for a timer', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key, { batchDelayMs: 0 });
    a.client.connect();
    await a.client.loaded;
    a.text.insert(0, 'first ');
    await a.client.synced(); // the initial snapshot
    const before = a.client.stats.updatesSent;
    // three edits in the same task: one update, sent from a microtask
    a.text.insert(a.text.length, 'x');
    a.text.insert(a.text.length, 'y');
    a.text.insert(a.text.length, 'z');
    await Promise.resolve();
    await Promise.resolve();
    expect(a.client.stats.updatesSent).toBe(before + 1);
    await a.client.synced();
    const b = makePeer(relay.base, docId, key);
    b.client.connect();
    await b.client.loaded;
    expect(b.text.toString()).toBe('first xyz');
  });

  test('two clients both start a brand-new document at once', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key);
    const b = makePeer(relay.base, docId, key);
    a.client.connect();
    b.client.connect();
    await Promise.all([a.client.loaded, b.client.loaded]);
    // both have no snapshot yet: both send an initial snapshot, one of them is rejected
    a.text.insert(0, 'A-first ');
    b.text.insert(0, 'B-first ');
    await Promise.all([a.client.synced(), b.client.synced()]);
    await waitFor(() => a.text.toString() === b.text.toString(), 'convergence');
    expect(a.text.toString()).toContain('A-first ');
    expect(a.text.toString()).toContain('B-first ');
    expect(a.client.stats.snapshotSaveFailed + b.client.stats.snapshotSaveFailed).toBeGreaterThan(0);
  });

  test('a wrong key fails with SECSYNC_ERROR_101', async () => {
    const docId = generateId();
    const a = makePeer(relay.base, docId, generateKey());
    a.client.connect();
    await a.client.loaded;
    a.text.insert(0, 'secret');
    await a.client.synced();

    const statuses: string[] = [];
    const c = makePeer(relay.base, docId, generateKey());
    c.client.onStatus((s) => statuses.push(`${s.connection}/${s.documentState}`));
    c.client.connect();
    await expect(c.client.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_101' });
    expect(c.client.status.connection).toBe('failed');
    expect(c.client.status.documentState).toBe('failed');
    expect(c.client.status.lastError?.code).toBe('SECSYNC_ERROR_101');
    expect(c.text.toString()).toBe('');
    expect(statuses).toContain('failed/failed');
    await expect(c.client.synced()).rejects.toMatchObject({ code: 'SECSYNC_ERROR_101' });
  });

  test('offline edits are kept and arrive after reconnect (manual and after a network cut)', async () => {
    const proxy = await WsProxy.start(relay.base);
    try {
      const docId = generateId();
      const key = generateKey();
      const a = makePeer(proxy.base, docId, key);
      const b = makePeer(relay.base, docId, key);
      a.client.connect();
      await a.client.loaded;
      a.text.insert(0, 'base. ');
      await a.client.synced();
      b.client.connect();
      await b.client.loaded;
      expect(b.text.toString()).toBe('base. ');

      // 1. manual offline
      a.client.disconnect();
      expect(a.client.status.connection).toBe('disconnected');
      a.text.insert(a.text.length, 'offline-1. ');
      await new Promise((r) => setTimeout(r, 100));
      expect(a.client.status.pendingChanges).toBeGreaterThan(0);
      expect(b.text.toString()).toBe('base. ');
      a.client.connect();
      await a.client.synced();
      await waitFor(() => b.text.toString().includes('offline-1. '), 'offline-1 at B');

      // 2. network cut while the relay stays up; reconnect with backoff, delta mode
      proxy.setBlocked(true);
      proxy.cutAll();
      await waitFor(() => a.client.status.connection !== 'connected', 'A notices the cut');
      a.text.insert(a.text.length, 'offline-2. ');
      b.text.insert(0, 'while-A-away. ');
      await b.client.synced();
      await new Promise((r) => setTimeout(r, 300));
      expect(b.text.toString()).not.toContain('offline-2');
      const urlsBefore = proxy.urls.length;
      proxy.setBlocked(false);
      await waitFor(() => a.client.status.connection === 'connected', 'A reconnects', 15000);
      await a.client.synced();
      await waitFor(() => b.text.toString().includes('offline-2. '), 'offline-2 at B');
      await waitFor(() => a.text.toString() === b.text.toString(), 'convergence after cut');
      expect(a.text.toString()).toContain('while-A-away. ');
      // the reconnect resumed from the known snapshot in delta mode
      const resumed = proxy.urls.slice(urlsBefore).pop() as string;
      const q = new URLSearchParams(resumed.split('?')[1]);
      expect(q.get('mode')).toBe('delta');
      expect(q.get('knownSnapshotId')).toBe(a.client.activeSnapshotInfo?.snapshotId);
      expect(JSON.parse(q.get('knownSnapshotUpdateClocks') as string)).toBeTypeOf('object');
      expect(a.client.stats.connections).toBeGreaterThanOrEqual(3);
      expect(a.client.errors.snapshotAndUpdate).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  test('a replayed proof + message is not delivered twice', async () => {
    const proxy = await WsProxy.start(relay.base);
    try {
      const docId = generateId();
      const key = generateKey();
      const a = makePeer(relay.base, docId, key);
      a.client.connect();
      await a.client.loaded;
      a.text.insert(0, 'x');
      await a.client.synced();
      const b = makePeer(proxy.base, docId, key);
      b.client.connect();
      await b.client.loaded;

      // A announces itself; B verifies A's session and applies A's awareness messages
      for (let i = 1; i <= 3; i++) {
        a.awareness.setLocalStateField('cursor', i);
        await waitFor(
          () => b.awareness.getStates().get(a.awareness.clientID)?.cursor === i,
          `cursor ${i} at B`
        );
      }
      const ephemeralToB = proxy.downstream.filter((d) => JSON.parse(d.frame).type === 'ephemeral-message');
      expect(ephemeralToB.length).toBeGreaterThanOrEqual(4);
      const applied = b.client.stats.ephemeralMessagesApplied;
      const errorsBefore = b.client.errors.ephemeralReceiving.length;
      const conn = proxy.openConnections()[0];

      // replay everything A sent so far (initialize, proofs, messages) in the original order
      for (const d of ephemeralToB) {
        proxy.inject(conn, d.frame);
      }
      await new Promise((r) => setTimeout(r, 300));
      expect(b.client.stats.ephemeralMessagesApplied).toBe(applied);
      expect(b.awareness.getStates().get(a.awareness.clientID)?.cursor).toBe(3);
      const newErrors = b.client.errors.ephemeralReceiving
        .slice(0, b.client.errors.ephemeralReceiving.length - errorsBefore)
        .map((e) => e.code);
      expect(newErrors).toContain('SECSYNC_ERROR_303');
      // the live session still works afterwards
      a.awareness.setLocalStateField('cursor', 4);
      await waitFor(() => b.awareness.getStates().get(a.awareness.clientID)?.cursor === 4, 'cursor 4 at B');
    } finally {
      await proxy.stop();
    }
  });

  test('an update for another document is rejected with SECSYNC_ERROR_213', async () => {
    const proxy = await WsProxy.start(relay.base);
    try {
      const docId = generateId();
      const key = generateKey();
      const a = makePeer(proxy.base, docId, key);
      a.client.connect();
      await a.client.loaded;
      a.text.insert(0, 'mine');
      await a.client.synced();
      const active = a.client.activeSnapshotInfo;
      expect(active).not.toBeNull();
      const mallory = createSignatureKeyPair();
      const foreign = new Y.Doc();
      foreign.getText('content').insert(0, 'INJECTED');
      const update = createUpdate(
        serializeUpdates([Y.encodeStateAsUpdate(foreign)]),
        { docId: generateId(), pubKey: b64encode(mallory.publicKey), refSnapshotId: active!.snapshotId },
        key,
        mallory,
        0
      );
      proxy.inject(proxy.openConnections()[0], JSON.stringify({ type: 'update', ...update }));
      await waitFor(() => a.client.errors.snapshotAndUpdate.length > 0, 'error recorded');
      expect(a.client.errors.snapshotAndUpdate[0].code).toBe('SECSYNC_ERROR_213');
      expect(a.text.toString()).toBe('mine');
      expect(a.client.status.connection).toBe('connected');
    } finally {
      await proxy.stop();
    }
  });

  test('snapshot policy and createSnapshot(); a late joiner loads the latest snapshot', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key, { snapshotPolicy: { maxUpdates: 3 } });
    a.client.connect();
    await a.client.loaded;
    for (let i = 0; i < 8; i++) {
      a.text.insert(a.text.length, `e${i} `);
      await a.client.synced();
    }
    expect(a.client.stats.snapshotsSent).toBeGreaterThanOrEqual(2);
    const before = a.client.activeSnapshotInfo?.snapshotId;
    await a.client.createSnapshot();
    const after = a.client.activeSnapshotInfo?.snapshotId;
    expect(after).toBeDefined();
    expect(after).not.toBe(before);

    const b = makePeer(relay.base, docId, key);
    b.client.connect();
    await b.client.loaded;
    expect(b.text.toString()).toBe(a.text.toString());
    expect(b.client.activeSnapshotInfo?.snapshotId).toBe(after);
    // B edits on top of A's snapshot; A receives it
    b.text.insert(0, 'B! ');
    await b.client.synced();
    await waitFor(() => a.text.toString().startsWith('B! '), 'B edit at A');
  });

  test('concurrent snapshots and updates from two clients (save-failed paths) converge', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key);
    a.client.connect();
    await a.client.loaded;
    a.text.insert(0, 'start ');
    await a.client.synced();
    const b = makePeer(relay.base, docId, key);
    b.client.connect();
    await b.client.loaded;

    // both force a snapshot at the same time, with fresh edits: one is rejected and retried
    a.text.insert(a.text.length, 'A1 ');
    b.text.insert(0, 'B1 ');
    await Promise.all([a.client.createSnapshot(), b.client.createSnapshot()]);
    expect(a.client.stats.snapshotSaveFailed + b.client.stats.snapshotSaveFailed).toBeGreaterThan(0);
    // B keeps editing while A snapshots: B's updates on the old snapshot fail and are re-sent
    const edits = (async () => {
      for (let i = 2; i < 8; i++) {
        b.text.insert(b.text.length, `B${i} `);
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
    for (let i = 0; i < 3; i++) {
      a.text.insert(0, `A-snap${i} `);
      await a.client.createSnapshot();
    }
    await edits;
    await Promise.all([a.client.synced(), b.client.synced()]);
    await waitFor(() => a.text.toString() === b.text.toString(), 'convergence');
    console.log(`[${kind}] save failures: snapshots A=${a.client.stats.snapshotSaveFailed} B=${b.client.stats.snapshotSaveFailed}, updates B=${b.client.stats.updateSaveFailed}`);
    for (const token of ['start', 'A1', 'B1', 'B2', 'B7', 'A-snap0', 'A-snap2']) {
      expect(a.text.toString()).toContain(token);
    }
    expect(a.client.status.connection).toBe('connected');
    expect(b.client.status.connection).toBe('connected');
    // a newcomer sees the same document
    const c = makePeer(relay.base, docId, key);
    c.client.connect();
    await c.client.loaded;
    expect(c.text.toString()).toBe(a.text.toString());
  });

  test('bursts from two clients with updates in flight and frequent snapshots: no error, converge', async () => {
    const docId = generateId();
    const key = generateKey();
    const policy = { snapshotPolicy: { maxUpdates: 12 }, batchDelayMs: 0 };
    const a = makePeer(relay.base, docId, key, policy);
    a.client.connect();
    await a.client.loaded;
    a.text.insert(0, '.');
    await a.client.synced();
    const b = makePeer(relay.base, docId, key, policy);
    b.client.connect();
    await b.client.loaded;
    const burst = async (p: Peer, ch: string, at: () => number) => {
      for (let r = 0; r < 12; r++) {
        for (let i = 0; i < 10; i++) {
          p.text.insert(at(), ch); // one task per key: one update each, several in flight
          await new Promise((res) => setTimeout(res, 0));
        }
        await new Promise((res) => setTimeout(res, 3 * (r % 3)));
      }
    };
    await Promise.all([burst(a, 'a', () => a.text.length), burst(b, 'b', () => 0)]);
    await Promise.all([a.client.synced(), b.client.synced()]);
    await waitFor(() => a.text.toString() === b.text.toString(), 'convergence');
    expect(a.text.toString().length).toBe(1 + 2 * 120);
    const fatal = (p: Peer) => p.client.engine.errors.filter((e) => !e.code.startsWith('SECSYNC_ERROR_21'));
    expect([fatal(a).map((e) => e.message), fatal(b).map((e) => e.message)]).toEqual([[], []]);
    expect(a.client.status.connection).toBe('connected');
    expect(b.client.status.connection).toBe('connected');
  });

  test('an update rejected because of a newer snapshot is re-sent on top of it', async () => {
    const proxy = await WsProxy.start(relay.base);
    try {
      const docId = generateId();
      const key = generateKey();
      const a = makePeer(relay.base, docId, key);
      a.client.connect();
      await a.client.loaded;
      a.text.insert(0, 'base ');
      await a.client.synced();
      const b = makePeer(proxy.base, docId, key);
      b.client.connect();
      await b.client.loaded;
      // B does not hear about A's new snapshot before it sends its own update
      proxy.hold();
      a.text.insert(a.text.length, 'A-in-snapshot ');
      await a.client.createSnapshot();
      b.text.insert(0, 'B-update ');
      const frames = () => proxy.downstream.map((d) => JSON.parse(d.frame).type as string);
      await waitFor(() => frames().includes('update-save-failed'), 'update-save-failed from the relay');
      proxy.release();
      await b.client.synced();
      expect(b.client.stats.updateSaveFailed).toBeGreaterThanOrEqual(1);
      await waitFor(() => a.text.toString() === b.text.toString(), 'convergence');
      expect(a.text.toString()).toBe('B-update base A-in-snapshot ');
      expect(b.client.activeSnapshotInfo?.snapshotId).toBe(a.client.activeSnapshotInfo?.snapshotId);
    } finally {
      await proxy.stop();
    }
  });

  test('isValidClient: a disallowed author is not applied (114 on load, 215 for updates)', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key);
    a.client.connect();
    await a.client.loaded;
    a.text.insert(0, 'by A ');
    await a.client.synced();
    const pubA = a.client.publicKey;

    // a client that does not accept A cannot load A's snapshot
    const strict = makePeer(relay.base, docId, key, { isValidClient: (pub) => pub !== pubA });
    strict.client.connect();
    await expect(strict.client.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_114' });

    // a client that accepts A but not M: M's updates are dropped with 215
    const m = makePeer(relay.base, docId, key);
    const b = makePeer(relay.base, docId, key, {
      isValidClient: async (pub) => pub !== m.client.publicKey
    });
    b.client.connect();
    await b.client.loaded;
    m.client.connect();
    await m.client.loaded;
    m.text.insert(0, 'by M ');
    await m.client.synced();
    a.text.insert(a.text.length, 'more A');
    await a.client.synced();
    await waitFor(() => b.text.toString().includes('more A'), 'A update at B');
    expect(b.text.toString()).not.toContain('by M');
    expect(b.client.errors.snapshotAndUpdate.map((e) => e.code)).toContain('SECSYNC_ERROR_215');
  });

  test('live session with the Python client: text and awareness both ways', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key);
    a.client.connect();
    await a.client.loaded;
    a.awareness.setLocalStateField('user', { name: 'js-peer' });
    a.text.insert(0, 'from-js ');
    await a.client.synced();
    const python = path.join(REPO_DIR, '.venv', 'bin', 'python');
    const peer = execFileP(
      python,
      [path.join(LABEXT_DIR, 'test', 'interop', 'py_peer.py'), relay.base, docId, b64encode(key), 'from-js', 'from-py', a.client.publicKey],
      { timeout: 60000 }
    );
    await waitFor(() => a.text.toString().includes('from-py'), 'Python edit at JS', 30000);
    const pyState = () =>
      Array.from(a.awareness.getStates().values()).find((s) => s.user?.name === 'py-peer');
    await waitFor(() => pyState() !== undefined, 'Python awareness at JS', 30000);
    // the Python client claims its key in `secsync.pubKey`, different from ours
    expect(pyState()?.secsync?.pubKey).toBeTypeOf('string');
    expect(pyState()?.secsync?.pubKey).not.toBe(a.client.publicKey);
    const { stdout } = await peer;
    const result = JSON.parse(stdout.trim().split('\n').pop() as string);
    expect(result.text).toBe('from-js from-py');
    expect(a.text.toString()).toBe('from-js from-py');
    expect(result.collaborators).toContainEqual({ pubKey: a.client.publicKey, name: 'js-peer', self: false });
    // the Python client announced its departure when it closed
    await waitFor(() => pyState() === undefined, 'Python awareness removed after it left');
    expect(a.client.errors.snapshotAndUpdate).toEqual([]);
  });

  test('resume in delta mode from a persisted snapshot', async () => {
    const docId = generateId();
    const key = generateKey();
    const a = makePeer(relay.base, docId, key);
    a.client.connect();
    await a.client.loaded;
    a.text.insert(0, 'one ');
    await a.client.synced();
    a.text.insert(a.text.length, 'two ');
    await a.client.synced();
    // "persist": document state + snapshot info
    const savedState = Y.encodeStateAsUpdate(a.ydoc);
    const savedInfo = a.client.activeSnapshotInfo!;
    const savedKeyPair = a.keyPair;
    a.client.destroy();

    const b = makePeer(relay.base, docId, key);
    b.client.connect();
    await b.client.loaded;
    b.text.insert(b.text.length, 'three ');
    await b.client.synced();

    const ydoc = new Y.Doc();
    Y.applyUpdate(ydoc, savedState);
    const a2 = makePeer(relay.base, docId, key, {
      ydoc,
      knownSnapshot: savedInfo,
      signatureKeyPair: savedKeyPair
    });
    a2.client.connect();
    await a2.client.loaded;
    expect(a2.text.toString()).toBe('one two three ');
    expect(a2.client.stats.snapshotsApplied).toBe(0); // only the missing update came
    a2.text.insert(a2.text.length, 'four');
    await a2.client.synced();
    await waitFor(() => b.text.toString() === 'one two three four', 'four at B');
  });

  test('reference client (v1) and our client read each other', async () => {
    const docId = `doc-${generateId()}`; // a leading '-' would read as a flag to the reference CLI
    const key = generateKey();
    const keyHex = Buffer.from(key).toString('hex');
    const refClient = path.join(HARNESS_HOME, 'ref-client.mjs');
    // the reference client writes first (initial snapshot + updates)
    await execFileP('node', [refClient, relay.base, docId, keyHex, '--yjs-v1', '--insert', 'ref-wrote ', '--timeout', '15000']);
    const a = makePeer(relay.base, docId, key);
    a.client.connect();
    await a.client.loaded;
    expect(a.text.toString()).toBe('ref-wrote ');
    a.text.insert(a.text.length, 'ours ');
    await a.client.synced();
    await a.client.createSnapshot();
    a.text.insert(a.text.length, 'after-snapshot');
    await a.client.synced();
    const { stdout } = await execFileP('node', [refClient, relay.base, docId, keyHex, '--yjs-v1', '--read', '--timeout', '15000']);
    expect(stdout.trim()).toBe('ref-wrote ours after-snapshot');
    // and the reference client appends after our snapshot; we receive it live
    await execFileP('node', [refClient, relay.base, docId, keyHex, '--yjs-v1', '--insert', ' +ref', '--timeout', '15000']);
    await waitFor(() => a.text.toString() === 'ref-wrote ours after-snapshot +ref', 'ref edit live');
  });

  if (kind === 'python') {
    test('relay restart: the client reconnects and its offline edits are stored durably', async () => {
      const port = await freePort();
      const db = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'secsync-restart-')), 'relay.sqlite');
      let own = await startRelay('python', { port, db });
      try {
        const docId = generateId();
        const key = generateKey();
        const a = makePeer(own.base, docId, key);
        a.client.connect();
        await a.client.loaded;
        a.text.insert(0, 'before restart. ');
        await a.client.synced();
        await own.stop();
        await waitFor(() => a.client.status.connection !== 'connected', 'A notices the relay is gone');
        a.text.insert(a.text.length, 'while down. ');
        own = await startRelay('python', { port, db });
        await waitFor(() => a.client.status.connection === 'connected', 'A reconnects', 20000);
        await a.client.synced();
        const b = makePeer(own.base, docId, key);
        b.client.connect();
        await b.client.loaded;
        expect(b.text.toString()).toBe('before restart. while down. ');
      } finally {
        await own.stop();
      }
    });

    test('a sessionKey the relay does not know ends in failed/unauthorized', async () => {
      const own = await startRelay('python', { sessionKeys: ['good-key'] });
      try {
        const docId = generateId();
        const key = generateKey();
        const bad = makePeer(own.base, docId, key, { sessionKey: 'bad-key' });
        bad.client.connect();
        await expect(bad.client.loaded).rejects.toBeTruthy();
        expect(bad.client.status.connection).toBe('failed');
        expect(bad.client.status.failureReason).toBe('unauthorized');
        const good = makePeer(own.base, docId, key, { sessionKey: 'good-key' });
        good.client.connect();
        await good.client.loaded;
        expect(good.client.status.connection).toBe('connected');
      } finally {
        await own.stop();
      }
    });
  }

  if (kind === 'reference') {
    test('unauthorized and document-not-found end in failed', async () => {
      const a = makePeer(relay.base, generateId(), generateKey(), { sessionKey: 'unauthorized' });
      a.client.connect();
      await expect(a.client.loaded).rejects.toBeTruthy();
      expect(a.client.status.connection).toBe('failed');
      expect(a.client.status.failureReason).toBe('unauthorized');
      const b = makePeer(relay.base, `notfound-${generateId()}`, generateKey());
      b.client.connect();
      await expect(b.client.loaded).rejects.toBeTruthy();
      expect(b.client.status.failureReason).toBe('document-not-found');
    });
  }
});
