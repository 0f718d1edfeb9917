"""Issue 13 against a scripted man-in-the-middle relay: a dropped last update of an author
(801 on load and live), an author withheld from one reader but seen by a live collaborator
(806 by heads), a stale snapshot served to a client with remembered state (804), a fork
between two live groups (805, both sides) — and the state file itself."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from pycrdt import Text

from secsync_jupyter import new_document_key
from secsync_jupyter.client import SyncFailed, open_document
from secsync_jupyter.client.heads import HEADS_PREFIX, decode_heads, encode_heads
from secsync_jupyter.client.state_file import StateFileError, load_remembered, save_remembered
from secsync_jupyter.client.ydoc import serialize_updates
from secsync_jupyter.protocol import (
    EphemeralMessage,
    EphemeralSession,
    create_snapshot,
    create_update,
    generate_id,
    snapshot_ciphertext_hash,
)

from .helpers import KEY, A, B, C
from .scripted import Conn, ScriptedRelay
from .test_scripted_relay import Remote, doc_frame, ev
from .util import until

pytestmark = pytest.mark.asyncio

#: short periods so the tests wait little (the defaults are 5 s and 10 s)
FAST = {"heads_grace": 1.0, "heads_interval": 0.5, "awareness": False}


def codes(d):
    return [e.code for e in d.errors]


def update_with_heads(remote: Remote, s: str, clocks: dict[str, int]):
    """``remote``'s next update, whose heads say it had applied ``clocks``."""
    remote.clock += 1
    pd = {
        "docId": remote.doc_id,
        "pubKey": remote.signer.public_key_b64,
        "refSnapshotId": remote.snapshot.public_data.snapshot_id,
        "heads": {"clocks": clocks},
    }
    return create_update(
        serialize_updates([remote.edit(s)]), pd, remote.key, remote.signer, remote.clock
    )


def child_snapshot(remote: Remote, parent, clocks: dict[str, int]):
    """``remote``'s snapshot after ``parent``, recording ``clocks`` of it (as the relay
    requires: every update accepted on the parent)."""
    pd = {
        "docId": remote.doc_id,
        "pubKey": remote.signer.public_key_b64,
        "snapshotId": generate_id(),
        "parentSnapshotId": parent.public_data.snapshot_id,
        "parentSnapshotUpdateClocks": clocks,
    }
    snap = create_snapshot(
        remote.doc.get_update(),
        pd,
        remote.key,
        remote.signer,
        snapshot_ciphertext_hash(parent),
        parent.public_data.parent_snapshot_proof,
    )
    remote.snapshot, remote.clock = snap, -1
    return snap


def chain_entry(snapshot):
    return {
        "snapshotId": snapshot.public_data.snapshot_id,
        "snapshotCiphertextHash": snapshot_ciphertext_hash(snapshot),
        "parentSnapshotProof": snapshot.public_data.parent_snapshot_proof,
    }


class Peer:
    """A live collaborator played by the test: its own ephemeral session through the relay."""

    def __init__(self, doc_id: str, signer):
        self.session = EphemeralSession(doc_id, KEY, signer)

    async def handshake(self, conn: Conn) -> None:
        await conn.send({**self.session.initialize().to_json(), "type": "ephemeral-message"})
        while True:  # the client answers with proofAndRequestProof (after its initialize)
            frame = await conn.recv("ephemeral")
            result = self.session.receive(EphemeralMessage.from_json(frame))
            if result.reply is not None:
                await conn.send({**result.reply.to_json(), "type": "ephemeral-message"})
            if self.session.peers and any(
                p.session_id is not None for p in self.session.peers.values()
            ):
                return

    async def send_heads(self, conn: Conn, content: bytes) -> None:
        await conn.send({**self.session.create(content).to_json(), "type": "ephemeral-message"})


# ----------------------------------------------------------------- 801: dropped last update


