"""Every client error code of the reference checklist, on the sans-IO engine fed by a
scripted relay (frames in, frames out)."""

from __future__ import annotations

import json

import pytest

from secsync_jupyter.client.engine import MAX_ERRORS, MAX_UPDATES_IN_FLIGHT, KnownSnapshot
from secsync_jupyter.protocol import (
    EphemeralSession,
    snapshot_ciphertext_hash,
)

from .helpers import (
    DOC,
    KEY,
    WRONG_KEY,
    A,
    B,
    C,
    codes,
    document,
    engine,
    feed,
    sent,
    snap,
    upd,
    wire,
)

# ----------------------------------------------------------------- states


def test_states_pending_partial_complete():
    e, doc = engine()
    assert e.state == "connected" and e.document_state == "pending"
    s = snap()
    feed(e, document(s, [upd(["!"], ref=s)]))
    assert e.document_state == "complete" and doc.value == "Hello World!"
    assert e.errors == [] and e.state == "connected"


def test_empty_document_is_complete_and_first_change_sends_initial_snapshot():
    e, doc = engine()
    feed(e, document())
    assert e.document_state == "complete"
    sent(e)
    doc.value = "abc"
    e.add_changes(["abc"])
    e.flush()
    (frame,) = sent(e)
    assert frame["publicData"]["parentSnapshotId"] == ""
    assert frame["publicData"]["parentSnapshotUpdateClocks"] == {}


def test_complete_mode_updates_without_snapshot_fail_100():
    e, _ = engine()
    s = snap()
    feed(e, document(None, [upd(ref=s)]))
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_100"]


# ------------------------------------------------------------ 1xx snapshots


def test_101_initial_load_fails():
    e, _ = engine()
    feed(e, document(snap(key=WRONG_KEY)))
    assert e.state == "failed" and e.document_state == "failed"
    assert codes(e) == ["SECSYNC_ERROR_101"]


def test_101_on_snapshot_event_fails_with_complete_document():
    e, doc = engine()
    s = snap()
    feed(e, document(s))
    feed(e, {"type": "snapshot", "snapshot": wire(snap("again", key=WRONG_KEY, parent=s))})
    assert e.state == "failed" and e.document_state == "complete"
    assert codes(e) == ["SECSYNC_ERROR_101"] and doc.value == "Hello World"


def test_102_snapshot_misses_own_update():
    e, _ = engine()
    s = snap()
    feed(
        e,
        document(s),
        {"type": "update-saved", "snapshotId": s.public_data.snapshot_id, "clock": 1},
    )
    s2 = snap("again", parent=s, clocks={A.public_key_b64: 0})
    feed(e, {"type": "snapshot", "snapshot": wire(s2)})
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_102"]


@pytest.mark.parametrize("where", ["initial", "event"])
def test_103_key_lookup_fails(where):
    calls = {"n": 0}

    def key(info):
        calls["n"] += 1
        if where == "initial" or calls["n"] > 2:
            raise LookupError("no key")
        return KEY

    e, _ = engine(key=key)
    s = snap()
    feed(e, document(s))
    if where == "event":
        assert e.document_state == "complete"
        feed(e, {"type": "snapshot", "snapshot": wire(snap("x", parent=s))})
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_103"]
    assert e.document_state == ("failed" if where == "initial" else "complete")


@pytest.mark.parametrize("where", ["initial", "event"])
def test_104_is_valid_client_raises(where):
    state = {"raise": where == "initial"}

    def valid(pub, pd):
        if state["raise"]:
            raise RuntimeError("boom")
        return True

    e, _ = engine(is_valid_client=valid)
    s = snap()
    feed(e, document(s))
    if where == "event":
        state["raise"] = True
        feed(e, {"type": "snapshot", "snapshot": wire(snap("x", parent=s))})
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_104"]


def test_105_apply_snapshot_fails():
    e, doc = engine()
    doc.fail.add("apply_snapshot")
    feed(e, document(snap()))
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_105"]


def test_110_parse_initial_fails_and_event_is_ignored():
    e, _ = engine()
    bad = wire(snap())
    del bad["nonce"]
    feed(e, {"type": "document", "snapshot": bad, "updates": []})
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_110"]

    e, doc = engine()
    s = snap()
    feed(e, document(s), {"type": "snapshot", "snapshot": {"publicData": 1}})
    assert e.state == "connected" and codes(e) == ["SECSYNC_ERROR_110"]
    assert doc.value == "Hello World"


