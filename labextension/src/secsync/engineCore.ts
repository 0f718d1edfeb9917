/**
 * The sync engine's state, tables, connection lifecycle and sending rules: the base class of
 * `SyncEngine` (engine.ts holds the receiving rules; one object, two files). Mirrors the
 * module constants, `KnownSnapshot` and the "helpers", "connection" and "send" sections of
 * `secsync_jupyter/client/engine.py`.
 */
import { b64encode } from './base64';
import { generateId, SignatureKeyPair } from './crypto';
import { createEphemeralMessage, createEphemeralSession, EphemeralMessageType, EphemeralSession } from './ephemeral';
import { SecsyncError, SecsyncErrorCode } from './errors';
import { LogGuard } from './engineLog';
import type { EpochKeys } from './engineEpochs';
import { HeadsTracker, memberPositions, parseRemembered, RememberedState } from './engineHeads';
import { clockOf, KnownSnapshot } from './knownSnapshot';
import { isLogDocId, LogHead } from './membership';
import { createInitialSnapshot, createSnapshot } from './snapshot';
import type { EphemeralMessage, Snapshot, Update } from './types';
import { createUpdate } from './update';

export { clockOf, KnownSnapshot } from './knownSnapshot';

/** at most this many errors are kept per kind (newest first) */
export const MAX_ERRORS = 20;
/** a snapshot rejected this many times in a row makes the engine reconnect */
export const MAX_SNAPSHOT_SAVE_FAILURES = 5;
/** our update rejected this many times in a row makes the engine reconnect */
export const MAX_UPDATE_SAVE_FAILURES = 5;
/** an update names at most this many other authors' clocks in its heads (both clients) */
export const MAX_HEADS = 64;
/**
 * the public-data field of the heads our clients write: `{position: clock}` in a document
 * with a membership log (authors by member position: the `seq` of the log entry that first
 * made the author a member, as a decimal string), `{clocks: {pubKey: clock}}` without one
 * (`log` is reserved)
 */
export const HEADS_FIELD = 'heads';
/** at most this many of our updates are sent and not yet acknowledged (both clients) */
export const MAX_UPDATES_IN_FLIGHT = 16;
/** the longest wait between two connection attempts, in ms (both clients) */
export const RECONNECT_DELAY_CAP_MS = 10_000;

/**
 * Wait before connection attempt `retries + 1`: 100 ms · 1.8^n (n capped at 13), at most
 * `capMs` — the same rule as the Python client.
 */
export function backoffDelay(retries: number, capMs = RECONNECT_DELAY_CAP_MS): number {
  return Math.min(capMs, 100 * Math.pow(1.8, Math.min(retries, 13)));
}

/** default snapshot policy: a snapshot after this many updates on the active snapshot… */
export const SNAPSHOT_EVERY_UPDATES = 300;
/** …or this many bytes of update ciphertext, whichever comes first */
export const SNAPSHOT_EVERY_BYTES = 1_000_000;

// connection states
export const CONNECTING = 'connecting';
export const CONNECTED = 'connected';
export const DISCONNECTED = 'disconnected';
export const FAILED = 'failed';
export const NO_ACCESS = 'no-access';
export const CLOSED = 'closed';
export type EngineState =
  | typeof CONNECTING
  | typeof CONNECTED
  | typeof DISCONNECTED
  | typeof FAILED
  | typeof NO_ACCESS
  | typeof CLOSED;

// document decryption states (reference names)
export const PENDING = 'pending';
export const PARTIAL = 'partial';
export const COMPLETE = 'complete';
export type DocumentState = typeof PENDING | typeof PARTIAL | typeof COMPLETE | typeof FAILED;

/** errors that make the client reconnect when received on a live connection */
export const RECONNECT_CODES: readonly SecsyncErrorCode[] = ['SECSYNC_ERROR_112', 'SECSYNC_ERROR_115'];
/** snapshot verification errors that fail the document (others are ignored) */
export const SNAPSHOT_FATAL: readonly SecsyncErrorCode[] = [
  'SECSYNC_ERROR_100',
  'SECSYNC_ERROR_101',
  'SECSYNC_ERROR_102'
];
/** update verification errors that are ignored (others fail the document) */
export const UPDATE_IGNORED: readonly SecsyncErrorCode[] = [
  'SECSYNC_ERROR_211',
  'SECSYNC_ERROR_212',
  'SECSYNC_ERROR_213',
  'SECSYNC_ERROR_214',
  'SECSYNC_ERROR_215'
];

