"""Keep-alive pings of the standalone relay: idle live connections stay, dead peers go."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from secsync_jupyter.protocol import generate_id

from .util import open_doc

pytestmark = pytest.mark.asyncio


async def raw_websocket(url: str, path: str):
    """A WebSocket handshake over a bare TCP connection that will never answer a ping."""
    host, port = url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frames_until_close(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Server frames (opcode, payload) up to the close frame or EOF."""
    out = []
    while True:
        try:
            hdr = await asyncio.wait_for(reader.readexactly(2), 20)
        except asyncio.IncompleteReadError:
            return out
        n = hdr[1] & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        out.append((hdr[0] & 0x0F, await reader.readexactly(n)))
        if out[-1][0] == 8:
            return out


async def test_dead_peer_is_closed_live_idle_connection_stays(relays):
    r = await relays(ping_interval=0.05, ping_timeout=0.2)
    doc = generate_id()
    live, _ = await open_doc(r.url, doc)  # the websockets client answers pings itself
    reader, writer = await raw_websocket(r.url, f"/{doc}?sessionKey=k")
    got = await read_frames_until_close(reader)
    writer.close()
    opcodes = [op for op, _ in got]
    assert opcodes[0] == 1  # the document frame
    assert 9 in opcodes, opcodes  # pinged ...
    assert opcodes[-1] == 8 and int.from_bytes(got[-1][1][:2], "big") == 1011  # ... then closed
    # the relay forgot the dead connection; the idle live one (pinged as often) still works
    room = r.relay.rooms[doc]
    assert len(room.sessions) == 1
    await live.roundtrip_ok()
    assert not live.closed


async def test_pings_can_be_turned_off(relays):
    r = await relays(ping_interval=0)
    assert r.server.ping_interval is None and r.server._keepalive is None
