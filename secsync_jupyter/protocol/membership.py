"""The membership log of a document: signed, hash-chained entries saying who may read and write.

Sans-IO, like the rest of :mod:`secsync_jupyter.protocol`. The wire format is defined in
docs/protocol.md, section "Membership log"; the TypeScript twin is
``labextension/src/secsync/membership.ts`` and both pass ``tests/vectors/membership-vectors.json``.

In short: every entry is a flat JSON object, signed with Ed25519 over
``"secsync_jupyter_membership_entry" + canon(entry without "signature")``; its hash is
``b64(BLAKE2b-256(canon(entry)))``. The first entry (``create``) makes its signer the first
admin, and the document id of a document with a log is ``"m1_" + hash(root entry)``, so
every share link, pointer file and relay URL commits to the root. Each later entry names the
document, the previous entry's hash and the next sequence number, and must be allowed by the
signer's role at that point (:func:`verify_entry`).

Issue 12 adds the kinds ``rotate-key`` (a new key epoch), ``add-link`` and ``remove-link``
(invitation links, members of kind link in ``state.links``) and ``add-member`` signed by a
live link (the member's ``via``); lockboxes, the keyring and rotation are in :mod:`.epochs`,
link secrets and fragments in :mod:`.links` (docs/protocol.md, "Key epochs, lockboxes and
links"; vectors in tests/vectors/epoch-vectors.json).

Errors are :class:`MembershipError` (codes 700–799, ``.field`` names the field, ``.index``
the position in the log when a whole log was verified).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple

from .crypto import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKeyPair, verify_detached
from .encoding import MAX_SAFE_INTEGER, b64decode_checked, b64encode, canonicalize
from .errors import ParseError, ProtocolError
from .identity import Identity, IdentityError, check_display_name
from .identity import _check_point as _check_identity_point
from .ids import DOC_ID_RE

__all__ = [
    "DOMAIN_MEMBERSHIP_ENTRY",
    "DOMAIN_READER_PROOF",
    "KINDS",
    "LINK_ROLES",
    "LOG_DOC_ID_PREFIX",
    "LOG_FORMAT_VERSION",
    "ROLES",
    "Entry",
    "EpochInfo",
    "Link",
    "LogHead",
    "Member",
    "MembershipError",
    "MembershipParseError",
    "MembershipState",
    "SignatureCheck",
    "check_known_head",
    "create_entry",
    "create_log",
    "create_reader_proof",
    "doc_id_of_root",
    "extend_log",
    "is_log_doc_id",
    "new_reader_challenge",
    "next_entry",
    "parse_entry",
    "parse_log_head",
    "reader_proof_bytes",
    "verify_entry",
    "verify_log",
    "verify_reader_proof",
]

LOG_FORMAT_VERSION = 1
DOMAIN_MEMBERSHIP_ENTRY = "secsync_jupyter_membership_entry"
DOMAIN_READER_PROOF = "secsync_jupyter_reader_proof"
LOG_DOC_ID_PREFIX = "m1_"
#: ``m1_`` + canonical base64url of 32 bytes
LOG_DOC_ID_RE = re.compile(r"m1_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
ROLES = ("viewer", "editor", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
KINDS = (
    "create",
    "add-member",
    "set-role",
    "remove-member",
    # issue 12 (key epochs and links; docs/protocol.md, "Key epochs, lockboxes and links")
    "rotate-key",
    "add-link",
    "remove-link",
)
#: roles a link may carry (a link never manages anything)
LINK_ROLES = ("viewer", "editor")
MAX_LOG_ENTRIES = 100_000
ROOT_NONCE_BYTES = 24
CHALLENGE_NONCE_BYTES = 32
HASH_CHARS = 43

_COMMON = ("v", "kind", "seq", "prev", "signer", "at", "signature")
_REQUIRED = {
    "create": (*_COMMON, "nonce"),
    "add-member": (*_COMMON, "docId", "target", "role"),
    "set-role": (*_COMMON, "docId", "target", "role"),
    "remove-member": (*_COMMON, "docId", "target"),
    "rotate-key": (*_COMMON, "docId", "epoch", "keyCheck", "lockboxHash"),
    "add-link": (*_COMMON, "docId", "target", "role", "label"),
    "remove-link": (*_COMMON, "docId", "target"),
}
_OPTIONAL = {"create": ("name",), "add-member": ("name",), "add-link": ("expiresAt",)}
#: per kind: (required fields, allowed fields)
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    kind: (frozenset(req), frozenset((*req, *_OPTIONAL.get(kind, ()))))
    for kind, req in _REQUIRED.items()
}
_DOMAIN_BYTES = DOMAIN_MEMBERSHIP_ENTRY.encode()
#: the order in which fields are checked (so both languages name the same field first)


class MembershipError(ProtocolError):
    """A membership entry, log or reader proof was rejected (codes 700–749).

    ``.field`` names the offending field; ``.index`` is the entry's position when a whole
    log (or a delta of entries) was being verified, else ``None``."""

    code = "SECSYNC_ERROR_700"

    def __init__(self, message=None, *, code=None, field=None, index=None):
        super().__init__(message, code=code, field=field)
        self.index = index


class MembershipParseError(MembershipError, ParseError):
    """An entry does not have the required shape (701)."""

    code = "SECSYNC_ERROR_701"


def _err(code: int, field: str | None = None, message: str | None = None) -> MembershipError:
    cls = MembershipParseError if code == 701 else MembershipError
    return cls(message, code=f"SECSYNC_ERROR_{code}", field=field)


def _utf16_key(text: str) -> bytes:
    """Sort key: UTF-16 code units (JavaScript's string order)."""
    return text.encode("utf-16-be", "surrogatepass")


def _utf16_prefix(text: str, units: int) -> str:
    """The first ``units`` UTF-16 code units of ``text`` (JavaScript's ``slice``)."""
    return _utf16_key(text)[: 2 * units].decode("utf-16-be", "surrogatepass")


# ---------------------------------------------------------------------------------------
# entries
# ---------------------------------------------------------------------------------------

_B64_32 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_B64_24 = re.compile(r"[A-Za-z0-9_-]{32}")
_B64_64 = re.compile(r"[A-Za-z0-9_-]{85}[AQgw]")
_B64_RE = {32: _B64_32, 24: _B64_24, 64: _B64_64}


class Entry(NamedTuple):
    """A parsed, strictly validated membership entry (not yet checked against a log)."""

    kind: str
    seq: int
    prev: str
    signer: str
    at: int
    signature: str
    doc_id: str | None = None
    target: str | None = None
    role: str | None = None
    name: str | None = None
    nonce: str | None = None
    v: int = LOG_FORMAT_VERSION
    #: ``b64(BLAKE2b-256(canon(entry)))``, what the next entry's ``prev`` names
    hash: str = ""
    #: the exact bytes the signature covers (domain + canonical entry without signature)
    signed_bytes: bytes = b""
    # issue 12: rotate-key (epoch, keyCheck, lockboxHash), add-link (label, expiresAt)
    epoch: int | None = None
    key_check: str | None = None
    lockbox_hash: str | None = None
    label: str | None = None
    expires_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form (a fresh dict)."""
        out: dict[str, Any] = {"v": self.v, "kind": self.kind}
        if self.doc_id is not None:
            out["docId"] = self.doc_id
        out.update(seq=self.seq, prev=self.prev, signer=self.signer)
        for key, value in (("target", self.target), ("role", self.role), ("name", self.name)):
            if value is not None:
                out[key] = value
        if self.nonce is not None:
            out["nonce"] = self.nonce
        for key, value in (
            ("epoch", self.epoch),
            ("keyCheck", self.key_check),
            ("lockboxHash", self.lockbox_hash),
            ("label", self.label),
            ("expiresAt", self.expires_at),
        ):
            if value is not None:
                out[key] = value
        out["at"] = self.at
        out["signature"] = self.signature
        return out

    def verify_signature(self) -> bool:
        return verify_detached(
            b64decode_checked(self.signature), self.signed_bytes, b64decode_checked(self.signer)
        )


def _canonical(
    kind, seq, prev, signer, at, doc_id, target, role, name, nonce, signature, extra=None
) -> tuple[bytes, bytes]:
    """RFC 8785 of an entry without and with its ``signature``, by template: keys in sorted
    order; every string except ``name`` was validated to be plain ASCII without characters
    to escape, and ``json.dumps`` escapes a name as RFC 8785 does (control characters cannot
    occur). tests/test_membership.py checks both against ``rfc8785``."""
    head = (
        f'{{"at":{at},'
        + (f'"docId":"{doc_id}",' if doc_id is not None else "")
        + (_canonical_extra(kind, extra) if extra is not None else f'"kind":"{kind}",')
        + (f'"name":{json.dumps(name, ensure_ascii=False)},' if name is not None else "")
        + (f'"nonce":"{nonce}",' if nonce is not None else "")
        + f'"prev":"{prev}",'
        + (f'"role":"{role}",' if role is not None else "")
        + f'"seq":{seq},'
    )
    tail = f'"signer":"{signer}",' + (f'"target":"{target}",' if target is not None else "")
    tail += f'"v":{LOG_FORMAT_VERSION}}}'
    return (head + tail).encode(), f'{head}"signature":"{signature}",{tail}'.encode()


def _canonical_extra(kind: str, extra: tuple) -> str:
    """The issue-12 fields in their sorted places around ``kind`` (epoch, expiresAt,
    keyCheck < kind < label, lockboxHash); strings validated as for ``_canonical``."""
    epoch, key_check, lockbox_hash, label, expires_at = extra
    return (
        (f'"epoch":{epoch},' if epoch is not None else "")
        + (f'"expiresAt":{expires_at},' if expires_at is not None else "")
        + (f'"keyCheck":"{key_check}",' if key_check is not None else "")
        + f'"kind":"{kind}",'
        + (f'"label":{json.dumps(label, ensure_ascii=False)},' if label is not None else "")
        + (f'"lockboxHash":"{lockbox_hash}",' if lockbox_hash is not None else "")
    )


def _int(value: Any, name: str, minimum: int = 0) -> int:
    """A JSON integer (compared by value, as in JavaScript: 1.0 is 1) in the safe range."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _err(701, name, "expected an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise _err(701, name, "expected an integer")
            value = int(value)
    if value < minimum or value > MAX_SAFE_INTEGER:
        raise _err(701, name, f"out of range ({minimum} … 2^53-1)")
    return value


def _b64(value: Any, name: str, length: int) -> str:
    if type(value) is not str or _B64_RE[length].fullmatch(value) is None:
        raise _err(701, name, f"expected base64url of {length} bytes")
    return value


def _get(obj: dict, name: str, required: frozenset[str]) -> Any:
    value = obj.get(name)
    if value is None and name in required:
        raise _err(701, name, "missing field" if name not in obj else "must not be null")
    return value


def parse_entry(obj: Any) -> Entry:
    """Parse one entry strictly: 701 (naming the field) for anything malformed, 702 for
    another format version, 703 for an unknown kind. Does not check the signature.

    Fields are checked in one fixed order (v, kind, unknown fields, docId, seq, prev,
    signer, target, role, name, nonce, epoch, keyCheck, lockboxHash, label, expiresAt, at,
    signature) so both languages name the same one. (Written out inline for speed: a
    client parses every entry of a log on load; tests/client/test_log_fast_paths.py checks
    it against the plain form, field by field and error by error.)"""
    if isinstance(obj, Entry):  # checked again: an Entry can be made or _replace()d by hand
        obj = obj.to_json()
    if type(obj) is not dict:
        raise _err(701, "entry", "expected a JSON object")
    get = obj.get
    v = get("v")
    if v is None and "v" not in obj:
        raise _err(701, "v", "missing field")
    if (type(v) is not int or v != LOG_FORMAT_VERSION) and _int(v, "v") != LOG_FORMAT_VERSION:
        raise _err(702, "v")
    kind = get("kind")
    if type(kind) is not str:
        raise _err(701, "kind", "missing field" if kind is None else "expected a string")
    spec = _FIELDS.get(kind)
    if spec is None:
        raise _err(703, "kind")
    required, allowed = spec
    if len(obj) > len(allowed) or not allowed.issuperset(obj):
        unknown = [k for k in obj if k not in allowed]
        if unknown:
            raise _err(701, _utf16_prefix(min(unknown, key=_utf16_key), 64), "unknown field")
    create = kind == "create"
    doc_id = get("docId")
    if doc_id is None:
        if "docId" in required:
            _get(obj, "docId", required)
    elif not isinstance(doc_id, str) or _DOC_ID_FULLMATCH(doc_id) is None:
        raise _err(701, "docId", "expected a document id")
    seq = get("seq")
    if type(seq) is not int or seq < 0 or seq > MAX_SAFE_INTEGER:
        seq = _int(_get(obj, "seq", required), "seq")
    if (seq == 0) != create:
        raise _err(701, "seq", "0 for create, at least 1 for any other kind")
    prev = get("prev")
    if create:
        if prev != "":
            if prev is None:
                _get(obj, "prev", required)
            raise _err(701, "prev", 'must be "" for create')
    elif type(prev) is not str or _B64_32_FULLMATCH(prev) is None:
        _b64(_get(obj, "prev", required), "prev", 32)
    signer = get("signer")
    if type(signer) is not str or _B64_32_FULLMATCH(signer) is None:
        _b64(_get(obj, "signer", required), "signer", PUBLIC_KEY_BYTES)
    target = get("target")
    if target is None:
        if "target" in required:
            _get(obj, "target", required)
    elif type(target) is not str or _B64_32_FULLMATCH(target) is None:
        _b64(target, "target", PUBLIC_KEY_BYTES)
    role = get("role")
    if role is None:
        if "role" in required:
            _get(obj, "role", required)
    elif type(role) is not str or role not in _RANK:
        raise _err(701, "role", "expected one of " + ", ".join(ROLES))
    name = get("name")
    if name is not None or "name" in obj:
        reason = check_display_name(name)
        if reason:
            raise _err(701, "name", reason)
    nonce = get("nonce")
    if nonce is None:
        if "nonce" in required:
            _get(obj, "nonce", required)
    else:
        _b64(nonce, "nonce", ROOT_NONCE_BYTES)
    extra = _parse_extra(obj, kind, required) if kind in _EPOCH_KINDS else None
    at = get("at")
    if type(at) is not int or at < 0 or at > MAX_SAFE_INTEGER:
        at = _int(_get(obj, "at", required), "at")
    signature = get("signature")
    if type(signature) is not str or _B64_64_FULLMATCH(signature) is None:
        _b64(_get(obj, "signature", required), "signature", SIGNATURE_BYTES)
    unsigned, full = _canonical(
        kind, seq, prev, signer, at, doc_id, target, role, name, nonce, signature, extra
    )
    digest = _b2a_base64(_blake2b(full, digest_size=32).digest(), newline=False)
    if extra is None:
        extra = _NO_EXTRA
    return _new_entry(
        (
            kind,
            seq,
            prev,
            signer,
            at,
            signature,
            doc_id,
            target,
            role,
            name,
            nonce,
            LOG_FORMAT_VERSION,
            digest.translate(_TO_URLSAFE_B64, b"=").decode(),
            _DOMAIN_BYTES + unsigned,
            *extra,
        )
    )


_NO_EXTRA = (None, None, None, None, None)
_new_entry = partial(tuple.__new__, Entry)
_blake2b = hashlib.blake2b
_b2a_base64 = binascii.b2a_base64
_TO_URLSAFE_B64 = bytes.maketrans(b"+/", b"-_")
_B64_32_FULLMATCH = _B64_32.fullmatch
_B64_64_FULLMATCH = _B64_64.fullmatch
_DOC_ID_FULLMATCH = DOC_ID_RE.fullmatch


_EPOCH_KINDS = frozenset(("rotate-key", "add-link", "remove-link"))
_EXTRA_NAMES = ("epoch", "key_check", "lockbox_hash", "label", "expires_at")


def _parse_extra(obj: dict, kind: str, required: frozenset[str]) -> tuple:
    """The issue-12 fields, in the parse order: epoch, keyCheck, lockboxHash, label,
    expiresAt (each present only in the kinds that allow it: unknown fields were refused)."""
    epoch = _get(obj, "epoch", required)
    if epoch is not None:
        epoch = _int(epoch, "epoch")
        if epoch < 1:
            raise _err(701, "epoch", "a rotation makes epoch 1 or later")
    key_check = _get(obj, "keyCheck", required)
    if key_check is not None:
        _b64(key_check, "keyCheck", 32)
    lockbox_hash = _get(obj, "lockboxHash", required)
    if lockbox_hash is not None:
        _b64(lockbox_hash, "lockboxHash", 32)
    label = _get(obj, "label", required)
    if label is not None:
        reason = check_display_name(label)
        if reason:
            raise _err(701, "label", reason)
    expires_at = None
    if "expiresAt" in obj:
        value = obj["expiresAt"]
        if value is None:
            raise _err(701, "expiresAt", "must not be null")
        expires_at = _int(value, "expiresAt")
    return epoch, key_check, lockbox_hash, label, expires_at


def doc_id_of_root(root: Entry | Mapping[str, Any]) -> str:
    """The document id a root (``create``) entry binds: ``"m1_" + hash(root)``."""
    return LOG_DOC_ID_PREFIX + parse_entry(root).hash


def is_log_doc_id(doc_id: object) -> bool:
    """Whether ``doc_id`` names a document with a membership log (``m1_`` + 43 characters)."""
    return isinstance(doc_id, str) and LOG_DOC_ID_RE.fullmatch(doc_id) is not None


# ---------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogHead:
    """The last entry of a log: its sequence number and hash (``{"seq", "hash"}`` on the wire,
    e.g. in the public data of messages written under it)."""

    seq: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


def parse_log_head(value: Any) -> LogHead:
    """Parse a ``{"seq", "hash"}`` object strictly (701 naming the field)."""
    if not isinstance(value, dict):
        raise _err(701, "logHead", "expected a JSON object")
    if set(value) != {"seq", "hash"}:
        raise _err(701, "logHead", 'expected exactly "seq" and "hash"')
    return LogHead(_int(value["seq"], "logHead.seq"), _b64(value["hash"], "logHead.hash", 32))


class Member(NamedTuple):
    pub_key: str
    role: str
    #: who added this member (the member itself for the creator)
    added_by: str
    #: when (the adding entry's timestamp, ms since the Unix epoch)
    at: int
    #: the adding entry's sequence number
    seq: int
    name: str | None = None
    #: the link this member joined through (its public key; the adding entry's signer)
    via: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"role": self.role, "addedBy": self.added_by, "at": self.at, "seq": self.seq}
        if self.name is not None:
            out["name"] = self.name
        if self.via is not None:
            out["via"] = self.via
        return out