/** What the engine needs from the document (e.g. a Y.Doc, see `YDocAdapter`). */
export interface DocumentAdapter<C = Uint8Array> {
  applySnapshot(content: Uint8Array): void;
  applyChanges(changes: C[]): void;
  serializeChanges(changes: C[]): Uint8Array;
  deserializeChanges(data: Uint8Array): C[];
  snapshotContent(): Uint8Array;
  applyEphemeral(content: Uint8Array, author: string): void;
  /** optional: combines pending local changes into fewer (Yjs: one merged update) before
   * they are serialized into an update */
  mergeChanges?(changes: C[]): C[];
}

/** What a snapshot policy sees when local changes are about to be sent. */
export interface SnapshotPolicyInfo {
  activeSnapshotId: string | null;
  /** updates accepted on the active snapshot (own and others') */
  updatesSinceSnapshot: number;
  /** bytes of update ciphertext (base64 text) accepted on the active snapshot */
  updateBytesSinceSnapshot: number;
  /** number of local changes waiting to be sent */
  pendingChanges: number;
}

/** A snapshot after 300 updates or 1 MB of update ciphertext, whichever comes first. */
export function defaultSnapshotPolicy(info: SnapshotPolicyInfo): boolean {
  return (
    info.updatesSinceSnapshot >= SNAPSHOT_EVERY_UPDATES ||
    info.updateBytesSinceSnapshot >= SNAPSHOT_EVERY_BYTES
  );
}

export type EngineEventHandler = (event: string, data: Record<string, unknown>) => void;

export interface UpdateInFlight<C> {
  snapshotId: string;
  clock: number;
  changes: C[];
  size: number;
  /** the clocks its heads named (recorded as named once it is acknowledged) */
  heads?: Record<string, number>;
}

export interface SnapshotInFlight<C> {
  info: KnownSnapshot;
  parentSnapshotId: string;
  changes: C[];
}

/** A SecsyncError with `code` and an optional detail. */
export function errorWithCode(code: SecsyncErrorCode, detail?: unknown): SecsyncError {
  return new SecsyncError(code, detail === undefined ? undefined : String(detail));
}

/** Newest first, at most {@link MAX_ERRORS}. */
export function pushError(errors: SecsyncError[], error: SecsyncError): void {
  errors.unshift(error);
  if (errors.length > MAX_ERRORS) {
    errors.length = MAX_ERRORS;
  }
}

/** A frame from the relay: a JSON object with a string `type`. */
export type Frame = Record<string, unknown> & { type: string };

export interface SyncEngineOptions<C> {
  snapshotPolicy?: (info: SnapshotPolicyInfo) => boolean;
  isValidClient?: (pubKey: string, publicData: Record<string, unknown>) => boolean;
  knownSnapshot?: KnownSnapshot | null;
  loadMode?: 'delta' | 'complete';
  pendingChanges?: Iterable<C>;
  onEvent?: EngineEventHandler;
  /** ephemeral messages for another docId are recorded as 306 (default) instead of dropped */
  strictEphemeralDocId?: boolean;
  /**
   * write heads into our updates' public data (default off: the reference relay and client,
   * secsync 0.5.0, strip unknown public-data fields unless configured for them, and then
   * reject the signature). Heads in others' updates are always checked.
   */
  writeHeads?: boolean;
  /** the root entry of a new document with a log that this client created (sent first) */
  rootEntry?: Record<string, unknown> | null;
  /** the log head this client verified before (e.g. persisted): a log without it is 718 */
  knownLogHead?: LogHead | null;
  /**
   * issue 13: the state verified in an earlier load (`rememberedState()` then): the first
   * load must descend from it (804); its log head is the known log head (718)
   */
  remembered?: unknown;
  /** issue 13: grace period (s) and interval (s) of the heads between live collaborators */
  headsGrace?: number;
  headsInterval?: number;
  /** issue 12: the epoch keys of a document with a log (engineEpochs.ts; the key is then unused) */
  epochs?: EpochKeys | null;
}

