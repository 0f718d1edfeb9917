"""Load benchmark of the Python client: open an encrypted document with signature checks on.

Builds, from ``../shared/data/automerge-paper.json.gz`` (260k edits of one text), encrypted
data the way a real client makes it (pycrdt v1 updates, one Secsync update per edit, signed
and encrypted), then measures loading it through the sync engine exactly as a connection
does (decode the ``document`` frame, verify in a thread pool, apply in order):

  (a) one snapshot;
  (b) a snapshot + the last 1,000 edits as updates;
  (c) every edit as its own update (on the document's empty initial snapshot).

The same run measures, on the same frames, the reference path — npm ``secsync`` 0.5.0's
sync machine with ``yjs`` on node (``benchmarks/ref_load.mjs`` with the packages of
``../shared/harness``, installed in ``$HARNESS_HOME`` like the tests do): it parses, verifies,
decrypts and applies the same encrypted trace — and the no-crypto floor (plain pycrdt applying
the same Yjs data), and prints the ratios to both. Every ratio is measured side by side.

    .venv/bin/python benchmarks/load_bench.py [--repeat 3] [--only a,b,c] [--edits N]
                                              [--no-processes] [--no-reference]

The encrypted data is cached in ``$XDG_CACHE_HOME/secsync-jupyter`` (or ``/tmp``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import nacl.bindings as sodium
import psutil
from pycrdt import Doc, Text

from secsync_jupyter.client.engine import SyncEngine
from secsync_jupyter.client.precheck import precheck_frame, process_pool
from secsync_jupyter.client.ydoc import YDocAdapter, serialize_updates
from secsync_jupyter.protocol import (
    SigningKeyPair,
    create_initial_snapshot,
    create_update,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("SECSYNC_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
TRACE = DATA / "automerge-paper.json.gz"
HARNESS = SHARED / "harness"
HARNESS_HOME = pathlib.Path(os.environ.get("HARNESS_HOME", "/tmp/secsync-harness"))
REF_SCRIPT = pathlib.Path(__file__).resolve().with_name("ref_load.mjs")
GOALS = {"a": 0.012, "b": 0.140, "c": 18.0}
KEY = hashlib.blake2b(b"secsync-jupyter load bench key", digest_size=32).digest()
SIGNER = SigningKeyPair.from_seed(hashlib.sha256(b"secsync-jupyter load bench signer").digest())
DOC_ID = "load-bench-automerge-paper"
TAIL = 1000


def cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or "/tmp"
    path = pathlib.Path(base) / "secsync-jupyter" / "load-bench-v1"
    path.mkdir(parents=True, exist_ok=True)
    return path


def yjs_updates(edits: int | None) -> tuple[list[bytes], str]:
    """Replay the trace on a pycrdt Text: one v1 update per edit (as a client emits them)."""
    with gzip.open(TRACE) as f:
        trace = json.load(f)
    txns = trace["txns"][:edits] if edits else trace["txns"]
    doc = Doc()
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    sub = doc.observe(lambda event: updates.append(event.update))
    for txn in txns:
        with doc.transaction():
            for pos, delete, insert in txn["patches"]:
                if delete:
                    del text[pos : pos + delete]
                if insert:
                    text.insert(pos, insert)
    doc.unobserve(sub)
    expected = str(text)
    if not edits:
        assert expected == trace["endContent"], "trace replay diverged"
    return updates, expected


def state_after(updates: list[bytes]) -> bytes:
    doc = Doc()
    doc.get("content", type=Text)
    with doc.transaction():
        for u in updates:
            doc.apply_update(u)
    return doc.get_update()


def encrypt_updates(updates: list[bytes], snapshot_id: str, pool: ThreadPoolExecutor) -> list[dict]:
    pd = {"docId": DOC_ID, "pubKey": SIGNER.public_key_b64, "refSnapshotId": snapshot_id}

    def chunk(start: int, items: list[bytes]) -> list[dict]:
        return [
            create_update(serialize_updates([u]), pd, KEY, SIGNER, start + i).to_json()
            for i, u in enumerate(items)
        ]

    size = 4096
    futures = [pool.submit(chunk, i, updates[i : i + size]) for i in range(0, len(updates), size)]
    return [m for f in futures for m in f.result()]


def snapshot_message(content: bytes, snapshot_id: str) -> dict:
    pd = {"docId": DOC_ID, "pubKey": SIGNER.public_key_b64, "snapshotId": snapshot_id}
    return create_initial_snapshot(content, pd, KEY, SIGNER).to_json()


def build(edits: int | None) -> dict:
    tag = f"{edits or 'all'}"
    cached = cache_dir() / f"data-{tag}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    t0 = time.perf_counter()
    print(f"building encrypted data for {edits or 'all'} edits (cached afterwards)…", flush=True)
    updates, expected = yjs_updates(edits)
    pool = ThreadPoolExecutor(2)
    n = len(updates)
    full = state_after(updates)
    head = state_after(updates[: n - TAIL])
    empty = Doc()
    empty.get("content", type=Text)
    frames = {
        "a": {"type": "document", "snapshot": snapshot_message(full, "snapshot-a"), "updates": []},
        "b": {
            "type": "document",
            "snapshot": snapshot_message(head, "snapshot-b"),
            "updates": encrypt_updates(updates[n - TAIL :], "snapshot-b", pool),
        },
        "c": {
            "type": "document",
            "snapshot": snapshot_message(empty.get_update(), "snapshot-c"),
            "updates": encrypt_updates(updates, "snapshot-c", pool),
        },
    }
    data = {
        "edits": n,
        "expected": expected,
        "frames": {k: json.dumps(v, separators=(",", ":")) for k, v in frames.items()},
        "yjs": {
            "a": [full.hex()],
            "b_snapshot": head.hex(),
            "tail": [u.hex() for u in updates[n - TAIL :]],
            "all": [u.hex() for u in updates],
        },
    }
    cached.write_text(json.dumps(data))
    print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    return data


def load(frame_text: str) -> tuple[float, str, SyncEngine, float]:
    """Open the document from the relay's ``document`` frame, as the client does."""
    doc = Doc()
    adapter = YDocAdapter(doc)
    engine = SyncEngine(DOC_ID, KEY, adapter, SigningKeyPair.generate())
    engine.connecting()
    engine.connected()
    c0, t0 = cpu_time(), time.perf_counter()
    obj = json.loads(frame_text)
    precheck = precheck_frame(engine, obj)
    engine.receive(obj, precheck)
    elapsed, cpu = time.perf_counter() - t0, cpu_time() - c0
    assert engine.document_state == "complete", engine.errors
    return elapsed, str(doc.get("content", type=Text)), engine, cpu


