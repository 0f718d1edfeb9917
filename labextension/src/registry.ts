/**
 * Shared state of the extension: which shared models are encrypted, their live status,
 * the relay setting and pending imports ("encrypt a copy").
 */
import { ISignal, Signal } from '@lumino/signaling';
import type { ISharedDocument } from '@jupyter/ydoc';
import type * as nbformat from '@jupyterlab/nbformat';

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
}

export interface IEncryptedSession {
  readonly docId: string;
  readonly path: string;
  readonly relayUrl: string;
  readonly relayBase: string | null;
  readonly sharedModel: ISharedDocument;
  readonly status: IEncryptedStatus;
  readonly statusChanged: ISignal<IEncryptedSession, IEncryptedStatus>;
  /** The verified signing key (b64) of this browser. */
  readonly ownPublicKey: string;
  /** Encrypt and upload a full snapshot now. */
  snapshotNow(): Promise<void>;
  /** The key, for share links (stays in the browser). */
  documentKey(): Uint8Array;
  /**
   * A locked session (no key in this browser) takes the key from this share link. Rejects
   * with a message for the user when the link is not one of this document.
   */
  unlock(link: string): Promise<void>;
  /** A locked session continues if a key for its document has been stored meanwhile. */
  retryStoredKey(): void;
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
  private _sessionsChanged = new Signal<this, void>(this);
}

export const registry = new Registry();
