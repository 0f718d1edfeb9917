/**
 * The Yjs (v1) content format on a Y.Doc — the twin of `secsync_jupyter/client/ydoc.py`:
 *  - snapshot plaintext = Y.encodeStateAsUpdate(doc)
 *  - update plaintext   = UTF-8 JSON array of b64url v1 update strings
 *  - ephemeral content  = y-protocols awareness update bytes (see awareness.ts)
 */
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { b64decode, b64encode } from './base64';
import type { DocumentAdapter } from './engine';
import { ProtocolError } from './errors';
import { utf8Decode, utf8Encode } from './sodium';

/**
 * The deletions in `update` of items of lists (Y.Array) that `doc` holds and has not deleted,
 * as an update of their own (v1: no structs, then the delete set); null when there are none.
 */
export function listDeletions(doc: Y.Doc, update: Uint8Array): Uint8Array | null {
  const ranges = new Map<number, Array<[number, number]>>();
  Y.decodeUpdate(update).ds.clients.forEach((deleted, client) => {
    const structs = doc.store.clients.get(client);
    if (structs === undefined) {
      return;
    }
    for (const { clock, len } of deleted) {
      const end = clock + len;
      for (let i = firstStructAt(structs, clock); i < structs.length; i++) {
        const s = structs[i];
        if (s.id.clock >= end) {
          break;
        }
        const listItem = s instanceof Y.Item && s.parentSub === null && s.parent instanceof Y.Array;
        if (listItem && !s.deleted) {
          const from = Math.max(clock, s.id.clock);
          const to = Math.min(end, s.id.clock + s.length);
          const list = ranges.get(client) ?? [];
          list.push([from, to - from]);
          ranges.set(client, list);
        }
      }
    }
  });
  if (ranges.size === 0) {
    return null;
  }
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, 0); // no structs
  encoding.writeVarUint(enc, ranges.size);
  ranges.forEach((list, client) => {
    encoding.writeVarUint(enc, client);
    encoding.writeVarUint(enc, list.length);
    for (const [clock, len] of list.sort((a, b) => a[0] - b[0])) {
      encoding.writeVarUint(enc, clock);
      encoding.writeVarUint(enc, len);
    }
  });
  return encoding.toUint8Array(enc);
}

/** Index of the first of `structs` (sorted by clock) that ends after `clock`. */
function firstStructAt(
  structs: Array<{ id: { clock: number }; length: number }>,
  clock: number
): number {
  let lo = 0;
  let hi = structs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (structs[mid].id.clock + structs[mid].length <= clock) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

export function serializeUpdates(updates: Uint8Array[]): Uint8Array {
  return utf8Encode(JSON.stringify(updates.map((u) => b64encode(u))));
}

/** Throws ProtocolError when the plaintext is not a JSON array of b64url strings. */
export function deserializeUpdates(plaintext: Uint8Array): Uint8Array[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decode(plaintext));
  } catch {
    throw new ProtocolError('update content is not UTF-8 JSON');
  }
  if (!Array.isArray(parsed)) {
    throw new ProtocolError('update content is not a JSON array');
  }
  return parsed.map((item) => {
    if (typeof item !== 'string') {
      throw new ProtocolError('update content entries must be strings');
    }
    return b64decode(item);
  });
}

/**
 * Connects a Y.Doc to the sync engine. Local transactions are reported to `onLocalUpdate`
 * (one v1 update each); updates applied here on behalf of the relay are not reported back.
 */
export class YDocAdapter implements DocumentAdapter<Uint8Array> {
  readonly doc: Y.Doc;
  private readonly _onLocalUpdate: ((update: Uint8Array) => void) | null;
  private readonly _onEphemeral: ((content: Uint8Array, author: string) => void) | null;

  constructor(
    doc: Y.Doc,
    onLocalUpdate?: (update: Uint8Array) => void,
    onEphemeral?: (content: Uint8Array, author: string) => void
  ) {
    this.doc = doc;
    this._onLocalUpdate = onLocalUpdate ?? null;
    this._onEphemeral = onEphemeral ?? null;
    doc.on('update', this._onTransaction);
  }

  close(): void {
    this.doc.off('update', this._onTransaction);
  }

  private _onTransaction = (update: Uint8Array, origin: unknown): void => {
    if (origin !== this && this._onLocalUpdate !== null) {
      this._onLocalUpdate(update);
    }
  };

  // DocumentAdapter
  applySnapshot(content: Uint8Array): void {
    this.applyChanges([content]);
  }

  /**
   * Applies the changes' deletions of list items this document holds in one transaction, then
   * the changes in a second. One transaction holding both a deletion and an insertion in one
   * list (a cell's old output deleted, its new one inserted: two merged updates, a frame with
   * both, or a snapshot) gives observers a delta with the insertion first; JupyterLab's code
   * cell model then appends the new stream output to the old one and deletes the result, and
   * writes the text a second time into the shared output (the receiver lost the output, the
   * author showed it twice). Only list items go first: a map key without its value or a text
   * missing a part would be states no collaborator had.
   */
  applyChanges(changes: Uint8Array[]): void {
    if (this.doc.store.clients.size > 0) {
      const first = changes.map((c) => listDeletions(this.doc, c)).filter((u) => u !== null);
      if (first.length > 0) {
        this._applyAll(first as Uint8Array[]);
      }
    }
    this._applyAll(changes);
  }

  private _applyAll(updates: Uint8Array[]): void {
    Y.transact(
      this.doc,
      () => {
        for (const update of updates) {
          Y.applyUpdate(this.doc, update, this);
        }
      },
      this
    );
  }

  serializeChanges(changes: Uint8Array[]): Uint8Array {
    return serializeUpdates(changes);
  }

  /** Pending local updates go out merged into one. */
  mergeChanges(changes: Uint8Array[]): Uint8Array[] {
    return [Y.mergeUpdates(changes)];
  }

  deserializeChanges(data: Uint8Array): Uint8Array[] {
    return deserializeUpdates(data);
  }

  snapshotContent(): Uint8Array {
    return Y.encodeStateAsUpdate(this.doc);
  }

  applyEphemeral(content: Uint8Array, author: string): void {
    this._onEphemeral?.(content, author);
  }
}
