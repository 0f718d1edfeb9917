/**
 * Signed heads between live collaborators and the remembered state (issue 13, parts 2 and 3):
 * the twin of `secsync_jupyter/client/heads.py` and of the heads part of `engine.py`
 * (`tick`, `_on_peer_heads`, `_check_claims`, `_check_remembered`). Used by the engine
 * (engineCore.ts / engine.ts) through one {@link HeadsTracker}; sans-IO, the driver's clock
 * comes in through `tick(now)` (seconds).
 *
 * Heads message (docs/protocol.md, "Heads between live collaborators"): the content of an
 * ordinary ephemeral `message` starting with {@link HEADS_PREFIX} (a zero byte — an awareness
 * update of zero entries for readers that do not know heads — then `secsync-heads/1\n`),
 * then UTF-8 JSON `{snapshotId, chain, clocks, log?}`.
 */
import { SecsyncError, SecsyncErrorCode } from './errors';
import { clockOf, KnownSnapshot } from './knownSnapshot';
import { LogHead, MembershipState, parseLogHead } from './membership';
import { isPlainObject, parseSnapshot, parseSnapshotProofChain } from './parse';
import { isValidAncestorSnapshot } from './snapshot';
import type { SnapshotInfoWithUpdateClocks, SnapshotProofChainEntry } from './types';

/** the content of an ephemeral `message` carrying heads starts with these bytes */
export const HEADS_PREFIX = new TextEncoder().encode('\x00secsync-heads/1\n');
/** our heads go out at least this often when nothing changed (seconds) */
export const HEADS_INTERVAL_SECONDS = 5;
/** and at most this often when they changed (an acknowledged write, a new peer) */
export const HEADS_MIN_SPACING_SECONDS = 1;
/** what a peer has seen must reach us within this time (seconds connected and loaded) */
export const HEADS_GRACE_SECONDS = 10;
/** a heads message names at most this many ancestor snapshot ids */
export const MAX_CHAIN_IDS = 16;
/** and at most this many authors' clocks */
export const MAX_HEADS_CLOCKS = 64;
const MAX_HEADS_BYTES = 16 * 1024;

/**
 * Member positions of a verified log (heads inside updates name authors by them in a
 * document with a log): `byKey` public key -> position, `byPos` position as a decimal string
 * -> [position, public key]. A key's position is the `seq` of the entry that first made it a
 * member (the `create` for the creator, else its first `add-member`; a member removed and
 * added again keeps its first position). The twin of heads.py's `member_positions`.
 */
export interface MemberPositions {
  byKey: Map<string, number>;
  byPos: Map<string, [number, string]>;
}

const positionsCache = new WeakMap<MembershipState, MemberPositions>();

/** The member positions of `state` (cached per state: states never change). */
export function memberPositions(state: MembershipState): MemberPositions {
  let out = positionsCache.get(state);
  if (out === undefined) {
    out = { byKey: new Map(), byPos: new Map() };
    for (const [key, changes] of state.history) {
      const seq = changes[0][0]; // the first change of a key is its adding
      out.byKey.set(key, seq);
      out.byPos.set(String(seq), [seq, key]);
    }
    positionsCache.set(state, out);
  }
  return out;
}

/** What a collaborator says it has applied. */
export interface PeerHeads {
  snapshotId: string;
  /** ancestors of `snapshotId` the peer knows, oldest first */
  chain: string[];
  clocks: Record<string, number>;
  log: LogHead | null;
}

/** The state of a document a client verified before (`rememberedState()` then). */
export interface RememberedState {
  snapshot: SnapshotInfoWithUpdateClocks | null;
  logHead: LogHead | null;
  /** the verified log's entries (written by the Python client; the browser keeps the head) */
  log?: unknown[];
}

function byKey<T>([a]: [string, T], [b]: [string, T]): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function encodeHeads(
  snapshotId: string,
  chain: string[],
  clocks: Record<string, number>,
  log: LogHead | null
): Uint8Array {
  let items = Object.entries(clocks);
  if (items.length > MAX_HEADS_CLOCKS) {
    items = items.sort(([ka, va], [kb, vb]) => vb - va || (ka < kb ? -1 : ka > kb ? 1 : 0)).slice(0, MAX_HEADS_CLOCKS);
  }
  const sorted: Record<string, number> = {};
  for (const [k, v] of items.sort(byKey)) {
    sorted[k] = v;
  }
  const body: Record<string, unknown> = {
    snapshotId,
    chain: chain.filter((c) => c !== snapshotId).slice(-MAX_CHAIN_IDS),
    clocks: sorted
  };
  if (log !== null) {
    body.log = { seq: log.seq, hash: log.hash };
  }
  const json = new TextEncoder().encode(JSON.stringify(body));
  const out = new Uint8Array(HEADS_PREFIX.length + json.length);
  out.set(HEADS_PREFIX);
  out.set(json, HEADS_PREFIX.length);
  return out;
}

