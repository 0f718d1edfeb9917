"""Where slow SQLite commits wait, and how the checkpoint schedule changes them (issue 15).

Runs the relay's SQLiteStore in this process on a real file (``--dir``, default /tmp, the
disk the relay uses in the benchmarks) and drives it like typing: series of paced keys (one
update every 40 ms) and bursts (one every ``--burst-gap`` ms), separated by pauses of
0.1-1.0 s (one in five: 1-4 s), every key its own ``save_update`` of ``--size`` bytes, as the
relay gets them.
Two checkpoint schedules, alternated round by round on fresh databases:

  interval  the schedule before: a PASSIVE checkpoint about every 0.5 s while writes come
            (checkpoint_max_age 0.5 s, no idle rule), the writer's own at 20,000 pages
  idle      the store's defaults: after CHECKPOINT_IDLE (2 s) without a write, or when
            CHECKPOINT_WAL_PAGES wait in the WAL; the writer's own at WRITER_AUTOCHECKPOINT_PAGES;
            after a complete checkpoint the checkpoint thread restarts the WAL (_restart_wal)
  idle-only the same without that restart (the writer's next commit restarts the WAL)

Per write transaction it records the time around it (BEGIN .. COMMIT), whether it restarted
the WAL (the first commit after a complete checkpoint writes and syncs a new WAL header);
per checkpoint its time. A sampler thread reads the kernel state of the writer and checkpoint
threads every millisecond (/proc/self/task/TID/stat, and /proc/self/task/TID/stack while in
uninterruptible sleep, D; needs root). For each slow transaction it prints whether a
checkpoint overlapped it, whether it restarted the WAL, and the kernel stacks the writer was
blocked in. ``--sustained N`` adds a run of N updates as fast as the store takes them (64 in
flight) per schedule, and prints the WAL's largest size. ``--disk-noise MB`` runs a process
that writes MB and fsyncs it every 0.5 s beside the store (a busy shared disk).

    .venv/bin/python benchmarks/commit_stall_probe.py [--rounds 4] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from secsync_jupyter.relay import sqlite_store
from secsync_jupyter.relay.sqlite_store import SQLiteStore

SNAP = {
    "snapshot_id": "s1",
    "parent_snapshot_id": "",
    "parent_clocks": {},
    "pub_key": "pk",
    "ciphertext_hash": "h",
    "parent_snapshot_proof": "p",
    "message": '{"snapshot":"s1"}',
}

# the kernel functions that say what a blocked thread waits for (innermost first)
_BORING = (
    "__schedule",
    "schedule",
    "io_schedule",
    "schedule_timeout",
    "io_schedule_timeout",
    "bit_wait_io",
    "__wait_on_bit",
    "out_of_line_wait_on_bit",
    "__wait_on_bit_lock",
    "wait_woken",
    "do_syscall_64",
    "entry_SYSCALL_64_after_hwframe",
)


class Probe:
    def __init__(self, store: SQLiteStore):
        self.store = store
        self.tids: dict[str, int] = {}
        self.txns: list[tuple[float, float, int, bool]] = []  # t0, t1, writes, restarted
        self.ckpts: list[tuple[float, float, int]] = []  # t0, t1, frames pending before
        self.samples: list[tuple[float, str, str]] = []  # t, thread, stack summary (D only)
        self.wal_max = 0
        self._stop = threading.Event()
        self._wrap()

    def _wrap(self) -> None:
        store = self.store
        writer_main, checkpoint_main = store._writer_main, store._checkpoint_main
        run_batch, checkpoint = store._run_batch, store.checkpoint

        def named(name, fn):
            def main():
                self.tids[name] = threading.get_native_id()
                fn()

            return main

        def timed_batch(conn, ops):
            before = self.wal_salt()
            t0 = time.monotonic()
            out = run_batch(conn, ops)
            t1 = time.monotonic()
            after = self.wal_salt()  # a new salt: this commit started the WAL again
            self.txns.append((t0, t1, len(ops), None not in (before, after) and before != after))
            return out

        def timed_checkpoint(conn):
            pending = store.wal_frames_pending()
            t0 = time.monotonic()
            checkpoint(conn)
            self.ckpts.append((t0, time.monotonic(), pending))

        store._writer_main = named("writer", writer_main)
        store._checkpoint_main = named("checkpoint", checkpoint_main)
        store._run_batch = timed_batch
        store.checkpoint = timed_checkpoint

    def wal_salt(self) -> bytes | None:
        """The salt of the WAL-index header (changes when the WAL starts again); notes the
        WAL file's size."""
        try:
            with open(self.store.path + "-shm", "rb") as f:
                header = f.read(40)
            self.wal_max = max(self.wal_max, os.path.getsize(self.store.path + "-wal"))
        except OSError:
            return None
        return header[32:40] if len(header) == 40 else None

    def start_sampler(self) -> None:
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, tid in list(self.tids.items()):
                try:
                    with open(f"/proc/self/task/{tid}/stat") as f:
                        state = f.read().rpartition(")")[2].split()[0]
                    if state != "D":
                        continue
                    with open(f"/proc/self/task/{tid}/stack") as f:
                        frames = [line.split()[-1].split("+")[0] for line in f]
                except (OSError, IndexError):
                    continue
                useful = [fn for fn in frames if fn not in _BORING]
                self.samples.append((time.monotonic(), name, " < ".join(useful[:5])))
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop.set()