@pytest.mark.parametrize(
    ("code", "make"),
    [
        (
            "SECSYNC_ERROR_111",
            lambda s: wire(snap("x", parent=s), signature=wire(snap())["signature"]),
        ),
        ("SECSYNC_ERROR_113", lambda s: wire(snap("x", parent=s, doc_id="other"))),
        ("SECSYNC_ERROR_114", lambda s: wire(snap("x", parent=s, signer=C))),
    ],
)
def test_ignored_snapshot_errors_on_event(code, make):
    e, doc = engine(is_valid_client=lambda pub, pd: pub != C.public_key_b64)
    s = snap()
    feed(e, document(s), {"type": "snapshot", "snapshot": make(s)})
    assert e.state == "connected" and e.document_state == "complete"
    assert codes(e) == [code] and doc.value == "Hello World"
    assert not e.reconnect_requested


@pytest.mark.parametrize(
    ("code", "make"),
    [
        ("SECSYNC_ERROR_111", lambda: wire(snap(), signature=wire(snap("other"))["signature"])),
        ("SECSYNC_ERROR_113", lambda: wire(snap(doc_id="other"))),
        ("SECSYNC_ERROR_114", lambda: wire(snap(signer=C))),
    ],
)
def test_snapshot_errors_on_initial_load_fail(code, make):
    e, _ = engine(is_valid_client=lambda pub, pd: pub != C.public_key_b64)
    feed(e, {"type": "document", "snapshot": make(), "updates": []})
    assert e.state == "failed" and e.document_state == "failed" and codes(e) == [code]


def test_112_initial_load_with_known_snapshot_and_wrong_parent():
    s = snap()
    known = KnownSnapshot.of(s)
    e, _ = engine(known_snapshot=known, load_mode="complete")
    feed(e, document(snap("again", parent=s, parent_hash="WRONG")))
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_112"]


def test_112_on_event_requests_reconnect_and_reload():
    e, doc = engine(B)
    s = snap()
    feed(e, document(s, [upd(ref=s)]))
    feed(e, {"type": "snapshot", "snapshot": wire(snap("unrelated"))})
    assert codes(e) == ["SECSYNC_ERROR_112"] and e.reconnect_requested
    assert e.state == "connected" and doc.value == "Hello Worldu"
    e.disconnected()
    params = e.connection_params()
    assert params["mode"] == "delta"
    assert params["knownSnapshotId"] == s.public_data.snapshot_id
    assert json.loads(params["knownSnapshotUpdateClocks"]) == {A.public_key_b64: 0}
    # reload: the relay answers with the newer snapshot and its proof chain
    e.connecting()
    e.connected()
    s2 = snap("reloaded", parent=s, clocks={A.public_key_b64: 0})
    chain = [
        {
            "snapshotId": s2.public_data.snapshot_id,
            "snapshotCiphertextHash": snapshot_ciphertext_hash(s2),
            "parentSnapshotProof": s2.public_data.parent_snapshot_proof,
        }
    ]
    feed(e, document(s2, [], chain))
    assert e.document_state == "complete" and doc.value == "reloaded"
    assert e.active.snapshot_id == s2.public_data.snapshot_id


def test_112_reconnect_gets_a_snapshot_that_is_not_a_child():
    e, _ = engine(B)
    s = snap()
    feed(e, document(s, [upd(ref=s)]))
    e.disconnected()
    e.connecting()
    e.connected()
    feed(e, document(snap("unrelated")))
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_112"]


def _chain(*snaps, break_at=None):
    chain = []
    for i, s in enumerate(snaps):
        chain.append(
            {
                "snapshotId": s.public_data.snapshot_id,
                "snapshotCiphertextHash": snapshot_ciphertext_hash(s),
                "parentSnapshotProof": "WRONG_PROOF"
                if i == break_at
                else s.public_data.parent_snapshot_proof,
            }
        )
    return chain


def test_115_reconnect_with_a_messed_up_chain():
    e, doc = engine(B)
    s = snap()
    feed(e, document(s))
    e.disconnected()
    e.connecting()
    e.connected()
    s2 = snap("again", parent=s)
    s3 = snap("again and again", parent=s2)
    feed(e, document(s3, [], _chain(s2, s3, break_at=1)))
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_115"]
    assert doc.value == "Hello World"
    assert e.load_known.snapshot_id == s.public_data.snapshot_id


