/**
 * The membership log core (src/secsync/membership.ts) against the cross-language vectors
 * tests/vectors/membership-vectors.json (made by tests/vectors/make_membership_vectors.py,
 * also run by tests/test_membership.py): the same results, codes, entry indexes and fields
 * as the Python twin, and entries re-created byte for byte.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { b64decode, b64encode } from '../src/secsync/base64';
import { createSignatureKeyPair, SignatureKeyPair } from '../src/secsync/crypto';
import { ERROR_DESCRIPTIONS, isSecsyncError } from '../src/secsync/errors';
import {
  boxPublicKey,
  boxSecretKey,
  checkDisplayName,
  createEntry,
  createLog,
  createReaderProof,
  docIdOfRoot,
  entryToJson,
  extendLog,
  formatIdentity,
  isLogDocId,
  LogHead,
  MembershipError,
  MembershipState,
  newReaderChallenge,
  parseEntry,
  parseIdentity,
  parseLogHead,
  SignatureCheck,
  verifyEntry,
  verifyLog,
  verifyReaderProof
} from '../src/secsync/membership';
import { MEMBERSHIP_ERROR_DESCRIPTIONS } from '../src/secsync/membershipCodes';
import { ready, sodium, utf8Encode } from '../src/secsync/sodium';
import { REPO_DIR } from './helpers/paths';

/* eslint-disable @typescript-eslint/no-explicit-any */
const V: any = JSON.parse(
  fs.readFileSync(path.join(REPO_DIR, 'tests', 'vectors', 'membership-vectors.json'), 'utf-8')
);

beforeAll(async () => {
  await ready();
});

function keyPair(name: string): SignatureKeyPair {
  return createSignatureKeyPair(hexBytes(V.keys[name].seed));
}

function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
}

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

describe('valid logs', () => {
  test.each(named(V.validLogs))('%s', (_name, c) => {
    const state = verifyLog(c.log, c.docId);
    expect(state.toJson().members).toEqual(c.expect.members);
    expect(state.head).toEqual(c.expect.head);
    expect(state.docId).toBe(c.docId);
    expect(docIdOfRoot(c.log[0])).toBe(c.docId);
    expect(isLogDocId(c.docId)).toBe(true);
  });

  const withEntries = named(V.validLogs.filter((c: any) => c.entries));
  test.each(withEntries)('%s: hashes and signed bytes', (_n, c) => {
    c.log.forEach((raw: any, i: number) => {
      const entry = parseEntry(raw);
      expect(entry.hash).toBe(c.entries[i].hash);
      expect(entry.signedBytes).toEqual(utf8Encode(c.entries[i].signed));
      expect(entryToJson(entry)).toEqual(raw);
    });
  });

  const withSteps = named(V.validLogs.filter((c: any) => c.steps));
  test.each(withSteps)('%s: re-created byte for byte', (_n, c) => {
    const entries: unknown[] = [];
    let state: MembershipState | null = null;
    for (const step of c.steps) {
      const kp = keyPair(step.signer);
      if (step.op === 'create') {
        const r = createLog(kp, { name: step.name, at: step.at, nonce: b64decode(step.nonce) });
        entries.push(entryToJson(r.entry));
        state = r.state;
      } else {
        const r = createEntry(state!, kp, step.op, V.keys[step.target].pubKey, step.role, {
          name: step.name,
          at: step.at
        });
        entries.push(entryToJson(r.entry));
        state = r.state;
      }
    }
    expect(entries).toEqual(c.log);
  });

  const longer = named(V.validLogs.filter((c: any) => c.log.length > 1));
  test.each(longer)('%s: incrementally', (_n, c) => {
    let state = verifyLog(c.log.slice(0, 1), c.docId);
    for (const raw of c.log.slice(1)) {
      state = verifyEntry(state, raw);
    }
    expect(state.toJson()).toEqual(verifyLog(c.log, c.docId).toJson());
    const half = Math.floor(c.log.length / 2);
    expect(extendLog(verifyLog(c.log.slice(0, half), c.docId), c.log.slice(half)).toJson()).toEqual(
      state.toJson()
    );
    expect(extendLog(state, [])).toBe(state);
  });
});

