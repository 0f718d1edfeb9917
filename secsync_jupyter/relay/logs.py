"""Brief, rate-limited log lines about malformed input from clients.

A client can send any number of bad frames; each one is answered, but the server's log gets
at most ``burst`` lines per connection and then one line per ``interval`` seconds that counts
what was left out, and at most ``relay_limit`` lines per ``interval`` over all connections
together (so many connections of one client cannot flood the log either). A line names the
document, the connection's user and the answer's code, never the frame's content.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: lines per connection before the per-interval summary takes over
BURST = 3
#: seconds between two summary lines of one connection, and the relay-wide window
INTERVAL = 60.0
#: lines per window over every connection
RELAY_LIMIT = 30


class ConnectionLog:
    """The budget of one connection (kept by its session)."""

    __slots__ = ("logged", "next_at", "suppressed")

    def __init__(self) -> None:
        self.logged = 0
        self.next_at = 0.0
        self.suppressed = 0


class BadInputLog:
    """The relay-wide limiter; ``note`` is called for every bad frame a client sends."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        burst: int = BURST,
        interval: float = INTERVAL,
        relay_limit: int = RELAY_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.log = log
        self.burst = burst
        self.interval = interval
        self.relay_limit = relay_limit
        self.clock = clock
        self._window_end = 0.0
        self._window_lines = 0
        self._window_suppressed = 0

    def note(self, conn: ConnectionLog, doc_id: str, user: str, code: str) -> None:
        now = self.clock()
        if conn.logged >= self.burst and now < conn.next_at:
            conn.suppressed += 1
            return
        if now >= self._window_end:
            if self._window_suppressed:
                self.log.info(
                    "%d malformed client frames were not logged in the last %.0f s",
                    self._window_suppressed,
                    self.interval,
                )
            self._window_end = now + self.interval
            self._window_lines = self._window_suppressed = 0
        if self._window_lines >= self.relay_limit:
            self._window_suppressed += 1
            conn.suppressed += 1
            return
        self._window_lines += 1
        conn.logged += 1
        if conn.logged >= self.burst:
            conn.next_at = now + self.interval
        more = f" (+{conn.suppressed} more not logged)" if conn.suppressed else ""
        conn.suppressed = 0
        self.log.info("malformed frame on %s from %s: %s%s", doc_id, user, code, more)