async def test_dropped_last_update_detected_on_load_and_live():
    doc_id = generate_id()
    b, c = Remote(doc_id, B), Remote(doc_id, C)
    b.edit("base;")
    s1 = b.make_snapshot()
    c.snapshot, c.doc = s1, b.doc  # C writes on the same snapshot and content
    c.text = b.text
    b0 = b.make_update("b0;")
    b.make_update("b1;")  # dropped by the relay
    c0 = update_with_heads(c, "c0;", {B.public_key_b64: 1})
    # live: B's clock 2 dropped, C's next update names it
    b.make_update("b2;")
    c1 = update_with_heads(c, "c1;", {B.public_key_b64: 2})

    async def script(conn: Conn):
        if conn.index == 0:
            await conn.send(doc_frame(s1, [b0, c0]))  # on load: b1 missing, c0 names it
        else:
            assert conn.query["mode"] == "complete"  # asks for every update again
            await conn.send(doc_frame(s1, [b0, c0]))  # still without: 803
            await conn.send(ev(c1))  # live: b2 missing, c1 names it (asked for once more)

    async with ScriptedRelay(script) as relay:
        d = await open_document(relay.url, doc_id, KEY, signing_key=A, **FAST)
        try:
            await until(lambda: "SECSYNC_ERROR_803" in codes(d), d)
            await until(lambda: codes(d).count("SECSYNC_ERROR_801") == 2, d)
            kinds = [k for k, _ in d.alerts]
            assert kinds[:2] == ["withheld", "served-incompletely"]
            assert d.alerts[0][1]["authors"] == [B.public_key_b64]
            assert kinds[-1] == "withheld" and d.alerts[-1][1]["missing"] == [[B.public_key_b64, 2]]
            assert d.document_state == "complete"  # the verified content is kept
            # (C's edits depend on B's missing one: Yjs keeps them pending)
            assert str(d.doc.get("content", type=Text)) == "base;b0;"
        finally:
            await d.close(wait_synced=False)


# ------------------------------------------------------------- 806: withheld, seen by a peer


async def test_withheld_author_detected_live_by_a_collaborators_heads():
    doc_id = generate_id()
    b = Remote(doc_id, B)
    b.edit("base;")
    s1 = b.make_snapshot()
    peer = Peer(doc_id, C)
    sid = s1.public_data.snapshot_id
    released = asyncio.Event()
    own: list = []  # the client's heads, as C reads them

    async def script(conn: Conn):
        await conn.send(doc_frame(s1, []))
        await peer.handshake(conn)
        # C has seen B's updates 0..3; the relay delivers none of them to this client
        await peer.send_heads(conn, encode_heads(sid, [], {B.public_key_b64: 3}, None))
        while not released.is_set():
            try:
                frame = await conn.recv("ephemeral", timeout=0.5)
            except asyncio.TimeoutError:
                continue
            result = peer.session.receive(EphemeralMessage.from_json(frame))
            if result.content is not None and result.content.startswith(HEADS_PREFIX):
                own.append(decode_heads(result.content))

    async with ScriptedRelay(script) as relay:
        d = await open_document(relay.url, doc_id, KEY, signing_key=A, **FAST)
        try:
            await until(lambda: "SECSYNC_ERROR_806" in codes(d), d)
            (alert,) = [a for a in d.alerts if a[0] == "heads-withheld"]
            assert alert[1]["seen_by"] == C.public_key_b64
            assert alert[1]["missing"] == [[B.public_key_b64, 3]]
            assert f"has not delivered 4 updates from {B.public_key_b64}" in alert[1]["detail"]
            assert d.peer_heads[C.public_key_b64].snapshot_id == sid
            assert d.seen_by == {C.public_key_b64: True}  # we wrote nothing C has not seen
            # the client's own heads reach C, signed and encrypted like presence
            await until(lambda: bool(own), d)
            assert own[-1].snapshot_id == sid and own[-1].clocks == {}
        finally:
            released.set()
            await d.close(wait_synced=False)


