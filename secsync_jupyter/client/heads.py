"""Signed heads between live collaborators and remembered state (issue 13, parts 2 and 3).

Pure helpers used by :class:`~secsync_jupyter.client.engine.SyncEngine` (sans-IO, no clock of
their own: the engine passes the time its driver gave to ``tick``).

**Heads message** (docs/protocol.md, "Heads between live collaborators"): the content of an
ordinary ephemeral ``message`` (so it is encrypted with the document key and signed by its
author like presence) that starts with :data:`HEADS_PREFIX`. The prefix begins with a zero
byte, which a y-protocols awareness reader takes as an update of zero entries: clients that do
not know heads messages (the reference client, older versions of ours) apply nothing. After the
prefix: UTF-8 JSON ``{"snapshotId", "chain", "clocks", "log"?}``.

**Remembered state**: what a client verified of one document, kept across loads
(:func:`remembered_from_json`).

**Member positions** (heads inside updates, docs/protocol.md "Causal heads"): in a document
with a membership log an update's heads name each other author by its position, the ``seq``
of the log entry that first made its key a member (:func:`member_positions`):
``"heads": {"3": 41}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..protocol.membership import LogHead, MembershipState, parse_log_head

__all__ = [
    "HEADS_GRACE_SECONDS",
    "HEADS_INTERVAL_SECONDS",
    "HEADS_MIN_SPACING_SECONDS",
    "HEADS_PREFIX",
    "MAX_CHAIN_IDS",
    "MAX_HEADS_CLOCKS",
    "Claim",
    "PeerHeads",
    "Remembered",
    "decode_heads",
    "encode_heads",
    "member_positions",
    "remembered_from_json",
]

#: the content of an ephemeral ``message`` carrying heads starts with these bytes (a zero
#: byte — an awareness update of zero entries for readers that do not know heads — then an
#: ASCII tag with the format version)
HEADS_PREFIX = b"\x00secsync-heads/1\n"
#: a client sends its heads at most this often when nothing changed (seconds)
HEADS_INTERVAL_SECONDS = 5.0
#: and at most this often when they changed (after an acknowledged write, a new peer)
HEADS_MIN_SPACING_SECONDS = 1.0
#: what a peer has seen must have reached this client within this time (seconds connected
#: and loaded) before it is reported as withheld or as a fork
HEADS_GRACE_SECONDS = 10.0
#: a heads message names at most this many ancestor snapshot ids (newest last)
MAX_CHAIN_IDS = 16
#: and at most this many authors' clocks (the highest; as the heads inside updates)
MAX_HEADS_CLOCKS = 64
#: a heads message larger than this is malformed (307)
MAX_HEADS_BYTES = 16 * 1024


def member_positions(
    state: MembershipState,
) -> tuple[dict[str, int], dict[str, tuple[int, str]]]:
    """Every key that was ever a member of the verified log ``state`` and its **position**:
    the ``seq`` of the entry that first made it a member (the ``create`` for the creator, else
    its first ``add-member``; a member removed and added again keeps its first position).
    Returns (public key -> position, position as a decimal string -> (position, public key)).
    The log is append-only, so a position never changes and names the same key for everyone
    holding the log up to it; a writer can only have applied an author's update after
    verifying that author's adding entry."""
    by_key: dict[str, int] = {}
    by_pos: dict[str, tuple[int, str]] = {}
    for key, changes in state.history.items():  # the first change of a key is its adding
        seq = changes[0][0]
        by_key[key] = seq
        by_pos[str(seq)] = (seq, key)
    return by_key, by_pos


@dataclass(frozen=True)
class PeerHeads:
    """What a collaborator says it has applied (verified signer: ``author``)."""

    snapshot_id: str
    #: ancestors of ``snapshot_id`` the peer knows, oldest first (at most 16)
    chain: tuple[str, ...]
    clocks: Mapping[str, int]
    log: LogHead | None


