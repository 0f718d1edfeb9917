"""Several updates in flight against real relays on loopback (the reference relay and ours):
the relay saves and acknowledges them in clock order, none is rejected, a reader gets all."""

from __future__ import annotations

import pytest
from pycrdt import Text

from secsync_jupyter import new_document_key, open_document
from secsync_jupyter.client.engine import MAX_UPDATES_IN_FLIGHT
from secsync_jupyter.protocol import generate_id

from .util import until

pytestmark = pytest.mark.asyncio


async def test_updates_in_flight_are_saved_in_order(relay):
    doc_id, key = generate_id(), new_document_key()
    async with open_document(relay.url, doc_id, key) as a:
        text = a.doc.get("content", type=Text)
        text += "start;"
        await a.synced(15)
        saved: list[int] = []
        a.engine.on_event = _chain(a.engine.on_event, saved)
        n = 2 * MAX_UPDATES_IN_FLIGHT
        for i in range(n):  # no await in between: no acknowledgement can arrive meanwhile
            text += f"{i};"
            a._flush_now()  # what the batching timer does
        engine = a.engine
        assert len(engine.updates_in_flight) == MAX_UPDATES_IN_FLIGHT
        assert engine.pending  # the rest waits for a free place, merged
        await a.synced(30)
        own = engine.active.update_clocks[engine.pub_key]
        # ("start;" went out in the initial snapshot) clocks 0..15 one per edit, then the rest
        # in one merged update: a rejection would have merged those in flight (smaller clock)
        assert own == MAX_UPDATES_IN_FLIGHT
        assert saved == list(range(own + 1))
        assert a.errors == []
        async with open_document(relay.url, doc_id, key) as b:
            await until(lambda: str(b.doc.get("content", type=Text)) == str(text), a, b)
            assert str(text) == "start;" + "".join(f"{i};" for i in range(n))


def _chain(previous, saved):
    def on_event(kind, data):
        if kind == "update-saved":
            saved.append(data["clock"])
        if previous is not None:
            previous(kind, data)

    return on_event
