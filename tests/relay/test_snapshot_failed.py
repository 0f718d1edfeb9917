"""``snapshot-save-failed`` for a *valid* but stale snapshot always carries what the client is
missing, on every path: the relay's in-memory pre-check, writes still committing, and the store's
own check (another writer on the same database file), and the client's retry on top of that data
succeeds at the first attempt."""

from __future__ import annotations

import asyncio

import pytest

from secsync_jupyter.protocol import (
    Snapshot,
    generate_id,
    is_valid_ancestor_snapshot,
    parse_snapshot_proof_chain,
    snapshot_proof_entry,
)

from .conftest import start_relay
from .pg import HeldWrites
from .util import Author, RelayClient, dumps, open_doc

pytestmark = pytest.mark.asyncio


async def seed(base: str, author: Author, n_updates: int = 0):
    client, _ = await open_doc(base, author.doc_id)
    snap = author.initial_snapshot()
    await client.send(snap)
    await client.next("snapshot-saved")
    for clock in range(n_updates):
        await client.send(author.update(snap, clock))
        await client.next("update-saved")
    return client, snap


def clocks_of(updates: list[dict]) -> list[tuple[str, int]]:
    return [(u["publicData"]["pubKey"], u["publicData"]["clock"]) for u in updates]


def merged(known: dict[str, int], updates: list[dict]) -> dict[str, int]:
    out = dict(known)
    for pub, clock in clocks_of(updates):
        assert clock == out.get(pub, -1) + 1, "the answer's updates must continue the clocks"
        out[pub] = clock
    return out


async def answer(client: RelayClient) -> tuple[dict, dict]:
    err = await client.next("error")
    return err, await client.next("snapshot-save-failed")


def check_newer_snapshot(failed: dict, known: Snapshot, expected: Snapshot, n_chain: int) -> None:
    """Stale parent: the newer snapshot, its updates and a proof chain from the known one."""
    assert failed["snapshot"]["publicData"]["snapshotId"] == expected.public_data.snapshot_id
    got = Snapshot.from_json(failed["snapshot"])
    chain = parse_snapshot_proof_chain(failed["snapshotProofChain"])
    assert len(chain) == n_chain
    assert is_valid_ancestor_snapshot(snapshot_proof_entry(known), chain, got)


async def test_stale_parent_two_snapshots_behind(relay):
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client_a, s1 = await seed(relay.url, a, 1)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    s2 = a.snapshot(s1, {a.pub: 0})
    await client_a.send(s2)
    await client_a.next("snapshot-saved")
    s3 = a.snapshot(s2, {})
    await client_a.send(s3)
    await client_a.next("snapshot-saved")
    await client_a.send(a.update(s3, 0))
    await client_a.next("update-saved")
    # b never applied s2 / s3 (it ignores the broadcasts) and snapshots on top of s1
    stale = b.snapshot(s1, {a.pub: 0})
    await client_b.send(stale)
    err, failed = await answer(client_b)
    assert err["code"] == "snapshot-parent-not-active"
    check_newer_snapshot(failed, s1, s3, 2)
    assert clocks_of(failed["updates"]) == [(a.pub, 0)]
    retry = b.snapshot(Snapshot.from_json(failed["snapshot"]), merged({}, failed["updates"]))
    await client_b.send(retry)
    assert (await client_b.next("snapshot-saved"))["snapshotId"] == retry.public_data.snapshot_id


async def test_stale_initial_snapshot_gets_the_document(relay):
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    _, s1 = await seed(relay.url, a, 2)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    await client_b.send(b.initial_snapshot())  # b thinks the document is new
    err, failed = await answer(client_b)
    assert err["code"] == "snapshot-parent-not-active"
    assert failed["snapshot"]["publicData"]["snapshotId"] == s1.public_data.snapshot_id
    assert clocks_of(failed["updates"]) == [(a.pub, 0), (a.pub, 1)]
    assert failed["snapshotProofChain"] == []
    retry = b.snapshot(Snapshot.from_json(failed["snapshot"]), merged({}, failed["updates"]))
    await client_b.send(retry)
    await client_b.next("snapshot-saved")


async def test_clocks_differ_only_the_missing_updates_of_every_author(relay):
    a = Author(generate_id())
    b, c = Author(a.doc_id, a.key), Author(a.doc_id, a.key)
    _client_a, s1 = await seed(relay.url, a, 3)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    client_c, _ = await open_doc(relay.url, a.doc_id)
    await client_c.send(c.update(s1, 0))
    await client_c.next("update-saved")
    # b knows a:0..1 only, and nothing of c
    known = {a.pub: 1}
    await client_b.send(b.snapshot(s1, known))
    err, failed = await answer(client_b)
    assert err["code"] == "snapshot-clocks-differ"
    assert "snapshot" not in failed and "snapshotProofChain" not in failed
    assert clocks_of(failed["updates"]) == [(a.pub, 2), (c.pub, 0)]
    retry = b.snapshot(s1, merged(known, failed["updates"]))
    await client_b.send(retry)
    await client_b.next("snapshot-saved")


