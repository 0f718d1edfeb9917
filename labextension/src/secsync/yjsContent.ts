/**
 * The Yjs (v1) content format on a Y.Doc — the twin of `secsync_jupyter/client/ydoc.py`:
 *  - snapshot plaintext = Y.encodeStateAsUpdate(doc)
 *  - update plaintext   = UTF-8 JSON array of b64url v1 update strings
 *  - ephemeral content  = y-protocols awareness update bytes (see awareness.ts)
 */
import * as Y from 'yjs';
import { b64decode, b64encode } from './base64';
import type { DocumentAdapter } from './engine';
import { ProtocolError } from './errors';
import { utf8Decode, utf8Encode } from './sodium';

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
   * Applies the deletions of `changes` in one transaction, then everything else in a second.
   * One transaction holding both a deletion and an insertion at the same place (a cell's old
   * output deleted, its new one inserted: two merged updates, a frame with both, or a
   * snapshot) gives observers a delta with the insertion first; JupyterLab's code cell model
   * then appends the new stream output to the old one and deletes the result, and writes the
   * text a second time into the shared output (issue: output lost for the receiver, shown
   * twice for the author). A document without content has nothing to delete (one pass).
   */
  applyChanges(changes: Uint8Array[]): void {
    if (this.doc.store.clients.size > 0) {
      // each update without its structs: the state vector of its own structs' ends
      const deletions = changes.map((c) =>
        Y.diffUpdate(c, Y.encodeStateVector(Y.parseUpdateMeta(c).to))
      );
      this._applyAll(deletions);
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
