"""The relay enforces the membership log (issue 11; docs/protocol.md "Membership log",
docs/relay.md "Membership enforcement"): log rules, writes, removal of open connections. Each
test runs on SQLite and on PostgreSQL (the ``relay`` fixture), standalone;
tests/relay/test_membership_readers.py has the readers and the Jupyter extension."""

from __future__ import annotations

import asyncio

import pytest

from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.membership import create_entry, create_log

from .conftest import start_relay
from .membership_util import (
    Team,
    append,
    connect,
    join,
    next_fields,
    remove_and_see_closed,
    sign_entry,
)
from .pg import is_postgres
from .util import RelayClient

pytestmark = pytest.mark.asyncio


def code(n: int) -> str:
    return f"SECSYNC_ERROR_{n}"


async def create(base: str, team: Team) -> RelayClient:
    """The owner creates the document: proof, root (the document frame comes first, with an
    empty log)."""
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
    return owner


async def add(team: Team, owner: RelayClient, role: str) -> SigningKeyPair:
    keys = SigningKeyPair.generate()
    entry = team.entry(team.owner_keys, "add-member", keys.public_key_b64, role)
    assert await append(owner, entry) == {
        "type": "log-entry-saved",
        "seq": entry.seq,
        "hash": entry.hash,
    }
    return keys


async def nothing_more(*clients: RelayClient) -> None:
    """Every earlier frame of these clients was answered, and nothing is left unread."""
    for c in clients:
        await c.roundtrip_ok()
        assert c.pending() == [], c.pending()


async def test_create_write_and_read_back_with_the_log(relay):
    team = Team()
    owner = await create(relay.url, team)
    snap = team.owner.initial_snapshot()
    await owner.send(snap)
    assert (await owner.next("snapshot-saved"))["snapshotId"] == snap.public_data.snapshot_id
    await owner.send(team.owner.update(snap, 0))
    assert (await owner.next("update-saved"))["clock"] == 0

    # another connection of the owner: the whole log, then the document
    again, doc = await join(relay.url, team.doc_id, team.owner_keys)
    assert doc["log"] == [team.root.to_json()] and doc["logFrom"] == 0
    assert doc["snapshot"]["publicData"]["snapshotId"] == snap.public_data.snapshot_id
    assert doc["snapshot"]["publicData"]["logHead"] == {"seq": 0, "hash": team.root.hash}
    assert len(doc["updates"]) == 1
    # with the known head: only the entries after it
    known = f"knownLogSeq=0&knownLogHash={team.root.hash}"
    third, doc = await join(relay.url, team.doc_id, team.owner_keys, query=known)
    assert doc["log"] == [] and doc["logFrom"] == 1
    # a head the relay does not have: the whole log (the client finds out itself: 718)
    bad = "knownLogSeq=0&knownLogHash=" + "A" * 43
    fourth, doc = await join(relay.url, team.doc_id, team.owner_keys, query=bad)
    assert doc["log"] == [team.root.to_json()] and doc["logFrom"] == 0
    ahead = f"knownLogSeq=5&knownLogHash={team.root.hash}"
    fifth, doc = await join(relay.url, team.doc_id, team.owner_keys, query=ahead)
    assert doc["log"] == [team.root.to_json()] and doc["logFrom"] == 0
    await nothing_more(owner, again)
    for c in (owner, again, third, fourth, fifth):
        await c.close()


