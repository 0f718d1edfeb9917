/**
 * Key epochs in the browser engine (issue 12): which key opens which message, lockboxes, and
 * the keyring kept across sessions. The TypeScript twin of `EpochKeys` in
 * `secsync_jupyter/client/epochs_client.py` (same methods in camelCase, same codes); rules:
 * docs/protocol.md, "Key epochs, lockboxes and links". The engine (`engine.epochs`, set for
 * documents with a log) calls it at the same points as engine.py ("issue 12"):
 *
 * - a snapshot is decrypted with the key of its `publicData.epoch` (absent: 0), updates with
 *   their snapshot's key; `checkSnapshot` applies `checkMessageEpoch` (767 / 768 / 769) and
 *   766 when we hold no key for the epoch;
 * - we write snapshots in the log's current epoch, and only while we hold its key
 *   (`writeEpoch`); an epoch-0 key that came from a lockbox is used for writing only once it
 *   decrypted a writer's epoch-0 snapshot (epoch 0 has no `keyCheck`);
 * - lockboxes (the `document` frame's `lockboxes` and live `lockbox` frames) are opened with
 *   `openLockbox`: 760–766 are recorded as errors and the key is not used.
 *
 * The keyring (epoch → key) and the newest epoch seen go to a `KeyringStore` (JupyterLab:
 * localStorage, keystore.ts `browserKeyringStore`; tests: memory).
 */
import type { SignatureKeyPair } from './crypto';
import { SecsyncError, SecsyncErrorCode } from './errors';
import { checkMessageEpoch } from './epochs';
import type { KnownSnapshot } from './knownSnapshot';
import { Keyring, parseLockbox } from './lockbox';
import { MembershipError, MembershipState } from './membership';
import { err } from './membershipError';

/** Where a member's keyrings are kept (per document), with the newest epoch accepted. */
export interface KeyringStore {
  load(docId: string): { keyring: Keyring; seen: number | null };
  save(docId: string, keyring: Keyring, seen: number | null): void;
}

/** A store in memory (tests, benchmarks; a page without storage). */
export class MemoryKeyringStore implements KeyringStore {
  readonly data = new Map<string, { keys: Record<string, string>; seen: number | null }>();

  load(docId: string): { keyring: Keyring; seen: number | null } {
    const entry = this.data.get(docId);
    return entry === undefined
      ? { keyring: new Keyring(), seen: null }
      : { keyring: Keyring.fromJson(entry.keys), seen: entry.seen };
  }

  save(docId: string, keyring: Keyring, seen: number | null): void {
    this.data.set(docId, { keys: keyring.toJson(), seen });
  }
}

/** What `onFrame` needs from the engine. */
export interface EpochHost {
  readonly logState: MembershipState | null;
  requestReconnect(): void;
}

export interface EpochKeysOptions {
  /** the epoch-0 key the user gave (`#key=` link, creation) */
  docKey?: Uint8Array | null;
  /** keys opened from a link's lockbox (a join) */
  keyring?: Keyring | null;
  store?: KeyringStore | null;
  /** the epoch-0 key of `keyring` came from a lockbox: not for writing until it opened a snapshot */
  epoch0FromLockbox?: boolean;
  /** `docKey` is our own (we create the document): kept at once */
  trusted?: boolean;
}

function sameKey(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null || a.length !== b.length) {
    return false;
  }
  return a.every((v, i) => v === b[i]);
}

/** The epoch keys of one document for one member; the engine's hook (`engine.epochs`). */
export class EpochKeys {
  readonly docId: string;
  readonly keyPair: SignatureKeyPair;
  readonly store: KeyringStore | null;
  readonly keyring: Keyring;
  /** the newest epoch of a snapshot accepted (769 below it) */
  seen: number | null = null;
  /** the epoch-0 key in use came from a lockbox and opened no snapshot yet: not for writing */
  unconfirmed0 = false;
  /** the epoch-0 key in use is confirmed (kept in the store) */
  confirmed0 = false;
  /** an epoch whose snapshot came before we held its key (reloaded on its lockbox) */
  missing: number | null = null;
  /** `${epoch} ${recipient}` → null (saved) or the relay's code, for lockboxes we uploaded */
  readonly lockboxResults = new Map<string, string | null>();
  /** the confirmed epoch-0 key of the store (written back as it is while ours is unconfirmed) */
  private readonly _stored0: Uint8Array | null;

