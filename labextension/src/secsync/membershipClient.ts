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
import {
  createLog,
  entryToJson,
  LogHead,
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

/** Pending membership calls of the driver, settled by the engine's `membership-op` events. */
export class MembershipCalls {
  private _calls = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  add(id: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this._calls.set(id, { resolve, reject });
    });
  }

  settle(id: number, error: Error | null): void {
    const call = this._calls.get(id);
    if (call === undefined) {
      return;
    }
    this._calls.delete(id);
    if (error === null) {
      call.resolve();
    } else {
      call.reject(error);
    }
  }

  rejectAll(error: Error): void {
    const calls = Array.from(this._calls.values());
    this._calls.clear();
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