export function isHeadsContent(content: Uint8Array): boolean {
  if (content.length < HEADS_PREFIX.length) {
    return false;
  }
  return HEADS_PREFIX.every((b, i) => content[i] === b);
}

/** Parse a heads message's content; throws an Error naming what is wrong. */
export function decodeHeads(content: Uint8Array): PeerHeads {
  if (content.length > MAX_HEADS_BYTES) {
    throw new Error('heads message too large');
  }
  const obj: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(content.subarray(HEADS_PREFIX.length)));
  if (!isPlainObject(obj)) {
    throw new Error('heads: expected an object');
  }
  const snapshotId = obj.snapshotId;
  if (typeof snapshotId !== 'string' || snapshotId === '') {
    throw new Error('heads.snapshotId: expected a string');
  }
  const chain = obj.chain ?? [];
  if (!Array.isArray(chain) || chain.length > MAX_CHAIN_IDS || !chain.every((c) => typeof c === 'string')) {
    throw new Error('heads.chain: expected at most 16 strings');
  }
  const clocks = obj.clocks ?? {};
  if (
    !isPlainObject(clocks) ||
    Object.keys(clocks).length > MAX_HEADS_CLOCKS ||
    !Object.values(clocks).every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)
  ) {
    throw new Error('heads.clocks: expected at most 64 non-negative integers');
  }
  const log = obj.log === undefined || obj.log === null ? null : parseLogHead(obj.log);
  return { snapshotId, chain: chain as string[], clocks: { ...(clocks as Record<string, number>) }, log };
}

/** Something a peer has seen that has not reached this client yet. */
export interface Claim {
  kind: 'clock' | 'snapshot' | 'log';
  seenBy: string;
  since: number;
  snapshotId: string;
  author: string;
  clock: number;
  log: LogHead | null;
}

/** What the tracker needs from the engine. */
export interface HeadsHost {
  readonly pubKey: string;
  active(): KnownSnapshot | null;
  /** the highest clock of `author` on `info` we have (ours: sent) */
  receivedClock(info: KnownSnapshot, author: string): number;
  /** our verified log head and the hash of entry `seq` (null: none) */
  logHead(): LogHead | null;
  logHashAt(seq: number): string | null;
  record(error: SecsyncError): void;
  emit(event: string, data: Record<string, unknown>): void;
}

/** Our chain, the peers' heads, the claims and when our heads went out (engine.py's fields). */
export class HeadsTracker {
  /** ids of our active snapshot and its ancestors we know, oldest first (at most 64) */
  chainIds: string[] = [];
  now = 0;
  grace = HEADS_GRACE_SECONDS;
  interval = HEADS_INTERVAL_SECONDS;
  peerHeads = new Map<string, PeerHeads>();
  claims: Claim[] = [];
  dirty = false;
  sentAt: number | null = null;
  private _reported = new Set<string>();

  constructor(private readonly host: HeadsHost) {}

  noteChain(ids: Iterable<string | null | undefined>): void {
    for (const id of ids) {
      if (!id) {
        continue;
      }
      const i = this.chainIds.indexOf(id);
      if (i >= 0) {
        this.chainIds.splice(i, 1);
      }
      this.chainIds.push(id);
    }
    if (this.chainIds.length > 64) {
      this.chainIds = this.chainIds.slice(-64);
    }
  }

  content(): Uint8Array | null {
    const active = this.host.active();
    return active === null ? null : encodeHeads(active.snapshotId, this.chainIds, active.updateClocks, this.host.logHead());
  }

  /** Whether our heads are due at `now` (the engine sends them and calls `sent`). */
  due(now: number): boolean {
    const last = this.sentAt;
    return (
      last === null ||
      now - last >= this.interval ||
      (this.dirty && now - last >= Math.min(HEADS_MIN_SPACING_SECONDS, this.interval))
    );
  }

  sent(now: number): void {
    this.sentAt = now;
    this.dirty = false;
  }

  /** The relay gets a full grace period after each load. */
  loaded(): void {
    for (const claim of this.claims) {
      claim.since = Math.max(claim.since, this.now);
    }
    this.dirty = true;
  }

