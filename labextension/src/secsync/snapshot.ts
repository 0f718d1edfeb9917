/**
 * Snapshots: creation, parent snapshot proofs, ancestor chains and verification.
 * Error codes follow the reference verifier (shared/protocol.md, "Client error codes").
 */
import { b64decode, b64encode } from './base64';
import { canonicalizeAndToBase64, canonicalizeStrict } from './canonical';
import { decryptAead, encryptAead, hash, sign, SignatureKeyPair, verifySignature } from './crypto';
import { ProtocolError, SecsyncError } from './errors';
import { parseSnapshot, parseThen } from './parse';
import { utf8Encode } from './sodium';
import type {
  Snapshot,
  SnapshotProofChainEntry,
  SnapshotPublicData,
  SnapshotPublicDataInput
} from './types';

export type VerifyResult<T> = ({ error: null } & T) | { error: SecsyncError };

function contentBytes(content: Uint8Array | string): Uint8Array {
  return typeof content === 'string' ? utf8Encode(content) : content;
}

/** hash(canon({grandParentSnapshotProof, parentSnapshotCiphertextHash, parentSnapshotId})) */
export function createParentSnapshotProof(params: {
  grandParentSnapshotProof: string;
  parentSnapshotId: string;
  parentSnapshotCiphertextHash: string;
}): string {
  return hash(
    canonicalizeStrict({
      grandParentSnapshotProof: params.grandParentSnapshotProof,
      parentSnapshotCiphertextHash: params.parentSnapshotCiphertextHash,
      parentSnapshotId: params.parentSnapshotId
    })
  );
}

export function snapshotProofEntry(snapshot: Snapshot): SnapshotProofChainEntry {
  return {
    snapshotId: snapshot.publicData.snapshotId,
    snapshotCiphertextHash: hash(snapshot.ciphertext),
    parentSnapshotProof: snapshot.publicData.parentSnapshotProof
  };
}

export function createSnapshot(
  content: Uint8Array | string,
  publicDataInput: SnapshotPublicDataInput,
  key: Uint8Array,
  signatureKeyPair: SignatureKeyPair,
  parentSnapshotCiphertextHash: string,
  grandParentSnapshotProof: string,
  nonce?: Uint8Array
): Snapshot {
  const parentSnapshotProof = createParentSnapshotProof({
    grandParentSnapshotProof,
    parentSnapshotId: publicDataInput.parentSnapshotId,
    parentSnapshotCiphertextHash
  });
  const publicData: SnapshotPublicData = { ...publicDataInput, parentSnapshotProof };
  const publicDataB64 = canonicalizeAndToBase64(publicData);
  const { ciphertext, publicNonce } = encryptAead(
    contentBytes(content),
    publicDataB64,
    key,
    nonce
  );
  const signature = sign(
    'secsync_snapshot',
    { nonce: publicNonce, ciphertext, publicData: publicDataB64 },
    signatureKeyPair.privateKey
  );
  return { nonce: publicNonce, ciphertext, publicData, signature };
}

/** First snapshot of a document: parent id, hash and grand-parent proof are all "". */
export function createInitialSnapshot(
  content: Uint8Array | string,
  publicDataInput: SnapshotPublicDataInput,
  key: Uint8Array,
  signatureKeyPair: SignatureKeyPair,
  nonce?: Uint8Array
): Snapshot {
  if (publicDataInput.parentSnapshotId !== '') {
    throw new ProtocolError('initial snapshot must have parentSnapshotId ""');
  }
  return createSnapshot(content, publicDataInput, key, signatureKeyPair, '', '', nonce);
}

export function isValidParentSnapshot(params: {
  snapshot: Snapshot;
  parentSnapshotId: string;
  parentSnapshotCiphertextHash: string;
  grandParentSnapshotProof: string;
}): boolean {
  const proof = createParentSnapshotProof(params);
  return (
    proof === params.snapshot.publicData.parentSnapshotProof &&
    params.parentSnapshotId === params.snapshot.publicData.parentSnapshotId
  );
}

/**
 * True when `currentSnapshot` is `knownSnapshotProofEntry` itself, or when
 * `snapshotProofChain` links the known snapshot to it (last entry = current snapshot).
 */