def test_115_valid_chain_of_two_snapshots_loads():
    e, doc = engine(B)
    s = snap()
    feed(e, document(s))
    e.disconnected()
    e.connecting()
    e.connected()
    s2 = snap("again", parent=s)
    s3 = snap("again and again", parent=s2)
    feed(e, document(s3, [upd(["!"], ref=s3)], _chain(s2, s3)))
    assert e.document_state == "complete" and doc.value == "again and again!"


def test_115_unparsable_chain():
    e, _ = engine(B)
    s = snap()
    feed(e, document(s))
    e.disconnected()
    e.connecting()
    e.connected()
    feed(e, document(snap("x", parent=s), [], [{"snapshotId": 1}]))
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_115"]


# -------------------------------------------------------------- 2xx updates


def _update_cases():
    def bad_parse(s):
        w = wire(upd(ref=s))
        w["publicData"]["clock"] = -1
        return [w]

    def bad_sig(s):
        return [wire(upd(ref=s), signature=wire(upd(["x"], ref=s))["signature"])]

    def wrong_snapshot(s):
        return [wire(upd(ref=snap()))]

    def wrong_doc(s):
        return [wire(upd(ref=s, doc_id="another-doc"))]

    def replay(s):
        u = wire(upd(ref=s))
        return [u, u]

    def not_allowed(s):
        return [wire(upd(ref=s, signer=C))]

    return [
        ("SECSYNC_ERROR_211", bad_parse),
        ("SECSYNC_ERROR_212", bad_sig),
        ("SECSYNC_ERROR_213", wrong_snapshot),
        ("SECSYNC_ERROR_213", wrong_doc),
        ("SECSYNC_ERROR_214", replay),
        ("SECSYNC_ERROR_215", not_allowed),
    ]


@pytest.mark.parametrize(("code", "make"), _update_cases())
def test_ignored_update_errors_fail_the_initial_load(code, make):
    e, _ = engine(is_valid_client=lambda pub, pd: pub != C.public_key_b64)
    s = snap()
    feed(e, {"type": "document", "snapshot": wire(s), "updates": make(s)})
    assert e.state == "failed" and e.document_state == "partial" and codes(e) == [code]


@pytest.mark.parametrize(("code", "make"), _update_cases())
def test_ignored_update_errors_on_events(code, make):
    e, doc = engine(is_valid_client=lambda pub, pd: pub != C.public_key_b64)
    s = snap()
    feed(e, document(s))
    feed(e, *[{**u, "type": "update"} for u in make(s)])
    assert e.state == "connected" and e.document_state == "complete"
    assert codes(e) == [code]
    assert doc.value in ("Hello World", "Hello Worldu")  # a replay applies its first copy once


@pytest.mark.parametrize(
    ("code", "make"),
    [
        ("SECSYNC_ERROR_201", lambda s: [upd(ref=s, key=WRONG_KEY)]),
        ("SECSYNC_ERROR_202", lambda s: [upd(ref=s, clock=1)]),
    ],
)
@pytest.mark.parametrize("where", ["initial", "event"])
def test_fatal_update_errors(code, make, where):
    e, doc = engine()
    s = snap()
    if where == "initial":
        feed(e, document(s, make(s)))
        assert e.document_state == "partial"
    else:
        feed(e, document(s))
        feed(e, *[{**wire(u), "type": "update"} for u in make(s)])
        assert e.document_state == "complete"
    assert e.state == "failed" and codes(e) == [code] and doc.value == "Hello World"


@pytest.mark.parametrize(
    ("code", "hook"), [("SECSYNC_ERROR_203", "apply_changes"), ("SECSYNC_ERROR_204", "deserialize")]
)
def test_203_204_apply_and_decode_failures(code, hook):
    e, doc = engine()
    s = snap()
    feed(e, document(s))
    doc.fail.add(hook)
    feed(e, {**wire(upd(ref=s)), "type": "update"})
    assert e.state == "failed" and codes(e) == [code]


def test_205_is_valid_client_raises_for_an_update():
    state = {"raise": False}

    def valid(pub, pd):
        if state["raise"]:
            raise RuntimeError("boom")
        return True

    e, _ = engine(is_valid_client=valid)
    s = snap()
    feed(e, document(s))
    state["raise"] = True
    feed(e, {**wire(upd(ref=s)), "type": "update"})
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_205"]