async def test_no_report_when_the_relay_delivers_within_the_grace_period():
    doc_id = generate_id()
    b = Remote(doc_id, B)
    b.edit("base;")
    s1 = b.make_snapshot()
    peer = Peer(doc_id, C)
    sid = s1.public_data.snapshot_id
    done = asyncio.Event()
    updates = [b.make_update(f"u{i};") for i in range(3)]

    async def script(conn: Conn):
        await conn.send(doc_frame(s1, []))
        await peer.handshake(conn)
        await peer.send_heads(conn, encode_heads(sid, [], {B.public_key_b64: 2}, None))
        for u in updates:  # late, but within the grace period
            await conn.send(ev(u))
        await done.wait()

    async with ScriptedRelay(script) as relay:
        d = await open_document(relay.url, doc_id, KEY, signing_key=A, **FAST)
        try:
            await until(lambda: "u2;" in str(d.doc.get("content", type=Text)), d)
            # claims are settled at the next ticks: wait until none is open any more
            await until(lambda: not d.engine.claims, d, timeout=10)
            assert codes(d) == [] and d.alerts == []
        finally:
            done.set()
            await d.close(wait_synced=False)


# ------------------------------------------------------------------ 805: two live groups


async def test_fork_between_two_live_groups_both_detect_it():
    """The relay shows client A one history (s1a after s0) and client B another (s1b after
    s0), and forwards their ephemeral messages: each sees the other on a snapshot not in its
    chain, and its own not in the other's: 805 on both sides."""
    doc_id = generate_id()
    r = Remote(doc_id, C)
    r.edit("base;")
    s0 = r.make_snapshot()
    r.edit("group a;")
    s1a = r.make_snapshot(parent=s0)
    r.edit("group b;")
    s1b = r.make_snapshot(parent=s0)
    conns: dict[int, Conn] = {}
    ready = asyncio.Event()
    done = asyncio.Event()

    async def script(conn: Conn):
        conns[conn.index] = conn
        await conn.send(doc_frame(s1a if conn.index == 0 else s1b, []))
        if len(conns) == 2:
            ready.set()
        await ready.wait()
        other = conns[1 - conn.index]
        while not done.is_set():  # forward this client's ephemeral messages to the other
            try:
                frame = await conn.recv("ephemeral", timeout=0.5)
            except asyncio.TimeoutError:
                continue
            await other.send({**frame, "type": "ephemeral-message"})

    async with ScriptedRelay(script) as relay:
        a = await open_document(relay.url, doc_id, KEY, signing_key=A, **FAST)
        b = await open_document(relay.url, doc_id, KEY, signing_key=B, **FAST)
        try:
            await until(
                lambda: "SECSYNC_ERROR_805" in codes(a) and "SECSYNC_ERROR_805" in codes(b), a, b
            )
            (fa,) = [x for x in a.alerts if x[0] == "fork"]
            (fb,) = [x for x in b.alerts if x[0] == "fork"]
            assert fa[1]["peer"] == B.public_key_b64 and fb[1]["peer"] == A.public_key_b64
            assert s1b.public_data.snapshot_id in fa[1]["detail"]
            assert s1a.public_data.snapshot_id in fb[1]["detail"]
            assert "SECSYNC_ERROR_806" not in codes(a) + codes(b)
        finally:
            done.set()
            await a.close(wait_synced=False)
            await b.close(wait_synced=False)


# --------------------------------------------------------------- 804: remembered state


