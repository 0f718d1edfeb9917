"""``secsync-relay`` as a process: CLI, SIGTERM, SIGKILL crash safety, no plaintext on disk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from secsync_jupyter.protocol import (
    Snapshot,
    Update,
    generate_id,
    verify_and_decrypt_update,
    verify_update_signature,
)
from secsync_jupyter.relay.standalone import build_parser

from .pg import db_rows, is_postgres
from .util import Author, RelayClient, RelayProcess, dumps, open_doc, url_for

CLI = [sys.executable, "-m", "secsync_jupyter.relay.standalone"]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_help_documents_every_flag():
    out = run_cli("--help")
    assert out.returncode == 0
    flags = [s for a in build_parser()._actions for s in a.option_strings if s.startswith("--")]
    assert len(flags) >= 15
    for flag in flags:
        assert flag in out.stdout, flag


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--open", "--bogus"], "unrecognized arguments"),
        ([], "one of the arguments --session-keys --open is required"),
        (["--open", "--session-keys", "x"], "not allowed with"),
        (["--open", "--port", "70000"], "--port"),
        (["--open", "--max-frame-bytes", "0"], "--max-frame-bytes"),
        (["--session-keys", "/nonexistent/keys"], "cannot read --session-keys"),
        (["--open", "--policy", "allowed-authors"], "--allowed-authors"),
    ],
)
def test_bad_flags_are_clear_errors(args, needle):
    out = run_cli(*args)
    assert out.returncode == 2
    assert needle in out.stderr


@pytest.mark.parametrize("where", ["missing-dir", "is-dir"])
def test_unwritable_database_is_a_clear_error(tmp_path, where):
    db = tmp_path / "nope" / "relay.sqlite" if where == "missing-dir" else tmp_path
    out = run_cli("--open", "--port", "0", "--db", str(db))
    assert out.returncode == 1
    assert "secsync-relay: error: cannot open database" in out.stderr


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "future.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA user_version = 999")
    out = run_cli("--open", "--port", "0", "--db", str(db))
    assert out.returncode == 1 and "newer than this relay" in out.stderr


def stored_updates(db: str) -> list[tuple[str, int, str]]:
    if not is_postgres(db):
        with sqlite3.connect(db) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return db_rows(db, "SELECT pub_key, clock, message FROM updates ORDER BY snapshot_seq, version")


@pytest.mark.asyncio
async def test_sigterm_finishes_in_flight_writes_and_closes_going_away(tmp_path, db_path):
    db = db_path
    relay = RelayProcess(db, log_path=str(tmp_path / "relay.log")).start()
    try:
        a = Author(generate_id())
        client, _ = await open_doc(relay.url, a.doc_id)
        snap = a.initial_snapshot()
        await client.send(snap)
        await client.next("snapshot-saved")
        other, _ = await open_doc(relay.url, a.doc_id)
        for clock in range(300):
            await client.ws.send(dumps(a.update(snap, clock).to_json()))
        await client.next("update-saved")  # the relay is busy writing
        relay.signal(signal.SIGTERM)
        assert await client.wait_closed() == 1001
        assert await other.wait_closed() == 1001
        assert await asyncio.to_thread(relay.wait) == 0
    finally:
        relay.stop()
    acked = [f["clock"] for f in client.frames if f["type"] == "update-saved"]
    assert acked == list(range(len(acked)))
    stored = [clock for _, clock, _ in stored_updates(db)]
    # every acknowledged write is stored; nothing accepted before SIGTERM was lost
    assert stored[: len(acked)] == acked
    assert stored == list(range(len(stored)))


@pytest.mark.asyncio
async def test_sigkill_mid_stream_then_restart_and_delta_reconnect(db_path):
    db = db_path
    relay = RelayProcess(db).start()
    a = Author(generate_id())
    try:
        client, _ = await open_doc(relay.url, a.doc_id)
        snap = a.initial_snapshot()
        await client.send(snap)
        await client.next("snapshot-saved")
        acked: list[int] = []
        next_clock = 0
        window = 8
        killed = False
        while not killed:
            while next_clock - len(acked) < window:
                await client.ws.send(dumps(a.update(snap, next_clock, os.urandom(64)).to_json()))
                next_clock += 1
            acked.append((await client.next("update-saved"))["clock"])
            if len(acked) == 150:
                relay.signal(signal.SIGKILL)  # mid-stream: 8 updates in flight
                killed = True
        await asyncio.to_thread(relay.wait)
        await client.wait_closed()
    finally:
        relay.stop()
    # collect acks that were already on the wire before the kill
    acked += [f["clock"] for f in client.pending() if f["type"] == "update-saved"]
    rows = stored_updates(db)
    clocks = [c for _, c, _ in rows]
    assert clocks[: len(acked)] == acked == list(range(len(acked)))  # every ack is durable
    assert clocks == list(range(len(clocks)))  # contiguous: nothing half-written
    assert len(clocks) <= next_clock
    for _, _, message in rows:  # every stored row is a complete, verifiable message
        verify_update_signature(Update.from_json(json.loads(message)))

    relay = RelayProcess(db).start()
    try:
        last_acked = acked[-1]
        c2 = await RelayClient.open(
            url_for(
                relay.url,
                a.doc_id,
                mode="delta",
                known_snapshot_id=snap.public_data.snapshot_id,
                known_clocks={a.pub: last_acked},
            )
        )
        d = await c2.next("document")
        assert set(d) == {"type", "updates"}
        got = [Update.from_json(u) for u in d["updates"]]
        assert [u.public_data.clock for u in got] == clocks[len(acked) :]
        for u in got:
            verify_and_decrypt_update(
                u, a.key, snap.public_data.snapshot_id, u.public_data.clock - 1
            )
        resume = clocks[-1] + 1
        await c2.send(a.update(snap, resume))
        assert (await c2.next("update-saved"))["clock"] == resume
        # a complete reader sees everything exactly once
        _, full = await open_doc(relay.url, a.doc_id)
        assert Snapshot.from_json(full["snapshot"]).public_data.snapshot_id == (
            snap.public_data.snapshot_id
        )
        assert [u["publicData"]["clock"] for u in full["updates"]] == list(range(resume + 1))
    finally:
        relay.stop()


@pytest.mark.asyncio
async def test_no_plaintext_in_database_wal_or_logs(tmp_path, db_path, request):
    canary = "CANARY-7f3a9c-plaintext-must-never-reach-the-relay"
    db = db_path
    log = str(tmp_path / "relay.log")
    relay = RelayProcess(db, "--log-level", "debug", log_path=log).start()
    notebook = {
        "cells": [{"cell_type": "code", "source": f"print('{canary}')", "outputs": []}],
        "metadata": {"title": canary},
    }
    files: dict[str, bytes] = {}
    try:
        a = Author(generate_id())
        client, _ = await open_doc(relay.url, a.doc_id)
        reader, _ = await open_doc(relay.url, a.doc_id)
        snap = a.initial_snapshot(json.dumps(notebook).encode())
        await client.send(snap)
        await client.next("snapshot-saved")
        for clock in range(20):
            await client.send(a.update(snap, clock, f"{canary} edit {clock}".encode()))
        for _ in range(20):
            await client.next("update-saved")
        await client.send(a.ephemeral(f"cursor of {canary}".encode()))
        await reader.next("ephemeral-message")
        # bad frames carrying the canary in clear: answered, never logged or stored
        await client.send(f"not json {canary}")
        await client.next("error")
        await client.roundtrip_ok()
        s2 = a.snapshot(snap, {a.pub: 19}, json.dumps(notebook).encode())
        await client.send(s2)
        await client.next("snapshot-saved")
        if is_postgres(db):  # its tables' files (after a checkpoint) and the WAL
            pg_files = request.getfixturevalue("pg_cluster").database_files(db)
            # the scan does see the stored rows, in the table and in the WAL (some: a WAL record
            # that straddles a WAL page boundary is not one contiguous run of bytes)
            stored = [row[2].encode() for row in stored_updates(db)]
            assert any(sum(m in data for data in pg_files.values()) >= 2 for m in stored)
            files.update(pg_files)
        for suffix in ("", "-wal", "-shm"):  # while running: the WAL holds the recent writes
            if os.path.exists(db + suffix):
                files[db + suffix + " (running)"] = open(db + suffix, "rb").read()  # noqa: SIM115
        assert is_postgres(db) or os.path.getsize(db + "-wal") > 0
    finally:
        relay.stop()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            files[db + suffix] = open(db + suffix, "rb").read()  # noqa: SIM115
    files[log] = open(log, "rb").read()  # noqa: SIM115
    assert b"DEBUG" in files[log] or b"INFO" in files[log]
    needle = canary.encode()
    for name, data in files.items():
        assert needle not in data, name
        assert needle.hex().encode() not in data, name
    # it really went through: the relay stored ciphertext for all of it
    assert len(stored_updates(db)) == 20
