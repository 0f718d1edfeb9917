"""Protocol errors.

Every error raised by the protocol core is a :class:`ProtocolError`. Errors that
correspond to a reference client error code carry it in ``.code``
(``"SECSYNC_ERROR_111"`` …); errors about one field of a message name it in ``.field``.

One class per family, so callers can branch on the family and on ``.code``:

* :class:`SnapshotError` — 1xx, a received snapshot was rejected
* :class:`UpdateError` — 2xx, a received update was rejected
* :class:`EphemeralError` — 3xx, a received ephemeral message was rejected
* :class:`CreationError` — 401 / 501 / 601, creating a message failed
* :class:`EncodingError` — a base64 / canonical JSON value is not acceptable (no code)

A message that cannot be parsed raises the family's parse error
(:class:`SnapshotParseError` 110, :class:`UpdateParseError` 211,
:class:`EphemeralParseError` 307), all of which are also :class:`ParseError`.
"""

from __future__ import annotations

from .membership_codes import MEMBERSHIP_ERROR_MESSAGES

ERROR_MESSAGES: dict[str, str] = {
    "SECSYNC_ERROR_100": "unknown error while processing a snapshot",
    "SECSYNC_ERROR_101": "snapshot decryption failed",
    "SECSYNC_ERROR_102": "own last update is missing from the snapshot's parent clocks",
    "SECSYNC_ERROR_103": "key lookup for a snapshot failed",
    "SECSYNC_ERROR_104": "snapshot author check failed",
    "SECSYNC_ERROR_105": "applying the snapshot failed",
    "SECSYNC_ERROR_110": "snapshot could not be parsed",
    "SECSYNC_ERROR_111": "snapshot signature is invalid",
    "SECSYNC_ERROR_112": "snapshot parent proof is invalid",
    "SECSYNC_ERROR_113": "snapshot belongs to another document",
    "SECSYNC_ERROR_114": "snapshot author is not an allowed client",
    "SECSYNC_ERROR_115": "snapshot is not a descendant of the known snapshot",
    "SECSYNC_ERROR_200": "unknown error while processing an update",
    "SECSYNC_ERROR_201": "update decryption failed",
    "SECSYNC_ERROR_202": "update clock gap (an update is missing)",
    "SECSYNC_ERROR_203": "applying the update's changes failed",
    "SECSYNC_ERROR_204": "decoding the update's changes failed",
    "SECSYNC_ERROR_205": "update author check failed",
    "SECSYNC_ERROR_206": "key lookup for an update failed",
    "SECSYNC_ERROR_211": "update could not be parsed",
    "SECSYNC_ERROR_212": "update signature is invalid",
    "SECSYNC_ERROR_213": "update does not reference the active snapshot of this document",
    "SECSYNC_ERROR_214": "update clock replayed (not newer than the last one)",
    "SECSYNC_ERROR_215": "update author is not an allowed client",
    "SECSYNC_ERROR_301": "ephemeral message decryption failed",
    "SECSYNC_ERROR_302": "ephemeral message without a verified session",
    "SECSYNC_ERROR_303": "ephemeral message counter replayed",
    "SECSYNC_ERROR_304": "ephemeral message author is not an allowed client",
    "SECSYNC_ERROR_305": "ephemeral message has an unknown type",
    "SECSYNC_ERROR_306": "ephemeral message belongs to another document",
    "SECSYNC_ERROR_307": "ephemeral message could not be parsed",
    "SECSYNC_ERROR_308": "ephemeral message signature is invalid",
    "SECSYNC_ERROR_401": "creating a snapshot failed",
    "SECSYNC_ERROR_501": "creating an update failed",
    "SECSYNC_ERROR_601": "creating an ephemeral message failed",
    **MEMBERSHIP_ERROR_MESSAGES,  # 700-749: membership log (membership_codes.py)
    # 800-809: causal heads (the client engines, issue 13)
    "SECSYNC_ERROR_801": "an update's heads name updates the relay has not delivered",
    "SECSYNC_ERROR_802": "a snapshot's parent clocks name updates the relay has not delivered",
    "SECSYNC_ERROR_803": "the document was served incompletely: missing updates did not come",
    "SECSYNC_ERROR_804": (
        "rollback: the relay served an older state than this client verified before"
    ),
    "SECSYNC_ERROR_805": "fork: a collaborator is on a history that is not this client's",
    "SECSYNC_ERROR_806": "withheld: a collaborator has seen updates the relay has not delivered",
    "SECSYNC_ERROR_807": (
        "this client's remembered state of the document is damaged: checked from scratch"
    ),
}


class ProtocolError(ValueError):
    """Base class of every error the protocol core raises."""

    code: str | None = None

    def __init__(self, message: str | None = None, *, code: str | None = None, field=None):
        if code is not None:
            self.code = code
        self.field = field
        if message is None:
            message = ERROR_MESSAGES.get(self.code or "", "protocol error")
        self.detail = message
        text = message
        if field is not None:
            text = f"{field}: {message}"
        if self.code:
            text = f"{self.code}: {text}"
        super().__init__(text)


class EncodingError(ProtocolError):
    """A base64url or canonical-JSON value is malformed or outside the allowed domain."""


class ParseError(ProtocolError):
    """A message does not have the required shape; ``.field`` names the offending field."""


class SnapshotError(ProtocolError):
    code = "SECSYNC_ERROR_100"


class UpdateError(ProtocolError):
    code = "SECSYNC_ERROR_200"


class EphemeralError(ProtocolError):
    code = "SECSYNC_ERROR_307"


class CreationError(ProtocolError):
    """Creating a snapshot (401), update (501) or ephemeral message (601) failed."""


class SnapshotParseError(SnapshotError, ParseError):
    code = "SECSYNC_ERROR_110"


class UpdateParseError(UpdateError, ParseError):
    code = "SECSYNC_ERROR_211"


class EphemeralParseError(EphemeralError, ParseError):
    code = "SECSYNC_ERROR_307"


class ChainParseError(SnapshotError, ParseError):
    """A ``snapshotProofChain`` entry is malformed (reported with the ancestor code 115)."""

    code = "SECSYNC_ERROR_115"


class DecryptionError(ProtocolError):
    """Commitment tag or AEAD tag did not verify (wrong key or tampered ciphertext)."""
