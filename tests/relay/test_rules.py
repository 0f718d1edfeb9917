"""Every Secsync acceptance rule of the relay, accept and reject, on a real relay + its database
(each test with a SQLite file and with PostgreSQL: the ``relay`` / ``relays`` / ``db_path``
fixtures)."""

from __future__ import annotations

import asyncio
import json

import pytest

from secsync_jupyter.protocol import (
    Snapshot,
    Update,
    generate_id,
    is_valid_ancestor_snapshot,
    parse_snapshot_proof_chain,
    snapshot_proof_entry,
    verify_and_decrypt_snapshot,
    verify_and_decrypt_update,
)
from secsync_jupyter.relay import AllowedAuthorsPolicy, Limits

from .pg import db_rows
from .util import Author, RelayClient, dumps, open_doc, seed, url_for

pytestmark = pytest.mark.asyncio


def db_counts(db: str) -> tuple[int, int, int]:
    return tuple(
        db_rows(db, f"SELECT COUNT(*) FROM {t}")[0][0]
        for t in ("documents", "snapshots", "updates")
    )


async def test_initial_snapshot_update_and_broadcast(relay):
    a = Author(generate_id())
    client_a, _ = await open_doc(relay.url, a.doc_id)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    snap = a.initial_snapshot(b"state", note="app field")  # unknown publicData field: allowed
    await client_a.send(snap)
    saved = await client_a.next("snapshot-saved")
    assert saved == {"type": "snapshot-saved", "snapshotId": snap.public_data.snapshot_id}
    bc = await client_b.next("snapshot")
    got = Snapshot.from_json(bc["snapshot"])
    assert got.public_data.raw["note"] == "app field"
    assert verify_and_decrypt_snapshot(got, a.key, a.doc_id) == b"state"

    upd = a.update(snap, 0, b"change")
    await client_a.send(upd)
    assert await client_a.next("update-saved") == {
        "type": "update-saved",
        "snapshotId": snap.public_data.snapshot_id,
        "clock": 0,
    }
    bc = dict(await client_b.next("update"))
    assert bc.pop("type") == "update"
    assert bc == upd.to_json()
    u = Update.from_json(bc)
    assert verify_and_decrypt_update(u, a.key, snap.public_data.snapshot_id, -1) == b"change"
    # the sender gets no copy of its own broadcast
    await client_a.roundtrip_ok()
    assert not [f for f in client_a.frames if f["type"] in ("update", "snapshot")]
    assert db_counts(relay.db) == (1, 1, 1)


async def test_update_clock_rules(relay):
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client, snap = await seed(relay.url, a, 2)
    # replayed clock
    await client.send(a.update(snap, 1))
    err = await client.next("error")
    assert err["code"] == "update-clock-replayed"
    failed = await client.next("update-save-failed")
    assert failed == {
        "type": "update-save-failed",
        "snapshotId": snap.public_data.snapshot_id,
        "clock": 1,
        "requiresNewSnapshot": False,
    }
    # clock gap (2 is next; 3 skips one)
    await client.send(a.update(snap, 3))
    assert (await client.next("error"))["code"] == "update-clock-gap"
    assert (await client.next("update-save-failed"))["clock"] == 3
    # a new pubKey must start at 0
    await client.send(b.update(snap, 1))
    assert (await client.next("error"))["code"] == "update-clock-gap"
    await client.next("update-save-failed")
    await client.send(b.update(snap, 0))
    assert (await client.next("update-saved"))["clock"] == 0
    # the next clock still works after the rejections
    await client.send(a.update(snap, 2))
    assert (await client.next("update-saved"))["clock"] == 2
    # unknown snapshot
    await client.send(a.update(generate_id(), 3))
    assert (await client.next("error"))["code"] == "update-wrong-snapshot"
    await client.next("update-save-failed")
    assert db_counts(relay.db) == (1, 1, 4)