  onPeerHeads(peer: string, heads: PeerHeads): void {
    if (peer === this.host.pubKey) {
      return; // our own key in another client
    }
    this.peerHeads.set(peer, heads);
    this.host.emit('peer-heads', { peer, snapshotId: heads.snapshotId });
    const now = this.now;
    const mine = this.host.logHead();
    if (heads.log !== null && mine !== null) {
      if (heads.log.seq <= mine.seq) {
        if (this.host.logHashAt(heads.log.seq) !== heads.log.hash) {
          this._fork(peer, `its log entry ${heads.log.seq} is not ours`);
        }
      } else if (!this.claims.some((c) => c.kind === 'log' && c.log?.seq === heads.log?.seq && c.log?.hash === heads.log?.hash)) {
        this.claims.push({ kind: 'log', seenBy: peer, since: now, snapshotId: '', author: '', clock: -1, log: heads.log });
      }
    }
    const active = this.host.active();
    if (active === null) {
      return;
    }
    if (heads.snapshotId === active.snapshotId) {
      for (const [author, clock] of Object.entries(heads.clocks)) {
        if (author === this.host.pubKey || clock <= this.host.receivedClock(active, author)) {
          continue;
        }
        const known = this.claims.some(
          (c) => c.kind === 'clock' && c.snapshotId === active.snapshotId && c.author === author && c.clock >= clock
        );
        if (!known) {
          this.claims.push({ kind: 'clock', seenBy: peer, since: now, snapshotId: active.snapshotId, author, clock, log: null });
        }
      }
    } else if (
      !this.chainIds.includes(heads.snapshotId) &&
      !this.claims.some((c) => c.kind === 'snapshot' && c.snapshotId === heads.snapshotId)
    ) {
      this.claims.push({ kind: 'snapshot', seenBy: peer, since: now, snapshotId: heads.snapshotId, author: '', clock: -1, log: null });
    }
  }

  private _met(claim: Claim): boolean {
    const active = this.host.active();
    if (claim.kind === 'log') {
      const head = this.host.logHead();
      return head !== null && claim.log !== null && head.seq >= claim.log.seq;
    }
    if (active === null) {
      return false;
    }
    if (claim.kind === 'clock') {
      if (claim.snapshotId !== active.snapshotId) {
        return this.chainIds.includes(claim.snapshotId);
      }
      return this.host.receivedClock(active, claim.author) >= claim.clock;
    }
    const latest = this.peerHeads.get(claim.seenBy);
    return this.chainIds.includes(claim.snapshotId) || (latest !== undefined && this.chainIds.includes(latest.snapshotId));
  }

  /** Settle the claims: met ones go, those past the grace period are reported (806 / 805). */
  check(): void {
    if (this.host.active() === null) {
      return; // nothing verified to compare with (yet): claims wait
    }
    const kept: Claim[] = [];
    const due: Claim[] = [];
    for (const claim of this.claims) {
      if (claim.kind === 'log' && this._met(claim)) {
        const log = claim.log as LogHead;
        if (this.host.logHashAt(log.seq) !== log.hash) {
          this._fork(claim.seenBy, `its log entry ${log.seq} is not ours`);
        }
        continue;
      }
      if (this._met(claim)) {
        continue;
      }
      (this.now - claim.since >= this.grace ? due : kept).push(claim);
    }
    this.claims = kept;
    const missing = new Map<string, [number, number, string]>();
    const active = this.host.active() as KnownSnapshot;
    for (const claim of due) {
      if (claim.kind === 'clock') {
        if (this._reported.has(`clock ${claim.snapshotId} ${claim.author}`)) {
          continue;
        }
        const have = this.host.receivedClock(active, claim.author);
        const seen = missing.get(claim.author);
        if (seen === undefined || seen[0] < claim.clock) {
          missing.set(claim.author, [claim.clock, have, claim.seenBy]);
        }
      } else if (claim.kind === 'log') {
        const log = claim.log as LogHead;
        const key = `log ${log.seq}`;
        if (!this._reported.has(key)) {
          this._reported.add(key);
          const have = this.host.logHead()?.seq ?? -1;
          this._withheld(
            claim.seenBy,
            [],
            `the relay has not delivered ${log.seq - have} membership log entries that ${claim.seenBy} has verified (up to entry ${log.seq})`
          );
        }
      } else {
        this._snapshotDue(claim, active);
      }
    }
    for (const [author, [clock, have, seenBy]] of Array.from(missing.entries()).sort(byKey)) {
      this._reported.add(`clock ${active.snapshotId} ${author}`);
      this._withheld(
        seenBy,
        [[author, clock]],
        `the relay has not delivered ${clock - have} updates from ${author} that ${seenBy} has seen (up to clock ${clock} on snapshot ${active.snapshotId}; received ${have})`
      );
    }
  }

  private _snapshotDue(claim: Claim, active: KnownSnapshot): void {
    const latest = this.peerHeads.get(claim.seenBy);
    const peerSnapshot = latest !== undefined ? latest.snapshotId : claim.snapshotId;
    const key = `snapshot ${peerSnapshot}`;
    if (this._reported.has(key)) {
      return;
    }
    this._reported.add(key);
    if (latest !== undefined && latest.chain.includes(active.snapshotId)) {
      this._withheld(
        claim.seenBy,
        [],
        `the relay has not delivered snapshot ${peerSnapshot} that ${claim.seenBy} has (it descends from ours, ${active.snapshotId})`
      );
    } else {
      this._fork(
        claim.seenBy,
        `it is on snapshot ${peerSnapshot}, which is not in this client's chain (ours: ${active.snapshotId}), nor ours in its chain`
      );
    }
  }

