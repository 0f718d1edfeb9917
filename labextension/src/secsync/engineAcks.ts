/**
 * The sync engine's acknowledgement and access rules: `update-saved` / `update-save-failed`,
 * `unauthorized`, the membership log's frames (handed to engineLog.ts), the author check
 * of received messages (the log, or `isValidClient`) and what received heads say was withheld. A layer of `SyncEngine` between
 * engineCore.ts (state, sending) and engine.ts (receiving); one object, three files.
 */
import { LogGuard, RootRefused } from './engineLog';
import { memberPositions } from './engineHeads';
import { SecsyncError, SecsyncErrorCode } from './errors';
import { isPlainObject } from './parse';
import {
  clockOf,
  CLOSED,
  EngineCore,
  FAILED,
  Frame,
  KnownSnapshot,
  MAX_UPDATE_SAVE_FAILURES,
  NO_ACCESS,
  pushError,
  UpdateInFlight
} from './engineCore';

export abstract class EngineAcks<C = Uint8Array> extends EngineCore<C> {
  /** Access refused (an `unauthorized` frame, or the transport's refusal). */
  noAccess(reason: string): void {
    if (this.state === FAILED || this.state === CLOSED) {
      return;
    }
    this.state = NO_ACCESS;
    this._emit('state', { state: this.state, reason });
  }

  /** `unauthorized`: with a code (722 not a member, 725 removed…) the error says why. */
  protected _onUnauthorized(obj: Frame): void {
    const code = obj.code;
    if (typeof code === 'string' && code.startsWith('SECSYNC_ERROR_')) {
      const error = new SecsyncError(code as SecsyncErrorCode, typeof obj.reason === 'string' ? obj.reason : undefined);
      pushError(this.errors, error);
      this._emit('error', { error, fatal: true });
    }
    this.noAccess(obj.type);
  }

  /** The membership log's frames (engineLog.ts). */
  protected _onLogFrame(obj: Frame): void {
    const log = this.log as LogGuard;
    if (obj.type === 'reader-challenge') {
      log.onChallenge(obj);
    } else if (obj.type === 'log-entry') {
      log.onLogEntry(obj);
    } else if (obj.type === 'log-entry-saved') {
      log.onSaved(obj);
    } else if (obj.type === 'log-entry-failed') {
      try {
        log.onFailed(obj);
      } catch (exc) {
        if (!(exc instanceof RootRefused)) {
          throw exc;
        }
        this.fail(exc.error);
      }
    } else if (obj.type === 'write-refused') {
      this._onWriteRefused(obj, log);
    } else if (this.epochs !== null) {
      // issue 12: lockbox / lockbox-saved / lockbox-failed
      const host = { logState: log.state, requestReconnect: () => this._requestReconnect() };
      for (const error of this.epochs.onFrame(host, obj)) {
        this._record(error);
      }
    }
  }

  /**
   * The relay refused a write of ours (724: not an editor or admin at its head): stop
   * writing. The unconfirmed changes are kept (sent again if a later entry lets us write).
   */
  protected _onWriteRefused(obj: Frame, log: LogGuard): void {
    const code = typeof obj.code === 'string' ? obj.code : 'SECSYNC_ERROR_724';
    if (obj.of === 'ephemeral') {
      pushError(
        this.ephemeralErrors,
        new SecsyncError(code as SecsyncErrorCode, 'the relay dropped our ephemeral message')
      );
      return;
    }
    if (log.writeRefused && this.updatesInFlight.length === 0 && this.snapshotInFlight === null) {
      return; // an answer to a write already given up
    }
    if (this._supersededWrite(obj, code, log)) {
      return; // issue 12: a rotation raced it
    }
    const unconfirmed: C[] = [];
    for (const u of this.updatesInFlight) {
      unconfirmed.push(...u.changes);
    }
    if (this.snapshotInFlight !== null) {
      unconfirmed.push(...this.snapshotInFlight.changes);
      this.snapshotInFlight = null;
    }
    this.pending = unconfirmed.concat(this.pending);
    this.updatesInFlight = [];
    this.updatesDiscarded = [];
    const active = this.active;
    this.localClock = active !== null ? clockOf(active.updateClocks, this.pubKey) : -1;
    const first = !log.writeRefused;
    log.writeRefused = true;
    if (first) {
      this._record(new SecsyncError(code as SecsyncErrorCode, `the relay refused our ${String(obj.of)}: read-only`));
    }
  }

