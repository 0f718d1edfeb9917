"""The PostgreSQL store: versioned migrations, URL options, failed and interrupted transactions,
the database's own constraints, and the acceptance rules under writers in different processes
(tests/relay/pg_worker.py). Every test runs on a throw-away cluster (tests/relay/pg.py); the
store-level tests shared with SQLite are in test_store.py and below (``new_store``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from secsync_jupyter.relay import pg_store
from secsync_jupyter.relay.pg_store import SCHEMA_VERSION, PostgresStore
from secsync_jupyter.relay.store import VERSION_BITS, StoreError, store_from_url

from .pg import HeldWrites
from .test_store import snap_kw
from .util import Author, RelayClient, RelayProcess, open_doc

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
VERSION_MASK = (1 << VERSION_BITS) - 1


async def open_pg(url: str, **kw) -> PostgresStore:
    store = store_from_url(url, **kw)
    assert isinstance(store, PostgresStore)
    await store.open()
    return store


async def sql(url: str, query: str, *args):
    """Run one statement on the test database (as the superuser, schema ``secsync``)."""
    conn = await asyncpg.connect(url, server_settings={"search_path": "secsync"})
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


# ------------------------------------------------------------------------- migrations
async def test_migrations_create_a_versioned_schema_and_refuse_a_newer_one(pg_url):
    store = await open_pg(pg_url)
    assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
    await store.close()
    rows = await sql(pg_url, "SELECT version FROM schema_version")
    assert [r[0] for r in rows] == [SCHEMA_VERSION]
    tables = await sql(
        pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'secsync'"
    )
    assert {r[0] for r in tables} == {
        "documents",
        "snapshots",
        "updates",
        "log_entries",
        "lockboxes",
        "schema_version",
        "flush_barrier",
    }
    store = await open_pg(pg_url)  # idempotent
    assert await store.count_documents() == 1
    await store.close()
    await sql(pg_url, "UPDATE schema_version SET version = $1", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this relay"):
        PostgresStore.from_url(pg_url).open_sync()
    with pytest.raises(StoreError, match="newer than this relay"):
        await open_pg(pg_url)


async def test_pending_migrations_run_in_order_and_a_failed_one_changes_nothing(
    pg_url, monkeypatch
):
    store = await open_pg(pg_url)
    assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
    await store.close()
    original = pg_store.MIGRATIONS
    failing = (*original, "ALTER TABLE documents ADD COLUMN x text; SELECT 1/0")
    monkeypatch.setattr(pg_store, "MIGRATIONS", failing)
    monkeypatch.setattr(pg_store, "SCHEMA_VERSION", len(failing))
    with pytest.raises(StoreError, match="division by zero"):
        await open_pg(pg_url)
    assert [r[0] for r in await sql(pg_url, "SELECT version FROM schema_version")] == [
        len(original)
    ]
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'documents'"
    assert "x" not in {r[0] for r in await sql(pg_url, columns)}
    later = (
        *original,
        "ALTER TABLE documents ADD COLUMN note text",
        "UPDATE documents SET note = 'n:' || doc_id",
    )
    monkeypatch.setattr(pg_store, "MIGRATIONS", later)
    monkeypatch.setattr(pg_store, "SCHEMA_VERSION", len(later))
    store = await open_pg(pg_url)
    try:
        assert (await store.load_state("d")).active.snapshot_id == "s1"
    finally:
        await store.close()
    assert [r[0] for r in await sql(pg_url, "SELECT version FROM schema_version")] == [
        len(original) + 2
    ]
    assert [tuple(r) for r in await sql(pg_url, "SELECT doc_id, note FROM documents")] == [
        ("d", "n:d")
    ]


async def test_processes_starting_together_migrate_once(pg_url):
    """Three processes open the same new database at once: each waits for the migration
    lock, the schema is created once, all of them work."""
    workers = [Worker(pg_url) for _ in range(3)]
    try:
        for w in workers:
            w.wait_ready()
    finally:
        for w in workers:
            w.stop()
    assert [r[0] for r in await sql(pg_url, "SELECT version FROM schema_version")] == [
        SCHEMA_VERSION
    ]


# ------------------------------------------------------------------------- URL and errors
async def test_url_options_and_schemas(pg_url):
    store = store_from_url(
        pg_url + "&schema=other&pool_size=3&writers=1&doorbell=writer", synchronous="normal"
    )
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.pool_size, len(store._lanes)) == ("other", 3, 1)
    assert store.doorbell == "writer" and store_from_url(pg_url).doorbell == "trigger"
    assert "schema" not in store.dsn and "writers" not in store.dsn and "doorbell" not in store.dsn
    await store.open()
    default = await open_pg(pg_url)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        # one database, two schemas: two separate relays' stores
        assert await default.count_documents() == 0
        assert (await default.save_snapshot("d", **snap_kw("s1"))).ok
        # synchronous=normal: commits do not wait for their WAL flush, and nothing else does
        async with store._pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert not store.early_commit and store._barrier_conn is None and store.barriers == 0
        # full (the default): the writes do not wait either (early commit), the flush barrier
        # does, on its own connection with the server's setting
        assert default.early_commit and default.barriers >= 1
        async with default._pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await default._barrier_conn.fetchval("SHOW synchronous_commit") == "on"
        # doorbell=writer: its connections leave the doorbell of their updates to the relay
        async with store._pool.acquire() as conn:
            assert await conn.fetchval("SHOW secsync.writer_notifies") == "on"
    finally:
        await store.close()
        await default.close()
    for bad, message in [
        ("&writers=x", "writers must be an integer"),
        ("&schema=Bad-Name", "schema must match"),
        ("&writers=4&pool_size=4", "pool_size > writers"),
        ("&doorbell=nobody", "doorbell must be one of trigger, writer"),
    ]:
        with pytest.raises(ValueError, match=message):
            store_from_url(pg_url + bad)


async def test_unusable_database_is_a_clear_error_without_the_password(tmp_path, pg_cluster):
    url = f"postgresql://someone:s3cret@/nope?host={tmp_path}&port=5432"
    with pytest.raises(StoreError, match="cannot open database") as err:
        PostgresStore.from_url(url).open_sync()
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    # the standalone relay refuses to start, with the reason
    relay = [sys.executable, "-m", "secsync_jupyter.relay.standalone", "--open", "--port", "0"]
    proc = subprocess.run(
        [*relay, "--store", pg_cluster.url("missing_db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot open database" in proc.stderr and "missing_db" in proc.stderr


async def test_the_password_of_the_url_is_never_logged(pg_url, tmp_path):
    """The relay logs its store URL at start-up with the password masked (the test cluster
    trusts local connections, so the relay starts with any password)."""
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
    log = tmp_path / "relay.log"
    relay = RelayProcess(url, "--log-level", "info", log_path=str(log)).start()
    try:
        client, doc = await open_doc(relay.url, "doc1")
        assert doc["type"] == "document"
        await client.close()
    finally:
        relay.stop()
    text = log.read_text()
    assert "store postgresql://postgres:***@/" in text
    assert "s3cret-pw" not in text


async def test_group_commit_is_bounded_by_message_size(pg_url):
    """Writes waiting together share a commit, up to about max_batch_chars of messages (a burst
    of large messages is not one huge transaction); every write is still acknowledged in
    order."""
    store = PostgresStore(PostgresStore.from_url(pg_url).dsn, max_batch_chars=1000)
    await store.open()
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        before = store.commits
        results = await asyncio.gather(
            *(
                store.save_update("d", snapshot_id="s1", pub_key="k", clock=c, message="m" * 400)
                for c in range(30)
            )
        )
        assert all(r.ok for r in results)
        assert [r.position for r in results] == sorted(r.position for r in results)
        assert 10 <= store.commits - before < 30  # three messages (1,200 chars) per commit
    finally:
        await store.close()


async def test_failed_transaction_is_never_acknowledged(pg_url):
    """A write transaction that fails (here: a constraint the database adds meanwhile) answers
    every write of its batch storage-failed, stores none of them, and the store keeps working."""
    store = await open_pg(pg_url)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="k", clock=0, message="a")
        ).ok
        await sql(pg_url, "ALTER TABLE updates ADD CONSTRAINT no_b CHECK (message <> 'b')")
        # one batch: a write that would pass and one that fails share the transaction
        ok_alone = store.save_update("d", snapshot_id="s1", pub_key="k2", clock=0, message="x")
        failing = store.save_update("d", snapshot_id="s1", pub_key="k", clock=1, message="b")
        results = await asyncio.gather(ok_alone, failing)
        assert [r.code for r in results] == ["storage-failed", "storage-failed"]
        assert "no_b" in results[1].message
        await sql(pg_url, "ALTER TABLE updates DROP CONSTRAINT no_b")
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="k", clock=1, message="c")
        ).ok
        rows = await sql(pg_url, "SELECT message FROM updates ORDER BY version")
        assert [r[0] for r in rows] == ["a", "c"]
        assert (await store.load_state("d")).stored_bytes == len(snap_kw("s1")["message"]) + 2
    finally:
        await store.close()


async def test_lost_connections_and_a_database_restart(pg_url, pg_cluster):
    """The database drops every connection of the store: the next writes and reads work on new
    connections (a write whose transaction had not reached COMMIT runs again). While the
    server is down, writes are answered storage-failed (never acknowledged); after its restart
    the store continues, and nothing acknowledged is lost or stored twice."""
    store = await open_pg(pg_url)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="k", clock=0, message="a")
        ).ok
        terminate = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'secsync-relay'"
        )
        for clock in range(1, 6):
            await sql(pg_url, terminate)
            r = await store.save_update(
                "d", snapshot_id="s1", pub_key="k", clock=clock, message="b"
            )
            assert r.ok, r
            await sql(pg_url, terminate)
            assert (await store.load_state("d")).clocks == {"k": clock}
        pg_cluster.stop_server()
        try:
            r = await store.save_update("d", snapshot_id="s1", pub_key="k", clock=6, message="c")
            assert not r.ok and r.code == "storage-failed"
            with pytest.raises(StoreError, match="read failed"):
                await store.load_state("d")
        finally:
            pg_cluster.start_server()
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="k", clock=6, message="c")
        ).ok
        view = await store.read_document("d", "s1", {})
        assert view.updates == ("a", "b", "b", "b", "b", "b", "c")
    finally:
        await store.close()


async def test_a_statement_whose_session_the_server_ended_is_told_apart(pg_url):
    """What a write's retry decides from (``pg_store._server_ended``): a statement whose backend
    the server terminates fails with asyncpg's ``ConnectionDoesNotExistError`` caused by the
    server's FATAL (``AdminShutdownError``): its transaction is over. A connection lost on the
    client's side while the backend still runs the statement is no such end."""

    async def running(conn) -> tuple[asyncio.Task, int]:
        pid = conn.get_server_pid()
        task = asyncio.create_task(conn.fetchval("SELECT pg_sleep(30)"))
        query = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
        for _ in range(500):
            if (await sql(pg_url, query, pid))[0][0]:
                return task, pid
            await asyncio.sleep(0.01)
        raise AssertionError("the statement never ran")

    conn = await asyncpg.connect(pg_url)
    task, pid = await running(conn)
    assert (await sql(pg_url, "SELECT pg_terminate_backend($1)", pid))[0][0]
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError) as ended:
        await task
    assert isinstance(ended.value.__cause__, asyncpg.exceptions.AdminShutdownError)
    assert pg_store._server_ended(ended.value)

    conn = await asyncpg.connect(pg_url)
    task, pid = await running(conn)
    try:
        conn.terminate()  # the client closes its socket; the backend goes on sleeping
        with pytest.raises(Exception) as lost:
            await task
        assert not pg_store._server_ended(lost.value), repr(lost.value)
    finally:
        await sql(pg_url, "SELECT pg_terminate_backend($1)", pid)


