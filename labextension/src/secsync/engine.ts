/**
 * The sans-IO Secsync sync engine: frames in, frames and document operations out.
 *
 * The TypeScript twin of `secsync_jupyter/client/engine.py` — same states, events, error
 * tables, outbox and methods, in camelCase (`add_changes` → `addChanges`, `take_outbox` →
 * `takeOutbox`, `_on_document` → `_onDocument`; event data keys too: `snapshot_id` →
 * `snapshotId`). No socket, no timers, no DOM:
 *
 * - the transport tells it `connecting()`, `connected()`, `receive(frame)` and
 *   `disconnected()`; it appends the frames to send to `outbox` and sets
 *   `reconnectRequested` when the connection must be re-established;
 * - it drives a {@link DocumentAdapter} (apply a snapshot, apply changes, serialize local
 *   changes, produce the snapshot content, deliver ephemeral content);
 * - local changes go in with `addChanges()` and out with `flush()` (up to
 *   `MAX_UPDATES_IN_FLIGHT` updates in flight; the relay saves and acknowledges one
 *   connection's updates in clock order, so changes made while that many are unacknowledged
 *   are batched into the next update).
 *
 * Error handling follows the reference: some errors fail the document (state `failed`, no
 * reconnect), others are recorded and the message is ignored; both kinds are kept in
 * `errors` (newest first, at most 20). During the initial load every error fails the
 * document. Ephemeral errors are kept separately (also at most 20 each).
 *
 * Stricter than the reference (as engine.py): updates are checked against the document id
 * (213), a replayed ephemeral session proof cannot reset a peer's counter, the changes of a
 * snapshot in flight are kept across a reconnect, a frame that is not a JSON object is
 * recorded and ignored, in-flight updates written against a snapshot that is no longer the
 * active one are re-queued onto the new one, and repeated `update-save-failed` answers for
 * our update make the engine reconnect (as repeated `snapshot-save-failed` do).
 *
 * Documents with a membership log (`m1_…` ids): `engine.log` (engineLog.ts) — the reader
 * proof, the log verified before anything in the `document` frame, live entries, the author
 * checks that replace `isValidClient`, `publicData.logHead` in what we write, read-only roles.
 *
 * The driver is `document.ts` (WebSocket, backoff, batching timer, waiters, status).
 */
import { EngineAcks } from './engineAcks';
import { checkRemembered, decodeHeads, isHeadsContent } from './engineHeads';
import { verifyAndDecryptParsedEphemeralMessage } from './ephemeral';
import { ProtocolError, SecsyncError } from './errors';
import {
  isPlainObject,
  parseEphemeralMessage,
  parseSnapshot,
  parseSnapshotProofChain,
  parseUpdate
} from './parse';
import { isValidAncestorSnapshot, verifyAndDecryptParsedSnapshot } from './snapshot';
import type { EphemeralMessage, Snapshot, SnapshotProofChainEntry, Update } from './types';
import { verifyAndDecryptParsedUpdate } from './update';
import {
  clockOf,
  COMPLETE,
  CONNECTED,
  errorWithCode,
  FAILED,
  Frame,
  HEADS_FIELD,
  KnownSnapshot,
  MAX_SNAPSHOT_SAVE_FAILURES,
  PARTIAL,
  pushError,
  RECONNECT_CODES,
  SNAPSHOT_FATAL,
  UPDATE_IGNORED
} from './engineCore';

export * from './engineCore';

/** An error that fails the document. */
class Fail extends Error {
  constructor(readonly error: SecsyncError) {
    super(error.message);
  }
}

/** An error that is recorded; the message is ignored. */
class Ignore extends Error {
  constructor(readonly error: SecsyncError) {
    super(error.message);
  }
}

/** The same snapshot (id, ciphertext hash and parent proof). */
function sameEntry(a: SnapshotProofChainEntry, b: SnapshotProofChainEntry): boolean {
  return (
    a.snapshotId === b.snapshotId &&
    a.snapshotCiphertextHash === b.snapshotCiphertextHash &&
    a.parentSnapshotProof === b.parentSnapshotProof
  );
}

/** Sans-IO Secsync client state machine for one document (receiving side here). */
export class SyncEngine<C = Uint8Array> extends EngineAcks<C> {
  // ------------------------------------------------------------------ receive

