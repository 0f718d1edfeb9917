/**
 * The membership at the head of a verified log (`MembershipState`) and the builder that
 * applies entries to it (the rules of docs/protocol.md, "Roles and authority", and the
 * issue-12 kinds through epochs.ts). Split out of membership.ts, which re-exports the public
 * names; the Python twin is the state part of secsync_jupyter/protocol/membership.py.
 */
import {
  applyEpochKind,
  applyLinkSigned,
  EpochInfo,
  epochInfoToJson,
  Link,
  linkLive,
  linkToJson
} from './epochs';
import type { MembershipEntry, Role } from './membership';
import { err } from './membershipError';

const RANK: Record<Role, number> = { viewer: 0, editor: 1, admin: 2 };
const EPOCH_KINDS = new Set<string>(['rotate-key', 'add-link', 'remove-link']);

export interface LogHead {
  seq: number;
  hash: string;
}

export interface Member {
  pubKey: string;
  role: Role;
  /** who added this member (the member itself for the creator) */
  addedBy: string;
  /** when (the adding entry's timestamp, ms since the Unix epoch) */
  at: number;
  /** the adding entry's sequence number */
  seq: number;
  name?: string;
  /** the link this member joined through (its public key; the adding entry's signer) */
  via?: string;
}

export type { EpochInfo, Link } from './epochs';

export class MembershipState {
  constructor(
    readonly docId: string,
    readonly rootHash: string,
    readonly head: Readonly<LogHead>,
    readonly headAt: number,
    readonly members: ReadonlyMap<string, Readonly<Member>>,
    /** the hash of every entry, by sequence number */
    readonly hashes: readonly string[],
    /** per public key, [seq, role or null] for every change of that key's role */
    readonly history: ReadonlyMap<string, ReadonlyArray<readonly [number, Role | null]>>,
    /** issue 12: every link ever added (removed ones too, with `removed` set) */
    readonly links: ReadonlyMap<string, Readonly<Link>> = new Map(),
    /** every key epoch, oldest first (`epochs[n].epoch === n`) */
    readonly epochs: ReadonlyArray<Readonly<EpochInfo>> = [],
    /**
     * the keys that may hold the current epoch's key: its recipients and everyone added
     * since; a rotation is due when one of them is no longer a member or live link
     */
    readonly holders: ReadonlySet<string> = new Set()
  ) {
    Object.freeze(this);
  }

  /** The current key epoch (0 until the first `rotate-key`). */
  get epoch(): number {
    return this.epochs.length - 1;
  }

