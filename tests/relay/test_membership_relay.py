"""The relay enforces the membership log (issue 11; docs/protocol.md "Membership log",
docs/relay.md "Membership enforcement"): on SQLite and PostgreSQL (the ``relay`` fixture runs
each test with both stores), standalone; tests/relay/test_membership_readers.py has the readers
and the Jupyter extension."""

from __future__ import annotations

import pytest

from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.membership import create_entry, create_log

from .membership_util import Team, append, connect, join
from .util import RelayClient

pytestmark = pytest.mark.asyncio


def code(n: int) -> str:
    return f"SECSYNC_ERROR_{n}"


async def create(base: str, team: Team) -> tuple[RelayClient, dict]:
    """The owner creates the document: proof, root, first snapshot."""
    owner, doc = await join(base, team.doc_id, team.owner_keys)
    assert doc == {
        "type": "document",
        "log": [],
        "logFrom": 0,
        "updates": [],
        "snapshotProofChain": [],
    }
    saved = await append(owner, team.root)
    assert saved == {"type": "log-entry-saved", "seq": 0, "hash": team.root.hash}
    return owner, doc


async def test_create_document_with_log_then_write(relay):
    team = Team()
    owner, _ = await create(relay.url, team)
    snap = team.owner.initial_snapshot()
    await owner.send(snap)
    assert (await owner.next("snapshot-saved"))["snapshotId"] == snap.public_data.snapshot_id
    await owner.send(team.owner.update(snap, 0))
    assert (await owner.next("update-saved"))["clock"] == 0

    # a second connection of the owner gets the log first, then the document
    again, doc = await join(relay.url, team.doc_id, team.owner_keys)
    assert doc["log"] == [team.root.to_json()] and doc["logFrom"] == 0
    assert doc["snapshot"]["publicData"]["snapshotId"] == snap.public_data.snapshot_id
    assert len(doc["updates"]) == 1
    # with the known head: only the entries after it
    head = f"knownLogSeq=0&knownLogHash={team.root.hash}"
    third, doc = await join(relay.url, team.doc_id, team.owner_keys, query=head)
    assert doc["log"] == [] and doc["logFrom"] == 1
    # a wrong known hash: the whole log
    bad = "knownLogSeq=0&knownLogHash=" + "A" * 43
    fourth, doc = await join(relay.url, team.doc_id, team.owner_keys, query=bad)
    assert doc["log"] == [team.root.to_json()] and doc["logFrom"] == 0
    for c in (owner, again, third, fourth):
        await c.close()


async def test_add_member_broadcast_before_their_writes(relay):
    team = Team()
    owner, _ = await create(relay.url, team)
    bob_keys = SigningKeyPair.generate()
    add = team.entry(team.owner_keys, "add-member", bob_keys.public_key_b64, "editor")
    assert await append(owner, add) == {"type": "log-entry-saved", "seq": 1, "hash": add.hash}
    bob = team.member(bob_keys)
    carol_keys = SigningKeyPair.generate()
    bob_conn, doc = await join(relay.url, team.doc_id, bob_keys)
    assert [e["seq"] for e in doc["log"]] == [0, 1]
    # the owner adds carol: bob gets the entry
    add_carol = team.entry(team.owner_keys, "add-member", carol_keys.public_key_b64, "viewer")
    assert (await append(owner, add_carol))["type"] == "log-entry-saved"
    assert (await bob_conn.next("log-entry"))["entry"] == add_carol.to_json()
    bob.at(team.state)
    snap = bob.initial_snapshot()
    await bob_conn.send(snap)
    await bob_conn.next("snapshot-saved")
    got = await owner.next("snapshot")
    assert got["snapshot"]["publicData"]["logHead"] == {"seq": 2, "hash": add_carol.hash}
    for c in (owner, bob_conn):
        await c.close()


async def test_log_rules_refused(relay):
    team = Team()
    owner, _ = await create(relay.url, team)
    bob_keys, carol_keys = SigningKeyPair.generate(), SigningKeyPair.generate()
    state0 = team.state
    add_bob = team.entry(team.owner_keys, "add-member", bob_keys.public_key_b64, "viewer")

    # bad signature
    forged = add_bob.to_json()
    forged["signature"] = forged["signature"][:-2] + ("AA" if forged["signature"][-2:] != "AA" else "BA")
    failed = await append(owner, forged)
    assert failed["type"] == "log-entry-failed" and failed["code"] in (code(704), code(701))
    # entry for another document
    other_root, other_state = create_log(team.owner_keys)
    other, _ = create_entry(other_state, team.owner_keys, "add-member", bob_keys.public_key_b64, "viewer")
    assert (await append(owner, other))["code"] == code(705)
    # signer without authority: a non-member
    stranger = SigningKeyPair.generate()
    from secsync_jupyter.protocol.membership import _Builder  # noqa: F401  (only to be sure it exists)

    assert (await append(owner, add_bob))["type"] == "log-entry-saved"
    # replayed entry
    replay = await append(owner, add_bob)
    assert replay["code"] == code(708) and replay["log"] == [add_bob.to_json()]
    # a fork: another entry on the same parent
    fork, _ = create_entry(state0, team.owner_keys, "add-member", carol_keys.public_key_b64, "editor")
    forked = await append(owner, fork)
    assert forked["code"] == code(707) and forked["seq"] == 1
    assert forked["log"] == [add_bob.to_json()]
    # a viewer may not add members (712)
    bob_state = team.state
    from secsync_jupyter.protocol.membership import MembershipError

    with pytest.raises(MembershipError):
        create_entry(bob_state, bob_keys, "add-member", carol_keys.public_key_b64, "viewer")
    del stranger
    for c in (owner,):
        await c.close()
