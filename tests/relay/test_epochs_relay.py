"""The relay's side of key epochs, lockboxes and links (issue 12; docs/protocol.md "Frames
(issue 12)", docs/relay.md "Key epochs on the relay"): rotations stored with exactly their
lockbox set, each connection given only its own lockboxes, link connections, epoch checks on
writes, retention. Tests with the ``relay`` / ``relays`` fixtures run on SQLite and on
PostgreSQL; a few run on the in-memory store too."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.epochs import (
    create_rotation,
    open_lockbox,
    seal_lockbox,
)
from secsync_jupyter.protocol.links import (
    create_link,
    create_remove_link,
    join_via_link,
    link_keypair,
)
from secsync_jupyter.protocol.membership import create_entry, create_log
from secsync_jupyter.relay import Relay, config
from secsync_jupyter.relay.config import parse_retention
from secsync_jupyter.relay.standalone import StandaloneRelay, build_parser
from secsync_jupyter.relay.store import Retention, store_from_url

from .conftest import RunningRelay, start_relay
from .membership_util import (
    Team,
    answer,
    append,
    connect,
    join,
    next_fields,
    sign_entry,
)
from .pg import db_rows
from .util import RelayClient, url_for

pytestmark = pytest.mark.asyncio


def code(n: int) -> str:
    return f"SECSYNC_ERROR_{n}"


# ------------------------------------------------------------------------------ helpers
async def create(base: str, team: Team, **kw) -> RelayClient:
    owner, doc = await join(base, team.doc_id, team.owner_keys, **kw)
    assert doc["log"] == [] and "lockboxes" not in doc
    assert (await append(owner, team.root))["type"] == "log-entry-saved"
    return owner


async def add(team: Team, owner: RelayClient, role: str, lockboxes=None) -> SigningKeyPair:
    keys = SigningKeyPair.generate()
    entry = team.entry(team.owner_keys, "add-member", keys.public_key_b64, role)
    saved = await send_entry(owner, entry, lockboxes)
    assert saved == {"type": "log-entry-saved", "seq": entry.seq, "hash": entry.hash}
    return keys


async def send_entry(client: RelayClient, entry, lockboxes=None) -> dict:
    frame: dict = {"type": "log-entry", "entry": entry.to_json()}
    if lockboxes is not None:
        frame["lockboxes"] = lockboxes
    await client.send(frame)
    return await answer(client, ("log-entry-saved", "log-entry-failed"))


def rotate(team: Team):
    """A rotation on the team's state (not applied: :func:`applied`)."""
    return create_rotation(team.state, team.owner_keys)


def applied(team: Team, entry, state) -> None:
    team.entries.append(entry)
    team.state = state


def boxes(rotation) -> list[dict]:
    return [lb.to_json() for lb in rotation.lockboxes]


async def nothing_more(*clients: RelayClient) -> None:
    for c in clients:
        await c.roundtrip_ok()
        assert c.pending() == [], c.pending()


async def link_roundtrip(client: RelayClient) -> None:
    """Every earlier frame of a link connection was answered, nothing left unread (a link
    connection answers anything but a log-entry with write-refused 753)."""
    await client.send("not json")
    refused = await client.next("write-refused")
    assert refused["code"] == code(753)
    assert client.pending() == [], client.pending()


def stored_lockboxes(db: str, doc_id: str) -> list[tuple]:
    return db_rows(
        db,
        "SELECT epoch, recipient FROM lockboxes WHERE doc_id = ? ORDER BY epoch, recipient",
        doc_id,
    )


def head_seq(db: str, doc_id: str) -> int:
    return db_rows(db, "SELECT MAX(seq) FROM log_entries WHERE doc_id = ?", doc_id)[0][0]


