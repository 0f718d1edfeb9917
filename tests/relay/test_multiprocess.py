"""Fan-out across ``secsync-relay`` processes sharing one PostgreSQL database (issue 14).

Real relay processes (``secsync-relay --db postgresql://…``) on a throw-away PostgreSQL cluster
(tests/relay/pg.py), real WebSocket clients: messages accepted by one process reach the clients
of the others in position order; a missed notification, a SIGKILLed process and a restart of
PostgreSQL delay delivery but lose nothing (docs/relay.md "Fan-out across relay processes").
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from secsync_jupyter.protocol import SigningKeyPair, Snapshot, generate_id

from .membership_util import Team, append, join
from .pg import PgCluster, _run_async, db_rows
from .util import (
    LISTEN_RE,
    Author,
    RelayClient,
    RelayProcess,
    dumps,
    open_doc,
    seed,
    url_for,
)

TIMEOUT = 60.0


@pytest.fixture
def start_relays(tmp_path):
    """``start(db, n)``: n ``secsync-relay --db <postgresql URL>`` processes (the documented
    form), each logging to its own file; stopped at the end."""
    started: list[RelayProcess] = []

    def start(db: str, n: int) -> list[RelayProcess]:
        out = []
        for _ in range(n):
            log = str(tmp_path / f"relay{len(started)}.log")
            r = RelayProcess(db, log_path=log, db_option="--db").start()
            started.append(r)
            out.append(r)
        return out

    yield start
    for r in started:
        r.stop()


def stored_order(db: str) -> list[tuple[str, int]]:
    """(pubKey, clock) of every stored update, in position order."""
    return db_rows(
        db, "SELECT u.pub_key, u.clock FROM updates u ORDER BY u.snapshot_seq, u.version"
    )


def received(client: RelayClient) -> list[tuple[str, int]]:
    """(pubKey, clock) of the updates a client received, in arrival order (document frames
    and broadcasts)."""
    out = []
    for f in client.frames:
        if f.get("type") == "update":
            out.append((f["publicData"]["pubKey"], f["publicData"]["clock"]))
        elif f.get("type") == "document":
            out += [(u["publicData"]["pubKey"], u["publicData"]["clock"]) for u in f["updates"]]
    return out


async def until(predicate, what: str, timeout: float = TIMEOUT) -> None:
    """Wait (polling) until ``predicate()`` holds; fail naming ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def write_updates(client: RelayClient, author: Author, snap, clocks, window: int = 8):
    """Send updates with these clocks (``window`` unacknowledged at most); returns the acked
    clocks in order."""
    acked: list[int] = []
    clocks = list(clocks)
    sent = 0
    while len(acked) < len(clocks):
        while sent < len(clocks) and sent - len(acked) < window:
            await client.ws.send(dumps(author.update(snap, clocks[sent], os.urandom(32)).to_json()))
            sent += 1
        acked.append((await client.next("update-saved", timeout=TIMEOUT))["clock"])
    return acked


def fanout_backends(db: str, relay: RelayProcess) -> str:
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = 'secsync-relay-fanout-{relay.pid}'"
    )