class Link(NamedTuple):
    """An invitation link: a member of kind *link* (issue 12). It may add people with a role
    no higher than its own while it is live, and holds lockboxes; nothing else."""

    pub_key: str
    role: str
    label: str
    #: the admin who added it, when (ms) and at which entry
    added_by: str
    at: int
    seq: int
    #: ms since the Unix epoch; the link adds people only with ``at <= expires_at``
    expires_at: int | None = None
    #: the ``remove-link`` entry's sequence number (a removed link never comes back)
    removed: int | None = None

    def live(self, now: int) -> bool:
        """Not removed and not expired at ``now`` (ms since the Unix epoch)."""
        return self.removed is None and (self.expires_at is None or now <= self.expires_at)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": self.role,
            "label": self.label,
            "addedBy": self.added_by,
            "at": self.at,
            "seq": self.seq,
        }
        if self.expires_at is not None:
            out["expiresAt"] = self.expires_at
        if self.removed is not None:
            out["removed"] = self.removed
        return out


class EpochInfo(NamedTuple):
    """A key epoch: 0 from the root (the document key of the share link / creation), each
    later one from a ``rotate-key`` entry."""

    epoch: int
    #: the entry that began it (0: the root)
    seq: int
    #: who rotated, when (the root's signer and time for epoch 0)
    signer: str
    at: int
    #: ``rotate-key`` commitments (``None`` for epoch 0)
    key_check: str | None = None
    lockbox_hash: str | None = None
    #: who must get a lockbox of this epoch: the members and the links live at ``at``
    recipients: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epoch": self.epoch, "seq": self.seq, "signer": self.signer}
        out["at"] = self.at
        if self.key_check is not None:
            out["keyCheck"] = self.key_check
            out["lockboxHash"] = self.lockbox_hash
            out["recipients"] = sorted(self.recipients)
        return out


