"""The engine's heads check on load (``_process_updates``: a ``dict`` fast path, the general
``Mapping`` path for anything else) gives the same errors, codes, details and content for every
shape of ``heads`` an update may carry — names a received clock, a missing one, its own writer,
nothing, or something malformed — whether the frame's objects are plain dicts (as parsed from
JSON) or other mappings (``OrderedDict``: the same canonical bytes, so the same signatures)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pycrdt import Doc, Text

from secsync_jupyter.client.engine import SyncEngine
from secsync_jupyter.client.ydoc import YDocAdapter, serialize_updates
from secsync_jupyter.protocol import SigningKeyPair, create_initial_snapshot, create_update

KEY = bytes(range(32))
A = SigningKeyPair.from_seed(bytes([1]) * 32)  # the reader and main writer
B = SigningKeyPair.from_seed(bytes([2]) * 32)  # another author whose update the frame holds
C = SigningKeyPair.from_seed(bytes([3]) * 32)  # an author the frame never holds
DOC = "heads-fast-path"


def frame(heads: Any) -> dict[str, Any]:
    """A snapshot, B's update (clock 0), then two of A's updates carrying ``heads``."""
    doc = Doc()
    text = doc.get("content", type=Text)
    text += "start"
    snap = create_initial_snapshot(
        doc.get_update(), {"docId": DOC, "pubKey": A.public_key_b64, "snapshotId": "s1"}, KEY, A
    )
    updates = []
    for i, (signer, clock) in enumerate(((B, 0), (A, 0), (A, 1))):
        before = doc.get_state()
        text += f" {i}"
        pd: dict[str, Any] = {"docId": DOC, "pubKey": signer.public_key_b64, "refSnapshotId": "s1"}
        if signer is A and heads is not None:
            pd["heads"] = heads
        change = serialize_updates([doc.get_update(before)])
        updates.append(create_update(change, pd, KEY, signer, clock).to_json())
    return {"type": "document", "snapshot": snap.to_json(), "updates": updates}


def ordered(value: Any) -> Any:
    """``value`` with every dict an ``OrderedDict`` (same canonical JSON, same signature)."""
    if type(value) is dict:
        return OrderedDict((k, ordered(v)) for k, v in value.items())
    if type(value) is list:
        return [ordered(v) for v in value]
    return value


def load(obj: dict[str, Any], reader: SigningKeyPair = A):
    doc = Doc()
    engine = SyncEngine(DOC, KEY, YDocAdapter(doc), reader)
    engine.connecting()
    engine.connected()
    engine.receive(obj)
    return (
        engine.document_state,
        [(e.code, e.detail) for e in engine.errors],
        str(doc.get("content", type=Text)),
        engine.heads_reload,
    )


CASES = [
    None,  # no heads
    {"clocks": {}},
    {"clocks": {B.public_key_b64: 0}},  # received
    {"clocks": {B.public_key_b64: 1}},  # one more than received: missing
    {"clocks": {C.public_key_b64: 4}},  # never received: missing
    {"clocks": {B.public_key_b64: 0, C.public_key_b64: 2}},
    {"clocks": {A.public_key_b64: 50}},  # the writer itself: skipped
    {"clocks": {B.public_key_b64: -1, C.public_key_b64: True}},  # not clocks: skipped
    {"clocks": {C.public_key_b64: "3"}},
    {"clocks": []},
    {"clocks": None},
    {"clocks": "x"},
    {"clocks": [[C.public_key_b64, 3]]},
    {"other": {C.public_key_b64: 3}},
    {},
    [],
    "heads",
    7,
]


def test_every_heads_shape_loads_alike_as_dicts_and_as_other_mappings():
    seen_801 = 0
    for heads in CASES:
        plain = load(frame(heads))
        assert plain[0] == "complete", (heads, plain)
        assert plain[2] == "start 0 1 2"
        assert load(ordered(frame(heads))) == plain, heads
        # read by C (named in some heads: its own clock is what it sent, none here)
        by_c = load(frame(heads), C)
        assert by_c == load(ordered(frame(heads)), C) and by_c[1:] == plain[1:], heads
        seen_801 += any(code == "SECSYNC_ERROR_801" for code, _ in plain[1])
    # the three missing cases were reported (and only they), the others loaded without an error
    assert seen_801 == 3
    assert load(frame({"clocks": {B.public_key_b64: 0}}))[1] == []
    missing = load(frame({"clocks": {C.public_key_b64: 4}}))
    assert [code for code, _ in missing[1]] == ["SECSYNC_ERROR_801"]
    assert f"{C.public_key_b64} up to 4 (received -1)" in missing[1][0][1]
    assert missing[3] is True  # asks for the missing part again
