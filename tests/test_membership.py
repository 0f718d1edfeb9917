"""The membership log core (secsync_jupyter.protocol.membership / .identity) against the
cross-language vectors (tests/vectors/membership-vectors.json, also run by
labextension/test/membership.test.ts) and its own rules."""

from __future__ import annotations

import copy
import json

import nacl.bindings as sodium
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from secsync_jupyter.protocol import ERROR_MESSAGES
from secsync_jupyter.protocol.crypto import SigningKeyPair, verify_detached
from secsync_jupyter.protocol.encoding import b64decode, b64encode
from secsync_jupyter.protocol.identity import (
    Identity,
    IdentityError,
    box_public_key,
    box_secret_key,
    check_display_name,
    fingerprint,
    format_identity,
    parse_identity,
)
from secsync_jupyter.protocol.membership import (
    Entry,
    LogHead,
    MembershipError,
    MembershipParseError,
    create_entry,
    create_log,
    create_reader_proof,
    doc_id_of_root,
    extend_log,
    is_log_doc_id,
    new_reader_challenge,
    parse_entry,
    parse_log_head,
    verify_entry,
    verify_log,
    verify_reader_proof,
)

from .vector_files import by_name, check_up_to_date, error_of, load

V = load("membership-vectors.json")


def _keypair(name: str) -> SigningKeyPair:
    return SigningKeyPair.from_seed(bytes.fromhex(V["keys"][name]["seed"]))


def test_vectors_file_is_up_to_date():
    check_up_to_date("membership-vectors.json", "make_membership_vectors")


def test_vectors_cover_every_log_rule():
    codes = {c["error"]["code"] for c in V["invalidLogs"]}
    expected = {f"SECSYNC_ERROR_{n}" for n in (*range(701, 719),)}
    assert codes == expected
    assert len(V["invalidLogs"]) >= 80


# --- valid logs -------------------------------------------------------------------------


@by_name(V["validLogs"])
def test_valid_log(case):
    state = verify_log(case["log"], case["docId"])
    assert state.to_json()["members"] == case["expect"]["members"]
    assert state.head.to_json() == case["expect"]["head"]
    assert state.doc_id == case["docId"]
    assert doc_id_of_root(case["log"][0]) == case["docId"]
    assert is_log_doc_id(case["docId"])


@by_name([c for c in V["validLogs"] if "entries" in c])
def test_valid_log_intermediates(case):
    for raw, expected in zip(case["log"], case["entries"], strict=True):
        entry = parse_entry(raw)
        assert entry.hash == expected["hash"]
        assert entry.signed_bytes == expected["signed"].encode("utf-8")
        assert entry.to_json() == raw


@by_name([c for c in V["validLogs"] if "steps" in c])
def test_entries_are_recreated_byte_for_byte(case):
    """Ed25519 is deterministic: the same steps make the same entries (same bytes signed)."""
    entries, state = [], None
    for step in case["steps"]:
        kp = _keypair(step["signer"])
        if step["op"] == "create":
            entry, state = create_log(
                kp, name=step["name"], at=step["at"], nonce=b64decode(step["nonce"])
            )
        else:
            target = V["keys"][step["target"]]["pubKey"]
            entry, state = create_entry(
                state, kp, step["op"], target, step["role"], name=step["name"], at=step["at"]
            )
        entries.append(entry.to_json())
    assert entries == case["log"]


@by_name([c for c in V["validLogs"] if len(c["log"]) > 1])
def test_valid_log_incrementally(case):
    """verify_entry one by one and extend_log on a prefix give the same state."""
    log = case["log"]
    state = verify_log(log[:1], case["docId"])
    for raw in log[1:]:
        state = verify_entry(state, raw)
    assert state.to_json() == verify_log(log, case["docId"]).to_json()
    half = len(log) // 2
    extended = extend_log(verify_log(log[:half], case["docId"]), log[half:])
    assert extended.to_json() == state.to_json()
    bulk = extend_log(verify_log(log[:half], case["docId"]), log[half:], check_signatures=_bulk)
    assert bulk.to_json() == state.to_json()
    assert extend_log(state, []) is state


