"""The client against real relays on loopback (the reference relay, and ours when present)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from pycrdt import Text

from secsync_jupyter import new_document_key, open_document, open_notebook
from secsync_jupyter.client import SyncFailed
from secsync_jupyter.protocol import SigningKeyPair, generate_id

from .util import until

pytestmark = pytest.mark.asyncio


def _cells(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


async def test_two_clients_edit_one_notebook_concurrently(relay):
    doc_id, key = generate_id(), new_document_key()
    async with open_notebook(relay.url, doc_id, key) as a:
        a.add_markdown_cell("# Title")
        await a.synced(10)
        async with open_notebook(relay.url, doc_id, key) as b:
            assert _cells(b) == [("markdown", "# Title")]
            changes = []
            b.on_change(changes.append)
            for i in range(5):
                a.add_code_cell(f"a = {i}")
                b.add_code_cell(f"b = {i}")
                b.cells[0].source = f"# Title {i}"
            await asyncio.gather(a.synced(10), b.synced(10))
            await until(lambda: a.to_dict() == b.to_dict() and len(a.cells) == 11, a, b)
            assert changes
            assert sorted(s for _, s in _cells(a) if s.startswith("a =")) == [
                f"a = {i}" for i in range(5)
            ]
            assert a.cells[0].source == b.cells[0].source
            assert a.errors == [] and b.errors == []


async def test_five_clients_converge(relay):
    doc_id, key = generate_id(), new_document_key()
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_document(relay.url, doc_id, key))
        first.doc.get("content", type=Text).insert(0, "start;")
        await first.synced(10)
        docs = [first] + [
            await stack.enter_async_context(open_document(relay.url, doc_id, key)) for _ in range(4)
        ]
        texts = [d.doc.get("content", type=Text) for d in docs]
        for round_ in range(4):
            for i, t in enumerate(texts):
                t += f"{i}.{round_};"
        await asyncio.gather(*(d.synced(15) for d in docs))
        await until(
            lambda: len({str(t) for t in texts}) == 1 and str(texts[0]).count(";") == 21, *docs
        )
        final = str(texts[0])
        for i in range(5):
            for round_ in range(4):
                assert f"{i}.{round_};" in final


async def test_offline_client_catches_up_in_delta_mode(relay):
    doc_id, key = generate_id(), new_document_key()
    async with (
        open_document(relay.url, doc_id, key) as a,
        open_document(relay.url, doc_id, key) as b,
    ):
        ta, tb = a.doc.get("content", type=Text), b.doc.get("content", type=Text)
        ta += "base;"
        await a.synced(10)
        await until(lambda: str(tb) == "base;", b)
        # b goes offline: its relay disappears (connection refused) until we bring it back
        good_url = b.relay_url
        b.relay_url = "ws://127.0.0.1:9"
        b.reconnect()
        await until(lambda: b.state != "connected", b)
        tb += "offline-b;"
        for i in range(3):
            ta += f"a{i};"
            await a.synced(10)
        assert "a0;" not in str(tb)
        b.relay_url = good_url
        b.reconnect()
        await b.synced(15)
        assert "mode=delta" in b.last_url and "knownSnapshotId=" in b.last_url
        assert b.engine.last_document["snapshot"] is False  # same snapshot: only new updates
        assert b.engine.last_document["updates"] == 3
        await until(lambda: str(ta) == str(tb), a, b)
        assert "offline-b;" in str(ta) and "a2;" in str(tb)


async def test_concurrent_snapshots_resolve(relay):
    doc_id, key = generate_id(), new_document_key()
    async with open_document(relay.url, doc_id, key) as a:
        ta = a.doc.get("content", type=Text)
        ta += "x"
        await a.synced(10)
        async with open_document(relay.url, doc_id, key) as b:
            tb = b.doc.get("content", type=Text)
            ta += "A"
            tb += "B"
            ids = await asyncio.gather(a.create_snapshot(15), b.create_snapshot(15))
            assert all(ids)
            await asyncio.gather(a.synced(10), b.synced(10))
            await until(
                lambda: (
                    a.engine.active.snapshot_id == b.engine.active.snapshot_id
                    and str(ta) == str(tb)
                ),
                a,
                b,
            )
            assert sorted(str(ta)) == sorted("xAB")
            assert a.errors == [] and b.errors == []


async def test_concurrent_initial_snapshots_resolve(relay):
    doc_id, key = generate_id(), new_document_key()
    async with (
        open_document(relay.url, doc_id, key) as a,
        open_document(relay.url, doc_id, key) as b,
    ):
        a.doc.get("content", type=Text).insert(0, "from a;")
        b.doc.get("content", type=Text).insert(0, "from b;")
        await asyncio.gather(a.synced(15), b.synced(15))
        ta, tb = a.doc.get("content", type=Text), b.doc.get("content", type=Text)
        await until(lambda: str(ta) == str(tb) and len(str(ta)) == 14, a, b, what="same text")
        # one initial snapshot won, both clients are on it, and neither edit was lost
        assert sorted([str(ta)[:7], str(ta)[7:]]) == ["from a;", "from b;"]
        assert a.engine.active.snapshot_id == b.engine.active.snapshot_id
        assert a.state == b.state == "connected"
        assert a.errors == [] and b.errors == []
    # what the relay stores is that same document: a fresh client loads it
    async with open_document(relay.url, doc_id, key) as c:
        assert str(c.doc.get("content", type=Text)) == str(ta)


async def test_wrong_key_fails_with_101(relay):
    doc_id, key = generate_id(), new_document_key()
    async with open_document(relay.url, doc_id, key) as a:
        a.doc.get("content", type=Text).insert(0, "secret")
        await a.synced(10)
    with pytest.raises(SyncFailed) as info:
        async with open_document(relay.url, doc_id, new_document_key()):
            pass
    assert info.value.code == "SECSYNC_ERROR_101"
    d = await _open_quietly(relay.url, doc_id, new_document_key())
    assert d.state == "failed" and d.document_state == "failed"
    assert str(d.doc.get("content", type=Text)) == ""


async def _open_quietly(url, doc_id, key):
    opener = open_document(url, doc_id, key)
    doc = opener._factory()
    await doc.start(wait=False)
    with contextlib.suppress(SyncFailed):
        await doc.loaded(10)
    await doc.close(wait_synced=False)
    return doc


async def test_awareness_states_arrive_and_are_removed_on_disconnect(relay):
    doc_id, key = generate_id(), new_document_key()
    ka, kb = SigningKeyPair.generate(), SigningKeyPair.generate()
    async with open_notebook(relay.url, doc_id, key, signing_key=ka, user={"name": "Ada"}) as a:
        a.add_code_cell("1")
        await a.synced(10)
        b = await open_notebook(relay.url, doc_id, key, signing_key=kb, user={"name": "Bob"})
        try:
            await until(lambda: len(a.collaborators) == 2 and len(b.collaborators) == 2, a, b)
            them = next(c for c in a.collaborators if not c.is_self)
            assert them.pub_key == kb.public_key_b64 and them.name == "Bob"
            assert len(them.fingerprint) == 19
            me = next(c for c in b.collaborators if not c.is_self)
            assert me.pub_key == ka.public_key_b64 and me.name == "Ada"
        finally:
            await b.close()
        await until(lambda: len(a.collaborators) == 1, a)
        assert a.document.ephemeral_errors == []


async def test_no_access_and_unauthorized(relay):
    if relay.kind == "ours":
        # an --open relay accepts any sessionKey and creates unknown documents
        async with open_document(
            relay.url, generate_id(), new_document_key(), session_key="x"
        ) as d:
            assert d.state == "connected" and d.engine.active is None
        return
    # the reference harness hooks: notfound-… ids and sessionKey=unauthorized
    with pytest.raises(SyncFailed, match="no access"):
        async with open_document(relay.url, "notfound-" + generate_id(), new_document_key()):
            pass
    with pytest.raises(SyncFailed, match="no access"):
        async with open_document(
            relay.url, generate_id(), new_document_key(), session_key="unauthorized"
        ):
            pass


async def test_reference_client_reads_and_writes_our_documents(relay, ref_client):
    """Interop: the reference 0.5.0 client (Yjs v1 mode) and ours read each other's edits."""
    doc_id, key = f"doc-{generate_id()}", new_document_key()  # no leading "-" for the CLI
    async with open_document(relay.url, doc_id, key) as a:
        t = a.doc.get("content", type=Text)
        t += "from python;"
        await a.synced(10)
        code, out, err = await ref_client(relay.url, doc_id, key.hex(), "--yjs-v1", "--read")
        assert code == 0, err
        assert out.strip() == "from python;"
        code, out, err = await ref_client(
            relay.url, doc_id, key.hex(), "--yjs-v1", "--insert", "from js;", "--snapshot-after"
        )
        assert code == 0, err
        await until(lambda: str(t) == "from python;from js;", a)
    # a fresh Python client loads the reference client's snapshot + updates
    async with open_document(relay.url, doc_id, key) as b:
        assert str(b.doc.get("content", type=Text)) == "from python;from js;"