@dataclass(frozen=True)
class MembershipState:
    """Who is a member with which role at the head of a verified log."""

    doc_id: str
    root_hash: str
    head: LogHead
    head_at: int
    members: Mapping[str, Member]
    #: the hash of every entry, by sequence number
    hashes: tuple[str, ...] = field(repr=False)
    #: per public key, ``(seq, role or None)`` for every change of that key's role
    history: Mapping[str, tuple[tuple[int, str | None], ...]] = field(repr=False)
    #: issue 12: every link ever added (removed ones too, with ``removed`` set), by public key
    links: Mapping[str, Link] = field(default_factory=lambda: MappingProxyType({}))
    #: every key epoch, oldest first (``epochs[n].epoch == n``)
    epochs: tuple[EpochInfo, ...] = ()
    #: the keys that may hold the current epoch's key: its recipients and everyone (person or
    #: link) added since; a rotation is due when one of them is no longer a member or live link
    holders: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def epoch(self) -> int:
        """The current key epoch (0 until the first ``rotate-key``)."""
        return len(self.epochs) - 1

    def epoch_at(self, seq: int) -> int:
        """The key epoch current right after entry ``seq``."""
        if seq < 0 or seq > self.head.seq:
            raise ValueError(f"seq {seq} is not in the log (head {self.head.seq})")
        lo, hi = 0, len(self.epochs) - 1
        while lo < hi:  # the last epoch that began at or before seq
            mid = (lo + hi + 1) // 2
            if self.epochs[mid].seq <= seq:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def link(self, pub_key: str) -> Link | None:
        return self.links.get(pub_key)

    def is_live_link(self, pub_key: str, now: int) -> bool:
        link = self.links.get(pub_key)
        return link is not None and link.live(now)

    def recipients(self, now: int) -> list[str]:
        """Who gets a lockbox of a rotation at ``now``: every member and every live link,
        sorted."""
        keys = list(self.members)
        keys.extend(k for k, link in self.links.items() if link.live(now))
        return sorted(keys)

    def rotation_needed(self, now: int) -> bool:
        """Whether someone who may hold the current epoch's key is no longer a member nor a
        live link (removed, left, link removed or expired): the client rule is that an admin
        then rotates (docs/protocol.md, "Key epochs, lockboxes and links")."""
        return any(k not in self.members and not self.is_live_link(k, now) for k in self.holders)

    def role(self, pub_key: str) -> str | None:
        member = self.members.get(pub_key)
        return member.role if member else None

    def is_member(self, pub_key: str) -> bool:
        return pub_key in self.members

    def can_write(self, pub_key: str) -> bool:
        """Editors and admins write snapshots and updates."""
        return self.role(pub_key) in ("editor", "admin")

    def can_manage(self, pub_key: str) -> bool:
        return self.role(pub_key) == "admin"

    def role_at(self, pub_key: str, seq: int) -> str | None:
        """The role ``pub_key`` had right after entry ``seq`` (``None``: not a member then)."""
        if seq < 0 or seq > self.head.seq:
            raise ValueError(f"seq {seq} is not in the log (head {self.head.seq})")
        role = None
        for at_seq, value in self.history.get(pub_key, ()):
            if at_seq > seq:
                break
            role = value
        return role

    def head_of(self, seq: int) -> LogHead:
        return LogHead(seq, self.hashes[seq])

    def to_json(self) -> dict[str, Any]:
        """A plain summary (what the vectors compare)."""
        return {
            "docId": self.doc_id,
            "root": self.root_hash,
            "head": self.head.to_json(),
            "members": {k: m.to_json() for k, m in sorted(self.members.items())},
            "links": {k: link.to_json() for k, link in sorted(self.links.items())},
            "epoch": self.epoch,
            "epochs": [info.to_json() for info in self.epochs],
        }


