"""Property tests: round trips, single-byte tampering, parsing arbitrary JSON."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secsync_jupyter import protocol as p

KEY = p.generate_key()
ALICE = p.SigningKeyPair.from_seed(bytes(range(32)))
DOC = "doc-" + p.generate_id()
SNAP = p.generate_id()

json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
extra_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
extras = st.dictionaries(
    st.text().filter(lambda k: k not in {"docId", "pubKey", "refSnapshotId", "clock"}),
    extra_values,
    max_size=3,
)
settings.register_profile("ci", max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@given(content=st.binary(max_size=2000), extra=extras, clock=st.integers(0, 2**53 - 2))
def test_update_round_trip(content, extra, clock):
    pd = {**extra, "docId": DOC, "pubKey": ALICE.public_key_b64, "refSnapshotId": SNAP}
    update = p.create_update(content, pd, KEY, ALICE, clock)
    again = p.Update.from_json(json.loads(json.dumps(update.to_json())))
    out = p.verify_and_decrypt_update(again, KEY, SNAP, clock - 1, current_doc_id=DOC)
    assert out == content
    assert dict(again.public_data.raw) == {**pd, "clock": clock}


@given(content=st.binary(max_size=2000), extra=extras)
def test_snapshot_round_trip(content, extra):
    pd = {**extra, "docId": DOC, "pubKey": ALICE.public_key_b64, "snapshotId": SNAP}
    snap = p.create_initial_snapshot(content, pd, KEY, ALICE)
    again = p.Snapshot.from_json(json.loads(json.dumps(snap.to_json())))
    assert p.verify_and_decrypt_snapshot(again, KEY, DOC, ALICE.public_key_b64) == content


@given(content=st.binary(max_size=500), counter=st.integers(0, 2**32 - 1))
def test_ephemeral_round_trip(content, counter):
    sid = p.generate_id()
    pd = {"docId": DOC, "pubKey": ALICE.public_key_b64}
    msg = p.create_ephemeral_message(content, "message", pd, KEY, ALICE, sid, counter)
    res = p.verify_and_decrypt_ephemeral_message(
        msg,
        KEY,
        DOC,
        p.generate_id(),
        {ALICE.public_key_b64: {"sessionId": sid, "sessionCounter": counter - 1}},
        ALICE,
    )
    assert res.content == content


def _flip(b64: str, index: int) -> str:
    raw = bytearray(p.b64decode(b64))
    raw[index % len(raw)] ^= 1 << (index % 8)
    return p.b64encode(bytes(raw))


_UPDATE = p.create_update(
    b"x" * 100,
    {"docId": DOC, "pubKey": ALICE.public_key_b64, "refSnapshotId": SNAP},
    KEY,
    ALICE,
    0,
)
_SNAPSHOT = p.create_initial_snapshot(
    b"s" * 100, {"docId": DOC, "pubKey": ALICE.public_key_b64, "snapshotId": SNAP}, KEY, ALICE
)
_EPH_SID = p.generate_id()
_EPH = p.create_ephemeral_message(
    b"cursor", "message", {"docId": DOC, "pubKey": ALICE.public_key_b64}, KEY, ALICE, _EPH_SID, 9
)


def _tamper(message, field: str, index: int):
    wire = message.to_json()
    if field == "publicData":
        canon = bytearray(p.canonicalize(wire["publicData"]))
        canon[index % len(canon)] ^= 1 << (index % 7)
        try:
            wire["publicData"] = json.loads(canon.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None  # no longer JSON: rejected at the frame level, not a message
    else:
        wire[field] = _flip(wire[field], index)
    return wire


def _verify_update(wire):
    u = p.Update.from_json(wire)
    return p.verify_and_decrypt_update(u, KEY, SNAP, -1, current_doc_id=DOC)


def _verify_snapshot(wire):
    return p.verify_and_decrypt_snapshot(p.Snapshot.from_json(wire), KEY, DOC)


def _verify_ephemeral(wire):
    session = p.EphemeralSession(DOC, KEY, ALICE)
    session.peers[ALICE.public_key_b64] = p.ephemeral._PeerState(_EPH_SID, 8)
    return session.receive(p.EphemeralMessage.from_json(wire)).content


@pytest.mark.parametrize(
    "message,verify,code,family",
    [
        (_UPDATE, _verify_update, "SECSYNC_ERROR_212", p.UpdateError),
        (_SNAPSHOT, _verify_snapshot, "SECSYNC_ERROR_111", p.SnapshotError),
        (_EPH, _verify_ephemeral, "SECSYNC_ERROR_308", p.EphemeralError),
    ],
)
@given(
    field=st.sampled_from(["nonce", "ciphertext", "publicData", "signature"]),
    index=st.integers(0, 10_000),
)
def test_single_byte_tamper_is_rejected(message, verify, code, family, field, index):
    assert verify(message.to_json()) is not None  # the untampered message verifies
    wire = _tamper(message, field, index)
    if wire is None:
        return
    with pytest.raises(family) as info:
        verify(wire)
    # the signature covers nonce, ciphertext and publicData: its check fails first,
    # unless the flipped publicData no longer parses (then the parse error names the field)
    if isinstance(info.value, p.ParseError):
        assert info.value.field
    else:
        assert info.value.code == code


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def _mutations(base: dict):
    keys = ["nonce", "ciphertext", "publicData", "signature"]
    return st.builds(
        lambda k, v, drop: {kk: vv for kk, vv in {**base, k: v}.items() if kk != drop},
        st.sampled_from(keys),
        json_values,
        st.sampled_from([*keys, None]),
    )


@given(value=json_values | _mutations(_UPDATE.to_json()) | _mutations(_SNAPSHOT.to_json()))
def test_parsing_arbitrary_json_raises_only_protocol_errors(value):
    for cls in (p.Snapshot, p.Update, p.EphemeralMessage, p.SnapshotProofChainEntry):
        try:
            cls.from_json(value)
        except p.ProtocolError as exc:
            assert exc.code or isinstance(exc, p.ParseError)
    try:
        p.parse_snapshot_proof_chain(value)
    except p.ProtocolError:
        pass


@given(text=st.text() | st.binary().map(lambda b: b.decode("latin-1")))
def test_parse_text_raises_only_protocol_errors(text):
    for cls in (p.Snapshot, p.Update, p.EphemeralMessage):
        with pytest.raises(p.ParseError):
            cls.parse(text)


def test_deeply_nested_public_data_is_a_parse_error():
    wire = _UPDATE.to_json()
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    wire["publicData"] = {**wire["publicData"], "x": deep}
    with pytest.raises(p.UpdateParseError):
        p.Update.from_json(wire)
    with pytest.raises(p.UpdateParseError):
        p.Update.parse("[" * 100_000 + "]" * 100_000)


@given(data=st.binary(max_size=64))
def test_base64_round_trip_and_strictness(data):
    text = p.b64encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert p.b64decode(text) == data
    for bad in (text + "=", text.replace("-", "+") + "+", text + "!"):
        if bad != text:
            with pytest.raises(p.EncodingError):
                p.b64decode(bad)


def test_base64_fixed_length_and_trailing_bits():
    with pytest.raises(p.EncodingError, match="expected 32 bytes"):
        p.b64decode(p.b64encode(b"x" * 31), field="pubKey", length=32)
    with pytest.raises(p.EncodingError):
        p.b64decode("AB")  # one byte but trailing bits set (canonical is "AA"/"AQ"...)
    with pytest.raises(p.EncodingError):
        p.b64decode("A")  # impossible length


def test_parse_errors_name_the_field():
    wire = _UPDATE.to_json()
    cases = {
        "publicData.clock": {**wire, "publicData": {**wire["publicData"], "clock": -1}},
        "nonce": {**wire, "nonce": "abc="},
        "ciphertext": {**wire, "ciphertext": 5},
        "publicData.refSnapshotId": {
            **wire,
            "publicData": {k: v for k, v in wire["publicData"].items() if k != "refSnapshotId"},
        },
    }
    for field, bad in cases.items():
        with pytest.raises(p.UpdateParseError) as info:
            p.Update.from_json(bad)
        assert info.value.field == field
        assert info.value.code == "SECSYNC_ERROR_211"
    with pytest.raises(p.UpdateParseError) as info:
        p.Update.from_json({**wire, "publicData": {**wire["publicData"], "clock": 1.5}})
    assert info.value.field == "publicData.clock"
    with pytest.raises(p.UpdateParseError) as info:
        p.Update.from_json({**wire, "publicData": {**wire["publicData"], "clock": True}})
    assert info.value.field == "publicData.clock"


def test_floats_rejected_by_canonicalizer():
    with pytest.raises(p.EncodingError):
        p.canonicalize({"a": 1.0})
    with pytest.raises(p.EncodingError):
        p.canonicalize({"a": 2**53})
