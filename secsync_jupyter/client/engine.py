"""The sans-IO Secsync sync engine: frames in, frames and document operations out.

:class:`SyncEngine` mirrors the reference client's sync machine (``createSyncMachine`` of
``secsync`` 0.5.0) without doing any I/O itself:

* the transport tells it ``connecting()``, ``connected()``, ``receive(frame)`` and
  ``disconnected()``; it appends the frames to send to :attr:`SyncEngine.outbox` and sets
  :attr:`SyncEngine.reconnect_requested` when the connection must be re-established;
* it drives a :class:`DocumentAdapter` (apply a snapshot, apply changes, serialize local
  changes, produce the snapshot content, deliver ephemeral content);
* local changes go in with :meth:`SyncEngine.add_changes` and out with
  :meth:`SyncEngine.flush` (up to :data:`MAX_UPDATES_IN_FLIGHT` updates in flight; the relay
  saves and acknowledges one connection's updates in clock order, so changes made while that
  many are unacknowledged are batched into the next update).

Error handling follows the reference: some errors fail the document (state ``failed``,
no reconnect), others are recorded and the message is ignored; both kinds are kept in
:attr:`SyncEngine.errors` (newest first, at most 20). During the initial load every error
fails the document. Ephemeral errors are kept separately (also at most 20 each).

Stricter than the reference: updates are checked against the document id (213), a
replayed ephemeral session proof cannot reset a peer's counter (see
:class:`~secsync_jupyter.protocol.EphemeralSession`), the changes of a snapshot in flight are
kept across a reconnect, and a frame that is not a JSON object is recorded and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..protocol import (
    CreationError,
    EphemeralError,
    EphemeralMessage,
    EphemeralSession,
    ParseError,
    ProtocolError,
    SigningKeyPair,
    Snapshot,
    SnapshotError,
    SnapshotProofChainEntry,
    Update,
    create_initial_snapshot,
    create_snapshot,
    create_update,
    generate_id,
    is_valid_ancestor_snapshot,
    loads,
    parse_snapshot_proof_chain,
    snapshot_ciphertext_hash,
    verify_and_decrypt_snapshot,
    verify_and_decrypt_update,
)
from ..protocol.membership import (
    Entry,
    LogHead,
    MembershipError,
    MembershipState,
    create_reader_proof,
    extend_log,
    is_log_doc_id,
    parse_entry,
    parse_log_head,
    verify_entry,
    verify_log,
)
from .heads import (
    HEADS_GRACE_SECONDS,
    HEADS_INTERVAL_SECONDS,
    HEADS_MIN_SPACING_SECONDS,
    HEADS_PREFIX,
    Claim,
    PeerHeads,
    Remembered,
    decode_heads,
    encode_heads,
    member_positions,
    remembered_from_json,
)
from .precheck import PARALLEL_THRESHOLD, Precheck, PrecheckBasis, Rejected, Unparsable

__all__ = [
    "HEADS_FIELD",
    "LOG_HEAD_FIELD",
    "MAX_ERRORS",
    "MAX_HEADS",
    "MAX_UPDATES_IN_FLIGHT",
    "DocumentAdapter",
    "KnownSnapshot",
    "SnapshotPolicyInfo",
    "SyncEngine",
    "backoff_delay",
    "default_snapshot_policy",
]

#: at most this many errors are kept per kind (newest first)
MAX_ERRORS = 20
#: a snapshot rejected this many times in a row makes the engine reconnect
MAX_SNAPSHOT_SAVE_FAILURES = 5
#: an update rejected this many times in a row makes the engine reconnect (as the browser)
MAX_UPDATE_SAVE_FAILURES = 5
#: at most this many of our updates are sent and not yet acknowledged (both clients)
MAX_UPDATES_IN_FLIGHT = 16
#: an update names at most this many other authors' clocks in its heads (both clients)
MAX_HEADS = 64
#: the public-data field of the heads our clients write: ``{position: clock}`` in a document
#: with a membership log (authors by member position: the ``seq`` of the log entry that first
#: made the author a member, as a decimal string), ``{"clocks": {pubKey: clock}}`` without one
#: (``"log"`` is reserved)
HEADS_FIELD = "heads"
#: the public-data field naming the membership-log head a message was written under
LOG_HEAD_FIELD = "logHead"
#: roles that may write snapshots and updates
WRITER_ROLES = ("editor", "admin")
#: the longest wait between two connection attempts, in seconds (both clients)
RECONNECT_DELAY_CAP = 10.0


def backoff_delay(retries: int, cap: float = RECONNECT_DELAY_CAP) -> float:
    """Wait before connection attempt ``retries + 1``: 100 ms · 1.8^n (n capped at 13),
    at most ``cap`` seconds — the same rule as the browser client."""
    return min(cap, 0.1 * 1.8 ** min(retries, 13))


# connection states
CONNECTING = "connecting"
CONNECTED = "connected"
DISCONNECTED = "disconnected"
FAILED = "failed"
NO_ACCESS = "no-access"
CLOSED = "closed"

# document decryption states (reference names)
PENDING = "pending"
PARTIAL = "partial"
COMPLETE = "complete"

# errors that make the client reconnect when received on a live connection
_RECONNECT_CODES = ("SECSYNC_ERROR_112", "SECSYNC_ERROR_115")
# snapshot verification errors that fail the document (others are ignored)
_SNAPSHOT_FATAL = ("SECSYNC_ERROR_100", "SECSYNC_ERROR_101", "SECSYNC_ERROR_102")
# update verification errors that are ignored (others fail the document)
_UPDATE_IGNORED = (
    "SECSYNC_ERROR_211",
    "SECSYNC_ERROR_212",
    "SECSYNC_ERROR_213",
    "SECSYNC_ERROR_214",
    "SECSYNC_ERROR_215",
)


class DocumentAdapter(Protocol):
    """What the engine needs from the document (e.g. a pycrdt ``Doc``).

    ``deserialize_changes`` must be a pure function of its input (it may run off the
    event-loop thread); every other method is called on the engine's thread.
    """

    def apply_snapshot(self, content: bytes) -> None: ...

    def apply_changes(self, changes: list[Any]) -> None: ...

    def serialize_changes(self, changes: list[Any]) -> bytes: ...

    def deserialize_changes(self, data: bytes) -> list[Any]: ...

    def snapshot_content(self) -> bytes: ...

    def apply_ephemeral(self, content: bytes, author: str) -> None: ...

    # optional: ``merge_changes(changes) -> changes`` combines pending local changes into
    # fewer (Yjs: one merged update) before they are serialized into an update


@dataclass(frozen=True)
class SnapshotPolicyInfo:
    """What a snapshot policy sees when local changes are about to be sent."""

    active_snapshot_id: str | None
    #: updates accepted on the active snapshot (own and others')
    updates_since_snapshot: int
    #: bytes of update ciphertext (base64 text) accepted on the active snapshot
    update_bytes_since_snapshot: int
    #: number of local changes waiting to be sent
    pending_changes: int


def default_snapshot_policy(info: SnapshotPolicyInfo) -> bool:
    """A snapshot after 300 updates or 1 MB of update ciphertext, whichever comes first."""
    return info.updates_since_snapshot >= 300 or info.update_bytes_since_snapshot >= 1_000_000


@dataclass
class KnownSnapshot:
    """A snapshot the client already has (``knownSnapshotInfo`` in the reference)."""

    snapshot_id: str
    snapshot_ciphertext_hash: str
    parent_snapshot_proof: str
    update_clocks: dict[str, int] = field(default_factory=dict)
    #: updates / bytes accepted on it (for the snapshot policy; not sent anywhere)
    updates_count: int = 0
    updates_bytes: int = 0
    #: documents with a membership log: the ``logHead.seq`` the snapshot was written under,
    #: and per author the highest ``logHead.seq`` of its updates accepted on it (a write
    #: never claims an older membership than the one it was built on)
    log_seq: int = -1
    update_log_seqs: dict[str, int] = field(default_factory=dict)
    #: issue 12: the key epoch of the snapshot (``publicData.epoch``, absent: 0)
    epoch: int = 0

    @property
    def proof_entry(self) -> SnapshotProofChainEntry:
        return SnapshotProofChainEntry(
            self.snapshot_id, self.snapshot_ciphertext_hash, self.parent_snapshot_proof
        )

    @classmethod
    def of(cls, snapshot: Snapshot) -> KnownSnapshot:
        return cls(
            snapshot.public_data.snapshot_id,
            snapshot_ciphertext_hash(snapshot),
            snapshot.public_data.parent_snapshot_proof,
        )

    def copy(self) -> KnownSnapshot:
        return KnownSnapshot(
            self.snapshot_id,
            self.snapshot_ciphertext_hash,
            self.parent_snapshot_proof,
            dict(self.update_clocks),
            self.updates_count,
            self.updates_bytes,
            self.log_seq,
            dict(self.update_log_seqs),
            self.epoch,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshotId": self.snapshot_id,
            "snapshotCiphertextHash": self.snapshot_ciphertext_hash,
            "parentSnapshotProof": self.parent_snapshot_proof,
            "updateClocks": dict(self.update_clocks),
            **({"epoch": self.epoch} if self.epoch else {}),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> KnownSnapshot:
        clocks = obj.get("updateClocks") or {}
        if not all(isinstance(k, str) and type(v) is int for k, v in clocks.items()):
            raise ValueError("updateClocks must map strings to integers")
        return cls(
            str(obj["snapshotId"]),
            str(obj["snapshotCiphertextHash"]),
            str(obj["parentSnapshotProof"]),
            dict(clocks),
            sum(c + 1 for c in clocks.values()),
            epoch=obj["epoch"] if type(obj.get("epoch")) is int else 0,
        )


@dataclass
class _UpdateInFlight:
    snapshot_id: str
    clock: int
    changes: list[Any]
    size: int
    #: the clocks its heads named (recorded as named once it is acknowledged)
    heads: dict[str, int] = field(default_factory=dict)


@dataclass
class _SnapshotInFlight:
    info: KnownSnapshot
    parent_snapshot_id: str
    changes: list[Any]


class _Fail(Exception):
    """An error that fails the document."""

    def __init__(self, error: ProtocolError):
        super().__init__(str(error))
        self.error = error


class _Ignore(Exception):
    """An error that is recorded; the message is ignored."""

    def __init__(self, error: ProtocolError):
        super().__init__(str(error))
        self.error = error


def _err(code: str, detail: str | None = None) -> ProtocolError:
    return ProtocolError(detail, code=code)


def _frame(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class SyncEngine:
    """Sans-IO Secsync client state machine for one document."""

    def __init__(
        self,
        doc_id: str,
        key: bytes | Callable[[KnownSnapshot | None], bytes],
        adapter: DocumentAdapter,
        signing_key: SigningKeyPair,
        *,
        snapshot_policy: Callable[[SnapshotPolicyInfo], bool] | None = None,
        is_valid_client: Callable[[str, Mapping[str, Any]], bool] | None = None,
        known_snapshot: KnownSnapshot | None = None,
        load_mode: str = "delta",
        pending_changes: Iterable[Any] = (),
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        write_heads: bool = False,
        known_log_head: LogHead | Mapping[str, Any] | None = None,
        log_root: Entry | Mapping[str, Any] | None = None,
        remembered: Mapping[str, Any] | None = None,
    ):
        self.doc_id = doc_id
        self._key = key
        self.adapter = adapter
        self.signing_key = signing_key
        self.pub_key = signing_key.public_key_b64
        self.snapshot_policy = snapshot_policy or default_snapshot_policy
        self.is_valid_client = is_valid_client or (lambda pub_key, public_data: True)
        self.on_event = on_event
        #: write heads into our updates' public data (off by default: the reference relay and
        #: client, secsync 0.5.0, strip unknown public-data fields unless configured for
        #: them, and then reject the signature); heads in others' updates are always checked
        self.write_heads = write_heads

        self.state = DISCONNECTED
        self.document_state = PENDING
        #: snapshot and update errors, newest first (at most 20)
        self.errors: list[ProtocolError] = []
        #: errors receiving ephemeral messages, newest first (at most 20)
        self.ephemeral_errors: list[ProtocolError] = []
        #: errors creating ephemeral messages (601), newest first (at most 20)
        self.ephemeral_authoring_errors: list[ProtocolError] = []
        #: frames to send, in order (the transport drains it)
        self.outbox: list[str] = []
        #: set when the transport must close the connection and reconnect
        self.reconnect_requested = False

        self.load_known: KnownSnapshot | None = known_snapshot
        self.load_mode = load_mode if known_snapshot is not None else "complete"
        self.snapshots: list[KnownSnapshot] = []
        self.pending: list[Any] = list(pending_changes)
        self.updates_in_flight: list[_UpdateInFlight] = []
        #: (snapshot id, clock) of updates given up after an earlier one failed, whose answers
        #: (save-failed: their clock no longer follows a saved one) are still to come
        self.updates_discarded: list[tuple[str, int]] = []
        self.snapshot_in_flight: _SnapshotInFlight | None = None
        self.local_clock = -1
        self.snapshot_save_failures = 0
        self.update_save_failures = 0
        self.snapshot_requested = False
        self.ephemeral: EphemeralSession | None = None
        self._loaded_once = False
        #: (author, clock) pairs named by heads that were missing and asked for again with a
        #: complete reload; the same pair missing again means the relay served the document
        #: incompletely
        self.heads_missing_asked: set[tuple[str, int]] = set()
        #: the next connection reloads completely (all updates of the active snapshot)
        self.heads_reload = False
        #: (snapshot id, {author: clock}): what our acknowledged updates' heads named on it
        #: (the next update names only the clocks that advanced since)
        self._heads_named: tuple[str, dict[str, int]] = ("", {})
        #: set when a missing update still did not come after a complete reload
        self.served_incompletely = False
        #: what the latest ``document`` frame held (for diagnostics and tests)
        self.last_document: dict[str, Any] | None = None

        # ---- membership log (documents whose id is ``m1_…``; docs/protocol.md)
        #: this document has a membership log (its id is bound to the log's root)
        self.has_log = is_log_doc_id(doc_id)
        if self.has_log:
            # decided for everyone (issue 13): documents with a log always carry heads
            self.write_heads = True
        #: the membership at the head of the log this client verified (``None``: not yet)
        self.log: MembershipState | None = None
        #: the latest head this client verified (also remembered across reloads: a log that
        #: does not contain it is a rollback or a fork, 718)
        self.known_log_head: LogHead | None = None
        if known_log_head is not None:
            self.known_log_head = (
                known_log_head
                if isinstance(known_log_head, LogHead)
                else parse_log_head(dict(known_log_head))
            )
        #: the root entry of a log this client created, until the relay saved it
        self.log_root_pending: Entry | None = None
        if log_root is not None:
            if not self.has_log:
                raise ValueError("log_root is only for documents with a log (m1_… ids)")
            root = parse_entry(log_root)
            self.log = verify_log([root], doc_id)  # 706 unless it binds this id
            self.log_root_pending = root
        #: checks many entry signatures at once (``verify_log(check_signatures=…)``), e.g. in
        #: threads; set by the driver (the results are the same as one by one)
        self.check_signatures: (
            Callable[[Sequence[tuple[bytes, bytes, bytes]]], Sequence[bool]] | None
        ) = None
        #: our appended entry (other than the root) the relay has not answered yet
        self.entry_in_flight: Entry | None = None
        #: issue 12: the epoch keys (an ``epochs_client.EpochKeys``, set by the driver)
        self.epochs: Any = None
        #: the relay refused a write of ours (724): read-only until a later entry lets us write
        self.write_refused = False
        #: (state, {(author, logHead.seq): may write}) — role lookups of the current state
        self._writers: tuple[MembershipState | None, dict[tuple[str, int], bool]] = (None, {})
        #: the member positions of a verified log (heads by position): (state, by key, by pos)
        self._positions: tuple[
            MembershipState | None, dict[str, int], dict[str, tuple[int, str]]
        ] = (None, {}, {})
        #: our pending root went out on this connection (after the reader proof): a relay
        #: that serves the document without challenging us has no membership support (706)
        self._root_sent = False
        #: the entries of the verified log (JSON), kept for the remembered state
        self.log_entries: list[Any] = (
            [self.log_root_pending.to_json()] if self.log_root_pending is not None else []
        )

        # ---- issue 13, parts 2 and 3: heads between live collaborators, remembered state
        #: ids of our active snapshot and its ancestors we know, oldest first (at most 64)
        self.chain_ids: list[str] = []
        if known_snapshot is not None:
            self.chain_ids.append(known_snapshot.snapshot_id)
        #: the time the driver last gave to :meth:`tick` (seconds, any monotonic origin)
        self.now = 0.0
        #: what a peer has seen must reach us within this time (s, connected and loaded)
        self.heads_grace = HEADS_GRACE_SECONDS
        #: our heads go out at least this often (s), at most once a second when they changed
        self.heads_interval = HEADS_INTERVAL_SECONDS
        #: per peer (public key) its latest heads
        self.peer_heads: dict[str, PeerHeads] = {}
        #: what peers have seen that has not reached us yet (see :meth:`tick`)
        self.claims: list[Claim] = []
        #: what was already reported (805 / 806 once per snapshot and author, peer snapshot,
        #: log entry)
        self._heads_reported: set[tuple[str, ...]] = set()
        self._heads_sent_at: float | None = None
        self._heads_sent: bytes | None = None
        #: our heads changed in a way peers should hear about soon (an acknowledged write, a
        #: new peer)
        self.heads_dirty = False
        #: the state this client verified in an earlier load (checked by the first load: 804)
        self.remembered: Remembered | None = None
        #: set when the first load did not descend from the remembered state (804)
        self.rolled_back = False
        #: why the remembered state given could not be adopted (807; ``None``: it was, or
        #: none was given): this load is then a first load
        self.remembered_damaged: str | None = None
        if remembered is not None:
            try:
                self._adopt_remembered(remembered, known_log_head is None)
            except Exception as exc:  # damaged local data: any failure to read it
                # nothing of it was taken (_adopt_remembered commits only at its end); no
                # event while the engine is being built: the error is in ``errors``
                self._push(self.errors, self._remembered_error(str(exc)))

    def _remembered_error(self, detail: str) -> ProtocolError:
        self.remembered_damaged = detail
        return _err(
            "SECSYNC_ERROR_807",
            f"{detail}; it was not used: this load is checked from scratch (the whole log, no"
            " rollback check)",
        )

    def remembered_unusable(self, detail: str) -> None:
        """The driver could not read the stored remembered state at all (e.g. not JSON):
        recorded like a remembered state the engine cannot adopt (807, not fatal); the load is
        a first load. Call before connecting, without ``remembered=``."""
        if self.remembered is not None or self._loaded_once:
            raise ValueError("remembered_unusable: a remembered state was already adopted")
        self._record(self._remembered_error(f"remembered state of {self.doc_id}: {detail}"))

    def _adopt_remembered(self, obj: Mapping[str, Any], use_log_head: bool) -> None:
        """Take the state verified in an earlier load (``remembered_state()`` then): its
        verified log becomes ours (only the entries after its head are verified on load: the
        relay is asked for the delta), its snapshot and clocks are what the first load must
        descend from (804), its log head what every log must contain (718). Raises (nothing
        taken) when it cannot be adopted: the caller records 807."""
        prefix = f"remembered state of {self.doc_id}"
        try:
            remembered = remembered_from_json(obj)
            if remembered.snapshot is not None:
                KnownSnapshot.from_json(remembered.snapshot)  # shape checked
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{prefix}: {exc}") from exc
        head = remembered.log_head
        if head is not None and not self.has_log:
            raise ValueError(f"{prefix}: a log head without a log")
        log_state: MembershipState | None = None
        if self.has_log and remembered.log and self.log is None:
            # our own file of entries verified before: their structure, chain and authority
            # are checked again, not their signatures (the point is to skip them)
            try:
                log_state = verify_log(
                    remembered.log, self.doc_id, check_signatures=lambda items: [True] * len(items)
                )
            except MembershipError as exc:
                raise ValueError(f"{prefix}: log: {exc}") from exc
            if head is not None and (
                head.seq > log_state.head.seq or log_state.hashes[head.seq] != head.hash
            ):
                raise ValueError(f"{prefix}: logHead not in its log")
        # adopted: nothing above changed the engine
        if remembered.snapshot is not None:
            self.chain_ids.append(remembered.snapshot["snapshotId"])
        if log_state is not None:
            self.log = log_state
            self.log_entries = list(remembered.log)
        if use_log_head and head is not None:
            if self.log is not None and self.log.head.seq > head.seq:
                head = self.log.head
            self.known_log_head = head
        self.remembered = remembered

    def remembered_state(self) -> dict[str, Any] | None:
        """What to remember of this document for the next load (``remembered=``): the active
        snapshot with every author's clock on it, the verified log head and log. ``None``
        while nothing verified is at hand, or after the load was found rolled back (804: the
        earlier state stays the one to remember)."""
        if self.rolled_back or self.document_state != COMPLETE or self.state == FAILED:
            return None
        active = self.active
        out: dict[str, Any] = {
            "snapshot": active.to_json() if active is not None else None,
            "logHead": self.log.head.to_json() if self.log is not None else None,
        }
        if self.log is not None and len(self.log_entries) == self.log.head.seq + 1:
            out["log"] = [e.to_json() if isinstance(e, Entry) else e for e in self.log_entries]
        return out

    def _check_remembered(self, raw_snapshot: Any, raw_chain: Any) -> ProtocolError | None:
        """The first load against the remembered state: the same snapshot with at least the
        clocks verified before, or a snapshot that descends from it (a valid proof chain; a
        direct child must record at least those clocks). Anything else is a rollback or a
        fork of the relay's making: 804."""
        remembered = self.remembered
        if remembered is None or remembered.snapshot is None:
            return None
        known = KnownSnapshot.from_json(remembered.snapshot)
        active = self.active
        if active is None:
            return _err(
                "SECSYNC_ERROR_804",
                f"the relay served no snapshot; this client verified {known.snapshot_id} before",
            )
        if active.snapshot_id == known.snapshot_id:
            behind = [
                f"{a} {active.update_clocks.get(a, -1)} < {c}"
                for a, c in sorted(known.update_clocks.items())
                if active.update_clocks.get(a, -1) < c
            ]
            if behind:
                return _err(
                    "SECSYNC_ERROR_804",
                    f"fewer updates on snapshot {known.snapshot_id} than verified before: "
                    + ", ".join(behind),
                )
            return None
        try:
            snapshot = Snapshot.from_json(raw_snapshot)
            chain = parse_snapshot_proof_chain(raw_chain or [])
        except ParseError:
            chain = []
        if not chain or not is_valid_ancestor_snapshot(known.proof_entry, chain, snapshot):
            return _err(
                "SECSYNC_ERROR_804",
                f"snapshot {active.snapshot_id} does not descend from snapshot"
                f" {known.snapshot_id} verified before (older, or another history)",
            )
        self._note_chain([c.snapshot_id for c in chain])
        if len(chain) == 1:
            recorded = snapshot.public_data.parent_snapshot_update_clocks
            behind = [
                a
                for a, c in known.update_clocks.items()
                if type(recorded.get(a)) is not int or recorded[a] < c
            ]
            if behind:
                return _err(
                    "SECSYNC_ERROR_804",
                    f"snapshot {active.snapshot_id} records fewer updates of its parent"
                    f" {known.snapshot_id} than verified before: " + ", ".join(sorted(behind)),
                )
        return None

    def _note_chain(self, ids: Iterable[str | None]) -> None:
        """Our history grew: ``ids`` (oldest first) are ancestors of, or, our active snapshot."""
        for snapshot_id in ids:
            if not snapshot_id:
                continue
            if snapshot_id in self.chain_ids:
                self.chain_ids.remove(snapshot_id)
            self.chain_ids.append(snapshot_id)
        del self.chain_ids[:-64]

    # ------------------------------------------------------------------ helpers

    @property
    def active(self) -> KnownSnapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    @property
    def role(self) -> str | None:
        """Our role in a document with a log (``admin`` / ``editor`` / ``viewer``; ``None``:
        not a member, or no verified log yet). Always ``None`` in documents without a log."""
        return self.log.role(self.pub_key) if self.log is not None else None

    @property
    def read_only(self) -> bool:
        """A document with a log where we may not write: not (yet) an editor or admin in the
        verified log, or the relay refused our write (724). Local changes are kept, not sent."""
        return self.has_log and (self.role not in WRITER_ROLES or self.write_refused)

    @property
    def is_synced(self) -> bool:
        """Connected, loaded, and every local change acknowledged by the relay."""
        return (
            self.state == CONNECTED
            and self.document_state == COMPLETE
            and not self.pending
            and not self.updates_in_flight
            and self.snapshot_in_flight is None
            and not self.snapshot_requested
            and self.log_root_pending is None
            and self.entry_in_flight is None
        )

    @property
    def ready_to_append(self) -> bool:
        """Connected, loaded, with a verified log and no entry of ours waiting for the relay:
        a membership change (entry) may be built on ``self.log`` and appended now."""
        return (
            self.state == CONNECTED
            and self.document_state == COMPLETE
            and self.log is not None
            and self.entry_in_flight is None
            and self.log_root_pending is None
        )

    def key_for(self, info: KnownSnapshot | None) -> bytes:
        if self.epochs is not None:  # issue 12: the key of the snapshot's epoch
            return self.epochs.key_for(info)
        return self._key(info) if callable(self._key) else self._key

    def _emit(self, event: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(event, data)

    @staticmethod
    def _push(errors: list[ProtocolError], error: ProtocolError) -> None:
        errors.insert(0, error)
        del errors[MAX_ERRORS:]

    def _record(self, error: ProtocolError) -> None:
        self._push(self.errors, error)
        self._emit("error", error=error, fatal=False)

    def fail(self, error: ProtocolError) -> None:
        """Fail the document with ``error`` (e.g. an unexpected internal error)."""
        self._fail(error)

    def _fail(self, error: ProtocolError) -> None:
        self._push(self.errors, error)
        self.state = FAILED
        self._emit("error", error=error, fatal=True)
        self._emit("state", state=self.state)

    def _send(self, message: Any, extra: Mapping[str, Any] | None = None) -> None:
        wire = message.to_json()
        if extra:
            wire.update(extra)
        self.outbox.append(json.dumps(wire, separators=(",", ":"), ensure_ascii=False))

    def take_outbox(self) -> list[str]:
        frames, self.outbox = self.outbox, []
        return frames

    # --------------------------------------------------------------- connection

    def connection_params(self) -> dict[str, str]:
        """Query parameters for the next connection (besides ``sessionKey``)."""
        remembered = self.remembered.snapshot if self.remembered is not None else None
        if self.load_known is None and remembered is not None and not self._loaded_once:
            # a complete load, with the proof chain from the snapshot verified before (804)
            params = {
                "mode": "complete",
                "knownSnapshotId": remembered["snapshotId"],
                "knownSnapshotUpdateClocks": "{}",
            }
        elif self.load_known is None:
            params = {"mode": "complete"}
        else:
            params = {
                "mode": self.load_mode,
                "knownSnapshotId": self.load_known.snapshot_id,
                "knownSnapshotUpdateClocks": json.dumps(
                    self.load_known.update_clocks, separators=(",", ":")
                ),
            }
        if self.has_log and self.log is not None and self.log_root_pending is None:
            # the relay sends only the entries after this one (when it has it)
            params["knownLogSeq"] = str(self.log.head.seq)
            params["knownLogHash"] = self.log.head.hash
        return params

    def connecting(self) -> None:
        if self.state in (FAILED, NO_ACCESS, CLOSED):
            return
        self.state = CONNECTING
        self._emit("state", state=self.state)

    def connected(self) -> None:
        """The WebSocket is open: start a fresh ephemeral session and wait for the document."""
        if self.state in (FAILED, NO_ACCESS, CLOSED):
            return
        self.state = CONNECTED
        self.reconnect_requested = False
        self.document_state = PENDING
        self._root_sent = False
        self.snapshots = (
            [self.load_known.copy()]
            if self.load_known is not None and self.load_mode == "delta"
            else []
        )
        # continue our clock on the known snapshot (its updates up to there are saved)
        active = self.active
        self.local_clock = active.update_clocks.get(self.pub_key, -1) if active else -1
        try:
            self.ephemeral = EphemeralSession(
                self.doc_id, self.key_for(self.active), self.signing_key
            )
        except Exception as exc:  # no key yet: no presence on this connection
            self.ephemeral = None
            self._push(self.ephemeral_authoring_errors, _err("SECSYNC_ERROR_601", str(exc)))
        self._emit("state", state=self.state)

    def disconnected(self) -> None:
        """The connection is gone: keep every unconfirmed change and resume in delta mode."""
        if self.state in (FAILED, NO_ACCESS, CLOSED):
            return
        unconfirmed: list[Any] = []
        for upd in self.updates_in_flight:
            unconfirmed.extend(upd.changes)
        if self.snapshot_in_flight is not None:
            unconfirmed.extend(self.snapshot_in_flight.changes)
            self.snapshot_requested = True  # send it again after reconnecting
        unconfirmed.extend(self.pending)
        self.pending = unconfirmed
        self.updates_in_flight = []
        self.updates_discarded = []
        self.snapshot_in_flight = None
        self.local_clock = -1
        self.snapshot_save_failures = 0
        self.update_save_failures = 0
        self.ephemeral = None
        self.outbox = []
        if self.entry_in_flight is not None:  # its fate is unknown: the next log tells
            entry, self.entry_in_flight = self.entry_in_flight, None
            self._emit("log-entry-failed", seq=entry.seq, hash=entry.hash, code=None)
        self.document_state = PENDING
        if self.active is not None:
            self.load_known = self.active.copy()
            self.load_mode = "delta"
            if self.heads_reload:
                # ask for every update of the known snapshot again: a delta load only brings
                # those after the newest one we know, and the missing one is older
                self.load_known.update_clocks = {}
                self.load_known.updates_count = self.load_known.updates_bytes = 0
                self.load_mode = "complete"
        self.heads_reload = False
        self.state = DISCONNECTED
        self.reconnect_requested = False
        self._emit("state", state=self.state)

    def close(self) -> None:
        """Closed by the application (a failed / no-access state is kept for inspection)."""
        if self.state not in (FAILED, NO_ACCESS):
            self.state = CLOSED
        self.outbox = []
        self._emit("state", state=self.state)

    def _request_reconnect(self) -> None:
        self.reconnect_requested = True
        self._emit("reconnect")

    # ------------------------------------------------------------------ receive

    def parse_frame(self, frame: str | bytes | Mapping[str, Any]) -> Mapping[str, Any] | None:
        if isinstance(frame, Mapping):
            return frame
        try:
            obj = loads(frame, field="frame")
        except ProtocolError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            self._record(ProtocolError("the relay sent a frame that is not a typed JSON object"))
            return None
        return obj

    def receive(self, frame: str | bytes | Mapping[str, Any], precheck: Precheck | None = None):
        """Handle one frame from the relay (text, bytes or an already decoded object)."""
        if self.state != CONNECTED:
            return
        obj = self.parse_frame(frame)
        if obj is None:
            return
        kind = obj["type"]
        handler = {
            "document": self._on_document,
            "snapshot": self._on_snapshot,
            "snapshot-saved": self._on_snapshot_saved,
            "snapshot-save-failed": self._on_snapshot_save_failed,
            "update": self._on_update,
            "update-saved": self._on_update_saved,
            "update-save-failed": self._on_update_save_failed,
            "ephemeral-message": self._on_ephemeral,
            "document-not-found": self._on_no_access,
            "unauthorized": self._on_no_access,
            "document-error": self._on_document_error,
        }.get(kind)
        if handler is None and self.has_log:
            handler = {
                "reader-challenge": self._on_reader_challenge,
                "log-entry": self._on_log_entry,
                "log-entry-saved": self._on_log_entry_saved,
                "log-entry-failed": self._on_log_entry_failed,
                "write-refused": self._on_write_refused,
                "lockbox": self._on_lockbox,
                "lockbox-saved": self._on_lockbox,
                "lockbox-failed": self._on_lockbox,
            }.get(kind)
        if handler is None:
            self._emit("custom-message", message=obj)
            return
        if kind == "document":
            self._on_document(obj, precheck)
        else:
            handler(obj)
        if self.state == CONNECTED:
            self.flush()

    def _on_no_access(self, obj: Mapping[str, Any]) -> None:
        code = obj.get("code")
        if isinstance(code, str) and code.startswith("SECSYNC_ERROR_"):
            # e.g. 722 (not a member) or 725 (removed): terminal, with the relay's reason
            reason = obj.get("reason")
            error = _err(code, reason if isinstance(reason, str) else None)
            self._push(self.errors, error)
            self._emit("error", error=error, fatal=True)
        self.no_access(obj["type"])

    def no_access(self, reason: str) -> None:
        """Access refused (an ``unauthorized`` frame, or the transport's HTTP 401/403)."""
        if self.state in (FAILED, CLOSED):
            return
        self.state = NO_ACCESS
        self._emit("state", state=self.state, reason=reason)

    def _on_document_error(self, obj: Mapping[str, Any]) -> None:
        self.state = FAILED
        self._emit("state", state=self.state, reason="document-error")

    def _on_document(self, obj: Mapping[str, Any], precheck: Precheck | None = None) -> None:
        if self.has_log:
            # the log first: every message of the frame is checked against it
            try:
                self._process_log(obj.get("log"), obj.get("logFrom", 0))
            except _Fail as exc:
                self.document_state = FAILED
                self._fail(exc.error)
                return
            if self.state != CONNECTED:  # not a member (any more)
                return
            if self.epochs is not None:  # issue 12: our lockboxes, before any snapshot
                for error in self.epochs.open(self.log, obj.get("lockboxes")):
                    self._record(error)
            if self.ephemeral is not None:
                self._stamp_ephemeral()
        if self.ephemeral is not None:
            try:
                self._ephemeral_write_key()
                self._send(self.ephemeral.initialize())
            except ProtocolError as exc:
                self._push(self.ephemeral_authoring_errors, _err("SECSYNC_ERROR_601", str(exc)))
        self.document_state = FAILED
        snapshot = obj.get("snapshot")
        updates = obj.get("updates")
        self.last_document = {
            "snapshot": snapshot is not None,
            "updates": len(updates) if isinstance(updates, list) else 0,
            "mode": self.load_mode,
        }
        if self.has_log:
            log = obj.get("log")
            self.last_document["log"] = len(log) if isinstance(log, list) else 0
            self.last_document["logFrom"] = obj.get("logFrom", 0)
        if updates is not None and not isinstance(updates, list):
            self._fail(_err("SECSYNC_ERROR_211", "updates must be an array"))
            return
        updates = updates or []
        if self.load_mode != "delta" and snapshot is None and updates:
            self._fail(_err("SECSYNC_ERROR_100", "complete load with updates but no snapshot"))
            return
        try:
            related = self.active
            if snapshot is not None:
                related = self._process_snapshot(
                    snapshot, obj.get("snapshotProofChain") or [], self.load_known
                )
            self.document_state = PARTIAL
            if updates:
                self._process_updates(updates, related, precheck, loading=True)
        except (_Fail, _Ignore) as exc:  # during the initial load every error is fatal
            self._fail(exc.error)
            return
        if not self._loaded_once and self.remembered is not None:
            rollback = self._check_remembered(snapshot, obj.get("snapshotProofChain"))
            if rollback is not None:
                self.rolled_back = True
                self.document_state = FAILED
                self._fail(rollback)
                self._emit("rollback", detail=rollback.detail)
                return
        self.document_state = COMPLETE
        self._loaded_once = True
        for claim in self.claims:  # the relay gets a full grace period after each load
            claim.since = max(claim.since, self.now)
        self.heads_dirty = True
        self._emit("loaded")

    def _on_snapshot(self, obj: Mapping[str, Any]) -> None:
        try:
            self._process_snapshot(obj.get("snapshot"), [], self.active, live=True)
        except _Fail as exc:
            self._fail(exc.error)
        except _Ignore as exc:
            self._record(exc.error)
            if exc.error.code in _RECONNECT_CODES:
                self._request_reconnect()

    def _on_snapshot_saved(self, obj: Mapping[str, Any]) -> None:
        flight = self.snapshot_in_flight
        if flight is None or obj.get("snapshotId") != flight.info.snapshot_id:
            return
        active = self.active
        if active is not None and active.snapshot_id != flight.parent_snapshot_id:
            # another snapshot won meanwhile: send the changes again on top of it
            self.pending = flight.changes + self.pending
            self.snapshot_in_flight = None
            return
        self.snapshot_save_failures = 0
        self.snapshots = [*self.snapshots, flight.info][-3:]
        self._note_chain([flight.parent_snapshot_id, flight.info.snapshot_id])
        self.snapshot_in_flight = None
        self.local_clock = -1
        self._requeue_stale_updates()
        self.heads_dirty = True
        self._emit("snapshot-saved", snapshot_id=flight.info.snapshot_id)

    def _on_snapshot_save_failed(self, obj: Mapping[str, Any]) -> None:
        self.snapshot_save_failures += 1
        try:
            related = self.active
            if obj.get("snapshot") is not None:
                related = self._process_snapshot(
                    obj["snapshot"], obj.get("snapshotProofChain") or [], self.active
                )
            updates = obj.get("updates")
            if updates:
                if not isinstance(updates, list):
                    raise _Ignore(_err("SECSYNC_ERROR_211", "updates must be an array"))
                self._process_updates(updates, related)
        except _Fail as exc:
            self._fail(exc.error)
            return
        except _Ignore as exc:
            self._record(exc.error)
            if exc.error.code in _RECONNECT_CODES:
                self._request_reconnect()
                return
        if self.snapshot_in_flight is not None:
            self.pending = self.snapshot_in_flight.changes + self.pending
            self.snapshot_in_flight = None
        # retry (the flush after this frame sends it), at most 5 times in a row
        self.snapshot_requested = True
        if self.snapshot_save_failures >= MAX_SNAPSHOT_SAVE_FAILURES:
            self._request_reconnect()

    def _on_lockbox(self, obj: Mapping[str, Any]) -> None:
        if self.epochs is not None:
            for error in self.epochs.on_frame(self, obj):
                self._record(error)

    def _on_update(self, obj: Mapping[str, Any]) -> None:
        active = self.active
        log = self.log
        superseded = self.epochs is not None and active is not None and log is not None
        if superseded and active.epoch < log.epoch:  # issue 12: written in an older epoch
            self._record(_err("SECSYNC_ERROR_768", f"update in epoch {active.epoch}"))
            return
        try:
            self._process_updates([obj], self.active)
        except _Fail as exc:
            self._fail(exc.error)
        except _Ignore as exc:
            self._record(exc.error)

    def _on_update_saved(self, obj: Mapping[str, Any]) -> None:
        snapshot_id, clock = obj.get("snapshotId"), obj.get("clock")
        if not isinstance(snapshot_id, str) or type(clock) is not int:
            return
        if (snapshot_id, clock) in self.updates_discarded:
            # saved after all (not expected: an earlier clock failed); its changes were
            # queued again, which Yjs applies idempotently; our clock moves past it
            self.updates_discarded.remove((snapshot_id, clock))
            self._acknowledge_clock(snapshot_id, clock)
            active = self.active
            if active is not None and active.snapshot_id == snapshot_id:
                self.local_clock = max(self.local_clock, clock)
            return
        self.snapshot_save_failures = 0
        self.update_save_failures = 0
        # the relay saves one author's updates in clock order: this acknowledges every update
        # of ours in flight on that snapshot up to ``clock``
        done = [
            u for u in self.updates_in_flight if u.snapshot_id == snapshot_id and u.clock <= clock
        ]
        self._acknowledge_clock(snapshot_id, clock, done)
        self.updates_in_flight = [u for u in self.updates_in_flight if u not in done]
        for upd in done:  # what they named has reached the relay: not named again
            if self._heads_named[0] != upd.snapshot_id:
                self._heads_named = (upd.snapshot_id, {})
            named = self._heads_named[1]
            for author, c in upd.heads.items():
                named[author] = max(c, named.get(author, -1))
        self.heads_dirty = True
        self._emit("update-saved", snapshot_id=snapshot_id, clock=clock)

    def _acknowledge_clock(
        self, snapshot_id: str, clock: int, done: Sequence[_UpdateInFlight] = ()
    ) -> None:
        for info in self.snapshots:
            if info.snapshot_id == snapshot_id:
                if info.update_clocks.get(self.pub_key, -1) < clock:
                    info.update_clocks[self.pub_key] = clock
                info.updates_count += len(done)
                info.updates_bytes += sum(u.size for u in done)

    def _on_update_save_failed(self, obj: Mapping[str, Any]) -> None:
        snapshot_id, clock = obj.get("snapshotId"), obj.get("clock")
        if (snapshot_id, clock) in self.updates_discarded:
            self.updates_discarded.remove((snapshot_id, clock))  # expected: already re-queued
            return
        if not any(
            u.snapshot_id == snapshot_id and u.clock == clock for u in self.updates_in_flight
        ):
            return  # not ours (any more): nothing to retry
        self.update_save_failures += 1
        # the later updates in flight cannot be saved either (their clocks follow this one):
        # all their changes go back to the front of the pending ones, in order, and nothing is
        # sent until the relay has answered each of them (so no clock is reused meanwhile)
        changes = [c for u in self.updates_in_flight for c in u.changes]
        self.updates_discarded.extend(
            (u.snapshot_id, u.clock)
            for u in self.updates_in_flight
            if not (u.snapshot_id == snapshot_id and u.clock == clock)
        )
        self.updates_in_flight = []
        self.pending = changes + self.pending
        active = self.active
        self.local_clock = active.update_clocks.get(self.pub_key, -1) if active else -1
        if self.update_save_failures >= MAX_UPDATE_SAVE_FAILURES:
            # give up on this connection (as for snapshots): reload in delta mode, then resend
            self._request_reconnect()
            return
        if obj.get("requiresNewSnapshot") is True:
            self.snapshot_requested = True

    def _on_ephemeral(self, obj: Mapping[str, Any]) -> None:
        try:
            message = EphemeralMessage.from_json(obj)
        except ParseError:
            self._push(self.ephemeral_errors, _err("SECSYNC_ERROR_307"))
            return
        author = message.public_data.pub_key
        if self.has_log:  # a member of our verified log, naming an entry of it
            try:
                self._log_seq_of(message.public_data.raw, author, False, "SECSYNC_ERROR_304")
            except ProtocolError as exc:
                self._push(self.ephemeral_errors, exc)
                return
        else:
            try:
                valid = self.is_valid_client(author, message.public_data.raw)
            except Exception:
                valid = False
            if not valid:
                self._push(self.ephemeral_errors, _err("SECSYNC_ERROR_304"))
                return
        session = self.ephemeral
        if session is None:
            return
        before = session.peers.get(author)
        before_id = before.session_id if before is not None else None
        try:
            result = self._receive_ephemeral(session, message)
        except EphemeralError as exc:
            self._push(self.ephemeral_errors, exc)
            return
        except ProtocolError as exc:  # pragma: no cover - defensive
            self._push(self.ephemeral_errors, _err("SECSYNC_ERROR_300", str(exc)))
            return
        if result.error is not None:
            self._push(self.ephemeral_errors, result.error)
        if result.reply is not None:
            self._send(result.reply)
        peer = session.peers.get(author)
        if peer is not None and peer.session_id is not None and peer.session_id != before_id:
            self.heads_dirty = True  # a new peer (session) hears our heads soon
            self._emit("ephemeral-peer", author=author)
        if result.content is not None and result.content.startswith(HEADS_PREFIX):
            try:
                heads = decode_heads(result.content)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                self._push(self.ephemeral_errors, _err("SECSYNC_ERROR_307", f"heads: {exc}"))
                return
            self._on_peer_heads(author, heads)
            return
        if result.content is not None:
            try:
                self.adapter.apply_ephemeral(result.content, author)
            except Exception as exc:
                self._push(self.ephemeral_errors, _err("SECSYNC_ERROR_300", str(exc)))

    # ---------------------------------------------------------- membership log

    def _process_log(self, log: Any, log_from: Any) -> None:
        """Verify the ``log`` of a ``document`` frame: the whole log from the root
        (``logFrom`` 0; it must contain the head verified before, 718) or the entries after
        our head (``logFrom`` = head + 1). Any error fails the load."""
        if log is None:
            log = []
        if not isinstance(log, list):
            raise _Fail(MembershipError("expected an array", code="SECSYNC_ERROR_701", field="log"))
        if type(log_from) is not int or log_from < 0:
            raise _Fail(
                MembershipError("expected an integer", code="SECSYNC_ERROR_701", field="logFrom")
            )
        state = self.log
        try:
            if log_from == 0:
                if not log and self.log_root_pending is not None and self._root_sent:
                    return  # our new log, sent after the proof on this connection, not yet saved
                state = verify_log(
                    log,
                    self.doc_id,
                    known_head=self.known_log_head,
                    check_signatures=self.check_signatures,
                )
                entries = list(log)
            elif state is None or log_from != state.head.seq + 1:
                raise MembershipError(
                    f"the log continues at {log_from}, not after the head this client has",
                    code="SECSYNC_ERROR_701",
                    field="logFrom",
                )
            else:
                state = extend_log(state, log, check_signatures=self.check_signatures)
                entries = [*self.log_entries, *log]
        except MembershipError as exc:
            raise _Fail(exc)
        self.log_entries = entries
        root = self.log_root_pending
        if root is not None and state.hashes[0] == root.hash:
            self.log_root_pending = None  # the relay has it
        self._set_log(state)

    def _set_log(self, state: MembershipState) -> None:
        """Adopt a verified state; react to our own role changing (removed: access revoked,
        terminal; a new entry lets us write again after a 724)."""
        before = self.log
        old_role = self.role
        self.log = state
        self.known_log_head = state.head
        role = self.role
        if before is not None and before.head == state.head:
            return
        if role in WRITER_ROLES and before is not None and before.head != state.head:
            self.write_refused = False
        self._stamp_ephemeral()
        self._emit("membership", seq=state.head.seq, hash=state.head.hash, role=role)
        if role is None:
            if old_role is not None:
                code = "SECSYNC_ERROR_725"
                detail = f"removed from the document by log entry {state.head.seq}"
            else:
                code = "SECSYNC_ERROR_722"
                detail = f"not a member of the document (log entry {state.head.seq})"
            error = _err(code, f"{detail}; your key: {self.pub_key}")
            self._push(self.errors, error)
            self._emit("error", error=error, fatal=True)
            self.no_access("removed" if old_role is not None else "not-a-member")

    def _ephemeral_write_key(self) -> None:
        """Issue 12: our ephemeral messages are in the key of our active snapshot's epoch (the
        snapshot our updates reference; before any, the newest key we hold), so presence moves
        to the new key with the first snapshot of a new epoch. Raises 766 without a key."""
        if self.epochs is not None and self.ephemeral is not None:
            self.ephemeral.key = self.key_for(self.active)

    def _receive_ephemeral(self, session: EphemeralSession, message: EphemeralMessage):
        """``session.receive``; issue 12: in the key of our active snapshot's epoch first, then
        every other epoch key we hold, newest first (a peer one snapshot behind or ahead of
        ours across a rotation; its author was checked against the log). A reply (session
        proof) goes out in the key that opened the message."""
        if self.epochs is None:
            return session.receive(message)
        ring = self.epochs.keyring
        first = self.active.epoch if self.active is not None else ring.newest
        epochs = ([first] if first is not None and first in ring else []) + [
            e for e in reversed(ring.epochs) if e != first
        ]
        error = EphemeralError(code="SECSYNC_ERROR_301", field="ciphertext")
        for epoch in epochs:
            session.key = ring.key(epoch)
            try:
                return session.receive(message)
            except EphemeralError as exc:
                if exc.code != "SECSYNC_ERROR_301":
                    raise
                error = exc
        raise error

    def _stamp_ephemeral(self) -> None:
        """Our ephemeral messages name the log head we verified (a private field of the
        session: its public data is the same dict for every message it makes)."""
        if self.ephemeral is not None and self.log is not None:
            self.ephemeral._public_data[LOG_HEAD_FIELD] = self.log.head.to_json()

    def _log_seq_of(self, public_data: Mapping[str, Any], author: str, write: bool, code: str):
        """The ``logHead.seq`` of a message, if its ``logHead`` is an entry of our verified log
        and its author may write (``write``: editor or admin at that entry) or is a member
        (ephemeral messages: at our head). Otherwise ``code`` (114 / 215 / 304)."""
        state = self.log
        if state is None:
            raise _err(code, "no verified membership log")
        value = public_data.get(LOG_HEAD_FIELD)
        seq = value.get("seq") if type(value) is dict and len(value) == 2 else None
        if (
            type(seq) is not int  # the fast path needs exactly {seq, hash} naming an entry
            or not 0 <= seq <= state.head.seq
            or state.hashes[seq] != value.get("hash")
        ):
            try:
                head = parse_log_head(value)
            except MembershipError as exc:
                raise _err(code, f"publicData.logHead: {exc.detail}")
            if head.seq > state.head.seq or state.hashes[head.seq] != head.hash:
                raise _err(code, f"publicData.logHead: entry {head.seq} is not in the verified log")
            seq = head.seq  # e.g. a seq written as 1.0
        if write:
            cache = self._writers
            if cache[0] is not state:
                cache = self._writers = (state, {})
            allowed = cache[1].get((author, seq))
            if allowed is None:
                role = state.role_at(author, seq)
                allowed = cache[1][(author, seq)] = role in WRITER_ROLES
                if not allowed:
                    raise _err(code, f"the author is {role or 'not a member'} at entry {seq}")
            elif not allowed:
                raise _err(code, f"the author may not write at entry {seq}")
        elif author not in state.members:
            raise _err(code, "the author is not a member")
        return seq

    def _on_reader_challenge(self, obj: Mapping[str, Any]) -> None:
        nonce = obj.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            self._record(_err("SECSYNC_ERROR_720", "reader-challenge without a nonce"))
            return
        self.outbox.append(_frame(create_reader_proof(self.signing_key, self.doc_id, nonce)))
        if self.log_root_pending is not None:  # a new document: its root first
            self.outbox.append(
                _frame({"type": "log-entry", "entry": self.log_root_pending.to_json()})
            )
            self._root_sent = True

    def append_entry(self, entry: Entry | Mapping[str, Any], lockboxes: Any = None) -> None:
        """Send one membership entry (made with ``create_entry`` on :attr:`log`); the relay
        answers ``log-entry-saved`` (event ``log-entry-saved``, the log moves on) or
        ``log-entry-failed`` (event ``log-entry-failed`` with the code). One at a time."""
        if not self.has_log or self.log is None:
            raise RuntimeError("this document has no verified membership log")
        if self.state != CONNECTED or self.document_state != COMPLETE:
            raise RuntimeError("not connected")
        if self.entry_in_flight is not None or self.log_root_pending is not None:
            raise RuntimeError("another membership entry is waiting for the relay")
        parsed = parse_entry(entry)
        verify_entry(self.log, parsed)  # raises the rule's code (it must fit our head)
        self.entry_in_flight = parsed
        frame: dict[str, Any] = {"type": "log-entry", "entry": parsed.to_json()}
        if lockboxes:  # issue 12: stored with the entry, atomically
            frame["lockboxes"] = [getattr(lb, "to_json", lambda b=lb: b)() for lb in lockboxes]
        self.outbox.append(_frame(frame))

    def _on_log_entry(self, obj: Mapping[str, Any]) -> None:
        """Another member's entry, accepted by the relay: verified here (never taken on the
        relay's word). A rejected one is recorded and ignored (709, entries missing: reload)."""
        if self.log is None:
            self._record(_err("SECSYNC_ERROR_700", "log-entry before the log"))
            return
        try:
            state = verify_entry(self.log, obj.get("entry"))
        except MembershipError as exc:
            if exc.code == "SECSYNC_ERROR_708":
                return  # already have it (e.g. sent in the document frame and again live)
            self._record(exc)
            if exc.code == "SECSYNC_ERROR_709":
                self._request_reconnect()
            return
        self.log_entries.append(obj.get("entry"))
        self._set_log(state)

    def _on_log_entry_saved(self, obj: Mapping[str, Any]) -> None:
        seq, digest = obj.get("seq"), obj.get("hash")
        root = self.log_root_pending
        if root is not None and seq == 0 and digest == root.hash:
            self.log_root_pending = None
            self._emit("log-entry-saved", seq=0, hash=root.hash)
            return
        entry = self.entry_in_flight
        if entry is None or seq != entry.seq or digest != entry.hash or self.log is None:
            return
        self.entry_in_flight = None
        if entry.seq <= self.log.head.seq and self.log.hashes[entry.seq] == entry.hash:
            # the relay also sent it as a live log-entry first: already verified and applied
            self._emit("log-entry-saved", seq=entry.seq, hash=entry.hash)
            return
        try:
            state = verify_entry(self.log, entry)
        except MembershipError as exc:  # the log moved under it: cannot have been saved
            self._record(exc)
            self._emit("log-entry-failed", seq=entry.seq, hash=entry.hash, code=exc.code)
            return
        self.log_entries.append(entry.to_json())
        self._set_log(state)
        self._emit("log-entry-saved", seq=entry.seq, hash=entry.hash)

    def _on_log_entry_failed(self, obj: Mapping[str, Any]) -> None:
        seq, code = obj.get("seq"), obj.get("code")
        code = code if isinstance(code, str) else "SECSYNC_ERROR_700"
        root = self.log_root_pending
        if root is not None and seq == 0:
            if code == "SECSYNC_ERROR_708":  # stored before (our earlier attempt)
                self.log_root_pending = None
                self._emit("log-entry-saved", seq=0, hash=root.hash)
            else:
                error = _err(code, "the relay refused the root of our new log")
                self._fail(error)
            return
        entry = self.entry_in_flight
        if entry is None or (seq is not None and seq != entry.seq):
            return  # (``seq`` null: the relay could not parse it — ours is the one in flight)
        self.entry_in_flight = None
        log = obj.get("log")
        if code in ("SECSYNC_ERROR_707", "SECSYNC_ERROR_709") and isinstance(log, list):
            # someone appended first, or we miss entries: verify the relay's entries ourselves
            try:
                self._extend_with(log)
            except MembershipError as exc:
                self._record(exc)
        self._emit("log-entry-failed", seq=entry.seq, hash=entry.hash, code=code)

    def _extend_with(self, entries: list[Any]) -> None:
        """Entries from the relay that may overlap our head: the ones we have (same hash)
        are skipped, the rest must extend the log."""
        state = self.log
        assert state is not None
        fresh = []
        for raw in entries:
            entry = parse_entry(raw)
            if entry.seq <= state.head.seq and state.hashes[entry.seq] == entry.hash and not fresh:
                continue
            fresh.append(entry)
        if fresh:
            extended = extend_log(state, fresh)
            self.log_entries.extend(e.to_json() for e in fresh)
            self._set_log(extended)

    def _on_write_refused(self, obj: Mapping[str, Any]) -> None:
        """The relay refused a write of ours (724: not an editor or admin at its head): stop
        writing. The unconfirmed changes are kept (sent again if a later entry lets us write)."""
        of = obj.get("of")
        code = obj.get("code") if isinstance(obj.get("code"), str) else "SECSYNC_ERROR_724"
        if of == "ephemeral":
            self._push(self.ephemeral_errors, _err(code, "the relay dropped our ephemeral message"))
            return
        if self.write_refused and not self.updates_in_flight and self.snapshot_in_flight is None:
            return  # an answer to a write already given up
        if self._superseded_write(obj, code):  # issue 12: a rotation raced it
            return
        unconfirmed = [c for u in self.updates_in_flight for c in u.changes]
        if self.snapshot_in_flight is not None:
            unconfirmed += self.snapshot_in_flight.changes
            self.snapshot_in_flight = None
        self.pending = unconfirmed + self.pending
        self.updates_in_flight = []
        self.updates_discarded = []
        active = self.active
        self.local_clock = active.update_clocks.get(self.pub_key, -1) if active else -1
        first = not self.write_refused
        self.write_refused = True
        if first:
            self._record(_err(code, f"the relay refused our {of}: read-only"))

    def _superseded_write(self, obj: Mapping[str, Any], code: str) -> bool:
        """Issue 12: a write of ours in an epoch our log has moved past (a rotation stored
        before it, 767 / 768) is not a loss of rights: its changes go out again, the new epoch
        beginning with a snapshot (once we hold its key). Answers to writes no longer in
        flight are dropped. False: not such a refusal."""
        if code not in ("SECSYNC_ERROR_767", "SECSYNC_ERROR_768") or self.epochs is None:
            return False
        flight, sid, active = self.snapshot_in_flight, obj.get("snapshotId"), self.active
        if obj.get("of") == "update":
            if sid not in {u.snapshot_id for u in self.updates_in_flight}:
                return True  # updates given up already (their snapshot was superseded)
            written = active.epoch if active is not None else 0
        else:
            if flight is None or flight.info.snapshot_id != sid:
                return True
            written = flight.info.epoch
        if self.log is None or self.log.epoch <= written:
            return False  # our log is behind the relay's: read-only until the entry comes
        unconfirmed = [c for u in self.updates_in_flight for c in u.changes]
        if flight is not None:
            unconfirmed += flight.changes
            self.snapshot_in_flight = None
        self.pending = unconfirmed + self.pending
        self.updates_in_flight = []
        self.updates_discarded = []
        active = self.active
        self.local_clock = active.update_clocks.get(self.pub_key, -1) if active else -1
        self.snapshot_requested = True
        self._record(_err(code, f"our write in epoch {written} came after a rotation: rewritten"))
        return True

    # ------------------------------------------------------- snapshot / updates

    def _process_snapshot(
        self, raw: Any, raw_chain: Any, known: KnownSnapshot | None, *, live: bool = False
    ) -> KnownSnapshot | None:
        """Verify and apply a snapshot; returns the snapshot info the updates refer to.
        ``live``: it arrives on a connection that has delivered every update on ``known``
        (the active snapshot) so far, so its parent clocks must name none we lack (802)."""
        try:
            snapshot = Snapshot.from_json(raw)
        except ParseError as exc:
            raise _Ignore(_err("SECSYNC_ERROR_110", exc.detail))
        try:
            chain = parse_snapshot_proof_chain(raw_chain)
        except ParseError as exc:
            raise _Ignore(_err("SECSYNC_ERROR_115", exc.detail))
        pd = snapshot.public_data
        log_seq = -1
        if self.has_log:  # the verified log decides who may write (is_valid_client is not used)
            try:
                log_seq = self._log_seq_of(pd.raw, pd.pub_key, True, "SECSYNC_ERROR_114")
            except ProtocolError as exc:
                raise _Ignore(exc)
        else:
            try:
                allowed = self.is_valid_client(pd.pub_key, pd.raw)
            except Exception as exc:
                raise _Fail(_err("SECSYNC_ERROR_104", str(exc)))
            if not allowed:
                raise _Ignore(_err("SECSYNC_ERROR_114"))
        info = KnownSnapshot.of(snapshot)
        info.log_seq = log_seq
        if known is not None and known.proof_entry == info.proof_entry:
            info.epoch = known.epoch
            # already applied (e.g. a delta load whose snapshot is still the active one)
            active = self.active
            if active is None or active.snapshot_id != info.snapshot_id:
                self.snapshots = [*self.snapshots, known.copy()][-3:]
            self._note_chain([info.snapshot_id])
            return self.active
        if known is not None and log_seq < known.log_seq:
            raise _Ignore(
                _err(
                    "SECSYNC_ERROR_114",
                    f"publicData.logHead: entry {log_seq} is older than the parent snapshot's"
                    f" ({known.log_seq})",
                )
            )
        if self.epochs is not None and self.log is not None:  # issue 12: 766-769
            try:
                info.epoch = self.epochs.check_snapshot(self.log, pd.raw, log_seq, known, live)
            except ProtocolError as exc:
                raise _Ignore(exc)
        ancestor = False
        parent_clock: int | None = None
        if known is not None and chain:
            if not is_valid_ancestor_snapshot(known.proof_entry, chain, snapshot):
                raise _Ignore(_err("SECSYNC_ERROR_115"))
            ancestor = True
        elif known is not None:
            parent_clock = known.update_clocks.get(self.pub_key)
        try:
            key = self.key_for(info)
        except Exception as exc:
            raise _Fail(_err("SECSYNC_ERROR_103", str(exc)))
        try:
            content = verify_and_decrypt_snapshot(
                snapshot,
                key,
                self.doc_id,
                self.pub_key,
                None if ancestor else (known.proof_entry if known is not None else None),
                None if ancestor else parent_clock,
            )
        except SnapshotError as exc:
            if exc.code in _SNAPSHOT_FATAL:
                raise _Fail(exc)
            raise _Ignore(exc)
        except ProtocolError as exc:  # pragma: no cover - defensive
            raise _Fail(_err("SECSYNC_ERROR_100", str(exc)))
        if ancestor and len(chain) == 1:
            self._check_own_updates_kept(snapshot, known)
        withheld = (
            self._missing(known, pd.parent_snapshot_update_clocks, "")
            if live and known is not None and not ancestor
            else []
        )
        try:
            self.adapter.apply_snapshot(content)
        except Exception as exc:
            raise _Fail(_err("SECSYNC_ERROR_105", str(exc)))
        if self.epochs is not None:
            self.epochs.accepted(info.epoch)
        self.snapshots = [*self.snapshots, info][-3:]
        self._note_chain([c.snapshot_id for c in chain] if ancestor else [pd.parent_snapshot_id])
        self._note_chain([info.snapshot_id])
        self.local_clock = -1
        self._requeue_stale_updates()
        self._emit("remote-change", kind="snapshot", snapshot_id=info.snapshot_id)
        if withheld:  # its content has them: reported, nothing to ask for
            self._withheld("SECSYNC_ERROR_802", withheld, reload=False)
        return info

    def _check_own_updates_kept(self, snapshot: Snapshot, parent: KnownSnapshot) -> None:
        """A snapshot that arrives with a proof chain from ``parent`` (its direct child) must
        record at least our acknowledged clock on it (102), as one without a chain must: a
        relay must not drop a saved update of ours by snapshotting around it. (At least, not
        exactly: an update still in flight when the connection dropped may have been saved.)
        Behind a longer chain the snapshot that had to record it is not at hand."""
        own = parent.update_clocks.get(self.pub_key)
        if own is None:
            return
        recorded = snapshot.public_data.parent_snapshot_update_clocks.get(self.pub_key)
        if type(recorded) is not int or recorded < own:
            raise _Fail(_err("SECSYNC_ERROR_102", "publicData.parentSnapshotUpdateClocks"))

    def _requeue_stale_updates(self) -> None:
        """Updates in flight on a snapshot that is no longer active can never be saved:
        their changes go back to the front of the pending ones (sent on the new snapshot)."""
        active_id = self.active.snapshot_id if self.active is not None else None
        # answers still due for updates on an older snapshot no longer hold anything back
        self.updates_discarded = [d for d in self.updates_discarded if d[0] == active_id]
        stale = [u for u in self.updates_in_flight if u.snapshot_id != active_id]
        if not stale:
            return
        self.updates_in_flight = [u for u in self.updates_in_flight if u.snapshot_id == active_id]
        self.pending = [c for u in stale for c in u.changes] + self.pending

    def precheck_basis(self, frame: Mapping[str, Any]) -> PrecheckBasis | None:
        """What the updates of a ``document`` frame would be checked against if it arrived
        now — the document id, the snapshot, its key and each author's clock on it — or
        ``None`` when checking them ahead (see :mod:`.precheck`) is not worth it. Pure: the
        engine's state does not change."""
        updates = frame.get("updates")
        if not isinstance(updates, list) or len(updates) < PARALLEL_THRESHOLD:
            return None
        snapshot = frame.get("snapshot")
        known = self.load_known if self.load_mode == "delta" else None
        if snapshot is not None:
            try:
                snap_id = snapshot["publicData"]["snapshotId"]
            except (KeyError, TypeError):
                return None
            clocks = (
                dict(known.update_clocks)
                if known is not None and known.snapshot_id == snap_id
                else {}
            )
            info = KnownSnapshot(snap_id, "", "", clocks)
            epoch = snapshot["publicData"].get("epoch")
            info.epoch = epoch if type(epoch) is int else 0  # issue 12: its epoch's key
        else:
            base = known if known is not None else self.active
            if base is None:
                return None
            snap_id, clocks = base.snapshot_id, dict(base.update_clocks)
            info = base
        if not isinstance(snap_id, str):
            return None
        try:
            key = self.key_for(info)
        except Exception:
            return None
        return PrecheckBasis(self.doc_id, snap_id, key, clocks)

    def _process_updates(
        self,
        raw_updates: Sequence[Any],
        related: KnownSnapshot | None,
        precheck: Precheck | None = None,
        *,
        loading: bool = False,
    ) -> None:
        """Verify and apply updates on ``related``. A rejected update is recorded and skipped
        on a live connection; while ``loading`` the first one ends the frame (the verified
        updates before it are applied, the error fails the load)."""
        try:
            key = self.key_for(related)
        except Exception as exc:
            raise _Fail(_err("SECSYNC_ERROR_206", str(exc)))
        related_id = related.snapshot_id if related is not None else ""
        if precheck is not None and (
            precheck.snapshot_id != related_id or len(precheck.results) != len(raw_updates)
        ):
            precheck = None
        changes: list[Any] = []
        ignored: ProtocolError | None = None
        fatal: ProtocolError | None = None
        withheld: list[tuple[str, int, int]] = []
        deserialize = self.adapter.deserialize_changes
        for i, raw in enumerate(raw_updates):
            if loading and ignored is not None:
                break
            pre = precheck.results[i] if precheck is not None else None
            if isinstance(pre, Unparsable):
                ignored = _err("SECSYNC_ERROR_211", pre.error.detail)
                continue
            if pre is not None:
                update = pre.update
            else:
                try:
                    update = Update.from_json(raw)
                except ParseError as exc:
                    ignored = _err("SECSYNC_ERROR_211", exc.detail)
                    continue
            pd = update.public_data
            log_seq = -1
            if self.has_log:  # the verified log decides who may write
                try:
                    log_seq = self._log_seq_of(pd.raw, pd.pub_key, True, "SECSYNC_ERROR_215")
                except ProtocolError as exc:
                    ignored = exc
                    continue
                if related is not None:
                    floor = max(related.log_seq, related.update_log_seqs.get(pd.pub_key, -1))
                    if log_seq < floor:
                        ignored = _err(
                            "SECSYNC_ERROR_215",
                            f"publicData.logHead: entry {log_seq} is older than {floor}, which"
                            " its snapshot or the author's previous update named",
                        )
                        continue
            else:
                try:
                    allowed = self.is_valid_client(pd.pub_key, pd.raw)
                except Exception as exc:
                    fatal = _err("SECSYNC_ERROR_205", str(exc))
                    break
                if not allowed:
                    ignored = _err("SECSYNC_ERROR_215")
                    continue
            active = self.active
            current = active.update_clocks.get(pd.pub_key, -1) if active is not None else -1
            #: the decoded changes (or why decoding failed) when checked ahead
            decoded: list[Any] | Exception | None = None
            if pre is not None and pre.assumed_clock == current:  # checked ahead, and right
                if isinstance(pre, Rejected):
                    content: bytes | ProtocolError = pre.error
                else:
                    content = b""
                    decoded = pre.changes if pre.decode_error is None else pre.decode_error
            else:
                if not isinstance(update, Update):  # checked in another process: parse here
                    try:
                        update = Update.from_json(raw)
                    except ParseError as exc:  # pragma: no cover - it parsed there
                        ignored = _err("SECSYNC_ERROR_211", exc.detail)
                        continue
                try:
                    content = verify_and_decrypt_update(
                        update, key, related_id, current, current_doc_id=self.doc_id
                    )
                except ProtocolError as exc:
                    content = exc
            if isinstance(content, ProtocolError):
                if content.code in _UPDATE_IGNORED:
                    ignored = content
                    continue
                fatal = content
                break
            heads = pd.raw.get(HEADS_FIELD)
            if (
                heads is not None
                and related is not None
                and (type(heads) is dict or isinstance(heads, Mapping))  # dict: no ABC check
            ):
                named = heads.get("clocks")
                if named is not None and (type(named) is not dict or named):  # {} names nothing
                    withheld += self._missing(related, named, pd.pub_key)
                if log_seq >= 0 and len(heads) > (named is not None):  # positions: log only
                    withheld += self._missing_members(related, heads, pd.pub_key, log_seq)
            for info in self.snapshots:
                if info.snapshot_id == related_id:
                    if info.update_clocks.get(pd.pub_key, -1) < pd.clock:
                        info.update_clocks[pd.pub_key] = pd.clock
                    info.updates_count += 1
                    info.updates_bytes += len(update.ciphertext)
                    if log_seq > info.update_log_seqs.get(pd.pub_key, -1):
                        info.update_log_seqs[pd.pub_key] = log_seq
            if pd.pub_key == self.pub_key:
                self.local_clock = pd.clock
            try:
                if decoded is None:
                    decoded = deserialize(content)
                elif isinstance(decoded, Exception):
                    raise decoded
                changes.extend(decoded)
            except Exception as exc:
                fatal = _err("SECSYNC_ERROR_204", str(exc))
                break
        if changes:
            try:
                self.adapter.apply_changes(changes)
            except Exception as exc:
                fatal = fatal or _err("SECSYNC_ERROR_203", str(exc))
            else:
                self._emit("remote-change", kind="updates", count=len(changes))
        if withheld and fatal is None:
            self._withheld("SECSYNC_ERROR_801", withheld, reload=True)
        if fatal is not None:
            raise _Fail(fatal)
        if ignored is not None:
            raise _Ignore(ignored)

    # -------------------------------------------------------------------- send

    def add_changes(self, changes: Iterable[Any]) -> None:
        """Queue local changes; :meth:`flush` sends them."""
        self.pending.extend(changes)

    def request_snapshot(self) -> None:
        """Send a snapshot with the next flush (even without pending changes)."""
        self.snapshot_requested = True

    def policy_info(self) -> SnapshotPolicyInfo:
        active = self.active
        return SnapshotPolicyInfo(
            active.snapshot_id if active else None,
            active.updates_count if active else 0,
            active.updates_bytes if active else 0,
            len(self.pending),
        )

    def flush(self) -> None:
        """Send pending changes as one update, or a snapshot. An update goes out while fewer
        than :data:`MAX_UPDATES_IN_FLIGHT` are unacknowledged; a snapshot (it records every
        author's saved clock) only once none is."""
        if (
            self.state != CONNECTED
            or self.reconnect_requested
            or self.document_state != COMPLETE
            or (self.has_log and (self.read_only or self.log_root_pending is not None))
            or self.snapshot_in_flight is not None
            or self.updates_discarded
            or len(self.updates_in_flight) >= MAX_UPDATES_IN_FLIGHT
        ):
            return
        if self.epochs is not None and self.log is not None:  # issue 12
            epoch = self.epochs.write_epoch(self.log)
            if epoch is None:
                return  # no key for the current epoch yet: changes wait for our lockbox
            if self.pending and self.active is not None and self.active.epoch < epoch:
                self.snapshot_requested = True  # the new epoch begins with a snapshot
        if not self.snapshot_requested:
            if not self.pending:
                return
            if self.active is not None and not self.snapshot_policy(self.policy_info()):
                self._create_and_send_update()
                return
        if not self.updates_in_flight:
            self._create_and_send_snapshot()

    def _create_and_send_snapshot(self) -> None:
        active = self.active
        try:
            snapshot_id = generate_id()
            content = self.adapter.snapshot_content()
            public_data = {"docId": self.doc_id, "pubKey": self.pub_key, "snapshotId": snapshot_id}
            if self.log is not None:
                public_data[LOG_HEAD_FIELD] = self.log.head.to_json()
            key = self.key_for(active)
            epoch = 0
            if self.epochs is not None and self.log is not None:  # issue 12: the newest epoch
                epoch = self.log.epoch
                key = self.epochs.key(epoch)
                if epoch:
                    public_data["epoch"] = epoch
            if active is None:
                snapshot = create_initial_snapshot(content, public_data, key, self.signing_key)
            else:
                public_data["parentSnapshotId"] = active.snapshot_id
                public_data["parentSnapshotUpdateClocks"] = dict(active.update_clocks)
                snapshot = create_snapshot(
                    content,
                    public_data,
                    key,
                    self.signing_key,
                    active.snapshot_ciphertext_hash,
                    active.parent_snapshot_proof,
                )
        except Exception as exc:
            self._fail(_err("SECSYNC_ERROR_401", str(exc)))
            return
        info = KnownSnapshot.of(snapshot)
        info.epoch = epoch
        if self.log is not None:
            info.log_seq = self.log.head.seq
        self.snapshot_in_flight = _SnapshotInFlight(
            info, snapshot.public_data.parent_snapshot_id, self.pending
        )
        self.pending = []
        self.snapshot_requested = False
        self._send(snapshot)

    def _create_and_send_update(self) -> None:
        active = self.active
        assert active is not None
        changes = self.pending
        try:
            merge = getattr(self.adapter, "merge_changes", None)
            merged = merge(changes) if merge is not None and len(changes) > 1 else changes
            content = self.adapter.serialize_changes(merged)
            clock = self.local_clock + 1
            public_data: dict[str, Any] = {
                "refSnapshotId": active.snapshot_id,
                "docId": self.doc_id,
                "pubKey": self.pub_key,
            }
            heads = self._heads(active) if self.write_heads else {}
            if heads:  # heads that would name nothing are left out (docs/protocol.md)
                public_data[HEADS_FIELD] = self._heads_json(heads)
            if self.log is not None:
                public_data[LOG_HEAD_FIELD] = self.log.head.to_json()
            update = create_update(
                content,
                public_data,
                self.key_for(active),
                self.signing_key,
                clock,
            )
        except Exception as exc:
            self._fail(_err("SECSYNC_ERROR_501", str(exc)))
            return
        self.local_clock = clock
        self.pending = []
        self.updates_in_flight.append(
            _UpdateInFlight(active.snapshot_id, clock, changes, len(update.ciphertext), heads)
        )
        self._send(update)

    def _heads(self, active: KnownSnapshot) -> dict[str, int]:
        """What we had applied on ``active`` when writing: every other author's highest
        clock (ours is implied by the update's clock) that advanced since what our
        acknowledged updates on it named (compact: a reader has read those, in order; the
        first update on a snapshot names every author). Beyond :data:`MAX_HEADS` authors only
        the most advanced (highest clocks, then pubKey order) are named; the others are named
        by a later update."""
        named = self._heads_named[1] if self._heads_named[0] == active.snapshot_id else {}
        clocks = [
            (k, v)
            for k, v in active.update_clocks.items()
            if k != self.pub_key and v > named.get(k, -1)
        ]
        if len(clocks) > MAX_HEADS:  # highest clocks, then member position, then pubKey
            pos = self._member_positions()[0]
            clocks = sorted(
                clocks,
                key=lambda kv: (
                    (-kv[1], 0, pos[kv[0]], "") if kv[0] in pos else (-kv[1], 1, 0, kv[0])
                ),
            )[:MAX_HEADS]
        return dict(sorted(clocks))

    def _member_positions(self) -> tuple[dict[str, int], dict[str, tuple[int, str]]]:
        """Our verified log's member positions (:func:`.heads.member_positions`), cached per
        log state (none without a log)."""
        cache = self._positions
        if cache[0] is not self.log:
            if self.log is None:
                return {}, {}
            cache = self._positions = (self.log, *member_positions(self.log))
        return cache[1], cache[2]

    def _heads_json(self, heads: dict[str, int]) -> dict[str, Any]:
        """The ``heads`` field of our update: authors by member position (the field's keys)
        in a document with a log; by public key (``clocks``) where there is no log, and for an
        author without a position (none in practice: we applied its update under our log)."""
        if self.log is None:
            return {"clocks": heads}
        pos = self._member_positions()[0]
        out: dict[str, Any] = {str(pos[k]): v for k, v in heads.items() if k in pos}
        if len(out) < len(heads):
            out["clocks"] = {k: v for k, v in heads.items() if k not in pos}
        return out

    def _by_position(self, named: Any, log_seq: int) -> dict[str, Any]:
        """A ``heads`` object (untrusted shape) resolved to public keys: a key that is a
        position names the member whose first adding entry it is, if that entry is at or
        before the update's ``logHead.seq``; anything else (not an object, ``clocks``, ``log``,
        not a position of our log, a non-canonical number, beyond the update's log head) names
        nothing, as heads of an unknown shape. The update's own author and bad clocks are left
        to :meth:`_missing`."""
        if type(named) is not dict and not isinstance(named, Mapping):
            return {}
        by_pos = self._member_positions()[1]
        out: dict[str, Any] = {}
        for p, clock in named.items():
            member = by_pos.get(p) if type(p) is str else None
            if member is not None and member[0] <= log_seq:
                out[member[1]] = clock
        return out

    def _missing_members(
        self, info: KnownSnapshot, named: Any, skip: str, log_seq: int
    ) -> list[tuple[str, int, int]]:
        """:meth:`_missing` of the positions of a ``heads`` object: :meth:`_by_position` then
        :meth:`_missing`, in one pass for an object as parsed from JSON (the same answers;
        another shape takes the two steps)."""
        if type(named) is not dict:
            resolved = self._by_position(named, log_seq)
            return self._missing(info, resolved, skip) if resolved else []
        cache = self._positions
        by_pos = cache[2] if cache[0] is self.log else self._member_positions()[1]
        out = []
        received = info.update_clocks
        own = self.pub_key if self.active is info else None  # as _received_clock, inline
        for p, clock in named.items():
            member = by_pos.get(p) if type(p) is str else None
            if member is None or member[0] > log_seq or type(clock) is not int or clock < 0:
                continue
            author = member[1]
            if author == skip:
                continue
            have = received.get(author, -1)
            if author == own:
                have = max(have, self.local_clock)
            if have < clock:
                out.append((author, clock, have))
        return out

    def _received_clock(self, info: KnownSnapshot, author: str) -> int:
        """The highest clock of ``author`` on ``info`` this client has (its own: sent)."""
        clock = info.update_clocks.get(author, -1)
        if author == self.pub_key and self.active is info:
            clock = max(clock, self.local_clock)
        return clock

    def _missing(self, info: KnownSnapshot, named: Any, skip: str) -> list[tuple[str, int, int]]:
        """(author, named clock, received clock) for each clock in ``named`` (a heads'
        ``clocks`` object, untrusted shape: anything else names nothing) this client has not
        received on ``info``; ``skip``: the writer (its own clock is checked by the relay)."""
        if type(named) is not dict and not isinstance(named, Mapping):
            return []
        out = []
        received = info.update_clocks
        own = self.pub_key if self.active is info else None  # as _received_clock, inline
        for author, clock in named.items():
            if author == skip or type(clock) is not int or clock < 0:
                continue
            have = received.get(author, -1)
            if author == own:
                have = max(have, self.local_clock)
            if have < clock:
                out.append((author, clock, have))
        return out

    def _withheld(self, code: str, missing: list[tuple[str, int, int]], reload: bool) -> None:
        """Heads named clocks we have not received: the relay dropped or withheld them. The
        verified content is kept. The first time a clock is missing we reload completely to
        ask for it (``reload``); missing again after that, the document was served
        incompletely (803, once)."""
        newest: dict[str, tuple[str, int, int]] = {}
        for m in missing:  # per author the highest clock named
            if m[0] not in newest or newest[m[0]][1] < m[1]:
                newest[m[0]] = m
        missing = [newest[a] for a in sorted(newest)]
        detail = ", ".join(f"{a} up to {c} (received {h})" for a, c, h in missing)
        again = [m for m in missing if (m[0], m[1]) in self.heads_missing_asked]
        authors = sorted({m[0] for m in missing})
        if again and not self.served_incompletely:
            self.served_incompletely = True
            self._record(_err("SECSYNC_ERROR_803", detail))
            self._emit("served-incompletely", authors=authors)
        if len(again) == len(missing):
            return
        self._record(_err(code, detail))
        self._emit("withheld", authors=authors, missing=[[a, c] for a, c, _ in missing])
        if reload:
            self.heads_missing_asked.update((a, c) for a, c, _ in missing)
            self.heads_reload = True
            self._request_reconnect()

    # ------------------------------------------- heads between live collaborators

    def heads_content(self) -> bytes | None:
        """Our heads message (``None`` before a verified snapshot): the active snapshot, our
        chain, every author's clock on it (ours: acknowledged) and the log head."""
        active = self.active
        if active is None or self.document_state != COMPLETE:
            return None
        return encode_heads(
            active.snapshot_id,
            self.chain_ids,
            active.update_clocks,
            self.log.head if self.log is not None else None,
        )

    def tick(self, now: float) -> None:
        """The driver's clock (seconds; call about once a second): sends our heads when due —
        soon after they changed by an acknowledged write or a new peer (at most once a
        second), else every 5 s — and reports what peers have seen that still has not reached
        us after the grace period (806 withheld, 805 fork)."""
        self.now = now
        if self.state != CONNECTED or self.document_state != COMPLETE:
            return
        self._check_claims()
        last = self._heads_sent_at
        due = (
            last is None
            or now - last >= self.heads_interval
            or (
                self.heads_dirty
                and now - last >= min(HEADS_MIN_SPACING_SECONDS, self.heads_interval)
            )
        )
        if due:
            content = self.heads_content()
            if content is not None and self.send_ephemeral(content):
                self._heads_sent_at, self._heads_sent = now, content
                self.heads_dirty = False

    def _on_peer_heads(self, peer: str, heads: PeerHeads) -> None:
        """A collaborator's signed heads: what it has seen that we have not becomes a claim,
        checked by :meth:`tick` after the grace period; a log entry other than ours at the
        same position is a fork at once."""
        if peer == self.pub_key:
            return  # our own key in another client: its clock is ours
        self.peer_heads[peer] = heads
        self._emit("peer-heads", peer=peer, snapshot_id=heads.snapshot_id)
        now = self.now
        if heads.log is not None and self.log is not None:
            mine = self.log
            if heads.log.seq <= mine.head.seq:
                if mine.hashes[heads.log.seq] != heads.log.hash:
                    self._report_fork(peer, f"its log entry {heads.log.seq} is not ours")
            elif not any(c.kind == "log" and c.log == heads.log for c in self.claims):
                self.claims.append(Claim("log", peer, now, log=heads.log))
        active = self.active
        if active is None:
            return
        if heads.snapshot_id == active.snapshot_id:
            for author, clock in heads.clocks.items():
                if author == self.pub_key or clock <= self._received_clock(active, author):
                    continue
                if not any(
                    c.kind == "clock"
                    and c.snapshot_id == active.snapshot_id
                    and c.author == author
                    and c.clock >= clock
                    for c in self.claims
                ):
                    self.claims.append(Claim("clock", peer, now, active.snapshot_id, author, clock))
        elif heads.snapshot_id not in self.chain_ids and not any(
            c.kind == "snapshot" and c.snapshot_id == heads.snapshot_id for c in self.claims
        ):
            self.claims.append(Claim("snapshot", peer, now, heads.snapshot_id))

    def _claim_met(self, claim: Claim) -> bool:
        active = self.active
        if claim.kind == "log":
            return self.log is not None and self.log.head.seq >= claim.log.seq
        if active is None:
            return False
        if claim.kind == "clock":
            if claim.snapshot_id != active.snapshot_id:  # we moved past that snapshot
                return claim.snapshot_id in self.chain_ids
            return self._received_clock(active, claim.author) >= claim.clock
        latest = self.peer_heads.get(claim.seen_by)
        return claim.snapshot_id in self.chain_ids or (
            latest is not None and latest.snapshot_id in self.chain_ids
        )

    def _check_claims(self) -> None:
        if self.active is None:  # nothing verified to compare with (yet): claims wait
            return
        kept: list[Claim] = []
        due: list[Claim] = []
        for claim in self.claims:
            if claim.kind == "log" and self._claim_met(claim):
                mine = self.log
                assert mine is not None and claim.log is not None
                if mine.hashes[claim.log.seq] != claim.log.hash:
                    self._report_fork(claim.seen_by, f"its log entry {claim.log.seq} is not ours")
                continue
            if self._claim_met(claim):
                continue
            if self.now - claim.since >= self.heads_grace:
                due.append(claim)
            else:
                kept.append(claim)
        self.claims = kept
        missing: dict[str, tuple[int, int, str]] = {}
        for claim in due:
            if claim.kind == "clock":
                have = self._received_clock(self.active, claim.author)  # type: ignore[arg-type]
                key = ("clock", claim.snapshot_id, claim.author)
                if key in self._heads_reported:
                    continue
                if claim.author not in missing or missing[claim.author][0] < claim.clock:
                    missing[claim.author] = (claim.clock, have, claim.seen_by)
            elif claim.kind == "log":
                key = ("log", str(claim.log.seq))  # type: ignore[union-attr]
                if key not in self._heads_reported:
                    self._heads_reported.add(key)
                    have = self.log.head.seq if self.log is not None else -1
                    self._report_withheld(
                        claim.seen_by,
                        [],
                        f"the relay has not delivered {claim.log.seq - have} membership log"  # type: ignore[union-attr]
                        f" entries that {claim.seen_by} has verified (up to entry"
                        f" {claim.log.seq})",  # type: ignore[union-attr]
                    )
            else:
                self._snapshot_claim_due(claim)
        active = self.active
        for author, (clock, have, seen_by) in sorted(missing.items()):
            self._heads_reported.add(("clock", active.snapshot_id, author))  # type: ignore[union-attr]
            self._report_withheld(
                seen_by,
                [[author, clock]],
                f"the relay has not delivered {clock - have} updates from {author} that"
                f" {seen_by} has seen (up to clock {clock} on snapshot"
                f" {active.snapshot_id}; received {have})",  # type: ignore[union-attr]
            )

    def _snapshot_claim_due(self, claim: Claim) -> None:
        latest = self.peer_heads.get(claim.seen_by)
        peer_snapshot = latest.snapshot_id if latest is not None else claim.snapshot_id
        key = ("snapshot", peer_snapshot)
        if key in self._heads_reported:
            return
        self._heads_reported.add(key)
        active = self.active
        assert active is not None
        if latest is not None and active.snapshot_id in latest.chain:
            self._report_withheld(
                claim.seen_by,
                [],
                f"the relay has not delivered snapshot {peer_snapshot} that {claim.seen_by} has"
                f" (it descends from ours, {active.snapshot_id})",
            )
        else:
            self._report_fork(
                claim.seen_by,
                f"it is on snapshot {peer_snapshot}, which is not in this client's chain"
                f" (ours: {active.snapshot_id}), nor ours in its chain",
            )

    def _report_withheld(self, seen_by: str, missing: list[list[Any]], detail: str) -> None:
        self._record(_err("SECSYNC_ERROR_806", detail))
        self._emit(
            "heads-withheld",
            seen_by=seen_by,
            authors=[m[0] for m in missing],
            missing=missing,
            detail=detail,
        )

    def _report_fork(self, peer: str, detail: str) -> None:
        key = ("fork", peer, detail)
        if key in self._heads_reported:
            return
        self._heads_reported.add(key)
        self._record(_err("SECSYNC_ERROR_805", f"{peer}: {detail}"))
        self._emit("fork", peer=peer, detail=detail)

    def send_ephemeral(self, content: bytes) -> bool:
        """Send ephemeral content (e.g. an awareness update) on the current session."""
        if self.state != CONNECTED or self.ephemeral is None:
            return False
        if self.has_log and (self.log is None or self.document_state == PENDING):
            return False  # our messages name the verified log head: not before the log
        try:
            self._ephemeral_write_key()
            message = self.ephemeral.create(bytes(content))
        except (CreationError, ProtocolError) as exc:
            self._push(self.ephemeral_authoring_errors, _err("SECSYNC_ERROR_601", str(exc)))
            return False
        self._send(message)
        return True
