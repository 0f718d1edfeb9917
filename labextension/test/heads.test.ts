/**
 * Issue 13 in the browser client (SecsyncYjsClient, headsDriver.ts, rememberedState.ts) with
 * our Python relay on loopback and a man-in-the-middle between it and the clients:
 * - one author withheld from one reader (the MITM drops B's updates to A): detected live by
 *   C's heads (806);
 * - a fork between two live groups (each group on its own relay, i.e. its own history; the
 *   MITM passes the ephemeral messages between the groups): both groups report 805;
 * - a stale snapshot served to a client with remembered state (the relay restarted from an
 *   older copy of its database): 804, the client fails, the newer state stays remembered;
 * - a soak: several clients, random disconnects, concurrent snapshots, an honest relay:
 *   ZERO reports.
 * The same rules are pinned without a relay by the shared scenarios (heads-*, remembered-*).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { afterEach, describe, expect, test } from 'vitest';
import {
  createSignatureKeyPair,
  generateId,
  generateKey,
  SecsyncYjsClient,
  SecsyncYjsClientOptions,
  SignatureKeyPair
} from '../src/secsync';
import { MemoryStore } from '../src/secsync/rememberedState';
import { pub, usePythonRelay, waitFor } from './helpers/pythonRelay';
import { freePort, startRelay } from './helpers/relays';

/* eslint-disable @typescript-eslint/no-explicit-any */

const codes = (c: SecsyncYjsClient) => c.engine.errors.map((e) => e.code);
const FAST = { headsGraceSeconds: 1, headsIntervalSeconds: 0.5 };

const py = usePythonRelay();
const servers: WebSocketServer[] = [];

afterEach(() => {
  for (const s of servers.splice(0)) {
    for (const ws of s.clients) {
      ws.terminate();
    }
    s.close();
  }
});

/** A client of `docId` with `key` as `keyPair` on `base` (clients are destroyed after each test). */
function open(docId: string, key: Uint8Array, keyPair: SignatureKeyPair, base: string, extra: Partial<SecsyncYjsClientOptions> = {}) {
  return py.open(docId, keyPair, { key, ...FAST, ...extra }, base);
}

/**
 * A man-in-the-middle: each client connection is forwarded to `upstreamOf(index)`; frames the
 * relay sends down pass `down(index, frame)` (false: dropped); ephemeral messages a client
 * sends are also given, as the relay would, to the client connections `alsoTo(index)` names.
 */
async function mitm(
  upstreamOf: (index: number) => string,
  down: (index: number, frame: any) => boolean,
  alsoTo: (index: number) => number[] = () => []
): Promise<string> {
  const port = await freePort();
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  servers.push(server);
  const conns: WebSocket[] = [];
  server.on('connection', (client, req) => {
    const index = conns.length;
    conns.push(client);
    const upstream = new WebSocket(upstreamOf(index) + (req.url || '/'));
    const early: string[] = [];
    upstream.on('open', () => early.splice(0).forEach((f) => upstream.send(f)));
    upstream.on('message', (data) => {
      const text = data.toString();
      if (down(index, JSON.parse(text)) && client.readyState === WebSocket.OPEN) {
        client.send(text);
      }
    });
    client.on('message', (data) => {
      const text = data.toString();
      upstream.readyState === WebSocket.OPEN ? upstream.send(text) : early.push(text);
      const frame = JSON.parse(text);
      const pd = frame.publicData ?? {};
      if (frame.type === undefined && pd.snapshotId === undefined && pd.refSnapshotId === undefined) {
        for (const other of alsoTo(index)) {
          if (conns[other]?.readyState === WebSocket.OPEN) {
            conns[other].send(JSON.stringify({ ...frame, type: 'ephemeral-message' }));
          }
        }
      }
    });
    const close = () => {
      client.terminate();
      upstream.terminate();
    };
    upstream.on('close', close);
    upstream.on('error', close);
    client.on('close', close);
    client.on('error', close);
  });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  return `ws://127.0.0.1:${port}`;
}

