"""Identities: an Ed25519 public key, an optional display name and a short fingerprint.

An **identity string** is what a user copies ("My identity" in JupyterLab,
``secsync-jupyter identity`` on the command line) and sends to a document's admin out of band::

    secsync-id:1:<pubKey>:<fingerprint>[:<name>]

* ``pubKey``: the Ed25519 public key, strict base64url of 32 bytes (43 characters);
* ``fingerprint``: 16 lowercase hex digits, BLAKE2b-64 of the key bytes (the fingerprint that
  JupyterLab shows as ``3ad7 c3ca c343 1d6b``); it must match the key (731): a check against
  typing and truncation errors, and what people compare by voice;
* ``name``: optional display name, percent-encoded UTF-8 (the unreserved characters
  ``A–Z a–z 0–9 - . _ ~`` as they are, every other byte as ``%XX`` with upper-case hex; only
  this canonical encoding is accepted, so ``format(parse(s)) == s``).

Parsing ignores surrounding ASCII whitespace and nothing else. The display name is a hint
for humans, not authenticated: what counts is the key and its fingerprint.

**Box key** (for sealing epoch keys to members, issue 12): derived from the signing key with
libsodium's ``crypto_sign_ed25519_pk_to_curve25519`` / ``…_sk_to_curve25519``, so the
identity is one key (the reasons are in docs/protocol.md, "Identities").

Display names (here and in membership entries) follow one rule set, defined by explicit
code point lists so that Python and TypeScript agree whatever their Unicode version:
1–100 bytes of UTF-8; no lone surrogates; none of the control, invisible or bidirectional
formatting characters in :data:`_FORBIDDEN_NAME_CHARS`; no leading or trailing white space
(:data:`_NAME_SPACE`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions

from .crypto import PUBLIC_KEY_BYTES, SigningKeyPair
from .encoding import b64decode, b64encode
from .errors import EncodingError, ProtocolError

__all__ = [
    "IDENTITY_PREFIX",
    "Identity",
    "IdentityError",
    "box_public_key",
    "box_secret_key",
    "check_display_name",
    "fingerprint",
    "fingerprint_hex",
    "format_identity",
    "parse_identity",
]

IDENTITY_PREFIX = "secsync-id:1:"
MAX_NAME_BYTES = 100
MAX_IDENTITY_CHARS = 512

#: control characters, soft hyphen, invisible and bidirectional formatting characters,
#: line/paragraph separators, BOM, interlinear annotations, lone surrogates
_FORBIDDEN_NAME_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
#: white space a name may not begin or end with (the controls are forbidden anyway)
_NAME_SPACE = frozenset(
    " \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u202f\u205f\u3000"
)
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")
_PCT_RE = re.compile(r"%([0-9A-F]{2})")


class IdentityError(ProtocolError):
    """A malformed identity string (730) or one whose fingerprint does not match (731)."""

    code = "SECSYNC_ERROR_730"


def check_display_name(name: object) -> str | None:
    """The reason ``name`` is not an acceptable display name, or ``None`` if it is."""
    if not isinstance(name, str):
        return "expected a string"
    if not name:
        return "must not be empty"
    if _FORBIDDEN_NAME_CHARS.search(name):
        return "contains a control, invisible or bidirectional formatting character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes of UTF-8"
    if name[0] in _NAME_SPACE or name[-1] in _NAME_SPACE:
        return "begins or ends with white space"
    return None


def fingerprint_hex(pub_key: bytes) -> str:
    """BLAKE2b-64 of the 32 key bytes as 16 lowercase hex digits."""
    return hashlib.blake2b(pub_key, digest_size=8).hexdigest()


def fingerprint(pub_key: bytes) -> str:
    """The fingerprint as people read it: four groups of four hex digits."""
    h = fingerprint_hex(pub_key)
    return " ".join(h[i : i + 4] for i in range(0, 16, 4))


def _pct_encode(name: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in name.encode("utf-8"))


def _pct_decode(text: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            if not _PCT_RE.match(text, i):
                raise IdentityError("'%' not followed by two upper-case hex digits", field="name")
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
            continue
        if ord(c) > 127 or ord(c) not in _UNRESERVED:
            raise IdentityError(f"character {c!r} must be percent-encoded", field="name")
        raw.append(ord(c))
        i += 1
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityError("not valid UTF-8", field="name")
    if _pct_encode(name) != text:
        raise IdentityError("not in canonical percent-encoding", field="name")
    return name


@dataclass(frozen=True)
class Identity:
    """A parsed identity string."""

    pub_key: str  #: base64url, 43 characters
    name: str | None = None

    @property
    def pub_key_bytes(self) -> bytes:
        return b64decode(self.pub_key, field="pubKey", length=PUBLIC_KEY_BYTES)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.pub_key_bytes)

    def __str__(self) -> str:
        return format_identity(self.pub_key, self.name)


def _key_bytes(pub_key: str | bytes, error=IdentityError, field: str = "pubKey") -> bytes:
    if isinstance(pub_key, bytes):
        if len(pub_key) != PUBLIC_KEY_BYTES:
            raise error(f"expected {PUBLIC_KEY_BYTES} bytes", field=field)
        return pub_key
    try:
        return b64decode(pub_key, field=field, length=PUBLIC_KEY_BYTES)
    except EncodingError as exc:
        raise error(exc.detail, field=field)


def format_identity(pub_key: str | bytes, name: str | None = None) -> str:
    """The identity string of a public key (bytes or base64url) and optional display name.

    Raises :class:`IdentityError` (730) for a bad key or name."""
    key = _key_bytes(pub_key)
    _check_point(key)
    text = f"{IDENTITY_PREFIX}{b64encode(key)}:{fingerprint_hex(key)}"
    if name is not None:
        reason = check_display_name(name)
        if reason:
            raise IdentityError(reason, field="name")
        text += ":" + _pct_encode(name)
    return text


def parse_identity(text: object) -> Identity:
    """Parse an identity string strictly. Raises :class:`IdentityError` naming the part:
    730 for anything malformed (including a key that is not a usable Ed25519 point), 731
    when the fingerprint does not match the key."""
    if not isinstance(text, str):
        raise IdentityError("expected a string", field="identity")
    text = text.strip(" \t\r\n")
    if len(text.encode("utf-16-le", "surrogatepass")) > 2 * MAX_IDENTITY_CHARS:  # JS length
        raise IdentityError(f"longer than {MAX_IDENTITY_CHARS} characters", field="identity")
    if not text.startswith(IDENTITY_PREFIX):
        raise IdentityError(f"does not start with {IDENTITY_PREFIX!r}", field="identity")
    parts = text[len(IDENTITY_PREFIX) :].split(":")
    if len(parts) not in (2, 3):
        raise IdentityError("expected pubKey:fingerprint[:name]", field="identity")
    key = _key_bytes(parts[0])
    if not _FINGERPRINT_RE.fullmatch(parts[1]):
        raise IdentityError("expected 16 lowercase hex digits", field="fingerprint")
    if parts[1] != fingerprint_hex(key):
        raise IdentityError(code="SECSYNC_ERROR_731", field="fingerprint")
    _check_point(key)
    name = None
    if len(parts) == 3:
        name = _pct_decode(parts[2])
        reason = check_display_name(name)
        if reason:
            raise IdentityError(reason, field="name")
    return Identity(b64encode(key), name)


def _check_point(key: bytes) -> None:
    """An Ed25519 key that can sign and be converted to a box key (not of small order)."""
    try:
        sodium.crypto_sign_ed25519_pk_to_curve25519(key)
    except (nacl.exceptions.CryptoError, RuntimeError, ValueError, TypeError):
        raise IdentityError("not a valid Ed25519 public key", field="pubKey")


def box_public_key(pub_key: str | bytes) -> bytes:
    """The X25519 box public key of a member (``crypto_sign_ed25519_pk_to_curve25519``).

    Raises :class:`IdentityError` (730) for a key that is not a valid Ed25519 point."""
    key = _key_bytes(pub_key)
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(key)
    except (nacl.exceptions.CryptoError, RuntimeError, ValueError, TypeError):
        raise IdentityError("not a valid Ed25519 public key", field="pubKey")


def box_secret_key(keypair: SigningKeyPair) -> bytes:
    """The X25519 box secret key matching :func:`box_public_key` of ``keypair``."""
    return sodium.crypto_sign_ed25519_sk_to_curve25519(keypair.private_key)
