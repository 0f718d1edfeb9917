/**
 * Key epochs, lockboxes and links (src/secsync/epochs.ts, lockbox.ts, links.ts and the
 * issue-12 kinds of membership.ts) against tests/vectors/epoch-vectors.json (made by
 * tests/vectors/make_epoch_vectors.py, also run by tests/test_epochs.py): the same results,
 * codes, indexes and fields as the Python twin; logs re-created byte for byte; real sealing
 * end to end.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { b64decode, b64encode } from '../src/secsync/base64';
import { createSignatureKeyPair, SignatureKeyPair } from '../src/secsync/crypto';
import { checkMessageEpoch, epochKeyCheck, verifyEpochKey } from '../src/secsync/epochs';
import { ERROR_DESCRIPTIONS, isSecsyncError } from '../src/secsync/errors';
import {
  checkLockbox,
  checkLockboxSet,
  createRotation,
  Keyring,
  lockboxSetHash,
  makeLockboxes,
  openLockbox,
  sealLockbox,
  stateLockboxes
} from '../src/secsync/lockbox';
import {
  createLink,
  createRemoveLink,
  formatFragment,
  joinViaLink,
  linkKeyPair,
  parseFragment
} from '../src/secsync/links';
import {
  boxPublicKey,
  createEntry,
  createLog,
  entryToJson,
  extendLog,
  MembershipError,
  MembershipState,
  nextEntry,
  verifyEntry,
  verifyLog,
  verifyReaderProof
} from '../src/secsync/membership';
import { MEMBERSHIP_ERROR_DESCRIPTIONS } from '../src/secsync/membershipCodes';
import { ready, sodium, utf8Encode } from '../src/secsync/sodium';
import { REPO_DIR } from './helpers/paths';

/* eslint-disable @typescript-eslint/no-explicit-any */
const load = (name: string): any =>
  JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'tests', 'vectors', name), 'utf-8'));
const V = load('epoch-vectors.json');
const M = load('membership-vectors.json');

beforeAll(async () => {
  await ready();
});

function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
}

function keyPair(name: string): SignatureKeyPair {
  if (V.linkSecrets[name]) {
    return linkKeyPair(V.linkSecrets[name]);
  }
  return createSignatureKeyPair(hexBytes(M.keys[name].seed));
}

const pub = (name: string) => b64encode(keyPair(name).publicKey);

function caught(fn: () => unknown): MembershipError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MembershipError);
    expect(isSecsyncError(e)).toBe(true);
    return e as MembershipError;
  }
  throw new Error('expected a MembershipError');
}

const named = (cases: any[]) => cases.map((c: any) => [c.name, c] as [string, any]);
const codeField = (e: MembershipError) => ({ code: e.code, field: e.field });

function replay(steps: any[]): { entries: unknown[]; state: MembershipState } {
  const entries: unknown[] = [];
  let state: MembershipState | null = null;
  for (const step of steps) {
    const kp = keyPair(step.signer);
    let r: { entry: any; state: MembershipState };
    if (step.op === 'create') {
      r = createLog(kp, { at: step.at, nonce: b64decode(step.nonce) });
    } else if (['add-member', 'set-role', 'remove-member'].includes(step.op)) {
      r = createEntry(state!, kp, step.op, pub(step.target), step.role, {
        name: step.name,
        at: step.at
      });
    } else if (step.op === 'rotate-key') {
      const epoch = state!.epoch + 1;
      const key = b64decode(step.key);
      expect(step.lockboxes.map((lb: any) => lb.recipient)).toEqual(state!.recipients(step.at));
      r = nextEntry(
        state!,
        kp,
        'rotate-key',
        {
          epoch,
          keyCheck: epochKeyCheck(state!.docId, epoch, key),
          lockboxHash: lockboxSetHash(state!.docId, epoch, step.lockboxes)
        },
        { at: step.at }
      );
      expect(checkLockboxSet(r.state, epoch, step.lockboxes).length).toBe(step.lockboxes.length);
    } else {
      r = nextEntry(state!, kp, step.op, step.fields, { at: step.at });
    }
    entries.push(entryToJson(r.entry));
    state = r.state;
  }
  return { entries, state: state! };
}

