/**
 * Content format shared with the Python client (Yjs v1 only):
 *  - snapshot plaintext = Y.encodeStateAsUpdate(doc)
 *  - update plaintext   = UTF-8 JSON array of b64url v1 update strings
 *  - ephemeral content  = y-protocols awareness update bytes
 */
import { b64decode, b64encode } from './base64';
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
