"""Admission to the standalone relay: the WebSocket handshake has a deadline, and the relay has
a global connection cap answered with a clear refusal."""

from __future__ import annotations

import asyncio

import pytest

from secsync_jupyter.protocol import generate_id
from secsync_jupyter.relay import Limits

from .util import RelayClient, open_doc, url_for

pytestmark = pytest.mark.asyncio


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("ws://").split(":")
    return host, int(port)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 20.0) -> bytes:
    """Everything the relay sent until it closed the connection (bounded wait)."""
    return await asyncio.wait_for(reader.read(), timeout)


async def test_a_connection_without_handshake_is_closed_after_the_timeout(relays):
    r = await relays(limits=Limits(handshake_timeout=0.3))
    silent = await asyncio.open_connection(*host_port(r.url))
    partial = await asyncio.open_connection(*host_port(r.url))
    partial[1].write(b"GET /doc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # never ends
    live, _ = await open_doc(r.url, generate_id())
    assert await closed_by_peer(silent[0]) == b""
    assert await closed_by_peer(partial[0]) == b""
    for _, writer in (silent, partial):
        writer.close()
    # a connection that completed its handshake is not affected
    await asyncio.sleep(0.5)
    await live.roundtrip_ok()
    assert len(r.server.connections) == 1


async def test_global_connection_cap_refuses_clearly(relays):
    r = await relays(limits=Limits(max_connections=3))
    c1, _ = await open_doc(r.url, generate_id())
    c2, _ = await open_doc(r.url, generate_id())
    pending = await asyncio.open_connection(*host_port(r.url))  # in its handshake: counted
    refused = await RelayClient.open(url_for(r.url, generate_id()))
    err = await refused.next("error")
    assert err["code"] == "too-many-connections" and "relay" in err["message"]
    await refused.next("document-error")
    assert await refused.wait_closed() == 1013
    reader, writer = await asyncio.open_connection(*host_port(r.url))
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(1000), 10)
    assert answer.startswith(b"HTTP/1.1 503") and answer.endswith(b"too many connections\n")
    writer.close()
    # a slot frees up when a connection goes
    pending[1].close()
    await c2.close()
    for _ in range(200):
        if len(r.server.connections) <= 1:
            break
        await asyncio.sleep(0.02)
    c3, d = await open_doc(r.url, generate_id())
    assert d["type"] == "document"
    await c1.roundtrip_ok()
    await c3.roundtrip_ok()
