/**
 * Awareness (presence) over Secsync ephemeral messages — the twin of
 * `secsync_jupyter/client/awareness.py`.
 *
 * The content of an ephemeral `message` is a y-protocols awareness update. The local state
 * carries `pubKey` and `secsync: {pubKey, fingerprint}` (the field the Python client reads);
 * a remote entry is applied only when the key it claims is the key that signed the message,
 * and an awareness client id, once seen with one signer, cannot be updated or removed by
 * another. Renewal (15 s) and the 30 s timeout of remote states are y-protocols' own timers.
 */
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import {
  applyAwarenessUpdate,
  Awareness,
  encodeAwarenessUpdate,
  removeAwarenessStates
} from 'y-protocols/awareness';
import { fingerprint } from './crypto';
import { SecsyncError } from './errors';

/**
 * The fields this client puts into its local awareness state: `pubKey` and
 * `secsync: {pubKey, fingerprint}` (the field the Python client checks).
 */
export function localAwarenessFields(pubKey: string): {
  pubKey: string;
  secsync: { pubKey: string; fingerprint: string };
} {
  return { pubKey, secsync: { pubKey, fingerprint: fingerprint(pubKey) } };
}

/**
 * The pubKey an awareness state claims: `secsync.pubKey` and/or `pubKey` (all present
 * claims must agree), else the reference client's `user.publicKey`; undefined if none.
 */
export function awarenessClaimedPubKey(state: unknown): string | undefined {
  if (typeof state !== 'object' || state === null) {
    return undefined;
  }
  const s = state as { pubKey?: unknown; secsync?: { pubKey?: unknown }; user?: { publicKey?: unknown } };
  const claims: unknown[] = [];
  if (typeof s.secsync === 'object' && s.secsync !== null && 'pubKey' in s.secsync) {
    claims.push(s.secsync.pubKey);
  }
  if ('pubKey' in s) {
    claims.push(s.pubKey);
  }
  if (claims.length === 0 && typeof s.user === 'object' && s.user !== null) {
    claims.push(s.user.publicKey);
  }
  if (claims.length === 0 || claims.some((c) => typeof c !== 'string' || c !== claims[0])) {
    return undefined;
  }
  return claims[0] as string;
}

export interface Collaborator {
  clientId: number;
  pubKey: string;
  fingerprint: string;
  user: Record<string, unknown> | null;
  state: Record<string, unknown>;
  isSelf: boolean;
}

interface Entry {
  clientId: number;
  clock: number;
  json: string;
  state: unknown;
}

function decode(update: Uint8Array): Entry[] {
  const decoder = decoding.createDecoder(update);
  const entries: Entry[] = [];
  const len = decoding.readVarUint(decoder);
  for (let i = 0; i < len; i++) {
    const clientId = decoding.readVarUint(decoder);
    const clock = decoding.readVarUint(decoder);
    const json = decoding.readVarString(decoder);
    entries.push({ clientId, clock, json, state: JSON.parse(json) as unknown });
  }
  return entries;
}

function encode(entries: Entry[]): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, entries.length);
  for (const e of entries) {
    encoding.writeVarUint(encoder, e.clientId);
    encoding.writeVarUint(encoder, e.clock);
    encoding.writeVarString(encoder, e.json);
  }
  return encoding.toUint8Array(encoder);
}

type Changes = { added: number[]; updated: number[]; removed: number[] };

/** Keeps a y-protocols `Awareness` in sync through a `send(bytes)` callable. */
export class AwarenessBridge {
  static readonly RENEW_SECONDS = 15;
  static readonly OUTDATED_SECONDS = 30;

  readonly awareness: Awareness;
  readonly pubKey: string;
  /** remote entries dropped (wrong claimed key, another signer's client id) */
  dropped = 0;
  private readonly _send: (content: Uint8Array) => void;
  private readonly _onError: (error: SecsyncError) => void;
  private readonly _owners = new Map<number, string>();

  /** `onError` receives each dropped entry (304) and undecodable content (307). */
  constructor(
    awareness: Awareness,
    pubKey: string,
    send: (content: Uint8Array) => void,
    onError: (error: SecsyncError) => void = () => undefined
  ) {
    this.awareness = awareness;
    this.pubKey = pubKey;
    this._send = send;
    this._onError = onError;
    this._stampLocal();
    awareness.on('update', this._onAwareness);
  }

  get clientId(): number {
    return this.awareness.clientID;
  }

  destroy(): void {
    this.awareness.off('update', this._onAwareness);
  }