# --------------------------------------------------------------------------------- order
@pytest.mark.asyncio
async def test_clients_on_three_processes_see_every_update_in_position_order(pg_url, start_relays):
    relays = start_relays(pg_url, 3)
    doc_id = generate_id()
    authors = [Author(doc_id) for _ in range(3)]
    key = authors[0].key
    for a in authors[1:]:
        a.key = key
    a0, snap = await seed(relays[0].url, authors[0])
    c1, d1 = await open_doc(relays[1].url, doc_id)
    c2, _ = await open_doc(relays[2].url, doc_id)
    assert d1["snapshot"]["publicData"]["snapshotId"] == snap.public_data.snapshot_id
    clients = [a0, c1, c2]

    # the three authors write at once, each through its own process
    n = 60
    results = await asyncio.gather(
        *(write_updates(c, a, snap, range(n)) for c, a in zip(clients, authors, strict=True))
    )
    assert all(r == list(range(n)) for r in results)
    order = stored_order(pg_url)
    assert len(order) == 3 * n
    for c, a in zip(clients, authors, strict=True):
        others = [x for x in order if x[0] != a.pub]
        await until(lambda c=c, others=others: len(received(c)) >= len(others), "updates")
        # every update of the other processes' clients, in the database's position order
        assert received(c) == others

    # presence crosses processes too (not stored)
    eph = authors[1].ephemeral(b"cursor")
    await c1.send(eph)
    for c in (a0, c2):
        got = await c.next("ephemeral-message", timeout=TIMEOUT)
        assert got["signature"] == eph.to_json()["signature"]

    # a snapshot written through process 1 reaches the others, and process 2 accepts an
    # update on it at once (its rule state followed the other process's snapshot)
    clocks = {a.pub: n - 1 for a in authors}
    snap2 = authors[1].snapshot(snap, clocks)
    await c1.send(snap2)
    assert (await c1.next("snapshot-saved"))["snapshotId"] == snap2.public_data.snapshot_id
    for c in (a0, c2):
        got = await c.next("snapshot", timeout=TIMEOUT)
        assert got["snapshot"]["publicData"]["snapshotId"] == snap2.public_data.snapshot_id
    before = {id(c): len(received(c)) for c in (a0, c1)}
    await c2.send(authors[2].update(snap2, 0))
    assert (await c2.next("update-saved"))["clock"] == 0
    for c in (a0, c1):
        await until(lambda c=c: len(received(c)) > before[id(c)], "the update on the snapshot")
        got = [f for f in c.frames if f.get("type") == "update"][-1]
        assert got["publicData"]["refSnapshotId"] == snap2.public_data.snapshot_id
        assert got["publicData"]["pubKey"] == authors[2].pub
    for c in clients:
        await c.close()


