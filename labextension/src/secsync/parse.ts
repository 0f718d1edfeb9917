/**
 * Strict structural parsing of everything that arrives from the network. Parsers throw only
 * `ProtocolError`; callers translate to the reference error code of their context
 * (snapshot 110, update 211, ephemeral 307).
 *
 * Unknown top-level fields are ignored (e.g. `additionalServerData`, the frame `type`);
 * unknown `publicData` fields are kept verbatim since they are authenticated.
 */
import { assertCanonicalDomain } from './canonical';
import { ProtocolError, SecsyncError, SecsyncErrorCode } from './errors';
import type {
  EphemeralMessage,
  Snapshot,
  SnapshotProofChainEntry,
  Update,
  UpdateClocks
} from './types';

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) {
    return false;
  }
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function str(obj: Record<string, unknown>, field: string, where: string): string {
  const v = obj[field];
  if (typeof v !== 'string') {
    throw new ProtocolError(`${where}.${field} must be a string`);
  }
  return v;
}

function clockValue(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ProtocolError(`${where} must be a non-negative integer`);
  }
  return v;
}

export function parseUpdateClocks(x: unknown, where = 'clocks'): UpdateClocks {
  if (!isPlainObject(x)) {
    throw new ProtocolError(`${where} must be an object`);
  }
  const out: UpdateClocks = {};
  for (const key of Object.keys(x)) {
    out[key] = clockValue(x[key], `${where}[${key}]`);
  }
  return out;
}

function envelope(x: unknown, where: string) {
  if (!isPlainObject(x)) {
    throw new ProtocolError(`${where} must be an object`);
  }
  const nonce = str(x, 'nonce', where);
  const ciphertext = str(x, 'ciphertext', where);
  const signature = str(x, 'signature', where);
  const publicData = x.publicData;
  if (!isPlainObject(publicData)) {
    throw new ProtocolError(`${where}.publicData must be an object`);
  }
  // extra application fields must be in the canonical JSON domain (no floats, ...)
  assertCanonicalDomain(publicData);
  return { nonce, ciphertext, signature, publicData };
}

export function parseSnapshot(x: unknown): Snapshot {
  const { nonce, ciphertext, signature, publicData } = envelope(x, 'snapshot');
  const where = 'snapshot.publicData';
  str(publicData, 'docId', where);
  str(publicData, 'pubKey', where);
  str(publicData, 'snapshotId', where);
  str(publicData, 'parentSnapshotId', where);
  str(publicData, 'parentSnapshotProof', where);
  parseUpdateClocks(publicData.parentSnapshotUpdateClocks, `${where}.parentSnapshotUpdateClocks`);
  return { nonce, ciphertext, signature, publicData: publicData as Snapshot['publicData'] };
}

export function parseUpdate(x: unknown): Update {
  const { nonce, ciphertext, signature, publicData } = envelope(x, 'update');
  const where = 'update.publicData';
  str(publicData, 'docId', where);
  str(publicData, 'pubKey', where);
  str(publicData, 'refSnapshotId', where);
  clockValue(publicData.clock, `${where}.clock`);
  return { nonce, ciphertext, signature, publicData: publicData as Update['publicData'] };
}

export function parseEphemeralMessage(x: unknown): EphemeralMessage {
  const { nonce, ciphertext, signature, publicData } = envelope(x, 'ephemeralMessage');
  const where = 'ephemeralMessage.publicData';
  str(publicData, 'docId', where);
  str(publicData, 'pubKey', where);
  return {
    nonce,
    ciphertext,
    signature,
    publicData: publicData as EphemeralMessage['publicData']
  };
}

/**
 * `verify(parse(raw))`, or `{error}` with the family's parse code (110 / 211 / 307) when
 * `raw` does not parse: the verify functions for raw input; the engine parses once itself.
 */
export function parseThen<M, R>(
  raw: unknown,
  parse: (x: unknown) => M,
  code: SecsyncErrorCode,
  verify: (message: M) => R
): R | { error: SecsyncError } {
  let message: M;
  try {
    message = parse(raw);
  } catch (err) {
    return { error: new SecsyncError(code, String(err)) };
  }
  return verify(message);
}

