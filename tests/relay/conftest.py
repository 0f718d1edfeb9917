from __future__ import annotations

import pytest
import pytest_asyncio

from secsync_jupyter.relay import Limits, Relay, SQLiteStore
from secsync_jupyter.relay.policy import AccessPolicy
from secsync_jupyter.relay.standalone import StandaloneRelay

from .pg import new_store, pg_cluster, pg_url, store_url  # noqa: F401 (fixtures)


class RunningRelay:
    def __init__(self, server: StandaloneRelay, url: str, db: str):
        self.server = server
        self.relay = server.relay
        self.url = url
        self.db = db


async def start_relay(
    db: str,
    *,
    limits: Limits | None = None,
    policy: AccessPolicy | None = None,
    session_keys=None,
    **server_kw,
) -> RunningRelay:
    store = SQLiteStore(db)
    relay = Relay(store, policy, limits)
    server = StandaloneRelay(
        relay, session_keys=session_keys, open_access=session_keys is None, **server_kw
    )
    port = await server.start("127.0.0.1", 0)
    return RunningRelay(server, f"ws://127.0.0.1:{port}", db)


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "relay.sqlite")


@pytest_asyncio.fixture
async def relay(db_path):
    running = await start_relay(db_path)
    yield running
    await running.server.stop(timeout=2)


@pytest_asyncio.fixture
async def relays(tmp_path):
    """Start extra relays (custom limits / policies / files); all stopped after the test."""
    started: list[RunningRelay] = []

    async def make(db: str | None = None, **kw) -> RunningRelay:
        r = await start_relay(db or str(tmp_path / f"relay{len(started)}.sqlite"), **kw)
        started.append(r)
        return r

    yield make
    for r in started:
        await r.server.stop(timeout=2)
