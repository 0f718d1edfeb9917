"""A protocol-level Secsync client for relay tests, built from the protocol core."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
from websockets.asyncio.client import ClientConnection, connect

from secsync_jupyter.protocol import (
    EphemeralMessage,
    SigningKeyPair,
    Snapshot,
    Update,
    create_ephemeral_message,
    create_initial_snapshot,
    create_snapshot,
    create_update,
    generate_id,
    generate_key,
    snapshot_ciphertext_hash,
)

TIMEOUT = 10.0


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Author:
    """A signing identity writing to one document with one document key."""

    def __init__(
        self, doc_id: str, key: bytes | None = None, keypair: SigningKeyPair | None = None
    ):
        self.doc_id = doc_id
        self.key = key or generate_key()
        self.keypair = keypair or SigningKeyPair.generate()

    @property
    def pub(self) -> str:
        return self.keypair.public_key_b64

    def initial_snapshot(self, content: bytes = b"initial", **extra) -> Snapshot:
        pd = {"docId": self.doc_id, "pubKey": self.pub, "snapshotId": generate_id(), **extra}
        return create_initial_snapshot(content, pd, self.key, self.keypair)

    def snapshot(
        self, parent: Snapshot, clocks: Mapping[str, int], content: bytes = b"snap", **extra
    ) -> Snapshot:
        pd = {
            "docId": self.doc_id,
            "pubKey": self.pub,
            "snapshotId": generate_id(),
            "parentSnapshotId": parent.public_data.snapshot_id,
            "parentSnapshotUpdateClocks": dict(clocks),
            **extra,
        }
        return create_snapshot(
            content,
            pd,
            self.key,
            self.keypair,
            snapshot_ciphertext_hash(parent),
            parent.public_data.parent_snapshot_proof,
        )

    def update(
        self, snapshot: Snapshot | str, clock: int, content: bytes = b"u", **extra
    ) -> Update:
        sid = snapshot if isinstance(snapshot, str) else snapshot.public_data.snapshot_id
        pd = {"docId": self.doc_id, "pubKey": self.pub, "refSnapshotId": sid, **extra}
        return create_update(content, pd, self.key, self.keypair, clock)

    def ephemeral(self, content: bytes = b"hi") -> EphemeralMessage:
        return create_ephemeral_message(
            content,
            "message",
            {"docId": self.doc_id, "pubKey": self.pub},
            self.key,
            self.keypair,
            generate_id(),
            7,
        )


def url_for(
    base: str,
    doc_id: str,
    session_key: str | None = "k",
    *,
    mode: str | None = None,
    known_snapshot_id: str | None = None,
    known_clocks: Mapping[str, int] | None = None,
    raw_query: str | None = None,
) -> str:
    if raw_query is not None:
        return f"{base}/{doc_id}?{raw_query}"
    q = []
    if session_key is not None:
        q.append(f"sessionKey={quote(session_key)}")
    if mode is not None:
        q.append(f"mode={mode}")
    if known_snapshot_id is not None:
        q.append(f"knownSnapshotId={known_snapshot_id}")
    if known_clocks is not None:
        q.append(f"knownSnapshotUpdateClocks={quote(dumps(dict(known_clocks)))}")
    return f"{base}/{doc_id}" + ("?" + "&".join(q) if q else "")


class RelayClient:
    """A raw WebSocket connection that records every frame and lets tests wait for types."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.frames: list[dict] = []
        self._unclaimed: list[dict] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())
        self.close_code: int | None = None

    @classmethod
    async def open(cls, url: str, **kw) -> RelayClient:
        ws = await connect(url, max_size=None, compression=None, open_timeout=TIMEOUT, **kw)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                frame = json.loads(message)
                self.frames.append(frame)
                async with self._arrived:
                    self._unclaimed.append(frame)
                    self._arrived.notify_all()
        except Exception:
            pass
        finally:
            self.close_code = self.ws.close_code
            async with self._arrived:
                self._arrived.notify_all()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def send(self, message: Any) -> None:
        if isinstance(message, (Snapshot, Update, EphemeralMessage)):
            message = dumps(message.to_json())
        elif not isinstance(message, (str, bytes)):
            message = dumps(message)
        await self.ws.send(message)

    async def next(self, type_: str | None = None, timeout: float = TIMEOUT) -> dict:
        """The next not yet taken frame (of this type)."""

        def take():
            for i, f in enumerate(self._unclaimed):
                if type_ is None or f.get("type") == type_:
                    return self._unclaimed.pop(i)
            return None

        async def wait():
            async with self._arrived:
                while True:
                    f = take()
                    if f is not None:
                        return f
                    if self._reader.done():
                        raise ConnectionError(
                            f"connection closed ({self.close_code}) while waiting for {type_}; "
                            f"got {[x.get('type') for x in self.frames]}"
                        )
                    await self._arrived.wait()

        return await asyncio.wait_for(wait(), timeout)

    def pending(self) -> list[dict]:
        return list(self._unclaimed)

    async def wait_closed(self, timeout: float = TIMEOUT) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(asyncio.shield(self._reader), TIMEOUT)

    async def roundtrip_ok(self) -> None:
        """Prove the connection still works and every earlier frame was answered: send a
        uniquely recognizable non-JSON frame and wait for its error answer."""
        RelayClient._marker += 1
        n = 1000 + RelayClient._marker
        await self.send(" " * n + "?")
        needle = f"(char {n})"
        while True:
            frame = await self.next("error")
            if frame["code"] == "invalid-json" and needle in frame["message"]:
                return

    _marker = 0


