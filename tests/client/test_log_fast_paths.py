"""The fast paths of verifying a membership log (issue 11's speed goal) give exactly the
results of the plain ones: the inline ``parse_entry`` against the plain form it replaced
(every entry of the vectors, mutated field by field: same Entry or same error, code, field
and message), ``precheck.verify_signatures_chunk`` (libsodium called directly) against
``verify_detached``, and the client's signature checks (this thread + verify pool, worker
processes, results consumed lazily) against one-by-one verification, error indexes included."""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secsync_jupyter.client import precheck
from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.crypto import verify_detached
from secsync_jupyter.protocol.encoding import b64decode_checked, b64encode
from secsync_jupyter.protocol.identity import check_display_name
from secsync_jupyter.protocol.ids import is_doc_id
from secsync_jupyter.protocol.membership import (
    _DOMAIN_BYTES,
    _EPOCH_KINDS,
    _EXTRA_NAMES,
    _FIELDS,
    _RANK,
    LOG_FORMAT_VERSION,
    PUBLIC_KEY_BYTES,
    ROLES,
    ROOT_NONCE_BYTES,
    SIGNATURE_BYTES,
    Entry,
    MembershipError,
    _b64,
    _canonical,
    _err,
    _get,
    _int,
    _parse_extra,
    _utf16_key,
    _utf16_prefix,
    create_entry,
    create_log,
    parse_entry,
    verify_log,
)

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors"


def plain_parse_entry(obj):
    """``parse_entry`` as it was written before the inline fast path (commit 6678cde)."""
    if isinstance(obj, Entry):
        obj = obj.to_json()
    if type(obj) is not dict:
        raise _err(701, "entry", "expected a JSON object")
    if "v" not in obj:
        raise _err(701, "v", "missing field")
    if _int(obj["v"], "v") != LOG_FORMAT_VERSION:
        raise _err(702, "v")
    kind = obj.get("kind")
    if type(kind) is not str:
        raise _err(701, "kind", "missing field" if kind is None else "expected a string")
    spec = _FIELDS.get(kind)
    if spec is None:
        raise _err(703, "kind")
    required, allowed = spec
    if len(obj) > len(allowed) or not allowed.issuperset(obj):
        unknown = [k for k in obj if k not in allowed]
        if unknown:
            raise _err(701, _utf16_prefix(min(unknown, key=_utf16_key), 64), "unknown field")
    create = kind == "create"
    doc_id = _get(obj, "docId", required)
    if doc_id is not None and not is_doc_id(doc_id):
        raise _err(701, "docId", "expected a document id")
    seq = _int(_get(obj, "seq", required), "seq")
    if (seq == 0) != create:
        raise _err(701, "seq", "0 for create, at least 1 for any other kind")
    prev = _get(obj, "prev", required)
    if create:
        if prev != "":
            raise _err(701, "prev", 'must be "" for create')
    else:
        _b64(prev, "prev", 32)
    signer = _b64(_get(obj, "signer", required), "signer", PUBLIC_KEY_BYTES)
    target = _get(obj, "target", required)
    if target is not None:
        _b64(target, "target", PUBLIC_KEY_BYTES)
    role = _get(obj, "role", required)
    if role is not None and (type(role) is not str or role not in _RANK):
        raise _err(701, "role", "expected one of " + ", ".join(ROLES))
    name = obj.get("name")
    if name is not None or "name" in obj:
        reason = check_display_name(name)
        if reason:
            raise _err(701, "name", reason)
    nonce = _get(obj, "nonce", required)
    if nonce is not None:
        _b64(nonce, "nonce", ROOT_NONCE_BYTES)
    extra = None
    if kind in _EPOCH_KINDS:
        extra = _parse_extra(obj, kind, required)
    at = _int(_get(obj, "at", required), "at")
    signature = _b64(_get(obj, "signature", required), "signature", SIGNATURE_BYTES)
    fields = (kind, seq, prev, signer, at, doc_id, target, role, name, nonce)
    unsigned, full = _canonical(*fields, signature, extra)
    digest = hashlib.blake2b(full, digest_size=32).digest()
    signed = _DOMAIN_BYTES + unsigned
    entry = Entry(
        *fields[:5], signature, *fields[5:], LOG_FORMAT_VERSION, b64encode(digest), signed
    )
    if extra is not None:
        entry = entry._replace(**dict(zip(_EXTRA_NAMES, extra, strict=True)))
    return entry


def _outcome(parse, obj):
    try:
        entry = parse(obj)
    except MembershipError as exc:
        return ("error", type(exc), exc.code, exc.field, str(exc))
    return ("entry", tuple(entry), tuple(type(x) for x in entry))


def _vector_entries() -> list[dict]:
    out = []
    for name in ("membership-vectors.json", "epoch-vectors.json"):
        data = json.loads((VECTORS / name).read_text())
        for group in ("validLogs", "invalidLogs"):
            for case in data[group]:
                out.extend(e for e in case["log"] if isinstance(e, dict))
    return out