export function isValidAncestorSnapshot(params: {
  knownSnapshotProofEntry: SnapshotProofChainEntry;
  snapshotProofChain: SnapshotProofChainEntry[];
  currentSnapshot: Snapshot;
}): boolean {
  const { knownSnapshotProofEntry: known, snapshotProofChain: chain, currentSnapshot } = params;
  const currentHash = hash(currentSnapshot.ciphertext);
  if (
    known.snapshotId === currentSnapshot.publicData.snapshotId &&
    known.snapshotCiphertextHash === currentHash &&
    known.parentSnapshotProof === currentSnapshot.publicData.parentSnapshotProof
  ) {
    return true;
  }
  if (!Array.isArray(chain) || chain.length === 0) {
    return false;
  }
  let previous = known;
  for (const entry of chain) {
    const expected = createParentSnapshotProof({
      grandParentSnapshotProof: previous.parentSnapshotProof,
      parentSnapshotId: previous.snapshotId,
      parentSnapshotCiphertextHash: previous.snapshotCiphertextHash
    });
    if (entry.parentSnapshotProof !== expected) {
      return false;
    }
    previous = entry;
  }
  const last = chain[chain.length - 1];
  return (
    last.parentSnapshotProof === currentSnapshot.publicData.parentSnapshotProof &&
    last.snapshotCiphertextHash === currentHash &&
    last.snapshotId === currentSnapshot.publicData.snapshotId
  );
}

export interface VerifySnapshotParams {
  key: Uint8Array;
  currentDocId: string;
  /** own signing public key (bytes or b64); needed for the parentSnapshotUpdateClock check */
  currentClientPublicKey: Uint8Array | string;
  /** the snapshot this one must be a direct child of */
  parentSnapshotProofInfo?: SnapshotProofChainEntry | null;
  /** own last update clock on the parent; must equal parentSnapshotUpdateClocks[own key] */
  parentSnapshotUpdateClock?: number | null;
}

/**
 * Verifies and decrypts a snapshot. Check order as in the reference: shape (110),
 * signature (111), docId (113), parent proof (112), own clock (102), decryption (101).
 * Never throws.
 */
export function verifyAndDecryptSnapshot(
  rawSnapshot: unknown,
  params: VerifySnapshotParams
): VerifyResult<{ content: Uint8Array; snapshot: Snapshot }> {
  return parseThen(rawSnapshot, parseSnapshot, 'SECSYNC_ERROR_110', (snapshot) =>
    verifyAndDecryptParsedSnapshot(snapshot, params)
  );
}

/** {@link verifyAndDecryptSnapshot} for a snapshot already parsed with `parseSnapshot`. */
export function verifyAndDecryptParsedSnapshot(
  snapshot: Snapshot,
  params: VerifySnapshotParams
): VerifyResult<{ content: Uint8Array; snapshot: Snapshot }> {
  try {
    let publicDataB64: string;
    try {
      const publicKey = b64decode(snapshot.publicData.pubKey);
      publicDataB64 = canonicalizeAndToBase64(snapshot.publicData);
      const valid = verifySignature(
        'secsync_snapshot',
        { nonce: snapshot.nonce, ciphertext: snapshot.ciphertext, publicData: publicDataB64 },
        snapshot.signature,
        publicKey
      );
      if (!valid) {
        return { error: new SecsyncError('SECSYNC_ERROR_111') };
      }
    } catch {
      return { error: new SecsyncError('SECSYNC_ERROR_111') };
    }

    if (snapshot.publicData.docId !== params.currentDocId) {
      return { error: new SecsyncError('SECSYNC_ERROR_113') };
    }

    const parent = params.parentSnapshotProofInfo;
    if (parent) {
      const ok = isValidParentSnapshot({
        snapshot,
        parentSnapshotId: parent.snapshotId,
        parentSnapshotCiphertextHash: parent.snapshotCiphertextHash,
        grandParentSnapshotProof: parent.parentSnapshotProof
      });
      if (!ok) {
        return { error: new SecsyncError('SECSYNC_ERROR_112') };
      }
    }

    if (params.parentSnapshotUpdateClock !== undefined && params.parentSnapshotUpdateClock !== null) {
      const own =
        typeof params.currentClientPublicKey === 'string'
          ? params.currentClientPublicKey
          : b64encode(params.currentClientPublicKey);
      const clocks = snapshot.publicData.parentSnapshotUpdateClocks;
      const claimed = Object.prototype.hasOwnProperty.call(clocks, own) ? clocks[own] : undefined;
      if (claimed !== params.parentSnapshotUpdateClock) {
        return { error: new SecsyncError('SECSYNC_ERROR_102') };
      }
    }

    try {
      const content = decryptAead(
        b64decode(snapshot.ciphertext),
        publicDataB64,
        params.key,
        snapshot.nonce
      );
      return { error: null, content, snapshot };
    } catch {
      return { error: new SecsyncError('SECSYNC_ERROR_101') };
    }
  } catch (err) {
    return { error: new SecsyncError('SECSYNC_ERROR_100', String(err)) };
  }
}