class _Builder:
    """Mutable state while entries are applied; frozen into a MembershipState at the end."""

    __slots__ = (
        "admins",
        "doc_id",
        "epochs",
        "hashes",
        "head_at",
        "head_hash",
        "history",
        "holders",
        "links",
        "members",
        "root_hash",
        "seq",
    )

    def __init__(self, root: Entry, doc_id: str):
        self.doc_id = doc_id
        self.root_hash = root.hash
        self.seq = 0
        self.head_hash = root.hash
        self.head_at = root.at
        self.members = {
            root.signer: Member(root.signer, "admin", root.signer, root.at, 0, root.name)
        }
        self.hashes = [root.hash]
        self.history: dict[str, tuple[tuple[int, str | None], ...]] = {root.signer: ((0, "admin"),)}
        self.admins = 1
        self.links: dict[str, Link] = {}
        self.epochs = [EpochInfo(0, 0, root.signer, root.at)]
        self.holders = {root.signer}

    @classmethod
    def of(cls, state: MembershipState) -> _Builder:
        b = cls.__new__(cls)
        b.doc_id, b.root_hash = state.doc_id, state.root_hash
        b.seq, b.head_hash, b.head_at = state.head.seq, state.head.hash, state.head_at
        b.members = dict(state.members)
        b.hashes = list(state.hashes)
        b.history = dict(state.history)  # values are tuples: shared, never changed
        b.admins = sum(1 for m in state.members.values() if m.role == "admin")
        b.links = dict(state.links)
        b.epochs = list(state.epochs)
        b.holders = set(state.holders)
        return b

    def freeze(self) -> MembershipState:
        return MembershipState(
            self.doc_id,
            self.root_hash,
            LogHead(self.seq, self.head_hash),
            self.head_at,
            MappingProxyType(dict(self.members)),
            tuple(self.hashes),
            MappingProxyType(dict(self.history)),
            MappingProxyType(dict(self.links)),
            tuple(self.epochs),
            frozenset(self.holders),
        )

    def _set(self, e: Entry, pub_key: str, member: Member | None) -> None:
        old = self.members.get(pub_key)
        if old is not None and old.role == "admin":
            self.admins -= 1
        if member is None:
            del self.members[pub_key]
        else:
            self.members[pub_key] = member
            if member.role == "admin":
                self.admins += 1
        change = (e.seq, member.role if member else None)
        self.history[pub_key] = (*self.history.get(pub_key, ()), change)

    def apply(self, e: Entry) -> None:
        """Check ``e`` against the state (signature already checked) and apply it."""
        if e.kind == "create":  # a root again: the same one (replay) or another (fork)
            raise _err(708 if e.hash == self.hashes[0] else 707, "seq")
        if e.doc_id != self.doc_id:
            raise _err(705, "docId")
        if e.seq <= self.seq:
            if self.hashes[e.seq] == e.hash:
                raise _err(708, "seq")
            raise _err(707, "seq", f"the log already has entry {e.seq}")
        if e.seq > self.seq + 1:
            raise _err(709, "seq", f"expected {self.seq + 1}, got {e.seq}")
        if e.prev != self.head_hash:
            raise _err(707, "prev")
        if e.at < self.head_at:
            raise _err(710, "at")
        signer = self.members.get(e.signer)
        if signer is None:
            link = self.links.get(e.signer)
            if link is None:
                raise _err(711, "signer")
            self._apply_link_signed(e, link)
            self._advance(e)
            return
        own = e.target == e.signer
        if own and e.role is not None and _RANK[e.role] > _RANK[signer.role]:
            raise _err(713, "role")
        target = self.members.get(e.target)  # type: ignore[arg-type]
        if e.kind == "add-member":
            if signer.role != "admin":
                raise _err(712, "signer")
            if target is not None:
                raise _err(715, "target")
            if e.target in self.links:
                raise _err(758, "target", "this key is a link's")
            member = Member(e.target, e.role, e.signer, e.at, e.seq, e.name)  # type: ignore[arg-type]
            self._set(e, e.target, member)  # type: ignore[arg-type]
            self.holders.add(e.target)  # type: ignore[arg-type]
        elif e.kind == "set-role":
            self_demotion = own and _RANK[e.role] < _RANK[signer.role]  # type: ignore[index]
            if not self_demotion and signer.role != "admin":
                raise _err(712, "signer")
            if target is None:
                raise _err(716, "target")
            if target.role == e.role:
                raise _err(717, "role")
            if target.role == "admin" and self.admins == 1:
                raise _err(714, "role")
            self._set(
                e,
                e.target,
                Member(
                    target.pub_key,
                    e.role,
                    target.added_by,
                    target.at,  # type: ignore[arg-type]
                    target.seq,
                    target.name,
                ),
            )
        elif e.kind in _EPOCH_KINDS:
            self._apply_epoch_kind(e, signer, target)
        else:  # remove-member
            if not own and signer.role != "admin":
                raise _err(712, "signer")
            if target is None:
                raise _err(716, "target")
            if target.role == "admin" and self.admins == 1:
                raise _err(714, "target")
            self._set(e, e.target, None)  # type: ignore[arg-type]
        self._advance(e)

    def _advance(self, e: Entry) -> None:
        self.seq = e.seq
        self.head_hash = e.hash
        self.head_at = e.at
        self.hashes.append(e.hash)

    def _apply_link_signed(self, e: Entry, link: Link) -> None:
        """An entry signed by a link identity: only ``add-member`` of a new person, with a
        role no higher than the link's, while the link is live."""
        if link.removed is not None:
            raise _err(755, "signer", "the link was removed")
        if e.kind != "add-member":
            raise _err(753, "kind", "a link may only add members")
        if link.expires_at is not None and e.at > link.expires_at:
            raise _err(754, "at", "the link expired")
        if e.target in self.members:
            raise _err(715, "target")
        if e.target in self.links:
            raise _err(758, "target", "this key is a link's")
        if _RANK[e.role] > _RANK[link.role]:  # type: ignore[index]
            raise _err(756, "role", f"the link gives at most {link.role}")
        member = Member(e.target, e.role, e.signer, e.at, e.seq, e.name, e.signer)  # type: ignore[arg-type]
        self._set(e, e.target, member)  # type: ignore[arg-type]
        self.holders.add(e.target)  # type: ignore[arg-type]

    def _apply_epoch_kind(self, e: Entry, signer: Member, target: Member | None) -> None:
        """rotate-key, add-link, remove-link: all need an admin signer."""
        if signer.role != "admin":
            raise _err(712, "signer")
        if e.kind == "rotate-key":
            current = len(self.epochs) - 1
            if e.epoch != current + 1:
                raise _err(751, "epoch", f"expected {current + 1}")
            recipients = frozenset(
                (*self.members, *(k for k, lk in self.links.items() if lk.live(e.at)))
            )
            self.epochs.append(
                EpochInfo(
                    current + 1,
                    e.seq,
                    e.signer,
                    e.at,
                    e.key_check,
                    e.lockbox_hash,
                    recipients,
                )
            )
            self.holders = set(recipients)
        elif e.kind == "add-link":
            if e.role not in LINK_ROLES:
                raise _err(752, "role", "a link is a viewer or an editor")
            if e.expires_at is not None and e.expires_at <= e.at:
                raise _err(759, "expiresAt", "the link would be expired when added")
            if target is not None:
                raise _err(715, "target")
            if e.target in self.links:
                raise _err(758, "target", "this key was a link already")
            self.links[e.target] = Link(  # type: ignore[index]
                e.target,  # type: ignore[arg-type]
                e.role,  # type: ignore[arg-type]
                e.label,  # type: ignore[arg-type]
                e.signer,
                e.at,
                e.seq,
                e.expires_at,
            )
            self.holders.add(e.target)  # type: ignore[arg-type]
        else:  # remove-link
            link = self.links.get(e.target)  # type: ignore[arg-type]
            if link is None or link.removed is not None:
                raise _err(757, "target", "not a live link")
            self.links[e.target] = link._replace(removed=e.seq)  # type: ignore[index]


