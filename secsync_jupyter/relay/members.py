"""The relay's side of the membership log (issue 11; docs/protocol.md "Membership log").

A document whose id is ``m1_…`` has a log. Its room keeps a :class:`RoomLog`: the verified
:class:`~secsync_jupyter.protocol.membership.MembershipState` at the stored head (the log is
verified once when the room opens, then extended entry by entry) and the stored entry texts
(for ``document`` frames and ``log-entry-failed`` answers). So the check of a message is a
dict lookup (:meth:`RoomLog.write_refusal`).

* Appending (:meth:`RoomLog.append`): one entry at a time per room (a lock); ``verify_entry``
  on the cached state, then the store, whose unique ``(doc_id, seq)`` refuses a second entry on
  the same parent whichever process wrote first; once committed, the state is extended, the
  author gets ``log-entry-saved``, every other joined connection the ``log-entry`` (before any
  message naming it can be accepted: such a message is checked against the new state only
  from now on), and every connection is re-checked (:meth:`RoomLog.recheck`): a removed
  member's is closed with 725.
* Entries appended by another relay process on the same database are read with
  :meth:`RoomLog.refresh` (the store's ``read_log(doc_id, after_seq)``): on a refused append, on
  a reader proof or a ``logHead`` this process does not know yet, and by a cross-process
  fan-out when it learns of new entries.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from ..protocol.epochs import Lockbox, check_lockbox, check_lockbox_set
from ..protocol.membership import (
    Entry,
    MembershipError,
    MembershipState,
    extend_log,
    is_log_doc_id,
    parse_entry,
    verify_entry,
    verify_log,
)
from . import frames
from .admission import CLOSE_POLICY
from .frames import OutFrame
from .store import LOCKBOX_EXISTS, LOG_ENTRY_CONFLICT, LOG_ENTRY_GAP, LockboxRow, LogRow

if TYPE_CHECKING:
    from .room import Room
    from .session import Session

__all__ = ["RoomLog", "code_of", "is_log_doc_id"]

_WRITERS = ("editor", "admin")


def code_of(number: int) -> str:
    return f"SECSYNC_ERROR_{number}"


def now_ms() -> int:
    """The relay's clock (ms since the Unix epoch), for link expiry (754)."""
    return int(time.time() * 1000)


def _failure(number: int, field: str, reason: str) -> MembershipError:
    return MembershipError(reason, code=code_of(number), field=field)


def _lockbox_text(lb: Lockbox) -> str:
    return frames.dumps(lb.to_json())