def test_206_key_lookup_fails_for_updates():
    calls = {"n": 0}

    def key(info):
        calls["n"] += 1
        if calls["n"] > 2:  # session + snapshot succeed, the update's lookup fails
            raise LookupError("no key")
        return KEY

    e, _ = engine(key=key)
    s = snap()
    feed(e, document(s, [upd(ref=s)]))
    assert e.state == "failed" and e.document_state == "partial"
    assert codes(e) == ["SECSYNC_ERROR_206"]


def test_replayed_update_is_ignored_and_applied_once():
    e, doc = engine()
    s = snap()
    feed(e, document(s))
    u = {**wire(upd(["!"], ref=s)), "type": "update"}
    feed(e, u, u, u)
    assert doc.value == "Hello World!" and codes(e) == ["SECSYNC_ERROR_214"] * 2


def test_error_list_is_capped_at_20_newest_first():
    e, _ = engine()
    s = snap()
    feed(e, document(s))
    bad = [
        {
            **wire(upd([str(i)], ref=s), signature=wire(upd(["x"], ref=s))["signature"]),
            "type": "update",
        }
        for i in range(25)
    ]
    feed(e, *bad)
    feed(e, {"type": "snapshot", "snapshot": {"nope": 1}})
    assert len(e.errors) == MAX_ERRORS == 20
    assert codes(e)[0] == "SECSYNC_ERROR_110" and set(codes(e)[1:]) == {"SECSYNC_ERROR_212"}


# ------------------------------------------------------------ 3xx ephemeral


def _loaded(signer=A, **kw):
    e, doc = engine(signer, **kw)
    s = snap()
    feed(e, document(s))
    sent(e)
    return e, doc


def _peer(signer=B, key=KEY, doc_id=DOC):
    return EphemeralSession(doc_id, key, signer)


def _handshake(e, peer):
    """The peer says hello, we answer with proofAndRequestProof, the peer answers with proof."""
    feed(e, {**wire(peer.initialize()), "type": "ephemeral-message"})
    (reply,) = sent(e)
    from secsync_jupyter.protocol import EphemeralMessage

    result = peer.receive(EphemeralMessage.from_json(reply))
    feed(e, {**wire(result.reply), "type": "ephemeral-message"})
    sent(e)


def test_ephemeral_handshake_then_message_delivered_once():
    e, doc = _loaded()
    peer = _peer()
    _handshake(e, peer)
    msg = {**wire(peer.create(b"hi")), "type": "ephemeral-message"}
    feed(e, msg, msg)
    assert doc.ephemeral == [(b"hi", B.public_key_b64)]
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_303"]


def test_301_decryption():
    e, _doc = _loaded()
    feed(e, {**wire(_peer(key=WRONG_KEY).initialize()), "type": "ephemeral-message"})
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_301"] and e.state == "connected"


def test_302_no_verified_session_answers_with_a_proof():
    e, doc = _loaded()
    feed(e, {**wire(_peer().create(b"hi")), "type": "ephemeral-message"})
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_302"]
    assert doc.ephemeral == [] and len(sent(e)) == 1


def test_303_replayed_proof_does_not_reset_the_counter():
    """Re-sending a peer's earlier session proof and then its message must not deliver the
    message twice (the reference 0.5.0 client does)."""
    e, doc = _loaded()
    peer = _peer()
    feed(e, {**wire(peer.initialize()), "type": "ephemeral-message"})
    (reply,) = sent(e)
    from secsync_jupyter.protocol import EphemeralMessage

    proof = peer.receive(EphemeralMessage.from_json(reply)).reply
    proof_frame = {**wire(proof), "type": "ephemeral-message"}
    feed(e, proof_frame)
    msg = {**wire(peer.create(b"once")), "type": "ephemeral-message"}
    feed(e, msg)
    feed(e, proof_frame, msg)  # the relay replays the proof, then the message
    assert doc.ephemeral == [(b"once", B.public_key_b64)]
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_303", "SECSYNC_ERROR_303"]


@pytest.mark.parametrize("mode", ["false", "raises"])
def test_304_client_not_allowed(mode):
    def valid(pub, pd):
        if pub == B.public_key_b64:
            if mode == "raises":
                raise RuntimeError("boom")
            return False
        return True

    e, _doc = _loaded(is_valid_client=valid)
    feed(e, {**wire(_peer().initialize()), "type": "ephemeral-message"})
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_304"] and sent(e) == []


