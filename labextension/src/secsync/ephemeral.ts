/**
 * Ephemeral messages (presence / awareness), never stored by the relay.
 *
 * Plaintext: [type:1][sessionId:24][counter:u32 LE][content]. Sessions are verified with
 * a signed proof over both session ids; `message` content is accepted only from a verified
 * session with a counter above the last one seen.
 *
 * Stricter than the reference: the last counter seen for every (pubKey, sessionId) never goes
 * down. The reference lets a replayed proof reset the counter (and thus re-open the window
 * for replaying later messages); here a proof, initialize or message whose counter is not
 * above the last one seen for its session is rejected with SECSYNC_ERROR_303.
 */
import { b64decode, b64encode } from './base64';
import { canonicalizeAndToBase64 } from './canonical';
import {
  decryptAead,
  encryptAead,
  generateId,
  ID_LENGTH,
  sign,
  SignatureKeyPair,
  signRaw,
  verifySignature,
  verifySignatureRaw
} from './crypto';
import { ProtocolError, SecsyncError } from './errors';
import { parseEphemeralMessage, parseThen } from './parse';
import { concatBytes, sodium } from './sodium';
import type { EphemeralMessage, EphemeralMessagePublicData } from './types';

export const messageTypes = {
  initialize: 1,
  proofAndRequestProof: 2,
  proof: 3,
  message: 4
} as const;

export type EphemeralMessageType = keyof typeof messageTypes;

const TYPE_NAMES: Record<number, EphemeralMessageType> = {
  1: 'initialize',
  2: 'proofAndRequestProof',
  3: 'proof',
  4: 'message'
};

export interface ValidSession {
  sessionId: string;
  sessionCounter: number;
}

/** How many (pubKey, sessionId) counters a session remembers (oldest forgotten first). */
export const MAX_SEEN_SESSIONS = 4096;

function rememberCounter(session: EphemeralSession, seenKey: string, counter: number): void {
  session.seenCounters.delete(seenKey);
  session.seenCounters.set(seenKey, counter);
  while (session.seenCounters.size > MAX_SEEN_SESSIONS) {
    const oldest = session.seenCounters.keys().next().value as string;
    session.seenCounters.delete(oldest);
  }
}

export interface EphemeralSession {
  /** own session id (b64 of 24 random bytes) */
  id: string;
  /** counter for the next own message */
  counter: number;
  /** verified remote sessions by pubKey (same shape as the reference) */
  validSessions: Record<string, ValidSession>;
  /** highest counter seen per `${pubKey}|${sessionId}`; never decreases */
  seenCounters: Map<string, number>;
}

/** New session: random id and a random start counter below 2^31. */
export function createEphemeralSession(): EphemeralSession {
  return {
    id: generateId(),
    counter: sodium().randombytes_uniform(2147483647),
    validSessions: {},
    seenCounters: new Map()
  };
}

function u32le(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    throw new ProtocolError('session counter must be a uint32');
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, true);
  return out;
}

/** Raw 64-byte proof signed by the author over both session ids. */
export function createEphemeralSessionProof(
  remoteClientSessionId: string,
  currentClientSessionId: string,
  signatureKeyPair: SignatureKeyPair
): Uint8Array {
  return signRaw(
    'secsync_ephemeral_session_proof',
    { currentClientSessionId, remoteClientSessionId },
    signatureKeyPair.privateKey
  );
}

export function verifyEphemeralSessionProof(
  proof: Uint8Array,
  remoteClientSessionId: string,
  currentClientSessionId: string,
  authorPublicKey: Uint8Array
): boolean {
  return verifySignatureRaw(
    'secsync_ephemeral_session_proof',
    { currentClientSessionId, remoteClientSessionId },
    proof,
    authorPublicKey
  );
}

export function createEphemeralMessage(
  content: Uint8Array,
  type: EphemeralMessageType,
  publicData: EphemeralMessagePublicData,
  key: Uint8Array,
  signatureKeyPair: SignatureKeyPair,
  authorSessionId: string,
  authorSessionCounter: number,
  nonce?: Uint8Array
): EphemeralMessage {
  if (!(content instanceof Uint8Array)) {
    throw new ProtocolError('ephemeral content must be bytes');
  }
  const sessionIdBytes = b64decode(authorSessionId);
  if (sessionIdBytes.length !== ID_LENGTH) {
    throw new ProtocolError('session id must be 24 bytes');
  }
  const plaintext = concatBytes(
    new Uint8Array([messageTypes[type]]),
    sessionIdBytes,
    u32le(authorSessionCounter),
    content
  );
  const publicDataB64 = canonicalizeAndToBase64(publicData);
  const { ciphertext, publicNonce } = encryptAead(plaintext, publicDataB64, key, nonce);
  const signature = sign(
    'secsync_ephemeral_message',
    { nonce: publicNonce, ciphertext, publicData: publicDataB64 },
    signatureKeyPair.privateKey
  );
  return { nonce: publicNonce, ciphertext, publicData, signature };
}

export interface VerifyEphemeralParams {
  key: Uint8Array;
  currentDocId: string;
  /** own session; its validSessions / seenCounters are updated in place on success */
  session: EphemeralSession;
  /** own key pair, to create the proof that answers an initialize / proofAndRequestProof */
  signatureKeyPair: SignatureKeyPair;
  /** docId mismatch gives SECSYNC_ERROR_306 instead of being dropped silently */
  strictDocId?: boolean;
}