async def open_doc(base: str, doc_id: str, **kw) -> tuple[RelayClient, dict]:
    client = await RelayClient.open(url_for(base, doc_id, **kw))
    return client, await client.next("document")


async def seed(base: str, author: Author, n_updates: int = 0):
    """A client with an accepted initial snapshot and n updates."""
    client, doc = await open_doc(base, author.doc_id)
    assert doc == {"type": "document", "updates": [], "snapshotProofChain": []}
    snap = author.initial_snapshot()
    await client.send(snap)
    assert (await client.next("snapshot-saved"))["snapshotId"] == snap.public_data.snapshot_id
    for clock in range(n_updates):
        await client.send(author.update(snap, clock))
        assert (await client.next("update-saved"))["clock"] == clock
    return client, snap


# ---------------------------------------------------------------------------- subprocess relay
LISTEN_RE = re.compile(r"listening on (ws://\S+)")


class RelayProcess:
    """``secsync-relay`` in a subprocess (port 0; the URL is read from its stdout)."""

    def __init__(
        self, db: str, *args: str, log_path: str | None = None, db_option: str | None = None
    ):
        self.db = db
        self.args = args
        self.log_path = log_path
        #: the option that names ``db``: by default ``--store`` for a postgresql:// URL, else
        #: ``--db`` (which takes a URL too: the documented form)
        self.db_option = db_option
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> RelayProcess:
        cmd = [
            sys.executable,
            "-m",
            "secsync_jupyter.relay.standalone",
            "--port",
            "0",
            # a SQLite file, or a postgresql:// URL (tests/relay/pg.py)
            self.db_option
            or ("--store" if self.db.startswith(("postgresql:", "postgres:")) else "--db"),
            self.db,
            *self.args,
        ]
        if not any(a in ("--open", "--session-keys") for a in self.args):
            cmd.append("--open")
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr)
        if self.log_path:
            stderr.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        m = LISTEN_RE.search(line)
        if not m:
            self.proc.kill()
            tail = self.log()[-2000:] if self.log_path else ""
            raise RuntimeError(f"relay did not start: {line!r}: {tail}")
        self.url = m.group(1)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """What the relay wrote to ``log_path``."""
        assert self.log_path is not None
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def env_without_proxy() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(k, None)
    return env


