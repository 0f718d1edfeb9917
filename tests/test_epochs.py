"""Key epochs, lockboxes and links (issue 12; secsync_jupyter.protocol.epochs / .links and
the issue-12 kinds of .membership) against the cross-language vectors
(tests/vectors/epoch-vectors.json, also run by labextension/test/epochs.test.ts) and their
own rules."""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from secsync_jupyter.protocol import ERROR_MESSAGES
from secsync_jupyter.protocol.crypto import SigningKeyPair
from secsync_jupyter.protocol.encoding import b64decode, b64encode
from secsync_jupyter.protocol.epochs import (
    Keyring,
    check_lockbox,
    check_lockbox_set,
    check_message_epoch,
    create_rotation,
    epoch_key_check,
    lockbox_set_hash,
    make_lockboxes,
    open_lockbox,
    parse_lockbox,
    seal_lockbox,
    state_lockboxes,
    verify_epoch_key,
)
from secsync_jupyter.protocol.identity import box_public_key, check_display_name
from secsync_jupyter.protocol.links import (
    create_link,
    create_remove_link,
    format_fragment,
    join_via_link,
    link_keypair,
    parse_fragment,
)
from secsync_jupyter.protocol.membership import (
    LogHead,
    MembershipError,
    create_entry,
    create_log,
    extend_log,
    next_entry,
    parse_entry,
    verify_entry,
    verify_log,
    verify_reader_proof,
)

from .vector_files import by_name, check_up_to_date, error_of, load

V = load("epoch-vectors.json")
M = load("membership-vectors.json")


def _keypair(name: str) -> SigningKeyPair:
    if name in V["linkSecrets"]:
        return link_keypair(V["linkSecrets"][name])
    return SigningKeyPair.from_seed(bytes.fromhex(M["keys"][name]["seed"]))


def _pub(name: str) -> str:
    return _keypair(name).public_key_b64


def test_vectors_file_is_up_to_date():
    check_up_to_date("epoch-vectors.json", "make_epoch_vectors")


def test_vectors_cover_every_rule_code():
    log_codes = {c["error"]["code"] for c in V["invalidLogs"]}
    assert {f"SECSYNC_ERROR_{n}" for n in (*range(751, 760),)} <= log_codes
    lb = V["lockboxes"]
    other = {c["error"]["code"] for c in lb["open"]["invalid"] + lb["setInvalid"]}
    other |= {c["error"]["code"] for c in lb["single"] if "error" in c}
    other |= {c["error"]["code"] for c in V["messageEpochs"]["cases"] if "error" in c}
    other |= {c["error"]["code"] for c in V["fragments"]["invalid"]}
    other |= {c["error"]["code"] for c in V["readerProofs"]["cases"] if "error" in c}
    assert {f"SECSYNC_ERROR_{n}" for n in (*range(760, 771),)} <= other
    for code, text in V["errorCodes"].items():
        assert ERROR_MESSAGES[code] == text


# --- logs -------------------------------------------------------------------------------


def _replay(steps):
    """Re-create a vector log from its steps (what the TS test does too)."""
    entries, state = [], None
    for step in steps:
        kp = _keypair(step["signer"])
        op, at = step["op"], step["at"]
        if op == "create":
            entry, state = create_log(kp, at=at, nonce=b64decode(step["nonce"]))
        elif op in ("add-member", "set-role", "remove-member"):
            entry, state = create_entry(
                state, kp, op, _pub(step["target"]), step["role"], name=step.get("name"), at=at
            )
        elif op == "rotate-key":
            key, epoch = b64decode(step["key"]), state.epoch + 1
            fields = {
                "epoch": epoch,
                "keyCheck": epoch_key_check(state.doc_id, epoch, key),
                "lockboxHash": lockbox_set_hash(state.doc_id, epoch, step["lockboxes"]),
            }
            # the lockboxes are for exactly the recipients the state names
            assert [lb["recipient"] for lb in step["lockboxes"]] == state.recipients(at)
            entry, state = next_entry(state, kp, op, fields, at=at)
            assert check_lockbox_set(state, epoch, step["lockboxes"])
        else:
            entry, state = next_entry(state, kp, op, step["fields"], at=at)
        entries.append(entry.to_json())
    return entries, state


