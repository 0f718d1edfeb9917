/**
 * Lockboxes, the keyring and rotation (issue 12): the TypeScript twin of the lockbox parts of
 * secsync_jupyter/protocol/epochs.py (same checks in the same order, same codes and fields);
 * both pass tests/vectors/epoch-vectors.json. Wire format: docs/protocol.md, "Key epochs,
 * lockboxes and links".
 *
 * A lockbox `{docId, epoch, recipient, box}` is an epoch key sealed (`crypto_box_seal`) to
 * the recipient's box key, derived from its Ed25519 key (`boxPublicKey`).
 */
import { b64decode, b64encode } from './base64';
import { canonicalizeStrict } from './canonical';
import { SignatureKeyPair } from './crypto';
import { checkedInt, EPOCH_KEY_BYTES, epochInfo, epochKeyCheck, verifyEpochKey } from './epochs';
import { boxPublicKey, boxSecretKey } from './identity';
import { MembershipEntry, MembershipState, nextEntry } from './membership';
import { err, has, isPlainObject, MembershipError } from './membershipError';
import { sodium, utf8Encode } from './sodium';

export const DOMAIN_LOCKBOXES = 'secsync_jupyter_lockboxes';
/** crypto_box_seal of a 32-byte key: ephemeral public key (32) + MAC (16) + key (32) */
export const LOCKBOX_BOX_BYTES = 80;
const LOCKBOX_FIELDS = ['docId', 'epoch', 'recipient', 'box'];
const B64_32 = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
const B64_80 = /^[A-Za-z0-9_-]{106}[AEIMQUYcgkosw048]$/;
const LOG_DOC_ID = /^m1_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

export interface Lockbox {
  docId: string;
  epoch: number;
  recipient: string;
  box: string;
}

/** A fresh random epoch key (32 bytes). */
export function generateEpochKey(): Uint8Array {
  return sodium().randombytes_buf(EPOCH_KEY_BYTES);
}

function keyArg(key: unknown, code = 780): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== EPOCH_KEY_BYTES) {
    throw err(code, 'key', `an epoch key is ${EPOCH_KEY_BYTES} bytes`);
  }
  return key;
}

/**
 * Parse a lockbox record strictly: 760 naming the field (an unknown field first, the first
 * in sorted order; then missing fields and docId, epoch, recipient, box in that order).
 */
export function parseLockbox(obj: unknown): Lockbox {
  if (!isPlainObject(obj)) {
    throw err(760, 'lockbox', 'expected a JSON object');
  }
  const unknown = Object.keys(obj)
    .filter((k) => !LOCKBOX_FIELDS.includes(k))
    .sort();
  if (unknown.length) {
    throw err(760, unknown[0].slice(0, 64), 'unknown field');
  }
  for (const name of LOCKBOX_FIELDS) {
    if (!has(obj, name) || obj[name] === null || obj[name] === undefined) {
      throw err(760, name, 'missing field');
    }
  }
  if (typeof obj.docId !== 'string' || !LOG_DOC_ID.test(obj.docId)) {
    throw err(760, 'docId', 'expected the id of a document with a log');
  }
  const epoch = checkedInt(obj.epoch, 'epoch', 760);
  if (typeof obj.recipient !== 'string' || !B64_32.test(obj.recipient)) {
    throw err(760, 'recipient', 'expected base64url of 32 bytes');
  }
  if (typeof obj.box !== 'string' || !B64_80.test(obj.box)) {
    throw err(760, 'box', `expected base64url of ${LOCKBOX_BOX_BYTES} bytes`);
  }
  return { docId: obj.docId, epoch, recipient: obj.recipient, box: obj.box };
}

/**
 * Seal `key` to `recipient` (randomized: every call gives another box). 780 for a bad key
 * or a recipient that is not a usable Ed25519 public key.
 */
export function sealLockbox(
  docId: string,
  epoch: number,
  key: Uint8Array,
  recipient: string | Uint8Array
): Lockbox {
  let boxKey: Uint8Array;
  try {
    boxKey = boxPublicKey(recipient);
  } catch (e) {
    throw err(780, 'recipient', e instanceof MembershipError ? e.detail : String(e));
  }
  const sealed = sodium().crypto_box_seal(keyArg(key), boxKey);
  const name = typeof recipient === 'string' ? recipient : b64encode(recipient);
  return { docId, epoch, recipient: name, box: b64encode(sealed) };
}