def _raw_ephemeral(plaintext: bytes, *, signer=B):
    from secsync_jupyter.protocol import encrypt_aead
    from secsync_jupyter.protocol.crypto import DOMAIN_EPHEMERAL_MESSAGE, sign_message
    from secsync_jupyter.protocol.encoding import canonicalize_b64

    pd = {"docId": DOC, "pubKey": signer.public_key_b64}
    ad = canonicalize_b64(pd)
    nonce, ct = encrypt_aead(plaintext, ad, KEY)
    sig = sign_message(DOMAIN_EPHEMERAL_MESSAGE, nonce, ct, ad, signer)
    return {
        "type": "ephemeral-message",
        "nonce": nonce,
        "ciphertext": ct,
        "publicData": pd,
        "signature": sig,
    }


def test_305_unknown_type():
    e, _ = _loaded()
    feed(e, _raw_ephemeral(bytes([9]) + bytes(24) + (7).to_bytes(4, "little") + b"x"))
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_305"]


def test_306_docid_mismatch_between_valid_messages():
    e, doc = _loaded()
    peer = _peer()
    _handshake(e, peer)
    first = {**wire(peer.create(b"1")), "type": "ephemeral-message"}
    other_doc = _peer(doc_id="another")
    other_doc.id, other_doc.counter = peer.id, peer.counter
    second = {**wire(other_doc.create(b"2")), "type": "ephemeral-message"}
    peer.counter = other_doc.counter
    third = {**wire(peer.create(b"3")), "type": "ephemeral-message"}
    feed(e, first, second, third)
    assert [c for c, _ in doc.ephemeral] == [b"1", b"3"]
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_306"]


def test_307_shape():
    e, _ = _loaded()
    feed(e, {"type": "ephemeral-message", "nonce": 1})
    feed(e, _raw_ephemeral(b"\x01short"))  # plaintext shorter than its prefix
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_307"] * 2


def test_308_signature():
    e, _ = _loaded()
    good = wire(_peer().initialize())
    good["signature"] = wire(_peer().initialize())["signature"]
    feed(e, {**good, "type": "ephemeral-message"})
    assert [x.code for x in e.ephemeral_errors] == ["SECSYNC_ERROR_308"]
    assert sent(e) == []


def test_ephemeral_error_list_capped():
    e, _ = _loaded()
    for _ in range(25):
        feed(e, {"type": "ephemeral-message", "nonce": 1})
    assert len(e.ephemeral_errors) == 20


# ------------------------------------------------------- 4xx/5xx/6xx creation


def test_401_creating_a_snapshot_fails():
    e, doc = engine()
    feed(e, document())
    doc.fail.add("snapshot_content")
    e.add_changes(["x"])
    e.flush()
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_401"]


def test_501_creating_an_update_fails():
    e, doc = engine()
    feed(e, document(snap()))
    doc.fail.add("serialize")
    e.add_changes(["x"])
    e.flush()
    assert e.state == "failed" and codes(e) == ["SECSYNC_ERROR_501"]


def test_601_creating_an_ephemeral_message_fails():
    e, _ = _loaded()
    e.ephemeral.counter = 0xFFFFFFFF
    assert e.send_ephemeral(b"x") is False
    assert [x.code for x in e.ephemeral_authoring_errors] == ["SECSYNC_ERROR_601"]
    assert e.state == "connected"


# ---------------------------------------------------------- sending rules


def test_update_clock_batching_and_update_saved():
    e, _doc = engine()
    s = snap()
    sid = s.public_data.snapshot_id
    feed(e, document(s))
    sent(e)
    for i in range(MAX_UPDATES_IN_FLIGHT):  # each goes out without waiting for an ack
        e.add_changes([f"x{i}"])
        e.flush()
        (u,) = sent(e)
        assert u["publicData"]["clock"] == i
    e.add_changes(["b"])
    e.add_changes(["c"])
    e.flush()
    assert sent(e) == []  # as many in flight as allowed: b and c wait
    feed(e, {"type": "update-saved", "snapshotId": sid, "clock": 0})
    (u1,) = sent(e)
    assert u1["publicData"]["clock"] == MAX_UPDATES_IN_FLIGHT
    from secsync_jupyter.protocol import Update, verify_and_decrypt_update

    plain = verify_and_decrypt_update(
        Update.from_json(u1), KEY, sid, MAX_UPDATES_IN_FLIGHT - 1, current_doc_id=DOC
    )
    assert json.loads(plain) == ["b", "c"]
    feed(e, {"type": "update-saved", "snapshotId": sid, "clock": MAX_UPDATES_IN_FLIGHT})
    assert e.is_synced


