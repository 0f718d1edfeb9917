"""The Secsync acceptance rules of the relay, on a document's in-memory state (sans-I/O).

:func:`check_update` / :func:`check_snapshot` say whether a verified message may be accepted
against a :class:`~.store.DocumentState` (which includes the writes still committing) and the
per-document storage quota; :func:`accept_update` / :func:`accept_snapshot` apply an accepted
one to the state. The store checks the same rules again inside its transactions (it is the
final authority when several relays share a database); docs/relay.md "What the relay does".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..protocol.messages import SnapshotPublicData, UpdatePublicData
from .store import DocumentState, SnapshotInfo

#: refusals that a state lagging behind other processes' commits can cause (a newer active
#: snapshot, an author's clocks written through another process); the others cannot be
#: lifted by catching up (replays, quotas: the state only grows)
MAY_LAG = frozenset(
    {
        "update-wrong-snapshot",
        "update-clock-gap",
        "snapshot-parent-not-active",
        "snapshot-clocks-differ",
    }
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message is refused. For a snapshot, ``missing_since`` is ``(snapshot id, clocks)``
    the client's view is compared with to send it what it misses (``None``: nothing to send,
    a bare ``snapshot-save-failed``); for an update, ``requires_new_snapshot`` is the
    ``update-save-failed`` flag."""

    code: str
    message: str
    missing_since: tuple[str | None, Mapping[str, int] | None] | None = None
    requires_new_snapshot: bool = False


def quota_refusal(stored: int, quota: int, snapshot_bytes: int | None = None) -> Refusal:
    if snapshot_bytes is not None:
        message = (
            f"the snapshot has {snapshot_bytes} bytes, more than this relay stores per "
            f"document ({quota})"
        )
    else:
        message = (
            f"the active snapshot and its updates hold {stored} bytes; this relay stores at "
            f"most {quota} bytes per document: write a new snapshot to free the space"
        )
    return Refusal("document-too-large", message, requires_new_snapshot=snapshot_bytes is None)


def check_update(
    state: DocumentState, pd: UpdatePublicData, size: int, quota: int
) -> Refusal | None:
    """An update references the active snapshot, its clock is 0 for a new author or the last
    one + 1, and it fits the quota."""
    active = state.active
    if active is None or pd.ref_snapshot_id != active.snapshot_id:
        return Refusal("update-wrong-snapshot", "the update does not reference the active snapshot")
    last = state.clocks.get(pd.pub_key, -1)
    if pd.clock != last + 1:
        code = "update-clock-replayed" if pd.clock <= last else "update-clock-gap"
        return Refusal(code, f"clock {pd.clock}, last stored clock of this pubKey {last}")
    if state.stored_bytes + size > quota:
        return quota_refusal(state.stored_bytes, quota)
    return None


def accept_update(state: DocumentState, pd: UpdatePublicData, size: int) -> None:
    state.clocks[pd.pub_key] = pd.clock
    state.stored_bytes += size


def check_snapshot(
    state: DocumentState, pd: SnapshotPublicData, size: int, quota: int
) -> Refusal | None:
    """A snapshot is the document's first, or its parent is the active snapshot and its
    parent clocks equal the relay's exactly; it fits the quota."""
    active = state.active
    if active is not None:
        if pd.parent_snapshot_id != active.snapshot_id:
            return Refusal(
                "snapshot-parent-not-active",
                "parentSnapshotId is not the active snapshot",
                (pd.parent_snapshot_id, None),
            )
        if pd.parent_snapshot_update_clocks != state.clocks:
            return Refusal(
                "snapshot-clocks-differ",
                "parentSnapshotUpdateClocks differ from the relay's clocks",
                (active.snapshot_id, pd.parent_snapshot_update_clocks),
            )
    if size > quota:
        return quota_refusal(0, quota, size)
    return None


def accept_snapshot(
    state: DocumentState, pd: SnapshotPublicData, ciphertext_hash: str, size: int, epoch: int = 0
) -> None:
    state.active = SnapshotInfo(pd.snapshot_id, ciphertext_hash, pd.parent_snapshot_proof, epoch)
    state.clocks = {}
    state.stored_bytes = size
