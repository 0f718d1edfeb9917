"""The relay's storage interface.

The relay keeps ciphertext only. A store persists, per document, the snapshots (the active one
and its ancestors, for proof chains) and the updates of each snapshot, and enforces the Secsync
acceptance rules *inside its own transactions* (with unique constraints), so the rules hold even
when several relay processes write to the same database. The relay additionally pre-checks the
rules in memory (see :mod:`.core`), which is what lets it answer rule violations at once; the
store is the final authority.

Every write method returns an awaitable. The SQLite store returns plain :class:`asyncio.Future`
objects completed by its writer thread (one group commit for many writes); another store (for
example PostgreSQL with ``asyncpg``) may implement them as coroutines. Each write must be durable
(committed) before its awaitable resolves with ``ok=True``.

Positions
    Every accepted message gets a *position* within its document, an integer that grows in commit
    order: ``(snapshot_seq << 32) | version``, where ``snapshot_seq`` is the store's sequence number
    of the snapshot (increasing in commit order) and ``version`` is the update's version within
    that snapshot (0 for the snapshot itself, updates start at 1). A :class:`DocumentView` carries
    the position it reflects, so the relay can hand a joining connection a document frame and then
    exactly the broadcasts that came after it, whatever the order in which reads and writes finish.
"""

from __future__ import annotations

import abc
import importlib
import json
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from ..protocol import SnapshotProofChainEntry

VERSION_BITS = 32


def position(snapshot_seq: int, version: int) -> int:
    return (snapshot_seq << VERSION_BITS) | version


def utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (stored messages are ASCII but for unknown publicData)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def redact_url(url: str) -> str:
    """A store URL without its password (``user:***@host``), for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


_decoder = json.JSONDecoder()


def snapshot_epoch(message: str) -> int:
    """The key epoch of a stored snapshot message of a document with a log (its
    ``publicData.epoch``, checked by the relay before it was stored; 0 when absent): for a
    snapshot another relay process stored (:mod:`.fanout`). Only the public data is parsed
    (it follows the base64 nonce and ciphertext)."""
    i = message.find('"publicData":')
    if i < 0:
        return 0
    j = i + len('"publicData":')
    while j < len(message) and message[j] in " \t\r\n":
        j += 1
    try:
        pd, _ = _decoder.raw_decode(message, j)
    except ValueError:
        return 0
    epoch = pd.get("epoch") if isinstance(pd, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or epoch < 0:
        return 0
    return int(epoch) if float(epoch).is_integer() else 0


class StoreError(Exception):
    """The store could not complete an operation (I/O error, database locked, closed …)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """What the relay needs to know about a document's active snapshot."""

    snapshot_id: str
    ciphertext_hash: str
    parent_snapshot_proof: str
    #: the key epoch it is written in (issue 12; 0 for documents without a log)
    epoch: int = 0


@dataclass
class DocumentState:
    """The rule-relevant state of one document (loaded when its room opens)."""

    exists: bool
    active: SnapshotInfo | None = None
    #: last clock of every pubKey on the active snapshot
    clocks: dict[str, int] = field(default_factory=dict)
    #: bytes of the stored messages on the active snapshot (its own and its updates', UTF-8)
    stored_bytes: int = 0


@dataclass(frozen=True)
class DocumentView:
    """A consistent read of a document for a ``document`` / ``snapshot-save-failed`` frame.

    ``snapshot`` (the active snapshot) and ``updates`` are stored message JSON texts. When the
    reader's known snapshot is the active one, ``known_is_active`` is true and ``updates`` holds
    only the updates after the known clocks (per pubKey); otherwise ``updates`` are all updates
    of the active snapshot and ``chain`` the proof chain from the known snapshot to the active
    one (empty when there is no known snapshot or it is not a stored ancestor).
    """

    snapshot: str | None
    updates: tuple[str, ...]
    chain: tuple[SnapshotProofChainEntry, ...]
    position: int
    known_is_active: bool
    has_snapshot: bool


class LogRow(NamedTuple):
    """A stored membership-log entry: its ``seq``, its hash and its JSON text as received
    (parsed and verified by the relay before it was stored)."""

    seq: int
    hash: str
    entry: str


