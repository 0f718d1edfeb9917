"""The relay inside Jupyter Server follows Jupyter's conventions: its log records go through the
server app's log, and a peer that leaves with writes pending is not an error."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re

import pytest

from secsync_jupyter.protocol import generate_id

from .util import Author, RawWebSocket, RelayClient


@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {"jpserver_extensions": {"secsync_jupyter": True}},
        "SecsyncRelayExtension": {"db_path": str(tmp_path / "ext-relay.sqlite")},
    }


def ws_url(app, doc_id: str) -> str:
    return f"ws://127.0.0.1:{app.port}{app.base_url}secsync/{doc_id}"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


async def test_extension_peer_leaving_is_no_error_and_logs_follow_jupyter(
    jp_serverapp, http_server_client, jp_auth_header
):
    """Writes pending to a peer that leaves are not errors (no "Task exception was never
    retrieved"), and the relay's log records go through the server app's log, with Jupyter's
    format (level, timestamp, logger name)."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    records = _Records()
    jp_serverapp.log.addHandler(records)
    try:
        a = Author(generate_id())
        url = ws_url(jp_serverapp, a.doc_id)
        writer = await RelayClient.open(url, additional_headers=jp_auth_header)
        await writer.next("document")
        snap = a.initial_snapshot()
        await writer.send(snap)
        await writer.next("snapshot-saved")
        leaver = await RawWebSocket.open(url, jp_auth_header)
        assert (await leaver.read_frame())[0] == 1  # its document frame, then it reads nothing
        content = os.urandom(1 << 20)
        for clock in range(16):  # ≈ 22 MB for the leaver: more than the sockets hold
            await writer.send(a.update(snap, clock, content))
            await writer.next("update-saved")
        leaver.writer.transport.abort()  # gone, with unread data: a reset
        relay = jp_serverapp.web_app.settings["secsync_relay_extension"].relay
        for _ in range(400):
            if relay.rooms[a.doc_id].connection_count == 1:
                break
            await asyncio.sleep(0.05)
        assert relay.rooms[a.doc_id].connection_count == 1
        await writer.send(a.update(snap, 16))
        await writer.next("update-saved")
        await writer.send("not json")  # malformed input: one log line
        assert (await writer.next("error"))["code"] == "invalid-json"
        await writer.close()
        gc.collect()
        await asyncio.sleep(0.2)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
        jp_serverapp.log.removeHandler(records)
    assert not unhandled, [c.get("message") for c in unhandled]
    mine = [r for r in records.records if "malformed frame" in r.getMessage()]
    assert len(mine) == 1 and mine[0].name == "ServerApp.secsync_relay"
    assert mine[0].levelname == "INFO"
    # formatted as the server app formats its records (its formatter class, format, dates)
    formatter = jp_serverapp._log_formatter_cls(
        fmt=jp_serverapp.log_format, datefmt=jp_serverapp.log_datefmt
    )
    line = re.sub(r"\x1b\[[0-9;]*m", "", formatter.format(mine[0]))
    assert re.match(
        r"\[I \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ServerApp\.secsync_relay\] malformed frame",
        line,
    ), line
