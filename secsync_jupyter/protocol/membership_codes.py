"""Error codes of the membership log, reader proofs and identity strings (700–749), key
epochs, lockboxes and links (750–799).

A leaf module (no imports) so that :mod:`.errors` can merge these texts into
``ERROR_MESSAGES``; the error classes live in :mod:`.membership` and :mod:`.identity`.
The TypeScript twin is ``labextension/src/secsync/membershipCodes.ts``. 750–799: key
epochs, lockboxes and links (issue 12; :mod:`.epochs`, :mod:`.links`). The wire format is
in docs/protocol.md, sections "Membership log" and "Key epochs, lockboxes and links".
"""

MEMBERSHIP_ERROR_MESSAGES: dict[str, str] = {
    "SECSYNC_ERROR_700": "unknown error while processing the membership log",
    "SECSYNC_ERROR_701": "membership entry could not be parsed",
    "SECSYNC_ERROR_702": "membership entry format version is not supported",
    "SECSYNC_ERROR_703": "membership entry kind is unknown",
    "SECSYNC_ERROR_704": "membership entry signature is invalid",
    "SECSYNC_ERROR_705": "membership entry belongs to another document",
    "SECSYNC_ERROR_706": "membership log root is not the root of this document",
    "SECSYNC_ERROR_707": "membership entry does not extend the log head (fork)",
    "SECSYNC_ERROR_708": "membership entry replayed (already in the log)",
    "SECSYNC_ERROR_709": "membership entry sequence gap (entries are missing)",
    "SECSYNC_ERROR_710": "membership entry timestamp is older than the previous entry's",
    "SECSYNC_ERROR_711": "membership entry signer is not a member",
    "SECSYNC_ERROR_712": "membership entry signer's role does not allow this change",
    "SECSYNC_ERROR_713": "membership entry promotes its own signer",
    "SECSYNC_ERROR_714": "membership entry would leave the document without an admin",
    "SECSYNC_ERROR_715": "membership entry adds someone who is already a member",
    "SECSYNC_ERROR_716": "membership entry targets someone who is not a member",
    "SECSYNC_ERROR_717": "membership entry does not change the member's role",
    "SECSYNC_ERROR_718": "membership log does not extend the head seen before (rollback or fork)",
    "SECSYNC_ERROR_720": "reader proof could not be parsed",
    "SECSYNC_ERROR_721": "reader proof signature is invalid",
    "SECSYNC_ERROR_722": "reader is not a member of the document",
    "SECSYNC_ERROR_723": "reader proof missing: the connection did not answer the challenge",
    "SECSYNC_ERROR_724": "write refused: the author is not an editor or admin",
    "SECSYNC_ERROR_725": "access revoked: removed from the document",
    "SECSYNC_ERROR_730": "identity string is malformed",
    "SECSYNC_ERROR_731": "identity string fingerprint does not match its key",
    "SECSYNC_ERROR_741": "creating a membership entry failed",
    # issue 12: key epochs, lockboxes and links
    "SECSYNC_ERROR_750": "unknown error in key epochs, lockboxes or links",
    "SECSYNC_ERROR_751": "rotate-key does not make the next key epoch",
    "SECSYNC_ERROR_752": "a link's role must be viewer or editor",
    "SECSYNC_ERROR_753": "a link may only add members",
    "SECSYNC_ERROR_754": "the link has expired",
    "SECSYNC_ERROR_755": "the link was revoked",
    "SECSYNC_ERROR_756": "a link adds a member with a role above its own",
    "SECSYNC_ERROR_757": "remove-link names no live link",
    "SECSYNC_ERROR_758": "the key is (or was) a link's",
    "SECSYNC_ERROR_759": "the link would expire before it is added",
    "SECSYNC_ERROR_760": "lockbox could not be parsed",
    "SECSYNC_ERROR_761": "lockbox cannot be opened with this key",
    "SECSYNC_ERROR_762": "epoch key does not match the epoch's key check",
    "SECSYNC_ERROR_763": "lockbox belongs to another document, epoch or recipient",
    "SECSYNC_ERROR_764": "lockboxes do not match the rotate-key commitment",
    "SECSYNC_ERROR_765": "lockboxes missing, duplicated or for a non-recipient",
    "SECSYNC_ERROR_766": "unknown key epoch",
    "SECSYNC_ERROR_767": "message epoch is malformed or not the epoch of its log head",
    "SECSYNC_ERROR_768": "write in a superseded key epoch",
    "SECSYNC_ERROR_769": "served an older key epoch than one seen before (rollback)",
    "SECSYNC_ERROR_770": "link fragment is malformed",
    "SECSYNC_ERROR_780": "creating a rotation, lockbox or link failed",
}