async def test_pipelined_updates_all_acked_in_order(relay):
    a = Author(generate_id())
    client, snap = await seed(relay.url, a)
    reader, _ = await open_doc(relay.url, a.doc_id)
    for clock in range(50):  # no waiting: many in flight, group-committed
        await client.send(a.update(snap, clock, f"u{clock}".encode()))
    acks = [(await client.next("update-saved"))["clock"] for _ in range(50)]
    assert acks == list(range(50))
    seen = [(await reader.next("update"))["publicData"]["clock"] for _ in range(50)]
    assert seen == list(range(50))


async def test_snapshot_rules_and_missing_data(relay):
    a = Author(generate_id())
    client, s1 = await seed(relay.url, a, 2)
    # parent is not the active snapshot -> the active snapshot, its updates and a chain
    stale = a.snapshot(s1, {a.pub: 1})
    await client.send(stale)  # s2 becomes active
    await client.next("snapshot-saved")
    await client.send(a.update(stale, 0))
    await client.next("update-saved")
    late = a.snapshot(s1, {a.pub: 1})  # also based on s1
    await client.send(late)
    assert (await client.next("error"))["code"] == "snapshot-parent-not-active"
    failed = await client.next("snapshot-save-failed")
    assert failed["snapshot"]["publicData"]["snapshotId"] == stale.public_data.snapshot_id
    assert [u["publicData"]["clock"] for u in failed["updates"]] == [0]
    chain = parse_snapshot_proof_chain(failed["snapshotProofChain"])
    assert is_valid_ancestor_snapshot(
        snapshot_proof_entry(s1), chain, Snapshot.from_json(failed["snapshot"])
    )
    # clocks differ -> only the missing updates
    await client.send(a.update(stale, 1))
    await client.next("update-saved")
    behind = a.snapshot(stale, {a.pub: 0})
    await client.send(behind)
    assert (await client.next("error"))["code"] == "snapshot-clocks-differ"
    failed = await client.next("snapshot-save-failed")
    assert "snapshot" not in failed
    assert [u["publicData"]["clock"] for u in failed["updates"]] == [1]
    # with the right clocks it is accepted
    good = a.snapshot(stale, {a.pub: 1})
    await client.send(good)
    assert (await client.next("snapshot-saved"))["snapshotId"] == good.public_data.snapshot_id
    # an update on the old snapshot is now rejected
    await client.send(a.update(stale, 2))
    assert (await client.next("error"))["code"] == "update-wrong-snapshot"
    assert (await client.next("update-save-failed"))["requiresNewSnapshot"] is False
    # a snapshot id that already exists
    dup = a.snapshot(good, {}, snapshotId=s1.public_data.snapshot_id)
    await client.send(dup)
    assert (await client.next("error"))["code"] == "snapshot-id-exists"
    await client.next("snapshot-save-failed")
    assert db_counts(relay.db) == (1, 3, 4)


async def test_concurrent_snapshot_race_one_wins_loser_retries(relay):
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client_a, s1 = await seed(relay.url, a, 1)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    snap_a = a.snapshot(s1, {a.pub: 0}, b"A")
    snap_b = b.snapshot(s1, {a.pub: 0}, b"B")
    # both in flight at once, on two connections
    await asyncio.gather(client_a.send(snap_a), client_b.send(snap_b))
    results = {}
    for name, client in (("a", client_a), ("b", client_b)):
        while name not in results:
            f = await client.next()
            if f["type"] in ("snapshot-saved", "snapshot-save-failed"):
                results[name] = f
    outcomes = sorted(f["type"] for f in results.values())
    assert outcomes == ["snapshot-save-failed", "snapshot-saved"]
    winner, loser = ("a", "b") if results["a"]["type"] == "snapshot-saved" else ("b", "a")
    win_snap = {"a": snap_a, "b": snap_b}[winner]
    lose_author = {"a": a, "b": b}[loser]
    lose_client = {"a": client_a, "b": client_b}[loser]
    failed = results[loser]
    # the loser gets the winner's snapshot, its updates and a chain from s1
    assert failed["snapshot"]["publicData"]["snapshotId"] == win_snap.public_data.snapshot_id
    got = Snapshot.from_json(failed["snapshot"])
    chain = parse_snapshot_proof_chain(failed["snapshotProofChain"])
    assert is_valid_ancestor_snapshot(snapshot_proof_entry(s1), chain, got)
    # ... and succeeds when it retries on top of it
    retry = lose_author.snapshot(got, {}, b"retry")
    await lose_client.send(retry)
    assert (await lose_client.next("snapshot-saved"))["snapshotId"] == retry.public_data.snapshot_id
    assert db_counts(relay.db) == (1, 3, 1)