  constructor(docId: string, keyPair: SignatureKeyPair, options: EpochKeysOptions = {}) {
    this.docId = docId;
    this.keyPair = keyPair;
    this.store = options.store ?? null;
    let stored = new Keyring();
    if (this.store !== null) {
      const loaded = this.store.load(docId);
      stored = loaded.keyring;
      this.seen = loaded.seen;
    }
    this._stored0 = stored.has(0) ? stored.key(0) : null;
    this.keyring = new Keyring(stored.epochs.filter((e) => e !== 0).map((e) => [e, stored.key(e)]));
    let candidate0: Uint8Array | null = null;
    const given = options.keyring ?? null;
    for (const epoch of given !== null ? given.epochs : []) {
      if (epoch === 0) {
        candidate0 = given!.key(0);
      } else {
        this.keyring.add(epoch, given!.key(epoch)); // 762 if it conflicts
      }
    }
    const docKey = options.docKey ?? null;
    if (docKey !== null) {
      this.keyring.add(0, docKey);
      this.confirmed0 = (options.trusted ?? false) || sameKey(docKey, this._stored0);
    } else if (candidate0 !== null) {
      this.keyring.add(0, candidate0);
      this.confirmed0 = sameKey(candidate0, this._stored0);
      this.unconfirmed0 = (options.epoch0FromLockbox ?? false) && !this.confirmed0;
    } else if (this._stored0 !== null) {
      this.keyring.add(0, this._stored0);
      this.confirmed0 = true;
    }
    this._save();
  }

  // ------------------------------------------------------------------ keys

  private _save(): void {
    if (this.store === null) {
      return;
    }
    const ring = new Keyring(this.keyring.epochs.filter((e) => e !== 0).map((e) => [e, this.keyring.key(e)]));
    if (this.keyring.has(0) && this.confirmed0) {
      ring.add(0, this.keyring.key(0));
    } else if (this._stored0 !== null) {
      ring.add(0, this._stored0);
    }
    try {
      this.store.save(this.docId, ring, this.seen);
      this.storeError = null;
    } catch (e) {
      // (the browser: a full or damaged localStorage must not stop reading and writing; the
      // keys stay in memory for this session and the store keeps what it had)
      this.storeError = e instanceof Error ? e : new Error(String(e));
      console.warn(`secsync: the keyring of ${this.docId} could not be kept`, e);
    }
  }

  /** the last failure to keep the keyring in the store (null: kept) */
  storeError: Error | null = null;

  /** The key of `epoch` (766 if we do not hold it). */
  key(epoch: number): Uint8Array {
    return this.keyring.key(epoch);
  }

  /** The key for a snapshot and the updates on it; null (no snapshot yet): the newest key we hold. */
  keyFor(info: KnownSnapshot | null): Uint8Array {
    if (info === null) {
      const newest = this.keyring.newest;
      if (newest === null) {
        throw err(766, 'epoch', 'no epoch key yet');
      }
      return this.keyring.key(newest);
    }
    return this.keyring.key(info.epoch);
  }

  addKey(epoch: number, key: Uint8Array): void {
    this.keyring.add(epoch, key);
    this._save();
  }

  /**
   * The epoch we may write a snapshot in: the log's current one, if we hold its key (and,
   * for epoch 0 from a lockbox, it opened a writer's snapshot); else null.
   */
  writeEpoch(state: MembershipState): number | null {
    const epoch = state.epoch;
    if (!this.keyring.has(epoch) || (epoch === 0 && this.unconfirmed0)) {
      return null;
    }
    return epoch;
  }

