/**
 * The key backup format (src/backupformat.ts, docs/backup.md): round trip, the parameters a
 * file records, wrong passphrase and damaged files as BackupError (nothing returned), and the
 * import plan (a different stored key is a conflict, never an overwrite).
 * Cross-language checks (files made by Python read here and vice versa): tests/client/test_backup.py.
 */
import { describe, expect, it } from 'vitest';

import {
  BackupError,
  IBackupContent,
  MEMLIMIT,
  OPSLIMIT,
  decryptBackup,
  encryptBackup,
  parseEnvelope,
  planImport,
  planKeyringImport,
  sumo
} from '../src/backupformat';
import { b64decode, b64encode } from '../src/secsync/base64';
import { Keyring } from '../src/secsync/lockbox';

const FAST = { opslimit: 1, memlimit: 8192 };
const PASS = 'correct horse battery staple';

async function sample(): Promise<IBackupContent> {
  const s = await sumo();
  const seed = s.randombytes_buf(32);
  return {
    created: '2026-12-01T18:00:00.000Z',
    createdBy: 'browser',
    identity: { seed, publicKey: s.crypto_sign_seed_keypair(seed).publicKey },
    keys: [
      { docId: 'docA_-1', key: s.randombytes_buf(32), name: 'a.secnb', created: null },
      { docId: 'docB', key: s.randombytes_buf(32), name: null, created: '2026-11-30T10:00:00Z' }
    ]
  };
}

async function rejects(text: string, passphrase: string): Promise<BackupError> {
  try {
    await decryptBackup(text, passphrase);
  } catch (e) {
    expect(e).toBeInstanceOf(BackupError);
    return e as BackupError;
  }
  throw new Error('decryptBackup accepted it');
}