describe('rejected logs', () => {
  const known = (c: any): { knownHead?: LogHead } =>
    c.knownHead ? { knownHead: c.knownHead } : {};

  const bulk: SignatureCheck = (items) =>
    items.map(([sig, msg, pk]) => sodium().crypto_sign_verify_detached(sig, msg, pk));

  test.each(named(V.invalidLogs))('%s', (_name, c) => {
    const e = caught(() => verifyLog(c.log, c.docId, known(c)));
    expect({ code: e.code, index: e.index, field: e.field }).toEqual(c.error);
    const e2 = caught(() => verifyLog(c.log, c.docId, { ...known(c), checkSignatures: bulk }));
    expect({ code: e2.code, index: e2.index, field: e2.field }).toEqual(c.error);
  });

  test('a bulk signature check gives the same state and must answer every entry', () => {
    const c = V.validLogs[0];
    expect(verifyLog(c.log, c.docId, { checkSignatures: bulk }).toJson()).toEqual(
      verifyLog(c.log, c.docId).toJson()
    );
    const half = c.log.length >> 1;
    const base = verifyLog(c.log.slice(0, half), c.docId);
    const extended = extendLog(base, c.log.slice(half), { checkSignatures: bulk });
    expect(extended.head).toEqual(c.expect.head);
    expect(() => verifyLog(c.log, c.docId, { checkSignatures: () => [true] })).toThrow(RangeError);
  });

  test.each(named(V.invalidLogs.filter((c: any) => (c.error.index ?? 0) > 0)))(
    '%s: incrementally',
    (_name, c) => {
      const index = c.error.index;
      const state = verifyLog(c.log.slice(0, index), c.docId);
      const before = state.toJson();
      const e = caught(() => verifyEntry(state, c.log[index]));
      const { code, field } = c.error;
      expect({ code: e.code, field: e.field }).toEqual({ code, field });
      expect(e.index).toBe(null);
      expect(state.toJson()).toEqual(before);
      const rootOnly = verifyLog(c.log.slice(0, 1), c.docId);
      const e2 = caught(() => extendLog(rootOnly, c.log.slice(1)));
      expect([e2.code, e2.index]).toEqual([c.error.code, index - 1]);
    }
  );

  test('the vectors cover every log rule, and both languages know the same codes', () => {
    const codes = new Set(V.invalidLogs.map((c: any) => c.error.code));
    for (let n = 701; n <= 718; n++) {
      expect(codes.has(`SECSYNC_ERROR_${n}`)).toBe(true);
    }
    expect(Object.keys(MEMBERSHIP_ERROR_DESCRIPTIONS)).toEqual(Object.keys(V.errorCodes));
    for (const code of Object.keys(V.errorCodes)) {
      expect((ERROR_DESCRIPTIONS as Record<string, string>)[code]).toBe(V.errorCodes[code]);
    }
  });
});

