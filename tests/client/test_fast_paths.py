"""The load-path speed-ups give exactly the results of the plain path.

* a large ``document`` frame checked in worker processes, in threads, or not ahead at all
  leaves the same document, state and error codes (valid frames, tampered updates, replays);
* the protocol core's fast paths (alphabet check of long values, decoding parsed ciphertext,
  the signed bytes of a parsed message) equal the general functions;
* the pycrdt adapter does not observe its own remote applies but still reports local edits.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from pycrdt import Doc, Text

from secsync_jupyter.client import precheck
from secsync_jupyter.client.engine import SyncEngine
from secsync_jupyter.client.precheck import (
    Accepted,
    Rejected,
    Unparsable,
    check_in_processes,
    check_in_threads,
    precheck_frame,
)
from secsync_jupyter.client.ydoc import YDocAdapter, serialize_updates
from secsync_jupyter.protocol import (
    Update,
    b64encode,
    create_initial_snapshot,
    create_update,
    generate_id,
)
from secsync_jupyter.protocol.crypto import (
    DOMAIN_UPDATE,
    decrypt_message,
    signed_bytes,
)
from secsync_jupyter.protocol.encoding import (
    B64_ALPHABET_RE,
    _b64_alphabet,
    b64_valid,
    b64decode,
    b64decode_checked,
)

from .helpers import DOC, KEY, A, B


@pytest.fixture(scope="module")
def processes():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _frame(n: int = 200, tamper: int | None = None, replay: int | None = None) -> str:
    source = Doc()
    text = source.get("content", type=Text)
    pd = {"docId": DOC, "pubKey": A.public_key_b64, "snapshotId": generate_id()}
    snapshot = create_initial_snapshot(source.get_update(), pd, KEY, A)
    edits: list[bytes] = []
    sub = source.observe(lambda event: edits.append(event.update))
    for i in range(n):
        text += f"{i};"
    source.unobserve(sub)
    clocks = {A.public_key_b64: -1, B.public_key_b64: -1}
    updates = []
    for i, edit in enumerate(edits):
        signer = (A, B)[i % 2]
        clocks[signer.public_key_b64] += 1
        upd_pd = {"docId": DOC, "pubKey": signer.public_key_b64, "refSnapshotId": pd["snapshotId"]}
        wire = create_update(
            serialize_updates([edit]), upd_pd, KEY, signer, clocks[signer.public_key_b64]
        ).to_json()
        if i == tamper:
            wire["ciphertext"] = wire["ciphertext"][:-4] + "AAAA"
        updates.append(wire)
    if replay is not None:
        updates.insert(replay + 1, dict(updates[replay]))
    return json.dumps({"type": "document", "snapshot": snapshot.to_json(), "updates": updates})


def _load(frame: str, mode: str, pool=None):
    doc = Doc()
    engine = SyncEngine(DOC, KEY, YDocAdapter(doc), A)
    engine.connecting()
    engine.connected()
    obj = json.loads(frame)
    if mode == "processes":
        checked = check_in_processes(engine, obj, pool.submit, chunk=32)
    elif mode == "threads":
        with ThreadPoolExecutor(2) as threads:
            checked = check_in_threads(engine, obj, threads.map)
    else:
        checked = None
    engine.receive(obj, checked)
    return (
        engine.document_state,
        engine.state,
        [e.code for e in engine.errors],
        str(doc.get("content", type=Text)),
        engine.active.update_clocks if engine.active else None,
    )


@pytest.mark.parametrize(
    "frame_args",
    [{}, {"tamper": 77}, {"tamper": 199}, {"replay": 120}, {"n": 70, "replay": 3}],
    ids=["valid", "tampered-middle", "tampered-last", "replayed", "replayed-early"],
)
def test_process_and_thread_prechecks_equal_the_plain_path(processes, frame_args):
    frame = _frame(**frame_args)
    plain = _load(frame, "plain")
    assert _load(frame, "threads") == plain
    assert _load(frame, "processes", processes) == plain
    if not frame_args:
        assert plain[0] == "complete" and plain[3].endswith("199;")
    else:
        assert plain[2]  # the bad update was recorded


def test_precheck_frame_uses_the_process_pool_for_large_frames(monkeypatch):
    calls = []
    monkeypatch.setattr(precheck, "PROCESS_MIN_UPDATES", 100)
    monkeypatch.setattr(
        precheck, "check_in_processes", lambda engine, obj, submit: calls.append(len(obj))
    )
    engine = SyncEngine(DOC, KEY, YDocAdapter(Doc()), A)
    precheck_frame(engine, json.loads(_frame(120)))
    assert calls  # large frame: processes
    calls.clear()
    monkeypatch.setattr(precheck, "PROCESS_MIN_UPDATES", None)
    assert precheck_frame(engine, json.loads(_frame(120))) is not None  # threads
    assert not calls


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A" * 5000,
        b64encode(os.urandom(9000)),
        "A" * 4999 + "=",
        "A" * 4999 + "+",
        "A" * 4999 + "é",
        "A" * 4999 + "\n",
        "é" + "A" * 5000,
        "AQ" * 3000,
    ],
)
def test_alphabet_check_of_long_values_equals_the_regex(text):
    assert _b64_alphabet(text) is (B64_ALPHABET_RE.fullmatch(text) is not None)


def test_parsed_message_fast_paths_equal_the_general_functions():
    for size in (0, 1, 2, 3, 100, 70_000):
        content = os.urandom(size)
        pd = {"docId": DOC, "pubKey": A.public_key_b64, "refSnapshotId": "s"}
        update = Update.from_json(create_update(content, pd, KEY, A, 3).to_json())
        assert b64_valid(update.ciphertext)
        assert b64decode_checked(update.ciphertext) == b64decode(update.ciphertext)
        fast = signed_bytes(
            DOMAIN_UPDATE, update.nonce, update.ciphertext, update.public_data_b64, validated=True
        )
        assert fast == signed_bytes(
            DOMAIN_UPDATE, update.nonce, update.ciphertext, update.public_data_b64
        )
        assert decrypt_message(update, KEY) == content


def test_adapter_ignores_its_remote_applies_but_reports_local_edits():
    local: list[bytes] = []
    doc = Doc()
    adapter = YDocAdapter(doc, local.append)
    other = Doc()
    other.get("content", type=Text).insert(0, "remote")
    adapter.apply_snapshot(other.get_update())
    adapter.apply_changes([other.get_update()])
    assert local == []
    text = doc.get("content", type=Text)
    text += "!"
    assert len(local) == 1
    assert str(text) == "remote!"
    adapter.close()
    text += "?"
    assert len(local) == 1


@pytest.mark.parametrize("size", [0, 1, 100, 65535, 65536, 300_001])
def test_commitment_tag_of_raw_aead_equals_the_reference_formula(size):
    from secsync_jupyter.protocol.crypto import _commitment_tag_of, commitment_tag

    aead = os.urandom(size)
    for ad in ("eyJkb2NJZCI6ImEifQ", "ünïcode"):
        assert _commitment_tag_of(KEY, "bm9uY2U", aead, ad) == commitment_tag(
            KEY, "bm9uY2U", b64encode(aead), ad
        )


def test_a_broken_process_pool_falls_back_to_threads(monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def submit(self, *args, **kwargs):
            raise BrokenProcessPool("a worker died")

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(precheck, "PROCESS_MIN_UPDATES", 100)
    monkeypatch.setattr(precheck, "_PROCESS_POOL", Broken())
    frame = _frame(120)
    engine = SyncEngine(DOC, KEY, YDocAdapter(Doc()), A)
    engine.connecting()
    engine.connected()
    checked = precheck_frame(engine, json.loads(frame))
    assert checked is not None and len(checked.results) == 120
    assert precheck._PROCESS_POOL is None  # a fresh pool next time
    engine.receive(json.loads(frame), checked)
    assert engine.document_state == "complete"


def test_precheck_results_are_named(processes):
    """Each update's result says what happened to it, by type and field (no tuple indexes)."""
    obj = json.loads(_frame(100, tamper=40))
    obj["updates"][98] = {"publicData": 1}
    engine = SyncEngine(DOC, KEY, YDocAdapter(Doc()), A)
    engine.connecting()
    engine.connected()
    threads = check_in_threads(engine, obj)
    assert isinstance(threads.results[98], Unparsable)
    assert threads.results[98].error.code == "SECSYNC_ERROR_211"
    rejected = threads.results[40]
    assert isinstance(rejected, Rejected) and rejected.error.code == "SECSYNC_ERROR_212"
    accepted = threads.results[41]
    assert isinstance(accepted, Accepted) and accepted.decode_error is None
    assert accepted.assumed_clock == 19 and accepted.update.public_data.clock == 20
    assert threads.snapshot_id == obj["snapshot"]["publicData"]["snapshotId"]
    workers = check_in_processes(engine, obj, processes.submit, chunk=32)
    assert workers.results[98] is None and workers.results[40] is None  # the engine re-checks
    assert isinstance(workers.results[41], Accepted)
    assert workers.results[41].changes == accepted.changes
    assert workers.results[41].update.public_data.pub_key == B.public_key_b64
