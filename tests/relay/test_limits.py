"""Bounded resources, on both transports (the standalone relay and the relay inside Jupyter
Server, each in its own process so that its memory can be measured)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
import pytest_asyncio

from secsync_jupyter.protocol import generate_id

from .util import (
    Author,
    JupyterProcess,
    RawWebSocket,
    RelayClient,
    RelayProcess,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    url_for,
)

pytestmark = pytest.mark.asyncio

MiB = 1 << 20
SEND_BUFFER = 16 * MiB
UPDATES = 400
UPDATE_BYTES = 256 * 1024  # plaintext per update: ≈ 350 KB frames, ≈ 140 MB to each reader


class Server:
    def __init__(self, base: str, headers: dict[str, str], pid: int, log_path: str, log_line: str):
        self.base = base
        self.headers = headers
        self.pid = pid
        self.log_path = log_path
        #: how a relay warning looks in this server's log
        self.log_line = log_line

    async def client(self, doc_id: str, **kw) -> RelayClient:
        return await RelayClient.open(
            url_for(self.base, doc_id, **kw), additional_headers=self.headers
        )


@pytest_asyncio.fixture(params=["standalone", "jupyter"])
async def server(request, tmp_path):
    """A relay process with a 16 MiB send buffer per connection."""
    if request.param == "standalone":
        proc = RelayProcess(
            str(tmp_path / "relay.sqlite"),
            "--max-send-buffer-bytes",
            str(SEND_BUFFER),
            "--synchronous",
            "normal",
            "--ping-interval",
            "0",
            log_path=str(tmp_path / "relay.log"),
        )
        await asyncio.to_thread(proc.start)
        assert proc.proc is not None
        yield Server(
            proc.url,
            {},
            proc.proc.pid,
            str(tmp_path / "relay.log"),
            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING secsync_jupyter\.relay\.standalone: ",
        )
        await asyncio.to_thread(proc.stop)
    else:
        jp = JupyterProcess(
            str(tmp_path),
            f"--SecsyncRelayExtension.max_send_buffer_bytes={SEND_BUFFER}",
            "--SecsyncRelayExtension.synchronous=normal",
        )
        await asyncio.to_thread(jp.start)
        assert jp.proc is not None
        yield Server(
            jp.base,
            jp.headers,
            jp.proc.pid,
            jp.log_path,
            r"\[W \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ServerApp\.secsync_relay\] ",
        )
        await asyncio.to_thread(jp.stop)


async def test_slow_consumer_is_closed_and_memory_stays_bounded(server):
    """A client that stops reading while another writes ≈ 140 MB of updates: the relay's
    memory stays bounded (not a copy of everything sent), the reader is closed with 1013 after
    what was queued before, it reconnects in delta mode and gets exactly what it missed, and
    every other client (a reader of the same document, another document) keeps working."""
    a = Author(generate_id())
    writer = await server.client(a.doc_id)
    await writer.next("document")
    snap = a.initial_snapshot()
    await writer.send(snap)
    await writer.next("snapshot-saved")
    reader = await server.client(a.doc_id)
    await reader.next("document")
    other = await server.client(generate_id())
    await other.next("document")
    slow = await RawWebSocket.open(url_for(server.base, a.doc_id), server.headers)
    opcode, _, _ = await slow.read_frame()  # its document frame; from now on it reads nothing
    assert opcode == 1

    before = rss_bytes(server.pid)
    reset_peak_rss(server.pid)
    content = os.urandom(UPDATE_BYTES)
    sent = acked = volume = 0
    while acked < UPDATES:
        while sent < UPDATES and sent - acked < 4:
            update = a.update(snap, sent, content)
            volume += len(update.ciphertext)
            await writer.send(update)
            sent += 1
        assert (await writer.next("update-saved"))["clock"] == acked
        acked += 1
    for clock in range(UPDATES):
        assert (await reader.next("update"))["publicData"]["clock"] == clock
    await other.roundtrip_ok()
    growth = peak_rss_bytes(server.pid) - before
    print(f"peak RSS growth {growth / MiB:.1f} MiB for {volume / MiB:.0f} MiB sent")
    assert growth < 64 * MiB, (
        f"relay RSS grew by {growth / MiB:.0f} MiB while sending {volume / MiB:.0f} MiB "
        "to a client that does not read"
    )

    # the slow client reads on: what was queued before the limit, then the close frame
    messages, code = await slow.read_until_close()
    slow.close()
    assert code == 1013
    got = [m["publicData"]["clock"] for m in messages if m["type"] == "update"]
    assert got == list(range(len(got))) and len(got) < UPDATES
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] in ([], ["send-buffer-full"])
    again = await server.client(
        a.doc_id,
        mode="delta",
        known_snapshot_id=snap.public_data.snapshot_id,
        known_clocks={a.pub: got[-1]} if got else {},
    )
    missed = (await again.next("document"))["updates"]
    assert [u["publicData"]["clock"] for u in missed] == list(range(len(got), UPDATES))
    # the others still work
    await writer.send(a.update(snap, UPDATES))
    await writer.next("update-saved")
    assert (await reader.next("update"))["publicData"]["clock"] == UPDATES
    assert (await again.next("update"))["publicData"]["clock"] == UPDATES
    await other.roundtrip_ok()
    for c in (writer, reader, other, again):
        await c.close()
    # the relay said so in the server's log, in the server's format (level, time, logger)
    log = Path(server.log_path).read_text()
    assert re.search(server.log_line + "closing a connection that does not read fast enough", log)
