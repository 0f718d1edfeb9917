"""Event-driven waiting over several live documents (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], bool], *docs, timeout: float = 15.0) -> None:
    """Wait until ``predicate()`` holds, re-checking whenever any of ``docs`` reports an event."""
    event = asyncio.Event()
    unsubscribe = [getattr(d, "document", d).add_listener(event.set) for d in docs]

    async def loop():
        while not predicate():
            event.clear()
            await event.wait()

    try:
        await asyncio.wait_for(loop(), timeout)
    finally:
        for u in unsubscribe:
            u()
