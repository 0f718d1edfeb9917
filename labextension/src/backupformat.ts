/**
 * The key backup file format (docs/backup.md), shared with the Python client
 * (secsync_jupyter/client/backup.py): document keys (version 2: with each document's epoch
 * keys after key rotations, issue 12) and a signing identity, encrypted with a
 * key derived from a passphrase by libsodium's crypto_pwhash (Argon2id v1.3) and sealed with
 * crypto_secretbox (XSalsa20-Poly1305).
 *
 * libsodium-wrappers (bundled for the protocol) has no crypto_pwhash; the sumo build does. It
 * is loaded here on first use only (a separate chunk), so the main bundle does not grow.
 */
import type SodiumSumo from 'libsodium-wrappers-sumo';

import { b64decode, b64encode, isB64 } from './secsync/base64';
import { isValidDocId } from './secsync/ids';
import { Keyring } from './secsync/lockbox';

export const BACKUP_FORMAT = 'secsync-jupyter-key-backup';
/** What writers write (2: key entries may carry `epochs` and `seen`; `key` may be null). */
export const BACKUP_VERSION = 2;
/** What readers read (version 1 files still import). */
export const READ_VERSIONS: readonly number[] = [1, 2];
export const KDF_NAME = 'argon2id13';
export const CIPHER_NAME = 'xsalsa20poly1305';
/** libsodium's OPSLIMIT_MODERATE / MEMLIMIT_MODERATE: about a second, 256 MiB. */
export const OPSLIMIT = 3;
export const MEMLIMIT = 256 * 1024 * 1024;
const MIN_OPSLIMIT = 1;
const MAX_OPSLIMIT = 10;
const MIN_MEMLIMIT = 8 * 1024;
const MAX_MEMLIMIT = 1024 * 1024 * 1024;
const SALT_BYTES = 16;
const NONCE_BYTES = 24;
const MAC_BYTES = 16;
export const MAX_FILE_BYTES = 16 * 1024 * 1024;
const MAX_KEYS = 100000;
const MAX_EPOCHS = 100000;
const MAX_NAME_CHARS = 1024;
export const MIN_PASSPHRASE_CHARS = 10;

/** Why a backup cannot be read or written; `kind` lets the UI choose its words. */
export class BackupError extends Error {
  constructor(
    readonly kind: 'not-a-backup' | 'version' | 'damaged' | 'passphrase',
    message: string
  ) {
    super(message);
    this.name = 'BackupError';
  }
}

export interface IBackupKey {
  docId: string;
  /** the document (epoch-0) key; null for a member holding only later epochs' keys */
  key: Uint8Array | null;
  /** a file name the key was last used with (a hint for people) */
  name: string | null;
  /** when the key was stored where it was exported from (ISO 8601) */
  created: string | null;
  /** keys of key epochs 1, 2, … (after key rotations), epoch -> key */
  epochs?: Map<number, Uint8Array>;
  /** the newest epoch of a snapshot the keyring's owner accepted (rollback check 769) */
  seen?: number | null;
}

export interface IBackupIdentity {
  publicKey: Uint8Array;
  /** the Ed25519 seed (the first half of libsodium's 64-byte private key) */
  seed: Uint8Array;
}

export interface IBackupContent {
  created: string;
  createdBy: string;
  identity: IBackupIdentity | null;
  keys: IBackupKey[];
}

let sumoPromise: Promise<typeof SodiumSumo> | null = null;

/** libsodium's sumo build, loaded on first use. */
export function sumo(): Promise<typeof SodiumSumo> {
  if (!sumoPromise) {
    sumoPromise = import('libsodium-wrappers-sumo').then(async mod => {
      const s = ((mod as any).default ?? mod) as typeof SodiumSumo;
      await s.ready;
      return s;
    });
  }
  return sumoPromise;
}

function damaged(what: string): BackupError {
  return new BackupError('damaged', `The key backup is damaged: ${what}.`);
}

function optionalString(value: unknown, what: string, limit = MAX_NAME_CHARS): string | null {
  if (value === null || value === undefined) {
    return null;
  }
  if (typeof value !== 'string' || value.length > limit) {
    throw damaged(`${what} is not a string of at most ${limit} characters`);
  }
  return value;
}

