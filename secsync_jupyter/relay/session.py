"""A session: one connection to one document, and the handling of the frames it sends.

Per frame: :func:`.inbound.analyze` (parse and verify, in a worker thread for a large frame),
then, in order, the answers to a malformed frame, the wrong document, the write permission
and the access policy, the signature, and the acceptance rules (:mod:`.rules`) against the
room's state; an accepted message goes to the store and, once committed, is acknowledged to
the sender and broadcast by the room. The frames of one connection are handled one after the
other (a frame waits while an earlier one is in a worker thread, an asynchronous policy, or
while the room re-reads its state).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from ..protocol import Snapshot, Update
from ..protocol.encoding import MAX_SAFE_INTEGER
from ..protocol.epochs import check_message_epoch, parse_epoch
from ..protocol.membership import (
    LogHead,
    MembershipError,
    new_reader_challenge,
    verify_reader_proof,
)
from ..protocol.messages import SnapshotPublicData, UpdatePublicData
from . import frames, rules, trace
from .admission import CLOSE_POLICY
from .frames import OutFrame
from .inbound import VERIFY_IN_THREAD_BYTES, Inbound, analyze
from .logs import ConnectionLog
from .members import now_ms
from .policy import AccessRequest, Identity
from .query import ConnectParams
from .room import Room, spawn
from .store import SaveResult, utf8_length

if TYPE_CHECKING:
    from .core import Relay, Transport

#: how a broadcast ``update`` frame begins (:func:`.frames.with_type`)
_UPDATE_FRAME = '{"type":"update",'


class Session:
    """One connection to one document."""

    __slots__ = (
        "_busy",
        "_held",
        "_inbox",
        "_log_budget",
        "_params",
        "_timer",
        "_undurable",
        "_undurable_snapshots",
        "challenge",
        "closed",
        "doc_id",
        "floor",
        "identity",
        "link",
        "lockbox_epochs",
        "pub_key",
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
        #: early broadcast (docs/relay.md "Durability"): the positions of this connection's
        #: writes that are committed (already broadcast) but not yet acknowledged, oldest
        #: first (with whether each is a snapshot), and the others' messages committed after
        #: the oldest that must wait for its ack (:meth:`deliver`), held until then
        self._undurable: deque[tuple[int, bool]] = deque()
        self._undurable_snapshots = 0
        self._held: list[tuple[int, OutFrame]] = []
        self._busy = False
        self._inbox: list[Any] = []
        self._log_budget = ConnectionLog()
        #: a document with a membership log: the nonce of the reader challenge until a
        #: member's key is proven, then ``None`` and ``pub_key`` is the proven key
        self.challenge: str | None = None
        self.pub_key: str | None = None
        self._params: ConnectParams | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: proven as a live invitation link (issue 12): the log and its own lockboxes only
        self.link = False
        #: the epochs of the lockboxes this connection was given
        self.lockbox_epochs: set[int] = set()

    # ------------------------------------------------------------------ reader challenge
    def challenge_reader(self, params: ConnectParams) -> None:
        """Send the ``reader-challenge``; nothing else is sent or accepted until the proof."""
        self._params = params
        self.challenge = new_reader_challenge()
        self.room.challenged.add(self)
        self.send(frames.reader_challenge(self.challenge))
        timeout = self.relay.limits.handshake_timeout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._no_proof)

    def _no_proof(self) -> None:
        self._timer = None
        if self.challenge is not None:
            self.refuse_reader(723, "no reader proof in time")

    def refuse_reader(self, number: int, reason: str) -> None:
        self.send(frames.unauthorized(f"SECSYNC_ERROR_{number}", reason))
        self.close(CLOSE_POLICY, "unauthorized")

    def _proof(self, text: str):
        """The first frame of a reader on a document with a log: its ``reader-proof``."""
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict) or obj.get("type") != "reader-proof":
            self.refuse_reader(723, "expected a reader-proof")
            return None
        log = self.room.log
        assert log is not None and self.challenge is not None
        try:
            key = verify_reader_proof(obj, self.doc_id, self.challenge)
        except MembershipError as exc:
            self.refuse_reader(int(exc.code[-3:]), str(exc))
            return None
        if self._timer is not None:  # a valid proof arrived in time (membership: below)
            self._timer.cancel()
            self._timer = None
        if log.state is not None and log.is_member(key):
            return self._proven(key)
        if log.state is not None and key in log.state.links:
            return self._link_proven(key)
        return self._proof_checked_again(key)

    def _link_proven(self, key: str):
        """A reader proof by a link key: accepted while the link is live at the relay's
        clock (754 expired, 755 removed); the connection gets no content."""
        log = self.room.log
        assert log is not None and log.state is not None
        link = log.state.links[key]
        if link.removed is not None:
            self.refuse_reader(755, "the link was removed")
            return None
        if not link.live(now_ms()):
            self.refuse_reader(754, "the link has expired")
            return None
        self.link = True
        self.transport = _LinkTransport(self.transport)
        return self._link_joined(key, link.expires_at)

    async def _link_joined(self, key: str, expires_at: int | None) -> None:
        await self._proven(key)
        if expires_at is not None and not self.closed:
            # the link's connection ends when the link expires (at the relay's clock)
            delay = max(0, expires_at + 1 - now_ms()) / 1000
            self._timer = asyncio.get_running_loop().call_later(delay, self._link_expired)

    def _link_expired(self) -> None:
        self._timer = None
        if not self.closed:
            self.send(frames.unauthorized("SECSYNC_ERROR_754", "the link has expired"))
            self.close(CLOSE_POLICY, "link expired")

    async def _proof_checked_again(self, key: str) -> None:
        """Not a member of the cached log, or no log yet: another relay process on the same
        database may have stored entries since (a new member, the root): read them first."""
        log = self.room.log
        assert log is not None
        await log.refresh()
        if self.closed:
            return
        if log.state is not None and key in log.state.links:
            pending = self._link_proven(key)
            if pending is not None:
                await pending
            return
        if log.state is not None and not log.is_member(key):
            self.refuse_reader(722, "not a member of this document")
            return
        await self._proven(key)

    async def _proven(self, key: str) -> None:
        self.challenge = None
        self.pub_key = key
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.room.challenged.discard(self)
        params = self._params
        assert params is not None
        if not await self.relay.join(self, params):
            self.closed = True

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
        if self.challenge is not None:
            self.refuse_reader(723, "expected a reader-proof")
            return
        self.bad_input("invalid-utf8")

    def on_binary(self, data: bytes) -> None:
        if self.challenge is not None:
            self.refuse_reader(723, "expected a reader-proof")
            return
        self.bad_input("binary-frame")

    def bad_input(self, code: str, message: str | None = None, field: str | None = None) -> None:
        """Answer a malformed frame (and log it briefly, rate-limited)."""
        self.send(frames.error(code, message, field=field))
        self.note_bad_input(code)

    def note_bad_input(self, code: str) -> None:
        """Log a malformed frame (rate-limited; the transport may have answered it)."""
        self.relay.bad_input_log.note(self._log_budget, self.doc_id, self.identity.user, code)

    def on_close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.closed:
            return
        self.closed = True
        self.room.remove(self)

    def send(self, text: str) -> None:
        if not self.closed:
            self.transport.send_text(text)

    def deliver(self, pos: int, frame: OutFrame) -> None:
        """Another connection's stored message at ``pos``. While a write of ours is committed
        but not yet durable (early broadcast), a message committed after it that may build on
        it waits for its acknowledgement: a client never sees another client's snapshot that
        may contain its write (102), nor anything on a snapshot of ours, before that write's
        ``update-saved`` / ``snapshot-saved`` — the order every client, the reference's too,
        relies on. Another author's *update* builds on no write of ours while all of ours
        waiting are updates (an update holds its author's change only, on a snapshot we
        have), so it goes out at once, unless something before it is held (position order
        per connection)."""
        if self._held or (
            self._undurable and pos > self._undurable[0][0] and self._must_wait(frame)
        ):
            self._held.append((pos, frame))
            if trace.ON:
                trace.ev("hold", self.doc_id, pos, id(self))
        elif not self.closed:
            self.transport.send_frame(frame)

    def _must_wait(self, frame: OutFrame) -> bool:
        """Whether ``frame``, committed after our oldest unacknowledged write, waits for it."""
        return self._undurable_snapshots > 0 or not frame.text.startswith(_UPDATE_FRAME)

    def _durable(self) -> None:
        """Our oldest committed write was answered (acknowledged, or failed durably): what
        was held behind it goes out, in position order, up to the first that must still
        wait for our next one."""
        if self._undurable and self._undurable.popleft()[1]:
            self._undurable_snapshots -= 1
        limit = self._undurable[0][0] if self._undurable else None
        held, self._held = self._held, []
        for pos, frame in held:
            if self._held or (limit is not None and pos > limit and self._must_wait(frame)):
                self._held.append((pos, frame))
            elif not self.closed:
                self.transport.send_frame(frame)
                if trace.ON:
                    trace.ev("release", self.doc_id, pos, id(self))

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
        if self.room.log is not None:
            if self.challenge is not None:
                return self._proof(text)
            if self.link:
                return self._from_link(text)
            if '"type"' in text:  # a membership frame? (messages have no "type")
                control = self._control(text)
                if control is not False:
                    return control
        if len(text) >= VERIFY_IN_THREAD_BYTES:
            return self._decide_later(text)
        return self._decide(analyze(text))

    def _from_link(self, text: str):
        """A link connection may only send a ``log-entry`` (its ``add-member``, checked by
        :meth:`.members.RoomLog.append`); anything else: ``write-refused`` 753, ignored."""
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and obj.get("type") == "log-entry":
            return self._control(text)
        of = "ephemeral"
        if isinstance(obj, dict) and isinstance(obj.get("type"), str):
            of = obj["type"] if obj["type"] in ("lockbox", "reader-proof") else "ephemeral"
        elif isinstance(obj, dict) and isinstance(obj.get("publicData"), dict):
            pd = obj["publicData"]
            of = "update" if "refSnapshotId" in pd else "snapshot" if "snapshotId" in pd else of
        self.send(
            frames.write_refused(
                of, "SECSYNC_ERROR_753", reason="a link connection may only add a member"
            )
        )
        return None

    def _control(self, text: str):
        """A ``log-entry`` (appended, awaited before the next frame) or a second
        ``reader-proof``; ``False`` when the frame is something else."""
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return False
        type_ = obj.get("type") if isinstance(obj, dict) else None
        if type_ == "log-entry":
            if not self.identity.can_write:  # Jupyter's ``write`` permission, as for messages
                self.send(frames.error("unauthorized", "no permission to write"))
                self.send(frames.simple("unauthorized"))
                self.close(CLOSE_POLICY, "unauthorized")
                return None
            log = self.room.log
            assert log is not None
            return log.append(self, obj.get("entry"), obj.get("lockboxes"))
        if type_ == "lockbox":
            if not self.identity.can_write:
                self.send(frames.error("unauthorized", "no permission to write"))
                self.send(frames.simple("unauthorized"))
                self.close(CLOSE_POLICY, "unauthorized")
                return None
            log = self.room.log
            assert log is not None
            return log.save_lockbox(self, obj.get("lockbox"))
        if type_ == "reader-proof":
            self.bad_input("invalid-message", "this connection's key is proven already", "type")
            return None
        return False

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
            return self._continue(False, inbound)
        allowed = self.relay.policy.has_access(
            AccessRequest(inbound.action, self.doc_id, self.identity, msg.public_data.pub_key)
        )
        if inspect.isawaitable(allowed):
            return self._after_access(allowed, inbound)
        return self._continue(bool(allowed), inbound)

    async def _after_access(self, allowed, inbound: Inbound) -> None:
        granted = bool(await allowed)
        if not self.closed:
            more = self._continue(granted, inbound)
            if more is not None:
                await more

    def _continue(
        self, allowed: bool, inbound: Inbound, refreshed: bool = False, caught_up: bool = False
    ):
        kind = inbound.kind
        if not allowed:
            self.send(frames.error("unauthorized", f"the access policy denied {kind}"))
            self.send(frames.simple("unauthorized"))
            self.close(CLOSE_POLICY, "unauthorized")
            return None
        if not self._signed(inbound):
            return None
        log = self.room.log
        if log is not None:
            # a document with a membership log: only members' messages, only writers' writes
            pd = inbound.public_data
            msg = inbound.msg
            assert msg is not None
            reason = log.write_refusal(kind, msg.public_data.pub_key, pd)
            if reason is not None:
                if not refreshed and kind != "ephemeral" and log.names_newer_head(pd):
                    return self._after_refresh(inbound)
                self._write_refused(kind, pd, reason)
                return None
            if kind != "ephemeral":
                refusal = self._epoch_refusal(kind, pd)
                if refusal is not None:
                    self._write_refused(kind, pd, refusal[1], refusal[0])
                    return None
        if kind == "ephemeral":
            frame = OutFrame(frames.with_type("ephemeral-message", inbound.body))
            self.room.broadcast(None, frame, self)
            return None
        msg = inbound.msg
        assert isinstance(msg, (Update, Snapshot))
        size = utf8_length(inbound.body)
        check = rules.check_update if kind == "update" else rules.check_snapshot
        refusal = check(
            self.room.state,
            msg.public_data,  # type: ignore[arg-type]
            size,
            self.relay.limits.max_document_bytes,
        )
        if refusal is not None and not caught_up and self._may_lag(refusal, msg):
            return self._after_catch_up(inbound, refreshed)
        if isinstance(msg, Update):
            self._update(msg.public_data, inbound.body, size, refusal)
        else:
            self._snapshot(msg.public_data, inbound, size, refusal)
        return None

    async def _after_refresh(self, inbound: Inbound) -> None:
        """A write naming a ``logHead`` this process does not know yet: read the entries
        another process may have stored, then decide again."""
        log = self.room.log
        assert log is not None
        await log.refresh()
        if not self.closed:
            more = self._continue(True, inbound, refreshed=True)
            if more is not None:
                await more

    def _may_lag(self, refusal: rules.Refusal, msg: Update | Snapshot) -> bool:
        """Whether a refusal may come from a state lagging behind other relay processes'
        commits (fan-out across processes): the message names a snapshot that is not known
        here to be superseded, and the refusal is one catching up can lift."""
        fanout = self.relay.fanout
        if fanout is None or refusal.code not in rules.MAY_LAG:
            return False
        pd = msg.public_data
        ref = pd.ref_snapshot_id if isinstance(pd, UpdatePublicData) else pd.parent_snapshot_id
        return fanout.may_be_behind(self.room, ref)

    async def _after_catch_up(self, inbound: Inbound, refreshed: bool) -> None:
        """A write the in-memory state would refuse, in a document other processes write: the
        room first reads the rows committed after its delivered position (delivering them and
        applying them to its state), then the write is decided again on the fresh state. The
        store stays the final arbiter; when the read fails, the decision is the same as
        before. docs/relay.md "Fan-out across relay processes"."""
        if trace.ON:
            trace.ev("lag-check", self.doc_id)
        await self.relay.fanout.fresh(self.room)
        if not self.closed:
            more = self._continue(True, inbound, refreshed, caught_up=True)
            if more is not None:
                await more

    def _epoch_refusal(self, kind: str, pd: Mapping) -> tuple[str, str] | None:
        """Issue 12: a snapshot's ``epoch`` is the one at its ``logHead`` (767) and not
        older than the current one (768); an update's snapshot is not of an older epoch than
        the current one (768). ``(code, reason)`` or ``None``."""
        log = self.room.log
        assert log is not None and log.state is not None
        state = log.state
        active = self.room.state.active
        if kind == "update":
            if (
                active is not None
                and active.snapshot_id == pd.get("refSnapshotId")
                and active.epoch < state.epoch
            ):
                return (
                    "SECSYNC_ERROR_768",
                    f"the snapshot is in epoch {active.epoch}, the current one is {state.epoch}",
                )
            return None
        head = pd["logHead"]  # checked by write_refusal
        try:
            check_message_epoch(
                state,
                pd.get("epoch"),
                LogHead(head["seq"], head["hash"]),
                parent=active.epoch if active is not None else None,
            )
        except MembershipError as exc:
            return exc.code, str(exc)
        return None

    def _write_refused(
        self, kind: str, pd: Mapping, reason: str, code: str = "SECSYNC_ERROR_724"
    ) -> None:
        """``write-refused`` (724, or 767 / 768 for epochs): not to be retried; an ephemeral
        message is dropped."""
        if kind == "snapshot":
            snapshot_id, clock = pd.get("snapshotId"), None
        elif kind == "update":
            snapshot_id, clock = pd.get("refSnapshotId"), pd.get("clock")
        else:
            snapshot_id = clock = None
        self.send(frames.write_refused(kind, code, snapshot_id, clock, reason))

    def _reject(self, kind: str, pd: Mapping, code: str, message: str, field=None) -> None:
        """A malformed message: the error, then the reference answer of its kind (with the
        ids it carried only when they can be sent back)."""
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

    def _signed(self, inbound: Inbound) -> bool:
        """Whether the message's signature verified (answered ``invalid-signature`` if not)."""
        if inbound.signature_ok:
            return True
        noun = "ephemeral message" if inbound.kind == "ephemeral" else inbound.kind
        self._reject(
            inbound.kind,
            inbound.public_data,
            "invalid-signature",
            f"the {noun}'s signature is invalid",
        )
        return False

    # -- updates
    def _update(
        self, pd: UpdatePublicData, body: str, size: int, refusal: rules.Refusal | None
    ) -> None:
        room = self.room
        if refusal is not None:
            self.send(frames.error(refusal.code, refusal.message))
            self.send(
                frames.update_save_failed(
                    pd.ref_snapshot_id, pd.clock, refusal.requires_new_snapshot
                )
            )
            return
        rules.accept_update(room.state, pd, size)
        if trace.ON:
            trace.ev("accept", self.doc_id, pd.pub_key[:8], pd.clock)
        early = self._early_commit(partial(self._update_committed, body, True))
        write = self.relay.store.save_update(
            self.doc_id,
            snapshot_id=pd.ref_snapshot_id,
            pub_key=pd.pub_key,
            clock=pd.clock,
            message=body,
            **early,
        )
        done = partial(self._update_done, pd.ref_snapshot_id, pd.clock, body, bool(early))
        self._commit(write, done)

    def _early_commit(self, on_committed) -> dict:
        """``{"on_committed": ...}`` for a store that reports commits before they are durable
        (SQLite or PostgreSQL with synchronous full/extra): the write is broadcast once
        committed and acknowledged once durable (docs/relay.md "Durability"); else ``{}``."""
        if getattr(self.relay.store, "early_commit", False):
            return {"on_committed": on_committed}
        return {}

    def _commit(self, write, done) -> None:
        """Hand a write to the store; ``done(result)`` once the store has answered (the room
        counts the write as in flight until then)."""
        room = self.room

        def answered(fut: asyncio.Future) -> None:
            try:
                done(_result(fut))
            finally:
                room.end_write()

        room.track(write).add_done_callback(answered)

    def _update_committed(self, body: str, early: bool, result: SaveResult) -> None:
        if result.ok:
            if early:
                self._undurable.append((result.position, False))
            self.room.broadcast(result.position, OutFrame(frames.with_type("update", body)), self)

    def _update_done(
        self, snapshot_id: str, clock: int, body: str, early: bool, result: SaveResult
    ) -> None:
        if result.ok:
            if trace.ON:
                trace.ev("ack", self.doc_id, trace.pub(body), clock, result.position)
            self.send(frames.update_saved(snapshot_id, clock))
            if early:
                self._durable()
            else:
                self._update_committed(body, False, result)
        else:
            self.send(frames.error(result.code or "storage-failed", result.message))
            self.send(frames.update_save_failed(snapshot_id, clock))
            if early and result.durable_failed:
                self._durable()
            self.room.reload()
            if result.durable_failed:  # the others may have it: they reload the document
                self.room.unavailable(result.message or "storage failed", self)

    # -- snapshots
    def _snapshot(
        self, pd: SnapshotPublicData, inbound: Inbound, size: int, refusal: rules.Refusal | None
    ) -> None:
        room = self.room
        body = inbound.body
        if refusal is not None:
            if refusal.missing_since is None:
                self.send(frames.error(refusal.code, refusal.message))
                self.send(frames.simple("snapshot-save-failed"))
            else:
                self._snapshot_failed(refusal.code, refusal.message, *refusal.missing_since)
            return
        epoch = 0
        if room.log is not None:  # checked by _epoch_refusal
            epoch = parse_epoch(inbound.public_data.get("epoch"))
        before = room.state.active.epoch if room.state.active is not None else 0
        if room.feed is not None and room.state.active is not None:
            room.feed.superseded_by_us(room.state.active.snapshot_id)
        rules.accept_snapshot(room.state, pd, inbound.ciphertext_hash, size, epoch)
        early = self._early_commit(partial(self._snapshot_committed, body, True))
        write = self.relay.store.save_snapshot(
            self.doc_id,
            **early,
            epoch=epoch,
            snapshot_id=pd.snapshot_id,
            parent_snapshot_id=pd.parent_snapshot_id,
            parent_clocks=pd.parent_snapshot_update_clocks,
            pub_key=pd.pub_key,
            ciphertext_hash=inbound.ciphertext_hash,
            parent_snapshot_proof=pd.parent_snapshot_proof,
            message=body,
        )
        done = partial(
            self._snapshot_done,
            pd.snapshot_id,
            pd.parent_snapshot_id,
            pd.parent_snapshot_update_clocks,
            body,
            epoch > before,
            bool(early),
        )
        self._commit(write, done)

    def _snapshot_committed(self, body: str, early: bool, result: SaveResult) -> None:
        if result.ok:
            if early:
                self._undurable.append((result.position, True))
                self._undurable_snapshots += 1
            self.room.broadcast(result.position, OutFrame(frames.snapshot_broadcast(body)), self)

    def _snapshot_done(
        self,
        snapshot_id: str,
        parent_id: str,
        parent_clocks: Mapping[str, int],
        body: str,
        new_epoch: bool,
        early: bool,
        result: SaveResult,
    ) -> None:
        room = self.room
        if result.ok:
            if result.created_document:
                room.mark_stored()
            self.send(frames.snapshot_saved(snapshot_id))
            if early:
                self._durable()
            else:
                self._snapshot_committed(body, False, result)
            if new_epoch:  # the first snapshot of a new epoch: older ones are superseded
                self.relay.retention_after_rotation(room)
        elif result.durable_failed:  # the others may have it: they reload the document
            self.send(frames.error("storage-failed", result.message))
            self.send(frames.simple("snapshot-save-failed"))
            if early:
                self._durable()
            room.reload()
            room.unavailable(result.message or "storage failed", self)
        else:
            # the store refused what the room's memory accepted (another writer on the
            # database, or a failed write): re-read the rule state before the next frame,
            # and answer from the store with what the client is missing relative to its
            # parent snapshot and clocks
            room.reload()
            self._snapshot_failed(
                result.code or "storage-failed", result.message, parent_id or None, parent_clocks
            )

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


class _LinkTransport:
    """A link connection's transport: broadcasts (snapshots, updates, ephemeral messages,
    sent with ``send_frame``) are dropped; the frames meant for it (``send_text``: its
    ``document`` frame, log entries, its lockboxes, answers) go through."""

    __slots__ = ("_inner",)

    def __init__(self, inner):
        self._inner = inner

    def send_frame(self, frame) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _result(fut: asyncio.Future) -> SaveResult:
    if fut.cancelled():
        return SaveResult(False, code="storage-failed", message="write cancelled")
    exc = fut.exception()
    if exc is not None:
        return SaveResult(False, code="storage-failed", message=str(exc))
    return fut.result()
