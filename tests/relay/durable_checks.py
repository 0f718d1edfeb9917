"""Checks shared by the durable-acknowledgement tests of both stores (test_durable_ack.py for
SQLite, test_pg_durable_ack.py for PostgreSQL). Each store's test holds its own durability step
(SQLite: the WAL sync, through ``hold_sync``; PostgreSQL: the flush barrier, through
``hold_barrier``) and passes the ``entered`` / ``release`` events that hold gives back: a
``threading.Event`` pair for the sync thread or an ``asyncio.Event`` pair for the barrier task.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from secsync_jupyter.protocol import Snapshot, Update, verify_and_decrypt_update

from .util import TIMEOUT, Author, RelayClient


def frames_of(client: RelayClient, *kinds: str) -> list[dict]:
    """The frames of these types the client received so far, in order."""
    return [f for f in client.frames if f["type"] in kinds]


async def wait_held(entered: threading.Event | asyncio.Event) -> None:
    """Wait (bounded) until the held durability step was entered."""
    if isinstance(entered, threading.Event):
        assert await asyncio.to_thread(entered.wait, TIMEOUT)
    else:
        await asyncio.wait_for(entered.wait(), TIMEOUT)


async def check_updates_broadcast_before_ack(
    a: RelayClient,
    peers: Iterable[RelayClient],
    author: Author,
    snap: Snapshot,
    entered: threading.Event | asyncio.Event,
    clocks: Iterable[int] = (0, 1),
) -> None:
    """A sends updates while its store's durability step is held: every peer gets each one
    (decryptable, in order), the step is entered, and A has no ``update-saved`` yet."""
    clocks = list(clocks)
    for clock in clocks:
        await a.send(author.update(snap, clock, f"key {clock}".encode()))
    for peer in peers:
        for clock in clocks:
            got = await peer.next("update")
            assert got["publicData"]["clock"] == clock
            update = Update.from_json({k: v for k, v in got.items() if k != "type"})
            content = verify_and_decrypt_update(
                update, author.key, snap.public_data.snapshot_id, clock - 1
            )
            assert content == f"key {clock}".encode()
    await wait_held(entered)
    await a.roundtrip_ok()  # every frame of A answered so far: no acknowledgement yet
    assert not frames_of(a, "update-saved")


async def check_snapshot_broadcast_before_ack(
    a: RelayClient,
    peers: Iterable[RelayClient],
    author: Author,
    snap: Snapshot,
    clock: int,
    entered: threading.Event | asyncio.Event,
    release: threading.Event | asyncio.Event,
) -> None:
    """A (whose only ``snapshot-saved`` so far is its first) sends a snapshot on ``snap`` with
    its updates up to ``clock`` while the durability step is held: every peer gets it first,
    ``snapshot-saved`` comes only after ``release``."""
    snap2 = author.snapshot(snap, {author.pub: clock})
    await a.send(snap2)
    for peer in peers:
        got = await peer.next("snapshot")
        assert got["snapshot"]["publicData"]["snapshotId"] == snap2.public_data.snapshot_id
    await wait_held(entered)
    await a.roundtrip_ok()
    assert len(frames_of(a, "snapshot-saved")) == 1  # the first
    release.set()
    saved = await a.next("snapshot-saved")
    assert saved["snapshotId"] == snap2.public_data.snapshot_id


async def check_ack_before_peer_snapshot(
    a: RelayClient,
    b: RelayClient,
    author: Author,
    snap: Snapshot,
    entered: threading.Event | asyncio.Event,
    release: threading.Event | asyncio.Event,
    *,
    peer_saved_while_held: bool,
) -> None:
    """The early broadcast must not reorder what the author sees: B gets A's update (clock 0)
    before A's acknowledgement and snapshots on it at once, but A receives that snapshot only
    after its own ``update-saved`` (else A, like the reference client, rejects it: 102).

    ``peer_saved_while_held``: B's ``snapshot-saved`` comes while A's step is held (B's store
    step is not held: another relay process) rather than after ``release`` (the same store)."""
    other = Author(author.doc_id, key=author.key)
    await a.send(author.update(snap, 0))
    assert (await b.next("update"))["publicData"]["clock"] == 0
    snap_b = other.snapshot(snap, {author.pub: 0})
    await b.send(snap_b)  # committed while A's update is still not durable
    if peer_saved_while_held:
        assert (await b.next("snapshot-saved"))["snapshotId"] == snap_b.public_data.snapshot_id
    await wait_held(entered)
    await a.roundtrip_ok()
    # neither A's acknowledgement nor B's snapshot while A's update is not durable
    assert not frames_of(a, "update-saved", "snapshot")
    release.set()
    if not peer_saved_while_held:
        assert (await b.next("snapshot-saved"))["snapshotId"] == snap_b.public_data.snapshot_id
    got = await a.next("snapshot")
    assert got["snapshot"]["publicData"]["snapshotId"] == snap_b.public_data.snapshot_id
    kinds = [f["type"] for f in frames_of(a, "update-saved", "snapshot")]
    assert kinds[-2:] == ["update-saved", "snapshot"], kinds
