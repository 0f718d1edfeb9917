/**
 * The membership log in the sync engine (issue 11): for a document with a log (`m1_…` id) the
 * engine holds a `LogGuard` (`engine.log`) that verifies the log (the `document` frame's
 * `log` / `logFrom`, live `log-entry` frames), answers the relay's reader challenge, sends a
 * new document's root first, says whether this client may write (`readOnly`), checks the
 * authors of received messages against the log (114 / 215 / 304) and sends one appended
 * entry at a time (`appendEntry`; making it and retrying on a new head is the driver's job,
 * membershipClient.ts). Sans-IO like the engine. The twin of the membership part of
 * `secsync_jupyter/client/engine.py` (same events: `membership` {seq, hash, role},
 * `log-entry-saved` {seq, hash}, `log-entry-failed` {seq, hash, code}); rules:
 * docs/protocol.md, "Membership log".
 */
import type { SignatureKeyPair } from './crypto';
import { SecsyncError, SecsyncErrorCode } from './errors';
import {
  createReaderProof,
  entryToJson,
  extendLog,
  LogHead,
  MembershipEntry,
  MembershipError,
  MembershipState,
  parseEntry,
  parseLogHead,
  Role,
  verifyEntry,
  verifyLog
} from './membership';
import { err } from './membershipError';

/** a membership change is made again on a new head at most this many times (707 / 709) */
export const MAX_LOG_ENTRY_RETRIES = 5;

/** roles that may write snapshots and updates */
export const WRITER_ROLES: readonly (Role | null)[] = ['editor', 'admin'];

/** What the guard needs from its engine. */
export interface LogHost {
  readonly docId: string;
  readonly pubKey: string;
  readonly signingKey: SignatureKeyPair;
  send(frame: unknown): void;
  emit(event: string, data: Record<string, unknown>): void;
  /** record a non-fatal error (the engine's `errors`) */
  record(error: SecsyncError): void;
  /** access revoked or refused: terminal `no-access` with this error */
  revoke(error: SecsyncError, reason: string): void;
  requestReconnect(): void;
  /** connected and the document loaded: an entry may be sent */
  loaded(): boolean;
}

function codeError(code: string, detail: string): SecsyncError {
  return new SecsyncError(code as SecsyncErrorCode, detail);
}

export class LogGuard {
  /** the verified membership at the log's head (null until the log is loaded) */
  state: MembershipState | null = null;
  /** the latest head verified (also from earlier sessions): a log without it is 718 */
  knownHead: LogHead | null;
  /** the root of a log this client created, until the relay has it */
  rootPending: MembershipEntry | null = null;
  /** our appended entry the relay has not answered yet */
  entryInFlight: MembershipEntry | null = null;
  /** the relay refused a write of ours (724): read-only until an entry lets us write */
  writeRefused = false;
  /** the root went out after a challenge on this connection */
  private _rootSent = false;
  /** logHead seq of each snapshot, and of each author's latest update on it */
  private _snapshotSeq = new Map<string, number>();
  private _updateSeq = new Map<string, Map<string, number>>();
  /** the entries of the verified log (JSON), kept for the remembered state */
  entries: unknown[] = [];

  constructor(
    private readonly host: LogHost,
    options: {
      rootEntry?: Record<string, unknown> | null;
      knownLogHead?: LogHead | null;
    } = {}
  ) {
    this.knownHead = options.knownLogHead ? parseLogHead(options.knownLogHead) : null;
    if (options.rootEntry) {
      const root = parseEntry(options.rootEntry);
      this.state = verifyLog([root], host.docId); // 706 unless it binds this id
      this.rootPending = root;
      this.entries = [entryToJson(root)];
    }
  }

  /**
   * The log of the remembered state (verified in an earlier load) becomes ours: the relay is
   * asked for the entries after its head only. Our own stored entries: their structure,
   * chain and authority are checked again, not their signatures (the point is to skip them).
   * Throws an Error for a remembered log that does not verify or lacks its head (nothing is
   * taken then: the engine records 807). `useHead`: its head is the known head (718).
   */
  adoptRemembered(remembered: { log?: unknown[]; logHead: LogHead | null; useHead: boolean }): void {
    const log = remembered.log ?? [];
    let head = remembered.logHead;
    if (log.length > 0 && this.state === null) {
      let state: MembershipState;
      try {
        state = verifyLog(log, this.host.docId, { checkSignatures: (items) => items.map(() => true) });
      } catch (e) {
        throw new Error(`remembered state of ${this.host.docId}: log: ${(e as Error).message}`);
      }
      if (head !== null && (head.seq > state.head.seq || state.hashes[head.seq] !== head.hash)) {
        throw new Error(`remembered state of ${this.host.docId}: logHead not in its log`);
      }
      this.state = state;
      this.entries = [...log];
    }
    if (remembered.useHead && head !== null) {
      if (this.state !== null && this.state.head.seq > head.seq) {
        head = { seq: this.state.head.seq, hash: this.state.head.hash };
      }
      this.knownHead = head;
    }
  }

