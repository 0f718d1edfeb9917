"""SQLite store: stdlib ``sqlite3`` in two dedicated threads, WAL, group commit.

* One **writer thread** owns the only writing connection. It takes every write waiting in its
  queue (up to ``max_batch``), runs them in one ``BEGIN IMMEDIATE`` transaction, commits once
  and then resolves all their futures from a single event-loop callback: acknowledgements are
  only ever sent for committed rows, and many messages share one commit (and one fsync).
* With ``synchronous`` full/extra (the default) the writer connection runs
  ``synchronous=NORMAL`` (its COMMIT writes the WAL without syncing it) and a **sync thread**
  ``fdatasync``s the ``-wal`` file after the commits (one call for every commit waiting). The
  writes' ``on_committed`` callbacks run right after the COMMIT (the relay broadcasts then);
  their futures resolve only after the ``fdatasync`` (the relay acknowledges then), in commit
  order. An acknowledged write is as durable as with ``synchronous=FULL``
  (``benchmarks/wal_sync_check.py``, docs/relay.md "Durability").
* One **reader thread** serves reads (document frames, proof chains, room state) from its own
  connection, each read in its own read transaction (a consistent WAL snapshot).
* One **checkpoint thread** copies the WAL into the database file (PASSIVE checkpoints, which
  never block the writer) when the writer has been idle for ``CHECKPOINT_IDLE``, or when
  ``CHECKPOINT_WAL_PAGES`` frames wait in the WAL (a sustained load), and, with ``normal``,
  when a commit has waited ``CHECKPOINT_MAX_AGE_NORMAL`` for the checkpoint that syncs it. A
  checkpoint writes and fsyncs the database file, and a commit that runs beside it can stall
  on the shared disk (docs/relay.md "Checkpoints"): typing rarely meets one this way. The
  writer's own checkpoint at ``WRITER_AUTOCHECKPOINT_PAGES`` bounds the WAL.
* The rules are enforced by SQL inside the transaction (conditional inserts and unique
  constraints), not by Python state, so they hold with several writers on the same file.

The event loop never touches the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..protocol import SnapshotProofChainEntry
from .store import (
    LOCKBOX_EXISTS,
    LOG_ENTRY_CONFLICT,
    LOG_ENTRY_GAP,
    DocumentState,
    DocumentView,
    LockboxRow,
    LogRow,
    PruneResult,
    RelayStore,
    Retention,
    SaveResult,
    SnapshotInfo,
    StoreError,
    position,
    utf8_length,
)

#: schema migrations, applied in order; ``PRAGMA user_version`` = number applied
MIGRATIONS: tuple[str, ...] = (
    # 1: documents, snapshots (proof-chain metadata + message), updates
    """
    CREATE TABLE documents (
        doc_id          TEXT PRIMARY KEY,
        active_snapshot INTEGER REFERENCES snapshots(seq),
        created_at      INTEGER NOT NULL
    );
    CREATE TABLE snapshots (
        seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id                TEXT NOT NULL REFERENCES documents(doc_id),
        snapshot_id           TEXT NOT NULL,
        parent_snapshot_id    TEXT NOT NULL,
        pub_key               TEXT NOT NULL,
        ciphertext_hash       TEXT NOT NULL,
        parent_snapshot_proof TEXT NOT NULL,
        message               TEXT NOT NULL,
        created_at            INTEGER NOT NULL,
        UNIQUE (doc_id, snapshot_id)
    );
    CREATE INDEX snapshots_by_doc ON snapshots(doc_id, seq);
    CREATE TABLE updates (
        id           INTEGER PRIMARY KEY,
        snapshot_seq INTEGER NOT NULL REFERENCES snapshots(seq),
        version      INTEGER NOT NULL,
        pub_key      TEXT NOT NULL,
        clock        INTEGER NOT NULL CHECK (clock >= 0),
        message      TEXT NOT NULL,
        UNIQUE (snapshot_seq, version),
        UNIQUE (snapshot_seq, pub_key, clock)
    );
    """,
    # 2: bytes stored on each document's active snapshot (its message and its updates'), kept
    # on the small documents row so that a room reads it without touching the messages
    """
    ALTER TABLE documents ADD COLUMN active_bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE documents SET active_bytes =
        COALESCE((SELECT length(CAST(s.message AS BLOB)) FROM snapshots s
                  WHERE s.seq = documents.active_snapshot), 0)
      + COALESCE((SELECT SUM(length(CAST(u.message AS BLOB))) FROM updates u
                  WHERE u.snapshot_seq = documents.active_snapshot), 0);
    """,
    # 3: the membership log of documents that have one (issue 11): accepted entries, one chain
    # per document (a second entry on the same parent violates the primary key; an entry names
    # the hash of the stored entry before it)
    """
    CREATE TABLE log_entries (
        doc_id     TEXT NOT NULL,
        seq        INTEGER NOT NULL CHECK (seq >= 0),
        hash       TEXT NOT NULL,
        prev       TEXT NOT NULL,
        entry      TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (doc_id, seq),
        UNIQUE (doc_id, seq, hash)
    );
    """,
    # 4: key epochs (issue 12): each snapshot's epoch (0 before), and the lockboxes, one per
    # (document, epoch, recipient), read by recipient
    """
    ALTER TABLE snapshots ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0);
    CREATE TABLE lockboxes (
        doc_id     TEXT NOT NULL,
        epoch      INTEGER NOT NULL CHECK (epoch >= 0),
        recipient  TEXT NOT NULL,
        lockbox    TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (doc_id, recipient, epoch)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

SYNCHRONOUS_MODES = ("full", "normal", "extra")

_INSERT_UPDATE = """
INSERT INTO updates (snapshot_seq, version, pub_key, clock, message)
SELECT s.seq,
       COALESCE((SELECT MAX(u.version) FROM updates u WHERE u.snapshot_seq = s.seq), 0) + 1,
       ?3, ?4, ?5
FROM documents d JOIN snapshots s ON s.seq = d.active_snapshot
WHERE d.doc_id = ?1 AND s.snapshot_id = ?2
  AND (?4 = 0 OR EXISTS (SELECT 1 FROM updates p
                         WHERE p.snapshot_seq = s.seq AND p.pub_key = ?3 AND p.clock = ?4 - 1))
RETURNING snapshot_seq, version
"""

#: the updates of a snapshot after the reader's known clock of each author (none known: all)
_MISSING_UPDATES = """
SELECT u.message FROM updates u LEFT JOIN json_each(?2) k ON k.key = u.pub_key
WHERE u.snapshot_seq = ?1 AND u.clock > COALESCE(k.value, -1)
ORDER BY u.version
"""

_STOP = object()

#: write transactions slower than this (seconds) are logged as warnings
SLOW_COMMIT = 0.1
#: the checkpoint thread checkpoints once the writer has been idle this long (seconds): a
#: pause in the writes, not one between two words (each checkpoint leads to a WAL restart,
#: whose fsync a commit arriving meanwhile waits for: see ``_restart_wal``) ...
CHECKPOINT_IDLE = 2.0
#: ... or once this many WAL frames wait to be copied into the database (4 KiB pages: 4 MiB)
CHECKPOINT_WAL_PAGES = 1_000
#: ``normal`` only: ... or once a commit has waited this long (seconds) for the checkpoint that
#: syncs it (the WAL reaches the disk only then: the tail an OS crash may lose, docs/relay.md)
CHECKPOINT_MAX_AGE_NORMAL = 0.5
#: how often the checkpoint thread looks again while writes keep coming (seconds)
CHECKPOINT_POLL = 0.05
#: pages given back to the file per write transaction when pruning (4 KiB pages: 2 MiB)
VACUUM_PAGES = 512
#: the writer checkpoints itself (SQLite's auto-checkpoint, inside a COMMIT) when the WAL holds
#: this many frames: it copies what the checkpoint thread has not copied yet, so that the next
#: commit starts the WAL again from its beginning (bounds the WAL under a sustained load, when
#: the checkpoint thread's PASSIVE checkpoints never catch up with the last frame)
WRITER_AUTOCHECKPOINT_PAGES = 4_000
#: the WAL-index header in the ``-shm`` file (https://sqlite.org/walformat.html): version,
#: mxFrame (the last valid frame) and nBackfill (frames copied into the database)
_WAL_INDEX_VERSION = 3007000


class _Op:
    __slots__ = ("args", "fn", "future", "on_committed")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple,
        future: asyncio.Future,
        on_committed: Callable[[Any], None] | None = None,
    ):
        self.fn = fn
        self.args = args
        self.future = future
        self.on_committed = on_committed