describe('identities and box keys', () => {
  const validIdentities = (V.identities.valid as any[]).map(
    (c) => [c.text.slice(-20), c] as [string, any]
  );
  test.each(validIdentities)('%s', (_n, c) => {
    expect(parseIdentity(c.text)).toEqual({ pubKey: c.pubKey, name: c.name });
    expect(formatIdentity(c.pubKey, c.name)).toBe(c.text);
    expect(formatIdentity(b64decode(c.pubKey), c.name)).toBe(c.text);
  });

  test('surrounding ASCII white space is ignored', () => {
    const c = V.identities.whitespace;
    expect(parseIdentity(c.text)).toEqual({ pubKey: c.pubKey, name: c.name });
  });

  test.each(named(V.identities.invalid))('%s', (_name, c) => {
    const e = caught(() => parseIdentity(c.text));
    expect({ code: e.code, field: e.field }).toEqual(c.error);
  });

  test('formatting refuses bad names and keys', () => {
    const key = keyPair('A').publicKey;
    for (const name of ['', ' x', 'a\u202eb', 'x'.repeat(101)]) {
      expect(checkDisplayName(name)).not.toBe(null);
      caught(() => formatIdentity(key, name));
    }
    caught(() => formatIdentity(new Uint8Array(32)));
    caught(() => formatIdentity(key.subarray(0, 31)));
  });

  test.each(Object.keys(V.keys))('box keys of %s are derived from the signing key', (name) => {
    const kp = keyPair(name);
    expect(b64encode(kp.publicKey)).toBe(V.keys[name].pubKey);
    expect(b64encode(boxPublicKey(kp.publicKey))).toBe(V.keys[name].boxPublicKey);
    expect(b64encode(boxSecretKey(kp))).toBe(V.keys[name].boxSecretKey);
    const s = sodium();
    const sealed = s.crypto_box_seal(utf8Encode('epoch key'), boxPublicKey(V.keys[name].pubKey));
    const opened = s.crypto_box_seal_open(sealed, boxPublicKey(kp.publicKey), boxSecretKey(kp));
    expect(Array.from(opened)).toEqual(Array.from(utf8Encode('epoch key')));
  });
});

describe('reader proofs', () => {
  const rp = V.readerProofs;

  test.each(named(rp.cases))('%s', (_name, c) => {
    const state = c.withoutState ? null : verifyLog(rp.log, rp.docId);
    if (c.error) {
      const e = caught(() => verifyReaderProof(c.proof, rp.docId, rp.nonce, state));
      expect({ code: e.code, field: e.field }).toEqual(c.error);
    } else {
      expect(verifyReaderProof(c.proof, rp.docId, rp.nonce, state)).toBe(c.result);
    }
  });

  test('the proof is the same bytes as in Python, challenges are fresh', () => {
    const b = keyPair('B');
    const proof = createReaderProof(b, rp.docId, rp.nonce);
    expect(proof).toEqual(rp.cases[0].proof);
    expect(
      sodium().crypto_sign_verify_detached(
        b64decode(proof.signature),
        utf8Encode(rp.signed),
        b.publicKey
      )
    ).toBe(true);
    const challenges = new Set(Array.from({ length: 8 }, () => newReaderChallenge()));
    expect(challenges.size).toBe(8);
    for (const c of challenges) {
      expect(b64decode(c).length).toBe(32);
    }
  });
});

