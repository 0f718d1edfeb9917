"""Bad input gets a clear answer, changes nothing, and never disturbs other connections."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random

import pytest
from websockets.asyncio.client import connect

from secsync_jupyter.protocol import generate_id

from .pg import db_rows
from .util import Author, RelayClient, dumps, open_doc, url_for

pytestmark = pytest.mark.asyncio


def db_digest(db: str) -> str:
    """A digest of every stored row (the state must not change)."""
    h = hashlib.sha256()
    for table in ("documents", "snapshots", "updates"):
        for row in sorted(map(repr, db_rows(db, f"SELECT * FROM {table}"))):
            h.update(row.encode())
    return h.hexdigest()


async def setup_doc(relay):
    a = Author(generate_id())
    writer, _ = await open_doc(relay.url, a.doc_id)
    snap = a.initial_snapshot()
    await writer.send(snap)
    await writer.next("snapshot-saved")
    await writer.send(a.update(snap, 0))
    await writer.next("update-saved")
    observer, _ = await open_doc(relay.url, a.doc_id)
    return a, snap, writer, observer


async def answers(client: RelayClient, frame, *types: str) -> list[dict]:
    await client.send(frame)
    return [await client.next(t) for t in types]


async def test_each_kind_of_bad_frame(relay):
    a, snap, writer, observer = await setup_doc(relay)
    before = db_digest(relay.db)
    good = a.update(snap, 1).to_json()
    c, _ = await open_doc(relay.url, a.doc_id)

    (e,) = await answers(c, "this is not json", "error")
    assert e["code"] == "invalid-json"
    (e,) = await answers(c, "[1,2]", "error")
    assert e["code"] == "invalid-message"
    (e,) = await answers(c, "{}", "error")
    assert e["code"] == "invalid-message"
    (e,) = await answers(c, b"\x00\xffbinary", "error")
    assert e["code"] == "binary-frame"
    (e, f) = await answers(
        c, dumps({"publicData": {"snapshotId": 5}}), "error", "snapshot-save-failed"
    )
    assert e["code"] == "invalid-message" and f == {"type": "snapshot-save-failed"}
    shape = {**good, "publicData": {**good["publicData"], "clock": -1}}
    (e, f) = await answers(c, shape, "error", "update-save-failed")
    assert e["code"] == "invalid-message" and e["field"] == "publicData.clock"
    assert f["clock"] is None and f["snapshotId"] == snap.public_data.snapshot_id
    (e, _) = await answers(c, {**good, "nonce": "!!"}, "error", "update-save-failed")
    assert e["code"] == "invalid-message" and e["field"] == "nonce"
    (e, _) = await answers(
        c,
        {
            **good,
            "ciphertext": good["ciphertext"][:-2]
            + ("AA" if good["ciphertext"][-2:] != "AA" else "BA"),
        },
        "error",
        "update-save-failed",
    )
    assert e["code"] in ("invalid-signature", "invalid-message")
    (e, _) = await answers(
        c,
        {**good, "publicData": {**good["publicData"], "clock": 1.5}},
        "error",
        "update-save-failed",
    )
    assert e["code"] == "invalid-message"
    deep = "[" * 100_000 + "]" * 100_000
    (e,) = await answers(c, deep, "error")
    assert e["code"] in ("invalid-json", "invalid-message")
    # replayed clock
    (e, _) = await answers(c, a.update(snap, 0), "error", "update-save-failed")
    assert e["code"] == "update-clock-replayed"
    # invalid UTF-8 in a *text* frame: the asyncio client cannot send one, write it raw
    await c.ws.send(b"\xc3\x28 not utf-8", text=True)
    assert (await c.next("error"))["code"] == "invalid-utf8"

    assert db_digest(relay.db) == before
    # nobody else saw anything, the connection and the others still work
    await c.send(good)
    assert (await c.next("update-saved"))["clock"] == 1
    assert (await observer.next("update"))["publicData"]["clock"] == 1
    assert [f["type"] for f in observer.frames] == ["document", "update"]
    await writer.roundtrip_ok()


@pytest.mark.parametrize(
    "query",
    [
        "sessionKey=k&mode=sideways",
        "sessionKey=k&knownSnapshotUpdateClocks=%7Bnot-json",
        "sessionKey=k&knownSnapshotUpdateClocks=%5B1%5D",
        "sessionKey=k&knownSnapshotUpdateClocks=%7B%22a%22%3A-1%7D",
        "sessionKey=k&knownSnapshotId=abc&knownSnapshotUpdateClocks=%ff%fe",
        "mode=complete",
    ],
)
async def test_broken_query_strings(relay, query):
    doc = generate_id()
    c = await RelayClient.open(url_for(relay.url, doc, raw_query=query))
    e = await c.next("error")
    assert e["code"] in ("invalid-query", "missing-session-key")
    await c.next("document-error")
    assert await c.wait_closed() == 1008


async def test_bad_document_ids(relay):
    for doc in ("a.b", "x" * 129, "%00", ""):
        c = await RelayClient.open(f"{relay.url}/{doc}?sessionKey=k")
        frames_ = [await c.next() for _ in range(2)]
        assert [f["type"] for f in frames_] == ["error", "document-error"]
        assert frames_[0]["code"] == "invalid-document-id"
        await c.wait_closed()


async def test_non_websocket_requests(relay):
    reader, writer = await asyncio.open_connection("127.0.0.1", int(relay.url.rsplit(":", 1)[1]))
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(1000), 5)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n")
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", int(relay.url.rsplit(":", 1)[1]))
    writer.write(b"\x16\x03\x01garbage that is not http\r\n\r\n")
    data = await asyncio.wait_for(reader.read(1000), 5)
    assert data == b"" or data.startswith(b"HTTP/1.1 4")
    writer.close()


def random_frames(rng: random.Random, a: Author, snap_json: dict, upd_json: dict, n: int):
    """Mutations of valid messages and random junk (deterministic for a seed)."""
    atoms = [None, True, 0, -1, 1.5, 2**60, "", "x", [], {}, "A" * 40]
    for _ in range(n):
        kind = rng.randrange(6)
        if kind == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        elif kind == 1:
            text = dumps(rng.choice([snap_json, upd_json]))
            i = rng.randrange(len(text))
            yield text[:i] + rng.choice(["", "}", '"', "\\", "\x00", "é"]) + text[i + 1 :]
        else:
            base = json.loads(dumps(rng.choice([snap_json, upd_json])))
            target = base if rng.random() < 0.4 else base["publicData"]
            key = rng.choice([*list(target), "extra"])
            action = rng.randrange(3)
            if action == 0:
                target.pop(key, None)
            else:
                target[key] = rng.choice(atoms)
            if rng.random() < 0.2 and isinstance(base.get("publicData"), dict):
                base["publicData"]["docId"] = generate_id()
            yield dumps(base) if rng.random() < 0.9 else dumps([base])


async def test_fuzz_hundreds_of_bad_frames(relay):
    a, snap, writer, observer = await setup_doc(relay)
    before = db_digest(relay.db)
    rng = random.Random(20241125)
    # valid messages that are *not* acceptable now (replay / wrong parent), then mutated
    snap_json = a.snapshot(snap, {}).to_json()
    snap_json["publicData"]["parentSnapshotId"] = generate_id()
    upd_json = a.update(snap, 0).to_json()
    fuzzers = [await RelayClient.open(url_for(relay.url, a.doc_id)) for _ in range(3)]
    for f in fuzzers:
        await f.next("document")
    frames_ = list(random_frames(rng, a, snap_json, upd_json, 300))
    for i, frame in enumerate(frames_):
        await fuzzers[i % 3].send(frame)
    # every fuzzer is still connected, and every frame got exactly one error answer
    for i, f in enumerate(fuzzers):
        await f.roundtrip_ok()
        assert not f.closed
        sent = len(frames_[i::3])
        assert sum(1 for x in f.frames if x["type"] == "error") == sent + 1
    assert db_digest(relay.db) == before
    # nothing was broadcast to the observer; the document still accepts good writes
    await writer.send(a.update(snap, 1))
    assert (await writer.next("update-saved"))["clock"] == 1
    assert (await observer.next("update"))["publicData"]["clock"] == 1
    assert [f["type"] for f in observer.frames] == ["document", "update"]


async def test_fragmented_and_control_frames(relay):
    a, snap, _writer, observer = await setup_doc(relay)
    async with connect(url_for(relay.url, a.doc_id), compression=None) as ws:
        json.loads(await ws.recv())
        text = dumps(a.update(snap, 1).to_json())
        # a fragmented text message (three frames)
        await ws.send([text[:10], text[10:20], text[20:]])
        assert json.loads(await ws.recv())["type"] == "update-saved"
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 5)
    assert (await observer.next("update"))["publicData"]["clock"] == 1


async def test_lone_surrogate_gets_the_parse_error_never_an_echo(relay, caplog):
    """``"\\ud800"`` is a valid JSON escape but no Unicode text: the answer is the parse error
    (never the input sent back, which no UTF-8 frame can carry), with no internal error and no
    traceback in the log."""
    caplog.set_level(logging.DEBUG)
    a, snap, writer, observer = await setup_doc(relay)
    before = db_digest(relay.db)
    c, _ = await open_doc(relay.url, a.doc_id)
    update = dumps(a.update(snap, 1).to_json())
    bad_ref = update.replace('"refSnapshotId":"', '"refSnapshotId":"\\ud800', 1)
    e, f = await answers(c, bad_ref, "error", "update-save-failed")
    assert e["code"] == "invalid-message" and f["snapshotId"] is None and f["clock"] == 1
    bad_field = update.replace('"docId":', '"note":"\\ud800","docId":', 1)
    e, f = await answers(c, bad_field, "error", "update-save-failed")
    assert e["code"] == "invalid-message"
    assert f["snapshotId"] == snap.public_data.snapshot_id
    bad_key = dumps(a.snapshot(snap, {a.pub: 0}).to_json()).replace(
        '"docId":', '"\\udc00":[1],"docId":', 1
    )
    e, f = await answers(c, bad_key, "error", "snapshot-save-failed")
    assert e["code"] == "invalid-message" and f == {"type": "snapshot-save-failed"}
    bad_doc = dumps(a.ephemeral().to_json()).replace('"docId":"', '"docId":"\\ud800', 1)
    (e,) = await answers(c, bad_doc, "error")
    assert e["code"] == "invalid-message"
    await c.roundtrip_ok()
    assert not [f for f in c.frames if f.get("code") == "internal-error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert db_digest(relay.db) == before
    await writer.roundtrip_ok()
    assert [f["type"] for f in observer.frames] == ["document"]


async def test_malformed_input_is_logged_briefly_and_rate_limited(relay, caplog):
    """Every malformed frame is answered, but the log gets a few one-line records per
    connection (code, document, user; never the frame's content), so a client cannot flood
    the server's log, not even over several connections."""
    caplog.set_level(logging.DEBUG, logger="secsync_jupyter")
    canary = "CANARY-bad-input-content-4d1f"
    a, _snap, writer, _observer = await setup_doc(relay)
    clients = [await RelayClient.open(url_for(relay.url, a.doc_id)) for _ in range(3)]
    for c in clients:
        await c.next("document")
    sent = 0
    for i in range(200):
        for c in clients:
            if i % 3 == 0:
                await c.send(f"not json {canary} {i}")
            elif i % 3 == 1:
                await c.send(canary.encode() + b"\x00binary")
            else:
                await c.ws.send(canary.encode() + b"\xc3\x28", text=True)
            sent += 1
    for c in clients:
        await c.roundtrip_ok()
    answered = sum(1 for c in clients for f in c.frames if f["type"] == "error")
    assert answered == sent + len(clients)  # every bad frame answered (+ the roundtrips)
    lines = [r for r in caplog.records if r.name.startswith("secsync_jupyter.relay")]
    malformed = [r for r in lines if "malformed" in r.getMessage()]
    assert malformed, "malformed input is logged"
    assert len(malformed) <= 4 * len(clients), [r.getMessage() for r in malformed]
    for r in lines:
        text = r.getMessage()
        assert "\n" not in text and len(text) < 200 and not r.exc_info, text
        assert canary not in text
    assert a.doc_id in malformed[0].getMessage()
    assert {"invalid-json", "binary-frame", "invalid-utf8"} & {
        code for r in malformed for code in r.getMessage().split() if "-" in code
    }
    await writer.roundtrip_ok()