  /** The frame as an object (text is parsed here); null (recorded) when it is not one. */
  parseFrame(frame: unknown): Frame | null {
    let obj: unknown = frame;
    if (typeof frame === 'string') {
      try {
        obj = JSON.parse(frame);
      } catch {
        obj = null;
      }
    }
    if (!isPlainObject(obj) || typeof obj.type !== 'string') {
      this._record(new ProtocolError('the relay sent a frame that is not a typed JSON object'));
      return null;
    }
    return obj as Frame;
  }

  /** Handle one frame from the relay (text or an already decoded object). */
  receive(frame: unknown): void {
    if (this.state !== CONNECTED) {
      return;
    }
    const obj = this.parseFrame(frame);
    if (obj === null) {
      return;
    }
    switch (obj.type) {
      case 'document':
        this._onDocument(obj);
        break;
      case 'snapshot':
        this._onSnapshot(obj);
        break;
      case 'snapshot-saved':
        this._onSnapshotSaved(obj);
        break;
      case 'snapshot-save-failed':
        this._onSnapshotSaveFailed(obj);
        break;
      case 'update':
        this._onUpdate(obj);
        break;
      case 'update-saved':
        this._onUpdateSaved(obj);
        break;
      case 'update-save-failed':
        this._onUpdateSaveFailed(obj);
        break;
      case 'ephemeral-message':
        this._onEphemeral(obj);
        break;
      case 'document-not-found':
        this.noAccess(obj.type);
        break;
      case 'unauthorized':
        this._onUnauthorized(obj);
        break;
      case 'reader-challenge':
      case 'log-entry':
      case 'log-entry-saved':
      case 'log-entry-failed':
      case 'write-refused':
      case 'lockbox':
      case 'lockbox-saved':
      case 'lockbox-failed':
        if (this.log === null) {
          this._emit('custom-message', { message: obj });
          return;
        }
        this._onLogFrame(obj);
        break;
      case 'document-error':
        this._onDocumentError();
        break;
      default:
        this._emit('custom-message', { message: obj });
        return;
    }
    if (this.state === CONNECTED) {
      this.flush();
    }
  }

  private _onDocumentError(): void {
    this.state = FAILED;
    this._emit('state', { state: this.state, reason: 'document-error' });
  }

  private _onDocument(obj: Frame): void {
    if (this.log !== null) {
      // the log first: nothing in the frame is trusted before it is verified
      try {
        this.log.loadDocumentLog(obj);
      } catch (exc) {
        if (!(exc instanceof SecsyncError)) {
          throw exc;
        }
        this.documentState = FAILED;
        this._fail(exc);
        return;
      }
    }
    if (this.state !== CONNECTED) {
      return; // not a member (any more)
    }
    if (this.epochs !== null && this.log?.state) {
      // issue 12: our lockboxes, before any snapshot
      for (const error of this.epochs.open(this.log.state, obj.lockboxes)) {
        this._record(error);
      }
    }
    if (this.ephemeral !== null) {
      this._sendEphemeralMessage(new Uint8Array(), 'initialize');
    }
    this.documentState = FAILED;
    const snapshot = obj.snapshot;
    const updates = obj.updates;
    this.lastDocument = {
      snapshot: snapshot != null,
      updates: Array.isArray(updates) ? updates.length : 0,
      mode: this.loadMode
    };
    if (updates != null && !Array.isArray(updates)) {
      this._fail(errorWithCode('SECSYNC_ERROR_211', 'updates must be an array'));
      return;
    }
    const list: unknown[] = updates ?? [];
    if (this.loadMode !== 'delta' && snapshot == null && list.length > 0) {
      this._fail(errorWithCode('SECSYNC_ERROR_100', 'complete load with updates but no snapshot'));
      return;
    }
    try {
      let related = this.active;
      if (snapshot != null) {
        related = this._processSnapshot(snapshot, obj.snapshotProofChain || [], this.loadKnown);
      }
      this.documentState = PARTIAL;
      if (list.length > 0) {
        this._processUpdates(list, related, true);
      }
    } catch (exc) {
      // during the initial load every error is fatal
      this._fail(rethrowUnlessRule(exc).error);
      return;
    }
    if (!this._loadedOnce && this.remembered !== null) {
      const rollback = checkRemembered(this.remembered, this.active, snapshot, obj.snapshotProofChain, (ids) =>
        this.heads.noteChain(ids)
      );
      if (rollback !== null) {
        this.rolledBack = true;
        this.documentState = FAILED;
        this._fail(rollback);
        this._emit('rollback', { detail: rollback.message });
        return;
      }
    }
    this.documentState = COMPLETE;
    this._loadedOnce = true;
    this.heads.loaded();
    this._emit('loaded');
  }

