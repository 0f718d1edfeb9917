from __future__ import annotations

import pytest
import pytest_asyncio

from secsync_jupyter.relay import Limits, Relay
from secsync_jupyter.relay.policy import AccessPolicy
from secsync_jupyter.relay.standalone import StandaloneRelay
from secsync_jupyter.relay.store import store_from_url

from .pg import (  # noqa: F401 (fixtures)
    new_database,
    new_store,
    pg_cluster,
    pg_url,
    store_kind,
    store_url,
)


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
    store = store_from_url(db)  # a SQLite file or a postgresql:// URL
    relay = Relay(store, policy, limits)
    server = StandaloneRelay(
        relay, session_keys=session_keys, open_access=session_keys is None, **server_kw
    )
    port = await server.start("127.0.0.1", 0)
    return RunningRelay(server, f"ws://127.0.0.1:{port}", db)


@pytest.fixture
def db_path(new_database) -> str:  # noqa: F811 (the fixture)
    """The relay's database: a SQLite file, or a PostgreSQL database (each test runs with
    both, tests/relay/pg.py)."""
    return new_database()


@pytest_asyncio.fixture
async def relay(db_path):
    running = await start_relay(db_path)
    yield running
    await running.server.stop(timeout=2)


@pytest_asyncio.fixture
async def relays(new_database):  # noqa: F811 (the fixture)
    """Start extra relays (custom limits / policies / databases: a new one of the test's store
    kind unless given); all stopped after the test."""
    started: list[RunningRelay] = []

    async def make(db: str | None = None, **kw) -> RunningRelay:
        r = await start_relay(db or new_database(), **kw)
        started.append(r)
        return r

    yield make
    for r in started:
        await r.server.stop(timeout=2)