  /** The key epoch current right after entry `seq`. */
  epochAt(seq: number): number {
    if (seq < 0 || seq > this.head.seq) {
      throw new RangeError(`seq ${seq} is not in the log (head ${this.head.seq})`);
    }
    let lo = 0;
    let hi = this.epochs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.epochs[mid].seq <= seq) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    return lo;
  }

  link(pubKey: string): Readonly<Link> | null {
    return this.links.get(pubKey) ?? null;
  }

  isLiveLink(pubKey: string, now: number): boolean {
    const link = this.links.get(pubKey);
    return link !== undefined && linkLive(link, now);
  }

  /** Who gets a lockbox of a rotation at `now`: every member and every live link, sorted. */
  recipients(now: number): string[] {
    const keys = [...this.members.keys()];
    for (const [k, link] of this.links) {
      if (linkLive(link, now)) {
        keys.push(k);
      }
    }
    return keys.sort();
  }

  /**
   * Whether someone who may hold the current epoch's key is no longer a member nor a live
   * link: the client rule is that an admin then rotates.
   */
  rotationNeeded(now: number): boolean {
    for (const k of this.holders) {
      if (!this.members.has(k) && !this.isLiveLink(k, now)) {
        return true;
      }
    }
    return false;
  }

  role(pubKey: string): Role | null {
    return this.members.get(pubKey)?.role ?? null;
  }

  isMember(pubKey: string): boolean {
    return this.members.has(pubKey);
  }

  /** Editors and admins write snapshots and updates. */
  canWrite(pubKey: string): boolean {
    const role = this.role(pubKey);
    return role === 'editor' || role === 'admin';
  }

  canManage(pubKey: string): boolean {
    return this.role(pubKey) === 'admin';
  }

  /** The role `pubKey` had right after entry `seq` (null: not a member then). */
  roleAt(pubKey: string, seq: number): Role | null {
    if (seq < 0 || seq > this.head.seq) {
      throw new RangeError(`seq ${seq} is not in the log (head ${this.head.seq})`);
    }
    let role: Role | null = null;
    for (const [atSeq, value] of this.history.get(pubKey) ?? []) {
      if (atSeq > seq) {
        break;
      }
      role = value;
    }
    return role;
  }

  headOf(seq: number): LogHead {
    return { seq, hash: this.hashes[seq] };
  }

  /** A plain summary (what the vectors compare). */
  toJson(): Record<string, unknown> {
    const members: Record<string, unknown> = {};
    for (const key of [...this.members.keys()].sort()) {
      const m = this.members.get(key) as Member;
      members[key] = {
        role: m.role,
        addedBy: m.addedBy,
        at: m.at,
        seq: m.seq,
        ...(m.name !== undefined ? { name: m.name } : {}),
        ...(m.via !== undefined ? { via: m.via } : {})
      };
    }
    const links: Record<string, unknown> = {};
    for (const key of [...this.links.keys()].sort()) {
      links[key] = linkToJson(this.links.get(key) as Link);
    }
    return {
      docId: this.docId,
      root: this.rootHash,
      head: { seq: this.head.seq, hash: this.head.hash },
      members,
      links,
      epoch: this.epoch,
      epochs: this.epochs.map(epochInfoToJson)
    };
  }
}

/** Mutable state while entries are applied; frozen into a MembershipState at the end. */
export class Builder {
  docId = '';
  rootHash = '';
  seq = 0;
  headHash = '';
  headAt = 0;
  members = new Map<string, Member>();
  hashes: string[] = [];
  history = new Map<string, Array<readonly [number, Role | null]>>();
  admins = 0;
  links = new Map<string, Link>();
  epochs: EpochInfo[] = [];
  holders = new Set<string>();

  static root(root: MembershipEntry, docId: string): Builder {
    const b = new Builder();
    b.docId = docId;
    b.rootHash = root.hash;
    b.headHash = root.hash;
    b.headAt = root.at;
    b.members.set(root.signer, freezeMember({
      pubKey: root.signer,
      role: 'admin',
      addedBy: root.signer,
      at: root.at,
      seq: 0,
      ...(root.name !== undefined ? { name: root.name } : {})
    }));
    b.hashes.push(root.hash);
    b.history.set(root.signer, [[0, 'admin']]);
    b.admins = 1;
    b.epochs.push(Object.freeze({ epoch: 0, seq: 0, signer: root.signer, at: root.at }));
    b.holders.add(root.signer);
    return b;
  }

  static of(state: MembershipState): Builder {
    const b = new Builder();
    b.docId = state.docId;
    b.rootHash = state.rootHash;
    b.seq = state.head.seq;
    b.headHash = state.head.hash;
    b.headAt = state.headAt;
    b.members = new Map(state.members);
    b.hashes = [...state.hashes];
    for (const [k, v] of state.history) {
      b.history.set(k, [...v]);
    }
    for (const m of state.members.values()) {
      b.admins += m.role === 'admin' ? 1 : 0;
    }
    b.links = new Map(state.links);
    b.epochs = [...state.epochs];
    b.holders = new Set(state.holders);
    return b;
  }