# --- rejections -------------------------------------------------------------------------


def _known(case):
    return LogHead(**case["knownHead"]) if "knownHead" in case else None


def _bulk(items):
    """A check_signatures function (what a driver would spread over threads)."""
    return [verify_detached(*item) for item in items]


@by_name(V["invalidLogs"])
@pytest.mark.parametrize("check", [None, _bulk], ids=["one-by-one", "bulk-signatures"])
def test_invalid_log(case, check):
    with pytest.raises(MembershipError) as info:
        verify_log(case["log"], case["docId"], known_head=_known(case), check_signatures=check)
    exc = info.value
    assert {"code": exc.code, "index": exc.index, "field": exc.field} == case["error"]
    assert exc.code in ERROR_MESSAGES
    assert isinstance(exc, MembershipParseError) == (exc.code == "SECSYNC_ERROR_701")


def test_bulk_signature_check_must_answer_every_entry():
    case = V["validLogs"][0]
    assert verify_log(case["log"], case["docId"], check_signatures=_bulk).head.seq == 7
    with pytest.raises(ValueError):
        verify_log(case["log"], case["docId"], check_signatures=lambda items: [True])


@by_name([c for c in V["invalidLogs"] if (c["error"]["index"] or 0) > 0])
def test_invalid_entry_incrementally(case):
    """The relay's path: the prefix is accepted, the bad entry is refused with the same code,
    and the state it was checked against is unchanged."""
    index = case["error"]["index"]
    state = verify_log(case["log"][:index], case["docId"])
    before = state.to_json()
    with pytest.raises(MembershipError) as info:
        verify_entry(state, case["log"][index])
    assert error_of(info.value) == {k: case["error"][k] for k in ("code", "field")}
    assert info.value.index is None
    assert state.to_json() == before
    root_only = verify_log(case["log"][:1], case["docId"])
    with pytest.raises(MembershipError) as info:
        extend_log(root_only, case["log"][1:])
    assert (info.value.code, info.value.index) == (case["error"]["code"], index - 1)


def test_entries_are_not_accepted_across_documents_even_when_identical_in_shape():
    a = _keypair("A")
    _, s1 = create_log(a, at=1, nonce=bytes(24))
    _, s2 = create_log(a, at=1, nonce=bytes([1]) * 24)
    assert s1.doc_id != s2.doc_id
    entry, _ = create_entry(s1, a, "add-member", _keypair("B").public_key, "viewer", at=2)
    with pytest.raises(MembershipError) as info:
        verify_entry(s2, entry.to_json())
    assert info.value.code == "SECSYNC_ERROR_705"


# --- identities and box keys -------------------------------------------------------------


@pytest.mark.parametrize("case", V["identities"]["valid"], ids=lambda c: c["text"][-20:])
def test_identity_valid(case):
    ident = parse_identity(case["text"])
    assert ident == Identity(case["pubKey"], case["name"])
    assert format_identity(case["pubKey"], case["name"]) == case["text"]
    assert str(ident) == case["text"]
    assert ident.fingerprint.replace(" ", "") == case["fingerprint"]


def test_identity_surrounding_whitespace_is_ignored():
    case = V["identities"]["whitespace"]
    assert parse_identity(case["text"]) == Identity(case["pubKey"], case["name"])


@by_name(V["identities"]["invalid"])
def test_identity_invalid(case):
    with pytest.raises(IdentityError) as info:
        parse_identity(case["text"])
    assert error_of(info.value) == case["error"]


def test_identity_format_refuses_bad_names_and_keys():
    key = _keypair("A").public_key
    for name in ("", " x", "a\u202eb", "x" * 101):
        with pytest.raises(IdentityError):
            format_identity(key, name)
    with pytest.raises(IdentityError):
        format_identity(bytes(32))
    with pytest.raises(IdentityError):
        format_identity(key[:31])


