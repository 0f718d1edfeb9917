/**
 * The browser sync client (SecsyncYjsClient + engine.ts) in a document with a membership log,
 * against a scripted, possibly malicious relay on loopback (a real `ws` server whose frames
 * the test writes): a non-member's or a viewer's update forwarded anyway, a forged log entry,
 * a log whose root is not the document's — each rejected with its code, the document
 * unchanged; read-only viewers, live promotion and demotion, removal, the creator's root, and
 * the membership calls (addMember / setRole / removeMember, retried after 707).
 */
import WebSocket, { WebSocketServer } from 'ws';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import * as Y from 'yjs';
import {
  createInitialSnapshot,
  createSignatureKeyPair,
  createUpdate,
  generateId,
  generateKey,
  ready,
  SecsyncYjsClient,
  SecsyncYjsClientOptions,
  serializeUpdates,
  SignatureKeyPair,
  Snapshot,
  WebSocketConstructor
} from '../src/secsync';
import { createLogDocument, MembershipError } from '../src/secsync/document';
import {
  createEntry,
  createLog,
  entryToJson,
  formatIdentity,
  MembershipState,
  parseEntry,
  Role,
  verifyReaderProof
} from '../src/secsync/membership';
import { b64encode } from '../src/secsync/base64';

const WS = WebSocket as unknown as WebSocketConstructor;
/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One client connection to the scripted relay: frames received, and a way to send. */
class Conn {
  received: Json[] = [];
  closed = false;
  constructor(readonly ws: WebSocket, readonly url: string) {
    ws.on('message', (data) => this.received.push(JSON.parse(String(data))));
    ws.on('close', () => {
      this.closed = true;
    });
  }
  send(frame: Json): void {
    this.ws.send(JSON.stringify(frame));
  }
  of(type: string): Json[] {
    return this.received.filter((f) => f.type === type);
  }
  /** snapshots / updates / ephemeral messages this client sent */
  messages(kind: 'snapshotId' | 'refSnapshotId'): Json[] {
    return this.received.filter((f) => f.publicData && kind in f.publicData);
  }
}