async def test_a_database_that_hangs_fails_writes_instead_of_holding_them(pg_url):
    """A write that cannot finish (another connection holds the tables) fails after the
    command timeout (1 s here): answered storage-failed, never acknowledged, not stored; the
    next write after the hold works."""
    store = await open_pg(pg_url)
    impatient = PostgresStore(PostgresStore.from_url(pg_url).dsn, command_timeout=1.0)
    await impatient.open()
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        held = HeldWrites(pg_url)
        try:
            r = await impatient.save_update(
                "d", snapshot_id="s1", pub_key="k", clock=0, message="a"
            )
            assert not r.ok and r.code == "storage-failed"
        finally:
            held.release()
        r = await store.save_update("d", snapshot_id="s1", pub_key="k", clock=0, message="b")
        assert r.ok
        assert (await store.read_document("d", "s1", {})).updates == ("b",)
    finally:
        await impatient.close()
        await store.close()


async def test_the_database_enforces_the_rules_without_the_relay(pg_url):
    """The constraints alone (plain INSERT/UPDATE, no store function) refuse a clock gap, a
    replayed clock, a duplicate version or snapshot id, and an active snapshot of another
    document."""
    store = await open_pg(pg_url)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        assert (await store.save_snapshot("e", **snap_kw("t1"))).ok
        assert (
            await store.save_update("d", snapshot_id="s1", pub_key="k", clock=0, message="a")
        ).ok
    finally:
        await store.close()
    (seq_d,) = [r[0] for r in await sql(pg_url, "SELECT seq FROM snapshots WHERE doc_id = 'd'")]
    insert = "INSERT INTO updates (snapshot_seq, version, pub_key, clock, message) VALUES "
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="previous_clock"):
        await sql(pg_url, insert + "($1, 2, 'k', 2, 'gap')", seq_d)
    with pytest.raises(asyncpg.UniqueViolationError):
        await sql(pg_url, insert + "($1, 2, 'k', 0, 'replay')", seq_d)
    with pytest.raises(asyncpg.UniqueViolationError):
        await sql(pg_url, insert + "($1, 1, 'k', 1, 'same version')", seq_d)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="active_snapshot"):
        await sql(
            pg_url,
            "UPDATE documents SET active_snapshot = (SELECT seq FROM snapshots "
            "WHERE doc_id = 'e') WHERE doc_id = 'd'",
        )
    with pytest.raises(asyncpg.UniqueViolationError):
        await sql(
            pg_url,
            "INSERT INTO snapshots (doc_id, snapshot_id, parent_snapshot_id, pub_key, "
            "ciphertext_hash, parent_snapshot_proof, message, created_at) "
            "VALUES ('d', 's1', '', 'pk', 'h', 'p', 'm', 0)",
        )
    await sql(pg_url, insert + "($1, 2, 'k', 1, 'next')", seq_d)  # what the rules allow