ENTRIES = _vector_entries()
FIELD_NAMES = sorted({k for e in ENTRIES for k in e} | {"docid", "extra", "\u00e9t\u00e9"})
_B64_32 = ENTRIES[0]["signer"]
ODD_VALUES = [
    None,
    0,
    1,
    -1,
    1.0,
    1.5,
    2,
    True,
    False,
    2**53,
    2**53 - 1,
    float(2**53),
    "",
    "1",
    "admin",
    "editor",
    "x",
    " name",
    "a\u202eb",
    "\u00e9" * 60,
    _B64_32,
    _B64_32[:-1] + "B",
    _B64_32 + "A",
    "A" * 86,
    "A" * 85 + "Q",
    "A" * 85 + "B",
    "A" * 32,
    "m1_" + _B64_32,
    "create",
    "add-member",
    "rotate-key",
    "add-link",
    [],
    {},
    [1],
]


def test_every_vector_entry_parses_as_before():
    assert len(ENTRIES) > 150
    for obj in ENTRIES:
        assert _outcome(parse_entry, obj) == _outcome(plain_parse_entry, obj), obj


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(ENTRIES),
    changes=st.lists(
        st.tuples(
            st.sampled_from(FIELD_NAMES),
            st.one_of(st.just("delete"), st.sampled_from(ODD_VALUES), st.integers(-3, 2**54)),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_entries_parse_as_before(base, changes):
    """Same Entry (every field, hash and signed bytes, same types) or the same error (class,
    code, field, message) for entries with fields deleted, nulled or of another type."""
    obj = dict(base)
    for name, value in changes:
        if value == "delete":
            obj.pop(name, None)
        else:
            obj[name] = value
    assert _outcome(parse_entry, obj) == _outcome(plain_parse_entry, obj)


def test_non_objects_and_entries_parse_as_before():
    entry = plain_parse_entry(ENTRIES[0])
    for obj in (None, [], "entry", 1, entry, entry._replace(seq=3), entry._replace(v=2)):
        assert _outcome(parse_entry, obj) == _outcome(plain_parse_entry, obj)


def _items(n: int = 40) -> list[tuple[bytes, bytes, bytes]]:
    keys = [SigningKeyPair.from_seed(bytes([i + 1]) * 32) for i in range(3)]
    items = []
    for i in range(n):
        key = keys[i % 3]
        msg = f"message {i} ".encode() * (i % 7 + 1)
        items.append((key.sign(msg), msg, key.public_key))
    return items


def test_verify_signatures_chunk_answers_as_verify_detached():
    items = _items()
    sig, msg, pk = items[0]
    other_sig, _, other_pk = items[1]
    cases = [
        *items,
        (other_sig, msg, pk),  # another message's signature
        (sig, msg + b"!", pk),  # the message changed
        (sig, msg, other_pk),  # another key
        (sig[:-1] + bytes([sig[-1] ^ 1]), msg, pk),
        (sig[:63], msg, pk),  # too short
        (sig + b"\0", msg, pk),  # too long
        (sig, msg, pk[:31]),
        (sig, msg, pk + b"\0"),
        (b"\0" * 64, b"", b"\0" * 32),
        (bytes(64), msg, bytes(32)),
        (sig, b"", pk),
    ]
    expected = [verify_detached(*c) for c in cases]
    got = precheck.verify_signatures_chunk(cases)
    assert got == expected
    assert [type(ok) for ok in got] == [bool] * len(cases)
    assert expected[: len(items)] == [True] * len(items)
    assert expected[len(items) :] == [False] * (len(cases) - len(items))
    assert precheck.verify_signatures_chunk([]) == []
    # the chunk's output buffer is sized for its longest message
    long = (items[0][0], items[0][1], items[0][2])
    big_msg = b"x" * 100_000
    big = (SigningKeyPair.from_seed(b"b" * 32).sign(big_msg), big_msg, b"")
    assert precheck.verify_signatures_chunk([long, big]) == [True, False]


def _long_log(n: int):
    admin = SigningKeyPair.from_seed(b"o" * 32)
    root, state = create_log(admin, name="Owner", at=1)
    log = [root.to_json()]
    people = [SigningKeyPair.from_seed(i.to_bytes(32, "big")) for i in range(1, 20)]
    i = 0
    while len(log) < n:
        person = people[i % len(people)]
        if not state.is_member(person.public_key_b64):
            entry, state = create_entry(
                state, admin, "add-member", person.public_key_b64, "editor", at=2 + i
            )
        else:
            role = "viewer" if state.role(person.public_key_b64) == "editor" else "editor"
            entry, state = create_entry(
                state, admin, "set-role", person.public_key_b64, role, at=2 + i
            )
        log.append(entry.to_json())
        i += 1
    return json.loads(json.dumps(log)), state.doc_id


def _lazy(items):
    """A check answering through a generator (as the worker-process path does)."""
    return (verify_detached(*x) for x in items)


def _error(log, doc_id, check):
    try:
        return ("state", verify_log(log, doc_id, check_signatures=check).to_json())
    except MembershipError as exc:
        return ("error", exc.code, exc.index, exc.field)


def _damaged(log, doc_id):
    """Logs with bad signatures, malformed entries and entries out of order (validly signed:
    a chain error), alone and together, in the first and the second half."""
    n = len(log)

    def forged(d, i):
        d[i] = {**d[i], "signature": log[1]["signature"]}

    def malformed(d, i):
        d[i] = {**d[i], "seq": "one"}

    def swapped(d, i):  # 709 at i (its signature is valid)
        d[i], d[i + 1] = d[i + 1], d[i]

    for spots in (
        {5: forged},
        {n - 3: forged},
        {n - 3: malformed},
        {7: malformed, 9: forged},
        {9: malformed, 7: forged},
        {n // 2 + 1: forged, n - 2: malformed},
        {4: swapped},
        {4: swapped, 3: forged},
        {4: swapped, 6: forged, n - 1: malformed},
        {n // 2: swapped, n - 2: forged},
        {n - 1: forged},
        {0: forged},
    ):
        damaged = list(log)
        for index, change in spots.items():
            change(damaged, index)
        yield damaged


@pytest.mark.parametrize("n", [precheck.LOG_PARALLEL_THRESHOLD - 1, 300])
def test_client_checks_give_the_one_by_one_results(n):
    """The client's default check (pool not running: this thread + the verify pool), the
    verify threads and a lazily consumed check: same state, same error, index and field."""
    log, doc_id = _long_log(n)
    precheck._reset_process_pool()  # e.g. started by test_fast_paths.py's large frames
    assert precheck._running_pool() is None
    checks = (precheck.check_signatures_in_processes, precheck.check_signatures_in_threads, _lazy)
    expected = _error(log, doc_id, None)
    assert expected[0] == "state" and expected[1]["head"]["seq"] == n - 1
    assert all(_error(log, doc_id, check) == expected for check in checks)
    for damaged in _damaged(log, doc_id):
        expected = _error(damaged, doc_id, None)
        assert expected[0] == "error"
        for check in checks:
            assert _error(damaged, doc_id, check) == expected, (check, expected)


def test_a_lazy_check_must_answer_every_entry_once():
    log, doc_id = _long_log(12)
    for wrong in (lambda items: iter([True] * 11), lambda items: iter([True] * 13)):
        with pytest.raises(ValueError, match="wrong number of results"):
            verify_log(log, doc_id, check_signatures=wrong)
    # a generator's results are taken as the entries are applied: a failure in the first
    # entries is reported before the rest are asked for
    asked = []

    def counting(items):
        for i, item in enumerate(items):
            asked.append(i)
            yield i != 3 and verify_detached(*item)

    with pytest.raises(MembershipError) as info:
        verify_log(log, doc_id, check_signatures=counting)
    assert (info.value.code, info.value.index) == ("SECSYNC_ERROR_704", 3)
    assert asked == [0, 1, 2, 3]


def test_worker_processes_results_in_order_and_the_pool_replaced_when_broken():
    """``check_signatures_in_processes`` with the (real, spawned) workers warm answers as one
    by one for damaged logs too, and the first part's error is found without the workers."""
    import time

    log, doc_id = _long_log(precheck.LOG_PROCESS_THRESHOLD + 40)
    precheck.warm_process_pool()
    try:
        deadline = time.monotonic() + 60
        while precheck._running_pool() is None:
            assert time.monotonic() < deadline, "the worker processes did not start"
            time.sleep(0.02)
        check = precheck.check_signatures_in_processes
        items = [
            (
                b64decode_checked(e["signature"]),
                parse_entry(e).signed_bytes,
                b64decode_checked(e["signer"]),
            )
            for e in log
        ]
        answer = check(items)
        assert not isinstance(answer, list)  # an iterator: the workers' part still coming
        assert list(answer) == [True] * len(items)
        assert _error(log, doc_id, check) == _error(log, doc_id, None)
        for damaged in _damaged(log, doc_id):
            assert _error(damaged, doc_id, check) == _error(damaged, doc_id, None)
    finally:
        precheck._reset_process_pool()


def test_threads_take_chunks_in_turn_results_in_order_busy_pool_not_waited_for():
    """check_signatures_in_threads: chunks taken in turn by this thread and the verify pool,
    answers in item order (a forged item in a middle chunk and in the short last one); with
    every verify thread busy elsewhere this thread checks everything itself and returns."""
    import threading

    items = _items(301)
    items[150] = (items[151][0], items[150][1], items[150][2])
    items[300] = (items[300][0], items[300][1] + b"!", items[300][2])
    expected = [verify_detached(*x) for x in items]
    assert expected.count(False) == 2
    assert precheck.check_signatures_in_threads(items) == expected
    pool = precheck.verify_pool()
    gate = threading.Event()
    blockers = [pool.submit(gate.wait) for _ in range(precheck._workers())]
    try:
        answer: list = []
        checker = threading.Thread(
            target=lambda: answer.append(precheck.check_signatures_in_threads(items))
        )
        checker.start()
        checker.join(60)  # bounded: it must not wait for the busy pool
        assert answer == [expected]
    finally:
        gate.set()
        for blocker in blockers:
            blocker.result()