  private _onSnapshot(obj: Frame): void {
    try {
      this._processSnapshot(obj.snapshot, [], this.active, true);
    } catch (exc) {
      this._failOrRecord(exc);
    }
  }

  /** Fail on a `Fail`; record an `Ignore` (and reconnect for 112/115); rethrow bugs. */
  private _failOrRecord(exc: unknown): boolean {
    const rule = rethrowUnlessRule(exc);
    if (rule instanceof Fail) {
      this._fail(rule.error);
      return true;
    }
    this._record(rule.error);
    if (RECONNECT_CODES.includes(rule.error.code)) {
      this._requestReconnect();
      return true;
    }
    return false;
  }

  private _onSnapshotSaved(obj: Frame): void {
    const flight = this.snapshotInFlight;
    if (flight === null || obj.snapshotId !== flight.info.snapshotId) {
      return;
    }
    const active = this.active;
    if (active !== null && active.snapshotId !== flight.parentSnapshotId) {
      // another snapshot won meanwhile: send the changes again on top of it
      this.pending = flight.changes.concat(this.pending);
      this.snapshotInFlight = null;
      return;
    }
    this.snapshotSaveFailures = 0;
    this.snapshots = [...this.snapshots, flight.info].slice(-3);
    this.heads.noteChain([flight.parentSnapshotId, flight.info.snapshotId]);
    this.heads.dirty = true;
    this.snapshotInFlight = null;
    this.localClock = -1;
    this._requeueStaleUpdates();
    this._emit('snapshot-saved', { snapshotId: flight.info.snapshotId });
  }

  private _onSnapshotSaveFailed(obj: Frame): void {
    this.snapshotSaveFailures += 1;
    try {
      let related = this.active;
      if (obj.snapshot != null) {
        related = this._processSnapshot(obj.snapshot, obj.snapshotProofChain || [], this.active);
      }
      const updates = obj.updates;
      if (updates) {
        if (!Array.isArray(updates)) {
          throw new Ignore(errorWithCode('SECSYNC_ERROR_211', 'updates must be an array'));
        }
        if (updates.length > 0) {
          this._processUpdates(updates, related);
        }
      }
    } catch (exc) {
      if (this._failOrRecord(exc)) {
        return;
      }
    }
    if (this.snapshotInFlight !== null) {
      this.pending = this.snapshotInFlight.changes.concat(this.pending);
      this.snapshotInFlight = null;
    }
    // retry (the flush after this frame sends it), at most 5 times in a row
    this.snapshotRequested = true;
    if (this.snapshotSaveFailures >= MAX_SNAPSHOT_SAVE_FAILURES) {
      this._requestReconnect();
    }
  }

  private _onUpdate(obj: Frame): void {
    const active = this.active;
    const state = this.log?.state ?? null;
    if (this.epochs !== null && active !== null && state !== null && active.epoch < state.epoch) {
      // issue 12: written in an older epoch
      this._record(errorWithCode('SECSYNC_ERROR_768', `update in epoch ${active.epoch}`));
      return;
    }
    try {
      this._processUpdates([obj], this.active);
    } catch (exc) {
      const rule = rethrowUnlessRule(exc);
      if (rule instanceof Fail) {
        this._fail(rule.error);
      } else {
        this._record(rule.error);
      }
    }
  }