type KeySource = Uint8Array | ((info: KnownSnapshot | null) => Uint8Array);

/** State, connection lifecycle and sending side of {@link SyncEngine} (engine.ts). */
export abstract class EngineCore<C = Uint8Array> {
  readonly docId: string;
  readonly adapter: DocumentAdapter<C>;
  readonly signingKey: SignatureKeyPair;
  readonly pubKey: string;
  snapshotPolicy: (info: SnapshotPolicyInfo) => boolean;
  isValidClient: (pubKey: string, publicData: Record<string, unknown>) => boolean;
  onEvent: EngineEventHandler | null;
  readonly strictEphemeralDocId: boolean;
  readonly writeHeads: boolean;
  /** the membership log of a document with a log (`m1_…` id; engineLog.ts), else null */
  readonly log: LogGuard | null;
  /** issue 12: the epoch keys (engineEpochs.ts; documents with a log), else null */
  readonly epochs: EpochKeys | null;

  state: EngineState = DISCONNECTED;
  documentState: DocumentState = PENDING;
  /** snapshot and update errors, newest first (at most 20) */
  readonly errors: SecsyncError[] = [];
  /** errors receiving ephemeral messages, newest first (at most 20) */
  readonly ephemeralErrors: SecsyncError[] = [];
  /** errors creating ephemeral messages (601), newest first (at most 20) */
  readonly ephemeralAuthoringErrors: SecsyncError[] = [];
  /** frames to send, in order (the transport drains it) */
  outbox: string[] = [];
  /** set when the transport must close the connection and reconnect */
  reconnectRequested = false;

  loadKnown: KnownSnapshot | null;
  loadMode: 'delta' | 'complete';
  snapshots: KnownSnapshot[] = [];
  pending: C[];
  updatesInFlight: UpdateInFlight<C>[] = [];
  /**
   * updates given up after an earlier one failed, whose answers (save-failed: their clock no
   * longer follows a saved one) are still to come
   */
  updatesDiscarded: { snapshotId: string; clock: number }[] = [];
  snapshotInFlight: SnapshotInFlight<C> | null = null;
  /**
   * `${author} ${clock}` pairs named by heads that were missing and asked for again with a
   * complete reload; the same pair missing again means the relay served the document
   * incompletely
   */
  headsMissingAsked = new Set<string>();
  /** the next connection reloads completely (all updates of the active snapshot) */
  headsReload = false;
  /** set when a missing update still did not come after a complete reload */
  servedIncompletely = false;
  /** what our acknowledged updates' heads named on a snapshot (the next names what advanced) */
  headsNamed: { snapshotId: string; clocks: Record<string, number> } = { snapshotId: '', clocks: {} };
  localClock = -1;
  snapshotSaveFailures = 0;
  updateSaveFailures = 0;
  snapshotRequested = false;
  ephemeral: EphemeralSession | null = null;
  /** what the latest `document` frame held (for diagnostics and tests) */
  lastDocument: { snapshot: boolean; updates: number; mode: string } | null = null;

  /** issue 13: our chain, the peers' heads and what they have seen that we have not */
  readonly heads: HeadsTracker;
  /** issue 13: the state verified in an earlier load (checked by the first load: 804) */
  readonly remembered: RememberedState | null;
  /** set when the first load did not descend from the remembered state (804) */
  rolledBack = false;
  /**
   * why the remembered state given could not be adopted (807; null: it was, or none was
   * given): this load is then a first load
   */
  rememberedDamaged: string | null = null;
  protected _loadedOnce = false;

  protected readonly _key: KeySource;
  protected _ephemeralKey: Uint8Array | null = null;