@by_name(V["validLogs"])
def test_valid_log(case):
    state = verify_log(case["log"], case["docId"])
    got = state.to_json()
    for key in ("members", "links", "epoch", "epochs", "head"):
        assert got[key] == case["expect"][key], key
    prefix = verify_log(case["log"][:1], case["docId"])
    needed, epochs = [prefix.rotation_needed(case["log"][0]["at"])], [prefix.epoch]
    for raw in case["log"][1:]:
        prefix = verify_entry(prefix, raw)
        needed.append(prefix.rotation_needed(raw["at"]))
        epochs.append(prefix.epoch)
    assert needed == case["expect"]["rotationNeeded"]
    assert epochs == case["expect"]["epochAt"]
    assert [state.epoch_at(s) for s in range(len(case["log"]))] == case["expect"]["epochAt"]
    later = case.get("rotationNeededLater")
    if later:
        at_seq = verify_log(case["log"][: later["seq"] + 1], case["docId"])
        assert at_seq.rotation_needed(later["now"]) is later["expect"]
    entries, replayed = _replay(case["steps"])
    assert entries == case["log"]
    assert replayed == state


@by_name(V["invalidLogs"])
def test_invalid_log(case):
    with pytest.raises(MembershipError) as info:
        verify_log(case["log"], case["docId"])
    exc = info.value
    assert {"code": exc.code, "index": exc.index, "field": exc.field} == case["error"]
    # the relay's path: the prefix is accepted, the entry refused, the state unchanged
    index = case["error"]["index"]
    if index:
        state = verify_log(case["log"][:index], case["docId"])
        before = state.to_json()
        with pytest.raises(MembershipError) as info:
            verify_entry(state, case["log"][index])
        assert error_of(info.value) == {k: case["error"][k] for k in ("code", "field")}
        assert state.to_json() == before
        with pytest.raises(MembershipError) as info:
            extend_log(verify_log(case["log"][:1], case["docId"]), case["log"][1:])
        assert info.value.index == index - 1


# --- lockboxes --------------------------------------------------------------------------

LB = V["lockboxes"]
STORY = verify_log(LB["log"], LB["docId"])


@by_name(LB["open"]["valid"])
def test_open_lockbox(case):
    key = open_lockbox(STORY, _keypair(case["who"]), case["lockbox"])
    assert b64encode(key) == case["key"]
    ring = Keyring()
    assert (
        ring.add_from_lockbox(STORY, _keypair(case["who"]), case["lockbox"])
        == (case["lockbox"]["epoch"])
    )
    assert b64encode(ring.key(case["lockbox"]["epoch"])) == case["key"]


@by_name(LB["open"]["invalid"])
def test_open_lockbox_refused(case):
    with pytest.raises(MembershipError) as info:
        open_lockbox(STORY, _keypair(case["who"]), case["lockbox"])
    assert error_of(info.value) == case["error"]


@pytest.mark.parametrize("epoch", sorted(LB["sets"]))
def test_lockbox_set(epoch):
    boxes = LB["sets"][epoch]
    parsed = check_lockbox_set(STORY, int(epoch), boxes)
    assert [lb.to_json() for lb in parsed] == boxes
    assert check_lockbox_set(STORY, int(epoch), list(reversed(boxes))) == parsed


@by_name(LB["setInvalid"])
def test_lockbox_set_refused(case):
    with pytest.raises(MembershipError) as info:
        check_lockbox_set(STORY, case["epoch"], case["lockboxes"])
    assert error_of(info.value) == case["error"]
    assert info.value.index == case["index"]


@by_name(LB["single"])
def test_single_lockbox(case):
    if "error" in case:
        with pytest.raises(MembershipError) as info:
            check_lockbox(STORY, case["lockbox"], now=case["now"])
        assert error_of(info.value) == case["error"]
    else:
        assert check_lockbox(STORY, case["lockbox"], now=case["now"]).to_json() == case["lockbox"]


