"""What issue 13 costs: heads in updates (size, load_bench (b)), the heads messages between
live collaborators (traffic when idle), and what the remembered state saves on a first open
of a document with a 50-entry membership log (load_bench (a), issue 11's goal).

    .venv/bin/python benchmarks/heads_bench.py [--repeat 40] [--authors 10] [--wall]

On load_bench's Yjs data (built by ``benchmarks/load_bench.py`` first, cached):

* update size: every update of case (b) written with the public data our clients use in a
  document with a log (``logHead`` and ``heads``) vs the same update without ``heads``; the
  wire JSON bytes. Heads name only the authors whose clock advanced since the writer's
  previous acknowledged update: none (a writer alone, or nobody else typed meanwhile), one,
  and the worst case, all ``authors - 1`` others (4-digit clocks); authors by member position
  (``"heads": {"41": clock}``, what our clients write in a document with a log since
  session 7; 2-digit positions of a 50-entry log) and by public key (``{"clocks": …}``, before,
  and still in documents without a log);
* load (b): one snapshot + 1,000 updates, each update carrying heads (one author, and the worst
  case) vs no heads (a document without a log; the engine reads heads on every update). The
  "new" variants name clocks the frame does not hold (never written: every update is a withheld
  detection, 801 once per load); "1 author seen": every update names a clock the reader
  received (another author wrote the first update), as in an honest session. The same in a
  document with a 3-entry log (every update names ``logHead``), against that document without
  heads: "1 author seen" by member position (what our clients write) and by key (before);
* load (a) with a log of 50 entries: a first open (the whole log verified: 50 Ed25519
  checks), an open with the remembered state (the log from the state file, parsed and
  checked without signatures; the relay sends only the entries after its head: none), and
  the same document without a log. The engine is built inside the timed part (the
  remembered log is adopted there);
* heads traffic: the size of one heads message (an ephemeral frame, ``authors`` clocks and
  a log head) and how many a client sends per minute when nothing changes.

CPU time (threads included; ``--wall``: elapsed) per load, variants interleaved (in another
order each round), best and median of ``--repeat`` runs, and the median of the per-round
ratios to the baseline with its 95 % interval (``paired.py``: what a few-percent goal is
judged on at this machine's noise).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import load_bench as lb
import membership_load_bench as mlb
from paired import report_line, rotated, without_gc
from pycrdt import Doc, Text

from secsync_jupyter.client.engine import SyncEngine
from secsync_jupyter.client.heads import HEADS_INTERVAL_SECONDS, encode_heads, member_positions
from secsync_jupyter.client.precheck import check_signatures_in_threads, precheck_frame
from secsync_jupyter.client.ydoc import YDocAdapter, serialize_updates
from secsync_jupyter.protocol import (
    EphemeralSession,
    SigningKeyPair,
    create_initial_snapshot,
    create_update,
)
from secsync_jupyter.protocol.membership import LogHead


def others(n: int) -> dict[str, int]:
    """``n`` other authors' clocks (4 digits: a long session on one snapshot)."""
    return {
        SigningKeyPair.from_seed((1000 + i).to_bytes(32, "little")).public_key_b64: 1000 + 37 * i
        for i in range(n)
    }


def update_frames(
    data, doc_id, heads, log_head=None, first_by=None, positions=None, log=None
) -> tuple[str, list[int]]:
    """Case (b) as a ``document`` frame: updates with ``heads`` (or none); and each update's
    wire size. ``first_by``: another author writes the first update (its clock 0, no heads)
    and the others (load_bench's signer, clocks from 0) name it in their heads (``heads``
    is then ``{first_by: 0}``: a clock the reader received, as in an honest session).
    ``positions`` (public key -> member position): heads name authors by position
    (``"heads": {"<position>": clock}``) instead of by key; ``log``: the log's entries, in
    the frame."""
    yjs = data["yjs"]
    head = bytes.fromhex(yjs["b_snapshot"])
    tail = [bytes.fromhex(u) for u in yjs["tail"]]
    base = {"docId": doc_id, "pubKey": lb.SIGNER.public_key_b64}
    if log_head is not None:
        base["logHead"] = log_head
    snap = create_initial_snapshot(head, {**base, "snapshotId": "snapshot-b"}, lb.KEY, lb.SIGNER)
    updates, sizes = [], []
    for i, u in enumerate(tail):
        pd = {**base, "refSnapshotId": "snapshot-b"}
        signer, clock = lb.SIGNER, i
        if first_by is not None:
            signer, clock = (first_by, 0) if i == 0 else (lb.SIGNER, i - 1)
            pd["pubKey"] = signer.public_key_b64
        if heads and signer is lb.SIGNER:  # heads naming nothing are left out (docs/protocol.md)
            if positions is None:
                pd["heads"] = {"clocks": heads}
            else:
                pd["heads"] = {str(positions[k]): v for k, v in heads.items()}
        wire = create_update(serialize_updates([u]), pd, lb.KEY, signer, clock).to_json()
        updates.append(wire)
        sizes.append(len(json.dumps({**wire, "type": "update"}, separators=(",", ":"))))
    frame = {"type": "document", "snapshot": snap.to_json(), "updates": updates}
    if log is not None:
        frame["log"], frame["logFrom"] = log, 0
    return json.dumps(frame, separators=(",", ":")), sizes


