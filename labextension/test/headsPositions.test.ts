/**
 * Heads inside updates name authors by member position in a document with a membership log
 * (issue 13, docs/protocol.md "Causal heads"): the positions of a log, and what the engine
 * writes beyond the 64-author bound. The twin of tests/client/test_heads_positions.py; what
 * readers accept and refuse is pinned by the shared scenarios heads-members-*.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { b64encode } from '../src/secsync/base64';
import { createSignatureKeyPair, ready, SignatureKeyPair } from '../src/secsync';
import { MAX_HEADS, SyncEngine } from '../src/secsync/engine';
import { memberPositions } from '../src/secsync/engineHeads';
import { KnownSnapshot } from '../src/secsync/knownSnapshot';
import { createEntry, createLog, MembershipState, Role } from '../src/secsync/membership';
import { nullAdapter } from './helpers/remembered';

/* eslint-disable @typescript-eslint/no-explicit-any */
const T0 = 1767225600000;

beforeAll(async () => {
  await ready();
});

const keyOf = (kp: SignatureKeyPair): string => b64encode(kp.publicKey);

/** An engine (the log's creator) holding a verified log that adds `n` editors. */
function engineWithLog(n: number): { engine: any; others: string[] } {
  const owner = createSignatureKeyPair();
  let state: MembershipState = createLog(owner, { at: T0 }).state;
  const others: string[] = [];
  for (let i = 1; i <= n; i++) {
    const key = keyOf(createSignatureKeyPair());
    state = createEntry(state, owner, 'add-member', key, 'editor', { at: T0 + i }).state;
    others.push(key); // position i
  }
  const engine: any = new SyncEngine(state.docId, new Uint8Array(32), nullAdapter() as never, owner);
  engine.log.state = state;
  return { engine, others };
}

describe('member positions (heads in a document with a log)', () => {
  test('a key’s position is the entry that first made it a member', () => {
    const owner = createSignatureKeyPair();
    const x = keyOf(createSignatureKeyPair());
    const y = keyOf(createSignatureKeyPair());
    let state = createLog(owner, { at: T0 }).state;
    const steps: [string, string, Role | null][] = [
      ['add-member', x, 'editor'], // 1
      ['add-member', y, 'editor'], // 2
      ['remove-member', x, null], // 3
      ['set-role', y, 'viewer'], // 4
      ['add-member', x, 'editor'] // 5: x again, keeps position 1
    ];
    steps.forEach(([kind, target, role], i) => {
      state = createEntry(state, owner, kind as never, target, role, { at: T0 + i + 1 }).state;
    });
    const { byKey, byPos } = memberPositions(state);
    expect(Object.fromEntries(byKey)).toEqual({ [keyOf(owner)]: 0, [x]: 1, [y]: 2 });
    expect(Object.fromEntries(byPos)).toEqual({ 0: [0, keyOf(owner)], 1: [1, x], 2: [2, y] });
    expect(memberPositions(state)).toBe(memberPositions(state)); // cached per state
  });

  test('beyond 64 authors: the highest clocks, then the lowest positions', () => {
    const { engine, others } = engineWithLog(70);
    expect(engine.writeHeads).toBe(true); // forced on in a document with a log
    const stranger = keyOf(createSignatureKeyPair()); // no position: named by key
    const clocks: Record<string, number> = {};
    for (const k of others) {
      clocks[k] = 5;
    }
    clocks[others[69]] = 9; // position 70: named for its higher clock
    clocks[stranger] = 5;
    clocks[engine.pubKey] = 50; // ours: never named
    const heads: Record<string, number> = engine._heads(new KnownSnapshot('s', 'h', 'p', clocks));
    expect(Object.keys(heads).length).toBe(MAX_HEADS);
    expect(new Set(Object.keys(heads))).toEqual(new Set([others[69], ...others.slice(0, 63)]));
    // (pubKey order, the rule without positions, would pick another set here)
    const byKey = Object.entries(clocks)
      .filter(([k]) => k !== engine.pubKey)
      .sort(([ka, va], [kb, vb]) => vb - va || (ka < kb ? -1 : 1))
      .slice(0, MAX_HEADS)
      .map(([k]) => k);
    expect(new Set(byKey)).not.toEqual(new Set(Object.keys(heads)));
    const members: Record<string, number> = { 70: 9 };
    for (let i = 1; i <= 63; i++) {
      members[String(i)] = 5;
    }
    expect(engine._headsJson(heads)).toEqual(members);
  });

  test('an author without a position is named by key', () => {
    const { engine, others } = engineWithLog(2);
    const stranger = keyOf(createSignatureKeyPair());
    expect(engine._headsJson({ [others[1]]: 3, [stranger]: 4 })).toEqual({ 2: 3, clocks: { [stranger]: 4 } });
    expect(engine._headsJson({ [stranger]: 4 })).toEqual({ clocks: { [stranger]: 4 } });
  });

  test('without a log, heads name authors by key', () => {
    const owner = createSignatureKeyPair();
    const engine: any = new SyncEngine('plain-doc', new Uint8Array(32), nullAdapter() as never, owner, {
      writeHeads: true
    });
    const other = keyOf(createSignatureKeyPair());
    const heads = engine._heads(new KnownSnapshot('s', 'h', 'p', { [other]: 2 }));
    expect(engine._headsJson(heads)).toEqual({ clocks: { [other]: 2 } });
  });
});