  constructor(
    docId: string,
    key: KeySource,
    adapter: DocumentAdapter<C>,
    signingKey: SignatureKeyPair,
    options: SyncEngineOptions<C> = {}
  ) {
    this.docId = docId;
    this._key = key;
    this.adapter = adapter;
    this.signingKey = signingKey;
    this.pubKey = b64encode(signingKey.publicKey);
    this.snapshotPolicy = options.snapshotPolicy ?? defaultSnapshotPolicy;
    this.isValidClient = options.isValidClient ?? (() => true);
    this.onEvent = options.onEvent ?? null;
    this.strictEphemeralDocId = options.strictEphemeralDocId ?? true;
    // documents with a log: heads always written (docs/protocol.md); others: default off
    this.writeHeads = isLogDocId(docId) || (options.writeHeads ?? false);
    // issue 13: a remembered state that cannot be adopted (damaged local data) is reported
    // (807, below) and this load is a first load; nothing of it is taken
    let remembered: RememberedState | null = null;
    let damaged: string | null = null;
    if (options.remembered != null) {
      try {
        const parsed = parseRemembered(options.remembered);
        if (parsed.logHead !== null && !isLogDocId(docId)) {
          throw new Error('a log head without a log');
        }
        remembered = parsed;
      } catch (e) {
        damaged = `remembered state of ${docId}: ${(e as Error).message}`;
      }
    }
    this.heads = new HeadsTracker({
      pubKey: this.pubKey,
      active: () => this.active,
      receivedClock: (info, author) => this._receivedClock(info, author),
      logHead: () => this.log?.head() ?? null,
      logHashAt: (seq) => this.log?.state?.hashes[seq] ?? null,
      record: (error) => this._record(error),
      emit: (event, data) => this._emit(event, data)
    });
    this.heads.grace = options.headsGrace ?? this.heads.grace;
    this.heads.interval = options.headsInterval ?? this.heads.interval;
    this.log = isLogDocId(docId)
      ? new LogGuard(
          {
            docId,
            pubKey: this.pubKey,
            signingKey,
            send: (frame) => this._send(frame),
            emit: (event, data) => this._emit(event, data),
            record: (error) => this._record(error),
            revoke: (error, reason) => this._revoke(error, reason),
            requestReconnect: () => this._requestReconnect(),
            loaded: () => this.state === CONNECTED && this.documentState === COMPLETE
          },
          { rootEntry: options.rootEntry, knownLogHead: options.knownLogHead ?? null }
        )
      : null;
    if (remembered !== null && this.log !== null) {
      try {
        // its log: only the entries after its head are verified on load (the relay is
        // asked for the delta); its head is the known head unless one was given
        this.log.adoptRemembered({ ...remembered, useHead: options.knownLogHead == null });
      } catch (e) {
        damaged = (e as Error).message;
        remembered = null;
      }
    }
    this.remembered = remembered;
    if (damaged !== null) {
      // no event while the engine is being built: the error is in `errors`
      pushError(this.errors, this._rememberedError(damaged));
    }
    this.epochs = this.log !== null ? options.epochs ?? null : null;
    this.loadKnown = options.knownSnapshot ?? null;
    this.loadMode = this.loadKnown !== null ? options.loadMode ?? 'delta' : 'complete';
    this.pending = Array.from(options.pendingChanges ?? []);
    this.heads.noteChain([this.loadKnown?.snapshotId, this.remembered?.snapshot?.snapshotId]);
  }

  private _rememberedError(detail: string): SecsyncError {
    this.rememberedDamaged = detail;
    return new SecsyncError(
      'SECSYNC_ERROR_807',
      `${detail}; it was not used: this load is checked from scratch (the whole log, no rollback check)`
    );
  }

  /**
   * The driver could not read the stored remembered state at all (e.g. not JSON): recorded
   * like a remembered state the engine cannot adopt (807, not fatal); the load is a first
   * load. Call before connecting, without `remembered`.
   */
  rememberedUnusable(detail: string): void {
    if (this.remembered !== null || this._loadedOnce) {
      throw new Error('rememberedUnusable: a remembered state was already adopted');
    }
    this._record(this._rememberedError(`remembered state of ${this.docId}: ${detail}`));
  }

  /** The highest clock of `author` on `info` this client has (its own: sent). */
  protected abstract _receivedClock(info: KnownSnapshot, author: string): number;

  // ------------------------------------------- issue 13: heads, remembered state

  /** Our heads message (null before a verified snapshot). */
  headsContent(): Uint8Array | null {
    return this.documentState === COMPLETE ? this.heads.content() : null;
  }

