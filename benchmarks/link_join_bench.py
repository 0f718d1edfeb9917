"""Joining through an invitation link on loopback (issue 12 goal: ≤ 1 s), and an admin's
rotation through the relay, with the Python client and our relay.

    .venv/bin/python benchmarks/link_join_bench.py [--joins 15] [--cells 50] [--members 100]

Starts ``secsync_jupyter.relay.standalone`` (SQLite, loopback), creates a notebook with
``--cells`` cells, adds ``--members`` − 1 members (so a rotation seals 100 lockboxes), makes
a viewer link and an editor link, then times, per join with a fresh identity:

* **join**: ``join_link`` — connect as the link, reader proof, the log (all entries) and the
  link's lockbox, the ``add-member`` signed by the link + our lockbox, until it is saved;
* **join + open**: ``open_notebook(link_url, identity=…)`` until the notebook is loaded as
  ourselves (the join, then a second connection: proof, log, lockbox, snapshot, updates);

and ``nb.rotate_key()`` by the owner (``create_rotation`` for every member and live link, the
relay's checks, the saved answer). Wall-clock; best / median / worst printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from secsync_jupyter.client import create_notebook, open_notebook
from secsync_jupyter.client.identity_file import create_identity
from secsync_jupyter.client.links_client import join_link
from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.identity import format_identity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_relay(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "secsync_jupyter.relay.standalone",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--db",
        str(tmp / "relay.db"),
        "--open",
    ]
    env = {**os.environ, "QUIET": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return proc, f"ws://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the relay did not start")


def row(name: str, times: list[float]) -> str:
    ms = [t * 1000 for t in times]
    return (
        f"{name:<28} best {min(ms):7.1f}  median {statistics.median(ms):7.1f}"
        f"  worst {max(ms):7.1f} ms  (n={len(ms)})"
    )


async def run(args: argparse.Namespace, url: str, tmp: Path) -> None:
    owner = create_identity(tmp / "owner" / "identity.json", name="Owner")
    async with create_notebook(url, identity=owner, awareness=False) as nb:
        for i in range(args.cells):
            nb.add_code_cell(f"x{i} = {i}  # " + "y" * 60)
        await nb.create_snapshot(timeout=60)
        for i in range(args.members - 1):
            kp = SigningKeyPair.from_seed(i.to_bytes(32, "little"))
            await nb.add_member(format_identity(kp.public_key, f"m{i}"), "viewer", timeout=60)
        viewer = await nb.create_link("viewer", "readers", timeout=60)
        editor = await nb.create_link("editor", "writers", timeout=60)
        joins, opens, rotations = [], [], []
        for i in range(args.joins):
            user = create_identity(tmp / f"j{i}" / "identity.json", name=f"J{i}")
            link = viewer if i % 2 else editor
            t0 = time.perf_counter()
            await join_link(str(link), user)
            joins.append(time.perf_counter() - t0)
            user2 = create_identity(tmp / f"k{i}" / "identity.json", name=f"K{i}")
            t0 = time.perf_counter()
            other = await open_notebook(str(link), identity=user2, awareness=False)
            opens.append(time.perf_counter() - t0)
            assert len(other.cells) == args.cells, len(other.cells)
            await other.close()
        members = len(nb.document.log.members)
        for _ in range(args.rotations):
            t0 = time.perf_counter()
            await nb.rotate_key(timeout=60)
            rotations.append(time.perf_counter() - t0)
        recipients = len(nb.document.log.epochs[-1].recipients)
    print(f"our relay on loopback, {args.cells} cells, {members} members at the end")
    print(row("join (link -> add-member)", joins))
    print(row("join + open as ourselves", opens))
    print(row(f"rotate_key ({recipients} lockboxes)", rotations))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--joins", type=int, default=15)
    ap.add_argument("--cells", type=int, default=50)
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--rotations", type=int, default=10)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, url = start_relay(tmp)
        try:
            asyncio.run(run(args, url, tmp))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
