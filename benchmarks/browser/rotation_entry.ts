/**
 * Entry of benchmarks/browser_rotation_bench.py (issue 12): the labextension's own code,
 * bundled by esbuild into one IIFE, run in headless Chromium and on node. Exposes
 * `globalThis.rotationBench`.
 */
import * as Y from 'yjs';
import { createSignatureKeyPair } from '../../labextension/src/secsync/crypto';
import { generateKey, ready, SecsyncYjsClient } from '../../labextension/src/secsync';
import { createLogDocument } from '../../labextension/src/secsync/document';
import { createRotation } from '../../labextension/src/secsync/lockbox';
import {
  createEntry,
  createLog,
  entryToJson,
  formatIdentity,
  verifyLog
} from '../../labextension/src/secsync/membership';

/** The seed `i` as 32 big-endian bytes (Python's `i.to_bytes(32, "big")`). */
function seed(i: number): Uint8Array {
  const s = new Uint8Array(32);
  new DataView(s.buffer).setUint32(28, i);
  return s;
}

/** `runs` createRotation calls (after `warmup` untimed) on a log of one admin adding
 * `members - 1` editors (fixed seeds, as membership_bench.rotation_state). */
async function rotation(members: number, runs: number, warmup: number): Promise<number[]> {
  await ready();
  const admin = createSignatureKeyPair(new Uint8Array(32).fill(0x72)); // b"r" * 32
  let { entry, state } = createLog(admin, { at: 1000 });
  const log = [entryToJson(entry)];
  for (let i = 1; i < members; i++) {
    const person = createSignatureKeyPair(seed(i));
    ({ entry, state } = createEntry(state, admin, 'add-member', person.publicKey, 'editor', {
      at: 2000
    }));
    log.push(entryToJson(entry));
  }
  // as a client holds it: verified from the log as received
  const verified = verifyLog(JSON.parse(JSON.stringify(log)), state.docId);
  const times: number[] = [];
  for (let i = 0; i < runs + warmup; i++) {
    const t = performance.now();
    const r = createRotation(verified, admin, { at: verified.headAt });
    const dt = performance.now() - t;
    if (r.lockboxes.length !== members) throw new Error('wrong number of lockboxes');
    if (i >= warmup) times.push(dt);
  }
  return times;
}

/** The browser client's whole rotation through our relay: `client.rotateKey()` for
 * `members` members until saved, then the new epoch's snapshot until saved. */
async function rotationViaRelay(
  base: string,
  members: number,
  runs: number,
  warmup: number
): Promise<number[]> {
  await ready();
  const admin = createSignatureKeyPair();
  const { docId, rootEntry } = createLogDocument(admin, 'Admin');
  const ydoc = new Y.Doc();
  const client = new SecsyncYjsClient({
    url: `${base}/${docId}`,
    docId,
    key: generateKey(),
    rootEntry,
    signatureKeyPair: admin,
    ydoc,
    batchDelayMs: 0
  });
  client.connect();
  await client.loaded;
  ydoc.getText('content').insert(0, 'x'.repeat(2000));
  await client.synced();
  for (let i = 1; i < members; i++) {
    await client.addMember(formatIdentity(createSignatureKeyPair().publicKey, `m${i}`), 'editor');
  }
  const times: number[] = [];
  for (let i = 0; i < runs + warmup; i++) {
    const t = performance.now();
    await client.rotateKey();
    await client.synced();
    if (i >= warmup) times.push(performance.now() - t);
  }
  const state = client.membership!;
  if (state.epoch !== runs + warmup || state.epochs[state.epoch].recipients?.size !== members) {
    throw new Error('not the rotations asked for');
  }
  if (client.engine.active?.epoch !== state.epoch) throw new Error('no snapshot in the new epoch');
  client.destroy();
  return times;
}

(globalThis as any).rotationBench = { rotation, rotationViaRelay };