  /**
   * The driver's clock (seconds; about once a second): sends our heads when due (soon after
   * an acknowledged write or a new peer, at most once a second, else every 5 s) and reports
   * what peers have seen that still has not reached us after the grace period (806 / 805).
   */
  tick(now: number): void {
    this.heads.now = now;
    if (this.state !== CONNECTED || this.documentState !== COMPLETE) {
      return;
    }
    this.heads.check();
    if (this.heads.due(now)) {
      const content = this.heads.content();
      if (content !== null && this.sendEphemeral(content)) {
        this.heads.sent(now);
      }
    }
  }

  /**
   * What to remember of this document for the next load (`remembered`): the active snapshot
   * with every author's clock, the verified log head and log. null while nothing verified is at hand
   * or after a rollback (804: the earlier state stays the one to remember).
   */
  rememberedState(): RememberedState | null {
    if (this.rolledBack || this.documentState !== COMPLETE || this.state === FAILED) {
      return null;
    }
    const active = this.active;
    const log = this.log?.rememberedLog() ?? null;
    return {
      snapshot: active !== null ? active.toJSON() : null,
      logHead: this.log?.head() ?? null,
      ...(log !== null ? { log } : {})
    };
  }

  // ------------------------------------------------------------------ helpers

  get active(): KnownSnapshot | null {
    return this.snapshots.length > 0 ? this.snapshots[this.snapshots.length - 1] : null;
  }

  /** Connected, loaded, and every local change acknowledged by the relay. */
  get isSynced(): boolean {
    return (
      this.state === CONNECTED &&
      this.documentState === COMPLETE &&
      this.pending.length === 0 &&
      this.updatesInFlight.length === 0 &&
      this.snapshotInFlight === null &&
      !this.snapshotRequested &&
      (this.log === null || (this.log.rootPending === null && this.log.entryInFlight === null))
    );
  }

  keyFor(info: KnownSnapshot | null): Uint8Array {
    if (this.epochs !== null) {
      return this.epochs.keyFor(info); // issue 12: the key of the snapshot's epoch
    }
    return typeof this._key === 'function' ? this._key(info) : this._key;
  }

  protected _emit(event: string, data: Record<string, unknown> = {}): void {
    this.onEvent?.(event, data);
  }

  protected _record(error: SecsyncError): void {
    pushError(this.errors, error);
    this._emit('error', { error, fatal: false });
  }

  /** Fail the document with `error` (e.g. an unexpected internal error). */
  fail(error: SecsyncError): void {
    this._fail(error);
  }

  protected _fail(error: SecsyncError): void {
    pushError(this.errors, error);
    this.state = FAILED;
    this._emit('error', { error, fatal: true });
    this._emit('state', { state: this.state });
  }

  /** Access revoked or refused (722 / 725): terminal, no reconnect. */
  protected _revoke(error: SecsyncError, reason: string): void {
    if (this._terminal) {
      return;
    }
    pushError(this.errors, error);
    this._emit('error', { error, fatal: true });
    this.state = NO_ACCESS;
    this._emit('state', { state: this.state, reason });
  }

  /** `{logHead}` for the public data of our messages in a document with a log. */
  protected _logField(): { logHead?: LogHead } {
    const head = this.log?.head() ?? null;
    return head !== null ? { logHead: head } : {};
  }

  protected _send(message: unknown): void {
    this.outbox.push(JSON.stringify(message));
  }

  takeOutbox(): string[] {
    const frames = this.outbox;
    this.outbox = [];
    return frames;
  }

  // --------------------------------------------------------------- connection

  /** Query parameters for the next connection (besides `sessionKey`). */
  connectionParams(): Record<string, string> {
    const log = this.log?.connectionParams() ?? {};
    const remembered = this.remembered?.snapshot ?? null;
    if (this.loadKnown === null && remembered !== null && !this._loadedOnce) {
      // a complete load, with the proof chain from the snapshot verified before (804)
      return { mode: 'complete', knownSnapshotId: remembered.snapshotId, knownSnapshotUpdateClocks: '{}', ...log };
    }
    if (this.loadKnown === null) {
      return { mode: 'complete', ...log };
    }
    return {
      mode: this.loadMode,
      knownSnapshotId: this.loadKnown.snapshotId,
      knownSnapshotUpdateClocks: JSON.stringify(this.loadKnown.updateClocks),
      ...log
    };
  }

  protected get _terminal(): boolean {
    return this.state === FAILED || this.state === NO_ACCESS || this.state === CLOSED;
  }