# ------------------------------------------------------------------------------ rotation
async def rotation_and_own_lockboxes(url: str) -> None:
    team = Team()
    owner = await create(url, team)
    bob_keys = await add(team, owner, "editor")
    carol_keys = await add(team, owner, "viewer")
    bob, _ = await join(url, team.doc_id, bob_keys)
    carol, _ = await join(url, team.doc_id, carol_keys)

    rotation = rotate(team)
    saved = await send_entry(owner, rotation.entry, boxes(rotation))
    assert saved == {"type": "log-entry-saved", "seq": 3, "hash": rotation.entry.hash}
    applied(team, rotation.entry, rotation.state)
    by_recipient = {lb.recipient: lb.to_json() for lb in rotation.lockboxes}
    for conn, keys in ((bob, bob_keys), (carol, carol_keys)):
        # the entry without lockboxes, then the connection's own lockbox
        assert await conn.next() == {"type": "log-entry", "entry": rotation.entry.to_json()}
        frame = await conn.next()
        assert frame == {"type": "lockbox", "lockbox": by_recipient[keys.public_key_b64]}
        assert open_lockbox(team.state, keys, frame["lockbox"]) == rotation.key
    await nothing_more(owner, bob, carol)

    # a new connection: its own lockboxes in the document frame, nobody else's
    for keys in (team.owner_keys, bob_keys, carol_keys):
        conn, doc = await join(url, team.doc_id, keys)
        assert doc["lockboxes"] == [by_recipient[keys.public_key_b64]]
        await conn.close()
    for c in (owner, bob, carol):
        await c.close()


async def test_rotation_with_its_set_is_stored_and_each_connection_gets_only_its_own(relay):
    await rotation_and_own_lockboxes(relay.url)


async def test_rotation_and_own_lockboxes_on_the_memory_store():
    running = await start_relay("memory:")
    try:
        await rotation_and_own_lockboxes(running.url)
    finally:
        await running.server.stop(timeout=2)


async def test_bad_lockbox_sets_are_refused_and_nothing_is_stored(relay):
    team = Team()
    owner = await create(relay.url, team)
    await add(team, owner, "editor")
    stranger = SigningKeyPair.generate()
    rotation = rotate(team)
    good = boxes(rotation)
    forged = [
        *good[1:],
        seal_lockbox(team.doc_id, 1, os.urandom(32), good[0]["recipient"]).to_json(),
    ]
    extra = [*good, seal_lockbox(team.doc_id, 1, rotation.key, stranger.public_key_b64).to_json()]
    other_epoch = [dict(good[0], epoch=2), *good[1:]]
    cases = [
        (None, 760),  # a rotation needs its set
        ("nope", 760),
        (good[1:], 765),  # one missing
        (extra, 765),  # one for a non-recipient
        ([good[0], *good], 765),  # one twice
        (forged, 764),  # not the committed set
        (other_epoch, 763),
    ]
    for lockboxes, number in cases:
        failed = await send_entry(owner, rotation.entry, lockboxes)
        assert failed["type"] == "log-entry-failed" and failed["code"] == code(number), failed
        assert failed["seq"] == 2
    # nothing of it was stored: the log still ends at seq 1, no lockbox anywhere
    assert head_seq(relay.db, team.doc_id) == 1
    assert stored_lockboxes(relay.db, team.doc_id) == []
    again, doc = await join(relay.url, team.doc_id, team.owner_keys)
    assert len(doc["log"]) == 2 and "lockboxes" not in doc
    # the right set is then accepted
    assert (await send_entry(owner, rotation.entry, good))["type"] == "log-entry-saved"
    assert len(stored_lockboxes(relay.db, team.doc_id)) == 2
    await nothing_more(owner)
    for c in (owner, again):
        await c.close()


