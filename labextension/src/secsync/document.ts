/**
 * SecsyncYjsClient — the browser driver of the sans-IO {@link SyncEngine} (engine.ts): a
 * WebSocket, reconnect backoff, the batching window, waiters and status, around a Y.Doc and
 * optionally a y-protocols Awareness. The twin of `secsync_jupyter/client/document.py`.
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
 *     snapshotPolicy?,    // {maxUpdates?: 300, maxUpdateBytes?: 1,000,000} or a function
 *     onProgress?,        // (loaded, total) when a `document` frame has been applied
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
 * ephemeralAuthoring}: last 20 each, newest first — the engine's lists), `activeSnapshotInfo`
 * (what to persist for `knownSnapshot`), `publicKey` (own b64 pubKey), `stats`, `engine`.
 *
 * Sending: local changes are batched — changes made within `batchDelayMs` (20 ms; 0 = the
 * end of the current task), or while the engine has as many updates in flight as it allows
 * (`MAX_UPDATES_IN_FLIGHT`), go out as one update.
 */
import * as Y from 'yjs';
import type { Awareness } from 'y-protocols/awareness';
import { AwarenessBridge } from './awareness';
import { b64encode } from './base64';
import {
  Authorizer,
  ConnectionState,
  SecsyncStatus,
  SecsyncYjsClientOptions,
  snapshotPolicyFunction,
  WebSocketConstructor,
  WebSocketLike
} from './clientOptions';
import {
  backoffDelay,
  CLOSED,
  COMPLETE,
  CONNECTED,
  FAILED,
  KnownSnapshot,
  NO_ACCESS,
  pushError,
  SyncEngine
} from './engine';
import { ProtocolError, SecsyncError } from './errors';
import { isValidDocId } from './ids';
import { isLogDocId } from './membership';
import { err } from './membershipError';
import { MembersClient, notNow } from './membershipClient';
import { ready } from './sodium';
import type { SnapshotInfoWithUpdateClocks } from './types';
import { YDocAdapter } from './yjsContent';
import { HeadsDriver } from './headsDriver';
import { RememberedDamagedError } from './rememberedState';
import { EpochKeys } from './engineEpochs';

