"""A PostgreSQL store in its own process, for the cross-process tests (test_pg_store.py).

    python -m tests.relay.pg_worker URL

Opens the store, prints ``{"ready": pid}``, then runs one JSON command per stdin line and
prints one JSON answer per command, until stdin closes. Each command starts as soon as it is
read, so a test that sends one to two workers has them write at the same time.

Commands:
  {"op": "race-snapshots", "doc": D, "tag": T, "n": N, "losses": L, "start": EPOCH}
      from the wall-clock time START on (the same instant in every worker): read the
      document's state, then save a snapshot on its active snapshot with its clocks (ids T0,
      T1 …); at least N times, and until L attempts were refused (someone else won on the same
      parent) or the last 50 all won (nobody else is racing any more), for at most 120 s.
      Answer: [[id, parent, ok, code], …]
  {"op": "updates", "doc": D, "snapshot": S, "authors": [A, …], "clocks": M, "start": EPOCH}
      from START on, for each clock 0 … M-1: that clock of every author, submitted at once,
      then the next clock once they are answered. Answer: [[author, clock, ok, code, position],
      …] in submission order
  {"op": "documents", "docs": [D, …], "author": A, "clocks": M}
      clocks 0 … M-1 of author A on each document's snapshot "s-D", all submitted at once, in
      the order of "docs" for each clock (a batch holds writes to many documents).
      Answer: [[doc, clock, ok, code], …]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from secsync_jupyter.relay.store import store_from_url


async def race_snapshots(store, doc: str, tag: str, n: int, losses: int, start: float) -> list:
    await asyncio.sleep(max(0.0, start - time.time()))
    out: list = []
    deadline = time.monotonic() + 120
    i = lost = streak = 0
    while (i < n or (lost < losses and streak < 50)) and time.monotonic() < deadline:
        state = await store.load_state(doc)
        parent = state.active.snapshot_id if state.active else ""
        sid = f"{tag}{i}"
        r = await store.save_snapshot(
            doc,
            snapshot_id=sid,
            parent_snapshot_id=parent,
            parent_clocks=state.clocks,
            pub_key="pk-" + tag,
            ciphertext_hash="h-" + sid,
            parent_snapshot_proof="p-" + sid,
            message=json.dumps({"snapshot": sid}),
        )
        out.append([sid, parent, r.ok, r.code])
        i += 1
        lost += not r.ok
        streak = streak + 1 if r.ok else 0
    return out


async def updates(
    store, doc: str, snapshot: str, authors: list[str], clocks: int, start: float
) -> list:
    await asyncio.sleep(max(0.0, start - time.time()))
    out = []
    for c in range(clocks):  # one wave (one group commit) per clock
        results = await asyncio.gather(
            *(
                store.save_update(
                    doc,
                    snapshot_id=snapshot,
                    pub_key=a,
                    clock=c,
                    message=json.dumps({"author": a, "clock": c}),
                )
                for a in authors
            )
        )
        out += [[a, c, r.ok, r.code, r.position] for a, r in zip(authors, results, strict=True)]
    return out


async def documents(store, docs: list[str], author: str, clocks: int) -> list:
    submitted = [
        (d, c, store.save_update(d, snapshot_id="s-" + d, pub_key=author, clock=c, message="m"))
        for c in range(clocks)
        for d in docs
    ]
    results = await asyncio.gather(*(w for *_, w in submitted))
    return [[d, c, r.ok, r.code] for (d, c, _), r in zip(submitted, results, strict=True)]


async def main(url: str) -> None:
    store = store_from_url(url)
    await store.open()
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            if cmd["op"] == "race-snapshots":
                answer = await race_snapshots(
                    store, cmd["doc"], cmd["tag"], cmd["n"], cmd["losses"], cmd["start"]
                )
            elif cmd["op"] == "updates":
                answer = await updates(
                    store, cmd["doc"], cmd["snapshot"], cmd["authors"], cmd["clocks"], cmd["start"]
                )
            elif cmd["op"] == "documents":
                answer = await documents(store, cmd["docs"], cmd["author"], cmd["clocks"])
            else:
                answer = {"error": f"unknown op {cmd['op']!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
