/**
 * Key epochs and links in the membership log (issue 12): the rules of the `rotate-key`,
 * `add-link`, `remove-link` entries and of `add-member` signed by a link, the key check of
 * an epoch and the epoch rules for snapshots. The TypeScript twin of the issue-12 parts of
 * secsync_jupyter/protocol/membership.py and epochs.py; lockboxes and the keyring are in
 * lockbox.ts, link secrets and fragments in links.ts. All pass
 * tests/vectors/epoch-vectors.json. Wire format: docs/protocol.md, "Key epochs, lockboxes
 * and links".
 *
 * This module does not import membership.ts at run time (membership.ts uses the rules here).
 */
import { b64encode } from './base64';
import { canonicalizeStrict } from './canonical';
import type { MembershipEntry, Role } from './membership';
import type { Builder, LogHead, Member, MembershipState } from './membershipState';
import { err } from './membershipError';
import { sodium, utf8Encode } from './sodium';

export const DOMAIN_EPOCH_KEY_CHECK = 'secsync_jupyter_epoch_key_check';
export const EPOCH_KEY_BYTES = 32;
/** roles a link may carry (a link never manages anything) */
export const LINK_ROLES = ['viewer', 'editor'] as const;

const RANK: Record<Role, number> = { viewer: 0, editor: 1, admin: 2 };

/**
 * An invitation link: a member of kind *link*. It may add people with a role no higher than
 * its own while it is live, and holds lockboxes; nothing else.
 */
export interface Link {
  pubKey: string;
  role: Role;
  label: string;
  /** the admin who added it, when (ms) and at which entry */
  addedBy: string;
  at: number;
  seq: number;
  /** ms since the Unix epoch; the link adds people only with `at <= expiresAt` */
  expiresAt?: number;
  /** the `remove-link` entry's sequence number (a removed link never comes back) */
  removed?: number;
}

/** A key epoch: 0 from the root, each later one from a `rotate-key` entry. */
export interface EpochInfo {
  epoch: number;
  /** the entry that began it (0: the root) */
  seq: number;
  /** who rotated, when (the root's signer and time for epoch 0) */
  signer: string;
  at: number;
  /** `rotate-key` commitments (absent for epoch 0) */
  keyCheck?: string;
  lockboxHash?: string;
  /** who must get a lockbox of this epoch: the members and links live at `at` */
  recipients?: ReadonlySet<string>;
}

/** Not removed and not expired at `now` (ms since the Unix epoch). */
export function linkLive(link: Link, now: number): boolean {
  return link.removed === undefined && (link.expiresAt === undefined || now <= link.expiresAt);
}

export function linkToJson(link: Link): Record<string, unknown> {
  return {
    role: link.role,
    label: link.label,
    addedBy: link.addedBy,
    at: link.at,
    seq: link.seq,
    ...(link.expiresAt !== undefined ? { expiresAt: link.expiresAt } : {}),
    ...(link.removed !== undefined ? { removed: link.removed } : {})
  };
}

export function epochInfoToJson(info: EpochInfo): Record<string, unknown> {
  const out: Record<string, unknown> = {
    epoch: info.epoch,
    seq: info.seq,
    signer: info.signer,
    at: info.at
  };
  if (info.keyCheck !== undefined) {
    out.keyCheck = info.keyCheck;
    out.lockboxHash = info.lockboxHash;
    out.recipients = [...(info.recipients ?? [])].sort();
  }
  return out;
}

/**
 * An entry signed by a link identity: only `add-member` of a new person, with a role no
 * higher than the link's, while the link is live.
 */
export function applyLinkSigned(b: Builder, e: MembershipEntry, link: Link): void {
  if (link.removed !== undefined) {
    throw err(755, 'signer', 'the link was removed');
  }
  if (e.kind !== 'add-member') {
    throw err(753, 'kind', 'a link may only add members');
  }
  if (link.expiresAt !== undefined && e.at > link.expiresAt) {
    throw err(754, 'at', 'the link expired');
  }
  const target = e.target as string;
  if (b.members.has(target)) {
    throw err(715, 'target');
  }
  if (b.links.has(target)) {
    throw err(758, 'target', "this key is a link's");
  }
  if (RANK[e.role as Role] > RANK[link.role]) {
    throw err(756, 'role', `the link gives at most ${link.role}`);
  }
  const member: Member = {
    pubKey: target,
    role: e.role as Role,
    addedBy: e.signer,
    at: e.at,
    seq: e.seq,
    ...(e.name !== undefined ? { name: e.name } : {}),
    via: e.signer
  };
  b.set(e, target, member);
  b.holders.add(target);
}