def _checked(obj: Any) -> Entry:
    entry = parse_entry(obj)
    if not entry.verify_signature():
        raise _err(704, "signature")
    return entry


#: Checks Ed25519 signatures in bulk: ``[(signature, message, public key), …] -> [ok, …]``
#: (e.g. spread over worker threads by a driver; the core itself stays single-threaded).
#: The answer is a sequence, or an iterable the core consumes in order as it applies the
#: entries (results may still be computed elsewhere meanwhile); one ``True`` per item.
SignatureCheck = Callable[[Sequence[tuple[bytes, bytes, bytes]]], Sequence[bool] | Iterable[bool]]


def _at_index(exc: MembershipError, index: int) -> MembershipError:
    exc.index = index
    return exc


def _verified(entries: Sequence[Any], offset: int, check: SignatureCheck | None):
    """Yield ``(index, entry)`` for parsed entries with valid signatures, in order; parse and
    signature errors are raised at their index exactly as one-by-one checking would."""
    if check is None:
        for index, obj in enumerate(entries, offset):
            try:
                yield index, _checked(obj)
            except MembershipError as exc:
                raise _at_index(exc, index)
        return
    parsed: list[Entry | MembershipError] = []
    append = parsed.append
    for obj in entries:
        try:
            append(parse_entry(obj))
        except MembershipError as exc:
            append(exc)
    keys: dict[str, bytes] = {}  # a log has few signers: each key is decoded once
    todo = []
    for e in parsed:
        if type(e) is Entry:
            key = keys.get(e.signer)
            if key is None:
                key = keys[e.signer] = b64decode_checked(e.signer)
            todo.append((b64decode_checked(e.signature), e.signed_bytes, key))
    results = check(todo)
    if hasattr(results, "__len__") and len(results) != len(todo):
        raise ValueError("the signature check returned a wrong number of results")
    # any other iterable is consumed as the entries are applied (e.g. the results of other
    # processes still coming while the first entries are applied); its length checked as it goes
    ok = iter(results)
    for index, entry in enumerate(parsed, offset):
        if type(entry) is not Entry:
            raise _at_index(entry, index)  # type: ignore[arg-type]
        result = next(ok, _MISSING)
        if result is not True:
            if result is _MISSING:
                raise ValueError("the signature check returned a wrong number of results")
            raise _at_index(_err(704, "signature"), index)
        yield index, entry
    if next(ok, _MISSING) is not _MISSING:
        raise ValueError("the signature check returned a wrong number of results")