async def typing(store: SQLiteStore, seconds: float, size: int, burst_gap: float, rng) -> int:
    """Paced series and bursts with pauses, every key its own update; the keys typed."""
    assert (await store.save_snapshot("d", **SNAP)).ok
    clock, pending = 0, []
    end = time.monotonic() + seconds
    message = "x" * size
    while time.monotonic() < end:
        keys, gap = (25, 0.04) if rng.random() < 0.5 else (16, burst_gap)
        for _ in range(keys):
            pending.append(
                store.save_update("d", snapshot_id="s1", pub_key="pk", clock=clock, message=message)
            )
            clock += 1
            await asyncio.sleep(gap)
        # a pause: mostly short (between words), one in five a break of 1-4 s
        await asyncio.sleep(rng.uniform(0.1, 1.0) if rng.random() < 0.8 else rng.uniform(1, 4))
    results = await asyncio.gather(*pending)
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    return clock


async def sustained(store: SQLiteStore, n: int, size: int, probe: Probe) -> float:
    """``n`` updates from 64 authors as fast as the store takes them; updates/s."""
    assert (await store.save_snapshot("d", **SNAP)).ok
    message = "y" * size
    t0 = time.monotonic()

    async def author(a: int) -> None:
        for clock in range(n // 64):
            r = await store.save_update(
                "d", snapshot_id="s1", pub_key=f"a{a}", clock=clock, message=message
            )
            assert r.ok, r
            if clock % 16 == 0:
                probe.wal_salt()

    await asyncio.gather(*(author(a) for a in range(64)))
    return (n // 64) * 64 / (time.monotonic() - t0)


def configure(store: SQLiteStore, policy: str) -> None:
    if policy == "interval":
        store.checkpoint_idle = float("inf")
        store.checkpoint_max_age = 0.5
        store.checkpoint_wal_pages = 10**9
        store.writer_autocheckpoint_pages = 20_000
        store.restart_wal = False
    elif policy == "idle-only":
        store.restart_wal = False
    elif policy != "idle":
        raise SystemExit(f"unknown policy {policy}")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def report(policy: str, probes: list[Probe], slow: float, show: int) -> None:
    txns = [t for p in probes for t in p.txns]
    ckpts = [c for p in probes for c in p.ckpts]
    durations = [(t1 - t0) * 1000 for t0, t1, _n, _r in txns]
    cdur = [(t1 - t0) * 1000 for t0, t1, _n in ckpts]
    print(f"\n== {policy}: {len(txns)} write transactions, {len(ckpts)} checkpoints")
    print(
        f"   transaction ms p50 {pct(durations, 0.5):.1f} p90 {pct(durations, 0.9):.1f} "
        f"p99 {pct(durations, 0.99):.1f} max {max(durations, default=0):.1f}; "
        f"> 50 ms: {sum(d > 50 for d in durations)}, > 100 ms: {sum(d > 100 for d in durations)}"
    )
    if cdur:
        print(
            f"   checkpoint ms p50 {pct(cdur, 0.5):.1f} p90 {pct(cdur, 0.9):.1f} "
            f"max {max(cdur):.1f}; frames per checkpoint p50 "
            f"{pct([float(c[2]) for c in ckpts], 0.5):.0f}"
        )
    print(
        f"   WAL restarts in a write transaction: {sum(r for *_x, r in txns)}, by the "
        f"checkpoint thread: {sum(p.store.wal_restarts for p in probes)}"
    )
    kinds: Counter = Counter()
    stacks: Counter = Counter()
    shown = 0
    for p in probes:
        for t0, t1, n, restarted in p.txns:
            if (t1 - t0) * 1000 <= slow:
                continue
            overlap = [c for c in p.ckpts if c[0] < t1 and c[1] > t0]
            kind = ("checkpoint" if overlap else "no checkpoint") + (
                ", WAL restart" if restarted else ""
            )
            kinds[kind] += 1
            mine = Counter(s for t, who, s in p.samples if who == "writer" and t0 <= t <= t1)
            stacks.update(mine)
            if shown < show:
                shown += 1
                ck = ", ".join(
                    f"{(c[1] - c[0]) * 1000:.0f} ms from {(c[0] - t0) * 1000:+.0f}" for c in overlap
                )
                print(
                    f"   slow: {(t1 - t0) * 1000:.0f} ms, {n} writes, {kind}"
                    + (f" [checkpoint {ck}]" if ck else "")
                )
                for s, k in mine.most_common(3):
                    print(f"      writer D x{k} ms: {s}")
    print(f"   transactions > {slow:.0f} ms: {dict(kinds)}")
    for s, k in stacks.most_common(6):
        print(f"      writer blocked (ms sampled, all slow ones): {k:5d}  {s}")
    ck_stacks = Counter(s for p in probes for t, who, s in p.samples if who == "checkpoint")
    for s, k in ck_stacks.most_common(4):
        print(f"      checkpoint thread blocked (ms sampled): {k:5d}  {s}")


def noise(directory: str, mb: int) -> subprocess.Popen:
    code = (
        "import os,sys,time\n"
        f"p=os.path.join({directory!r},'noise.bin'); b=os.urandom(1<<20)\n"
        "while True:\n"
        "  f=open(p,'wb')\n"
        f"  [f.write(b) for _ in range({mb})]\n"
        "  f.flush(); os.fsync(f.fileno()); f.close()\n"
        "  time.sleep(0.5)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


async def main_async(args) -> None:
    policies = args.policies.split(",")
    probes: dict[str, list[Probe]] = {p: [] for p in policies}
    rng = random.Random(args.seed)
    base = tempfile.mkdtemp(prefix="commit-stall-", dir=args.dir)
    noisy = noise(base, args.disk_noise) if args.disk_noise else None
    loads, typed = [os.getloadavg()[0]], Counter()
    try:
        for r in range(args.rounds):
            order = policies if r % 2 == 0 else policies[::-1]
            for policy in order:
                store = SQLiteStore(
                    os.path.join(base, f"{policy}-{r}.sqlite"), synchronous=args.synchronous
                )
                configure(store, policy)
                probe = Probe(store)
                await store.open()
                probe.start_sampler()
                try:
                    typed[policy] += await typing(
                        store, args.seconds, args.size, args.burst_gap / 1000, rng
                    )
                finally:
                    probe.stop()
                    await store.close()
                probes[policy].append(probe)
                loads.append(os.getloadavg()[0])
        print(
            f"SQLite {sqlite_store.sqlite3.sqlite_version}, synchronous={args.synchronous}, "
            f"{args.rounds} rounds x {args.seconds:.0f} s of typing per schedule, "
            f"keys typed {dict(typed)}"
        )
        print(
            f"load average (1 min) during the run: {min(loads):.2f}-{max(loads):.2f}"
            + (f"; disk noise {args.disk_noise} MB per 0.5 s" if args.disk_noise else "")
        )
        for policy in policies:
            report(policy, probes[policy], args.slow, args.show)
        if args.sustained:
            print()
            for policy in policies:
                store = SQLiteStore(
                    os.path.join(base, f"{policy}-sustained.sqlite"), synchronous=args.synchronous
                )
                configure(store, policy)
                probe = Probe(store)
                await store.open()
                try:
                    rate = await sustained(store, args.sustained, args.size, probe)
                finally:
                    await store.close()
                durations = [(t1 - t0) * 1000 for t0, t1, _n, _r in probe.txns]
                print(
                    f"sustained {policy}: {rate:,.0f} updates/s, {len(probe.txns)} transactions "
                    f"(p99 {pct(durations, 0.99):.0f} ms, max {max(durations):.0f} ms), "
                    f"{len(probe.ckpts)} checkpoints, WAL at most {probe.wal_max / 2**20:.1f} MiB, "
                    f"load {os.getloadavg()[0]:.2f}"
                )
    finally:
        if noisy is not None:
            noisy.terminate()
            noisy.wait()
        for name in os.listdir(base):
            os.unlink(os.path.join(base, name))
        os.rmdir(base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30, help="typing per round and schedule")
    ap.add_argument("--policies", default="interval,idle")
    ap.add_argument("--synchronous", default="full")
    ap.add_argument("--size", type=int, default=700, help="bytes per update message")
    ap.add_argument("--burst-gap", type=float, default=5, help="ms between keys of a burst")
    ap.add_argument("--slow", type=float, default=50, help="ms: transactions shown as slow")
    ap.add_argument("--show", type=int, default=8, help="slow transactions printed in full")
    ap.add_argument("--sustained", type=int, default=0, help="updates of a sustained run")
    ap.add_argument("--disk-noise", type=int, default=0, help="MB written+fsynced per 0.5 s")
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--seed", type=int, default=15)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