/** One lockbox per recipient, sorted by recipient. */
export function makeLockboxes(
  docId: string,
  epoch: number,
  key: Uint8Array,
  recipients: Iterable<string>
): Lockbox[] {
  keyArg(key);
  return [...new Set(recipients)].sort().map((r) => sealLockbox(docId, epoch, key, r));
}

/**
 * Lockboxes of `key` for everyone who gets one in `state` at `now` (every member and live
 * link, sorted), for `epoch` (default: the state's current epoch).
 */
export function stateLockboxes(
  state: MembershipState,
  key: Uint8Array,
  options: { epoch?: number; now?: number } = {}
): Lockbox[] {
  const recipients = state.recipients(options.now ?? Date.now());
  return makeLockboxes(state.docId, options.epoch ?? state.epoch, key, recipients);
}

/**
 * `b64(BLAKE2b-256("secsync_jupyter_lockboxes" + canon({docId, epoch, boxes: [[recipient,
 * box], …] sorted by recipient})))`: what `rotate-key` commits to.
 */
export function lockboxSetHash(docId: string, epoch: number, lockboxes: Iterable<unknown>): string {
  const boxes = [...lockboxes]
    .map(parseLockbox)
    .map((lb) => [lb.recipient, lb.box])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  const data = DOMAIN_LOCKBOXES + canonicalizeStrict({ docId, epoch, boxes });
  return b64encode(sodium().crypto_generichash(32, utf8Encode(data)));
}

/**
 * The relay's check of the lockboxes uploaded with a `rotate-key` (`state` contains it):
 * well-formed (760), this document and epoch (763), exactly one per recipient of the epoch
 * (765, field `recipient`), together matching the entry's `lockboxHash` (764). Returns the
 * parsed lockboxes sorted by recipient; errors carry `.index`.
 */
export function checkLockboxSet(
  state: MembershipState,
  epoch: number,
  lockboxes: unknown
): Lockbox[] {
  const info = epochInfo(state, epoch);
  if (info.lockboxHash === undefined) {
    throw err(766, 'epoch', 'epoch 0 has no rotate-key entry');
  }
  if (!Array.isArray(lockboxes)) {
    throw err(760, 'lockboxes', 'expected an array');
  }
  const recipients = info.recipients ?? new Set<string>();
  const parsed: Lockbox[] = [];
  const seen = new Set<string>();
  lockboxes.forEach((obj, index) => {
    try {
      const lb = parseLockbox(obj);
      if (lb.docId !== state.docId) {
        throw err(763, 'docId');
      }
      if (lb.epoch !== epoch) {
        throw err(763, 'epoch');
      }
      if (seen.has(lb.recipient)) {
        throw err(765, 'recipient', 'two lockboxes for one recipient');
      }
      if (!recipients.has(lb.recipient)) {
        throw err(765, 'recipient', 'not a member or live link at the rotation');
      }
      seen.add(lb.recipient);
      parsed.push(lb);
    } catch (e) {
      if (e instanceof MembershipError) {
        e.index = index;
      }
      throw e;
    }
  });
  if (seen.size !== recipients.size) {
    const missing = [...recipients].filter((r) => !seen.has(r)).sort()[0];
    throw err(765, 'recipient', `no lockbox for ${missing}`);
  }
  if (lockboxSetHash(state.docId, epoch, parsed) !== info.lockboxHash) {
    throw err(764, 'lockboxHash');
  }
  return parsed.sort((a, b) => (a.recipient < b.recipient ? -1 : 1));
}

/**
 * The relay's check of one lockbox given outside a rotation: well-formed (760), this
 * document (763), a known epoch (766), for a current member or live link (765).
 */
export function checkLockbox(
  state: MembershipState,
  lockbox: unknown,
  options: { now?: number } = {}
): Lockbox {
  const lb = parseLockbox(lockbox);
  if (lb.docId !== state.docId) {
    throw err(763, 'docId');
  }
  epochInfo(state, lb.epoch);
  const now = options.now ?? Date.now();
  if (!state.isMember(lb.recipient) && !state.isLiveLink(lb.recipient, now)) {
    throw err(765, 'recipient', 'not a member or live link');
  }
  return lb;
}

/**
 * Open one's own lockbox and check the key: 760 malformed, 763 another document or
 * recipient, 766 unknown epoch, 761 cannot be opened, 762 not the committed key.
 */