# --- derivations ------------------------------------------------------------------------

D = V["derivations"]


@pytest.mark.parametrize("case", D["links"], ids=lambda c: c["pubKey"][:8])
def test_link_identity_derivation(case):
    kp = link_keypair(case["secret"])
    assert kp.seed.hex() == case["seed"]
    assert kp.public_key_b64 == case["pubKey"]
    assert link_keypair(b64decode(case["secret"])) == kp
    assert b64encode(box_public_key(kp.public_key)) == case["boxPublicKey"]


def test_key_checks_and_lockbox_hashes():
    for case in D["keyChecks"]:
        key = b64decode(case["key"])
        assert epoch_key_check(case["docId"], case["epoch"], key) == case["keyCheck"]
        expected = hashlib.blake2b(case["message"].encode(), key=key, digest_size=32).digest()
        assert b64encode(expected) == case["keyCheck"]
        verify_epoch_key(STORY, case["epoch"], key)
    for case in D["lockboxHashes"]:
        assert lockbox_set_hash(case["docId"], case["epoch"], case["lockboxes"]) == case["hash"]


# --- fragments, reader proofs, messages, keyrings ----------------------------------------


@pytest.mark.parametrize("case", V["fragments"]["valid"], ids=lambda c: c["text"][:12])
def test_fragment(case):
    frag = parse_fragment(case["text"])
    assert (b64encode(frag.key) if frag.key else None) == case["key"]
    assert (b64encode(frag.link_secret) if frag.link_secret else None) == case["link"]
    if not case.get("noncanonical"):
        assert format_fragment(key=frag.key, link_secret=frag.link_secret) == case["text"]


@by_name(V["fragments"]["invalid"])
def test_fragment_refused(case):
    with pytest.raises(MembershipError) as info:
        parse_fragment(case["text"])
    assert error_of(info.value) == case["error"]


@by_name(V["readerProofs"]["cases"])
def test_link_reader_proof(case):
    rp = V["readerProofs"]
    log = rp["logLinkRemoved"] if case.get("linkRemoved") else rp["log"]
    state = verify_log(log, rp["docId"])
    if "error" in case:
        with pytest.raises(MembershipError) as info:
            verify_reader_proof(case["proof"], rp["docId"], rp["nonce"], state, now=case["now"])
        assert error_of(info.value) == case["error"]
    else:
        got = verify_reader_proof(case["proof"], rp["docId"], rp["nonce"], state, now=case["now"])
        assert got == case["result"]


@by_name(V["messageEpochs"]["cases"])
def test_message_epoch(case):
    me = V["messageEpochs"]
    state = verify_log(me["log"], me["docId"])
    head = LogHead(**case["logHead"])
    if "error" in case:
        with pytest.raises(MembershipError) as info:
            check_message_epoch(state, case["epoch"], head, **case["options"])
        assert error_of(info.value) == case["error"]
    else:
        assert check_message_epoch(state, case["epoch"], head, **case["options"]) == case["result"]


def test_keyrings():
    for case in V["keyrings"]["valid"]:
        ring = Keyring.from_json(case["json"])
        assert ring.epochs == case["epochs"] and ring.to_json() == case["json"]
    for case in V["keyrings"]["invalid"]:
        with pytest.raises(MembershipError) as info:
            Keyring.from_json(case["json"])
        assert info.value.code == "SECSYNC_ERROR_780", case["name"]
    ring = Keyring({0: bytes(32)})
    ring.add(0, bytes(32))  # the same key again: fine
    with pytest.raises(MembershipError) as info:
        ring.add(0, bytes([1]) * 32)
    assert info.value.code == "SECSYNC_ERROR_762"
    with pytest.raises(MembershipError) as info:
        ring.key(1)
    assert info.value.code == "SECSYNC_ERROR_766"
    assert "\\x00" not in repr(ring) and ring.newest == 0 and 0 in ring and len(ring) == 1


# --- the real (randomized) sealing, end to end -------------------------------------------