describe('log heads, creation, state', () => {
  test('log heads', () => {
    for (const c of V.logHeads.valid) {
      expect(parseLogHead(c.value)).toEqual(c.value);
    }
    for (const c of V.logHeads.invalid) {
      const e = caught(() => parseLogHead(c.value));
      expect([e.code, e.field]).toEqual(['SECSYNC_ERROR_701', c.field]);
    }
  });

  test('creation checks its arguments and the rules', () => {
    const [a, b, c, d] = [keyPair('A'), keyPair('B'), keyPair('C'), keyPair('D')];
    const s0 = createLog(a, { name: 'Ada', at: 10 });
    expect(s0.state.docId).toBe('m1_' + s0.entry.hash);
    const ident = parseIdentity(formatIdentity(b.publicKey, 'Bob'));
    const e1 = createEntry(s0.state, a, 'add-member', ident, 'editor', { at: 15 });
    expect([e1.entry.name, e1.entry.at]).toEqual(['Bob', 15]);
    expect(verifyEntry(s0.state, entryToJson(e1.entry)).toJson()).toEqual(e1.state.toJson());
    expect(caught(() => verifyEntry(e1.state, e1.entry)).code).toBe('SECSYNC_ERROR_708');
    const late = () => createEntry(e1.state, a, 'add-member', c.publicKey, 'viewer', { at: 14 });
    expect(caught(late).code).toBe('SECSYNC_ERROR_710');
    const s2 = createEntry(e1.state, a, 'add-member', b64encode(c.publicKey), 'viewer').state;
    expect(s2.head.seq).toBe(2);
    const cases: Array<[() => unknown, string]> = [
      [() => createEntry(s2, b, 'add-member', d.publicKey, 'viewer'), 'SECSYNC_ERROR_712'],
      [() => createEntry(s2, c, 'set-role', c.publicKey, 'editor'), 'SECSYNC_ERROR_713'],
      [() => createEntry(s2, a, 'remove-member', a.publicKey), 'SECSYNC_ERROR_714'],
      [() => createEntry(s2, a, 'set-role', b.publicKey, 'editor'), 'SECSYNC_ERROR_717'],
      [() => createEntry(s2, a, 'create' as any, b.publicKey, 'editor'), 'SECSYNC_ERROR_741'],
      [() => createEntry(s2, a, 'add-member', b.publicKey, 'owner' as any), 'SECSYNC_ERROR_741'],
      [() => createEntry(s2, a, 'add-member', new Uint8Array(32), 'viewer'), 'SECSYNC_ERROR_741'],
      [() => createEntry(s2, a, 'add-member', 'not a key', 'viewer'), 'SECSYNC_ERROR_741'],
      [() => createEntry(s2, a, 'remove-member', b.publicKey, 'viewer'), 'SECSYNC_ERROR_741']
    ];
    for (const [fn, code] of cases) {
      expect(caught(fn).code).toBe(code);
    }
    const e = caught(() => createEntry(s2, a, 'set-role', b.publicKey, 'viewer', { name: 'x' }));
    expect([e.code, e.field]).toEqual(['SECSYNC_ERROR_741', 'name']);
    const e2 = caught(() => createLog(a, { name: ' bad' }));
    expect([e2.code, e2.field]).toEqual(['SECSYNC_ERROR_741', 'name']);
  });

  test('state history and immutability', () => {
    const c = V.validLogs[0];
    const state = verifyLog(c.log, c.docId);
    const k = (n: string) => V.keys[n].pubKey;
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((s) => state.roleAt(k('A'), s))).toEqual([
      'admin', 'admin', 'admin', 'admin', 'admin', null, null, null
    ]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((s) => state.roleAt(k('C'), s))).toEqual([
      null, null, 'viewer', 'editor', 'editor', 'editor', null, null
    ]);
    expect(state.canWrite(k('B')) && !state.canWrite(k('D'))).toBe(true);
    expect(state.isMember(k('D')) && !state.isMember(k('A'))).toBe(true);
    expect(state.headOf(1).hash).toBe(parseEntry(c.log[1]).hash);
    expect(() => state.roleAt(k('A'), 8)).toThrow(RangeError);
    expect(Object.isFrozen(state) && Object.isFrozen(state.hashes)).toBe(true);
    const entry = parseEntry(c.log[7]);
    expect(Object.isFrozen(entry) && parseEntry(entry) === entry).toBe(true);
    // a copy changed by hand is not a parsed entry: checked again, and refused
    const forged = { ...entryToJson(entry), role: 'admin' };
    const tampered = [...c.log.slice(0, 7).map(parseEntry), forged];
    const e = caught(() => verifyLog(tampered, c.docId));
    expect([e.code, e.index]).toEqual(['SECSYNC_ERROR_704', 7]);
    expect(caught(() => verifyLog([...c.log.slice(0, 7), { ...entry }], c.docId)).index).toBe(7);
    const copy = JSON.parse(JSON.stringify(c.log));
    expect(verifyLog(copy.map(parseEntry), c.docId).toJson()).toEqual(state.toJson());
    expect(copy).toEqual(c.log);
  });

  test('arbitrary JSON raises only MembershipError', () => {
    const values: unknown[] = [null, 1, 'x', [], {}, { v: 1 }, { v: 1, kind: 'set-role', role: [] },
      { v: 1, kind: 'add-member', seq: {}, docId: 'm1_x' }, { v: { toString: 1 } }, [[{}]]];
    for (const v of values) {
      caught(() => parseEntry(v));
      caught(() => verifyLog([v], 'm1_' + 'A'.repeat(43)));
    }
  });
});