def load(doc_id, text, clock, **engine_kw) -> tuple[float, str]:
    t0 = clock()
    doc = Doc()
    engine = SyncEngine(doc_id, lb.KEY, YDocAdapter(doc), lb.SIGNER, **engine_kw)
    engine.check_signatures = check_signatures_in_threads
    engine.connecting()
    engine.connected()
    obj = json.loads(text)
    engine.receive(obj, precheck_frame(engine, obj))
    elapsed = clock() - t0
    assert engine.document_state == "complete", engine.errors
    return elapsed, str(doc.get("content", type=Text))


def report(title, results, base_name):
    base = results[base_name]
    print(title + " (paired: median of the per-round ratios, 95 % interval)")
    for name, times in results.items():
        print(report_line(name, base, times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--authors", type=int, default=10)
    ap.add_argument("--wall", action="store_true", help="elapsed time instead of CPU time")
    args = ap.parse_args(argv)
    cached = lb.cache_dir() / "data-all.json"
    data = lb.build(None) if not cached.exists() else json.loads(cached.read_text())
    clock = time.perf_counter if args.wall else time.process_time
    heads = others(args.authors - 1)
    log_state, entries = mlb.make_log(50)
    log_head = log_state.head.to_json()

    # ---- update size
    _, plain_sizes = update_frames(data, lb.DOC_ID, None, log_head)
    _, bare_sizes = update_frames(data, lb.DOC_ID, None)
    mean = statistics.mean
    print(
        f"update size (wire JSON, {len(plain_sizes)} typing updates of load_bench (b)):"
        f" without heads {mean(bare_sizes):.0f} B (no log) / {mean(plain_sizes):.0f} B"
        " (with logHead)"
    )
    one = dict(list(heads.items())[:1])
    # member positions of the others in a 50-entry log: the last ones added (2 digits)
    positions = {k: log_state.head.seq - i for i, k in enumerate(heads)}
    forms = (("by position", positions), ("by key", None))
    for form, pos in forms:
        print(f"  authors {form} ({'heads: {position: clock}' if pos else 'clocks'}):")
        means = {}
        for label, named in (("none new", {}), ("1 author new", one), ("all 9 new", heads)):
            # "none new": the field is left out, the update is the same as without heads
            _, sizes = update_frames(data, lb.DOC_ID, named, log_head, positions=pos)
            means[label] = mean(sizes)
            print(
                f"    heads, {label:<13} {mean(sizes):6.0f} B:"
                f" +{mean(sizes) - mean(plain_sizes):.0f} B"
                f" = +{mean(sizes) / mean(plain_sizes) * 100 - 100:.1f} %"
            )
        each = (means["all 9 new"] - means["1 author new"]) / (len(heads) - 1)
        print(
            f"    each newly seen author after the first: +{each:.1f} B"
            f" = +{each / mean(plain_sizes) * 100:.1f} %"
        )

    # ---- a session of typing in turns: the mean over the updates of the session
    print(
        "  typing in turns of R updates each (a turn's first update names the authors who wrote"
        " since the writer's previous one, the rest of the turn names none), mean overhead per"
        " update:"
    )
    for form, pos in forms:
        by_k = {}
        for k in range(args.authors):
            named = dict(list(heads.items())[:k])
            _, sizes = update_frames(data, lb.DOC_ID, named, log_head, positions=pos)
            by_k[k] = mean(sizes)
        for active in (2, args.authors):
            cells = []
            for turn in (1, 5, 20, 100):
                m = (by_k[active - 1] + (turn - 1) * by_k[0]) / turn
                cells.append(f"R={turn}: +{m / mean(plain_sizes) * 100 - 100:.1f} %")
            print(
                f"    {form:<11} {active:>2} of {args.authors} authors taking turns  "
                + ", ".join(cells)
            )

    # ---- heads traffic
    session = EphemeralSession(log_state.doc_id, lb.KEY, lb.SIGNER)
    session._public_data["logHead"] = log_head
    content = encode_heads(
        "snapshot-b", ["s" * 32] * 3, {**heads, lb.SIGNER.public_key_b64: 5}, LogHead(**log_head)
    )
    frame = json.dumps(
        {**session.create(content).to_json(), "type": "ephemeral-message"}, separators=(",", ":")
    )
    per_minute = 60 / HEADS_INTERVAL_SECONDS
    print(
        f"heads message ({args.authors} authors, 3 ancestors, log head): content"
        f" {len(content)} B, ephemeral frame {len(frame)} B; idle: {per_minute:.0f} per client"
        f" per minute = {per_minute * len(frame) / 1024:.1f} KiB/min sent, relayed to each peer"
    )

    # ---- load (b): heads in every update vs none
    text_plain, _ = update_frames(data, lb.DOC_ID, None)
    text_one, _ = update_frames(data, lb.DOC_ID, dict(list(heads.items())[:1]))
    text_heads, _ = update_frames(data, lb.DOC_ID, heads)
    seen = SigningKeyPair.from_seed(bytes(range(1, 33)))
    text_seen, _ = update_frames(data, lb.DOC_ID, {seen.public_key_b64: 0}, first_by=seen)
    # "new" variants name clocks the frame does not hold (never written): every update is a
    # withheld detection (801, one report per load); "seen": a clock the reader received
    res_b = {
        "no heads": [],
        "heads, 1 author new": [],
        f"heads, all {args.authors - 1} new": [],
        "heads, 1 author seen": [],
    }
    # ---- load (b) in a document with a 3-entry log: heads by member position vs by key
    state3, entries3 = mlb.make_log(3)
    head3 = state3.head.to_json()
    member = SigningKeyPair.from_seed((0).to_bytes(32, "little"))  # make_log's first editor
    member_pos = {member.public_key_b64: 1}
    assert member_positions(state3)[0][member.public_key_b64] == 1
    named_member = {member.public_key_b64: 0}
    log_texts = {
        "log, no heads": update_frames(data, state3.doc_id, None, head3, log=entries3)[0],
        "log, 1 author seen, by position": update_frames(
            data, state3.doc_id, named_member, head3, member, member_pos, entries3
        )[0],
        "log, 1 author seen, by key": update_frames(
            data, state3.doc_id, named_member, head3, member, None, entries3
        )[0],
    }
    res_log: dict[str, list[float]] = {name: [] for name in log_texts}
    runs_log = [(name, (state3.doc_id, text, {})) for name, text in log_texts.items()]
    # ---- load (a) with a log of 50
    a_plain = mlb.frames(data, lb.DOC_ID)["a"]
    a_log = mlb.frames(data, log_state.doc_id, log_head, entries)["a"]
    a_delta = json.loads(a_log)
    a_delta["log"], a_delta["logFrom"] = [], log_state.head.seq + 1
    a_delta = json.dumps(a_delta, separators=(",", ":"))
    remembered = {"snapshot": None, "logHead": log_head, "log": entries}
    res_a = {"no log": [], "log of 50, first open": [], "log of 50, remembered state": []}
    runs_b = list(zip(res_b, (text_plain, text_one, text_heads, text_seen), strict=True))
    runs_a = list(
        zip(
            res_a,
            (
                (lb.DOC_ID, a_plain, {}),
                (log_state.doc_id, a_log, {}),
                (log_state.doc_id, a_delta, {"remembered": remembered}),
            ),
            strict=True,
        )
    )
    # what the variants measure: a received clock is no alarm, a withheld one is (by position
    # too: the reader resolves the position through its log)
    withheld_pos = update_frames(
        data, state3.doc_id, {member.public_key_b64: 5}, head3, member, member_pos, entries3
    )[0]
    checks = [(lb.DOC_ID, text_seen, False), (lb.DOC_ID, text_one, True)]
    checks += [(state3.doc_id, text, False) for text in log_texts.values()]
    checks.append((state3.doc_id, withheld_pos, True))
    for doc_id, text, errors in checks:
        engine = SyncEngine(doc_id, lb.KEY, YDocAdapter(Doc()), lb.SIGNER)
        engine.connecting()
        engine.connected()
        engine.receive(text)
        assert engine.document_state == "complete", engine.errors
        assert any(e.code == "SECSYNC_ERROR_801" for e in engine.errors) is errors, engine.errors
    for round_no in range(args.repeat):
        for name, text in rotated(runs_b, round_no):
            elapsed, got = without_gc(lambda text=text: load(lb.DOC_ID, text, clock))
            assert got == data["expected"]
            res_b[name].append(elapsed)
        for name, (doc_id, text, kw) in rotated(runs_a, round_no):
            elapsed, got = without_gc(
                lambda doc_id=doc_id, text=text, kw=kw: load(doc_id, text, clock, **kw)
            )
            assert got == data["expected"]
            res_a[name].append(elapsed)
        for name, (doc_id, text, kw) in rotated(runs_log, round_no):
            elapsed, got = without_gc(
                lambda doc_id=doc_id, text=text, kw=kw: load(doc_id, text, clock, **kw)
            )
            assert got == data["expected"]
            res_log[name].append(elapsed)
    what = "elapsed" if args.wall else "CPU"
    report(f"load (b), {what} time best / median of {args.repeat}:", res_b, "no heads")
    report(
        f"load (b) with a log of 3, {what} time best / median of {args.repeat}:",
        res_log,
        "log, no heads",
    )
    report(f"load (a), {what} time best / median of {args.repeat}:", res_a, "no log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