class LockboxRow(NamedTuple):
    """A stored lockbox (issue 12): its epoch, recipient and JSON text (the relay's canonical
    serialization of the checked lockbox)."""

    epoch: int
    recipient: str
    lockbox: str


@dataclass(frozen=True)
class Retention:
    """What :meth:`RelayStore.prune_superseded` keeps of superseded key epochs (snapshots of
    an epoch older than the active snapshot's, and their updates): everything (both
    ``None``), the newest ``keep_snapshots`` of them, or those younger than
    ``keep_seconds``."""

    keep_snapshots: int | None = None
    keep_seconds: float | None = None

    @property
    def keeps_all(self) -> bool:
        return self.keep_snapshots is None and self.keep_seconds is None


@dataclass(frozen=True)
class PruneResult:
    snapshots: int = 0
    updates: int = 0


#: :meth:`RelayStore.save_lockbox`: a lockbox for this (epoch, recipient) is stored already;
#: ``message`` is its text
LOCKBOX_EXISTS = "lockbox-exists"

#: refusal codes of :meth:`RelayStore.save_log_entry` and the protocol code they answer
#: the log already has an entry at this seq, or the entry before it has another hash (707)
LOG_ENTRY_CONFLICT = "log-entry-conflict"
#: the entry before it is missing (709)
LOG_ENTRY_GAP = "log-entry-gap"


@dataclass(frozen=True)
class SaveResult:
    ok: bool
    #: position of the accepted message (see module docs); 0 when rejected
    position: int = 0
    #: a relay error code when rejected (``snapshot-parent-not-active``, ``update-clock-gap`` …)
    code: str | None = None
    message: str | None = None
    #: true when this write created the document
    created_document: bool = False
    #: true when the write was committed (and its ``on_committed`` called) but could not be
    #: made durable (the SQLite store's fdatasync of the WAL, or the PostgreSQL store's flush
    #: barrier, failed)
    durable_failed: bool = False


