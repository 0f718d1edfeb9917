"""Which files SQLite syncs, and when, in WAL mode with ``synchronous=NORMAL`` (issue 15).

The relay's SQLite writer runs ``synchronous=NORMAL`` and ``fdatasync``s the ``-wal`` file
itself after each COMMIT, before acknowledging (docs/relay.md "Durability"). That is as durable
as ``synchronous=FULL`` only if SQLite, in NORMAL mode, still (1) syncs the WAL before a
checkpoint copies frames into the database file, and (2) syncs the new WAL header when it
reuses the WAL after a checkpoint, before writing frames over old ones. This script runs a
small workload under ``strace`` and prints the sync calls between markers, for the SQLite that
Python uses. Needs ``strace``. Usage: ``python benchmarks/wal_sync_check.py``.

The last steps check the store's WAL restart off the writer's path (docs/relay.md
"Checkpoints"): a second connection (``synchronous=NORMAL``, as the store's checkpoint thread)
checkpoints and then makes a commit that changes nothing (``user_version`` rewritten); that
commit writes and syncs the new WAL header, and the writer's next commit only appends.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tempfile


def mark(name: str) -> None:
    os.access(f"/__mark__/{name}", os.F_OK)


def child(directory: str, synchronous: str) -> None:
    path = os.path.join(directory, "t.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (x TEXT)")
    mark("commit-1")
    conn.execute("INSERT INTO t VALUES (?)", ("a" * 100,))
    mark("commit-2")
    conn.execute("INSERT INTO t VALUES (?)", ("b" * 100,))
    mark("explicit-fdatasync")
    fd = os.open(path + "-wal", os.O_RDONLY)
    os.fdatasync(fd)
    os.close(fd)
    mark("checkpoint")
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    mark("commit-after-checkpoint")
    conn.execute("INSERT INTO t VALUES (?)", ("c" * 100,))
    mark("commit-4")
    conn.execute("INSERT INTO t VALUES (?)", ("d" * 100,))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA synchronous = NORMAL")
    mark("other-connection-checkpoint")
    other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    mark("other-connection-restart-commit")
    other.execute("BEGIN IMMEDIATE")
    version = other.execute("PRAGMA user_version").fetchone()[0]
    other.execute(f"PRAGMA user_version = {version}")
    other.execute("COMMIT")
    mark("writer-commit-after-that-restart")
    conn.execute("INSERT INTO t VALUES (?)", ("e" * 100,))
    mark("end")
    other.close()
    conn.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    for synchronous in ("NORMAL", "FULL"):
        run(synchronous)


def run(synchronous: str) -> None:
    print(f"SQLite {sqlite3.sqlite_version}, journal_mode=WAL, synchronous={synchronous}")
    with tempfile.TemporaryDirectory() as directory:
        out = subprocess.run(
            [
                "strace",
                "-f",
                "-y",
                "-e",
                "trace=access,fsync,fdatasync,pwrite64",
                sys.executable,
                __file__,
                "--child",
                directory,
                synchronous,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
    started = False
    for line in out.splitlines():
        m = re.search(r'access\("/__mark__/([^"]+)"', line)
        if m:
            started = True
            print(f"-- {m.group(1)}")
            continue
        if not started:
            continue
        m = re.search(r"(fsync|fdatasync|pwrite64)\((\d+)<([^>]*)>", line)
        if m:
            call, _fd, name = m.groups()
            n = re.search(r", (\d+), (\d+)\) = ", line) if call == "pwrite64" else None
            size, offset = n.groups() if n else (None, None)
            name = os.path.basename(name) if not os.path.isdir(name) else "(directory)"
            detail = f" {size} bytes at {offset}" if size else ""
            print(f"   {call}({name}){detail}")


if __name__ == "__main__":
    main()
