"""The asyncio client against a scripted fake relay: states, reconnect-and-reload, backoff,
and bad input from a malicious relay (garbage frames, replays, reordered updates, a snapshot
from another document) — rejected with the right code, the local document intact."""

from __future__ import annotations

import asyncio

import pytest
from pycrdt import Doc, Text

from secsync_jupyter.client import SecsyncDocument, SyncFailed, backoff_delay, open_document
from secsync_jupyter.client.ydoc import serialize_updates
from secsync_jupyter.protocol import (
    create_initial_snapshot,
    create_snapshot,
    create_update,
    generate_id,
    snapshot_ciphertext_hash,
)

from .helpers import KEY, WRONG_KEY, A, B
from .scripted import Conn, ScriptedRelay
from .util import until

pytestmark = pytest.mark.asyncio


class Remote:
    """Another client's Yjs document, producing signed messages for the scripted relay."""

    def __init__(self, doc_id: str, signer=B, key=KEY):
        self.doc_id, self.signer, self.key = doc_id, signer, key
        self.doc = Doc()
        self.text = self.doc.get("content", type=Text)
        self.clock = -1
        self.snapshot = None

    def edit(self, s: str) -> bytes:
        updates: list[bytes] = []
        sub = self.doc.observe(lambda e: updates.append(e.update))
        self.text += s
        self.doc.unobserve(sub)
        return updates[0]

    def make_snapshot(self, *, doc_id=None, parent=None, key=None):
        pd = {
            "docId": doc_id or self.doc_id,
            "pubKey": self.signer.public_key_b64,
            "snapshotId": generate_id(),
        }
        content = self.doc.get_update()
        if parent is None:
            snap = create_initial_snapshot(content, pd, key or self.key, self.signer)
        else:
            pd["parentSnapshotId"] = parent.public_data.snapshot_id
            pd["parentSnapshotUpdateClocks"] = {}
            snap = create_snapshot(
                content,
                pd,
                key or self.key,
                self.signer,
                snapshot_ciphertext_hash(parent),
                parent.public_data.parent_snapshot_proof,
            )
        self.snapshot, self.clock = snap, -1
        return snap

    def make_update(self, s: str, *, clock=None, doc_id=None):
        self.clock = self.clock + 1 if clock is None else clock
        pd = {
            "docId": doc_id or self.doc_id,
            "pubKey": self.signer.public_key_b64,
            "refSnapshotId": self.snapshot.public_data.snapshot_id,
        }
        return create_update(
            serialize_updates([self.edit(s)]), pd, self.key, self.signer, self.clock
        )


def doc_frame(snapshot=None, updates=(), chain=None):
    frame = {"type": "document", "updates": [u.to_json() for u in updates]}
    if snapshot is not None:
        frame["snapshot"] = snapshot.to_json()
    if chain is not None:
        frame["snapshotProofChain"] = chain
    return frame


def ev(update):
    return {**update.to_json(), "type": "update"}


async def test_states_and_first_snapshot_through_the_driver():
    doc_id = generate_id()
    seen_states = []

    async def script(conn: Conn):
        assert conn.query["mode"] == "complete" and conn.query["sessionKey"] == "sk"
        await conn.send(doc_frame())
        snap = await conn.recv("snapshot")
        assert snap["publicData"]["parentSnapshotId"] == ""
        await conn.send({"type": "snapshot-saved", "snapshotId": snap["publicData"]["snapshotId"]})

    async with ScriptedRelay(script) as relay:
        d = SecsyncDocument(relay.url, doc_id, KEY, signing_key=A, session_key="sk")
        d.add_listener(lambda: seen_states.append((d.state, d.document_state)))
        await d.start()
        d.doc.get("content", type=Text).insert(0, "hello")
        await d.synced(5)
        await d.close()
    assert ("connecting", "pending") in seen_states
    assert ("connected", "complete") in seen_states
    assert d.state == "closed"


async def test_reconnect_and_reload_after_a_snapshot_that_is_not_a_child():
    doc_id = generate_id()
    remote = Remote(doc_id)
    remote.edit("one;")
    s1 = remote.make_snapshot()
    u1 = remote.make_update("two;")
    remote.edit("three;")
    s2 = remote.make_snapshot(parent=s1)

    async def script(conn: Conn):
        if conn.index == 0:
            await conn.send(doc_frame(s1, [u1]))
            unrelated = Remote(doc_id)
            unrelated.edit("evil")
            await conn.send({"type": "snapshot", "snapshot": unrelated.make_snapshot().to_json()})
        else:
            assert conn.query["mode"] == "delta"
            assert conn.query["knownSnapshotId"] == s1.public_data.snapshot_id
            assert conn.query["knownSnapshotUpdateClocks"] == f'{{"{B.public_key_b64}":0}}'
            chain = [
                {
                    "snapshotId": s2.public_data.snapshot_id,
                    "snapshotCiphertextHash": snapshot_ciphertext_hash(s2),
                    "parentSnapshotProof": s2.public_data.parent_snapshot_proof,
                }
            ]
            await conn.send(doc_frame(s2, [], chain))

    async with ScriptedRelay(script) as relay, open_document(relay.url, doc_id, KEY) as d:
        text = d.doc.get("content", type=Text)
        await until(
            lambda: d.connections == 2 and d.document_state == "complete" and "three" in str(text),
            d,
        )
        assert str(text) == "one;two;three;"
        assert [e.code for e in d.errors] == ["SECSYNC_ERROR_112"]