async def test_concurrent_updates_same_clock_one_wins(relay):
    a = Author(generate_id())
    client1, snap = await seed(relay.url, a)
    client2, _ = await open_doc(relay.url, a.doc_id)
    u1, u2 = a.update(snap, 0, b"one"), a.update(snap, 0, b"two")
    await asyncio.gather(client1.send(u1), client2.send(u2))
    got = []
    for c in (client1, client2):
        while True:
            f = await c.next()
            if f["type"] in ("update-saved", "update-save-failed"):
                got.append(f["type"])
                break
    assert sorted(got) == ["update-save-failed", "update-saved"]
    assert db_counts(relay.db)[2] == 1


async def test_document_frames_complete_delta_and_chain(relay):
    a = Author(generate_id())
    b = Author(a.doc_id, a.key)
    client, s1 = await seed(relay.url, a, 2)
    await client.send(b.update(s1, 0))
    await client.next("update-saved")
    base = relay.url
    doc = a.doc_id
    # complete, nothing known
    _, d = await open_doc(base, doc)
    assert d["snapshot"]["publicData"]["snapshotId"] == s1.public_data.snapshot_id
    assert len(d["updates"]) == 3 and d["snapshotProofChain"] == []
    # delta, active snapshot known with clocks: only the newer updates, no snapshot/chain
    _, d = await open_doc(
        base,
        doc,
        mode="delta",
        known_snapshot_id=s1.public_data.snapshot_id,
        known_clocks={a.pub: 0},
    )
    assert set(d) == {"type", "updates"}
    assert [(u["publicData"]["pubKey"], u["publicData"]["clock"]) for u in d["updates"]] == [
        (a.pub, 1),
        (b.pub, 0),
    ]
    # complete with the active snapshot known: snapshot + newer updates + empty chain
    _, d = await open_doc(
        base,
        doc,
        mode="complete",
        known_snapshot_id=s1.public_data.snapshot_id,
        known_clocks={a.pub: 1, b.pub: 0},
    )
    assert d["snapshot"] and d["updates"] == [] and d["snapshotProofChain"] == []
    # known snapshot without clocks (stricter than the reference: "none known", no error)
    _, d = await open_doc(base, doc, mode="delta", known_snapshot_id=s1.public_data.snapshot_id)
    assert len(d["updates"]) == 3
    # old known snapshot: the new snapshot, its updates and the proof chain
    s2 = a.snapshot(s1, {a.pub: 1, b.pub: 0})
    await client.send(s2)
    await client.next("snapshot-saved")
    s3 = a.snapshot(s2, {})
    await client.send(s3)
    await client.next("snapshot-saved")
    await client.send(a.update(s3, 0))
    await client.next("update-saved")
    _, d = await open_doc(
        base,
        doc,
        mode="delta",
        known_snapshot_id=s1.public_data.snapshot_id,
        known_clocks={a.pub: 1},
    )
    assert d["snapshot"]["publicData"]["snapshotId"] == s3.public_data.snapshot_id
    assert len(d["updates"]) == 1
    chain = parse_snapshot_proof_chain(d["snapshotProofChain"])
    assert [e.snapshot_id for e in chain] == [
        s2.public_data.snapshot_id,
        s3.public_data.snapshot_id,
    ]
    assert is_valid_ancestor_snapshot(snapshot_proof_entry(s1), chain, s3)
    # unknown known snapshot: full document, empty chain
    _, d = await open_doc(base, doc, mode="delta", known_snapshot_id=generate_id())
    assert d["snapshotProofChain"] == [] and d["snapshot"]


