/**
 * Where the browser keeps, per document, the state it verified last (issue 13, part 3): the
 * active snapshot with every author's clock and the membership log head — checked by the next
 * load (a rollback or a history not descending from it: 804; a log without the head: 718).
 * The twin of `secsync_jupyter/client/state_file.py`. No key is stored.
 *
 * `LocalStorageStore` (the default in JupyterLab): one `localStorage` item per document,
 * `secsync-jupyter:remembered:<docId>`, JSON `{snapshot, logHead, savedAt}`.
 */
import type { RememberedState } from './engineHeads';

export type { RememberedState } from './engineHeads';

/** A place for remembered states (`load` returns the JSON object saved last, or null). */
export interface RememberedStore {
  load(docId: string): unknown;
  save(docId: string, state: RememberedState): void;
}

/** Minimal `Storage` (window.localStorage). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export const REMEMBERED_PREFIX = 'secsync-jupyter:remembered:';

export class LocalStorageStore implements RememberedStore {
  constructor(
    private readonly storage: StorageLike,
    private readonly prefix = REMEMBERED_PREFIX
  ) {}

  load(docId: string): unknown {
    const text = this.storage.getItem(this.prefix + docId);
    if (text === null) {
      return null;
    }
    try {
      return JSON.parse(text);
    } catch (exc) {
      throw new Error(`the remembered state of ${docId} (localStorage ${this.prefix}${docId}) is not JSON: ${String(exc)}`);
    }
  }

  save(docId: string, state: RememberedState): void {
    this.storage.setItem(this.prefix + docId, JSON.stringify({ ...state, savedAt: Date.now() }));
  }
}

/** In memory (tests, or a page that wants no persistence across reloads). */
export class MemoryStore implements RememberedStore {
  readonly items = new Map<string, string>();

  load(docId: string): unknown {
    const text = this.items.get(docId);
    return text === undefined ? null : JSON.parse(text);
  }

  save(docId: string, state: RememberedState): void {
    this.items.set(docId, JSON.stringify(state));
  }
}

/** The browser's localStorage store, or null where there is none (e.g. Node). */
export function defaultRememberedStore(): RememberedStore | null {
  const storage = (globalThis as { localStorage?: StorageLike }).localStorage;
  return storage ? new LocalStorageStore(storage) : null;
}
