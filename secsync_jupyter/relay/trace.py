"""Per-message stage timestamps, for finding where latency goes (benchmarks only).

Off unless ``$SECSYNC_RELAY_TRACE`` names a directory: then each relay process records, in
memory, ``(time.monotonic(), stage, docId, key...)`` tuples at the stages of a stored message
(accepted, handed to the store, write transaction started / statements done / committed,
acknowledged, notification received, rows read, delivered) and the event loop's lateness, and
writes them to ``<dir>/trace-<pid>.tsv`` when the process exits. ``time.monotonic()`` is one
clock for every process of the machine, so the files of several relay processes and of the
load generator line up (``benchmarks/relay_bench.py --trace DIR`` reads them).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time

DIR = os.environ.get("SECSYNC_RELAY_TRACE") or None
ON = DIR is not None
now = time.monotonic

_events: list[tuple] = []


def ev(stage: str, doc_id: str, *fields) -> None:
    """Record one stage (call only when :data:`ON`)."""
    _events.append((now(), stage, doc_id, *fields))


def pub(message: str) -> str:
    """The first characters of a message's ``pubKey`` (its author, in the trace)."""
    i = message.find('"pubKey":"')
    return message[i + 10 : i + 18] if i >= 0 else "?"


def _dump() -> None:
    if not _events or DIR is None:
        return
    path = os.path.join(DIR, f"trace-{os.getpid()}.tsv")
    with open(path, "w") as f:
        for e in _events:
            f.write(f"{e[0]:.6f}\t" + "\t".join(str(x) for x in e[1:]) + "\n")


async def _watch_loop(interval: float = 0.005) -> None:
    """Record every wake-up of the event loop that came more than 20 ms late."""
    while True:
        t = now()
        await asyncio.sleep(interval)
        late = now() - t - interval
        if late > 0.02:
            ev("loop-late", "-", f"{late * 1000:.1f}")


_watching: asyncio.Task | None = None


def start() -> None:
    """Start the loop watch of this process (once, from a running event loop)."""
    global _watching
    if ON and _watching is None:
        _watching = asyncio.get_running_loop().create_task(_watch_loop())


if ON:
    atexit.register(_dump)