async def test_joining_connection_gets_no_gap_no_duplicate(relay):
    """Connections join while a writer streams updates: each sees every update exactly once."""
    a = Author(generate_id())
    writer, snap = await seed(relay.url, a)
    n = 200

    async def write():
        for clock in range(n):
            await writer.send(a.update(snap, clock))
            if clock % 20 == 0:
                await asyncio.sleep(0)

    async def join():
        c, d = await open_doc(relay.url, a.doc_id)
        seen = [u["publicData"]["clock"] for u in d["updates"]]
        while len(seen) < n:
            seen.append((await c.next("update"))["publicData"]["clock"])
        return seen

    results = await asyncio.gather(write(), *(join() for _ in range(6)))
    for seen in results[1:]:
        assert seen == list(range(n))


async def test_ephemeral_forwarded_not_stored(relay):
    a = Author(generate_id())
    client_a, _ = await seed(relay.url, a)
    client_b, _ = await open_doc(relay.url, a.doc_id)
    before = db_counts(relay.db)
    eph = a.ephemeral()
    await client_a.send(eph)
    got = dict(await client_b.next("ephemeral-message"))
    assert got.pop("type") == "ephemeral-message" and got == eph.to_json()
    assert db_counts(relay.db) == before
    # bad signature: an error frame, nothing forwarded
    bad = eph.to_json()
    bad["signature"] = a.update(generate_id(), 0).signature
    await client_a.send(bad)
    assert (await client_a.next("error"))["code"] == "invalid-signature"
    await client_b.roundtrip_ok()
    assert len([f for f in client_b.frames if f["type"] == "ephemeral-message"]) == 1


async def test_wrong_doc_id_rejected_for_every_message_kind(relay):
    a = Author(generate_id())
    other = Author(generate_id(), a.key, a.keypair)  # same author, other document
    client, snap = await seed(relay.url, a)
    before = db_counts(relay.db)
    await client.send(other.initial_snapshot())
    assert (await client.next("error"))["code"] == "wrong-document"
    assert await client.next("snapshot-save-failed") == {"type": "snapshot-save-failed"}
    await client.send(other.update(snap, 0))
    assert (await client.next("error"))["code"] == "wrong-document"
    await client.next("update-save-failed")
    await client.send(other.ephemeral())
    assert (await client.next("error"))["code"] == "wrong-document"
    assert db_counts(relay.db) == before


async def test_bad_signatures_and_additional_server_data(relay):
    a = Author(generate_id())
    client, snap = await seed(relay.url, a)
    reader, _ = await open_doc(relay.url, a.doc_id)
    before = db_counts(relay.db)
    s2 = a.snapshot(snap, {}).to_json()
    s2["signature"] = snap.signature
    await client.send(s2)
    assert (await client.next("error"))["code"] == "invalid-signature"
    assert await client.next("snapshot-save-failed") == {"type": "snapshot-save-failed"}
    # a tampered publicData field breaks the signature (it covers unknown fields too)
    u = a.update(snap, 0, extra="x").to_json()
    u["publicData"]["extra"] = "y"
    await client.send(u)
    assert (await client.next("error"))["code"] == "invalid-signature"
    await client.next("update-save-failed")
    assert db_counts(relay.db) == before
    # additionalServerData is accepted, but neither stored nor forwarded
    s3 = a.snapshot(snap, {})
    await client.send({**s3.to_json(), "additionalServerData": {"x": 1}})
    await client.next("snapshot-saved")
    bc = await reader.next("snapshot")
    assert bc["snapshot"] == s3.to_json()
    ((stored,),) = db_rows(relay.db, "SELECT message FROM snapshots ORDER BY seq DESC LIMIT 1")
    assert json.loads(stored) == s3.to_json()