async def test_we_read_a_document_made_by_the_reference_client(relay, ref_client):
    doc_id, key = f"doc-{generate_id()}", new_document_key()  # no leading "-" for the CLI
    code, _, err = await ref_client(relay.url, doc_id, key.hex(), "--yjs-v1", "--edits", "4")
    assert code == 0, err
    async with open_document(relay.url, doc_id, key) as b:
        text = b.doc.get("content", type=Text)
        assert str(text) == "edit-0 edit-1 edit-2 edit-3 "
        text += "py"
        await b.synced(10)
    code, out, err = await ref_client(relay.url, doc_id, key.hex(), "--yjs-v1", "--read")
    assert code == 0 and out.strip() == "edit-0 edit-1 edit-2 edit-3 py", err


async def test_a_frame_over_max_frame_bytes_fails_clearly(relay):
    doc_id, key = generate_id(), new_document_key()
    async with open_document(relay.url, doc_id, key) as a:
        a.doc.get("content", type=Text).insert(0, "x" * 300_000)
        await a.synced(15)
    assert a.max_frame_bytes == 256 * 1024 * 1024  # the default
    # the relay's document frame (> 400 KB of base64 ciphertext) is over a 100 KB limit
    opener = open_document(relay.url, doc_id, key, max_frame_bytes=100_000)
    d = opener._factory()
    await d.start(wait=False)
    try:
        with pytest.raises(SyncFailed, match=r"larger than max_frame_bytes \(100,000 bytes\)"):
            await d.loaded(30)
        assert d.state == "failed" and d.connections == 1  # failed at once, not retried
        assert str(d.doc.get("content", type=Text)) == ""
    finally:
        await d.close(wait_synced=False)
    async with open_document(relay.url, doc_id, key, max_frame_bytes=1_000_000) as b:
        assert str(b.doc.get("content", type=Text)) == "x" * 300_000


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1000"])
async def test_max_frame_bytes_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="max_frame_bytes"):
        open_document(
            "ws://127.0.0.1:1", generate_id(), new_document_key(), max_frame_bytes=bad
        )._factory()