def test_update_save_failed_resends_changes_with_the_right_clock():
    e, _ = engine()
    s = snap()
    feed(e, document(s))
    sent(e)
    e.add_changes(["a"])
    e.flush()
    sent(e)
    feed(
        e,
        {
            "type": "update-save-failed",
            "snapshotId": s.public_data.snapshot_id,
            "clock": 0,
            "requiresNewSnapshot": False,
        },
    )
    (again,) = sent(e)
    assert again["publicData"]["clock"] == 0
    feed(e, {"type": "update-saved", "snapshotId": s.public_data.snapshot_id, "clock": 0})
    e.add_changes(["b"])
    e.flush()
    (nxt,) = sent(e)
    assert nxt["publicData"]["clock"] == 1


def test_update_save_failed_after_a_new_snapshot_resends_on_it():
    e, _doc = engine()
    s = snap()
    feed(e, document(s))
    sent(e)
    e.add_changes(["a"])
    e.flush()
    sent(e)
    s2 = snap("Hello World from B", parent=s, signer=B)
    feed(e, {"type": "snapshot", "snapshot": wire(s2)})
    feed(
        e,
        {
            "type": "update-save-failed",
            "snapshotId": s.public_data.snapshot_id,
            "clock": 0,
            "requiresNewSnapshot": False,
        },
    )
    (again,) = sent(e)
    assert again["publicData"]["refSnapshotId"] == s2.public_data.snapshot_id
    assert again["publicData"]["clock"] == 0


def test_snapshot_policy_and_on_demand_snapshot():
    seen = []

    def policy(info):
        seen.append(info)
        return info.updates_since_snapshot >= 2

    e, _doc = engine(snapshot_policy=policy)
    s = snap()
    feed(e, document(s, [upd(ref=s, signer=B), upd(ref=s, signer=B, clock=1)]))
    sent(e)
    e.add_changes(["x"])
    e.flush()
    (frame,) = sent(e)
    assert "snapshotId" in frame["publicData"]
    assert frame["publicData"]["parentSnapshotUpdateClocks"] == {B.public_key_b64: 1}
    assert seen[-1].updates_since_snapshot == 2
    feed(e, {"type": "snapshot-saved", "snapshotId": frame["publicData"]["snapshotId"]})
    assert e.active.snapshot_id == frame["publicData"]["snapshotId"] and e.is_synced
    e.request_snapshot()
    e.flush()
    (frame2,) = sent(e)
    assert frame2["publicData"]["parentSnapshotId"] == frame["publicData"]["snapshotId"]


def test_default_policy_counts_update_bytes():
    from secsync_jupyter.client.engine import SnapshotPolicyInfo, default_snapshot_policy

    assert not default_snapshot_policy(SnapshotPolicyInfo("s", 299, 999_999, 1))
    assert default_snapshot_policy(SnapshotPolicyInfo("s", 300, 0, 1))
    assert default_snapshot_policy(SnapshotPolicyInfo("s", 1, 1_000_000, 1))


def test_snapshot_save_failed_applies_what_the_relay_sent_and_retries():
    e, doc = engine()
    s = snap()
    feed(e, document(s))
    sent(e)
    doc.value += "mine"
    e.request_snapshot()
    e.add_changes(["mine"])
    e.flush()
    (_mine,) = sent(e)
    s2 = snap("Hello World theirs", parent=s, signer=B)
    u = upd(["+"], ref=s2, signer=B)
    feed(e, {"type": "snapshot-save-failed", "snapshot": wire(s2), "updates": [wire(u)]})
    assert doc.value == "Hello World theirs+"
    (retry,) = sent(e)
    assert retry["publicData"]["parentSnapshotId"] == s2.public_data.snapshot_id
    assert retry["publicData"]["parentSnapshotUpdateClocks"] == {B.public_key_b64: 0}