@pytest.mark.parametrize("name", sorted(V["keys"]))
def test_box_keys_are_derived_from_the_signing_key(name):
    kp, expected = _keypair(name), V["keys"][name]
    assert b64encode(box_public_key(kp.public_key)) == expected["boxPublicKey"]
    assert b64encode(box_secret_key(kp)) == expected["boxSecretKey"]
    assert fingerprint(kp.public_key).replace(" ", "") == expected["fingerprint"]
    # what issue 12 does with them: seal an epoch key to a member, the member opens it
    sealed = sodium.crypto_box_seal(b"epoch key", box_public_key(kp.public_key_b64))
    opened = sodium.crypto_box_seal_open(sealed, box_public_key(kp.public_key), box_secret_key(kp))
    assert opened == b"epoch key"


# --- reader proofs ----------------------------------------------------------------------


@by_name(V["readerProofs"]["cases"])
def test_reader_proof(case):
    rp = V["readerProofs"]
    state = None if case.get("withoutState") else verify_log(rp["log"], rp["docId"])
    if "error" in case:
        with pytest.raises(MembershipError) as info:
            verify_reader_proof(case["proof"], rp["docId"], rp["nonce"], state)
        assert error_of(info.value) == case["error"]
    else:
        assert verify_reader_proof(case["proof"], rp["docId"], rp["nonce"], state) == case["result"]


def test_reader_proof_signed_string_and_fresh_challenges():
    rp = V["readerProofs"]
    b = _keypair("B")
    proof = create_reader_proof(b, rp["docId"], rp["nonce"])
    assert proof == rp["cases"][0]["proof"]
    assert sodium.crypto_sign_open(
        b64decode(proof["signature"]) + rp["signed"].encode(), b.public_key
    )
    challenges = {new_reader_challenge() for _ in range(8)}
    assert len(challenges) == 8
    assert all(len(b64decode(c)) == 32 for c in challenges)


# --- log heads --------------------------------------------------------------------------


def test_log_heads():
    for case in V["logHeads"]["valid"]:
        assert parse_log_head(case["value"]).to_json() == case["value"]
    for case in V["logHeads"]["invalid"]:
        with pytest.raises(MembershipParseError) as info:
            parse_log_head(case["value"])
        assert info.value.field == case["field"]


# --- creation, state --------------------------------------------------------------------


def test_create_rules_and_arguments():
    a, b, c = _keypair("A"), _keypair("B"), _keypair("C")
    root, s0 = create_log(a, name="Ada", at=10)
    assert s0.doc_id == "m1_" + root.hash and s0.role(a.public_key_b64) == "admin"
    ident = parse_identity(format_identity(b.public_key, "Bob"))
    e1, s1 = create_entry(s0, a, "add-member", ident, "editor", at=15)
    assert e1.name == "Bob" and e1.at == 15  # the identity's display name
    assert verify_entry(s0, e1) == s1
    with pytest.raises(MembershipError) as info:
        verify_entry(s1, e1)
    assert info.value.code == "SECSYNC_ERROR_708"
    with pytest.raises(MembershipError) as info:
        create_entry(s1, a, "add-member", c.public_key, "viewer", at=14)
    assert info.value.code == "SECSYNC_ERROR_710"
    # a creator without "at" takes max(now, head's timestamp)
    e2, s2 = create_entry(s1, a, "add-member", c.public_key_b64, "viewer")
    assert e2.at >= e1.at and s2.head.seq == 2
    cases = [
        ((s2, b, "add-member", _keypair("D").public_key, "viewer"), "SECSYNC_ERROR_712"),
        ((s2, c, "set-role", c.public_key, "editor"), "SECSYNC_ERROR_713"),
        ((s2, a, "remove-member", a.public_key), "SECSYNC_ERROR_714"),
        ((s2, a, "set-role", b.public_key, "editor"), "SECSYNC_ERROR_717"),
        ((s2, a, "create", b.public_key, "editor"), "SECSYNC_ERROR_741"),
        ((s2, a, "add-member", b.public_key, "owner"), "SECSYNC_ERROR_741"),
        ((s2, a, "add-member", bytes(32), "viewer"), "SECSYNC_ERROR_741"),
        ((s2, a, "add-member", "not a key", "viewer"), "SECSYNC_ERROR_741"),
        ((s2, a, "remove-member", b.public_key, "viewer"), "SECSYNC_ERROR_741"),
    ]
    for args, code in cases:
        with pytest.raises(MembershipError) as info:
            create_entry(*args)
        assert info.value.code == code, args
    with pytest.raises(MembershipError) as info:
        create_entry(s2, a, "set-role", b.public_key, "viewer", name="x")
    assert (info.value.code, info.value.field) == ("SECSYNC_ERROR_741", "name")
    with pytest.raises(MembershipError) as info:
        create_log(a, name=" bad")
    assert (info.value.code, info.value.field) == ("SECSYNC_ERROR_741", "name")