  freeze(): MembershipState {
    const history = new Map<string, ReadonlyArray<readonly [number, Role | null]>>();
    for (const [k, v] of this.history) {
      history.set(k, Object.freeze([...v]));
    }
    return new MembershipState(
      this.docId,
      this.rootHash,
      Object.freeze({ seq: this.seq, hash: this.headHash }),
      this.headAt,
      new Map(this.members),
      Object.freeze([...this.hashes]),
      history,
      new Map(this.links),
      Object.freeze([...this.epochs]),
      new Set(this.holders)
    );
  }

  set(e: MembershipEntry, pubKey: string, member: Member | null): void {
    const old = this.members.get(pubKey);
    if (old && old.role === 'admin') {
      this.admins -= 1;
    }
    if (member === null) {
      this.members.delete(pubKey);
    } else {
      this.members.set(pubKey, freezeMember(member));
      this.admins += member.role === 'admin' ? 1 : 0;
    }
    let list = this.history.get(pubKey);
    if (!list) {
      list = [];
      this.history.set(pubKey, list);
    }
    list.push([e.seq, member ? member.role : null]);
  }

  /** Check `e` against the state (signature already checked) and apply it. */
  apply(e: MembershipEntry): void {
    if (e.kind === 'create') {
      throw err(e.hash === this.hashes[0] ? 708 : 707, 'seq');
    }
    if (e.docId !== this.docId) {
      throw err(705, 'docId');
    }
    if (e.seq <= this.seq) {
      if (this.hashes[e.seq] === e.hash) {
        throw err(708, 'seq');
      }
      throw err(707, 'seq', `the log already has entry ${e.seq}`);
    }
    if (e.seq > this.seq + 1) {
      throw err(709, 'seq', `expected ${this.seq + 1}, got ${e.seq}`);
    }
    if (e.prev !== this.headHash) {
      throw err(707, 'prev');
    }
    if (e.at < this.headAt) {
      throw err(710, 'at');
    }
    const signer = this.members.get(e.signer);
    if (!signer) {
      const link = this.links.get(e.signer);
      if (!link) {
        throw err(711, 'signer');
      }
      applyLinkSigned(this, e, link);
      this.advance(e);
      return;
    }
    const own = e.target === e.signer;
    if (own && e.role !== undefined && RANK[e.role] > RANK[signer.role]) {
      throw err(713, 'role');
    }
    const targetKey = e.target as string;
    const target = this.members.get(targetKey);
    if (e.kind === 'add-member') {
      if (signer.role !== 'admin') {
        throw err(712, 'signer');
      }
      if (target) {
        throw err(715, 'target');
      }
      if (this.links.has(targetKey)) {
        throw err(758, 'target', "this key is a link's");
      }
      this.holders.add(targetKey);
      this.set(e, targetKey, {
        pubKey: targetKey,
        role: e.role as Role,
        addedBy: e.signer,
        at: e.at,
        seq: e.seq,
        ...(e.name !== undefined ? { name: e.name } : {})
      });
    } else if (e.kind === 'set-role') {
      const role = e.role as Role;
      const selfDemotion = own && RANK[role] < RANK[signer.role];
      if (!selfDemotion && signer.role !== 'admin') {
        throw err(712, 'signer');
      }
      if (!target) {
        throw err(716, 'target');
      }
      if (target.role === role) {
        throw err(717, 'role');
      }
      if (target.role === 'admin' && this.admins === 1) {
        throw err(714, 'role');
      }
      this.set(e, targetKey, { ...target, role });
    } else if (EPOCH_KINDS.has(e.kind)) {
      applyEpochKind(this, e, signer, target);
    } else {
      if (!own && signer.role !== 'admin') {
        throw err(712, 'signer');
      }
      if (!target) {
        throw err(716, 'target');
      }
      if (target.role === 'admin' && this.admins === 1) {
        throw err(714, 'target');
      }
      this.set(e, targetKey, null);
    }
    this.advance(e);
  }

  private advance(e: MembershipEntry): void {
    this.seq = e.seq;
    this.headHash = e.hash;
    this.headAt = e.at;
    this.hashes.push(e.hash);
  }
}

function freezeMember(m: Member): Member {
  return Object.freeze(m);
}
