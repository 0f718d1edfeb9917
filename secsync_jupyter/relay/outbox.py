"""What a connection has not sent yet: a bounded queue in front of the socket (both transports).

Frames are queued as encoded WebSocket frames (a broadcast's bytes are shared by every
connection) and handed to the socket layer in batches while that layer is below its high-water
mark (``HIGH_WATER``); when the layer is above it, the transport calls :meth:`Outbox.pause`, and
:meth:`Outbox.resume` once it has drained. So the socket layer never holds more than about
``HIGH_WATER`` plus one batch, and what waits here is counted: when it passes the connection's
``max_send_buffer_bytes``, the queue is dropped and the connection is closed as a slow consumer
(``send-buffer-full`` error frame, close code 1013 "try again later"; the client reconnects in
delta mode and gets what it missed).

A large text message (a ``document`` frame) is not built as one string: it is queued as its
parts and sent as a fragmented WebSocket message, each fragment encoded when the socket layer
has room, so the relay holds the parts (the stored message texts it read) and one fragment,
never several copies of the whole document.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence

#: bytes the socket layer may hold before the outbox pauses (asyncio's write-buffer high mark)
HIGH_WATER = 1 << 20
#: the socket layer resumes the outbox when it holds no more than this
LOW_WATER = HIGH_WATER // 4
#: size of a batch of queued frames, and of one fragment of a large message
FRAGMENT = 1 << 20
#: close code of a slow consumer (RFC 6455 1013: try again later)
CLOSE_SLOW_CONSUMER = 1013
SLOW_CONSUMER_REASON = "send buffer full: reconnect"
#: seconds a slow consumer gets to read up to the close frame before its socket is dropped
SLOW_CONSUMER_CLOSE_TIMEOUT = 30.0

_TEXT, _CONTINUATION = 0x1, 0x0


def ws_frame(payload: bytes | memoryview, opcode: int = _TEXT, fin: bool = True) -> bytes:
    """An unmasked RFC 6455 frame (what a server sends)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented text frame."""
    return ws_frame(payload)


def text_fragments(parts: Sequence[str], size: int = FRAGMENT) -> Iterator[bytes]:
    """The frames of one fragmented text message made of ``parts``, each ≈ ``size`` bytes,
    encoded one at a time (a fragment may split a UTF-8 sequence, as RFC 6455 allows)."""
    opcode = _TEXT
    pending: list[bytes] = []
    held = 0
    for part in parts:
        data = part.encode("utf-8")
        if held + len(data) < size:
            pending.append(data)
            held += len(data)
            continue
        view = memoryview(data)
        cut = size - held
        pending.append(view[:cut])
        yield ws_frame(b"".join(pending), opcode, fin=False)
        opcode = _CONTINUATION
        view = view[cut:]
        while len(view) >= size:
            yield ws_frame(view[:size], opcode, fin=False)
            view = view[size:]
        pending = [view] if len(view) else []
        held = len(view)
    yield ws_frame(b"".join(pending), opcode, fin=True)


class Outbox:
    """The send queue of one connection. ``write`` hands bytes to the socket layer;
    ``on_overflow(mid_message)`` closes the connection as a slow consumer (``mid_message``:
    a fragmented message was started, so no data frame may be sent before the close frame)."""

    __slots__ = (
        "_call_soon",
        "_items",
        "_mid_message",
        "_on_overflow",
        "_paused",
        "_queued",
        "_scheduled",
        "_write",
        "closed",
        "limit",
    )

    def __init__(
        self,
        write: Callable[[bytes], None],
        limit: int,
        on_overflow: Callable[[bool], None],
        call_soon: Callable[[Callable[[], None]], object],
    ):
        self._write = write
        self.limit = limit
        self._on_overflow = on_overflow
        self._call_soon = call_soon
        self._items: deque[bytes | Iterator[bytes]] = deque()
        self._queued = 0
        self._scheduled = False
        self._paused = False
        self._mid_message = False
        self.closed = False

    @property
    def queued(self) -> int:
        """Bytes of whole frames waiting here (fragments of a large message not yet encoded
        are not counted: they are the stored texts the relay holds anyway)."""
        return self._queued

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        self._items.append(frame)
        self._queued += len(frame)
        if self._queued > self.limit:
            self._overflow()
            return
        self._schedule()

    def send_message(self, parts: Sequence[str]) -> None:
        """One text message made of ``parts``; fragmented when it is large."""
        if self.closed:
            return
        if sum(map(len, parts)) < FRAGMENT:
            self.send(ws_frame("".join(parts).encode("utf-8")))
            return
        self._items.append(text_fragments(parts))
        self._schedule()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self.pump()

    def _schedule(self) -> None:
        if not self._scheduled and not self._paused:
            self._scheduled = True
            self._call_soon(self.pump)

    def pump(self, force: bool = False) -> None:
        """Hand queued frames to the socket layer while it has room (everything: ``force``)."""
        self._scheduled = False
        items = self._items
        while items and (force or not self._paused) and not self.closed:
            batch: list[bytes] = []
            size = 0
            while items and size < FRAGMENT:
                item = items[0]
                if type(item) is bytes:
                    items.popleft()
                    self._queued -= len(item)
                    batch.append(item)
                    size += len(item)
                    continue
                if batch:
                    break  # write what is before the message first
                chunk = next(item, None)  # type: ignore[call-overload]
                if chunk is None:
                    items.popleft()
                    self._mid_message = False
                    continue
                self._mid_message = True
                batch.append(chunk)
                break
            if batch:
                self._write(batch[0] if len(batch) == 1 else b"".join(batch))

    def finish(self) -> None:
        """Before a close frame: write everything queued now, and nothing after it."""
        self.pump(force=True)
        self.closed = True

    def discard(self) -> None:
        """The connection is gone: drop the queue."""
        self.closed = True
        self._items.clear()
        self._queued = 0

    def _overflow(self) -> None:
        self.discard()
        self._on_overflow(self._mid_message)