async def test_clocks_differ_with_updates_still_committing(relay):
    """Updates accepted but not yet committed when the stale snapshot arrives are in the
    answer (it is read after their commit), so the retry needs no second round."""
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client_a, s1 = await seed(relay.url, a)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    held = HeldWrites(relay.db)
    try:
        for clock in range(3):
            await client_a.ws.send(dumps(a.update(s1, clock).to_json()))
        await client_a.roundtrip_ok()  # the relay has accepted the three (in memory)
        assert not [f for f in client_a.frames if f["type"] == "update-saved"]
        await client_b.send(b.snapshot(s1, {}))
        assert (await client_b.next("error"))["code"] == "snapshot-clocks-differ"
    finally:
        held.release()
    failed = await client_b.next("snapshot-save-failed")
    assert clocks_of(failed["updates"]) == [(a.pub, 0), (a.pub, 1), (a.pub, 2)]
    retry = b.snapshot(s1, merged({}, failed["updates"]))
    await client_b.send(retry)
    await client_b.next("snapshot-saved")


async def test_stale_parent_while_the_newer_snapshot_is_committing(relay):
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client_a, s1 = await seed(relay.url, a, 1)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    s2 = a.snapshot(s1, {a.pub: 0})
    held = HeldWrites(relay.db)
    try:
        await client_a.ws.send(dumps(s2.to_json()))
        await client_a.ws.send(dumps(a.update(s2, 0).to_json()))
        await client_a.roundtrip_ok()
        await client_b.send(b.snapshot(s1, {a.pub: 0}))
        assert (await client_b.next("error"))["code"] == "snapshot-parent-not-active"
    finally:
        held.release()
    failed = await client_b.next("snapshot-save-failed")
    check_newer_snapshot(failed, s1, s2, 1)
    assert clocks_of(failed["updates"]) == [(a.pub, 0)]
    retry = b.snapshot(s2, merged({}, failed["updates"]))
    await client_b.send(retry)
    await client_b.next("snapshot-saved")


# ------------------------------------------------------- the store decides (another writer)
async def test_store_rejects_stale_parent_answer_and_first_retry_succeed(relays, db_path):
    """Two relay processes on one database: relay 1's memory does not know relay 2's
    snapshot, the store's check refuses the snapshot. The answer carries relay 2's snapshot,
    updates and chain, and the retry on top of it succeeds at once (relay 1 reloads)."""
    db = db_path
    r1, r2 = await relays(db), await relays(db)
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client_a, s1 = await seed(r1.url, a, 1)
    client_b, _ = await open_doc(r2.url, a.doc_id)
    s2 = b.snapshot(s1, {a.pub: 0})
    await client_b.send(s2)
    await client_b.next("snapshot-saved")
    await client_b.send(b.update(s2, 0))
    await client_b.next("update-saved")
    # on relay 1, a's snapshot on s1 passes the in-memory check; the store refuses it
    await client_a.send(a.snapshot(s1, {a.pub: 0}))
    err, failed = await answer(client_a)
    assert err["code"] == "snapshot-parent-not-active"
    check_newer_snapshot(failed, s1, s2, 1)
    assert clocks_of(failed["updates"]) == [(b.pub, 0)]
    retry = a.snapshot(s2, merged({}, failed["updates"]))
    await client_a.send(retry)
    assert (await client_a.next("snapshot-saved"))["snapshotId"] == retry.public_data.snapshot_id
    # and updates continue on relay 1 with the reloaded state
    await client_a.send(a.update(retry, 0))
    assert (await client_a.next("update-saved"))["clock"] == 0


async def test_store_rejects_stale_clocks_answer_has_only_missing(relays, db_path):
    db = db_path
    r1, r2 = await relays(db), await relays(db)
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client_a, s1 = await seed(r1.url, a, 2)
    client_b, _ = await open_doc(r2.url, a.doc_id)
    await client_b.send(b.update(s1, 0))
    await client_b.next("update-saved")
    known = {a.pub: 1}
    await client_a.send(a.snapshot(s1, known))
    err, failed = await answer(client_a)
    assert err["code"] == "snapshot-clocks-differ"
    assert "snapshot" not in failed
    assert clocks_of(failed["updates"]) == [(b.pub, 0)]
    retry = a.snapshot(s1, merged(known, failed["updates"]))
    await client_a.send(retry)
    await client_a.next("snapshot-saved")


# ------------------------------------------- a process behind the others (fan-out, PostgreSQL)
class HeldNotifications:
    """Holds back the notifications of one in-process relay's fan-out (its doorbells from the
    other processes arrive late), then hands them over in their order."""

    def __init__(self, relay):
        self.fanout = relay.relay.fanout
        self.held: list[tuple] = []
        self._deliver = self.fanout._on_notify
        self.fanout._on_notify = lambda *a: self.held.append(a)

    def release(self) -> None:
        self.fanout._on_notify = self._deliver
        for args in self.held:
            self._deliver(*args)


