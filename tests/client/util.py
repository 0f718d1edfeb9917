"""Event-driven waiting over several live documents (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(
    predicate: Callable[[], bool], *docs, timeout: float = 15.0, what: str | None = None
) -> None:
    """Wait until ``predicate()`` holds, re-checking whenever any of ``docs`` reports an event.

    Not reaching it within ``timeout`` is a test failure (``AssertionError``) that names the
    condition and the documents' states, not a bare timeout.
    """
    event = asyncio.Event()
    unsubscribe = [getattr(d, "document", d).add_listener(event.set) for d in docs]

    async def loop():
        while not predicate():
            event.clear()
            await event.wait()

    try:
        await asyncio.wait_for(loop(), timeout)
    except asyncio.TimeoutError:
        states = [
            (d.state, d.document_state, [e.code for e in d.errors])
            for d in (getattr(x, "document", x) for x in docs)
        ]
        raise AssertionError(
            f"not reached within {timeout} s: {what or getattr(predicate, '__name__', '?')}"
            f" (documents: state, document state, error codes = {states})"
        ) from None
    finally:
        for u in unsubscribe:
            u()