  // ------------------------------------------------------------- snapshots

  /**
   * `checkMessageEpoch` for a received snapshot (whose `logHead` entry `logSeq` was
   * checked), then 766 unless we hold the key. Returns the epoch.
   */
  checkSnapshot(
    state: MembershipState,
    publicData: Record<string, unknown>,
    logSeq: number,
    parent: KnownSnapshot | null,
    live: boolean
  ): number {
    const head = { seq: logSeq, hash: state.hashes[logSeq] };
    const epoch = checkMessageEpoch(state, publicData.epoch, head, {
      parent: parent !== null ? parent.epoch : undefined,
      seen: this.seen ?? undefined,
      live
    });
    if (!this.keyring.has(epoch)) {
      this.missing = epoch;
      throw err(766, 'epoch', `no key for epoch ${epoch} (no lockbox of ours opened it)`);
    }
    return epoch;
  }

  /** A snapshot of `epoch` was decrypted (key-committing AEAD) and applied. */
  accepted(epoch: number): void {
    let changed = false;
    if (epoch === 0 && !this.confirmed0) {
      // it decrypted a writer's epoch-0 snapshot
      this.unconfirmed0 = false;
      this.confirmed0 = changed = true;
    }
    if (this.seen === null || epoch > this.seen) {
      this.seen = epoch;
      changed = true;
    }
    if (this.missing !== null && this.missing <= epoch) {
      this.missing = null;
    }
    if (changed) {
      this._save();
    }
  }

  // -------------------------------------------------------------- lockboxes

  /**
   * Open our lockboxes (a `document` frame's list, or one live). Each bad one is an error
   * (760–766), its key is not used. Returns the errors.
   */
  open(state: MembershipState, lockboxes: unknown): SecsyncError[] {
    if (lockboxes === undefined || lockboxes === null) {
      return [];
    }
    if (!Array.isArray(lockboxes)) {
      return [err(760, 'lockboxes', 'lockboxes must be an array')];
    }
    const errors: SecsyncError[] = [];
    let added = false;
    for (const raw of lockboxes) {
      try {
        const lb = parseLockbox(raw);
        const fresh0 = lb.epoch === 0 && !this.keyring.has(0);
        this.keyring.addFromLockbox(state, this.keyPair, lb);
        if (fresh0) {
          this.unconfirmed0 = true; // no keyCheck for epoch 0: for writing once it opened one
        }
        added = true;
      } catch (e) {
        if (!(e instanceof MembershipError)) {
          throw e;
        }
        errors.push(e);
      }
    }
    if (added) {
      this._save();
    }
    return errors;
  }

  /** A live `lockbox` / `lockbox-saved` / `lockbox-failed` frame. */
  onFrame(host: EpochHost, frame: Record<string, unknown>): SecsyncError[] {
    const kind = frame.type;
    if (kind === 'lockbox') {
      if (host.logState === null) {
        return [err(760, 'lockbox', 'lockbox before the log')];
      }
      const errors = this.open(host.logState, [frame.lockbox]);
      if (errors.length === 0 && this.missing !== null && this.keyring.has(this.missing)) {
        host.requestReconnect(); // load the snapshot we could not open
      }
      return errors;
    }
    const { epoch, recipient } = frame;
    const code = typeof frame.code === 'string' ? frame.code : null;
    if (typeof epoch === 'number' && Number.isSafeInteger(epoch) && typeof recipient === 'string') {
      this.lockboxResults.set(
        `${epoch} ${recipient}`,
        kind === 'lockbox-failed' ? code ?? 'SECSYNC_ERROR_750' : null
      );
    }
    if (kind === 'lockbox-failed') {
      return [
        new SecsyncError(
          (code ?? 'SECSYNC_ERROR_750') as SecsyncErrorCode,
          `the relay refused our lockbox: ${String(frame.reason)}`
        )
      ];
    }
    return [];
  }
}
