"""The transport-independent relay: connections in, rooms, lifecycle.

A transport (the standalone asyncio server, or the Jupyter tornado handler) authenticates the
connection, then calls :meth:`Relay.connect` with an object implementing :class:`Transport`;
it passes every received frame to :meth:`.session.Session.on_text` / ``on_binary`` and calls
``on_close`` when the connection is gone.

The relay by concern:

* :mod:`.session` — a connection's frame handling (analysis, answers, writes, acks)
* :mod:`.inbound` — parsing and verifying a client frame (pure; large ones in a thread)
* :mod:`.rules` — the acceptance rules on a document's state (sans-I/O)
* :mod:`.room` — a document's connections, fan-out, writes in flight, state reloads
* :mod:`.admission` — limits on connect and the relay-wide counts
* :mod:`.config` — the one configuration table (flags and traitlets are generated from it)
* :mod:`.query`, :mod:`.frames`, :mod:`.outbox`, :mod:`.logs` — URL query, server frames,
  the bounded send queue, rate-limited logs
* :mod:`.store`, :mod:`.sqlite_store`, :mod:`.memory_store` — storage, chosen by URL

Reads and writes complete in any order: every accepted message has a *position* (see
:mod:`.store`), and a joining connection gets exactly the broadcasts positioned after its
``document`` frame.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..protocol import is_doc_id
from . import frames, trace
from .admission import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    Admission,
    document_error,
    refuse,
)
from .config import Limits
from .frames import OutFrame
from .inbound import analyze
from .logs import BadInputLog
from .members import RoomLog, is_log_doc_id
from .policy import AccessPolicy, AccessRequest, AnyAuthenticatedPolicy, Identity
from .query import ConnectParams, QueryError, parse_query
from .room import Room
from .session import Session
from .store import DocumentView, RelayStore, Retention, StoreError


class Transport(Protocol):
    """What the relay needs from a connection."""

    def send_text(self, text: str) -> None: ...

    def send_frame(self, frame: OutFrame) -> None: ...

    def send_message(self, parts: list[str]) -> None:
        """One text message given as parts (large ones are streamed, see :mod:`.outbox`)."""
        ...

    def close(self, code: int, reason: str) -> None: ...

    def is_closed(self) -> bool: ...


class Relay:
    """A blind Secsync relay over a :class:`RelayStore`."""

    def __init__(
        self,
        store: RelayStore,
        policy: AccessPolicy | None = None,
        limits: Limits | None = None,
        *,
        log: logging.Logger | None = None,
        retention: Retention | None = None,
    ):
        #: where the relay logs (inside Jupyter Server: a child of the server app's log)
        self.log = log or logging.getLogger("secsync_jupyter.relay")
        self.store = store
        self.policy = policy or AnyAuthenticatedPolicy()
        self.policy_filters_broadcasts = (
            type(self.policy).broadcast_access is not AccessPolicy.broadcast_access
        )
        self.limits = limits or Limits()
        #: what is kept of superseded key epochs (issue 12; docs/relay.md "Key epochs")
        self.retention = retention or Retention()
        #: pruning runs in flight (tests wait for them: :meth:`pruned`)
        self._pruning: set[asyncio.Future] = set()
        self.admission = Admission(self.limits)
        self.rooms: dict[str, Room] = {}
        self.closing = False
        self.bad_input_log = BadInputLog(self.log)
        #: fan-out across relay processes on one PostgreSQL database (:mod:`.fanout`)
        self.fanout: Any = None
        #: analyzes large frames off the event loop (see :mod:`.inbound`)
        self._analysis_pool: ThreadPoolExecutor | None = None

    def analyze_in_thread(self, text: str) -> asyncio.Future:
        if self._analysis_pool is None:
            self._analysis_pool = ThreadPoolExecutor(2, thread_name_prefix="secsync-relay-verify")
        return asyncio.get_running_loop().run_in_executor(self._analysis_pool, analyze, text)

    async def start(self) -> None:
        """Open the store (if not yet open) and count the stored documents."""
        await self.store.open()
        trace.start()
        self.admission.stored_documents = await self.store.count_documents()
        if not self.retention.keeps_all:
            fut = asyncio.ensure_future(self.prune_all())
            self._pruning.add(fut)
            fut.add_done_callback(self._pruning.discard)
        pg = sys.modules.get(__package__ + ".pg_store")
        if self.fanout is None and pg is not None and isinstance(self.store, pg.PostgresStore):
            from .fanout import FanOut

            self.fanout = FanOut(self, self.store)
            await self.fanout.start()

    # ------------------------------------------------------------------ retention
    def retention_after_rotation(self, room: Room) -> None:
        """After a rotation (its entry, then the first snapshot of the new epoch): prune the
        document's superseded epochs as the retention says, in the background."""
        if not self.retention.keeps_all:
            self._prune_soon(room.doc_id)

    def _prune_soon(self, doc_id: str) -> None:
        fut = asyncio.ensure_future(self._prune(doc_id))
        self._pruning.add(fut)
        fut.add_done_callback(self._pruning.discard)

    async def _prune(self, doc_id: str) -> None:
        try:
            result = await self.store.prune_superseded(doc_id, self.retention)
        except Exception as exc:  # never fatal: the next rotation or start tries again
            self.log.error("pruning superseded epochs of %s failed: %s", doc_id, exc)
            return
        if result.snapshots:
            self.log.info(
                "pruned %d snapshots and %d updates of superseded epochs of %s",
                result.snapshots,
                result.updates,
                doc_id,
            )

    async def prune_all(self) -> None:
        """Prune every document with a rotated key (at start)."""
        try:
            docs = await self.store.documents_with_epochs()
        except Exception as exc:
            self.log.error("listing documents to prune failed: %s", exc)
            return
        for doc_id in docs:
            await self._prune(doc_id)

    async def pruned(self) -> None:
        """Wait for the pruning runs in flight."""
        while self._pruning:
            await asyncio.wait(list(self._pruning))

    async def load_state(self, room: Room):
        """A room's rule state (with fan-out: and the position it reflects)."""
        if self.fanout is not None:
            return await self.fanout.load_state(room)
        return await self.store.load_state(room.doc_id)

    @property
    def sessions(self) -> list[Session]:
        out: list[Session] = []
        for room in self.rooms.values():
            out.extend(room.sessions)
            out.extend(room.joining)
            out.extend(room.challenged)
        return out

    async def drain(self) -> None:
        """Wait until every accepted write is committed and answered."""
        await self.admission.drain()

    async def stop(self, close_store: bool = True) -> None:
        """Graceful shutdown: refuse new frames, finish in-flight writes (acks included),
        close every connection with 1001 going-away, close the store."""
        self.closing = True
        await self.drain()
        for s in self.sessions:
            s.close(CLOSE_GOING_AWAY, "relay shutting down")
        if self.fanout is not None:
            await self.fanout.stop()
        if close_store:
            await self.store.close()
        if self._analysis_pool is not None:
            self._analysis_pool.shutdown(wait=False)
            self._analysis_pool = None

    # ------------------------------------------------------------------ connect
    async def connect(
        self,
        transport: Transport,
        doc_id: str,
        query: str | Mapping[str, Any],
        identity: Identity | None,
        *,
        require_session_key: bool = False,
    ) -> Session | None:
        """Open a connection: validate, authorize (``read``), send the ``document`` frame.

        ``identity`` is ``None`` when the transport could not authenticate the connection
        (answered with ``unauthorized``). Returns the session, or ``None`` when the
        connection was refused (the transport has been told to close)."""
        if self.closing:
            refuse(
                transport, frames.error("shutting-down"), CLOSE_GOING_AWAY, "relay shutting down"
            )
            return None
        if not is_doc_id(doc_id):
            document_error(transport, CLOSE_POLICY, "bad document id", "invalid-document-id")
            return None
        try:
            params = parse_query(query)
        except QueryError as exc:
            document_error(
                transport, CLOSE_POLICY, "bad query", exc.code, message=str(exc), field=exc.field
            )
            return None
        if require_session_key and params.session_key is None:
            document_error(transport, CLOSE_POLICY, "missing sessionKey", "missing-session-key")
            return None
        unauthorized = frames.simple("unauthorized")
        if identity is None:
            refuse(transport, unauthorized, CLOSE_POLICY, "unauthorized", "unauthorized")
            return None
        allowed = self.policy.has_access(AccessRequest("read", doc_id, identity))
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            refuse(transport, unauthorized, CLOSE_POLICY, "unauthorized", "unauthorized")
            return None
        room = await self._room(transport, doc_id)
        if room is None:
            return None
        if room.connection_count >= self.limits.max_connections_per_document:
            document_error(
                transport, CLOSE_TRY_AGAIN, "too many connections", "too-many-connections"
            )
            if not room.connection_count:
                room.maybe_close()
            return None

        session = Session(self, room, transport, identity)
        if room.log is not None:
            # a document with a membership log: no ciphertext before a member's key is
            # proven (the session joins once the proof is accepted, see Session._proof)
            session.challenge_reader(params)
            return session
        if not await self.join(session, params):
            return None
        return session

    async def join(self, session: Session, params: ConnectParams) -> bool:
        """Send the ``document`` frame and join the room (False: the connection is gone)."""
        room = session.room
        transport = session.transport
        doc_id = room.doc_id
        room.start_joining(session)
        boxes: list[str] | None = None
        try:
            if session.link:  # a link connection gets no content (docs/protocol.md)
                view = DocumentView(None, (), (), 0, False, False)
            else:
                view = await self.store.read_document(
                    doc_id, params.known_snapshot_id, params.known_clocks
                )
            if room.log is not None and session.pub_key is not None:
                while True:  # the lockboxes of every entry in the log sent with them
                    head = room.log.head_seq
                    rows = await self.store.read_lockboxes(doc_id, session.pub_key)
                    if room.log.head_seq == head:
                        break
                session.lockbox_epochs.update(r.epoch for r in rows)
                boxes = [r.lockbox for r in rows]
            if room.log is not None and self.fanout is not None:
                # the entries another process stored and the view's messages may name (they
                # committed before those messages, so this read, after the view's, has them)
                await room.log.refresh()
        except Exception as exc:
            self.log.error("reading %s failed: %s", doc_id, exc)
            room.remove(session)
            document_error(
                transport, CLOSE_INTERNAL, "storage error", "storage-failed", message=str(exc)
            )
            session.closed = True
            return False
        log = None
        if room.log is not None:  # taken now, with nothing awaited before the join
            log = room.log.since(params.known_log_seq, params.known_log_hash)
        return room.join(session, view, document_frame(view, params.mode, log, boxes, session.link))

    async def _room(self, transport: Transport, doc_id: str) -> Room | None:
        """The document's room, opened (its state loaded) if needed; ``None`` when refused."""
        room = self.rooms.get(doc_id)
        if room is not None:
            if not room.ready.done():
                await room.ready
            if room.load_error is not None:
                document_error(
                    transport,
                    CLOSE_TRY_AGAIN,
                    "document unavailable",
                    "storage-failed",
                    message=str(room.load_error),
                )
                return None
            return room
        room = Room(self, doc_id, self._room_empty)
        self.rooms[doc_id] = room
        try:
            room.state = await self.load_state(room)
            if is_log_doc_id(doc_id):
                room.log = RoomLog(room)
                await room.log.load()
        except Exception as exc:
            self._room_failed(room, exc)
            self.log.error("loading %s failed: %s", doc_id, exc)
            document_error(
                transport, CLOSE_INTERNAL, "storage error", "storage-failed", message=str(exc)
            )
            return None
        if not room.state.exists:
            if not self.admission.may_open_new_document():
                self._room_failed(room, StoreError("too many documents"))
                document_error(
                    transport, CLOSE_TRY_AGAIN, "too many documents", "too-many-documents"
                )
                return None
            self.admission.unsaved_document_opened()
        room.ready.set_result(None)
        return room

    def _room_failed(self, room: Room, exc: Exception) -> None:
        room.load_error = exc
        del self.rooms[room.doc_id]
        room.ready.set_result(None)

    def _room_empty(self, room: Room) -> None:
        if self.rooms.get(room.doc_id) is room:
            del self.rooms[room.doc_id]
            if room.counts_as_unsaved:
                self.admission.unsaved_document_gone()


def document_frame(
    view: DocumentView,
    mode: str,
    log: tuple[list[str], int] | None = None,
    lockboxes: list[str] | None = None,
    link: bool = False,
) -> list[str]:
    """The parts of the ``document`` frame for a joining connection (``log``: the entries of
    a document with a membership log and the ``seq`` of the first; ``lockboxes``: the
    connection's own; ``link``: a link connection, no snapshot, no updates, no chain)."""
    kw: dict[str, Any] = {"log": log, "lockboxes": lockboxes, "link": link}
    if link:
        return frames.document_parts(None, (), None, **kw)
    if not view.has_snapshot:
        return frames.document_parts(None, (), (), **kw)
    if view.known_is_active and mode == "delta":
        return frames.document_parts(None, view.updates, None, **kw)
    if view.known_is_active:
        # complete mode with the active snapshot known: the snapshot, only the newer updates
        return frames.document_parts(view.snapshot, view.updates, (), **kw)
    return frames.document_parts(view.snapshot, view.updates, view.chain, **kw)