export function openLockbox(
  state: MembershipState,
  keyPair: SignatureKeyPair,
  lockbox: unknown
): Uint8Array {
  const lb = parseLockbox(lockbox);
  if (lb.docId !== state.docId) {
    throw err(763, 'docId');
  }
  if (lb.recipient !== b64encode(keyPair.publicKey)) {
    throw err(763, 'recipient', 'sealed to someone else');
  }
  epochInfo(state, lb.epoch);
  let key: Uint8Array;
  try {
    key = sodium().crypto_box_seal_open(
      b64decode(lb.box),
      boxPublicKey(keyPair.publicKey),
      boxSecretKey(keyPair)
    );
  } catch {
    throw err(761, 'box');
  }
  if (key.length !== EPOCH_KEY_BYTES) {
    throw err(761, 'box', 'does not hold a 32-byte key');
  }
  verifyEpochKey(state, lb.epoch, key);
  return key;
}

/**
 * The epoch keys one member holds (epoch → key); older epochs are kept so history stays
 * readable. Store `toJson()` next to the identity (never on the relay).
 */
export class Keyring {
  private readonly keys = new Map<number, Uint8Array>();

  constructor(keys?: Iterable<[number, Uint8Array]>) {
    for (const [epoch, key] of keys ?? []) {
      this.add(epoch, key);
    }
  }

  /** Add a key; 762 if this epoch already has another key. */
  add(epoch: number, key: Uint8Array): void {
    if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 0) {
      throw err(780, 'epoch', 'expected an epoch number');
    }
    keyArg(key);
    const old = this.keys.get(epoch);
    if (old !== undefined && b64encode(old) !== b64encode(key)) {
      throw err(762, 'key', `epoch ${epoch} already has another key`);
    }
    this.keys.set(epoch, new Uint8Array(key));
  }

  /** Open one's own lockbox (see `openLockbox`), add the key, return its epoch. */
  addFromLockbox(state: MembershipState, keyPair: SignatureKeyPair, lockbox: unknown): number {
    const key = openLockbox(state, keyPair, lockbox);
    const epoch = parseLockbox(lockbox).epoch;
    this.add(epoch, key);
    return epoch;
  }

  /** The key of `epoch`; 766 if this member does not hold it. */
  key(epoch: number): Uint8Array {
    const key = this.keys.get(epoch);
    if (key === undefined) {
      throw err(766, 'epoch', `no key for epoch ${epoch}`);
    }
    return key;
  }

  has(epoch: number): boolean {
    return this.keys.has(epoch);
  }

  get size(): number {
    return this.keys.size;
  }

  get epochs(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  get newest(): number | null {
    return this.keys.size ? Math.max(...this.keys.keys()) : null;
  }

  toJson(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of this.epochs) {
      out[String(e)] = b64encode(this.keys.get(e) as Uint8Array);
    }
    return out;
  }

  static fromJson(data: unknown): Keyring {
    if (!isPlainObject(data)) {
      throw err(780, 'keyring', 'expected a JSON object');
    }
    const ring = new Keyring();
    for (const [name, value] of Object.entries(data)) {
      if (!/^[0-9]+$/.test(name) || String(Number(name)) !== name) {
        throw err(780, 'keyring', `bad epoch ${JSON.stringify(name)}`);
      }
      if (typeof value !== 'string' || !B64_32.test(value)) {
        throw err(780, 'keyring', `bad key for epoch ${name}`);
      }
      ring.add(Number(name), b64decode(value));
    }
    return ring;
  }
}

/**
 * What an admin's rotation makes: the entry to append, the state after it, the new key
 * (for the keyring and the next snapshot) and the lockboxes to upload with the entry.
 */
export interface Rotation {
  entry: MembershipEntry;
  state: MembershipState;
  epoch: number;
  key: Uint8Array;
  lockboxes: Lockbox[];
}

/**
 * A new key epoch: a random key (`key` only for tests), a lockbox for every member and
 * every link live at `at`, and the signed `rotate-key` entry committing to both. 712 unless
 * `keyPair` is an admin's (and the other entry rules), 780 for bad arguments.
 */
export function createRotation(
  state: MembershipState,
  keyPair: SignatureKeyPair,
  options: { key?: Uint8Array; at?: number } = {}
): Rotation {
  const key = options.key === undefined ? generateEpochKey() : keyArg(options.key);
  const at = options.at ?? Math.max(Date.now(), state.headAt);
  const epoch = state.epoch + 1;
  const lockboxes = makeLockboxes(state.docId, epoch, key, state.recipients(at));
  const r = nextEntry(
    state,
    keyPair,
    'rotate-key',
    {
      epoch,
      keyCheck: epochKeyCheck(state.docId, epoch, key),
      lockboxHash: lockboxSetHash(state.docId, epoch, lockboxes)
    },
    { at }
  );
  return { entry: r.entry, state: r.state, epoch, key, lockboxes };
}