def test_snapshot_save_failed_is_bounded_then_reconnects():
    e, _ = engine()
    feed(e, document(snap()))
    sent(e)
    e.request_snapshot()
    e.flush()
    for i in range(5):
        assert len(sent(e)) == 1, i
        feed(e, {"type": "snapshot-save-failed"})
    assert e.reconnect_requested
    e.disconnected()
    assert e.snapshot_in_flight is None and e.state == "disconnected"


def test_offline_changes_are_kept_and_resent_after_reconnect():
    e, _doc = engine()
    s = snap()
    feed(e, document(s))
    sent(e)
    e.add_changes(["a"])
    e.flush()
    sent(e)
    e.disconnected()
    e.add_changes(["b"])
    assert e.pending == ["a", "b"]
    e.connecting()
    e.connected()
    e.flush()
    assert sent(e) == []  # not before the document is loaded
    feed(e, document())  # delta: nothing new
    frames = sent(e)
    assert [
        f.get("publicData", {}).get("clock")
        for f in frames
        if "refSnapshotId" in f.get("publicData", {})
    ] == [0]


@pytest.mark.parametrize(
    ("frame", "state"),
    [
        ("document-not-found", "no-access"),
        ("unauthorized", "no-access"),
        ("document-error", "failed"),
    ],
)
def test_relay_refusals(frame, state):
    e, _ = engine()
    feed(e, {"type": frame})
    assert e.state == state
    e.disconnected()
    assert e.state == state  # no reconnect


# ------------------------------------- rules shared with the browser engine (issue 10)


def _data_frames(e):
    """Snapshots and updates the engine sent (not ephemeral messages)."""
    return [f for f in sent(e) if {"snapshotId", "refSnapshotId"} & set(f["publicData"])]


def _saved(s, clock):
    return {"type": "update-saved", "snapshotId": s.public_data.snapshot_id, "clock": clock}


def _save_failed(s, clock, requires_new_snapshot=False):
    return {
        "type": "update-save-failed",
        "snapshotId": s.public_data.snapshot_id,
        "clock": clock,
        "requiresNewSnapshot": requires_new_snapshot,
    }


def _update_in_flight(**kw):
    """A loaded engine whose change "a" is in flight as update 0 on ``s`` (not yet drained)."""
    e, doc = engine(**kw)
    s = snap()
    feed(e, document(s))
    sent(e)
    e.add_changes(["a"])
    e.flush()
    return e, doc, s


def test_update_save_failed_is_bounded_then_reconnects():
    events = []
    e, _, s = _update_in_flight(on_event=lambda kind, data: events.append(kind))
    for i in range(4):
        (frame,) = sent(e)
        assert frame["publicData"]["clock"] == 0, i
        feed(e, _save_failed(s, 0))
        assert not e.reconnect_requested
    sent(e)
    feed(e, _save_failed(s, 0))  # the fifth failure in a row: give up on this connection
    assert e.reconnect_requested and events[-1] == "reconnect"
    assert sent(e) == [] and e.pending == ["a"] and e.state == "connected"
    e.disconnected()
    e.connecting()
    e.connected()
    feed(e, document())
    (again,) = _data_frames(e)
    assert again["publicData"]["clock"] == 0 and not e.reconnect_requested


def test_only_consecutive_failures_of_our_update_count():
    e, _, s = _update_in_flight()
    for clock in range(3):  # 4 failures, then saved: the count starts again
        for _ in range(4):
            sent(e)
            feed(e, _save_failed(s, clock))
        feed(e, _saved(s, clock))
        e.add_changes(["b"])
        e.flush()
    for _ in range(6):  # not about an update of ours in flight: no count
        feed(e, _save_failed(s, 7))
    assert not e.reconnect_requested
    for _ in range(5):
        sent(e)
        feed(e, _save_failed(s, 3))
    assert e.reconnect_requested


def test_stale_update_in_flight_is_requeued_onto_the_new_snapshot_at_once():
    e, _, s = _update_in_flight()
    (first,) = sent(e)
    assert first["publicData"]["refSnapshotId"] == s.public_data.snapshot_id
    s2 = snap("Hello World from B", parent=s, signer=B)
    feed(e, {"type": "snapshot", "snapshot": wire(s2)})
    (again,) = sent(e)  # no waiting for the relay to reject the stale one
    assert again["publicData"]["refSnapshotId"] == s2.public_data.snapshot_id
    assert again["publicData"]["clock"] == 0
    # the relay's late rejection of the stale update changes nothing
    feed(e, _save_failed(s, 0))
    assert sent(e) == []
    feed(e, _saved(s2, 0))
    assert e.is_synced