function bytesField(value: unknown, length: number | null, what: string): Uint8Array {
  if (typeof value !== 'string' || !isB64(value)) {
    throw damaged(`${what} is not base64url`);
  }
  const bytes = b64decode(value);
  if (length !== null && bytes.length !== length) {
    throw damaged(`${what} is not ${length} bytes`);
  }
  return bytes;
}

function epochsField(value: unknown, docId: string): Map<number, Uint8Array> {
  const epochs = new Map<number, Uint8Array>();
  if (value === null || value === undefined) {
    return epochs;
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw damaged(`the epoch keys of document ${docId} are not an object`);
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_EPOCHS) {
    throw damaged(`the epoch keys of document ${docId} are not an object`);
  }
  for (const [name, key] of entries) {
    if (!/^[0-9]+$/.test(name) || String(Number(name)) !== name) {
      throw damaged(`document ${docId} has an epoch ${JSON.stringify(name)} that is not a number`);
    }
    if (name === '0') {
      throw damaged(`document ${docId} lists epoch 0 among its epoch keys`);
    }
    epochs.set(Number(name), bytesField(key, 32, `the key of epoch ${name} of document ${docId}`));
  }
  return epochs;
}

/** The decrypted content (a parsed JSON object) checked field by field. */
export async function parseContent(data: unknown): Promise<IBackupContent> {
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    throw damaged('its content is not a JSON object');
  }
  const d = data as Record<string, unknown>;
  if (!Array.isArray(d.keys) || d.keys.length > MAX_KEYS) {
    throw damaged("'keys' is not a list");
  }
  const keys: IBackupKey[] = [];
  const seen = new Set<string>();
  d.keys.forEach((item: unknown, i: number) => {
    if (!item || typeof item !== 'object' || Array.isArray(item)) {
      throw damaged(`key ${i} is not an object`);
    }
    const k = item as Record<string, unknown>;
    if (!isValidDocId(k.docId)) {
      throw damaged(`key ${i} has no valid document id`);
    }
    if (seen.has(k.docId)) {
      throw damaged(`document ${k.docId} is listed twice`);
    }
    seen.add(k.docId);
    const epochs = epochsField(k.epochs, k.docId);
    const newest = k.seen;
    if (
      newest !== null &&
      newest !== undefined &&
      (typeof newest !== 'number' || !Number.isInteger(newest) || newest < 0 || newest >= 2 ** 31)
    ) {
      throw damaged(`'seen' of document ${k.docId} is not an epoch number`);
    }
    keys.push({
      docId: k.docId,
      key:
        (k.key === null || k.key === undefined) && epochs.size > 0
          ? null
          : bytesField(k.key, 32, `the key of document ${k.docId}`),
      name: optionalString(k.name, `the name of document ${k.docId}`),
      created: optionalString(k.created, `the date of document ${k.docId}`, 64),
      epochs,
      seen: typeof newest === 'number' ? newest : null
    });
  });
  let identity: IBackupIdentity | null = null;
  if (d.identity !== null && d.identity !== undefined) {
    if (typeof d.identity !== 'object' || Array.isArray(d.identity)) {
      throw damaged("'identity' is not an object");
    }
    const ident = d.identity as Record<string, unknown>;
    const seed = bytesField(ident.seed, 32, "the identity's seed");
    const publicKey = bytesField(ident.publicKey, 32, "the identity's public key");
    const s = await sumo();
    const pair = s.crypto_sign_seed_keypair(seed);
    if (b64encode(pair.publicKey) !== b64encode(publicKey)) {
      throw damaged("the identity's public key does not belong to its seed");
    }
    identity = { publicKey, seed };
  }
  return {
    created: optionalString(d.created, "'created'", 64) ?? '',
    createdBy: optionalString(d.createdBy, "'createdBy'", 64) ?? '',
    identity,
    keys
  };
}

function contentJson(content: IBackupContent): Record<string, unknown> {
  return {
    created: content.created,
    createdBy: content.createdBy,
    identity: content.identity
      ? { publicKey: b64encode(content.identity.publicKey), seed: b64encode(content.identity.seed) }
      : null,
    keys: content.keys.map(k => ({
      docId: k.docId,
      key: k.key ? b64encode(k.key) : null,
      name: k.name,
      created: k.created,
      ...(k.epochs && k.epochs.size > 0
        ? {
            epochs: Object.fromEntries(
              [...k.epochs.entries()].sort((a, b) => a[0] - b[0]).map(([e, key]) => [String(e), b64encode(key)])
            )
          }
        : {}),
      ...(typeof k.seen === 'number' ? { seen: k.seen } : {})
    }))
  };
}