_MISSING = object()


def _root(root: Entry, doc_id: str | None) -> _Builder:
    if root.kind != "create":
        raise _err(706, "kind", "the first entry must be a create entry")
    bound = LOG_DOC_ID_PREFIX + root.hash
    if doc_id is not None and bound != doc_id:
        raise _err(706, "root", f"the root binds {bound}, not {doc_id}")
    return _Builder(root, bound)


def _apply_all(builder: _Builder, verified) -> None:
    for index, entry in verified:
        try:
            builder.apply(entry)
        except MembershipError as exc:
            raise _at_index(exc, index)


def verify_log(
    entries: Sequence[Any],
    doc_id: str | None,
    *,
    known_head: LogHead | None = None,
    check_signatures: SignatureCheck | None = None,
) -> MembershipState:
    """Verify a whole log (entries as parsed JSON objects or :class:`Entry`) and return the
    membership at its head.

    ``doc_id`` is the document id this party already holds (from the share link, the
    pointer file, the URL it serves): the root must bind exactly that id (706). Pass
    ``None`` only to learn the id of a root you made yourself. ``known_head`` is a head this
    party verified before: the log must contain it (718 otherwise: rollback or fork).
    ``check_signatures`` lets a driver check all signatures at once (same results).
    Raises :class:`MembershipError` with ``.index`` set to the offending entry.
    """
    if not isinstance(entries, (list, tuple)):
        raise _err(701, "log", "expected an array")
    if not entries:
        raise _err(706, "log", "the log is empty")
    if len(entries) > MAX_LOG_ENTRIES:
        raise _err(701, "log", f"more than {MAX_LOG_ENTRIES} entries")
    verified = _verified(entries, 0, check_signatures)
    _, root = next(verified)
    try:
        builder = _root(root, doc_id)
    except MembershipError as exc:
        raise _at_index(exc, 0)
    _apply_all(builder, verified)
    state = builder.freeze()
    if known_head is not None:
        check_known_head(state, known_head)
    return state


