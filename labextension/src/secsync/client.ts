/**
 * SecsyncYjsClient — end-to-end encrypted sync of a Y.Doc (and optionally a y-protocols
 * Awareness) through a Secsync relay. Behaviour mirrors the reference `createSyncMachine`
 * (secsync 0.5) with the strictness fixes listed in shared/protocol.md.
 *
 * Usage (JupyterLab provider):
 *
 *   await ready();                       // libsodium (connect() also awaits it)
 *   const client = new SecsyncYjsClient({
 *     url,                // ws(s)://…/secsync/<docId>  (no query string)
 *     docId, key,         // key: Uint8Array(32), never sent to the relay
 *     signatureKeyPair,   // {publicKey, privateKey}: libsodium ed25519
 *     ydoc, awareness?,   // awareness: y-protocols Awareness of ydoc
 *     sessionKey?,        // relay authentication token (not a crypto key)
 *     WebSocketImpl?,     // defaults to globalThis.WebSocket
 *     isValidClient?,     // (pubKey, publicData) => boolean | Promise<boolean>
 *     snapshotPolicy?,    // {maxUpdates?: 300, maxUpdateBytes?: 1 MB} or a function
 *     onProgress?,        // (loaded, total) while the first document frame is applied
 *     knownSnapshot?,     // resume in delta mode (ydoc must already hold that state)
 *     sendInitialState?,  // queue the ydoc's current content as a local change
 *   });
 *   client.connect();
 *   await client.loaded;               // first `document` frame applied (ydoc filled)
 *   const off = client.onStatus(s => …);  // {connection, documentState, pendingChanges,
 *                                          //  unsyncedChanges, lastError?, failureReason?}
 *   await client.synced();             // every local change acknowledged by the relay
 *   await client.createSnapshot();     // force a snapshot now; resolves when it is saved
 *   client.disconnect(); client.connect();   // manual offline / online
 *   client.destroy();
 *
 * Other members: `status`, `errors` ({snapshotAndUpdate, ephemeralReceiving,
 * ephemeralAuthoring}: last 20 each, newest first), `activeSnapshotInfo` (what to persist
 * for `knownSnapshot`), `publicKey` (own b64 pubKey), `stats`.
 *
 * Content format (must match the Python client): Yjs v1 only. Snapshot plaintext =
 * Y.encodeStateAsUpdate(doc); update plaintext = UTF-8 JSON array of b64url v1 updates;
 * ephemeral content = awareness update bytes (encodeAwarenessUpdate). The local awareness
 * state carries `pubKey` and `secsync: {pubKey, fingerprint}` (own b64 signing key; the
 * latter is what the Python client reads). Remote entries whose claimed pubKey differs from
 * the message signer, or that touch a client id first seen with another signer, are dropped;
 * remote states are removed when the peer leaves (it sends a null state), when they time
 * out (y-protocols: 30 s without renewal) and when our own connection drops.
 *
 * Sending: local changes are batched — changes made within `batchDelayMs` (20 ms) or while
 * an update is in flight go out as one update; at most one update is in flight. A snapshot
 * is sent instead when the document has none yet, when the policy says so (default: 300
 * updates or 1 MB of update ciphertext since the active snapshot), or on createSnapshot().
 */
import * as Y from 'yjs';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import {
  applyAwarenessUpdate,
  Awareness,
  encodeAwarenessUpdate,
  removeAwarenessStates
} from 'y-protocols/awareness';
import { b64encode } from './base64';
import { fingerprint, generateId, hash, SignatureKeyPair } from './crypto';
import {
  createEphemeralMessage,
  createEphemeralSession,
  EphemeralMessageType,
  EphemeralSession,
  verifyAndDecryptEphemeralMessage
} from './ephemeral';
import { isSecsyncError, ProtocolError, SecsyncError, SecsyncErrorCode } from './errors';
import { parseServerFrame, parseSnapshot, parseUpdate, ServerFrame } from './parse';
import {
  createInitialSnapshot,
  createSnapshot,
  isValidAncestorSnapshot,
  verifyAndDecryptSnapshot
} from './snapshot';
import { ready } from './sodium';
import type {
  Snapshot,
  SnapshotInfoWithUpdateClocks,
  SnapshotProofChainEntry,
  Update,
  UpdateClocks
} from './types';
import { createUpdate, verifyAndDecryptUpdate } from './update';
import { deserializeUpdates, serializeUpdates } from './yjsContent';

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'failed';
export type DocumentState = 'pending' | 'partial' | 'complete' | 'failed';

export interface SecsyncStatus {
  connection: ConnectionState;
  documentState: DocumentState;
  /** local changes not yet sent */
  pendingChanges: number;
  /** local changes not yet acknowledged by the relay (pending + in flight) */
  unsyncedChanges: number;
  lastError?: SecsyncError;
  /** why the connection is `failed` (e.g. 'unauthorized', 'document-not-found', an error code) */
  failureReason?: string;
}

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface SnapshotPolicyInfo {
  activeSnapshotId: string | null;
  /** updates (all authors) on the active snapshot */
  updatesCount: number;
  /** bytes of update ciphertext (all authors) on the active snapshot */
  updateBytes: number;
}

export type SnapshotPolicy =
  | { maxUpdates?: number; maxUpdateBytes?: number }
  | ((info: SnapshotPolicyInfo) => boolean);

export interface SecsyncYjsClientOptions {
  url: string;
  docId: string;
  key: Uint8Array;
  signatureKeyPair: SignatureKeyPair;
  ydoc: Y.Doc;
  awareness?: Awareness;
  sessionKey?: string;
  WebSocketImpl?: WebSocketConstructor;
  isValidClient?: (pubKey: string, publicData: Record<string, unknown>) => boolean | Promise<boolean>;
  snapshotPolicy?: SnapshotPolicy;
  onProgress?: (loaded: number, total: number) => void;
  /** resume from a persisted snapshot (delta mode); the ydoc must already contain it */
  knownSnapshot?: SnapshotInfoWithUpdateClocks;
  /** queue Y.encodeStateAsUpdate(ydoc) as a local change at construction */
  sendInitialState?: boolean;
  /** batching window for local changes (default 20 ms) */
  batchDelayMs?: number;
  /** reconnect backoff cap (default 10 s); delay = min(100 ms * 1.8^n, cap) */
  maxReconnectDelayMs?: number;
  /** time allowed for a websocket to open (default 5 s) */
  connectTimeoutMs?: number;
  /** reconnect after connection loss (default true) */
  autoReconnect?: boolean;
  /** report ephemeral messages for another docId as SECSYNC_ERROR_306 instead of dropping */
  strictEphemeralDocId?: boolean;
}