describe('logs with epochs and links', () => {
  test.each(named(V.validLogs))('%s', (_n, c) => {
    const state = verifyLog(c.log, c.docId);
    const got = state.toJson();
    for (const key of ['members', 'links', 'epoch', 'epochs', 'head']) {
      expect(got[key]).toEqual(c.expect[key]);
    }
    let prefix = verifyLog(c.log.slice(0, 1), c.docId);
    const needed = [prefix.rotationNeeded(c.log[0].at)];
    const epochs = [prefix.epoch];
    for (const raw of c.log.slice(1)) {
      prefix = verifyEntry(prefix, raw);
      needed.push(prefix.rotationNeeded(raw.at));
      epochs.push(prefix.epoch);
    }
    expect(needed).toEqual(c.expect.rotationNeeded);
    expect(epochs).toEqual(c.expect.epochAt);
    expect(c.log.map((_: unknown, s: number) => state.epochAt(s))).toEqual(c.expect.epochAt);
    if (c.rotationNeededLater) {
      const later = c.rotationNeededLater;
      const atSeq = verifyLog(c.log.slice(0, later.seq + 1), c.docId);
      expect(atSeq.rotationNeeded(later.now)).toBe(later.expect);
    }
    const { entries, state: replayed } = replay(c.steps);
    expect(entries).toEqual(c.log);
    expect(replayed.toJson()).toEqual(got);
  });

  test.each(named(V.invalidLogs))('%s', (_n, c) => {
    const e = caught(() => verifyLog(c.log, c.docId));
    expect({ code: e.code, index: e.index, field: e.field }).toEqual(c.error);
    const index = c.error.index;
    if (index) {
      const state = verifyLog(c.log.slice(0, index), c.docId);
      const before = state.toJson();
      const e2 = caught(() => verifyEntry(state, c.log[index]));
      expect(codeField(e2)).toEqual({ code: c.error.code, field: c.error.field });
      expect(state.toJson()).toEqual(before);
      const e3 = caught(() => extendLog(verifyLog(c.log.slice(0, 1), c.docId), c.log.slice(1)));
      expect(e3.index).toBe(index - 1);
    }
  });

  test('the vectors cover every rule code', () => {
    const codes = new Set<string>();
    const add = (cases: any[]) => cases.forEach((c) => c.error && codes.add(c.error.code));
    add(V.invalidLogs);
    add(V.lockboxes.open.invalid);
    add(V.lockboxes.setInvalid);
    add(V.lockboxes.single);
    add(V.messageEpochs.cases);
    add(V.fragments.invalid);
    add(V.readerProofs.cases);
    for (let n = 751; n <= 770; n++) {
      expect(codes.has(`SECSYNC_ERROR_${n}`)).toBe(true);
    }
  });

  test('both languages know the same codes', () => {
    const ours = MEMBERSHIP_ERROR_DESCRIPTIONS as Record<string, string>;
    for (const [code, text] of Object.entries(V.errorCodes)) {
      expect(ours[code]).toBe(text);
      expect((ERROR_DESCRIPTIONS as Record<string, string>)[code]).toBe(text);
    }
  });
});

