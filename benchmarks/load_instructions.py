"""What the per-update public-data fields cost load_bench (b), counted in instructions: one
load of snapshot + 1,000 updates through the engine under valgrind's callgrind, for the
variants of ``membership_load_bench.py`` (issue 11) and ``heads_bench.py`` (issue 13).

    .venv/bin/python benchmarks/load_instructions.py [--variants all] [--keep DIR]

Instructions executed do not depend on the machine's load (the paired CPU-time ratios of the
other two benchmarks swing by more than the 3-5 % goals on a shared 2-core machine), so they
show where a change moves the cost. They are not time: the fields' extra work (JSON, canonical
JSON, base64, the hashes inside Ed25519 / HMAC-SHA-512 / Poly1305 over longer signed bytes) is
interpreter and small-buffer code, slower per instruction than the Ed25519 arithmetic that
dominates a load, so a time ratio comes out higher than the instruction ratio.

Each variant runs in its own process: the frame is decoded, checked ahead (in this thread:
the verify threads' work is the same instructions), verified and applied once untimed (lazy
imports, caches), then once with callgrind collecting (only inside that ``eval``). Needs
``valgrind``; one variant takes about a minute (callgrind is ~50x slower than the load).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent

#: name -> (baseline name, what it is)
VARIANTS = {
    "no log": (None, "load_bench (b): no log, no fields"),
    "plain + logHead": ("no log", "every message names a logHead, no log (issue 11's fields)"),
    "log of 3": ("no log", "a 3-entry log: logHead + membership checks (issue 11's goal)"),
    "plain + fields (empty heads)": (
        "no log",
        'logHead + "heads": {"clocks": {}} as written before session 5',
    ),
    "(a) no log": (None, "load_bench (a): one snapshot, no log"),
    "(a) log of 3": ("(a) no log", "(a) with a 3-entry log (a new document's): issue 11's goal"),
    "(a) log of 50": ("(a) no log", "(a), a first open of a 50-entry log (its 50 signatures)"),
    "heads, 1 author seen": ("no log", "heads name another author's received clock (13's goal)"),
    "heads, 1 author new": ("no log", "heads name a clock never received: an 801 per load"),
    "log: no heads": (None, "a 3-entry log, heads_bench's frame (logHead, no heads)"),
    "log: 1 author seen by position": (
        "log: no heads",
        'heads name another member\'s received clock: {"1": 0} (13, session 7)',
    ),
    "log: 1 author seen by key": (
        "log: no heads",
        'the same by public key: {"clocks": {pubKey: 0}} (before session 7)',
    ),
}


def build(out: pathlib.Path, names: list[str]) -> None:
    sys.path.insert(0, str(HERE))
    import heads_bench as hb
    import load_bench as lb
    import membership_load_bench as mlb

    from secsync_jupyter.protocol import SigningKeyPair

    cached = lb.cache_dir() / "data-all.json"
    data = lb.build(None) if not cached.exists() else json.loads(cached.read_text())
    state, entries = mlb.make_log(3)
    state50, entries50 = mlb.make_log(50)
    head = state.head.to_json()
    seen = SigningKeyPair.from_seed(bytes(range(1, 33)))
    other = next(iter(hb.others(1)))
    member = SigningKeyPair.from_seed((0).to_bytes(32, "little"))  # make_log's first editor
    named = {member.public_key_b64: 0}
    pos = {member.public_key_b64: 1}
    makers = {
        "no log": lambda: (lb.DOC_ID, mlb.frames(data, lb.DOC_ID)["b"]),
        "plain + logHead": lambda: (lb.DOC_ID, mlb.frames(data, lb.DOC_ID, head)["b"]),
        "log of 3": lambda: (state.doc_id, mlb.frames(data, state.doc_id, head, entries)["b"]),
        "(a) no log": lambda: (lb.DOC_ID, mlb.frames(data, lb.DOC_ID)["a"]),
        "(a) log of 3": lambda: (state.doc_id, mlb.frames(data, state.doc_id, head, entries)["a"]),
        "(a) log of 50": lambda: (
            state50.doc_id,
            mlb.frames(data, state50.doc_id, state50.head.to_json(), entries50)["a"],
        ),
        "plain + fields (empty heads)": lambda: (
            lb.DOC_ID,
            mlb.frames(data, lb.DOC_ID, head, empty_heads=True)["b"],
        ),
        "heads, 1 author seen": lambda: (
            lb.DOC_ID,
            hb.update_frames(data, lb.DOC_ID, {seen.public_key_b64: 0}, first_by=seen)[0],
        ),
        "heads, 1 author new": lambda: (
            lb.DOC_ID,
            hb.update_frames(data, lb.DOC_ID, {other: 1000})[0],
        ),
        "log: no heads": lambda: (
            state.doc_id,
            hb.update_frames(data, state.doc_id, None, head, log=entries)[0],
        ),
        "log: 1 author seen by position": lambda: (
            state.doc_id,
            hb.update_frames(data, state.doc_id, named, head, member, pos, entries)[0],
        ),
        "log: 1 author seen by key": lambda: (
            state.doc_id,
            hb.update_frames(data, state.doc_id, named, head, member, None, entries)[0],
        ),
    }
    for i, name in enumerate(names):
        doc_id, text = makers[name]()
        (out / f"{i}.json").write_text(json.dumps({"doc_id": doc_id, "text": text}))


def child(path: str) -> None:
    """One untimed load, then one inside ``eval`` (what callgrind collects)."""
    import gc

    sys.path.insert(0, str(HERE))
    import load_bench as lb
    import membership_load_bench as mlb
    from pycrdt import Doc

    from secsync_jupyter.client.engine import SyncEngine
    from secsync_jupyter.client.epochs_client import EpochKeys
    from secsync_jupyter.client.precheck import check_in_threads, check_signatures_in_threads
    from secsync_jupyter.client.ydoc import YDocAdapter
    from secsync_jupyter.protocol.epochs import Keyring
    from secsync_jupyter.protocol.membership import is_log_doc_id

    spec = json.loads(pathlib.Path(path).read_text())
    doc_id, text = spec["doc_id"], spec["text"]

    def run() -> None:
        engine = SyncEngine(doc_id, lb.KEY, YDocAdapter(Doc()), lb.SIGNER)
        engine.check_signatures = check_signatures_in_threads
        if is_log_doc_id(doc_id):
            engine.epochs = EpochKeys(
                doc_id, lb.SIGNER, doc_key=lb.KEY, keyring=Keyring({1: mlb.EPOCH_KEY})
            )
        engine.connecting()
        engine.connected()
        obj = json.loads(text)
        engine.receive(obj, check_in_threads(engine, obj))  # checked ahead in this thread
        assert engine.document_state == "complete", engine.errors

    run()
    gc.collect()
    gc.disable()
    eval(compile("run()", "measured", "eval"), {"run": run})


def count(path: pathlib.Path) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--toggle-collect=builtin_eval*",
        f"--callgrind-out-file={path.with_suffix('.cg')}",
        sys.executable,
        __file__,
        "--child",
        str(path),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    m = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or m is None:
        raise SystemExit(f"callgrind failed:\n{done.stderr[-3000:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="all", help="comma-separated names, or all")
    ap.add_argument("--keep", help="keep the frames and callgrind files in this directory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    for name in names:
        base = VARIANTS[name][0]
        if base is not None and base not in names:
            names.insert(0, base)
    out = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="load-instructions-"))
    out.mkdir(parents=True, exist_ok=True)
    build(out, names)
    counts: dict[str, int] = {}
    print("instructions per load ((b) unless named (a); callgrind, one load after an untimed one)")
    for i, name in enumerate(names):
        counts[name] = count(out / f"{i}.json")
        base = VARIANTS[name][0]
        ratio = f"x{counts[name] / counts[base]:.4f} of {base!r}" if base else "baseline"
        print(f"  {name:<30} {counts[name] / 1e6:9.1f} M   {ratio:<26} {VARIANTS[name][1]}")
        sys.stdout.flush()
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