export * from './clientOptions';
export { createLogDocument, MembershipError } from './membershipClient';
export type { MembershipListener } from './membershipClient';

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class SecsyncYjsClient extends MembersClient {
  readonly docId: string;
  readonly publicKey: string;
  readonly ydoc: Y.Doc;
  readonly awareness: Awareness | undefined;
  readonly engine: SyncEngine<Uint8Array>;
  readonly adapter: YDocAdapter;
  readonly bridge: AwarenessBridge | null = null;
  /**
   * issue 13: `alerts` (withheld 801 / 806, served-incompletely 803, fork 805, rollback 804,
   * remembered-damaged 807),
   * `onAlert(cb)`, `peerHeads` (each live collaborator's latest heads); see engineHeads.ts
   */
  readonly heads: HeadsDriver;
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

  private readonly _opts: SecsyncYjsClientOptions;
  private readonly _sessionKey: string;
  private readonly _WebSocketImpl: WebSocketConstructor;
  private readonly _authorizer: Authorizer | null = null;

  private _ws: WebSocketLike | null = null;
  private _generation = 0;
  private _wantConnected = false;
  protected _destroyed = false;
  private _retries = 0;
  private _reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private _connectTimer: ReturnType<typeof setTimeout> | null = null;
  private _batchTimer: ReturnType<typeof setTimeout> | null = null;
  private _batchMicrotask = false;
  /** local changes inside the batching window (handed to the engine when it closes) */
  private _batch: Uint8Array[] = [];
  private _incoming: Array<{ data: unknown; gen: number }> = [];
  private _processing = false;
  private _depth = 0;
  private _failureReason: string | undefined;
  private _snapshotWaiters: Waiter[] = [];
  private _syncWaiters: Waiter[] = [];
  private _loadedSettled = false;
  private _resolveLoaded!: () => void;
  private _rejectLoaded!: (err: Error) => void;
  private _statusListeners = new Set<(s: SecsyncStatus) => void>();
  private _lastStatusJson = '';

  constructor(options: SecsyncYjsClientOptions) {
    super();
    if (!isValidDocId(options.docId)) {
      throw new ProtocolError('invalid docId');
    }
    const keyring = options.keyring ?? null;
    const hasKey = options.key instanceof Uint8Array && options.key.length === 32;
    if (!hasKey && (options.key != null || keyring === null || !isLogDocId(options.docId))) {
      // (a document with a log may open with only a keyring: a join through a link)
      throw new ProtocolError('key must be 32 bytes');
    }
    const impl =
      options.WebSocketImpl ??
      ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketConstructor | undefined);
    if (!impl) {
      throw new Error('secsync: no WebSocket implementation available');
    }
    this._opts = options;
    this.docId = options.docId;
    this.ydoc = options.ydoc;
    this.awareness = options.awareness;
    this._WebSocketImpl = impl;
    this.publicKey = b64encode(options.signatureKeyPair.publicKey);
    this._sessionKey = options.sessionKey ?? '';
    this.loaded = new Promise<void>((resolve, reject) => {
      this._resolveLoaded = resolve;
      this._rejectLoaded = reject;
    });
    // avoid unhandled rejections when nobody awaits `loaded`
    this.loaded.catch(() => undefined);

    const pendingChanges: Uint8Array[] = [];
    if (options.sendInitialState && Y.decodeStateVector(Y.encodeStateVector(this.ydoc)).size > 0) {
      pendingChanges.push(Y.encodeStateAsUpdate(this.ydoc));
    }
    if (options.isValidClient && !isLogDocId(options.docId)) {
      // (documents with a membership log: the log decides, isValidClient is not asked)
      this._authorizer = new Authorizer(options.isValidClient);
    }
    this.adapter = new YDocAdapter(
      this.ydoc,
      (update) => this._onLocalUpdate(update),
      (content, author) => this._onEphemeral(content, author)
    );
    let epochs: EpochKeys | null = null;
    if (isLogDocId(options.docId)) {
      // issue 12: the key of each epoch (the given key is epoch 0's); an epoch-0 key that
      // came from a link's lockbox writes only once it decrypted a writer's snapshot
      const fromLockbox = options.epoch0FromLockbox ?? (!hasKey && keyring !== null);
      epochs = new EpochKeys(options.docId, options.signatureKeyPair, {
        docKey: hasKey && !(fromLockbox && keyring?.has(0)) ? options.key : null,
        keyring,
        store: options.keyringStore ?? null,
        epoch0FromLockbox: fromLockbox,
        trusted: options.rootEntry != null // we create it: our own key
      });
    }
    const noKey = (): Uint8Array => {
      throw err(766, 'epoch', 'no document key');
    };
    // issue 13: a stored state that cannot be read is kept aside (headsDriver.ts) and the
    // load is checked from scratch (807)
    let remembered: unknown = null;
    let damaged: string | null = null;
    try {
      remembered = options.rememberedStore?.load(this.docId) ?? null;
    } catch (exc) {
      if (!(exc instanceof RememberedDamagedError)) {
        throw exc;
      }
      damaged = exc.message;
    }
    this.engine = new SyncEngine(this.docId, hasKey ? (options.key as Uint8Array) : noKey, this.adapter, options.signatureKeyPair, {
      epochs,
      snapshotPolicy: snapshotPolicyFunction(options.snapshotPolicy),
      isValidClient: this._authorizer?.check,
      knownSnapshot: options.knownSnapshot ? KnownSnapshot.fromJSON(options.knownSnapshot) : null,
      pendingChanges,
      onEvent: (event, data) => this._onEngineEvent(event, data),
      strictEphemeralDocId: options.strictEphemeralDocId,
      rootEntry: options.rootEntry,
      knownLogHead: options.knownLogHead,
      remembered,
      headsGrace: options.headsGraceSeconds,
      headsInterval: options.headsIntervalSeconds
    });
    if (damaged !== null) {
      this.engine.rememberedUnusable(damaged);
    }
    this.heads = new HeadsDriver(this.docId, this.engine, options.rememberedStore ?? null, (fn) => this._call(fn));

    if (this.awareness) {
      this.bridge = new AwarenessBridge(
        this.awareness,
        this.publicKey,
        (content) => this._sendEphemeral(content),
        (error) => pushError(this.engine.ephemeralErrors, error)
      );
    }
  }

  // ------------------------------------------------------------------ status

  get errors(): {
    snapshotAndUpdate: SecsyncError[];
    ephemeralReceiving: SecsyncError[];
    ephemeralAuthoring: SecsyncError[];
  } {
    return {
      snapshotAndUpdate: this.engine.errors,
      ephemeralReceiving: this.engine.ephemeralErrors,
      ephemeralAuthoring: this.engine.ephemeralAuthoringErrors
    };
  }

  get status(): SecsyncStatus {
    const e = this.engine;
    const pending = e.pending.length + this._batch.length;
    let unsynced = pending + (e.snapshotInFlight ? e.snapshotInFlight.changes.length : 0);
    for (const u of e.updatesInFlight) {
      unsynced += u.changes.length;
    }
    const s: SecsyncStatus = {
      connection: this._terminal
        ? e.state === CLOSED
          ? 'disconnected'
          : 'failed'
        : (e.state as ConnectionState),
      documentState: e.documentState,
      pendingChanges: pending,
      unsyncedChanges: unsynced
    };
    if (e.errors.length > 0) {
      s.lastError = e.errors[0];
    }
    if (this._failureReason !== undefined && s.connection === 'failed') {
      s.failureReason = this._failureReason;
    }
    if (e.log !== null) {
      s.role = e.log.role;
      s.readOnly = e.log.readOnly;
    }
    return s;
  }

  /** Info about the active snapshot, e.g. to persist and pass as `knownSnapshot` later. */
  get activeSnapshotInfo(): SnapshotInfoWithUpdateClocks | null {
    const active = this.engine.active;
    return active ? active.toJSON() : null;
  }

  onStatus(cb: (s: SecsyncStatus) => void): () => void {
    this._statusListeners.add(cb);
    cb(this.status);
    return () => {
      this._statusListeners.delete(cb);
    };
  }

  /** issue 12: an automatic rotation failed: recorded (the next load tries again). */
  protected _rotationFailed(error: unknown): void {
    const code = (error as { code?: string }).code ?? 'SECSYNC_ERROR_750';
    const detail = `automatic key rotation failed: ${error instanceof Error ? error.message : String(error)}`;
    pushError(this.engine.errors, new SecsyncError(code as SecsyncError['code'], detail));
    this._notify();
  }

  protected get _terminal(): boolean {
    const state = this.engine.state;
    return state === FAILED || state === NO_ACCESS || state === CLOSED;
  }

  // --------------------------------------------------------------- lifecycle

  connect(): void {
    if (this._destroyed || this._terminal) {
      return;
    }
    this._wantConnected = true;
    if (this._ws || this._reconnectTimer) {
      return;
    }
    void ready().then(() => this._open());
  }

  /** Closes the connection and stays offline (local edits are kept and sent after connect()). */
  disconnect(): void {
    this._wantConnected = false;
    if (this._reconnectTimer) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
    }
    this._closeSocket();
    this._lost();
  }

  /** Resolves once every local change has been acknowledged by the relay. */
  synced(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this._syncWaiters.push({ resolve, reject });
      this._checkWaiters();
    });
  }

  /** Sends a snapshot of the current document (when possible) and resolves once it is saved. */
  createSnapshot(): Promise<void> {
    if (this._destroyed || this._terminal) {
      return Promise.reject(this._terminalError());
    }
    if (this.readOnly) {
      return Promise.reject(err(724, null, 'read-only: this client may not write snapshots'));
    }
    return new Promise<void>((resolve, reject) => {
      this._snapshotWaiters.push({ resolve, reject });
      this.engine.requestSnapshot();
      this._flushNow();
    });
  }

  destroy(): void {
    if (this._destroyed) {
      return;
    }
    // announce that we are gone (sent while the socket is open)
    this.bridge?.leave();
    this._destroyed = true;
    this.heads.destroy();
    this.adapter.close();
    this.bridge?.destroy();
    this.disconnect();
    if (this._batchTimer) {
      clearTimeout(this._batchTimer);
      this._batchTimer = null;
    }
    this.engine.close();
    this._settle(this._terminalError());
    this._statusListeners.clear();
  }

  // --------------------------------------------------------------- websocket

  private _url(): string {
    const params = { sessionKey: this._sessionKey, ...this.engine.connectionParams() };
    const query = Object.entries(params)
      .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
      .join('&');
    return `${this._opts.url}?${query}`;
  }

  private _open(): void {
    if (this._destroyed || !this._wantConnected || this._ws || this._terminal) {
      return;
    }
    this._reconnectTimer = null;
    const gen = ++this._generation;
    this.engine.connecting();
    this._notify();
    let ws: WebSocketLike;
    try {
      ws = new this._WebSocketImpl(this._url());
    } catch {
      this._lost();
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this.stats.connections += 1;
    this._connectTimer = setTimeout(() => {
      if (gen === this._generation && this.engine.state !== CONNECTED) {
        this._onSocketLost(gen);
      }
    }, this._opts.connectTimeoutMs ?? 5000);
    ws.onopen = () => {
      if (gen !== this._generation) {
        return;
      }
      if (this._connectTimer) {
        clearTimeout(this._connectTimer);
        this._connectTimer = null;
      }
      this._call(() => this.engine.connected());
    };
    ws.onmessage = (ev) => {
      if (gen === this._generation) {
        this._incoming.push({ data: ev.data, gen });
        void this._drain();
      }
    };
    ws.onclose = () => this._onSocketLost(gen);
    ws.onerror = () => this._onSocketLost(gen);
  }

  private _closeSocket(): void {
    const ws = this._ws;
    this._generation++;
    this._ws = null;
    this._incoming = [];
    if (this._connectTimer) {
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
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
  }

  /** The connection is gone: the engine keeps unconfirmed changes; remote presence goes. */
  private _lost(): void {
    if (!this._terminal) {
      this.engine.disconnected();
    }
    this.bridge?.removeRemote();
    this._notify();
  }

  private _onSocketLost(gen: number): void {
    if (gen !== this._generation) {
      return;
    }
    this._closeSocket();
    if (this._terminal || this._destroyed) {
      return;
    }
    this._lost();
    this._scheduleReconnect();
  }

  private _scheduleReconnect(): void {
    if (
      this._destroyed ||
      !this._wantConnected ||
      this._terminal ||
      this._opts.autoReconnect === false ||
      this._reconnectTimer
    ) {
      return;
    }
    const delay = backoffDelay(this._retries, this._opts.maxReconnectDelayMs);
    this._retries = Math.min(this._retries + 1, 13);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  // ------------------------------------------------------------- frames in

  /** Feed queued frames to the engine in order (asynchronous only for async authorization). */
  private async _drain(): Promise<void> {
    if (this._processing) {
      return;
    }
    this._processing = true;
    try {
      while (this._incoming.length > 0 && !this._destroyed) {
        const { data, gen } = this._incoming.shift() as { data: unknown; gen: number };
        if (gen !== this._generation || this.engine.state !== CONNECTED) {
          continue;
        }
        const frame = this.engine.parseFrame(data);
        if (frame === null) {
          continue;
        }
        const waiting = this._authorizer?.prefetch(frame);
        if (waiting) {
          await waiting;
          if (gen !== this._generation) {
            continue;
          }
        }
        if (frame.type === 'snapshot-save-failed') {
          this.stats.snapshotSaveFailed += 1;
        } else if (frame.type === 'update-save-failed') {
          this.stats.updateSaveFailed += 1;
        }
        this._call(() => this.engine.receive(frame));
        if (frame.type === 'document' && this.engine.documentState === COMPLETE) {
          const n = (frame.snapshot != null ? 1 : 0) + (Array.isArray(frame.updates) ? frame.updates.length : 0);
          this._progress(n, n);
        }
      }
    } finally {
      this._processing = false;
      this._notify();
    }
  }

  /**
   * Run an engine call: internal errors fail the document (as document.py), the outbox goes
   * to the socket, a requested reconnect or a terminal state is acted on.
   */
  private _call(fn: () => void): void {
    const e = this.engine;
    const before = e.updatesInFlight[e.updatesInFlight.length - 1];
    this._depth++;
    try {
      fn();
    } catch (exc) {
      e.fail(new SecsyncError('SECSYNC_ERROR_100', `internal error: ${String(exc)}`));
    } finally {
      this._depth--;
    }
    const last = e.updatesInFlight[e.updatesInFlight.length - 1];
    if (last !== undefined && last !== before) {
      this.stats.updatesSent += 1;
    }
    this._pump();
  }

  /** Move the engine's outbox to the socket; act on reconnect requests and terminal states. */
  protected _pump(): void {
    if (this._depth > 0) {
      return; // the outer _call pumps
    }
    const e = this.engine;
    this._calls.pump(e.state === CONNECTED && e.documentState === COMPLETE);
    const frames = this.engine.takeOutbox();
    const ws = this._ws;
    if (ws) {
      for (const frame of frames) {
        try {
          ws.send(frame);
        } catch {
          break; // closing: onclose takes over
        }
      }
    }
    if (this._terminal && !this._destroyed) {
      this._wantConnected = false;
      if (this._reconnectTimer) {
        clearTimeout(this._reconnectTimer);
        this._reconnectTimer = null;
      }
      this._closeSocket();
      this._settle(this._terminalError());
    } else if (this.engine.reconnectRequested && this._ws) {
      this._closeSocket();
      this._lost();
      this._scheduleReconnect();
    }
    this._notify();
  }

  private _onEngineEvent(event: string, data: Record<string, unknown>): void {
    this._calls.onEvent(event, data);
    this.heads?.onEvent(event, data); // issue 13: alerts, remembered state
    switch (event) {
      case 'loaded':
        this._retries = 0;
        this._rotateIfNeeded(); // issue 12: an admin rotates when the log says it is due
        if (!this._loadedSettled) {
          this._loadedSettled = true;
          this._resolveLoaded();
        }
        break;
      case 'snapshot-saved': {
        this.stats.snapshotsSent += 1;
        const waiters = this._snapshotWaiters;
        this._snapshotWaiters = [];
        waiters.forEach((w) => w.resolve());
        break;
      }
      case 'remote-change':
        if (data.kind === 'snapshot') {
          this.stats.snapshotsApplied += 1;
        } else {
          this.stats.updatesApplied += data.count as number;
        }
        break;
      case 'ephemeral-peer':
        // a peer just verified our session: let it see our presence right away
        this.bridge?.resend();
        break;
      case 'state':
        if (data.state === FAILED || data.state === NO_ACCESS) {
          const first = this.engine.errors[0];
          this._failureReason =
            data.state === NO_ACCESS && first?.code.startsWith('SECSYNC_ERROR_7')
              ? first.code // 722 not a member, 725 removed: the error says why
              : (data.reason as string | undefined) ?? first?.code ?? 'failed';
        }
        break;
      default:
        break;
    }
  }

  private _progress(loaded: number, total: number): void {
    try {
      this._opts.onProgress?.(loaded, total);
    } catch {
      // a buggy callback must not break sync
    }
  }

  // ------------------------------------------------------------ local changes

  /**
   * A local change waits in the batching window and goes to the engine when it closes (the
   * engine flushes after every frame it receives: an ack sends what the window released).
   */
  private _onLocalUpdate(update: Uint8Array): void {
    if (this._destroyed) {
      return;
    }
    this._batch.push(update);
    if (this._opts.batchDelayMs === 0) {
      // no batching window: flush in a microtask, i.e. right after the current task's
      // synchronous edits (a timer would wait for the editor's per-keystroke work and a frame)
      if (!this._batchMicrotask) {
        this._batchMicrotask = true;
        queueMicrotask(() => {
          this._batchMicrotask = false;
          this._flushNow();
        });
      }
    } else if (!this._batchTimer) {
      this._batchTimer = setTimeout(() => this._flushNow(), this._opts.batchDelayMs ?? 20);
    }
    this._notify();
  }

  private _flushNow(): void {
    if (this._batchTimer) {
      clearTimeout(this._batchTimer);
      this._batchTimer = null;
    }
    if (!this._destroyed) {
      const changes = this._batch;
      this._batch = [];
      this._call(() => {
        this.engine.addChanges(changes);
        this.engine.flush();
      });
    }
  }

  // ---------------------------------------------------------------- ephemeral

  private _onEphemeral(content: Uint8Array, author: string): void {
    if (this.bridge?.apply(content, author)) {
      this.stats.ephemeralMessagesApplied += 1;
    }
  }

  /** Awareness out: only on a loaded document (peers verify our session meanwhile). */
  private _sendEphemeral(content: Uint8Array): void {
    if (this.engine.documentState === COMPLETE && this.engine.sendEphemeral(content)) {
      this._pump();
    }
  }

  // ------------------------------------------------------------------ waiters

  private _terminalError(): SecsyncError {
    const state = this.engine.state;
    if ((state === FAILED || state === NO_ACCESS) && this.engine.errors.length > 0 && this._failureReason?.startsWith('SECSYNC_')) {
      return this.engine.errors[0];
    }
    if (state === FAILED || state === NO_ACCESS) {
      return new ProtocolError(`relay answered ${this._failureReason ?? 'failed'}`);
    }
    return new ProtocolError(this._destroyed ? 'client destroyed' : 'client failed');
  }

  /** Reject `loaded` (if still open) and every waiter. */
  private _settle(err: Error): void {
    if (!this._loadedSettled) {
      this._loadedSettled = true;
      this._rejectLoaded(err);
    }
    this._calls.rejectAll(notNow(err.message));
    const waiters = this._syncWaiters.concat(this._snapshotWaiters);
    this._syncWaiters = [];
    this._snapshotWaiters = [];
    waiters.forEach((w) => w.reject(err));
  }

  private _checkWaiters(): void {
    if (this._destroyed || this._terminal) {
      this._settle(this._terminalError());
      return;
    }
    if (
      this._syncWaiters.length > 0 &&
      this.engine.isSynced &&
      this._batch.length === 0 &&
      !this._processing &&
      this._incoming.length === 0
    ) {
      const waiters = this._syncWaiters;
      this._syncWaiters = [];
      waiters.forEach((w) => w.resolve());
    }
  }

  private _notify(): void {
    this._checkWaiters();
    this._notifyMembership();
    const s = this.status;
    const json = JSON.stringify({ ...s, lastError: s.lastError?.message });
    if (json === this._lastStatusJson) {
      return;
    }
    this._lastStatusJson = json;
    for (const cb of Array.from(this._statusListeners)) {
      try {
        cb(s);
      } catch {
        // ignore listener errors
      }
    }
  }
}
