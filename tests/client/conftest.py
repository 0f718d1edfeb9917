"""Relays on loopback for the client tests: the reference relay (npm secsync-server 0.5.0,
through the harness) and our own ``secsync-relay``. Both are required: a relay that is
missing fails the tests that use it (never silently fewer cases)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest

from ..conftest import HARNESS, HARNESS_HOME, make_harness_copies_writable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"relay exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("relay did not start")


def _harness_ready() -> pathlib.Path:
    if shutil.which("node") is None:
        pytest.fail("node is required for the reference harness")
    if not (HARNESS_HOME / "node_modules").is_dir():
        make_harness_copies_writable()
        subprocess.run([str(HARNESS / "setup.sh")], check=True, capture_output=True, timeout=600)
    return HARNESS_HOME


def _ours_available() -> bool:
    try:
        return importlib.util.find_spec("secsync_jupyter.relay.standalone") is not None
    except ModuleNotFoundError:
        return False


#: every relay-parametrized test runs against both, whatever is installed
RELAYS = ["ref", "ours"]


class Relay:
    def __init__(self, kind: str, tmp: pathlib.Path):
        self.kind = kind
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        env = {**os.environ, "PORT": str(self.port), "QUIET": "1"}
        if kind == "ref":
            home = _harness_ready()
            cmd = ["node", str(home / "ref-server.mjs")]
        else:
            if not _ours_available():
                pytest.fail(
                    "our relay (secsync_jupyter.relay.standalone) cannot be imported:"
                    " run `make setup`",
                    pytrace=False,
                )
            cmd = [
                sys.executable,
                "-m",
                "secsync_jupyter.relay.standalone",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db",
                str(tmp / f"relay-{self.port}.db"),
                "--open",
            ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(tmp)
        )
        _wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session", params=RELAYS)
def relay(request, tmp_path_factory):
    r = Relay(request.param, tmp_path_factory.mktemp(f"relay-{request.param}"))
    yield r
    r.stop()


#: ``ref-client.mjs`` with one addition: the reference sync machine's own option for
#: application fields in an update's public data (``additionalAuthenticationDataValidations``,
#: a zod schema), declaring our causal ``heads`` (issue 13). Without a declaration the
#: reference client parses public data with a strict schema that drops unknown fields, so the
#: signature no longer matches (212): docs/protocol.md, "Causal heads".
_DECLARE_HEADS = (
    ('import * as Y from "yjs";\n', 'import * as Y from "yjs";\nimport { z } from "zod";\n'),
    (
        "    sodium,\n    logging:",
        "    sodium,\n    additionalAuthenticationDataValidations: {\n"
        "      update: z.object({ heads: z.record(z.unknown()) }).partial(),\n    },\n    logging:",
    ),
)


def _ref_client_declaring_heads(home: pathlib.Path) -> pathlib.Path:
    script = home / "ref-client-heads.mjs"
    text = (home / "ref-client.mjs").read_text()
    for old, new in _DECLARE_HEADS:
        if text.count(old) != 1:
            pytest.fail(f"ref-client.mjs changed: cannot declare heads at {old!r}", pytrace=False)
        text = text.replace(old, new)
    script.write_text(text)
    return script


@pytest.fixture(scope="session")
def ref_client():
    """Run the reference Yjs client (``ref-client.mjs``) with the given arguments
    (``declare_heads=True``: the same client declaring ``heads`` as an application field)."""
    home = _harness_ready()
    scripts = {False: home / "ref-client.mjs", True: _ref_client_declaring_heads(home)}

    async def run(
        *args: str, timeout: float = 60.0, declare_heads: bool = False
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(scripts[declare_heads]),
            *map(str, args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode, out.decode(), err.decode()

    return run


@pytest.fixture(autouse=True)
def identity_file(tmp_path_factory, monkeypatch):
    """Every test has its own identity file (``SECSYNC_IDENTITY``, mode 0600), never the
    user's ~/.config one: documents with a membership log (``import`` makes them by default)
    are signed with it."""
    from secsync_jupyter.client.identity_file import create_identity

    path = tmp_path_factory.mktemp("identity") / "identity.json"
    user = create_identity(path, name="Test")
    monkeypatch.setenv("SECSYNC_IDENTITY", str(path))
    return user


def import_options(relay) -> list[str]:
    """``import`` makes a document with a membership log; the reference relay does not speak
    the membership frames, so there it makes one without (``--no-log``)."""
    return ["--no-log"] if relay.kind == "ref" else []