  private _onEphemeral(obj: Frame): void {
    let message: EphemeralMessage;
    try {
      message = parseEphemeralMessage(obj);
    } catch {
      pushError(this.ephemeralErrors, errorWithCode('SECSYNC_ERROR_307'));
      return;
    }
    const author = message.publicData.pubKey;
    let denied: string | null;
    try {
      denied = this._denied('ephemeral', message.publicData, null);
    } catch {
      denied = '';
    }
    if (denied !== null) {
      pushError(this.ephemeralErrors, errorWithCode('SECSYNC_ERROR_304', denied || undefined));
      return;
    }
    const session = this.ephemeral;
    if (session === null) {
      return;
    }
    const sessionOf = () =>
      Object.prototype.hasOwnProperty.call(session.validSessions, author)
        ? session.validSessions[author].sessionId
        : undefined;
    const beforeId = sessionOf();
    let result: ReturnType<typeof verifyAndDecryptParsedEphemeralMessage> = {
      error: errorWithCode('SECSYNC_ERROR_301', 'no epoch key')
    };
    let usedKey: Uint8Array | undefined;
    for (const key of this._ephemeralReadKeys()) {
      // issue 12: a peer may be one snapshot behind or ahead of ours across a rotation
      usedKey = key;
      result = verifyAndDecryptParsedEphemeralMessage(message, {
        key,
        currentDocId: this.docId,
        session,
        signatureKeyPair: this.signingKey,
        strictDocId: this.strictEphemeralDocId
      });
      if (result.error === null || result.error.code !== 'SECSYNC_ERROR_301') {
        break;
      }
    }
    if (result.error !== null) {
      pushError(this.ephemeralErrors, result.error);
    }
    if (result.proof !== undefined) {
      const kind = result.requestProof ? 'proofAndRequestProof' : 'proof';
      this._sendEphemeralMessage(result.proof, kind, this.epochs !== null ? usedKey : undefined);
    }
    const afterId = sessionOf();
    if (afterId !== undefined && afterId !== beforeId) {
      this.heads.dirty = true; // a new peer (session) hears our heads soon
      this._emit('ephemeral-peer', { author });
    }
    if (result.content !== undefined && isHeadsContent(result.content)) {
      let heads;
      try {
        heads = decodeHeads(result.content);
      } catch (exc) {
        pushError(this.ephemeralErrors, errorWithCode('SECSYNC_ERROR_307', `heads: ${detailOf(exc)}`));
        return;
      }
      this.heads.onPeerHeads(author, heads);
      return;
    }
    if (result.content !== undefined) {
      try {
        this.adapter.applyEphemeral(result.content, author);
      } catch (exc) {
        pushError(this.ephemeralErrors, errorWithCode('SECSYNC_ERROR_300', exc));
      }
    }
  }

  /**
   * The keys an ephemeral message may be in: the session's key, or (issue 12) the key of our
   * active snapshot's epoch first, then every other epoch key we hold, newest first (a peer
   * whose active snapshot is of another epoch across a rotation; its author was checked
   * against the log, and we only hold keys we were given).
   */
  private _ephemeralReadKeys(): Uint8Array[] {
    if (this.epochs === null) {
      return [this._ephemeralKey as Uint8Array];
    }
    const keys: Uint8Array[] = [];
    let first: number | null = null;
    try {
      first = this.active !== null ? this.active.epoch : this.epochs.keyring.newest;
      if (first !== null) {
        keys.push(this.epochs.key(first));
      }
    } catch {
      first = null;
    }
    const ring = this.epochs.keyring;
    for (const epoch of ring.epochs.reverse()) {
      if (epoch !== first) {
        keys.push(ring.key(epoch));
      }
    }
    return keys;
  }

  // ------------------------------------------------------- snapshot / updates