class Reference:
    """The reference load path: ``ref_load.mjs`` on node with the harness's npm packages."""

    def __init__(self) -> None:
        if shutil.which("node") is None:
            raise SystemExit("node is needed for the reference path (or pass --no-reference)")
        if not (HARNESS_HOME / "node_modules" / "secsync").is_dir():
            print(f"installing the reference harness in {HARNESS_HOME}…", flush=True)
            env = {**os.environ, "HARNESS_HOME": str(HARNESS_HOME)}
            subprocess.run([str(HARNESS / "setup.sh")], check=True, env=env)
        # ESM resolves packages next to the script: a private directory whose node_modules
        # is the harness's install (nothing is written into shared/ or the harness)
        self._dir = pathlib.Path(tempfile.mkdtemp(prefix="secsync-ref-load-"))
        (self._dir / "node_modules").symlink_to(HARNESS_HOME / "node_modules")
        self.script = self._dir / REF_SCRIPT.name
        shutil.copyfile(REF_SCRIPT, self.script)
        lock = json.loads((HARNESS_HOME / "package-lock.json").read_text())["packages"]
        versions = [f"{n} {lock['node_modules/' + n]['version']}" for n in ("secsync", "yjs")]
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
        self.label = f"{' + '.join(versions)}, node {node.strip()}"

    def load(
        self, frame_file: pathlib.Path, repeat: int, expected_sha256: str, mode: str
    ) -> list[dict]:
        """``repeat`` loads of the frame in one node process (a fresh Y.Doc each), ``mode``
        ``client`` (the sync machine) or ``core`` (the same steps in a plain loop)."""
        proc = subprocess.run(
            [
                "node",
                "--expose-gc",
                "--max-old-space-size=8192",
                str(self.script),
                str(frame_file),
                "--doc-id",
                DOC_ID,
                "--key",
                KEY.hex(),
                "--repeat",
                str(repeat),
                "--mode",
                mode,
            ],
            capture_output=True,
            text=True,
            timeout=7200,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the reference load failed ({proc.returncode}): {proc.stderr}")
        runs = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(runs) == repeat, proc.stdout
        for run in runs:
            assert run["textSha256"] == expected_sha256, "the reference loaded another text"
        return runs

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def frame_file(edits: int | None, case: str, frame_text: str) -> pathlib.Path:
    """The case's ``document`` frame as a file (for node), next to the cached data."""
    path = cache_dir() / f"frame-{edits or 'all'}-{case}.json"
    if not path.exists() or path.stat().st_size != len(frame_text.encode()):
        path.write_text(frame_text)
    return path


def cpu_time() -> float:
    """CPU time of this process and its worker processes (user + system)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children():
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def floor(case: str, yjs: dict) -> float:
    """Plain pycrdt applying the same Yjs data (no JSON, no crypto)."""
    if case == "a":
        items = [bytes.fromhex(yjs["a"][0])]
    elif case == "b":
        items = [bytes.fromhex(yjs["b_snapshot"])] + [bytes.fromhex(u) for u in yjs["tail"]]
    else:
        items = [bytes.fromhex(u) for u in yjs["all"]]
    doc = Doc()
    doc.get("content", type=Text)
    t0 = time.perf_counter()
    with doc.transaction():
        for u in items:
            doc.apply_update(u)
    return time.perf_counter() - t0


def verify_rate() -> float:
    pk, sk = sodium.crypto_sign_seed_keypair(bytes(32))
    msg = b"x" * 300
    signed = sodium.crypto_sign(msg, sk)
    n = 4000
    t0 = time.perf_counter()
    for _ in range(n):
        sodium.crypto_sign_open(signed, pk)
    return n / (time.perf_counter() - t0)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


MODES = {
    "client": "reference client: the sync machine (createSyncMachine), as a reference app opens it",
    "core": "reference core: the same verify + decrypt + apply steps in a plain loop, no machine",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case, best is kept")
    ap.add_argument("--only", default="a,b,c", help="cases to run (default a,b,c)")
    ap.add_argument("--edits", type=int, default=None, help="use only the first N edits")
    ap.add_argument(
        "--no-processes",
        action="store_true",
        help="verify in threads only (the client's path before worker processes)",
    )
    ap.add_argument(
        "--reference",
        default="client,core",
        help="reference paths to run on node: client (the sync machine), core (the same steps"
        " in a plain loop); default both",
    )
    ap.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the reference paths (npm secsync 0.5.0 + yjs on node): no ratios to them",
    )
    args = ap.parse_args(argv)
    modes = [] if args.no_reference else [m for m in args.reference.split(",") if m]
    if unknown := set(modes) - set(MODES):
        ap.error(f"--reference: unknown path(s) {', '.join(sorted(unknown))} (client, core)")
    if args.no_processes:
        import secsync_jupyter.client.precheck as precheck

        precheck.PROCESS_MIN_UPDATES = None
    data = build(args.edits)
    reference = Reference() if modes else None
    print("load average before the run: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        f"trace: {data['edits']} edits · cores: {os.cpu_count()} · "
        f"Ed25519 verify, one core: {verify_rate():,.0f}/s"
    )
    t0 = time.perf_counter()
    warm = [process_pool().submit(int) for _ in range(4)]
    for future in warm:
        future.result()
    print(
        f"worker processes started in {fmt(time.perf_counter() - t0)} "
        "(once per process; not part of the load times)"
    )
    expected_sha256 = hashlib.sha256(data["expected"].encode()).hexdigest()
    rows = []
    for case in args.only.split(","):
        frame = data["frames"][case]
        repeat = max(1, args.repeat if case != "c" else 1)
        runs = [load(frame) for _ in range(repeat)]
        best = min(runs, key=lambda r: r[0])
        assert best[1] == data["expected"], "loaded text differs from the trace"
        del runs  # free our documents before node loads the same frame
        floor_s = min(floor(case, data["yjs"]) for _ in range(max(1, args.repeat)))
        refs = {}
        for mode in modes:
            path = frame_file(args.edits, case, frame)
            runs = reference.load(path, repeat, expected_sha256, mode)
            refs[mode] = min(runs, key=lambda r: r["ms"])
        print(
            f"({case}) ours {fmt(best[0])}"
            + "".join(f", reference {m} {fmt(r['ms'] / 1000)}" for m, r in refs.items()),
            flush=True,
        )
        rows.append((case, best[0], floor_s, len(frame), best[3], refs))
    if reference is not None:
        reference.close()
    print()
    print(
        f"{'case':<34}{'ours':>10}{'goal':>10}"
        + "".join(f"{'ref ' + m:>12}{'vs':>7}" for m in modes)
        + f"{'floor':>10}{'vs floor':>9}{'cpu':>10}"
        + "".join(f"{m + ' cpu':>12}" for m in modes)
    )
    names = {
        "a": "(a) one snapshot",
        "b": f"(b) snapshot + last {TAIL} edits",
        "c": "(c) every edit as an update",
    }
    ok = True
    for case, ours, floor_s, _size, cpu, refs in rows:
        goal = GOALS[case] if args.edits is None else None  # goals are for the whole trace
        ok = ok and not (goal is not None and ours > goal)
        print(
            f"{names[case]:<34}{fmt(ours):>10}{fmt(goal) if goal else '—':>10}"
            + "".join(
                f"{fmt(refs[m]['ms'] / 1000):>12}{refs[m]['ms'] / 1000 / ours:>6.1f}x"
                for m in modes
            )
            + f"{fmt(floor_s):>10}{ours / floor_s:>8.1f}x{fmt(cpu):>10}"
            + "".join(f"{fmt(refs[m]['cpuMs'] / 1000):>12}" for m in modes)
        )
    print()
    if reference is not None:
        print(
            f"reference = npm secsync + yjs ({reference.label}) on the same frames in this run"
            " (benchmarks/ref_load.mjs), best of as many runs as ours:"
        )
        for m in modes:
            print(f"  {MODES[m]}")
    print("vs = reference time / ours (higher is better); vs floor = ours / no-crypto floor")
    print("cpu = CPU time of the load, worker processes included (both cores together)")
    print("frame sizes: " + ", ".join(f"{r[0]}={r[3] / 1e6:.1f} MB" for r in rows))
    print("load average after the run: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
