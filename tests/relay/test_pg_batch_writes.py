"""``save_updates`` (schema 6) decides a batch with a few statements per batch (docs/relay.md
"PostgreSQL store"); it must give exactly the answers, versions, stored rows and stored bytes of
the per-update function ``save_update`` (schema 1, still the one of mixed batches) run in a loop
on the same state: random batches over several documents, snapshots (active, superseded,
unknown), authors and clocks (next, replayed, gaps, repeated within the batch), each run both
ways in a transaction that is rolled back, from the same stored state. And the fan-out's
statement trigger on ``updates``: one notification per stored update, in position order."""

from __future__ import annotations

import random

import asyncpg
import pytest

from secsync_jupyter.relay.fanout import FanOut
from secsync_jupyter.relay.pg_store import PostgresStore

from .test_store import snap_kw

pytestmark = pytest.mark.asyncio

DOCS = ("d1", "d2", "d3", "missing")
SNAPSHOTS = {"d1": ["s1"], "d2": ["s2a", "s2b"], "d3": ["s3"], "missing": ["sx"]}
AUTHORS = ("a", "b", "c")

_ROWS = """
SELECT s.doc_id, u.snapshot_seq, u.version, u.pub_key, u.clock, u.message
  FROM updates u JOIN snapshots s ON s.seq = u.snapshot_seq ORDER BY 2, 3
"""
_BYTES = "SELECT doc_id, active_snapshot, active_bytes FROM documents ORDER BY 1"


async def _run(conn, batch, loop: bool):
    """The batch's answers and the stored state after it, rolled back afterwards."""
    tr = conn.transaction()
    await tr.start()
    try:
        if loop:
            answers = [
                tuple(await conn.fetchrow("SELECT * FROM save_update($1, $2, $3, $4, $5)", *op))
                for op in batch
            ]
        else:
            columns = [list(c) for c in zip(*batch, strict=True)] or [[] for _ in range(5)]
            answers = [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT * FROM save_updates($1::text[], $2::text[], $3::text[], $4, "
                    "$5::text[])",
                    *columns,
                )
            ]
        rows = [tuple(r) for r in await conn.fetch(_ROWS)]
        stored = [tuple(r) for r in await conn.fetch(_BYTES)]
    finally:
        await tr.rollback()
    return answers, rows, stored


def _batch(rnd: random.Random, last: dict) -> list[tuple]:
    """Up to 40 updates, mostly the next clock of their author (as relays send), some replayed,
    some gaps, some on a superseded or unknown snapshot or document."""
    ops = []
    mine = dict(last)
    for _ in range(rnd.randint(1, 40)):
        doc = rnd.choice(DOCS)
        sid = rnd.choice(SNAPSHOTS[doc]) if rnd.random() < 0.9 else "nope"
        pub = rnd.choice(AUTHORS)
        nxt = mine.get((doc, sid, pub), -1) + 1
        clock = rnd.choice([nxt] * 6 + [max(0, nxt - 1), max(0, nxt - 2), nxt + 1, nxt + 3, 0])
        if clock == nxt:
            mine[(doc, sid, pub)] = clock
        ops.append((doc, sid, pub, clock, f"m{rnd.randrange(10**6)}-é" * rnd.randint(1, 3)))
    return ops