/** rotate-key, add-link, remove-link: all need an admin signer. */
export function applyEpochKind(
  b: Builder,
  e: MembershipEntry,
  signer: Member,
  target: Member | undefined
): void {
  if (signer.role !== 'admin') {
    throw err(712, 'signer');
  }
  if (e.kind === 'rotate-key') {
    const current = b.epochs.length - 1;
    if (e.epoch !== current + 1) {
      throw err(751, 'epoch', `expected ${current + 1}`);
    }
    const recipients = new Set<string>(b.members.keys());
    for (const [k, link] of b.links) {
      if (linkLive(link, e.at)) {
        recipients.add(k);
      }
    }
    b.epochs.push(
      Object.freeze({
        epoch: current + 1,
        seq: e.seq,
        signer: e.signer,
        at: e.at,
        keyCheck: e.keyCheck,
        lockboxHash: e.lockboxHash,
        recipients
      })
    );
    b.holders = new Set(recipients);
  } else if (e.kind === 'add-link') {
    const targetKey = e.target as string;
    if (!(LINK_ROLES as readonly string[]).includes(e.role as string)) {
      throw err(752, 'role', 'a link is a viewer or an editor');
    }
    if (e.expiresAt !== undefined && e.expiresAt <= e.at) {
      throw err(759, 'expiresAt', 'the link would be expired when added');
    }
    if (target) {
      throw err(715, 'target');
    }
    if (b.links.has(targetKey)) {
      throw err(758, 'target', 'this key was a link already');
    }
    b.links.set(
      targetKey,
      Object.freeze({
        pubKey: targetKey,
        role: e.role as Role,
        label: e.label as string,
        addedBy: e.signer,
        at: e.at,
        seq: e.seq,
        ...(e.expiresAt !== undefined ? { expiresAt: e.expiresAt } : {})
      })
    );
    b.holders.add(targetKey);
  } else {
    const targetKey = e.target as string;
    const link = b.links.get(targetKey);
    if (!link || link.removed !== undefined) {
      throw err(757, 'target', 'not a live link');
    }
    b.links.set(targetKey, Object.freeze({ ...link, removed: e.seq }));
  }
}

function epochKey(key: unknown, code = 780): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== EPOCH_KEY_BYTES) {
    throw err(code, 'key', `an epoch key is ${EPOCH_KEY_BYTES} bytes`);
  }
  return key;
}

/**
 * `b64(BLAKE2b-256(key=key, "secsync_jupyter_epoch_key_check" + canon({docId, epoch})))`:
 * commits a `rotate-key` entry to its key without revealing it.
 */
export function epochKeyCheck(docId: string, epoch: number, key: Uint8Array): string {
  const message = utf8Encode(DOMAIN_EPOCH_KEY_CHECK + canonicalizeStrict({ docId, epoch }));
  return b64encode(sodium().crypto_generichash(32, message, epochKey(key)));
}

/** `state`'s epoch `epoch` (766 if the log has no such epoch). */
export function epochInfo(state: MembershipState, epoch: unknown, field = 'epoch'): EpochInfo {
  if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 0 || epoch > state.epoch) {
    throw err(766, field, `the log has epochs 0 … ${state.epoch}`);
  }
  return state.epochs[epoch];
}

/**
 * 762 unless `key` matches epoch `epoch`'s `keyCheck` (766: no such epoch). Epoch 0 has no
 * `rotate-key`: its key is checked by decrypting a snapshot of epoch 0 signed by a writer
 * (the AEAD is key-committing), so this accepts any 32 bytes for it.
 */
export function verifyEpochKey(state: MembershipState, epoch: number, key: Uint8Array): void {
  const info = epochInfo(state, epoch);
  epochKey(key, 762);
  if (info.keyCheck !== undefined && epochKeyCheck(state.docId, epoch, key) !== info.keyCheck) {
    throw err(762, 'keyCheck', "not the key this epoch's rotate-key committed to");
  }
}

function intIn(value: unknown, field: string, code: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw err(code, field, 'expected an integer');
  }
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw err(code, field, 'out of range (0 … 2^53-1)');
  }
  return value === 0 ? 0 : value;
}

/** An integer field of a lockbox / keyring / public data, 0 … 2^53-1, with `code`. */
export { intIn as checkedInt };

/**
 * A snapshot's `publicData.epoch`: an integer 0 … 2^53-1 (767 otherwise). Absent (undefined
 * or null) is epoch 0: snapshots written before issue 12 carry none, and a snapshot without
 * one under a later epoch fails the rules as epoch 0 would.
 */
export function parseEpoch(value: unknown): number {
  if (value === undefined || value === null) {
    return 0;
  }
  return intIn(value, 'epoch', 767);
}

/**
 * The epoch rules for a snapshot (`publicData.epoch` next to `logHead`), after its
 * `logHead` was checked to be an entry of `state`'s log (see the Python twin
 * `check_message_epoch`): 767 malformed or not the epoch at `logHead`; 768 older than the
 * `parent` snapshot's epoch or, for a snapshot arriving `live` (default), than the current
 * epoch; 769 older than `seen`, the newest epoch of a snapshot accepted before.
 */
export function checkMessageEpoch(
  state: MembershipState,
  epoch: unknown,
  logHead: LogHead,
  options: { parent?: number; seen?: number; live?: boolean } = {}
): number {
  const value = parseEpoch(epoch);
  if (
    !(logHead.seq >= 0 && logHead.seq <= state.head.seq) ||
    state.hashes[logHead.seq] !== logHead.hash
  ) {
    throw err(767, 'logHead', 'not an entry of this log');
  }
  const atHead = state.epochAt(logHead.seq);
  if (value !== atHead) {
    throw err(767, 'epoch', `logHead ${logHead.seq} is in epoch ${atHead}`);
  }
  if (options.parent !== undefined && value < options.parent) {
    throw err(768, 'epoch', `the parent snapshot is in epoch ${options.parent}`);
  }
  if ((options.live ?? true) && value < state.epoch) {
    throw err(768, 'epoch', `the current epoch is ${state.epoch}`);
  }
  if (options.seen !== undefined && value < options.seen) {
    throw err(769, 'epoch', `epoch ${options.seen} was seen before`);
  }
  return value;
}
