"""The transport-independent relay: rooms, connections, the Secsync rules.

A transport (the standalone asyncio server, or the Jupyter tornado handler) authenticates the
connection, then calls :meth:`Relay.connect` with an object implementing :class:`Transport`;
it passes every received frame to :meth:`Session.on_text` / :meth:`Session.on_binary` and
calls :meth:`Session.on_close` when the connection is gone.

Per frame the relay parses once (the protocol core), verifies the signature once, checks the
rules against the room's in-memory state (which includes writes still being committed), hands
the write to the store and, when the store reports the commit, acknowledges the sender and
broadcasts one pre-built frame to the other connections. Reads and writes complete in any
order: every accepted message has a *position* (see :mod:`.store`), and a joining connection
gets exactly the broadcasts positioned after its ``document`` frame.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol
from urllib.parse import parse_qs

from ..protocol import Snapshot, Update
from ..protocol.encoding import MAX_SAFE_INTEGER
from . import frames
from .frames import OutFrame
from .inbound import VERIFY_IN_THREAD_BYTES, Inbound, analyze
from .logs import BadInputLog, ConnectionLog
from .policy import AccessPolicy, AccessRequest, AnyAuthenticatedPolicy, Identity
from .store import (
    DocumentState,
    DocumentView,
    RelayStore,
    SaveResult,
    SnapshotInfo,
    StoreError,
    utf8_length,
)

DOC_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")

# close codes
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

#: rejections by the Secsync rules (normal in a collaboration, not logged as bad input)
_RULE_CODES = frozenset(
    ("update-wrong-snapshot", "update-clock-replayed", "update-clock-gap", "storage-failed")
)

_background: set[asyncio.Future] = set()


def spawn(aw) -> asyncio.Future:
    """Run an awaitable in the background, keeping a reference until it is done."""
    task = asyncio.ensure_future(aw)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


@dataclass
class Limits:
    """Relay limits (each configurable; see docs/relay.md)."""

    #: largest accepted frame, in bytes (the WebSocket layer enforces it)
    max_frame_bytes: int = 32 * 1024 * 1024
    #: connections per document (joined or joining)
    max_connections_per_document: int = 1000
    #: stored documents plus open documents that have no snapshot yet
    max_documents: int = 100_000
    #: bytes queued for one slow connection before it is dropped (it reconnects with delta)
    max_send_buffer_bytes: int = 256 * 1024 * 1024
    #: open TCP connections of the standalone relay (joined, joining or still in the
    #: WebSocket handshake); one more is refused (``too-many-connections``, close 1013)
    max_connections: int = 10_000
    #: seconds a standalone connection may take to complete its WebSocket handshake
    handshake_timeout: float = 10.0
    #: bytes of stored messages on a document's active snapshot (its own and its updates');
    #: a write past it is refused (``document-too-large``) until a new snapshot frees the space
    max_document_bytes: int = 1024 * 1024 * 1024


class Transport(Protocol):
    """What the relay needs from a connection."""

    def send_text(self, text: str) -> None: ...

    def send_frame(self, frame: OutFrame) -> None: ...

    def send_message(self, parts: list[str]) -> None:
        """One text message given as parts (large ones are streamed, see :mod:`.outbox`)."""
        ...

    def close(self, code: int, reason: str) -> None: ...

    def is_closed(self) -> bool: ...


class Session:
    """One connection to one document."""

    __slots__ = (
        "_busy",
        "_inbox",
        "_log_budget",
        "closed",
        "doc_id",
        "floor",
        "identity",
        "relay",
        "room",
        "transport",
    )

    def __init__(self, relay: Relay, room: Room, transport: Transport, identity: Identity):
        self.relay = relay
        self.room = room
        self.doc_id = room.doc_id
        self.transport = transport
        self.identity = identity
        self.closed = False
        #: broadcasts at or below this position were already in the document frame
        self.floor = 0
        self._busy = False
        self._inbox: list[Any] = []
        self._log_budget = ConnectionLog()

    # ------------------------------------------------------------------ transport side
    def on_text(self, text: str) -> None:
        """A complete text frame (already UTF-8 decoded)."""
        if self.closed:
            return
        if self._busy:
            self._inbox.append(text)
            return
        reloading = self.room.reloading
        if reloading is not None:
            # the room is re-reading its rule state from the store: hold the frame until then
            self._inbox.append(text)
            self._busy = True
            spawn(self._finish(reloading))
            return
        try:
            pending = self._handle(text)
        except Exception:  # never let a frame take the connection down
            self.relay.log.exception("internal error while handling a frame on %s", self.doc_id)
            self.send(frames.error("internal-error"))
            return
        if pending is not None:
            self._busy = True
            spawn(self._finish(pending))

    def on_bad_utf8(self) -> None:
        self.bad_input("invalid-utf8")

    def on_binary(self, data: bytes) -> None:
        self.bad_input("binary-frame")

    def bad_input(self, code: str, message: str | None = None, field: str | None = None) -> None:
        """Answer a malformed frame (and log it briefly, rate-limited)."""
        self.send(frames.error(code, message, field=field))
        self.relay.bad_input_log.note(self._log_budget, self.doc_id, self.identity.user, code)

    def on_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.room.remove(self)

    def send(self, text: str) -> None:
        if not self.closed:
            self.transport.send_text(text)

    def send_message(self, parts: list[str]) -> None:
        if not self.closed:
            self.transport.send_message(parts)

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.transport.close(code, reason)
            self.on_close()

    # ------------------------------------------------------------------ processing
    async def _finish(self, pending) -> None:
        try:
            await pending
            while self._inbox and not self.closed:
                reloading = self.room.reloading
                if reloading is not None:
                    await reloading
                    continue
                text = self._inbox.pop(0)
                more = self._handle(text)
                if more is not None:
                    await more
        except Exception:
            self.relay.log.exception("internal error while handling a frame on %s", self.doc_id)
            self.send(frames.error("internal-error"))
        finally:
            self._busy = False

    def _handle(self, text: str):
        """Handle one frame; returns an awaitable when it is analyzed in a worker thread (a
        large frame) or the access policy is asynchronous."""
        if self.relay.closing:
            self.send(frames.error("shutting-down"))
            return None
        if len(text) >= VERIFY_IN_THREAD_BYTES:
            return self._decide_later(text)
        return self._decide(analyze(text))

    async def _decide_later(self, text: str) -> None:
        inbound = await self.relay.analyze_in_thread(text)
        if not self.closed:
            more = self._decide(inbound)
            if more is not None:
                await more

    def _decide(self, inbound: Inbound):
        """The answers to an analyzed frame, in their order: malformed, wrong document,
        permission and access policy, signature, then the acceptance rules."""
        if self.relay.closing:
            self.send(frames.error("shutting-down"))
            return None
        kind = inbound.kind
        if inbound.error is not None:
            code, message, field = inbound.error
            if kind:
                self._reject(kind, inbound.public_data, code, message, field=field)
            else:
                self.bad_input(code, message, field)
            return None
        msg = inbound.msg
        assert msg is not None
        if msg.public_data.doc_id != self.doc_id:
            self._reject(
                kind,
                inbound.public_data,
                "wrong-document",
                "publicData.docId is not this connection's document",
            )
            return None
        if not self.identity.can_write:
            # the transport's own permission (Jupyter's authorizer: ``write`` on ``secsync``)
            # is enforced here, before and whatever the access policy says
            self._continue(False, inbound)
            return None
        allowed = self.relay.policy.has_access(
            AccessRequest(inbound.action, self.doc_id, self.identity, msg.public_data.pub_key)
        )
        if inspect.isawaitable(allowed):
            return self._after_access(allowed, inbound)
        self._continue(bool(allowed), inbound)
        return None

    async def _after_access(self, allowed, inbound: Inbound) -> None:
        granted = bool(await allowed)
        if not self.closed:
            self._continue(granted, inbound)

    def _continue(self, allowed: bool, inbound: Inbound) -> None:
        kind = inbound.kind
        if not allowed:
            self.send(frames.error("unauthorized", f"the access policy denied {kind}"))
            self.send(frames.simple("unauthorized"))
            self.close(CLOSE_POLICY, "unauthorized")
            return
        if kind == "update":
            self._update(inbound)
        elif kind == "snapshot":
            self._snapshot(inbound)
        else:
            self._ephemeral(inbound)

    def _reject(self, kind: str, pd: Mapping, code: str, message: str, field=None) -> None:
        if code in _RULE_CODES:
            self.send(frames.error(code, message, field=field))
        else:
            self.bad_input(code, message, field)
        if kind == "snapshot":
            self.send(frames.simple("snapshot-save-failed"))
        elif kind == "update":
            ref = pd.get("refSnapshotId")
            clock = pd.get("clock")
            self.send(
                frames.update_save_failed(
                    ref if frames.echoable(ref) else None,
                    clock if type(clock) is int and 0 <= clock <= MAX_SAFE_INTEGER else None,
                )
            )

    # -- updates
    def _update(self, inbound: Inbound) -> None:
        msg = inbound.msg
        assert isinstance(msg, Update)
        pd = msg.public_data
        if not inbound.signature_ok:
            self._reject("update", pd.raw, "invalid-signature", "the update's signature is invalid")
            return
        room = self.room
        state = room.state
        active = state.active
        if active is None or pd.ref_snapshot_id != active.snapshot_id:
            self._reject(
                "update",
                pd.raw,
                "update-wrong-snapshot",
                frames.ERROR_CODES["update-wrong-snapshot"],
            )
            return
        last = state.clocks.get(pd.pub_key, -1)
        if pd.clock != last + 1:
            code = "update-clock-replayed" if pd.clock <= last else "update-clock-gap"
            self._reject(
                "update", pd.raw, code, f"clock {pd.clock}, last stored clock of this pubKey {last}"
            )
            return
        body = inbound.body
        size = utf8_length(body)
        quota = self.relay.limits.max_document_bytes
        if state.stored_bytes + size > quota:
            self.send(frames.error("document-too-large", _quota_message(state.stored_bytes, quota)))
            self.send(frames.update_save_failed(pd.ref_snapshot_id, pd.clock, True))
            return
        state.clocks[pd.pub_key] = pd.clock
        state.stored_bytes += size
        fut = self.relay.store.save_update(
            self.doc_id,
            snapshot_id=pd.ref_snapshot_id,
            pub_key=pd.pub_key,
            clock=pd.clock,
            message=body,
        )
        room.track(fut).add_done_callback(
            partial(self._update_done, pd.ref_snapshot_id, pd.clock, body)
        )

    def _update_done(self, snapshot_id: str, clock: int, body: str, fut: asyncio.Future) -> None:
        room = self.room
        result = _result(fut)
        try:
            if result.ok:
                self.send(frames.update_saved(snapshot_id, clock))
                room.broadcast(result.position, OutFrame(frames.with_type("update", body)), self)
            else:
                self.send(frames.error(result.code or "storage-failed", result.message))
                self.send(frames.update_save_failed(snapshot_id, clock))
                room.reload()
        finally:
            room.end_write()

    # -- snapshots
    def _snapshot(self, inbound: Inbound) -> None:
        msg = inbound.msg
        assert isinstance(msg, Snapshot)
        pd = msg.public_data
        if not inbound.signature_ok:
            self._reject(
                "snapshot", pd.raw, "invalid-signature", "the snapshot's signature is invalid"
            )
            return
        room = self.room
        state = room.state
        active = state.active
        if active is not None:
            if pd.parent_snapshot_id != active.snapshot_id:
                self._snapshot_failed(
                    "snapshot-parent-not-active",
                    "parentSnapshotId is not the active snapshot",
                    pd.parent_snapshot_id,
                    None,
                )
                return
            if pd.parent_snapshot_update_clocks != state.clocks:
                self._snapshot_failed(
                    "snapshot-clocks-differ",
                    "parentSnapshotUpdateClocks differ from the relay's clocks",
                    active.snapshot_id,
                    pd.parent_snapshot_update_clocks,
                )
                return
        body = inbound.body
        size = utf8_length(body)
        quota = self.relay.limits.max_document_bytes
        if size > quota:
            self.send(frames.error("document-too-large", _quota_message(0, quota, size)))
            self.send(frames.simple("snapshot-save-failed"))
            return
        chash = inbound.ciphertext_hash
        state.active = SnapshotInfo(pd.snapshot_id, chash, pd.parent_snapshot_proof)
        state.clocks = {}
        state.stored_bytes = size
        fut = self.relay.store.save_snapshot(
            self.doc_id,
            snapshot_id=pd.snapshot_id,
            parent_snapshot_id=pd.parent_snapshot_id,
            parent_clocks=pd.parent_snapshot_update_clocks,
            pub_key=pd.pub_key,
            ciphertext_hash=chash,
            parent_snapshot_proof=pd.parent_snapshot_proof,
            message=body,
        )
        room.track(fut).add_done_callback(
            partial(
                self._snapshot_done,
                pd.snapshot_id,
                pd.parent_snapshot_id,
                pd.parent_snapshot_update_clocks,
                body,
            )
        )

    def _snapshot_done(
        self, snapshot_id: str, parent_id: str, parent_clocks: Mapping[str, int], body: str, fut
    ) -> None:
        room = self.room
        result = _result(fut)
        try:
            if result.ok:
                if result.created_document:
                    room.mark_stored()
                self.send(frames.snapshot_saved(snapshot_id))
                room.broadcast(result.position, OutFrame(frames.snapshot_broadcast(body)), self)
            else:
                # the store refused what the room's memory accepted (another writer on the
                # database, or a failed write): re-read the rule state before the next frame,
                # and answer from the store with what the client is missing relative to its
                # parent snapshot and clocks
                room.reload()
                self._snapshot_failed(
                    result.code or "storage-failed",
                    result.message,
                    parent_id or None,
                    parent_clocks,
                )
        finally:
            room.end_write()

    def _snapshot_failed(self, code: str, message, known_id, known_clocks) -> None:
        """Answer with what the client is missing, read after the pending writes."""
        self.send(frames.error(code, message))
        room = self.room
        room.begin_write()  # keeps the room open during the read
        earlier = list(room.inflight)  # what the client is missing may still be committing

        async def answer() -> None:
            try:
                if earlier:
                    await asyncio.wait(earlier)
                view = await self.relay.store.read_document(self.doc_id, known_id, known_clocks)
            except Exception as exc:
                self.relay.log.error(
                    "read for snapshot-save-failed on %s failed: %s", self.doc_id, exc
                )
                self.send(frames.simple("snapshot-save-failed"))
                return
            finally:
                room.end_write()
            if not view.has_snapshot:
                self.send(frames.simple("snapshot-save-failed"))
            elif view.known_is_active:
                self.send_message(
                    frames.document_parts(None, view.updates, None, "snapshot-save-failed")
                )
            else:
                self.send_message(
                    frames.document_parts(
                        view.snapshot, view.updates, view.chain, "snapshot-save-failed"
                    )
                )

        spawn(answer())

    # -- ephemeral messages
    def _ephemeral(self, inbound: Inbound) -> None:
        if not inbound.signature_ok:
            self.bad_input("invalid-signature", "the ephemeral message's signature is invalid")
            return
        frame = OutFrame(frames.with_type("ephemeral-message", inbound.body))
        self.room.broadcast(None, frame, self)


def _quota_message(stored: int, quota: int, snapshot: int | None = None) -> str:
    if snapshot is not None:
        return (
            f"the snapshot has {snapshot} bytes, more than this relay stores per document ({quota})"
        )
    return (
        f"the active snapshot and its updates hold {stored} bytes; this relay stores at most "
        f"{quota} bytes per document: write a new snapshot to free the space"
    )


def _result(fut: asyncio.Future) -> SaveResult:
    if fut.cancelled():
        return SaveResult(False, code="storage-failed", message="write cancelled")
    exc = fut.exception()
    if exc is not None:
        return SaveResult(False, code="storage-failed", message=str(exc))
    return fut.result()


class Room:
    """The connections of one open document and its rule state."""

    __slots__ = (
        "doc_id",
        "inflight",
        "joining",
        "load_error",
        "pending",
        "ready",
        "relay",
        "reloading",
        "sessions",
        "state",
    )

    def __init__(self, relay: Relay, doc_id: str):
        self.relay = relay
        self.doc_id = doc_id
        self.state = DocumentState(exists=False)
        self.sessions: list[Session] = []
        self.joining: dict[Session, list[tuple[int, OutFrame]]] = {}
        self.pending = 0
        self.inflight: set[asyncio.Future] = set()
        #: set while the rule state is re-read from the store (frames wait for it)
        self.reloading: asyncio.Future | None = None
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.load_error: Exception | None = None

    @property
    def connection_count(self) -> int:
        return len(self.sessions) + len(self.joining)

    def broadcast(self, pos: int | None, frame: OutFrame, exclude: Session | None) -> None:
        sessions = self.sessions
        if self.relay.policy_filters_broadcasts:
            # every receiver, joined or joining, is checked before each broadcast
            receivers = [*sessions, *self.joining]
            allowed = self.relay.policy.broadcast_access(
                self.doc_id, [s.identity for s in receivers]
            )
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
                    s.transport.send_frame(frame)
            for s, buffered in self.joining.items():
                if s is not exclude:
                    buffered.append((pos, frame))

    def track(self, write) -> asyncio.Future:
        """Count a submitted store write as in flight until its result has been handled."""
        fut = asyncio.ensure_future(write)
        self.begin_write()
        self.inflight.add(fut)
        fut.add_done_callback(self.inflight.discard)
        return fut

    def begin_write(self) -> None:
        self.pending += 1
        self.relay._pending += 1

    def end_write(self) -> None:
        self.pending -= 1
        relay = self.relay
        relay._pending -= 1
        if relay._pending == 0:
            relay._idle.set()
        if self.pending == 0:
            self._maybe_close()

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
            state = await self.relay.store.load_state(self.doc_id)
            was_stored = self.state.exists
            self.state = state
            if state.exists and not was_stored:
                self.relay._unsaved_rooms -= 1
        except Exception as exc:  # the store will refuse what the stale state lets through
            self.relay.log.error("reloading the state of %s failed: %s", self.doc_id, exc)
        finally:
            fut, self.reloading = self.reloading, None
            if fut is not None and not fut.done():
                fut.set_result(None)
            self.end_write()

    def mark_stored(self) -> None:
        self.relay._stored_documents += 1
        if not self.state.exists:
            self.state.exists = True
            self.relay._unsaved_rooms -= 1

    def remove(self, session: Session) -> None:
        if session in self.joining:
            del self.joining[session]
        else:
            try:
                self.sessions.remove(session)
            except ValueError:
                pass
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.sessions or self.joining or self.pending:
            return
        relay = self.relay
        if relay.rooms.get(self.doc_id) is self:
            del relay.rooms[self.doc_id]
            if not self.state.exists and self.ready.done() and self.load_error is None:
                relay._unsaved_rooms -= 1


@dataclass(frozen=True)
class ConnectParams:
    session_key: str | None
    mode: str
    known_snapshot_id: str | None
    known_clocks: dict[str, int] | None


class QueryError(ValueError):
    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


def parse_query(query: str | Mapping[str, Any]) -> ConnectParams:
    """The reference query parameters, strictly. Raises :class:`QueryError`."""
    if isinstance(query, str):
        try:
            values = parse_qs(query, keep_blank_values=True, errors="strict")
        except (ValueError, UnicodeDecodeError) as exc:
            raise QueryError("invalid-query", f"malformed query string: {exc}")
    else:
        values = dict(query)

    def first(name: str) -> str | None:
        v = values.get(name)
        if v is None:
            return None
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise QueryError("invalid-query", f"{name} is not UTF-8", name)
        return v

    mode = first("mode") or "complete"
    if mode not in ("complete", "delta"):
        raise QueryError("invalid-query", "mode must be 'complete' or 'delta'", "mode")
    known_id = first("knownSnapshotId") or None
    if known_id is not None and len(known_id) > 256:
        raise QueryError("invalid-query", "knownSnapshotId is too long", "knownSnapshotId")
    known_clocks = None
    raw_clocks = first("knownSnapshotUpdateClocks")
    if raw_clocks:
        try:
            parsed = json.loads(raw_clocks)
        except (ValueError, RecursionError):
            raise QueryError(
                "invalid-query",
                "knownSnapshotUpdateClocks is not JSON",
                "knownSnapshotUpdateClocks",
            )
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and type(v) is int and 0 <= v <= MAX_SAFE_INTEGER
            for k, v in parsed.items()
        ):
            raise QueryError(
                "invalid-query",
                "knownSnapshotUpdateClocks must be an object {pubKey: clock}",
                "knownSnapshotUpdateClocks",
            )
        known_clocks = parsed
    return ConnectParams(first("sessionKey"), mode, known_id, known_clocks)


class Relay:
    """A blind Secsync relay over a :class:`RelayStore`."""

    def __init__(
        self,
        store: RelayStore,
        policy: AccessPolicy | None = None,
        limits: Limits | None = None,
        *,
        log: logging.Logger | None = None,
    ):
        #: where the relay logs (inside Jupyter Server: a child of the server app's log)
        self.log = log or logging.getLogger("secsync_jupyter.relay")
        self.store = store
        self.policy = policy or AnyAuthenticatedPolicy()
        self.policy_filters_broadcasts = (
            type(self.policy).broadcast_access is not AccessPolicy.broadcast_access
        )
        self.limits = limits or Limits()
        self.rooms: dict[str, Room] = {}
        self.closing = False
        self._stored_documents = 0
        self._unsaved_rooms = 0
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = False
        self.bad_input_log = BadInputLog(self.log)
        #: analyzes large frames off the event loop (see :mod:`.inbound`)
        self._analysis_pool: ThreadPoolExecutor | None = None

    def analyze_in_thread(self, text: str) -> asyncio.Future:
        if self._analysis_pool is None:
            self._analysis_pool = ThreadPoolExecutor(2, thread_name_prefix="secsync-relay-verify")
        return asyncio.get_running_loop().run_in_executor(self._analysis_pool, analyze, text)

    async def start(self) -> None:
        """Open the store (if not yet open) and count the stored documents."""
        await self.store.open()
        self._stored_documents = await self.store.count_documents()
        self._started = True

    @property
    def sessions(self) -> list[Session]:
        out: list[Session] = []
        for room in self.rooms.values():
            out.extend(room.sessions)
            out.extend(room.joining)
        return out

    async def drain(self) -> None:
        """Wait until every accepted write is committed and answered."""
        while self._pending:
            self._idle.clear()
            await self._idle.wait()

    async def stop(self, close_store: bool = True) -> None:
        """Graceful shutdown: refuse new frames, finish in-flight writes (acks included),
        close every connection with 1001 going-away, close the store."""
        self.closing = True
        await self.drain()
        for s in self.sessions:
            s.close(CLOSE_GOING_AWAY, "relay shutting down")
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

        def refuse(frame: str, code: int, reason: str, err: str | None = None, **extra) -> None:
            refuse_connection(transport, frame, code, reason, err, **extra)

        def document_error(code: int, reason: str, err: str, **extra) -> None:
            refuse(frames.simple("document-error"), code, reason, err, **extra)

        if self.closing:
            refuse(frames.error("shutting-down"), CLOSE_GOING_AWAY, "relay shutting down")
            return None
        if not DOC_ID_RE.fullmatch(doc_id):
            document_error(
                CLOSE_POLICY,
                "bad document id",
                "invalid-document-id",
            )
            return None
        try:
            params = parse_query(query)
        except QueryError as exc:
            document_error(
                CLOSE_POLICY,
                "bad query",
                exc.code,
                message=str(exc),
                field=exc.field,
            )
            return None
        if require_session_key and params.session_key is None:
            document_error(
                CLOSE_POLICY,
                "missing sessionKey",
                "missing-session-key",
            )
            return None
        if identity is None:
            refuse(frames.simple("unauthorized"), CLOSE_POLICY, "unauthorized", "unauthorized")
            return None
        allowed = self.policy.has_access(AccessRequest("read", doc_id, identity))
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            refuse(frames.simple("unauthorized"), CLOSE_POLICY, "unauthorized", "unauthorized")
            return None

        room = self.rooms.get(doc_id)
        if room is None:
            room = Room(self, doc_id)
            self.rooms[doc_id] = room
            try:
                room.state = await self.store.load_state(doc_id)
            except Exception as exc:
                room.load_error = exc
                del self.rooms[doc_id]
                room.ready.set_result(None)
                self.log.error("loading %s failed: %s", doc_id, exc)
                document_error(
                    CLOSE_INTERNAL,
                    "storage error",
                    "storage-failed",
                    message=str(exc),
                )
                return None
            if not room.state.exists:
                if self._stored_documents + self._unsaved_rooms >= self.limits.max_documents:
                    del self.rooms[doc_id]
                    room.load_error = StoreError("too many documents")
                    room.ready.set_result(None)
                    document_error(
                        CLOSE_TRY_AGAIN,
                        "too many documents",
                        "too-many-documents",
                    )
                    return None
                self._unsaved_rooms += 1
            room.ready.set_result(None)
        elif not room.ready.done():
            await room.ready
            if room.load_error is not None:
                document_error(
                    CLOSE_TRY_AGAIN,
                    "document unavailable",
                    "storage-failed",
                    message=str(room.load_error),
                )
                return None
        if room.connection_count >= self.limits.max_connections_per_document:
            document_error(
                CLOSE_TRY_AGAIN,
                "too many connections",
                "too-many-connections",
            )
            if not room.connection_count:
                room._maybe_close()
            return None

        session = Session(self, room, transport, identity)
        room.joining[session] = []
        try:
            view = await self.store.read_document(
                doc_id, params.known_snapshot_id, params.known_clocks
            )
        except Exception as exc:
            self.log.error("reading %s failed: %s", doc_id, exc)
            room.joining.pop(session, None)
            room._maybe_close()
            document_error(
                CLOSE_INTERNAL,
                "storage error",
                "storage-failed",
                message=str(exc),
            )
            return None
        buffered = room.joining.pop(session, None)
        if buffered is None or transport.is_closed():  # closed while reading
            session.closed = True
            room._maybe_close()
            return None
        transport.send_message(document_frame(view, params.mode))
        floor = view.position
        for pos, frame in buffered:
            if pos > floor:
                transport.send_frame(frame)
                floor = pos
        session.floor = floor
        room.sessions.append(session)
        return session


def refuse_connection(
    transport: Transport, frame: str, code: int, reason: str, err: str | None = None, **extra
) -> None:
    """Refuse a connection: the ``error`` frame (when ``err``), the reference frame, close."""
    if err is not None:
        transport.send_text(frames.error(err, **extra))
    transport.send_text(frame)
    transport.close(code, reason)


def document_frame(view: DocumentView, mode: str) -> list[str]:
    """The parts of the ``document`` frame for a joining connection."""
    if not view.has_snapshot:
        return frames.document_parts(None, (), ())
    if view.known_is_active and mode == "delta":
        return frames.document_parts(None, view.updates, None)
    if view.known_is_active:
        # complete mode with the active snapshot known: the snapshot, only the newer updates
        return frames.document_parts(view.snapshot, view.updates, ())
    return frames.document_parts(view.snapshot, view.updates, view.chain)