  /** The verified log's entries when they are all at hand (for the remembered state). */
  rememberedLog(): unknown[] | null {
    return this.state !== null && this.entries.length === this.state.head.seq + 1 ? [...this.entries] : null;
  }

  // ------------------------------------------------------------------ state

  /** our role (null: not a member, or no verified log yet) */
  get role(): Role | null {
    return this.state?.role(this.host.pubKey) ?? null;
  }

  /** we may not write: not (yet) an editor or admin, or the relay refused our write (724) */
  get readOnly(): boolean {
    return !WRITER_ROLES.includes(this.role) || this.writeRefused;
  }

  /** the head our messages name (`publicData.logHead`) */
  head(): LogHead | null {
    return this.state === null ? null : { seq: this.state.head.seq, hash: this.state.head.hash };
  }

  connectionParams(): Record<string, string> {
    const head = this.head();
    if (head === null || this.rootPending !== null) {
      return {};
    }
    // the relay sends only the entries after this one (when it has it)
    return { knownLogSeq: String(head.seq), knownLogHash: head.hash };
  }

  /**
   * Adopt a verified state; react to our own role changing (removed: access revoked,
   * terminal; a new entry lets us write again after a 724).
   */
  private _setState(state: MembershipState): void {
    const before = this.state;
    const oldRole = this.role;
    this.state = state;
    this.knownHead = { seq: state.head.seq, hash: state.head.hash };
    const role = this.role;
    if (before !== null && before.head.seq === state.head.seq && before.head.hash === state.head.hash) {
      return;
    }
    if (WRITER_ROLES.includes(role) && before !== null) {
      this.writeRefused = false;
    }
    this.host.emit('membership', { seq: state.head.seq, hash: state.head.hash, role });
    if (role === null) {
      const removed = oldRole !== null;
      this.host.revoke(
        err(removed ? 725 : 722, null, `${this.host.pubKey} is not a member at log entry ${state.head.seq}`),
        removed ? 'removed' : 'not-a-member'
      );
    }
  }

  // ------------------------------------------------------------- connection

  /** A new connection: no challenge answered on it yet. */
  connected(): void {
    this._rootSent = false;
  }

  /** The connection is gone: the fate of our entry in flight is unknown (the next log tells). */
  disconnected(): void {
    const entry = this.entryInFlight;
    if (entry !== null) {
      this.entryInFlight = null;
      this.host.emit('log-entry-failed', { seq: entry.seq, hash: entry.hash, code: null });
    }
  }

  /** A `reader-challenge`: prove this client's key; a creator then sends the root. */
  onChallenge(frame: Record<string, unknown>): void {
    const nonce = frame.nonce;
    if (typeof nonce !== 'string' || nonce === '') {
      this.host.record(err(720, 'nonce', 'reader-challenge without a nonce'));
      return;
    }
    this.host.send(createReaderProof(this.host.signingKey, this.host.docId, nonce));
    if (this.rootPending !== null) {
      this.host.send({ type: 'log-entry', entry: entryToJson(this.rootPending) });
      this._rootSent = true;
    }
  }

