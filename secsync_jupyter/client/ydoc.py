"""The Yjs (v1) content format on a pycrdt ``Doc`` — the same as the browser client's.

* snapshot plaintext: the full v1 state update (``doc.get_update()``);
* update plaintext: UTF-8 JSON array of base64url (no padding) v1 updates;
* ephemeral content: y-protocols awareness updates (see :mod:`.awareness`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, merge_updates

from ..protocol import b64encode

__all__ = ["YDocAdapter", "deserialize_updates", "serialize_updates"]

_EMPTY_UPDATES = (b"\x00\x00", b"")
#: the inside of ``["…","…"]`` when it holds only base64url strings
_PLAIN = re.compile(rb'[A-Za-z0-9_-]*(?:","[A-Za-z0-9_-]*)*')


def serialize_updates(updates: list[bytes]) -> bytes:
    """``[b64(u), …]`` as compact UTF-8 JSON (what ``serializeUint8ArrayUpdates`` makes)."""
    return ("[" + ",".join(f'"{b64encode(u)}"' for u in updates) + "]").encode("ascii")


def deserialize_updates(data: bytes) -> list[bytes]:
    """Inverse of :func:`serialize_updates`; raises ``ValueError`` for anything else."""
    decode = base64.urlsafe_b64decode
    if data[:2] == b'["' and data[-2:] == b'"]' and _PLAIN.fullmatch(data, 2, len(data) - 2):
        # the compact form every client writes: no escapes, no whitespace (fast path)
        try:
            return [decode(item + b"=" * (-len(item) % 4)) for item in data[2:-2].split(b'","')]
        except (binascii.Error, ValueError):
            raise ValueError("update content holds invalid base64url")
    items = json.loads(data)
    if not isinstance(items, list):
        raise ValueError("update content is not a JSON array")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("update content holds a non-string")
        try:
            out.append(decode(item + "=" * (-len(item) % 4)))
        except (binascii.Error, ValueError):
            raise ValueError("update content holds invalid base64url")
    return out


class YDocAdapter:
    """Connects a pycrdt ``Doc`` to the sync engine.

    Local transactions are reported to ``on_local_update`` (one v1 update each); updates
    applied here on behalf of the relay are not reported back.
    """

    def __init__(
        self,
        doc: Doc,
        on_local_update: Callable[[bytes], None] | None = None,
        on_ephemeral: Callable[[bytes, str], None] | None = None,
    ):
        self.doc = doc
        self.on_local_update = on_local_update
        self.on_ephemeral = on_ephemeral
        self._applying = 0
        self._paused = False
        self._subscription = doc.observe(self._on_transaction)

    def close(self) -> None:
        self._paused = False
        if self._subscription is not None:
            try:
                self.doc.unobserve(self._subscription)
            except Exception:  # pragma: no cover - already gone
                pass
            self._subscription = None

    def _on_transaction(self, event: Any) -> None:
        if self._applying:
            return
        update = event.update
        if update in _EMPTY_UPDATES or self.on_local_update is None:
            return
        self.on_local_update(update)

    def _pause(self) -> None:
        # no observer while applying remote data: pycrdt would encode the whole
        # transaction's update for it (≈ 30 % of applying a large snapshot), only to be ignored
        self._applying += 1
        if self._applying == 1 and self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None
            self._paused = True

    def _resume(self) -> None:
        self._applying -= 1
        if self._applying == 0 and self._paused:
            self._paused = False
            self._subscription = self.doc.observe(self._on_transaction)

    # DocumentAdapter
    def apply_snapshot(self, content: bytes) -> None:
        self._pause()
        try:
            self.doc.apply_update(content)
        finally:
            self._resume()

    def apply_changes(self, changes: list[bytes]) -> None:
        self._pause()
        try:
            with self.doc.transaction():
                for change in changes:
                    self.doc.apply_update(change)
        finally:
            self._resume()

    serialize_changes = staticmethod(serialize_updates)
    deserialize_changes = staticmethod(deserialize_updates)

    @staticmethod
    def merge_changes(changes: list[bytes]) -> list[bytes]:
        """Pending local updates as one (``Y.mergeUpdates`` in the browser)."""
        return [merge_updates(*changes)] if len(changes) > 1 else list(changes)

    def snapshot_content(self) -> bytes:
        return self.doc.get_update()

    def apply_ephemeral(self, content: bytes, author: str) -> None:
        if self.on_ephemeral is not None:
            self.on_ephemeral(content, author)