def check_known_head(state: MembershipState, known: LogHead) -> None:
    """718 unless ``known`` (a head verified earlier) is an entry of ``state``'s log."""
    if known.seq > state.head.seq or state.hashes[known.seq] != known.hash:
        raise _err(718, "log", f"entry {known.seq} is not the one seen before")


def verify_entry(state: MembershipState, entry: Any) -> MembershipState:
    """Verify one appended entry against ``state`` (parse, signature, document, chain,
    authority) and return the new state. ``state`` is not changed."""
    builder = _Builder.of(state)
    builder.apply(_checked(entry))
    return builder.freeze()


def extend_log(
    state: MembershipState,
    entries: Sequence[Any],
    *,
    check_signatures: SignatureCheck | None = None,
) -> MembershipState:
    """Verify entries that continue ``state``'s log (a delta from the relay); ``.index`` of
    an error counts from 0 in ``entries``."""
    if not isinstance(entries, (list, tuple)):
        raise _err(701, "log", "expected an array")
    if state.head.seq + 1 + len(entries) > MAX_LOG_ENTRIES:
        raise _err(701, "log", f"more than {MAX_LOG_ENTRIES} entries")
    if not entries:
        return state
    builder = _Builder.of(state)
    _apply_all(builder, _verified(entries, 0, check_signatures))
    return builder.freeze()


# ---------------------------------------------------------------------------------------
# creating entries
# ---------------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sign(fields: dict[str, Any], keypair: SigningKeyPair) -> Entry:
    unsigned = parse_entry({**fields, "signature": _NO_SIGNATURE})
    signature = b64encode(keypair.sign(unsigned.signed_bytes))
    return parse_entry({**fields, "signature": signature})


_NO_SIGNATURE = "A" * 86


def _pub_key(value: str | bytes | Identity, field: str) -> str:
    if isinstance(value, Identity):
        value = value.pub_key
    if isinstance(value, bytes):
        value = b64encode(value)
    try:
        _check_identity_point(b64decode_checked(_b64(value, field, PUBLIC_KEY_BYTES)))
    except (MembershipError, IdentityError) as exc:
        raise _err(741, field, exc.detail)
    return value


def create_log(
    keypair: SigningKeyPair,
    *,
    name: str | None = None,
    at: int | None = None,
    nonce: bytes | None = None,
) -> tuple[Entry, MembershipState]:
    """A new log: its root entry (the signer becomes the first admin) and the state.

    The document id is ``state.doc_id`` (``"m1_" + hash(root)``). ``at`` (ms since the Unix
    epoch) and ``nonce`` (24 bytes) are for deterministic tests; normally now and random."""
    fields: dict[str, Any] = {
        "v": LOG_FORMAT_VERSION,
        "kind": "create",
        "seq": 0,
        "prev": "",
        "signer": keypair.public_key_b64,
        "nonce": b64encode(os.urandom(ROOT_NONCE_BYTES) if nonce is None else nonce),
        "at": _now_ms() if at is None else at,
    }
    if name is not None:
        fields["name"] = name
    try:
        root = _sign(fields, keypair)
    except MembershipParseError as exc:
        raise _err(741, exc.field, exc.detail)
    return root, verify_log([root], None)


