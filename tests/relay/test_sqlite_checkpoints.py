"""The SQLite store's checkpoint schedule (issue 15, docs/relay.md "Checkpoints"): the checkpoint
thread copies the WAL into the database when the writer is idle or when the WAL holds
``checkpoint_wal_pages`` frames, and then starts the WAL again itself (not the writer's next
commit); the writer's own checkpoint bounds the WAL under a sustained load; ``normal`` is
checkpointed (so synced) within ``checkpoint_max_age`` of a commit even while writes keep
coming; an acknowledged write is in the WAL on disk whether or not a checkpoint copied it.
Waits are bounded (TIMEOUT); nothing here measures time."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time

import pytest

from secsync_jupyter.relay import sqlite_store
from secsync_jupyter.relay.sqlite_store import SQLiteStore

from .util import TIMEOUT

pytestmark = pytest.mark.asyncio

SNAP = {
    "snapshot_id": "s1",
    "parent_snapshot_id": "",
    "parent_clocks": {},
    "pub_key": "pk",
    "ciphertext_hash": "h",
    "parent_snapshot_proof": "p",
    "message": '{"snapshot":"s1"}',
}

NEVER = float("inf")


async def until(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def write(store: SQLiteStore, author: str, clocks: range, size: int = 100) -> None:
    results = await asyncio.gather(
        *(
            store.save_update(
                "d", snapshot_id="s1", pub_key=author, clock=c, message=f"{c}:" + "m" * size
            )
            for c in clocks
        )
    )
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]


def wal_salt(store: SQLiteStore) -> bytes:
    """The salt in the WAL-index header: a new one for each new WAL header."""
    with open(store.path + "-shm", "rb") as f:
        return f.read(40)[32:40]


async def stored_clocks(path) -> dict[str, int]:
    store = SQLiteStore(path)
    await store.open()
    try:
        state = await store.load_state("d")
        view = await store.read_document("d", None, None)
    finally:
        await store.close()
    assert len(view.updates) == sum(c + 1 for c in state.clocks.values())
    return dict(state.clocks)


async def test_checkpoint_waits_for_the_writer_to_be_idle(tmp_path):
    """While the idle rule cannot hold (idle = never) and the WAL is below its bound, no
    checkpoint runs: the commits stay in the WAL. Once the writer counts as idle, the
    checkpoint thread copies all of them."""
    store = SQLiteStore(tmp_path / "idle.sqlite")
    store.checkpoint_idle = NEVER
    await store.open()
    try:
        assert store.checkpoint_max_age is None  # full: the WAL sync does not need checkpoints
        assert (await store.save_snapshot("d", **SNAP)).ok
        await write(store, "a", range(30))
        # the checkpoint thread is polling now; a few polls go by without a checkpoint
        await asyncio.sleep(4 * sqlite_store.CHECKPOINT_POLL)
        assert store.checkpoints == 0
        assert store.wal_frames_pending() > 0
        store.checkpoint_idle = 0.05
        await until(lambda: store.checkpoints >= 1, "the idle checkpoint")
        # the checkpoint copied every frame, then started the WAL again itself (a commit that
        # changes nothing): one frame, the writer's next commit appends to it
        await until(lambda: store.wal_restarts == 1, "the WAL's restart")
        assert store.wal_frames_pending() == 1
        # nothing more to do until the next commit
        done = store.checkpoints
        await asyncio.sleep(4 * sqlite_store.CHECKPOINT_POLL)
        assert store.checkpoints == done and store.wal_restarts == 1
        store.checkpoint_idle = NEVER
        salt = wal_salt(store)
        await write(store, "a", range(30, 31))
        assert wal_salt(store) == salt  # no new WAL header: the writer did not restart it
        assert store.wal_frames_pending() > 1
        store.checkpoint_idle = 0.05
        await until(lambda: store.checkpoints > done, "the checkpoint after the next commit")
        await until(lambda: store.wal_restarts == 2, "the WAL's second restart")
    finally:
        await store.close()
    assert await stored_clocks(tmp_path / "idle.sqlite") == {"a": 30}
    with sqlite3.connect(tmp_path / "idle.sqlite") as c:  # the restarts changed nothing
        assert c.execute("PRAGMA user_version").fetchone()[0] == sqlite_store.SCHEMA_VERSION


async def test_wal_stays_bounded_under_sustained_writes(tmp_path):
    """Writes that never leave the writer idle: the checkpoint thread copies the WAL when
    ``checkpoint_wal_pages`` frames wait, and the writer's own checkpoint lets the WAL start
    again from its beginning, so the WAL file stays far smaller than what was written; nothing
    is lost across a restart of the store."""
    path = tmp_path / "sustained.sqlite"
    store = SQLiteStore(path)
    store.checkpoint_idle = NEVER
    store.checkpoint_wal_pages = 50
    store.writer_autocheckpoint_pages = 200
    await store.open()
    authors, per_author, size = 8, 300, 3000
    try:
        assert (await store.save_snapshot("d", **SNAP)).ok

        async def author(name: str) -> None:
            for clock in range(per_author):
                await write(store, name, range(clock, clock + 1), size)

        await asyncio.gather(*(author(f"a{i}") for i in range(authors)))
        assert store.checkpoints >= 1  # the checkpoint thread ran, on the WAL's size alone
        wal = os.path.getsize(str(path) + "-wal")
    finally:
        await store.close()
    written = authors * per_author * size  # 7.2 MB of messages alone
    assert wal < written // 4, (wal, written)
    assert await stored_clocks(path) == {f"a{i}": per_author - 1 for i in range(authors)}


async def test_normal_is_checkpointed_while_writes_keep_coming(tmp_path):
    """``normal`` has no WAL sync of its own: a checkpoint syncs the WAL, so it runs within
    ``checkpoint_max_age`` of a commit even when the writer is never idle."""
    store = SQLiteStore(tmp_path / "normal.sqlite", synchronous="normal")
    store.checkpoint_idle = NEVER
    await store.open()
    try:
        assert store.checkpoint_max_age == sqlite_store.CHECKPOINT_MAX_AGE_NORMAL
        assert (await store.save_snapshot("d", **SNAP)).ok
        await write(store, "a", range(10))
        await until(lambda: store.checkpoints >= 1, "the checkpoint of normal")
        # every frame copied, then the WAL started again (one frame: the restart's own)
        await until(
            lambda: store.wal_restarts >= 1 and store.wal_frames_pending() == 1,
            "every frame copied",
        )
    finally:
        await store.close()


async def test_acknowledged_writes_are_in_the_wal_without_a_checkpoint(tmp_path):
    """With checkpoints held off, the acknowledged writes live only in the ``-wal`` file: a
    copy of the database and its WAL taken while the store runs (what a killed relay leaves)
    opens with every one of them."""
    path = tmp_path / "live.sqlite"
    store = SQLiteStore(path)
    store.checkpoint_idle = NEVER
    await store.open()
    try:
        assert (await store.save_snapshot("d", **SNAP)).ok
        await write(store, "a", range(40))
        await write(store, "b", range(25))
        assert store.checkpoints == 0 and store.wal_frames_pending() > 0
        copy = tmp_path / "copy"
        copy.mkdir()
        for suffix in ("", "-wal"):  # not the -shm: SQLite rebuilds it from the WAL
            shutil.copyfile(f"{path}{suffix}", f"{copy / 'live.sqlite'}{suffix}")
    finally:
        await store.close()
    assert await stored_clocks(copy / "live.sqlite") == {"a": 39, "b": 24}