def updates_and_snapshots(client: RelayClient) -> list[tuple[str, str]]:
    """The broadcasts a client received: ("s", snapshotId) / ("u", "pubKey:clock")."""
    out = []
    for f in client.frames:
        if f.get("type") == "snapshot":
            out.append(("s", f["snapshot"]["publicData"]["snapshotId"]))
        elif f.get("type") == "update":
            out.append(("u", f"{f['publicData']['pubKey']}:{f['publicData']['clock']}"))
    return out


async def arrived(predicate, timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (polling; fails after ``timeout`` seconds)."""
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_process_behind_catches_up_before_it_refuses(pg_url):
    """Relay 1 gets no notification of relay 2's writes (held back). A client that knows
    them (it read the document after they committed) writes on top of them through relay 1:
    relay 1's state would refuse (wrong snapshot, parent not active, clocks differ); it reads
    the rows after its delivered position first, delivers them in order to its clients, and
    accepts. A write naming a snapshot relay 1 saw superseded is refused without a read; the
    late notifications change nothing."""
    r1, r2 = await start_relay(pg_url), await start_relay(pg_url)
    try:
        a = Author(generate_id())
        b, c = Author(a.doc_id, a.key), Author(a.doc_id, a.key)
        client_a, s1 = await seed(r1.url, a, 1)  # keeps the document open on relay 1
        held = HeldNotifications(r1)
        fanout = r1.relay.fanout
        client_b, _ = await open_doc(r2.url, a.doc_id)
        s2 = b.snapshot(s1, {a.pub: 0})
        await client_b.send(s2)
        await client_b.next("snapshot-saved")
        await client_b.send(b.update(s2, 0))
        await client_b.next("update-saved")
        room = r1.relay.rooms[a.doc_id]
        assert room.state.active.snapshot_id == s1.public_data.snapshot_id  # behind

        # c reads the document through relay 1 (from the store): s2 and b's update
        client_c, doc = await open_doc(r1.url, a.doc_id)
        assert doc["snapshot"]["publicData"]["snapshotId"] == s2.public_data.snapshot_id
        assert clocks_of(doc["updates"]) == [(b.pub, 0)]
        checks = fanout.lag_checks
        await client_c.send(c.update(s2, 0))  # relay 1's state: update-wrong-snapshot
        assert (await client_c.next("update-saved"))["clock"] == 0
        assert fanout.lag_checks == checks + 1
        assert room.state.active.snapshot_id == s2.public_data.snapshot_id
        assert room.state.clocks == {b.pub: 0, c.pub: 0}

        # b writes on through relay 2; c snapshots with b's newest clock through relay 1
        await client_b.send(b.update(s2, 1))
        await client_b.next("update-saved")
        s3 = c.snapshot(s2, {b.pub: 1, c.pub: 0})  # relay 1's state: snapshot-clocks-differ
        await client_c.send(s3)
        assert (await client_c.next("snapshot-saved"))["snapshotId"] == s3.public_data.snapshot_id
        assert fanout.lag_checks == checks + 2

        # a's stale update names s1, which relay 1 saw superseded: refused, no read
        await client_a.send(a.update(s1, 1))
        assert (await client_a.next("error"))["code"] == "update-wrong-snapshot"
        await client_a.next("update-save-failed")
        assert fanout.lag_checks == checks + 2

        # a got relay 2's rows from the catch-up reads, in position order, with c's writes
        expected = [
            ("s", s2.public_data.snapshot_id),
            ("u", f"{b.pub}:0"),
            ("u", f"{c.pub}:0"),
            ("u", f"{b.pub}:1"),
            ("s", s3.public_data.snapshot_id),
        ]
        # (a new snapshot of this process goes out with the room's next read: wait for it)
        await arrived(lambda: len(updates_and_snapshots(client_a)) >= len(expected))
        assert updates_and_snapshots(client_a) == expected
        # the notifications held back arrive late: nothing is delivered twice
        held.release()
        await client_b.send(b.update(s3, 0))
        await client_b.next("update-saved")
        await arrived(lambda: len(updates_and_snapshots(client_a)) > len(expected))
        await arrived(lambda: len(updates_and_snapshots(client_c)) >= 2)
        await client_a.roundtrip_ok()
        assert updates_and_snapshots(client_a) == [*expected, ("u", f"{b.pub}:0")]
        # c got b's updates (relay 2's), never its own writes
        assert updates_and_snapshots(client_c) == [("u", f"{b.pub}:1"), ("u", f"{b.pub}:0")]
        for client in (client_a, client_b, client_c):
            await client.close()
    finally:
        for r in (r1, r2):
            await r.server.stop(timeout=2)
