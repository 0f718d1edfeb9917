"""A client frame, parsed and checked on its own: JSON, the message's shape (the protocol
core's parser), its signature and, for a snapshot, its ciphertext hash.

:func:`analyze` reads no relay state and has no side effects, so a large frame can be analyzed
in a worker thread (``VERIFY_IN_THREAD_BYTES``) while the event loop serves other documents;
the session then applies the access policy and the acceptance rules to the result, in the
order the answers have always had (see :mod:`.session`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol import (
    EphemeralMessage,
    ProtocolError,
    Snapshot,
    Update,
    snapshot_ciphertext_hash,
    verify_ephemeral_signature,
    verify_snapshot_signature,
    verify_update_signature,
)
from . import frames

#: frames at least this long are analyzed in a worker thread
VERIFY_IN_THREAD_BYTES = 256 * 1024

_MESSAGE_KEYS = frozenset(("nonce", "ciphertext", "publicData", "signature"))

#: kind -> (access-policy action, parser, signature check)
_KINDS: dict[str, tuple[str, Any, Any]] = {
    "snapshot": ("write-snapshot", Snapshot.from_json, verify_snapshot_signature),
    "update": ("write-update", Update.from_json, verify_update_signature),
    "ephemeral": (
        "send-ephemeral-message",
        EphemeralMessage.from_json,
        verify_ephemeral_signature,
    ),
}


@dataclass(slots=True)
class Inbound:
    """What :func:`analyze` found in a frame."""

    #: ``snapshot``, ``update``, ``ephemeral``; empty when the frame is no JSON object
    kind: str = ""
    #: the raw ``publicData`` object (``{}`` when missing), for the reference answers
    public_data: Mapping[str, Any] = field(default_factory=dict)
    #: (code, message, field) when the frame is malformed
    error: tuple[str, str, str | None] | None = None
    msg: Snapshot | Update | EphemeralMessage | None = None
    #: the message as stored and forwarded: the received text when it has exactly the four
    #: message fields, otherwise those four re-serialized
    body: str = ""
    signature_ok: bool = False
    #: ``hash(ciphertext)`` of a snapshot whose signature verified
    ciphertext_hash: str = ""

    @property
    def action(self) -> str:
        return _KINDS[self.kind][0]


def analyze(text: str) -> Inbound:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Inbound(error=("invalid-json", f"the frame is not JSON: {exc}"[:300], None))
    if not isinstance(obj, dict):
        return Inbound(error=("invalid-message", "a message must be a JSON object", None))
    pd = obj.get("publicData")
    if not isinstance(pd, dict):
        pd = {}
    if pd.get("snapshotId"):
        kind = "snapshot"
    elif pd.get("refSnapshotId"):
        kind = "update"
    else:
        kind = "ephemeral"
    _, parse, verify = _KINDS[kind]
    try:
        msg = parse(obj)
    except ProtocolError as exc:
        return Inbound(kind, pd, ("invalid-message", str(exc), exc.field))
    try:
        verify(msg)
        signature_ok = True
    except ProtocolError:
        signature_ok = False
    if len(obj) == 4 and obj.keys() == _MESSAGE_KEYS:
        body = text.strip()
    else:
        body = frames.dumps(msg.to_json())
    chash = snapshot_ciphertext_hash(msg) if kind == "snapshot" and signature_ok else ""
    return Inbound(kind, pd, None, msg, body, signature_ok, chash)
