"""Invitation links (issue 12): a secret in the URL fragment, a link identity derived from it.

Sans-IO. The wire format is in docs/protocol.md, section "Key epochs, lockboxes and links";
the TypeScript twin is ``labextension/src/secsync/links.ts``; both pass
``tests/vectors/epoch-vectors.json``.

* A **link secret** is 32 random bytes, carried only in the URL fragment
  (``#link=<b64url secret>``; ``#key=<b64url key>`` stays for documents without a log).
* The **link identity** is the Ed25519 key pair ``crypto_sign_seed_keypair(seed)`` with
  ``seed = BLAKE2b-256(key=secret, "secsync_jupyter_link_identity")``. An admin adds it to
  the log with ``add-link`` (role viewer or editor, label, optional expiry) and seals the
  current epoch key to it; whoever opens the link opens that lockbox and adds *themselves*
  with an ``add-member`` entry the link identity signs (role ≤ the link's, while it is live).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, NamedTuple

from .crypto import SigningKeyPair
from .encoding import b64decode_checked, b64encode
from .epochs import Lockbox, seal_lockbox
from .identity import Identity
from .membership import (
    Entry,
    MembershipState,
    _err,
    _pub_key,
    next_entry,
)

__all__ = [
    "DOMAIN_LINK_IDENTITY",
    "LINK_SECRET_BYTES",
    "LinkFragment",
    "NewLink",
    "create_link",
    "create_remove_link",
    "format_fragment",
    "generate_link_secret",
    "join_via_link",
    "link_keypair",
    "parse_fragment",
]

DOMAIN_LINK_IDENTITY = "secsync_jupyter_link_identity"
LINK_SECRET_BYTES = 32
_B64_32 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_FRAGMENT_NAMES = ("key", "link")
MAX_FRAGMENT_CHARS = 256


def generate_link_secret() -> bytes:
    return os.urandom(LINK_SECRET_BYTES)


def _secret(secret: Any) -> bytes:
    if isinstance(secret, str):
        if _B64_32.fullmatch(secret) is None:
            raise _err(780, "secret", "expected base64url of 32 bytes")
        return b64decode_checked(secret)
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != LINK_SECRET_BYTES:
        raise _err(780, "secret", f"a link secret is {LINK_SECRET_BYTES} bytes")
    return bytes(secret)


def link_keypair(secret: bytes | str) -> SigningKeyPair:
    """The link identity of a secret (bytes, or its base64url form from a fragment)."""
    seed = hashlib.blake2b(
        DOMAIN_LINK_IDENTITY.encode(), key=_secret(secret), digest_size=32
    ).digest()
    return SigningKeyPair.from_seed(seed)


# ---------------------------------------------------------------------------------------
# fragments
# ---------------------------------------------------------------------------------------


class LinkFragment(NamedTuple):
    """What a share link's fragment carries: the document key (``key=``, documents without
    a log and issue-11 links) and/or a link secret (``link=``)."""

    key: bytes | None = None
    link_secret: bytes | None = None


def format_fragment(*, key: bytes | None = None, link_secret: bytes | None = None) -> str:
    """``#key=<b64>``, ``#link=<b64>`` or ``#key=<b64>&link=<b64>`` (that order)."""
    parts = []
    for name, value in (("key", key), ("link", link_secret)):
        if value is not None:
            parts.append(f"{name}={b64encode(_secret(value))}")
    if not parts:
        raise _err(780, "fragment", "a fragment needs a key or a link secret")
    return "#" + "&".join(parts)


