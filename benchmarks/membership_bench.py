"""Membership log speed: verifying a whole log of N entries (Python, and TypeScript on node),
next to the Ed25519-verify-alone floor measured in the same run.

    .venv/bin/python benchmarks/membership_bench.py [--entries 1000] [--members 50] [--runs 15]
                                                    [--no-node]

Rows (median and best of --runs; CPU: this process's CPU time, all its threads):
* verify_log, one by one: parse, signature, chain, rules, entry after entry;
* the client's default: ``verify_log(check_signatures=precheck.check_signatures_in_processes)``
  as SecsyncDocument sets it, with the worker processes not running (a client that has not
  loaded a very large frame): one part of the signatures in this thread, the rest in the
  verify threads (``check_signatures_in_threads``) — the row the goal is judged on;
* verify_log with the signatures checked in bulk by 2 plain threads (``verify_detached``; the
  row of the earlier sessions);
* the client with the worker processes warm (``warm_process_pool()`` and every worker answered
  before the timing: spawning is a one-time cost, printed apart): this process checks the
  first part of the signatures, a worker the rest;
* verify_entry, one entry on a 50-member state: what the relay does per append;
* the floor: N Ed25519 verifications alone (``verify_detached``, libsodium through PyNaCl;
  and ``precheck.verify_signatures_chunk``, the same libsodium function called directly),
  parsing alone, and verify_log with every signature taken as valid (parse, chain, rules).
The TypeScript row runs src/secsync/membership.ts (libsodium-wrappers, WebAssembly) through
vite-node. Goal (issue 11): a 1,000-entry log verifies in ≤ 50 ms in Python. Prints `uptime`.

Key rotation (issue 12, ``--rotation-members 100``): ``create_rotation`` on a state of that
many members — a fresh key, one sealed box per member (``crypto_box_seal`` to the box key
derived from each Ed25519 key), the lockbox-set hash, the key check and the signed
``rotate-key`` entry (checked against the state) — in Python and in TypeScript on node
(src/secsync/lockbox.ts, libsodium-wrappers as in the browser), and the relay's check of the
uploaded set (``check_lockbox_set``). Goals: ≤ 100 ms in Python, ≤ 200 ms in the browser.
And the browser client's whole rotation against our relay on loopback (node, ``--no-relay``
skips it): ``client.rotateKey()`` for that many members until saved, then the new epoch's
snapshot until saved. ``--only-rotation`` skips the log rows.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import vite_node

from secsync_jupyter.protocol.crypto import SigningKeyPair, verify_detached
from secsync_jupyter.protocol.epochs import check_lockbox_set, create_rotation
from secsync_jupyter.protocol.membership import (
    create_entry,
    create_log,
    parse_entry,
    verify_entry,
    verify_log,
)

TS_SCRIPT = """
import fs from 'node:fs';
import { ready } from './src/secsync/sodium';
import { verifyLog } from './src/secsync/membership';
const { log, docId, runs } = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
await ready();
const times: number[] = [];
for (let i = 0; i < runs; i++) {
  const entries = JSON.parse(JSON.stringify(log));
  const t = performance.now();
  verifyLog(entries, docId);
  times.push(performance.now() - t);
}
console.log(JSON.stringify(times));
"""


ROTATION_TS = """
import fs from 'node:fs';
import { ready } from './src/secsync/sodium';
import { createSignatureKeyPair } from './src/secsync/crypto';
import { verifyLog } from './src/secsync/membership';
import { createRotation } from './src/secsync/lockbox';
const { log, docId, seed, runs } = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
await ready();
const state = verifyLog(log, docId);
const admin = createSignatureKeyPair(Uint8Array.from(seed));
const times: number[] = [];
for (let i = 0; i < runs + 2; i++) {
  const t = performance.now();
  const r = createRotation(state, admin, { at: state.headAt });
  if (r.lockboxes.length !== state.members.size) throw new Error('wrong number of lockboxes');
  times.push(performance.now() - t);
}
console.log(JSON.stringify(times.slice(2)));
"""

#: issue 12, the browser client's whole rotation through our relay (node, libsodium.js):
#: ``client.rotateKey()`` (createRotation on the engine's verified state, the rotate-key with
#: its lockbox set uploaded, checked and saved by the relay, the key kept) and the snapshot of
#: the new epoch until saved (``synced()``)
ROTATION_CLIENT_TS = """
import fs from 'node:fs';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { createSignatureKeyPair, generateKey, ready, SecsyncYjsClient } from './src/secsync';
import { createLogDocument } from './src/secsync/document';
import { formatIdentity } from './src/secsync/membership';
const { base, members, runs } = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
await ready();
const admin = createSignatureKeyPair();
const { docId, rootEntry } = createLogDocument(admin, 'Admin');
const ydoc = new Y.Doc();
const client = new SecsyncYjsClient({
  url: `${base}/${docId}`, docId, key: generateKey(), rootEntry, signatureKeyPair: admin, ydoc,
  WebSocketImpl: WebSocket as any, batchDelayMs: 0
});
client.connect();
await client.loaded;
ydoc.getText('content').insert(0, 'x'.repeat(2000));
await client.synced();
for (let i = 1; i < members; i++) {
  await client.addMember(formatIdentity(createSignatureKeyPair().publicKey, `m${i}`), 'editor');
}
const times: number[] = [];
for (let i = 0; i < runs + 2; i++) {
  const t = performance.now();
  await client.rotateKey();
  await client.synced();
  times.push(performance.now() - t);
}
const state = client.membership!;
if (state.epoch !== runs + 2 || state.epochs[state.epoch].recipients?.size !== members) {
  throw new Error('not the rotations asked for');
}
if (client.engine.active?.epoch !== state.epoch) throw new Error('no snapshot in the new epoch');
client.destroy();
console.log(JSON.stringify(times.slice(2)));
"""


def rotation_state(members: int):
    """A log of one admin adding ``members - 1`` people: ``members`` lockbox recipients."""
    admin = SigningKeyPair.from_seed(b"r" * 32)
    root, state = create_log(admin, at=1_000)
    log = [root.to_json()]
    for i in range(1, members):
        person = SigningKeyPair.from_seed(i.to_bytes(32, "big"))
        entry, state = create_entry(
            state, admin, "add-member", person.public_key, "editor", at=2_000
        )
        log.append(entry.to_json())
    return admin, state, log


def build_log(n: int, members: int) -> tuple[list[dict], str, object]:
    """A log of ``n`` entries: one admin adds ``members`` people, then changes roles, removes
    and re-adds them (every kind of entry, signed by two admins)."""
    admin = SigningKeyPair.from_seed(b"a" * 32)
    people = [SigningKeyPair.from_seed(i.to_bytes(32, "big")) for i in range(1, members + 1)]
    root, state = create_log(admin, name="Admin", at=1_000)
    log = [root.to_json()]
    second_admin = people[0]
    entry, state = create_entry(
        state, admin, "add-member", second_admin.public_key, "admin", at=1_500
    )
    log.append(entry.to_json())
    i = 0
    while len(log) < n:
        person = people[1 + i % (members - 1)]
        signer = admin if i % 2 else second_admin
        key = person.public_key_b64
        at = 2_000 + i
        if not state.is_member(key):
            entry, state = create_entry(
                state, signer, "add-member", key, "editor", at=at, name=f"Person {i % members}"
            )
        elif i % 7 == 0:
            entry, state = create_entry(state, signer, "remove-member", key, at=at)
        else:
            role = "viewer" if state.role(key) == "editor" else "editor"
            entry, state = create_entry(state, signer, "set-role", key, role, at=at)
        log.append(entry.to_json())
        i += 1
    return json.loads(json.dumps(log)), state.doc_id, state


def timed(fn, runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall times in ms; with ``cpu``, also this process's CPU times (what the work costs
    without the waiting for a core that a loaded machine adds)."""
    out = []
    for _ in range(runs):
        c, t = time.process_time(), time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - c) * 1000)
    return out