async def test_stale_snapshot_served_to_a_client_with_remembered_state(tmp_path):
    state = tmp_path / "state.json"
    doc_id = generate_id()
    b = Remote(doc_id, B)
    b.edit("one;")
    s0 = b.make_snapshot()
    u0 = b.make_update("two;")
    u1 = b.make_update("three;")
    b.edit("four;")
    s1 = child_snapshot(b, s0, {B.public_key_b64: 1})
    b2 = b.make_update("five;")  # on s1
    plan: list = []

    async def script(conn: Conn):
        await conn.send(plan.pop(0)(conn))

    async with ScriptedRelay(script) as relay:

        async def load(**kw):
            return await open_document(
                relay.url, doc_id, KEY, signing_key=A, state_file=state, **FAST, **kw
            )

        # 1. the first load: s0 with two updates, remembered
        plan.append(lambda conn: doc_frame(s0, [u0, u1]))
        d = await load()
        await d.close()
        mem = load_remembered(state, doc_id)
        assert mem["snapshot"]["snapshotId"] == s0.public_data.snapshot_id
        assert mem["snapshot"]["updateClocks"] == {B.public_key_b64: 1}
        assert os.stat(state).st_mode & 0o777 == 0o600

        # 2. s0 again with one update dropped: fewer updates than verified before
        def stale(conn):
            assert conn.query["knownSnapshotId"] == s0.public_data.snapshot_id
            assert conn.query["mode"] == "complete"
            return doc_frame(s0, [u0])

        plan.append(stale)
        with pytest.raises(SyncFailed) as info:
            await load()
        assert info.value.code == "SECSYNC_ERROR_804"
        assert load_remembered(state, doc_id) == mem  # the newer state stays remembered

        # 3. the legitimate successor, with its proof chain: loads, and is remembered
        plan.append(lambda conn: doc_frame(s1, [b2], [chain_entry(s1)]))
        d = await load()
        assert codes(d) == [] and str(d.doc.get("content", type=Text)) == b.text.to_py()
        await d.close()
        assert load_remembered(state, doc_id)["snapshot"]["snapshotId"] == (
            s1.public_data.snapshot_id
        )

        # 4. rolled back to s0 (older snapshot, no chain from s1): 804
        plan.append(lambda conn: doc_frame(s0, [u0, u1]))
        with pytest.raises(SyncFailed) as info:
            await load()
        assert info.value.code == "SECSYNC_ERROR_804"
        assert "does not descend" in str(info.value)

        # 5. a successor of s1 that forgets the update on s1 it was built on: 804
        b.edit("six;")
        s2 = b.make_snapshot(parent=s1)  # parentSnapshotUpdateClocks: {} (b2 left out)
        plan.append(lambda conn: doc_frame(s2, [], [chain_entry(s2)]))
        with pytest.raises(SyncFailed) as info:
            await load()
        assert info.value.code == "SECSYNC_ERROR_804"
        assert "records fewer updates" in str(info.value)


async def test_state_file_is_checked_and_keeps_other_documents(tmp_path):
    path = tmp_path / "state.json"
    save_remembered(path, "doc-1", {"snapshot": None, "logHead": None})
    save_remembered(path, "doc-2", {"snapshot": None, "logHead": None})
    assert set(json.loads(path.read_text())["documents"]) == {"doc-1", "doc-2"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="not JSON"):
        load_remembered(path, "doc-1")
    with pytest.raises(StateFileError):  # never overwritten when not understood
        save_remembered(path, "doc-1", {"snapshot": None, "logHead": None})
    assert path.read_text() == "{not json"
    # a damaged file or entry does not lock the user out: test_remembered_damaged.py (807)


# ------------------------------------------------------------------------ CLI --state


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    from .conftest import Relay

    relay = Relay("ours", tmp_path_factory.mktemp("heads-cli-relay"))
    yield relay
    relay.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_cli_state_option_remembers_and_checks(ours, tmp_path, capsys):
    import nbformat

    from secsync_jupyter.cli import main

    src = tmp_path / "in.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), src)
    state = tmp_path / "state.json"

    def run(*argv):  # the CLI runs its own event loop: off this test's loop
        return asyncio.get_running_loop().run_in_executor(None, main, list(argv))

    assert await run("import", str(src), ours.url, "--state", str(state)) == 0
    link = capsys.readouterr().out.strip()
    assert await run("cat", link, "--state", str(state)) == 0
    assert "x = 1" in capsys.readouterr().out
    (doc_id,) = json.loads(state.read_text())["documents"]
    mem = load_remembered(state, doc_id)
    assert mem["snapshot"] is not None and mem["logHead"]["seq"] == 0 and len(mem["log"]) == 1
    state.write_text("[]")  # not a state file: a one-line error, nothing overwritten
    assert await run("cat", link, "--state", str(state)) == 1
    assert "not a secsync-jupyter state file" in capsys.readouterr().err
    assert state.read_text() == "[]"


