"""Server → client frames, built once as strings (and, for broadcasts, once as WebSocket bytes).

Besides the reference frames (see docs/relay.md and protocol.md "Connection"), the relay sends
``{"type": "error", "code", "message", "field"?}`` for every rejected client frame. Reference
clients put unknown types in their custom-message queue and ignore them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..protocol import DOC_ID_PATTERN, SnapshotProofChainEntry
from .outbox import ws_frame

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: every ``code`` of an ``error`` frame, with its meaning (documented in docs/relay.md)
ERROR_CODES: dict[str, str] = {
    "invalid-json": "the frame is not JSON",
    "invalid-utf8": "the text frame is not valid UTF-8",
    "binary-frame": "binary frames are not part of the protocol",
    "invalid-message": "the frame is not a well-formed snapshot, update or ephemeral message",
    "invalid-signature": "the message's signature does not verify with its publicData.pubKey",
    "wrong-document": "publicData.docId is not this connection's document",
    "snapshot-parent-not-active": "the snapshot's parent is not the active snapshot",
    "snapshot-clocks-differ": "parentSnapshotUpdateClocks differ from the relay's clocks",
    "snapshot-id-exists": "a snapshot with this snapshotId already exists",
    "update-wrong-snapshot": "the update does not reference the active snapshot",
    "update-clock-replayed": "the update's clock is not newer than the last one of its pubKey",
    "update-clock-gap": "the update's clock skips one (expected last + 1, or 0 for a new pubKey)",
    "frame-too-large": "the frame exceeds the relay's max frame size",
    "document-too-large": "the write would exceed the bytes the relay stores per document on "
    "its active snapshot; a new (smaller) snapshot frees the space",
    "send-buffer-full": "the connection did not read fast enough: more than the relay's send "
    "buffer limit was waiting for it; it is closed (1013), reconnect in delta mode",
    "too-many-connections": "the document has the maximum number of connections",
    "too-many-documents": "the relay stores the maximum number of documents",
    "invalid-document-id": f"the document id is not {DOC_ID_PATTERN}",
    "invalid-query": "a query parameter is malformed",
    "missing-session-key": "the sessionKey query parameter is missing",
    "unauthorized": "authentication failed or the access policy denied the action",
    "storage-failed": "the relay could not store the message (not acknowledged; retry)",
    "shutting-down": "the relay is shutting down; reconnect later",
    "internal-error": "unexpected relay error",
}


class OutFrame:
    """A frame sent to many connections: the JSON text, and its unmasked WebSocket encoding
    computed at most once."""

    __slots__ = ("_wire", "text")

    def __init__(self, text: str):
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = ws_frame(self.text.encode("utf-8"))
        return wire


def echoable(value) -> bool:
    """Whether a client's string may be sent back: only text that is valid Unicode (a JSON
    escape such as ``"\\ud800"`` decodes to a lone surrogate, which no UTF-8 frame can carry)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str) -> str:
    return value if echoable(value) else value.encode("utf-8", "backslashreplace").decode()


def error(code: str, message: str | None = None, **extra) -> str:
    """An ``error`` frame; its texts never carry what UTF-8 cannot encode."""
    frame = {
        "type": "error",
        "code": code,
        "message": _text(message or ERROR_CODES.get(code, code)),
    }
    for k, v in extra.items():
        if v is not None:
            frame[k] = _text(v) if isinstance(v, str) else v
    return _dumps(frame)


def frame_too_large(limit: int) -> str:
    return error("frame-too-large", f"frames are limited to {limit} bytes")


def simple(type_: str) -> str:
    return '{"type":"' + type_ + '"}'


def snapshot_saved(snapshot_id: str) -> str:
    return _dumps({"type": "snapshot-saved", "snapshotId": snapshot_id})


def update_saved(snapshot_id: str, clock: int) -> str:
    return _dumps({"type": "update-saved", "snapshotId": snapshot_id, "clock": clock})


def update_save_failed(snapshot_id, clock, requires_new_snapshot: bool = False) -> str:
    return _dumps(
        {
            "type": "update-save-failed",
            "snapshotId": snapshot_id,
            "clock": clock,
            "requiresNewSnapshot": requires_new_snapshot,
        }
    )


def _chain(chain: Iterable[SnapshotProofChainEntry]) -> str:
    # key order as the reference relay sends it (some clients compare entries textually)
    return _dumps(
        [
            {
                "snapshotId": e.snapshot_id,
                "parentSnapshotProof": e.parent_snapshot_proof,
                "snapshotCiphertextHash": e.snapshot_ciphertext_hash,
            }
            for e in chain
        ]
    )