async def test_entries_reach_every_connection_before_messages_naming_them(relay):
    team = Team()
    owner = await create(relay.url, team)
    bob_keys = await add(team, owner, "editor")
    bob = team.member(bob_keys)
    bob_conn, doc = await join(relay.url, team.doc_id, bob_keys)
    assert [e["seq"] for e in doc["log"]] == [0, 1]
    viewer_keys = SigningKeyPair.generate()
    viewer_entry = team.entry(team.owner_keys, "add-member", viewer_keys.public_key_b64, "viewer")
    # the owner appends and at once writes under the new head
    owner_member = team.owner.at(team.state)
    snap = owner_member.initial_snapshot()
    await owner.send({"type": "log-entry", "entry": viewer_entry.to_json()})
    await owner.send(snap)
    assert (await owner.next("log-entry-saved"))["seq"] == 2
    assert (await owner.next("snapshot-saved"))["snapshotId"] == snap.public_data.snapshot_id
    # bob gets the entry, then the snapshot naming it
    first, second = await bob_conn.next(), await bob_conn.next()
    assert first == {"type": "log-entry", "entry": viewer_entry.to_json()}
    assert second["type"] == "snapshot"
    assert second["snapshot"]["publicData"]["logHead"] == {"seq": 2, "hash": viewer_entry.hash}
    # bob writes under the head he learnt
    bob.at(team.state)
    await bob_conn.send(bob.update(snap, 0))
    await bob_conn.next("update-saved")
    assert (await owner.next("update"))["publicData"]["pubKey"] == bob.pub
    await nothing_more(owner, bob_conn)
    for c in (owner, bob_conn):
        await c.close()


