"""Encodings: strict URL-safe base64 without padding, and canonical JSON (RFC 8785)."""

from __future__ import annotations

import binascii
import json
import re
from typing import Any

import rfc8785

from .errors import EncodingError

B64_ALPHABET_RE = re.compile(r"[A-Za-z0-9_-]*")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
MAX_SAFE_INTEGER = 2**53 - 1


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding (libsodium ``to_base64`` default variant)."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


def b64encode_bytes(data: bytes) -> bytes:
    """:func:`b64encode` as ASCII bytes (no str round trip)."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
#: last characters allowed when the final quantum has 2 or 3 characters (no stray bits set)
_LAST_OK = {
    2: frozenset("AQgw"),
    3: frozenset("AEIMQUYcgkosw048"),
}


_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64_alphabet(text: str) -> bool:
    """Only URL-safe base64 characters (same answer as ``B64_ALPHABET_RE.fullmatch``)."""
    if len(text) < 4096:
        return B64_ALPHABET_RE.fullmatch(text) is not None
    # long values (snapshots): deleting the alphabet in C is ~3x faster than the regex
    return text.isascii() and not text.encode("ascii").translate(None, _B64_CHARS)


def b64_valid(text: str, length: int | None = None) -> bool:
    """True for canonical URL-safe base64 without padding, of ``length`` bytes if given."""
    if not _b64_alphabet(text):
        return False
    rem = len(text) % 4
    if rem == 1 or (rem and text[-1] not in _LAST_OK[rem]):
        return False
    return length is None or len(text) * 3 // 4 == length


def b64decode(text: Any, *, field: str = "value", length: int | None = None) -> bytes:
    """Decode strict URL-safe base64 without padding.

    Rejects padding, characters outside the URL-safe alphabet, impossible lengths and
    non-canonical trailing bits; with ``length`` also any other decoded length.
    """
    if not isinstance(text, str):
        raise EncodingError("expected a base64url string", field=field)
    if not b64_valid(text):
        if B64_ALPHABET_RE.fullmatch(text) is None:
            raise EncodingError("not URL-safe base64 without padding", field=field)
        if len(text) % 4 == 1:
            raise EncodingError("impossible base64 length", field=field)
        raise EncodingError("non-canonical base64 (trailing bits set)", field=field)
    data = binascii.a2b_base64(
        text.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(text) % 4)
    )
    if length is not None and len(data) != length:
        raise EncodingError(f"expected {length} bytes, got {len(data)}", field=field)
    return data


def b64decode_checked(text: str) -> bytes:
    """Decode base64url text that the message parser already validated (no second check)."""
    return binascii.a2b_base64(
        text.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(text) % 4)
    )


def _check_domain(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise EncodingError("integer outside ±(2^53-1)", field=path)
        return
    if isinstance(value, float):
        raise EncodingError("floats are not allowed in canonical data", field=path)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise EncodingError("object keys must be strings", field=path)
            _check_domain(v, f"{path}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_domain(v, f"{path}[{i}]")
        return
    raise EncodingError(f"type {type(value).__name__} cannot be canonicalized", field=path)


#: ``json.dumps`` with sorted keys and no spaces: byte for byte RFC 8785 for :func:`_plain`
#: values whose output is ASCII (ASCII strings escape alike: quote, backslash, the short forms
#: of BS TAB LF FF CR, other control characters as lowercase \u00xx, DEL as it is; ASCII keys
#: sort alike by code point and by UTF-16 unit; safe integers print alike)
_encode_plain = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False, check_circular=False
).encode


def _no_default(value: Any) -> Any:
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def _make_encode_plain():
    """:data:`_encode_plain` without ``JSONEncoder.encode``'s per-call set-up (it builds a C
    encoder on every call): the same C encoder, made once, with the same arguments."""
    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # no C accelerator: the plain JSONEncoder
        return _encode_plain
    encoder = make(None, _no_default, basestring, None, ":", ",", True, False, False)
    join = "".join

    def encode(value: Any) -> str:
        if type(value) is str:  # as JSONEncoder.encode (the C encoder wants a container)
            return basestring(value)
        return join(encoder(value, 0))

    return encode


_encode_plain_c = _make_encode_plain()


def _plain(value: Any) -> bool:
    """Objects / arrays of exact strings (keys: exact strings), safe integers, booleans and
    null: the shape of every public data and membership entry (the fast path of
    :func:`canonicalize`, which also requires its output to be ASCII — that is, every key and
    string ASCII — checked once on the output instead of string by string)."""
    t = type(value)
    if t is dict:
        for k in value:
            if type(k) is not str:
                return False
        items = value.values()
    elif t is list:
        items = value
    elif t is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    else:
        return t is str or t is bool or value is None
    for v in items:
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                return False
        elif not _plain(v):
            return False
    return True


def canonicalize(value: Any, *, field: str = "value") -> bytes:
    """RFC 8785 canonical JSON as UTF-8 bytes (same output as npm ``canonicalize``).

    The domain is the protocol's: strings, booleans, null, integers with |n| ≤ 2^53−1,
    and objects / arrays of those. Anything else raises :class:`EncodingError`.
    Values of ASCII strings and safe integers (every public data in practice) take a fast
    path with the same bytes (``tests/test_canonical_fast_path.py``).
    """
    try:
        if _plain(value):
            text = _encode_plain_c(value)
            if text.isascii():  # every key and string ASCII
                return text.encode("ascii")
    except RecursionError:
        pass  # deeper than the fast path goes: the generic path decides
    _check_domain(value, field)
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError, ValueError, TypeError) as exc:
        raise EncodingError(f"cannot canonicalize: {exc}", field=field)


def canonicalize_b64(value: Any, *, field: str = "publicData") -> str:
    """``b64(canon(value))`` — the AEAD additional data and signed ``publicData`` string."""
    return b64encode(canonicalize(value, field=field))


def loads(text: str | bytes, *, field: str = "frame") -> Any:
    """``json.loads`` that raises only :class:`EncodingError` (bad JSON, bad UTF-8, depth)."""
    import json

    try:
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).decode("utf-8")
        return json.loads(text)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise EncodingError(f"not valid JSON: {exc}", field=field)
