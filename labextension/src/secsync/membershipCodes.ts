/**
 * Error codes of the membership log, reader proofs and identity strings (700–749), twin of
 * secsync_jupyter/protocol/membership_codes.py. A leaf module so that errors.ts can include
 * them in `SecsyncErrorCode`; 750–799 are kept for key epochs, lockboxes and links (issue 12).
 * The wire format is in docs/protocol.md, section "Membership log".
 */
export type MembershipErrorCode =
  | 'SECSYNC_ERROR_700'
  | 'SECSYNC_ERROR_701'
  | 'SECSYNC_ERROR_702'
  | 'SECSYNC_ERROR_703'
  | 'SECSYNC_ERROR_704'
  | 'SECSYNC_ERROR_705'
  | 'SECSYNC_ERROR_706'
  | 'SECSYNC_ERROR_707'
  | 'SECSYNC_ERROR_708'
  | 'SECSYNC_ERROR_709'
  | 'SECSYNC_ERROR_710'
  | 'SECSYNC_ERROR_711'
  | 'SECSYNC_ERROR_712'
  | 'SECSYNC_ERROR_713'
  | 'SECSYNC_ERROR_714'
  | 'SECSYNC_ERROR_715'
  | 'SECSYNC_ERROR_716'
  | 'SECSYNC_ERROR_717'
  | 'SECSYNC_ERROR_718'
  | 'SECSYNC_ERROR_720'
  | 'SECSYNC_ERROR_721'
  | 'SECSYNC_ERROR_722'
  | 'SECSYNC_ERROR_723'
  | 'SECSYNC_ERROR_724'
  | 'SECSYNC_ERROR_725'
  | 'SECSYNC_ERROR_730'
  | 'SECSYNC_ERROR_731'
  | 'SECSYNC_ERROR_741';

export const MEMBERSHIP_ERROR_DESCRIPTIONS: Record<MembershipErrorCode, string> = {
  SECSYNC_ERROR_700: 'unknown error while processing the membership log',
  SECSYNC_ERROR_701: 'membership entry could not be parsed',
  SECSYNC_ERROR_702: 'membership entry format version is not supported',
  SECSYNC_ERROR_703: 'membership entry kind is unknown',
  SECSYNC_ERROR_704: 'membership entry signature is invalid',
  SECSYNC_ERROR_705: 'membership entry belongs to another document',
  SECSYNC_ERROR_706: 'membership log root is not the root of this document',
  SECSYNC_ERROR_707: 'membership entry does not extend the log head (fork)',
  SECSYNC_ERROR_708: 'membership entry replayed (already in the log)',
  SECSYNC_ERROR_709: 'membership entry sequence gap (entries are missing)',
  SECSYNC_ERROR_710: 'membership entry timestamp is older than the previous entry\'s',
  SECSYNC_ERROR_711: 'membership entry signer is not a member',
  SECSYNC_ERROR_712: 'membership entry signer\'s role does not allow this change',
  SECSYNC_ERROR_713: 'membership entry promotes its own signer',
  SECSYNC_ERROR_714: 'membership entry would leave the document without an admin',
  SECSYNC_ERROR_715: 'membership entry adds someone who is already a member',
  SECSYNC_ERROR_716: 'membership entry targets someone who is not a member',
  SECSYNC_ERROR_717: 'membership entry does not change the member\'s role',
  SECSYNC_ERROR_718: 'membership log does not extend the head seen before (rollback or fork)',
  SECSYNC_ERROR_720: 'reader proof could not be parsed',
  SECSYNC_ERROR_721: 'reader proof signature is invalid',
  SECSYNC_ERROR_722: 'reader is not a member of the document',
  SECSYNC_ERROR_723: 'reader proof missing: the connection did not answer the challenge',
  SECSYNC_ERROR_724: 'write refused: the author is not an editor or admin',
  SECSYNC_ERROR_725: 'access revoked: removed from the document',
  SECSYNC_ERROR_730: 'identity string is malformed',
  SECSYNC_ERROR_731: 'identity string fingerprint does not match its key',
  SECSYNC_ERROR_741: 'creating a membership entry failed'
};