def interleaved(fns, setup, runs: int) -> list[tuple[list[float], list[float]]]:
    """``runs`` rounds of every ``fn(setup())`` (the order rotated each round; ``setup`` not
    timed): per fn, its wall times and this process's CPU times in ms."""
    out: list[tuple[list[float], list[float]]] = [([], []) for _ in fns]
    for r in range(runs):
        for i in [(r + k) % len(fns) for k in range(len(fns))]:
            arg = setup()
            c, t = time.process_time(), time.perf_counter()
            fns[i](arg)
            out[i][0].append((time.perf_counter() - t) * 1000)
            out[i][1].append((time.process_time() - c) * 1000)
    return out


def row(label: str, times: list[float], unit: str = "ms", cpu: list[float] | None = None) -> None:
    median = statistics.median(times)
    extra = f"   CPU median {statistics.median(cpu):8.2f} ms" if cpu else ""
    print(
        f"{label:<56} median {median:8.2f} {unit}   best {min(times):8.2f} {unit}{extra}",
        flush=True,
    )


def node_times(log: list[dict], doc_id: str, runs: int) -> list[float] | None:
    return run_ts(TS_SCRIPT, {"log": log, "docId": doc_id, "runs": runs})


def run_ts(source: str, payload: dict) -> list[float] | None:
    if not vite_node.available():
        print("(TypeScript row skipped: labextension/node_modules is not installed)")
        return None
    return vite_node.run_ts(source, payload, "membership-bench", 600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--no-node", action="store_true", help="skip the TypeScript rows")
    ap.add_argument("--rotation-members", type=int, default=100)
    ap.add_argument(
        "--no-relay", action="store_true", help="skip the browser client's rotation via our relay"
    )
    ap.add_argument("--only-rotation", action="store_true", help="only the rotation rows")
    args = ap.parse_args()
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if args.only_rotation:
        rotation(args)
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        return
    log, doc_id, final = build_log(args.entries, args.members)
    kinds = {}
    for e in log:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    print(
        f"log: {len(log)} entries {kinds}, {len(final.members)} members at the head, "
        f"{len(json.dumps(log)) / 1024:.0f} KiB of JSON"
    )
    n = len(log)

    def fresh():  # verify from JSON as received (nothing cached in the dicts)
        return json.loads(json.dumps(log))

    from secsync_jupyter.client import precheck

    # what the Python client does by default (SecsyncDocument sets the engine's
    # check_signatures to precheck.check_signatures_in_processes): with the worker processes
    # not running (a client that has not loaded a very large frame), the verify threads
    assert precheck._running_pool() is None
    client = precheck.check_signatures_in_processes

    with ThreadPoolExecutor(2) as pool:

        def bulk(items):
            half = len(items) // 2
            parts = pool.map(
                lambda part: [verify_detached(*x) for x in part], (items[:half], items[half:])
            )
            return [ok for part in parts for ok in part]

        # the three rows take turns (each round in another order), so that a machine whose
        # load changes during the run weighs on all three alike
        (seq, seq_cpu), (default, default_cpu), (par, _) = interleaved(
            [
                lambda entries: verify_log(entries, doc_id),
                lambda entries: verify_log(entries, doc_id, check_signatures=client),
                lambda entries: verify_log(entries, doc_id, check_signatures=bulk),
            ],
            fresh,
            args.runs,
        )
    row(f"Python verify_log, {n} entries, one by one", seq, cpu=seq_cpu)
    row(f"client default, {n} entries (this thread + verify pool)", default, cpu=default_cpu)
    row(f"Python verify_log, {n} entries, signatures, 2 threads", par)

    t = time.perf_counter()
    precheck.warm_process_pool()
    while precheck._running_pool() is None:
        time.sleep(0.001)
    started = time.perf_counter() - t
    print(f"(process pool of {precheck._workers()} workers started in {started:.2f} s)")
    copies = [fresh() for _ in range(args.runs)]
    it = iter(copies)
    proc_cpu: list[float] = []
    proc = timed(lambda: verify_log(next(it), doc_id, check_signatures=client), args.runs, proc_cpu)
    row(f"client, {n} entries, worker processes warm", proc, cpu=proc_cpu)
    precheck._reset_process_pool()

    parsed = [parse_entry(e) for e in log]
    sigs = [(p.signature, p.signed_bytes, p.signer) for p in parsed]
    from secsync_jupyter.protocol.encoding import b64decode_checked

    raw = [(b64decode_checked(s), m, b64decode_checked(k)) for s, m, k in sigs]
    floor_cpu: list[float] = []
    floor = timed(lambda: [verify_detached(*x) for x in raw], args.runs, floor_cpu)
    row(f"floor: {n} x Ed25519 verify alone (libsodium)", floor, cpu=floor_cpu)
    direct_cpu: list[float] = []
    direct = timed(lambda: precheck.verify_signatures_chunk(raw), args.runs, direct_cpu)
    row(f"{n} x Ed25519, precheck.verify_signatures_chunk", direct, cpu=direct_cpu)
    copies = [fresh() for _ in range(args.runs)]
    it = iter(copies)
    parse_cpu: list[float] = []
    parse = timed(lambda: [parse_entry(e) for e in next(it)], args.runs, parse_cpu)
    row(f"parse alone, {n} entries (checks, canonical, hash)", parse, cpu=parse_cpu)
    copies = [fresh() for _ in range(args.runs)]
    it = iter(copies)
    rest_cpu: list[float] = []
    skip = lambda items: [True] * len(items)  # noqa: E731
    rest = timed(lambda: verify_log(next(it), doc_id, check_signatures=skip), args.runs, rest_cpu)
    row(f"verify_log, {n} entries, signatures not checked", rest, cpu=rest_cpu)

    # the relay's path: one appended entry checked against a state with many members
    state = verify_log(log[:-1], doc_id)
    last = log[-1]
    per = timed(lambda: [verify_entry(state, last) for _ in range(20)], args.runs)
    row(
        f"verify_entry, {len(state.members)} members (relay, per append)",
        [t / 20 * 1000 for t in per],
        "µs",
    )

    if not args.no_node:
        ts = node_times(log, doc_id, args.runs)
        if ts:
            row(f"TypeScript verifyLog, node, {n} entries", ts)
    med = statistics.median
    print(
        f"goal: {n} entries in <= 50 ms (Python): the client by default median "
        f"{med(default):.1f} ms (best {min(default):.1f}, CPU {med(default_cpu):.1f}) — "
        f"{'met' if med(default) <= 50 else 'NOT met'}; with the worker processes warm "
        f"{med(proc):.1f} ms (best {min(proc):.1f}); one by one {med(seq):.1f} ms "
        f"(CPU {med(seq_cpu):.1f} ms); the signatures alone take {med(floor):.1f} ms "
        f"(CPU {med(floor_cpu):.1f} ms)"
    )
    cores = min(precheck._workers(), os.cpu_count() or 1)
    print(
        f"(estimate for an idle machine from CPU times, not a measurement: verify_log without "
        f"signatures {min(rest_cpu):.1f} ms + {n} signatures / {cores} cores "
        f"{min(direct_cpu) / cores:.1f} ms = {min(rest_cpu) + min(direct_cpu) / cores:.1f} ms, "
        f"best CPU figures)"
    )
    rotation(args)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    sys.stdout.flush()


def rotation(args) -> None:
    """Issue 12: a key rotation for ``--rotation-members`` members, Python and node."""
    n = args.rotation_members
    admin, state, log = rotation_state(n)
    cpu: list[float] = []
    made = []
    py = timed(lambda: made.append(create_rotation(state, admin, at=state.head_at)), args.runs, cpu)
    row(f"Python create_rotation, {n} members (key, {n} lockboxes, entry)", py, cpu=cpu)
    rot = made[-1]
    wire = [lb.to_json() for lb in rot.lockboxes]
    check = timed(lambda: check_lockbox_set(rot.state, rot.epoch, wire), args.runs)
    row(f"Python check_lockbox_set, {n} lockboxes (relay)", check)
    ts = None
    if not args.no_node:
        payload = {"log": log, "docId": state.doc_id, "seed": list(admin.seed), "runs": args.runs}
        ts = run_ts(ROTATION_TS, payload)
        if ts:
            row(f"TypeScript createRotation, node, {n} members", ts)
    client = None
    if not args.no_node and not args.no_relay:
        client = rotation_through_relay(n, args.runs)
        if client:
            row(f"TypeScript client.rotateKey() + snapshot, relay, {n}", client)
    med = statistics.median
    print(
        f"goal: rotation for {n} members <= 100 ms in Python: median {med(py):.1f} ms "
        f"(CPU {med(cpu):.1f} ms)"
        + (f"; <= 200 ms in the browser engine: node median {med(ts):.1f} ms" if ts else "")
        + (
            f" (client.rotateKey() via our relay + new-epoch snapshot: {med(client):.1f} ms)"
            if client
            else ""
        )
    )


def rotation_through_relay(members: int, runs: int) -> list[float] | None:
    """The browser client's rotation (document.ts / membershipClient.ts on node) against our
    relay on loopback (SQLite in a temporary directory): ``runs`` rotations of ``members``."""
    from link_join_bench import start_relay

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_relay(pathlib.Path(tmp))
        try:
            return run_ts(ROTATION_CLIENT_TS, {"base": url, "members": members, "runs": runs})
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
