"""A throw-away PostgreSQL cluster for the relay's tests and benchmarks.

Debian's PostgreSQL (``make postgres`` installs it: ``apt-get install postgresql``) provides
``initdb`` and ``pg_ctl`` in ``/usr/lib/postgresql/<version>/bin`` (or ``$SECSYNC_PG_BIN``).
:class:`PgCluster` makes a new cluster in a temporary directory, started on a unix socket in a
private directory (no TCP port, so parallel test runs never collide), with trust
authentication for the ``postgres`` superuser. PostgreSQL refuses to run as root: as root the
directory is given to the ``postgres`` user and every server command runs through
``runuser -u postgres --``. No server that exists before the tests is used.

When PostgreSQL is missing, :func:`find_bindir` raises :class:`PgUnavailable` with the command
that installs it: tests that need it fail, they are never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from secsync_jupyter.relay.store import RelayStore, store_from_url

PG_USER = "postgres"
#: the socket file is ``.s.PGSQL.<PORT>`` in the private socket directory
PORT = 5432


class PgUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed."""


def find_bindir() -> Path:
    """The directory of ``initdb`` / ``pg_ctl`` (the newest installed version)."""
    env = os.environ.get("SECSYNC_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()],
        reverse=True,
    )
    for c in candidates:
        if c and (Path(c) / "pg_ctl").is_file() and (Path(c) / "initdb").is_file():
            return Path(c)
    raise PgUnavailable(
        "PostgreSQL is not installed (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or "
        "$SECSYNC_PG_BIN): run `make postgres` (as root: apt-get install -y postgresql)"
    )


class PgCluster:
    """A private PostgreSQL cluster: :meth:`start`, :meth:`url`, :meth:`create_database`,
    :meth:`stop` (removes every file)."""

    def __init__(self, *, settings: dict[str, str] | None = None, fsync: bool = False):
        self.bindir = find_bindir()
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="secsync-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "run"
        self.log = self.base / "server.log"
        self.settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.sockets}'",
            "port": str(PORT),
            "max_connections": "300",
            "fsync": "on" if fsync else "off",
            **(settings or {}),
        }
        self._names = itertools.count(1)
        self.started = False

    # ------------------------------------------------------------------ commands
    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        cmd = [str(a) for a in args]
        if self.as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=str(self.base)
        )
        if check and proc.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )
        return proc.stdout

    def start(self) -> PgCluster:
        if self.as_root:
            try:
                pw = pwd.getpwnam(PG_USER)
            except KeyError:
                raise PgUnavailable(
                    f"no {PG_USER!r} user (PostgreSQL refuses to run as root; Debian's "
                    "postgresql package creates it): run `make postgres`"
                ) from None
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.sockets.mkdir()
        if self.as_root:
            os.chown(self.sockets, pw.pw_uid, pw.pw_gid)
        self._run(
            self.bindir / "initdb",
            "-D",
            str(self.data),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as f:
            for k, v in self.settings.items():
                f.write(f"{k} = {v}\n")
        self._run(
            self.bindir / "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            self._run(
                self.bindir / "pg_ctl",
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
                check=False,
            )
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def stop_server(self) -> None:
        """Stop the server (fast shutdown: every connection is dropped), keeping its files."""
        self._run(self.bindir / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        self._run(self.bindir / "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")

    # ------------------------------------------------------------------ databases
    def url(self, dbname: str = "postgres", **query: object) -> str:
        """A ``postgresql://`` URL of a database of this cluster (through its socket)."""
        extra = "".join(f"&{k}={v}" for k, v in query.items())
        return f"postgresql://{PG_USER}@/{dbname}?host={self.sockets}&port={PORT}{extra}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql as the superuser; returns the unaligned output."""
        psql = self.bindir / "psql"
        if not psql.exists():
            psql = Path(shutil.which("psql") or "psql")
        return self._run(
            psql,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sockets),
            "-p",
            str(PORT),
            "-U",
            PG_USER,
            "-d",
            dbname,
            "-c",
            sql,
        ).strip()

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        return name

    def database_files(self, url: str) -> dict[str, bytes]:
        """After a CHECKPOINT (every change written to the data files): the content of every
        file of the database of ``url`` and of the WAL, by path."""
        name = url.partition("@/")[2].partition("?")[0]
        self.psql("CHECKPOINT")
        oid = self.psql(f"SELECT oid FROM pg_database WHERE datname = '{name}'")
        files = {}
        for directory in (self.data / "base" / oid, self.data / "pg_wal"):
            for path in sorted(directory.iterdir()):
                if path.is_file():
                    files[str(path)] = path.read_bytes()
        return files

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ------------------------------------------------------------------------------- fixtures
#: the stores every store-level test runs against
STORE_KINDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def pg_cluster():
    """One private PostgreSQL cluster for the test session (fails when not installed)."""
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster):
    """A ``postgresql://`` URL of a new empty database (dropped after the test)."""
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request) -> str:
    """Each test that uses a relay database runs once per store kind."""
    return request.param


