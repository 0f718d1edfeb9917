"""An in-memory :class:`~.store.RelayStore` (``memory:``): the same rules and answers as the
SQLite store, nothing kept on disk. For tests that drive the relay without SQLite, and an
example of a second store plugged in by URL."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ..protocol import SnapshotProofChainEntry
from .sqlite_store import superseded_to_prune
from .store import (
    LOCKBOX_EXISTS,
    LOG_ENTRY_CONFLICT,
    LOG_ENTRY_GAP,
    DocumentState,
    DocumentView,
    LockboxRow,
    LogRow,
    PruneResult,
    RelayStore,
    SaveResult,
    SnapshotInfo,
    StoreError,
    position,
    utf8_length,
)


@dataclass
class _Snapshot:
    seq: int
    snapshot_id: str
    parent_id: str
    ciphertext_hash: str
    proof: str
    message: str
    #: (version, pubKey, clock, message) in version order
    updates: list[tuple[int, str, int, str]] = field(default_factory=list)
    clocks: dict[str, int] = field(default_factory=dict)
    stored_bytes: int = 0
    epoch: int = 0
    created_at: float = 0.0


@dataclass
class _Document:
    snapshots: list[_Snapshot] = field(default_factory=list)
    by_id: dict[str, _Snapshot] = field(default_factory=dict)

    @property
    def active(self) -> _Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None


def _fail(code: str, message: str) -> SaveResult:
    return SaveResult(False, code=code, message=message)


class MemoryStore(RelayStore):
    """Writes are applied when submitted, in order; their awaitables resolve on the next
    event-loop turn (as a commit would)."""

    def __init__(self) -> None:
        self.documents: dict[str, _Document] = {}
        #: membership logs by document
        self.logs: dict[str, list[LogRow]] = {}
        #: lockboxes by document, then (epoch, recipient)
        self.lockboxes: dict[str, dict[tuple[int, str], LockboxRow]] = {}
        self._seq = 0
        self._open = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryStore:
        if url not in ("memory:", "memory://"):
            raise ValueError(f"an in-memory store URL is memory:, not {url!r}")
        return cls()

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _done(self, result: SaveResult) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if self._open:
            fut.set_result(result)
        else:
            fut.set_exception(StoreError("the store is closed"))
        return fut

    async def count_documents(self) -> int:
        return len(self.documents)

    async def load_state(self, doc_id: str) -> DocumentState:
        doc = self.documents.get(doc_id)
        if doc is None:
            return DocumentState(exists=False)
        active = doc.active
        if active is None:
            return DocumentState(exists=True)
        return DocumentState(
            True,
            SnapshotInfo(active.snapshot_id, active.ciphertext_hash, active.proof, active.epoch),
            dict(active.clocks),
            active.stored_bytes,
        )

    async def read_document(self, doc_id, known_snapshot_id, known_clocks) -> DocumentView:
        doc = self.documents.get(doc_id)
        active = doc.active if doc is not None else None
        if active is None:
            return DocumentView(None, (), (), 0, False, False)
        last = active.updates[-1][0] if active.updates else 0
        pos = position(active.seq, last)
        if known_snapshot_id is not None and known_snapshot_id == active.snapshot_id:
            known = known_clocks or {}
            missing = tuple(m for _, pub, clock, m in active.updates if clock > known.get(pub, -1))
            return DocumentView(active.message, missing, (), pos, True, True)
        chain: tuple[SnapshotProofChainEntry, ...] = ()
        known_snapshot = doc.by_id.get(known_snapshot_id or "") if doc else None
        if known_snapshot is not None and known_snapshot.seq < active.seq:
            chain = tuple(
                SnapshotProofChainEntry(s.snapshot_id, s.ciphertext_hash, s.proof)
                for s in doc.snapshots
                if known_snapshot.seq < s.seq <= active.seq
            )
        updates = tuple(m for *_, m in active.updates)
        return DocumentView(active.message, updates, chain, pos, False, True)

    def save_snapshot(self, doc_id, **fields):  # the fields of RelayStore.save_snapshot
        snapshot_id, parent_snapshot_id = fields["snapshot_id"], fields["parent_snapshot_id"]
        message = fields["message"]
        doc = self.documents.get(doc_id)
        created = doc is None
        active = doc.active if doc is not None else None
        if active is not None:
            if active.snapshot_id != parent_snapshot_id:
                return self._done(
                    _fail("snapshot-parent-not-active", "parentSnapshotId is not active")
                )
            if active.clocks != dict(fields["parent_clocks"]):
                return self._done(
                    _fail(
                        "snapshot-clocks-differ",
                        "parentSnapshotUpdateClocks differ from the relay's",
                    )
                )
        if doc is not None and snapshot_id in doc.by_id:
            return self._done(
                _fail("snapshot-id-exists", "a snapshot with this snapshotId already exists")
            )
        if doc is None:
            doc = self.documents[doc_id] = _Document()
        self._seq += 1
        snap = _Snapshot(
            self._seq,
            snapshot_id,
            parent_snapshot_id,
            fields["ciphertext_hash"],
            fields["parent_snapshot_proof"],
            message,
            stored_bytes=utf8_length(message),
            epoch=fields.get("epoch", 0),
            created_at=time.time(),
        )
        doc.snapshots.append(snap)
        doc.by_id[snapshot_id] = snap
        return self._done(SaveResult(True, position(snap.seq, 0), created_document=created))

    def save_update(self, doc_id, *, snapshot_id, pub_key, clock, message):
        doc = self.documents.get(doc_id)
        active = doc.active if doc is not None else None
        if active is None or active.snapshot_id != snapshot_id:
            return self._done(
                _fail("update-wrong-snapshot", "refSnapshotId is not the active snapshot")
            )
        last = active.clocks.get(pub_key, -1)
        if clock <= last:
            return self._done(
                _fail("update-clock-replayed", f"clock {clock} of this pubKey is already stored")
            )
        if clock != last + 1:
            return self._done(
                _fail("update-clock-gap", f"clock {clock} does not follow this pubKey's last clock")
            )
        version = active.updates[-1][0] + 1 if active.updates else 1
        active.updates.append((version, pub_key, clock, message))
        active.clocks[pub_key] = clock
        active.stored_bytes += utf8_length(message)
        return self._done(SaveResult(True, position(active.seq, version)))

    async def read_log(self, doc_id: str, after_seq: int = -1) -> list[LogRow]:
        if not self._open:
            raise StoreError("the store is closed")
        return [row for row in self.logs.get(doc_id, ()) if row.seq > after_seq]

    def save_log_entry(self, doc_id, *, seq, prev, hash, entry, lockboxes=()):
        log = self.logs.get(doc_id, [])
        if seq < len(log):
            return self._done(_fail(LOG_ENTRY_CONFLICT, f"the log already has entry {seq}"))
        if seq > len(log):
            return self._done(_fail(LOG_ENTRY_GAP, f"entry {seq - 1} is missing"))
        if seq and log[-1].hash != prev:
            return self._done(_fail(LOG_ENTRY_CONFLICT, f"entry {seq - 1} has another hash"))
        if self._open:
            self.logs.setdefault(doc_id, log).append(LogRow(seq, hash, entry))
            boxes = self.lockboxes.setdefault(doc_id, {})
            for lb in lockboxes:
                boxes.setdefault((lb.epoch, lb.recipient), lb)
        return self._done(SaveResult(True))

    def save_lockbox(self, doc_id, *, epoch, recipient, lockbox):
        boxes = self.lockboxes.setdefault(doc_id, {})
        stored = boxes.get((epoch, recipient))
        if stored is not None:
            if stored.lockbox == lockbox:
                return self._done(SaveResult(True))
            return self._done(
                _fail(LOCKBOX_EXISTS, "another lockbox for this epoch and recipient is stored")
            )
        if self._open:
            boxes[(epoch, recipient)] = LockboxRow(epoch, recipient, lockbox)
        return self._done(SaveResult(True))

    async def read_lockboxes(self, doc_id: str, recipient: str) -> list[LockboxRow]:
        if not self._open:
            raise StoreError("the store is closed")
        rows = [r for r in self.lockboxes.get(doc_id, {}).values() if r.recipient == recipient]
        return sorted(rows)

    def prune_superseded(self, doc_id, retention):
        fut = asyncio.get_running_loop().create_future()
        doc = self.documents.get(doc_id)
        active = doc.active if doc is not None else None
        if active is None or active.epoch == 0 or not self._open:
            fut.set_result(PruneResult())
            return fut
        rows = [
            (s.seq, s.created_at)
            for s in reversed(doc.snapshots)
            if s.epoch < active.epoch and s is not active
        ]
        gone = set(superseded_to_prune(rows, retention, time.time()))
        updates = sum(len(s.updates) for s in doc.snapshots if s.seq in gone)
        doc.snapshots = [s for s in doc.snapshots if s.seq not in gone]
        doc.by_id = {s.snapshot_id: s for s in doc.snapshots}
        fut.set_result(PruneResult(len(gone), updates))
        return fut

    async def documents_with_epochs(self) -> list[str]:
        return [
            d for d, doc in self.documents.items() if doc.active is not None and doc.active.epoch
        ]