async def test_a_removed_member_gets_nothing_of_the_new_epoch(relay):
    team = Team()
    owner = await create(relay.url, team)
    bob_keys = await add(team, owner, "editor")
    carol_keys = await add(team, owner, "editor")
    bob, _ = await join(relay.url, team.doc_id, bob_keys)
    carol, _ = await join(relay.url, team.doc_id, carol_keys)
    remove = team.entry(team.owner_keys, "remove-member", bob_keys.public_key_b64)
    assert (await send_entry(owner, remove))["type"] == "log-entry-saved"
    assert await bob.wait_closed() == 1008
    assert bob.frames[-1] == {"type": "unauthorized", "code": code(725), "reason": "removed"}
    rotation = rotate(team)
    assert bob_keys.public_key_b64 not in {lb.recipient for lb in rotation.lockboxes}
    # a malicious admin's client adding bob's lockbox to the set is refused (765)
    with_bob = [
        *boxes(rotation),
        seal_lockbox(team.doc_id, 1, rotation.key, bob_keys.public_key_b64).to_json(),
    ]
    assert (await send_entry(owner, rotation.entry, with_bob))["code"] == code(765)
    assert (await send_entry(owner, rotation.entry, boxes(rotation)))["type"] == "log-entry-saved"
    applied(team, rotation.entry, rotation.state)
    assert await carol.next() == {"type": "log-entry", "entry": remove.to_json()}
    assert await carol.next() == {"type": "log-entry", "entry": rotation.entry.to_json()}
    assert (await carol.next())["lockbox"]["recipient"] == carol_keys.public_key_b64
    # bob's reconnect gets nothing at all (722), and nothing is stored for him
    again = await connect(relay.url, team.doc_id, bob_keys)
    assert await again.wait_closed() == 1008
    assert again.frames[-1]["code"] == code(722)
    assert [f["type"] for f in again.frames] == ["reader-challenge", "unauthorized"]
    assert bob_keys.public_key_b64 not in {r[1] for r in stored_lockboxes(relay.db, team.doc_id)}
    # nor can a member store one for him afterwards (765)
    await owner.send(
        {
            "type": "lockbox",
            "lockbox": seal_lockbox(
                team.doc_id, 1, rotation.key, bob_keys.public_key_b64
            ).to_json(),
        }
    )
    failed = await owner.next("lockbox-failed")
    assert failed["code"] == code(765) and failed["recipient"] == bob_keys.public_key_b64
    await nothing_more(owner, carol)
    for c in (owner, carol):
        await c.close()


async def test_single_lockboxes_with_an_entry_and_alone(relay):
    team = Team()
    owner = await create(relay.url, team)
    await add(team, owner, "editor")
    rotation = rotate(team)
    assert (await send_entry(owner, rotation.entry, boxes(rotation)))["type"] == "log-entry-saved"
    applied(team, rotation.entry, rotation.state)
    epoch0 = os.urandom(32)  # the creation's key (epoch 0 has no key check)

    # add-member with the new member's lockbox of the current epoch, checked after the entry
    dave = SigningKeyPair.generate()
    lb1 = seal_lockbox(team.doc_id, 1, rotation.key, dave.public_key_b64).to_json()
    entry = team.entry(team.owner_keys, "add-member", dave.public_key_b64, "editor")
    assert (await send_entry(owner, entry, [lb1]))["type"] == "log-entry-saved"
    dave_conn, doc = await join(relay.url, team.doc_id, dave)
    assert doc["lockboxes"] == [lb1]
    # an entry with a bad lockbox: refused, nothing stored
    erin = SigningKeyPair.generate()
    stranger = SigningKeyPair.generate()
    bad = seal_lockbox(team.doc_id, 1, rotation.key, stranger.public_key_b64).to_json()
    erin_entry, _ = create_entry(
        team.state, team.owner_keys, "add-member", erin.public_key_b64, "viewer"
    )
    failed = await send_entry(owner, erin_entry, [bad])
    assert failed["code"] == code(765)
    failed = await send_entry(owner, erin_entry, {"not": "a list"})
    assert failed["code"] == code(760)
    assert head_seq(relay.db, team.doc_id) == entry.seq

    # alone: an older epoch's key for dave, live to his connection
    lb0 = seal_lockbox(team.doc_id, 0, epoch0, dave.public_key_b64).to_json()
    await owner.send({"type": "lockbox", "lockbox": lb0})
    assert await owner.next("lockbox-saved") == {
        "type": "lockbox-saved",
        "epoch": 0,
        "recipient": dave.public_key_b64,
    }
    assert await dave_conn.next("lockbox") == {"type": "lockbox", "lockbox": lb0}
    # the same again: saved; another one for the same (epoch, recipient): the first stays
    await owner.send({"type": "lockbox", "lockbox": lb0})
    assert (await owner.next("lockbox-saved"))["epoch"] == 0
    other = seal_lockbox(team.doc_id, 0, epoch0, dave.public_key_b64).to_json()
    await owner.send({"type": "lockbox", "lockbox": other})
    failed = await owner.next("lockbox-failed")
    assert failed["code"] == code(762) and failed["epoch"] == 0
    # unknown epoch, another document, malformed
    await owner.send({"type": "lockbox", "lockbox": dict(lb0, epoch=7)})
    assert (await owner.next("lockbox-failed"))["code"] == code(766)
    other_doc = Team().doc_id
    await owner.send({"type": "lockbox", "lockbox": dict(lb0, docId=other_doc)})
    assert (await owner.next("lockbox-failed"))["code"] == code(763)
    await owner.send({"type": "lockbox", "lockbox": {"epoch": "x"}})
    failed = await owner.next("lockbox-failed")
    assert failed["code"] == code(760) and failed["epoch"] is None and failed["recipient"] is None
    again, doc = await join(relay.url, team.doc_id, dave)
    assert doc["lockboxes"] == [lb0, lb1]  # oldest epoch first, the first one of epoch 0
    await nothing_more(owner, dave_conn)
    for c in (owner, dave_conn, again):
        await c.close()