async def test_each_log_rule_accepted_and_refused(relay):
    team = Team()
    owner = await create(relay.url, team)
    bob_keys = await add(team, owner, "viewer")  # seq 1
    bob = bob_keys.public_key_b64
    carol, stranger = SigningKeyPair.generate(), SigningKeyPair.generate()
    before = team.state
    ok_entry, after = create_entry(
        before, team.owner_keys, "add-member", carol.public_key_b64, "editor"
    )

    async def refused(entry, number, seq=2, log=None):
        answer = await append(owner, entry)
        assert answer["type"] == "log-entry-failed", answer
        assert answer["code"] == code(number), answer
        assert answer["seq"] == seq
        assert answer["log"] == (log or [])

    # bad signature (the entry of a valid change, one signature byte changed)
    forged = ok_entry.to_json()
    sig = forged["signature"]
    forged["signature"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    await refused(forged, 704)
    # signer without authority: a viewer adding, a non-member adding, self-promotion
    await refused(
        sign_entry(next_fields(before, bob_keys, "add-member", carol.public_key_b64), bob_keys), 712
    )
    await refused(
        sign_entry(next_fields(before, stranger, "add-member", carol.public_key_b64), stranger), 711
    )
    await refused(
        sign_entry(next_fields(before, bob_keys, "set-role", bob, role="admin"), bob_keys), 713
    )
    # an entry of another document (a valid entry on a log with the same keys)
    other_root, other = create_log(team.owner_keys)
    other, _ = create_entry(other, team.owner_keys, "add-member", bob, "viewer")
    await refused(other, 705, seq=1)
    # the root of another document
    await refused(other_root, 707, seq=0, log=[e.to_json() for e in team.entries])
    # removing the last admin, or demoting it
    owner_pub = team.owner_keys.public_key_b64
    await refused(
        sign_entry(
            next_fields(before, team.owner_keys, "remove-member", owner_pub), team.owner_keys
        ),
        714,
    )
    await refused(
        sign_entry(
            next_fields(before, team.owner_keys, "set-role", owner_pub, role="editor"),
            team.owner_keys,
        ),
        714,
    )
    # a gap, a timestamp older than the head's, a target that is already a member
    await refused(
        sign_entry(
            next_fields(before, team.owner_keys, "add-member", carol.public_key_b64, seq=3),
            team.owner_keys,
        ),
        709,
        seq=3,
    )
    await refused(
        sign_entry(
            next_fields(before, team.owner_keys, "add-member", carol.public_key_b64, at=0),
            team.owner_keys,
        ),
        710,
    )
    await refused(
        sign_entry(next_fields(before, team.owner_keys, "add-member", bob), team.owner_keys), 715
    )
    # malformed
    answer = await append(owner, {"v": 1, "kind": "add-member"})
    assert answer["type"] == "log-entry-failed" and answer["code"] == code(701)
    answer = await append(owner, "not an entry")
    assert answer == {
        "type": "log-entry-failed",
        "seq": None,
        "code": code(701),
        "reason": answer["reason"],
        "log": [],
    }

    # accepted
    saved = await append(owner, ok_entry)
    assert saved == {"type": "log-entry-saved", "seq": 2, "hash": ok_entry.hash}
    # replayed: 708 with the relay's entry; a fork (another entry on the same parent): 707
    await refused(ok_entry, 708, log=[ok_entry.to_json()])
    fork, _ = create_entry(before, team.owner_keys, "add-member", stranger.public_key_b64, "viewer")
    await refused(fork, 707, log=[ok_entry.to_json()])
    # the root again
    await refused(
        team.root, 708, seq=0, log=[e.to_json() for e in team.entries] + [ok_entry.to_json()]
    )

    # nothing refused was stored: a new connection gets exactly the three accepted entries
    reader, doc = await join(relay.url, team.doc_id, team.owner_keys)
    assert doc["log"] == [*(e.to_json() for e in team.entries), ok_entry.to_json()]
    # any member may leave, an admin may remove an admin while another remains
    team.state = after
    promote = team.entry(team.owner_keys, "set-role", carol.public_key_b64, "admin")
    assert (await append(owner, promote))["type"] == "log-entry-saved"
    leave = team.entry(bob_keys, "remove-member", bob)
    assert (await append(owner, leave))["type"] == "log-entry-saved"
    removed = team.entry(carol, "remove-member", owner_pub)
    assert (await append(reader, removed))["type"] == "log-entry-saved"
    for c in (owner, reader):
        assert await c.wait_closed() == 1008  # the owner's key was removed: both closed
        assert c.frames[-1] == {"type": "unauthorized", "code": code(725), "reason": "removed"}


async def test_the_root_must_bind_the_document_and_be_signed_by_the_proven_key(relay):
    team = Team()
    someone = SigningKeyPair.generate()
    client, doc = await join(relay.url, team.doc_id, someone)
    assert doc["log"] == []
    # a non-root first: 706; the root signed by another key than the proven one: 711
    other_root, other_state = create_log(someone)
    entry, _ = create_entry(
        other_state, someone, "add-member", team.owner_keys.public_key_b64, "admin"
    )
    assert (await append(client, entry))["code"] == code(706)
    assert (await append(client, other_root))["code"] == code(706)  # binds another id
    assert (await append(client, team.root))["code"] == code(711)
    # before the root: no write, no ephemeral message
    owner = team.owner
    snap = owner.initial_snapshot()
    await client.send(snap)
    refused = await client.next("write-refused")
    assert refused == {
        "type": "write-refused",
        "of": "snapshot",
        "code": code(724),
        "snapshotId": snap.public_data.snapshot_id,
        "reason": refused["reason"],
    }
    await client.send(owner.ephemeral())
    assert (await client.next("write-refused"))["of"] == "ephemeral"
    await nothing_more(client)
    await client.close()
    # the creator: accepted
    creator = await create(relay.url, team)
    await creator.close()


async def test_writes_by_non_members_viewers_demoted_and_removed_refused(relay):
    team = Team()
    owner_conn = await create(relay.url, team)
    owner = team.owner
    snap = owner.initial_snapshot()
    await owner_conn.send(snap)
    await owner_conn.next("snapshot-saved")
    editor_keys = await add(team, owner_conn, "editor")  # seq 1
    viewer_keys = await add(team, owner_conn, "viewer")  # seq 2
    editor, viewer = team.member(editor_keys), team.member(viewer_keys)
    stranger = team.member(SigningKeyPair.generate())
    editor_conn, _ = await join(relay.url, team.doc_id, editor_keys)
    viewer_conn, _ = await join(relay.url, team.doc_id, viewer_keys)

    async def refused(conn: RelayClient, message, of: str) -> None:
        await conn.send(message)
        frame = await conn.next("write-refused")
        assert frame["of"] == of and frame["code"] == code(724), frame
        if of == "update":
            assert frame["snapshotId"] == snap.public_data.snapshot_id
            assert frame["clock"] == message.public_data.clock

    # a non-member's messages, sent over a member's connection: refused
    await refused(viewer_conn, stranger.update(snap, 0), "update")
    await refused(viewer_conn, stranger.snapshot(snap, {}), "snapshot")
    await refused(viewer_conn, stranger.ephemeral(), "ephemeral")
    # a viewer's writes refused, its presence forwarded
    await refused(viewer_conn, viewer.update(snap, 0), "update")
    await refused(viewer_conn, viewer.snapshot(snap, {}), "snapshot")
    await viewer_conn.send(viewer.ephemeral())
    assert (await owner_conn.next("ephemeral-message"))["publicData"]["pubKey"] == viewer.pub
    assert (await editor_conn.next("ephemeral-message"))["publicData"]["pubKey"] == viewer.pub
    # an editor's write without logHead, with one the relay does not store, with a head at
    # which it was not a member yet
    await refused(editor_conn, editor.update(snap, 0, logHead=None), "update")
    unknown = {"seq": 1, "hash": team.root.hash}
    await refused(editor_conn, editor.update(snap, 0, logHead=unknown), "update")
    beyond = {"seq": 9, "hash": team.root.hash}
    await refused(editor_conn, editor.update(snap, 0, logHead=beyond), "update")
    root_head = {"seq": 0, "hash": team.root.hash}
    await refused(editor_conn, editor.update(snap, 0, logHead=root_head), "update")
    # accepted at seq 1 (where it is an editor) and at the head
    await editor_conn.send(editor.update(snap, 0, logHead={"seq": 1, "hash": team.entries[1].hash}))
    await editor_conn.next("update-saved")
    await editor_conn.send(editor.update(snap, 1))
    await editor_conn.next("update-saved")

    # demoted: stays connected, its next write is refused, also one naming the older head
    old_head = dict(editor.head)
    demote = team.entry(team.owner_keys, "set-role", editor.pub, "viewer")
    assert (await append(owner_conn, demote))["type"] == "log-entry-saved"
    assert (await editor_conn.next("log-entry"))["entry"] == demote.to_json()
    await refused(editor_conn, editor.update(snap, 2, logHead=old_head), "update")
    editor.at(team.state)
    await refused(editor_conn, editor.update(snap, 2), "update")
    await editor_conn.send(editor.ephemeral())  # still a member: presence forwarded
    assert (await owner_conn.next("ephemeral-message"))["publicData"]["pubKey"] == editor.pub
    assert not editor_conn.closed

    # removed: the removing entry, then 725 and close 1008; its messages refused from others
    remove = await remove_and_see_closed(team, owner_conn, viewer_conn, viewer.pub)
    assert (await editor_conn.next("log-entry"))["entry"] == remove.to_json()
    await refused(editor_conn, viewer.ephemeral(), "ephemeral")
    # nothing refused was stored or forwarded: the owner saw only the two accepted updates
    later, doc = await join(relay.url, team.doc_id, team.owner_keys)
    assert [u["publicData"]["pubKey"] for u in doc["updates"]] == [editor.pub, editor.pub]
    owner_updates = [await owner_conn.next("update"), await owner_conn.next("update")]
    assert [u["publicData"]["clock"] for u in owner_updates] == [0, 1]
    await nothing_more(owner_conn, editor_conn)
    for c in (owner_conn, editor_conn, later):
        await c.close()


async def test_concurrent_appends_one_chain(relay):
    """Two admins append on the same parent at the same moment: one is stored, the other gets
    707 with the relay's entry, and both connections end with the same log."""
    team = Team()
    owner = await create(relay.url, team)
    admin_keys = await add(team, owner, "admin")
    admin, _ = await join(relay.url, team.doc_id, admin_keys)
    a, _ = create_entry(
        team.state,
        team.owner_keys,
        "add-member",
        SigningKeyPair.generate().public_key_b64,
        "viewer",
    )
    b, _ = create_entry(
        team.state, admin_keys, "add-member", SigningKeyPair.generate().public_key_b64, "viewer"
    )
    answers = await asyncio.gather(append(owner, a), append(admin, b))
    kinds = sorted(x["type"] for x in answers)
    assert kinds == ["log-entry-failed", "log-entry-saved"]
    failed = next(x for x in answers if x["type"] == "log-entry-failed")
    winner = a if answers[0]["type"] == "log-entry-saved" else b
    assert failed["code"] == code(707) and failed["log"] == [winner.to_json()]
    loser_conn = admin if winner is a else owner
    assert (await loser_conn.next("log-entry"))["entry"] == winner.to_json()
    for c in (owner, admin):
        await c.close()


async def test_a_second_entry_on_the_same_parent_is_refused_by_the_store(relays, db_path):
    """Two relays (two processes' worth of caches) on one database: the second one, whose
    cached log is behind, appends on the same parent; the store refuses it (707), the relay
    learns the other's entry from the store and sends it along."""
    first = await relays(db_path)
    second = await relays(db_path)
    team = Team()
    owner1 = await create(first.url, team)
    owner2, doc = await join(second.url, team.doc_id, team.owner_keys)
    assert doc["log"] == [team.root.to_json()]
    before = team.state
    a = team.entry(
        team.owner_keys, "add-member", SigningKeyPair.generate().public_key_b64, "viewer"
    )
    b, _ = create_entry(
        before, team.owner_keys, "add-member", SigningKeyPair.generate().public_key_b64, "editor"
    )
    assert (await append(owner1, a))["type"] == "log-entry-saved"
    failed = await append(owner2, b)  # the second relay still has only the root in memory
    assert failed["code"] == code(707) and failed["log"] == [a.to_json()]
    assert (await owner2.next("log-entry"))["entry"] == a.to_json()
    rows = await first.relay.store.read_log(team.doc_id)
    assert [(r.seq, r.hash) for r in rows] == [(0, team.root.hash), (1, a.hash)]
    # a member added through the first relay can prove its key to the second
    c_keys = SigningKeyPair.generate()
    add_c = team.entry(team.owner_keys, "add-member", c_keys.public_key_b64, "editor")
    assert (await append(owner1, add_c))["type"] == "log-entry-saved"
    c_conn, doc = await join(second.url, team.doc_id, c_keys)
    assert [e["seq"] for e in doc["log"]] == [0, 1, 2]
    for c in (owner1, owner2, c_conn):
        await c.close()
    if is_postgres(db_path):
        return
    # the SQLite file: the unique (doc_id, seq) is the database's own constraint
    import sqlite3

    with sqlite3.connect(db_path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO log_entries (doc_id, seq, hash, prev, entry, created_at) "
            "VALUES (?, 1, 'x', ?, '{}', 0)",
            (team.doc_id, team.root.hash),
        )


async def test_a_stranger_waiting_on_a_new_document_is_closed_when_the_root_arrives(relay):
    """Before the root any proof is accepted (there is nothing to read); once the creator's
    root is stored, a connection whose key is not a member is closed like a removed one."""
    team = Team()
    stranger_keys = SigningKeyPair.generate()
    stranger, doc = await join(relay.url, team.doc_id, stranger_keys)
    assert doc["log"] == [] and "snapshot" not in doc
    owner = await create(relay.url, team)
    assert await stranger.wait_closed() == 1008
    assert stranger.frames[-2:] == [
        {"type": "log-entry", "entry": team.root.to_json()},
        {"type": "unauthorized", "code": code(725), "reason": "removed"},
    ]
    snap = team.owner.initial_snapshot()
    await owner.send(snap)
    await owner.next("snapshot-saved")
    assert all(f["type"] != "snapshot" for f in stranger.frames)
    await owner.close()


async def test_removal_reaches_connections_on_another_process(pg_url):
    """PostgreSQL, two relays on one database (the cross-process fan-out, relay/fanout.py,
    tells the other one): a member removed through the first relay is closed (725) on the
    second, after the removing entry; an entry added through the first reaches the second's
    connections before a snapshot naming it."""
    first, second = await start_relay(pg_url), await start_relay(pg_url)
    try:
        await removal_on_another_relay(first, second)
    finally:
        for r in (first, second):
            await r.server.stop(timeout=2)


async def removal_on_another_relay(first, second) -> None:
    team = Team()
    owner = await create(first.url, team)
    viewer_keys = await add(team, owner, "viewer")
    viewer, doc = await join(second.url, team.doc_id, viewer_keys)
    assert [e["seq"] for e in doc["log"]] == [0, 1]
    editor_keys = SigningKeyPair.generate()
    add_editor = team.entry(team.owner_keys, "add-member", editor_keys.public_key_b64, "editor")
    await owner.send({"type": "log-entry", "entry": add_editor.to_json()})
    snap = team.owner.at(team.state).initial_snapshot()
    await owner.send(snap)
    await owner.next("snapshot-saved")
    first_frame, second_frame = await viewer.next(), await viewer.next()
    assert first_frame == {"type": "log-entry", "entry": add_editor.to_json()}
    assert second_frame["type"] == "snapshot"
    await remove_and_see_closed(team, owner, viewer, viewer_keys.public_key_b64)
    await owner.close()


async def test_the_log_and_its_rules_survive_a_restart_of_the_relay(relays, db_path):
    """Accepted entries are stored durably: a relay started again on the same database (and
    empty caches) serves the same log, enforces the roles it says (a removed member refused
    on connect, a demoted one's write refused), continues the chain after its head and
    refuses a second entry on the same parent."""
    first = await relays(db_path)
    team = Team()
    owner = await create(first.url, team)
    snap = team.owner.initial_snapshot()
    await owner.send(snap)
    await owner.next("snapshot-saved")
    editor_keys = await add(team, owner, "editor")  # seq 1
    gone_keys = await add(team, owner, "viewer")  # seq 2
    assert (
        await append(
            owner, team.entry(team.owner_keys, "set-role", editor_keys.public_key_b64, "viewer")
        )
    )["type"] == "log-entry-saved"  # seq 3
    gone = team.member(gone_keys)
    assert (await append(owner, team.entry(team.owner_keys, "remove-member", gone.pub)))[
        "type"
    ] == "log-entry-saved"  # seq 4
    await owner.close()
    before = team.state
    await first.server.stop(timeout=2)

    second = await relays(db_path)
    owner, doc = await join(second.url, team.doc_id, team.owner_keys)
    assert doc["log"] == [e.to_json() for e in team.entries] and doc["logFrom"] == 0
    assert doc["snapshot"]["publicData"]["snapshotId"] == snap.public_data.snapshot_id
    # the removed member gets nothing (722: not a member)
    refused = await connect(second.url, team.doc_id, gone_keys)
    assert await refused.wait_closed() == 1008
    assert [f["type"] for f in refused.frames] == ["reader-challenge", "unauthorized"]
    assert refused.frames[1]["code"] == code(722)
    # the demoted editor reads, and its write is refused
    editor = team.member(editor_keys)
    editor_conn, doc = await join(second.url, team.doc_id, editor_keys)
    assert [e["seq"] for e in doc["log"]] == [0, 1, 2, 3, 4]
    await editor_conn.send(editor.update(snap, 0))
    frame = await editor_conn.next("write-refused")
    assert frame["of"] == "update" and frame["code"] == code(724)
    # the chain continues after the stored head; a second entry on that parent is a fork (707)
    fork, _ = create_entry(
        before,
        team.owner_keys,
        "add-member",
        SigningKeyPair.generate().public_key_b64,
        "editor",
    )
    nxt = team.entry(
        team.owner_keys, "add-member", SigningKeyPair.generate().public_key_b64, "editor"
    )
    assert (await append(owner, nxt)) == {"type": "log-entry-saved", "seq": 5, "hash": nxt.hash}
    failed = await append(owner, fork)
    assert failed["type"] == "log-entry-failed" and failed["code"] == code(707), failed
    assert (await editor_conn.next("log-entry"))["entry"] == nxt.to_json()
    rows = await second.relay.store.read_log(team.doc_id)
    assert [(r.seq, r.hash) for r in rows] == [(e.seq, e.hash) for e in team.entries]
    await nothing_more(owner, editor_conn)
    for c in (owner, editor_conn):
        await c.close()
