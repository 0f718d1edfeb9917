"""Where the slow deliveries of a traced relay benchmark spent their time.

    .venv/bin/python benchmarks/relay_bench.py --store postgres --processes 2 --workloads B \\
        --trace /tmp/tr ...
    .venv/bin/python benchmarks/trace_report.py /tmp/tr [--slowest 0.01]

Reads the relay processes' ``trace-<pid>.tsv`` (secsync_jupyter/relay/trace.py) and the load
generator's ``generator-<pid>.tsv``, joins them by update (docId, author, clock) and position,
and prints, for all deliveries and for the slowest fraction, the median / p99 / max of each
stage (ms):

  in        generator send -> accepted by the writer's relay process (network, event loop)
  queue     accepted -> its write transaction takes a pooled connection (lane queue)
  pool      waiting for a pooled connection
  stmts     the transaction's statements (including waiting for the document's lock)
  commit    COMMIT (the WAL flush)
  ack       committed -> acknowledged by the writer's process (event loop)
  notify    committed -> the notification reached the other process
  deliver   -> sent by the delivering process (own: its ack; other: notification / read)
  out       sent by the relay -> received by the generator's client (including the time a
            writer's connection held it for that writer's own acknowledgement,
            Session.deliver: counted apart, from the relay's hold/release events)

and the event loops' late wake-ups per process (every time is ``time.monotonic()``, one clock
for all processes of the machine).
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
from collections import defaultdict


def _rows(path: str):
    with open(path) as f:
        for line in f:
            t, stage, *rest = line.rstrip("\n").split("\t")
            yield float(t), stage, rest


def load(d: str):
    up: dict[tuple, dict] = defaultdict(dict)  # (doc, pub, clock) -> stage -> value
    key_at: dict[tuple, tuple] = {}  # (doc, pos) -> (doc, pub, clock)
    sends: dict[tuple, dict[int, float]] = defaultdict(dict)  # (doc, pos) -> pid -> time
    notes: dict[tuple, dict[int, float]] = defaultdict(dict)  # (doc, pos) -> pid -> time
    reads: list[tuple] = []
    late: dict[int, list[tuple[float, float]]] = defaultdict(list)
    recvs: list[tuple] = []
    pg: list[tuple] = []  # (time, application, state[:wait type:wait event])
    #: (process, doc, pos, session) -> {"hold": t, "release": t}: a delivery held for the
    #: receiver's own acknowledgement (Session.deliver)
    holds: dict[tuple, dict[str, float]] = defaultdict(dict)
    for path in glob.glob(os.path.join(d, "trace-*.tsv")):
        pid = int(os.path.basename(path)[6:-4])
        for t, stage, r in _rows(path):
            if stage == "accept":
                up[(r[0], r[1], int(r[2]))].update(accept=t, pid=pid)
            elif stage == "submit":
                up[(r[0], r[1], int(r[2]))]["submit"] = t
            elif stage == "commit":
                u = up[(r[0], r[1], int(r[2]))]
                u["batch"] = int(r[3])
                u["ta"], u["t0"], u["t1"], u["t2"] = map(float, r[4:8])
            elif stage == "ack":
                u = up[(r[0], r[1], int(r[2]))]
                u["ack"] = t
                key_at[(r[0], int(r[3]))] = (r[0], r[1], int(r[2]))
            elif stage == "notify":
                notes[(r[0], int(r[2]))].setdefault(pid, t)
            elif stage == "send":
                sends[(r[0], int(r[1]))].setdefault(pid, t)
            elif stage == "read":
                reads.append((t, pid, r[0], int(r[1]), int(r[2]), float(r[4])))
            elif stage in ("hold", "release"):
                holds[(pid, r[0], int(r[1]), r[2])][stage] = t
            elif stage == "loop-late":
                late[pid].append((t, float(r[1])))
    for path in glob.glob(os.path.join(d, "generator-*.tsv")):
        for t, stage, r in _rows(path):
            if stage == "sent":
                up[(r[0], r[1], int(r[2]))]["sent"] = t
            elif stage == "pg":
                pg.append((t, r[1], r[2]))
            else:
                recvs.append((t, (r[0], r[1], int(r[2])), int(r[3])))
    return up, key_at, sends, notes, reads, late, recvs, pg, holds


def report(d: str, slowest: float) -> None:
    up, key_at, sends, notes, reads, late, recvs, pg, holds = load(d)
    pos_of = {k: pos for (doc, pos), k in key_at.items()}
    rows = []
    for t, key, _at in recvs:
        u = up.get(key)
        if not u or "sent" not in u or "t2" not in u or "ack" not in u:
            continue
        pos = (key[0], pos_of.get(key))
        by_pid = sends.get(pos, {})
        # the delivering process: the one whose send came last before this receipt
        cands = [(ts, p) for p, ts in by_pid.items() if ts <= t]
        if not cands:
            continue
        ts, pid = max(cands)
        cross = pid != u["pid"]
        note = notes.get(pos, {}).get(pid)
        rows.append(
            {
                "total": t - u["sent"],
                "in": u["accept"] - u["sent"],
                "queue": u["ta"] - u["accept"],
                "pool": u["t0"] - u["ta"],
                "stmts": u["t1"] - u["t0"],
                "commit": u["t2"] - u["t1"],
                "ack": u["ack"] - u["t2"],
                "notify": (note - u["t2"]) if cross and note is not None else float("nan"),
                "deliver": ts - (note if cross and note is not None else u["t2"]),
                "out": t - ts,
                "cross": cross,
                "batch": u["batch"],
                "workload": "D" if key[0].startswith("many") else "A/B",
                "at": t,
            }
        )
    if not rows:
        print("no joined deliveries (were the relay processes stopped cleanly?)")
        return
    stages = [
        "in", "queue", "pool", "stmts", "commit", "ack", "notify", "deliver", "out",
    ]  # fmt: skip

    def show(title: str, sel: list[dict]) -> None:
        print(f"{title}: {len(sel)} deliveries")
        print(f"  {'stage':8s} {'median':>8s} {'p99':>8s} {'max':>8s}   (ms)")
        for s in ["total", *stages, "batch"]:
            v = sorted(r[s] for r in sel if r[s] == r[s])
            if not v:
                continue
            k = 1 if s == "batch" else 1000
            print(
                f"  {s:8s} {v[len(v) // 2] * k:8.1f} "
                f"{v[min(len(v) - 1, int(0.99 * len(v)))] * k:8.1f} {v[-1] * k:8.1f}"
            )

    rows.sort(key=lambda r: r["total"])
    groups = []
    for w in sorted({r["workload"] for r in rows}):
        mine = [r for r in rows if r["workload"] == w]
        groups += [(f"{w}, all", mine), (f"{w}, across processes", [r for r in mine if r["cross"]])]
    for label, sel in groups:
        if not sel:
            continue
        show(label, sel)
        n = max(1, int(len(sel) * slowest))
        worst = sel[-n:]
        show(f"  slowest {slowest:.0%} of {label}", worst)
        # which stage dominates each slow delivery
        dom: dict[str, int] = defaultdict(int)
        for r in worst:
            dom[max(stages, key=lambda s, r=r: r[s] if r[s] == r[s] else -1)] += 1
        print(
            "  the longest stage of each of those: " + ", ".join(f"{s} {c}" for s, c in dom.items())
        )
        t0 = min(r["at"] for r in rows)
        times = sorted({round(r["at"] - t0, 1) for r in worst})
        print(f"  when (s after the first delivery): {times[:12]}{' …' if len(times) > 12 else ''}")
    for pid, ls in sorted(late.items()):
        v = sorted(x for _, x in ls)
        print(
            f"process {pid}: event loop late > 20 ms {len(v)} times, max {v[-1]:.0f} ms, "
            f"total {sum(v):.0f} ms"
            if v
            else f"process {pid}: never late"
        )
    if pg:
        counts: dict[str, int] = defaultdict(int)
        for _t, app, what in pg:
            counts[("listen " if "fanout" in app else "") + what] += 1
        samples = len({t for t, _a, _w in pg})
        print(f"PostgreSQL connections of the relay, {samples} samples with one busy at least:")
        for what, c in sorted(counts.items(), key=lambda x: -x[1])[:12]:
            print(f"  {c:7d}  {what}")
    held = sorted(
        (h["release"] - h["hold"]) * 1000 for h in holds.values() if "hold" in h and "release" in h
    )
    if held:
        print(
            f"deliveries held for the receiver's own acknowledgement (relay trace): {len(held)} "
            f"({len(held) / max(1, len(recvs)):.1%} of the receipts), held median "
            f"{statistics.median(held):.1f} ms, p99 {held[int(0.99 * len(held))]:.1f} ms, "
            f"max {held[-1]:.1f} ms"
        )
    else:
        print("deliveries held for the receiver's own acknowledgement (relay trace): none")
    if reads:
        dur = sorted((t - t_start) * 1000 for t, _p, _d, _f, _n, t_start in reads)
        print(
            f"fan-out reads: {len(reads)}, median {statistics.median(dur):.1f} ms, "
            f"max {dur[-1]:.1f} ms"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("dir")
    p.add_argument("--slowest", type=float, default=0.01)
    args = p.parse_args()
    report(args.dir, args.slowest)


if __name__ == "__main__":
    main()