  connecting(): void {
    if (this._terminal) {
      return;
    }
    this.state = CONNECTING;
    this._emit('state', { state: this.state });
  }

  /** The WebSocket is open: start a fresh ephemeral session and wait for the document. */
  connected(): void {
    if (this._terminal) {
      return;
    }
    this.state = CONNECTED;
    this.reconnectRequested = false;
    this.documentState = PENDING;
    this.log?.connected();
    const resume = this.loadKnown !== null && this.loadMode === 'delta';
    this.snapshots = resume ? [(this.loadKnown as KnownSnapshot).copy()] : [];
    // our next update on the known snapshot follows our last acknowledged one
    this.localClock = resume ? clockOf((this.loadKnown as KnownSnapshot).updateClocks, this.pubKey) : -1;
    try {
      // (issue 12: with epochs the key is chosen again per message, _ephemeralWriteKey)
      this._ephemeralKey = this.keyFor(this.active);
      this.ephemeral = createEphemeralSession();
    } catch (exc) {
      // no key yet: no presence on this connection
      this.ephemeral = null;
      pushError(this.ephemeralAuthoringErrors, errorWithCode('SECSYNC_ERROR_601', exc));
    }
    this._emit('state', { state: this.state });
  }

  /** The connection is gone: keep every unconfirmed change and resume in delta mode. */
  disconnected(): void {
    if (this._terminal) {
      return;
    }
    const unconfirmed: C[] = [];
    for (const upd of this.updatesInFlight) {
      unconfirmed.push(...upd.changes);
    }
    if (this.snapshotInFlight !== null) {
      unconfirmed.push(...this.snapshotInFlight.changes);
      this.snapshotRequested = true; // send it again after reconnecting
    }
    this.pending = unconfirmed.concat(this.pending);
    this.updatesInFlight = [];
    this.updatesDiscarded = [];
    this.snapshotInFlight = null;
    this.localClock = -1;
    this.log?.disconnected();
    this.snapshotSaveFailures = 0;
    this.updateSaveFailures = 0;
    this.ephemeral = null;
    this.outbox = [];
    this.documentState = PENDING;
    const active = this.active;
    if (active !== null) {
      this.loadKnown = active.copy();
      this.loadMode = 'delta';
      if (this.headsReload) {
        // ask for every update of the known snapshot again: a delta load only brings those
        // after the newest one we know, and the missing one is older
        this.loadKnown.updateClocks = {};
        this.loadKnown.updatesCount = 0;
        this.loadKnown.updatesBytes = 0;
        this.loadMode = 'complete';
      }
    }
    this.headsReload = false;
    this.state = DISCONNECTED;
    this.reconnectRequested = false;
    this._emit('state', { state: this.state });
  }

  /** Closed by the application (a failed / no-access state is kept for inspection). */
  close(): void {
    if (this.state !== FAILED && this.state !== NO_ACCESS) {
      this.state = CLOSED;
    }
    this.outbox = [];
    this._emit('state', { state: this.state });
  }

  protected _requestReconnect(): void {
    this.reconnectRequested = true;
    this._emit('reconnect');
  }

  // -------------------------------------------------------------------- send

  /** Queue local changes; `flush()` sends them. */
  addChanges(changes: Iterable<C>): void {
    for (const change of changes) {
      this.pending.push(change);
    }
  }

  /** Send a snapshot with the next flush (even without pending changes). */
  requestSnapshot(): void {
    this.snapshotRequested = true;
  }

  policyInfo(): SnapshotPolicyInfo {
    const active = this.active;
    return {
      activeSnapshotId: active !== null ? active.snapshotId : null,
      updatesSinceSnapshot: active !== null ? active.updatesCount : 0,
      updateBytesSinceSnapshot: active !== null ? active.updatesBytes : 0,
      pendingChanges: this.pending.length
    };
  }

