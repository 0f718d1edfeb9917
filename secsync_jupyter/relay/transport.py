"""What both WebSocket transports share: the bounded outbox, delivery of received frames to
the session (UTF-8 decoded once), the answer to an oversized frame and the close of a slow
consumer. The standalone relay (:mod:`.standalone`) and the Jupyter handler (:mod:`.extension`)
add only how bytes reach their socket and how they close it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from . import frames
from .frames import OutFrame
from .outbox import Outbox, ws_text_frame

if TYPE_CHECKING:
    from .session import Session


class RelayConnection:
    """Mixin of a transport's connection; implements the core's ``Transport`` on top of an
    :class:`~.outbox.Outbox`. Subclasses provide :meth:`_ws_write`, :meth:`_ws_open`,
    :meth:`_ws_close_slow_consumer` and ``is_closed``."""

    session: Session | None = None
    outbox: Outbox | None = None
    #: where this connection's transport logs
    relay_log: logging.Logger = logging.getLogger("secsync_jupyter.relay")

    def start_outbox(self, limit: int) -> None:
        self.outbox = Outbox(
            self._ws_write, limit, self._slow_consumer, asyncio.get_running_loop().call_soon
        )

    # ------------------------------------------------------------------ Transport
    def send_text(self, text: str) -> None:
        if self.outbox is not None and not self.is_closed():
            self.outbox.send(ws_text_frame(text.encode("utf-8")))

    def send_frame(self, frame: OutFrame) -> None:
        if self.outbox is not None and not self.is_closed():
            self.outbox.send(frame.wire)

    def send_message(self, parts: list[str]) -> None:
        if self.outbox is not None and not self.is_closed():
            self.outbox.send_message(parts)

    def is_closed(self) -> bool:  # pragma: no cover - every transport overrides it
        raise NotImplementedError

    # ------------------------------------------------------------------ frames in
    def deliver(self, text: bool, data: bytes) -> None:
        """A complete message for the session: a text frame's bytes (decoded here, once; not
        UTF-8: ``invalid-utf8``, and the connection stays open) or a binary frame's."""
        session = self.session
        if session is None:
            return
        if not text:
            session.on_binary(data)
            return
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError:
            session.on_bad_utf8()
            return
        session.on_text(decoded)

    def frame_too_large(self, limit: int) -> bytes:
        """The ``frame-too-large`` answer, as a frame the transport writes before its 1009
        close (the session's own sending has stopped by then)."""
        if self.session is not None:
            self.session.note_bad_input("frame-too-large")
        return ws_text_frame(frames.frame_too_large(limit).encode())

    # ------------------------------------------------------------------ slow consumer
    def _slow_consumer(self, mid_message: bool) -> None:
        """The outbox passed the send-buffer limit and dropped its queue: ``send-buffer-full``
        (unless a fragmented message was started), close 1013; a client that reads on gets
        the close frame, one that does not is dropped after SLOW_CONSUMER_CLOSE_TIMEOUT."""
        self.relay_log.warning(
            "closing a connection that does not read fast enough (send buffer over %d bytes)",
            self.outbox.limit if self.outbox is not None else 0,
        )
        if self._ws_open():
            if not mid_message:
                self._ws_write(ws_text_frame(frames.error("send-buffer-full").encode()))
            self._ws_close_slow_consumer()
        if self.session is not None:
            self.session.on_close()

    def _ws_write(self, data: bytes) -> None:  # pragma: no cover
        raise NotImplementedError

    def _ws_open(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _ws_close_slow_consumer(self) -> None:  # pragma: no cover
        raise NotImplementedError