# ------------------------------------------------------------------------- both stores
async def test_stored_bytes_count_utf8_and_reset_with_a_new_snapshot(new_store):
    store = await new_store()
    snap = {**snap_kw("s1"), "message": '{"snapshot":"s1","x":"é"}'}
    assert (await store.save_snapshot("d", **snap)).ok
    for clock, text in enumerate(["u0", "u1-ü", "€"]):
        r = await store.save_update("d", snapshot_id="s1", pub_key="pk", clock=clock, message=text)
        assert r.ok
    expected = sum(len(t.encode()) for t in [snap["message"], "u0", "u1-ü", "€"])
    assert (await store.load_state("d")).stored_bytes == expected
    # refused writes count nothing
    r = await store.save_update("d", snapshot_id="s1", pub_key="pk", clock=5, message="gap")
    assert r.code == "update-clock-gap"
    assert (await store.load_state("d")).stored_bytes == expected
    assert (await store.save_snapshot("d", **snap_kw("s2", "s1", {"pk": 2}))).ok
    assert (await store.load_state("d")).stored_bytes == len(snap_kw("s2")["message"])


async def test_reads_select_what_the_reader_misses(new_store):
    """Delta reads return only the updates after the reader's clocks (all of an author it does
    not know), in version order; an older known snapshot gets everything and the proof chain."""
    store = await new_store()
    assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
    positions = []
    for clock in range(3):
        for author in ("a", "b", "c"):
            r = await store.save_update(
                "d", snapshot_id="s1", pub_key=author, clock=clock, message=f"{author}{clock}"
            )
            positions.append(r.position)
    assert positions == sorted(positions)
    view = await store.read_document("d", "s1", {"a": 1, "b": 2})
    assert view.known_is_active and view.has_snapshot
    assert view.updates == ("c0", "c1", "a2", "c2")
    assert view.position == positions[-1] and view.chain == ()
    assert (await store.read_document("d", "s1", {})).updates == tuple(
        f"{a}{c}" for c in range(3) for a in "abc"
    )
    clocks = {"a": 2, "b": 2, "c": 2}
    assert (await store.save_snapshot("d", **snap_kw("s2", "s1", clocks))).ok
    assert (await store.save_update("d", snapshot_id="s2", pub_key="a", clock=0, message="n")).ok
    assert (await store.save_snapshot("d", **snap_kw("s3", "s2", {"a": 0}))).ok
    view = await store.read_document("d", "s1", {"a": 2})
    assert not view.known_is_active and view.snapshot == snap_kw("s3")["message"]
    assert [e.snapshot_id for e in view.chain] == ["s2", "s3"]
    assert view.chain[0].snapshot_ciphertext_hash == "h-s2"
    unknown = await store.read_document("d", "zz", None)
    assert unknown.chain == () and unknown.updates == () and unknown.position & VERSION_MASK == 0
    empty = await store.read_document("nothing", None, None)
    assert not empty.has_snapshot and empty.position == 0


