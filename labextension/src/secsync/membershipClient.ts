/**
 * Members and roles in the browser sync client (issue 11): the driver-side API of
 * `SecsyncYjsClient` (document.ts) for documents with a membership log (`m1_…` ids), and
 * creating such a document. The engine side (verifying the log, checking authors, the log
 * frames) is engineLog.ts. Wire format: docs/protocol.md, "Membership log".
 *
 * API (also in docs/labextension.md, "Members and roles: the sync client's API"):
 *
 *   const { docId, rootEntry } = createLogDocument(keyPair, 'Ada');   // docId = "m1_" + hash(root)
 *   new SecsyncYjsClient({ ..., docId, rootEntry });   // creator: the root is sent first
 *
 *   client.membership      // MembershipState | null (no log, or not loaded yet)
 *   client.myRole          // Role | null (no log, or not a member)
 *   client.readOnly        // no snapshot/update is sent (viewer, non-member, write-refused)
 *   client.onMembershipChanged((state, myRole) => …)   // → unsubscribe; every verified entry
 *   await client.addMember(identityString, role)       // resolve on log-entry-saved
 *   await client.setRole(pubKey, role)
 *   await client.removeMember(pubKey)
 *
 * The promises reject with a `MembershipError` (`.code` SECSYNC_ERROR_7xx, `.field`): the
 * rule's code when this browser may not make the change (checked before sending), 730/731 for
 * a malformed identity string, the relay's code when it refuses, 700 when the client is not
 * connected and loaded or is destroyed meanwhile. 707/709 (someone appended first) are retried
 * on the new head after verifying the relay's entries, while still allowed.
 *
 * Key epochs (issue 12; the twin of epochs_client.py `rotate_key` / `rotate_if_needed` /
 * `entry_lockboxes`):
 *
 *   await client.rotateKey()      // admin: a new epoch, a lockbox for every member and live
 *                                 //   link; resolves once saved (key kept, a snapshot follows)
 *   await client.removeMember(k)  // an admin's removal is followed by a rotation
 *                                 //   ({rotate: false}: not; leaving yourself: not)
 *   await client.appendEntry((state) => ({entry, lockboxes}), {rotate?})   // any entry (links)
 *   client.keyring / client.epoch // the epoch keys held, the log's current epoch
 *
 * An admin's add-member carries the new member's lockbox of the current epoch; after each load
 * an admin whose log says a rotation is due (`rotationNeeded(now)`: a member left, a link
 * expired or was removed without a rotation) rotates. A rotation that lost a race (707 / 709)
 * is made again on the new head (new key, new lockboxes) only while still needed.
 */
import type { SignatureKeyPair } from './crypto';
import type { EpochKeys } from './engineEpochs';
import { LogGuard, MAX_LOG_ENTRY_RETRIES } from './engineLog';
import { createRotation, Keyring, Lockbox, sealLockbox } from './lockbox';
import {
  createEntry,
  createLog,
  entryToJson,
  LogHead,
  MembershipEntry,
  MembershipError,
  MembershipState,
  parseIdentity,
  Role,
  ROLES
} from './membership';
import { err } from './membershipError';

export type { LogHead, Member, Role } from './membership';
export { MembershipError, MembershipState } from './membership';

export type MembershipListener = (state: MembershipState | null, myRole: Role | null) => void;

/**
 * A new document with a membership log, made by `keyPair` (its owner): the document id (bound
 * to the root entry) and the root entry to give the client as `rootEntry`.
 */
export function createLogDocument(
  keyPair: SignatureKeyPair,
  name: string | null = null
): { docId: string; rootEntry: Record<string, unknown> } {
  const { entry, state } = createLog(keyPair, { name });
  return { docId: state.docId, rootEntry: entryToJson(entry) };
}

/** The change a membership call asks for, checked for shape before it reaches the engine. */
export interface MembershipChange {
  kind: 'add-member' | 'set-role' | 'remove-member';
  target: string;
  role: Role | null;
  name: string | null;
}

export function checkRole(role: unknown): Role {
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
    throw err(741, 'role', 'expected admin, editor or viewer');
  }
  return role as Role;
}

/** addMember's change: the identity string parsed (730 / 731). */
export function addMemberChange(identity: string, role: Role): MembershipChange {
  const id = parseIdentity(identity);
  return { kind: 'add-member', target: id.pubKey, role: checkRole(role), name: id.name };
}

/** What a call appends on a head: the entry and its lockboxes; null: nothing (any more). */
export type EntryBuilder = (state: MembershipState) => { entry: MembershipEntry; lockboxes?: Lockbox[] | null } | null;

