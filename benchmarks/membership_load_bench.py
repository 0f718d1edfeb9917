"""What the membership checks (issue 11) add to loading: ``load_bench.py`` cases (a) and (b)
on the same Yjs data, as a document without a log and as documents with a membership log.

    .venv/bin/python benchmarks/membership_load_bench.py [--repeat 40] [--entries 3,50] [--wall]
                                                         [--breakdown]

Each load goes through the sync engine as a connection does (decode the ``document`` frame,
check ahead, verify, apply); variants are interleaved, the CPU time of the load (threads
included; ``--wall``: elapsed time) is kept, and the best and median ratios to the document
without a log are printed. With a log the frames carry the log (``logFrom`` 0: a first open,
the whole log is verified) and every message names ``publicData.logHead``; updates carry no
``heads``: a writer alone names nothing, and heads that would name nothing are left out as our
clients do since session 5 (``--empty-heads``: every update carries ``"heads": {"clocks": {}}``
as before; heads that name authors: ``heads_bench.py``). ``plain + fields``: the same public
data in a document without a log (no membership checks): what the bigger public data alone
costs. ``--breakdown`` adds the longest log with its signatures skipped (what parsing, chain,
roles and the ``logHead`` checks cost) and checked one by one instead of in the verify threads
(issue 11: where a first open's cost goes). The data comes from load_bench's cache (built
by ``benchmarks/load_bench.py`` first).

Issue 12: ``rotated (epoch 1)`` is the log of 3 plus a ``rotate-key`` entry (100 recipients'
lockboxes are not part of a load) with the snapshots in epoch 1 (``publicData.epoch``, the
epoch key); ``log of 4`` is the same log length unrotated. Every document with a log loads
with the client's epoch keys attached, as the driver does (``epochs_client.EpochKeys``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import load_bench as lb
from paired import report_line, rotated, without_gc
from pycrdt import Doc, Text

from secsync_jupyter.client.engine import SyncEngine
from secsync_jupyter.client.epochs_client import EpochKeys
from secsync_jupyter.client.precheck import check_signatures_in_threads, precheck_frame
from secsync_jupyter.client.ydoc import YDocAdapter, serialize_updates
from secsync_jupyter.protocol import (
    SigningKeyPair,
    create_initial_snapshot,
    create_update,
)
from secsync_jupyter.protocol.epochs import Keyring, create_rotation
from secsync_jupyter.protocol.membership import create_entry, create_log, is_log_doc_id

T0 = 1767225600000


def make_log(n: int):
    """A log of ``n`` entries: load_bench's signer creates it and adds ``n - 1`` editors."""
    root, state = create_log(lb.SIGNER, at=T0, nonce=bytes(24))
    entries = [root.to_json()]
    for i in range(n - 1):
        member = SigningKeyPair.from_seed(i.to_bytes(32, "little")).public_key_b64
        entry, state = create_entry(state, lb.SIGNER, "add-member", member, "editor", at=T0 + i)
        entries.append(entry.to_json())
    return state, entries


EPOCH_KEY = bytes(range(100, 132))


def make_rotated_log(n: int):
    """``make_log(n)`` plus a ``rotate-key`` to epoch 1 with :data:`EPOCH_KEY`."""
    state, entries = make_log(n)
    rotation = create_rotation(state, lb.SIGNER, key=EPOCH_KEY, at=T0 + n)
    return rotation.state, [*entries, rotation.entry.to_json()]


def frames(
    data: dict, doc_id: str, log_head=None, log=None, key=None, epoch=None, empty_heads=False
) -> dict[str, str]:
    key = lb.KEY if key is None else key
    yjs = data["yjs"]
    full, head = bytes.fromhex(yjs["a"][0]), bytes.fromhex(yjs["b_snapshot"])
    tail = [bytes.fromhex(u) for u in yjs["tail"]]

    def pd(**kw):
        out = {"docId": doc_id, "pubKey": lb.SIGNER.public_key_b64, **kw}
        if log_head is not None:
            out["logHead"] = log_head
        return out

    def snap(content: bytes, sid: str) -> dict:
        extra = {"epoch": epoch} if epoch else {}
        return create_initial_snapshot(
            content, pd(snapshotId=sid, **extra), key, lb.SIGNER
        ).to_json()

    updates = []
    for i, u in enumerate(tail):
        p = pd(refSnapshotId="snapshot-b")
        if log_head is not None and empty_heads:  # before session 5 (now left out)
            p["heads"] = {"clocks": {}}
        updates.append(create_update(serialize_updates([u]), p, key, lb.SIGNER, i).to_json())
    out = {}
    cases = {
        "a": {"type": "document", "snapshot": snap(full, "snapshot-a"), "updates": []},
        "b": {"type": "document", "snapshot": snap(head, "snapshot-b"), "updates": updates},
    }
    for case, frame in cases.items():
        if log is not None:
            frame["log"], frame["logFrom"] = log, 0
        out[case] = json.dumps(frame, separators=(",", ":"))
    return out