def test_state_history_and_immutability():
    case = V["validLogs"][0]
    state = verify_log(case["log"], case["docId"])
    keys = {n: V["keys"][n]["pubKey"] for n in "ABCD"}
    assert [state.role_at(keys["A"], s) for s in range(8)] == ["admin"] * 5 + [None] * 3
    assert [state.role_at(keys["C"], s) for s in range(8)] == [
        None,
        None,
        "viewer",
        "editor",
        "editor",
        "editor",
        None,
        None,
    ]
    assert state.can_write(keys["B"]) and not state.can_write(keys["D"])
    assert state.is_member(keys["D"]) and not state.is_member(keys["A"])
    assert state.head_of(1).hash == parse_entry(case["log"][1]).hash
    with pytest.raises(ValueError):
        state.role_at(keys["A"], 8)
    with pytest.raises(TypeError):
        state.members[keys["A"]] = None  # type: ignore[index]
    # verify_log takes parsed entries as well and does not mutate its input
    log = copy.deepcopy(case["log"])
    assert verify_log([parse_entry(x) for x in log], case["docId"]) == state
    assert log == case["log"]


def test_entry_is_immutable_and_round_trips():
    entry = parse_entry(V["validLogs"][0]["log"][7])
    assert isinstance(entry, Entry) and parse_entry(entry) == entry
    with pytest.raises(AttributeError):
        entry.role = "admin"  # type: ignore[misc]
    # an Entry changed by hand is checked as what it says, not trusted
    forged = entry._replace(role="admin")
    assert parse_entry(forged).signed_bytes != entry.signed_bytes
    case = V["validLogs"][0]
    log = [parse_entry(x) for x in case["log"]]
    log[7] = forged
    with pytest.raises(MembershipError) as info:
        verify_log(log, case["docId"])
    assert (info.value.code, info.value.index) == ("SECSYNC_ERROR_704", 7)
    assert json.loads(json.dumps(entry.to_json())) == entry.to_json()


# --- canonical form ---------------------------------------------------------------------

_names = st.text(min_size=1, max_size=40).filter(lambda s: check_display_name(s) is None)


@settings(max_examples=300, deadline=None)
@given(name=_names, seq=st.integers(1, 2**53 - 1), at=st.integers(0, 2**53 - 1))
def test_entry_canonical_form_is_rfc8785(name, seq, at):
    """The template canonicalizer equals RFC 8785 (rfc8785) for every valid entry."""
    b = _keypair("B").public_key_b64
    fields = {
        "v": 1,
        "kind": "add-member",
        "docId": "m1_" + "A" * 43,
        "seq": seq,
        "prev": "B" * 42 + "A",
        "signer": b,
        "target": b,
        "role": "viewer",
        "name": name,
        "at": at,
        "signature": "C" * 85 + "A",
    }
    entry = parse_entry(fields)
    unsigned = {k: v for k, v in fields.items() if k != "signature"}
    assert entry.signed_bytes == b"secsync_jupyter_membership_entry" + rfc8785.dumps(unsigned)
    full = rfc8785.dumps(fields)
    import hashlib

    assert entry.hash == b64encode(hashlib.blake2b(full, digest_size=32).digest())


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=5),
        max_leaves=20,
    )
)
def test_parse_arbitrary_json_raises_only_membership_errors(value):
    for candidate in (
        value,
        {"v": 1, "kind": "add-member", **value} if isinstance(value, dict) else value,
    ):
        try:
            parse_entry(candidate)
        except MembershipError:
            pass
        try:
            verify_log([candidate], "m1_" + "A" * 43)
        except MembershipError:
            pass