interface Call {
  build: EntryBuilder;
  /** the entry was saved (the state after it) */
  saved?: (state: MembershipState) => void;
  resolve: (state: MembershipState | null) => void;
  reject: (e: Error) => void;
  /** the entry sent for it (seq, hash): its answer is due, or it may be in the next log */
  sent: { seq: number; hash: string } | null;
  retries: number;
}

/** The engine as the calls see it (engine.ts `SyncEngine`). */
interface LogEngine {
  readonly log: LogGuard | null;
  readonly signingKey: SignatureKeyPair;
  /** issue 12: the epoch keys (null: no log) */
  readonly epochs?: EpochKeys | null;
  requestSnapshot?(): void;
}

/** A moment for the log's time rules: now, and never before the head's entry. */
export function logNow(state: MembershipState): number {
  return Math.max(Date.now(), state.headAt);
}

/**
 * issue 12 (`entry_lockboxes`): the lockbox that goes with an add-member — the current
 * epoch's key sealed to the new member (when we hold it), so that it can read at once.
 */
export function entryLockboxes(
  epochs: EpochKeys | null | undefined,
  state: MembershipState,
  entry: MembershipEntry
): Lockbox[] | null {
  if (!epochs || entry.kind !== 'add-member' || entry.target === undefined || !epochs.keyring.has(state.epoch)) {
    return null;
  }
  return [sealLockbox(state.docId, state.epoch, epochs.key(state.epoch), entry.target)];
}

/**
 * The driver's membership calls: queued, made into entries on the verified head one at a
 * time (`createEntry`: the rules are checked before sending), sent with the engine's
 * `appendEntry`, and settled by its `log-entry-saved` / `log-entry-failed` events. A call
 * the relay refused with 707 / 709 (the engine has then verified the relay's newer entries),
 * or whose connection dropped, is made again on the new head while still allowed, at most
 * `MAX_LOG_ENTRY_RETRIES` times.
 */
export class MembershipCalls {
  private _queue: Call[] = [];

  constructor(private readonly _engine: LogEngine) {}

  request(change: MembershipChange): Promise<void> {
    const log = this._engine.log;
    if (log === null) {
      return Promise.reject(notNow('this document has no membership log'));
    }
    if (log.state === null) {
      return Promise.reject(notNow('the membership log is not loaded yet'));
    }
    try {
      // the rules on the current head (711–717, 741) before anything is queued
      createEntry(log.state, this._engine.signingKey, change.kind, change.target, change.role, {
        name: change.name
      });
    } catch (e) {
      return Promise.reject(e);
    }
    const build: EntryBuilder = (state) => {
      const entry = createEntry(state, this._engine.signingKey, change.kind, change.target, change.role, {
        name: change.name
      }).entry;
      return { entry, lockboxes: entryLockboxes(this._engine.epochs, state, entry) };
    };
    return this.requestEntry(build).then(() => undefined);
  }

  /**
   * Any entry: `build` is called on the verified head when the engine can take an entry (and
   * again on the new head after a lost race); resolves with the state after it (null: build
   * said there was nothing to do), rejects with build's exception or the relay's code.
   */
  requestEntry(build: EntryBuilder, saved?: (state: MembershipState) => void): Promise<MembershipState | null> {
    return new Promise<MembershipState | null>((resolve, reject) => {
      this._queue.push({ build, saved, resolve, reject, sent: null, retries: 0 });
    });
  }

  /**
   * issue 12 (`rotate_key`): an admin's rotation, queued like any entry. `ifNeeded`: only
   * when `rotationNeeded(now)`; a retry after a lost race (707 / 709) is made only while a
   * rotation is still needed or nobody rotated since (a new key and lockboxes each time).
   */
  rotate(options: { ifNeeded?: boolean } = {}): Promise<MembershipState | null> {
    const epochs = this._engine.epochs;
    if (!epochs) {
      return Promise.reject(notNow('this document has no membership log'));
    }
    let startEpoch: number | null = null;
    let key: { epoch: number; key: Uint8Array } | null = null;
    const build: EntryBuilder = (state) => {
      const needed = state.rotationNeeded(logNow(state));
      if (options.ifNeeded && !needed) {
        return null;
      }
      if (startEpoch === null) {
        startEpoch = state.epoch;
      } else if (state.epoch > startEpoch && !needed) {
        return null; // another admin rotated meanwhile: nothing left to do
      }
      const rotation = createRotation(state, this._engine.signingKey);
      key = { epoch: rotation.epoch, key: rotation.key };
      return { entry: rotation.entry, lockboxes: rotation.lockboxes };
    };
    return this.requestEntry(build, () => {
      if (key !== null) {
        epochs.addKey(key.epoch, key.key);
        this._engine.requestSnapshot?.(); // the new epoch begins with our snapshot
      }
    });
  }