def _fail(code: str, message: str) -> SaveResult:
    return SaveResult(False, code=code, message=message)


class SQLiteStore(RelayStore):
    """See the module docs. ``synchronous`` is ``"full"``/``"extra"`` (the default: the sync
    thread fdatasyncs the WAL after the commits and before their acknowledgements, so an
    acknowledged write survives a power loss; ``on_committed`` runs before that) or
    ``"normal"`` (a commit writes the WAL without fsync: an acknowledged write survives any
    crash of the relay process, but an OS crash or power loss may lose the commits since the
    last checkpoint's WAL sync; the checkpoint thread checkpoints within
    ``CHECKPOINT_MAX_AGE_NORMAL`` of a commit). docs/relay.md "Durability" has measurements."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: str = "full",
        max_batch: int = 512,
        log: logging.Logger | None = None,
    ):
        self.path = os.fspath(path)
        self.log = log or logging.getLogger("secsync_jupyter.relay.store")
        if synchronous.lower() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.synchronous = synchronous.lower()
        #: full/extra: commits are made durable by our own fdatasync of the WAL (see the
        #: module docs); ``save_update`` / ``save_snapshot`` then call ``on_committed`` before
        #: their futures resolve
        self.early_commit = self.synchronous != "normal"
        #: the first failed fdatasync of the WAL (early_commit only). Fail-stop, as PostgreSQL
        #: does: after a failed fsync the kernel may have dropped the dirty pages and a later
        #: fsync can succeed without them, so nothing written after it is broadcast or
        #: acknowledged until the relay is restarted (reads still work).
        self.sync_error: Exception | None = None
        self.max_batch = max_batch
        self._wq: queue.SimpleQueue = queue.SimpleQueue()
        #: committed batches waiting for the WAL's fdatasync (early_commit only)
        self._sq: queue.SimpleQueue = queue.SimpleQueue()
        self._rq: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._open = False
        self._closing = False
        #: group commits so far (tests and benchmarks)
        self.commits = 0
        #: checkpoints so far (the checkpoint thread's; tests and benchmarks)
        self.checkpoints = 0
        # checkpoint scheduling (module constants, read here so that a benchmark can set them)
        self.checkpoint_idle = CHECKPOINT_IDLE
        self.checkpoint_wal_pages = CHECKPOINT_WAL_PAGES
        self.checkpoint_max_age = None if self.early_commit else CHECKPOINT_MAX_AGE_NORMAL
        self.writer_autocheckpoint_pages = WRITER_AUTOCHECKPOINT_PAGES
        #: after a complete checkpoint the checkpoint thread starts the WAL again itself (see
        #: ``_restart_wal``); benchmarks turn it off to compare
        self.restart_wal = True
        #: WAL restarts made by the checkpoint thread (tests and benchmarks)
        self.wal_restarts = 0
        #: set by the writer after each commit; the checkpoint thread waits for it
        self._wrote = threading.Event()
        self._checkpoint_stop = threading.Event()
        #: monotonic time of the writer's last commit / the oldest commit not yet checkpointed
        self._last_write = 0.0
        self._oldest_unchecked: float | None = None
        self._in_batch = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
        prefix = "sqlite:///"
        path = url[len(prefix) :].partition("?")[0] if url.startswith(prefix) else ""
        if not path:
            raise ValueError(f"a SQLite store URL is sqlite:///PATH, not {url!r}")
        return cls(path, synchronous=options.get("synchronous", "full"), log=options.get("log"))

    # ------------------------------------------------------------------ lifecycle
    def _connect(self, synchronous: str | None = None) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {(synchronous or self.synchronous).upper()}")
        return conn

    def open_sync(self) -> None:
        """Create / migrate the database and start the threads (blocks briefly).

        Raises :class:`StoreError` with a clear message when the file cannot be opened or
        written, or its schema is newer than this relay."""
        if self._open:
            return
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(directory):
                raise StoreError(
                    f"cannot open database {self.path}: directory {directory} does not exist"
                )
            conn = self._connect()
            try:
                # pruned epochs give their pages back to the file (issue 12 retention): a new
                # database is created with incremental auto-vacuum, an older one converted once
                # (a VACUUM) when it is migrated to schema 4
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"cannot switch {self.path} to WAL mode (got {mode})")
                self._migrate(conn)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        writer = threading.Thread(
            target=self._writer_main, name="secsync-relay-writer", daemon=True
        )
        reader = threading.Thread(
            target=self._reader_main, name="secsync-relay-reader", daemon=True
        )
        checkpointer = threading.Thread(
            target=self._checkpoint_main, name="secsync-relay-checkpoint", daemon=True
        )
        self._threads = [writer, reader, checkpointer]
        if self.early_commit:
            self._syncer = threading.Thread(
                target=self._sync_main, name="secsync-relay-sync", daemon=True
            )
            self._syncer.start()
        # connect in the threads; make sure all could open the file before returning
        self._ready = threading.Barrier(4)
        self._start_error: Exception | None = None
        writer.start()
        reader.start()
        checkpointer.start()
        self._ready.wait()
        if self._start_error is not None:
            raise StoreError(f"cannot open database {self.path}: {self._start_error}")
        self._open = True

    async def open(self) -> None:
        self.open_sync()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {current}, newer than this relay "
                f"({SCHEMA_VERSION}); upgrade secsync-jupyter"
            )
        if current < 4 and conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
            self.log.info("converted %s to incremental auto-vacuum", self.path)
        for number in range(current, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.log.info("migrated %s to schema version %d", self.path, number + 1)

    async def close(self) -> None:
        if not self._open or self._closing:
            return
        self._closing = True
        self._wq.put(_STOP)
        self._rq.put(_STOP)
        self._checkpoint_stop.set()
        self._wrote.set()
        loop = asyncio.get_running_loop()
        for t in self._threads:
            await loop.run_in_executor(None, t.join)
        await loop.run_in_executor(None, self._fold_wal)
        # the writer resolved its last futures with call_soon_threadsafe: let them run
        await asyncio.sleep(0)
        self._open = False

    def _fold_wal(self) -> None:
        """Every thread's connection is closed: one last connection copies the WAL into the
        database and removes it. (SQLite does that when the last connection closes, but
        threads closing at the same moment can each still see another one open.)"""
        if self._start_error is not None or not os.path.exists(self.path):
            return
        try:
            conn = self._connect("normal")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self.log.warning("final checkpoint failed: %s", exc)

    # ------------------------------------------------------------------ threads
    def _thread_connect(self, synchronous: str | None = None) -> sqlite3.Connection | None:
        try:
            conn = self._connect(synchronous)
        except Exception as exc:  # reported by open_sync
            self._start_error = exc
            conn = None
        self._ready.wait()
        return conn

    def _writer_main(self) -> None:
        # early_commit: NORMAL (no sync in COMMIT), the sync thread makes the commits durable
        conn = self._thread_connect("normal" if self.early_commit else None)
        if conn is None:
            if self.early_commit:
                self._sq.put(_STOP)
            return
        conn.execute(f"PRAGMA wal_autocheckpoint = {self.writer_autocheckpoint_pages}")
        stop = False
        while not stop:
            ops = [self._wq.get()]
            while len(ops) < self.max_batch:
                try:
                    ops.append(self._wq.get_nowait())
                except queue.Empty:
                    break
            if any(op is _STOP for op in ops):
                stop = True
                ops = [op for op in ops if op is not _STOP]
                # take whatever else is queued, so nothing submitted is left unanswered
                while True:
                    try:
                        op = self._wq.get_nowait()
                    except queue.Empty:
                        break
                    if op is not _STOP:
                        ops.append(op)
            if ops:
                results, committed = self._run_batch(conn, ops)
                if self.early_commit:
                    if committed and self.sync_error is None:
                        self._post_committed(results)
                    # answered by the sync thread, in commit order (a failed batch too)
                    self._sq.put((results, committed))
                else:
                    self._post(results)
        if self.early_commit:
            # the WAL stays open (this connection) until the last commit is synced
            self._sq.put(_STOP)
            self._syncer.join()
        conn.close()

    def _post_committed(self, results: list[tuple[_Op, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for op, result in results:
            if op.on_committed is not None:
                by_loop.setdefault(op.future.get_loop(), []).append((op.on_committed, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_call_committed, items)
            except RuntimeError:  # loop closed meanwhile: nobody is waiting any more
                pass

    def sync_wal(self) -> None:
        """``fdatasync`` the ``-wal`` file (the sync thread; tests replace it). Raises
        ``OSError``."""
        fd = os.open(self.path + "-wal", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _sync_main(self) -> None:
        """Make committed batches durable: one ``fdatasync`` of the WAL for every batch
        waiting, then their answers, in commit order. A failed ``fdatasync`` fails every
        write it should have covered (``storage-failed``, ``SaveResult.durable_failed``)."""
        stop = False
        while not stop:
            items = [self._sq.get()]
            while True:
                try:
                    items.append(self._sq.get_nowait())
                except queue.Empty:
                    break
            if any(item is _STOP for item in items):
                stop = True
                items = [item for item in items if item is not _STOP]
            error: Exception | None = None
            if any(committed for _results, committed in items):
                if self.sync_error is not None:  # fail-stop (see __init__)
                    error = self.sync_error
                else:
                    t0 = time.monotonic()
                    try:
                        self.sync_wal()
                    except Exception as exc:  # OSError; anything else must not stop this thread
                        error = self.sync_error = exc
                        self.log.error(
                            "fdatasync of the WAL failed: no write is acknowledged any more "
                            "until the relay is restarted (%s)",
                            exc,
                        )
                    if time.monotonic() - t0 > SLOW_COMMIT:
                        self.log.warning("slow WAL sync: %.0f ms", (time.monotonic() - t0) * 1000)
            answers: list[tuple[_Op, Any]] = []
            for results, committed in items:
                if committed and error is not None:
                    self.log.error(
                        "fdatasync of the WAL failed (%d committed writes not acknowledged): %s",
                        len(results),
                        error,
                    )
                    failed = SaveResult(
                        False,
                        code="storage-failed",
                        message=(
                            f"the relay could not store the message durably ({error}); "
                            "it refuses writes until it is restarted"
                        ),
                        durable_failed=True,
                    )
                    results = [(op, failed) for op, _result in results]
                answers.extend(results)
            if answers:
                self._post(answers)

    def _run_batch(
        self, conn: sqlite3.Connection, ops: list[_Op]
    ) -> tuple[list[tuple[_Op, Any]], bool]:
        """The answers of ``ops``, and whether their transaction committed."""
        self._in_batch = True
        try:
            t0 = time.monotonic()
            conn.execute("BEGIN IMMEDIATE")
            results = [(op, op.fn(conn, *op.args)) for op in ops]
            t1 = time.monotonic()
            conn.execute("COMMIT")
            t2 = time.monotonic()
            self._wrote_at(t2)
            if t2 - t0 > SLOW_COMMIT:
                self.log.warning(
                    "slow write transaction: %d writes, %.0f ms statements, %.0f ms commit",
                    len(ops),
                    (t1 - t0) * 1000,
                    (t2 - t1) * 1000,
                )
            self.commits += 1
            return results, True
        except Exception as exc:
            self.log.error(
                "write transaction failed (%d writes not acknowledged): %s", len(ops), exc
            )
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            failed = _fail("storage-failed", f"the relay could not store the message: {exc}")
            return [(op, failed) for op in ops], False
        finally:
            self._in_batch = False

    def _reader_main(self) -> None:
        conn = self._thread_connect()
        if conn is None:
            return
        while True:
            op = self._rq.get()
            if op is _STOP:
                break
            try:
                conn.execute("BEGIN")
                try:
                    result: Any = op.fn(conn, *op.args)
                finally:
                    conn.execute("COMMIT")
            except Exception as exc:
                result = StoreError(f"read failed: {exc}")
            self._post([(op, result)])
        conn.close()

    # ------------------------------------------------------------------ checkpoints
    def _wrote_at(self, now: float) -> None:
        """The writer committed (its thread)."""
        self._last_write = now
        if self._oldest_unchecked is None:
            self._oldest_unchecked = now
        self._wrote.set()

    def _checkpoint_due(self) -> bool:
        now = time.monotonic()
        if not self._in_batch and now - self._last_write >= self.checkpoint_idle:
            return True
        oldest, max_age = self._oldest_unchecked, self.checkpoint_max_age
        if max_age is not None and oldest is not None and now - oldest >= max_age:
            return True
        return self.wal_frames_pending() >= self.checkpoint_wal_pages

    def _checkpoint_main(self) -> None:
        """Checkpoint after commits, when due (module docs): a PASSIVE checkpoint never blocks
        the writer, but its writes and fsyncs share the disk with the writer's."""
        # NORMAL: a checkpoint still syncs the WAL before it copies and the database after
        # (SQLite's WAL mode); _restart_wal's commit needs no sync of its own
        conn = self._thread_connect("normal")
        if conn is None:
            return
        conn.execute("PRAGMA busy_timeout = 0")  # never wait for the writer's lock
        try:
            while True:
                self._wrote.wait()
                while not self._checkpoint_stop.is_set() and not self._checkpoint_due():
                    self._checkpoint_stop.wait(CHECKPOINT_POLL)
                if self._checkpoint_stop.is_set():
                    break  # the last connection to close checkpoints
                # commits from here on wait for the next checkpoint (this one may copy them too)
                self._wrote.clear()
                self._oldest_unchecked = None
                self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One PASSIVE checkpoint on ``conn`` (the checkpoint thread; benchmarks wrap it), then,
        if it copied the whole WAL, the WAL's restart."""
        try:
            t0 = time.monotonic()
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if time.monotonic() - t0 > SLOW_COMMIT:
                self.log.warning("slow checkpoint: %.0f ms", (time.monotonic() - t0) * 1000)
            idle = not self._in_batch and self._wq.empty()
            if self.restart_wal and not busy and 0 < frames == copied and idle:
                self._restart_wal(conn)
        except sqlite3.Error as exc:
            self.log.warning("checkpoint failed: %s", exc)
        self.checkpoints += 1

    def _restart_wal(self, conn: sqlite3.Connection) -> None:
        """Start the WAL again from its beginning, here rather than in the writer's next
        COMMIT. The first commit after a complete checkpoint writes the WAL's new header and
        ``fdatasync``s it (SQLite does so in every ``synchronous`` mode but OFF, so that a
        stale header cannot bring old frames back); on a busy disk that sync is what made the
        remaining slow commits (docs/relay.md "Checkpoints"). So the checkpoint thread makes
        that first commit itself: it rewrites ``user_version`` with its own value (a write
        that changes nothing). If the writer holds the write lock, it is skipped (the writer
        then restarts the WAL itself, as before); a commit arriving meanwhile waits for it."""
        t0 = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy: the writer is writing
            return
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.wal_restarts += 1
        if time.monotonic() - t0 > SLOW_COMMIT:
            self.log.warning(
                "slow WAL restart (off the writer's path): %.0f ms", (time.monotonic() - t0) * 1000
            )

    def wal_frames_pending(self) -> int:
        """WAL frames not yet copied into the database file, from the WAL-index header in the
        ``-shm`` file (mxFrame - nBackfill; the format is documented and stable since SQLite
        3.7.0). If that header cannot be read: the size of the ``-wal`` file in frames (its
        high-water mark, never less than the frames pending)."""
        try:
            fd = os.open(self.path + "-shm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                header = os.pread(fd, 100, 0)
            finally:
                os.close(fd)
            if len(header) == 100:
                version, _, _, init = struct.unpack_from("=IIIB", header, 0)
                (max_frame,) = struct.unpack_from("=I", header, 16)
                (backfilled,) = struct.unpack_from("=I", header, 96)
                if version == _WAL_INDEX_VERSION and init:
                    return max(0, max_frame - backfilled)
        except OSError:
            pass
        try:
            return max(0, os.path.getsize(self.path + "-wal") - 32) // (4096 + 24)
        except OSError:
            return 0

    def _post(self, results: list[tuple[_Op, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Op, Any]]] = {}
        for item in results:
            by_loop.setdefault(item[0].future.get_loop(), []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # loop closed meanwhile: nobody is waiting any more
                pass

    def _submit(self, q: queue.SimpleQueue, fn, args, on_committed=None) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if not self._open or self._closing:
            fut.set_exception(StoreError("the store is closed"))
            return fut
        q.put(_Op(fn, args, fut, on_committed))
        return fut

    # ------------------------------------------------------------------ API
    def save_lockbox(self, doc_id, *, epoch, recipient, lockbox):
        return self._submit(self._wq, _save_lockbox, (doc_id, epoch, recipient, lockbox))

    async def read_lockboxes(self, doc_id: str, recipient: str) -> list[LockboxRow]:
        return await self._read(_read_lockboxes, (doc_id, recipient))

    async def prune_superseded(self, doc_id: str, retention: Retention) -> PruneResult:
        """In small write transactions (one snapshot with its updates, then
        ``VACUUM_PAGES`` pages at a time), so that other documents' writes go on between
        them: the writer is never held for long."""
        seqs = await self._submit(self._wq, _superseded, (doc_id, retention))
        snapshots = updates = 0
        for seq in seqs:
            deleted = await self._submit(self._wq, _delete_snapshot, (seq,))
            snapshots += 1
            updates += deleted
        while seqs and await self._submit(self._wq, _vacuum_some, (VACUUM_PAGES,)):
            pass
        return PruneResult(snapshots, updates)

    async def documents_with_epochs(self) -> list[str]:
        return await self._read(_documents_with_epochs, ())

    def save_update(self, doc_id, *, snapshot_id, pub_key, clock, message, on_committed=None):
        """``on_committed(result)`` (``early_commit`` only): called on the loop right after
        the COMMIT, before the future resolves (after the WAL's fdatasync)."""
        args = (doc_id, snapshot_id, pub_key, clock, message)
        return self._submit(self._wq, _save_update, args, on_committed)

    def save_snapshot(
        self,
        doc_id,
        *,
        snapshot_id,
        parent_snapshot_id,
        parent_clocks,
        pub_key,
        ciphertext_hash,
        parent_snapshot_proof,
        message,
        epoch=0,
        on_committed=None,
    ):
        args = (
            doc_id,
            snapshot_id,
            parent_snapshot_id,
            dict(parent_clocks),
            pub_key,
            ciphertext_hash,
            parent_snapshot_proof,
            message,
            epoch,
        )
        return self._submit(self._wq, _save_snapshot, args, on_committed)

    def save_log_entry(self, doc_id, *, seq, prev, hash, entry, lockboxes=()):
        args = (doc_id, seq, prev, hash, entry, tuple(lockboxes))
        return self._submit(self._wq, _save_log_entry, args)

    async def read_log(self, doc_id: str, after_seq: int = -1) -> list[LogRow]:
        return await self._read(_read_log, (doc_id, after_seq))

    async def count_documents(self) -> int:
        return await self._read(_count_documents, ())

    async def load_state(self, doc_id: str) -> DocumentState:
        return await self._read(_load_state, (doc_id,))

    async def read_document(self, doc_id, known_snapshot_id, known_clocks) -> DocumentView:
        clocks = dict(known_clocks) if known_clocks is not None else None
        return await self._read(_read_document, (doc_id, known_snapshot_id or None, clocks))

    async def _read(self, fn, args):
        result = await self._submit(self._rq, fn, args)
        if isinstance(result, Exception):
            raise result
        return result


def _call_committed(calls: list) -> None:
    for fn, result in calls:
        try:
            fn(result)
        except Exception:  # one write's callback must not keep the others from running
            logging.getLogger("secsync_jupyter.relay.store").exception("on_committed failed")


def _resolve(results: list[tuple[_Op, Any]]) -> None:
    for op, result in results:
        if not op.future.done():
            op.future.set_result(result)


# ---------------------------------------------------------------------- SQL (thread side)
def _save_update(conn, doc_id, snapshot_id, pub_key, clock, message) -> SaveResult:
    try:
        row = conn.execute(
            _INSERT_UPDATE, (doc_id, snapshot_id, pub_key, clock, message)
        ).fetchone()
    except sqlite3.IntegrityError:
        return _fail("update-clock-replayed", f"clock {clock} of this pubKey is already stored")
    if row is not None:
        conn.execute(
            "UPDATE documents SET active_bytes = active_bytes + ? WHERE doc_id = ?",
            (utf8_length(message), doc_id),
        )
        return SaveResult(True, position(row[0], row[1]))
    active = conn.execute(
        "SELECT s.snapshot_id FROM documents d JOIN snapshots s ON s.seq = d.active_snapshot "
        "WHERE d.doc_id = ?",
        (doc_id,),
    ).fetchone()
    if active is None or active[0] != snapshot_id:
        return _fail("update-wrong-snapshot", "refSnapshotId is not the active snapshot")
    return _fail("update-clock-gap", f"clock {clock} does not follow this pubKey's last clock")


def _save_snapshot(
    conn, doc_id, snapshot_id, parent_id, parent_clocks, pub_key, chash, proof, message, epoch=0
) -> SaveResult:
    conn.execute("SAVEPOINT snapshot")
    try:
        row = conn.execute(
            "SELECT active_snapshot FROM documents WHERE doc_id = ?", (doc_id,)
        ).fetchone()
        created = row is None
        now = int(time.time())
        if created:
            conn.execute(
                "INSERT INTO documents (doc_id, active_snapshot, created_at) VALUES (?, NULL, ?)",
                (doc_id, now),
            )
        active = None if row is None else row[0]
        if active is not None:
            active_id = conn.execute(
                "SELECT snapshot_id FROM snapshots WHERE seq = ?", (active,)
            ).fetchone()[0]
            if active_id != parent_id:
                conn.execute("ROLLBACK TO snapshot")
                return _fail("snapshot-parent-not-active", "parentSnapshotId is not active")
            clocks = dict(
                conn.execute(
                    "SELECT pub_key, MAX(clock) FROM updates WHERE snapshot_seq = ? "
                    "GROUP BY pub_key",
                    (active,),
                ).fetchall()
            )
            if clocks != parent_clocks:
                conn.execute("ROLLBACK TO snapshot")
                return _fail(
                    "snapshot-clocks-differ", "parentSnapshotUpdateClocks differ from the relay's"
                )
        cur = conn.execute(
            "INSERT INTO snapshots (doc_id, snapshot_id, parent_snapshot_id, pub_key, "
            "ciphertext_hash, parent_snapshot_proof, message, created_at, epoch) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (doc_id, snapshot_id, parent_id, pub_key, chash, proof, message, now, epoch),
        )
        seq = cur.lastrowid
        conn.execute(
            "UPDATE documents SET active_snapshot = ?, active_bytes = ? WHERE doc_id = ?",
            (seq, utf8_length(message), doc_id),
        )
        return SaveResult(True, position(seq, 0), created_document=created)
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK TO snapshot")
        return _fail("snapshot-id-exists", "a snapshot with this snapshotId already exists")
    finally:
        conn.execute("RELEASE snapshot")


def _save_log_entry(conn, doc_id, seq, prev, hash, entry, lockboxes=()) -> SaveResult:
    if seq > 0:
        row = conn.execute(
            "SELECT hash FROM log_entries WHERE doc_id = ? AND seq = ?", (doc_id, seq - 1)
        ).fetchone()
        if row is None:
            return _fail(LOG_ENTRY_GAP, f"entry {seq - 1} is missing")
        if row[0] != prev:
            return _fail(LOG_ENTRY_CONFLICT, f"entry {seq - 1} has another hash")
    try:
        conn.execute(
            "INSERT INTO log_entries (doc_id, seq, hash, prev, entry, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (doc_id, seq, hash, prev, entry, int(time.time())),
        )
    except sqlite3.IntegrityError:
        return _fail(LOG_ENTRY_CONFLICT, f"the log already has entry {seq}")
    now = int(time.time())
    conn.executemany(
        "INSERT OR IGNORE INTO lockboxes (doc_id, epoch, recipient, lockbox, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(doc_id, lb.epoch, lb.recipient, lb.lockbox, now) for lb in lockboxes],
    )
    return SaveResult(True)


def _save_lockbox(conn, doc_id, epoch, recipient, lockbox) -> SaveResult:
    row = conn.execute(
        "SELECT lockbox FROM lockboxes WHERE doc_id = ? AND recipient = ? AND epoch = ?",
        (doc_id, recipient, epoch),
    ).fetchone()
    if row is not None:
        if row[0] == lockbox:
            return SaveResult(True)
        return _fail(LOCKBOX_EXISTS, "another lockbox for this epoch and recipient is stored")
    conn.execute(
        "INSERT INTO lockboxes (doc_id, epoch, recipient, lockbox, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (doc_id, epoch, recipient, lockbox, int(time.time())),
    )
    return SaveResult(True)


def _read_lockboxes(conn, doc_id, recipient) -> list[LockboxRow]:
    return [
        LockboxRow(*r)
        for r in conn.execute(
            "SELECT epoch, recipient, lockbox FROM lockboxes WHERE doc_id = ? AND recipient = ? "
            "ORDER BY epoch",
            (doc_id, recipient),
        )
    ]


def _documents_with_epochs(conn) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT d.doc_id FROM documents d JOIN snapshots s ON s.seq = d.active_snapshot "
            "WHERE s.epoch > 0"
        )
    ]