def document_parts(
    snapshot: str | None,
    updates: Iterable[str],
    chain: Iterable[SnapshotProofChainEntry] | None,
    type_: str = "document",
    log: tuple[Iterable[str], int] | None = None,
    lockboxes: Iterable[str] | None = None,
    link: bool = False,
) -> list[str]:
    """``{"type":…, "log"?: […], "logFrom"?: n, "snapshot"?: …, "updates": […],
    "snapshotProofChain"?: […]}`` from stored message texts (no re-serialization), as the
    parts of its text (never joined here: a large document is streamed, see :mod:`.outbox`).
    ``log``: the membership-log entries (stored JSON texts) and the ``seq`` of the first, for a
    document with a log (docs/protocol.md "The log in the document frame")."""
    parts = ['{"type":"', type_, '"']
    if log is not None:
        parts.append(',"log":[')
        for i, entry in enumerate(log[0]):
            if i:
                parts.append(",")
            parts.append(entry)
        parts.append(f'],"logFrom":{int(log[1])}')
    if lockboxes:  # issue 12: this connection's own lockboxes (absent when it has none)
        parts.append(',"lockboxes":[' + ",".join(lockboxes) + "]")
    if link:
        parts.append(',"link":true')
    if snapshot is not None:
        parts += [',"snapshot":', snapshot]
    parts.append(',"updates":[')
    for i, update in enumerate(updates):
        if i:
            parts.append(",")
        parts.append(update)
    parts.append("]")
    if chain is not None:
        parts += [',"snapshotProofChain":', _chain(chain)]
    parts.append("}")
    return parts


def document(
    snapshot: str | None,
    updates: Iterable[str],
    chain: Iterable[SnapshotProofChainEntry] | None,
    type_: str = "document",
) -> str:
    """:func:`document_parts` as one text."""
    return "".join(document_parts(snapshot, updates, chain, type_))


def with_type(type_: str, body: str) -> str:
    """``{"type": type_, ...body}`` for a normalized message body (a JSON object text whose
    keys are exactly nonce, ciphertext, publicData, signature)."""
    return '{"type":"' + type_ + '",' + body[1:]


def snapshot_broadcast(body: str) -> str:
    return '{"type":"snapshot","snapshot":' + body + "}"


def dumps(obj) -> str:
    return _dumps(obj)


# ---------------------------------------------------------------- membership log (issue 11)
def reader_challenge(nonce: str) -> str:
    return _dumps({"type": "reader-challenge", "nonce": nonce})


def unauthorized(code: str, reason: str) -> str:
    """The refusal of a reader (720–723) or a removed member (725); the relay then closes."""
    return _dumps({"type": "unauthorized", "code": code, "reason": _text(reason)})


def log_entry(entry: str) -> str:
    """Another member's accepted entry (``entry``: its stored JSON text)."""
    return '{"type":"log-entry","entry":' + entry + "}"


def log_entry_saved(seq: int, hash_: str) -> str:
    return _dumps({"type": "log-entry-saved", "seq": seq, "hash": hash_})


def log_entry_failed(seq: int | None, code: str, log: Iterable[str], reason: str = "") -> str:
    frame = '{"type":"log-entry-failed","seq":' + ("null" if seq is None else str(int(seq)))
    frame += ',"code":' + _dumps(code)
    if reason:
        frame += ',"reason":' + _dumps(_text(reason))
    return frame + ',"log":[' + ",".join(log) + "]}"


def write_refused(of: str, code: str, snapshot_id=None, clock=None, reason: str = "") -> str:
    """``write-refused``: the author may not write (724) — not to be retried."""
    frame: dict = {"type": "write-refused", "of": of, "code": code}
    if snapshot_id is not None and echoable(snapshot_id):
        frame["snapshotId"] = snapshot_id
    if type(clock) is int:
        frame["clock"] = clock
    if reason:
        frame["reason"] = _text(reason)
    return _dumps(frame)


# ---------------------------------------------------------------- key epochs (issue 12)
def lockbox(text: str) -> str:
    """A lockbox stored for this connection's key (``text``: its stored JSON)."""
    return '{"type":"lockbox","lockbox":' + text + "}"


def lockbox_saved(epoch: int, recipient: str) -> str:
    return _dumps({"type": "lockbox-saved", "epoch": epoch, "recipient": recipient})


def lockbox_failed(epoch, recipient, code: str, reason: str) -> str:
    return _dumps(
        {
            "type": "lockbox-failed",
            "epoch": epoch if type(epoch) is int else None,
            "recipient": recipient if echoable(recipient) else None,
            "code": code,
            "reason": _text(reason),
        }
    )
