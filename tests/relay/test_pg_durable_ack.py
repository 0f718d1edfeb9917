"""Issue 14: with the PostgreSQL store (``synchronous`` full, the default) a write commits with
``synchronous_commit = off``, so it is broadcast at once, to this process's connections and
through the fan-out to the other relay processes', and acknowledged to its author only after
the *flush barrier*, a synchronous commit on the store's own connection (docs/relay.md
"Durability on PostgreSQL"). The barrier is held or broken here through
``PostgresStore.flush_barrier`` (the call the barrier task makes), or by terminating its
connection on the server.

Two relays on one database play two relay processes (each its own store, pool, ``LISTEN``
connection and barrier): the peer is on the other one."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from secsync_jupyter.protocol import Update, generate_id, verify_and_decrypt_update
from secsync_jupyter.relay.pg_store import PostgresStore

from .conftest import start_relay
from .durable_checks import (
    check_ack_before_peer_snapshot,
    check_snapshot_broadcast_before_ack,
    check_updates_broadcast_before_ack,
)
from .util import TIMEOUT, Author, open_doc, seed

pytestmark = pytest.mark.asyncio


def hold_barrier(store: PostgresStore):
    """Replace the store's flush barrier by one that waits for ``release`` first; ``entered``
    is set once a barrier waits."""
    entered, release = asyncio.Event(), asyncio.Event()
    original = store.flush_barrier

    async def held(conn) -> None:
        entered.set()
        await asyncio.wait_for(release.wait(), TIMEOUT)
        await original(conn)

    store.flush_barrier = held  # type: ignore[method-assign]
    return entered, release


async def two_relays(pg_url):
    one = await start_relay(pg_url)
    two = await start_relay(pg_url)
    return one, two


async def stop(*running) -> None:
    for r in running:
        await r.server.stop(timeout=2)


async def stored_clocks(pg_url: str, doc_id: str) -> list[int]:
    conn = await asyncpg.connect(pg_url, server_settings={"search_path": "secsync"})
    try:
        rows = await conn.fetch(
            "SELECT u.clock FROM updates u JOIN documents d ON d.active_snapshot = u.snapshot_seq"
            " WHERE d.doc_id = $1 ORDER BY u.version",
            doc_id,
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def test_peers_get_the_update_before_its_author_is_acknowledged(pg_url):
    one, two = await two_relays(pg_url)
    store = one.relay.store
    assert isinstance(store, PostgresStore)
    assert store.early_commit and store.synchronous == "full"
    assert one.relay.fanout is not None
    author = Author("doc-" + generate_id())
    release = None
    try:
        a, snap = await seed(one.url, author)
        local, _ = await open_doc(one.url, author.doc_id)  # the author's relay process
        remote, _ = await open_doc(two.url, author.doc_id)  # another relay process
        entered, release = hold_barrier(store)
        # two updates while the barrier is held: both committed and broadcast, none acknowledged
        await check_updates_broadcast_before_ack(a, [local, remote], author, snap, entered)
        assert await stored_clocks(pg_url, author.doc_id) == [0, 1]  # committed, visible
        release.set()
        assert (await a.next("update-saved"))["clock"] == 0
        assert (await a.next("update-saved"))["clock"] == 1
        # a snapshot too: broadcast first, snapshot-saved after the barrier
        entered, release = hold_barrier(store)
        await check_snapshot_broadcast_before_ack(
            a, [local, remote], author, snap, 1, entered, release
        )
        assert store.barriers >= 2 and store.barriers_failed == 0
        for c in (a, local, remote):
            await c.close()
    finally:
        if release is not None:
            release.set()
        await stop(one, two)


async def test_author_gets_its_ack_before_a_remote_snapshot_containing_its_update(pg_url):
    """B, on another relay process, snapshots on A's update while A's barrier is held: A
    receives that snapshot only after its own ``update-saved``
    (durable_checks.check_ack_before_peer_snapshot)."""
    one, two = await two_relays(pg_url)
    author = Author("doc-" + generate_id())
    release = None
    try:
        a, snap = await seed(one.url, author)
        b, _ = await open_doc(two.url, author.doc_id)
        entered, release = hold_barrier(one.relay.store)
        # B's snapshot is committed and acknowledged: its relay's barrier is not held
        await check_ack_before_peer_snapshot(
            a, b, author, snap, entered, release, peer_saved_while_held=True
        )
        await a.close()
        await b.close()
    finally:
        if release is not None:
            release.set()
        await stop(one, two)


async def test_a_failed_barrier_fails_the_write_and_its_document_reloads(pg_url):
    """The barrier's connection is terminated on the server while the barrier waits: the
    commits it should have made durable are never acknowledged (``storage-failed``), and the
    document's connections on the author's relay are closed with 1013 (try again); the peers
    on the other relay process got the committed update. The writes after it work (a new
    barrier connection, opened before their commit)."""
    one, two = await two_relays(pg_url)
    store = one.relay.store
    author = Author("doc-" + generate_id())
    release = None
    try:
        a, snap = await seed(one.url, author)
        local, _ = await open_doc(one.url, author.doc_id)
        remote, _ = await open_doc(two.url, author.doc_id)
        entered, release = hold_barrier(store)
        await a.send(author.update(snap, 0))
        assert (await local.next("update"))["publicData"]["clock"] == 0
        assert (await remote.next("update"))["publicData"]["clock"] == 0
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        conn = await asyncpg.connect(pg_url)
        try:
            pid = store._barrier_conn.get_server_pid()
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await conn.close()
        release.set()
        err = await a.next("error")
        assert err["code"] == "storage-failed" and "durably" in err["message"]
        assert (await a.next("update-save-failed"))["clock"] == 0
        assert await a.wait_closed() == 1013
        assert (await local.next("error"))["code"] == "storage-failed"
        assert await local.wait_closed() == 1013
        assert not [f for f in a.frames if f["type"] == "update-saved"]
        assert store.barriers_failed == 1
        # the database still has the commit (only its durability was unknown) ...
        assert await stored_clocks(pg_url, author.doc_id) == [0]
        # ... and the relay goes on: a reconnected author's next update is acknowledged
        a2, doc = await open_doc(one.url, author.doc_id)
        assert [u["publicData"]["clock"] for u in doc["updates"]] == [0]
        await a2.send(author.update(snap, 1))
        assert (await a2.next("update-saved"))["clock"] == 1
        assert (await remote.next("update"))["publicData"]["clock"] == 1
        await a2.close()
        await remote.close()
    finally:
        if release is not None:
            release.set()
        await stop(one, two)


async def test_store_acknowledges_only_commits_its_barrier_connection_outlived(pg_url):
    """The store on its own: a batch committed while the barrier's connection was open is
    made durable only by a barrier on that same connection (a server crash ends every
    connection; a barrier on a new one could succeed on a server that recovered without the
    commit). The barrier connection is terminated between a commit and its barrier: the
    writes are answered ``storage-failed`` with ``durable_failed`` (their rows are there:
    the server did not crash); the next write opens a new barrier connection before its
    commit and is acknowledged."""
    store = PostgresStore(PostgresStore.from_url(pg_url).dsn)
    await store.open()
    try:
        assert store._barrier_conn is not None  # opened with the store
        kw = dict(
            snapshot_id="s1",
            parent_snapshot_id="",
            parent_clocks={},
            pub_key="k",
            ciphertext_hash="h",
            parent_snapshot_proof="p",
            message="m",
        )
        assert (await store.save_snapshot("d", **kw)).ok
        entered, release = hold_barrier(store)
        committed: list = []
        first = store.save_update(
            "d", snapshot_id="s1", pub_key="k", clock=0, message="a", on_committed=committed.append
        )
        await asyncio.wait_for(entered.wait(), TIMEOUT)  # the first batch's barrier waits
        second = store.save_update(
            "d", snapshot_id="s1", pub_key="k", clock=1, message="b", on_committed=committed.append
        )
        while len(committed) < 2:  # both committed (callbacks in commit order), none answered
            await asyncio.sleep(0.01)
        assert [r.ok for r in committed] == [True, True] and not first.done()
        old = store._barrier_conn
        conn = await asyncpg.connect(pg_url)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", old.get_server_pid())
        finally:
            await conn.close()
        release.set()
        for fut in (first, second):
            r = await fut
            assert not r.ok and r.code == "storage-failed" and r.durable_failed, r
        # the second batch's barrier ran on a new connection: not one that outlived its commit
        assert store._barrier_conn is not None and store._barrier_conn is not old
        assert store.barriers_failed == 1 and store.barriers >= 1
        third = await store.save_update("d", snapshot_id="s1", pub_key="k", clock=2, message="c")
        assert third.ok
        assert (await store.read_document("d", "s1", {})).updates == ("a", "b", "c")
    finally:
        await store.close()


async def test_rows_the_database_lost_make_other_processes_reload_the_document(pg_url):
    """A database crash can lose commits the peers already got (before their flush). Made
    certain here by deleting the last stored update and dropping the ``LISTEN`` connections
    (a restart drops them): once a relay listens again, a document whose delivered position
    the database no longer reaches closes its connections (1013); reconnected, the reader
    gets what the database has, and the next update, at the lost update's position again,
    reaches it."""
    one, two = await two_relays(pg_url)
    author = Author("doc-" + generate_id())
    try:
        a, snap = await seed(one.url, author)
        reader, _ = await open_doc(two.url, author.doc_id)
        for clock in (0, 1):
            await a.send(author.update(snap, clock))
            assert (await a.next("update-saved"))["clock"] == clock
            assert (await reader.next("update"))["publicData"]["clock"] == clock
        conn = await asyncpg.connect(pg_url, server_settings={"search_path": "secsync"})
        try:
            await conn.execute("DELETE FROM updates WHERE clock = 1")  # "lost in the crash"
            assert await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'secsync-relay-fanout-%'"
            )
        finally:
            await conn.close()
        err = await reader.next("error")
        assert err["code"] == "storage-failed" and "lost" in err["message"]
        assert await reader.wait_closed() == 1013
        assert await a.wait_closed() == 1013  # the writer's relay delivered it too
        assert two.relay.fanout.lost_rows == 1 and one.relay.fanout.lost_rows == 1
        reader, doc = await open_doc(two.url, author.doc_id)
        assert [u["publicData"]["clock"] for u in doc["updates"]] == [0]
        a, _ = await open_doc(one.url, author.doc_id)
        await a.send(author.update(snap, 1, b"again"))
        assert (await a.next("update-saved"))["clock"] == 1
        got = await reader.next("update")
        update = Update.from_json({k: v for k, v in got.items() if k != "type"})
        assert verify_and_decrypt_update(update, author.key, snap.public_data.snapshot_id, 0) == (
            b"again"
        )
        await a.close()
        await reader.close()
    finally:
        await stop(one, two)
