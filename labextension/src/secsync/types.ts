/** Wire types of the Secsync protocol (version 1). */

export type UpdateClocks = Record<string, number>;

export interface SnapshotPublicData {
  docId: string;
  pubKey: string;
  snapshotId: string;
  parentSnapshotId: string;
  parentSnapshotProof: string;
  parentSnapshotUpdateClocks: UpdateClocks;
  /** extra application fields are allowed and authenticated */
  [extra: string]: unknown;
}

/** Snapshot public data before the proof is filled in by createSnapshot. */
export interface SnapshotPublicDataInput {
  docId: string;
  pubKey: string;
  snapshotId: string;
  parentSnapshotId: string;
  parentSnapshotUpdateClocks: UpdateClocks;
  [extra: string]: unknown;
}

export interface Snapshot {
  nonce: string;
  ciphertext: string;
  publicData: SnapshotPublicData;
  signature: string;
}

export interface UpdatePublicData {
  docId: string;
  pubKey: string;
  refSnapshotId: string;
  clock: number;
  [extra: string]: unknown;
}

export interface UpdatePublicDataInput {
  docId: string;
  pubKey: string;
  refSnapshotId: string;
  [extra: string]: unknown;
}

export interface Update {
  nonce: string;
  ciphertext: string;
  publicData: UpdatePublicData;
  signature: string;
}

export interface EphemeralMessagePublicData {
  docId: string;
  pubKey: string;
  [extra: string]: unknown;
}

export interface EphemeralMessage {
  nonce: string;
  ciphertext: string;
  publicData: EphemeralMessagePublicData;
  signature: string;
}

export interface SnapshotProofChainEntry {
  snapshotId: string;
  snapshotCiphertextHash: string;
  parentSnapshotProof: string;
}

export interface SnapshotInfoWithUpdateClocks extends SnapshotProofChainEntry {
  updateClocks: UpdateClocks;
}
