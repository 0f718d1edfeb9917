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
 */
import type { SignatureKeyPair } from './crypto';
import { LogGuard, MAX_LOG_ENTRY_RETRIES } from './engineLog';
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

interface Call {
  change: MembershipChange;
  resolve: () => void;
  reject: (e: Error) => void;
  /** the entry sent for it (seq, hash): its answer is due, or it may be in the next log */
  sent: { seq: number; hash: string } | null;
  retries: number;
}

/** The engine as the calls see it (engine.ts `SyncEngine`). */
interface LogEngine {
  readonly log: LogGuard | null;
  readonly signingKey: SignatureKeyPair;
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
    return new Promise<void>((resolve, reject) => {
      this._queue.push({ change, resolve, reject, sent: null, retries: 0 });
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
        this._settle(call, null); // stored after all (its answer was lost with a connection)
        continue;
      }
      let entry: MembershipEntry;
      try {
        const c = call.change;
        entry = createEntry(log.state, this._engine.signingKey, c.kind, c.target, c.role, {
          name: c.name
        }).entry;
        log.appendEntry(entryToJson(entry));
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
      this._settle(call, null);
    } else if (event === 'log-entry-failed') {
      this._due = false;
      if (this._engine.log?.state?.hashes[call.sent.seq] === call.sent.hash) {
        this._settle(call, null); // in the verified log after all (e.g. it came back as a log-entry)
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

  private _settle(call: Call, error: Error | null): void {
    this._queue = this._queue.filter((c) => c !== call);
    if (error === null) {
      call.resolve();
    } else {
      call.reject(error);
    }
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

  /** Remove a member (your own key: leave the document). */
  removeMember(pubKey: string): Promise<void> {
    return this._membershipCall({ kind: 'remove-member', target: pubKey, role: null, name: null });
  }

  private _membershipCall(change: Parameters<MembershipCalls['request']>[0]): Promise<void> {
    if (this._destroyed || this._terminal) {
      return Promise.reject(notNow('the client is closed or has no access'));
    }
    const done = this._calls.request(change);
    this._pump();
    return done;
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
