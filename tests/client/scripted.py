"""A scripted fake relay: a WebSocket server whose behaviour per connection is a test's
coroutine. It records each connection's query and the frames the client sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve


class Conn:
    def __init__(self, ws: Any, index: int):
        self.ws = ws
        self.index = index
        path = ws.request.path
        parts = urlsplit(path)
        self.doc_id = parts.path.rsplit("/", 1)[-1]
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, kind: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Next frame from the client; with ``kind`` ("snapshot", "update", "ephemeral")
        skip frames of other kinds."""
        while True:
            frame = await asyncio.wait_for(self.received.get(), timeout)
            if kind is None or frame_kind(frame) == kind:
                return frame


def frame_kind(frame: dict[str, Any]) -> str:
    """What a client sent: "snapshot", "update", "ephemeral", or a membership-log frame
    ("reader-proof", "log-entry")."""
    if frame.get("type") in ("reader-proof", "log-entry"):
        return frame["type"]
    pd = frame.get("publicData", {})
    if "snapshotId" in pd:
        return "snapshot"
    if "refSnapshotId" in pd:
        return "update"
    return "ephemeral"


class ScriptedRelay:
    def __init__(self, script: Callable[[Conn], Awaitable[None]]):
        self.script = script
        self.connections: list[Conn] = []
        self.connected = asyncio.Event()
        self._server: Any = None
        self.url = ""

    async def _handler(self, ws: Any) -> None:
        conn = Conn(ws, len(self.connections))
        self.connections.append(conn)
        self.connected.set()

        async def reader():
            with contextlib.suppress(Exception):
                async for text in ws:
                    await conn.received.put(json.loads(text))

        task = asyncio.create_task(reader())
        try:
            await self.script(conn)
            await ws.wait_closed()
        finally:
            task.cancel()

    async def __aenter__(self) -> ScriptedRelay:
        self._server = await serve(self._handler, "127.0.0.1", 0, max_size=None)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def connection(self, index: int, timeout: float = 10.0) -> Conn:
        async def wait():
            while len(self.connections) <= index:
                self.connected.clear()
                await self.connected.wait()
            return self.connections[index]

        return await asyncio.wait_for(wait(), timeout)