@pytest.fixture
def new_database(store_kind, tmp_path, request):
    """``new_database()``: a new empty database of the test's store kind, as the relay takes
    it (``store_from_url``): a SQLite file path, or a ``postgresql://`` URL of a new database
    of the session's cluster (dropped after the test)."""
    made: list[str] = []

    def make() -> str:
        if store_kind == "sqlite":
            db = str(tmp_path / f"relay{len(made)}.sqlite")
        else:
            cluster = request.getfixturevalue("pg_cluster")
            db = cluster.url(cluster.create_database())
        made.append(db)
        return db

    yield make
    if store_kind != "sqlite":
        cluster = request.getfixturevalue("pg_cluster")
        for db in made:
            cluster.drop_database(db.partition("@/")[2].partition("?")[0])


@pytest.fixture
def store_url(new_database) -> str:
    """The URL of a new, empty store of each kind (SQLite file / PostgreSQL database)."""
    return new_database()


@pytest_asyncio.fixture
async def new_store(store_url):
    """Open another store on the test's database (``await new_store(**options)``); all are
    closed after the test."""
    opened: list[RelayStore] = []

    async def make(**options) -> RelayStore:
        store = store_from_url(store_url, **options)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


# ------------------------------------------------------------------- looking into a database
def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql:", "postgres:"))


def _run_async(coro):
    """Run ``coro`` to completion in a thread of its own (callable from a running loop)."""
    box: list = []

    def target() -> None:
        try:
            box.append((True, asyncio.run(coro)))
        except BaseException as exc:
            box.append((False, exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def db_rows(db: str, sql: str, *params) -> list[tuple]:
    """The rows of a query (``?`` placeholders) on a relay database of either kind."""
    if not is_postgres(db):
        with contextlib.closing(sqlite3.connect(db)) as c:
            return c.execute(sql, params).fetchall()
    numbers = itertools.count(1)
    pg_sql = re.sub(r"\?(\d*)", lambda m: f"${m.group(1) or next(numbers)}", sql)

    async def fetch() -> list[tuple]:
        conn = await asyncpg.connect(db, server_settings={"search_path": "secsync"})
        try:
            return [tuple(r) for r in await conn.fetch(pg_sql, *params)]
        finally:
            await conn.close()

    return _run_async(fetch())


class HeldWrites:
    """Holds off every write to a relay database from another connection, so the relay's
    writes stay *accepted but uncommitted* for as long as the test needs (reads go on): SQLite's
    write lock (the relay's writer waits up to its 10 s busy timeout), or PostgreSQL's
    ``LOCK TABLE … IN EXCLUSIVE MODE`` on the relay's tables (writers wait, readers do not)."""

    def __init__(self, db: str):
        self.db = db
        if not is_postgres(db):
            self.conn = sqlite3.connect(db, isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
            return
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conn = self._call(asyncpg.connect(db, server_settings={"search_path": "secsync"}))
        self._call(
            self.conn.execute("BEGIN; LOCK TABLE documents, snapshots, updates IN EXCLUSIVE MODE")
        )

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def release(self) -> None:
        if not is_postgres(self.db):
            self.conn.execute("ROLLBACK")
            self.conn.close()
            return
        self._call(self.conn.execute("ROLLBACK"))
        self._call(self.conn.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
