"""Fan-out across relay processes sharing one PostgreSQL database.

Several ``secsync-relay`` processes (or Jupyter servers) on one PostgreSQL store each hold the
connections of some clients. A message accepted by one process must reach the clients of the
others, in position order (see :mod:`.store`), without loss. The database is the only source
of truth:

* **The doorbell.** A trigger on the store's ``snapshots`` and ``updates`` tables (installed
  idempotently by :meth:`FanOut.start`, not a store migration) calls ``pg_notify`` with ``p
  <docId> <position>`` for every inserted row (on ``updates`` one trigger call per statement, a
  batch, notifying its rows in position order); PostgreSQL delivers it when, and only if, the
  transaction commits. With the store option ``doorbell=writer`` a process's updates are the
  exception: the trigger leaves them to their writer (``secsync.writer_notifies``), which rings
  right after the commit (:meth:`.pg_store.PostgresStore._ring`), so its write transactions take
  no notification lock (PostgreSQL holds it through the WAL flush of every notifying commit of
  the cluster). Each process LISTENs on one dedicated connection (reconnected with back-off; a
  ``SELECT 1`` every :data:`HEALTH_INTERVAL` seconds finds a silently dead one, then a *sweep*
  compares every open room with the store, so rows whose doorbell never came are read within two
  sweeps).
  An update whose notification fits PostgreSQL's 8000-byte payload travels whole
  (``u <docId> <position> <snapshotId> <pubKey> <clock> <message>``): when its position directly
  follows the delivered one it is delivered from the notification, without a read; otherwise
  (a gap: a missed notification, a write of this process not answered yet) it is a doorbell.
* **The rows.** A notification only says "document D has something after position P". Each
  open room (:class:`Feed`) remembers the last position it *delivered*; on a notification newer
  than that, the process reads the rows after it from the store (:func:`rows_after`: snapshots
  and updates of the document in position order, one consistent read) and delivers them in that
  order. So a missed notification, a dropped LISTEN connection or a restart only delays: every
  reconnection of the LISTEN connection re-reads every open room after its delivered position.
* **Local writes** keep their fast path: a write committed by this process whose position
  directly follows the delivered one (the next version of the same snapshot) is broadcast at
  once, as without fan-out; any other (a new snapshot, or a position after rows of another
  process not delivered yet) waits in the room's feed and is delivered by the next read, in
  order. Rows read from the store that this process wrote are sent with the frame built when
  they were acknowledged (the author's connection excluded); rows of other processes also
  update the room's rule state (clocks, active snapshot, bytes), so its pre-checks follow the
  writes of the other processes.
* **A process behind decides again**: a write its room's state would refuse in a way a lag
  can explain (:data:`.rules.MAY_LAG`) waits for a read of the rows after the delivered
  position (:meth:`FanOut.fresh`), then is decided on the fresh state.
* **Ephemeral messages** (presence, cursors) are not stored: they travel in the notification
  payload itself (``e <process> <docId> <frame>``, sent in order by one task of the sending
  process, ignored by the sender). A payload must stay under PostgreSQL's 8000 bytes: a larger
  ephemeral message reaches only the clients of its own process (counted in
  :attr:`FanOut.ephemeral_too_large`, logged once a minute at most); clients send presence
  again periodically, nothing is stored from it, so nothing is lost for good.

docs/relay.md "Fan-out across relay processes" describes the guarantees and the tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import asyncpg

from . import frames, trace
from .frames import OutFrame
from .pg_store import LOCK_MIGRATION, PostgresStore, _load_state
from .room import spawn
from .store import VERSION_BITS, DocumentState, SnapshotInfo, StoreError, snapshot_epoch

if TYPE_CHECKING:
    from .core import Relay
    from .room import Room
    from .session import Session

#: seconds between two health checks of the LISTEN connection
HEALTH_INTERVAL = 5.0
#: a health check slower than this (seconds) counts as a lost connection
HEALTH_TIMEOUT = 10.0
#: longest pause between two attempts to reconnect (seconds)
MAX_BACKOFF = 5.0
#: rows read per round trip when a room catches up
READ_LIMIT = 1000
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
MAX_PAYLOAD = 7999

_MASK = (1 << VERSION_BITS) - 1

#: a document's position: its active snapshot and that snapshot's last version
_POSITION = """
SELECT (d.active_snapshot << 32) | COALESCE(
           (SELECT u.version FROM updates u WHERE u.snapshot_seq = d.active_snapshot
            ORDER BY u.version DESC LIMIT 1), 0)
