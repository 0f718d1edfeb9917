"""Issue 15: with the SQLite store (``synchronous`` full, the default) a write is broadcast to
the other connections once committed and acknowledged to its author only once the ``-wal``
file is fsynced (docs/relay.md "Durability"). The store's sync is held or made to fail here,
through ``SQLiteStore.sync_wal`` (the call the sync thread makes)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading

import pytest

from secsync_jupyter.protocol import generate_id

from .conftest import start_relay
from .durable_checks import (
    check_ack_before_peer_snapshot,
    check_snapshot_broadcast_before_ack,
    check_updates_broadcast_before_ack,
    wait_held,
)
from .util import TIMEOUT, Author, open_doc, seed

pytestmark = pytest.mark.asyncio


def hold_sync(store):
    """Replace the store's WAL sync by one that waits for ``release`` (set at teardown too)."""
    entered, release = threading.Event(), threading.Event()
    original = store.sync_wal

    def held() -> None:
        entered.set()
        release.wait(TIMEOUT)
        original()

    store.sync_wal = held
    return entered, release


@contextlib.asynccontextmanager
async def seeded(db: str):
    """A relay on ``db`` with a new document: its author's connection ``a`` (the initial
    snapshot saved) and a peer ``b`` that got that snapshot. Yields ``(running, author, a, b,
    snap, hold)``; ``hold()`` is :func:`hold_sync` on the relay's store, every sync held so is
    released at the end, then the relay stops."""
    running = await start_relay(db)
    author = Author("doc-" + generate_id())
    releases: list[threading.Event] = []

    def hold():
        entered, release = hold_sync(running.relay.store)
        releases.append(release)
        return entered, release

    try:
        b, _ = await open_doc(running.url, author.doc_id)
        a, snap = await seed(running.url, author)
        await b.next("snapshot")
        yield running, author, a, b, snap, hold
    finally:
        for release in releases:
            release.set()
        await running.server.stop(timeout=2)


async def test_peer_gets_update_before_author_is_acknowledged(tmp_path):
    async with seeded(str(tmp_path / "relay.sqlite")) as (running, author, a, b, snap, hold):
        store = running.relay.store
        assert store.early_commit and store.synchronous == "full"
        entered, release = hold()
        # two updates while the sync is held: both committed and broadcast, none acknowledged
        await check_updates_broadcast_before_ack(a, [b], author, snap, entered)
        release.set()
        assert (await a.next("update-saved"))["clock"] == 0
        assert (await a.next("update-saved"))["clock"] == 1
        # a snapshot too: broadcast first, snapshot-saved after the sync
        entered, release = hold()
        await check_snapshot_broadcast_before_ack(a, [b], author, snap, 1, entered, release)
        await a.close()
        await b.close()


async def test_failed_sync_fails_the_write_and_peers_reload(tmp_path):
    async with seeded(str(tmp_path / "relay.sqlite")) as (running, author, a, b, snap, _):
        store = running.relay.store
        original = store.sync_wal

        def broken() -> None:
            raise OSError(errno.EIO, "Input/output error")

        store.sync_wal = broken
        await a.send(author.update(snap, 0))
        # committed, so B got it; the author is told it failed, and both reconnect
        assert (await b.next("update"))["publicData"]["clock"] == 0
        err = await a.next("error")
        assert err["code"] == "storage-failed" and "Input/output error" in err["message"]
        failed = await a.next("update-save-failed")
        assert failed["clock"] == 0
        assert await a.wait_closed() == 1013
        assert (await b.next("error"))["code"] == "storage-failed"
        assert await b.wait_closed() == 1013
        assert not [f for f in a.frames if f["type"] == "update-saved"]
        # a reconnection reads what the store has (here the commit is in the database) ...
        store.sync_wal = original
        c, doc = await open_doc(running.url, author.doc_id)
        assert [u["publicData"]["clock"] for u in doc["updates"]] == [0]
        # ... but fail-stop: even with the disk back, nothing is acknowledged or broadcast
        # until the relay is restarted (the kernel may have dropped the unsynced pages)
        d, _ = await open_doc(running.url, author.doc_id)
        await c.send(author.update(snap, 1))
        err = await c.next("error")
        assert err["code"] == "storage-failed" and "restarted" in err["message"]
        assert await c.wait_closed() == 1013 and await d.wait_closed() == 1013
        assert not [f for f in c.frames if f["type"] == "update-saved"]
        assert not [f for f in d.frames if f["type"] == "update"]  # frames arrive in order


async def test_author_gets_its_ack_before_a_peer_snapshot_containing_its_update(tmp_path):
    """B, on the same relay, snapshots on A's update while A's sync is held: A receives that
    snapshot only after its own ``update-saved`` (durable_checks.check_ack_before_peer_snapshot)."""
    async with seeded(str(tmp_path / "relay.sqlite")) as (_, author, a, b, snap, hold):
        entered, release = hold()
        # B's snapshot-saved waits for the same held sync
        await check_ack_before_peer_snapshot(
            a, b, author, snap, entered, release, peer_saved_while_held=False
        )
        await a.close()
        await b.close()


async def test_a_checkpoint_between_commit_and_sync_keeps_the_write(tmp_path):
    """The checkpoint thread may copy a commit into the database while the sync thread has not
    yet synced it (docs/relay.md "Durability": the checkpoint syncs the WAL before it copies).
    The author is acknowledged after the sync as always, and the update is there after a
    restart of the relay."""
    db = str(tmp_path / "relay.sqlite")
    async with seeded(db) as (running, author, a, b, snap, hold):
        store = running.relay.store
        entered, release = hold()
        restarts = store.wal_restarts
        store.checkpoint_idle = 0.0  # the checkpoint thread goes right after the commit
        await a.send(author.update(snap, 0, b"checkpointed before its sync"))
        assert (await b.next("update"))["publicData"]["clock"] == 0
        await wait_held(entered)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        # a complete checkpoint (it copied the update into the database file), then the WAL
        # started again: only after a checkpoint that copied every frame
        while store.wal_restarts == restarts:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint"
            await asyncio.sleep(0.02)
        await a.roundtrip_ok()
        assert not [f for f in a.frames if f["type"] == "update-saved"]  # still the sync's
        release.set()
        assert (await a.next("update-saved"))["clock"] == 0
        await a.close()
        await b.close()
    running = await start_relay(db)
    try:
        c, doc = await open_doc(running.url, author.doc_id)
        assert [u["publicData"]["clock"] for u in doc["updates"]] == [0]
        await c.close()
    finally:
        await running.server.stop(timeout=2)
