/**
 * Key backups made and read by the browser code (src/backupformat.ts), for
 * tests/client/test_backup.py (the Python reader and writer of the same format).
 *
 *   vite-node test/interop/backup.ts encrypt PASSPHRASE_FILE CONTENT_JSON [opslimit memlimit]
 *       prints the backup file (CONTENT_JSON: {created, createdBy, identity: {seed} | null,
 *       keys: [{docId, key | null, name, created, epochs?: {"1": key, …}, seen?}]}, keys and
 *       seed base64url)
 *   vite-node test/interop/backup.ts decrypt PASSPHRASE_FILE BACKUP_FILE
 *       prints {"ok": true, "content": ...} or {"ok": false, "kind": ..., "message": ...}
 */
import { readFileSync } from 'fs';

import { BackupError, decryptBackup, encryptBackup, sumo } from '../../src/backupformat';
import { b64decode, b64encode } from '../../src/secsync/base64';

async function main(): Promise<void> {
  const [command, passFile, path, ops, mem] = process.argv.slice(2);
  const passphrase = readFileSync(passFile, 'utf-8').replace(/\r?\n$/, '');
  if (command === 'encrypt') {
    const data = JSON.parse(readFileSync(path, 'utf-8'));
    let identity = null;
    if (data.identity) {
      const seed = b64decode(data.identity.seed);
      const pair = (await sumo()).crypto_sign_seed_keypair(seed);
      identity = { seed, publicKey: pair.publicKey };
    }
    const text = await encryptBackup(
      {
        created: data.created,
        createdBy: data.createdBy,
        identity,
        keys: data.keys.map((k: any) => ({
          ...k,
          key: k.key === null ? null : b64decode(k.key),
          epochs: new Map(
            Object.entries(k.epochs ?? {}).map(([e, key]) => [Number(e), b64decode(key as string)])
          )
        }))
      },
      passphrase,
      ops ? { opslimit: Number(ops), memlimit: Number(mem) } : {}
    );
    process.stdout.write(text);
  } else if (command === 'decrypt') {
    try {
      const content = await decryptBackup(readFileSync(path, 'utf-8'), passphrase);
      const out = {
        ...content,
        identity: content.identity
          ? { seed: b64encode(content.identity.seed), publicKey: b64encode(content.identity.publicKey) }
          : null,
        keys: content.keys.map(k => ({
          ...k,
          key: k.key === null ? null : b64encode(k.key),
          epochs: Object.fromEntries(
            [...(k.epochs ?? new Map()).entries()].map(([e, key]) => [String(e), b64encode(key)])
          )
        }))
      };
      process.stdout.write(JSON.stringify({ ok: true, content: out }) + '\n');
    } catch (e) {
      if (!(e instanceof BackupError)) {
        throw e;
      }
      process.stdout.write(JSON.stringify({ ok: false, kind: e.kind, message: e.message }) + '\n');
    }
  } else {
    throw new Error(`unknown command ${command}`);
  }
}

main().catch(e => {
  console.error(e);
  process.exit(2);
});