class RoomLog:
    """The membership log of one open document (see the module docs)."""

    __slots__ = ("doc_id", "lock", "room", "state", "texts")

    def __init__(self, room: Room):
        self.room = room
        self.doc_id = room.doc_id
        #: ``None`` while the document has no log (no root stored yet)
        self.state: MembershipState | None = None
        #: the stored entries' JSON texts, by ``seq``
        self.texts: list[str] = []
        #: one append (or refresh) at a time
        self.lock = asyncio.Lock()

    # ------------------------------------------------------------------ loading
    async def load(self) -> None:
        """Read and verify the whole stored log (once, when the room opens)."""
        rows = await self.room.relay.store.read_log(self.doc_id)
        if not rows:
            return
        entries = [json.loads(r.entry) for r in rows]
        try:
            self.state = verify_log(entries, self.doc_id)
        except MembershipError as exc:  # not what the relay stored: refuse to serve it
            raise RuntimeError(f"the stored membership log of {self.doc_id} is invalid: {exc}")
        self.texts = [r.entry for r in rows]

    @property
    def head_seq(self) -> int:
        return -1 if self.state is None else self.state.head.seq

    def since(self, known_seq: int | None, known_hash: str | None) -> tuple[list[str], int]:
        """The entries for a ``document`` frame: those after the client's known head when
        the relay's entry at ``known_seq`` has ``known_hash``, else all (``logFrom`` 0)."""
        state = self.state
        if (
            state is not None
            and known_seq is not None
            and known_seq <= state.head.seq
            and state.hashes[known_seq] == known_hash
        ):
            return self.texts[known_seq + 1 :], known_seq + 1
        return list(self.texts), 0

    # ------------------------------------------------------------------ members
    def is_member(self, pub_key: str | None) -> bool:
        state = self.state
        return state is not None and pub_key is not None and pub_key in state.members

    def write_refusal(self, kind: str, pub_key: str, public_data: Any) -> str | None:
        """Why a verified message of ``kind`` by ``pub_key`` may not be accepted (``None``:
        it may). Snapshots and updates: an editor or admin at the head *and* at the
        ``publicData.logHead`` it names, which must be a stored entry; ephemeral messages: a
        member. The common case is two dict lookups."""
        state = self.state
        if state is None:
            return "the document has no membership log yet"
        member = state.members.get(pub_key)
        if kind == "ephemeral":
            return None if member is not None else "the author is not a member"
        if member is None or member.role not in _WRITERS:
            return "the author is not an editor or admin"
        head = public_data.get("logHead")
        if type(head) is not dict or len(head) != 2:
            return "publicData.logHead is missing or malformed"
        seq = head.get("seq")
        if type(seq) is not int or seq < 0 or seq > state.head.seq:
            return "publicData.logHead does not name a stored entry"
        if state.hashes[seq] != head.get("hash"):
            return "publicData.logHead does not name a stored entry"
        if seq != state.head.seq and state.role_at(pub_key, seq) not in _WRITERS:
            return "the author was not an editor or admin at publicData.logHead"
        return None

    def names_newer_head(self, public_data: Any) -> bool:
        """Whether the message names a ``logHead`` after this process's head (another process
        may have stored it: worth a :meth:`refresh` before refusing)."""
        head = public_data.get("logHead")
        if type(head) is not dict:
            return False
        seq = head.get("seq")
        return type(seq) is int and seq > self.head_seq

    # ------------------------------------------------------------------ appending
    async def append(self, session: Session, obj: Any, lockboxes: Any = None) -> None:
        """A ``log-entry`` frame's ``entry`` (and ``lockboxes``, issue 12) from ``session``
        (whose key is proven)."""
        async with self.lock:
            await self._append(session, obj, lockboxes)

    def _check_issue12(
        self, session: Session, state: MembershipState, new: MembershipState, entry: Entry, lbs
    ) -> list[Lockbox]:
        """The issue-12 checks of an entry ``verify_entry`` accepted: a link connection's
        entry (753), a link-signed entry at the relay's clock (754), the lockboxes (76x)."""
        now = now_ms()
        if session.link and (entry.kind != "add-member" or entry.signer != session.pub_key):
            raise _failure(753, "kind", "a link connection may only add a member, signed by it")
        link = state.links.get(entry.signer)
        if link is not None and not link.live(now):
            raise _failure(754, "signer", "the link has expired (relay clock)")
        if entry.kind == "rotate-key":
            assert entry.epoch is not None
            return check_lockbox_set(new, entry.epoch, lbs if lbs is not None else None)
        if lbs is None:
            return []
        if not isinstance(lbs, list):
            raise _failure(760, "lockboxes", "expected an array")
        return [check_lockbox(new, lb, now=now) for lb in lbs]

    async def _append(self, session: Session, obj: Any, lockboxes: Any = None) -> None:
        if self.state is None:  # has another process stored the root meanwhile?
            await self._refresh()
        state = self.state
        seq = obj.get("seq") if isinstance(obj, dict) else None
        seq = seq if type(seq) is int and seq >= 0 else None
        try:
            if state is None:
                # the root: it must bind this document's id and be signed by the proven key
                new = verify_log([obj], self.doc_id)
                entry = parse_entry(obj)
                if entry.signer != session.pub_key:
                    raise MembershipError(
                        "the root must be signed by the key proven on this connection",
                        code=code_of(711),
                        field="signer",
                    )
                if lockboxes is not None:
                    raise _failure(760, "lockboxes", "the root has no lockboxes")
                boxes: list[Lockbox] = []
            else:
                new = verify_entry(state, obj)
                entry = parse_entry(obj)
                boxes = self._check_issue12(session, state, new, entry, lockboxes)
        except MembershipError as exc:
            self._failed(session, seq, exc.code, str(exc), exc.code in _WITH_LOG)
            return
        text = frames.dumps(entry.to_json())
        rows = [LockboxRow(lb.epoch, lb.recipient, _lockbox_text(lb)) for lb in boxes]
        room = self.room
        write = room.relay.store.save_log_entry(
            self.doc_id,
            seq=entry.seq,
            prev=entry.prev,
            hash=entry.hash,
            entry=text,
            lockboxes=rows,
        )
        fut = room.track(write)
        try:
            result = await fut
        except Exception as exc:  # the store failed (closed, I/O)
            room.end_write()
            session.send(frames.error("storage-failed", str(exc)))
            self._failed(session, entry.seq, code_of(700), "the relay could not store it")
            return
        room.end_write()
        if result.ok:
            self._accept(new, [entry], [text], author=session, lockboxes=rows)
            if entry.kind == "rotate-key":
                room.relay.retention_after_rotation(room)
            return
        if result.code in (LOG_ENTRY_CONFLICT, LOG_ENTRY_GAP):
            # another process appended first: learn its entries, then answer from them
            await self._refresh()
            number = 709 if result.code == LOG_ENTRY_GAP else 707
            if self.state is not None and entry.seq <= self.state.head.seq:
                same = self.state.hashes[entry.seq] == entry.hash
                number = 708 if same else 707
            self._failed(session, entry.seq, code_of(number), result.message or "", True)
            return
        session.send(frames.error(result.code or "storage-failed", result.message))
        self._failed(session, entry.seq, code_of(700), result.message or "not stored")

    def _failed(
        self, session: Session, seq: int | None, code: str, reason: str, with_log=False
    ) -> None:
        log: list[str] = []
        if with_log and seq is not None:
            log = self.texts[seq:]
        session.send(frames.log_entry_failed(seq, code, log, reason))

    def _accept(
        self,
        state: MembershipState,
        entries: list[Entry],
        texts: list[str],
        author: Session | None = None,
        lockboxes: list[LockboxRow] = (),  # type: ignore[assignment]
    ) -> None:
        """Committed entries: extend the cached state, answer the author, send the entries to
        every other joined connection (without lockboxes: a link connection as text, its
        transport drops broadcasts), each recipient its own lockbox, then re-check every
        connection."""
        self.state = state
        self.texts.extend(texts)
        room = self.room
        if author is not None:
            author.send(frames.log_entry_saved(entries[-1].seq, entries[-1].hash))
        for text in texts:
            # to this process's joined connections (joining ones get it in their document
            # frame, which is built from ``texts`` when they join; other processes deliver
            # entries themselves, from the store: :meth:`refresh`)
            frame = OutFrame(frames.log_entry(text))
            for s in room.sessions:
                if s is not author:
                    if s.link:
                        s.send(frame.text)
                    else:
                        s.transport.send_frame(frame)
        for row in lockboxes:
            self.deliver_lockbox(row, author)
        self.recheck()

    def deliver_lockbox(self, row: LockboxRow, exclude: Session | None = None) -> None:
        """A stored lockbox to the joined connections proven as its recipient."""
        for s in self.room.sessions:
            if (
                s is not exclude
                and s.pub_key == row.recipient
                and row.epoch not in s.lockbox_epochs
            ):
                s.lockbox_epochs.add(row.epoch)
                s.send(frames.lockbox(row.lockbox))

    async def lockbox_notified(self, recipient: str) -> None:
        """Another relay process stored a lockbox for ``recipient`` (the fan-out doorbell):
        the entries it may come with first, then the recipient's connections get it."""
        try:
            await self.refresh()
            await self.deliver_stored_lockboxes(recipient)
        except Exception as exc:
            self.room.relay.log.error("delivering lockboxes of %s failed: %s", self.doc_id, exc)

    async def deliver_stored_lockboxes(self, recipient: str | None = None) -> None:
        """Lockboxes stored by another relay process (learnt with its entries, or by the
        fan-out doorbell): each joined connection (of ``recipient``, if given) gets those of
        its key it has not had yet."""
        store = self.room.relay.store
        for s in list(self.room.sessions):
            if s.pub_key is None or s.closed or recipient not in (None, s.pub_key):
                continue
            try:
                rows = await store.read_lockboxes(self.doc_id, s.pub_key)
            except Exception as exc:
                self.room.relay.log.error("reading lockboxes of %s failed: %s", self.doc_id, exc)
                return
            for row in rows:
                if row.epoch not in s.lockbox_epochs and not s.closed:
                    s.lockbox_epochs.add(row.epoch)
                    s.send(frames.lockbox(row.lockbox))

    # ------------------------------------------------------------------ single lockboxes
    async def save_lockbox(self, session: Session, obj: Any) -> None:
        """A ``lockbox`` frame from a proven member (docs/protocol.md "Frames (issue 12)")."""
        async with self.lock:
            await self._save_lockbox(session, obj)

    async def _save_lockbox(self, session: Session, obj: Any) -> None:
        epoch = obj.get("epoch") if isinstance(obj, dict) else None
        recipient = obj.get("recipient") if isinstance(obj, dict) else None
        epoch = epoch if type(epoch) is int else None
        recipient = recipient if isinstance(recipient, str) else None
        state = self.state
        try:
            if state is None:
                raise _failure(766, "epoch", "the document has no log yet")
            lb = check_lockbox(state, obj, now=now_ms())
        except MembershipError as exc:
            session.send(frames.lockbox_failed(epoch, recipient, exc.code, str(exc)))
            return
        row = LockboxRow(lb.epoch, lb.recipient, _lockbox_text(lb))
        room = self.room
        fut = room.track(
            room.relay.store.save_lockbox(
                self.doc_id, epoch=lb.epoch, recipient=lb.recipient, lockbox=row.lockbox
            )
        )
        try:
            result = await fut
        except Exception as exc:
            result = None
            reason = str(exc)
        finally:
            room.end_write()
        if result is None or not result.ok:
            if result is not None and result.code == LOCKBOX_EXISTS:
                code, reason = code_of(762), "another lockbox for this epoch and recipient"
            else:
                code = code_of(750)
                reason = "the relay could not store it" if result is None else result.message
            session.send(frames.lockbox_failed(lb.epoch, lb.recipient, code, reason or ""))
            return
        session.send(frames.lockbox_saved(lb.epoch, lb.recipient))
        self.deliver_lockbox(row, session)

    def recheck(self) -> None:
        """Close the connections of keys that are no longer members (725); a demoted member
        stays connected (its writes are refused from its next message on)."""
        state = self.state
        if state is None:
            return
        members = state.members
        room = self.room
        now = now_ms()
        for s in [*room.sessions, *room.joining]:
            if s.pub_key is None:
                continue
            if s.link:
                link = state.links.get(s.pub_key)
                if link is None or link.removed is not None:
                    s.send(frames.unauthorized(code_of(755), "the link was removed"))
                    s.close(CLOSE_POLICY, "link removed")
                elif not link.live(now):
                    s.send(frames.unauthorized(code_of(754), "the link has expired"))
                    s.close(CLOSE_POLICY, "link expired")
            elif s.pub_key not in members:
                s.send(frames.unauthorized(code_of(725), "removed"))
                s.close(CLOSE_POLICY, "removed from the document")

    # ------------------------------------------------------------------ other processes
    async def refresh(self) -> None:
        """Read entries stored after this process's head (by another relay process on the
        same database), verify them on the cached state and deliver them like own appends."""
        async with self.lock:
            await self._refresh()

    async def _refresh(self) -> None:
        rows: list[LogRow] = await self.room.relay.store.read_log(self.doc_id, self.head_seq)
        if not rows:
            return
        entries = [json.loads(r.entry) for r in rows]
        try:
            if self.state is None:
                state = verify_log(entries, self.doc_id)
            else:
                state = extend_log(self.state, entries)
        except MembershipError as exc:
            self.room.relay.log.error(
                "the stored membership log of %s does not verify: %s", self.doc_id, exc
            )
            return
        self._accept(state, [parse_entry(e) for e in entries], [r.entry for r in rows])
        if any(e.get("kind") in _WITH_LOCKBOXES for e in entries):
            # their lockboxes were stored in the same transactions: each connection its own
            await self.deliver_stored_lockboxes()


#: codes whose ``log-entry-failed`` carries the relay's entries from ``seq`` on
_WITH_LOG = frozenset((code_of(707), code_of(709), code_of(708)))
#: entry kinds that may come with lockboxes
_WITH_LOCKBOXES = frozenset(("rotate-key", "add-member", "add-link"))
