"""The stores on their own: rules inside transactions (two stores = two writers on one
database), migrations, group commit, clear errors. The tests taking ``new_store`` run against
every store kind (SQLite and PostgreSQL, tests/relay/pg.py); PostgreSQL's own ones are in
test_pg_store.py."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from secsync_jupyter.relay.sqlite_store import SCHEMA_VERSION, SQLiteStore
from secsync_jupyter.relay.store import StoreError

pytestmark = pytest.mark.asyncio


def snap_kw(sid: str, parent: str = "", clocks=None) -> dict:
    return {
        "snapshot_id": sid,
        "parent_snapshot_id": parent,
        "parent_clocks": clocks or {},
        "pub_key": "pk",
        "ciphertext_hash": "h-" + sid,
        "parent_snapshot_proof": "p-" + sid,
        "message": '{"snapshot":"' + sid + '"}',
    }


async def open_store(path) -> SQLiteStore:
    store = SQLiteStore(path)
    await store.open()
    return store


async def test_two_writers_on_one_file_rules_hold(new_store):
    """Two stores (two writer threads, two connections) race on the same document: the
    database constraints decide, exactly one of each conflicting pair wins."""
    s1, s2 = await new_store(), await new_store()
    try:
        assert (await s1.save_snapshot("d", **snap_kw("s1"))).ok
        # the same clock from both writers, many times over
        results = await asyncio.gather(
            *(
                s.save_update("d", snapshot_id="s1", pub_key=f"k{i}", clock=0, message="m")
                for i in range(40)
                for s in (s1, s2)
            )
        )
        assert sum(r.ok for r in results) == 40
        assert {r.code for r in results if not r.ok} == {"update-clock-replayed"}
        # a gap is refused by the database, not only by the relay's memory
        r = await s2.save_update("d", snapshot_id="s1", pub_key="k0", clock=5, message="m")
        assert not r.ok and r.code == "update-clock-gap"
        # competing snapshots on the same parent and clocks: exactly one becomes active
        clocks = {f"k{i}": 0 for i in range(40)}
        a, b = await asyncio.gather(
            s1.save_snapshot("d", **snap_kw("s2a", "s1", clocks)),
            s2.save_snapshot("d", **snap_kw("s2b", "s1", clocks)),
        )
        assert sorted([a.ok, b.ok]) == [False, True]
        assert (a if not a.ok else b).code == "snapshot-parent-not-active"
        # updates on the replaced snapshot are refused by both
        r = await s1.save_update("d", snapshot_id="s1", pub_key="k0", clock=1, message="m")
        assert not r.ok and r.code == "update-wrong-snapshot"
        # stale clocks are refused
        winner = "s2a" if a.ok else "s2b"
        assert (await s1.save_update("d", snapshot_id=winner, pub_key="x", clock=0, message="m")).ok
        r = await s2.save_snapshot("d", **snap_kw("s3", winner, {}))
        assert not r.ok and r.code == "snapshot-clocks-differ"
        # duplicate snapshot id
        r = await s2.save_snapshot("d", **snap_kw("s1", winner, {"x": 0}))
        assert not r.ok and r.code == "snapshot-id-exists"
        state = await s2.load_state("d")
        assert state.active.snapshot_id == winner and state.clocks == {"x": 0}
    finally:
        await s1.close()
        await s2.close()


async def test_group_commit_and_positions(new_store):
    store = await new_store()
    try:
        first = await store.save_snapshot("d", **snap_kw("s1"))
        commits_before = store.commits
        futs = [
            store.save_update("d", snapshot_id="s1", pub_key="k", clock=c, message=f"m{c}")
            for c in range(300)
        ]
        results = await asyncio.gather(*futs)
        assert all(r.ok for r in results)
        positions = [r.position for r in results]
        assert positions == sorted(positions) and positions[0] > first.position
        assert store.commits - commits_before < 300  # many writes shared a commit
        view = await store.read_document("d", "s1", {"k": 149})
        assert view.known_is_active and view.updates == tuple(f"m{c}" for c in range(150, 300))
        assert view.position == positions[-1]
    finally:
        await store.close()


async def test_migrations_and_reopen(tmp_path):
    path = tmp_path / "m.sqlite"
    store = await open_store(path)
    await store.save_snapshot("d", **snap_kw("s1"))
    await store.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store = await open_store(path)  # idempotent
    assert await store.count_documents() == 1
    await store.close()
    with sqlite3.connect(path) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this relay"):
        SQLiteStore(path).open_sync()


async def test_closed_store_refuses_writes(new_store):
    store = await new_store()
    await store.close()
    with pytest.raises(StoreError):
        await store.save_update("d", snapshot_id="s", pub_key="k", clock=0, message="m")


async def test_failed_transaction_is_never_acknowledged(tmp_path, monkeypatch):
    """When a write transaction fails (an I/O error, simulated), every write of that batch is
    answered storage-failed, nothing of it is stored, and the store keeps working."""
    from secsync_jupyter.relay import sqlite_store

    path = tmp_path / "f.sqlite"
    store = await open_store(path)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        real = sqlite_store._save_update

        def failing(conn, doc_id, snapshot_id, pub_key, clock, message):
            if clock == 1:
                raise sqlite3.OperationalError("disk I/O error")
            return real(conn, doc_id, snapshot_id, pub_key, clock, message)

        monkeypatch.setattr(sqlite_store, "_save_update", failing)
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="k", clock=0, message="a")
        ).ok
        r = await store.save_update("d", snapshot_id="s1", pub_key="k", clock=1, message="b")
        assert not r.ok and r.code == "storage-failed" and "disk I/O error" in r.message
        monkeypatch.setattr(sqlite_store, "_save_update", real)
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="k", clock=1, message="c")
        ).ok
        with sqlite3.connect(path) as c:
            assert c.execute("SELECT message FROM updates ORDER BY version").fetchall() == [
                ("a",),
                ("c",),
            ]
    finally:
        await store.close()


async def test_migration_2_counts_the_bytes_of_existing_documents(tmp_path):
    """A schema-1 database (before the per-document byte count) migrates: every document's
    count is computed from its stored messages; new writes keep it up to date."""
    from secsync_jupyter.relay.sqlite_store import MIGRATIONS

    path = tmp_path / "v1.sqlite"
    with sqlite3.connect(path) as c:
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                c.execute(statement)
        c.execute("PRAGMA user_version = 1")
        c.execute("INSERT INTO documents VALUES ('d', NULL, 0)")
        for seq, sid in ((1, "old"), (2, "s1")):
            c.execute(
                "INSERT INTO snapshots VALUES (?, 'd', ?, '', 'pk', 'h', 'p', ?, 0)",
                (seq, sid, "S" * 100 * seq + "é"),
            )
        c.execute("UPDATE documents SET active_snapshot = 2")
        c.execute("INSERT INTO updates VALUES (1, 1, 1, 'pk', 0, 'not counted')")
        c.execute("INSERT INTO updates VALUES (2, 2, 1, 'pk', 0, 'u0')")
        c.execute("INSERT INTO updates VALUES (3, 2, 2, 'pk', 1, 'u1-ü')")
    store = await open_store(path)
    try:
        expected = len(("S" * 200 + "é").encode()) + len(b"u0") + len("u1-ü".encode())
        assert (await store.load_state("d")).stored_bytes == expected
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="pk", clock=2, message="u2")
        ).ok
        assert (await store.load_state("d")).stored_bytes == expected + 2
        assert (await store.save_snapshot("d", **snap_kw("s2", "s1", {"pk": 2}))).ok
        assert (await store.load_state("d")).stored_bytes == len(snap_kw("s2")["message"])
    finally:
        await store.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