  /**
   * Send pending changes as one update, or a snapshot. An update goes out while fewer than
   * `MAX_UPDATES_IN_FLIGHT` are unacknowledged; a snapshot (it records every author's saved
   * clock) only once none is.
   */
  flush(): void {
    if (
      this.state !== CONNECTED ||
      this.reconnectRequested ||
      this.documentState !== COMPLETE ||
      this.snapshotInFlight !== null ||
      this.updatesDiscarded.length > 0 ||
      this.updatesInFlight.length >= MAX_UPDATES_IN_FLIGHT ||
      (this.log !== null && (this.log.readOnly || this.log.rootPending !== null))
    ) {
      return; // (a viewer, a non-member or a refused writer sends nothing; changes stay pending)
    }
    if (this.epochs !== null && this.log?.state) {
      // issue 12
      const epoch = this.epochs.writeEpoch(this.log.state);
      if (epoch === null) {
        return; // no key for the current epoch yet: changes wait for our lockbox
      }
      if (this.pending.length > 0 && this.active !== null && this.active.epoch < epoch) {
        this.snapshotRequested = true; // the new epoch begins with a snapshot
      }
    }
    if (!this.snapshotRequested) {
      if (this.pending.length === 0) {
        return;
      }
      if (this.active !== null && !this.snapshotPolicy(this.policyInfo())) {
        this._createAndSendUpdate();
        return;
      }
    }
    if (this.updatesInFlight.length === 0) {
      this._createAndSendSnapshot();
    }
  }

  protected _createAndSendSnapshot(): void {
    const active = this.active;
    let snapshot: Snapshot;
    let epoch = 0;
    try {
      const snapshotId = generateId();
      const content = this.adapter.snapshotContent();
      const base: { docId: string; pubKey: string; snapshotId: string; epoch?: number } = {
        docId: this.docId,
        pubKey: this.pubKey,
        snapshotId,
        ...this._logField()
      };
      let key = this.keyFor(active);
      if (this.epochs !== null && this.log?.state) {
        // issue 12: the newest epoch
        epoch = this.log.state.epoch;
        key = this.epochs.key(epoch);
        if (epoch) {
          base.epoch = epoch;
        }
      }
      if (active === null) {
        snapshot = createInitialSnapshot(
          content,
          { ...base, parentSnapshotId: '', parentSnapshotUpdateClocks: {} },
          key,
          this.signingKey
        );
      } else {
        snapshot = createSnapshot(
          content,
          {
            ...base,
            parentSnapshotId: active.snapshotId,
            parentSnapshotUpdateClocks: { ...active.updateClocks }
          },
          key,
          this.signingKey,
          active.snapshotCiphertextHash,
          active.parentSnapshotProof
        );
      }
    } catch (exc) {
      this._fail(errorWithCode('SECSYNC_ERROR_401', exc));
      return;
    }
    const info = KnownSnapshot.of(snapshot);
    info.epoch = epoch;
    this.snapshotInFlight = {
      info,
      parentSnapshotId: snapshot.publicData.parentSnapshotId,
      changes: this.pending
    };
    this.pending = [];
    this.snapshotRequested = false;
    this.log?.noteSnapshot(snapshot.publicData.snapshotId, snapshot.publicData);
    this._send(snapshot);
  }

  protected _createAndSendUpdate(): void {
    const active = this.active as KnownSnapshot;
    const changes = this.pending;
    let update: Update;
    let clock: number;
    const heads = this.writeHeads ? this._heads(active) : {};
    try {
      const merged =
        this.adapter.mergeChanges !== undefined && changes.length > 1
          ? this.adapter.mergeChanges(changes)
          : changes;
      const content = this.adapter.serializeChanges(merged);
      clock = this.localClock + 1;
      update = createUpdate(
        content,
        {
          refSnapshotId: active.snapshotId,
          docId: this.docId,
          pubKey: this.pubKey,
          ...this._logField(),
          // heads that would name nothing are left out (docs/protocol.md)
          ...(this.writeHeads && Object.keys(heads).length > 0 ? { [HEADS_FIELD]: this._headsJson(heads) } : {})
        },
        this.keyFor(active),
        this.signingKey,
        clock
      );
    } catch (exc) {
      this._fail(errorWithCode('SECSYNC_ERROR_501', exc));
      return;
    }
    this.localClock = clock;
    this.pending = [];
    this.updatesInFlight.push({
      snapshotId: active.snapshotId,
      clock,
      changes,
      size: update.ciphertext.length,
      heads
    });
    this._send(update);
  }

