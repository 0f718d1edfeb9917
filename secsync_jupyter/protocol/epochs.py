"""Key epochs and lockboxes (issue 12): the document key rotates, members keep older keys.

Sans-IO. The wire format is in docs/protocol.md, section "Key epochs, lockboxes and links";
the TypeScript twins are ``labextension/src/secsync/epochs.ts`` and ``lockbox.ts``; both pass
``tests/vectors/epoch-vectors.json``.

* Epoch 0 is the document key of the share link / creation. Each ``rotate-key`` entry of the
  membership log begins the next epoch with a fresh random 32-byte key and commits to it:
  ``keyCheck = b64(BLAKE2b-256(key=epochKey, "secsync_jupyter_epoch_key_check" +
  canon({docId, epoch})))`` (a member checks a key it opened with its own lockbox alone), and
  ``lockboxHash`` = BLAKE2b-256 over the sorted list of (recipient, box) (the relay checks
  the complete set it stores).
* A **lockbox** ``{"docId", "epoch", "recipient", "box"}`` is the epoch key sealed
  (``crypto_box_seal``) to the recipient's box key, derived from its Ed25519 key
  (:func:`.identity.box_public_key`).
* A :class:`Keyring` keeps every epoch key a member was given (epoch → key).

Errors are :class:`.membership.MembershipError` with codes 750–799 (``.field`` set).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import nacl.bindings as sodium
import nacl.exceptions

from .crypto import SigningKeyPair
from .encoding import MAX_SAFE_INTEGER, b64decode_checked, b64encode, canonicalize
from .identity import IdentityError, box_public_key, box_secret_key
from .membership import (
    Entry,
    LogHead,
    MembershipError,
    MembershipState,
    _err,
    _now_ms,
    _utf16_key,
    _utf16_prefix,
    next_entry,
)

__all__ = [
    "DOMAIN_EPOCH_KEY_CHECK",
    "DOMAIN_LOCKBOXES",
    "EPOCH_KEY_BYTES",
    "Keyring",
    "Lockbox",
    "Rotation",
    "check_lockbox",
    "check_lockbox_set",
    "check_message_epoch",
    "create_rotation",
    "epoch_key_check",
    "generate_epoch_key",
    "lockbox_set_hash",
    "make_lockboxes",
    "open_lockbox",
    "parse_epoch",
    "parse_lockbox",
    "seal_lockbox",
    "state_lockboxes",
    "verify_epoch_key",
]

DOMAIN_EPOCH_KEY_CHECK = "secsync_jupyter_epoch_key_check"
DOMAIN_LOCKBOXES = "secsync_jupyter_lockboxes"
EPOCH_KEY_BYTES = 32
#: crypto_box_seal of a 32-byte key: ephemeral public key (32) + MAC (16) + key (32)
LOCKBOX_BOX_BYTES = 80
_LOCKBOX_FIELDS = ("docId", "epoch", "recipient", "box")
_B64_32 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_B64_80 = re.compile(r"[A-Za-z0-9_-]{106}[AEIMQUYcgkosw048]")
_DOC_ID = re.compile(r"m1_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def generate_epoch_key() -> bytes:
    """A fresh random epoch key (32 bytes)."""
    return os.urandom(EPOCH_KEY_BYTES)


def _key(key: Any, code: int = 780) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != EPOCH_KEY_BYTES:
        raise _err(code, "key", f"an epoch key is {EPOCH_KEY_BYTES} bytes")
    return bytes(key)


def epoch_key_check(doc_id: str, epoch: int, key: bytes) -> str:
    """``b64(BLAKE2b-256(key=key, "secsync_jupyter_epoch_key_check" + canon({docId,
    epoch})))``: commits a ``rotate-key`` entry to its key without revealing it."""
    message = DOMAIN_EPOCH_KEY_CHECK.encode() + canonicalize({"docId": doc_id, "epoch": epoch})
    return b64encode(hashlib.blake2b(message, key=_key(key), digest_size=32).digest())


# ---------------------------------------------------------------------------------------
# lockboxes
# ---------------------------------------------------------------------------------------


class Lockbox(NamedTuple):
    """An epoch key sealed to one recipient (a member's or a link's public key)."""

    doc_id: str
    epoch: int
    recipient: str
    box: str

    def to_json(self) -> dict[str, Any]:
        return {
            "docId": self.doc_id,
            "epoch": self.epoch,
            "recipient": self.recipient,
            "box": self.box,
        }


def _int(value: Any, field: str, code: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(code, field, "expected an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise _err(code, field, "expected an integer")
        value = int(value)
    if value < 0 or value > MAX_SAFE_INTEGER:
        raise _err(code, field, "out of range (0 … 2^53-1)")
    return value


def parse_lockbox(obj: Any) -> Lockbox:
    """Parse a lockbox record strictly: 760 naming the field (checked in the order docId,
    epoch, recipient, box; an unknown field first, the first in sorted order)."""
    if isinstance(obj, Lockbox):
        obj = obj.to_json()
    if type(obj) is not dict:
        raise _err(760, "lockbox", "expected a JSON object")
    unknown = [k for k in obj if k not in _LOCKBOX_FIELDS]
    if unknown:  # the first in UTF-16 order, as JavaScript sorts
        raise _err(760, _utf16_prefix(min(unknown, key=_utf16_key), 64), "unknown field")
    for name in _LOCKBOX_FIELDS:
        if obj.get(name) is None:
            raise _err(760, name, "missing field")
    doc_id = obj["docId"]
    if type(doc_id) is not str or _DOC_ID.fullmatch(doc_id) is None:
        raise _err(760, "docId", "expected the id of a document with a log")
    epoch = _int(obj["epoch"], "epoch", 760)
    recipient = obj["recipient"]
    if type(recipient) is not str or _B64_32.fullmatch(recipient) is None:
        raise _err(760, "recipient", "expected base64url of 32 bytes")
    box = obj["box"]
    if type(box) is not str or _B64_80.fullmatch(box) is None:
        raise _err(760, "box", f"expected base64url of {LOCKBOX_BOX_BYTES} bytes")
    return Lockbox(doc_id, epoch, recipient, box)


def seal_lockbox(doc_id: str, epoch: int, key: bytes, recipient: str | bytes) -> Lockbox:
    """Seal ``key`` to ``recipient`` (randomized: every call gives another box).
    780 for a bad key or a recipient that is not a usable Ed25519 public key."""
    try:
        box_key = box_public_key(recipient)
    except IdentityError as exc:
        raise _err(780, "recipient", exc.detail)
    sealed = sodium.crypto_box_seal(_key(key), box_key)
    name = recipient if isinstance(recipient, str) else b64encode(recipient)
    return Lockbox(doc_id, epoch, name, b64encode(sealed))


def make_lockboxes(doc_id: str, epoch: int, key: bytes, recipients: Iterable[str]) -> list[Lockbox]:
    """One lockbox per recipient, sorted by recipient."""
    key = _key(key)
    return [seal_lockbox(doc_id, epoch, key, r) for r in sorted(set(recipients))]


def state_lockboxes(
    state: MembershipState, key: bytes, *, epoch: int | None = None, now: int | None = None
) -> list[Lockbox]:
    """Lockboxes of ``key`` for everyone who gets one in ``state`` at ``now`` (every member
    and live link, sorted), for ``epoch`` (default: the state's current epoch)."""
    now = _now_ms() if now is None else now
    epoch = state.epoch if epoch is None else epoch
    return make_lockboxes(state.doc_id, epoch, key, state.recipients(now))


def lockbox_set_hash(doc_id: str, epoch: int, lockboxes: Iterable[Lockbox | Mapping]) -> str:
    """``b64(BLAKE2b-256("secsync_jupyter_lockboxes" + canon({"docId", "epoch", "boxes":
    [[recipient, box], …] sorted by recipient})))``: what ``rotate-key`` commits to."""
    boxes = sorted([lb.recipient, lb.box] for lb in (parse_lockbox(x) for x in lockboxes))
    data = canonicalize({"docId": doc_id, "epoch": epoch, "boxes": boxes})
    return b64encode(hashlib.blake2b(DOMAIN_LOCKBOXES.encode() + data, digest_size=32).digest())


def _epoch_info(state: MembershipState, epoch: int, field: str = "epoch"):
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= state.epoch:
        raise _err(766, field, f"the log has epochs 0 … {state.epoch}")
    return state.epochs[epoch]


def check_lockbox_set(
    state: MembershipState, epoch: int, lockboxes: Sequence[Any]
) -> list[Lockbox]:
    """The relay's check of the lockboxes uploaded with a ``rotate-key`` (``state`` contains
    it): each well-formed (760) and for this document and epoch (763), exactly one per
    recipient of the epoch (the members and live links at the rotation; 765, field
    ``recipient``), and together matching the entry's ``lockboxHash`` (764). A lockbox's box
    cannot be checked without its recipient's secret key: that is what ``keyCheck`` is for.
    Returns the parsed lockboxes, sorted by recipient. Errors carry ``.index``."""
    info = _epoch_info(state, epoch)
    if info.lockbox_hash is None:
        raise _err(766, "epoch", "epoch 0 has no rotate-key entry")
    if not isinstance(lockboxes, (list, tuple)):
        raise _err(760, "lockboxes", "expected an array")
    parsed: list[Lockbox] = []
    seen: set[str] = set()
    for index, obj in enumerate(lockboxes):
        try:
            lb = parse_lockbox(obj)
            if lb.doc_id != state.doc_id:
                raise _err(763, "docId")
            if lb.epoch != epoch:
                raise _err(763, "epoch")
            if lb.recipient in seen:
                raise _err(765, "recipient", "two lockboxes for one recipient")
            if lb.recipient not in info.recipients:
                raise _err(765, "recipient", "not a member or live link at the rotation")
        except MembershipError as exc:
            exc.index = index
            raise
        seen.add(lb.recipient)
        parsed.append(lb)
    if len(seen) != len(info.recipients):
        missing = min(info.recipients - seen)
        raise _err(765, "recipient", f"no lockbox for {missing}")
    if lockbox_set_hash(state.doc_id, epoch, parsed) != info.lockbox_hash:
        raise _err(764, "lockboxHash")
    return sorted(parsed, key=lambda lb: lb.recipient)


def check_lockbox(state: MembershipState, lockbox: Any, *, now: int | None = None) -> Lockbox:
    """The relay's check of one lockbox given outside a rotation (to a member or link added
    after it, or an older epoch's key to a new member): well-formed (760), this document
    (763), a known epoch (766), and for a current member or a live link (765)."""
    lb = parse_lockbox(lockbox)
    if lb.doc_id != state.doc_id:
        raise _err(763, "docId")
    _epoch_info(state, lb.epoch)
    now = _now_ms() if now is None else now
    if not state.is_member(lb.recipient) and not state.is_live_link(lb.recipient, now):
        raise _err(765, "recipient", "not a member or live link")
    return lb


def verify_epoch_key(state: MembershipState, epoch: int, key: bytes) -> None:
    """762 unless ``key`` matches epoch ``epoch``'s ``keyCheck`` (766: no such epoch).
    Epoch 0 has no ``rotate-key``: its key is checked by decrypting a snapshot of epoch 0
    signed by a writer (the AEAD is key-committing), so this accepts any 32 bytes for it."""
    info = _epoch_info(state, epoch)
    key = _key(key, 762)
    if info.key_check is not None and epoch_key_check(state.doc_id, epoch, key) != info.key_check:
        raise _err(762, "keyCheck", "not the key this epoch's rotate-key committed to")


def open_lockbox(state: MembershipState, keypair: SigningKeyPair, lockbox: Any) -> bytes:
    """Open one's own lockbox and check the key: 760 malformed, 763 another document or
    recipient, 766 unknown epoch, 761 cannot be opened, 762 not the committed key."""
    lb = parse_lockbox(lockbox)
    if lb.doc_id != state.doc_id:
        raise _err(763, "docId")
    if lb.recipient != keypair.public_key_b64:
        raise _err(763, "recipient", "sealed to someone else")
    _epoch_info(state, lb.epoch)
    try:
        key = sodium.crypto_box_seal_open(
            b64decode_checked(lb.box),
            box_public_key(keypair.public_key),
            box_secret_key(keypair),
        )
    except (nacl.exceptions.CryptoError, IdentityError, ValueError, TypeError):
        raise _err(761, "box")
    if len(key) != EPOCH_KEY_BYTES:
        raise _err(761, "box", "does not hold a 32-byte key")
    verify_epoch_key(state, lb.epoch, key)
    return key


class Keyring:
    """The epoch keys one member holds (epoch → key); older epochs are kept, so history stays
    readable. Store it with :meth:`to_json` next to the identity (never on the relay)."""

    def __init__(self, keys: Mapping[int, bytes] | None = None):
        self._keys: dict[int, bytes] = {}
        for epoch, key in (keys or {}).items():
            self.add(epoch, key)

    def add(self, epoch: int, key: bytes) -> None:
        """Add a key; 762 if this epoch already has another key."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise _err(780, "epoch", "expected an epoch number")
        key = _key(key)
        old = self._keys.get(epoch)
        if old is not None and old != key:
            raise _err(762, "key", f"epoch {epoch} already has another key")
        self._keys[epoch] = key

    def add_from_lockbox(
        self, state: MembershipState, keypair: SigningKeyPair, lockbox: Any
    ) -> int:
        """Open one's own lockbox (see :func:`open_lockbox`), add the key, return its epoch."""
        key = open_lockbox(state, keypair, lockbox)
        epoch = parse_lockbox(lockbox).epoch
        self.add(epoch, key)
        return epoch

    def key(self, epoch: int) -> bytes:
        """The key of ``epoch``; 766 if this member does not hold it."""
        try:
            return self._keys[epoch]
        except (KeyError, TypeError):
            raise _err(766, "epoch", f"no key for epoch {epoch}")

    def __contains__(self, epoch: object) -> bool:
        return epoch in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def epochs(self) -> list[int]:
        return sorted(self._keys)

    @property
    def newest(self) -> int | None:
        return max(self._keys) if self._keys else None

    def to_json(self) -> dict[str, str]:
        return {str(e): b64encode(self._keys[e]) for e in sorted(self._keys)}

    @classmethod
    def from_json(cls, data: Any) -> Keyring:
        if not isinstance(data, dict):
            raise _err(780, "keyring", "expected a JSON object")
        ring = cls()
        for name, value in data.items():
            if not isinstance(name, str) or not name.isdigit() or str(int(name)) != name:
                raise _err(780, "keyring", f"bad epoch {name!r}")
            if not isinstance(value, str) or _B64_32.fullmatch(value) is None:
                raise _err(780, "keyring", f"bad key for epoch {name}")
            ring.add(int(name), b64decode_checked(value))
        return ring

    def __repr__(self) -> str:  # never the keys
        return f"Keyring(epochs={self.epochs})"


# ---------------------------------------------------------------------------------------
# rotation
# ---------------------------------------------------------------------------------------


class Rotation(NamedTuple):
    """What an admin's rotation makes: the entry to append, the state after it, the new key
    (for the keyring and the next snapshot) and the lockboxes to upload with the entry."""

    entry: Entry
    state: MembershipState
    epoch: int
    key: bytes
    lockboxes: list[Lockbox]


def create_rotation(
    state: MembershipState,
    keypair: SigningKeyPair,
    *,
    key: bytes | None = None,
    at: int | None = None,
) -> Rotation:
    """A new key epoch: a random key (``key`` only for tests), a lockbox for every member and
    every link live at ``at``, and the signed ``rotate-key`` entry committing to both.
    Raises 712 unless ``keypair`` is an admin's (and the other entry rules), 780 for bad
    arguments."""
    key = generate_epoch_key() if key is None else _key(key)
    at = max(_now_ms(), state.head_at) if at is None else at
    epoch = state.epoch + 1
    lockboxes = make_lockboxes(state.doc_id, epoch, key, state.recipients(at))
    fields = {
        "epoch": epoch,
        "keyCheck": epoch_key_check(state.doc_id, epoch, key),
        "lockboxHash": lockbox_set_hash(state.doc_id, epoch, lockboxes),
    }
    entry, new_state = next_entry(state, keypair, "rotate-key", fields, at=at)
    return Rotation(entry, new_state, epoch, key, lockboxes)


# ---------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------


def parse_epoch(value: Any) -> int:
    """A snapshot's ``publicData.epoch``: an integer 0 … 2^53-1 (767 otherwise). Absent
    (``None``, also for JSON null) is epoch 0: snapshots written before issue 12 carry none,
    and a snapshot without one under a later epoch fails the rules as epoch 0 would."""
    if value is None:
        return 0
    return _int(value, "epoch", 767)


def check_message_epoch(
    state: MembershipState,
    epoch: Any,
    log_head: LogHead,
    *,
    parent: int | None = None,
    seen: int | None = None,
    live: bool = True,
) -> int:
    """The epoch rules for a snapshot (``publicData.epoch`` next to ``logHead``), after its
    ``logHead`` was checked to be an entry of ``state``'s log. Returns the epoch.

    * 767: the epoch is malformed, or not the one current at ``logHead``;
    * 768 (written in a superseded epoch): older than its ``parent`` snapshot's epoch, or,
      for a snapshot that arrives ``live`` (after the log entries it could know of: the relay
      sends every entry before the messages that follow it), older than ``state``'s current
      epoch. The active snapshot of a ``document`` frame (``live=False``) may be of the
      previous epoch — the rotator's first snapshot may still be on its way — and a writer
      holding the new key then writes one in the new epoch;
    * 769: older than ``seen``, the newest epoch of a snapshot this party accepted before
      (a relay serving an older epoch as current after a rotation: a rollback)."""
    value = parse_epoch(epoch)
    if not 0 <= log_head.seq <= state.head.seq or state.hashes[log_head.seq] != log_head.hash:
        raise _err(767, "logHead", "not an entry of this log")
    at_head = state.epoch_at(log_head.seq)
    if value != at_head:
        raise _err(767, "epoch", f"logHead {log_head.seq} is in epoch {at_head}")
    if parent is not None and value < parent:
        raise _err(768, "epoch", f"the parent snapshot is in epoch {parent}")
    if live and value < state.epoch:
        raise _err(768, "epoch", f"the current epoch is {state.epoch}")
    if seen is not None and value < seen:
        raise _err(769, "epoch", f"epoch {seen} was seen before")
    return value