def test_rotation_round_trip_removed_member_locked_out():
    a, b, c, d = (_keypair(n) for n in "ABCD")
    _, s = create_log(a, at=1)
    _, s = create_entry(s, a, "add-member", b.public_key, "editor", at=2)
    _, s = create_entry(s, a, "add-member", c.public_key, "viewer", at=3)
    link = create_link(s, a, "editor", "Invite", expires_at=100, epoch_key=bytes(32), at=4)
    assert link.lockbox is not None and link.lockbox.epoch == 0
    assert open_lockbox(link.state, link_keypair(link.secret), link.lockbox) == bytes(32)
    join, s = join_via_link(link.state, link.secret, d.public_key_b64, "viewer", name="Dee", at=5)
    assert s.members[d.public_key_b64].via == link.pub_key and join.name == "Dee"
    _, s = create_entry(s, a, "remove-member", c.public_key, at=6)
    assert s.rotation_needed(6)
    rot = create_rotation(s, a, at=7)
    s = rot.state
    assert not s.rotation_needed(7) and s.epoch == rot.epoch == 1
    assert sorted(lb.recipient for lb in rot.lockboxes) == s.recipients(7)
    assert c.public_key_b64 not in s.recipients(7)
    wire = [lb.to_json() for lb in rot.lockboxes]
    assert check_lockbox_set(s, 1, wire)
    for kp in (a, b, d, link_keypair(link.secret)):
        mine = next(lb for lb in wire if lb["recipient"] == kp.public_key_b64)
        assert open_lockbox(s, kp, mine) == rot.key
    # the removed member: no lockbox of its own, and nobody else's opens for it
    for lb in wire:
        with pytest.raises(MembershipError):
            open_lockbox(s, c, {**lb, "recipient": c.public_key_b64})
    # sealing is randomized: another sealing of the same key gives other boxes, other hash
    again = state_lockboxes(s, rot.key, now=7)
    assert [x.recipient for x in again] == [x.recipient for x in rot.lockboxes]
    assert again[0].epoch == 1
    assert all(open_lockbox(s, a, x) == rot.key for x in again if x.recipient == a.public_key_b64)
    assert make_lockboxes(s.doc_id, 1, rot.key, s.recipients(7))[0].recipient == again[0].recipient
    assert [x.box for x in again] != [x.box for x in rot.lockboxes]
    with pytest.raises(MembershipError) as info:
        check_lockbox_set(s, 1, [x.to_json() for x in again])
    assert info.value.code == "SECSYNC_ERROR_764"
    # a relay's own key sealed to a member is refused by the key check
    fake = seal_lockbox(s.doc_id, 1, bytes(range(32)), b.public_key_b64)
    with pytest.raises(MembershipError) as info:
        open_lockbox(s, b, fake)
    assert info.value.code == "SECSYNC_ERROR_762"
    # the link is revoked, then rotated out
    _, s = create_remove_link(s, a, link.pub_key, at=8)
    assert s.rotation_needed(8) and s.members[d.public_key_b64].via == link.pub_key
    rot2 = create_rotation(s, a, at=9)
    assert link.pub_key not in {lb.recipient for lb in rot2.lockboxes}
    with pytest.raises(MembershipError) as info:
        join_via_link(rot2.state, link.secret, _keypair("E").public_key, at=10)
    assert info.value.code == "SECSYNC_ERROR_755"