# ------------------------------------------------------------------------------ links
async def test_link_connections_join_and_are_closed_when_the_link_is_removed(relay):
    team = Team()
    owner = await create(relay.url, team)
    bob_keys = await add(team, owner, "editor")
    bob, _ = await join(relay.url, team.doc_id, bob_keys)
    key0 = os.urandom(32)
    link = create_link(team.state, team.owner_keys, "viewer", "Class", epoch_key=key0)
    saved = await send_entry(owner, link.entry, [link.lockbox.to_json()])
    assert saved["type"] == "log-entry-saved"
    applied(team, link.entry, link.state)
    assert (await bob.next())["entry"]["kind"] == "add-link"
    # content the link connection must not get
    snap = team.owner.at(team.state).initial_snapshot()
    await owner.send(snap)
    await owner.next("snapshot-saved")
    await bob.next("snapshot")

    link_keys = link_keypair(link.secret)
    conn, doc = await join(relay.url, team.doc_id, link_keys)
    assert doc == {
        "type": "document",
        "log": [e.to_json() for e in team.entries],
        "logFrom": 0,
        "lockboxes": [link.lockbox.to_json()],
        "link": True,
        "updates": [],
    }
    # it gets no updates nor ephemeral messages; it may write nothing but its add-member
    await owner.send(team.owner.update(snap, 0))
    await owner.next("update-saved")
    await owner.send(team.owner.ephemeral())
    await bob.next("update")
    await bob.next("ephemeral-message")
    await conn.send(team.owner.update(snap, 1))
    assert (await conn.next("write-refused"))["of"] == "update"
    await conn.send(team.owner.snapshot(snap, {team.owner.pub: 0}))
    assert (await conn.next("write-refused"))["of"] == "snapshot"
    await conn.send({"type": "lockbox", "lockbox": link.lockbox.to_json()})
    assert (await conn.next("write-refused")) == {
        "type": "write-refused",
        "of": "lockbox",
        "code": code(753),
        "reason": "a link connection may only add a member",
    }
    # an entry it did not sign, or one above the link's role
    joiner = SigningKeyPair.generate()
    by_owner, _ = create_entry(
        team.state, team.owner_keys, "add-member", joiner.public_key_b64, "viewer"
    )
    assert (await send_entry(conn, by_owner))["code"] == code(753)
    too_high = sign_entry(
        next_fields(team.state, link_keys, "add-member", joiner.public_key_b64, role="editor"),
        link_keys,
    )
    await conn.send({"type": "log-entry", "entry": too_high})
    assert (await conn.next("log-entry-failed"))["code"] == code(756)
    await link_roundtrip(conn)

    entry, state = join_via_link(team.state, link.secret, joiner.public_key_b64)
    mine = seal_lockbox(team.doc_id, 0, key0, joiner.public_key_b64).to_json()
    saved = await send_entry(conn, entry, [mine])
    assert saved == {"type": "log-entry-saved", "seq": entry.seq, "hash": entry.hash}
    applied(team, entry, state)
    assert (await bob.next())["entry"]["signer"] == link_keys.public_key_b64
    assert await owner.next() == {"type": "log-entry", "entry": entry.to_json()}
    # the joiner, as itself, gets the content and its lockbox
    me, doc = await join(relay.url, team.doc_id, joiner)
    assert doc["lockboxes"] == [mine]
    assert doc["snapshot"]["publicData"]["snapshotId"] == snap.public_data.snapshot_id
    assert team.state.members[joiner.public_key_b64].role == "viewer"

    # the owner revokes the link: its connection is closed (755), a new one refused (755)
    remove, state = create_remove_link(team.state, team.owner_keys, link_keys.public_key_b64)
    assert (await send_entry(owner, remove))["type"] == "log-entry-saved"
    applied(team, remove, state)
    assert await conn.wait_closed() == 1008
    assert conn.frames[-2:] == [
        {"type": "log-entry", "entry": remove.to_json()},
        {"type": "unauthorized", "code": code(755), "reason": "the link was removed"},
    ]
    late = await connect(relay.url, team.doc_id, link_keys)
    assert await late.wait_closed() == 1008
    assert late.frames[-1]["code"] == code(755)
    for c in (bob, me):
        assert await c.next() == {"type": "log-entry", "entry": remove.to_json()}
    # the person who joined through it keeps access
    await nothing_more(owner, bob, me)
    for c in (owner, bob, me):
        await c.close()