async def test_heads_messages_round_trip_and_malformed_ones_are_refused():
    from secsync_jupyter.protocol.membership import LogHead

    head = LogHead(3, "A" * 43)
    content = encode_heads("s2", ["s0", "s1", "s2"], {B.public_key_b64: 4}, head)
    assert content.startswith(HEADS_PREFIX) and content[0] == 0  # an empty awareness update
    parsed = decode_heads(content)
    assert (parsed.snapshot_id, parsed.chain, parsed.clocks, parsed.log) == (
        "s2",
        ("s0", "s1"),
        {B.public_key_b64: 4},
        head,
    )
    many = {f"k{i:03}": i for i in range(100)}  # at most 64 clocks: the highest
    assert set(decode_heads(encode_heads("s", [], many, None)).clocks) == {
        f"k{i:03}" for i in range(36, 100)
    }
    for body in (
        b"[]",
        b"{",
        b'{"snapshotId": ""}',
        b'{"snapshotId": "s", "chain": "x"}',
        b'{"snapshotId": "s", "chain": ' + json.dumps(["c"] * 17).encode() + b"}",
        b'{"snapshotId": "s", "clocks": {"a": -1}}',
        b'{"snapshotId": "s", "clocks": {"a": 1.5}}',
        b'{"snapshotId": "s", "log": {"seq": 1}}',
        b"\xff",
        b'{"snapshotId": "s", "x": "' + b"y" * 20000 + b'"}',
    ):
        with pytest.raises(ValueError):
            decode_heads(HEADS_PREFIX + body)


@pytest.mark.asyncio(loop_scope="function")
async def test_reference_client_reads_and_writes_documents_with_heads(ours, ref_client):
    """Issue 13: updates carrying causal heads in their signed public data (written here by
    opting in, in a document without a membership log — the kind the reference client can
    open) are read and extended by the reference 0.5.0 client once it declares the field
    through its own option for application public data, and we read its updates. Without
    the declaration the reference client refuses them (212): why heads stay off by default
    in documents without a log. (The reference relay, undeclared, refuses them too —
    update-save-failed — so this runs on ours.)"""
    doc_id, key = f"doc-{generate_id()}", new_document_key()  # no leading "-" for the CLI
    async with open_document(ours.url, doc_id, key) as a:
        a.engine.write_heads = True
        sent: list[dict] = []
        send = a.engine._send

        def record(message, extra=None):
            wire = message.to_json() if hasattr(message, "to_json") else {}
            if isinstance(wire, dict) and isinstance(wire.get("publicData"), dict):
                sent.append(wire["publicData"])
            return send(message, extra)

        a.engine._send = record
        t = a.doc.get("content", type=Text)
        t += "one;"
        await a.synced(10)
        code, _, err = await ref_client(ours.url, doc_id, key.hex(), "--yjs-v1", "--insert", "ref;")
        assert code == 0, err
        await until(lambda: str(t) == "one;ref;", a)
        t += "two;"
        await a.synced(10)
        # our update after the reference client's names its clock in heads
        heads = [pd["heads"] for pd in sent if "heads" in pd]
        assert len(heads) == 1 and list(heads[0]) == ["clocks"], sent
        (ref_key,) = heads[0]["clocks"]
        assert ref_key != a.engine.pub_key and heads[0]["clocks"][ref_key] >= 0
        code, out, err = await ref_client(ours.url, doc_id, key.hex(), "--yjs-v1", "--read")
        assert code == 3 and "SECSYNC_ERROR_212" in err, (code, out, err)
        code, out, err = await ref_client(
            ours.url, doc_id, key.hex(), "--yjs-v1", "--read", declare_heads=True
        )
        assert code == 0, err
        assert out.strip() == "one;ref;two;"
        code, _, err = await ref_client(
            ours.url,
            doc_id,
            key.hex(),
            "--yjs-v1",
            "--insert",
            "ref2;",
            "--snapshot-after",
            declare_heads=True,
        )
        assert code == 0, err
        await until(lambda: str(t) == "one;ref;two;ref2;", a)
        assert not a.errors, a.errors
    async with open_document(ours.url, doc_id, key) as b:
        assert str(b.doc.get("content", type=Text)) == "one;ref;two;ref2;"