async function derive(
  passphrase: string,
  salt: Uint8Array,
  opslimit: number,
  memlimit: number
): Promise<Uint8Array> {
  if (!passphrase) {
    throw new BackupError('passphrase', 'The passphrase is empty.');
  }
  const s = await sumo();
  return s.crypto_pwhash(
    32,
    new TextEncoder().encode(passphrase.normalize('NFC')),
    salt,
    opslimit,
    memlimit,
    s.crypto_pwhash_ALG_ARGON2ID13
  );
}

export interface IEncryptOptions {
  opslimit?: number;
  memlimit?: number;
  /** refuse passphrases shorter than MIN_PASSPHRASE_CHARS (default true) */
  checkStrength?: boolean;
}

/** The backup file's text (JSON, ends with a newline). */
export async function encryptBackup(
  content: IBackupContent,
  passphrase: string,
  options: IEncryptOptions = {}
): Promise<string> {
  const opslimit = options.opslimit ?? OPSLIMIT;
  const memlimit = options.memlimit ?? MEMLIMIT;
  if ((options.checkStrength ?? true) && passphrase.length < MIN_PASSPHRASE_CHARS) {
    throw new BackupError(
      'passphrase',
      `Choose a passphrase of at least ${MIN_PASSPHRASE_CHARS} characters.`
    );
  }
  const s = await sumo();
  const salt = s.randombytes_buf(SALT_BYTES);
  const nonce = s.randombytes_buf(NONCE_BYTES);
  const key = await derive(passphrase, salt, opslimit, memlimit);
  const plaintext = new TextEncoder().encode(JSON.stringify(contentJson(content)));
  const ciphertext = s.crypto_secretbox_easy(plaintext, nonce, key);
  const outer = {
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    kdf: { name: KDF_NAME, opslimit, memlimit, salt: b64encode(salt) },
    cipher: { name: CIPHER_NAME, nonce: b64encode(nonce) },
    ciphertext: b64encode(ciphertext)
  };
  return JSON.stringify(outer, null, 2) + '\n';
}

interface IEnvelope {
  opslimit: number;
  memlimit: number;
  salt: Uint8Array;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

function intIn(value: unknown, low: number, high: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < low || value > high) {
    throw damaged(`${what} is not a whole number from ${low} to ${high}`);
  }
  return value;
}

/**
 * Checks that `text` is a backup this version reads (before asking for the passphrase);
 * throws BackupError otherwise.
 */
export function parseEnvelope(text: string): IEnvelope {
  const notOne = (why: string) =>
    new BackupError('not-a-backup', `This is not a secsync-jupyter key backup (${why}).`);
  if (text.length > MAX_FILE_BYTES) {
    throw notOne('the file is too large');
  }
  let data: any;
  try {
    data = JSON.parse(text);
  } catch {
    throw notOne('not JSON');
  }
  if (!data || typeof data !== 'object' || data.format !== BACKUP_FORMAT) {
    throw notOne("no 'format' field of one");
  }
  if (!READ_VERSIONS.includes(data.version)) {
    throw new BackupError(
      'version',
      `Key backup version ${JSON.stringify(data.version)} is not supported (this version reads versions ${READ_VERSIONS.join(', ')}).`
    );
  }
  const kdf = data.kdf;
  const cipher = data.cipher;
  if (!kdf || typeof kdf !== 'object' || kdf.name !== KDF_NAME) {
    throw damaged(`'kdf' is not ${KDF_NAME}`);
  }
  if (!cipher || typeof cipher !== 'object' || cipher.name !== CIPHER_NAME) {
    throw damaged(`'cipher' is not ${CIPHER_NAME}`);
  }
  const salt = bytesField(kdf.salt, SALT_BYTES, 'the salt');
  const nonce = bytesField(cipher.nonce, NONCE_BYTES, 'the nonce');
  const ciphertext = bytesField(data.ciphertext, null, 'the ciphertext');
  if (ciphertext.length < MAC_BYTES) {
    throw damaged('the ciphertext is too short');
  }
  return {
    opslimit: intIn(kdf.opslimit, MIN_OPSLIMIT, MAX_OPSLIMIT, 'kdf.opslimit'),
    memlimit: intIn(kdf.memlimit, MIN_MEMLIMIT, MAX_MEMLIMIT, 'kdf.memlimit'),
    salt,
    nonce,
    ciphertext
  };
}