def parse_fragment(fragment: Any) -> LinkFragment:
    """Parse a share link's fragment (with or without the leading ``#``) strictly: only
    ``key`` and ``link``, each at most once, at least one, each base64url of 32 bytes in
    canonical form — 770 naming ``fragment``, ``key`` or ``link``. Nothing is
    percent-decoded (base64url needs no escaping)."""
    if not isinstance(fragment, str):
        raise _err(770, "fragment", "expected a string")
    text = fragment[1:] if fragment.startswith("#") else fragment
    if len(text.encode("utf-16-le", "surrogatepass")) > 2 * MAX_FRAGMENT_CHARS:  # JS length
        raise _err(770, "fragment", f"longer than {MAX_FRAGMENT_CHARS} characters")
    values: dict[str, bytes] = {}
    for part in text.split("&") if text else []:
        name, sep, value = part.partition("=")
        if not sep or name not in _FRAGMENT_NAMES:
            raise _err(770, "fragment", "expected key=… and/or link=…")
        if name in values:
            raise _err(770, name, "given twice")
        if _B64_32.fullmatch(value) is None:
            raise _err(770, name, "expected base64url of 32 bytes")
        values[name] = b64decode_checked(value)
    if not values:
        raise _err(770, "fragment", "no key= or link=")
    return LinkFragment(values.get("key"), values.get("link"))


# ---------------------------------------------------------------------------------------
# entries
# ---------------------------------------------------------------------------------------


class NewLink(NamedTuple):
    """A link an admin created: the secret (for the URL fragment only), the link identity's
    public key, the ``add-link`` entry, the state after it and, when the current epoch key
    was given, the link's lockbox."""

    secret: bytes
    pub_key: str
    entry: Entry
    state: MembershipState
    lockbox: Lockbox | None


def create_link(
    state: MembershipState,
    keypair: SigningKeyPair,
    role: str,
    label: str,
    *,
    expires_at: int | None = None,
    epoch_key: bytes | None = None,
    secret: bytes | None = None,
    at: int | None = None,
) -> NewLink:
    """An admin adds a link (``add-link``): a fresh secret (``secret`` only for tests), its
    identity as a member of kind link with ``role`` (viewer / editor), ``label`` and the
    optional expiry (ms since the Unix epoch). With ``epoch_key`` (the current epoch's key)
    the link's lockbox is sealed too. 741 / 780 for bad arguments, else the rule's code."""
    secret = generate_link_secret() if secret is None else _secret(secret)
    pub = link_keypair(secret).public_key_b64
    fields: dict[str, Any] = {"target": pub, "role": role, "label": label}
    if expires_at is not None:
        fields["expiresAt"] = expires_at
    entry, new_state = next_entry(state, keypair, "add-link", fields, at=at)
    lockbox = None
    if epoch_key is not None:
        lockbox = seal_lockbox(state.doc_id, state.epoch, epoch_key, pub)
    return NewLink(secret, pub, entry, new_state, lockbox)


def create_remove_link(
    state: MembershipState,
    keypair: SigningKeyPair,
    link: str | bytes,
    *,
    at: int | None = None,
) -> tuple[Entry, MembershipState]:
    """An admin revokes a link (``remove-link``); the client rule is to rotate right after."""
    return next_entry(state, keypair, "remove-link", {"target": _pub_key(link, "target")}, at=at)


def join_via_link(
    state: MembershipState,
    secret: bytes | str | SigningKeyPair,
    identity: str | bytes | Identity,
    role: str | None = None,
    *,
    name: str | None = None,
    at: int | None = None,
) -> tuple[Entry, MembershipState]:
    """The ``add-member`` entry by which the person opening a link adds themselves
    (``identity``), signed by the link identity; ``role`` defaults to the link's. 741 / 780
    for bad arguments; 753–758 when the link may not (removed, expired, role too high…)."""
    link = secret if isinstance(secret, SigningKeyPair) else link_keypair(secret)
    info = state.links.get(link.public_key_b64)
    if info is None:
        raise _err(711, "signer", "not a link of this document")
    if name is None and isinstance(identity, Identity):
        name = identity.name
    fields: dict[str, Any] = {
        "target": _pub_key(identity, "target"),
        "role": info.role if role is None else role,
    }
    if name is not None:
        fields["name"] = name
    return next_entry(state, link, "add-member", fields, at=at)
