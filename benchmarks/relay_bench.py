"""Relay benchmark: our blind relay (standalone, real SQLite file, acks after commit) against
pycrdt-websocket's plaintext room (what JupyterLab's collaboration uses today), same run.

Workloads (issue 3):
  A  throughput: W=10 writers each keeping 8 updates in flight, R=10 readers
  B  latency:    W=50 writers at 10 updates/s each (500/s offered), R=5 readers
  M  memory per open idle document: N documents, each with a small state and one idle client
  L  (--large-doc MIB) a large document: the time and the relay's peak RSS growth to serve
     a delta reconnect that misses 2 updates, then a complete read, on the standalone relay
     and/or inside Jupyter Server (--transport)
  D  many documents (issue 14): --docs documents (1,000) with 2 clients each, one update per
     document every 2 s (500/s for 1,000); delivery p50/p99 and relay memory per open document
  R  (with --processes 2 or more) recovery after SIGKILL: clients on every process write (one
     update per document per second); one process is killed; its clients reconnect at once to
     another in delta mode; the time from the kill until each of them has its document frame
     (everything stored), p50/p99/max, and that every client then holds every stored update

With --store postgres|both, --processes N runs the PostgreSQL relay as N processes on one
database (fan-out through LISTEN/NOTIFY, secsync_jupyter/relay/fanout.py); the clients are
spread over the processes (connection i to process i mod N; in D the two clients of a document
are on different processes), and the p99 of deliveries that crossed processes is printed apart.

Printed per server: accepted updates/s, p50/p99 latency from send to delivery at every other
client, relay CPU (% of one core, user+system) and RSS; then the ratios. Every server runs as a
subprocess on 127.0.0.1; every loop is bounded in count and time.

    .venv/bin/python benchmarks/relay_bench.py              # full run (~2 minutes)
    .venv/bin/python benchmarks/relay_bench.py --quick      # short smoke run
    .venv/bin/python benchmarks/relay_bench.py --json out.json
    .venv/bin/python benchmarks/relay_bench.py --large-doc 360 --transport both
    .venv/bin/python benchmarks/relay_bench.py --store both --processes 2 --workloads BDR
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import psutil
from websockets.asyncio.client import connect

HOST = "127.0.0.1"
#: --trace: (time, "sent"|"recv", docId, author key prefix, clock, receiving connection)
TRACE: list[tuple] | None = None
#: --pg-stats: the benchmark database's URL (set per server); A/B then print PostgreSQL's CPU
#: per accepted update by connection role and its statements per accepted update
PG_STATS: str | None = None
MARK_RE = re.compile(rb"<(\d+):(\d+)>")


# ----------------------------------------------------------------------------- servers
def start_ours(tmp: str, synchronous: str, store: str = "") -> tuple[subprocess.Popen, str]:
    db = os.path.join(tmp, "bench.sqlite")  # store: a --store URL instead (PostgreSQL)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secsync_jupyter.relay.standalone",
            "--open",
            "--host",
            HOST,
            "--port",
            "0",
            "--db",
            db,
            "--log-level",
            "warning",
            "--synchronous",
            synchronous,
            *(["--store", store] if store else []),
        ],
        stdout=subprocess.PIPE,  # warnings (e.g. slow commits) go to our stderr
    )
    return proc, _read_url(proc)


def start_pycrdt() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve-pycrdt"], stdout=subprocess.PIPE
    )
    return proc, _read_url(proc)


def _read_url(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    m = re.search(r"(ws://\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return m.group(1).rstrip("/")


def serve_pycrdt() -> None:
    """The comparison server: pycrdt-websocket WebsocketServer (plaintext rooms, no store)."""
    from pycrdt import Channel
    from pycrdt.websocket import WebsocketServer
    from websockets.asyncio.server import serve

    class WsChannel(Channel):
        def __init__(self, ws):
            self._ws = ws
            self._path = ws.request.path

        @property
        def path(self) -> str:
            return self._path

        async def __anext__(self) -> bytes:
            try:
                return await self.recv()
            except Exception:
                raise StopAsyncIteration() from None

        async def send(self, message: bytes) -> None:
            try:
                await self._ws.send(message)
            except Exception:  # a closed client must not take the room (and server) down
                pass

        async def recv(self) -> bytes:
            return await self._ws.recv(decode=False)

    async def main() -> None:
        async with WebsocketServer(auto_clean_rooms=False) as server:

            async def handler(ws):
                await server.serve(WsChannel(ws))

            async with serve(handler, HOST, 0, max_size=None, compression=None) as s:
                port = s.sockets[0].getsockname()[1]
                print(f"pycrdt-websocket listening on ws://{HOST}:{port}", flush=True)
                await asyncio.Future()

    asyncio.run(main())


# ----------------------------------------------------------------------------- messages
class OursMessages:
    """Pre-generated signed, encrypted updates for each writer (the generator only sends).

    ``members`` > 0: a document with a membership log of that many members (issue 11): the
    writers are editors, the readers and the rest viewers; messages carry ``logHead`` and
    every connection answers the reader challenge with its key (``self.keys``).

    ``heads``: every update carries causal heads (issue 13, ``publicData.heads``) as our
    clients write them when every other author moved since the writer's previous update (the
    case of workload A): the clocks of all other writers, here ``max(0, clock - 8)`` (the
    window in flight) — by member position (``{"<seq>": clock}``) in a document with a log, as
    our clients write them there, else by key (``{"clocks": {pubKey: clock}}``)."""

    def __init__(
        self,
        doc_id: str,
        writers: int,
        per_writer: int,
        payload: int,
        members: int = 0,
        readers=0,
        heads: bool = False,
    ):
        from secsync_jupyter.protocol import (
            SigningKeyPair,
            create_initial_snapshot,
            create_update,
            generate_id,
            generate_key,
        )
        from secsync_jupyter.protocol.membership import create_entry, create_log

        self.key = generate_key()
        owner = SigningKeyPair.generate()
        #: per connection (writers, then readers): its key; the log entries to append first
        self.keys = [SigningKeyPair.generate() for _ in range(writers + readers)]
        self.entries: list[dict] = []
        extra: dict = {}
        #: member position (seq of the adding entry) of each key, in a document with a log
        position: dict[str, int] = {}
        if members:
            root, state = create_log(owner)
            self.entries.append(root.to_json())
            doc_id = state.doc_id
            others = [SigningKeyPair.generate() for _ in range(members - 1 - len(self.keys))]
            for i, kp in enumerate(self.keys + others):
                role = "editor" if i < writers else "viewer"
                entry, state = create_entry(state, owner, "add-member", kp.public_key_b64, role)
                self.entries.append(entry.to_json())
                position[kp.public_key_b64] = state.head.seq
            extra = {"logHead": state.head.to_json()}
        self.doc_id = doc_id
        self.owner = owner
        self.snapshot = create_initial_snapshot(
            b"{}",
            {"docId": doc_id, "pubKey": owner.public_key_b64, "snapshotId": generate_id(), **extra},
            self.key,
            owner,
        )
        sid = self.snapshot.public_data.snapshot_id
        self.pubkeys: dict[str, int] = {}
        self.updates: list[list[str]] = []
        for w in range(writers):
            kp = self.keys[w]
            self.pubkeys[kp.public_key_b64] = w
            pd = {"docId": doc_id, "pubKey": kp.public_key_b64, "refSnapshotId": sid, **extra}
            others = sorted(k.public_key_b64 for k in self.keys[:writers] if k is not kp)
            msgs = []
            for clock in range(per_writer):
                content = f'["<{w}:{clock}>{"x" * payload}"]'.encode()
                if heads and position:
                    pd["heads"] = {str(position[o]): max(0, clock - 8) for o in others}
                elif heads:
                    pd["heads"] = {"clocks": {o: max(0, clock - 8) for o in others}}
                u = create_update(content, pd, self.key, kp, clock)
                msgs.append(json.dumps(u.to_json(), separators=(",", ":")))
            self.updates.append(msgs)

    def ident(self, text: str) -> tuple[int, int] | None:
        """(writer, clock) of an ``update`` frame, without a full JSON parse."""
        i = text.find('"pubKey":"')
        j = text.rfind('"clock":')
        if i < 0 or j < 0:
            return None
        pub = text[i + 10 : i + 53]
        end = j + 8
        while text[end].isdigit():
            end += 1
        return self.pubkeys[pub], int(text[j + 8 : end])


class PycrdtMessages:
    def __init__(self, writers: int, per_writer: int, payload: int):
        from pycrdt import Doc, Text, create_update_message

        self.updates: list[list[bytes]] = []
        for w in range(writers):
            doc = Doc()
            text = doc.get("t", type=Text)
            got: list[bytes] = []
            sub = doc.observe(lambda event, got=got: got.append(event.update))
            msgs = []
            for seq in range(per_writer):
                text += f"<{w}:{seq}>{'x' * payload}"
                msgs.append(create_update_message(got.pop()))
            doc.unobserve(sub)
            self.updates.append(msgs)


# ----------------------------------------------------------------------------- load
@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    sent: int = 0
    t_start: float = 0.0
    t_end: float = 0.0


async def run_workload(
    kind: str,
    url: str | list[str],
    *,
    writers: int,
    readers: int,
    window: int | None,
    rate: float | None,
    duration: float,
    payload: int,
    proc: psutil.Process | list[psutil.Process],
    db: psutil.Process | None = None,
    members: int = 0,
    heads: bool = False,
    generators: int = 1,
    client: str = "lean",
) -> dict:
    """One workload against one server (and its database server ``db``, whose CPU is reported
    apart); returns the figures. Several ``url`` / ``proc``: one relay as several processes,
    connection i goes to process i mod N. ``generators`` > 1: the connections are driven by
    that many generator processes (connection i by generator i mod G), see
    :func:`_spread_workload`."""
    urls = url if isinstance(url, list) else [url]
    procs = proc if isinstance(proc, list) else [proc]
    n_proc = len(urls)
    per_writer = int((rate or 2500 / writers) * duration * 1.3) + 64
    if window is not None:
        per_writer = int(3000 / writers * duration) + 64
    doc_id = "bench" + os.urandom(6).hex()
    stats = Stats()
    cross: list[float] = []  # latencies of deliveries from one process to another
    sent_at: dict[tuple[int, int], float] = {}
    stop_sending = asyncio.Event()
    measuring = False
    perf = time.perf_counter

    if kind == "ours":
        members = max(members, writers + readers + 1) if members else 0
        msgs = await asyncio.to_thread(
            OursMessages, doc_id, writers, per_writer, payload, members, readers, heads
        )
        doc_id = msgs.doc_id
        rooms = [f"{u}/{doc_id}?sessionKey=bench" for u in urls]
        setup = await connect(rooms[0], max_size=None, compression=None)
        await _prove(setup, msgs, msgs.owner)
        for entry in msgs.entries:  # the membership log (with --members)
            await setup.send(json.dumps({"type": "log-entry", "entry": entry}))
            assert '"log-entry-saved"' in await setup.recv()
        await setup.send(json.dumps(msgs.snapshot.to_json()))
        assert '"snapshot-saved"' in await setup.recv()
    else:
        msgs = await asyncio.to_thread(PycrdtMessages, writers, per_writer, payload)
        rooms = [f"{u}/{doc_id}" for u in urls]
        setup = None

    if generators > 1:
        if members:
            raise SystemExit("--generators > 1 does not support --members")
        try:
            return await _spread_workload(
                kind, msgs, doc_id, rooms, generators, writers, readers, window, rate,
                duration, procs, db, client,
            )  # fmt: skip
        finally:
            if setup is not None:
                await setup.close()

    conns = [
        await connect(rooms[i % n_proc], max_size=None, compression=None)
        for i in range(writers + readers)
    ]
    if kind == "ours":
        for i, c in enumerate(conns):
            await _prove(c, msgs, msgs.keys[i])  # then the document frame

    def record(key, now, at: int):
        t0 = sent_at.get(key)
        if TRACE is not None and t0 is not None and measuring and kind == "ours":
            TRACE.append((t0, "sent", doc_id, msgs.keys[key[0]].public_key_b64[:8], key[1], key[0]))
            TRACE.append((now, "recv", doc_id, msgs.keys[key[0]].public_key_b64[:8], key[1], at))
        if t0 is not None and measuring:
            stats.latencies.append(now - t0)
            if key[0] % n_proc != at % n_proc:
                cross.append(now - t0)

    async def reader_loop(idx: int, ws, on_ack, at: int) -> None:
        try:
            async for m in ws:
                now = perf()
                if kind == "ours":
                    if m.startswith('{"type":"update",'):
                        record(msgs.ident(m), now, at)
                    elif m.startswith('{"type":"update-saved"'):
                        on_ack()
                else:
                    if m[0] == 0 and m[1] == 2:
                        for mm in MARK_RE.finditer(m):
                            key = (int(mm.group(1)), int(mm.group(2)))
                            if key[0] == idx:
                                on_ack()
                            else:
                                record(key, now, at)
        except Exception:
            pass

    async def writer_loop(w: int, ws) -> None:
        updates = msgs.updates[w]
        sem = asyncio.Semaphore(window or 10**9)

        def on_ack():
            if measuring:
                stats.accepted += 1
            sem.release()

        rtask = asyncio.ensure_future(reader_loop(w, ws, on_ack, w))
        i = 0
        next_t = perf() + random.random() / rate if rate else 0
        while not stop_sending.is_set() and i < len(updates):
            if window is not None:
                await sem.acquire()
            else:
                delay = next_t - perf()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_t += 1 / rate
            if stop_sending.is_set():
                break
            sent_at[(w, i)] = perf()
            if measuring:
                stats.sent += 1
            await ws.send(updates[i])
            i += 1
        await asyncio.sleep(1.0)  # let in-flight ones land
        rtask.cancel()

    reader_tasks = [
        asyncio.ensure_future(reader_loop(-1, conns[writers + r], lambda: None, writers + r))
        for r in range(readers)
    ]
    writer_tasks = [asyncio.ensure_future(writer_loop(w, conns[w])) for w in range(writers)]
    await asyncio.sleep(min(2.0, duration / 4))  # warm-up
    pg_stats = await PgStats.begin(db) if PG_STATS and db is not None else None
    measuring = True
    cpu0 = [p.cpu_times() for p in procs]
    me0 = psutil.Process().cpu_times()
    db0 = db_cpu_seconds(db)
    machine0 = psutil.cpu_times()
    stats.t_start = perf()
    await asyncio.sleep(duration)
    measuring = False
    stats.t_end = perf()
    cpu1 = [p.cpu_times() for p in procs]
    me1 = psutil.Process().cpu_times()
    db1 = db_cpu_seconds(db)
    machine1 = psutil.cpu_times()
    if pg_stats is not None:
        await pg_stats.end(stats.accepted)
    rss = sum(p.memory_info().rss for p in procs)
    stop_sending.set()
    await asyncio.wait_for(asyncio.gather(*writer_tasks, return_exceptions=True), 60)
    for t in reader_tasks:
        t.cancel()
    for c in conns:
        await c.close()
    if setup is not None:
        await setup.close()
    elapsed = stats.t_end - stats.t_start
    lat = sorted(stats.latencies)

    def pct(p, lat=lat):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    cpu = sum(b.user + b.system - a.user - a.system for a, b in zip(cpu0, cpu1, strict=True))
    me = me1.user + me1.system - me0.user - me0.system
    shares = _cpu_shares(cpu, db1 - db0, me, machine0, machine1, elapsed, stats.accepted, len(lat))
    cpu = cpu / elapsed * 100
    gen_cpu = me / elapsed * 100
    return {
        **shares,
        "client": "websockets",
        "accepted_per_s": stats.accepted / elapsed,
        # the size of one update message (ours: writer 0's 65th, heads at their full width)
        "update_bytes": len(msgs.updates[0][64]) if kind == "ours" else 0,
        "offered_per_s": stats.sent / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "deliveries": len(lat),
        "processes": n_proc,
        "cross_deliveries": len(cross),
        "cross_p99_ms": pct(0.99, sorted(cross)),
        "relay_cpu_pct": cpu,
        "db_cpu_pct": (db1 - db0) / elapsed * 100,
        "generator_cpu_pct": gen_cpu,
        "relay_rss_mb": rss / 2**20,
    }


# ------------------------------------------------------- load from several generator processes
def _ident(pubkeys: dict[str, int], text: str) -> tuple[int, int] | None:
    """:meth:`OursMessages.ident` without the messages object."""
    i = text.find('"pubKey":"')
    j = text.rfind('"clock":')
    if i < 0 or j < 0:
        return None
    end = j + 8
    while text[end].isdigit():
        end += 1
    return pubkeys[text[i + 10 : i + 53]], int(text[j + 8 : end])


async def _send_paced(
    w: int, updates: list, send, sem, window, rate, t_go: float, stop_sending, sends: list
) -> None:
    """Writer ``w``'s sends: ``window`` in flight (each acknowledgement releases ``sem``) or
    ``rate`` per second from ``t_go``; a send is timed before it is written (``send`` may be a
    coroutine function or a plain one)."""
    mono = time.monotonic
    i = 0
    next_t = t_go + random.random() / rate if rate else 0
    while not stop_sending.is_set() and i < len(updates):
        if window is not None:
            await sem.acquire()
        else:
            delay = next_t - mono()
            if delay > 0:
                await asyncio.sleep(delay)
            next_t += 1 / rate
        if stop_sending.is_set():
            break
        sends.append((w, i, mono()))
        sent = send(updates[i])
        if sent is not None:
            await sent
        i += 1
    await asyncio.sleep(1.0)  # let in-flight ones land


async def _timed_run(t_go: float, t_start: float, t_end: float, start, stop_sending) -> float:
    """Starts the connections' tasks (``start()`` returns those to wait for) at ``t_go``,
    measures this process's CPU from ``t_start`` to ``t_end``, then stops the sending and
    waits for the tasks; returns the CPU seconds."""
    mono = time.monotonic
    await asyncio.sleep(max(0.0, t_go - mono()))
    tasks = start()
    await asyncio.sleep(max(0.0, t_start - mono()))
    cpu0 = psutil.Process().cpu_times()
    await asyncio.sleep(max(0.0, t_end - mono()))
    cpu1 = psutil.Process().cpu_times()
    stop_sending.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    return cpu1.user + cpu1.system - cpu0.user - cpu0.system


async def _drive(spec: dict, pipe) -> None:
    """One generator process's share of a workload (connections ``spec["conns"]``): connect,
    read the document frames, say ready, start at the time the parent sends, and send back
    every send, receipt and acknowledgement with its ``time.monotonic()`` (one clock for every
    process of the machine, so the parent computes latencies across generators)."""
    kind, rooms, n_proc = spec["kind"], spec["rooms"], len(spec["rooms"])
    writers, window, rate = spec["writers"], spec["window"], spec["rate"]
    pubkeys = spec["pubkeys"]
    mono = time.monotonic
    conns = {}
    for i in spec["conns"]:
        ws = await connect(rooms[i % n_proc], max_size=None, compression=None)
        if kind == "ours":
            first = await ws.recv()
            assert first.startswith('{"type":"document"'), first[:100]
        conns[i] = ws
    pipe.send("ready")
    t_go, t_start, t_end = await asyncio.to_thread(pipe.recv)
    sends: list[tuple[int, int, float]] = []
    recvs: list[tuple[int, int, float, int]] = []
    acks: list[float] = []
    stop_sending = asyncio.Event()

    async def reader_loop(idx: int, ws, on_ack) -> None:
        try:
            async for m in ws:
                now = mono()
                if kind == "ours":
                    if m.startswith('{"type":"update",'):
                        w, c = _ident(pubkeys, m)
                        recvs.append((w, c, now, idx))
                    elif m.startswith('{"type":"update-saved"'):
                        on_ack(now)
                elif m[0] == 0 and m[1] == 2:
                    for mm in MARK_RE.finditer(m):
                        w, c = int(mm.group(1)), int(mm.group(2))
                        if w == idx:
                            on_ack(now)
                        else:
                            recvs.append((w, c, now, idx))
        except Exception:
            pass

    async def writer_loop(w: int, ws) -> None:
        updates = spec["updates"][w]
        sem = asyncio.Semaphore(window or 10**9)

        def on_ack(now: float) -> None:
            acks.append(now)
            sem.release()

        rtask = asyncio.ensure_future(reader_loop(w, ws, on_ack))
        await _send_paced(w, updates, ws.send, sem, window, rate, t_go, stop_sending, sends)
        rtask.cancel()

    readers: list[asyncio.Future] = []

    def start() -> list[asyncio.Future]:
        for i, ws in conns.items():
            if i >= writers:
                readers.append(asyncio.ensure_future(reader_loop(i, ws, lambda now: None)))
        return [asyncio.ensure_future(writer_loop(i, ws)) for i, ws in conns.items() if i < writers]

    cpu = await _timed_run(t_go, t_start, t_end, start, stop_sending)
    for t in readers:
        t.cancel()
    for ws in conns.values():
        await ws.close()
    pipe.send({"sends": sends, "recvs": recvs, "acks": acks, "cpu_s": cpu})


def _generator_main(spec: dict, pipe) -> None:
    """Entry point of a generator process (multiprocessing, spawn)."""
    asyncio.run((_drive_lean if spec.get("client") == "lean" else _drive)(spec, pipe))


# ------------------------------------------------------- a lean WebSocket client for the load
class LeanClient(asyncio.Protocol):
    """A minimal RFC 6455 client for the load generator (``--client lean``, the default with
    ``--generators``): the handshake, masked sends, and the server's unmasked frames parsed
    straight from each read (fragments joined, pings answered), every message handed to
    ``handler(opcode, payload, now)`` with one ``time.monotonic()`` per read. The websockets
    client spends ~25 µs per received frame (its parser, assembler and a task wake-up per
    message); workload B delivers 27,000 frames/s, so on a 2-core machine the generators of
    the benchmark took more CPU than the relays they measure. What the relay sends and what
    is timed (send → the frame's arrival at the client process) are unchanged."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshaken = False
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.early: list[tuple[int, bytes]] = []
        self.first: asyncio.Future = asyncio.get_running_loop().create_future()
        self.handler = None
        self._frag: list[bytes] | None = None
        self._frag_op = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        for fut in (self.opened, self.first):
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.handshaken = True
            self.opened.set_result(None)
        now = time.monotonic()
        i, n = 0, len(buf)
        while n - i >= 2:
            b0, ln = buf[i], buf[i + 1] & 0x7F
            h = 2
            if ln == 126:
                if n - i < 4:
                    break
                ln, h = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif ln == 127:
                if n - i < 10:
                    break
                ln, h = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            if n - i < h + ln:
                break
            payload = bytes(buf[i + h : i + h + ln])
            i += h + ln
            op = b0 & 0x0F
            if op == 0:  # continuation
                assert self._frag is not None
                self._frag.append(payload)
                if not b0 & 0x80:
                    continue
                payload, op, self._frag = b"".join(self._frag), self._frag_op, None
            elif op in (1, 2) and not b0 & 0x80:
                self._frag, self._frag_op = [payload], op
                continue
            if op in (1, 2):
                if self.handler is not None:
                    self.handler(op, payload, now)
                elif not self.first.done():
                    self.first.set_result(payload)
                else:
                    self.early.append((op, payload))
            elif op == 9:
                self._send(0xA, payload)
            elif op == 8:
                assert self.transport is not None
                self.transport.close()
                break
        del buf[:i]

    def _send(self, op: int, payload: bytes) -> None:
        n = len(payload)
        b0 = 0x80 | op
        if n < 126:
            header = bytes((b0, 0x80 | n))
        elif n < 65536:
            header = bytes((b0, 0xFE)) + n.to_bytes(2, "big")
        else:
            header = bytes((b0, 0xFF)) + n.to_bytes(8, "big")
        key = os.urandom(4)
        mask = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
        assert self.transport is not None
        self.transport.write(header + key + masked)

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self._send(0x1, message.encode())
        else:
            self._send(0x2, message)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def lean_connect(url: str) -> LeanClient:
    """Open a :class:`LeanClient` to ``ws://host:port/path?query``."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(LeanClient, u.hostname, u.port)
    key = base64.b64encode(os.urandom(16)).decode()
    assert client.transport is not None
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    client.transport.write(request.encode())
    await asyncio.wait_for(client.opened, 30)
    return client


def _ident_bytes(pubkeys: dict[bytes, int], m: bytes) -> tuple[int, int]:
    """:func:`_ident` on the frame's bytes."""
    i = m.find(b'"pubKey":"')
    j = m.rfind(b'"clock":')
    end = j + 8
    while 48 <= m[end] <= 57:
        end += 1
    return pubkeys[m[i + 10 : i + 53]], int(m[j + 8 : end])


async def _drive_lean(spec: dict, pipe) -> None:
    """:func:`_drive` with :class:`LeanClient` connections (same figures, same timing points:
    a send is timed before it is written, a receipt when its bytes reached this process)."""
    kind, rooms, n_proc = spec["kind"], spec["rooms"], len(spec["rooms"])
    writers, window, rate = spec["writers"], spec["window"], spec["rate"]
    pubkeys = {k.encode(): v for k, v in spec["pubkeys"].items()}
    conns: dict[int, LeanClient] = {}
    for i in spec["conns"]:
        c = await lean_connect(rooms[i % n_proc])
        if kind == "ours":
            first = await asyncio.wait_for(c.first, 60)
            assert first.startswith(b'{"type":"document"'), first[:100]
        conns[i] = c
    pipe.send("ready")
    t_go, t_start, t_end = await asyncio.to_thread(pipe.recv)
    sends: list[tuple[int, int, float]] = []
    recvs: list[tuple[int, int, float, int]] = []
    acks: list[float] = []
    stop_sending = asyncio.Event()
    sems = {w: asyncio.Semaphore(window or 10**9) for w in conns if w < writers}

    def handler_for(idx: int):
        sem = sems.get(idx)
        append = recvs.append

        def on_ack(now: float) -> None:
            if sem is not None:
                acks.append(now)
                sem.release()

        if kind == "ours":

            def handle(op: int, m: bytes, now: float) -> None:
                if m.startswith(b'{"type":"update",'):
                    w, c = _ident_bytes(pubkeys, m)
                    append((w, c, now, idx))
                elif m.startswith(b'{"type":"update-saved"'):
                    on_ack(now)

        else:

            def handle(op: int, m: bytes, now: float) -> None:
                if m[0] == 0 and m[1] == 2:
                    for mm in MARK_RE.finditer(m):
                        w, c = int(mm.group(1)), int(mm.group(2))
                        if w == idx:
                            on_ack(now)
                        else:
                            append((w, c, now, idx))

        return handle

    for idx, c in conns.items():
        c.handler = handler_for(idx)

    def start() -> list[asyncio.Future]:
        return [
            asyncio.ensure_future(
                _send_paced(
                    i, spec["updates"][i], c.send, sems[i], window, rate, t_go, stop_sending, sends
                )
            )
            for i, c in conns.items()
            if i < writers
        ]

    cpu = await _timed_run(t_go, t_start, t_end, start, stop_sending)
    for c in conns.values():
        c.close()
    pipe.send({"sends": sends, "recvs": recvs, "acks": acks, "cpu_s": cpu})


async def _spread_workload(
    kind, msgs, doc_id, rooms, generators, writers, readers, window, rate, duration, procs, db,
    client="lean",
) -> dict:  # fmt: skip
    """:func:`run_workload` with its connections driven by ``generators`` processes (one Python
    process reading 55 connections at 500 updates/s is itself a bound on 2 cores). The same
    figures: latency from a writer's send to each receipt at every other connection (both
    ``time.monotonic()``), over receipts inside the measured window; accepted = the
    acknowledgements received in it."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    n_proc = len(rooms)
    pubkeys = msgs.pubkeys if kind == "ours" else {}
    children = []
    for g in range(generators):
        mine = [i for i in range(writers + readers) if i % generators == g]
        spec = {
            "kind": kind,
            "rooms": rooms,
            "conns": mine,
            "writers": writers,
            "window": window,
            "rate": rate,
            "pubkeys": pubkeys,
            "updates": {w: msgs.updates[w] for w in mine if w < writers},
            "client": client,
        }
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=_generator_main, args=(spec, child_end), daemon=True)
        proc.start()
        children.append((proc, parent_end))
    try:
        for _proc, pipe in children:
            ready = await asyncio.to_thread(pipe.recv)
            assert ready == "ready", ready
        mono = time.monotonic
        t_go = mono() + 0.5
        t_start = t_go + min(2.0, duration / 4)  # warm-up
        t_end = t_start + duration
        for _, pipe in children:
            pipe.send((t_go, t_start, t_end))
        await asyncio.sleep(max(0.0, t_start - mono()))
        cpu0 = [p.cpu_times() for p in procs]
        db0 = db_cpu_seconds(db)
        machine0 = psutil.cpu_times()
        await asyncio.sleep(max(0.0, t_end - mono()))
        cpu1 = [p.cpu_times() for p in procs]
        db1 = db_cpu_seconds(db)
        machine1 = psutil.cpu_times()
        rss = sum(p.memory_info().rss for p in procs)
        parts = [await asyncio.to_thread(pipe.recv) for _, pipe in children]
    finally:
        for proc, _ in children:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    sent_at = {(w, i): t for part in parts for w, i, t in part["sends"]}
    lat, cross = [], []
    for part in parts:
        for w, i, t, at in part["recvs"]:
            t0 = sent_at.get((w, i))
            if t0 is None or not t_start <= t <= t_end:
                continue
            lat.append(t - t0)
            if w % n_proc != at % n_proc:
                cross.append(t - t0)
            if TRACE is not None and kind == "ours":
                pub = msgs.keys[w].public_key_b64[:8]
                TRACE.append((t0, "sent", doc_id, pub, i, w))
                TRACE.append((t, "recv", doc_id, pub, i, at))
    accepted = sum(1 for part in parts for t in part["acks"] if t_start <= t <= t_end)
    sent = sum(1 for part in parts for _, _, t in part["sends"] if t_start <= t <= t_end)
    elapsed = t_end - t_start
    lat.sort()
    cross.sort()

    def pct(p, values=lat):
        return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")

    cpu = sum(b.user + b.system - a.user - a.system for a, b in zip(cpu0, cpu1, strict=True))
    gen_s = sum(part["cpu_s"] for part in parts)
    return {
        **_cpu_shares(cpu, db1 - db0, gen_s, machine0, machine1, elapsed, accepted, len(lat)),
        "client": client,
        "accepted_per_s": accepted / elapsed,
        "update_bytes": len(msgs.updates[0][64]) if kind == "ours" else 0,
        "offered_per_s": sent / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "deliveries": len(lat),
        "processes": n_proc,
        "cross_deliveries": len(cross),
        "cross_p99_ms": pct(0.99, cross),
        "relay_cpu_pct": cpu / elapsed * 100,
        "db_cpu_pct": (db1 - db0) / elapsed * 100,
        "generator_cpu_pct": sum(part["cpu_s"] for part in parts) / elapsed * 100,
        "generators": generators,
        "relay_rss_mb": rss / 2**20,
    }


async def _prove(ws, msgs: OursMessages, keypair) -> None:
    """Read up to the document frame, answering a reader challenge (a document with a log)."""
    from secsync_jupyter.protocol.membership import create_reader_proof

    first = await ws.recv()
    if '"reader-challenge"' in first:
        nonce = json.loads(first)["nonce"]
        await ws.send(json.dumps(create_reader_proof(keypair, msgs.doc_id, nonce)))
        first = await ws.recv()
    assert first.startswith('{"type":"document"'), first[:100]


def db_cpu_seconds(db: psutil.Process | None) -> float:
    """CPU seconds (user + system) of a PostgreSQL server and its processes so far."""
    total = 0.0
    for p in [db, *db.children(recursive=True)] if db is not None else []:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


class PgStats:
    """``--pg-stats``: PostgreSQL's CPU in the measured window by the role of each server
    process (the relay's pooled connections, its flush barrier, its LISTEN and ephemeral
    connections by ``application_name``; the server's own processes by ``backend_type``), and
    ``pg_stat_statements`` (every statement, nested ones too) per accepted update. Printed."""

    def __init__(self, db: psutil.Process, roles: dict[int, str]):
        self.db = db
        self.roles = roles
        self.cpu0 = self._cpu()

    @classmethod
    async def begin(cls, db: psutil.Process) -> PgStats:
        import asyncpg

        conn = await asyncpg.connect(PG_STATS)
        try:
            rows = await conn.fetch(
                "SELECT pid, application_name, backend_type FROM pg_stat_activity"
            )
            await conn.execute("SELECT pg_stat_statements_reset()")
        finally:
            await conn.close()
        roles = {}
        for pid, app, kind in rows:
            app = re.sub(r"-\d+$", "", app or "")
            roles[pid] = app if app.startswith("secsync") else kind
        return cls(db, roles)

    def _cpu(self) -> dict[int, float]:
        out = {}
        for p in [self.db, *self.db.children(recursive=True)]:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return out

    async def end(self, accepted: int) -> None:
        import asyncpg

        cpu1 = self._cpu()
        conn = await asyncpg.connect(PG_STATS)
        try:
            rows = await conn.fetch(
                "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements "
                "ORDER BY total_exec_time DESC LIMIT 14"
            )
        finally:
            await conn.close()
        by_role: dict[str, float] = {}
        for pid, t in cpu1.items():
            role = self.roles.get(pid, "postmaster/new")
            by_role[role] = by_role.get(role, 0.0) + t - self.cpu0.get(pid, 0.0)
        n = max(1, accepted)
        print(
            f"  {'':9s}    PostgreSQL CPU per accepted update by role ({accepted} accepted): "
            + ", ".join(
                f"{r} {s / n * 1e6:.0f} µs" for r, s in sorted(by_role.items(), key=lambda x: -x[1])
            ),
            flush=True,
        )
        for calls, ms, nrows, query in rows:
            q = " ".join(query.split())[:110]
            print(
                f"  {'':9s}      {calls / n:7.3f} calls {ms * 1000 / n:6.1f} µs "
                f"{nrows / n:6.2f} rows per update: {q}",
                flush=True,
            )


async def idle_memory(kind: str, url: str, proc: psutil.Process, n: int) -> dict:
    """Open n documents, each with a small state and one idle client; RSS growth per doc."""
    import gc

    gc.collect()
    base = proc.memory_info().rss
    conns = []
    for i in range(n):
        doc_id = f"idle{i}x{os.getpid()}"
        if kind == "ours":
            m = OursMessages(doc_id, 1, 2, 32)
            ws = await connect(f"{url}/{doc_id}?sessionKey=idle", compression=None)
            await ws.recv()
            await ws.send(json.dumps(m.snapshot.to_json()))
            await ws.recv()
            for u in m.updates[0]:
                await ws.send(u)
                await ws.recv()
        else:
            if i == 0:
                template = PycrdtMessages(1, 2, 32)  # the same small state in every room
            ws = await connect(f"{url}/{doc_id}", compression=None)
            for u in template.updates[0]:
                await ws.send(u)
        conns.append(ws)
    await asyncio.sleep(1.0)
    grown = proc.memory_info().rss - base
    for ws in conns:
        await ws.close()
    return {"idle_docs": n, "bytes_per_idle_doc": grown / n}


# ----------------------------------------------------------------------------- many documents
def _pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))] * 1000 if v else float("nan")


async def _gather_chunked(coros, size: int = 50) -> list:
    out = []
    coros = list(coros)
    for i in range(0, len(coros), size):
        out += await asyncio.gather(*coros[i : i + size])
    return out


async def many_documents(
    kind: str,
    urls: list[str],
    procs: list[psutil.Process],
    *,
    docs: int,
    period: float,
    duration: float,
    payload: int,
    db: psutil.Process | None = None,
) -> dict:
    """Workload D: ``docs`` documents, each with a writer and a reader (on different processes
    when there are several), one update per document every ``period`` seconds."""
    n_proc = len(urls)
    warm = 2 * period
    per_doc = int((warm + duration) / period) + 4
    tag = os.urandom(4).hex()
    if kind == "ours":
        msgs = await asyncio.to_thread(
            lambda: [OursMessages(f"many{tag}x{d}", 1, per_doc, payload) for d in range(docs)]
        )
    else:
        template = await asyncio.to_thread(PycrdtMessages, 1, per_doc, payload)
        msgs = [template] * docs  # every room its own document, the same updates
    rss0 = sum(p.memory_info().rss for p in procs)

    async def open_doc(d: int):
        suffix = f"/many{tag}x{d}" + ("?sessionKey=bench" if kind == "ours" else "")
        w = await connect(urls[d % n_proc] + suffix, max_size=None, compression=None)
        if kind == "ours":
            await w.recv()
            await w.send(json.dumps(msgs[d].snapshot.to_json()))
            assert '"snapshot-saved"' in await w.recv()
        r = await connect(urls[(d + 1) % n_proc] + suffix, max_size=None, compression=None)
        if kind == "ours":
            await r.recv()
        return w, r

    t_open = time.perf_counter()
    pairs = await _gather_chunked(open_doc(d) for d in range(docs))
    open_s = time.perf_counter() - t_open
    await asyncio.sleep(1.0)
    rss1 = sum(p.memory_info().rss for p in procs)

    perf = time.perf_counter
    sent_at: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    measuring = False
    accepted = 0
    sent = 0

    async def reader(d: int, ws) -> None:
        try:
            async for m in ws:
                now = perf()
                key = None
                if kind == "ours":
                    if m.startswith('{"type":"update",'):
                        key = (d, msgs[d].ident(m)[1])
                elif m[0] == 0 and m[1] == 2:
                    mm = MARK_RE.search(m)
                    key = (d, int(mm.group(2))) if mm else None
                t0 = sent_at.get(key) if key else None
                if TRACE is not None and t0 is not None and measuring and kind == "ours":
                    pub, doc = msgs[d].keys[0].public_key_b64[:8], msgs[d].doc_id
                    TRACE.append((t0, "sent", doc, pub, key[1], -1))
                    TRACE.append((now, "recv", doc, pub, key[1], d))
                if t0 is not None and measuring:
                    latencies.append(now - t0)
        except Exception:
            pass

    async def acks(ws) -> None:
        nonlocal accepted
        try:
            async for m in ws:
                if measuring and (
                    kind != "ours"
                    or (isinstance(m, str) and m.startswith('{"type":"update-saved"'))
                ):
                    accepted += 1
        except Exception:
            pass

    tasks = [asyncio.ensure_future(reader(d, r)) for d, (_, r) in enumerate(pairs)]
    tasks += [asyncio.ensure_future(acks(w)) for w, _ in pairs]
    t0 = perf()
    cpu0 = me0 = db0 = pg_stats = None
    t_start = t_end = 0.0
    for k in range(per_doc):
        now = perf()
        if not measuring and now - t0 >= warm and cpu0 is None:
            measuring = True
            cpu0 = [p.cpu_times() for p in procs]
            me0 = psutil.Process().cpu_times()
            db0 = db_cpu_seconds(db)
            pg_stats = await PgStats.begin(db) if PG_STATS and db is not None else None
            t_start = now
        if measuring and now - t_start >= duration:
            break
        for d in range(docs):
            delay = t0 + k * period + d * period / docs - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[(d, k)] = perf()
            if measuring:
                sent += 1
            await pairs[d][0].send(msgs[d].updates[0][k])
    measuring = False
    t_end = perf()
    cpu1 = [p.cpu_times() for p in procs]
    me1 = psutil.Process().cpu_times()
    db1 = db_cpu_seconds(db)
    if pg_stats is not None:
        await pg_stats.end(accepted)
    rss2 = sum(p.memory_info().rss for p in procs)
    await asyncio.sleep(1.0)
    for t in tasks:
        t.cancel()
    await _gather_chunked(ws.close() for pair in pairs for ws in pair)
    elapsed = max(t_end - t_start, 1e-9)
    cpu = sum(b.user + b.system - a.user - a.system for a, b in zip(cpu0, cpu1, strict=True))
    return {
        "docs": docs,
        "processes": n_proc,
        "open_s": open_s,
        "accepted_per_s": accepted / elapsed,
        "offered_per_s": sent / elapsed,
        "p50_ms": _pct(latencies, 0.50),
        "p99_ms": _pct(latencies, 0.99),
        "deliveries": len(latencies),
        "relay_cpu_pct": cpu / elapsed * 100,
        "db_cpu_pct": (db1 - db0) / elapsed * 100,
        "generator_cpu_pct": (me1.user + me1.system - me0.user - me0.system) / elapsed * 100,
        "relay_rss_mb": rss2 / 2**20,
        "kb_per_open_doc": (rss1 - rss0) / docs / 1024,
    }


async def recovery(
    urls: list[str],
    popens: list[subprocess.Popen],
    *,
    docs: int,
    period: float = 1.0,
    before: float = 5.0,
    after: float = 5.0,
    payload: int = 100,
) -> dict:
    """Workload R: SIGKILL one of the relay processes under load; its clients reconnect at
    once to the next process in delta mode. The time from the kill to each one's document
    frame; then whether every client holds every stored update."""
    from urllib.parse import quote

    n_proc = len(urls)
    per_doc = int((before + after) / period) + 40
    tag = os.urandom(4).hex()
    msgs = await asyncio.to_thread(
        lambda: [OursMessages(f"rec{tag}x{d}", 1, per_doc, payload) for d in range(docs)]
    )
    pub = [next(iter(m.pubkeys)) for m in msgs]
    alive = [True] * n_proc
    killed_at: list[float] = []
    synced: list[float] = []

    class Client:
        def __init__(self, d: int, writer: bool, at: int):
            self.d, self.writer, self.at = d, writer, at
            self.last = -1  # last clock of the document's writer this client holds
            self.sent = -1  # (writer) last clock sent on this connection
            self.ws = None
            self.ready = asyncio.Event()

        def url(self, delta: bool) -> str:
            u = f"{urls[self.at]}/rec{tag}x{self.d}?sessionKey=bench"
            if delta:
                sid = msgs[self.d].snapshot.public_data.snapshot_id
                known = quote(json.dumps({pub[self.d]: self.last}) if self.last >= 0 else "{}")
                u += f"&mode=delta&knownSnapshotId={sid}&knownSnapshotUpdateClocks={known}"
            return u

        def take(self, frame: str) -> None:
            if frame.startswith('{"type":"document"'):
                for u in json.loads(frame)["updates"]:
                    self.last = max(self.last, u["publicData"]["clock"])
            elif frame.startswith('{"type":"update",'):
                self.last = max(self.last, msgs[self.d].ident(frame)[1])
            elif frame.startswith('{"type":"update-saved"'):
                self.last = max(self.last, json.loads(frame)["clock"])

        async def run(self) -> None:
            delta = False
            while True:
                try:
                    self.ws = await connect(self.url(delta), max_size=None, compression=None)
                    first = await self.ws.recv()
                    self.take(first)
                    if delta:
                        synced.append(time.perf_counter() - killed_at[0])
                    self.sent = self.last
                    self.ready.set()
                    async for m in self.ws:
                        self.take(m)
                    return  # closed by us
                except Exception:
                    self.ready.clear()
                    if not killed_at or alive[self.at]:
                        if stop.is_set():
                            return
                        await asyncio.sleep(0.05)
                        continue
                    self.at = next(i for i in range(n_proc) if alive[i])
                    delta = True

    stop = asyncio.Event()
    clients: list[Client] = []
    for d in range(docs):
        clients.append(Client(d, True, d % n_proc))
        clients.append(Client(d, False, (d + 1) % n_proc))

    async def seed(d: int) -> None:
        ws = await connect(clients[2 * d].url(False), max_size=None, compression=None)
        await ws.recv()
        await ws.send(json.dumps(msgs[d].snapshot.to_json()))
        assert '"snapshot-saved"' in await ws.recv()
        await ws.close()

    await _gather_chunked(seed(d) for d in range(docs))
    tasks = [asyncio.ensure_future(c.run()) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 120)
    t0 = time.perf_counter()
    k = 0
    affected = sum(1 for c in clients if c.at == 0)
    while time.perf_counter() - t0 < before + after:
        if not killed_at and time.perf_counter() - t0 >= before:
            popens[0].kill()  # SIGKILL
            killed_at.append(time.perf_counter())
            alive[0] = False
        for d in range(docs):
            delay = t0 + k * period + d * period / docs - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            w = clients[2 * d]
            nxt = max(w.last, w.sent) + 1
            if w.ready.is_set() and nxt < per_doc:
                w.sent = nxt
                try:
                    await w.ws.send(msgs[d].updates[0][nxt])
                except Exception:
                    pass  # the process died: the update goes again after the reconnection
        k += 1
    # quiescence: every reader reaches its writer's last stored clock
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if all(clients[2 * d + 1].last == clients[2 * d].last for d in range(docs)):
            break
        await asyncio.sleep(0.2)
    converged = sum(clients[2 * d + 1].last == clients[2 * d].last for d in range(docs))
    stop.set()
    for c in clients:
        if c.ws is not None:
            await c.ws.close()
    for t in tasks:
        t.cancel()
    return {
        "docs": docs,
        "processes": n_proc,
        "affected_clients": affected,
        "resynced_clients": len(synced),
        "resync_p50_ms": _pct(synced, 0.50),
        "resync_p99_ms": _pct(synced, 0.99),
        "resync_max_ms": max(synced) * 1000 if synced else float("nan"),
        "converged_docs": converged,
    }


# ----------------------------------------------------------------------------- main
WORKLOADS = {
    "A": {"writers": 10, "readers": 10, "window": 8, "rate": None},
    "B": {"writers": 50, "readers": 5, "window": None, "rate": 10.0},
}


async def _pg_stats_on(db_url: str) -> None:
    import asyncpg

    global PG_STATS
    PG_STATS = db_url
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


async def paired_stores(args) -> None:
    """``--paired``: workload A (or the first of ``--workloads`` among A/B) on one SQLite relay
    process and on ``--processes`` PostgreSQL relay processes, all started once, the runs taking
    turns (SQLite first in even rounds, PostgreSQL first in odd ones), so a load that changes
    during the benchmark weighs on both alike; prints each pair's ratios (PostgreSQL / SQLite:
    accepted updates/s, CPU per accepted update relay + PostgreSQL) and their medians."""
    name = next((w for w in args.workloads if w in WORKLOADS), "A")
    sync = args.synchronous if args.synchronous != "both" else "full"
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        pg = _test_utilities("pg").PgCluster(fsync=True).start()
        atexit.register(pg.stop)
        db = psutil.Process(int((pg.data / "postmaster.pid").read_text().split()[0]))
        store = pg.url(pg.create_database("bench"))
        if args.doorbell:
            store += ("&" if "?" in store else "?") + f"doorbell={args.doorbell}"
        sqlite_proc, sqlite_url = start_ours(tmp, sync)
        pg_started = [start_ours(tmp, sync, store) for _ in range(args.processes)]
        popens = [sqlite_proc, *(p for p, _ in pg_started)]
        sides = {
            "sqlite": ([sqlite_url], [psutil.Process(sqlite_proc.pid)], None),
            "postgres": (
                [u for _, u in pg_started],
                [psutil.Process(p.pid) for p, _ in pg_started],
                db,
            ),
        }
        pairs = []
        try:
            for rep in range(args.repeat):
                order = ["sqlite", "postgres"] if rep % 2 == 0 else ["postgres", "sqlite"]
                pair = {}
                for side in order:
                    urls, procs, side_db = sides[side]
                    pair[side] = await run_workload(
                        "ours",
                        urls if len(urls) > 1 else urls[0],
                        duration=args.duration,
                        payload=args.payload,
                        proc=procs if len(procs) > 1 else procs[0],
                        db=side_db,
                        **WORKLOADS[name],
                    )
                s_, p_ = pair["sqlite"], pair["postgres"]
                s_cpu = s_["relay_us_per_accepted"]
                p_cpu = p_["relay_us_per_accepted"] + p_["db_us_per_accepted"]
                pairs.append((p_["accepted_per_s"] / s_["accepted_per_s"], p_cpu / s_cpu))
                print(
                    f"  pair {rep + 1} ({' then '.join(order)}, load {os.getloadavg()[0]:.2f}): "
                    f"{name} SQLite {s_['accepted_per_s']:.0f}/s, {s_cpu:.0f} µs per accepted "
                    f"update (other processes {s_['other_cpu_pct']:.0f}%); PostgreSQL x"
                    f"{args.processes} {p_['accepted_per_s']:.0f}/s, relay "
                    f"{p_['relay_us_per_accepted']:.0f} + PostgreSQL "
                    f"{p_['db_us_per_accepted']:.0f} µs (other processes "
                    f"{p_['other_cpu_pct']:.0f}%); throughput x{pairs[-1][0]:.3f}, CPU "
                    f"x{pairs[-1][1]:.3f}",
                    flush=True,
                )
        finally:
            for x in popens:
                x.terminate()
                x.wait(20)
    thr = sorted(p[0] for p in pairs)
    cpu = sorted(p[1] for p in pairs)
    print(
        f"PostgreSQL ({args.processes} processes) / SQLite (1 process), {name}, medians of "
        f"{len(pairs)} pairs: accepted updates/s x{thr[len(thr) // 2]:.3f} "
        f"[{', '.join(f'{x:.3f}' for x in thr)}] (goal >= 1); CPU per accepted update "
        f"(relay + PostgreSQL) x{cpu[len(cpu) // 2]:.3f} [{', '.join(f'{x:.3f}' for x in cpu)}] "
        "(goal <= 1.5)",
        flush=True,
    )


async def bench(args) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        servers = [("ours", args.synchronous if args.synchronous != "both" else "normal")]
        if args.synchronous == "both":
            servers.append(("ours-full", "full"))
        if args.store != "sqlite":  # the same relay on PostgreSQL (labels ours-pg…)
            pg_servers = [(lb.replace("ours", "ours-pg"), sync) for lb, sync in servers]
            servers = pg_servers if args.store == "postgres" else servers + pg_servers
            logs = {"log_autovacuum_min_duration": "0", "log_checkpoints": "on"}
            if args.pg_stats:
                logs.update(
                    shared_preload_libraries="'pg_stat_statements'",
                    **{"pg_stat_statements.track": "all"},
                )
            pg = _test_utilities("pg").PgCluster(fsync=True, settings=logs).start()
            atexit.register(pg.stop)
            if args.trace:  # its log (checkpoints, lock waits) next to the trace; before stop
                atexit.register(shutil.copy, pg.log, os.path.join(args.trace, "postgres.log"))
            db = psutil.Process(int((pg.data / "postmaster.pid").read_text().split()[0]))
        if not args.skip_pycrdt:
            servers.append(("pycrdt", None))
        for label, sync in servers:
            kind = "pycrdt" if label == "pycrdt" else "ours"
            on_pg = label.startswith("ours-pg")
            store = db_url = pg.url(pg.create_database("bench")) if on_pg else ""
            if on_pg and args.pg_stats:
                await _pg_stats_on(db_url)
            if on_pg and args.doorbell:
                store += ("&" if "?" in store else "?") + f"doorbell={args.doorbell}"
            n_proc = args.processes if on_pg else 1
            if n_proc > 1:
                label += f"x{n_proc}"
            popens, urls = [], []
            for _ in range(n_proc):
                proc, url = start_ours(tmp, sync, store) if kind == "ours" else start_pycrdt()
                popens.append(proc)
                urls.append(url)
            ps = psutil.Process(proc.pid)
            pss = [psutil.Process(x.pid) for x in popens]
            sampler = None
            if TRACE is not None and on_pg:
                sampler = asyncio.ensure_future(sample_waits(db_url, label))
            try:
                # memory first, on a fresh process (after a workload, freed heap is reused)
                if args.idle_docs and not label.endswith("-full"):
                    results[(label, "M")] = await idle_memory(kind, url, ps, args.idle_docs)
                    kb = results[(label, "M")]["bytes_per_idle_doc"] / 1024
                    print(f"  {label:9s} M: {kb:.1f} KB per open idle document", flush=True)
                for name in args.workloads:
                    if name == "D":
                        r = await many_documents(
                            kind,
                            urls,
                            pss,
                            docs=args.docs,
                            period=2.0,
                            duration=args.duration,
                            payload=args.payload,
                            db=db if on_pg else None,
                        )
                        results[(label, "D")] = r
                        print(f"  {label:10s} D: " + _fmt_docs(r), flush=True)
                        continue
                    if name == "R":
                        if n_proc < 2:
                            continue
                        r = await recovery(urls, popens, docs=args.recovery_docs)
                        results[(label, "R")] = r
                        print(f"  {label:10s} R: " + _fmt_recovery(r), flush=True)
                        continue  # one process is gone: R comes last
                    w = WORKLOADS[name]
                    # --members N: our relay runs the workload without a log and with one;
                    # --heads: also with heads in every update (in the document with the log
                    # if --members); in alternating order (the second run in a process tends
                    # to be slower)
                    variants = [(0, False)]
                    if args.members and kind == "ours":
                        variants.append((args.members, False))
                    if args.heads and kind == "ours":
                        variants.append((args.members, True))
                    by_variant: dict[tuple, list] = {v: [] for v in variants}
                    for rep in range(args.repeat):
                        for members, heads in variants if rep % 2 == 0 else variants[::-1]:
                            by_variant[(members, heads)].append(
                                await run_workload(
                                    kind,
                                    urls if n_proc > 1 else url,
                                    duration=args.duration,
                                    payload=args.payload,
                                    proc=pss if n_proc > 1 else ps,
                                    db=db if on_pg else None,
                                    members=members,
                                    heads=heads,
                                    generators=args.generators if name == "B" else 1,
                                    client=args.client,
                                    **w,
                                )
                            )

                    def vlabel(members, heads, label=label):
                        return (
                            label
                            + (f"+m{members}" if members else "")
                            + ("+heads" if heads else "")
                        )

                    for (members, heads), runs in by_variant.items():
                        key = (vlabel(members, heads), name)
                        runs.sort(key=lambda r: r["accepted_per_s"])
                        results[key] = runs[len(runs) // 2]  # median by throughput
                        results[(key[0], name + "-runs")] = runs
                        print(f"  {key[0]:9s} {name}: " + _fmt(results[key]), flush=True)
                        if members or heads:
                            base_key = vlabel(members if heads else 0, False)
                            ratio = (
                                results[key]["accepted_per_s"]
                                / results[(base_key, name)]["accepted_per_s"]
                            )
                            base = results[(base_key, name + "-runs")]
                            what = (
                                f"heads in every update (vs {base_key})"
                                if heads
                                else f"a membership log ({members} members)"
                            )
                            print(
                                f"  {key[0]:9s} {name}: {ratio:.1%} of the throughput without "
                                f"{what}; medians of {len(runs)} runs in alternating order; "
                                f"relay CPU per accepted update {_cpu_ms(runs):.3f} vs "
                                f"{_cpu_ms(base):.3f} ms; bytes per update "
                                f"{runs[0].get('update_bytes', 0):.0f} vs "
                                f"{base[0].get('update_bytes', 0):.0f}",
                                flush=True,
                            )
                    if len(runs) > 1:
                        print(
                            f"  {'':9s} {name}  every run: "
                            + "; ".join(
                                f"{r['accepted_per_s']:.0f}/s p50 {r['p50_ms']:.1f} "
                                f"p99 {r['p99_ms']:.1f} ms"
                                for r in runs
                            )
                            + f"; load average {os.getloadavg()[0]:.2f}",
                            flush=True,
                        )
            finally:
                if sampler is not None:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                for x in popens:
                    x.terminate()
                    x.wait(20)
    return results


async def sample_waits(url: str, label: str, interval: float = 0.01) -> None:
    """--trace: what the relay's database connections are doing, every ``interval`` s
    (pg_stat_activity: active with no wait, or the wait event), into TRACE."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        while True:
            rows = await conn.fetch(
                "SELECT application_name, state, wait_event_type, wait_event, "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 30) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            t = time.perf_counter()
            for app, state, wtype, wevent, query in rows:
                if state in ("active", "idle in transaction"):
                    what = f"{state}:{wtype}:{wevent}" if wtype else state
                    what += f" [{query}]"
                    assert TRACE is not None
                    TRACE.append((t, "pg", label, app or "pool", what, -1))
            await asyncio.sleep(interval)
    finally:
        await conn.close()


def _cpu_shares(relay_s, db_s, gen_s, machine0, machine1, elapsed, accepted, deliveries) -> dict:
    """Where the machine's CPU went in the measured window (seconds of CPU per second, summed
    over cores): the relay processes, the database server, the benchmark's own generator
    process(es), everything else on the machine (``other``: other users' work), and idle; and
    the relay's CPU per accepted update and per delivered frame. With every core busy, the
    latencies include waiting for a core, whoever used it."""

    def busy(t):
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    cores = psutil.cpu_count() or 1
    machine = busy(machine1) - busy(machine0)
    total = sum(machine1) - sum(machine0)
    return {
        "cores": cores,
        "machine_busy_pct": machine / elapsed * 100,
        "machine_idle_pct": (total - machine) / elapsed * 100,
        "other_cpu_pct": max(0.0, machine - relay_s - db_s - gen_s) / elapsed * 100,
        "relay_us_per_accepted": relay_s / accepted * 1e6 if accepted else float("nan"),
        "relay_us_per_delivery": relay_s / deliveries * 1e6 if deliveries else float("nan"),
        "db_us_per_accepted": db_s / accepted * 1e6 if accepted and db_s else float("nan"),
    }


def _fmt_shares(r: dict) -> str:
    """The CPU line printed under each A/B result."""
    if "machine_busy_pct" not in r:
        return ""
    return (
        f"\n  {'':9s}    CPU of the machine ({r['cores']} cores = {r['cores'] * 100}%): server "
        f"{r['relay_cpu_pct']:.0f}%, "
        + (f"PostgreSQL {r['db_cpu_pct']:.0f}%, " if r.get("db_cpu_pct") else "")
        + f"benchmark generators "
        f"{r['generator_cpu_pct']:.0f}% ({r.get('client', '?')} client), other processes "
        f"{r['other_cpu_pct']:.0f}%, idle {r['machine_idle_pct']:.0f}%; server CPU "
        f"{r['relay_us_per_accepted']:.0f} µs per accepted update, "
        f"{r['relay_us_per_delivery']:.1f} µs per delivered frame"
        + (
            f"; PostgreSQL {r['db_us_per_accepted']:.0f} µs per accepted update"
            if r["db_us_per_accepted"] == r["db_us_per_accepted"]
            else ""
        )
    )


def _cpu_ms(runs: list[dict]) -> float:
    """Median relay CPU milliseconds per accepted update (less sensitive to a loaded machine
    than the throughput)."""
    per = sorted(r["relay_cpu_pct"] * 10 / r["accepted_per_s"] for r in runs)
    return per[len(per) // 2]


def _fmt_docs(r: dict) -> str:
    return (
        f"{r['docs']} documents x 2 clients, {r['accepted_per_s']:.0f} accepted/s (offered "
        f"{r['offered_per_s']:.0f}/s), p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"relay CPU {r['relay_cpu_pct']:.0f}%, RSS {r['relay_rss_mb']:.0f} MB, "
        f"{r['kb_per_open_doc']:.1f} KB per open document (opened in {r['open_s']:.1f} s)"
        + (f", PostgreSQL CPU {r['db_cpu_pct']:.0f}%" if r.get("db_cpu_pct") else "")
    )


def _fmt_recovery(r: dict) -> str:
    return (
        f"SIGKILL of 1 of {r['processes']} processes ({r['docs']} documents x 2 clients): "
        f"{r['resynced_clients']}/{r['affected_clients']} clients synced again on another "
        f"process, p50 {r['resync_p50_ms']:.0f} ms, p99 {r['resync_p99_ms']:.0f} ms, max "
        f"{r['resync_max_ms']:.0f} ms after the kill; {r['converged_docs']}/{r['docs']} "
        "documents converged"
    )


def _fmt(r: dict) -> str:
    return (
        f"{r['accepted_per_s']:7.0f} accepted/s (offered {r['offered_per_s']:.0f}/s), "
        f"p50 {r['p50_ms']:7.1f} ms, p99 {r['p99_ms']:7.1f} ms, relay CPU "
        f"{r['relay_cpu_pct']:3.0f}%, RSS {r['relay_rss_mb']:.0f} MB "
        f"(generator CPU {r['generator_cpu_pct']:.0f}%"
        + (f" in {r['generators']} processes" if r.get("generators", 1) > 1 else "")
        + ")"
        + (f", PostgreSQL CPU {r['db_cpu_pct']:.0f}%" if r.get("db_cpu_pct") else "")
        + (
            f"; {r['processes']} processes, p99 across processes {r['cross_p99_ms']:.1f} ms"
            if r.get("processes", 1) > 1
            else ""
        )
        + _fmt_shares(r)
    )


# ----------------------------------------------------------------------------- large document
def _test_utilities(module: str = "util"):
    """The relay test suite's helpers (relay processes, peak RSS, documents written straight
    into a database): the repository root goes last on the path, so that a relay given by
    PYTHONPATH (e.g. an older checkout, for a before/after run) is the one measured."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.append(root)
    import importlib

    return importlib.import_module(f"tests.relay.{module}")


async def read_document(relay, doc: str, query: str = "") -> tuple[float, float, int]:
    """Open ``doc``: seconds to the whole document frame, relay peak RSS growth (MiB), length."""
    util = _test_utilities()
    pid, base, headers = relay
    util.reset_peak_rss(pid)
    rss0 = util.rss_bytes(pid)
    t = time.perf_counter()
    ws = await connect(
        f"{base}/{doc}?sessionKey=bench{query}",
        max_size=None,
        compression=None,
        additional_headers=headers,
        open_timeout=60,
    )
    frame = await asyncio.wait_for(ws.recv(), 600)
    elapsed = time.perf_counter() - t
    await ws.close()
    assert frame.startswith('{"type":"document"'), frame[:100]
    return elapsed, (util.peak_rss_bytes(pid) - rss0) / 2**20, len(frame)


#: the send-buffer limit for workload L: large enough for a relay that sends the whole document
#: frame into its socket buffer at once (before issue 9, a frame over the limit dropped the
#: connection); the relay since then streams it and does not count it against the limit
SEND_BUFFER = "max-send-buffer-bytes=4294967296"


async def large_document(args) -> dict:
    """Workload L: serve a large document (a delta reconnect first, on a fresh process, then a
    complete read); the time to the whole ``document`` frame and the relay's peak RSS growth."""
    from urllib.parse import quote

    util = _test_utilities()
    results: dict = {}
    transports = ["standalone", "jupyter"] if args.transport == "both" else [args.transport]
    for transport in transports:
        with tempfile.TemporaryDirectory(prefix="relay-bench-large-") as tmp:
            db = os.path.join(tmp, "relay.sqlite")
            t0 = time.perf_counter()
            # updates of 3/4 MiB of content: ≈ 1 MiB of stored message each
            author, snap, size = await util.write_document(db, args.large_doc, 3 * 2**20 // 4)
            n = args.large_doc
            print(
                f"  L {transport}: document of {size / 2**20:.0f} MiB ({n} updates) built in "
                f"{time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            if transport == "standalone":
                server = util.RelayProcess(
                    db, "--synchronous=normal", "--log-level=warning", f"--{SEND_BUFFER}"
                )
                server.start()
                relay = (server.proc.pid, server.url, {})
            else:
                server = util.JupyterProcess(
                    tmp,
                    "--SecsyncRelayExtension.synchronous=normal",
                    f"--SecsyncRelayExtension.{SEND_BUFFER.replace('-', '_')}",
                )
                server.start()
                relay = (server.proc.pid, server.base, server.headers)
            try:
                # first-use costs of the process first (imports, caches), on another document
                await read_document(relay, "warmup" + os.urandom(4).hex())
                sid = snap.public_data.snapshot_id
                clocks = quote(json.dumps({author.pub: n - 3}))
                d_t, d_mib, _ = await read_document(
                    relay,
                    author.doc_id,
                    f"&mode=delta&knownSnapshotId={sid}&knownSnapshotUpdateClocks={clocks}",
                )
                c_t, c_mib, c_len = await read_document(relay, author.doc_id)
            finally:
                server.stop()
            r = {
                "document_mib": size / 2**20,
                "delta_ms": d_t * 1000,
                "delta_peak_rss_growth_mib": d_mib,
                "complete_s": c_t,
                "complete_peak_rss_growth_mib": c_mib,
                "complete_frame_mib": c_len / 2**20,
            }
            results[(transport, "L")] = r
            print(
                f"  L {transport}: delta reconnect (2 updates missed) {r['delta_ms']:.0f} ms, "
                f"relay peak RSS +{d_mib:.0f} MiB; complete read {c_t:.2f} s, relay peak RSS "
                f"+{c_mib:.0f} MiB (load average {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    return results


def print_store_ratios(results: dict, workloads: str) -> None:
    """PostgreSQL relay / SQLite relay (same synchronous mode), CPU per accepted update."""
    print("\nPostgreSQL / SQLite, CPU per accepted update (relay; relay + PostgreSQL):")
    for label, name in sorted(k for k in results if "-pg" in k[0] and k[1] in workloads):
        base = re.sub(r"x\d+$", "", label.replace("-pg", ""))
        if name not in "AB" or (base, name) not in results:
            continue
        p, q = results[(label, name)], results[(base, name)]
        relay = (p["relay_cpu_pct"] / p["accepted_per_s"]) / (
            q["relay_cpu_pct"] / q["accepted_per_s"]
        )
        total = ((p["relay_cpu_pct"] + p["db_cpu_pct"]) / p["accepted_per_s"]) / (
            q["relay_cpu_pct"] / q["accepted_per_s"]
        )
        print(f"  {label:12s} {name}: x{relay:.2f}; x{total:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--serve-pycrdt", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--repeat", type=int, default=1, help="runs per workload (median printed)")
    p.add_argument("--payload", type=int, default=100, help="characters of content per update")
    p.add_argument("--workloads", default="AB", help="subset of ABDR (see above)")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="the PostgreSQL relay as this many processes on one database (default: 1)",
    )
    p.add_argument(
        "--members",
        type=int,
        default=0,
        help="also run our relay's A/B on a document with a membership log of N members "
        "(issue 11; reader proofs, logHead checks) and print the throughput ratio",
    )
    p.add_argument(
        "--heads",
        action="store_true",
        help="also run our relay's A/B with causal heads in every update (issue 13; the "
        "document with the --members log if given) and print the throughput ratio",
    )
    p.add_argument("--docs", type=int, default=1000, help="documents of workload D")
    p.add_argument(
        "--recovery-docs", type=int, default=200, help="documents of workload R (2 clients each)"
    )
    p.add_argument("--idle-docs", type=int, default=300, help="documents for the memory figure")
    p.add_argument(
        "--synchronous",
        default="both",
        choices=["both", "normal", "full"],
        help="SQLite synchronous mode of our relay; both = normal and full (the default)",
    )
    p.add_argument(
        "--skip-pycrdt",
        action="store_true",
        help="only our relay (e.g. to compare --synchronous both); no ratios",
    )
    p.add_argument(
        "--store",
        default="sqlite",
        choices=["sqlite", "postgres", "both"],
        help="our relay's store; postgres: a throw-away PostgreSQL cluster (tests/relay/pg.py, "
        "fsync on) started by the benchmark (default: %(default)s)",
    )
    p.add_argument(
        "--generators",
        type=int,
        default=1,
        help="drive workload B from this many generator processes (connection i by process "
        "i mod G; latencies on the machine's one monotonic clock); default: %(default)s, "
        "in this process",
    )
    p.add_argument(
        "--client",
        default="lean",
        choices=["lean", "websockets"],
        help="with --generators: the generators' WebSocket client; lean (a minimal client in "
        "this file, far less CPU per received frame) or websockets (the library, as before "
        "session 6); default: %(default)s",
    )
    p.add_argument(
        "--paired",
        action="store_true",
        help="issue 14's A goals: one SQLite relay process and --processes PostgreSQL relay "
        "processes started once, A runs taking turns (--repeat pairs); prints each pair's "
        "PostgreSQL/SQLite ratios of accepted updates/s and CPU per accepted update, and their "
        "medians",
    )
    p.add_argument(
        "--pg-stats",
        action="store_true",
        help="PostgreSQL: print the database server's CPU per accepted update by connection "
        "role and its statements per accepted update (pg_stat_statements, nested statements "
        "too: adds some CPU of its own)",
    )
    p.add_argument(
        "--doorbell",
        choices=["trigger", "writer"],
        help="the PostgreSQL relay's doorbell option (store URL ?doorbell=; docs/relay.md "
        "'Fan-out across relay processes'); default: the store's",
    )
    p.add_argument("--quick", action="store_true", help="2 s runs, 50 idle documents")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument(
        "--trace",
        metavar="DIR",
        help="record each update's stages in our relay processes ($SECSYNC_RELAY_TRACE, "
        "secsync_jupyter/relay/trace.py) and its send / delivery times here, into DIR; "
        "benchmarks/trace_report.py explains the slowest deliveries",
    )
    p.add_argument(
        "--large-doc",
        type=int,
        metavar="MIB",
        help="only workload L: a document of this many MiB (see above)",
    )
    p.add_argument(
        "--transport",
        default="standalone",
        choices=["standalone", "jupyter", "both"],
        help="for --large-doc: which relay (default: %(default)s)",
    )
    args = p.parse_args()
    if args.serve_pycrdt:
        serve_pycrdt()
        return
    if args.large_doc:
        print(f"relay benchmark L: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        results = asyncio.run(large_document(args))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({f"{k[0]}.{k[1]}": v for k, v in results.items()}, f, indent=1)
        return
    if args.quick:
        args.duration, args.idle_docs = 2.0, 50
    if args.trace:
        global TRACE
        os.makedirs(args.trace, exist_ok=True)
        os.environ["SECSYNC_RELAY_TRACE"] = os.path.abspath(args.trace)  # our relay processes
        TRACE = []
    print(
        f"relay benchmark: {os.cpu_count()} cores, {args.duration:.0f} s per run, "
        f"payload {args.payload} chars, "
        + ("paired SQLite / PostgreSQL" if args.paired else f"store {args.store}")
        + f", synchronous={args.synchronous}, "
        f"processes {args.processes}, B from {args.generators} generator process(es)"
        + (f" ({args.client} client), " if args.generators > 1 else ", ")
        + f"doorbell {args.doorbell or 'default'}, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        flush=True,
    )
    if args.paired:
        asyncio.run(paired_stores(args))
        return
    results = asyncio.run(bench(args))
    if TRACE:
        with open(os.path.join(args.trace, f"generator-{os.getpid()}.tsv"), "w") as f:
            for t, *rest in TRACE:
                f.write(f"{t:.6f}\t" + "\t".join(str(x) for x in rest) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k[0]}.{k[1]}": v for k, v in results.items()}, f, indent=1)
    if args.store == "both":
        print_store_ratios(results, args.workloads)
    if args.skip_pycrdt:
        return
    print("\nratios (ours / pycrdt-websocket plaintext room):")
    labels = sorted({k[0] for k in results if k[0] != "pycrdt" and not k[1].endswith("-runs")})
    for label, name in [(lb, n) for lb in labels for n in args.workloads]:
        if name not in "AB" or (label, name) not in results:
            if name == "D" and (label, "D") in results and ("pycrdt", "D") in results:
                o, y = results[(label, "D")], results[("pycrdt", "D")]
                print(
                    f"  {label:9s} D: p99 x{o['p99_ms'] / y['p99_ms']:.2f}, memory per open "
                    f"document x{o['kb_per_open_doc'] / y['kb_per_open_doc']:.2f}"
                )
            continue
        o, y = results[(label, name)], results[("pycrdt", name)]
        throughput = o["accepted_per_s"] / max(y["accepted_per_s"], 1e-9)
        cpu_per_update = (o["relay_cpu_pct"] / o["accepted_per_s"]) / (
            y["relay_cpu_pct"] / y["accepted_per_s"]
        )
        print(
            f"  {label:9s} {name}: throughput x{throughput:.2f}, "
            f"p50 x{o['p50_ms'] / y['p50_ms']:.3f}, p99 x{o['p99_ms'] / y['p99_ms']:.3f}, "
            f"relay CPU per accepted update x{cpu_per_update:.2f}"
        )
    if args.idle_docs:
        for label in (lb for lb in labels if (lb, "M") in results):
            o, y = results[(label, "M")], results[("pycrdt", "M")]
            ratio = o["bytes_per_idle_doc"] / y["bytes_per_idle_doc"]
            print(f"  {label:9s} M: memory per open idle document x{ratio:.2f}")


if __name__ == "__main__":
    main()