  /**
   * Issue 12: a write of ours in an epoch our log has moved past (a rotation stored before
   * it, 767 / 768) is not a loss of rights: its changes go out again, the new epoch beginning
   * with a snapshot (once we hold its key). Answers to writes no longer in flight are dropped.
   * False: not such a refusal.
   */
  protected _supersededWrite(obj: Frame, code: string, log: LogGuard): boolean {
    if ((code !== 'SECSYNC_ERROR_767' && code !== 'SECSYNC_ERROR_768') || this.epochs === null) {
      return false;
    }
    const flight = this.snapshotInFlight;
    const sid = obj.snapshotId;
    const active = this.active;
    let written: number;
    if (obj.of === 'update') {
      if (!this.updatesInFlight.some((u) => u.snapshotId === sid)) {
        return true; // updates given up already (their snapshot was superseded)
      }
      written = active !== null ? active.epoch : 0;
    } else {
      if (flight === null || flight.info.snapshotId !== sid) {
        return true;
      }
      written = flight.info.epoch;
    }
    if (log.state === null || log.state.epoch <= written) {
      return false; // our log is behind the relay's: read-only until the entry comes
    }
    const unconfirmed: C[] = [];
    for (const u of this.updatesInFlight) {
      unconfirmed.push(...u.changes);
    }
    if (flight !== null) {
      unconfirmed.push(...flight.changes);
      this.snapshotInFlight = null;
    }
    this.pending = unconfirmed.concat(this.pending);
    this.updatesInFlight = [];
    this.updatesDiscarded = [];
    this.localClock = active !== null ? clockOf(active.updateClocks, this.pubKey) : -1;
    this.snapshotRequested = true;
    this._record(
      new SecsyncError(code as SecsyncErrorCode, `our write in epoch ${written} came after a rotation: rewritten`)
    );
    return true;
  }

  protected _onUpdateSaved(obj: Frame): void {
    const snapshotId = obj.snapshotId;
    const clock = obj.clock;
    if (typeof snapshotId !== 'string' || typeof clock !== 'number' || !Number.isSafeInteger(clock)) {
      return;
    }
    if (this._takeDiscarded(snapshotId, clock)) {
      // saved after all (not expected: an earlier clock failed); its changes were queued
      // again, which Yjs applies idempotently; our clock moves past it
      this._acknowledgeClock(snapshotId, clock, []);
      if (this.active !== null && this.active.snapshotId === snapshotId) {
        this.localClock = Math.max(this.localClock, clock);
      }
      return;
    }
    this.snapshotSaveFailures = 0;
    this.updateSaveFailures = 0;
    // the relay saves one author's updates in clock order: this acknowledges every update of
    // ours in flight on that snapshot up to `clock`
    const done = this.updatesInFlight.filter(
      (u) => u.snapshotId === snapshotId && u.clock <= clock
    );
    this._acknowledgeClock(snapshotId, clock, done);
    this.updatesInFlight = this.updatesInFlight.filter((u) => !done.includes(u));
    for (const upd of done) {
      // what they named has reached the relay: not named again
      if (this.headsNamed.snapshotId !== upd.snapshotId) {
        this.headsNamed = { snapshotId: upd.snapshotId, clocks: {} };
      }
      const named = this.headsNamed.clocks;
      for (const [author, c] of Object.entries(upd.heads ?? {})) {
        named[author] = Math.max(c, clockOf(named, author));
      }
    }
    this.heads.dirty = true;
    this._emit('update-saved', { snapshotId, clock });
  }

  protected _acknowledgeClock(snapshotId: string, clock: number, done: UpdateInFlight<C>[]): void {
    for (const info of this.snapshots) {
      if (info.snapshotId === snapshotId) {
        if (clockOf(info.updateClocks, this.pubKey) < clock) {
          info.updateClocks[this.pubKey] = clock;
        }
        for (const upd of done) {
          info.updatesCount += 1;
          info.updatesBytes += upd.size;
        }
      }
    }
  }

  /** Whether (`snapshotId`, `clock`) was a discarded update (then it no longer is). */
  protected _takeDiscarded(snapshotId: unknown, clock: unknown): boolean {
    const i = this.updatesDiscarded.findIndex(
      (d) => d.snapshotId === snapshotId && d.clock === clock
    );
    if (i < 0) {
      return false;
    }
    this.updatesDiscarded.splice(i, 1);
    return true;
  }

  protected _onUpdateSaveFailed(obj: Frame): void {
    const { snapshotId, clock } = obj;
    if (this._takeDiscarded(snapshotId, clock)) {
      return; // expected: already re-queued
    }
    if (!this.updatesInFlight.some((u) => u.snapshotId === snapshotId && u.clock === clock)) {
      return; // not ours (any more): nothing to retry
    }
    this.updateSaveFailures += 1;
    this._requeueInFlight(snapshotId, clock);
    if (this.updateSaveFailures >= MAX_UPDATE_SAVE_FAILURES) {
      // give up on this connection (as for snapshots): reload in delta mode, then resend
      this._requestReconnect();
      return;
    }
    if (obj.requiresNewSnapshot === true) {
      this.snapshotRequested = true;
    }
  }