interface UpdateInFlight {
  snapshotId: string;
  clock: number;
  changes: Uint8Array[];
}

interface SnapshotInFlight extends SnapshotProofChainEntry {
  parentSnapshotId: string;
  changes: Uint8Array[];
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

const DEFAULT_MAX_UPDATES = 300;
const DEFAULT_MAX_UPDATE_BYTES = 1024 * 1024;
const MAX_ERRORS = 20;
const MAX_SNAPSHOT_SAVE_FAILURES = 5;
const MAX_UPDATE_SAVE_FAILURES = 5;

/** Error codes that do not make the document fail (reference: "errorNotCausingDocumentToFail"). */
const NON_FATAL_UPDATE_ERRORS: SecsyncErrorCode[] = [
  'SECSYNC_ERROR_211',
  'SECSYNC_ERROR_212',
  'SECSYNC_ERROR_213',
  'SECSYNC_ERROR_214',
  'SECSYNC_ERROR_215'
];
const FATAL_SNAPSHOT_ERRORS: SecsyncErrorCode[] = [
  'SECSYNC_ERROR_100',
  'SECSYNC_ERROR_101',
  'SECSYNC_ERROR_102'
];

class FatalError extends Error {
  constructor(readonly error: SecsyncError) {
    super(error.message);
  }
}

function pushError(list: SecsyncError[], err: SecsyncError): void {
  list.unshift(err);
  if (list.length > MAX_ERRORS) {
    list.length = MAX_ERRORS;
  }
}

/**
 * The fields this client puts into its local awareness state: `pubKey` and
 * `secsync: {pubKey, fingerprint}` (the field the Python client checks).
 */
export function localAwarenessFields(pubKey: string): {
  pubKey: string;
  secsync: { pubKey: string; fingerprint: string };
} {
  return { pubKey, secsync: { pubKey, fingerprint: fingerprint(pubKey) } };
}

/**
 * The pubKey an awareness state claims: `secsync.pubKey` and/or `pubKey` (all present
 * claims must agree), else the reference client's `user.publicKey`; undefined if none.
 */
export function awarenessClaimedPubKey(state: unknown): string | undefined {
  if (typeof state !== 'object' || state === null) {
    return undefined;
  }
  const s = state as { pubKey?: unknown; secsync?: { pubKey?: unknown }; user?: { publicKey?: unknown } };
  const claims: unknown[] = [];
  if (typeof s.secsync === 'object' && s.secsync !== null && 'pubKey' in s.secsync) {
    claims.push(s.secsync.pubKey);
  }
  if ('pubKey' in s) {
    claims.push(s.pubKey);
  }
  if (claims.length === 0 && typeof s.user === 'object' && s.user !== null) {
    claims.push(s.user.publicKey);
  }
  if (claims.length === 0 || claims.some((c) => typeof c !== 'string' || c !== claims[0])) {
    return undefined;
  }
  return claims[0] as string;
}

export class SecsyncYjsClient {
  readonly docId: string;
  readonly publicKey: string;
  readonly ydoc: Y.Doc;
  readonly awareness: Awareness | undefined;
  readonly errors = {
    snapshotAndUpdate: [] as SecsyncError[],
    ephemeralReceiving: [] as SecsyncError[],
    ephemeralAuthoring: [] as SecsyncError[]
  };
  readonly stats = {
    updatesSent: 0,
    snapshotsSent: 0,
    updatesApplied: 0,
    snapshotsApplied: 0,
    ephemeralMessagesApplied: 0,
    snapshotSaveFailed: 0,
    updateSaveFailed: 0,
    connections: 0
  };
  /** resolves when the first `document` frame has been applied; rejects if it failed */
  readonly loaded: Promise<void>;

  private readonly opts: SecsyncYjsClientOptions;
  private readonly key: Uint8Array;
  private readonly sessionKey: string;
  private readonly WebSocketImpl: WebSocketConstructor;

  private ws: WebSocketLike | null = null;
  private generation = 0;
  private connection: ConnectionState = 'disconnected';
  private documentState: DocumentState = 'pending';
  private lastError: SecsyncError | undefined;
  private failureReason: string | undefined;
  private wantConnected = false;
  private destroyed = false;
  private retries = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private batchTimer: ReturnType<typeof setTimeout> | null = null;
  private batchReady = false;
  private batchMicrotask = false;

  private incoming: ServerFrame[] = [];
  private pending: Uint8Array[] = [];
  private updatesInFlight: UpdateInFlight[] = [];
  private snapshotInFlight: SnapshotInFlight | null = null;
  private snapshotInfos: SnapshotInfoWithUpdateClocks[] = [];
  private updatesLocalClock = -1;
  private loadMode: 'complete' | 'delta' = 'complete';
  private knownSnapshotInfo: SnapshotInfoWithUpdateClocks | undefined;
  private snapshotSaveFailures = 0;
  private updateSaveFailures = 0;
  private updateBytesOnActive = 0;
  private forceSnapshot = false;
  private snapshotWaiters: Waiter[] = [];
  private syncWaiters: Waiter[] = [];
  private ephemeralSession: EphemeralSession | null = null;
  private awarenessOwners = new Map<number, string>();
  private processing = false;
  private loadedSettled = false;
  private resolveLoaded!: () => void;
  private rejectLoaded!: (err: Error) => void;
  private statusListeners = new Set<(s: SecsyncStatus) => void>();
  private lastStatusJson = '';

  constructor(options: SecsyncYjsClientOptions) {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(options.docId)) {
      throw new ProtocolError('invalid docId');
    }
    if (!(options.key instanceof Uint8Array) || options.key.length !== 32) {
      throw new ProtocolError('key must be 32 bytes');
    }
    const impl =
      options.WebSocketImpl ??
      ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketConstructor | undefined);
    if (!impl) {
      throw new Error('secsync: no WebSocket implementation available');
    }
    this.opts = options;
    this.docId = options.docId;
    this.key = options.key;
    this.ydoc = options.ydoc;
    this.awareness = options.awareness;
    this.WebSocketImpl = impl;
    this.publicKey = b64encode(options.signatureKeyPair.publicKey);
    this.sessionKey = options.sessionKey ?? '';
    if (options.knownSnapshot) {
      this.knownSnapshotInfo = { ...options.knownSnapshot };
      this.loadMode = 'delta';
    }
    this.loaded = new Promise<void>((resolve, reject) => {
      this.resolveLoaded = resolve;
      this.rejectLoaded = reject;
    });
    // avoid unhandled rejections when nobody awaits `loaded`
    this.loaded.catch(() => undefined);