  /** Send the first queued call when the engine can take an entry (call before draining). */
  pump(loaded: boolean): void {
    const log = this._engine.log;
    while (log !== null && log.state !== null && loaded && this._queue.length > 0) {
      const call = this._queue[0];
      if (log.entryInFlight !== null || log.rootPending !== null || (call.sent !== null && this._due)) {
        return;
      }
      if (call.sent !== null && log.state.hashes[call.sent.seq] === call.sent.hash) {
        this._settle(call, null, true); // stored after all (its answer was lost with a connection)
        continue;
      }
      let entry: MembershipEntry;
      try {
        const built = call.build(log.state);
        if (built === null) {
          this._settle(call, null);
          continue;
        }
        entry = built.entry;
        log.appendEntry(entryToJson(entry), built.lockboxes ?? null);
      } catch (e) {
        this._settle(call, e instanceof Error ? e : new Error(String(e)));
        continue;
      }
      call.sent = { seq: entry.seq, hash: entry.hash };
      this._due = true;
      return;
    }
  }

  /** an answer for the first call's entry is due */
  private _due = false;

  /** The engine's events about our entries. */
  onEvent(event: string, data: Record<string, unknown>): void {
    const call = this._queue[0];
    if (!call || call.sent === null || data.hash !== call.sent.hash) {
      return;
    }
    if (event === 'log-entry-saved') {
      this._due = false;
      this._settle(call, null, true);
    } else if (event === 'log-entry-failed') {
      this._due = false;
      if (this._engine.log?.state?.hashes[call.sent.seq] === call.sent.hash) {
        this._settle(call, null, true); // in the verified log after all (e.g. it came back as a log-entry)
        return;
      }
      const code = data.code;
      const retry = code === null || code === 'SECSYNC_ERROR_707' || code === 'SECSYNC_ERROR_709';
      call.retries += 1;
      if (!retry || call.retries > MAX_LOG_ENTRY_RETRIES) {
        const n = typeof code === 'string' ? Number(code.slice('SECSYNC_ERROR_'.length)) : 700;
        this._settle(call, err(Number.isInteger(n) ? n : 700, null, 'the relay refused the membership change'));
      }
      // else: made again on the new head by the next pump (unless it is in the log already)
    }
  }

  private _settle(call: Call, error: Error | null, saved = false): void {
    this._queue = this._queue.filter((c) => c !== call);
    if (error !== null) {
      call.reject(error);
      return;
    }
    const state = this._engine.log?.state ?? null;
    if (saved && state !== null) {
      try {
        call.saved?.(state);
      } catch (e) {
        call.reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
    }
    call.resolve(saved ? state : null);
  }

  rejectAll(error: Error): void {
    const calls = this._queue;
    this._queue = [];
    this._due = false;
    calls.forEach((c) => c.reject(error));
  }
}

/** 700: the change cannot be made now (not connected, not loaded, destroyed). */
export function notNow(detail: string): MembershipError {
  return err(700, null, detail);
}

/** A head to remember across reloads (issue 13's `knownLogHead`). */
export function headOf(state: MembershipState | null): LogHead | null {
  return state === null ? null : { seq: state.head.seq, hash: state.head.hash };
}

/**
 * The membership part of `SecsyncYjsClient` (document.ts extends it): the API in this
 * module's header. The driver calls `_calls.pump` / `_calls.onEvent` / `_calls.rejectAll`
 * and `_notifyMembership` from its own loop.
 */
export abstract class MembersClient {
  abstract readonly engine: LogEngine & { readonly state: string };
  protected abstract _destroyed: boolean;
  protected abstract get _terminal(): boolean;
  protected abstract _pump(): void;

  private _callsObj: MembershipCalls | null = null;
  private _membershipListeners = new Set<MembershipListener>();
  private _lastMembership = '';

  protected get _calls(): MembershipCalls {
    if (this._callsObj === null) {
      this._callsObj = new MembershipCalls(this.engine);
    }
    return this._callsObj;
  }


  /** The verified membership log's state (null: no log, or not loaded yet). */
  get membership(): MembershipState | null {
    return this.engine.log?.state ?? null;
  }

  /** This browser's role (null: no log, or not a member). */
  get myRole(): Role | null {
    return this.engine.log?.role ?? null;
  }

  /** No snapshot or update is sent (a viewer, a non-member, a write the relay refused). */
  get readOnly(): boolean {
    return this.engine.log !== null && this.engine.log.readOnly;
  }

  /** The verified head, to pass as `knownLogHead` next time (rollback detection). */
  get logHead(): LogHead | null {
    return this.engine.log?.head() ?? null;
  }

