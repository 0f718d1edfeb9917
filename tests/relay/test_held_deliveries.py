"""Which messages an author waits for while its own write is committed but not yet durable
(early broadcast; docs/relay.md "Durability", ``Session.deliver``), on both stores:

* another author's **update** goes out at once (it builds on no write of the author's while
  those are updates), before the author's own ``update-saved``;
* a **snapshot** committed after the author's write waits for that acknowledgement (it may
  contain the write: 102), and so does everything after it (position order per connection);
* while the author's **snapshot** is not durable, the others' updates on it wait for its
  ``snapshot-saved``.

SQLite: one relay, its WAL sync held (``test_durable_ack.hold_sync``). PostgreSQL: two relays on
one database, the author's flush barrier held (``test_pg_durable_ack.hold_barrier``), the other
author on the other relay (its messages reach the author through the fan-out)."""

from __future__ import annotations

import contextlib

import pytest

from secsync_jupyter.protocol import generate_id

from .conftest import start_relay
from .durable_checks import frames_of, wait_held
from .test_durable_ack import hold_sync
from .test_pg_durable_ack import hold_barrier
from .util import Author, open_doc, seed

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def author_and_peer(kind: str, tmp_path, pg_url_factory):
    """(A's client, B's client, A, B, the first snapshot, hold) with A's durability step
    holdable through ``hold()`` -> (entered, release)."""
    if kind == "sqlite":
        one = await start_relay(str(tmp_path / "relay.sqlite"))
        relays = [one]
        other_url = one.url
        hold = lambda: hold_sync(one.relay.store)  # noqa: E731
    else:
        url = pg_url_factory()
        one = await start_relay(url)
        two = await start_relay(url)
        relays = [one, two]
        other_url = two.url
        hold = lambda: hold_barrier(one.relay.store)  # noqa: E731
    author = Author("doc-" + generate_id())
    peer = Author(author.doc_id, key=author.key)
    releases = []

    def holding():
        entered, release = hold()
        releases.append(release)
        return entered, release

    try:
        b, _ = await open_doc(other_url, author.doc_id)
        a, snap = await seed(one.url, author)
        await b.next("snapshot")
        yield a, b, author, peer, snap, holding
        await a.close()
        await b.close()
    finally:
        for release in releases:
            release.set()
        for r in relays:
            await r.server.stop(timeout=2)


@pytest.fixture
def pg_url_factory(request):
    return lambda: request.getfixturevalue("pg_url")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_peer_updates_pass_a_pending_update_but_a_snapshot_waits(
    kind, tmp_path, pg_url_factory
):
    async with author_and_peer(kind, tmp_path, pg_url_factory) as (a, b, author, peer, snap, hold):
        entered, release = hold()
        await a.send(author.update(snap, 0))
        assert (await b.next("update"))["publicData"]["clock"] == 0
        # B's update, committed after A's: A gets it while its own is not acknowledged
        await b.send(peer.update(snap, 0))
        got = await a.next("update")
        assert got["publicData"]["pubKey"] == peer.pub and got["publicData"]["clock"] == 0
        await wait_held(entered)
        await a.roundtrip_ok()
        assert not frames_of(a, "update-saved")
        # B's snapshot containing A's update, then B's update on it: both wait for A's ack
        snap2 = peer.snapshot(snap, {author.pub: 0, peer.pub: 0})
        await b.send(snap2)
        await b.send(peer.update(snap2, 0))
        if kind == "postgres":  # B's relay acknowledges both (its barrier is not held)
            assert (await b.next("snapshot-saved"))["snapshotId"] == snap2.public_data.snapshot_id
            await b.next("update-saved")  # B's update on snap (acknowledged before or after)
            await b.next("update-saved")
        else:
            await b.roundtrip_ok()  # both accepted (answered after the sync)
        await a.roundtrip_ok()
        assert not frames_of(a, "update-saved", "snapshot")
        assert [f["publicData"]["pubKey"] for f in frames_of(a, "update")] == [peer.pub]
        release.set()
        got = await a.next("update")
        assert got["publicData"]["refSnapshotId"] == snap2.public_data.snapshot_id
        kinds = [f["type"] for f in frames_of(a, "update", "update-saved", "snapshot")]
        assert kinds == ["update", "update-saved", "snapshot", "update"], kinds
        assert frames_of(a, "snapshot")[0]["snapshot"]["publicData"]["snapshotId"] == (
            snap2.public_data.snapshot_id
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_peer_updates_on_a_pending_snapshot_wait_for_it(kind, tmp_path, pg_url_factory):
    async with author_and_peer(kind, tmp_path, pg_url_factory) as (a, b, author, peer, snap, hold):
        entered, release = hold()
        snap2 = author.snapshot(snap, {})
        await a.send(snap2)
        got = await b.next("snapshot")
        assert got["snapshot"]["publicData"]["snapshotId"] == snap2.public_data.snapshot_id
        await b.send(peer.update(snap2, 0))
        if kind == "postgres":
            assert (await b.next("update-saved"))["clock"] == 0
        await wait_held(entered)
        await b.roundtrip_ok()
        await a.roundtrip_ok()
        assert not frames_of(a, "snapshot-saved", "update")[1:]  # the first snapshot's only
        release.set()
        got = await a.next("update")
        assert got["publicData"]["refSnapshotId"] == snap2.public_data.snapshot_id
        kinds = [f["type"] for f in frames_of(a, "snapshot-saved", "update")]
        assert kinds == ["snapshot-saved", "snapshot-saved", "update"], kinds