# ---------------------------------------------------------------------------- raw WebSocket
class RawWebSocket:
    """A WebSocket over a bare TCP socket with a small receive buffer: it reads only when the
    test says so (a client that stops reading), and answers nothing (no pongs)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, url: str, headers: Mapping[str, str] | None = None, rcvbuf: int = 64 * 1024
    ) -> RawWebSocket:
        hostport, _, path = url.removeprefix("ws://").partition("/")
        host, port = hostport.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        # a small stream limit: the reader stops taking data from the socket when it has 128 KiB
        reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def read_frame(self, timeout: float = TIMEOUT) -> tuple[int, bool, bytes] | None:
        """(opcode, fin, payload) of the next frame, or None at EOF."""
        try:
            hdr = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            n = hdr[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return hdr[0] & 0x0F, bool(hdr[0] & 0x80), payload

    async def read_until_close(self, timeout: float = TIMEOUT) -> tuple[list[dict], int | None]:
        """Every text message (JSON, fragments joined) up to the close frame, and the close
        code (None when the connection ended without a close frame)."""
        messages: list[dict] = []
        fragments: list[bytes] = []
        while True:
            frame = await self.read_frame(timeout)
            if frame is None:
                return messages, None
            opcode, fin, payload = frame
            if opcode == 8:
                return messages, int.from_bytes(payload[:2], "big") if payload else 1005
            if opcode in (1, 0):
                fragments.append(payload)
                if fin:
                    messages.append(json.loads(b"".join(fragments)))
                    fragments = []

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------- memory
def rss_bytes(pid: int) -> int:
    """Resident set size of a process (psutil)."""
    return psutil.Process(pid).memory_info().rss


def reset_peak_rss(pid: int) -> None:
    """Start a new peak (Linux: ``VmHWM`` is reset by writing 5 to ``clear_refs``)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size since start or the last :func:`reset_peak_rss`."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


async def write_document(db: str, updates: int, update_bytes: int) -> tuple[Author, Snapshot, int]:
    """A large document written straight into a relay database (real messages, no relay):
    a snapshot and ``updates`` updates of ``update_bytes`` of content each. Returns the author,
    the snapshot and the bytes of stored messages. ``db``: a SQLite file or a PostgreSQL URL."""
    from secsync_jupyter.relay.store import store_from_url

    a = Author(generate_id())
    content = os.urandom(update_bytes)
    snap = a.initial_snapshot(content)
    store = store_from_url(db, synchronous="normal")
    await store.open()
    try:
        text = dumps(snap.to_json())
        size = len(text)
        pd = snap.public_data
        saved = await store.save_snapshot(
            a.doc_id,
            snapshot_id=pd.snapshot_id,
            parent_snapshot_id="",
            parent_clocks={},
            pub_key=a.pub,
            ciphertext_hash=snapshot_ciphertext_hash(snap),
            parent_snapshot_proof=pd.parent_snapshot_proof,
            message=text,
        )
        assert saved.ok
        for clock in range(updates):
            text = dumps(a.update(snap, clock, content).to_json())
            size += len(text)
            saved = await store.save_update(
                a.doc_id, snapshot_id=pd.snapshot_id, pub_key=a.pub, clock=clock, message=text
            )
            assert saved.ok
    finally:
        await store.close()
    return a, snap, size


# ---------------------------------------------------------------------------- Jupyter server
class JupyterProcess:
    """``jupyter server`` with the relay extension in a subprocess (own config/data dirs)."""

    def __init__(self, tmp: str, *args: str):
        self.tmp = tmp
        self.args = args
        self.token = "relay-test-" + os.urandom(8).hex()
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/secsync"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def start(self, timeout: float = 60.0) -> JupyterProcess:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {
            **env_without_proxy(),
            "JUPYTER_CONFIG_DIR": os.path.join(self.tmp, "config"),
            "JUPYTER_DATA_DIR": os.path.join(self.tmp, "data"),
            "JUPYTER_RUNTIME_DIR": os.path.join(self.tmp, "runtime"),
        }
        self.log_path = os.path.join(self.tmp, "jupyter.log")
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.token={self.token}",
                f"--ServerApp.root_dir={self.tmp}",
                "--ServerApp.jpserver_extensions=secsync_jupyter=True",
                f"--SecsyncRelayExtension.db_path={os.path.join(self.tmp, 'relay.sqlite')}",
                *self.args,
            ],
            stdout=log,
            stderr=log,
            env=env,
            cwd=self.tmp,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = Path(self.log_path).read_text()[-2000:]
                raise RuntimeError(f"jupyter server exited: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("jupyter server did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