export interface EphemeralVerifyOutcome {
  error: SecsyncError | null;
  /** message type of a decrypted message */
  type?: EphemeralMessageType;
  /** author pubKey (b64) once the signature is verified */
  pubKey?: string;
  /** content of an accepted `message` */
  content?: Uint8Array;
  /** proof to send back: as `proofAndRequestProof` when requestProof, else as `proof` */
  proof?: Uint8Array;
  requestProof?: boolean;
  /** true when this message verified a (new or renewed) remote session */
  sessionVerified?: boolean;
  /** true when the message was for another document and dropped (reference behaviour) */
  dropped?: boolean;
}

/** Verifies, decrypts and runs the session state machine for one message. Never throws. */
export function verifyAndDecryptEphemeralMessage(
  raw: unknown,
  params: VerifyEphemeralParams
): EphemeralVerifyOutcome {
  return parseThen(raw, parseEphemeralMessage, 'SECSYNC_ERROR_307', (message) =>
    verifyAndDecryptParsedEphemeralMessage(message, params)
  );
}

/** {@link verifyAndDecryptEphemeralMessage} for a message already parsed with `parseEphemeralMessage`. */
export function verifyAndDecryptParsedEphemeralMessage(
  message: EphemeralMessage,
  params: VerifyEphemeralParams
): EphemeralVerifyOutcome {
  try {
    let publicDataB64: string;
    let publicKey: Uint8Array;
    try {
      publicDataB64 = canonicalizeAndToBase64(message.publicData);
      publicKey = b64decode(message.publicData.pubKey);
      const valid = verifySignature(
        'secsync_ephemeral_message',
        { nonce: message.nonce, ciphertext: message.ciphertext, publicData: publicDataB64 },
        message.signature,
        publicKey
      );
      if (!valid) {
        return { error: new SecsyncError('SECSYNC_ERROR_308') };
      }
    } catch {
      return { error: new SecsyncError('SECSYNC_ERROR_308') };
    }
    let plaintext: Uint8Array;
    try {
      plaintext = decryptAead(b64decode(message.ciphertext), publicDataB64, params.key, message.nonce);
    } catch {
      return { error: new SecsyncError('SECSYNC_ERROR_301') };
    }
    const pubKey = b64encode(publicKey);
    if (plaintext.length < 1 + ID_LENGTH + 4) {
      return { error: new SecsyncError('SECSYNC_ERROR_307', 'truncated plaintext'), pubKey };
    }
    const typeByte = plaintext[0];
    const sessionId = b64encode(plaintext.subarray(1, 1 + ID_LENGTH));
    const counter = new DataView(
      plaintext.buffer,
      plaintext.byteOffset + 1 + ID_LENGTH,
      4
    ).getUint32(0, true);
    const value = plaintext.slice(1 + ID_LENGTH + 4);

    if (message.publicData.docId !== params.currentDocId) {
      if (params.strictDocId) {
        return { error: new SecsyncError('SECSYNC_ERROR_306'), pubKey };
      }
      return { error: null, dropped: true, pubKey };
    }

    const type = TYPE_NAMES[typeByte];
    if (type === undefined) {
      return { error: new SecsyncError('SECSYNC_ERROR_305'), pubKey };
    }

    const session = params.session;
    const seenKey = `${pubKey}|${sessionId}`;
    const seen = session.seenCounters.get(seenKey);
    if (seen !== undefined && counter <= seen) {
      return { error: new SecsyncError('SECSYNC_ERROR_303'), type, pubKey };
    }

    const answerProof = () =>
      createEphemeralSessionProof(sessionId, session.id, params.signatureKeyPair);

    if (type === 'initialize') {
      return { error: null, type, pubKey, proof: answerProof(), requestProof: true };
    }

    if (type === 'proof' || type === 'proofAndRequestProof') {
      const ok = verifyEphemeralSessionProof(value, session.id, sessionId, publicKey);
      if (!ok) {
        // like the reference: an invalid proof is ignored without an error code
        return { error: null, type, pubKey };
      }
      session.validSessions[pubKey] = { sessionId, sessionCounter: counter };
      rememberCounter(session, seenKey, counter);
      return {
        error: null,
        type,
        pubKey,
        sessionVerified: true,
        proof: type === 'proofAndRequestProof' ? answerProof() : undefined,
        requestProof: false
      };
    }

    // type === 'message'
    const valid = Object.prototype.hasOwnProperty.call(session.validSessions, pubKey)
      ? session.validSessions[pubKey]
      : undefined;
    if (!valid || valid.sessionId !== sessionId) {
      // unknown session: treat as initialize, answer with a proof and ask for one
      return {
        error: new SecsyncError('SECSYNC_ERROR_302'),
        type,
        pubKey,
        proof: answerProof(),
        requestProof: true
      };
    }
    if (valid.sessionCounter >= counter) {
      return { error: new SecsyncError('SECSYNC_ERROR_303'), type, pubKey };
    }
    session.validSessions[pubKey] = { sessionId, sessionCounter: counter };
    rememberCounter(session, seenKey, counter);
    return { error: null, type, pubKey, content: value };
  } catch (err) {
    return { error: new SecsyncError('SECSYNC_ERROR_307', String(err)) };
  }
}