FROM documents d WHERE d.doc_id = $1
"""

#: the stored messages of a document after a position, in position order
_ROWS_AFTER = """
SELECT pos, kind, message, snapshot_id, pub_key, clock, hash, proof FROM (
    SELECT s.seq << 32 AS pos, 's' AS kind, s.message, s.snapshot_id, s.pub_key,
           NULL::bigint AS clock, s.ciphertext_hash AS hash, s.parent_snapshot_proof AS proof
      FROM snapshots s WHERE s.doc_id = $1 AND s.seq > ($2::bigint >> 32)
    UNION ALL
    SELECT (u.snapshot_seq << 32) | u.version, 'u', u.message, s.snapshot_id, u.pub_key,
           u.clock, NULL, NULL
      FROM snapshots s JOIN updates u ON u.snapshot_seq = s.seq
     WHERE s.doc_id = $1 AND s.seq >= ($2::bigint >> 32)
       AND u.version > CASE WHEN s.seq = ($2::bigint >> 32)
                            THEN ($2::bigint & 4294967295) ELSE 0 END
) r ORDER BY pos LIMIT $3
"""


def _trigger_sql(schema: str, channel: str) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION {schema}.fanout_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'snapshots' THEN
            PERFORM pg_notify('{channel}', 'p ' || NEW.doc_id || ' ' || (NEW.seq << 32)::text);
        ELSIF TG_TABLE_NAME = 'log_entries' THEN
            PERFORM pg_notify('{channel}', 'l ' || NEW.doc_id || ' ' || NEW.seq::text);
        ELSIF TG_TABLE_NAME = 'lockboxes' THEN
            PERFORM pg_notify('{channel}', 'k ' || NEW.doc_id || ' ' || NEW.recipient);
        END IF;
        RETURN NULL;
    END $$;

    -- updates: once per statement (a batch of updates is one INSERT), in position order
    CREATE OR REPLACE FUNCTION {schema}.fanout_notify_updates() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('secsync.writer_notifies', true) = 'on' THEN
            -- updates of a relay process that rings for its updates after their commit
            -- (doorbell=writer): its transaction takes no notification lock
            RETURN NULL;
        END IF;
        -- a small update travels whole (no read needed), a large one rings the bell only
        PERFORM pg_notify('{channel}', CASE WHEN octet_length(t.r) < 8000 THEN t.r
                                            ELSE 'p ' || t.doc_id || ' ' || t.pos END)
           FROM (SELECT s.doc_id, ((n.snapshot_seq << 32) | n.version)::text AS pos,
                        'u ' || s.doc_id || ' ' || ((n.snapshot_seq << 32) | n.version)::text
                        || ' ' || s.snapshot_id || ' ' || n.pub_key || ' ' || n.clock::text
                        || ' ' || n.message AS r
                   FROM new_updates n JOIN {schema}.snapshots s ON s.seq = n.snapshot_seq
                  ORDER BY n.snapshot_seq, n.version OFFSET 0) t;
        RETURN NULL;
    END $$;
    """


class Row:
    """A stored message read back: its position, kind (``s`` / ``u``) and fields."""

    __slots__ = ("clock", "hash", "kind", "message", "pos", "proof", "pub_key", "snapshot_id")

    def __init__(self, record: Any):
        (
            self.pos,
            self.kind,
            self.message,
            self.snapshot_id,
            self.pub_key,
            self.clock,
            self.hash,
            self.proof,
        ) = record


async def rows_after(conn, doc_id: str, after: int, limit: int = READ_LIMIT) -> list[Row]:
    """The store's read for fan-out: the snapshots and updates of ``doc_id`` positioned after
    ``after``, in position order (at most ``limit``)."""
    return [Row(r) for r in await conn.fetch(_ROWS_AFTER, doc_id, after, limit)]


async def _state_at(conn, doc_id: str) -> tuple[DocumentState, int]:
    """A document's rule state and the position it reflects, in one consistent read."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        state = await _load_state(conn, doc_id)
        pos = await conn.fetchval(_POSITION, doc_id)
    return state, pos or 0


class Feed:
    """The fan-out state of one open room."""

    __slots__ = (
        "delivered",
        "ephemeral",
        "force",
        "local",
        "log_wanted",
        "reads_begun",
        "state_pos",
        "superseded",
        "task",
        "waiters",
        "wanted",
    )

    def __init__(self) -> None:
        #: position of the last stored message delivered to the room (None: still loading)
        self.delivered: int | None = None
        #: the room's rule state includes every row at or below this position
        self.state_pos = 0
        #: committed writes of this process not delivered yet: position -> (frame, author)
        self.local: dict[int, tuple[OutFrame, Session | None]] = {}
        #: the newest position known to be committed (notifications, local commits)
        self.wanted = 0
        #: read even without a newer known position (after a reconnection or a failed read)
        self.force = False
        self.task: asyncio.Future | None = None
        #: the newest membership-log seq known to be committed (notifications)
        self.log_wanted = -1
        #: ephemeral frames of other processes held until the log entries before them are in
        self.ephemeral: list[OutFrame] = []
        #: reads of the rows after the delivered position begun so far
        self.reads_begun = 0
        #: :meth:`FanOut.fresh` callers: (the read that must complete, its future)
        self.waiters: list[tuple[int, asyncio.Future]] = []
        #: the last snapshots known here to be superseded (catching up cannot make them
        #: active again: a write naming one is refused without a read)
        self.superseded: deque[str] = deque(maxlen=16)

    def superseded_by_us(self, snapshot_id: str) -> None:
        """``snapshot_id`` stopped being the room's active snapshot."""
        self.superseded.append(snapshot_id)

    def resolve(self, done: int | None) -> None:
        """Answer the waiters whose read has completed (``done``: the last complete read);
        ``None``: every waiter, unsuccessfully (the room is closing)."""
        keep = []
        for target, fut in self.waiters:
            if done is None or target <= done:
                if not fut.done():
                    fut.set_result(done is not None)
            else:
                keep.append((target, fut))
        self.waiters = keep


