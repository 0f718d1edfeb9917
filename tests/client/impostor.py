"""A server on loopback that plays any remote host, to see what the client would send there.

The client connects to non-loopback relays through the proxy of the environment
(``WS_PROXY`` / ``WSS_PROXY``). :class:`Impostor` is that proxy and, behind the ``CONNECT``,
the remote host itself: it answers ``200``, terminates TLS with a certificate for the
requested names (trusted by the client through ``SSL_CERT_FILE``), records the WebSocket
handshake request (headers included) and refuses it with HTTP 403. Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Handshake:
    target: str  # host:port of the CONNECT
    tls: bool
    request_line: str
    headers: dict[str, str] = field(default_factory=dict)


def make_certificate(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (its own trust anchor): (cert, key)."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make a test certificate"
    cert, key = directory / "impostor.pem", directory / "impostor.key"
    san = ",".join(f"DNS:{n}" for n in names)
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={names[0]}",
            "-addext",
            f"subjectAltName={san}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class Impostor:
    def __init__(self, cert: Path, key: Path):
        self.handshakes: list[Handshake] = []
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Impostor:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> list[str]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        return head.decode("latin-1").split("\r\n")[:-2]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            lines = await self._read_head(reader)
            method, target, _ = lines[0].split(" ", 2)
            assert method == "CONNECT", lines[0]
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            tls = target.endswith(":443")
            if tls:
                await writer.start_tls(self._tls)
            lines = await self._read_head(reader)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.handshakes.append(Handshake(target, tls, lines[0], headers))
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
