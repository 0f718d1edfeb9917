"""Typed, immutable Secsync messages parsed strictly from JSON.

``Snapshot.from_json(obj)`` / ``Update.from_json(obj)`` / ``EphemeralMessage.from_json(obj)``
accept the decoded JSON object of a wire message and raise only a
:class:`~.errors.ParseError` subclass (naming the field) for anything malformed: a missing
field, a wrong type, a non-integer or negative clock, an oversized value, a value that is
not strict base64url. ``publicData`` is kept exactly as received (``public_data.raw``),
unknown application fields included: it is what the signature and the AEAD cover.

A malformed ``pubKey`` or ``signature`` makes the signature impossible to verify; its
parse error carries the family's signature code (111 / 212 / 308), as the reference does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .crypto import NONCE_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from .encoding import MAX_SAFE_INTEGER, b64_valid, b64decode, canonicalize_b64, loads
from .errors import (
    ChainParseError,
    EncodingError,
    EphemeralParseError,
    ParseError,
    SnapshotParseError,
    UpdateParseError,
)

MAX_ID_CHARS = 256
MAX_PROOF_CHARS = 64
#: Largest ciphertext accepted by the parser, in base64 characters (48 MiB).
MAX_CIPHERTEXT_CHARS = 48 * 1024 * 1024
MAX_CLOCK_ENTRIES = 100_000


class _Parser:
    """Field checks bound to one message family's parse-error class and signature code."""

    def __init__(self, error: type[ParseError], signature_code: str):
        self.error = error
        self.signature_code = signature_code

    def fail(self, field: str, message: str, code: str | None = None) -> ParseError:
        return self.error(message, field=field, code=code)

    def obj(self, value: Any, name: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(name, "expected a JSON object")
        return value

    def get(self, obj: Mapping[str, Any], key: str, prefix: str = "") -> Any:
        if key not in obj:
            raise self.fail(prefix + key, "missing field")
        return obj[key]

    def string(self, value: Any, name: str, max_chars: int, *, allow_empty: bool = True) -> str:
        if not isinstance(value, str):
            raise self.fail(name, "expected a string")
        if len(value) > max_chars:
            raise self.fail(name, f"longer than {max_chars} characters")
        if not allow_empty and not value:
            raise self.fail(name, "must not be empty")
        return value

    def b64(self, value: Any, name: str, max_chars: int) -> str:
        """A base64url string, validated without decoding (for large values)."""
        text = self.string(value, name, max_chars)
        if not b64_valid(text):
            try:
                b64decode(text, field=name)
            except EncodingError as exc:
                raise self.fail(name, exc.detail)
        return text

    def b64bytes(self, value: Any, name: str, length: int, code=None) -> tuple[str, bytes]:
        """A fixed-length base64url value: its text and its decoded bytes."""
        text = self.string(value, name, (length * 4 + 2) // 3)
        try:
            return text, b64decode(text, field=name, length=length)
        except EncodingError as exc:
            raise self.fail(name, exc.detail, code)

    def clock(self, value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "expected a non-negative integer")
        if value < 0 or value > MAX_SAFE_INTEGER:
            raise self.fail(name, "clock out of range (0 … 2^53-1)")
        return value

    def envelope(self, obj: Any) -> dict[str, Any]:
        obj = self.obj(obj, "message")
        nonce, nonce_bytes = self.b64bytes(self.get(obj, "nonce"), "nonce", NONCE_BYTES)
        ciphertext = self.b64(self.get(obj, "ciphertext"), "ciphertext", MAX_CIPHERTEXT_CHARS)
        self.obj(self.get(obj, "publicData"), "publicData")
        signature, signature_bytes = self.b64bytes(
            self.get(obj, "signature"), "signature", SIGNATURE_BYTES, self.signature_code
        )
        return {
            "nonce": nonce,
            "ciphertext": ciphertext,
            "signature": signature,
            "nonce_bytes": nonce_bytes,
            "signature_bytes": signature_bytes,
        }

    def common_public(self, pd: Mapping[str, Any]) -> tuple[str, str, bytes]:
        doc_id = self.string(self.get(pd, "docId", "publicData."), "publicData.docId", MAX_ID_CHARS)
        pub_key, pub_key_bytes = self.b64bytes(
            self.get(pd, "pubKey", "publicData."),
            "publicData.pubKey",
            PUBLIC_KEY_BYTES,
            self.signature_code,
        )
        return doc_id, pub_key, pub_key_bytes

    def public_b64(self, pd: Mapping[str, Any]) -> str:
        try:
            return canonicalize_b64(pd, field="publicData")
        except EncodingError as exc:
            raise self.fail(exc.field or "publicData", exc.detail)


_SNAPSHOT = _Parser(SnapshotParseError, "SECSYNC_ERROR_111")
_UPDATE = _Parser(UpdateParseError, "SECSYNC_ERROR_212")
_EPHEMERAL = _Parser(EphemeralParseError, "SECSYNC_ERROR_308")
_CHAIN = _Parser(ChainParseError, "SECSYNC_ERROR_115")


def _guard(parser: _Parser, fn, obj):
    """Run a parse function; turn any unexpected exception into the family's ParseError."""
    try:
        return fn(obj)
    except ParseError:
        raise
    except RecursionError:
        raise parser.fail("publicData", "nested too deeply")
    except Exception as exc:  # pragma: no cover - defensive: parsing never raises others
        raise parser.fail("message", f"malformed: {type(exc).__name__}")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SnapshotPublicData:
    doc_id: str
    pub_key: str
    snapshot_id: str
    parent_snapshot_id: str
    parent_snapshot_proof: str
    parent_snapshot_update_clocks: Mapping[str, int]
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    pub_key_bytes: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class UpdatePublicData:
    doc_id: str
    pub_key: str
    ref_snapshot_id: str
    clock: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    pub_key_bytes: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class EphemeralPublicData:
    doc_id: str
    pub_key: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    pub_key_bytes: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class _Message:
    nonce: str
    ciphertext: str
    signature: str
    #: ``b64(canon(publicData))``: the AEAD additional data and the signed publicData.
    public_data_b64: str = field(repr=False)
    nonce_bytes: bytes = field(default=b"", repr=False, compare=False)
    signature_bytes: bytes = field(default=b"", repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The wire form (a fresh dict; ``publicData`` exactly as received or created)."""
        return {
            "nonce": self.nonce,
            "ciphertext": self.ciphertext,
            "publicData": _thaw(self.public_data.raw),  # type: ignore[attr-defined]
            "signature": self.signature,
        }

    @classmethod
    def parse(cls, text: str | bytes):
        """Parse a JSON text (str or UTF-8 bytes)."""
        parser = _PARSERS[cls]
        try:
            obj = loads(text, field="message")
        except EncodingError as exc:
            raise parser.fail("message", exc.detail)
        return cls.from_json(obj)


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Snapshot(_Message):
    public_data: SnapshotPublicData = field(default=None)  # type: ignore[assignment]

    @classmethod
    def from_json(cls, obj: Any) -> Snapshot:
        return _guard(_SNAPSHOT, _parse_snapshot, obj)


@dataclass(frozen=True)
class Update(_Message):
    public_data: UpdatePublicData = field(default=None)  # type: ignore[assignment]

    @classmethod
    def from_json(cls, obj: Any) -> Update:
        return _guard(_UPDATE, _parse_update, obj)


@dataclass(frozen=True)
class EphemeralMessage(_Message):
    public_data: EphemeralPublicData = field(default=None)  # type: ignore[assignment]

    @classmethod
    def from_json(cls, obj: Any) -> EphemeralMessage:
        return _guard(_EPHEMERAL, _parse_ephemeral, obj)


@dataclass(frozen=True)
class SnapshotProofChainEntry:
    snapshot_id: str
    snapshot_ciphertext_hash: str
    parent_snapshot_proof: str

    @classmethod
    def from_json(cls, obj: Any) -> SnapshotProofChainEntry:
        return _guard(_CHAIN, _parse_chain_entry, obj)

    def to_json(self) -> dict[str, str]:
        return {
            "snapshotId": self.snapshot_id,
            "snapshotCiphertextHash": self.snapshot_ciphertext_hash,
            "parentSnapshotProof": self.parent_snapshot_proof,
        }


def parse_snapshot_proof_chain(value: Any) -> tuple[SnapshotProofChainEntry, ...]:
    if not isinstance(value, list):
        raise _CHAIN.fail("snapshotProofChain", "expected an array")
    return tuple(SnapshotProofChainEntry.from_json(v) for v in value)


def _parse_snapshot(obj: Any) -> Snapshot:
    p = _SNAPSHOT
    env = p.envelope(obj)
    pd = obj["publicData"]
    doc_id, pub_key, pub_bytes = p.common_public(pd)
    g = p.get
    snapshot_id = p.string(
        g(pd, "snapshotId", "publicData."), "publicData.snapshotId", MAX_ID_CHARS, allow_empty=False
    )
    parent_id = p.string(
        g(pd, "parentSnapshotId", "publicData."), "publicData.parentSnapshotId", MAX_ID_CHARS
    )
    proof = p.string(
        g(pd, "parentSnapshotProof", "publicData."),
        "publicData.parentSnapshotProof",
        MAX_PROOF_CHARS,
    )
    clocks = p.obj(
        g(pd, "parentSnapshotUpdateClocks", "publicData."),
        "publicData.parentSnapshotUpdateClocks",
    )
    if len(clocks) > MAX_CLOCK_ENTRIES:
        raise p.fail("publicData.parentSnapshotUpdateClocks", "too many entries")
    checked: dict[str, int] = {}
    for k, v in clocks.items():
        name = f"publicData.parentSnapshotUpdateClocks.{k[:50]}"
        p.string(k, name, MAX_ID_CHARS)
        checked[k] = p.clock(v, name)
    public = SnapshotPublicData(
        doc_id, pub_key, snapshot_id, parent_id, proof, _frozen(checked), _frozen(pd), pub_bytes
    )
    return Snapshot(**env, public_data_b64=p.public_b64(pd), public_data=public)


def _parse_update(obj: Any) -> Update:
    p = _UPDATE
    env = p.envelope(obj)
    pd = obj["publicData"]
    doc_id, pub_key, pub_bytes = p.common_public(pd)
    ref = p.string(
        p.get(pd, "refSnapshotId", "publicData."),
        "publicData.refSnapshotId",
        MAX_ID_CHARS,
        allow_empty=False,
    )
    clock = p.clock(p.get(pd, "clock", "publicData."), "publicData.clock")
    public = UpdatePublicData(doc_id, pub_key, ref, clock, _frozen(pd), pub_bytes)
    return Update(**env, public_data_b64=p.public_b64(pd), public_data=public)


def _parse_ephemeral(obj: Any) -> EphemeralMessage:
    p = _EPHEMERAL
    env = p.envelope(obj)
    pd = obj["publicData"]
    doc_id, pub_key, pub_bytes = p.common_public(pd)
    public = EphemeralPublicData(doc_id, pub_key, _frozen(pd), pub_bytes)
    return EphemeralMessage(**env, public_data_b64=p.public_b64(pd), public_data=public)


def _parse_chain_entry(obj: Any) -> SnapshotProofChainEntry:
    p = _CHAIN
    obj = p.obj(obj, "snapshotProofChain[]")
    return SnapshotProofChainEntry(
        p.string(p.get(obj, "snapshotId"), "snapshotId", MAX_ID_CHARS),
        p.string(p.get(obj, "snapshotCiphertextHash"), "snapshotCiphertextHash", MAX_PROOF_CHARS),
        p.string(p.get(obj, "parentSnapshotProof"), "parentSnapshotProof", MAX_PROOF_CHARS),
    )


_PARSERS: dict[type, _Parser] = {
    Snapshot: _SNAPSHOT,
    Update: _UPDATE,
    EphemeralMessage: _EPHEMERAL,
}
