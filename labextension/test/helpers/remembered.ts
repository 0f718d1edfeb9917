/**
 * Shared by the remembered-state tests (rememberedStore, rememberedDamaged): a localStorage
 * stand-in for `LocalStorageStore` and a content adapter that does nothing, for engines built
 * only to see what they make of a remembered state.
 */
import { StorageLike } from '../../src/secsync/rememberedState';

/** The items, the keys written in order, and a full quota for chosen keys. */
export class FakeStorage implements StorageLike {
  readonly items = new Map<string, string>();
  writes: string[] = [];
  /** setItem of keys containing this throws (a full quota) */
  failOn: string | null = null;
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    if (this.failOn !== null && key.includes(this.failOn)) {
      throw new Error('QuotaExceededError');
    }
    this.writes.push(key);
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

/** A content adapter for `SyncEngine` that keeps nothing (pass it `as never`). */
export const nullAdapter = () => ({
  snapshotContent: () => new Uint8Array(),
  applySnapshot: () => undefined,
  applyChanges: () => undefined,
  serializeChanges: (c: Uint8Array[]) => c[0] ?? new Uint8Array(),
  deserializeChanges: (b: Uint8Array) => [b],
  applyEphemeral: () => undefined
});