  private _onAwareness = (changes: Changes, origin: unknown): void => {
    const own = this.clientId;
    for (const id of changes.removed) {
      if (id !== own) {
        this._owners.delete(id);
      }
    }
    if (origin === this) {
      return;
    }
    if (!changes.added.includes(own) && !changes.updated.includes(own) && !changes.removed.includes(own)) {
      return;
    }
    const state = this.awareness.getLocalState();
    if (state !== null && awarenessClaimedPubKey(state) !== this.pubKey) {
      // the application replaced the local state: re-add our key (triggers another update)
      this._stampLocal();
      return;
    }
    this._send(this.encodeLocal());
  };

  /** Our key in the local state (unless the state is null: we left). */
  private _stampLocal(): void {
    const state = this.awareness.getLocalState();
    if (state !== null && state !== undefined) {
      this.awareness.setLocalState({ ...state, ...localAwarenessFields(this.pubKey) });
    }
  }

  encodeLocal(): Uint8Array {
    return encodeAwarenessUpdate(this.awareness, [this.clientId]);
  }

  setLocalStateField(name: string, value: unknown): void {
    this.awareness.setLocalStateField(name, value);
  }

  /** Send the full local state (a peer joined). */
  resend(): void {
    if (this.awareness.getLocalState() !== null) {
      this._send(this.encodeLocal());
    }
  }

  /**
   * Apply a remote awareness update signed by `author`: entries claiming another key,
   * touching our own client id, or touching a client id first seen with another signer are
   * dropped. True when something was applied.
   */
  apply(content: Uint8Array, author: string): boolean {
    let entries: Entry[];
    try {
      entries = decode(content);
    } catch (exc) {
      this._onError(new SecsyncError('SECSYNC_ERROR_307', `awareness: ${String(exc)}`));
      return false;
    }
    const kept = entries.filter(({ clientId, state }) => {
      const owner = this._owners.get(clientId);
      let reason: string | null = null;
      if (clientId === this.clientId || (owner !== undefined && owner !== author)) {
        reason = 'awareness client id of another author';
      } else if (state === null) {
        if (owner !== author) {
          reason = 'removal of an unknown awareness client id';
        }
      } else if (awarenessClaimedPubKey(state) !== author) {
        reason = 'awareness pubKey differs from the signer';
      }
      if (reason !== null) {
        this.dropped += 1;
        this._onError(new SecsyncError('SECSYNC_ERROR_304', reason));
        return false;
      }
      return true;
    });
    if (kept.length === 0) {
      return false;
    }
    try {
      applyAwarenessUpdate(this.awareness, encode(kept), this);
    } catch (exc) {
      this._onError(new SecsyncError('SECSYNC_ERROR_307', `awareness: ${String(exc)}`));
      return false;
    }
    for (const { clientId, state } of kept) {
      if (state === null) {
        this._owners.delete(clientId);
      } else {
        this._owners.set(clientId, author);
      }
    }
    return true;
  }

  /** Remove the states of one signer (e.g. it left without saying so). */
  removeAuthor(author: string): void {
    const ids: number[] = [];
    this._owners.forEach((owner, id) => {
      if (owner === author && id !== this.clientId) {
        ids.push(id);
      }
    });
    if (ids.length > 0) {
      removeAwarenessStates(this.awareness, ids, this);
    }
  }

  /** Remove every remote state (our connection dropped: we no longer hear the others). */
  removeRemote(): void {
    const remote: number[] = [];
    this.awareness.getStates().forEach((_state, id) => {
      if (id !== this.clientId) {
        remote.push(id);
      }
    });
    if (remote.length > 0) {
      removeAwarenessStates(this.awareness, remote, this);
    }
    this._owners.clear();
  }

  /** Remove the local state (the others are told through `send`). */
  leave(): void {
    if (this.awareness.getLocalState() !== null) {
      removeAwarenessStates(this.awareness, [this.clientId], 'secsync-leave');
    }
  }

  /** Who is here (states with a verified signer), including ourselves. */
  collaborators(): Collaborator[] {
    const out: Collaborator[] = [];
    const ids = Array.from(this.awareness.getStates().keys()).sort((a, b) => a - b);
    for (const clientId of ids) {
      const state = this.awareness.getStates().get(clientId);
      const isSelf = clientId === this.clientId;
      const pubKey = isSelf ? this.pubKey : this._owners.get(clientId);
      if (pubKey === undefined || typeof state !== 'object' || state === null) {
        continue;
      }
      const user = typeof state.user === 'object' && state.user !== null ? state.user : null;
      out.push({ clientId, pubKey, fingerprint: fingerprint(pubKey), user, state, isSelf });
    }
    return out;
  }
}
