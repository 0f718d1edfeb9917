"""The query of a relay URL, as the reference client builds it:
``sessionKey``, ``mode=complete|delta``, ``knownSnapshotId``, ``knownSnapshotUpdateClocks``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ..protocol.encoding import MAX_SAFE_INTEGER
from ..protocol.messages import MAX_ID_CHARS


@dataclass(frozen=True)
class ConnectParams:
    session_key: str | None
    mode: str
    known_snapshot_id: str | None
    known_clocks: dict[str, int] | None
    #: the membership-log head the client verified before (``knownLogSeq`` / ``knownLogHash``)
    known_log_seq: int | None = None
    known_log_hash: str | None = None


class QueryError(ValueError):
    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


def _values(query: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(query, str):
        return dict(query)
    try:
        return parse_qs(query, keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise QueryError("invalid-query", f"malformed query string: {exc}") from None


def _first(values: Mapping[str, Any], name: str) -> str | None:
    v = values.get(name)
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError:
            raise QueryError("invalid-query", f"{name} is not UTF-8", name) from None
    return v


def session_key(query: str | Mapping[str, Any]) -> str | None:
    """The ``sessionKey`` parameter (``None`` when missing or the query is malformed: the
    relay then refuses the connection with the query error)."""
    try:
        return _first(_values(query), "sessionKey")
    except QueryError:
        return None


def parse_query(query: str | Mapping[str, Any]) -> ConnectParams:
    """The reference query parameters, strictly. Raises :class:`QueryError`."""
    values = _values(query)
    mode = _first(values, "mode") or "complete"
    if mode not in ("complete", "delta"):
        raise QueryError("invalid-query", "mode must be 'complete' or 'delta'", "mode")
    known_id = _first(values, "knownSnapshotId") or None
    if known_id is not None and len(known_id) > MAX_ID_CHARS:
        raise QueryError("invalid-query", "knownSnapshotId is too long", "knownSnapshotId")
    known_clocks = None
    raw_clocks = _first(values, "knownSnapshotUpdateClocks")
    if raw_clocks:
        try:
            parsed = json.loads(raw_clocks)
        except (ValueError, RecursionError):
            raise QueryError(
                "invalid-query",
                "knownSnapshotUpdateClocks is not JSON",
                "knownSnapshotUpdateClocks",
            ) from None
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
    known_log_seq = None
    raw_seq = _first(values, "knownLogSeq")
    known_log_hash = _first(values, "knownLogHash") or None
    if raw_seq:
        if not (raw_seq.isascii() and raw_seq.isdigit()) or int(raw_seq) > MAX_SAFE_INTEGER:
            raise QueryError("invalid-query", "knownLogSeq must be an integer", "knownLogSeq")
        known_log_seq = int(raw_seq)
    if known_log_hash is not None and len(known_log_hash) > MAX_ID_CHARS:
        raise QueryError("invalid-query", "knownLogHash is too long", "knownLogHash")
    return ConnectParams(
        _first(values, "sessionKey"), mode, known_id, known_clocks, known_log_seq, known_log_hash
    )