async def test_an_expired_link_can_neither_read_nor_sign(relay):
    """Expiry by the relay's clock: a link whose expiresAt has passed (its entries were
    made in the past) is refused as a reader (754), and an add-member it signed with an
    ``at`` before its expiry is refused at the relay's clock (754) whoever uploads it."""
    past = int(time.time() * 1000) - 60_000
    team = Team()
    team.root, team.state = create_log(team.owner_keys, name="Owner", at=past)
    team.doc_id = team.state.doc_id
    team.entries = [team.root]
    owner = await create(relay.url, team)
    link = create_link(
        team.state, team.owner_keys, "editor", "Old", expires_at=past + 10, at=past + 1
    )
    assert (await send_entry(owner, link.entry))["type"] == "log-entry-saved"
    applied(team, link.entry, link.state)
    link_keys = link_keypair(link.secret)
    conn = await connect(relay.url, team.doc_id, link_keys)
    assert await conn.wait_closed() == 1008
    assert conn.frames[-1] == {
        "type": "unauthorized",
        "code": code(754),
        "reason": "the link has expired",
    }
    joiner = SigningKeyPair.generate()
    entry, _ = join_via_link(team.state, link.secret, joiner.public_key_b64, at=past + 5)
    assert (await send_entry(owner, entry))["code"] == code(754)
    assert head_seq(relay.db, team.doc_id) == 1
    await nothing_more(owner)
    await owner.close()


async def test_a_link_connection_ends_when_the_link_expires(relay):
    """A link live at its reader proof: its connection is closed with 754 once the relay's
    clock passes the link's expiresAt (here about three seconds later)."""
    team = Team()
    owner = await create(relay.url, team)
    expires = int(time.time() * 1000) + 3000
    link = create_link(team.state, team.owner_keys, "viewer", "Soon", expires_at=expires)
    assert (await send_entry(owner, link.entry))["type"] == "log-entry-saved"
    conn, doc = await join(relay.url, team.doc_id, link_keypair(link.secret))
    assert doc["link"] is True
    assert await conn.wait_closed() == 1008
    assert conn.frames[-1] == {
        "type": "unauthorized",
        "code": code(754),
        "reason": "the link has expired",
    }
    assert int(time.time() * 1000) > expires
    await nothing_more(owner)
    await owner.close()