  /** `cb(state, myRole)` on every verified entry and role / read-only change; → unsubscribe. */
  onMembershipChanged(cb: MembershipListener): () => void {
    this._membershipListeners.add(cb);
    return () => {
      this._membershipListeners.delete(cb);
    };
  }

  /** Add the member of an identity string (`secsync-id:1:…`); resolves once stored. */
  addMember(identity: string, role: Role): Promise<void> {
    try {
      return this._membershipCall(addMemberChange(identity, role));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  setRole(pubKey: string, role: Role): Promise<void> {
    try {
      return this._membershipCall({ kind: 'set-role', target: pubKey, role: checkRole(role), name: null });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Remove a member (your own key: leave the document). Then (issue 12) an admin rotates the
   * key, unless `rotate: false` (e.g. several removals followed by one `rotateKey()`) or you left.
   */
  async removeMember(pubKey: string, options: { rotate?: boolean } = {}): Promise<void> {
    await this._membershipCall({ kind: 'remove-member', target: pubKey, role: null, name: null });
    if ((options.rotate ?? true) && this.engine.log?.role === 'admin' && this.engine.epochs) {
      // (if needed: after several removals at once, one rotation covers them all)
      await this._queued(() => this._calls.rotate({ ifNeeded: true }));
    }
  }

  /** issue 12: the epoch keys this client holds (null: no log). */
  get keyring(): Keyring | null {
    return this.engine.epochs?.keyring ?? null;
  }

  /** issue 12: the log's current key epoch (null: no log, or not loaded yet). */
  get epoch(): number | null {
    return this.engine.log?.state?.epoch ?? null;
  }

  /**
   * issue 12: rotate the document key (admins): a new epoch, its key sealed to every member
   * and live link (uploaded with the `rotate-key` entry); resolves once the relay saved it
   * and the key is kept; the next snapshot is in the new epoch. 712 unless admin.
   */
  async rotateKey(): Promise<void> {
    await this._queued(() => this._calls.rotate());
  }

  /**
   * Append any entry (e.g. add-link / remove-link, links.ts): `build(state)` makes it on the
   * verified head (again after a lost race, at most MAX_LOG_ENTRY_RETRIES times) with the
   * lockboxes to upload with it. Resolves with the state after it. An admin's remove-link or
   * remove-member is followed by a rotation unless `rotate: false`.
   */
  async appendEntry(build: EntryBuilder, options: { rotate?: boolean } = {}): Promise<MembershipState | null> {
    let kind: string | null = null;
    const state = await this._queued(() =>
      this._calls.requestEntry((s) => {
        const built = build(s);
        kind = built?.entry.kind ?? null;
        return built;
      })
    );
    const removal = kind === 'remove-member' || kind === 'remove-link';
    if (removal && (options.rotate ?? true) && this.engine.log?.role === 'admin' && this.engine.epochs) {
      await this._queued(() => this._calls.rotate({ ifNeeded: true }));
      return this.membership;
    }
    return state;
  }

  /** After a load: an admin whose log says a rotation is due rotates (in the background). */
  protected _rotateIfNeeded(): void {
    const state = this.engine.log?.state ?? null;
    if (
      state === null ||
      !this.engine.epochs ||
      this._rotating ||
      this.engine.log?.role !== 'admin' ||
      !state.rotationNeeded(logNow(state))
    ) {
      return;
    }
    this._rotating = true;
    this._queued(() => this._calls.rotate({ ifNeeded: true }))
      .catch((e) => {
        // recorded; the next load tries again
        this.engine.epochs && this._rotationFailed(e);
      })
      .finally(() => {
        this._rotating = false;
      });
  }

  private _rotating = false;

  /** An automatic rotation failed (recorded by the driver). */
  protected abstract _rotationFailed(error: unknown): void;

  private _queued<T>(make: () => Promise<T>): Promise<T> {
    if (this._destroyed || this._terminal) {
      return Promise.reject(notNow('the client is closed or has no access'));
    }
    const done = make();
    this._pump();
    return done;
  }

  private _membershipCall(change: Parameters<MembershipCalls['request']>[0]): Promise<void> {
    return this._queued(() => this._calls.request(change));
  }

  protected _notifyMembership(): void {
    const log = this.engine.log;
    if (log === null) {
      return;
    }
    const key = JSON.stringify([log.state?.head ?? null, log.role, log.readOnly]);
    if (key === this._lastMembership) {
      return;
    }
    this._lastMembership = key;
    for (const cb of Array.from(this._membershipListeners)) {
      try {
        cb(log.state, log.role);
      } catch {
        // ignore listener errors
      }
    }
  }
}