describe('key backup format', () => {
  it('round-trips keys, names and the identity', async () => {
    const content = await sample();
    const text = await encryptBackup(content, PASS, FAST);
    const back = await decryptBackup(text, PASS);
    expect(back.createdBy).toBe('browser');
    expect(back.created).toBe(content.created);
    expect(back.keys.map(k => [k.docId, b64encode(k.key!), k.name, k.created])).toEqual(
      content.keys.map(k => [k.docId, b64encode(k.key!), k.name, k.created])
    );
    expect(b64encode(back.identity!.seed)).toBe(b64encode(content.identity!.seed));
    expect(text).not.toContain(b64encode(content.keys[0].key!));
  });

  it('uses Argon2id with libsodium moderate limits by default, NFC passphrases', async () => {
    const content = await sample();
    const composed = 'caf\u00e9 passphrase';
    const text = await encryptBackup(content, composed);
    const outer = JSON.parse(text);
    expect(outer.format).toBe('secsync-jupyter-key-backup');
    expect(outer.version).toBe(2);
    expect(outer.kdf).toMatchObject({ name: 'argon2id13', opslimit: OPSLIMIT, memlimit: MEMLIMIT });
    expect(OPSLIMIT).toBe(3);
    expect(MEMLIMIT).toBe(256 * 1024 * 1024);
    expect(b64decode(outer.kdf.salt).length).toBe(16);
    expect(b64decode(outer.cipher.nonce).length).toBe(24);
    // the decomposed spelling of the same passphrase opens it
    const back = await decryptBackup(text, 'cafe\u0301 passphrase');
    expect(back.keys.length).toBe(2);
  });

  it('refuses a short passphrase when writing', async () => {
    await expect(encryptBackup(await sample(), 'short', FAST)).rejects.toMatchObject({
      kind: 'passphrase'
    });
  });

  it('answers a wrong passphrase and changed bytes with the same error', async () => {
    const text = await encryptBackup(await sample(), PASS, FAST);
    expect((await rejects(text, PASS + '!')).kind).toBe('passphrase');
    const outer = JSON.parse(text);
    const ct = b64decode(outer.ciphertext);
    ct[5] ^= 1;
    const changed = JSON.stringify({ ...outer, ciphertext: b64encode(ct) });
    expect((await rejects(changed, PASS)).kind).toBe('passphrase');
    const salt = b64decode(outer.kdf.salt);
    salt[0] ^= 1;
    const otherSalt = JSON.stringify({ ...outer, kdf: { ...outer.kdf, salt: b64encode(salt) } });
    expect((await rejects(otherSalt, PASS)).kind).toBe('passphrase');
  });

  it('tells other files, newer versions and damaged fields apart', async () => {
    const text = await encryptBackup(await sample(), PASS, FAST);
    const outer = JSON.parse(text);
    expect((await rejects('{"cells": []}', PASS)).kind).toBe('not-a-backup');
    expect((await rejects('not json', PASS)).kind).toBe('not-a-backup');
    expect((await rejects(JSON.stringify({ ...outer, version: 3 }), PASS)).kind).toBe('version');
    const huge = { ...outer, kdf: { ...outer.kdf, memlimit: 8 * 1024 * 1024 * 1024 } };
    expect(() => parseEnvelope(JSON.stringify(huge))).toThrow(/kdf.memlimit/);
    const cut = { ...outer, ciphertext: outer.ciphertext.slice(0, 10) };
    expect((await rejects(JSON.stringify(cut), PASS)).kind).toBe('damaged');
    const noNonce = { ...outer, cipher: { name: 'xsalsa20poly1305' } };
    expect((await rejects(JSON.stringify(noNonce), PASS)).kind).toBe('damaged');
  });

  it('rejects content whose identity public key is not its seed', async () => {
    const content = await sample();
    const other = await sample();
    content.identity!.publicKey = other.identity!.publicKey;
    const text = await encryptBackup(content, PASS, FAST);
    const e = await rejects(text, PASS);
    expect(e.kind).toBe('damaged');
    expect(e.message).toMatch(/does not belong to its seed/);
  });

  it('rejects content listing a document twice', async () => {
    const content = await sample();
    content.keys[1].docId = content.keys[0].docId;
    const e = await rejects(await encryptBackup(content, PASS, FAST), PASS);
    expect(e.message).toMatch(/listed twice/);
  });

  it('plans an import: add, same, conflict (never an overwrite)', async () => {
    const content = await sample();
    const stored = new Map<string, Uint8Array>([
      [content.keys[0].docId, content.keys[0].key!],
      [content.keys[1].docId, new Uint8Array(32)]
    ]);
    const extra = { docId: 'docC', key: new Uint8Array(32).fill(7), name: null, created: null };
    const plan = planImport(id => stored.get(id) ?? null, [...content.keys, extra]);
    expect(plan.map(p => [p.key.docId, p.decision])).toEqual([
      ['docA_-1', 'same'],
      ['docB', 'conflict'],
      ['docC', 'add']
    ]);
  });

  // version 2: each document's epoch keys (issue 12); version 1 files still read

  it('round-trips epoch keys and seen, and entries with only epoch keys', async () => {
    const s = await sumo();
    const content = await sample();
    content.keys[0].epochs = new Map([
      [2, s.randombytes_buf(32)],
      [1, s.randombytes_buf(32)]
    ]);
    content.keys[0].seen = 2;
    content.keys.push({
      docId: 'joinedLater',
      key: null,
      name: null,
      created: null,
      epochs: new Map([[3, s.randombytes_buf(32)]]),
      seen: 3
    });
    const text = await encryptBackup(content, PASS, FAST);
    expect(JSON.parse(text).version).toBe(2);
    const back = await decryptBackup(text, PASS);
    const epochs = (k: (typeof back.keys)[number]) =>
      [...(k.epochs ?? new Map()).entries()].map(([e, key]) => [e, b64encode(key)]);
    expect(epochs(back.keys[0])).toEqual([
      [1, b64encode(content.keys[0].epochs!.get(1)!)],
      [2, b64encode(content.keys[0].epochs!.get(2)!)]
    ]);
    expect(back.keys[0].seen).toBe(2);
    expect(back.keys[1].epochs!.size).toBe(0);
    expect(back.keys[1].seen).toBeNull();
    expect(back.keys[2].key).toBeNull();
    expect(epochs(back.keys[2])).toEqual([[3, b64encode(content.keys[2].epochs!.get(3)!)]]);
    // an entry without a document key is not in the epoch-0 plan
    expect(planImport(() => null, back.keys).map(p => p.key.docId)).toEqual(['docA_-1', 'docB']);
  });

  it('reads version 1 files', async () => {
    const content = await sample();
    const outer = JSON.parse(await encryptBackup(content, PASS, FAST));
    const back = await decryptBackup(JSON.stringify({ ...outer, version: 1 }), PASS);
    expect(back.keys.map(k => [k.docId, b64encode(k.key!)])).toEqual(
      content.keys.map(k => [k.docId, b64encode(k.key!)])
    );
    expect(back.keys.every(k => k.epochs!.size === 0 && k.seen === null)).toBe(true);
  });

  it('rejects damaged epoch keys', async () => {
    const content = await sample();
    const key = b64encode(content.keys[0].key!);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ epochs: { '0': key } }, /lists epoch 0/],
      [{ epochs: { '01': key } }, /epoch "01" that is not a number/],
      [{ epochs: { '1': 'AAAA' } }, /epoch 1 of document docA_-1 is not 32 bytes/],
      [{ epochs: ['x'] }, /epoch keys of document docA_-1 are not an object/],
      [{ seen: -1 }, /'seen' of document docA_-1/],
      [{ seen: true }, /'seen' of document docA_-1/],
      [{ key: null }, /key of document docA_-1 is not base64url/]
    ];
    for (const [change, message] of cases) {
      const s = await sumo();
      const nonce = s.randombytes_buf(24);
      const data = {
        created: '',
        createdBy: 'test',
        identity: null,
        keys: [{ docId: 'docA_-1', key, name: null, created: null, ...change }]
      };
      // encrypted as a writer would, so the reader's content checks run
      const outer = JSON.parse(await encryptBackup({ ...content, identity: null, keys: [] }, PASS, FAST));
      const derived = s.crypto_pwhash(
        32,
        new TextEncoder().encode(PASS),
        b64decode(outer.kdf.salt),
        1,
        8192,
        s.crypto_pwhash_ALG_ARGON2ID13
      );
      const ct = s.crypto_secretbox_easy(new TextEncoder().encode(JSON.stringify(data)), nonce, derived);
      const text = JSON.stringify({
        ...outer,
        cipher: { ...outer.cipher, nonce: b64encode(nonce) },
        ciphertext: b64encode(ct)
      });
      const e = await rejects(text, PASS);
      expect(e.kind).toBe('damaged');
      expect(e.message).toMatch(message);
    }
  });

  it('plans epoch keys: adds, keeps a different stored key (conflict), seen only grows', async () => {
    const s = await sumo();
    const [k0, k1, k2, other1, k5] = [0, 1, 2, 3, 4].map(() => s.randombytes_buf(32));
    const stored = new Map([
      ['rotated', { keyring: new Keyring([[0, k0], [1, other1]]), seen: 4 }]
    ]);
    const plans = planKeyringImport(id => stored.get(id) ?? null, [
      { docId: 'rotated', key: k0, name: null, created: null, epochs: new Map([[1, k1], [2, k2]]), seen: 2 },
      { docId: 'joinedLater', key: null, name: null, created: null, epochs: new Map([[5, k5]]), seen: 5 },
      { docId: 'plain', key: k0, name: null, created: null }
    ]);
    expect(plans.map(p => [p.docId, p.added, p.same, p.conflicts, p.seen, p.changed])).toEqual([
      ['rotated', [2], [], [1], 4, true],
      ['joinedLater', [5], [], [], 5, true]
    ]);
    // the stored key of the conflicting epoch is the one kept; epoch 0 untouched
    expect(b64encode(plans[0].keyring.key(1))).toBe(b64encode(other1));
    expect(b64encode(plans[0].keyring.key(0))).toBe(b64encode(k0));
    expect(b64encode(plans[0].keyring.key(2))).toBe(b64encode(k2));
    expect(plans[1].keyring.epochs).toEqual([5]);
    // the same again: nothing to store
    const again = planKeyringImport(() => ({ keyring: plans[1].keyring, seen: 5 }), [
      { docId: 'joinedLater', key: null, name: null, created: null, epochs: new Map([[5, k5]]), seen: 3 }
    ]);
    expect(again.map(p => [p.added, p.same, p.conflicts, p.seen, p.changed])).toEqual([
      [[], [5], [], 5, false]
    ]);
  });
});