class FanOut:
    """The fan-out of one relay process over a :class:`PostgresStore` (see the module docs)."""

    def __init__(self, relay: Relay, store: PostgresStore, *, log: logging.Logger | None = None):
        self.relay = relay
        self.store = store
        self.log = log or relay.log
        self.channel = f"{store.schema}_fanout"
        #: this process, in its ephemeral notifications (it ignores its own)
        self.token = secrets.token_hex(6)
        self.connected = asyncio.Event()
        self._task: asyncio.Task | None = None
        #: ephemeral notifications to send, in order (by one task on a connection of its own,
        #: see :meth:`_send_main`)
        self._outbox: deque[str] = deque()
        #: backend process id of that connection (its notifications are this process's own)
        self._sender_pid = 0
        self._outbox_wake = asyncio.Event()
        self._sender: asyncio.Task | None = None
        self._tasks: set[asyncio.Future] = set()
        self._stopping = False
        self._warned_at = 0.0
        # counters (tests, benchmarks, logs)
        self.notifications = 0
        self.reads = 0
        self.rows_read = 0
        #: updates delivered from their notification (no read)
        self.rows_notified = 0
        self.connections = 0
        self.ephemeral_sent = 0
        self.ephemeral_received = 0
        self.ephemeral_too_large = 0
        self.own_notifications = 0
        #: writes the rooms' state would have refused, decided again after a read
        self.lag_checks = 0
        #: rooms the sweep found behind the store (rows whose doorbell never came)
        self.sweep_kicks = 0
        #: the rooms the last sweep found behind the store, and the store's position then
        self._behind: dict[str, int] = {}
        #: rooms found to have delivered rows the database lost (restarted without them)
        self.lost_rows = 0
        #: backend process ids of this process's pooled connections (their notifications are
        #: this process's own commits, which it delivers itself)
        self._own_pids: set[int] = set()
        self._own_pids_at = 0.0
        #: this process's writes not answered yet: (docId, row key) -> the store's future
        self._writing: dict[tuple[str, tuple], asyncio.Future] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Install the doorbell trigger (idempotent) and start listening."""
        await self._install()
        self._track_writes()
        self.store.ring = (self.channel, _doorbell)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._listen_main())
        self._sender = loop.create_task(self._send_main())
        # the first LISTEN before the relay accepts connections (later ones reconnect)
        try:
            await asyncio.wait_for(self.connected.wait(), 30)
        except asyncio.TimeoutError:
            self.log.warning("fan-out: no LISTEN connection yet; retrying in the background")

    async def stop(self) -> None:
        self._stopping = True
        # every loop also checks _stopping (asyncio.wait_for of Python < 3.12 can swallow a
        # cancellation that comes as its inner call finishes)
        self._outbox_wake.set()
        for t in [self._task, self._sender, *self._tasks]:
            if t is not None:
                t.cancel()
        for t in [self._task, self._sender, *self._tasks]:
            if t is not None:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass

    async def _install(self) -> None:
        store = self.store
        try:
            conn = await asyncpg.connect(store.dsn, server_settings=store._settings)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot open database {store.name}: {exc}") from exc
        try:
            async with conn.transaction():
                # the store's migration lock: relay processes starting together take turns
                await conn.execute("SELECT pg_advisory_xact_lock($1, 1)", LOCK_MIGRATION)
                await conn.execute(_trigger_sql(store.schema, self.channel))
                for table in ("snapshots", "updates", "log_entries", "lockboxes"):
                    name = f"{store.schema}.{table}"
                    if await conn.fetchval("SELECT to_regclass($1)", name) is None:
                        continue  # a store without membership logs
                    trigger, how = "fanout_notify", "FOR EACH ROW"
                    if table == "updates":  # one trigger call per statement (a batch)
                        # (the row trigger of earlier versions: replaced)
                        await conn.execute(f"DROP TRIGGER IF EXISTS fanout_notify ON {name}")
                        trigger = "fanout_notify_updates"
                        how = "REFERENCING NEW TABLE AS new_updates FOR EACH STATEMENT"
                    exists = await conn.fetchval(
                        "SELECT 1 FROM pg_trigger WHERE tgname = $2 AND tgrelid = $1::regclass",
                        name,
                        trigger,
                    )
                    if not exists:
                        await conn.execute(
                            f"CREATE TRIGGER {trigger} AFTER INSERT ON {name} {how} "
                            f"EXECUTE FUNCTION {store.schema}.{trigger}()"
                        )
        finally:
            await conn.close()

    async def _listen_main(self) -> None:
        """Keep one LISTEN connection; after each (re)connection, every open room reads what
        it may have missed."""
        delay = 0.1
        while not self._stopping:
            conn = None
            try:
                conn = await asyncpg.connect(
                    self.store.dsn,
                    server_settings={"application_name": f"secsync-relay-fanout-{os.getpid()}"},
                    timeout=HEALTH_TIMEOUT,
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                # looked up at each notification (tests hold notifications back through it)
                await conn.add_listener(self.channel, lambda *a: self._on_notify(*a))
                self.connections += 1
                if self.connections > 1:
                    self.log.warning("fan-out: LISTEN connection restored; catching up")
                self.connected.set()
                delay = 0.1
                if self.connections > 1:  # the database may have restarted (see the method)
                    check = spawn(self._check_lost_rows())
                    self._tasks.add(check)
                    check.add_done_callback(self._tasks.discard)
                self._catch_up_all()
                while not lost.is_set() and not self._stopping:
                    try:
                        await asyncio.wait_for(lost.wait(), HEALTH_INTERVAL)
                    except asyncio.TimeoutError:
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), HEALTH_TIMEOUT)
                        await self._sweep()
                if self._stopping:
                    return
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                self._warn(f"fan-out: LISTEN connection lost or refused ({exc}); reconnecting")
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    async def _sweep(self) -> None:
        """The net under the writers' doorbells (``doorbell=writer``: sent after the commit,
        so a writer killed in between, or a doorbell lost with its connection, rings for
        nothing), after each health check of the LISTEN connection: the stored position of
        every open room, in one query; a room still behind the position the previous sweep
        found reads (a doorbell merely late on a busy machine causes no read). Rows nobody
        rang for are delivered within two sweeps."""
        rooms = [
            r.doc_id
            for r in self.relay.rooms.values()
            if r.feed is not None and r.feed.delivered is not None
        ]
        if not rooms:
            self._behind = {}
            return
        try:
            rows = await asyncio.wait_for(self.store._read(_positions, rooms), HEALTH_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._warn(f"fan-out: the sweep of open documents failed ({exc}); next time")
            return
        before, self._behind = self._behind, {}
        for doc_id, pos in rows:
            room = self.relay.rooms.get(doc_id)
            feed = room.feed if room is not None else None
            if feed is None or feed.delivered is None:
                continue
            known = max(feed.delivered, feed.wanted)
            if pos > known:
                self._behind[doc_id] = pos
            missed = before.get(doc_id, 0)
            if missed > known:
                self.sweep_kicks += 1
                self.kick(room, missed)

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 10:
            self._warned_at = now
            self.log.warning(text)

    # ------------------------------------------------------------------ notifications
    def _track_writes(self) -> None:
        """Remember this process's writes until the store has answered them, by the key of
        the row they make: a row read back while its write is unanswered waits for the answer
        (then it goes out with its author excluded), other rows go out at once. With an early
        commit (``on_committed``: synchronous full on PostgreSQL, acknowledged after the flush
        barrier) a read waits for the commit's callback only, which hands the row to
        :meth:`committed`."""
        store = self.store
        save_update, save_snapshot = store.save_update, store.save_snapshot
        writing = self._writing

        def early(kw: dict) -> asyncio.Future | None:
            """Wrap ``kw["on_committed"]``: the future resolved once it has run."""
            on_committed = kw.get("on_committed")
            if on_committed is None:
                return None
            ran = asyncio.get_running_loop().create_future()

            def committed(result, on_committed=on_committed) -> None:
                try:
                    on_committed(result)
                finally:
                    if not ran.done():
                        ran.set_result(None)

            kw["on_committed"] = committed
            return ran

        def remember(doc_id, key, fut: asyncio.Future, ran) -> asyncio.Future:
            k = (doc_id, key)
            writing[k] = fut if ran is None else ran
            fut.add_done_callback(lambda _f: writing.pop(k, None))
            if ran is not None:  # a write that failed before committing: its answer
                fut.add_done_callback(lambda _f: ran.done() or ran.set_result(None))
            return fut

        def update(doc_id, *, snapshot_id, pub_key, clock, message, **kw):
            ran = early(kw)
            fut = save_update(
                doc_id, snapshot_id=snapshot_id, pub_key=pub_key, clock=clock, message=message, **kw
            )
            return remember(doc_id, ("u", snapshot_id, pub_key, clock), fut, ran)

        def snapshot(doc_id, **fields):
            ran = early(fields)
            fut = save_snapshot(doc_id, **fields)
            return remember(doc_id, ("s", fields["snapshot_id"]), fut, ran)

        store.save_update = update  # type: ignore[method-assign]
        store.save_snapshot = snapshot  # type: ignore[method-assign]

    def _is_own(self, pid: int) -> bool:
        if pid in self._own_pids or pid == self._sender_pid:
            return True
        now = time.monotonic()
        if now - self._own_pids_at < 1.0:
            return False
        self._own_pids_at = now
        pids = set()
        for holder in getattr(self.store._pool, "_holders", ()):
            con = getattr(holder, "_con", None)
            if con is not None and not con.is_closed():
                pids.add(con.get_server_pid())
        self._own_pids = pids
        return pid in pids

    def _on_notify(self, _conn, pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        if trace.ON:
            k, _, r = payload.partition(" ")
            if k in "up":
                f = r.split(" ", 5)
                trace.ev("notify", f[0], k, int(f[1]), pid, *(f[3][:8], f[4]) if k == "u" else ())
        if self._is_own(pid):
            # a commit of this process: delivered by its own acknowledgement path
            self.own_notifications += 1
            return
        kind, _, rest = payload.partition(" ")
        if kind == "u":
            self._on_update(rest)
        elif kind == "p":
            doc_id, _, pos = rest.partition(" ")
            room = self.relay.rooms.get(doc_id)
            if room is not None and room.feed is not None:
                self.kick(room, int(pos))
        elif kind == "l":
            doc_id, _, seq = rest.partition(" ")
            room = self.relay.rooms.get(doc_id)
            if room is not None and room.feed is not None:
                room.feed.log_wanted = max(room.feed.log_wanted, int(seq))
                self.kick(room, 0)
        elif kind == "k":  # issue 12: a lockbox stored by another process
            doc_id, _, recipient = rest.partition(" ")
            room = self.relay.rooms.get(doc_id)
            log = getattr(room, "log", None)
            if log is not None:
                spawn(log.lockbox_notified(recipient))
        elif kind == "e":
            token, _, rest = rest.partition(" ")
            if token == self.token:
                return
            doc_id, _, text = rest.partition(" ")
            room = self.relay.rooms.get(doc_id)
            if room is None:
                return
            self.ephemeral_received += 1
            feed = room.feed
            if feed is not None and (feed.ephemeral or _log_behind(room)):
                # it may name a log head this process has not delivered yet: after it
                feed.ephemeral.append(OutFrame(text))
                self.kick(room, 0)
            else:
                room.send_all(None, OutFrame(text), None)

    def _on_update(self, rest: str) -> None:
        """An update of another process, whole: delivered at once when it directly follows
        the delivered position (and the log, if any, is not behind), else a read."""
        doc_id, pos_text, sid, pub, clock, message = rest.split(" ", 5)
        room = self.relay.rooms.get(doc_id)
        if room is None or room.feed is None:
            return
        feed = room.feed
        pos = int(pos_text)
        if feed.delivered is not None and pos <= feed.delivered:
            return
        if (doc_id, ("u", sid, pub, int(clock))) in self._writing:
            return  # this process's own write: its answer delivers it
        if feed.delivered is not None and pos == feed.delivered + 1 and not _log_behind(room):
            self.rows_notified += 1
            self._deliver_row(room, Row((pos, "u", message, sid, pub, int(clock), None, None)))
            return
        self.kick(room, pos)

    async def _check_lost_rows(self) -> None:
        """After the ``LISTEN`` connection came back: an open room that has delivered a
        position the database no longer reaches has delivered rows the database lost (with
        ``synchronous`` full a write is visible before its WAL flush; a crash of the server in
        between loses it, docs/relay.md "Durability on PostgreSQL"). Its clients are told the
        document is unavailable (1013) and reload it; the room, reopened, delivers from what
        the database has (its positions may be reused by new writes)."""
        # delivered before the read: committed before it, so the read has them unless lost
        rooms = [
            (r, r.feed.delivered)
            for r in self.relay.rooms.values()
            if r.feed is not None and r.feed.delivered
        ]
        if not rooms:
            return
        try:
            rows = await self.store._read(_positions, [r.doc_id for r, _d in rooms])
        except Exception as exc:
            self._warn(f"fan-out: checking the open documents after a reconnection failed: {exc}")
            return
        stored = dict(rows)
        for room, delivered in rooms:
            if stored.get(room.doc_id, 0) < delivered and self._live(room):
                self.lost_rows += 1
                self.log.error(
                    "fan-out: %s: the database no longer has messages delivered up to position "
                    "%d (it restarted without them); its connections reload the document",
                    room.doc_id,
                    delivered,
                )
                room.unavailable("the database lost recent messages")

    def _catch_up_all(self) -> None:
        for room in list(self.relay.rooms.values()):
            if room.feed is not None:
                room.feed.force = True
                self.kick(room, 0)

    # ------------------------------------------------------------------ ephemeral messages
    def publish_ephemeral(self, doc_id: str, text: str) -> None:
        payload = f"e {self.token} {doc_id} {text}"
        if len(payload) > MAX_PAYLOAD or len(payload.encode("utf-8")) > MAX_PAYLOAD:
            self.ephemeral_too_large += 1
            self._warn(
                f"fan-out: an ephemeral message of {len(text)} bytes on {doc_id} is too large "
                "for a notification; only this process's clients get it"
            )
            return
        self._outbox.append(payload)
        self._outbox_wake.set()

    async def _send_main(self) -> None:
        """Send the queued ephemeral notifications in order, many per round trip, on a
        connection of their own with ``synchronous_commit = off``: presence is no data, so its
        transaction need not wait for a WAL flush while it holds PostgreSQL's notification
        queue lock, which every notifying commit of the cluster takes in turn (before, each
        batch was a pooled connection's commit, flushed under that lock). A batch that cannot
        be sent is tried once more on a new connection, then dropped (best effort)."""
        conn = None
        try:
            while not self._stopping:
                if not self._outbox:
                    self._outbox_wake.clear()
                    await self._outbox_wake.wait()
                    continue
                batch = list(self._outbox)
                self._outbox.clear()
                for attempt in (1, 2):
                    try:
                        if conn is None or conn.is_closed():
                            conn = await asyncpg.connect(
                                self.store.dsn,
                                server_settings={
                                    "application_name": f"secsync-relay-notify-{os.getpid()}",
                                    "synchronous_commit": "off",
                                },
                                timeout=HEALTH_TIMEOUT,
                            )
                            self._sender_pid = conn.get_server_pid()
                        await asyncio.wait_for(
                            _notify_many(conn, self.channel, batch), HEALTH_TIMEOUT
                        )
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        if conn is not None:
                            conn.terminate()
                            conn = None
                        if attempt == 1:
                            continue
                        self._warn(f"fan-out: {len(batch)} ephemeral messages not sent: {exc}")
                    else:
                        self.ephemeral_sent += len(batch)
                    break
        finally:
            if conn is not None:
                conn.terminate()

    # ------------------------------------------------------------------ rooms
    async def load_state(self, room: Room) -> DocumentState:
        """The room's rule state and the position it reflects (a room being opened also
        starts delivering from there)."""
        feed = room.feed
        if feed is None:
            feed = room.feed = Feed()
        state, pos = await self.store._read(_state_at, room.doc_id)
        feed.state_pos = max(feed.state_pos, pos)
        if feed.delivered is None:
            feed.delivered = pos
            if feed.wanted > pos:  # notified while loading
                self.kick(room, 0)
        else:  # a reload (a refused write): deliver whatever the store has by now
            self.kick(room, pos)
        return state

    def may_be_behind(self, room: Room, snapshot_id: str | None) -> bool:
        """Whether catching up may change a decision about a write naming ``snapshot_id``
        (not one this room saw superseded)."""
        feed = room.feed
        return (
            feed is not None and feed.delivered is not None and snapshot_id not in feed.superseded
        )

    async def fresh(self, room: Room) -> bool:
        """Bring the room up to the store: wait for a read of the rows after its delivered
        position that *begins* after this call, and for their delivery (which applies the
        other processes' rows to the room's rule state). True when done; False when the read
        failed or the room closed (the state is then as it was). A write the room's state
        would refuse is decided again after this (rules.MAY_LAG): the other processes'
        doorbells may lag behind what a client already knows."""
        feed = room.feed
        if feed is None or feed.delivered is None or not self._live(room):
            return False
        fut = asyncio.get_running_loop().create_future()
        feed.waiters.append((feed.reads_begun + 1, fut))
        feed.force = True
        self.lag_checks += 1
        self.kick(room, 0)
        return await fut

    def committed(self, room: Room, pos: int, frame: OutFrame, author: Session | None) -> None:
        """A write of this process committed at ``pos``: broadcast it now if it follows the
        delivered position, else once the rows before it are delivered."""
        feed = room.feed
        if feed is None or feed.delivered is None:  # not a fan-out room (cannot happen)
            room.send_all(pos, frame, author)
            return
        if pos <= feed.delivered:
            return  # already delivered by a read (the author got it as well)
        if pos == feed.delivered + 1:
            if trace.ON:
                trace.ev("send", room.doc_id, pos, "local")
            room.send_all(pos, frame, author)
            feed.delivered = pos
            self._deliver_local(room)
            return
        feed.local[pos] = (frame, author)
        if trace.ON:
            trace.ev("held", room.doc_id, pos, feed.delivered)
        self.kick(room, pos)

    def kick(self, room: Room, pos: int) -> None:
        """Deliver the room's rows up to at least ``pos`` (a read unless already there)."""
        feed = room.feed
        assert feed is not None
        if pos > feed.wanted:
            feed.wanted = pos
        if feed.delivered is None or feed.task is not None:
            return
        if feed.wanted <= feed.delivered and not feed.force and not _log_behind(room):
            return
        task = feed.task = asyncio.ensure_future(self._catch_up(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _live(self, room: Room) -> bool:
        return not self._stopping and self.relay.rooms.get(room.doc_id) is room

    async def _catch_up(self, room: Room) -> None:
        feed = room.feed
        assert feed is not None and feed.delivered is not None
        delay = 0.1
        try:
            while self._live(room):
                log = getattr(room, "log", None)
                log_behind = _log_behind(room)
                forced = feed.force
                if not forced and feed.wanted <= feed.delivered and not log_behind:
                    self._flush_ephemeral(room)
                    return
                feed.force = False
                rows: list[Row] = []
                read = 0
                try:
                    if forced or feed.wanted > feed.delivered:
                        t_read = trace.now()
                        read = feed.reads_begun = feed.reads_begun + 1
                        rows = await self.store._read(rows_after, room.doc_id, feed.delivered)
                        if trace.ON:
                            last = rows[-1].pos if rows else 0
                            trace.ev("read", room.doc_id, feed.delivered, len(rows), last, t_read)
                        self.reads += 1
                        self.rows_read += len(rows)
                    if log is not None and (rows or log_behind or forced):
                        # the log entries a message names reach clients before the message:
                        # they committed before it, so this read (after the rows') has them
                        # (whether or not their notification has arrived yet)
                        target = feed.log_wanted
                        await log.refresh()
                        if log.head_seq < target == feed.log_wanted:
                            # notified before this read, yet not there (did not verify): give
                            # up on them (a newer notification meanwhile: read again)
                            feed.log_wanted = log.head_seq
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    feed.force = True
                    # who waits for a fresh state decides on the state it has
                    feed.resolve(None)
                    self._warn(f"fan-out: reading {room.doc_id} failed ({exc}); retrying")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                delay = 0.1
                self._flush_ephemeral(room)
                for r in rows:
                    if r.pos <= feed.delivered:
                        continue
                    if r.pos not in feed.local:
                        key = ("s", r.snapshot_id) if r.kind == "s" else ("u", r.snapshot_id)
                        if r.kind == "u":
                            key += (r.pub_key, r.clock)
                        fut = self._writing.get((room.doc_id, key))
                        if fut is not None:
                            # a write of this process whose answer has not run yet: after it,
                            # the row goes out with its author excluded
                            if not fut.done():
                                if trace.ON:
                                    trace.ev("wait-own", room.doc_id, r.pos)
                                await asyncio.wait([fut])
                            await asyncio.sleep(0)  # its done callbacks may still be queued
                    if not self._live(room):
                        return
                    self._deliver_row(room, r)
                if len(rows) >= READ_LIMIT:
                    feed.force = True
                elif read and feed.waiters:
                    feed.resolve(read)
        finally:
            feed.task = None
            if feed.waiters and not self._live(room):
                feed.resolve(None)
        if feed.local and self._live(room):  # committed meanwhile: deliver in order
            self.kick(room, max(feed.local))

    def _flush_ephemeral(self, room: Room) -> None:
        feed = room.feed
        if feed is not None and feed.ephemeral and not _log_behind(room):
            held, feed.ephemeral = feed.ephemeral, []
            for frame in held:
                room.send_all(None, frame, None)

    def _deliver_row(self, room: Room, r: Row) -> None:
        feed = room.feed
        assert feed is not None and feed.delivered is not None
        if r.pos <= feed.delivered:
            return
        entry = feed.local.pop(r.pos, None)
        if entry is not None:
            frame, author = entry
        else:
            author = None
            if r.kind == "s":
                frame = OutFrame(frames.snapshot_broadcast(r.message))
            else:
                frame = OutFrame(frames.with_type("update", r.message))
            if r.pos > feed.state_pos:
                _apply(room, r)
                feed.state_pos = r.pos
        if trace.ON:
            trace.ev("send", room.doc_id, r.pos, "row" if entry is None else "row-local")
        room.send_all(r.pos, frame, author)
        feed.delivered = r.pos
        self._deliver_local(room)

    def _deliver_local(self, room: Room) -> None:
        """Local writes that now follow the delivered position, and drop delivered ones."""
        feed = room.feed
        assert feed is not None and feed.delivered is not None
        local = feed.local
        while local:
            nxt = local.pop(feed.delivered + 1, None)
            if nxt is None:
                break
            if trace.ON:
                trace.ev("send", room.doc_id, feed.delivered + 1, "held")
            room.send_all(feed.delivered + 1, nxt[0], nxt[1])
            feed.delivered += 1
        if local and min(local) <= feed.delivered:
            for pos in [p for p in local if p <= feed.delivered]:
                del local[pos]


def _doorbell(args: tuple, result) -> str:
    """The writer's notification of a committed update (``args``: the store's
    ``(docId, snapshotId, pubKey, clock, message)``): the update whole when it fits a
    payload, as the trigger sends it, else only the position."""
    doc_id, snapshot_id, pub_key, clock, message = args
    payload = f"u {doc_id} {result.position} {snapshot_id} {pub_key} {clock} {message}"
    if len(payload) > MAX_PAYLOAD or len(payload.encode("utf-8")) > MAX_PAYLOAD:
        return f"p {doc_id} {result.position}"
    return payload


#: the stored position of each document of ``$1`` (those with a snapshot)
_POSITIONS = """
SELECT d.doc_id, (d.active_snapshot << 32) | COALESCE(
           (SELECT u.version FROM updates u WHERE u.snapshot_seq = d.active_snapshot
            ORDER BY u.version DESC LIMIT 1), 0)
FROM documents d WHERE d.doc_id = ANY($1::text[]) AND d.active_snapshot IS NOT NULL
"""


async def _positions(conn, doc_ids: list[str]) -> list[tuple[str, int]]:
    return [tuple(r) for r in await conn.fetch(_POSITIONS, doc_ids)]


def _log_behind(room: Room) -> bool:
    """Whether another process has committed membership-log entries this room lacks."""
    log = getattr(room, "log", None)
    return log is not None and room.feed is not None and room.feed.log_wanted > log.head_seq


def _apply(room: Room, r: Row) -> None:
    """A row written by another process, applied to the room's rule state."""
    state = room.state
    size = len(r.message) if r.message.isascii() else len(r.message.encode("utf-8"))
    if r.kind == "s":
        active = state.active
        if active is not None and active.snapshot_id == r.snapshot_id:
            return
        if not state.exists:
            room.mark_stored()
        if active is not None and room.feed is not None:
            room.feed.superseded_by_us(active.snapshot_id)
        epoch = snapshot_epoch(r.message) if room.log is not None else 0  # issue 12
        state.active = SnapshotInfo(r.snapshot_id, r.hash, r.proof, epoch)
        state.clocks = {}
        state.stored_bytes = size
    elif (
        state.active is not None
        and state.active.snapshot_id == r.snapshot_id
        and r.clock > state.clocks.get(r.pub_key, -1)
    ):
        state.clocks[r.pub_key] = r.clock
        state.stored_bytes += size


async def _positions(conn, doc_ids: list[str]) -> list[tuple[str, int]]:
    """The stored position of each of ``doc_ids`` (see :data:`_POSITION`; the last version
    by ``ORDER BY … LIMIT 1``, a backward index scan, where ``max()`` may read every row)."""
    rows = await conn.fetch(
        "SELECT d.doc_id, (d.active_snapshot << 32) | COALESCE((SELECT u.version FROM "
        "updates u WHERE u.snapshot_seq = d.active_snapshot ORDER BY u.version DESC LIMIT 1), 0) "
        "FROM documents d "
        "WHERE d.doc_id = ANY($1::text[])",
        doc_ids,
    )
    return [(r[0], r[1] or 0) for r in rows]


async def _notify_many(conn, channel: str, payloads: list[str]) -> None:
    await conn.execute(
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i) ORDER BY i",
        channel,
        payloads,
    )


async def start_for(relay: Relay) -> FanOut | None:
    """The fan-out of ``relay`` when its store is PostgreSQL (started), else ``None``."""
    if not isinstance(relay.store, PostgresStore):
        return None
    fanout = FanOut(relay, relay.store)
    await fanout.start()
    return fanout