def test_pending_changes_are_merged_into_one_yjs_update_before_sending():
    from pycrdt import Doc, Text

    from secsync_jupyter.client.ydoc import YDocAdapter, deserialize_updates
    from secsync_jupyter.protocol import Update, verify_and_decrypt_update

    doc = Doc()
    adapter = YDocAdapter(doc)
    e, _ = engine(adapter=adapter)
    feed(e, document())
    sent(e)
    text = doc.get("content", type=Text)
    local = []
    sub = doc.observe(lambda event: local.append(event.update))
    text += "a"
    e.add_changes(local[-1:])
    e.flush()
    (initial,) = sent(e)
    snapshot_id = initial["publicData"]["snapshotId"]
    feed(e, {"type": "snapshot-saved", "snapshotId": snapshot_id})
    for ch in "bcd":
        text += ch
        e.add_changes(local[-1:])
    doc.unobserve(sub)
    assert len(e.pending) == 3
    e.flush()
    (frame,) = sent(e)
    plain = verify_and_decrypt_update(
        Update.from_json(frame), KEY, snapshot_id, -1, current_doc_id=DOC
    )
    (merged,) = deserialize_updates(plain)  # one Yjs update, not three
    reader = Doc()
    reader.apply_update(doc.get_update())  # 'abcd'
    fresh = Doc()
    fresh_text = fresh.get("content", type=Text)
    fresh.apply_update(local[0])
    fresh.apply_update(merged)
    assert str(fresh_text) == "abcd" == str(reader.get("content", type=Text))


def test_forged_update_in_a_document_frame_keeps_the_verified_part_before_it():
    e, doc = engine(B)
    s = snap()
    forged = wire(upd(["1"], ref=s, clock=1), signature=wire(upd(["x"], ref=s))["signature"])
    updates = [
        wire(upd(["0"], ref=s, clock=0)),
        forged,
        wire(upd(["c"], ref=s, signer=C)),  # valid, but after the forged one
        wire(upd(["2"], ref=s, clock=2)),
    ]
    feed(e, {"type": "document", "snapshot": wire(s), "updates": updates})
    assert e.state == "failed" and e.document_state == "partial"
    assert codes(e) == ["SECSYNC_ERROR_212"]  # the forgery, not a follow-up clock gap
    assert doc.value == "Hello World0"


def _reconnect_with_own_update_acknowledged(clock):
    """A (the engine) has its updates up to ``clock`` acknowledged on S1, then reconnects."""
    e, doc = engine()
    s = snap()
    feed(e, document(s))
    sent(e)
    for c in range(clock + 1):
        e.add_changes([str(c)])
        e.flush()
        sent(e)
        feed(e, _saved(s, c))
    e.disconnected()
    e.connecting()
    e.connected()
    return e, doc, s


@pytest.mark.parametrize(
    ("recorded", "code"),
    [(None, "SECSYNC_ERROR_102"), (0, "SECSYNC_ERROR_102"), (1, None), (2, None)],
)
def test_102_snapshot_with_a_proof_chain_must_include_own_acknowledged_updates(recorded, code):
    """Issue 9 item 5: A's updates up to clock 1 are saved on S1; after a reconnect the relay
    answers with S2 (a child of S1) and its proof chain. S2 must record A's clock 1 at least
    (2: an update in flight at the disconnect was saved although its ack was lost)."""
    e, doc, s = _reconnect_with_own_update_acknowledged(1)
    clocks = {B.public_key_b64: 3}
    if recorded is not None:
        clocks[A.public_key_b64] = recorded
    s2 = snap("S2", parent=s, clocks=clocks, signer=B)
    feed(e, document(s2, [], _chain(s2)))
    if code is None:
        assert e.document_state == "complete" and e.errors == [] and doc.value == "S2"
    else:
        assert e.state == "failed" and codes(e) == [code] and doc.value != "S2"


def test_reconnect_continues_the_own_clock_of_the_known_snapshot():
    e, _doc, s = _reconnect_with_own_update_acknowledged(0)
    e.add_changes(["offline"])
    feed(e, document())  # delta: the known snapshot is still active, nothing new
    (frame,) = _data_frames(e)
    assert frame["publicData"]["refSnapshotId"] == s.public_data.snapshot_id
    assert frame["publicData"]["clock"] == 1  # not 0 again (the relay would reject it)