    this.ydoc.on('update', this.onDocUpdate);
    if (options.sendInitialState) {
      const state = Y.encodeStateAsUpdate(this.ydoc);
      if (Y.decodeStateVector(Y.encodeStateVector(this.ydoc)).size > 0) {
        this.pending.push(state);
        this.batchReady = true;
      }
    }
    if (this.awareness) {
      this.stampLocalAwareness();
      this.awareness.on('update', this.onAwarenessUpdate);
    }
  }

  // ------------------------------------------------------------------------------------
  // public API
  // ------------------------------------------------------------------------------------

  get status(): SecsyncStatus {
    const unsynced =
      this.pending.length +
      this.updatesInFlight.reduce((n, u) => n + u.changes.length, 0) +
      (this.snapshotInFlight ? this.snapshotInFlight.changes.length : 0);
    const s: SecsyncStatus = {
      connection: this.connection,
      documentState: this.documentState,
      pendingChanges: this.pending.length,
      unsyncedChanges: unsynced
    };
    if (this.lastError) {
      s.lastError = this.lastError;
    }
    if (this.failureReason) {
      s.failureReason = this.failureReason;
    }
    return s;
  }

  /** Info about the active snapshot, e.g. to persist and pass as `knownSnapshot` later. */
  get activeSnapshotInfo(): SnapshotInfoWithUpdateClocks | null {
    const a = this.active();
    return a ? { ...a, updateClocks: { ...a.updateClocks } } : null;
  }

  onStatus(cb: (s: SecsyncStatus) => void): () => void {
    this.statusListeners.add(cb);
    cb(this.status);
    return () => {
      this.statusListeners.delete(cb);
    };
  }

  connect(): void {
    if (this.destroyed || this.connection === 'failed') {
      return;
    }
    this.wantConnected = true;
    if (this.ws || this.reconnectTimer) {
      return;
    }
    void ready().then(() => this.openSocket());
  }

  /** Closes the connection and stays offline (local edits are kept and sent after connect()). */
  disconnect(): void {
    this.wantConnected = false;
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.closeSocket();
    if (this.connection !== 'failed') {
      this.setConnection('disconnected');
    }
  }

  /** Resolves once every local change has been acknowledged by the relay. */
  synced(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.syncWaiters.push({ resolve, reject });
      this.checkWaiters();
    });
  }

  /** Sends a snapshot of the current document (when possible) and resolves once it is saved. */
  createSnapshot(): Promise<void> {
    if (this.destroyed || this.connection === 'failed') {
      return Promise.reject(this.terminalError());
    }
    return new Promise<void>((resolve, reject) => {
      this.snapshotWaiters.push({ resolve, reject });
      this.forceSnapshot = true;
      this.schedule();
    });
  }

  destroy(): void {
    if (this.destroyed) {
      return;
    }
    if (this.awareness && this.awareness.getLocalState() !== null) {
      // announce that we are gone (sent by onAwarenessUpdate while the socket is open)
      removeAwarenessStates(this.awareness, [this.awareness.clientID], 'secsync-destroy');
    }
    this.destroyed = true;
    this.ydoc.off('update', this.onDocUpdate);
    if (this.awareness) {
      this.awareness.off('update', this.onAwarenessUpdate);
    }
    this.disconnect();
    if (this.batchTimer) {
      clearTimeout(this.batchTimer);
      this.batchTimer = null;
    }
    const err = this.terminalError();
    this.failWaiters(err);
    if (!this.loadedSettled) {
      this.loadedSettled = true;
      this.rejectLoaded(err);
    }
    this.statusListeners.clear();
  }

  // ------------------------------------------------------------------------------------
  // websocket
  // ------------------------------------------------------------------------------------

  private buildUrl(): string {
    const params = [`sessionKey=${encodeURIComponent(this.sessionKey)}`];
    const known = this.knownSnapshotInfo;
    if (known) {
      params.push(`knownSnapshotId=${encodeURIComponent(known.snapshotId)}`);
      params.push(
        `knownSnapshotUpdateClocks=${encodeURIComponent(JSON.stringify(known.updateClocks))}`
      );
    }
    params.push(`mode=${known ? this.loadMode : 'complete'}`);
    return `${this.opts.url}?${params.join('&')}`;
  }

  private openSocket(): void {
    if (this.destroyed || !this.wantConnected || this.ws || this.connection === 'failed') {
      return;
    }
    this.reconnectTimer = null;
    const gen = ++this.generation;
    this.resetConnectionState();
    this.setConnection('connecting');
    let ws: WebSocketLike;
    try {
      ws = new this.WebSocketImpl(this.buildUrl());
    } catch (err) {
      this.recordError(new ProtocolError(`websocket: ${String(err)}`));
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.stats.connections += 1;
    this.connectTimer = setTimeout(() => {
      if (gen === this.generation && this.connection === 'connecting') {
        this.onSocketLost(gen);
      }
    }, this.opts.connectTimeoutMs ?? 5000);
    ws.onopen = () => {
      if (gen !== this.generation) {
        return;
      }
      if (this.connectTimer) {
        clearTimeout(this.connectTimer);
        this.connectTimer = null;
      }
      this.setConnection('connected');
    };
    ws.onmessage = (ev) => {
      if (gen !== this.generation) {
        return;
      }
      this.onFrame(ev.data);
    };
    ws.onclose = () => this.onSocketLost(gen);
    ws.onerror = () => this.onSocketLost(gen);
  }

  private closeSocket(): void {
    const ws = this.ws;
    this.generation++;
    this.ws = null;
    if (this.connectTimer) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
    if (ws) {
      ws.onopen = null;
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = null;
      try {
        ws.close();
      } catch {
        // ignore
      }
    }
    this.resetConnectionState();
  }

  private onSocketLost(gen: number): void {
    if (gen !== this.generation) {
      return;
    }
    this.closeSocket();
    if (this.connection === 'failed' || this.destroyed) {
      return;
    }
    this.setConnection('disconnected');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (
      this.destroyed ||
      !this.wantConnected ||
      this.connection === 'failed' ||
      this.opts.autoReconnect === false ||
      this.reconnectTimer
    ) {
      return;
    }
    const delay = Math.min(100 * Math.pow(1.8, this.retries), this.opts.maxReconnectDelayMs ?? 10000);
    this.retries = Math.min(this.retries + 1, 13);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.openSocket();
    }, delay);
  }

  /** Forces a reconnect (used after repeated save failures, like the reference). */
  private reconnect(): void {
    this.closeSocket();
    if (this.connection !== 'failed' && !this.destroyed) {
      this.setConnection('disconnected');
      this.scheduleReconnect();
    }
  }

  /** Everything that belongs to one connection is reset; unconfirmed changes are kept. */
  private resetConnectionState(): void {
    const unconfirmed: Uint8Array[] = [];
    for (const u of this.updatesInFlight) {
      unconfirmed.push(...u.changes);
    }
    if (this.snapshotInFlight) {
      unconfirmed.push(...this.snapshotInFlight.changes);
    }
    if (unconfirmed.length > 0) {
      this.pending = unconfirmed.concat(this.pending);
    }
    if (this.pending.length > 0) {
      this.batchReady = true;
    }
    this.updatesInFlight = [];
    this.snapshotInFlight = null;
    this.incoming = [];
    this.snapshotSaveFailures = 0;
    this.updateSaveFailures = 0;
    this.ephemeralSession = null;
    const active = this.active();
    if (active) {
      // reconnect in delta mode from what we know
      this.knownSnapshotInfo = { ...active, updateClocks: { ...active.updateClocks } };
      this.loadMode = 'delta';
    }
    if (this.knownSnapshotInfo && this.loadMode === 'delta') {
      this.snapshotInfos = [
        { ...this.knownSnapshotInfo, updateClocks: { ...this.knownSnapshotInfo.updateClocks } }
      ];
      const own = this.knownSnapshotInfo.updateClocks[this.publicKey];
      this.updatesLocalClock = Number.isInteger(own) ? own : -1;
    } else {
      this.snapshotInfos = [];
      this.updatesLocalClock = -1;
    }
    if (this.documentState !== 'failed') {
      this.documentState = 'pending';
    }
    this.removeRemoteAwareness();
  }

  private onFrame(data: unknown): void {
    let frame: ServerFrame;
    try {
      frame = parseServerFrame(data);
    } catch (err) {
      this.recordError(isSecsyncError(err) ? err : new ProtocolError(String(err)));
      return;
    }
    switch (frame.type) {
      case 'unauthorized':
      case 'document-not-found':
      case 'document-error':
        this.fail(new ProtocolError(`relay answered ${frame.type}`), frame.type);
        return;
      case 'unknown':
        return;
      default:
        this.incoming.push(frame);
        this.schedule();
    }
  }

  // ------------------------------------------------------------------------------------
  // queue processing
  // ------------------------------------------------------------------------------------

  private schedule(): void {
    if (this.processing || this.destroyed) {
      return;
    }
    this.processing = true;
    void this.processLoop();
  }

  private canSendPending(): boolean {
    if (
      !this.ws ||
      this.connection !== 'connected' ||
      this.documentState !== 'complete' ||
      this.snapshotInFlight !== null ||
      this.updatesInFlight.length > 0
    ) {
      return false;
    }
    return (this.pending.length > 0 && this.batchReady) || this.forceSnapshot;
  }

  private async processLoop(): Promise<void> {
    try {
      for (;;) {
        if (this.destroyed || this.connection === 'failed') {
          break;
        }
        const gen = this.generation;
        if (this.incoming.length > 0) {
          const frame = this.incoming.shift() as ServerFrame;
          await this.handleFrame(frame, gen);
        } else if (this.canSendPending()) {
          this.sendPending();
        } else {
          break;
        }
        this.emitStatus();
      }
    } catch (err) {
      const e =
        err instanceof FatalError
          ? err.error
          : isSecsyncError(err)
            ? err
            : new SecsyncError('SECSYNC_ERROR_100', String(err));
      this.fail(e, e.code);
    } finally {
      this.processing = false;
      this.emitStatus();
    }
  }

  private async handleFrame(frame: ServerFrame, gen: number): Promise<void> {
    switch (frame.type) {
      case 'document':
        await this.handleDocument(frame, gen);
        return;
      case 'snapshot': {
        const res = await this.processSnapshot(frame.snapshot, [], this.active() ?? undefined, gen);
        if (res.error && (res.error.code === 'SECSYNC_ERROR_112' || res.error.code === 'SECSYNC_ERROR_115')) {
          // like the reference: a snapshot we cannot link to ours -> resync via reconnect
          this.reconnect();
        }
        return;
      }
      case 'snapshot-saved':
        this.handleSnapshotSaved(frame.snapshotId);
        return;
      case 'snapshot-save-failed':
        await this.handleSnapshotSaveFailed(frame, gen);
        return;
      case 'update':
        await this.processUpdates([frame.update], this.active(), gen, false);
        return;
      case 'update-saved':
        this.handleUpdateSaved(frame.snapshotId, frame.clock);
        return;
      case 'update-save-failed':
        this.handleUpdateSaveFailed(frame.requiresNewSnapshot);
        return;
      case 'ephemeral-message':
        await this.handleEphemeral(frame.message, gen);
        return;
      default:
        return;
    }
  }

  private active(): SnapshotInfoWithUpdateClocks | null {
    return this.snapshotInfos.length > 0 ? this.snapshotInfos[this.snapshotInfos.length - 1] : null;
  }

  private async handleDocument(
    frame: Extract<ServerFrame, { type: 'document' }>,
    gen: number
  ): Promise<void> {
    this.documentState = 'failed';
    const fatal = (err: SecsyncError): never => {
      throw new FatalError(err);
    };
    if (this.loadMode !== 'delta' && !frame.snapshot && frame.updates.length > 0) {
      fatal(new SecsyncError('SECSYNC_ERROR_100', 'updates without a snapshot'));
    }
    const total = (frame.snapshot ? 1 : 0) + frame.updates.length;
    let loadedCount = 0;
    let related: SnapshotProofChainEntry | null = this.active();
    if (frame.snapshot) {
      const res = await this.processSnapshot(
        frame.snapshot,
        frame.snapshotProofChain,
        this.knownSnapshotInfo,
        gen
      );
      if (gen !== this.generation) {
        return;
      }
      if (res.error) {
        // if the document's snapshot fails the document cannot be loaded
        throw new FatalError(res.error);
      }
      related = res.info;
      loadedCount += 1;
      this.progress(loadedCount, total);
    }
    this.documentState = 'partial';
    if (frame.updates.length > 0) {
      const err = await this.processUpdates(frame.updates, related, gen, true, (n) =>
        this.progress(loadedCount + n, total)
      );
      if (gen !== this.generation) {
        return;
      }
      if (err) {
        fatal(err);
      }
    }
    this.documentState = 'complete';
    this.retries = 0;
    if (total === 0) {
      this.progress(0, 0);
    }
    if (!this.loadedSettled) {
      this.loadedSettled = true;
      this.resolveLoaded();
    }
    // start the ephemeral session
    this.ephemeralSession = createEphemeralSession();
    this.sendEphemeral(new Uint8Array(), 'initialize');
  }

  private progress(loaded: number, total: number): void {
    try {
      this.opts.onProgress?.(loaded, total);
    } catch {
      // a buggy callback must not break sync
    }
  }

  private async isValidClient(pubKey: string, publicData: Record<string, unknown>): Promise<boolean> {
    if (!this.opts.isValidClient) {
      return true;
    }
    return await this.opts.isValidClient(pubKey, publicData);
  }

  /**
   * Verifies, decrypts and applies a snapshot. Returns the error (fatal ones are thrown as
   * FatalError) or the info of the snapshot (also when it was already known).
   */
  private async processSnapshot(
    raw: unknown,
    chain: SnapshotProofChainEntry[],
    known: SnapshotInfoWithUpdateClocks | undefined,
    gen: number
  ): Promise<{ error: SecsyncError; info?: undefined } | { error: null; info: SnapshotProofChainEntry }> {
    const nonFatal = (err: SecsyncError) => {
      this.recordError(err);
      return { error: err } as const;
    };
    let snapshot: Snapshot;
    try {
      snapshot = parseSnapshot(raw);
    } catch (err) {
      return nonFatal(new SecsyncError('SECSYNC_ERROR_110', String(err)));
    }
    let allowed: boolean;
    try {
      allowed = await this.isValidClient(snapshot.publicData.pubKey, snapshot.publicData);
    } catch (err) {
      throw new FatalError(new SecsyncError('SECSYNC_ERROR_104', String(err)));
    }
    if (gen !== this.generation) {
      return { error: new ProtocolError('connection changed') };
    }
    if (!allowed) {
      return nonFatal(new SecsyncError('SECSYNC_ERROR_114'));
    }
    const ciphertextHash = hash(snapshot.ciphertext);
    const info: SnapshotProofChainEntry = {
      snapshotId: snapshot.publicData.snapshotId,
      snapshotCiphertextHash: ciphertextHash,
      parentSnapshotProof: snapshot.publicData.parentSnapshotProof
    };
    if (
      known &&
      known.snapshotId === info.snapshotId &&
      known.snapshotCiphertextHash === info.snapshotCiphertextHash &&
      known.parentSnapshotProof === info.parentSnapshotProof
    ) {
      // already applied (e.g. resumed from a persisted state)
      if (!this.active() || this.active()?.snapshotId !== info.snapshotId) {
        this.snapshotInfos.push({ ...known, updateClocks: { ...known.updateClocks } });
      }
      return { error: null, info };
    }
    let isValidAncestor = false;
    let parentSnapshotUpdateClock: number | undefined;
    if (known && chain.length > 0) {
      isValidAncestor = isValidAncestorSnapshot({
        knownSnapshotProofEntry: known,
        snapshotProofChain: chain,
        currentSnapshot: snapshot
      });
      if (!isValidAncestor) {
        return nonFatal(new SecsyncError('SECSYNC_ERROR_115'));
      }
    } else if (known) {
      const own = known.updateClocks[this.publicKey];
      parentSnapshotUpdateClock = Number.isInteger(own) ? own : undefined;
    }
    const result = verifyAndDecryptSnapshot(snapshot, {
      key: this.key,
      currentDocId: this.docId,
      currentClientPublicKey: this.publicKey,
      parentSnapshotProofInfo: isValidAncestor ? undefined : known,
      parentSnapshotUpdateClock: isValidAncestor ? undefined : parentSnapshotUpdateClock
    });
    if (result.error) {
      if (FATAL_SNAPSHOT_ERRORS.includes(result.error.code)) {
        throw new FatalError(result.error);
      }
      return nonFatal(result.error);
    }
    try {
      Y.applyUpdate(this.ydoc, result.content, this);
    } catch (err) {
      throw new FatalError(new SecsyncError('SECSYNC_ERROR_105', String(err)));
    }
    this.stats.snapshotsApplied += 1;
    this.snapshotInfos.push({ ...info, updateClocks: {} });
    this.snapshotInfos = this.snapshotInfos.slice(-3);
    this.updatesLocalClock = -1;
    this.updateBytesOnActive = 0;
    // in-flight updates referencing an older snapshot can no longer be saved
    this.requeueStaleUpdates();
    return { error: null, info };
  }

  private requeueStaleUpdates(): void {
    const activeId = this.active()?.snapshotId;
    const stale = this.updatesInFlight.filter((u) => u.snapshotId !== activeId);
    if (stale.length === 0) {
      return;
    }
    this.updatesInFlight = this.updatesInFlight.filter((u) => u.snapshotId === activeId);
    const changes: Uint8Array[] = [];
    for (const u of stale) {
      changes.push(...u.changes);
    }
    this.pending = changes.concat(this.pending);
    this.batchReady = true;
  }

  /**
   * Verifies and applies updates on `related`. Non-fatal errors are recorded and skipped;
   * with `strict` (document load) the first error is returned instead.
   */
  private async processUpdates(
    rawUpdates: unknown[],
    related: SnapshotProofChainEntry | null,
    gen: number,
    strict: boolean,
    onEach?: (n: number) => void
  ): Promise<SecsyncError | null> {
    let firstError: SecsyncError | null = null;
    const note = (err: SecsyncError) => {
      this.recordError(err);
      if (!firstError) {
        firstError = err;
      }
    };
    if (!related) {
      note(new SecsyncError('SECSYNC_ERROR_213', 'no active snapshot'));
      return strict ? firstError : null;
    }
    const changes: Uint8Array[] = [];
    let n = 0;
    for (const raw of rawUpdates) {
      n += 1;
      let update: Update;
      try {
        update = parseUpdate(raw);
      } catch (err) {
        note(new SecsyncError('SECSYNC_ERROR_211', String(err)));
        continue;
      }
      let allowed: boolean;
      try {
        allowed = await this.isValidClient(update.publicData.pubKey, update.publicData);
      } catch (err) {
        throw new FatalError(new SecsyncError('SECSYNC_ERROR_205', String(err)));
      }
      if (gen !== this.generation) {
        return null;
      }
      if (!allowed) {
        note(new SecsyncError('SECSYNC_ERROR_215'));
        continue;
      }
      const active = this.active();
      const known = active ? active.updateClocks[update.publicData.pubKey] : undefined;
      const currentClock = Number.isInteger(known) ? (known as number) : -1;
      const result = verifyAndDecryptUpdate(update, {
        key: this.key,
        currentDocId: this.docId,
        currentActiveSnapshotId: related.snapshotId,
        currentClock
      });
      if (result.error) {
        if (NON_FATAL_UPDATE_ERRORS.includes(result.error.code)) {
          note(result.error);
          continue;
        }
        throw new FatalError(result.error);
      }
      let decoded: Uint8Array[];
      try {
        decoded = deserializeUpdates(result.content);
      } catch (err) {
        throw new FatalError(new SecsyncError('SECSYNC_ERROR_204', String(err)));
      }
      this.setClock(related.snapshotId, update.publicData.pubKey, result.clock);
      if (update.publicData.pubKey === this.publicKey && result.clock > this.updatesLocalClock) {
        this.updatesLocalClock = result.clock;
      }
      this.updateBytesOnActive += update.ciphertext.length;
      changes.push(...decoded);
      this.stats.updatesApplied += 1;
      onEach?.(n);
    }
    if (changes.length > 0) {
      try {
        Y.transact(
          this.ydoc,
          () => {
            for (const c of changes) {
              Y.applyUpdate(this.ydoc, c, this);
            }
          },
          this
        );
      } catch (err) {
        throw new FatalError(new SecsyncError('SECSYNC_ERROR_203', String(err)));
      }
    }
    return strict ? firstError : null;
  }

  private setClock(snapshotId: string, pubKey: string, clock: number): void {
    for (const info of this.snapshotInfos) {
      if (info.snapshotId === snapshotId) {
        const cur = info.updateClocks[pubKey];
        if (cur === undefined || cur < clock) {
          info.updateClocks = { ...info.updateClocks, [pubKey]: clock };
        }
      }
    }
  }

  private handleSnapshotSaved(snapshotId: string): void {
    const inFlight = this.snapshotInFlight;
    if (!inFlight || inFlight.snapshotId !== snapshotId) {
      return;
    }
    this.snapshotInFlight = null;
    const active = this.active();
    if (!active || active.snapshotId === inFlight.parentSnapshotId) {
      this.snapshotSaveFailures = 0;
      this.snapshotInfos.push({
        snapshotId: inFlight.snapshotId,
        snapshotCiphertextHash: inFlight.snapshotCiphertextHash,
        parentSnapshotProof: inFlight.parentSnapshotProof,
        updateClocks: {}
      });
      this.snapshotInfos = this.snapshotInfos.slice(-3);
      this.updatesLocalClock = -1;
      this.updateBytesOnActive = 0;
      this.stats.snapshotsSent += 1;
      this.requeueStaleUpdates();
      const waiters = this.snapshotWaiters;
      this.snapshotWaiters = [];
      for (const w of waiters) {
        w.resolve();
      }
    } else {
      // another snapshot became active first; our changes are re-sent on top of it
      this.pending = inFlight.changes.concat(this.pending);
      this.batchReady = true;
    }
  }

  private async handleSnapshotSaveFailed(
    frame: Extract<ServerFrame, { type: 'snapshot-save-failed' }>,
    gen: number
  ): Promise<void> {
    this.snapshotSaveFailures += 1;
    this.stats.snapshotSaveFailed += 1;
    let related: SnapshotProofChainEntry | null = this.active();
    if (frame.snapshot) {
      const res = await this.processSnapshot(frame.snapshot, frame.snapshotProofChain, this.active() ?? undefined, gen);
      if (gen !== this.generation) {
        return;
      }
      if (res.info) {
        related = res.info;
      }
    }
    if (frame.updates.length > 0) {
      await this.processUpdates(frame.updates, related, gen, false);
      if (gen !== this.generation) {
        return;
      }
    }
    // put the changes of the failed snapshot back and retry with a new snapshot
    if (this.snapshotInFlight) {
      this.pending = this.snapshotInFlight.changes.concat(this.pending);
      this.snapshotInFlight = null;
    }
    if (this.snapshotSaveFailures < MAX_SNAPSHOT_SAVE_FAILURES) {
      if (this.updatesInFlight.length === 0) {
        this.createAndSendSnapshot();
      } else {
        this.forceSnapshot = true;
      }
    } else {
      this.reconnect();
    }
  }

  private handleUpdateSaved(snapshotId: string, clock: number): void {
    this.snapshotSaveFailures = 0;
    this.updateSaveFailures = 0;
    this.setClock(snapshotId, this.publicKey, clock);
    this.updatesInFlight = this.updatesInFlight.filter(
      (u) => !(u.clock === clock && u.snapshotId === snapshotId)
    );
  }

  private handleUpdateSaveFailed(requiresNewSnapshot: boolean): void {
    this.updateSaveFailures += 1;
    this.stats.updateSaveFailed += 1;
    const changes: Uint8Array[] = [];
    for (const u of this.updatesInFlight) {
      changes.push(...u.changes);
    }
    this.updatesInFlight = [];
    this.pending = changes.concat(this.pending);
    this.batchReady = true;
    const own = this.active()?.updateClocks[this.publicKey];
    this.updatesLocalClock = Number.isInteger(own) ? (own as number) : -1;
    if (this.updateSaveFailures >= MAX_UPDATE_SAVE_FAILURES) {
      this.reconnect();
      return;
    }
    if (requiresNewSnapshot) {
      this.forceSnapshot = true;
    }
  }

  private shouldSendSnapshot(): boolean {
    const active = this.active();
    if (!active || this.forceSnapshot) {
      return true;
    }
    let updatesCount = 0;
    for (const k of Object.keys(active.updateClocks)) {
      updatesCount += active.updateClocks[k] + 1;
    }
    const info: SnapshotPolicyInfo = {
      activeSnapshotId: active.snapshotId,
      updatesCount,
      updateBytes: this.updateBytesOnActive
    };
    const policy = this.opts.snapshotPolicy;
    if (typeof policy === 'function') {
      try {
        return policy(info);
      } catch {
        return false;
      }
    }
    const maxUpdates = policy?.maxUpdates ?? DEFAULT_MAX_UPDATES;
    const maxBytes = policy?.maxUpdateBytes ?? DEFAULT_MAX_UPDATE_BYTES;
    return info.updatesCount >= maxUpdates || info.updateBytes >= maxBytes;
  }

  private sendPending(): void {
    if (this.shouldSendSnapshot()) {
      this.createAndSendSnapshot();
    } else {
      this.createAndSendUpdate();
    }
  }

  private send(message: unknown): void {
    if (!this.ws) {
      throw new ProtocolError('not connected');
    }
    this.ws.send(JSON.stringify(message));
  }

  private createAndSendSnapshot(): void {
    if (!this.ws) {
      return;
    }
    try {
      const active = this.active();
      const content = Y.encodeStateAsUpdate(this.ydoc);
      const publicDataBase = {
        docId: this.docId,
        pubKey: this.publicKey,
        snapshotId: generateId()
      };
      let snapshot: Snapshot;
      if (!active) {
        snapshot = createInitialSnapshot(
          content,
          { ...publicDataBase, parentSnapshotId: '', parentSnapshotUpdateClocks: {} },
          this.key,
          this.opts.signatureKeyPair
        );
      } else {
        const clocks: UpdateClocks = { ...active.updateClocks };
        snapshot = createSnapshot(
          content,
          { ...publicDataBase, parentSnapshotId: active.snapshotId, parentSnapshotUpdateClocks: clocks },
          this.key,
          this.opts.signatureKeyPair,
          active.snapshotCiphertextHash,
          active.parentSnapshotProof
        );
      }
      // the snapshot holds the whole document: every pending change is in it
      this.snapshotInFlight = {
        snapshotId: snapshot.publicData.snapshotId,
        snapshotCiphertextHash: hash(snapshot.ciphertext),
        parentSnapshotProof: snapshot.publicData.parentSnapshotProof,
        parentSnapshotId: snapshot.publicData.parentSnapshotId,
        changes: this.pending
      };
      this.pending = [];
      this.batchReady = false;
      this.forceSnapshot = false;
      this.send(snapshot);
    } catch (err) {
      throw new FatalError(new SecsyncError('SECSYNC_ERROR_401', String(err)));
    }
  }

  private createAndSendUpdate(): void {
    const active = this.active();
    if (!active || !this.ws) {
      return;
    }
    try {
      const changes = this.pending;
      const merged = changes.length > 1 ? [Y.mergeUpdates(changes)] : changes;
      const clock = this.updatesLocalClock + 1;
      const update = createUpdate(
        serializeUpdates(merged),
        { docId: this.docId, pubKey: this.publicKey, refSnapshotId: active.snapshotId },
        this.key,
        this.opts.signatureKeyPair,
        clock
      );
      this.updatesLocalClock = clock;
      this.pending = [];
      this.batchReady = false;
      this.updatesInFlight.push({ snapshotId: active.snapshotId, clock, changes });
      this.updateBytesOnActive += update.ciphertext.length;
      this.stats.updatesSent += 1;
      this.send(update);
    } catch (err) {
      throw new FatalError(new SecsyncError('SECSYNC_ERROR_501', String(err)));
    }
  }

  // ------------------------------------------------------------------------------------
  // local changes
  // ------------------------------------------------------------------------------------

  private onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (origin === this || this.destroyed) {
      return;
    }
    this.pending.push(update);
    if (this.opts.batchDelayMs === 0) {
      // no batching window: flush in a microtask, i.e. right after the current task's
      // synchronous edits (a timer would wait for the editor's per-keystroke work and a frame)
      if (!this.batchMicrotask) {
        this.batchMicrotask = true;
        queueMicrotask(() => {
          this.batchMicrotask = false;
          this.batchReady = true;
          this.schedule();
        });
      }
    } else if (!this.batchTimer) {
      this.batchTimer = setTimeout(() => {
        this.batchTimer = null;
        this.batchReady = true;
        this.schedule();
      }, this.opts.batchDelayMs ?? 20);
    }
    this.emitStatus();
  };

  // ------------------------------------------------------------------------------------
  // ephemeral messages / awareness
  // ------------------------------------------------------------------------------------

  private sendEphemeral(content: Uint8Array, type: EphemeralMessageType): void {
    const session = this.ephemeralSession;
    if (!session || !this.ws || this.connection !== 'connected') {
      return;
    }
    try {
      const counter = session.counter;
      session.counter += 1;
      const message = createEphemeralMessage(
        content,
        type,
        { docId: this.docId, pubKey: this.publicKey },
        this.key,
        this.opts.signatureKeyPair,
        session.id,
        counter
      );
      this.send(message);
    } catch (err) {
      pushError(this.errors.ephemeralAuthoring, new SecsyncError('SECSYNC_ERROR_601', String(err)));
    }
  }

  private sendOwnAwareness(): void {
    const awareness = this.awareness;
    if (!awareness || this.documentState !== 'complete') {
      return;
    }
    this.sendEphemeral(encodeAwarenessUpdate(awareness, [awareness.clientID]), 'message');
  }

  private onAwarenessUpdate = (
    changes: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown
  ): void => {
    const awareness = this.awareness;
    if (!awareness) {
      return;
    }
    for (const id of changes.removed) {
      if (id !== awareness.clientID) {
        this.awarenessOwners.delete(id);
      }
    }
    if (origin === this) {
      return;
    }
    const own = awareness.clientID;
    const touched =
      changes.added.includes(own) || changes.updated.includes(own) || changes.removed.includes(own);
    if (!touched) {
      return;
    }
    const state = awareness.getLocalState();
    if (state !== null && awarenessClaimedPubKey(state) !== this.publicKey) {
      // the application replaced the local state: re-add our pubKey (triggers another update)
      this.stampLocalAwareness();
      return;
    }
    this.sendOwnAwareness();
  };

  /**
   * Local awareness state fields identifying this client: `pubKey` and
   * `secsync: {pubKey, fingerprint}` (the Python client's field).
   */
  private stampLocalAwareness(): void {
    const awareness = this.awareness;
    const state = awareness?.getLocalState();
    if (!awareness || state === null || state === undefined) {
      return;
    }
    awareness.setLocalState({ ...state, ...localAwarenessFields(this.publicKey) });
  }

  private removeRemoteAwareness(): void {
    const awareness = this.awareness;
    if (!awareness) {
      return;
    }
    const remote: number[] = [];
    awareness.getStates().forEach((_state, id) => {
      if (id !== awareness.clientID) {
        remote.push(id);
      }
    });
    if (remote.length > 0) {
      removeAwarenessStates(awareness, remote, this);
    }
    this.awarenessOwners.clear();
  }

  private async handleEphemeral(raw: unknown, gen: number): Promise<void> {
    const session = this.ephemeralSession;
    const record = (err: SecsyncError) => pushError(this.errors.ephemeralReceiving, err);
    if (!session) {
      return;
    }
    const publicData =
      typeof raw === 'object' && raw !== null ? (raw as { publicData?: unknown }).publicData : undefined;
    const claimed =
      typeof publicData === 'object' && publicData !== null
        ? (publicData as { pubKey?: unknown }).pubKey
        : undefined;
    if (typeof claimed !== 'string') {
      record(new SecsyncError('SECSYNC_ERROR_307', 'missing publicData.pubKey'));
      return;
    }
    let allowed: boolean;
    try {
      allowed = await this.isValidClient(claimed, publicData as Record<string, unknown>);
    } catch {
      allowed = false;
    }
    if (gen !== this.generation || session !== this.ephemeralSession) {
      return;
    }
    if (!allowed) {
      record(new SecsyncError('SECSYNC_ERROR_304'));
      return;
    }
    const outcome = verifyAndDecryptEphemeralMessage(raw, {
      key: this.key,
      currentDocId: this.docId,
      session,
      signatureKeyPair: this.opts.signatureKeyPair,
      strictDocId: this.opts.strictEphemeralDocId
    });
    if (outcome.error) {
      record(outcome.error);
    }
    if (outcome.proof) {
      this.sendEphemeral(outcome.proof, outcome.requestProof ? 'proofAndRequestProof' : 'proof');
    }
    if (outcome.sessionVerified) {
      // a peer just verified: let it see our presence right away
      this.sendOwnAwareness();
    }
    if (outcome.content && outcome.pubKey) {
      this.applyRemoteAwareness(outcome.content, outcome.pubKey);
    }
  }

  /**
   * Applies the entries of a remote awareness update signed by `signer`. Entries claiming
   * another key, touching our own client id, or touching a client id first seen with another
   * signer are dropped (each such entry is recorded as SECSYNC_ERROR_304).
   */
  private applyRemoteAwareness(content: Uint8Array, signer: string): void {
    const awareness = this.awareness;
    if (!awareness) {
      return;
    }
    const entries: Array<{ clientId: number; clock: number; json: string; state: unknown }> = [];
    try {
      const decoder = decoding.createDecoder(content);
      const len = decoding.readVarUint(decoder);
      for (let i = 0; i < len; i++) {
        const clientId = decoding.readVarUint(decoder);
        const clock = decoding.readVarUint(decoder);
        const json = decoding.readVarString(decoder);
        entries.push({ clientId, clock, json, state: JSON.parse(json) as unknown });
      }
    } catch (err) {
      pushError(this.errors.ephemeralReceiving, new SecsyncError('SECSYNC_ERROR_307', `awareness: ${String(err)}`));
      return;
    }
    const kept = entries.filter(({ clientId, state }) => {
      const owner = this.awarenessOwners.get(clientId);
      let reason: string | null = null;
      if (clientId === awareness.clientID || (owner !== undefined && owner !== signer)) {
        reason = 'awareness client id of another author';
      } else if (state === null) {
        if (owner !== signer) {
          reason = 'removal of an unknown awareness client id';
        }
      } else if (awarenessClaimedPubKey(state) !== signer) {
        reason = 'awareness pubKey differs from the signer';
      }
      if (reason) {
        pushError(this.errors.ephemeralReceiving, new SecsyncError('SECSYNC_ERROR_304', reason));
        return false;
      }
      return true;
    });
    if (kept.length === 0) {
      return;
    }
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, kept.length);
    for (const e of kept) {
      encoding.writeVarUint(encoder, e.clientId);
      encoding.writeVarUint(encoder, e.clock);
      encoding.writeVarString(encoder, e.json);
    }
    try {
      applyAwarenessUpdate(awareness, encoding.toUint8Array(encoder), this);
    } catch (err) {
      pushError(this.errors.ephemeralReceiving, new SecsyncError('SECSYNC_ERROR_307', `awareness: ${String(err)}`));
      return;
    }
    for (const { clientId, state } of kept) {
      if (state === null) {
        this.awarenessOwners.delete(clientId);
      } else {
        this.awarenessOwners.set(clientId, signer);
      }
    }
    this.stats.ephemeralMessagesApplied += 1;
  }

  // ------------------------------------------------------------------------------------
  // status / errors
  // ------------------------------------------------------------------------------------

  private recordError(err: SecsyncError): void {
    pushError(this.errors.snapshotAndUpdate, err);
    this.lastError = err;
  }

  private fail(err: SecsyncError, reason: string): void {
    this.recordError(err);
    this.failureReason = reason;
    this.wantConnected = false;
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.closeSocket();
    if (this.documentState !== 'complete' && reason.startsWith('SECSYNC_ERROR_')) {
      this.documentState = 'failed';
    }
    this.setConnection('failed');
    if (!this.loadedSettled) {
      this.loadedSettled = true;
      this.rejectLoaded(err);
    }
    this.failWaiters(err);
  }

  private terminalError(): SecsyncError {
    return this.lastError && this.connection === 'failed'
      ? this.lastError
      : new ProtocolError(this.destroyed ? 'client destroyed' : 'client failed');
  }

  private failWaiters(err: Error): void {
    const waiters = this.syncWaiters.concat(this.snapshotWaiters);
    this.syncWaiters = [];
    this.snapshotWaiters = [];
    for (const w of waiters) {
      w.reject(err);
    }
  }

  private setConnection(state: ConnectionState): void {
    this.connection = state;
    this.emitStatus();
  }

  private checkWaiters(): void {
    if (this.connection === 'failed' || this.destroyed) {
      this.failWaiters(this.terminalError());
      return;
    }
    const s = this.status;
    if (
      this.syncWaiters.length > 0 &&
      s.connection === 'connected' &&
      s.documentState === 'complete' &&
      s.unsyncedChanges === 0 &&
      !this.processing &&
      this.incoming.length === 0
    ) {
      const waiters = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of waiters) {
        w.resolve();
      }
    }
  }

  private emitStatus(): void {
    this.checkWaiters();
    const s = this.status;
    const json = JSON.stringify({ ...s, lastError: s.lastError?.message });
    if (json === this.lastStatusJson) {
      return;
    }
    this.lastStatusJson = json;
    for (const cb of Array.from(this.statusListeners)) {
      try {
        cb(s);
      } catch {
        // ignore listener errors
      }
    }
  }
}