describe('issue 13 in the browser client', () => {
  test('one author withheld from one reader: detected live by a collaborator’s heads (806)', async () => {
    const docId = generateId();
    const key = generateKey();
    const [a, b, c] = [createSignatureKeyPair(), createSignatureKeyPair(), createSignatureKeyPair()];
    const writer = open(docId, key, b, py.relay.base);
    writer.text.insert(0, 'base;');
    await writer.c.createSnapshot();
    // connection 0 is A's: the relay (the MITM) never delivers B's updates to it
    const base = await mitm(
      () => py.relay.base,
      (index, frame) => !(index === 0 && frame.type === 'update' && frame.publicData?.pubKey === pub(b))
    );
    const reader = open(docId, key, a, base);
    await reader.c.loaded;
    const witness = open(docId, key, c, py.relay.base);
    await witness.c.loaded;
    writer.text.insert(5, 'b1;');
    await writer.c.synced();
    await waitFor(() => witness.text.toString() === 'base;b1;', 'C has B’s update');
    await waitFor(() => codes(reader.c).includes('SECSYNC_ERROR_806'), 'A reports 806');
    const alert = reader.c.heads.alerts.find((x) => x.kind === 'heads-withheld') as any;
    // B's own heads (its acknowledged clock) or C's: whichever witness came first
    expect([pub(b), pub(c)]).toContain(alert.data.seenBy);
    expect(alert.data.missing).toEqual([[pub(b), 0]]);
    expect(reader.text.toString()).toBe('base;');
    // C's heads name B's update too (they may come after B's own, which raised the alert)
    await waitFor(() => reader.c.heads.peerHeads.get(pub(c))?.clocks[pub(b)] === 0, 'C’s heads at A');
    expect(codes(witness.c)).toEqual([]);
  }, 60000);

  test('a fork between two live groups: both report 805', async () => {
    const docId = generateId();
    const key = generateKey();
    const relay2 = await startRelay('python');
    try {
      const keys = [createSignatureKeyPair(), createSignatureKeyPair()];
      // group 0 (connection 0) on our relay, group 1 (connection 1) on another: two histories
      const base = await mitm(
        (index) => (index === 0 ? py.relay.base : relay2.base),
        () => true,
        (index) => [1 - index]
      );
      const g0 = open(docId, key, keys[0], base);
      await g0.c.loaded;
      g0.text.insert(0, 'history of group 0');
      await g0.c.createSnapshot();
      const g1 = open(docId, key, keys[1], base);
      await g1.c.loaded;
      g1.text.insert(0, 'history of group 1');
      await g1.c.createSnapshot();
      await waitFor(
        () => codes(g0.c).includes('SECSYNC_ERROR_805') && codes(g1.c).includes('SECSYNC_ERROR_805'),
        'both groups report 805'
      );
      expect((g0.c.heads.alerts.find((x) => x.kind === 'fork') as any).data.peer).toBe(pub(keys[1]));
      expect((g1.c.heads.alerts.find((x) => x.kind === 'fork') as any).data.peer).toBe(pub(keys[0]));
    } finally {
      await relay2.stop();
    }
  }, 60000);

  test('a stale snapshot served to a client with remembered state: 804', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'secsync-rollback-'));
    const db = path.join(dir, 'relay.sqlite');
    const docId = generateId();
    const key = generateKey();
    const me = createSignatureKeyPair();
    const store = new MemoryStore();
    let r = await startRelay('python', { db });
    let x = open(docId, key, me, r.base, { rememberedStore: store });
    x.text.insert(0, 'one;');
    await x.c.createSnapshot();
    x.c.destroy();
    await r.stop();
    for (const name of fs.readdirSync(dir)) {
      fs.copyFileSync(path.join(dir, name), path.join(dir, `old-${name}`)); // the backup
    }
    r = await startRelay('python', { db });
    x = open(docId, key, me, r.base, { rememberedStore: store });
    await x.c.loaded;
    x.text.insert(4, 'two;');
    await x.c.createSnapshot();
    x.c.destroy();
    const remembered = JSON.parse(store.items.get(docId) as string);
    expect(remembered.snapshot.snapshotId).toBe(x.c.engine.active?.snapshotId);
    await r.stop();
    // the relay restored from the backup: it serves the older snapshot as the current one
    for (const name of fs.readdirSync(dir).filter((n) => n.startsWith('relay.sqlite'))) {
      fs.unlinkSync(path.join(dir, name));
    }
    for (const name of fs.readdirSync(dir).filter((n) => n.startsWith('old-'))) {
      fs.renameSync(path.join(dir, name), path.join(dir, name.slice(4)));
    }
    r = await startRelay('python', { db });
    try {
      const y = open(docId, key, me, r.base, { rememberedStore: store });
      await expect(y.c.loaded).rejects.toThrow();
      expect(codes(y.c)[0]).toBe('SECSYNC_ERROR_804');
      expect(y.c.heads.alerts.map((a) => a.kind)).toEqual(['rollback']);
      y.c.destroy();
      expect(JSON.parse(store.items.get(docId) as string)).toEqual(remembered); // kept
    } finally {
      await r.stop();
    }
  }, 60000);

  test('soak: an honest relay under load, reconnects and concurrent snapshots gives no report', async () => {
    const docId = generateId();
    const key = generateKey();
    const store = new MemoryStore();
    const opts = { headsGraceSeconds: 3, headsIntervalSeconds: 0.5, rememberedStore: store };
    const keys = [0, 1, 2, 3].map(() => createSignatureKeyPair());
    const first = open(docId, key, keys[0], py.relay.base, opts);
    first.text.insert(0, 'start;');
    await first.c.createSnapshot();
    const all = [first, ...keys.slice(1).map((k) => open(docId, key, k, py.relay.base, opts))];
    await Promise.all(all.map((x) => x.c.loaded));
    let seed = 13;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let round = 0; round < 60; round++) {
      const i = Math.floor(rnd() * all.length);
      const x = all[i];
      const roll = rnd();
      if (roll < 0.65) {
        x.text.insert(x.text.length, `r${round}c${i};`);
      } else if (roll < 0.8) {
        x.c.disconnect(); // a random disconnect, back shortly
        setTimeout(() => x.c.connect(), 50 + rnd() * 200);
      } else if (roll < 0.92) {
        const y = all[(i + 1) % all.length];
        await Promise.all([x.c.createSnapshot(), y.c.createSnapshot()].map((p) => p.catch(() => undefined)));
      } else {
        x.c.destroy(); // closed, reopened from the remembered state
        all[i] = open(docId, key, keys[i], py.relay.base, opts);
        await all[i].c.loaded;
      }
      await new Promise((r) => setTimeout(r, 50 + rnd() * 200));
    }
    for (const x of all) {
      x.c.connect();
    }
    await Promise.all(all.map((x) => x.c.synced()));
    const want = all[0].text.toString();
    await waitFor(() => all.every((x) => x.text.toString() === want), 'convergence');
    await waitFor(() => all.every((x) => x.c.engine.heads.claims.length === 0), 'no open claim');
    expect(all.map((x) => codes(x.c).filter((c) => c.startsWith('SECSYNC_ERROR_8')))).toEqual(all.map(() => []));
    expect(all.map((x) => x.c.heads.alerts)).toEqual(all.map(() => []));
    for (const x of all) {
      expect(x.c.heads.peerHeads.size).toBe(all.length - 1);
    }
    // read notifications: everyone has seen everyone's last acknowledged update
    await waitFor(
      () => all.every((x) => x.c.heads.seenBy().size === all.length - 1 && [...x.c.heads.seenBy().values()].every(Boolean)),
      'seen by everyone'
    );
  }, 60000);
});