def superseded_to_prune(rows, retention: Retention, now: float) -> list[int]:
    """Of the superseded snapshots ``rows`` ((seq, created_at), newest first) those that
    ``retention`` does not keep (the same choice in every store)."""
    if retention.keeps_all:
        return []
    out = []
    for i, (seq, created_at) in enumerate(rows):
        if retention.keep_snapshots is not None and i < retention.keep_snapshots:
            continue
        if retention.keep_seconds and now - created_at < retention.keep_seconds:
            continue  # younger than the retention (days:0 keeps none)
        out.append(seq)
    return out


def _superseded(conn, doc_id, retention: Retention) -> list[int]:
    """The seqs of the document's superseded snapshots ``retention`` does not keep."""
    row = conn.execute(
        "SELECT s.seq, s.epoch FROM documents d JOIN snapshots s ON s.seq = d.active_snapshot "
        "WHERE d.doc_id = ?",
        (doc_id,),
    ).fetchone()
    if row is None or row[1] == 0:
        return []
    rows = conn.execute(
        "SELECT seq, created_at FROM snapshots WHERE doc_id = ? AND epoch < ? AND seq <> ? "
        "ORDER BY seq DESC",
        (doc_id, row[1], row[0]),
    ).fetchall()
    return superseded_to_prune(rows, retention, time.time())