export function parseSnapshotProofChainEntry(x: unknown): SnapshotProofChainEntry {
  if (!isPlainObject(x)) {
    throw new ProtocolError('snapshotProofChain entry must be an object');
  }
  return {
    snapshotId: str(x, 'snapshotId', 'snapshotProofChain[]'),
    snapshotCiphertextHash: str(x, 'snapshotCiphertextHash', 'snapshotProofChain[]'),
    parentSnapshotProof: str(x, 'parentSnapshotProof', 'snapshotProofChain[]')
  };
}

export function parseSnapshotProofChain(x: unknown): SnapshotProofChainEntry[] {
  if (x === undefined || x === null) {
    return [];
  }
  if (!Array.isArray(x)) {
    throw new ProtocolError('snapshotProofChain must be an array');
  }
  return x.map(parseSnapshotProofChainEntry);
}

// ---------------------------------------------------------------------------------------
// server -> client frames
// ---------------------------------------------------------------------------------------

/**
 * A server frame after envelope validation. Embedded snapshots/updates are kept as
 * `unknown` so that the sync engine can report their own error codes (110/211/307).
 */
export type ServerFrame =
  | {
      type: 'document';
      snapshot?: unknown;
      updates: unknown[];
      snapshotProofChain: SnapshotProofChainEntry[];
    }
  | { type: 'snapshot'; snapshot: unknown }
  | { type: 'snapshot-saved'; snapshotId: string }
  | {
      type: 'snapshot-save-failed';
      snapshot?: unknown;
      updates: unknown[];
      snapshotProofChain: SnapshotProofChainEntry[];
    }
  | { type: 'update'; update: unknown }
  | { type: 'update-saved'; snapshotId: string; clock: number }
  | { type: 'update-save-failed'; snapshotId: string; clock: number; requiresNewSnapshot: boolean }
  | { type: 'ephemeral-message'; message: unknown }
  | { type: 'unauthorized' }
  | { type: 'document-not-found' }
  | { type: 'document-error' }
  | { type: 'unknown'; rawType: string };

function optionalArray(x: unknown, where: string): unknown[] {
  if (x === undefined || x === null) {
    return [];
  }
  if (!Array.isArray(x)) {
    throw new ProtocolError(`${where} must be an array`);
  }
  return x;
}

/** Parses one websocket text frame from the relay. Throws `ProtocolError` only. */
export function parseServerFrame(text: unknown): ServerFrame {
  if (typeof text !== 'string') {
    throw new ProtocolError('frame is not text');
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ProtocolError('frame is not JSON');
  }
  if (!isPlainObject(data)) {
    throw new ProtocolError('frame is not a JSON object');
  }
  const type = data.type;
  if (typeof type !== 'string') {
    throw new ProtocolError('frame has no type');
  }
  switch (type) {
    case 'document':
    case 'snapshot-save-failed': {
      const snapshot = data.snapshot === null ? undefined : data.snapshot;
      if (snapshot !== undefined && !isPlainObject(snapshot)) {
        throw new ProtocolError(`${type}.snapshot must be an object`);
      }
      return {
        type,
        snapshot,
        updates: optionalArray(data.updates, `${type}.updates`),
        snapshotProofChain: parseSnapshotProofChain(data.snapshotProofChain)
      };
    }
    case 'snapshot':
      if (!isPlainObject(data.snapshot)) {
        throw new ProtocolError('snapshot.snapshot must be an object');
      }
      return { type, snapshot: data.snapshot };
    case 'snapshot-saved':
      return { type, snapshotId: str(data, 'snapshotId', type) };
    case 'update-saved':
      return {
        type,
        snapshotId: str(data, 'snapshotId', type),
        clock: clockValue(data.clock, `${type}.clock`)
      };
    case 'update-save-failed': {
      const requiresNewSnapshot = data.requiresNewSnapshot;
      if (requiresNewSnapshot !== undefined && typeof requiresNewSnapshot !== 'boolean') {
        throw new ProtocolError(`${type}.requiresNewSnapshot must be a boolean`);
      }
      return {
        type,
        snapshotId: str(data, 'snapshotId', type),
        clock: clockValue(data.clock, `${type}.clock`),
        requiresNewSnapshot: requiresNewSnapshot === true
      };
    }
    case 'update':
      return { type, update: data };
    case 'ephemeral-message':
      return { type, message: data };
    case 'unauthorized':
    case 'document-not-found':
    case 'document-error':
      return { type };
    default:
      return { type: 'unknown', rawType: type };
  }
}
