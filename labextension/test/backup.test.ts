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
  sumo
} from '../src/backupformat';
import { b64decode, b64encode } from '../src/secsync/base64';

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
    expect(back.keys.map(k => [k.docId, b64encode(k.key), k.name, k.created])).toEqual(
      content.keys.map(k => [k.docId, b64encode(k.key), k.name, k.created])
    );
    expect(b64encode(back.identity!.seed)).toBe(b64encode(content.identity!.seed));
    expect(text).not.toContain(b64encode(content.keys[0].key));
  });

  it('uses Argon2id with libsodium moderate limits by default, NFC passphrases', async () => {
    const content = await sample();
    const composed = 'caf\u00e9 passphrase';
    const text = await encryptBackup(content, composed);
    const outer = JSON.parse(text);
    expect(outer.format).toBe('secsync-jupyter-key-backup');
    expect(outer.version).toBe(1);
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
    expect((await rejects(JSON.stringify({ ...outer, version: 2 }), PASS)).kind).toBe('version');
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
      [content.keys[0].docId, content.keys[0].key],
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
});