class RelayStore(abc.ABC):
    """Async storage of a blind relay. See the module docs for the contract.

    A store is chosen by URL (:func:`store_from_url`): its class makes an instance from the
    URL with :meth:`from_url`."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RelayStore:
        """An instance for ``url``; ``options``: ``synchronous`` (durability) and ``log``,
        which a store may ignore."""
        raise NotImplementedError(f"{cls.__name__} cannot be made from a URL")

    def open_sync(self) -> None:
        """Open before the event loop runs, to report an unusable store at start-up
        (:class:`StoreError`). By default nothing: :meth:`open` opens."""
        return None

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish every write already submitted (resolving its awaitable), then release."""

    @abc.abstractmethod
    async def count_documents(self) -> int:
        """Number of stored documents."""

    @abc.abstractmethod
    async def load_state(self, doc_id: str) -> DocumentState:
        """The document's active snapshot and clocks (``exists=False`` when unknown)."""

    @abc.abstractmethod
    async def read_document(
        self,
        doc_id: str,
        known_snapshot_id: str | None,
        known_clocks: Mapping[str, int] | None,
    ) -> DocumentView:
        """A consistent view, see :class:`DocumentView`."""

    @abc.abstractmethod
    def save_snapshot(
        self,
        doc_id: str,
        *,
        epoch: int = 0,
        snapshot_id: str,
        parent_snapshot_id: str,
        parent_clocks: Mapping[str, int],
        pub_key: str,
        ciphertext_hash: str,
        parent_snapshot_proof: str,
        message: str,
    ) -> Awaitable[SaveResult]:
        """Store a snapshot and make it active, atomically, only if the document has no
        snapshot or its active snapshot is ``parent_snapshot_id`` with exactly
        ``parent_clocks``; snapshot ids are unique per document. ``epoch``: its key epoch
        (issue 12), stored with it."""

    @abc.abstractmethod
    def save_update(
        self, doc_id: str, *, snapshot_id: str, pub_key: str, clock: int, message: str
    ) -> Awaitable[SaveResult]:
        """Store an update with the next version, atomically, only if ``snapshot_id`` is the
        active snapshot and ``clock`` is 0 for a new pubKey or its last clock + 1
        (unique (snapshot, pubKey, clock)).

        A store whose ``early_commit`` is true also takes ``on_committed=callback`` here and
        in :meth:`save_snapshot`: ``callback(result)`` runs on the loop once the write is
        committed (visible to readers, safe from a crash of this process), in commit order,
        before the returned awaitable resolves once it is durable. Other stores: committed
        is durable, there is no such argument."""

    #: see :meth:`save_update` (the SQLite and PostgreSQL stores with ``synchronous`` full/extra)
    early_commit: bool = False

    # -- the membership log (issue 11; docs/protocol.md "Membership log")
    @abc.abstractmethod
    async def read_log(self, doc_id: str, after_seq: int = -1) -> list[LogRow]:
        """The document's log entries with ``seq > after_seq``, oldest first (all of them by
        default; empty when the document has no log). For a delta after a known head, and for
        another process's fan-out of entries it did not append itself."""

    @abc.abstractmethod
    def save_log_entry(
        self,
        doc_id: str,
        *,
        seq: int,
        prev: str,
        hash: str,
        entry: str,
        lockboxes: Sequence[LockboxRow] = (),
    ) -> Awaitable[SaveResult]:
        """Append an entry the relay has verified, atomically, only if it is the next one:
        ``seq`` 0 on an empty log, else the stored entry ``seq - 1`` has hash ``prev``. A
        second entry on the same parent is refused by the store itself (unique ``(doc_id,
        seq)``), whichever process appended first: ``LOG_ENTRY_CONFLICT`` when ``seq`` is
        taken or the entry before it has another hash, ``LOG_ENTRY_GAP`` when it is missing.
        Committed in order with the document's other writes. ``lockboxes`` (issue 12) are
        stored in the same transaction (or not at all); one already stored for an (epoch,
        recipient) stays as it is."""

    # -- lockboxes and retention (issue 12; docs/protocol.md "Key epochs, lockboxes and links")
    def save_lockbox(
        self, doc_id: str, *, epoch: int, recipient: str, lockbox: str
    ) -> Awaitable[SaveResult]:
        """Store one lockbox (unique ``(doc_id, epoch, recipient)``): ok (also when the same
        text is stored already), or ``LOCKBOX_EXISTS`` (another is stored: it stays)."""
        raise StoreError(f"{type(self).__name__} does not store lockboxes")

    async def read_lockboxes(self, doc_id: str, recipient: str) -> list[LockboxRow]:
        """The lockboxes sealed to ``recipient``, oldest epoch first."""
        raise StoreError(f"{type(self).__name__} does not store lockboxes")

    def prune_superseded(self, doc_id: str, retention: Retention) -> Awaitable[PruneResult]:
        """Delete the snapshots of ``doc_id`` of an epoch older than the active snapshot's
        (never the active one) and their updates, but those ``retention`` keeps; free the
        space where the store can (SQLite: incremental vacuum)."""
        raise StoreError(f"{type(self).__name__} does not prune")

    async def documents_with_epochs(self) -> list[str]:
        """The documents whose active snapshot is in an epoch > 0 (pruning at start)."""
        return []


#: store classes by URL scheme (``scheme:…``); a new store registers here
STORE_SCHEMES: dict[str, str] = {
    "sqlite": "secsync_jupyter.relay.sqlite_store:SQLiteStore",
    "memory": "secsync_jupyter.relay.memory_store:MemoryStore",
    "postgresql": "secsync_jupyter.relay.pg_store:PostgresStore",
    "postgres": "secsync_jupyter.relay.pg_store:PostgresStore",
}


def store_from_url(url: str, **options: Any) -> RelayStore:
    """The store for ``url``: ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (or
    a plain file path), ``memory:``, ``postgresql://…`` (:mod:`.pg_store`), or
    ``package.module:Class`` (``package.module:Class?…``) naming a :class:`RelayStore`
    subclass, which gets the whole URL."""
    scheme, sep, _ = url.partition(":")
    if not sep or "/" in scheme:
        target, url = STORE_SCHEMES["sqlite"], "sqlite:///" + url
    elif scheme in STORE_SCHEMES:
        target = STORE_SCHEMES[scheme]
    elif "." in scheme:
        target = url.partition("?")[0]
    else:
        known = ", ".join(f"{s}:" for s in sorted(STORE_SCHEMES))
        raise ValueError(f"unknown store {url!r} (known: {known} or package.module:Class)")
    module, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"unknown store {url!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, RelayStore)):
        raise ValueError(f"{target} is not a RelayStore")
    return cls.from_url(url, **options)