  private _withheld(seenBy: string, missing: [string, number][], detail: string): void {
    this.host.record(new SecsyncError('SECSYNC_ERROR_806', detail));
    this.host.emit('heads-withheld', { seenBy, authors: missing.map((m) => m[0]), missing, detail });
  }

  private _fork(peer: string, detail: string): void {
    const key = `fork ${peer} ${detail}`;
    if (this._reported.has(key)) {
      return;
    }
    this._reported.add(key);
    this.host.record(new SecsyncError('SECSYNC_ERROR_805', `${peer}: ${detail}`));
    this.host.emit('fork', { peer, detail });
  }
}

/** A remembered state's shape (throws naming the field). */
export function parseRemembered(obj: unknown): RememberedState {
  if (!isPlainObject(obj)) {
    throw new Error('remembered state: expected an object');
  }
  let snapshot: SnapshotInfoWithUpdateClocks | null = null;
  if (obj.snapshot !== null && obj.snapshot !== undefined) {
    const s = obj.snapshot;
    if (!isPlainObject(s)) {
      throw new Error('remembered state: snapshot must be an object');
    }
    for (const name of ['snapshotId', 'snapshotCiphertextHash', 'parentSnapshotProof']) {
      if (typeof s[name] !== 'string') {
        throw new Error(`remembered state: snapshot.${name} must be a string`);
      }
    }
    snapshot = KnownSnapshot.fromJSON(s as unknown as SnapshotInfoWithUpdateClocks).toJSON();
  }
  const logHead = obj.logHead === null || obj.logHead === undefined ? null : parseLogHead(obj.logHead);
  if (obj.log !== null && obj.log !== undefined && !Array.isArray(obj.log)) {
    throw new Error('remembered state: log must be an array');
  }
  return { snapshot, logHead, ...(Array.isArray(obj.log) ? { log: obj.log } : {}) };
}

/**
 * The first load against the remembered state: the same snapshot with at least the clocks
 * verified before, or one that descends from it (a valid proof chain; a direct child must
 * record at least those clocks). Anything else: 804. Returns `null` when it descends.
 */
export function checkRemembered(
  remembered: RememberedState,
  active: KnownSnapshot | null,
  rawSnapshot: unknown,
  rawChain: unknown,
  noteChain: (ids: string[]) => void
): SecsyncError | null {
  if (remembered.snapshot === null) {
    return null;
  }
  const known = KnownSnapshot.fromJSON(remembered.snapshot);
  const fail = (detail: string) => new SecsyncError('SECSYNC_ERROR_804' as SecsyncErrorCode, detail);
  if (active === null) {
    return fail(`the relay served no snapshot; this client verified ${known.snapshotId} before`);
  }
  if (active.snapshotId === known.snapshotId) {
    const behind = Object.entries(known.updateClocks)
      .sort(byKey)
      .filter(([a, c]) => clockOf(active.updateClocks, a) < c)
      .map(([a, c]) => `${a} ${clockOf(active.updateClocks, a)} < ${c}`);
    return behind.length > 0
      ? fail(`fewer updates on snapshot ${known.snapshotId} than verified before: ${behind.join(', ')}`)
      : null;
  }
  let chain: SnapshotProofChainEntry[] = [];
  let ok = false;
  let recorded: Record<string, number> = {};
  try {
    const snapshot = parseSnapshot(rawSnapshot);
    chain = parseSnapshotProofChain(rawChain ?? []);
    recorded = snapshot.publicData.parentSnapshotUpdateClocks ?? {};
    ok =
      chain.length > 0 &&
      isValidAncestorSnapshot({ knownSnapshotProofEntry: known.proofEntry, snapshotProofChain: chain, currentSnapshot: snapshot });
  } catch {
    ok = false;
  }
  if (!ok) {
    return fail(
      `snapshot ${active.snapshotId} does not descend from snapshot ${known.snapshotId} verified before (older, or another history)`
    );
  }
  noteChain(chain.map((c) => c.snapshotId));
  if (chain.length === 1) {
    const behind = Object.entries(known.updateClocks)
      .filter(([a, c]) => clockOf(recorded, a) < c)
      .map(([a]) => a)
      .sort();
    if (behind.length > 0) {
      return fail(
        `snapshot ${active.snapshotId} records fewer updates of its parent ${known.snapshotId} than verified before: ${behind.join(', ')}`
      );
    }
  }
  return null;
}
