/**
 * Primitives of the Secsync envelope: hash, ids, AEAD with the 32-byte robustness
 * (commitment) tag, and domain-separated Ed25519 signatures. See shared/protocol.md.
 */
import { b64decode, b64encode } from './base64';
import { canonicalize } from './canonical';
import { ProtocolError } from './errors';
import { bytesEqual, concatBytes, sodium, utf8Encode } from './sodium';

export const ID_LENGTH = 24;
export const KEY_LENGTH = 32;
export const NONCE_LENGTH = 24;
export const ROBUSTNESS_TAG_LENGTH = 32;

export type SignatureDomain =
  | 'secsync_snapshot'
  | 'secsync_update'
  | 'secsync_ephemeral_message'
  | 'secsync_ephemeral_session_proof';

export interface SignatureKeyPair {
  publicKey: Uint8Array; // 32 bytes
  privateKey: Uint8Array; // 64 bytes (libsodium ed25519 secret key)
}

function toBytes(x: string | Uint8Array): Uint8Array {
  return typeof x === 'string' ? utf8Encode(x) : x;
}

/** hash(x) = b64(BLAKE2b-256(x)); strings are hashed as UTF-8. */
export function hash(x: string | Uint8Array): string {
  return b64encode(sodium().crypto_generichash(32, toBytes(x)));
}

/** b64 of 24 random bytes (document, snapshot and ephemeral session ids). */
export function generateId(): string {
  return b64encode(sodium().randombytes_buf(ID_LENGTH));
}

export function generateKey(): Uint8Array {
  return sodium().randombytes_buf(KEY_LENGTH);
}

export function createSignatureKeyPair(seed?: Uint8Array): SignatureKeyPair {
  const kp = seed ? sodium().crypto_sign_seed_keypair(seed) : sodium().crypto_sign_keypair();
  return { publicKey: kp.publicKey, privateKey: kp.privateKey };
}

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
    throw new ProtocolError('key must be 32 bytes');
  }
}

/**
 * Encrypts `plaintext` with XChaCha20-Poly1305-IETF and prepends the robustness tag
 * `crypto_auth(nonceB64 + b64(c) + ad)`. `nonce` may be given for deterministic tests only.
 */
export function encryptAead(
  plaintext: Uint8Array,
  additionalData: string,
  key: Uint8Array,
  nonce?: Uint8Array
): { ciphertext: string; publicNonce: string } {
  checkKey(key);
  const s = sodium();
  const nonceBytes = nonce ?? s.randombytes_buf(NONCE_LENGTH);
  if (nonceBytes.length !== NONCE_LENGTH) {
    throw new ProtocolError('nonce must be 24 bytes');
  }
  const publicNonce = b64encode(nonceBytes);
  const c = s.crypto_aead_xchacha20poly1305_ietf_encrypt(
    plaintext,
    utf8Encode(additionalData),
    null,
    nonceBytes,
    key
  );
  const tag = s.crypto_auth(utf8Encode(publicNonce + b64encode(c) + additionalData), key);
  return { ciphertext: b64encode(concatBytes(tag, c)), publicNonce };
}

/**
 * Checks the robustness tag (constant time) and then AEAD-decrypts. Throws on any failure
 * (callers map it to their 101/201/301 code).
 */
export function decryptAead(
  ciphertext: Uint8Array,
  additionalData: string,
  key: Uint8Array,
  publicNonce: string
): Uint8Array {
  checkKey(key);
  const s = sodium();
  if (ciphertext.length < ROBUSTNESS_TAG_LENGTH + s.crypto_aead_xchacha20poly1305_ietf_ABYTES) {
    throw new ProtocolError('ciphertext too short');
  }
  const nonceBytes = b64decode(publicNonce);
  if (nonceBytes.length !== NONCE_LENGTH) {
    throw new ProtocolError('nonce must be 24 bytes');
  }
  const tag = ciphertext.subarray(0, ROBUSTNESS_TAG_LENGTH);
  const rest = ciphertext.subarray(ROBUSTNESS_TAG_LENGTH);
  const expected = s.crypto_auth(utf8Encode(publicNonce + b64encode(rest) + additionalData), key);
  if (!bytesEqual(tag, expected)) {
    throw new ProtocolError('invalid robustness tag');
  }
  return s.crypto_aead_xchacha20poly1305_ietf_decrypt(
    null,
    rest,
    utf8Encode(additionalData),
    nonceBytes,
    key
  );
}

/** The exact string that is signed: domain + canon(content). */
export function signedString(domain: SignatureDomain, content: Record<string, string>): string {
  return domain + canonicalize(content);
}

export function signRaw(
  domain: SignatureDomain,
  content: Record<string, string>,
  privateKey: Uint8Array
): Uint8Array {
  return sodium().crypto_sign_detached(utf8Encode(signedString(domain, content)), privateKey);
}

/** sign(domain, nonce, ciphertext, publicDataB64, secretKey) -> b64 detached signature. */
export function sign(
  domain: SignatureDomain,
  content: { nonce: string; ciphertext: string; publicData: string },
  privateKey: Uint8Array
): string {
  return b64encode(signRaw(domain, content, privateKey));
}

/** Never throws: undecodable signatures / keys verify as false. */
export function verifySignatureRaw(
  domain: SignatureDomain,
  content: Record<string, string>,
  signature: Uint8Array,
  publicKey: Uint8Array
): boolean {
  try {
    if (signature.length !== 64 || publicKey.length !== 32) {
      return false;
    }
    return sodium().crypto_sign_verify_detached(
      signature,
      utf8Encode(signedString(domain, content)),
      publicKey
    );
  } catch {
    return false;
  }
}

export function verifySignature(
  domain: SignatureDomain,
  content: { nonce: string; ciphertext: string; publicData: string },
  signature: string,
  publicKey: Uint8Array
): boolean {
  try {
    return verifySignatureRaw(domain, content, b64decode(signature), publicKey);
  } catch {
    return false;
  }
}

/**
 * Short human-comparable fingerprint of a b64 public key: BLAKE2b-64, hex in groups of 4
 * (same string as the Python client's `fingerprint`). "????" for an undecodable key.
 */
export function fingerprint(pubKeyB64: string): string {
  let digest: Uint8Array;
  try {
    digest = sodium().crypto_generichash(8, b64decode(pubKeyB64));
  } catch {
    return '????';
  }
  let hex = '';
  for (const b of digest) {
    hex += b.toString(16).padStart(2, '0');
  }
  return [0, 4, 8, 12].map((i) => hex.slice(i, i + 4)).join(' ');
}