# ------------------------------------------------------------------------------ epochs on writes
async def test_writes_in_a_superseded_epoch_are_refused(relay):
    team = Team()
    owner = await create(relay.url, team)
    bob_keys = await add(team, owner, "editor")
    bob = team.member(bob_keys)
    bob_conn, _ = await join(relay.url, team.doc_id, bob_keys)
    old_head = team.state
    snap = team.owner.at(team.state).initial_snapshot()  # epoch 0 (absent)
    await owner.send(snap)
    await owner.next("snapshot-saved")
    await bob_conn.next("snapshot")
    rotation = rotate(team)
    assert (await send_entry(owner, rotation.entry, boxes(rotation)))["type"] == "log-entry-saved"
    applied(team, rotation.entry, rotation.state)
    assert await bob_conn.next() == {"type": "log-entry", "entry": rotation.entry.to_json()}
    assert (await bob_conn.next())["type"] == "lockbox"

    def refused(frame, of, number):
        assert frame["type"] == "write-refused" and frame["of"] == of, frame
        assert frame["code"] == code(number), frame

    # an update on the epoch-0 snapshot, now superseded: 768 (under either head)
    bob.at(team.state)
    await bob_conn.send(bob.update(snap, 0))
    refused(await bob_conn.next("write-refused"), "update", 768)
    bob.at(old_head)
    await bob_conn.send(bob.update(snap, 0))
    refused(await bob_conn.next("write-refused"), "update", 768)
    # a snapshot in epoch 0 under the old head: superseded (768)
    await bob_conn.send(bob.snapshot(snap, {}))
    refused(await bob_conn.next("write-refused"), "snapshot", 768)
    # not the epoch at its logHead: 767 (both ways), malformed: 767
    bob.at(team.state)
    await bob_conn.send(bob.snapshot(snap, {}))  # no epoch = 0 under the rotation's head
    refused(await bob_conn.next("write-refused"), "snapshot", 767)
    bob.at(old_head)
    await bob_conn.send(bob.snapshot(snap, {}, epoch=1))
    refused(await bob_conn.next("write-refused"), "snapshot", 767)
    bob.at(team.state)
    await bob_conn.send(bob.snapshot(snap, {}, epoch="1"))
    refused(await bob_conn.next("write-refused"), "snapshot", 767)
    # nothing of it was stored or forwarded; the new epoch's snapshot is accepted
    new = bob.snapshot(snap, {}, epoch=1)
    await bob_conn.send(new)
    await bob_conn.next("snapshot-saved")
    assert (await owner.next("snapshot"))["snapshot"]["publicData"]["epoch"] == 1
    await bob_conn.send(bob.update(new, 0))
    await bob_conn.next("update-saved")
    await owner.next("update")
    # a reader connecting now gets the epoch-1 snapshot (the relay reloads its epoch)
    again, doc = await join(relay.url, team.doc_id, team.owner_keys)
    assert doc["snapshot"]["publicData"]["epoch"] == 1 and len(doc["updates"]) == 1
    await nothing_more(owner, bob_conn, again)
    for c in (owner, bob_conn, again):
        await c.close()


async def test_documents_without_a_log_ignore_epochs(relay):
    """A document without a log is not checked for epochs (its publicData is the
    reference client's business): an ``epoch`` of any shape is stored and forwarded."""
    from .util import Author

    author = Author("plain-doc")
    conn = await RelayClient.open(url_for(relay.url, "plain-doc"))
    await conn.next("document")
    snap = author.initial_snapshot(epoch="whatever")
    await conn.send(snap)
    await conn.next("snapshot-saved")
    await conn.send(author.update(snap, 0))
    await conn.next("update-saved")
    await conn.close()