async def test_reconnect_with_backoff_keeps_offline_changes():
    doc_id = generate_id()
    remote = Remote(doc_id)
    remote.edit("base;")
    s1 = remote.make_snapshot()
    got = asyncio.get_running_loop().create_future()

    async def script(conn: Conn):
        if conn.index == 0:
            await conn.send(doc_frame(s1))
            await conn.ws.close()
        elif conn.index == 1:
            await conn.ws.close()  # a flaky relay: closes again at once
        else:
            await conn.send(doc_frame())
            upd = await conn.recv("update")
            got.set_result(upd)
            await conn.send(
                {"type": "update-saved", "snapshotId": s1.public_data.snapshot_id, "clock": 0}
            )

    async with ScriptedRelay(script) as relay:
        d = SecsyncDocument(relay.url, doc_id, KEY)
        await d.start()
        d.doc.get("content", type=Text).insert(5, "offline;")
        upd = await asyncio.wait_for(got, 10)
        assert upd["publicData"]["clock"] == 0
        await d.synced(5)
        assert d.connections == 3
        await d.close()
    assert [round(backoff_delay(n), 3) for n in range(3)] == [0.1, 0.18, 0.324]
    assert backoff_delay(50) == 10.0  # the cap both clients use (issue 10)


async def test_relay_refusals_stop_the_client():
    async def script(conn: Conn):
        await conn.send({"type": "unauthorized"})

    async with ScriptedRelay(script) as relay:
        with pytest.raises(SyncFailed, match="no access"):
            async with open_document(relay.url, generate_id(), KEY):
                pass
        assert len(relay.connections) == 1  # no reconnect


async def test_malicious_relay_input_is_rejected_and_the_document_is_intact():
    doc_id = generate_id()
    remote = Remote(doc_id)
    remote.edit("ok;")
    s1 = remote.make_snapshot()
    u0 = remote.make_update("u0;")
    u1 = remote.make_update("u1;")
    u2 = remote.make_update("u2;")
    other_doc = Remote("another-document")
    other_doc.edit("foreign")
    foreign = other_doc.make_snapshot()
    done = asyncio.Event()

    async def script(conn: Conn):
        await conn.send(doc_frame(s1, [u0]))
        await conn.send("this is not json")
        await conn.send("[1, 2, 3]")
        await conn.send({"type": "update", "publicData": "garbage"})
        await conn.send(ev(u0))  # replay
        await conn.send(ev(u2))  # reordered: u2 before u1 -> clock gap
        done.set()

    async with ScriptedRelay(script) as relay:
        d = SecsyncDocument(relay.url, doc_id, KEY)
        await d.start(wait=False)
        await until(lambda: d.state == "failed", d)
        assert str(d.doc.get("content", type=Text)) == "ok;u0;"
        codes = [e.code for e in d.errors]
        assert codes[0] == "SECSYNC_ERROR_202"  # the gap fails the document, nothing applied
        assert "SECSYNC_ERROR_214" in codes and "SECSYNC_ERROR_211" in codes
        assert codes.count(None) == 2  # the two non-object frames
        await d.close()

    async def script2(conn: Conn):
        await conn.send(doc_frame(s1, [u0]))
        await conn.send({"type": "snapshot", "snapshot": foreign.to_json()})
        await conn.send(ev(u1))

    async with ScriptedRelay(script2) as relay, open_document(relay.url, doc_id, KEY) as d:
        text = d.doc.get("content", type=Text)
        await until(lambda: "u1" in str(text), d)
        assert str(text) == "ok;u0;u1;"
        assert [e.code for e in d.errors] == ["SECSYNC_ERROR_113"]


async def test_a_snapshot_from_another_document_on_load_fails_113():
    other = Remote("another-document")
    other.edit("foreign")
    snap = other.make_snapshot()

    async def script(conn: Conn):
        await conn.send(doc_frame(snap))

    async with ScriptedRelay(script) as relay:
        with pytest.raises(SyncFailed) as info:
            async with open_document(relay.url, generate_id(), KEY):
                pass
        assert info.value.code == "SECSYNC_ERROR_113"


async def test_wrong_key_gives_failed_101_without_touching_the_document():
    doc_id = generate_id()
    remote = Remote(doc_id, key=WRONG_KEY)
    remote.edit("secret")
    snap = remote.make_snapshot()

    async def script(conn: Conn):
        await conn.send(doc_frame(snap))

    async with ScriptedRelay(script) as relay:
        d = SecsyncDocument(relay.url, doc_id, KEY)
        with pytest.raises(SyncFailed) as info:
            await d.start()
        assert info.value.code == "SECSYNC_ERROR_101"
        assert d.state == "failed" and d.document_state == "failed"
        assert str(d.doc.get("content", type=Text)) == ""
        await d.close(wait_synced=False)
