"""The decisions of joining through an invitation link, without I/O (issue 12).

:func:`plan_join` reads the link connection's ``document`` frame and says what to send: the
``add-member`` of our own identity signed by the link plus a lockbox of the current key sealed
to ourselves, or nothing (already a member), or raises the :class:`MembershipError` of the
refusal. :func:`plan_on` does the same on a verified log (after a lost race, 707 / 709, the
driver extends its log with the relay's newer entries and plans again). The browser's twin is
``planJoin`` / ``planOn`` in ``labextension/src/secsync/linkJoin.ts``; both are pinned by the
shared scenarios ``tests/scenarios/link-join-*.json``. The driver is
:func:`secsync_jupyter.client.links_client.join_link`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..protocol.crypto import SigningKeyPair
from ..protocol.epochs import Keyring, Lockbox, seal_lockbox
from ..protocol.links import join_via_link
from ..protocol.membership import Entry, MembershipError, MembershipState, verify_log

__all__ = ["JoinPlan", "plan_join", "plan_on"]


def _err(code: int, field: str | None, detail: str) -> MembershipError:
    return MembershipError(detail, code=f"SECSYNC_ERROR_{code}", field=field)


class JoinPlan(NamedTuple):
    """What to do: ``entry`` and ``lockbox`` to send (both ``None``: already a member)."""

    state: MembershipState
    #: the epoch keys the link's lockboxes hold
    keyring: Keyring
    #: the role we get (or have, when already a member)
    role: str
    entry: Entry | None
    lockbox: Lockbox | None

    @property
    def joined(self) -> bool:
        return self.entry is not None


def _absent_or_empty(frame: dict[str, Any], field: str) -> bool:
    return frame.get(field) in (None, [])


def plan_join(
    frame: Any,
    link: SigningKeyPair,
    me: str,
    doc_id: str,
    now: int,
    *,
    name: str | None = None,
) -> JoinPlan:
    """Plan the join from the link connection's ``document`` frame (docs/protocol.md, "Frames
    (issue 12)", link connections): ``link: true``, no snapshot, no updates, the whole log
    (verified: 706 for a root not binding ``doc_id``, 70x), the link's own lockboxes. A frame
    that is not that is 701 naming the field. ``me``: our public key; ``now``: ms."""
    if not isinstance(frame, dict) or frame.get("type") != "document":
        raise _err(701, "type", "expected the relay's document frame")
    if frame.get("link") is not True:
        raise _err(701, "link", "the relay did not treat this connection as the link's")
    for field in ("snapshot", "snapshotProofChain", "updates"):
        if not _absent_or_empty(frame, field):
            raise _err(701, field, "a link connection gets no snapshots or updates")
    if frame.get("logFrom", 0) != 0:
        raise _err(701, "logFrom", "a link connection gets the whole log")
    log = frame.get("log")
    if not isinstance(log, list):
        raise _err(701, "log", "the document frame holds no log")
    boxes = frame.get("lockboxes", [])
    if not isinstance(boxes, list):
        raise _err(760, "lockboxes", "expected a list of lockboxes")
    state = verify_log(log, doc_id)
    keyring = Keyring()
    first_error: MembershipError | None = None
    for raw in boxes:
        try:
            keyring.add_from_lockbox(state, link, raw)
        except MembershipError as exc:  # a bad one is not used
            first_error = first_error or exc
    return plan_on(state, keyring, link, me, now, name=name, lockbox_error=first_error)


def plan_on(
    state: MembershipState,
    keyring: Keyring,
    link: SigningKeyPair,
    me: str,
    now: int,
    *,
    name: str | None = None,
    lockbox_error: MembershipError | None = None,
) -> JoinPlan:
    """Plan the join on the verified ``state`` with the keys the link's lockboxes gave: already
    a member → nothing; not a link of the log 711, revoked 755, expired at max(now, the head's
    time) 754; no key of the current epoch → ``lockbox_error`` (761 / 762 / 763 / 766 of the
    link's lockbox that did not open) or 766. Else the ``add-member`` (role = the link's,
    ``at`` = max(now, the head's time)) and our lockbox of the current key."""
    member = state.members.get(me)
    if member is not None:
        return JoinPlan(state, keyring, member.role, None, None)
    info = state.links.get(link.public_key_b64)
    if info is None:
        raise _err(711, "signer", "this link is not in the document's log")
    if info.removed is not None:
        raise _err(755, "signer", "the link was revoked")
    at = max(now, state.head_at)
    if not info.live(at):
        raise _err(754, "signer", "the link has expired")
    if state.epoch not in keyring:
        if lockbox_error is not None:
            raise lockbox_error
        raise _err(766, "epoch", f"no lockbox of the link opens the current epoch {state.epoch}")
    entry, _ = join_via_link(state, link, me, name=name, at=at)
    box = seal_lockbox(state.doc_id, state.epoch, keyring.key(state.epoch), me)
    return JoinPlan(state, keyring, info.role, entry, box)