def test_creation_arguments():
    a, b = _keypair("A"), _keypair("B")
    _, s = create_log(a, at=1)
    _, s = create_entry(s, a, "add-member", b.public_key, "editor", at=2)
    cases = [
        (lambda: create_rotation(s, b, at=3), "SECSYNC_ERROR_712"),
        (lambda: create_rotation(s, a, key=b"short"), "SECSYNC_ERROR_780"),
        (lambda: create_link(s, a, "admin", "x", at=3), "SECSYNC_ERROR_752"),
        (lambda: create_link(s, a, "viewer", "", at=3), "SECSYNC_ERROR_741"),
        (lambda: create_link(s, a, "viewer", "x", expires_at=3, at=3), "SECSYNC_ERROR_759"),
        (lambda: create_link(s, a, "viewer", "x", secret=b"x"), "SECSYNC_ERROR_780"),
        (lambda: create_remove_link(s, a, b.public_key, at=3), "SECSYNC_ERROR_757"),
        (lambda: create_remove_link(s, a, "nope", at=3), "SECSYNC_ERROR_741"),
        (lambda: join_via_link(s, bytes(32), b.public_key, at=3), "SECSYNC_ERROR_711"),
        (lambda: seal_lockbox(s.doc_id, 0, bytes(32), bytes(32)), "SECSYNC_ERROR_780"),
        (lambda: format_fragment(), "SECSYNC_ERROR_780"),
        (lambda: create_entry(s, a, "rotate-key", b.public_key), "SECSYNC_ERROR_741"),
    ]
    for fn, code in cases:
        with pytest.raises(MembershipError) as info:
            fn()
        assert info.value.code == code
    assert parse_lockbox(parse_lockbox(seal_lockbox(s.doc_id, 0, bytes(32), b.public_key)))


def test_sealed_lockbox_opens_with_libsodium_directly():
    """The lockbox is a plain libsodium sealed box to the derived box key."""
    b = _keypair("B")
    lb = seal_lockbox("m1_" + "A" * 43, 3, bytes(range(32)), b.public_key_b64)
    from secsync_jupyter.protocol.identity import box_secret_key

    opened = sodium.crypto_box_seal_open(
        b64decode(lb.box), box_public_key(b.public_key), box_secret_key(b)
    )
    assert opened == bytes(range(32))


_labels = st.text(min_size=1, max_size=30).filter(lambda s: check_display_name(s) is None)


@settings(max_examples=200, deadline=None)
@given(
    label=_labels, expires=st.none() | st.integers(0, 2**53 - 1), epoch=st.integers(1, 2**53 - 1)
)
def test_new_kinds_canonical_form_is_rfc8785(label, expires, epoch):
    """The template canonicalizer equals RFC 8785 for the issue-12 kinds too."""
    key = _pub("B")
    common = {"v": 1, "docId": "m1_" + "A" * 43, "seq": 3, "prev": "B" * 42 + "A", "signer": key}
    link = {**common, "kind": "add-link", "target": key, "role": "viewer", "label": label}
    if expires is not None:
        link["expiresAt"] = expires
    rotate = {**common, "kind": "rotate-key", "epoch": epoch, "keyCheck": "C" * 42 + "A"}
    rotate["lockboxHash"] = "D" * 42 + "A"
    remove = {**common, "kind": "remove-link", "target": key}
    for fields in (link, rotate, remove):
        fields = {**fields, "at": 5, "signature": "C" * 85 + "A"}
        entry = parse_entry(fields)
        unsigned = {k: v for k, v in fields.items() if k != "signature"}
        assert entry.signed_bytes == b"secsync_jupyter_membership_entry" + rfc8785.dumps(unsigned)
        digest = hashlib.blake2b(rfc8785.dumps(fields), digest_size=32).digest()
        assert entry.hash == b64encode(digest)
        assert entry.to_json() == fields


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=5),
        max_leaves=20,
    )
)
def test_parsers_raise_only_membership_errors(value):
    """Lockboxes, fragments, message epochs and keyrings: any JSON gives a result or a
    MembershipError, nothing else."""
    candidates = [value]
    if isinstance(value, dict):
        candidates.append({**LB["sets"]["1"][0], **value})
    for candidate in candidates:
        for fn in (
            parse_lockbox,
            lambda x: open_lockbox(STORY, _keypair("D"), x),
            lambda x: check_lockbox(STORY, x, now=0),
            lambda x: check_lockbox_set(STORY, 1, [x]),
            parse_fragment,
            lambda x: check_message_epoch(STORY, x, STORY.head),
            Keyring.from_json,
        ):
            try:
                fn(candidate)
            except MembershipError:
                pass
    if isinstance(value, str):
        for text in (value, "#link=" + value, "#key=" + value + "&link=" + value):
            try:
                parse_fragment(text)
            except MembershipError:
                pass