describe('lockboxes', () => {
  const LB = V.lockboxes;
  const story = () => verifyLog(LB.log, LB.docId);

  test.each(named(LB.open.valid))('opens %s', (_n, c) => {
    expect(b64encode(openLockbox(story(), keyPair(c.who), c.lockbox))).toBe(c.key);
    const ring = new Keyring();
    expect(ring.addFromLockbox(story(), keyPair(c.who), c.lockbox)).toBe(c.lockbox.epoch);
    expect(b64encode(ring.key(c.lockbox.epoch))).toBe(c.key);
  });

  test.each(named(LB.open.invalid))('refuses to open %s', (_n, c) => {
    expect(codeField(caught(() => openLockbox(story(), keyPair(c.who), c.lockbox)))).toEqual(
      c.error
    );
  });

  test.each(Object.keys(LB.sets))('the set of epoch %s', (epoch) => {
    const boxes = LB.sets[epoch];
    expect(checkLockboxSet(story(), Number(epoch), boxes)).toEqual(boxes);
    expect(checkLockboxSet(story(), Number(epoch), [...boxes].reverse())).toEqual(boxes);
  });

  test.each(named(LB.setInvalid))('refuses the set %s', (_n, c) => {
    const e = caught(() => checkLockboxSet(story(), c.epoch, c.lockboxes));
    expect(codeField(e)).toEqual(c.error);
    expect(e.index).toBe(c.index);
  });

  test.each(named(LB.single))('single lockbox %s', (_n, c) => {
    if (c.error) {
      expect(codeField(caught(() => checkLockbox(story(), c.lockbox, { now: c.now })))).toEqual(
        c.error
      );
    } else {
      expect(checkLockbox(story(), c.lockbox, { now: c.now })).toEqual(c.lockbox);
    }
  });
});

describe('derivations, fragments, reader proofs, message epochs, keyrings', () => {
  const D = V.derivations;

  const linkCases: Array<[string, any]> = D.links.map((c: any) => [c.pubKey.slice(0, 8), c]);
  test.each(linkCases)('link %s', (_n, c) => {
    const kp = linkKeyPair(c.secret);
    expect(Array.from(kp.privateKey.subarray(0, 32))).toEqual(Array.from(hexBytes(c.seed)));
    expect(b64encode(kp.publicKey)).toBe(c.pubKey);
    expect(b64encode(linkKeyPair(b64decode(c.secret)).publicKey)).toBe(c.pubKey);
    expect(b64encode(boxPublicKey(kp.publicKey))).toBe(c.boxPublicKey);
  });

  test('key checks and lockbox hashes', () => {
    const state = verifyLog(V.lockboxes.log, V.lockboxes.docId);
    for (const c of D.keyChecks) {
      const key = b64decode(c.key);
      expect(epochKeyCheck(c.docId, c.epoch, key)).toBe(c.keyCheck);
      expect(b64encode(sodium().crypto_generichash(32, utf8Encode(c.message), key))).toBe(
        c.keyCheck
      );
      verifyEpochKey(state, c.epoch, key);
    }
    for (const c of D.lockboxHashes) {
      expect(lockboxSetHash(c.docId, c.epoch, c.lockboxes)).toBe(c.hash);
    }
  });

  const fragmentCases: Array<[string, any]> = V.fragments.valid.map((c: any) => [
    c.text.slice(0, 12),
    c
  ]);
  test.each(fragmentCases)(
    'fragment %s',
    (_n, c) => {
      const f = parseFragment(c.text);
      expect(f.key ? b64encode(f.key) : null).toBe(c.key);
      expect(f.linkSecret ? b64encode(f.linkSecret) : null).toBe(c.link);
      if (!c.noncanonical) {
        const parts = {
          ...(f.key ? { key: f.key } : {}),
          ...(f.linkSecret ? { linkSecret: f.linkSecret } : {})
        };
        expect(formatFragment(parts)).toBe(c.text);
      }
    }
  );

  test.each(named(V.fragments.invalid))('fragment refused: %s', (_n, c) => {
    expect(codeField(caught(() => parseFragment(c.text)))).toEqual(c.error);
  });

  test.each(named(V.readerProofs.cases))('link reader proof: %s', (_n, c) => {
    const rp = V.readerProofs;
    const state = verifyLog(c.linkRemoved ? rp.logLinkRemoved : rp.log, rp.docId);
    const run = () => verifyReaderProof(c.proof, rp.docId, rp.nonce, state, { now: c.now });
    if (c.error) {
      expect(codeField(caught(run))).toEqual(c.error);
    } else {
      expect(run()).toBe(c.result);
    }
  });

  test.each(named(V.messageEpochs.cases))('message epoch: %s', (_n, c) => {
    const me = V.messageEpochs;
    const state = verifyLog(me.log, me.docId);
    const run = () => checkMessageEpoch(state, c.epoch, c.logHead, c.options);
    if (c.error) {
      expect(codeField(caught(run))).toEqual(c.error);
    } else {
      expect(run()).toBe(c.result);
    }
  });

  test('keyrings', () => {
    for (const c of V.keyrings.valid) {
      const ring = Keyring.fromJson(c.json);
      expect(ring.epochs).toEqual(c.epochs);
      expect(ring.toJson()).toEqual(c.json);
    }
    for (const c of V.keyrings.invalid) {
      expect(caught(() => Keyring.fromJson(c.json)).code).toBe('SECSYNC_ERROR_780');
    }
    const ring = new Keyring([[0, new Uint8Array(32)]]);
    ring.add(0, new Uint8Array(32));
    expect(caught(() => ring.add(0, new Uint8Array(32).fill(1))).code).toBe('SECSYNC_ERROR_762');
    expect(caught(() => ring.key(1)).code).toBe('SECSYNC_ERROR_766');
    expect([ring.newest, ring.has(0), ring.size]).toEqual([0, true, 1]);
  });
});