async def test_state_survives_restart(relays, db_path):
    db = db_path
    r1 = await relays(db)
    a = Author(generate_id())
    client, snap = await seed(r1.url, a, 3)
    await client.close()
    await r1.server.stop(timeout=2)
    r2 = await relays(db)
    client, d = await open_doc(r2.url, a.doc_id)
    assert len(d["updates"]) == 3
    await client.send(a.update(snap, 2))  # replay across restart
    assert (await client.next("error"))["code"] == "update-clock-replayed"
    await client.send(a.update(snap, 3))
    assert (await client.next("update-saved"))["clock"] == 3
    stale = a.snapshot(snap, {a.pub: 2})
    await client.send(stale)
    assert (await client.next("error"))["code"] == "snapshot-clocks-differ"


async def test_limits(relays):
    r = await relays(
        limits=Limits(max_connections_per_document=2, max_documents=2, max_frame_bytes=4096)
    )
    doc1, doc2, doc3 = generate_id(), generate_id(), generate_id()
    c1, _ = await open_doc(r.url, doc1)
    c2, _ = await open_doc(r.url, doc1)
    c3 = await RelayClient.open(url_for(r.url, doc1))
    assert (await c3.next("error"))["code"] == "too-many-connections"
    await c3.next("document-error")
    assert await c3.wait_closed() == 1013
    # documents: doc1 is open (no snapshot yet), doc2 fills the limit, doc3 is refused
    c4, _ = await open_doc(r.url, doc2)
    c5 = await RelayClient.open(url_for(r.url, doc3))
    assert (await c5.next("error"))["code"] == "too-many-documents"
    assert await c5.wait_closed() == 1013
    # a closed, never-written document frees its slot
    await c4.close()
    await asyncio.sleep(0.05)
    c6, _ = await open_doc(r.url, doc3)
    # oversized frame: clear error, close 1009; other connections unaffected
    await c1.send("x" * 5000)
    assert (await c1.next("error"))["code"] == "frame-too-large"
    assert await c1.wait_closed() == 1009
    await c2.roundtrip_ok()
    await c6.roundtrip_ok()


async def test_allowed_authors_policy(relays):
    a = Author(generate_id())
    intruder = Author(a.doc_id, a.key)
    r = await relays(policy=AllowedAuthorsPolicy({a.doc_id: [a.pub]}, default=[]))
    client, snap = await seed(r.url, a, 1)
    reader, d = await open_doc(r.url, a.doc_id)  # reading is allowed to anyone authenticated
    assert len(d["updates"]) == 1
    await reader.send(intruder.update(snap, 0))
    assert (await reader.next("error"))["code"] == "unauthorized"
    await reader.next("unauthorized")
    assert await reader.wait_closed() == 1008
    # a document not listed: default [] = nobody may write
    other = Author(generate_id())
    c, _ = await open_doc(r.url, other.doc_id)
    await c.send(other.initial_snapshot())
    await c.next("unauthorized")
    await client.send(a.update(snap, 1))
    assert (await client.next("update-saved"))["clock"] == 1
    assert db_counts(r.db) == (1, 1, 2)


async def test_session_keys(relays):
    r = await relays(session_keys=["good"])
    doc = generate_id()
    c = await RelayClient.open(url_for(r.url, doc, "bad"))
    assert (await c.next("unauthorized"))["type"] == "unauthorized"
    assert await c.wait_closed() == 1008
    c = await RelayClient.open(url_for(r.url, doc, None))
    assert (await c.next("document-error"))["type"] == "document-error"
    c, d = await open_doc(r.url, doc, session_key="good")
    assert d["type"] == "document"


