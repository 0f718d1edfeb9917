"""The relay inside Jupyter Server: authenticated WebSocket, authorization, share-link redirect."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import pytest
import tornado.httpclient
import tornado.websocket

from secsync_jupyter.protocol import Snapshot, generate_id, verify_and_decrypt_snapshot

from .pg import db_rows as query_rows
from .pg import is_postgres
from .util import Author, RelayClient, dumps

# pytest-jupyter (loaded in tests/conftest.py) runs these coroutine tests itself, on the
# server's event loop (so they carry no pytest.mark.asyncio: pytest-asyncio would run them on
# another loop).


MAX_FRAME = 16 * 1024  # the whole oversized frame fits one loopback segment
PING_MS, PING_TIMEOUT_MS = 100, 500


@pytest.fixture
def jp_server_config(db_path):
    # the relay's database: a SQLite file, or PostgreSQL through the store setting
    where = {"store": db_path} if is_postgres(db_path) else {"db_path": db_path}
    return {
        "ServerApp": {
            "jpserver_extensions": {"secsync_jupyter": True},
            # Jupyter's WebSocketMixin keep-alive, short for the dead-peer test
            "tornado_settings": {
                "ws_ping_interval": PING_MS,
                "ws_ping_timeout": PING_TIMEOUT_MS,
            },
        },
        "SecsyncRelayExtension": {
            **where,
            "max_frame_bytes": MAX_FRAME,
        },
    }


def ws_url(app, doc_id: str, **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://127.0.0.1:{app.port}{app.base_url}secsync/{doc_id}" + (f"?{q}" if q else "")


def db_rows(db: str) -> list:
    return [
        sorted(map(repr, query_rows(db, f"SELECT * FROM {t}")))
        for t in ("documents", "snapshots", "updates")
    ]


async def recv_json(ws, timeout: float = 10.0) -> dict:
    msg = await asyncio.wait_for(ws.read_message(), timeout)
    assert msg is not None, "connection closed"
    return json.loads(msg)


async def recv_type(ws, type_: str) -> dict:
    while True:
        frame = await recv_json(ws)
        if frame["type"] == type_:
            return frame


async def test_extension_relay_roundtrip_authenticated(jp_serverapp, jp_ws_fetch):
    a = Author(generate_id())
    ws1 = await jp_ws_fetch("secsync", a.doc_id, params={"sessionKey": "browser"})
    ws2 = await jp_ws_fetch("secsync", a.doc_id)  # sessionKey is optional inside Jupyter
    assert await recv_json(ws1) == {"type": "document", "updates": [], "snapshotProofChain": []}
    await recv_json(ws2)
    snap = a.initial_snapshot(b"notebook")
    ws1.write_message(dumps(snap.to_json()))
    assert (await recv_type(ws1, "snapshot-saved"))["snapshotId"] == snap.public_data.snapshot_id
    got = Snapshot.from_json((await recv_type(ws2, "snapshot"))["snapshot"])
    assert verify_and_decrypt_snapshot(got, a.key, a.doc_id) == b"notebook"
    ws1.write_message(dumps(a.update(snap, 0).to_json()))
    assert (await recv_type(ws1, "update-saved"))["clock"] == 0
    assert (await recv_type(ws2, "update"))["publicData"]["clock"] == 0
    # bad input keeps the connection working
    ws1.write_message("not json")
    assert (await recv_type(ws1, "error"))["code"] == "invalid-json"
    ws1.write_message(b"\x00\x01", binary=True)
    assert (await recv_type(ws1, "error"))["code"] == "binary-frame"
    ws1.write_message(dumps(a.update(snap, 1).to_json()))
    assert (await recv_type(ws1, "update-saved"))["clock"] == 1
    ws1.close()
    ws2.close()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong-token"}])
async def test_extension_refuses_missing_or_wrong_token(jp_serverapp, jp_ws_fetch, headers):
    # jp_ws_fetch adds the right token unless the header is overridden; {} -> no credentials
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        if headers:
            await jp_ws_fetch("secsync", generate_id(), headers=headers)
        else:
            await _connect_without_auth(jp_serverapp, generate_id())
    assert info.value.code == 403


async def _connect_without_auth(app, doc_id: str):
    url = f"ws://localhost:{app.port}{app.base_url}secsync/{doc_id}"
    return await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url))


async def test_extension_invalid_doc_id_is_404(jp_serverapp, jp_ws_fetch):
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await jp_ws_fetch("secsync", "bad.id")
    assert info.value.code == 404


async def test_open_redirect(jp_fetch, jp_base_url):
    doc = generate_id()
    r = await jp_fetch("secsync", "open", doc, follow_redirects=False, raise_error=False)
    assert r.code == 302
    assert r.headers["Location"] == f"{jp_base_url}lab?secsync-doc={doc}"
    relay = "wss://relay.example/base"
    r = await jp_fetch(
        "secsync",
        "open",
        doc,
        params={"relay": relay},
        follow_redirects=False,
        raise_error=False,
    )
    assert r.code == 302
    assert r.headers["Location"] == (
        f"{jp_base_url}lab?secsync-doc={doc}&secsync-relay=wss%3A%2F%2Frelay.example%2Fbase"
    )
    r = await jp_fetch("secsync", "open", doc, params={"relay": "http://x"}, raise_error=False)
    assert r.code == 400


async def test_open_redirect_requires_login(jp_fetch):
    r = await jp_fetch(
        "secsync",
        "open",
        generate_id(),
        headers={"Authorization": ""},
        follow_redirects=False,
        raise_error=False,
    )
    assert r.code in (302, 403)
    if r.code == 302:  # to the login page, not to the document
        assert "login" in r.headers["Location"]


async def test_extension_bad_utf8_answered_oversized_closed_others_unaffected(
    jp_serverapp, http_server_client, jp_auth_header, db_path
):
    """Invalid UTF-8 in a text frame is answered (``invalid-utf8``) and the connection stays
    open, as in the standalone relay (stock tornado would drop the TCP connection); a frame over
    max_frame_bytes gets ``frame-too-large`` then close 1009 (tornado's limit). The stored
    state and every other connection are unaffected."""
    a = Author(generate_id())
    headers = dict(jp_auth_header)
    c1 = await RelayClient.open(ws_url(jp_serverapp, a.doc_id), additional_headers=headers)
    c2 = await RelayClient.open(ws_url(jp_serverapp, a.doc_id), additional_headers=headers)
    other_doc = Author(generate_id())
    c3 = await RelayClient.open(ws_url(jp_serverapp, other_doc.doc_id), additional_headers=headers)
    for c in (c1, c2, c3):
        await c.next("document")
    snap = a.initial_snapshot()
    await c1.send(snap)
    await c1.next("snapshot-saved")
    await c2.next("snapshot")
    db = db_path
    before = db_rows(db)
    assert len(before[1]) == 1  # the snapshot, in the configured database

    await c1.ws.send(b"\xc3\x28 not utf-8", text=True)
    assert (await c1.next("error"))["code"] == "invalid-utf8"
    await c1.roundtrip_ok()
    assert db_rows(db) == before

    await c2.send("x" * (MAX_FRAME + 1))
    err = await c2.next("error")
    assert err["code"] == "frame-too-large" and str(MAX_FRAME) in err["message"]
    assert await c2.wait_closed() == 1009
    assert db_rows(db) == before

    # the others keep working: c1 writes, c3 (another document) answers
    await c1.send(a.update(snap, 0))
    assert (await c1.next("update-saved"))["clock"] == 0
    await c3.roundtrip_ok()
    c4 = await RelayClient.open(ws_url(jp_serverapp, a.doc_id), additional_headers=headers)
    assert [u["publicData"]["clock"] for u in (await c4.next("document"))["updates"]] == [0]
    for c in (c1, c3, c4):
        await c.close()


async def test_extension_keepalive_closes_a_dead_peer(
    jp_serverapp, http_server_client, jp_auth_header
):
    """The handler uses Jupyter's WebSocketMixin keep-alive (``ws_ping_interval`` /
    ``ws_ping_timeout``): a peer that stops answering pings is closed; a live one is not."""
    doc = generate_id()
    live = await RelayClient.open(ws_url(jp_serverapp, doc), additional_headers=jp_auth_header)
    await live.next("document")
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_serverapp.port)
    key = base64.b64encode(os.urandom(16)).decode()
    path = f"{jp_serverapp.base_url}secsync/{doc}"
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: localhost:{jp_serverapp.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: {jp_auth_header['Authorization']}\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    # never answer: read frames until the server's close frame (opcode 8) and EOF
    opcodes = []
    while True:
        hdr = await asyncio.wait_for(reader.read(2), 20)
        if not hdr:
            break
        if len(hdr) == 1:
            hdr += await reader.readexactly(1)
        n = hdr[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        await reader.readexactly(n)
        opcodes.append(hdr[0] & 0x0F)
        if opcodes[-1] == 8:
            break
    writer.close()
    assert 9 in opcodes and opcodes[-1] == 8, opcodes  # pinged, then closed
    # the live client answered every ping and is still connected
    await live.roundtrip_ok()
    assert not live.closed
    await live.close()
