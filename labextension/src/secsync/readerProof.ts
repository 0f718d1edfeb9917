/**
 * Reader proofs (authenticated readers): the relay's challenge, the client's proof, the
 * relay's check (docs/protocol.md, "Frames"). Split out of membership.ts, which re-exports
 * everything here; the Python twin is the reader-proof part of membership.py.
 */
import { b64decode, b64encode } from './base64';
import { canonicalizeStrict } from './canonical';
import { SignatureKeyPair } from './crypto';
import { linkLive } from './epochs';
import { b64Field, err, isPlainObject, MembershipError } from './membershipError';
import type { MembershipState } from './membershipState';
import { sodium, utf8Encode } from './sodium';

export const DOMAIN_READER_PROOF = 'secsync_jupyter_reader_proof';
const CHALLENGE_NONCE_BYTES = 32;

/** A fresh challenge nonce for one connection: b64 of 32 random bytes. */
export function newReaderChallenge(): string {
  return b64encode(sodium().randombytes_buf(CHALLENGE_NONCE_BYTES));
}

/** `"secsync_jupyter_reader_proof" + canon({docId, nonce, pubKey})`. */
export function readerProofBytes(docId: string, nonce: string, pubKey: string): Uint8Array {
  return utf8Encode(DOMAIN_READER_PROOF + canonicalizeStrict({ docId, nonce, pubKey }));
}

export interface ReaderProof {
  type: 'reader-proof';
  pubKey: string;
  signature: string;
}

/** The client's answer to a `reader-challenge` frame. */
export function createReaderProof(
  keyPair: SignatureKeyPair,
  docId: string,
  nonce: string
): ReaderProof {
  const pubKey = b64encode(keyPair.publicKey);
  const signature = sodium().crypto_sign_detached(
    readerProofBytes(docId, nonce, pubKey),
    keyPair.privateKey
  );
  return { type: 'reader-proof', pubKey, signature: b64encode(signature) };
}

/**
 * Check a `reader-proof` frame against the challenge this relay sent and return the proven
 * public key: 720 malformed, 721 bad signature, 722 not a member of `state` (when given). A
 * link identity (issue 12) is a reader while live: 755 once removed, 754 after its expiry at
 * `now` (ms; default: the current time). Whether the key is a link's: `state.links`.
 */
export function verifyReaderProof(
  proof: unknown,
  docId: string,
  nonce: string,
  state: MembershipState | null = null,
  options: { now?: number } = {}
): string {
  if (!isPlainObject(proof)) {
    throw err(720, 'proof', 'expected a JSON object');
  }
  let pubKey: string;
  let signature: string;
  try {
    pubKey = b64Field(proof.pubKey, 'pubKey', 32);
    signature = b64Field(proof.signature, 'signature', 64);
  } catch (e) {
    const m = e as MembershipError;
    throw err(720, m.field, m.detail);
  }
  let ok = false;
  try {
    ok = sodium().crypto_sign_verify_detached(
      b64decode(signature),
      readerProofBytes(docId, nonce, pubKey),
      b64decode(pubKey)
    );
  } catch {
    ok = false;
  }
  if (!ok) {
    throw err(721, 'signature');
  }
  if (state !== null && !state.isMember(pubKey)) {
    const link = state.links.get(pubKey);
    if (!link) {
      throw err(722, 'pubKey');
    }
    if (link.removed !== undefined) {
      throw err(755, 'pubKey', 'the link was removed');
    }
    if (!linkLive(link, options.now ?? Date.now())) {
      throw err(754, 'pubKey', 'the link expired');
    }
  }
  return pubKey;
}