/** A relay whose every frame the test writes. */
class ScriptedRelay {
  conns: Conn[] = [];
  private constructor(readonly server: WebSocketServer, readonly base: string) {
    server.on('connection', (ws, req) => this.conns.push(new Conn(ws, req.url ?? '')));
  }
  static async start(): Promise<ScriptedRelay> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => server.on('listening', () => r()));
    const port = (server.address() as { port: number }).port;
    return new ScriptedRelay(server, `ws://127.0.0.1:${port}`);
  }
  async next(n = this.conns.length + 1): Promise<Conn> {
    await waitFor(() => this.conns.length >= n, `connection ${n}`);
    return this.conns[n - 1];
  }
  async stop(): Promise<void> {
    for (const c of this.conns) {
      c.ws.terminate();
    }
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A document with a log: A owner, D admin, E editor, V viewer; X is no member. */
class World {
  key = generateKey();
  A = createSignatureKeyPair();
  D = createSignatureKeyPair();
  E = createSignatureKeyPair();
  V = createSignatureKeyPair();
  X = createSignatureKeyPair();
  log: Json[] = [];
  state: MembershipState;
  docId: string;
  snapshot: Snapshot;
  base: Uint8Array;

  constructor() {
    const root = createLog(this.A, { name: 'Ada' });
    this.state = root.state;
    this.docId = root.state.docId;
    this.log.push(entryToJson(root.entry));
    this.append(this.A, 'add-member', this.D, 'admin');
    this.append(this.A, 'add-member', this.E, 'editor');
    this.append(this.A, 'add-member', this.V, 'viewer');
    const doc = new Y.Doc();
    doc.getText('content').insert(0, 'hello');
    this.base = Y.encodeStateAsUpdate(doc);
    this.snapshot = createInitialSnapshot(
      this.base,
      {
        docId: this.docId,
        pubKey: b64encode(this.A.publicKey),
        snapshotId: generateId(),
        parentSnapshotId: '',
        parentSnapshotUpdateClocks: {},
        logHead: this.head()
      },
      this.key,
      this.A
    );
  }

  head(): { seq: number; hash: string } {
    return { seq: this.state.head.seq, hash: this.state.head.hash };
  }

  /** the next entry (signed by `by`), appended to the relay's log; returns its JSON */
  append(by: SignatureKeyPair, kind: 'add-member' | 'set-role' | 'remove-member', target: SignatureKeyPair, role: Role | null): Json {
    const made = createEntry(this.state, by, kind, b64encode(target.publicKey), role);
    this.state = made.state;
    const json = entryToJson(made.entry);
    this.log.push(json);
    return json;
  }

  /** an update by `by` on the snapshot inserting `text` at 0 (Yjs client id `clientId`) */
  update(by: SignatureKeyPair, text: string, clock: number, logHead = this.head(), clientId = 4242): Json {
    const doc = new Y.Doc();
    doc.clientID = clientId;
    Y.applyUpdate(doc, this.base);
    const before = Y.encodeStateVector(doc);
    doc.getText('content').insert(0, text);
    return {
      type: 'update',
      ...createUpdate(
        serializeUpdates([Y.encodeStateAsUpdate(doc, before)]),
        {
          docId: this.docId,
          pubKey: b64encode(by.publicKey),
          refSnapshotId: this.snapshot.publicData.snapshotId,
          logHead
        },
        this.key,
        by,
        clock
      )
    };
  }

  documentFrame(log: Json[] = this.log): Json {
    return { type: 'document', snapshot: this.snapshot, updates: [], log, logFrom: 0 };
  }
}

let relay: ScriptedRelay;
const clients: SecsyncYjsClient[] = [];

beforeAll(async () => {
  await ready();
});

afterEach(async () => {
  for (const c of clients.splice(0)) {
    c.destroy();
  }
  await relay?.stop();
});

function client(w: World, who: SignatureKeyPair, extra: Partial<SecsyncYjsClientOptions> = {}) {
  const ydoc = new Y.Doc();
  const c = new SecsyncYjsClient({
    url: `${relay.base}/${extra.docId ?? w.docId}`,
    docId: w.docId,
    key: w.key,
    signatureKeyPair: who,
    ydoc,
    WebSocketImpl: WS,
    batchDelayMs: 0,
    maxReconnectDelayMs: 200,
    ...extra
  });
  clients.push(c);
  return { c, text: ydoc.getText('content'), ydoc };
}

/** Connect `who`, answer the challenge, serve the document; returns the connection. */
async function open(w: World, who: SignatureKeyPair, frame: Json = w.documentFrame()) {
  relay = relay ?? (await ScriptedRelay.start());
  const peer = client(w, who);
  peer.c.connect();
  const conn = await relay.next();
  const nonce = 'n' + 'A'.repeat(42);
  conn.send({ type: 'reader-challenge', nonce });
  await waitFor(() => conn.of('reader-proof').length === 1, 'the reader proof');
  expect(verifyReaderProof(conn.of('reader-proof')[0], w.docId, nonce, w.state)).toBe(b64encode(who.publicKey));
  conn.send(frame);
  return { ...peer, conn };
}

describe('a document with a membership log, scripted relay', () => {
  test('the connection URL, the reader proof and a loaded log; role and logHead written', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, text, conn } = await open(w, w.E);
    await c.loaded;
    expect(text.toString()).toBe('hello');
    expect(c.myRole).toBe('editor');
    expect(c.readOnly).toBe(false);
    expect(c.membership?.head.seq).toBe(3);
    expect(c.status.role).toBe('editor');
    text.insert(5, '!');
    await waitFor(() => conn.messages('refSnapshotId').length === 1, 'an update');
    const pd = conn.messages('refSnapshotId')[0].publicData;
    expect(pd.logHead).toEqual(w.head());
    // heads always on in documents with a log; naming nothing (no other author), left out
    expect(pd.heads).toBeUndefined();
    expect(conn.url).toContain('mode=complete');
  });

  test("a non-member's update forwarded by the relay: 215, document unchanged", async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, text, conn } = await open(w, w.E);
    await c.loaded;
    conn.send(w.update(w.X, 'evil ', 0));
    conn.send(w.update(w.D, 'ok ', 0, w.head(), 77)); // an admin's, after it: applied
    await waitFor(() => text.toString() === 'ok hello', "the admin's update");
    expect(c.errors.snapshotAndUpdate.map((e) => e.code)).toEqual(['SECSYNC_ERROR_215']);
    expect(c.status.connection).toBe('connected');
  });

  test("a viewer's update forwarded by the relay: 215, document unchanged", async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, text, conn } = await open(w, w.E);
    await c.loaded;
    conn.send(w.update(w.V, 'viewer ', 0));
    conn.send(w.update(w.D, 'ok ', 0, w.head(), 77));
    await waitFor(() => text.toString() === 'ok hello', "the admin's update");
    expect(c.errors.snapshotAndUpdate.map((e) => e.code)).toEqual(['SECSYNC_ERROR_215']);
    expect(c.errors.snapshotAndUpdate[0].message).toContain('viewer');
  });

  test('a forged log entry, live: 704, the log unchanged; a message naming it: 215', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, text, conn } = await open(w, w.V);
    await c.loaded;
    // A's entry adding X as a viewer, made into "as an editor" (the signature no longer covers it)
    const made = createEntry(w.state, w.A, 'add-member', b64encode(w.X.publicKey), 'viewer');
    const json = { ...entryToJson(made.entry), role: 'editor' };
    conn.send({ type: 'log-entry', entry: json });
    conn.send(w.update(w.X, 'evil ', 0, { seq: 4, hash: parseEntry(json).hash }));
    conn.send(w.update(w.D, 'ok ', 0, w.head(), 77));
    await waitFor(() => text.toString() === 'ok hello', "the admin's update");
    expect(c.errors.snapshotAndUpdate.map((e) => e.code)).toEqual(['SECSYNC_ERROR_215', 'SECSYNC_ERROR_704']);
    expect(c.membership?.head.seq).toBe(3);
    expect(c.membership?.isMember(b64encode(w.X.publicKey))).toBe(false);
  });

  test('a forged entry inside the document frame: the load fails with 704, nothing applied', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const bad = w.log.map((e: Json) => ({ ...e }));
    bad[2].role = 'admin'; // E made admin: the signature no longer covers it
    const { c, text } = await open(w, w.E, w.documentFrame(bad));
    await expect(c.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_704' });
    expect(text.toString()).toBe('');
    expect(c.status.connection).toBe('failed');
    expect(c.membership).toBeNull();
  });

  test("a log whose root is not the document's: 706, nothing applied", async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const other = new World(); // same members' keys differ: a whole other document's log
    const { c, text } = await open(w, w.E, { ...w.documentFrame(), log: other.log });
    await expect(c.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_706' });
    expect(text.toString()).toBe('');
    // and a relay that serves no log at all for an m1_ document
    relay.conns.length = 0;
    const second = await open(w, w.E, { type: 'document', snapshot: w.snapshot, updates: [] });
    await expect(second.c.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_706' });
    expect(second.text.toString()).toBe('');
  });

  test('a rolled-back log (without the head this browser verified before): 718, nothing applied', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const known = w.head(); // seen in an earlier session, persisted by the application
    const first = client(w, w.E, { knownLogHead: known });
    first.c.connect();
    const conn = await relay.next();
    conn.send({ type: 'reader-challenge', nonce: 'D'.repeat(43) });
    // the relay serves the log as it was before entry 3 (the viewer's addition), and a snapshot
    conn.send({ ...w.documentFrame(w.log.slice(0, 3)) });
    await expect(first.c.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_718' });
    expect(first.text.toString()).toBe('');
    expect(first.c.logHead).toBeNull();
  });

  test('a viewer is read-only; promoted live it sends its changes; demoted again, read-only', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, text, conn } = await open(w, w.V);
    await c.loaded;
    const seen: Array<[number | undefined, Role | null]> = [];
    c.onMembershipChanged((state, role) => seen.push([state?.head.seq, role]));
    expect(c.myRole).toBe('viewer');
    expect(c.readOnly).toBe(true);
    await expect(c.createSnapshot()).rejects.toMatchObject({ code: 'SECSYNC_ERROR_724' });
    text.insert(0, 'x');
    await waitFor(() => c.status.pendingChanges === 1, 'the change pending');
    conn.send({ type: 'log-entry', entry: w.append(w.A, 'set-role', w.V, 'editor') });
    await waitFor(() => conn.messages('refSnapshotId').length === 1, 'the update after promotion');
    expect(conn.messages('refSnapshotId')[0].publicData.logHead).toEqual(w.head());
    expect(c.readOnly).toBe(false);
    conn.send({ type: 'log-entry', entry: w.append(w.D, 'set-role', w.V, 'viewer') });
    await waitFor(() => c.readOnly, 'read-only again');
    text.insert(0, 'y');
    await waitFor(() => c.status.pendingChanges === 1, 'the change pending');
    expect(conn.messages('refSnapshotId').length).toBe(1);
    expect(seen).toEqual([
      [4, 'editor'],
      [5, 'viewer']
    ]);
  });

  test('write-refused (724): read-only, no retry, no error loop', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, text, conn } = await open(w, w.E);
    await c.loaded;
    text.insert(0, 'x');
    await waitFor(() => conn.messages('refSnapshotId').length === 1, 'the update');
    const u = conn.messages('refSnapshotId')[0].publicData;
    conn.send({ type: 'write-refused', of: 'update', code: 'SECSYNC_ERROR_724', snapshotId: u.refSnapshotId, clock: u.clock });
    await waitFor(() => c.readOnly, 'read-only');
    expect(c.errors.snapshotAndUpdate[0].code).toBe('SECSYNC_ERROR_724');
    expect(c.status.connection).toBe('connected');
    expect(c.status.pendingChanges).toBe(1);
    expect(conn.messages('refSnapshotId').length).toBe(1);
  });

  test('removed by a verified entry, then unauthorized 725: failed with the code, no reconnect', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, conn } = await open(w, w.E);
    await c.loaded;
    conn.send({ type: 'log-entry', entry: w.append(w.A, 'remove-member', w.E, null) });
    conn.send({ type: 'unauthorized', code: 'SECSYNC_ERROR_725', reason: 'removed' });
    await waitFor(() => c.status.connection === 'failed', 'failed');
    expect(c.status.failureReason).toBe('SECSYNC_ERROR_725');
    expect(c.status.lastError?.code).toBe('SECSYNC_ERROR_725');
    expect(c.myRole).toBeNull();
    await waitFor(() => conn.closed, 'the client closed the socket');
    expect((c as Json)._reconnectTimer).toBeNull();
    expect(relay.conns.length).toBe(1);
  });

  test('unauthorized 722 at connect (not a member): failed with the code, loaded rejects', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c } = client(w, w.X);
    c.connect();
    const conn = await relay.next();
    conn.send({ type: 'reader-challenge', nonce: 'B'.repeat(43) });
    conn.send({ type: 'unauthorized', code: 'SECSYNC_ERROR_722', reason: 'not a member' });
    await expect(c.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_722' });
    expect(c.status.failureReason).toBe('SECSYNC_ERROR_722');
    expect((c as Json)._reconnectTimer).toBeNull();
  });

  test('the creator: root sent first after the proof, first snapshot with logHead 0', async () => {
    relay = await ScriptedRelay.start();
    const A = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A, 'Ada');
    expect(docId).toMatch(/^m1_[A-Za-z0-9_-]{43}$/);
    const ydoc = new Y.Doc();
    const c = new SecsyncYjsClient({
      url: `${relay.base}/${docId}`,
      docId,
      key: generateKey(),
      signatureKeyPair: A,
      ydoc,
      WebSocketImpl: WS,
      batchDelayMs: 0,
      rootEntry
    });
    clients.push(c);
    expect(c.myRole).toBe('admin');
    c.connect();
    const conn = await relay.next();
    conn.send({ type: 'reader-challenge', nonce: 'C'.repeat(43) });
    await waitFor(() => conn.received.length === 2, 'proof and root');
    expect(conn.received.map((f) => f.type)).toEqual(['reader-proof', 'log-entry']);
    expect(conn.received[1].entry).toEqual(rootEntry);
    conn.send({ type: 'document', updates: [], log: [], logFrom: 0 });
    await c.loaded;
    ydoc.getText('content').insert(0, 'first');
    await waitFor(() => c.status.pendingChanges === 1, 'the change pending');
    // not sent before the root is stored (the engine sends synchronously when it sends)
    expect(c.engine.snapshotInFlight).toBeNull();
    expect(c.readOnly).toBe(false);
    const hash = docId.slice(3);
    conn.send({ type: 'log-entry-saved', seq: 0, hash });
    await waitFor(() => conn.messages('snapshotId').length === 1, 'the first snapshot');
    expect(conn.messages('snapshotId')[0].publicData.logHead).toEqual({ seq: 0, hash });
  });

  test('the creator on a relay without membership support (no challenge): 706, nothing written', async () => {
    relay = await ScriptedRelay.start();
    const A = createSignatureKeyPair();
    const { docId, rootEntry } = createLogDocument(A);
    const ydoc = new Y.Doc();
    ydoc.getText('content').insert(0, 'secret');
    const c = new SecsyncYjsClient({
      url: `${relay.base}/${docId}`,
      docId,
      key: generateKey(),
      signatureKeyPair: A,
      ydoc,
      WebSocketImpl: WS,
      sendInitialState: true,
      rootEntry
    });
    clients.push(c);
    c.connect();
    const conn = await relay.next();
    conn.send({ type: 'document', updates: [], log: [], logFrom: 0 });
    await expect(c.loaded).rejects.toMatchObject({ code: 'SECSYNC_ERROR_706' });
    // the engine wrote nothing (it sends synchronously when it sends), the relay got nothing
    expect(c.engine.snapshotInFlight).toBeNull();
    expect(c.engine.updatesInFlight).toEqual([]);
    expect(conn.received).toEqual([]);
  });

  test('addMember resolves on log-entry-saved; after 707 it is made again on the new head', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, conn } = await open(w, w.A);
    await c.loaded;
    const newcomer = createSignatureKeyPair();
    const pending = c.addMember(formatIdentity(newcomer.publicKey, 'Bob'), 'viewer');
    await waitFor(() => conn.of('log-entry').length === 1, 'the entry');
    const first = conn.of('log-entry')[0].entry;
    expect(first).toMatchObject({ kind: 'add-member', seq: 4, role: 'viewer', name: 'Bob' });
    // D appended first: refused with the relay's entries from seq 4 on
    const other = w.append(w.D, 'set-role', w.V, 'editor');
    conn.send({ type: 'log-entry-failed', seq: 4, code: 'SECSYNC_ERROR_707', log: [other] });
    await waitFor(() => conn.of('log-entry').length === 2, 'the entry again');
    const second = conn.of('log-entry')[1].entry;
    expect(second).toMatchObject({ kind: 'add-member', seq: 5, prev: w.state.head.hash });
    w.state = createEntry(w.state, w.A, 'add-member', b64encode(newcomer.publicKey), 'viewer', { at: second.at, name: 'Bob' }).state;
    conn.send({ type: 'log-entry-saved', seq: 5, hash: w.state.head.hash });
    await pending;
    expect(c.membership?.role(b64encode(newcomer.publicKey))).toBe('viewer');
    expect(c.membership?.head.seq).toBe(5);

    // set-role and remove go through the same path
    const promote = c.setRole(b64encode(newcomer.publicKey), 'editor');
    await waitFor(() => conn.of('log-entry').length === 3, 'set-role');
    const sr = conn.of('log-entry')[2].entry;
    expect(sr).toMatchObject({ kind: 'set-role', seq: 6, role: 'editor' });
    conn.send({ type: 'log-entry-failed', seq: 6, code: 'SECSYNC_ERROR_712' });
    await expect(promote).rejects.toMatchObject({ code: 'SECSYNC_ERROR_712' });
    expect(c.membership?.head.seq).toBe(5);
  });

  test('membership calls this browser may not make are refused before anything is sent', async () => {
    relay = await ScriptedRelay.start();
    const w = new World();
    const { c, conn } = await open(w, w.E);
    await c.loaded;
    const x = formatIdentity(w.X.publicKey);
    await expect(c.addMember(x, 'viewer')).rejects.toMatchObject({ code: 'SECSYNC_ERROR_712' });
    await expect(c.setRole(b64encode(w.E.publicKey), 'admin')).rejects.toMatchObject({ code: 'SECSYNC_ERROR_713' });
    await expect(c.removeMember(b64encode(w.A.publicKey))).rejects.toMatchObject({ code: 'SECSYNC_ERROR_712' });
    await expect(c.addMember('secsync-id:1:nonsense', 'viewer')).rejects.toBeInstanceOf(MembershipError);
    await expect(c.addMember(x.slice(0, -1) + (x.endsWith('0') ? '1' : '0'), 'viewer')).rejects.toMatchObject({
      code: 'SECSYNC_ERROR_731'
    });
    expect(conn.of('log-entry')).toEqual([]);
    // leaving is allowed
    const leave = c.removeMember(b64encode(w.E.publicKey));
    await waitFor(() => conn.of('log-entry').length === 1, 'the leave entry');
    const entry = conn.of('log-entry')[0].entry;
    w.state = createEntry(w.state, w.E, 'remove-member', b64encode(w.E.publicKey), null, { at: entry.at }).state;
    conn.send({ type: 'log-entry-saved', seq: entry.seq, hash: w.state.head.hash });
    await leave;
    await waitFor(() => c.status.connection === 'failed', 'no access after leaving');
    expect(c.status.failureReason).toBe('SECSYNC_ERROR_725');
  });
});
