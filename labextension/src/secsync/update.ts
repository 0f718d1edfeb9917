/** Updates: creation and verification (stricter than the reference: docId is checked). */
import { b64decode } from './base64';
import { canonicalizeAndToBase64 } from './canonical';
import { decryptAead, encryptAead, sign, SignatureKeyPair, verifySignature } from './crypto';
import { ProtocolError, SecsyncError } from './errors';
import { parseThen, parseUpdate } from './parse';
import type { VerifyResult } from './snapshot';
import { utf8Encode } from './sodium';
import type { Update, UpdatePublicData, UpdatePublicDataInput } from './types';

export function createUpdate(
  content: Uint8Array | string,
  publicDataInput: UpdatePublicDataInput,
  key: Uint8Array,
  signatureKeyPair: SignatureKeyPair,
  clock: number,
  nonce?: Uint8Array
): Update {
  if (!Number.isSafeInteger(clock) || clock < 0) {
    throw new ProtocolError('clock must be a non-negative integer');
  }
  const publicData: UpdatePublicData = { ...publicDataInput, clock };
  const publicDataB64 = canonicalizeAndToBase64(publicData);
  const { ciphertext, publicNonce } = encryptAead(
    typeof content === 'string' ? utf8Encode(content) : content,
    publicDataB64,
    key,
    nonce
  );
  const signature = sign(
    'secsync_update',
    { nonce: publicNonce, ciphertext, publicData: publicDataB64 },
    signatureKeyPair.privateKey
  );
  return { nonce: publicNonce, ciphertext, publicData, signature };
}

export interface VerifyUpdateParams {
  key: Uint8Array;
  /** the document this update must belong to (the reference does not check this) */
  currentDocId: string;
  currentActiveSnapshotId: string;
  /** last clock applied for the update's pubKey on the active snapshot, -1 if none */
  currentClock: number;
}

/**
 * Verifies and decrypts an update. Order: shape (211), signature (212), docId and
 * refSnapshotId (213), replay (214), gap (202), decryption (201). Never throws.
 */
export function verifyAndDecryptUpdate(
  rawUpdate: unknown,
  params: VerifyUpdateParams
): VerifyResult<{ content: Uint8Array; clock: number; update: Update }> {
  return parseThen(rawUpdate, parseUpdate, 'SECSYNC_ERROR_211', (update) =>
    verifyAndDecryptParsedUpdate(update, params)
  );
}

/** {@link verifyAndDecryptUpdate} for an update already parsed with `parseUpdate` (no second parse). */
export function verifyAndDecryptParsedUpdate(
  update: Update,
  params: VerifyUpdateParams
): VerifyResult<{ content: Uint8Array; clock: number; update: Update }> {
  try {
    let publicDataB64: string;
    try {
      publicDataB64 = canonicalizeAndToBase64(update.publicData);
      const publicKey = b64decode(update.publicData.pubKey);
      const valid = verifySignature(
        'secsync_update',
        { nonce: update.nonce, ciphertext: update.ciphertext, publicData: publicDataB64 },
        update.signature,
        publicKey
      );
      if (!valid) {
        return { error: new SecsyncError('SECSYNC_ERROR_212') };
      }
    } catch {
      return { error: new SecsyncError('SECSYNC_ERROR_212') };
    }
    if (update.publicData.docId !== params.currentDocId) {
      return { error: new SecsyncError('SECSYNC_ERROR_213', 'docId mismatch') };
    }
    if (update.publicData.refSnapshotId !== params.currentActiveSnapshotId) {
      return { error: new SecsyncError('SECSYNC_ERROR_213') };
    }
    const clock = update.publicData.clock;
    if (clock <= params.currentClock) {
      return { error: new SecsyncError('SECSYNC_ERROR_214') };
    }
    if (clock !== params.currentClock + 1) {
      return { error: new SecsyncError('SECSYNC_ERROR_202') };
    }
    try {
      const content = decryptAead(b64decode(update.ciphertext), publicDataB64, params.key, update.nonce);
      return { error: null, content, clock, update };
    } catch {
      return { error: new SecsyncError('SECSYNC_ERROR_201') };
    }
  } catch (err) {
    return { error: new SecsyncError('SECSYNC_ERROR_200', String(err)) };
  }
}
