/**
 * Shared state of the extension: which shared models are encrypted, their live status,
 * the relay setting and pending imports ("encrypt a copy").
 */
import { ISignal, Signal } from '@lumino/signaling';
import type { ISharedDocument } from '@jupyter/ydoc';
import type * as nbformat from '@jupyterlab/nbformat';

import type { RelayAlerts } from './relayalerts';
import type { MembershipState, Role } from './secsync/membership';

export interface IEncryptedStatus {
  /** Transport state as reported by the sync client. */
  connection: string;
  /** Document state as reported by the sync client. */
  documentState: string;
  /** Local changes not yet acknowledged by the relay. */
  pendingChanges: number;
  lastError: string | null;
  /** Loading progress (frames applied / total), while the first document frame loads. */
  progress: { loaded: number; total: number } | null;
  /** True once the first document frame has been applied (the notebook is usable). */
  loaded: boolean;
  /** True while this browser has no key for the document (waiting for its share link). */
  locked: boolean;
  /**
   * Access to a document with a membership log: 'member' (or a document without a log),
   * 'not-member' (the relay refused our reader proof: 722) or 'removed' (725, or the log
   * removed us). Not 'member': the panel shows the not-a-member state (locked.ts).
   */
  access: 'member' | 'not-member' | 'removed';
  /** This browser's role in a document with a log (null: no log or not a member). */
  role: Role | null;
  /** True while local changes are not sent (viewer, not a member): the panel is read-only. */
  readOnly: boolean;
  /**
   * Joining through an invitation link failed (issue 12: expired, revoked, damaged…): what
   * the panel tells the user (locked.ts), in words; null otherwise.
   */
  linkError?: string | null;
}

/** The membership of an encrypted document (docs/protocol.md, "Membership log"). */
export interface IMembership {
  /** The verified state at the log's head; null for a document without a log (or not yet). */
  readonly membership: MembershipState | null;
  /** This browser's role (null: no log, not loaded yet, or not a member). */
  readonly myRole: Role | null;
  /** Emitted whenever the verified membership (or this browser's role) changes. */
  readonly membershipChanged: ISignal<IEncryptedSession, MembershipState | null>;
  /**
   * Admin actions: sign the entry, send it, resolve once the relay stored it. Reject with a
   * MembershipError (code 7xx, e.g. 731 for an identity string whose fingerprint does not
   * match, 714 for the last admin) or an Error.
   */
  addMember(identity: string, role: Role): Promise<void>;
  setRole(pubKey: string, role: Role): Promise<void>;
  removeMember(pubKey: string): Promise<void>;
  /**
   * Invitation links (issue 12, sharedialog.ts): an admin creates one (resolves with its URL,
   * `#link=…`), or revokes one — with `removeJoined`, also removes who joined through it —
   * and the key is rotated.
   */
  createLink(role: 'viewer' | 'editor', label: string, expiresAt: number | null): Promise<string>;
  revokeLink(linkPubKey: string, removeJoined: boolean): Promise<void>;
}

export interface IEncryptedSession extends IMembership {
  readonly docId: string;
  readonly path: string;
  readonly relayUrl: string;
  readonly relayBase: string | null;
  readonly sharedModel: ISharedDocument;
  readonly status: IEncryptedStatus;
  readonly statusChanged: ISignal<IEncryptedSession, IEncryptedStatus>;
  /** The verified signing key (b64) of this browser. */
  readonly ownPublicKey: string;
  /** What the sync client noticed of the relay misbehaving, per collaborator (issue 13). */
  readonly relayAlerts: RelayAlerts;
  /** Encrypt and upload a full snapshot now. */
  snapshotNow(): Promise<void>;
  /** The key, for share links (stays in the browser). */
  documentKey(): Uint8Array;
  /**
   * A locked session (no key in this browser) takes the key from this share link. Rejects
   * with a message for the user when the link is not one of this document.
   */
  unlock(link: string): Promise<void>;
  /**
   * An invitation link opened for this document (issue 12): joins when the panel waits for
   * access (no key, an unusable link, not a member); false: nothing to do.
   */
  joinLink(secret: Uint8Array): Promise<boolean>;
  /** A locked session continues if a key for its document has been stored meanwhile. */
  retryStoredKey(): void;
  /** After access was refused (not a member) or revoked: connect again. */
  retryAccess(): void;
}

export interface ISettingsValues {
  /** Remote relay base (ws:// or wss://) for new encrypted notebooks; '' = this Jupyter server. */
  relayUrl: string;
  /** sessionKey sent to the relay of `relayUrl` only (relay authentication, not a crypto key). */
  relaySessionKey: string;
  /** Allow plain ws:// to relays that are not on a loopback address. */
  allowInsecureRelay: boolean;
  /** The relay of `relayUrl` is a JupyterHub service on this origin (hubrelay.ts). */
  relayIsHubService: boolean;
  /** Local edits between automatic snapshots. */
  snapshotEveryUpdates: number;
}

class Registry {
  readonly settings: ISettingsValues = {
    relayUrl: '',
    relaySessionKey: '',
    allowInsecureRelay: false,
    relayIsHubService: false,
    snapshotEveryUpdates: 300
  };

  get sessionsChanged(): ISignal<this, void> {
    return this._sessionsChanged;
  }

  add(session: IEncryptedSession): void {
    this._byModel.set(session.sharedModel, session);
    this._sessions.add(session);
    this._sessionsChanged.emit();
  }

  remove(session: IEncryptedSession): void {
    this._byModel.delete(session.sharedModel);
    this._sessions.delete(session);
    this._sessionsChanged.emit();
  }

  forModel(model: ISharedDocument | null | undefined): IEncryptedSession | undefined {
    return model ? this._byModel.get(model) : undefined;
  }

  isEncrypted(model: ISharedDocument | null | undefined): boolean {
    return !!model && this._byModel.has(model);
  }

  all(): IEncryptedSession[] {
    return [...this._sessions];
  }

  /** The root entry of a new document's membership log (sent when the document is created). */
  setPendingLogRoot(docId: string, root: Record<string, unknown>): void {
    this._pendingRoots.set(docId, root);
  }

  takePendingLogRoot(docId: string): Record<string, unknown> | undefined {
    const value = this._pendingRoots.get(docId);
    this._pendingRoots.delete(docId);
    return value;
  }

  /**
   * An invitation link (issue 12) to join `docId` through: the session of the document
   * takes it before connecting (provider.ts, secsync/linkJoin.ts).
   */
  setPendingLink(docId: string, secret: Uint8Array): void {
    this._pendingLinks.set(docId, secret);
  }

  takePendingLink(docId: string): Uint8Array | undefined {
    const value = this._pendingLinks.get(docId);
    this._pendingLinks.delete(docId);
    return value;
  }

  /** Content to write into a new, still empty encrypted document ("encrypt a copy"). */
  setPendingImport(docId: string, content: nbformat.INotebookContent): void {
    this._pendingImports.set(docId, content);
  }

  takePendingImport(docId: string): nbformat.INotebookContent | undefined {
    const value = this._pendingImports.get(docId);
    this._pendingImports.delete(docId);
    return value;
  }

  private _byModel = new WeakMap<ISharedDocument, IEncryptedSession>();
  private _sessions = new Set<IEncryptedSession>();
  private _pendingImports = new Map<string, nbformat.INotebookContent>();
  private _pendingRoots = new Map<string, Record<string, unknown>>();
  private _pendingLinks = new Map<string, Uint8Array>();
  private _sessionsChanged = new Signal<this, void>(this);
}

export const registry = new Registry();