describe('real sealing, end to end', () => {
  test('a rotation locks a removed member out; links join, are revoked, rotated out', () => {
    const [a, b, c, d] = ['A', 'B', 'C', 'D'].map(keyPair);
    let s = createLog(a, { at: 1 }).state;
    s = createEntry(s, a, 'add-member', b.publicKey, 'editor', { at: 2 }).state;
    s = createEntry(s, a, 'add-member', c.publicKey, 'viewer', { at: 3 }).state;
    const link = createLink(s, a, 'editor', 'Invite', {
      expiresAt: 100,
      epochKey: new Uint8Array(32),
      at: 4
    });
    const linkKp = linkKeyPair(link.secret);
    expect(openLockbox(link.state, linkKp, link.lockbox)).toEqual(new Uint8Array(32));
    const joined = joinViaLink(link.state, link.secret, b64encode(d.publicKey), 'viewer', {
      name: 'Dee',
      at: 5
    });
    s = joined.state;
    expect(s.members.get(b64encode(d.publicKey))?.via).toBe(link.pubKey);
    s = createEntry(s, a, 'remove-member', c.publicKey, null, { at: 6 }).state;
    expect(s.rotationNeeded(6)).toBe(true);
    const rot = createRotation(s, a, { at: 7 });
    s = rot.state;
    expect([s.rotationNeeded(7), s.epoch, rot.epoch]).toEqual([false, 1, 1]);
    expect(rot.lockboxes.map((lb) => lb.recipient)).toEqual(s.recipients(7));
    expect(s.recipients(7)).not.toContain(b64encode(c.publicKey));
    expect(checkLockboxSet(s, 1, rot.lockboxes)).toEqual(rot.lockboxes);
    for (const kp of [a, b, d, linkKp]) {
      const mine = rot.lockboxes.find((lb) => lb.recipient === b64encode(kp.publicKey));
      expect(openLockbox(s, kp, mine)).toEqual(rot.key);
    }
    for (const lb of rot.lockboxes) {
      caught(() => openLockbox(s, c, { ...lb, recipient: b64encode(c.publicKey) }));
    }
    const again = stateLockboxes(s, rot.key, { now: 7 });
    expect(again.map((x) => [x.recipient, x.epoch])).toEqual(
      makeLockboxes(s.docId, 1, rot.key, s.recipients(7)).map((x) => [x.recipient, x.epoch])
    );
    expect(again.map((x) => x.box)).not.toEqual(rot.lockboxes.map((x) => x.box));
    expect(caught(() => checkLockboxSet(s, 1, again)).code).toBe('SECSYNC_ERROR_764');
    const fake = sealLockbox(s.docId, 1, new Uint8Array(32).fill(7), b64encode(b.publicKey));
    expect(caught(() => openLockbox(s, b, fake)).code).toBe('SECSYNC_ERROR_762');
    s = createRemoveLink(s, a, link.pubKey, { at: 8 }).state;
    expect(s.rotationNeeded(8)).toBe(true);
    const rot2 = createRotation(s, a, { at: 9 });
    expect(rot2.lockboxes.map((lb) => lb.recipient)).not.toContain(link.pubKey);
    const e = caught(() => joinViaLink(rot2.state, link.secret, keyPair('E').publicKey, null, {
      at: 10
    }));
    expect(e.code).toBe('SECSYNC_ERROR_755');
  });

  test('creation checks its arguments', () => {
    const [a, b] = [keyPair('A'), keyPair('B')];
    let s = createLog(a, { at: 1 }).state;
    s = createEntry(s, a, 'add-member', b.publicKey, 'editor', { at: 2 }).state;
    const cases: Array<[() => unknown, string]> = [
      [() => createRotation(s, b, { at: 3 }), 'SECSYNC_ERROR_712'],
      [() => createRotation(s, a, { key: new Uint8Array(3) }), 'SECSYNC_ERROR_780'],
      [() => createLink(s, a, 'admin', 'x', { at: 3 }), 'SECSYNC_ERROR_752'],
      [() => createLink(s, a, 'viewer', '', { at: 3 }), 'SECSYNC_ERROR_741'],
      [() => createLink(s, a, 'viewer', 'x', { expiresAt: 3, at: 3 }), 'SECSYNC_ERROR_759'],
      [() => createLink(s, a, 'viewer', 'x', { secret: new Uint8Array(1) }), 'SECSYNC_ERROR_780'],
      [() => createRemoveLink(s, a, b.publicKey, { at: 3 }), 'SECSYNC_ERROR_757'],
      [() => createRemoveLink(s, a, 'nope', { at: 3 }), 'SECSYNC_ERROR_741'],
      [() => joinViaLink(s, new Uint8Array(32), b.publicKey, null, { at: 3 }), 'SECSYNC_ERROR_711'],
      [() => sealLockbox(s.docId, 0, new Uint8Array(32), new Uint8Array(32)), 'SECSYNC_ERROR_780'],
      [() => formatFragment({}), 'SECSYNC_ERROR_780'],
      [() => createEntry(s, a, 'rotate-key', b.publicKey), 'SECSYNC_ERROR_741']
    ];
    for (const [fn, code] of cases) {
      expect(caught(fn).code).toBe(code);
    }
  });
});

test('arbitrary JSON raises only MembershipError', () => {
  const state = verifyLog(V.lockboxes.log, V.lockboxes.docId);
  const box = V.lockboxes.sets['1'][0];
  const values: unknown[] = [null, 1, 1.5, -0, 'x', '#', '#link=', [], {}, [box], { ...box, epoch: 1e300 },
    { ...box, epoch: NaN }, { ...box, box: null }, { ...box, docId: 7 }, { ...box, extra: 1 },
    { '0': 'x' }, { '1': box.box }, { toString: 1 }];
  const fns: Array<(x: any) => unknown> = [
    (x) => openLockbox(state, keyPair('D'), x),
    (x) => checkLockbox(state, x, { now: 0 }),
    (x) => checkLockboxSet(state, 1, [x]),
    (x) => parseFragment(x),
    (x) => checkMessageEpoch(state, x, state.head),
    (x) => Keyring.fromJson(x)
  ];
  for (const v of values) {
    for (const fn of fns) {
      try {
        fn(v);
      } catch (e) {
        expect(e).toBeInstanceOf(MembershipError);
      }
    }
  }
});