  /** Verify and apply a snapshot; returns the snapshot info the updates refer to. */
  /**
   * Verify and apply a snapshot; returns the snapshot info the updates refer to. `live`: it
   * arrives on a connection that has delivered every update on `known` (the active snapshot)
   * so far, so its parent clocks must name none we lack (802).
   */
  private _processSnapshot(
    raw: unknown,
    rawChain: unknown,
    known: KnownSnapshot | null,
    live = false
  ): KnownSnapshot | null {
    let snapshot: Snapshot;
    try {
      snapshot = parseSnapshot(raw);
    } catch (exc) {
      throw new Ignore(errorWithCode('SECSYNC_ERROR_110', detailOf(exc)));
    }
    let chain: SnapshotProofChainEntry[];
    try {
      chain = parseSnapshotProofChain(rawChain);
    } catch (exc) {
      throw new Ignore(errorWithCode('SECSYNC_ERROR_115', detailOf(exc)));
    }
    const pd = snapshot.publicData;
    let denied: string | null;
    try {
      denied = this._denied('snapshot', pd, known !== null ? known.snapshotId : null);
    } catch (exc) {
      throw new Fail(errorWithCode('SECSYNC_ERROR_104', exc));
    }
    if (denied !== null) {
      throw new Ignore(errorWithCode('SECSYNC_ERROR_114', denied || undefined));
    }
    const info = KnownSnapshot.of(snapshot);
    if (known !== null && sameEntry(known.proofEntry, info.proofEntry)) {
      info.epoch = known.epoch;
      // already applied (e.g. a delta load whose snapshot is still the active one)
      const active = this.active;
      if (active === null || active.snapshotId !== info.snapshotId) {
        this.snapshots = [...this.snapshots, known.copy()].slice(-3);
      }
      this.heads.noteChain([info.snapshotId]);
      return this.active;
    }
    const state = this.log?.state ?? null;
    if (this.epochs !== null && state !== null) {
      // issue 12: 766-769 (logHead was checked by the log: an entry of it)
      try {
        const logSeq = (pd as unknown as { logHead: { seq: number } }).logHead.seq;
        info.epoch = this.epochs.checkSnapshot(state, pd as unknown as Record<string, unknown>, logSeq, known, live);
      } catch (exc) {
        if (!(exc instanceof SecsyncError)) {
          throw exc;
        }
        throw new Ignore(exc);
      }
    }
    let ancestor = false;
    let parentClock: number | undefined;
    if (known !== null && chain.length > 0) {
      if (
        !isValidAncestorSnapshot({
          knownSnapshotProofEntry: known.proofEntry,
          snapshotProofChain: chain,
          currentSnapshot: snapshot
        })
      ) {
        throw new Ignore(errorWithCode('SECSYNC_ERROR_115'));
      }
      ancestor = true;
    } else if (known !== null) {
      const own = clockOf(known.updateClocks, this.pubKey);
      parentClock = own >= 0 ? own : undefined;
    }
    let key: Uint8Array;
    try {
      key = this.keyFor(info);
    } catch (exc) {
      throw new Fail(errorWithCode('SECSYNC_ERROR_103', exc));
    }
    const result = verifyAndDecryptParsedSnapshot(snapshot, {
      key,
      currentDocId: this.docId,
      currentClientPublicKey: this.pubKey,
      parentSnapshotProofInfo: ancestor || known === null ? undefined : known.proofEntry,
      parentSnapshotUpdateClock: ancestor ? undefined : parentClock
    });
    if (result.error !== null) {
      if (SNAPSHOT_FATAL.includes(result.error.code)) {
        throw new Fail(result.error);
      }
      throw new Ignore(result.error);
    }
    if (ancestor && chain.length === 1) {
      this._checkOwnUpdatesKept(snapshot, known as KnownSnapshot);
    }
    const withheld =
      live && known !== null && !ancestor
        ? this._missing(known, snapshot.publicData.parentSnapshotUpdateClocks, '')
        : [];
    try {
      this.adapter.applySnapshot(result.content);
    } catch (exc) {
      throw new Fail(errorWithCode('SECSYNC_ERROR_105', exc));
    }
    this.epochs?.accepted(info.epoch);
    this.snapshots = [...this.snapshots, info].slice(-3);
    this.heads.noteChain(ancestor ? chain.map((c) => c.snapshotId) : [pd.parentSnapshotId]);
    this.heads.noteChain([info.snapshotId]);
    this.log?.noteSnapshot(info.snapshotId, pd);
    this.localClock = -1;
    this._requeueStaleUpdates();
    this._emit('remote-change', { kind: 'snapshot', snapshotId: info.snapshotId });
    if (withheld.length > 0) {
      // its content has them: reported, nothing to ask for
      this._withheld('SECSYNC_ERROR_802', withheld, false);
    }
    return info;
  }

  /**
   * A snapshot that arrives with a proof chain from `parent` (its direct child) must record
   * at least our acknowledged clock on it (102), as one without a chain must: a relay must
   * not drop a saved update of ours by snapshotting around it. (At least, not exactly: an
   * update still in flight when the connection dropped may have been saved.) Behind a
   * longer chain the snapshot that had to record it is not at hand.
   */
  private _checkOwnUpdatesKept(snapshot: Snapshot, parent: KnownSnapshot): void {
    const own = clockOf(parent.updateClocks, this.pubKey);
    if (own < 0) {
      return;
    }
    const recorded = clockOf(snapshot.publicData.parentSnapshotUpdateClocks, this.pubKey);
    if (recorded < own) {
      throw new Fail(errorWithCode('SECSYNC_ERROR_102', 'publicData.parentSnapshotUpdateClocks'));
    }
  }

  /** In-flight updates written against a snapshot that is no longer active go out again. */
  private _requeueStaleUpdates(): void {
    const activeId = this.active?.snapshotId;
    // answers still due for updates on an older snapshot no longer hold anything back
    this.updatesDiscarded = this.updatesDiscarded.filter((d) => d.snapshotId === activeId);
    const stale = this.updatesInFlight.filter((u) => u.snapshotId !== activeId);
    if (stale.length === 0) {
      return;
    }
    this.updatesInFlight = this.updatesInFlight.filter((u) => u.snapshotId === activeId);
    const changes: C[] = [];
    for (const u of stale) {
      changes.push(...u.changes);
    }
    this.pending = changes.concat(this.pending);
  }