# --------------------------------------------------------------------- missed notification
@pytest.mark.asyncio
async def test_a_missed_notification_delays_but_loses_nothing(pg_cluster, pg_url, start_relays):
    p0, p1 = start_relays(pg_url, 2)
    author = Author(generate_id())
    writer, snap = await seed(p0.url, author)
    reader, _ = await open_doc(p1.url, author.doc_id)
    acked = await write_updates(writer, author, snap, range(10))
    await until(lambda: len(received(reader)) == 10, "the first updates")

    # process 1 loses its LISTEN connection and cannot make a new one while the writes
    # happen: their notifications are missed for certain
    dbname = pg_url.partition("@/")[2].partition("?")[0]
    pg_cluster.psql(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS false")
    try:
        assert pg_cluster.psql(fanout_backends(pg_url, p1), dbname="postgres") == "t"
        acked += await write_updates(writer, author, snap, range(10, 40))
        assert len(received(reader)) < 40  # the missed ones have not arrived
    finally:
        pg_cluster.psql(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS true")
    # once process 1 listens again it reads what it missed: all of it, in order
    await until(lambda: len(received(reader)) >= 40, "the missed updates")
    assert received(reader) == [(author.pub, c) for c in acked] == stored_order(pg_url)
    # and the doorbell works again
    acked += await write_updates(writer, author, snap, range(40, 45))
    await until(lambda: len(received(reader)) >= 45, "updates after the reconnection")
    assert received(reader) == [(author.pub, c) for c in range(45)]
    assert "LISTEN connection restored" in p1.log()
    await writer.close()
    await reader.close()


# ------------------------------------------------------------- the writer's doorbell
def store_without_doorbell(db: str, doc_id: str, sid: str, author: Author, clocks, messages):
    """Store updates with ``save_updates`` on a connection that, like a relay process with
    ``doorbell=writer``, leaves the doorbell to its writer, and never ring: what a writer
    killed between its commit and its doorbell leaves behind."""

    async def run() -> list[tuple]:
        conn = await asyncpg.connect(db, server_settings={"search_path": "secsync"})
        listener = await asyncpg.connect(db)
        heard: list[str] = []
        try:
            await listener.add_listener("secsync_fanout", lambda *a: heard.append(a[3]))
            await conn.execute("SET secsync.writer_notifies = on")
            rows = await conn.fetch(
                "SELECT out_code, out_version FROM save_updates($1, $2, $3, $4, $5)",
                [doc_id] * len(clocks),
                [sid] * len(clocks),
                [author.pub] * len(clocks),
                list(clocks),
                messages,
            )
            await listener.fetchval("SELECT 1")  # a notification of that commit came before
            assert heard == []  # the trigger left the doorbell to the writer
            return [tuple(r) for r in rows]
        finally:
            await conn.close()
            await listener.close()

    return _run_async(run())


@pytest.mark.asyncio
async def test_writer_doorbell_and_its_sweep(pg_url, start_relays):
    """``doorbell=writer``: each process rings for its updates after their commit (the
    trigger leaves them to it), so other processes get them in order; rows whose doorbell
    never came (a writer killed after its commit) are found by the sweep after the LISTEN
    connection's health checks, in order, nothing twice."""
    url = pg_url + "&doorbell=writer"
    p0, p1 = start_relays(url, 2)
    author = Author(generate_id())
    writer, snap = await seed(p0.url, author)
    reader, _ = await open_doc(p1.url, author.doc_id)
    assert await write_updates(writer, author, snap, range(3)) == [0, 1, 2]
    await until(lambda: len(received(reader)) == 3, "the updates rung for by their writer")

    sid = snap.public_data.snapshot_id
    messages = [dumps(author.update(snap, c, os.urandom(8)).to_json()) for c in (3, 4)]
    rows = store_without_doorbell(pg_url, author.doc_id, sid, author, (3, 4), messages)
    assert rows == [(None, 4), (None, 5)]
    await until(lambda: len(received(reader)) == 5, "the updates nobody rang for")
    assert received(reader) == [(author.pub, c) for c in range(5)] == stored_order(pg_url)
    # the writer's process too: its other connection gets them as broadcasts
    await until(lambda: len(received(writer)) == 2, "the updates on the writer's process")
    assert received(writer) == [(author.pub, 3), (author.pub, 4)]
    # and the relays go on: later updates arrive, in order, nothing twice
    assert await write_updates(writer, author, snap, range(5, 8)) == [5, 6, 7]
    await until(lambda: len(received(reader)) == 8, "updates after the sweep")
    assert received(reader) == [(author.pub, c) for c in range(8)]
    await writer.close()
    await reader.close()


# ---------------------------------------------------------------------------- SIGKILL
class Peer:
    """A client that reconnects in delta mode (to another process) when its connection
    drops, remembering the last clock it has seen of each author."""

    def __init__(self, author: Author, snap: Snapshot, urls: list[str]):
        self.author = author
        self.snap = snap
        self.urls = urls
        self.seen: dict[str, int] = {}
        self.acked: list[int] = []
        self.client: RelayClient | None = None
        self.reconnected_to: str | None = None
        self.delta_documents: list[dict] = []

    def note(self, frame: dict) -> None:
        updates = frame["updates"] if frame.get("type") == "document" else [frame]
        for u in updates:
            pd = u["publicData"]
            last = self.seen.get(pd["pubKey"], -1)
            # per author, exactly the next clock: nothing lost, nothing twice, in order
            assert pd["clock"] == last + 1, (pd["pubKey"][:8], pd["clock"], last)
            self.seen[pd["pubKey"]] = pd["clock"]

    async def connect(self, url: str, delta: bool) -> None:
        kw = {}
        if delta:
            kw = {
                "mode": "delta",
                "known_snapshot_id": self.snap.public_data.snapshot_id,
                "known_clocks": self.seen,
            }
        self.client = await RelayClient.open(url_for(url, self.author.doc_id, **kw))
        doc = await self.client.next("document", timeout=TIMEOUT)
        if delta:
            assert "snapshot" not in doc  # a delta: only the updates it is missing
            self.delta_documents.append(doc)
        self.note(doc)

    def drain(self) -> None:
        assert self.client is not None
        while True:
            frames = [f for f in self.client.pending() if f.get("type") == "update"]
            if not frames:
                return
            for f in frames:
                self.client._unclaimed.remove(f)
                self.note(f)

    async def run(self, n: int, window: int = 6) -> None:
        """Write updates up to clock ``n - 1``, reconnecting to the next URL when the
        connection is lost."""
        mine = self.author.pub
        sent_upto = -1
        while self.seen.get(mine, -1) < n - 1:
            c = self.client
            assert c is not None
            try:
                self.drain()
                while sent_upto < n - 1 and sent_upto - self.seen.get(mine, -1) < window:
                    sent_upto += 1
                    await c.ws.send(
                        dumps(self.author.update(self.snap, sent_upto, os.urandom(32)).to_json())
                    )
                frame = await c.next("update-saved", timeout=TIMEOUT)
                self.drain()
                assert frame["clock"] == self.seen.get(mine, -1) + 1
                self.acked.append(frame["clock"])
                self.seen[mine] = frame["clock"]
            except (ConnectionError, OSError, ConnectionClosed):
                # the process died: another one, in delta mode (it sends what is stored
                # after what this client has seen, its own unacknowledged updates included)
                self.drain()
                self.urls = self.urls[1:]
                self.reconnected_to = self.urls[0]
                await self.connect(self.urls[0], delta=True)
                sent_upto = self.seen.get(mine, -1)


@pytest.mark.asyncio
async def test_sigkill_one_process_under_load_clients_resume_on_another(pg_url, start_relays):
    p0, p1 = start_relays(pg_url, 2)
    doc_id = generate_id()
    owner = Author(doc_id)
    first, snap = await seed(p1.url, owner)
    await first.close()
    authors = [Author(doc_id, key=owner.key) for _ in range(4)]
    # two writers on each process; those of process 0 move to process 1 when it dies
    peers = [
        Peer(authors[0], snap, [p0.url, p1.url]),
        Peer(authors[1], snap, [p0.url, p1.url]),
        Peer(authors[2], snap, [p1.url]),
        Peer(authors[3], snap, [p1.url]),
    ]
    for p in peers:
        await p.connect(p.urls[0], delta=False)
    n = 150
    runs = [asyncio.ensure_future(p.run(n)) for p in peers]
    await until(lambda: all(len(p.acked) >= 40 for p in peers), "load on both processes")
    os.kill(p0.pid, signal.SIGKILL)
    await asyncio.wait_for(asyncio.gather(*runs), TIMEOUT * 2)

    # the clients of process 0 went on through process 1, in delta mode
    assert peers[0].reconnected_to == p1.url and peers[1].reconnected_to == p1.url
    assert peers[0].delta_documents and peers[1].delta_documents
    order = stored_order(pg_url)
    stored = {a.pub: sorted(c for pub, c in order if pub == a.pub) for a in authors}
    for p in peers:
        # every acknowledged update is stored; each author's clocks are contiguous
        assert set(p.acked) <= set(stored[p.author.pub])
        assert stored[p.author.pub] == list(range(n))
    # every client converges: it has seen every stored update of every author
    final = {a.pub: n - 1 for a in authors}

    def converged() -> bool:
        for p in peers:
            p.drain()
        return all(p.seen == final for p in peers)

    await until(converged, "every client to converge")
    for p in peers:
        assert p.client is not None
        await p.client.close()


# ------------------------------------------------------------------- PostgreSQL restart
@pytest.mark.asyncio
async def test_postgresql_restart_documents_unavailable_then_everything_continues(
    tmp_path, start_relays
):
    cluster = PgCluster().start()  # a cluster of its own: this test stops it
    try:
        db = cluster.url(cluster.create_database())
        p0, p1 = start_relays(db, 2)
        author = Author(generate_id())
        writer, snap = await seed(p0.url, author, 3)
        reader, _ = await open_doc(p1.url, author.doc_id)
        await until(lambda: len(received(reader)) == 3, "the first updates")

        cluster.stop_server()
        # a write is answered storage-failed, and the document is reported unavailable
        await writer.send(author.update(snap, 3))
        err = await writer.next("error", timeout=TIMEOUT)
        assert err["code"] == "storage-failed"
        assert (await writer.next("update-save-failed", timeout=TIMEOUT))["clock"] == 3
        unavailable = await writer.next("error", timeout=TIMEOUT)
        assert unavailable["code"] == "storage-failed"
        assert "document unavailable" in unavailable["message"]
        assert await writer.wait_closed(TIMEOUT) == 1013
        # a new connection is refused with a clear error while the database is down
        late = await RelayClient.open(url_for(p0.url, author.doc_id))
        err = await late.next(timeout=TIMEOUT)
        assert (err["type"], err["code"]) == ("error", "storage-failed")
        assert "cannot" in err["message"] or "failed" in err["message"], err
        assert (await late.next(timeout=TIMEOUT))["type"] == "document-error"
        assert await late.wait_closed(TIMEOUT) in (1011, 1013)

        cluster.start_server()

        # the writer reconnects (its clients retry) and continues where the store is
        async def reconnect() -> tuple[RelayClient, dict]:
            while True:
                c = await RelayClient.open(url_for(p0.url, author.doc_id))
                frame = await c.next(timeout=TIMEOUT)
                if frame.get("type") == "document":
                    return c, frame
                await c.close()
                await asyncio.sleep(0.2)

        writer, doc = await asyncio.wait_for(reconnect(), TIMEOUT)
        assert [u["publicData"]["clock"] for u in doc["updates"]] == [0, 1, 2]
        assert await write_updates(writer, author, snap, range(3, 13)) == list(range(3, 13))
        # the reader on the other process, still connected, gets them (its fan-out listens
        # again), in order, nothing twice
        await until(lambda: len(received(reader)) >= 13, "updates after the restart")
        assert received(reader) == [(author.pub, c) for c in range(13)]
        assert "LISTEN connection restored" in p1.log()
        await writer.close()
        await reader.close()
    finally:
        cluster.stop()


# ------------------------------------------------------------------------ membership log
@pytest.mark.asyncio
async def test_log_entries_reach_other_processes_before_messages_naming_them(pg_url, start_relays):
    p0, p1 = start_relays(pg_url, 2)
    team = Team()
    owner, _ = await join(p0.url, team.doc_id, team.owner_keys)
    assert (await append(owner, team.root))["type"] == "log-entry-saved"
    bob_keys = SigningKeyPair.generate()
    add_bob = team.entry(team.owner_keys, "add-member", bob_keys.public_key_b64, "editor")
    assert (await append(owner, add_bob))["type"] == "log-entry-saved"
    snap = team.owner.at(team.state).initial_snapshot()
    await owner.send(snap)
    await owner.next("snapshot-saved")
    bob_conn, doc = await join(p1.url, team.doc_id, bob_keys)
    assert [e["seq"] for e in doc["log"]] == [0, 1]
    start = len(bob_conn.frames)

    # through process 0, the owner appends an entry and at once writes under the new head,
    # round after round
    rounds = 15
    for k in range(rounds):
        viewer = SigningKeyPair.generate()
        entry = team.entry(team.owner_keys, "add-member", viewer.public_key_b64, "viewer")
        await owner.send({"type": "log-entry", "entry": entry.to_json()})
        await owner.send(team.owner.at(team.state).update(snap, k))
        assert (await owner.next("log-entry-saved"))["seq"] == 2 + k
        assert (await owner.next("update-saved"))["clock"] == k

    def updates() -> list[dict]:
        return [f for f in bob_conn.frames[start:] if f["type"] == "update"]

    await until(lambda: len(updates()) == rounds, "the owner's updates on process 1")
    # bob, on process 1, got every entry before the update naming it
    head = 1
    for f in bob_conn.frames[start:]:
        if f["type"] == "log-entry":
            assert f["entry"]["seq"] == head + 1
            head = f["entry"]["seq"]
        elif f["type"] == "update":
            assert f["publicData"]["logHead"]["seq"] <= head, (f["publicData"], head)
    assert head == rounds + 1
    assert [f["publicData"]["clock"] for f in updates()] == list(range(rounds))

    # bob writes under the newest head through process 1; the owner on process 0 gets it
    bob = team.member(bob_keys)
    await bob_conn.send(bob.update(snap, 0))
    assert (await bob_conn.next("update-saved"))["clock"] == 0
    assert (await owner.next("update", timeout=TIMEOUT))["publicData"]["pubKey"] == bob.pub
    await owner.close()
    await bob_conn.close()


# ------------------------------------------------------------------ --processes (one port)
def workers_of(parent: subprocess.Popen) -> list[psutil.Process]:
    return [c for c in psutil.Process(parent.pid).children() if c.is_running()]


@pytest.mark.asyncio
async def test_processes_share_one_port_and_replace_a_killed_worker(pg_url, tmp_path):
    log_path = tmp_path / "relay.log"
    with open(log_path, "ab") as log:
        parent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secsync_jupyter.relay.standalone",
                *("--port", "0", "--open", "--db", pg_url, "--processes", "2"),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().decode()
        m = LISTEN_RE.search(line)
        assert m and "(2 processes)" in line, (line, log_path.read_text())
        url = m.group(1)
        port = int(url.rsplit(":", 1)[1])
        workers = workers_of(parent)
        assert len(workers) == 2

        # one URL; the kernel spreads the connections over both workers
        author = Author(generate_id())
        writer, snap = await seed(url, author)
        readers = [(await open_doc(url, author.doc_id))[0] for _ in range(20)]
        counts = [len(peers_of(w, port)) for w in workers]
        assert all(c > 0 for c in counts) and sum(counts) == 21, counts
        acked = await write_updates(writer, author, snap, range(10))
        for r in readers:
            await until(lambda r=r: len(received(r)) == 10, "the updates on every worker")
            assert received(r) == [(author.pub, c) for c in acked]

        # SIGKILL the writer's worker: its clients reconnect through the same URL and resume
        victim = next(w for w in workers if local_port(writer) in peers_of(w, port))
        on_victim = peers_of(victim, port)
        gone = [r for r in readers if local_port(r) in on_victim]
        victim.kill()
        for c in (writer, *gone):
            await c.wait_closed(TIMEOUT)
        # the parent replaces the worker
        await until(
            lambda: (
                [w.pid for w in workers_of(parent) if w.pid != victim.pid] != []
                and len([w for w in workers_of(parent) if w.pid != victim.pid]) == 2
            ),
            "a new worker",
        )

        async def resume() -> RelayClient:
            """A connection that has everything so far (clock 9): nothing comes in the delta."""
            client, doc = await open_doc(
                url,
                author.doc_id,
                mode="delta",
                known_snapshot_id=snap.public_data.snapshot_id,
                known_clocks={author.pub: 9},
            )
            assert doc["updates"] == []
            return client

        writer = await resume()
        for r in gone:
            readers.remove(r)
            readers.append(await resume())
        acked = await write_updates(writer, author, snap, range(10, 20))
        for r in readers:
            await until(lambda r=r: received(r)[-1:] == [(author.pub, 19)], "updates after")
            assert [c for _, c in received(r)][-10:] == list(range(10, 20))
        for c in (writer, *readers):
            await c.close()
    finally:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) == 0
        assert parent.stdout is not None
        parent.stdout.close()
    assert "starting another" in log_path.read_text()


def local_port(client: RelayClient) -> int:
    return client.ws.transport.get_extra_info("sockname")[1]


def peers_of(worker: psutil.Process, port: int) -> set[int]:
    """The client ports of a worker's established connections on the relay's port."""
    return {
        c.raddr.port
        for c in worker.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    }


def test_processes_need_postgresql(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "secsync_jupyter.relay.standalone",
            *("--open", "--processes", "2", "--db", str(tmp_path / "relay.sqlite")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--processes needs a PostgreSQL store" in out.stderr
