"""Heads inside updates name authors by member position in a document with a membership log
(issue 13, docs/protocol.md "Causal heads"): the positions of a log, and what the engine
writes beyond the 64-author bound. What readers accept and refuse is pinned by the shared
scenarios heads-members-* (tests/scenarios)."""

from __future__ import annotations

from pycrdt import Doc

from secsync_jupyter.client.engine import MAX_HEADS, KnownSnapshot, SyncEngine
from secsync_jupyter.client.heads import member_positions
from secsync_jupyter.client.ydoc import YDocAdapter
from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.membership import create_entry, create_log

T0 = 1767225600000
KEY = bytes(range(32))


def person(i: int) -> SigningKeyPair:
    return SigningKeyPair.from_seed((1000 + i).to_bytes(32, "little"))


def test_positions_are_the_first_adding_entries():
    owner, x, y = person(0), person(1), person(2)
    _, state = create_log(owner, at=T0, nonce=bytes(24))
    steps = [
        ("add-member", x, "editor"),  # 1
        ("add-member", y, "editor"),  # 2
        ("remove-member", x, None),  # 3
        ("set-role", y, "viewer"),  # 4
        ("add-member", x, "editor"),  # 5: x again, keeps position 1
    ]
    for i, (kind, target, role) in enumerate(steps):
        _, state = create_entry(state, owner, kind, target.public_key_b64, role, at=T0 + i + 1)
    by_key, by_pos = member_positions(state)
    keys = [p.public_key_b64 for p in (owner, x, y)]
    assert by_key == {keys[0]: 0, keys[1]: 1, keys[2]: 2}
    assert by_pos == {"0": (0, keys[0]), "1": (1, keys[1]), "2": (2, keys[2])}


def _engine_with_log(n: int) -> tuple[SyncEngine, list[str]]:
    """An engine (the log's creator) holding a verified log that adds ``n`` editors."""
    owner = person(0)
    _, state = create_log(owner, at=T0, nonce=bytes(24))
    others = []
    for i in range(1, n + 1):
        key = person(i).public_key_b64
        _, state = create_entry(state, owner, "add-member", key, "editor", at=T0 + i)
        others.append(key)  # position i
    engine = SyncEngine(state.doc_id, KEY, YDocAdapter(Doc()), owner)
    engine.log = state
    return engine, others


def test_beyond_64_authors_the_highest_clocks_then_the_lowest_positions():
    engine, others = _engine_with_log(70)
    assert engine.write_heads  # forced on in a document with a log
    stranger = person(99).public_key_b64  # no position: named by key (none in practice)
    clocks = {k: 5 for k in others}
    clocks[others[69]] = 9  # position 70: named for its higher clock
    clocks[stranger] = 5
    clocks[engine.pub_key] = 50  # ours: never named
    active = KnownSnapshot("s", "h", "p", update_clocks=clocks)
    heads = engine._heads(active)
    assert len(heads) == MAX_HEADS
    # clock 9, then clock 5 by position (1..63); positions 64..69 and the stranger wait
    assert set(heads) == {others[69], *others[:63]}
    # (pubKey order, the rule without positions, would pick another set here)
    named = [kv for kv in clocks.items() if kv[0] != engine.pub_key]
    by_key = sorted(named, key=lambda kv: (-kv[1], kv[0]))[:MAX_HEADS]
    assert {k for k, _ in by_key} != set(heads)
    written = engine._heads_json(heads)
    assert written == {str(i + 1): 5 for i in range(63)} | {"70": 9}


def test_an_author_without_a_position_is_named_by_key():
    engine, others = _engine_with_log(2)
    stranger = person(99).public_key_b64
    written = engine._heads_json({others[1]: 3, stranger: 4})
    assert written == {"2": 3, "clocks": {stranger: 4}}
    assert engine._heads_json({stranger: 4}) == {"clocks": {stranger: 4}}


def test_without_a_log_heads_name_authors_by_key():
    owner = person(0)
    engine = SyncEngine("plain-doc", KEY, YDocAdapter(Doc()), owner, write_heads=True)
    other = person(1).public_key_b64
    active = KnownSnapshot("s", "h", "p", update_clocks={other: 2})
    assert engine._heads_json(engine._heads(active)) == {"clocks": {other: 2}}


def test_the_one_pass_members_check_answers_as_the_two_steps():
    """``_missing_members`` (dicts as parsed from JSON, in one pass) gives what resolving the
    positions (``_by_position``) and then ``_missing`` give, for every shape of heads."""
    from collections import OrderedDict

    engine, others = _engine_with_log(4)  # positions: 0 us, 1..4 others
    active = KnownSnapshot("s", "h", "p", update_clocks={others[0]: 3, others[1]: 0})
    engine.snapshots.append(active)  # our own clock: the one we sent
    engine.local_clock = 2
    shapes = [
        {},
        {"1": 3},
        {"1": 4},
        {"1": 4, "2": 1, "3": 0, "4": 7},
        {"0": 2},  # us: sent
        {"0": 5},  # us: never sent
        {"2": 5},  # the writer (skip)
        {"01": 9, "1.0": 9, " 1": 9, "-1": 9, "9": 9},
        {"3": "1", "4": -1, "1": True, "2": 1.5, "0": None},
        {"4": 2},  # beyond the update's logHead (3)
        {"1": 4, "clocks": {"x": 1}, "log": {"seq": 0}},
        OrderedDict([("1", 9), ("3", 1)]),
        ["1"],
        "1",
        None,
    ]
    for named in shapes:
        for log_seq in (3, 4):
            skip = others[1]
            resolved = engine._by_position(named, log_seq)
            two_steps = engine._missing(active, resolved, skip) if resolved else []
            assert engine._missing_members(active, named, skip, log_seq) == two_steps, named
    assert engine._missing_members(active, {"1": 4, "3": 1}, others[1], 4) == [
        (others[0], 4, 3),
        (others[2], 1, -1),
    ]