def skip_signatures(items):
    """``--breakdown``: what a log costs without its Ed25519 checks (not a client's path)."""
    return [True] * len(items)


def load(doc_id: str, text: str, clock, check=check_signatures_in_threads) -> tuple[float, str]:
    doc = Doc()
    engine = SyncEngine(doc_id, lb.KEY, YDocAdapter(doc), lb.SIGNER)
    engine.check_signatures = check  # as the driver sets it (threads; --breakdown: others)
    if is_log_doc_id(doc_id):  # as the driver attaches them (issue 12)
        engine.epochs = EpochKeys(
            doc_id, lb.SIGNER, doc_key=lb.KEY, keyring=Keyring({1: EPOCH_KEY})
        )
    engine.connecting()
    engine.connected()
    t0 = clock()
    obj = json.loads(text)
    engine.receive(obj, precheck_frame(engine, obj))
    elapsed = clock() - t0
    assert engine.document_state == "complete", engine.errors
    return elapsed, str(doc.get("content", type=Text))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--entries", default="3,50", help="log sizes (default 3,50)")
    ap.add_argument("--wall", action="store_true", help="elapsed time instead of CPU time")
    ap.add_argument(
        "--empty-heads",
        action="store_true",
        help='every update of a document with a log carries "heads": {"clocks": {}} (as our'
        " clients wrote before session 5; now left out)",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also the largest log with its signatures skipped and checked one by one (where a"
        " first open's cost goes)",
    )
    args = ap.parse_args(argv)
    cached = lb.cache_dir() / "data-all.json"
    data = lb.build(None) if not cached.exists() else json.loads(cached.read_text())
    eh = args.empty_heads
    variants = {"no log": (lb.DOC_ID, frames(data, lb.DOC_ID))}
    for n in (int(x) for x in args.entries.split(",")):
        state, entries = make_log(n)
        variants[f"log of {n}"] = (
            state.doc_id,
            frames(data, state.doc_id, state.head.to_json(), entries, empty_heads=eh),
        )
    state, entries = make_log(4)
    variants["log of 4"] = (
        state.doc_id,
        frames(data, state.doc_id, state.head.to_json(), entries, empty_heads=eh),
    )
    state, entries = make_rotated_log(3)
    variants["rotated (epoch 1)"] = (
        state.doc_id,
        frames(data, state.doc_id, state.head.to_json(), entries, EPOCH_KEY, 1, empty_heads=eh),
    )
    state, _ = make_log(3)
    variants["plain + fields"] = (
        lb.DOC_ID,
        frames(data, lb.DOC_ID, state.head.to_json(), empty_heads=eh),
    )
    checks = {}
    if args.breakdown:
        n = max(int(x) for x in args.entries.split(","))
        variants[f"{n}, sigs skipped"] = variants[f"log of {n}"]
        checks[f"{n}, sigs skipped"] = skip_signatures
        variants[f"{n}, one by one"] = variants[f"log of {n}"]
        checks[f"{n}, one by one"] = None
    clock = time.perf_counter if args.wall else time.process_time
    results = {name: {"a": [], "b": []} for name in variants}
    for round_no in range(args.repeat):
        for name, (doc_id, fr) in rotated(list(variants.items()), round_no):
            for case in ("a", "b"):
                check = checks.get(name, check_signatures_in_threads)
                elapsed, text = without_gc(
                    lambda doc_id=doc_id, fr=fr, case=case, check=check: load(
                        doc_id, fr[case], clock, check
                    )
                )
                assert text == data["expected"], f"{name} ({case}) loaded another text"
                results[name][case].append(elapsed)
    what = "elapsed" if args.wall else "CPU"
    print(
        f"{what} time per load, best / median of {args.repeat}"
        " (ratio to the document without a log; paired: median of the per-round ratios,"
        " 95 % interval)"
    )
    for case in ("a", "b"):
        base = results["no log"][case]
        for name in results:
            # paired.report_line indents by two spaces: this table does not
            print(report_line(f"({case}) {name}", base, results[name][case], width=21)[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