# ------------------------------------------------------------------------- processes
class Worker:
    """A store in another process (tests/relay/pg_worker.py)."""

    def __init__(self, url: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.relay.pg_worker", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def wait_ready(self) -> int:
        line = self.proc.stdout.readline()
        assert line, f"worker exited ({self.proc.wait(10)})"
        return json.loads(line)["ready"]

    def send(self, cmd: dict) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    async def answer(self, timeout: float = 120):
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        assert line, f"worker exited ({self.proc.wait(10)})"
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture
def two_workers(pg_url):
    workers = [Worker(pg_url), Worker(pg_url)]
    try:
        pids = [w.wait_ready() for w in workers]
        assert len(set(pids)) == 2 and os.getpid() not in pids
        yield workers
    finally:
        for w in workers:
            w.stop()


async def test_processes_racing_snapshots_exactly_one_wins(pg_url, two_workers):
    """Two processes repeatedly read the document and save a snapshot on its active one: for
    every parent exactly one snapshot wins, the other process's attempt on that parent is
    refused snapshot-parent-not-active, and the snapshots form one chain."""
    store = await open_pg(pg_url)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s0"))).ok
        start = time.time() + 1.0  # both start at once
        for tag, w in zip("AB", two_workers, strict=True):
            w.send(
                {
                    "op": "race-snapshots",
                    "doc": "d",
                    "tag": tag,
                    "n": 60,
                    "losses": 5,
                    "start": start,
                }
            )
        answers = [await w.answer() for w in two_workers]
        attempts = [tuple(a) for answer in answers for a in answer]
        winners: dict[str, list[str]] = {}
        tried_by: dict[str, set[str]] = {}
        for sid, parent, ok, code in attempts:
            tried_by.setdefault(parent, set()).add(sid[0])
            if ok:
                winners.setdefault(parent, []).append(sid)
            else:
                assert code == "snapshot-parent-not-active", (sid, code)
        # every parent anyone tried has exactly one winner
        assert all(len(winners.get(p, [])) == 1 for p in tried_by), winners
        contested = [p for p, who in tried_by.items() if who == {"A", "B"}]
        assert len(contested) >= 5, f"the processes never raced: {tried_by}"
        # the winners form a single chain from s0 to the active snapshot
        child = {p: w[0] for p, w in winners.items()}
        chain, cur = [], "s0"
        while cur in child:
            cur = child[cur]
            chain.append(cur)
        assert len(chain) == len(winners) == sum(ok for _, _, ok, _ in attempts)
        assert (await store.load_state("d")).active.snapshot_id == chain[-1]
        rows = await sql(
            pg_url, "SELECT snapshot_id, parent_snapshot_id FROM snapshots ORDER BY seq"
        )
        assert [r[0] for r in rows] == ["s0", *chain]
        view = await store.read_document("d", "s0", {})
        assert [e.snapshot_id for e in view.chain] == chain
    finally:
        await store.close()


async def test_processes_writing_updates_keep_clocks_contiguous_in_commit_order(
    pg_url, two_workers
):
    """Two processes write updates of different authors to one snapshot at the same time while
    this process reads: every update is accepted, each author's clocks are 0..M-1 in version
    order, the versions are 1..N without a hole at every read (a version is never visible
    before a smaller one: versions follow commit order), each read's position is its last
    version, and each process's positions grow in its submission order."""
    store = await open_pg(pg_url)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        clocks, authors = 60, {"A": ["a0", "a1", "a2"], "B": ["b0", "b1", "b2"]}
        start = time.time() + 1.0  # both start at once
        for names, w in zip(authors.values(), two_workers, strict=True):
            w.send(
                {"op": "updates", "doc": "d", "snapshot": "s1", "authors": names}
                | {"clocks": clocks, "start": start}
            )
        answers = [asyncio.ensure_future(w.answer()) for w in two_workers]
        reads = 0
        while not all(a.done() for a in answers) or reads < 3:
            view = await store.read_document("d", None, None)
            got = [json.loads(m) for m in view.updates]
            assert view.position & VERSION_MASK == len(got)
            stored = await sql(pg_url, "SELECT version FROM updates ORDER BY version")
            assert [r[0] for r in stored] == list(range(1, len(stored) + 1))
            last: dict[str, int] = {}
            for u in got:
                assert u["clock"] == last.get(u["author"], -1) + 1, got
                last[u["author"]] = u["clock"]
            reads += 1
        results = [await a for a in answers]
        total = clocks * 6
        for answer in results:
            assert all(ok for _, _, ok, _, _ in answer), [a for a in answer if not a[2]][:3]
            positions = [p for *_, p in answer]
            assert positions == sorted(positions) and len(set(positions)) == len(positions)
        everything = sorted(p & VERSION_MASK for answer in results for *_, p in answer)
        assert everything == list(range(1, total + 1))
        state = await store.load_state("d")
        assert state.clocks == {a: clocks - 1 for names in authors.values() for a in names}
        # the two processes' commits did interleave
        view = await store.read_document("d", None, None)
        owners = [json.loads(m)["author"][0] for m in view.updates]
        assert sum(x != y for x, y in itertools.pairwise(owners)) >= 2, owners
    finally:
        await store.close()


async def test_processes_writing_the_same_author_store_each_clock_once(pg_url, two_workers):
    """Both processes write the same author's clocks 0..M-1 (a replay race): each clock is
    accepted exactly once, the other attempt is update-clock-replayed, never a gap."""
    store = await open_pg(pg_url)
    try:
        assert (await store.save_snapshot("d", **snap_kw("s1"))).ok
        clocks = 150
        start = time.time() + 1.0  # both start at once
        for w in two_workers:
            w.send(
                {"op": "updates", "doc": "d", "snapshot": "s1", "authors": ["k"]}
                | {"clocks": clocks, "start": start}
            )
        answers = [await w.answer() for w in two_workers]
        by_clock: dict[int, list] = {}
        for answer in answers:
            for _, clock, ok, code, _ in answer:
                by_clock.setdefault(clock, []).append((ok, code))
        for clock in range(clocks):
            outcomes = sorted(by_clock[clock], key=lambda o: not o[0])
            assert outcomes == [(True, None), (False, "update-clock-replayed")], (clock, outcomes)
        view = await store.read_document("d", None, None)
        assert [json.loads(m)["clock"] for m in view.updates] == list(range(clocks))
    finally:
        await store.close()


async def test_processes_writing_many_documents_in_opposite_orders_never_deadlock(
    pg_url, two_workers
):
    """Both processes write to the same 30 documents, one in ascending and one in descending
    order, so their group commits hold writes to many documents each: the documents' locks are
    taken in one order, so PostgreSQL never has to break a deadlock and every write is accepted
    at once."""
    docs = [f"doc{i:02d}" for i in range(30)]
    store = await open_pg(pg_url)
    try:
        for d in docs:
            assert (await store.save_snapshot(d, **snap_kw("s-" + d))).ok
    finally:
        await store.close()
    for w, order, author in ((two_workers[0], docs, "a"), (two_workers[1], docs[::-1], "b")):
        w.send({"op": "documents", "docs": order, "author": author, "clocks": 40})
    answers = [await w.answer() for w in two_workers]
    assert all(ok for answer in answers for _, _, ok, _ in answer), [
        a for answer in answers for a in answer if not a[2]
    ][:3]
    assert len(answers[0]) == len(answers[1]) == 1200
    deadlocks = await sql(
        pg_url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    assert deadlocks[0][0] == 0
    rows = await sql(pg_url, "SELECT count(*) FROM updates")
    assert rows[0][0] == 2400


async def test_relays_in_two_processes_race_snapshots(pg_url, tmp_path):
    """Two relay processes on one database; a client of each sends a snapshot on the same
    parent at the same time: exactly one gets snapshot-saved, the other's client gets
    snapshot-save-failed with what it misses (the winner's snapshot and the proof chain from
    its parent), read from the database; the loser's relay reloads the document's state, so
    the next round starts from the winner on both."""
    relays = [
        RelayProcess(str(tmp_path / f"unused{i}.sqlite"), "--store", pg_url).start()
        for i in range(2)
    ]
    clients: list[RelayClient] = []
    try:
        a = Author("doc-race")
        b = Author(a.doc_id, key=a.key)
        first = a.initial_snapshot()
        ca, _ = await open_doc(relays[0].url, a.doc_id)
        clients.append(ca)
        await ca.send(first)
        await ca.next("snapshot-saved")
        cb, doc = await open_doc(relays[1].url, b.doc_id)
        clients.append(cb)
        assert doc["snapshot"]["publicData"]["snapshotId"] == first.public_data.snapshot_id
        parent = first
        for _ in range(4):
            sa, sb = a.snapshot(parent, {}), b.snapshot(parent, {})
            await asyncio.gather(ca.send(sa), cb.send(sb))
            answers = []
            for client, mine in ((ca, sa), (cb, sb)):
                frame = await client.next()
                while frame["type"] not in ("snapshot-saved", "error"):
                    frame = await client.next()  # the other relay broadcasts nothing here
                answers.append((client, mine, frame))
            won = [x for x in answers if x[2]["type"] == "snapshot-saved"]
            lost = [x for x in answers if x[2]["type"] == "error"]
            assert len(won) == 1 and len(lost) == 1, [x[2] for x in answers]
            winner = won[0][1]
            client, _, error = lost[0]
            assert error["code"] == "snapshot-parent-not-active"
            failed = await client.next("snapshot-save-failed")
            assert failed["snapshot"] == winner.to_json()
            assert [e["snapshotId"] for e in failed["snapshotProofChain"]] == [
                winner.public_data.snapshot_id
            ]
            assert failed["updates"] == []
            parent = winner
        # both relays serve the final state from the database
        for relay in relays:
            c, doc = await open_doc(relay.url, a.doc_id)
            clients.append(c)
            assert doc["snapshot"]["publicData"]["snapshotId"] == parent.public_data.snapshot_id
    finally:
        for c in clients:
            await c.close()
        for r in relays:
            r.stop()
