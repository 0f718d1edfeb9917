"""``protocol.encoding.canonicalize`` (fast path: type walk, the C JSON encoder made once, one
ASCII check on its output) gives exactly what the generic path gives — the domain check and
the ``rfc8785`` package — for public data of the shapes our clients write (``logHead``,
``heads``, ``epoch``) and for values around them: non-ASCII (BMP, astral, lone surrogates),
control characters, quotes and backslashes, integers at and beyond ±(2^53-1), floats, tuples,
subclasses, non-string keys. Same bytes, or the same error (an ``EncodingError``)."""

from __future__ import annotations

import enum
from collections import OrderedDict

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from secsync_jupyter.protocol import encoding
from secsync_jupyter.protocol.encoding import (
    MAX_SAFE_INTEGER,
    EncodingError,
    canonicalize,
    canonicalize_b64,
)
from secsync_jupyter.protocol.messages import Update

ERROR = "error"


def generic(value):
    """The generic path alone (what ``canonicalize`` did for every value before its fast path)."""
    try:
        encoding._check_domain(value, "value")
        return rfc8785.dumps(value)
    except (EncodingError, rfc8785.CanonicalizationError, UnicodeError, ValueError, TypeError):
        return ERROR


def fast(value):
    try:
        return canonicalize(value)
    except EncodingError:
        return ERROR


b64ish = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=44
)
edge_text = st.text(
    alphabet=st.sampled_from(
        [
            *'\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f "\\/\x7f\x80\xa0éÖ\u2028\u2029\ufeff\uffff',
            *("\U0001f600", "\ud800", "\udfff", "a", "Z", "0"),
        ]
    ),
    max_size=12,
)
texts = b64ish | edge_text | st.text(max_size=12)
ints = (
    st.integers(-MAX_SAFE_INTEGER - 2, -MAX_SAFE_INTEGER + 2)
    | st.integers(MAX_SAFE_INTEGER - 2, MAX_SAFE_INTEGER + 2)
    | st.integers(-(2**70), 2**70)
    | st.integers(-5, 5000)
)
scalars = st.none() | st.booleans() | ints | texts | st.floats(allow_nan=True)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(texts, inner, max_size=4)
        | st.dictionaries(st.integers(0, 3) | st.booleans() | st.none(), inner, max_size=2)
    ),
    max_leaves=16,
)


def log_head(seq, hash_):
    return {"seq": seq, "hash": hash_}


public_data = st.fixed_dictionaries(
    {
        "docId": texts,
        "pubKey": b64ish,
        "refSnapshotId": texts,
        "clock": ints,
    },
    optional={
        "logHead": st.builds(log_head, ints | st.floats(), b64ish | texts) | values,
        "heads": st.fixed_dictionaries({"clocks": st.dictionaries(b64ish | texts, ints)}) | values,
        "epoch": ints,
        "extra": values,
    },
)


@settings(max_examples=1500, deadline=None)
@given(public_data)
def test_public_data_same_bytes_or_same_error(pd):
    assert fast(pd) == generic(pd)


@settings(max_examples=1500, deadline=None)
@given(values)
def test_any_value_same_bytes_or_same_error(value):
    assert fast(value) == generic(value)


class Key(str):
    pass


class Number(int):
    pass


class Colour(enum.IntEnum):
    RED = 1


def test_edge_values():
    cases = [
        {"a": '\x00\x1f\x7f"\\/'},
        {"\x7f": 1, "\x00": 2, "~": 3, "": 4},
        {"k": "é"},
        {"é": 1, "e": 2},
        {"\U0001f600": 1, "\uffff": 2},  # UTF-16 order differs from code point order
        {"k": "\ud800"},  # lone surrogate: not UTF-8
        {"n": MAX_SAFE_INTEGER, "m": -MAX_SAFE_INTEGER},
        {"n": MAX_SAFE_INTEGER + 1},
        {"n": -MAX_SAFE_INTEGER - 1},
        {"n": 2**64},
        {"f": 1.0},
        {"f": float("nan")},
        {"t": (1, 2)},
        {1: "int key"},
        {None: "null key"},
        {True: "bool key"},
        {Key("k"): "str subclass key"},
        {"k": Key("v")},
        {"k": Number(3)},
        {"k": Colour.RED},
        OrderedDict(b=1, a=2),
        {"k": OrderedDict(b=1, a=2)},
        {"k": object()},
        {"k": b"bytes"},
        {"logHead": {"seq": 2, "hash": "x" * 43}, "heads": {"clocks": {}}, "clock": 0},
        "\U0001f600",
        "plain",
        5,
        True,
        None,
        [],
        {},
        [[[[{"a": [1, {"b": None}]}]]]],
    ]
    for value in cases:
        assert fast(value) == generic(value), value
    assert canonicalize({"k": "é"}) == '{"k":"é"}'.encode()
    assert fast({"n": MAX_SAFE_INTEGER + 1}) == ERROR
    assert fast({1: "int key"}) == ERROR


def test_deep_and_circular_values_still_raise_or_encode_alike():
    deep: list = []
    cur = deep
    for _ in range(5000):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    try:
        canonicalize(deep)
    except (EncodingError, RecursionError):
        pass
    loop: dict = {}
    loop["self"] = loop
    try:
        canonicalize(loop)
    except (EncodingError, RecursionError):
        pass
    else:  # pragma: no cover
        raise AssertionError("a circular value was canonicalized")


def test_message_parse_uses_the_same_canonical_public_data():
    """A parsed update's ``public_data_b64`` is the generic path's, for public data with
    logHead, heads and non-ASCII extras (the signature and AEAD cover exactly these bytes)."""
    from secsync_jupyter.protocol import SigningKeyPair, create_update

    keypair = SigningKeyPair.from_seed(bytes(32))
    key = bytes(range(32))
    extras = [{}, {"note": "Zürich ☃ \U0001f600"}, {"ctl": "\x00\x1f"}]
    for extra in extras:
        pd = {
            "docId": "doc",
            "pubKey": keypair.public_key_b64,
            "refSnapshotId": "s",
            "logHead": {"seq": 3, "hash": "h" * 43},
            "heads": {"clocks": {"a" * 43: 7}},
            **extra,
        }
        update = create_update(b"x", pd, key, keypair, 5)
        parsed = Update.from_json(update.to_json())
        expected = encoding.b64encode(rfc8785.dumps({**pd, "clock": 5}))
        assert parsed.public_data_b64 == expected == canonicalize_b64({**pd, "clock": 5})