async def test_sigterm_style_stop_finishes_writes_and_closes_1001(relays):
    r = await relays()
    a = Author(generate_id())
    client, snap = await seed(r.url, a)
    for clock in range(30):
        await client.ws.send(dumps(a.update(snap, clock).to_json()))
    # wait until the relay has read them all (it answers each), then stop mid-commit
    await asyncio.sleep(0)
    stop = asyncio.ensure_future(r.server.stop(timeout=5))
    code = await client.wait_closed()
    await stop
    assert code == 1001
    acked = [f["clock"] for f in client.frames if f["type"] == "update-saved"]
    assert acked == list(range(len(acked)))
    assert db_counts(r.db)[2] >= len(acked)


def active_bytes(db: str, doc_id: str) -> int:
    """Bytes of the stored messages on the document's active snapshot, from the rows."""
    ((seq,),) = db_rows(db, "SELECT active_snapshot FROM documents WHERE doc_id = ?", doc_id)
    rows = db_rows(
        db,
        "SELECT message FROM snapshots WHERE seq = ?1 "
        "UNION ALL SELECT message FROM updates WHERE snapshot_seq = ?1",
        seq,
    )
    return sum(len(m.encode()) for (m,) in rows)


async def test_document_quota_refuses_writes_past_it_until_a_new_snapshot(relays, db_path):
    """A write that would take the bytes stored on the active snapshot past
    ``max_document_bytes`` is refused with a clear error (an update also asks for a new
    snapshot), nothing is stored, others keep working; a new snapshot frees the space; the
    count survives a restart (it is kept in the database)."""
    db = db_path
    quota = 20_000
    r = await relays(db, limits=Limits(max_document_bytes=quota))
    a = Author(generate_id())
    client, snap = await seed(r.url, a)
    reader, _ = await open_doc(r.url, a.doc_id)
    clock = 0
    while True:
        await client.send(a.update(snap, clock, b"x" * 4000))
        answer = await client.next()
        if answer["type"] != "update-saved":
            break
        assert (await reader.next("update"))["publicData"]["clock"] == clock
        clock += 1
    assert clock == 3  # a snapshot of ≈ 0.6 KB and three updates of ≈ 5.7 KB fit, a fourth not
    assert answer["type"] == "error" and answer["code"] == "document-too-large"
    assert str(quota) in answer["message"] and "snapshot" in answer["message"]
    failed = await client.next("update-save-failed")
    assert failed == {
        "type": "update-save-failed",
        "snapshotId": snap.public_data.snapshot_id,
        "clock": clock,
        "requiresNewSnapshot": True,
    }
    before = db_counts(db)
    stored = active_bytes(db, a.doc_id)
    assert stored <= quota < stored + 5000
    # a snapshot larger than the quota is refused too
    await client.send(a.snapshot(snap, {a.pub: clock - 1}, b"y" * quota))
    assert (await client.next("error"))["code"] == "document-too-large"
    assert await client.next("snapshot-save-failed") == {"type": "snapshot-save-failed"}
    assert db_counts(db) == before
    await reader.roundtrip_ok()
    # after a restart the relay knows what is stored: still refused
    await r.server.stop(timeout=2)
    r = await relays(db, limits=Limits(max_document_bytes=quota))
    client, _ = await open_doc(r.url, a.doc_id)
    await client.send(a.update(snap, clock, b"x" * 4000))
    assert (await client.next("error"))["code"] == "document-too-large"
    await client.next("update-save-failed")
    # a new snapshot frees the space
    s2 = a.snapshot(snap, {a.pub: clock - 1}, b"compacted")
    await client.send(s2)
    await client.next("snapshot-saved")
    assert active_bytes(db, a.doc_id) < 1000
    for c in range(3):
        await client.send(a.update(s2, c, b"x" * 4000))
        assert (await client.next("update-saved"))["clock"] == c
    ((kept,),) = db_rows(db, "SELECT active_bytes FROM documents WHERE doc_id = ?", a.doc_id)
    assert kept == active_bytes(db, a.doc_id)
