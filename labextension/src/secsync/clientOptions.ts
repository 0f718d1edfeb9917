/**
 * The public option and status types of SecsyncYjsClient (document.ts), and its helpers that
 * hold no connection state: the snapshot policy of the options, and
 * the answers of an asynchronous `isValidClient` fetched before a frame enters the engine.
 */
import type { RememberedStore } from './rememberedState';
import type * as Y from 'yjs';
import type { Awareness } from 'y-protocols/awareness';
import type { SignatureKeyPair } from './crypto';
import type { KeyringStore } from './engineEpochs';
import type { Keyring } from './lockbox';
import {
  defaultSnapshotPolicy,
  DocumentState,
  Frame,
  SNAPSHOT_EVERY_BYTES,
  SNAPSHOT_EVERY_UPDATES,
  SnapshotPolicyInfo
} from './engine';
import type { SecsyncError } from './errors';
import type { LogHead, Role } from './membership';
import { isPlainObject } from './parse';
import type { SnapshotInfoWithUpdateClocks } from './types';

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'failed';

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
  /** documents with a membership log: this client's role (null: not a member / not loaded) */
  role?: Role | null;
  /** documents with a membership log: no snapshot or update is sent (viewer, 724, …) */
  readOnly?: boolean;
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

export type SnapshotPolicy =
  | { maxUpdates?: number; maxUpdateBytes?: number }
  | ((info: SnapshotPolicyInfo) => boolean);

export type IsValidClient = (
  pubKey: string,
  publicData: Record<string, unknown>
) => boolean | Promise<boolean>;

export interface SecsyncYjsClientOptions {
  url: string;
  docId: string;
  /** the document key (epoch 0); a document with a log may open with only `keyring` */
  key?: Uint8Array;
  signatureKeyPair: SignatureKeyPair;
  /** issue 12: epoch keys given for this session (e.g. opened from a link's lockboxes) */
  keyring?: Keyring | null;
  /** issue 12: where the epoch keys are kept (JupyterLab: keystore.ts browserKeyringStore) */
  keyringStore?: KeyringStore | null;
  /**
   * issue 12: the epoch-0 key (of `keyring`, or `key`) came from a lockbox: not used for
   * writing until it decrypted a writer's epoch-0 snapshot (default: `key` absent and
   * `keyring` given)
   */
  epoch0FromLockbox?: boolean;
  ydoc: Y.Doc;
  awareness?: Awareness;
  sessionKey?: string;
  WebSocketImpl?: WebSocketConstructor;
  isValidClient?: IsValidClient;
  snapshotPolicy?: SnapshotPolicy;
  onProgress?: (loaded: number, total: number) => void;
  /** resume from a persisted snapshot (delta mode); the ydoc must already contain it */
  knownSnapshot?: SnapshotInfoWithUpdateClocks;
  /** queue Y.encodeStateAsUpdate(ydoc) as a local change at construction */
  sendInitialState?: boolean;
  /** batching window for local changes (default 20 ms; 0 = a microtask) */
  batchDelayMs?: number;
  /** reconnect backoff cap (default 10 s); delay = min(100 ms * 1.8^n, cap) */
  maxReconnectDelayMs?: number;
  /** time allowed for a websocket to open (default 5 s) */
  connectTimeoutMs?: number;
  /** reconnect after connection loss (default true) */
  autoReconnect?: boolean;
  /** record ephemeral messages for another docId as SECSYNC_ERROR_306 (default) or drop them */
  strictEphemeralDocId?: boolean;
  /**
   * a new document with a membership log made here (`createLogDocument`): its root entry,
   * sent to the relay first
   */
  rootEntry?: Record<string, unknown>;
  /** the log head verified in an earlier session (`client.logHead`): a log without it is 718 */
  knownLogHead?: LogHead;
  /**
   * issue 13: where the state verified last is kept per document and checked by the next
   * load (804 / 718); e.g. `defaultRememberedStore()` (localStorage). Default: none.
   */
  rememberedStore?: RememberedStore | null;
  /** issue 13: heads between live collaborators: grace period and interval (s; 10 and 5) */
  headsGraceSeconds?: number;
  headsIntervalSeconds?: number;
}

/** The engine's policy function for the options' `snapshotPolicy`. */
export function snapshotPolicyFunction(policy?: SnapshotPolicy): (info: SnapshotPolicyInfo) => boolean {
  if (policy === undefined) {
    return defaultSnapshotPolicy;
  }
  if (typeof policy === 'function') {
    return policy;
  }
  const maxUpdates = policy.maxUpdates ?? SNAPSHOT_EVERY_UPDATES;
  const maxBytes = policy.maxUpdateBytes ?? SNAPSHOT_EVERY_BYTES;
  return (info) => info.updatesSinceSnapshot >= maxUpdates || info.updateBytesSinceSnapshot >= maxBytes;
}

/**
 * Answers of an application's (possibly asynchronous) `isValidClient`, asked before a frame
 * goes into the engine (which asks synchronously), keyed by the publicData object.
 */
export class Authorizer {
  private _answers = new WeakMap<object, boolean | Error>();

  constructor(private readonly _ask: IsValidClient) {}

  /** Ask about every author in the frame; a promise when any answer is asynchronous. */
  prefetch(frame: Frame): Promise<void> | null {
    const waits: Promise<void>[] = [];
    for (const pd of publicDataOf(frame)) {
      if (this._answers.has(pd)) {
        continue;
      }
      try {
        const answer = this._ask(pd.pubKey as string, pd);
        if (answer instanceof Promise) {
          waits.push(
            answer.then(
              (ok) => void this._answers.set(pd, ok === true),
              (exc) => void this._answers.set(pd, exc instanceof Error ? exc : new Error(String(exc)))
            )
          );
        } else {
          this._answers.set(pd, answer === true);
        }
      } catch (exc) {
        this._answers.set(pd, exc instanceof Error ? exc : new Error(String(exc)));
      }
    }
    return waits.length > 0 ? Promise.all(waits).then(() => undefined) : null;
  }

  check = (pubKey: string, publicData: Record<string, unknown>): boolean => {
    const answer = this._answers.get(publicData);
    if (answer instanceof Error) {
      throw answer;
    }
    if (answer !== undefined) {
      return answer;
    }
    const direct = this._ask(pubKey, publicData);
    if (direct instanceof Promise) {
      throw new Error('isValidClient answered asynchronously for data it was not asked about');
    }
    return direct === true;
  };
}

/** The publicData objects of a frame's snapshot, updates or ephemeral message. */
function publicDataOf(frame: Frame): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const add = (message: unknown) => {
    const pd = isPlainObject(message) ? message.publicData : undefined;
    if (isPlainObject(pd) && typeof pd.pubKey === 'string') {
      out.push(pd);
    }
  };
  if (frame.type === 'update' || frame.type === 'ephemeral-message') {
    add(frame);
  }
  add(frame.snapshot);
  if (Array.isArray(frame.updates)) {
    frame.updates.forEach(add);
  }
  return out;
}
