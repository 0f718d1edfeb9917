"""Retention of superseded key epochs on SQLite (issue 12; docs/relay.md "Key epochs on the
relay"): the file size before and after pruning, and how long the prune (DELETE + the
incremental vacuum that gives the pages back) holds the writer.

    .venv/bin/python benchmarks/retention_bench.py [--snapshots 50] [--kib 1024] [--updates 20]

Writes a document with SNAPSHOTS snapshots of KIB KiB (each with UPDATES updates of KIB/8 KiB)
in epoch 0 and one snapshot in epoch 1 through the store API, then prunes every superseded
snapshot (retention snapshots:0) and reports sizes (after the store is closed, i.e. after the
final checkpoint) and the time of the prune."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import tempfile
import time

from secsync_jupyter.relay.sqlite_store import SQLiteStore
from secsync_jupyter.relay.store import Retention


def text(n: int) -> str:
    return os.urandom(n * 3 // 4).hex()[:n]


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snapshots", type=int, default=50)
    p.add_argument("--kib", type=int, default=1024)
    p.add_argument("--updates", type=int, default=20)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "relay.sqlite")
        store = SQLiteStore(path, synchronous="normal", log=logging.getLogger("quiet"))
        logging.getLogger("quiet").addHandler(logging.NullHandler())
        logging.getLogger("quiet").propagate = False
        await store.open()
        doc, parent, size = "m1_bench", "", args.kib * 1024
        for i in range(args.snapshots + 1):
            sid = f"s{i}"
            saved = await store.save_snapshot(
                doc,
                snapshot_id=sid,
                parent_snapshot_id=parent,
                parent_clocks={"pk": args.updates - 1} if parent and args.updates else {},
                pub_key="pk",
                ciphertext_hash="h",
                parent_snapshot_proof="p",
                message=text(size if i < args.snapshots else 1000),
                epoch=0 if i < args.snapshots else 1,
            )
            assert saved.ok, saved
            parent = sid
            if i < args.snapshots:
                for clock in range(args.updates):
                    kw = {"snapshot_id": sid, "pub_key": "pk", "clock": clock}
                    assert (await store.save_update(doc, message=text(size // 8), **kw)).ok
        await store.close()
        before = os.path.getsize(path)
        slow: list[float] = []

        class Slow(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                m = re.match(
                    r"slow write transaction: \d+ writes, (\d+) ms statements, "
                    r"(\d+) ms commit",
                    record.getMessage(),
                )
                if m:
                    slow.append(int(m.group(1)) + int(m.group(2)))

        log = logging.getLogger("retention-bench")
        log.addHandler(Slow())
        log.propagate = False
        store = SQLiteStore(path, synchronous="normal", log=log)
        await store.open()
        t0 = time.perf_counter()
        result = await store.prune_superseded(doc, Retention(keep_snapshots=0))
        elapsed = time.perf_counter() - t0
        await store.close()
        after = os.path.getsize(path)
    print(
        f"pruned {result.snapshots} snapshots and {result.updates} updates in "
        f"{elapsed * 1000:.0f} ms; file {before / 2**20:.1f} MiB -> {after / 2**20:.2f} MiB; "
        f"write transactions over 100 ms while pruning: {len(slow)}"
        + (f" (longest {max(slow)} ms)" if slow else "")
    )


if __name__ == "__main__":
    asyncio.run(main())
