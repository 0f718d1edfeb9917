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

from .pg import is_postgres
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
    write_document,
)

pytestmark = pytest.mark.asyncio

MiB = 1 << 20
SEND_BUFFER = 16 * MiB
UPDATES = 400
UPDATE_BYTES = 256 * 1024  # plaintext per update: ≈ 350 KB frames, ≈ 140 MB to each reader
#: a relay warning in each server's log (Python logging's default time format; Jupyter's)
STANDALONE_WARNING = (
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING secsync_jupyter\.relay\.standalone: "
)
JUPYTER_WARNING = r"\[W \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ServerApp\.secsync_relay\] "


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


@pytest.fixture(params=["standalone", "jupyter"])
def transport(request) -> str:
    return request.param


@pytest_asyncio.fixture
async def launch(transport, tmp_path, db_path):
    """Start the relay of this transport in its own process, on the test's database (a SQLite
    file or PostgreSQL), with relay settings given once for both (``max_send_buffer_bytes=…``)."""
    stops = []

    async def start(**settings) -> Server:
        settings.setdefault("synchronous", "normal")
        if transport == "standalone":
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
            proc = RelayProcess(
                db_path,
                *flags,
                "--ping-interval=0",
                log_path=str(tmp_path / "relay.log"),
            )
            await asyncio.to_thread(proc.start)
            stops.append(proc.stop)
            assert proc.proc is not None
            return Server(
                proc.url,
                {},
                proc.proc.pid,
                str(tmp_path / "relay.log"),
                STANDALONE_WARNING,
            )
        store = db_path if is_postgres(db_path) else "sqlite:///" + db_path
        jp = JupyterProcess(
            str(tmp_path),
            f"--SecsyncRelayExtension.store={store}",
            *[f"--SecsyncRelayExtension.{k}={v}" for k, v in settings.items()],
        )
        await asyncio.to_thread(jp.start)
        stops.append(jp.stop)
        assert jp.proc is not None
        return Server(
            jp.base,
            jp.headers,
            jp.proc.pid,
            jp.log_path,
            JUPYTER_WARNING,
        )

    yield start
    for stop in stops:
        await asyncio.to_thread(stop)


async def test_slow_consumer_is_closed_and_memory_stays_bounded(launch):
    """A client that stops reading while another writes ≈ 140 MB of updates: the relay's
    memory stays bounded (not a copy of everything sent), the reader is closed with 1013 after
    what was queued before, it reconnects in delta mode and gets exactly what it missed, and
    every other client (a reader of the same document, another document) keeps working."""
    server = await launch(max_send_buffer_bytes=SEND_BUFFER)
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


DOC_UPDATES = 48
DOC_UPDATE_BYTES = 3 * MiB // 4  # ≈ 1 MiB of stored text each: a ≈ 48 MiB document


async def test_large_document_read_holds_one_copy_and_delta_reads_only_the_missing(launch, db_path):
    """A delta reconnect that misses two updates of a ≈ 48 MiB document reads only those (the
    selection is in SQL): the relay's peak memory grows by a small fraction of the document
    (measured first, in a fresh process). Opening the whole document raises it by less than
    twice its size (the stored texts, streamed in fragments; not the joined frame, its
    encoding and a socket-buffer copy of it)."""
    a, snap, size = await write_document(db_path, DOC_UPDATES, DOC_UPDATE_BYTES)
    server = await launch()
    sid = snap.public_data.snapshot_id
    warm = await server.client(generate_id())  # first-use costs (imports, caches) go first
    await warm.next("document")
    await warm.roundtrip_ok()
    await warm.close()

    before = rss_bytes(server.pid)
    reset_peak_rss(server.pid)
    known = {a.pub: DOC_UPDATES - 3}
    delta = await server.client(a.doc_id, mode="delta", known_snapshot_id=sid, known_clocks=known)
    frame = await delta.next("document", timeout=120)
    growth = peak_rss_bytes(server.pid) - before
    assert set(frame) == {"type", "updates"}
    assert [u["publicData"]["clock"] for u in frame["updates"]] == [
        DOC_UPDATES - 2,
        DOC_UPDATES - 1,
    ]
    await delta.close()
    print(f"delta read of 2 updates: peak RSS +{growth / MiB:.1f} MiB")
    assert growth < size / 3, f"+{growth / MiB:.0f} MiB to read 2 of {DOC_UPDATES} updates"

    before = rss_bytes(server.pid)
    reset_peak_rss(server.pid)
    full = await server.client(a.doc_id)
    frame = await full.next("document", timeout=120)
    growth = peak_rss_bytes(server.pid) - before
    assert [u["publicData"]["clock"] for u in frame["updates"]] == list(range(DOC_UPDATES))
    assert frame["snapshot"]["publicData"]["snapshotId"] == sid
    del frame
    await full.close()
    print(f"complete read: peak RSS +{growth / MiB:.1f} MiB for a {size / MiB:.0f} MiB document")
    assert growth < 2 * size, f"+{growth / MiB:.0f} MiB for a {size / MiB:.0f} MiB document"
