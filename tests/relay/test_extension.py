"""The relay inside Jupyter Server: authenticated WebSocket, authorization, share-link redirect."""

from __future__ import annotations

import asyncio
import json

import pytest
import tornado.httpclient
import tornado.websocket

from secsync_jupyter.protocol import Snapshot, generate_id, verify_and_decrypt_snapshot

from .util import Author, dumps

# pytest-jupyter (loaded in tests/conftest.py) runs these coroutine tests itself, on the
# server's event loop (so they carry no pytest.mark.asyncio: pytest-asyncio would run them on
# another loop).


@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {"jpserver_extensions": {"secsync_jupyter": True}},
        "SecsyncRelayExtension": {"db_path": str(tmp_path / "ext-relay.sqlite")},
    }


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