def _delete_snapshot(conn, seq) -> int:
    """A superseded snapshot and its updates (never an active one); the updates deleted."""
    if conn.execute("SELECT 1 FROM documents WHERE active_snapshot = ?", (seq,)).fetchone():
        return 0
    updates = conn.execute("DELETE FROM updates WHERE snapshot_seq = ?", (seq,)).rowcount
    conn.execute("DELETE FROM snapshots WHERE seq = ?", (seq,))
    return updates


def _vacuum_some(conn, pages: int) -> int:
    """Give up to ``pages`` free pages back to the file (incremental auto-vacuum; the file
    is truncated when the WAL is checkpointed); the number still free before. Python's
    sqlite3 steps a PRAGMA once, and each step of ``incremental_vacuum`` moves one page: one
    statement per page."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    for _ in range(min(free, pages)):
        conn.execute("PRAGMA incremental_vacuum")
    return free


def _read_log(conn, doc_id, after_seq) -> list[LogRow]:
    return [
        LogRow(*r)
        for r in conn.execute(
            "SELECT seq, hash, entry FROM log_entries WHERE doc_id = ? AND seq > ? ORDER BY seq",
            (doc_id, after_seq),
        )
    ]


def _count_documents(conn) -> int:
    return conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]


def _load_state(conn, doc_id) -> DocumentState:
    row = conn.execute(
        "SELECT d.active_snapshot, s.snapshot_id, s.ciphertext_hash, s.parent_snapshot_proof, "
        "d.active_bytes, s.epoch "
        "FROM documents d LEFT JOIN snapshots s ON s.seq = d.active_snapshot WHERE d.doc_id = ?",
        (doc_id,),
    ).fetchone()
    if row is None:
        return DocumentState(exists=False)
    if row[0] is None:
        return DocumentState(exists=True)
    clocks = dict(
        conn.execute(
            "SELECT pub_key, MAX(clock) FROM updates WHERE snapshot_seq = ? GROUP BY pub_key",
            (row[0],),
        ).fetchall()
    )
    return DocumentState(True, SnapshotInfo(row[1], row[2], row[3], row[5]), clocks, row[4])


def _read_document(conn, doc_id, known_id, known_clocks: Mapping[str, int] | None) -> DocumentView:
    row = conn.execute(
        "SELECT s.seq, s.snapshot_id, s.message FROM documents d "
        "JOIN snapshots s ON s.seq = d.active_snapshot WHERE d.doc_id = ?",
        (doc_id,),
    ).fetchone()
    if row is None:
        return DocumentView(None, (), (), 0, False, False)
    seq, active_id, snapshot_message = row
    if known_id is not None and known_id == active_id:
        # only what the reader misses is read (the messages of the other rows stay on disk)
        updates = tuple(
            r[0] for r in conn.execute(_MISSING_UPDATES, (seq, json.dumps(known_clocks or {})))
        )
        last = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM updates WHERE snapshot_seq = ?", (seq,)
        ).fetchone()[0]
        return DocumentView(snapshot_message, updates, (), position(seq, last), True, True)
    rows = conn.execute(
        "SELECT version, message FROM updates WHERE snapshot_seq = ? ORDER BY version", (seq,)
    ).fetchall()
    chain: tuple[SnapshotProofChainEntry, ...] = ()
    if known_id is not None:
        known_row = conn.execute(
            "SELECT seq FROM snapshots WHERE doc_id = ? AND snapshot_id = ?", (doc_id, known_id)
        ).fetchone()
        if known_row is not None and known_row[0] < seq:
            chain = tuple(
                SnapshotProofChainEntry(*r)
                for r in conn.execute(
                    "SELECT snapshot_id, ciphertext_hash, parent_snapshot_proof FROM snapshots "
                    "WHERE doc_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
                    (doc_id, known_row[0], seq),
                )
            )
    last = rows[-1][0] if rows else 0
    return DocumentView(
        snapshot_message, tuple(r[1] for r in rows), chain, position(seq, last), False, True
    )