  /**
   * Verify and apply updates on `related`. A rejected update is recorded and skipped on a
   * live connection; while `loading` the first one ends the frame (the verified updates
   * before it are applied, the error fails the load).
   */
  private _processUpdates(rawUpdates: unknown[], related: KnownSnapshot | null, loading = false): void {
    let key: Uint8Array;
    try {
      key = this.keyFor(related);
    } catch (exc) {
      throw new Fail(errorWithCode('SECSYNC_ERROR_206', exc));
    }
    const relatedId = related !== null ? related.snapshotId : '';
    const changes: C[] = [];
    let ignored: SecsyncError | null = null;
    let fatal: SecsyncError | null = null;
    const withheld: [string, number, number][] = [];
    for (const raw of rawUpdates) {
      if (loading && ignored !== null) {
        break;
      }
      let update: Update;
      try {
        update = parseUpdate(raw);
      } catch (exc) {
        ignored = errorWithCode('SECSYNC_ERROR_211', detailOf(exc));
        continue;
      }
      const pd = update.publicData;
      let denied: string | null;
      try {
        denied = this._denied('update', pd, related !== null ? relatedId : null);
      } catch (exc) {
        fatal = errorWithCode('SECSYNC_ERROR_205', exc);
        break;
      }
      if (denied !== null) {
        ignored = errorWithCode('SECSYNC_ERROR_215', denied || undefined);
        continue;
      }
      const active = this.active;
      const current = active !== null ? clockOf(active.updateClocks, pd.pubKey) : -1;
      const result = verifyAndDecryptParsedUpdate(update, {
        key,
        currentDocId: this.docId,
        currentActiveSnapshotId: relatedId,
        currentClock: current
      });
      if (result.error !== null) {
        if (UPDATE_IGNORED.includes(result.error.code)) {
          ignored = result.error;
          continue;
        }
        fatal = result.error;
        break;
      }
      if (related !== null) {
        const heads = pd[HEADS_FIELD];
        if (isPlainObject(heads)) {
          withheld.push(...this._missing(related, heads.clocks, pd.pubKey));
          if (this.log !== null) {
            // positions need the log; deny() checked that logHead is an entry of it
            const logSeq = (pd.logHead as { seq: number }).seq;
            withheld.push(...this._missing(related, this._byPosition(heads, logSeq), pd.pubKey));
          }
        }
      }
      for (const info of this.snapshots) {
        if (info.snapshotId === relatedId) {
          if (clockOf(info.updateClocks, pd.pubKey) < pd.clock) {
            info.updateClocks[pd.pubKey] = pd.clock;
          }
          info.updatesCount += 1;
          info.updatesBytes += update.ciphertext.length;
        }
      }
      this.log?.noteUpdate(relatedId, pd);
      if (pd.pubKey === this.pubKey) {
        this.localClock = pd.clock;
      }
      try {
        for (const change of this.adapter.deserializeChanges(result.content)) {
          changes.push(change);
        }
      } catch (exc) {
        fatal = errorWithCode('SECSYNC_ERROR_204', exc);
        break;
      }
    }
    if (changes.length > 0) {
      try {
        this.adapter.applyChanges(changes);
        this._emit('remote-change', { kind: 'updates', count: changes.length });
      } catch (exc) {
        fatal = fatal ?? errorWithCode('SECSYNC_ERROR_203', exc);
      }
    }
    if (withheld.length > 0 && fatal === null) {
      this._withheld('SECSYNC_ERROR_801', withheld, true);
    }
    if (fatal !== null) {
      throw new Fail(fatal);
    }
    if (ignored !== null) {
      throw new Ignore(ignored);
    }
  }
}

/** The `Fail` / `Ignore` a rule raised; anything else is a bug and propagates. */
function rethrowUnlessRule(exc: unknown): Fail | Ignore {
  if (exc instanceof Fail || exc instanceof Ignore) {
    return exc;
  }
  throw exc;
}

/** A parse error's detail (its message without the code prefix). */
function detailOf(exc: unknown): string {
  const text = exc instanceof Error ? exc.message : String(exc);
  return text.replace(/^SECSYNC_ERROR_[A-Z0-9]+: /, '');
}
