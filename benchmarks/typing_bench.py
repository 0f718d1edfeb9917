"""Typing latency through our relay, and where the time goes (issue 15).

Two Python clients (A types, B reads) on one document through the standalone relay (real
SQLite file, acknowledges after commit). A types one character per "key" (each key flushed at
once, batch window 0, as the labextension's microtask flush); per key it records:

  send   key -> the update carrying it is handed to the socket (A: merge, encrypt, sign)
  ack    key -> A receives its update-saved (relay: verify, commit, answer)
  recv   key -> B receives the update frame (relay broadcasts after the commit)
  apply  key -> the character is in B's document (B: verify, decrypt, apply)

for paced typing (one key every 40 ms) and a burst (as fast as the loop allows), with
MAX_UPDATES_IN_FLIGHT = 1 (the former rule) and 16 (now) (--in-flight), alternated round by
round so that a loaded machine hurts all alike. Medians / p90 in ms; the load average is printed.

``--checkpoints interval,idle`` runs one relay per SQLite checkpoint schedule, alternated round
by round: ``interval`` is the schedule before issue 15's change (a PASSIVE checkpoint about every
0.5 s while writes come, the writer's own at 20,000 pages, the WAL restarted by the writer's
next commit), ``idle`` the store's defaults (docs/relay.md "Checkpoints"). Each relay's write
transactions, checkpoints and WAL restarts over 100 ms (its warnings) are counted. Series are
separated by ``--pause`` seconds (default 0.6: a typist's pause, long enough for an idle
checkpoint).

    .venv/bin/python benchmarks/typing_bench.py [--rounds 4] [--paced 30] [--burst 16]
        [--in-flight 16] [--checkpoints interval,idle] [--synchronous full]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from pycrdt import Text

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from relay_bench import HOST, _read_url, start_ours

from secsync_jupyter import new_document_key, open_document
from secsync_jupyter.client import engine as engine_module
from secsync_jupyter.protocol import generate_id

STAGES = ("send", "ack", "recv", "apply")


async def one_series(url: str, keys: int, pace: float) -> dict[str, list[float]]:
    """Type ``keys`` characters in A; per key the stage times (ms after the key)."""
    doc_id, key = generate_id(), new_document_key()
    async with open_document(url, doc_id, key, batch_window=0) as a:
        ta = a.doc.get("content", type=Text)
        ta += "."
        await a.synced(30)
        async with open_document(url, doc_id, key, batch_window=0) as b:
            tb = b.doc.get("content", type=Text)
            await b.wait_for(lambda: str(tb) == ".", 30)
            t_key: list[float] = []
            seen: dict[str, dict[int, float]] = {s: {} for s in STAGES}
            # the number of keys each sent update / frame covers: the text length it ends at
            sent_len: list[tuple[int, int]] = []  # (clock, text length when sent)

            take = a.engine.take_outbox

            def take_outbox():
                frames = take()
                now = time.perf_counter()
                for f in frames:
                    if '"refSnapshotId"' in f and '"clock"' in f:
                        n = len(str(ta)) - 1
                        sent_len.append((a.engine.local_clock, n))
                        for i in range(n):
                            seen["send"].setdefault(i, now)
                return frames

            a.engine.take_outbox = take_outbox
            prev_a = a.engine.on_event

            def on_a(kind, data):
                if kind == "update-saved":
                    now = time.perf_counter()
                    for clock, n in sent_len:
                        if clock <= data["clock"]:
                            for i in range(n):
                                seen["ack"].setdefault(i, now)
                if prev_a is not None:
                    prev_a(kind, data)

            a.engine.on_event = on_a
            recv = b.engine.receive

            def receive(frame, *args, **kwargs):
                now = time.perf_counter()
                is_update = isinstance(frame, str) and frame.startswith('{"type":"update"')
                result = recv(frame, *args, **kwargs)
                if is_update:
                    for i in range(len(str(tb)) - 1):
                        seen["recv"].setdefault(i, now)
                return result

            b.engine.receive = receive

            def observed(_event):
                now = time.perf_counter()
                for i in range(len(str(tb)) - 1):
                    seen["apply"].setdefault(i, now)

            tb.observe(observed)
            for i in range(keys):
                t_key.append(time.perf_counter())
                ta += chr(97 + i % 26)
                if pace:
                    await asyncio.sleep(pace)
                else:
                    await asyncio.sleep(0)  # let the flush run, as a browser task would
            await b.wait_for(lambda: len(str(tb)) == keys + 1, 60)
            await a.synced(60)
    return {
        s: [(seen[s][i] - t_key[i]) * 1000 for i in range(keys) if i in seen[s]] for s in STAGES
    }


#: the relay process with a checkpoint schedule set on its SQLite store (see the module docs)
_RELAY_WITH_SCHEDULE = """
import sys
from secsync_jupyter.relay import sqlite_store, standalone
schedule = sys.argv.pop(1)
if schedule == "interval":
    init = sqlite_store.SQLiteStore.__init__
    def interval(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.checkpoint_idle = float("inf")
        self.checkpoint_max_age = 0.5
        self.checkpoint_wal_pages = 10**9
        self.writer_autocheckpoint_pages = 20_000
        self.restart_wal = False
    sqlite_store.SQLiteStore.__init__ = interval
elif schedule != "idle":
    raise SystemExit("unknown checkpoint schedule " + schedule)
sys.exit(standalone.main(sys.argv[1:]))
"""

SLOW = re.compile(
    r"slow (write transaction|checkpoint|WAL sync|WAL restart)[^:]*: .*?(\d+) ms( commit)?$"
)


class Relay:
    """A standalone relay on a fresh SQLite file; counts its slow-commit/checkpoint warnings."""

    def __init__(self, tmp: str, synchronous: str, schedule: str):
        db = os.path.join(tmp, f"{schedule}.sqlite")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-c", _RELAY_WITH_SCHEDULE, schedule, "--open", "--host", HOST),
                *("--port", "0", "--db", db, "--log-level", "warning"),
                *("--synchronous", synchronous),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.url = _read_url(self.proc)
        self.slow: dict[str, list[int]] = {
            k: [] for k in ("write transaction", "checkpoint", "WAL sync", "WAL restart")
        }
        threading.Thread(target=self._read_warnings, daemon=True).start()

    def _read_warnings(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            m = SLOW.search(line)
            if m:
                self.slow[m.group(1)].append(int(m.group(2)))
            elif line:
                print(f"  relay: {line}", file=sys.stderr)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _fmt(values: list[float]) -> str:
    if not values:
        return "      -      -"
    s = sorted(values)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return f"{statistics.median(s):6.1f} {p90:6.1f}"


async def main_async(args) -> None:
    tmp = tempfile.mkdtemp(prefix="typing-bench-")
    if args.checkpoints:
        relays = {c: Relay(tmp, args.synchronous, c) for c in args.checkpoints.split(",")}
    else:
        proc, url = start_ours(tmp, args.synchronous)
    try:
        results: dict[tuple[str, int, str], dict[str, list[float]]] = {}
        loads = []
        uptime = [os.popen("uptime").read().strip()]
        schedules = list(relays) if args.checkpoints else ["-"]
        for r in range(args.rounds):
            for schedule in schedules if r % 2 == 0 else schedules[::-1]:
                target = relays[schedule].url if args.checkpoints else url
                order = args.in_flight if r % 2 == 0 else args.in_flight[::-1]
                for k in order:
                    engine_module.MAX_UPDATES_IN_FLIGHT = k
                    for series, keys, pace in (
                        ("paced", args.paced, 0.04),
                        ("burst", args.burst, 0.0),
                    ):
                        loads.append(os.getloadavg()[0])
                        out = await one_series(target, keys, pace)
                        acc = results.setdefault((schedule, k, series), {s: [] for s in STAGES})
                        for s in STAGES:
                            acc[s].extend(out[s])
                        await asyncio.sleep(args.pause)
        uptime.append(os.popen("uptime").read().strip())
        print("\n".join(uptime))
        print(f"load average during the run: {min(loads):.1f}-{max(loads):.1f}")
        print(
            f"{'schedule':>9} {'in flight':>9} {'series':6} "
            + " ".join(f"{s + ' p50 p90':>13}" for s in STAGES)
        )
        for (schedule, k, series), acc in sorted(results.items()):
            print(f"{schedule:>9} {k:9} {series:6} " + " ".join(_fmt(acc[s]) for s in STAGES))
        if args.checkpoints:
            await asyncio.sleep(0.5)  # the last warnings
            for schedule, relay in relays.items():
                for what, ms in relay.slow.items():
                    print(
                        f"relay {schedule}: {len(ms)} {what}s over 100 ms"
                        + (f" (max {max(ms)} ms)" if ms else "")
                    )
    finally:
        if args.checkpoints:
            for relay in relays.values():
                relay.stop()
        else:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--paced", type=int, default=30, help="keys per paced series")
    ap.add_argument("--burst", type=int, default=16, help="keys per burst")
    ap.add_argument(
        "--in-flight",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[16],
        help="MAX_UPDATES_IN_FLIGHT values to compare, alternated (default 16; e.g. 1,16)",
    )
    ap.add_argument("--synchronous", default="full", help="the relay's SQLite synchronous")
    ap.add_argument(
        "--checkpoints",
        default="interval,idle",
        help="SQLite checkpoint schedules to compare, one relay each ('' : one default relay)",
    )
    ap.add_argument("--pause", type=float, default=0.6, help="seconds between series")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
