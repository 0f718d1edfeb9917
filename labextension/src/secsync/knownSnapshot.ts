/**
 * A snapshot the client already has, with the clocks it has received on it: what the engine
 * resumes from (split out of engineCore.ts; engineCore.ts re-exports it).
 */
import { hash } from './crypto';
import { ProtocolError } from './errors';
import { isPlainObject } from './parse';
import type { Snapshot, SnapshotInfoWithUpdateClocks, SnapshotProofChainEntry, UpdateClocks } from './types';

/** `clocks[pubKey]`, or -1 (own properties only: a pubKey is untrusted input). */
export function clockOf(clocks: UpdateClocks, pubKey: string): number {
  return Object.prototype.hasOwnProperty.call(clocks, pubKey) ? clocks[pubKey] : -1;
}

/** A snapshot the client already has (`knownSnapshotInfo` in the reference). */
export class KnownSnapshot implements SnapshotInfoWithUpdateClocks {
  /** issue 12: the key epoch of the snapshot (`publicData.epoch`, absent: 0) */
  epoch = 0;

  constructor(
    public snapshotId: string,
    public snapshotCiphertextHash: string,
    public parentSnapshotProof: string,
    public updateClocks: UpdateClocks = {},
    /** updates / bytes accepted on it (for the snapshot policy; not sent anywhere) */
    public updatesCount = 0,
    public updatesBytes = 0
  ) {}

  get proofEntry(): SnapshotProofChainEntry {
    return {
      snapshotId: this.snapshotId,
      snapshotCiphertextHash: this.snapshotCiphertextHash,
      parentSnapshotProof: this.parentSnapshotProof
    };
  }

  static of(snapshot: Snapshot): KnownSnapshot {
    return new KnownSnapshot(
      snapshot.publicData.snapshotId,
      hash(snapshot.ciphertext),
      snapshot.publicData.parentSnapshotProof
    );
  }

  copy(): KnownSnapshot {
    const copy = new KnownSnapshot(
      this.snapshotId,
      this.snapshotCiphertextHash,
      this.parentSnapshotProof,
      { ...this.updateClocks },
      this.updatesCount,
      this.updatesBytes
    );
    copy.epoch = this.epoch;
    return copy;
  }

  toJSON(): SnapshotInfoWithUpdateClocks & { epoch?: number } {
    return {
      ...this.proofEntry,
      updateClocks: { ...this.updateClocks },
      ...(this.epoch ? { epoch: this.epoch } : {})
    };
  }

  static fromJSON(obj: SnapshotInfoWithUpdateClocks): KnownSnapshot {
    const clocks: unknown = obj.updateClocks ?? {};
    if (
      !isPlainObject(clocks) ||
      !Object.values(clocks).every((v) => typeof v === 'number' && Number.isSafeInteger(v))
    ) {
      throw new ProtocolError('updateClocks must map strings to integers');
    }
    const updateClocks = { ...(clocks as UpdateClocks) };
    const count = Object.values(updateClocks).reduce((n, c) => n + c + 1, 0);
    const known = new KnownSnapshot(
      String(obj.snapshotId),
      String(obj.snapshotCiphertextHash),
      String(obj.parentSnapshotProof),
      updateClocks,
      count
    );
    const epoch = (obj as { epoch?: unknown }).epoch;
    known.epoch = typeof epoch === 'number' && Number.isSafeInteger(epoch) && epoch >= 0 ? epoch : 0;
    return known;
  }
}