# ------------------------------------------------------------------------------ cross-process
async def test_a_rotation_on_one_relay_reaches_its_recipients_on_another(pg_url):
    """PostgreSQL, two relays on one database: the entry and each recipient's own lockbox
    reach connections of the other process (fan-out doorbell, then a read)."""
    first, second = await start_relay(pg_url), await start_relay(pg_url)
    try:
        team = Team()
        owner = await create(first.url, team)
        bob_keys = await add(team, owner, "editor")
        carol_keys = await add(team, owner, "viewer")
        bob, _ = await join(second.url, team.doc_id, bob_keys)
        carol, _ = await join(second.url, team.doc_id, carol_keys)
        rotation = rotate(team)
        saved = await send_entry(owner, rotation.entry, boxes(rotation))
        assert saved["type"] == "log-entry-saved"
        mine = {lb.recipient: lb.to_json() for lb in rotation.lockboxes}
        for conn, keys in ((bob, bob_keys), (carol, carol_keys)):
            assert await conn.next() == {"type": "log-entry", "entry": rotation.entry.to_json()}
            assert await conn.next() == {"type": "lockbox", "lockbox": mine[keys.public_key_b64]}
        applied(team, rotation.entry, rotation.state)
        # a lockbox alone (no entry) rings the doorbell: carol's connection gets it
        lb0 = seal_lockbox(team.doc_id, 0, os.urandom(32), carol_keys.public_key_b64).to_json()
        await owner.send({"type": "lockbox", "lockbox": lb0})
        await owner.next("lockbox-saved")
        assert await carol.next() == {"type": "lockbox", "lockbox": lb0}
        # the first snapshot of the new epoch, written through the first relay: the second
        # knows its epoch, so an update on it is accepted there (and one on the old is not)
        snap = team.owner.at(team.state).initial_snapshot(epoch=1)
        await owner.send(snap)
        await owner.next("snapshot-saved")
        for conn in (bob, carol):
            assert (await conn.next())["type"] == "snapshot"
        bob_member = team.member(bob_keys)
        await bob.send(bob_member.update(snap, 0))
        await bob.next("update-saved")
        assert (await owner.next("update"))["publicData"]["pubKey"] == bob_member.pub
        await carol.next("update")
        await nothing_more(owner, bob, carol)
        for c in (owner, bob, carol):
            await c.close()
    finally:
        for r in (first, second):
            await r.server.stop(timeout=2)


# ------------------------------------------------------------------------------ retention
async def start_with(db: str, retention: Retention) -> RunningRelay:
    relay = Relay(store_from_url(db), retention=retention)
    server = StandaloneRelay(relay, open_access=True)
    port = await server.start("127.0.0.1", 0)
    return RunningRelay(server, f"ws://127.0.0.1:{port}", db)