/** Reads a backup file's text; BackupError with a message for people. */
export async function decryptBackup(text: string, passphrase: string): Promise<IBackupContent> {
  const env = parseEnvelope(text);
  const key = await derive(passphrase, env.salt, env.opslimit, env.memlimit);
  const s = await sumo();
  let plaintext: Uint8Array;
  try {
    plaintext = s.crypto_secretbox_open_easy(env.ciphertext, env.nonce, key);
  } catch {
    throw new BackupError('passphrase', 'Wrong passphrase, or the backup file was changed.');
  }
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plaintext));
  } catch {
    throw damaged('its content is not JSON');
  }
  return parseContent(data);
}

export type ImportDecision = 'add' | 'same' | 'conflict';

/**
 * What importing `incoming` does to each document key (epoch 0), given the stored keys.
 * Entries without a document key (only epoch keys) are not in the plan (planKeyringImport).
 */
export function planImport(
  stored: (docId: string) => Uint8Array | null,
  incoming: IBackupKey[]
): { key: IBackupKey & { key: Uint8Array }; decision: ImportDecision }[] {
  return incoming
    .filter((key): key is IBackupKey & { key: Uint8Array } => key.key !== null)
    .map(key => {
      const mine = stored(key.docId);
      if (!mine) {
        return { key, decision: 'add' as const };
      }
      return { key, decision: sameBytes(mine, key.key) ? ('same' as const) : ('conflict' as const) };
    });
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** What importing one document's epoch keys does (planKeyringImport). */
export interface IKeyringPlan {
  docId: string;
  /** the stored keyring with the backup's new epochs added (store it when `changed`) */
  keyring: Keyring;
  /** the newer of the stored and the backup's `seen` */
  seen: number | null;
  added: number[];
  same: number[];
  /** epochs whose stored key differs from the backup's: the stored key is kept */
  conflicts: number[];
  changed: boolean;
}

/**
 * The epoch keys (1 and up) of each backup entry that has any, merged into the stored
 * keyring (`stored(docId)`, e.g. keystore.ts getKeyring): new epochs are added, a
 * different key for an epoch is a conflict and never replaces the stored one; `seen`
 * only grows. Epoch 0 (the document key) is planImport's.
 */
export function planKeyringImport(
  stored: (docId: string) => { keyring: Keyring; seen: number | null } | null,
  incoming: IBackupKey[]
): IKeyringPlan[] {
  const plans: IKeyringPlan[] = [];
  for (const entry of incoming) {
    const epochs = entry.epochs ?? new Map<number, Uint8Array>();
    const theirSeen = typeof entry.seen === 'number' ? entry.seen : null;
    if (epochs.size === 0 && theirSeen === null) {
      continue;
    }
    const mine = stored(entry.docId);
    const keyring = new Keyring();
    for (const e of mine?.keyring.epochs ?? []) {
      keyring.add(e, mine!.keyring.key(e));
    }
    const plan: IKeyringPlan = {
      docId: entry.docId,
      keyring,
      seen: mine?.seen ?? null,
      added: [],
      same: [],
      conflicts: [],
      changed: false
    };
    for (const [epoch, key] of [...epochs.entries()].sort((a, b) => a[0] - b[0])) {
      if (!keyring.has(epoch)) {
        keyring.add(epoch, key);
        plan.added.push(epoch);
        plan.changed = true;
      } else if (sameBytes(keyring.key(epoch), key)) {
        plan.same.push(epoch);
      } else {
        plan.conflicts.push(epoch);
      }
    }
    if (theirSeen !== null && (plan.seen === null || theirSeen > plan.seen)) {
      plan.seen = theirSeen;
      plan.changed = true;
    }
    plans.push(plan);
  }
  return plans;
}
