"""The recipe of docs/deployment.md "Hub service with PostgreSQL and two relay processes": a real
JupyterHub whose relay service is ``secsync-relay --auth hub --db postgresql://… --processes 2``
(two workers on the service's one port, SO_REUSEPORT; fan-out through PostgreSQL). Connections
through the Hub's proxy reach both workers, Hub users see each other's edits across them, the
OAuth cookie works whichever worker answers, and a SIGKILLed worker's clients reconnect and
converge while the relay replaces it."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psutil
import pytest

from secsync_jupyter import new_document_key, open_notebook
from secsync_jupyter.protocol import generate_id

from ..client.util import until
from ..relay.pg import db_rows, pg_cluster  # noqa: F401 (the fixture)
from .conftest import SERVICE, run_hub

pytestmark = pytest.mark.asyncio

CANARY = "CANARY-pg-hub-91d2-plaintext-must-stay-with-the-users"


@pytest.fixture(scope="module")
def pg_hub(tmp_path_factory, pg_cluster):  # noqa: F811 (the fixture)
    db = pg_cluster.url(pg_cluster.create_database("hub"))
    with run_hub(tmp_path_factory.mktemp("pghub"), ["--db", db, "--processes", "2"]) as hub:
        # run_hub is ready once the relay's whoami answers: one worker listens then; the
        # supervisor starts the second after the first (a fresh Python process, seconds on a
        # loaded machine). Until it listens the kernel sends every connection to the first.
        port = service_port(hub)
        deadline = time.monotonic() + 120
        while len(relay_workers(hub, listening_on=port)) < 2:
            assert hub.proc.poll() is None, hub.log()
            assert time.monotonic() < deadline, "the relay's second worker never listened"
            time.sleep(0.1)
        yield hub, db


def relay_workers(hub, listening_on: int | None = None) -> list[psutil.Process]:
    """The relay's worker processes (started by the service's supervisor); ``listening_on``:
    only those that listen on that port already (a worker just started does not yet)."""
    out = []
    for p in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            if "--reuse-port" not in p.cmdline() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            if listening_on is not None and not any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == listening_on
                for c in p.net_connections(kind="tcp")
            ):
                continue
        except psutil.NoSuchProcess:
            continue
        out.append(p)
    return out


def service_port(hub) -> int:
    cfg = (hub.dir / "jupyterhub_config.py").read_text()
    line = next(x for x in cfg.splitlines() if '"url": "http://127.0.0.1:' in x)
    return int(line.rsplit(":", 1)[1].strip('",'))


def connections(worker: psutil.Process, port: int) -> int:
    try:
        conns = worker.net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return 0
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def _cells(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


async def test_hub_users_on_two_relay_processes_converge_and_survive_a_killed_worker(pg_hub):
    hub, db = pg_hub
    port = service_port(hub)
    workers = relay_workers(hub, listening_on=port)
    assert len(workers) == 2, [p.cmdline() for p in workers]
    tokens = [await asyncio.to_thread(hub.token, u) for u in ("alice", "bob")]
    doc_id, key = generate_id(), new_document_key()
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_notebook(hub.relay_url, doc_id, key, token=tokens[0], open_timeout=60)
        )
        a.add_markdown_cell(f"# {CANARY}")
        await a.synced(60)
        # more clients of both users, through the Hub's proxy: the kernel spreads their
        # connections over the two workers (by a hash of each connection's addresses: 8 land
        # on one worker 1 time in 128, so more clients while one worker has none, up to 24)
        notebooks = [a]
        counts = [0, 0]
        for i in range(23):
            notebooks.append(
                await stack.enter_async_context(
                    open_notebook(hub.relay_url, doc_id, key, token=tokens[i % 2], open_timeout=60)
                )
            )
            counts = [connections(w, port) for w in workers]
            if len(notebooks) >= 8 and all(c > 0 for c in counts):
                break
        assert all(c > 0 for c in counts), counts
        notebooks[-1].add_code_cell("print('from the last client')")
        for nb in notebooks:
            await until(lambda nb=nb: len(nb.cells) == 2, *notebooks, timeout=60)
        assert all(_cells(nb) == _cells(a) for nb in notebooks)

        # SIGKILL one worker: its clients reconnect (through the proxy, to the other) in
        # delta mode, edits go on, everyone converges; the relay starts a new worker
        victim = workers[0]
        victim.kill()
        a.add_code_cell("x = 'after the kill'")
        notebooks[-1].add_code_cell("y = 'after the kill too'")
        for nb in notebooks:
            await until(lambda nb=nb: len(nb.cells) == 4, *notebooks, timeout=90)
        assert all(_cells(nb) == _cells(a) for nb in notebooks)
        assert all(nb.errors == [] for nb in notebooks), [nb.errors for nb in notebooks]
        for _ in range(600):  # the relay replaces the worker, listening (polled: no event)
            if len([w for w in relay_workers(hub, port) if w.pid != victim.pid]) == 2:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the relay did not start another worker")
    # the relay's database holds the notebook, encrypted
    stored = db_rows(
        db,
        "SELECT count(*) FROM updates u JOIN snapshots s ON s.seq = "
        "u.snapshot_seq WHERE s.doc_id = ?",
        doc_id,
    )
    assert stored[0][0] > 0
    dump = db_rows(db, "SELECT string_agg(message, '') FROM snapshots")[0][0] or ""
    dump += db_rows(db, "SELECT string_agg(message, '') FROM updates")[0][0] or ""
    assert CANARY not in dump
    assert "starting another" in hub.log()


async def test_the_oauth_cookie_works_whichever_worker_answers(pg_hub):
    hub, _ = pg_hub

    def dance():
        s = hub.login("alice")
        r = s.get(
            f"{hub.url}/services/{SERVICE}/oauth_login",
            params={"next": f"/services/{SERVICE}/whoami"},
            timeout=60,
        )
        return r

    # each dance: oauth_login (state cookie signed), the Hub, oauth_callback (state checked,
    # token cookie signed), whoami (cookie checked): new connections, either worker each time
    for _ in range(6):
        r = await asyncio.to_thread(dance)
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.json() == {"name": "alice", "via": "cookie"}