def encode_heads(
    snapshot_id: str, chain: list[str], clocks: Mapping[str, int], log: LogHead | None
) -> bytes:
    """The content of a heads message (``chain``: our snapshot ids before ``snapshot_id``,
    oldest first; ``clocks``: every author's highest applied clock, ours acknowledged)."""
    items = list(clocks.items())
    if len(items) > MAX_HEADS_CLOCKS:
        items = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:MAX_HEADS_CLOCKS]
    body: dict[str, Any] = {
        "snapshotId": snapshot_id,
        "chain": [c for c in chain if c != snapshot_id][-MAX_CHAIN_IDS:],
        "clocks": dict(sorted(items)),
    }
    if log is not None:
        body["log"] = log.to_json()
    return HEADS_PREFIX + json.dumps(body, separators=(",", ":")).encode()


def decode_heads(content: bytes) -> PeerHeads:
    """Parse a heads message's content (after checking it starts with :data:`HEADS_PREFIX`).
    Raises ``ValueError`` naming what is wrong."""
    if len(content) > MAX_HEADS_BYTES:
        raise ValueError("heads message too large")
    obj = json.loads(content[len(HEADS_PREFIX) :].decode())
    if not isinstance(obj, dict):
        raise ValueError("heads: expected an object")
    snap = obj.get("snapshotId")
    if not isinstance(snap, str) or not snap:
        raise ValueError("heads.snapshotId: expected a string")
    chain = obj.get("chain", [])
    if (
        not isinstance(chain, list)
        or len(chain) > MAX_CHAIN_IDS
        or not all(isinstance(c, str) for c in chain)
    ):
        raise ValueError("heads.chain: expected at most 16 strings")
    clocks = obj.get("clocks", {})
    if (
        not isinstance(clocks, dict)
        or len(clocks) > MAX_HEADS_CLOCKS
        or not all(type(v) is int and v >= 0 for v in clocks.values())
    ):
        raise ValueError("heads.clocks: expected at most 64 non-negative integers")
    log = obj.get("log")
    head = parse_log_head(log) if log is not None else None  # MembershipError is a ValueError
    return PeerHeads(snap, tuple(chain), dict(clocks), head)


@dataclass
class Claim:
    """Something a peer has seen that has not reached this client yet."""

    #: ``clock`` (an author's update on a snapshot), ``snapshot`` or ``log``
    kind: str
    #: who has seen it (the peer's public key)
    seen_by: str
    #: when it was first claimed (the engine's time; moved to the load's time on a reload)
    since: float
    snapshot_id: str = ""
    author: str = ""
    clock: int = -1
    log: LogHead | None = None


@dataclass
class Remembered:
    """The state of a document a client verified before (its remembered state)."""

    snapshot: dict[str, Any] | None
    log_head: LogHead | None
    log: list[Any] = field(default_factory=list)


def remembered_from_json(obj: Any) -> Remembered:
    """Parse one document's remembered state: ``{"snapshot": KnownSnapshot JSON | null,
    "logHead": {seq, hash} | null, "log": [entries]}``. Raises ``ValueError``."""
    if not isinstance(obj, Mapping):
        raise ValueError("remembered state: expected an object")
    snap = obj.get("snapshot")
    if snap is not None:
        if not isinstance(snap, Mapping):
            raise ValueError("remembered state: snapshot must be an object")
        for name in ("snapshotId", "snapshotCiphertextHash", "parentSnapshotProof"):
            if not isinstance(snap.get(name), str):
                raise ValueError(f"remembered state: snapshot.{name} must be a string")
        clocks = snap.get("updateClocks", {})
        if not isinstance(clocks, Mapping) or not all(
            isinstance(k, str) and type(v) is int for k, v in clocks.items()
        ):
            raise ValueError("remembered state: snapshot.updateClocks must map keys to integers")
        snap = dict(snap)
    head = obj.get("logHead")
    log_head = parse_log_head(head) if head is not None else None
    log = obj.get("log")
    if log is None:
        log = []
    elif not isinstance(log, list):
        raise ValueError("remembered state: log must be an array")
    return Remembered(snap, log_head, list(log))
