"""A room: the connections of one open document, its rule state and its fan-out.

A broadcast frame is built once and handed to every other joined connection; a connection that
is still joining (its ``document`` frame is being read) buffers the broadcasts with their
positions, and gets exactly the ones after its document frame (:meth:`Room.join`). The room
counts its store writes in flight and re-reads its rule state from the store when the store
refused a write it had accepted (:meth:`Room.reload`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from . import frames
from .admission import CLOSE_POLICY, CLOSE_TRY_AGAIN
from .frames import OutFrame
from .store import DocumentState, DocumentView

if TYPE_CHECKING:
    from .core import Relay
    from .members import RoomLog
    from .session import Session

_background: set[asyncio.Future] = set()


def spawn(aw: Awaitable) -> asyncio.Future:
    """Run an awaitable in the background, keeping a reference until it is done."""
    task = asyncio.ensure_future(aw)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


class Room:
    """The connections of one open document and its rule state."""

    __slots__ = (
        "_on_empty",
        "challenged",
        "doc_id",
        "feed",
        "inflight",
        "joining",
        "load_error",
        "log",
        "pending",
        "ready",
        "relay",
        "reloading",
        "sessions",
        "state",
    )

    def __init__(self, relay: Relay, doc_id: str, on_empty: Callable[[Room], None]):
        self.relay = relay
        self.doc_id = doc_id
        self._on_empty = on_empty
        self.state = DocumentState(exists=False)
        self.sessions: list[Session] = []
        self.joining: dict[Session, list[tuple[int, OutFrame]]] = {}
        self.pending = 0
        self.inflight: set[asyncio.Future] = set()
        #: set while the rule state is re-read from the store (frames wait for it)
        self.reloading: asyncio.Future | None = None
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.load_error: Exception | None = None
        #: fan-out across relay processes (a :class:`.fanout.Feed`; None without it)
        self.feed = None
        #: the membership log of an ``m1_…`` document (:mod:`.members`), else ``None``
        self.log: RoomLog | None = None
        #: connections that have not proven a member's key yet (they get no broadcast)
        self.challenged: set[Session] = set()

    @property
    def connection_count(self) -> int:
        return len(self.sessions) + len(self.joining) + len(self.challenged)

    @property
    def counts_as_unsaved(self) -> bool:
        """An open document without a snapshot (it counts towards ``max_documents``)."""
        return not self.state.exists and self.ready.done() and self.load_error is None

    # ------------------------------------------------------------------ fan-out
    def broadcast(self, pos: int | None, frame: OutFrame, exclude: Session | None) -> None:
        """Send ``frame`` to every other connection (``pos``: the message's position, for
        the joining ones; ``None`` for ephemeral messages, which joining ones do not get).
        With fan-out across processes (:mod:`.fanout`) a stored message goes out in position
        order with the other processes' messages, an ephemeral one to them as well."""
        fanout = self.relay.fanout
        if fanout is not None:
            if pos is not None:
                fanout.committed(self, pos, frame, exclude)
                return
            fanout.publish_ephemeral(self.doc_id, frame.text)
        self.send_all(pos, frame, exclude)

    def send_all(self, pos: int | None, frame: OutFrame, exclude: Session | None) -> None:
        """Send ``frame`` to every connection of this process but ``exclude``."""
        relay = self.relay
        sessions = self.sessions
        if relay.policy_filters_broadcasts:
            # every receiver, joined or joining, is checked before each broadcast
            receivers = [*sessions, *self.joining]
            allowed = relay.policy.broadcast_access(self.doc_id, [s.identity for s in receivers])
            if allowed is not None:
                for s, ok in zip(receivers, allowed, strict=False):
                    if not ok:
                        s.send(frames.simple("unauthorized"))
                        s.close(CLOSE_POLICY, "unauthorized")
                sessions = self.sessions
        if pos is None:
            for s in sessions:
                if s is not exclude:
                    s.transport.send_frame(frame)
        else:
            for s in sessions:
                if s is not exclude and pos > s.floor:
                    s.deliver(pos, frame)
            for s, buffered in self.joining.items():
                if s is not exclude:
                    buffered.append((pos, frame))

    def start_joining(self, session: Session) -> None:
        self.joining[session] = []

    def join(self, session: Session, view: DocumentView, document: list[str]) -> bool:
        """Finish joining: the ``document`` frame, then the broadcasts positioned after it.
        False when the connection went away meanwhile."""
        buffered = self.joining.pop(session, None)
        transport = session.transport
        if buffered is None or transport.is_closed():
            session.closed = True
            self.maybe_close()
            return False
        transport.send_message(document)
        floor = view.position
        for pos, frame in buffered:
            if pos > floor:
                transport.send_frame(frame)
                floor = pos
        session.floor = floor
        self.sessions.append(session)
        return True

    def remove(self, session: Session) -> None:
        self.challenged.discard(session)
        if session in self.joining:
            del self.joining[session]
        else:
            try:
                self.sessions.remove(session)
            except ValueError:
                pass
        self.maybe_close()

    # ------------------------------------------------------------------ writes
    def track(self, write: Awaitable) -> asyncio.Future:
        """Count a submitted store write as in flight until its result has been handled."""
        fut = asyncio.ensure_future(write)
        self.begin_write()
        self.inflight.add(fut)
        fut.add_done_callback(self.inflight.discard)
        return fut

    def begin_write(self) -> None:
        self.pending += 1
        self.relay.admission.write_started()

    def end_write(self) -> None:
        self.pending -= 1
        self.relay.admission.write_finished()
        if self.pending == 0:
            self.maybe_close()

    def mark_stored(self) -> None:
        """A snapshot of this room created its document in the store."""
        admission = self.relay.admission
        admission.document_created()
        if not self.state.exists:
            self.state.exists = True
            admission.unsaved_document_gone()

    def reload(self) -> None:
        """Re-read the rule state from the store after it refused a write the room had
        accepted. Until the state is fresh, no frame of this room is handled (they wait in
        their sessions' queues), so nothing is checked against a state known to be wrong."""
        if self.reloading is None:
            self.reloading = asyncio.get_running_loop().create_future()
            self.begin_write()
            spawn(self._reload())

    async def _reload(self) -> None:
        try:
            # every write accepted before the pause must be committed or refused first
            while self.inflight:
                await asyncio.wait(list(self.inflight))
            state = await self.relay.load_state(self)
            was_stored = self.state.exists
            self.state = state
            if state.exists and not was_stored:
                self.relay.admission.unsaved_document_gone()
        except Exception as exc:
            self.relay.log.error("reloading the state of %s failed: %s", self.doc_id, exc)
            # the state is known to be wrong and cannot be re-read (the database is down): the
            # document is unavailable; its clients reconnect, which reopens the room from the
            # store once it answers again
            self.unavailable(str(exc))
        finally:
            fut, self.reloading = self.reloading, None
            if fut is not None and not fut.done():
                fut.set_result(None)
            self.end_write()

    def unavailable(self, reason: str, answered: Session | None = None) -> None:
        """Close every connection with ``CLOSE_TRY_AGAIN`` after a ``storage-failed`` error
        (not repeated to ``answered``, which had its answer): the clients reconnect and read
        the document again from the store. For a store that cannot answer, and for writes
        broadcast once committed that could then not be made durable (docs/relay.md
        "Durability")."""
        for s in [*self.sessions, *self.joining, *self.challenged]:
            if s is not answered:
                s.send(frames.error("storage-failed", f"document unavailable: {reason}"))
            s.close(CLOSE_TRY_AGAIN, "document unavailable")

    def maybe_close(self) -> None:
        """Close the room once it has no connection and no write in flight."""
        if self.sessions or self.joining or self.challenged or self.pending:
            return
        self._on_empty(self)