  /**
   * Our update (`snapshotId`, `clock`) in flight was refused: the later ones in flight are
   * refused too.
   */
  protected _requeueInFlight(snapshotId: unknown, clock: unknown): void {
    // the later updates in flight cannot be saved either (their clocks follow this one): all
    // their changes go back to the front of the pending ones, in order, and nothing is sent
    // until the relay has answered each of them (so no clock is reused meanwhile)
    const changes: C[] = [];
    for (const u of this.updatesInFlight) {
      changes.push(...u.changes);
      if (!(u.snapshotId === snapshotId && u.clock === clock)) {
        this.updatesDiscarded.push({ snapshotId: u.snapshotId, clock: u.clock });
      }
    }
    this.updatesInFlight = [];
    this.pending = changes.concat(this.pending);
    const active = this.active;
    this.localClock = active !== null ? clockOf(active.updateClocks, this.pubKey) : -1;
  }

  /** Why `pd`'s author may not have written this (null: allowed): the log, or isValidClient. */
  protected _denied(
    kind: 'snapshot' | 'update' | 'ephemeral',
    pd: Record<string, unknown>,
    base: string | null
  ): string | null {
    if (this.log !== null) {
      return this.log.deny(kind, pd, base);
    }
    return this.isValidClient(pd.pubKey as string, pd) ? null : '';
  }

  // ------------------------------------------------------- heads (issue 13)

  /** The highest clock of `author` on `info` this client has (its own: sent). */
  protected _receivedClock(info: KnownSnapshot, author: string): number {
    let clock = clockOf(info.updateClocks, author);
    if (author === this.pubKey && this.active === info) {
      clock = Math.max(clock, this.localClock);
    }
    return clock;
  }

  /**
   * [author, named clock, received clock] for each clock in `named` (a heads' `clocks`
   * object, untrusted shape: anything else names nothing) this client has not received on
   * `info`; `skip`: the writer (its own clock is checked by the relay).
   */
  protected _missing(info: KnownSnapshot, named: unknown, skip: string): [string, number, number][] {
    if (!isPlainObject(named)) {
      return [];
    }
    const out: [string, number, number][] = [];
    for (const [author, clock] of Object.entries(named)) {
      if (author === skip || typeof clock !== 'number' || !Number.isSafeInteger(clock) || clock < 0) {
        continue;
      }
      const have = this._receivedClock(info, author);
      if (have < clock) {
        out.push([author, clock, have]);
      }
    }
    return out;
  }

  /**
   * A `heads` object (untrusted shape) resolved to public keys: a key that is a position
   * names the member whose first adding entry it is, if that entry is at or before the
   * update's `logHead.seq`; anything else (not an object, `clocks`, `log`, not a position of
   * our log, a non-canonical number, beyond the update's log head) names nothing, as heads of
   * an unknown shape. The update's own author and bad clocks are left to `_missing`.
   */
  protected _byPosition(named: unknown, logSeq: number): Record<string, unknown> {
    const state = this.log?.state ?? null;
    if (!isPlainObject(named) || state === null) {
      return {};
    }
    const byPos = memberPositions(state).byPos;
    const out: Record<string, unknown> = {};
    for (const [p, clock] of Object.entries(named)) {
      const member = byPos.get(p);
      if (member !== undefined && member[0] <= logSeq) {
        out[member[1]] = clock;
      }
    }
    return out;
  }

  /**
   * Heads named clocks we have not received: the relay dropped or withheld them. The
   * verified content is kept. The first time a clock is missing we reload completely to ask
   * for it (`reload`); missing again after that, the document was served incompletely (803,
   * once).
   */
  protected _withheld(code: SecsyncErrorCode, found: [string, number, number][], reload: boolean): void {
    const newest = new Map<string, [string, number, number]>();
    for (const m of found) {
      const seen = newest.get(m[0]);
      if (seen === undefined || seen[1] < m[1]) {
        newest.set(m[0], m);
      }
    }
    const authors = Array.from(newest.keys()).sort();
    const missing = authors.map((a) => newest.get(a) as [string, number, number]);
    const detail = missing.map(([a, c, h]) => `${a} up to ${c} (received ${h})`).join(', ');
    const again = missing.filter(([a, c]) => this.headsMissingAsked.has(`${a} ${c}`));
    if (again.length > 0 && !this.servedIncompletely) {
      this.servedIncompletely = true;
      this._record(new SecsyncError('SECSYNC_ERROR_803', detail));
      this._emit('served-incompletely', { authors });
    }
    if (again.length === missing.length) {
      return;
    }
    this._record(new SecsyncError(code, detail));
    this._emit('withheld', { authors, missing: missing.map(([a, c]) => [a, c]) });
    if (reload) {
      for (const [a, c] of missing) {
        this.headsMissingAsked.add(`${a} ${c}`);
      }
      this.headsReload = true;
      this._requestReconnect();
    }
  }
}