async def test_save_updates_answers_as_save_update_in_a_loop(pg_url):
    store = PostgresStore.from_url(pg_url)
    await store.open()
    try:
        assert (await store.save_snapshot("d1", **snap_kw("s1"))).ok
        assert (await store.save_snapshot("d2", **snap_kw("s2a"))).ok
        assert (await store.save_snapshot("d3", **snap_kw("s3"))).ok
        last: dict = {}
        for doc, sid in (("d1", "s1"), ("d2", "s2a"), ("d3", "s3")):
            for pub, n in zip(AUTHORS, (3, 1, 0), strict=True):
                for clock in range(n):
                    r = await store.save_update(
                        doc, snapshot_id=sid, pub_key=pub, clock=clock, message=f"{pub}{clock}"
                    )
                    assert r.ok
                    last[(doc, sid, pub)] = clock
        clocks = {a: last[("d2", "s2a", a)] for a in AUTHORS if ("d2", "s2a", a) in last}
        assert (await store.save_snapshot("d2", **snap_kw("s2b", "s2a", clocks))).ok
        assert (
            await store.save_update("d2", snapshot_id="s2b", pub_key="c", clock=0, message="c0")
        ).ok
        last[("d2", "s2b", "c")] = 0
    finally:
        await store.close()

    conn = await asyncpg.connect(pg_url, server_settings={"search_path": "secsync"})
    try:
        rnd = random.Random(14)
        codes: set = set()
        for i in range(150):
            batch = _batch(rnd, last)
            looped = await _run(conn, batch, loop=True)
            batched = await _run(conn, batch, loop=False)
            assert batched == looped, (i, batch)
            codes.update(a[0] for a in looped[0])
        # the batches covered every answer
        assert codes == {
            None,
            "update-wrong-snapshot",
            "update-clock-replayed",
            "update-clock-gap",
        }
        assert await _run(conn, [], loop=False) == ([], *(await _run(conn, [], loop=True))[1:])
    finally:
        await conn.close()


async def test_a_batch_notifies_each_update_once_in_position_order(pg_url):
    """The fan-out's doorbell for updates is one trigger call per statement (a batch is one
    INSERT): one notification per stored update, in position order, whole when it fits a
    payload, else the position only; none for a refused update. An older relay's row trigger
    on ``updates`` is replaced (no update notified twice)."""
    store = PostgresStore.from_url(pg_url)
    await store.open()
    listener = await asyncpg.connect(pg_url)
    conn = await asyncpg.connect(pg_url, server_settings={"search_path": "secsync"})
    try:
        assert (await store.save_snapshot("d1", **snap_kw("s1"))).ok
        assert (await store.save_snapshot("d2", **snap_kw("s2"))).ok
        fanout = FanOut.__new__(FanOut)  # only its installation of the triggers
        fanout.store, fanout.channel = store, f"{store.schema}_fanout"
        await fanout._install()
        await conn.execute(  # what an older relay installed: a trigger per row
            "CREATE TRIGGER fanout_notify AFTER INSERT ON updates FOR EACH ROW "
            "EXECUTE FUNCTION secsync.fanout_notify()"
        )
        await fanout._install()  # replaces it
        await fanout._install()  # idempotent
        triggers = await conn.fetch(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'secsync.updates'::regclass "
            "AND NOT tgisinternal"
        )
        assert [r[0] for r in triggers] == ["fanout_notify_updates"]
        heard: list[str] = []
        await listener.add_listener(fanout.channel, lambda *a: heard.append(a[3]))
        big = "x" * 9000
        batch = [
            ("d2", "s2", "b", 0, "b0"),
            ("d1", "s1", "a", 0, "a0"),
            ("d1", "s1", "a", 5, "gap"),  # refused: no version, no notification
            ("d1", "s1", "b", 0, big),  # too large for a payload: the position only
            ("d2", "s2", "b", 1, "b1 with spaces"),
            ("d1", "s1", "a", 1, "a1"),
        ]
        rows = await conn.fetch(
            "SELECT * FROM save_updates($1::text[], $2::text[], $3::text[], $4, $5::text[])",
            *[list(c) for c in zip(*batch, strict=True)],
        )
        assert [r[0] for r in rows] == [None, None, "update-clock-gap", None, None, None]
        seq = {r[0]: r[1] for r in await conn.fetch("SELECT doc_id, seq FROM snapshots ORDER BY 1")}
        await listener.fetchval("SELECT 1")  # the notifications of that commit came before
        p1, p2 = seq["d1"] << 32, seq["d2"] << 32
        expected_d1 = [f"u d1 {p1 | 1} s1 a 0 a0", f"p d1 {p1 | 2}", f"u d1 {p1 | 3} s1 a 1 a1"]
        expected_d2 = [f"u d2 {p2 | 1} s2 b 0 b0", f"u d2 {p2 | 2} s2 b 1 b1 with spaces"]
        assert len(heard) == 5
        assert [h for h in heard if h.split()[1] == "d1"] == expected_d1
        assert [h for h in heard if h.split()[1] == "d2"] == expected_d2
    finally:
        await listener.close()
        await conn.close()
        await store.close()