def create_entry(
    state: MembershipState,
    keypair: SigningKeyPair,
    kind: str,
    target: str | bytes | Identity,
    role: str | None = None,
    *,
    name: str | None = None,
    at: int | None = None,
) -> tuple[Entry, MembershipState]:
    """Sign the next entry on ``state``'s head and check it: returns the entry (to send to
    the relay) and the state after it.

    ``kind`` is ``add-member`` (with ``role``; ``name`` defaults to the identity's display
    name), ``set-role`` (with ``role``) or ``remove-member``. ``at`` defaults to now, but
    never earlier than the head's timestamp. Raises 741 for bad arguments (including a key
    that is not a usable Ed25519 point) and the rule's own code (711–717) when the signer
    may not make this change."""
    if kind not in ("add-member", "set-role", "remove-member"):
        raise _err(741, "kind", "expected add-member, set-role or remove-member")
    if kind == "add-member" and name is None and isinstance(target, Identity):
        name = target.name
    fields: dict[str, Any] = {
        "v": LOG_FORMAT_VERSION,
        "kind": kind,
        "docId": state.doc_id,
        "seq": state.head.seq + 1,
        "prev": state.head.hash,
        "signer": keypair.public_key_b64,
        "target": _pub_key(target, "target"),
        "at": max(_now_ms(), state.head_at) if at is None else at,
    }
    if kind != "remove-member":
        fields["role"] = role
    elif role is not None:
        raise _err(741, "role", "remove-member takes no role")
    if name is not None:
        if kind != "add-member":
            raise _err(741, "name", "only add-member carries a name")
        fields["name"] = name
    try:
        entry = _sign(fields, keypair)
    except MembershipParseError as exc:
        raise _err(741, exc.field, exc.detail)
    return entry, verify_entry(state, entry)


def next_entry(
    state: MembershipState,
    keypair: SigningKeyPair,
    kind: str,
    fields: dict[str, Any],
    *,
    at: int | None = None,
) -> tuple[Entry, MembershipState]:
    """Sign an entry of ``kind`` with ``fields`` (wire names) on ``state``'s head and check
    it (for the issue-12 kinds; :mod:`.epochs` and :mod:`.links` build their fields): 741
    for a malformed field, the rule's own code otherwise."""
    full: dict[str, Any] = {
        "v": LOG_FORMAT_VERSION,
        "kind": kind,
        "docId": state.doc_id,
        "seq": state.head.seq + 1,
        "prev": state.head.hash,
        "signer": keypair.public_key_b64,
        **fields,
        "at": max(_now_ms(), state.head_at) if at is None else at,
    }
    try:
        entry = _sign(full, keypair)
    except MembershipParseError as exc:
        raise _err(741, exc.field, exc.detail)
    return entry, verify_entry(state, entry)


# ---------------------------------------------------------------------------------------
# reader proofs (authenticated readers)
# ---------------------------------------------------------------------------------------


def new_reader_challenge() -> str:
    """A fresh challenge nonce for one connection: b64 of 32 random bytes."""
    return b64encode(os.urandom(CHALLENGE_NONCE_BYTES))


def reader_proof_bytes(doc_id: str, nonce: str, pub_key: str) -> bytes:
    """``"secsync_jupyter_reader_proof" + canon({"docId", "nonce", "pubKey"})``."""
    return DOMAIN_READER_PROOF.encode() + canonicalize(
        {"docId": doc_id, "nonce": nonce, "pubKey": pub_key}
    )


def create_reader_proof(keypair: SigningKeyPair, doc_id: str, nonce: str) -> dict[str, str]:
    """The client's answer to a ``reader-challenge`` frame."""
    signature = keypair.sign(reader_proof_bytes(doc_id, nonce, keypair.public_key_b64))
    return {
        "type": "reader-proof",
        "pubKey": keypair.public_key_b64,
        "signature": b64encode(signature),
    }


def verify_reader_proof(
    proof: Any,
    doc_id: str,
    nonce: str,
    state: MembershipState | None = None,
    *,
    now: int | None = None,
) -> str:
    """Check a ``reader-proof`` frame against the challenge this relay sent (``doc_id`` and
    ``nonce`` are the relay's own values) and return the proven public key.

    720 malformed, 721 bad signature, 722 not a member of ``state`` (when given). A link
    identity (issue 12) is a reader while it is live: 755 once removed, 754 after its expiry
    at ``now`` (ms since the Unix epoch; default: the current time). Whether the key is a
    link's: ``state.links``."""
    if not isinstance(proof, dict):
        raise _err(720, "proof", "expected a JSON object")
    try:
        pub_key = _b64(proof.get("pubKey"), "pubKey", PUBLIC_KEY_BYTES)
        signature = _b64(proof.get("signature"), "signature", SIGNATURE_BYTES)
    except MembershipError as exc:
        raise _err(720, exc.field, exc.detail)
    ok = verify_detached(
        b64decode_checked(signature),
        reader_proof_bytes(doc_id, nonce, pub_key),
        b64decode_checked(pub_key),
    )
    if not ok:
        raise _err(721, "signature")
    if state is not None and not state.is_member(pub_key):
        link = state.links.get(pub_key)
        if link is None:
            raise _err(722, "pubKey")
        if link.removed is not None:
            raise _err(755, "pubKey", "the link was removed")
        if not link.live(_now_ms() if now is None else now):
            raise _err(754, "pubKey", "the link expired")
    return pub_key
