/**
 * Error codes of the Secsync protocol (reference numbering, see shared/protocol.md).
 *
 * Every failure of a verify function or of strict frame parsing is reported as a
 * `SecsyncError` carrying one of these codes; nothing else is ever thrown for bad input.
 */
import { MEMBERSHIP_ERROR_DESCRIPTIONS, MembershipErrorCode } from './membershipCodes';

export type SecsyncErrorCode =
  | 'SECSYNC_ERROR_100'
  | 'SECSYNC_ERROR_101'
  | 'SECSYNC_ERROR_102'
  | 'SECSYNC_ERROR_103'
  | 'SECSYNC_ERROR_104'
  | 'SECSYNC_ERROR_105'
  | 'SECSYNC_ERROR_110'
  | 'SECSYNC_ERROR_111'
  | 'SECSYNC_ERROR_112'
  | 'SECSYNC_ERROR_113'
  | 'SECSYNC_ERROR_114'
  | 'SECSYNC_ERROR_115'
  | 'SECSYNC_ERROR_200'
  | 'SECSYNC_ERROR_201'
  | 'SECSYNC_ERROR_202'
  | 'SECSYNC_ERROR_203'
  | 'SECSYNC_ERROR_204'
  | 'SECSYNC_ERROR_205'
  | 'SECSYNC_ERROR_206'
  | 'SECSYNC_ERROR_211'
  | 'SECSYNC_ERROR_212'
  | 'SECSYNC_ERROR_213'
  | 'SECSYNC_ERROR_214'
  | 'SECSYNC_ERROR_215'
  | 'SECSYNC_ERROR_300'
  | 'SECSYNC_ERROR_301'
  | 'SECSYNC_ERROR_302'
  | 'SECSYNC_ERROR_303'
  | 'SECSYNC_ERROR_304'
  | 'SECSYNC_ERROR_305'
  | 'SECSYNC_ERROR_306'
  | 'SECSYNC_ERROR_307'
  | 'SECSYNC_ERROR_308'
  | 'SECSYNC_ERROR_401'
  | 'SECSYNC_ERROR_501'
  | 'SECSYNC_ERROR_601'
  | 'SECSYNC_ERROR_801'
  | 'SECSYNC_ERROR_802'
  | 'SECSYNC_ERROR_803'
  | 'SECSYNC_ERROR_804'
  | 'SECSYNC_ERROR_805'
  | 'SECSYNC_ERROR_806'
  | 'SECSYNC_ERROR_807'
  | MembershipErrorCode // 700-749: membership log (membershipCodes.ts)
  // not part of the reference numbering: a malformed frame from the relay / bad local input
  | 'SECSYNC_ERROR_PROTOCOL';

export const ERROR_DESCRIPTIONS: Record<SecsyncErrorCode, string> = {
  SECSYNC_ERROR_100: 'snapshot: unexpected error',
  SECSYNC_ERROR_101: 'snapshot: decryption failed',
  SECSYNC_ERROR_102: "snapshot: own last update missing from the snapshot's clocks",
  SECSYNC_ERROR_103: 'snapshot: key lookup failed',
  SECSYNC_ERROR_104: 'snapshot: author check failed',
  SECSYNC_ERROR_105: 'snapshot: applying the snapshot failed',
  SECSYNC_ERROR_110: 'snapshot: parse error',
  SECSYNC_ERROR_111: 'snapshot: invalid signature',
  SECSYNC_ERROR_112: 'snapshot: invalid parent snapshot proof',
  SECSYNC_ERROR_113: 'snapshot: docId mismatch',
  SECSYNC_ERROR_114: 'snapshot: client not allowed',
  SECSYNC_ERROR_115: 'snapshot: invalid ancestor chain',
  SECSYNC_ERROR_200: 'update: unexpected error',
  SECSYNC_ERROR_201: 'update: decryption failed',
  SECSYNC_ERROR_202: 'update: clock gap',
  SECSYNC_ERROR_203: 'update: applying the changes failed',
  SECSYNC_ERROR_204: 'update: decoding the changes failed',
  SECSYNC_ERROR_205: 'update: author check failed',
  SECSYNC_ERROR_206: 'update: key lookup failed',
  SECSYNC_ERROR_211: 'update: parse error',
  SECSYNC_ERROR_212: 'update: invalid signature',
  SECSYNC_ERROR_213: 'update: wrong snapshot or document',
  SECSYNC_ERROR_214: 'update: clock replay',
  SECSYNC_ERROR_215: 'update: client not allowed',
  SECSYNC_ERROR_300: 'ephemeral: unexpected error',
  SECSYNC_ERROR_301: 'ephemeral: decryption failed',
  SECSYNC_ERROR_302: 'ephemeral: no verified session',
  SECSYNC_ERROR_303: 'ephemeral: replayed counter',
  SECSYNC_ERROR_304: 'ephemeral: client not allowed',
  SECSYNC_ERROR_305: 'ephemeral: unknown message type',
  SECSYNC_ERROR_306: 'ephemeral: docId mismatch',
  SECSYNC_ERROR_307: 'ephemeral: malformed message',
  SECSYNC_ERROR_308: 'ephemeral: invalid signature',
  SECSYNC_ERROR_401: 'creating a snapshot failed',
  SECSYNC_ERROR_501: 'creating an update failed',
  SECSYNC_ERROR_601: 'creating an ephemeral message failed',
  ...MEMBERSHIP_ERROR_DESCRIPTIONS,
  // 800-809: causal heads (the client engines, issue 13)
  SECSYNC_ERROR_801: "an update's heads name updates the relay has not delivered",
  SECSYNC_ERROR_802: "a snapshot's parent clocks name updates the relay has not delivered",
  SECSYNC_ERROR_803: 'the document was served incompletely: missing updates did not come',
  SECSYNC_ERROR_804: 'rollback: the relay served an older state than this client verified before',
  SECSYNC_ERROR_805: "fork: a collaborator is on a history that is not this client's",
  SECSYNC_ERROR_806: 'withheld: a collaborator has seen updates the relay has not delivered',
  SECSYNC_ERROR_807: "this client's remembered state of the document is damaged: checked from scratch",
  SECSYNC_ERROR_PROTOCOL: 'protocol error'
};

export class SecsyncError extends Error {
  readonly code: SecsyncErrorCode;
  constructor(code: SecsyncErrorCode, detail?: string) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = 'SecsyncError';
    this.code = code;
  }
}

/** Raised for input outside the protocol's domain (bad shapes, bad encodings, floats in JSON...). */
export class ProtocolError extends SecsyncError {
  constructor(detail: string) {
    super('SECSYNC_ERROR_PROTOCOL', detail);
    this.name = 'ProtocolError';
  }
}

export function isSecsyncError(err: unknown): err is SecsyncError {
  return err instanceof SecsyncError;
}