async def epochs_written(url: str, count: int, size: int) -> tuple[Team, list[str], str]:
    """A document with ``count`` snapshots (each with an update) in epoch 0, then a rotation
    and a snapshot in epoch 1; returns the epoch-0 snapshot ids and the active one."""
    team = Team()
    owner = await create(url, team)
    member = team.owner.at(team.state)
    snap = member.initial_snapshot(os.urandom(size))
    await owner.send(snap)
    await owner.next("snapshot-saved")
    ids = [snap.public_data.snapshot_id]
    for _ in range(count - 1):
        await owner.send(member.update(snap, 0, os.urandom(size // 4)))
        await owner.next("update-saved")
        snap = member.snapshot(snap, {member.pub: 0}, os.urandom(size))
        await owner.send(snap)
        await owner.next("snapshot-saved")
        ids.append(snap.public_data.snapshot_id)
    rotation = rotate(team)
    assert (await send_entry(owner, rotation.entry, boxes(rotation)))["type"] == "log-entry-saved"
    applied(team, rotation.entry, rotation.state)
    member.at(team.state)
    new = member.snapshot(snap, {}, b"new epoch", epoch=1)
    await owner.send(new)
    await owner.next("snapshot-saved")
    await owner.close()
    return team, ids, new.public_data.snapshot_id


def snapshot_ids(db: str, doc_id: str) -> list[str]:
    return [
        r[0]
        for r in db_rows(
            db, "SELECT snapshot_id FROM snapshots WHERE doc_id = ? ORDER BY seq", doc_id
        )
    ]


async def test_retention_keeps_n_superseded_snapshots_after_a_rotation(new_database):
    db = new_database()
    running = await start_with(db, Retention(keep_snapshots=2))
    try:
        team, old, active = await epochs_written(running.url, 5, 2000)
        await running.relay.pruned()
        # the newest 2 snapshots of epoch 0 and the active one stay, with their updates
        assert snapshot_ids(db, team.doc_id) == [*old[-2:], active]
        # a reader knowing the pruned snapshot gets the active one without a chain; one
        # knowing a kept one, the chain from it
        view = await running.relay.store.read_document(team.doc_id, old[0], {})
        assert view.chain == () and view.has_snapshot
        view = await running.relay.store.read_document(team.doc_id, old[-1], {})
        assert [e.snapshot_id for e in view.chain] == [active]
        # writing on goes on in the active epoch
        conn, doc = await join(running.url, team.doc_id, team.owner_keys)
        assert doc["snapshot"]["publicData"]["snapshotId"] == active
        await conn.close()
    finally:
        await running.server.stop(timeout=2)


async def test_retention_by_days_and_keep_all(new_database):
    db = new_database()
    running = await start_with(db, Retention())
    try:
        team, old, active = await epochs_written(running.url, 3, 1000)
        await running.relay.pruned()
        assert snapshot_ids(db, team.doc_id) == [*old, active]  # keep all
    finally:
        await running.server.stop(timeout=2)
    # days:1 at start keeps them (written just now); days:0 prunes every superseded one
    for retention, expected in (
        (Retention(keep_seconds=86400), [*old, active]),
        (Retention(keep_seconds=0), [active]),
    ):
        running = await start_with(db, retention)
        try:
            await running.relay.pruned()
            assert snapshot_ids(db, team.doc_id) == expected
        finally:
            await running.server.stop(timeout=2)


async def test_retention_frees_the_sqlite_file(tmp_path):
    """SQLite: the pages of pruned epochs leave the file (incremental auto-vacuum)."""
    db = str(tmp_path / "relay.sqlite")
    running = await start_with(db, Retention())
    try:
        team, _old, active = await epochs_written(running.url, 20, 100_000)
    finally:
        await running.server.stop(timeout=2)
    before = os.path.getsize(db)
    running = await start_with(db, parse_retention("snapshots:0"))
    try:
        await running.relay.pruned()
        assert snapshot_ids(db, team.doc_id) == [active]
    finally:
        await running.server.stop(timeout=2)
    after = os.path.getsize(db)
    assert not os.path.exists(db + "-wal") or os.path.getsize(db + "-wal") == 0
    # 20 snapshots of 100 kB (base64: 133 kB each) and 19 updates of 25 kB went
    assert before > 2_500_000 and after < before // 10, (before, after)
    assert db_rows(db, "PRAGMA auto_vacuum") == [(2,)]


async def test_retention_option_parses_and_refuses_bad_values():
    assert parse_retention("all") == Retention()
    assert parse_retention("snapshots:3") == Retention(keep_snapshots=3)
    assert parse_retention("days:1.5") == Retention(keep_seconds=1.5 * 86400)
    for bad in ("", "none", "snapshots:-1", "snapshots:x", "days:-2", "days:inf", "all:1"):
        with pytest.raises(ValueError, match="retention must be"):
            parse_retention(bad)
    parser = build_parser()
    args = parser.parse_args(["--open", "--retention", "snapshots:2"])
    assert config.from_args(parser, args)[1].retention == "snapshots:2"
    with pytest.raises(SystemExit) as exited:  # a usage error, status 2
        config.from_args(parser, parser.parse_args(["--open", "--retention", "keep"]))
    assert exited.value.code == 2
    # the traitlet: a bad value stops the server start (ValueError)
    app = SimpleNamespace(**{st.trait: st.default for st in config.settings() if st.trait})
    assert config.from_traits(app)[1].retention == "all"
    app.retention = "days:x"
    with pytest.raises(ValueError, match="retention must be"):
        config.from_traits(app)