  /**
   * The `document` frame's log, verified before anything else in the frame: the whole log
   * from the root (`logFrom` 0; it must contain the head verified before, 718) or the
   * entries after our head (`logFrom` = head + 1). Throws a MembershipError (the load fails).
   */
  loadDocumentLog(frame: Record<string, unknown>): void {
    const log = frame.log ?? [];
    const from = frame.logFrom ?? 0;
    if (!Array.isArray(log)) {
      throw err(701, 'log', 'expected an array');
    }
    if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 0) {
      throw err(701, 'logFrom', 'expected an integer');
    }
    let state: MembershipState;
    let entries: unknown[];
    if (from === 0) {
      if (log.length === 0 && this.rootPending !== null && this._rootSent) {
        return; // our new log, sent after the proof on this connection, not yet saved
      }
      state = verifyLog(log, this.host.docId, this.knownHead !== null ? { knownHead: this.knownHead } : {});
      entries = [...log];
    } else if (this.state === null || from !== this.state.head.seq + 1) {
      throw err(701, 'logFrom', `the log continues at ${from}, not after the head this client has`);
    } else {
      state = extendLog(this.state, log);
      entries = [...this.entries, ...log];
    }
    this.entries = entries;
    if (this.rootPending !== null && state.hashes[0] === this.rootPending.hash) {
      this.rootPending = null; // the relay has it
    }
    this._setState(state);
  }

  /**
   * Another member's entry, accepted by the relay: verified here (never taken on the relay's
   * word). A rejected one is recorded and ignored (709, entries missing: reload).
   */
  onLogEntry(frame: Record<string, unknown>): void {
    if (this.state === null) {
      this.host.record(err(700, null, 'log-entry before the log'));
      return;
    }
    let state: MembershipState;
    try {
      state = verifyEntry(this.state, frame.entry);
    } catch (e) {
      if (!(e instanceof MembershipError)) {
        throw e;
      }
      if (e.code === 'SECSYNC_ERROR_708') {
        return; // already have it (e.g. in the document frame and again live)
      }
      this.host.record(e);
      if (e.code === 'SECSYNC_ERROR_709') {
        this.host.requestReconnect();
      }
      return;
    }
    this.entries.push(frame.entry);
    this._setState(state);
  }

  /**
   * Send one membership entry (made with `createEntry` on `state`); the relay answers
   * `log-entry-saved` (event `log-entry-saved`, the log moves on) or `log-entry-failed`
   * (event `log-entry-failed` with the code). One at a time; throws when it cannot be sent
   * now (an Error) or does not fit our head (its MembershipError).
   */
  appendEntry(entry: unknown, lockboxes?: readonly unknown[] | null): void {
    if (this.state === null) {
      throw new Error('this document has no verified membership log');
    }
    if (!this.host.loaded()) {
      throw new Error('not connected');
    }
    if (this.entryInFlight !== null || this.rootPending !== null) {
      throw new Error('another membership entry is waiting for the relay');
    }
    const parsed = parseEntry(entry);
    verifyEntry(this.state, parsed); // the rule's code (it must fit our head)
    this.entryInFlight = parsed;
    // issue 12: lockboxes go with the entry (a rotation's set, a new member's), stored atomically
    const frame = { type: 'log-entry', entry: entryToJson(parsed), ...(lockboxes?.length ? { lockboxes } : {}) };
    this.host.send(frame);
  }

  onSaved(frame: Record<string, unknown>): void {
    const { seq, hash } = frame;
    const root = this.rootPending;
    if (root !== null && seq === 0 && hash === root.hash) {
      this.rootPending = null;
      this.host.emit('log-entry-saved', { seq: 0, hash: root.hash });
      return;
    }
    const entry = this.entryInFlight;
    if (entry === null || seq !== entry.seq || hash !== entry.hash || this.state === null) {
      return;
    }
    this.entryInFlight = null;
    if (entry.seq <= this.state.head.seq && this.state.hashes[entry.seq] === entry.hash) {
      // the relay also sent it as a live log-entry first: already verified and applied
      this.host.emit('log-entry-saved', { seq: entry.seq, hash: entry.hash });
      return;
    }
    let state: MembershipState;
    try {
      state = verifyEntry(this.state, entry);
    } catch (e) {
      if (!(e instanceof MembershipError)) {
        throw e;
      }
      // the log moved under it: it cannot have been saved
      this.host.record(e);
      this.host.emit('log-entry-failed', { seq: entry.seq, hash: entry.hash, code: e.code });
      return;
    }
    this.entries.push(entryToJson(entry));
    this._setState(state);
    this.host.emit('log-entry-saved', { seq: entry.seq, hash: entry.hash });
  }

  onFailed(frame: Record<string, unknown>): void {
    const seq = frame.seq;
    const code = typeof frame.code === 'string' ? frame.code : 'SECSYNC_ERROR_700';
    const root = this.rootPending;
    if (root !== null && seq === 0) {
      if (code === 'SECSYNC_ERROR_708') {
        this.rootPending = null; // stored before (our earlier attempt)
        this.host.emit('log-entry-saved', { seq: 0, hash: root.hash });
      } else {
        throw new RootRefused(codeError(code, 'the relay refused the root of our new log'));
      }
      return;
    }
    const entry = this.entryInFlight;
    if (entry === null || (seq !== null && seq !== entry.seq)) {
      return; // (`seq` null: the relay could not parse it — ours is the one in flight)
    }
    this.entryInFlight = null;
    const log = frame.log;
    if ((code === 'SECSYNC_ERROR_707' || code === 'SECSYNC_ERROR_709') && Array.isArray(log)) {
      // someone appended first, or we miss entries: verify the relay's entries ourselves
      try {
        this._extendWith(log);
      } catch (e) {
        if (!(e instanceof MembershipError)) {
          throw e;
        }
        this.host.record(e);
      }
    }
    this.host.emit('log-entry-failed', { seq: entry.seq, hash: entry.hash, code });
  }

  /** Entries that may overlap our head: the ones we have (same hash) are skipped. */
  private _extendWith(entries: unknown[]): void {
    const state = this.state as MembershipState;
    const fresh: MembershipEntry[] = [];
    for (const raw of entries) {
      const entry = parseEntry(raw);
      if (fresh.length === 0 && entry.seq <= state.head.seq && state.hashes[entry.seq] === entry.hash) {
        continue;
      }
      fresh.push(entry);
    }
    if (fresh.length > 0) {
      const json = fresh.map(entryToJson);
      const extended = extendLog(state, json);
      this.entries.push(...json);
      this._setState(extended);
    }
  }

  // --------------------------------------------------------- received messages

  /**
   * Why the author of a snapshot / update / ephemeral message may not have written it (null:
   * allowed): `logHead` must be an entry of the verified log, its author an editor or admin
   * at that entry (writes) or a member (ephemeral), and a write must not name an older head
   * than what it builds on (`base`: the known snapshot a snapshot follows, the snapshot an
   * update is on).
   */
  deny(kind: 'snapshot' | 'update' | 'ephemeral', pd: Record<string, unknown>, base: string | null): string | null {
    const state = this.state;
    if (state === null) {
      return 'no verified membership log';
    }
    let head: LogHead;
    try {
      head = parseLogHead(pd.logHead);
    } catch (e) {
      return `publicData.logHead: ${(e as MembershipError).detail ?? ''}`;
    }
    if (head.seq > state.head.seq || state.hashes[head.seq] !== head.hash) {
      return `publicData.logHead: entry ${head.seq} is not in the verified log`;
    }
    const author = String(pd.pubKey);
    if (kind === 'ephemeral') {
      return state.isMember(author) ? null : 'the author is not a member';
    }
    const role = state.roleAt(author, head.seq);
    if (!WRITER_ROLES.includes(role)) {
      return `the author is ${role ?? 'not a member'} at entry ${head.seq}`;
    }
    if (base === null) {
      return null;
    }
    const floor =
      kind === 'snapshot'
        ? this._snapshotSeq.get(base) ?? -1
        : Math.max(this._snapshotSeq.get(base) ?? -1, this._updateSeq.get(base)?.get(author) ?? -1);
    if (head.seq < floor) {
      return `publicData.logHead: entry ${head.seq} is older than ${floor}, which it builds on`;
    }
    return null;
  }

  /** A snapshot applied or written: later writes on it must not name an older head. */
  noteSnapshot(snapshotId: string, pd: Record<string, unknown>): void {
    const head = pd.logHead as LogHead | undefined;
    if (head && typeof head.seq === 'number') {
      this._snapshotSeq.set(snapshotId, head.seq);
    }
  }

  noteUpdate(snapshotId: string, pd: Record<string, unknown>): void {
    const head = pd.logHead as LogHead | undefined;
    if (head && typeof head.seq === 'number') {
      let authors = this._updateSeq.get(snapshotId);
      if (authors === undefined) {
        authors = new Map();
        this._updateSeq.set(snapshotId, authors);
      }
      if (head.seq > (authors.get(String(pd.pubKey)) ?? -1)) {
        authors.set(String(pd.pubKey), head.seq);
      }
    }
  }
}

/** The relay refused the root of our new log: the document fails with its code. */
export class RootRefused extends Error {
  constructor(readonly error: SecsyncError) {
    super(error.message);
  }
}
