"""Protocol rules beyond the vectors: docId binding, clocks, chains, ephemeral replay."""

import pytest

from secsync_jupyter import protocol as p

KEY = p.generate_key()
A = p.SigningKeyPair.generate()
B = p.SigningKeyPair.generate()
DOC = "doc-rules"


def _chain(n):
    snaps = [
        p.create_initial_snapshot(
            b"0", {"docId": DOC, "pubKey": A.public_key_b64, "snapshotId": p.generate_id()}, KEY, A
        )
    ]
    for i in range(1, n):
        parent = snaps[-1]
        snaps.append(
            p.create_snapshot(
                str(i).encode(),
                {
                    "docId": DOC,
                    "pubKey": A.public_key_b64,
                    "snapshotId": p.generate_id(),
                    "parentSnapshotId": parent.public_data.snapshot_id,
                    "parentSnapshotUpdateClocks": {A.public_key_b64: i},
                },
                KEY,
                A,
                p.snapshot_ciphertext_hash(parent),
                parent.public_data.parent_snapshot_proof,
            )
        )
    return snaps


def test_update_for_other_document_rejected_with_213():
    u = p.create_update(
        b"x", {"docId": "other", "pubKey": A.public_key_b64, "refSnapshotId": "s"}, KEY, A, 0
    )
    with pytest.raises(p.UpdateError) as info:
        p.verify_and_decrypt_update(u, KEY, "s", -1, current_doc_id=DOC)
    assert info.value.code == "SECSYNC_ERROR_213"
    assert info.value.field == "publicData.docId"


def test_ancestor_chain_and_parent_proof():
    snaps = _chain(4)
    entries = [p.snapshot_proof_entry(s) for s in snaps]
    assert p.is_valid_ancestor_snapshot(entries[0], entries[1:], snaps[3])
    assert p.is_valid_ancestor_snapshot(entries[3], [], snaps[3])
    assert not p.is_valid_ancestor_snapshot(entries[0], [entries[1], entries[3]], snaps[3])
    assert not p.is_valid_ancestor_snapshot(entries[1], entries[1:], snaps[3])
    parent = snaps[2]
    info = p.snapshot_proof_entry(parent)
    content = p.verify_and_decrypt_snapshot(snaps[3], KEY, DOC, A.public_key_b64, info, 3)
    assert content == b"3"
    with pytest.raises(p.SnapshotError) as e:
        p.verify_and_decrypt_snapshot(snaps[3], KEY, DOC, A.public_key_b64, entries[0], 3)
    assert e.value.code == "SECSYNC_ERROR_112"
    with pytest.raises(p.SnapshotError) as e:
        p.verify_and_decrypt_snapshot(snaps[3], KEY, DOC, A.public_key_b64, info, 2)
    assert e.value.code == "SECSYNC_ERROR_102"


def test_compare_update_clocks():
    assert p.compare_update_clocks({"a": 1}, {"a": 1}) == (True, {})
    assert p.compare_update_clocks({"a": 3, "b": 0}, {"a": 1}) == (False, {"a": 1, "b": 0})


def _handshake(sa: p.EphemeralSession, sb: p.EphemeralSession):
    """Run the initialize / proof exchange between two sessions; return every message."""
    log = []
    init = sa.initialize()
    log.append(init)
    r = sb.receive(init)  # B answers with proofAndRequestProof
    log.append(r.reply)
    r2 = sa.receive(r.reply)  # A verifies B and answers with proof
    log.append(r2.reply)
    assert sb.receive(r2.reply).reply is None  # B verifies A
    return log


def test_ephemeral_session_handshake_and_messages():
    sa, sb = p.EphemeralSession(DOC, KEY, A), p.EphemeralSession(DOC, KEY, B)
    _handshake(sa, sb)
    m = sa.create(b"cursor at 3")
    assert sb.receive(m).content == b"cursor at 3"
    with pytest.raises(p.EphemeralError) as e:
        sb.receive(m)
    assert e.value.code == "SECSYNC_ERROR_303"


def test_replayed_proof_cannot_reset_counter():
    """The reference 0.5.0 client delivers a message twice after a replayed proof."""
    sa, sb = p.EphemeralSession(DOC, KEY, A), p.EphemeralSession(DOC, KEY, B)
    log = _handshake(sa, sb)
    proof_from_a = log[2]
    m1 = sa.create(b"first")
    assert sb.receive(m1).content == b"first"
    with pytest.raises(p.EphemeralError) as e:
        sb.receive(proof_from_a)
    assert e.value.code == "SECSYNC_ERROR_303"
    with pytest.raises(p.EphemeralError) as e:
        sb.receive(m1)
    assert e.value.code == "SECSYNC_ERROR_303"
    # the stateless reference check *does* accept the same sequence (the known weakness)
    res = p.verify_and_decrypt_ephemeral_message(proof_from_a, KEY, DOC, sb.id, {}, B)
    res2 = p.verify_and_decrypt_ephemeral_message(m1, KEY, DOC, sb.id, res.valid_sessions, B)
    assert res2.content == b"first"


def test_message_without_session_gets_proof_request_and_302():
    sa, sb = p.EphemeralSession(DOC, KEY, A), p.EphemeralSession(DOC, KEY, B)
    r = sb.receive(sa.create(b"hi"))
    assert r.content is None and r.error.code == "SECSYNC_ERROR_302"
    assert r.reply is not None
    # A verifies B's proof and sends its own: afterwards A's messages are delivered
    r2 = sa.receive(r.reply)
    sb.receive(r2.reply)
    assert sb.receive(sa.create(b"now")).content == b"now"


def test_ephemeral_wrong_doc_is_306_in_session():
    other = p.EphemeralSession("other-doc", KEY, A)
    sb = p.EphemeralSession(DOC, KEY, B)
    with pytest.raises(p.EphemeralError) as e:
        sb.receive(other.initialize())
    assert e.value.code == "SECSYNC_ERROR_306"
