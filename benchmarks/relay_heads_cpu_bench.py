"""The relay's CPU per update with and without causal heads (issue 13), without the network,
the database or the other processes of a loaded machine in the figure.

Relay workload A with ``relay_bench.py --heads`` measures the whole relay, but on a shared
2-core machine its run-to-run spread (×3 in throughput) hides a 5 % effect. This script times
what heads change in the relay's work per update: :func:`secsync_jupyter.relay.inbound.analyze`
(JSON parse, the protocol core's parser, the Ed25519 signature check over the canonical
public data, the body kept for storing and forwarding) on workload A's updates — 10 writers,
a 50-member log (``logHead`` in every update), 100 characters of content — with no heads and
with heads naming the 9 other writers (what our clients write when every other author moved
since the writer's previous update, as in workload A). Variants interleaved, best and median
of ``--repeat`` passes over ``--updates`` updates each; the bytes stored and sent per update
are printed too (the relay stores and forwards the message text as received).

``--relay``: also the whole relay (standalone, SQLite) with workload A's connections (10
writers, 10 readers, a 50-member log) at a fixed offered rate (``--rate``, 300 updates/s: far
below what it sustains, so batching is the same for both variants), heads and no heads
alternating in one relay process; its CPU time per accepted update (median of
``--relay-repeat`` runs of ``--duration`` s). At a fixed rate the CPU per update does not
follow the throughput that other processes on the machine take away.

    .venv/bin/python benchmarks/relay_heads_cpu_bench.py [--repeat 15] [--updates 2000]
    .venv/bin/python benchmarks/relay_heads_cpu_bench.py --relay [--relay-repeat 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from secsync_jupyter.protocol import (
    SigningKeyPair,
    create_update,
    generate_id,
    generate_key,
)
from secsync_jupyter.relay.inbound import analyze


def updates(n: int, heads: bool, writers: int = 10, payload: int = 100) -> list[str]:
    key = generate_key()
    keys = [SigningKeyPair.generate() for _ in range(writers)]
    log_head = {"seq": 59, "hash": "h" * 43}  # the shape of a 50-member log's head
    sid = generate_id()
    out = []
    for i in range(n):
        w, clock = i % writers, i // writers
        kp = keys[w]
        pd = {"docId": "m1_" + "d" * 40, "pubKey": kp.public_key_b64, "refSnapshotId": sid}
        pd["logHead"] = log_head
        if heads:
            others = sorted(k.public_key_b64 for k in keys if k is not kp)
            pd["heads"] = {"clocks": {o: max(0, clock - 8) for o in others}}
        content = f'["<{w}:{clock}>{"x" * payload}"]'.encode()
        u = create_update(content, pd, key, kp, clock)
        out.append(json.dumps(u.to_json(), separators=(",", ":")))
    return out


def one_pass(texts: list[str]) -> float:
    t0 = time.process_time()
    for text in texts:
        r = analyze(text)
        assert r.signature_ok and r.kind == "update"
    return (time.process_time() - t0) / len(texts)


async def relay_part(args) -> None:
    import tempfile

    import psutil
    import relay_bench as rb

    with tempfile.TemporaryDirectory(prefix="relay-heads-") as tmp:
        proc, url = rb.start_ours(tmp, "normal")
        ps = psutil.Process(proc.pid)
        runs: dict[bool, list[dict]] = {False: [], True: []}
        try:
            for rep in range(args.relay_repeat):
                for heads in (False, True) if rep % 2 == 0 else (True, False):
                    r = await rb.run_workload(
                        "ours",
                        url,
                        writers=10,
                        readers=10,
                        window=None,
                        rate=args.rate / 10,
                        duration=args.duration,
                        payload=100,
                        proc=ps,
                        members=50,
                        heads=heads,
                    )
                    runs[heads].append(r)
        finally:
            proc.terminate()
    print(
        f"relay at {args.rate:.0f} updates/s offered, workload A's connections, 50-member log, "
        f"{args.relay_repeat} x {args.duration:.0f} s per variant, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    cpu = {
        h: sorted(r["relay_cpu_pct"] * 10 / r["accepted_per_s"] for r in rs)
        for h, rs in runs.items()
    }
    for heads, rs in runs.items():
        print(
            f"  {'heads' if heads else 'no heads':9s}: relay CPU per accepted update median "
            f"{statistics.median(cpu[heads]):.3f} ms (runs: "
            + ", ".join(f"{c:.3f}" for c in cpu[heads])
            + f"); accepted {statistics.median(r['accepted_per_s'] for r in rs):.0f}/s, "
            f"p50 {statistics.median(r['p50_ms'] for r in rs):.1f} ms; "
            f"{rs[0]['update_bytes']} bytes per update"
        )
    ratio = statistics.median(cpu[True]) / statistics.median(cpu[False])
    print(f"  heads / no heads: x{ratio:.3f} relay CPU per update (medians)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--relay", action="store_true", help="also the whole relay at a fixed rate")
    p.add_argument("--rate", type=float, default=300.0, help="offered updates/s (--relay)")
    p.add_argument("--relay-repeat", type=int, default=6)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args()
    variants = {"no heads": updates(args.updates, False), "heads": updates(args.updates, True)}
    times: dict[str, list[float]] = {v: [] for v in variants}
    one_pass(variants["heads"][:200])  # warm up
    for rep in range(args.repeat):
        order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
        for v in order:
            times[v].append(one_pass(variants[v]))
    print(
        f"relay analyze() per update, {args.updates} updates x {args.repeat} passes "
        f"(CPU time), load average {os.getloadavg()[0]:.2f}"
    )
    base = times["no heads"]
    for v, ts in times.items():
        size = statistics.mean(len(t) for t in variants[v])
        best, median = min(ts) / min(base), statistics.median(ts) / statistics.median(base)
        print(
            f"  {v:9s}: best {min(ts) * 1e6:6.1f} us, median {statistics.median(ts) * 1e6:6.1f}"
            f" us (x{best:.3f} / x{median:.3f}); {size:.0f} bytes per update"
        )
    if args.relay:
        asyncio.run(relay_part(args))


if __name__ == "__main__":
    main()
