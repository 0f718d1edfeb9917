/**
 * Where the browser keeps, per document, the state it verified last (issue 13, part 3): the
 * active snapshot with every author's clock and the membership log head — checked by the next
 * load (a rollback or a history not descending from it: 804; a log without the head: 718).
 * The twin of `secsync_jupyter/client/state_file.py`. No key is stored.
 *
 * `LocalStorageStore` (the default in JupyterLab): one `localStorage` item per document,
 * `secsync-jupyter:remembered:<docId>`, JSON `{snapshot, logHead, savedAt}`, and the verified
 * membership log in a second item, `secsync-jupyter:remembered-log:<docId>`, JSON
 * `{logHead, log}`, written only when the log's head moved (the state is saved about once a
 * second while typing). A load verifies only the log entries after the remembered head (the
 * relay is asked for them: knownLogSeq / knownLogHash), as the Python client does with its state
 * file. The log is used only when its head is the remembered `logHead`; when it cannot be
 * stored (quota) it is dropped and the next load verifies the whole log.
 *
 * A damaged item (not JSON; a log item that is not `{logHead, log: []}`) throws
 * `RememberedDamagedError` from `load`; the client then loads from scratch (807) and
 * `setAside` moves the items to side keys (`<key>:damaged`, `:damaged:2`… — never one
 * overwritten) before a fresh state is written.
 */
import type { RememberedState } from './engineHeads';

export type { RememberedState } from './engineHeads';

/** What a store holds for a document cannot be read (not JSON, or not its format). */
export class RememberedDamagedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RememberedDamagedError';
  }
}

/**
 * A place for remembered states: `load` returns the JSON object saved last, or null (throws
 * `RememberedDamagedError` when what is stored cannot be read); `setAside` keeps what is
 * stored for a document under side keys and removes it (a damaged state: 807), returning the
 * side keys.
 */
export interface RememberedStore {
  load(docId: string): unknown;
  save(docId: string, state: RememberedState): void;
  setAside?(docId: string): string[];
}

/** Minimal `Storage` (window.localStorage). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem?(key: string): void;
}

export const REMEMBERED_PREFIX = 'secsync-jupyter:remembered:';
export const REMEMBERED_LOG_PREFIX = 'secsync-jupyter:remembered-log:';

function headMark(head: unknown): string {
  const h = head as { seq?: unknown; hash?: unknown };
  return `${String(h.seq)} ${String(h.hash)}`;
}

function sameHead(a: unknown, b: unknown): boolean {
  const x = a as { seq?: unknown; hash?: unknown } | null;
  const y = b as { seq?: unknown; hash?: unknown } | null;
  return !!x && !!y && typeof x.seq === 'number' && x.seq === y.seq && typeof x.hash === 'string' && x.hash === y.hash;
}

export class LocalStorageStore implements RememberedStore {
  /** per document, the log head whose log this store wrote last */
  private readonly _logWritten = new Map<string, string>();

  constructor(
    private readonly storage: StorageLike,
    private readonly prefix = REMEMBERED_PREFIX,
    private readonly logPrefix = REMEMBERED_LOG_PREFIX
  ) {}

  load(docId: string): unknown {
    const text = this.storage.getItem(this.prefix + docId);
    if (text === null) {
      return null;
    }
    let state: unknown;
    try {
      state = JSON.parse(text);
    } catch (exc) {
      throw new RememberedDamagedError(`localStorage ${this.prefix}${docId} is not JSON: ${String(exc)}`);
    }
    const logText = this.storage.getItem(this.logPrefix + docId);
    if (logText !== null && state !== null && typeof state === 'object' && !Array.isArray(state)) {
      let saved: { logHead?: unknown; log?: unknown } | null;
      try {
        saved = JSON.parse(logText);
      } catch (exc) {
        throw new RememberedDamagedError(`localStorage ${this.logPrefix}${docId} is not JSON: ${String(exc)}`);
      }
      if (saved === null || typeof saved !== 'object' || Array.isArray(saved) || !Array.isArray(saved.log)) {
        throw new RememberedDamagedError(`localStorage ${this.logPrefix}${docId} is not {logHead, log: [entries]}`);
      }
      const head = (state as { logHead?: unknown }).logHead;
      if (sameHead(saved.logHead, head)) {
        this._logWritten.set(docId, headMark(head));
        return { ...state, log: saved.log };
      }
      // another head (the state moved on and the log could not be written): not used
    }
    return state;
  }

  setAside(docId: string): string[] {
    const kept: string[] = [];
    for (const key of [this.prefix + docId, this.logPrefix + docId]) {
      const text = this.storage.getItem(key);
      if (text === null) {
        continue;
      }
      let aside = `${key}:damaged`;
      for (let n = 2; this.storage.getItem(aside) !== null; n++) {
        aside = `${key}:damaged:${n}`;
      }
      this.storage.setItem(aside, text); // throws (e.g. the quota): nothing removed
      kept.push(aside);
    }
    for (const key of [this.prefix + docId, this.logPrefix + docId]) {
      this.storage.removeItem?.(key);
    }
    this._logWritten.delete(docId);
    return kept;
  }

  save(docId: string, state: RememberedState): void {
    const { log, ...rest } = state;
    if (log !== undefined && state.logHead !== null) {
      const mark = headMark(state.logHead);
      if (this._logWritten.get(docId) !== mark) {
        const text = JSON.stringify({ logHead: state.logHead, log });
        try {
          this.storage.setItem(this.logPrefix + docId, text);
          this._logWritten.set(docId, mark);
        } catch (exc) {
          // e.g. the quota: keep the rest; the next load verifies the whole log
          this._logWritten.delete(docId);
          this.storage.removeItem?.(this.logPrefix + docId);
          console.warn(`secsync ${docId}: cannot remember the membership log`, exc);
        }
      }
    }
    this.storage.setItem(this.prefix + docId, JSON.stringify({ ...rest, savedAt: Date.now() }));
  }
}

/** In memory (tests, or a page that wants no persistence across reloads). */
export class MemoryStore implements RememberedStore {
  readonly items = new Map<string, string>();

  load(docId: string): unknown {
    const text = this.items.get(docId);
    if (text === undefined) {
      return null;
    }
    try {
      return JSON.parse(text);
    } catch (exc) {
      throw new RememberedDamagedError(`the remembered state of ${docId} is not JSON: ${String(exc)}`);
    }
  }

  save(docId: string, state: RememberedState): void {
    this.items.set(docId, JSON.stringify(state));
  }

  setAside(docId: string): string[] {
    const text = this.items.get(docId);
    if (text === undefined) {
      return [];
    }
    let aside = `${docId}:damaged`;
    for (let n = 2; this.items.has(aside); n++) {
      aside = `${docId}:damaged:${n}`;
    }
    this.items.set(aside, text);
    this.items.delete(docId);
    return [aside];
  }
}

/** The browser's localStorage store, or null where there is none (e.g. Node). */
export function defaultRememberedStore(): RememberedStore | null {
  const storage = (globalThis as { localStorage?: StorageLike }).localStorage;
  return storage ? new LocalStorageStore(storage) : null;
}
