"""The relay's rules without sockets or SQLite: sessions driven directly (frames in, frames
out) over the in-memory store, and the rule functions on a bare document state. The loopback
tests (test_rules.py and the others) check the same behaviour through real WebSockets and
SQLite; these pin the rules where they live."""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio

from secsync_jupyter.protocol import Snapshot, Update, generate_id
from secsync_jupyter.relay import Identity, Limits, MemoryStore, Relay, rules
from secsync_jupyter.relay.store import DocumentState, SnapshotInfo

from .util import Author, dumps


class Recorder:
    """A transport that records what the relay sends (decoded), and how it closed."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.closed: tuple[int, str] | None = None

    def _record(self, text: str) -> None:
        text.encode("utf-8")  # what a WebSocket transport does: never undecodable text
        self.frames.append(json.loads(text))

    def send_text(self, text: str) -> None:
        self._record(text)

    def send_frame(self, frame) -> None:
        self._record(frame.text)

    def send_message(self, parts: list[str]) -> None:
        self._record("".join(parts))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def is_closed(self) -> bool:
        return self.closed is not None

    def take(self) -> list[dict]:
        out, self.frames = self.frames, []
        return out

    def types(self) -> list[str]:
        return [f["type"] for f in self.take()]


class Bench:
    """A relay over an in-memory store, and helpers to connect and settle."""

    def __init__(self, relay: Relay):
        self.relay = relay

    async def connect(self, doc_id: str, query: str = "", **identity):
        t = Recorder()
        session = await self.relay.connect(t, doc_id, query, Identity("user", **identity))
        return session, t

    async def seeded(self):
        """A new document with an accepted snapshot: (author, snapshot, session, recorder)."""
        a = Author(generate_id())
        s, t = await self.connect(a.doc_id)
        snap = a.initial_snapshot()
        send(s, snap)
        await self.settle()
        t.take()
        return a, snap, s, t

    async def settle(self) -> None:
        """Every write committed and answered, every callback run."""
        await self.relay.drain()
        for _ in range(5):
            await asyncio.sleep(0)


@pytest_asyncio.fixture
async def bench():
    relay = Relay(MemoryStore(), limits=Limits(max_document_bytes=50_000))
    await relay.start()
    yield Bench(relay)
    await relay.stop()


def send(session, message) -> None:
    session.on_text(dumps(message.to_json()) if not isinstance(message, str) else message)


@pytest.mark.asyncio
async def test_snapshot_update_broadcast_and_acks(bench):
    a = Author(generate_id())
    writer, w = await bench.connect(a.doc_id)
    _, r = await bench.connect(a.doc_id)
    assert w.take() == [{"type": "document", "updates": [], "snapshotProofChain": []}]
    r.take()
    snap = a.initial_snapshot()
    send(writer, snap)
    await bench.settle()
    assert w.take() == [{"type": "snapshot-saved", "snapshotId": snap.public_data.snapshot_id}]
    assert Snapshot.from_json(r.take()[0]["snapshot"]).public_data.snapshot_id == (
        snap.public_data.snapshot_id
    )
    send(writer, a.update(snap, 0))
    await bench.settle()
    assert w.take() == [
        {"type": "update-saved", "snapshotId": snap.public_data.snapshot_id, "clock": 0}
    ]
    (update,) = r.take()
    assert update["type"] == "update" and Update.from_json(update).public_data.clock == 0
    # an ephemeral message goes to the others only, and is not stored
    send(writer, a.ephemeral())
    await bench.settle()
    assert r.types() == ["ephemeral-message"] and w.take() == []
    # a new reader gets the stored state, in delta mode only what it misses
    _, late = await bench.connect(a.doc_id)
    (doc,) = late.take()
    assert [u["publicData"]["clock"] for u in doc["updates"]] == [0]
    sid = snap.public_data.snapshot_id
    query = f"mode=delta&knownSnapshotId={sid}&knownSnapshotUpdateClocks=%7B%7D"
    _, delta = await bench.connect(a.doc_id, query)
    assert [set(f) for f in delta.take()] == [{"type", "updates"}]


@pytest.mark.asyncio
async def test_update_rules(bench):
    a, snap, s, t = await bench.seeded()
    sid = snap.public_data.snapshot_id
    cases = [
        (a.update(snap, 1), "update-clock-gap"),
        (a.update(generate_id(), 0), "update-wrong-snapshot"),
    ]
    for message, code in cases:
        send(s, message)
        await bench.settle()
        error, failed = t.take()
        assert error["code"] == code
        assert failed["type"] == "update-save-failed" and failed["requiresNewSnapshot"] is False
    send(s, a.update(snap, 0))
    await bench.settle()
    assert t.types() == ["update-saved"]
    send(s, a.update(snap, 0))  # replay
    await bench.settle()
    error, failed = t.take()
    assert error["code"] == "update-clock-replayed" and failed["snapshotId"] == sid


@pytest.mark.asyncio
async def test_snapshot_rules_answer_what_the_client_misses(bench):
    a, b = Author(generate_id()), None
    s, t = await bench.connect(a.doc_id)
    s1 = a.initial_snapshot()
    send(s, s1)
    for clock in range(2):
        send(s, a.update(s1, clock))
    await bench.settle()
    t.take()
    b = Author(a.doc_id, a.key)
    other, o = await bench.connect(a.doc_id)
    o.take()
    # clocks differ: the updates after the client's clocks
    send(other, b.snapshot(s1, {a.pub: 0}))
    await bench.settle()
    error, failed = o.take()
    assert error["code"] == "snapshot-clocks-differ"
    assert failed["type"] == "snapshot-save-failed" and "snapshot" not in failed
    assert [u["publicData"]["clock"] for u in failed["updates"]] == [1]
    # accepted on the right parent and clocks; then a stale parent: snapshot, updates, chain
    s2 = b.snapshot(s1, {a.pub: 1})
    send(other, s2)
    await bench.settle()
    assert o.types() == ["snapshot-saved"]
    assert t.types() == ["snapshot"]
    send(s, a.snapshot(s1, {a.pub: 1}))
    await bench.settle()
    error, failed = t.take()
    assert error["code"] == "snapshot-parent-not-active"
    assert failed["snapshot"]["publicData"]["snapshotId"] == s2.public_data.snapshot_id
    assert [e["snapshotId"] for e in failed["snapshotProofChain"]] == [s2.public_data.snapshot_id]
    # a snapshot id cannot be reused
    again = b.snapshot(s2, {}, snapshotId=s1.public_data.snapshot_id)
    send(other, again)
    await bench.settle()
    assert o.take()[0]["code"] == "snapshot-id-exists"


@pytest.mark.asyncio
async def test_malformed_wrong_document_and_bad_signature(bench):
    a = Author(generate_id())
    s, t = await bench.connect(a.doc_id)
    t.take()
    snap = a.initial_snapshot()
    send(s, "not json")
    send(s, "[1]")
    elsewhere = Author(generate_id(), a.key, a.keypair)
    send(s, elsewhere.initial_snapshot())
    forged = snap.to_json()
    forged["signature"] = a.initial_snapshot().to_json()["signature"]
    send(s, dumps(forged))
    send(s, dumps(snap.to_json()).replace('"docId":', '"x":"\\ud800","docId":', 1))
    session_binary = b"\x00"
    s.on_binary(session_binary)
    s.on_bad_utf8()
    await bench.settle()
    codes = [f.get("code", f["type"]) for f in t.take()]
    assert codes == [
        "invalid-json",
        "invalid-message",
        "wrong-document",
        "snapshot-save-failed",
        "invalid-signature",
        "snapshot-save-failed",
        "invalid-message",
        "snapshot-save-failed",
        "binary-frame",
        "invalid-utf8",
    ]
    assert await bench.relay.store.count_documents() == 0


@pytest.mark.asyncio
async def test_write_permission_and_policy(bench):
    a = Author(generate_id())
    s, t = await bench.connect(a.doc_id, can_write=False)
    t.take()
    send(s, a.initial_snapshot())
    await bench.settle()
    assert [f.get("code", f["type"]) for f in t.take()] == ["unauthorized", "unauthorized"]
    assert t.closed == (1008, "unauthorized")
    assert await bench.relay.store.count_documents() == 0


@pytest.mark.asyncio
async def test_document_quota(bench):
    a, snap, s, t = await bench.seeded()
    clock = 0
    while True:
        send(s, a.update(snap, clock, b"x" * 8000))
        await bench.settle()
        frames = t.take()
        if frames[0]["type"] != "update-saved":
            break
        clock += 1
    error, failed = frames
    assert error["code"] == "document-too-large"
    assert failed["requiresNewSnapshot"] is True and failed["clock"] == clock
    compacted = a.snapshot(snap, {a.pub: clock - 1}, b"small")
    send(s, compacted)
    send(s, a.update(compacted, 0, b"x" * 8000))
    await bench.settle()
    assert t.types() == ["snapshot-saved", "update-saved"]


@pytest.mark.asyncio
async def test_a_joining_connection_gets_each_message_once(bench):
    """Writes committed while a connection reads its document frame reach it exactly once."""
    a = Author(generate_id())
    s, _ = await bench.connect(a.doc_id)
    snap = a.initial_snapshot()
    send(s, snap)
    await bench.settle()
    store = bench.relay.store
    read, reading, release = store.read_document, asyncio.Event(), asyncio.Event()

    async def held(*args):
        view = await read(*args)  # the view is taken now ...
        reading.set()
        await release.wait()  # ... and handed over after more writes committed
        return view

    store.read_document = held
    joining = asyncio.ensure_future(bench.connect(a.doc_id))
    await reading.wait()
    for clock in range(3):
        send(s, a.update(snap, clock))
    await bench.settle()
    release.set()
    _, t = await joining
    doc, *rest = t.take()
    assert doc["updates"] == []
    assert [f["publicData"]["clock"] for f in rest] == [0, 1, 2]


# ------------------------------------------------------------------------ the rule functions
def state_with(clocks: dict[str, int], stored: int = 0) -> DocumentState:
    return DocumentState(True, SnapshotInfo("S1", "hash", "proof"), dict(clocks), stored)


@pytest.mark.parametrize(
    ("author", "ref", "clock", "stored", "code"),
    [
        ("known", "S1", 5, 0, None),
        ("new", "S1", 0, 0, None),
        ("new", "S1", 1, 0, "update-clock-gap"),
        ("known", "S1", 4, 0, "update-clock-replayed"),
        ("known", "S1", 7, 0, "update-clock-gap"),
        ("known", "S0", 5, 0, "update-wrong-snapshot"),
        ("known", "S1", 5, 995, "document-too-large"),
    ],
)
def test_check_update(author, ref, clock, stored, code):
    known, new = Author("d"), Author("d")
    writer = known if author == "known" else new
    pd = Update.from_json(writer.update(ref, clock).to_json()).public_data
    state = state_with({known.pub: 4}, stored)
    refusal = rules.check_update(state, pd, 10, quota=1000)
    assert (refusal.code if refusal else None) == code
    if refusal is not None:
        assert refusal.requires_new_snapshot == (code == "document-too-large")
    else:
        rules.accept_update(state, pd, 10)
        assert state.clocks[writer.pub] == clock and state.stored_bytes == stored + 10


def test_check_snapshot():
    a = Author("d")
    s1 = a.initial_snapshot()
    first = Snapshot.from_json(s1.to_json()).public_data
    assert rules.check_snapshot(DocumentState(False), first, 10, quota=1000) is None
    state = DocumentState(True)
    rules.accept_snapshot(state, first, "hash-1", 10)
    assert state.active.snapshot_id == first.snapshot_id and state.stored_bytes == 10
    state.clocks = {a.pub: 3}
    good = Snapshot.from_json(a.snapshot(s1, {a.pub: 3}).to_json()).public_data
    stale = Snapshot.from_json(a.snapshot(s1, {a.pub: 2}).to_json()).public_data
    orphan = Snapshot.from_json(a.snapshot(a.initial_snapshot(), {}).to_json()).public_data
    assert rules.check_snapshot(state, good, 10, quota=1000) is None
    refusal = rules.check_snapshot(state, stale, 10, quota=1000)
    assert refusal.code == "snapshot-clocks-differ"
    assert refusal.missing_since == (first.snapshot_id, {a.pub: 2})
    refusal = rules.check_snapshot(state, orphan, 10, quota=1000)
    assert refusal.code == "snapshot-parent-not-active"
    assert refusal.missing_since == (orphan.parent_snapshot_id, None)
    refusal = rules.check_snapshot(state, good, 1001, quota=1000)
    assert refusal.code == "document-too-large" and refusal.missing_since is None
