"""Admission and the counters the limits need.

:class:`Admission` counts what :class:`~.config.Limits` bound across the relay: stored documents
and open documents without a snapshot yet (``max_documents``), and the store writes in flight
(so that a shutdown can wait for them). Rooms and the relay change the counts only through its
methods. :func:`refuse` is the one way a connection is turned away on connect.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import frames

if TYPE_CHECKING:
    from .config import Limits
    from .core import Transport

# close codes (RFC 6455)
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013


class Admission:
    """The relay-wide counts behind ``max_documents`` and the writes in flight."""

    def __init__(self, limits: Limits):
        self.limits = limits
        #: documents in the store (counted at start, then as snapshots create them)
        self.stored_documents = 0
        #: open documents that have no snapshot yet (they count towards max_documents)
        self.unsaved_documents = 0
        #: store writes submitted and not yet answered
        self.writes_in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ documents
    def may_open_new_document(self) -> bool:
        return self.stored_documents + self.unsaved_documents < self.limits.max_documents

    def unsaved_document_opened(self) -> None:
        self.unsaved_documents += 1

    def unsaved_document_gone(self) -> None:
        """An open document without a snapshot closed, or turned out to be stored."""
        self.unsaved_documents -= 1

    def document_created(self) -> None:
        self.stored_documents += 1

    # ------------------------------------------------------------------ writes
    def write_started(self) -> None:
        self.writes_in_flight += 1
        self._idle.clear()

    def write_finished(self) -> None:
        self.writes_in_flight -= 1
        if self.writes_in_flight == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until every write in flight is answered."""
        while self.writes_in_flight:
            await self._idle.wait()

    # ------------------------------------------------------------------ connections
    def connection_allowed(self, open_connections: int) -> bool:
        """The standalone relay's global cap (``max_connections``)."""
        return open_connections < self.limits.max_connections


def refuse(
    transport: Transport, frame: str, code: int, reason: str, err: str | None = None, **extra
) -> None:
    """Turn a connection away: the ``error`` frame (when ``err``), the reference frame, close."""
    if err is not None:
        transport.send_text(frames.error(err, **extra))
    transport.send_text(frame)
    transport.close(code, reason)


def document_error(transport: Transport, code: int, reason: str, err: str, **extra) -> None:
    """Refuse with ``document-error`` (the reference's answer to a document it will not open)."""
    refuse(transport, frames.simple("document-error"), code, reason, err, **extra)