  /**
   * What we had applied on `active` when writing: every other author's highest clock (ours
   * is implied by the update's clock) that advanced since what our acknowledged updates on
   * it named (compact: a reader has read those, in order; the first update on a snapshot
   * names every author). Beyond `MAX_HEADS` authors only the most advanced (highest clocks,
   * then pubKey order) are named; the others are named by a later update.
   */
  protected _heads(active: KnownSnapshot): Record<string, number> {
    const named = this.headsNamed.snapshotId === active.snapshotId ? this.headsNamed.clocks : {};
    let clocks = Object.entries(active.updateClocks).filter(
      ([k, v]) => k !== this.pubKey && v > clockOf(named, k)
    );
    if (clocks.length > MAX_HEADS) {
      // highest clocks, then member position, then pubKey (authors without a position last)
      const pos = this._memberPositions()?.byKey ?? new Map<string, number>();
      clocks = clocks
        .sort(([ka, va], [kb, vb]) => {
          const pa = pos.get(ka);
          const pb = pos.get(kb);
          if (vb !== va) {
            return vb - va;
          }
          if (pa !== undefined || pb !== undefined) {
            return pa === undefined ? 1 : pb === undefined ? -1 : pa - pb;
          }
          return ka < kb ? -1 : ka > kb ? 1 : 0;
        })
        .slice(0, MAX_HEADS);
    }
    const out: Record<string, number> = {};
    for (const [k, v] of clocks.sort(([ka], [kb]) => (ka < kb ? -1 : ka > kb ? 1 : 0))) {
      out[k] = v;
    }
    return out;
  }

  /** Our verified log's member positions (null without a verified log). */
  protected _memberPositions(): ReturnType<typeof memberPositions> | null {
    const state = this.log?.state ?? null;
    return state === null ? null : memberPositions(state);
  }

  /**
   * The `heads` field of our update: authors by member position (the field's keys) in a
   * document with a log; by public key (`clocks`) where there is no log, and for an author
   * without a position (none in practice: we applied its update under our log).
   */
  protected _headsJson(heads: Record<string, number>): Record<string, number | Record<string, number>> {
    const pos = this._memberPositions()?.byKey;
    if (pos === undefined) {
      return { clocks: heads };
    }
    const out: Record<string, number | Record<string, number>> = {};
    const clocks: Record<string, number> = {};
    let unnamed = 0;
    for (const [k, v] of Object.entries(heads)) {
      const p = pos.get(k);
      if (p === undefined) {
        clocks[k] = v;
        unnamed += 1;
      } else {
        out[String(p)] = v;
      }
    }
    if (unnamed > 0) {
      out.clocks = clocks;
    }
    return out;
  }

  /** Send ephemeral content (e.g. an awareness update) on the current session. */
  sendEphemeral(content: Uint8Array): boolean {
    if (this.state !== CONNECTED || this.ephemeral === null) {
      return false;
    }
    if (this.log !== null && (this.log.state === null || this.documentState === PENDING)) {
      return false; // our messages name the verified log head: not before the log
    }
    return this._sendEphemeralMessage(content, 'message');
  }

  /**
   * The key of our ephemeral messages: issue 12, the key of our active snapshot's epoch (the
   * snapshot our updates reference; before any, the newest key we hold), so a rotation moves
   * presence to the new key with the first snapshot of the new epoch; else the session's key.
   */
  protected _ephemeralWriteKey(): Uint8Array {
    if (this.epochs !== null) {
      return this.keyFor(this.active);
    }
    return this._ephemeralKey as Uint8Array;
  }

  /** `key`: a reply (session proof) goes out in the key of the message it answers. */
  protected _sendEphemeralMessage(content: Uint8Array, type: EphemeralMessageType, key?: Uint8Array): boolean {
    const session = this.ephemeral as EphemeralSession;
    let message: EphemeralMessage;
    try {
      message = createEphemeralMessage(
        content,
        type,
        { docId: this.docId, pubKey: this.pubKey, ...this._logField() },
        key ?? this._ephemeralWriteKey(),
        this.signingKey,
        session.id,
        session.counter
      );
    } catch (exc) {
      pushError(this.ephemeralAuthoringErrors, errorWithCode('SECSYNC_ERROR_601', exc));
      return false;
    }
    session.counter += 1;
    this._send(message);
    return true;
  }
}
