"""Key epochs in the Python client (issue 12), against the in-test relay of epoch_relay.py
(the issue-12 frames; honest unless a test makes it misbehave): rotation, the keyring, an
offline member catching up with its lockbox, concurrent rotations, a removed member locked
out of everything new even when the relay helps it, 769 (an older epoch served as current)
and 768 (writes in a superseded epoch)."""

from __future__ import annotations

import asyncio
import json

import pytest
from pycrdt import Text

from secsync_jupyter.client import SyncFailed, open_document
from secsync_jupyter.client.epochs_client import KeyringFile
from secsync_jupyter.protocol import (
    ProtocolError,
    SigningKeyPair,
    create_initial_snapshot,
    create_snapshot,
    generate_id,
    verify_and_decrypt_snapshot,
)
from secsync_jupyter.protocol.epochs import open_lockbox
from secsync_jupyter.protocol.membership import MembershipError, verify_log
from secsync_jupyter.protocol.messages import Snapshot

from .epoch_relay import EpochRelay
from .helpers import KEY, A, B, C
from .scripted import ScriptedRelay
from .test_membership_client import Author, Log

pytestmark = pytest.mark.asyncio

D = SigningKeyPair.from_seed(bytes(range(3, 35)))


async def until(predicate, timeout: float = 15.0) -> None:
    """Poll ``predicate`` (the relay's state changes too, not only the documents')."""

    async def loop():
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        raise AssertionError(f"not reached within {timeout} s") from None


def text(d) -> str:
    return str(d.doc.get("content", type=Text))


def write(d, s: str) -> None:
    t = d.doc.get("content", type=Text)
    t += s


def setup(*members) -> tuple[Log, EpochRelay]:
    """A log owned by A with ``members`` ((keypair, role), …) and A's snapshot "Hello"."""
    log = Log(owner=A, label=json.dumps([m[0].public_key_b64 for m in members]))
    for kp, role in members:
        log.append(A, "add-member", kp, role)
    author = Author(log, A)
    author.edit("Hello")
    snap = author.make_snapshot().to_json()
    return log, EpochRelay(log.entries, snap)


def opened(relay: ScriptedRelay, er: EpochRelay, who, tmp_path=None, **kw):
    keyring_file = tmp_path / f"{who.public_key_b64[:6]}.json" if tmp_path else False
    return open_document(
        relay.url, er.doc_id, KEY, identity=who, awareness=False, keyring_file=keyring_file, **kw
    )


async def test_rotate_then_write_in_new_epoch_read_by_member(tmp_path):
    _log, er = setup((B, "editor"), (C, "viewer"))
    async with (
        ScriptedRelay(er) as relay,
        opened(relay, er, A, tmp_path) as a,
        opened(relay, er, B, tmp_path) as b,
        opened(relay, er, C, tmp_path) as c,
    ):
        assert text(b) == "Hello"
        state = await a.rotate_key()
        assert state.epoch == 1
        assert sorted(r for e, r in er.lockboxes if e == 1) == sorted(
            k.public_key_b64 for k in (A, B, C)
        )
        await until(lambda: er.active["publicData"].get("epoch") == 1)
        write(a, " after")
        await a.synced()
        await until(lambda: text(b) == "Hello after" and text(c) == "Hello after")
        write(b, "!")
        await b.synced()
        await until(lambda: text(a) == "Hello after!")
        assert 1 in b.engine.epochs.keyring and 1 in c.engine.epochs.keyring
        assert b.engine.epochs.key(1) == a.engine.epochs.key(1)
        assert er.refused == [] and a.errors == [] and b.errors == []
    # the keyring is kept in the file (mode 0600), both epochs
    ring, seen = KeyringFile(tmp_path / f"{B.public_key_b64[:6]}.json").load(er.doc_id)
    assert ring.epochs == [0, 1] and seen == 1
    assert (tmp_path / f"{B.public_key_b64[:6]}.json").stat().st_mode & 0o777 == 0o600
    verify_log(er.entries, er.doc_id)


async def test_offline_member_catches_up_with_its_lockbox(tmp_path):
    _log, er = setup((B, "editor"))
    async with ScriptedRelay(er) as relay:
        async with opened(relay, er, B, tmp_path) as b:
            assert text(b) == "Hello"
        async with opened(relay, er, A, tmp_path) as a:  # B is offline
            await a.rotate_key()
            write(a, " world")
            await a.synced()
            await until(lambda: er.active["publicData"].get("epoch") == 1)
        async with opened(relay, er, B, tmp_path) as b:  # its lockbox in the document frame
            assert text(b) == "Hello world"
            assert b.engine.active.epoch == 1 and b.engine.epochs.keyring.epochs == [0, 1]
            write(b, "!")
            await b.synced()
            assert er.refused == []


async def test_concurrent_rotations_converge(tmp_path):
    _log, er = setup((B, "admin"))
    async with (
        ScriptedRelay(er) as relay,
        opened(relay, er, A, tmp_path) as a,
        opened(relay, er, B, tmp_path) as b,
    ):
        _sa, _sb = await asyncio.gather(a.rotate_key(), b.rotate_key())
        # one chain: one rotation won, the other saw it and did not rotate again (not needed)
        verify_log(er.entries, er.doc_id)
        assert er.state.epoch in (1, 2)
        await until(lambda: a.log.head == b.log.head == er.state.head)
        epoch = er.state.epoch
        await until(lambda: epoch in a.engine.epochs.keyring and epoch in b.engine.epochs.keyring)
        assert a.engine.epochs.key(epoch) == b.engine.epochs.key(epoch)
        write(a, " A")
        await a.synced()
        await until(lambda: text(b) == "Hello A")
        write(b, " B")
        await b.synced()
        await until(lambda: text(a) == text(b) == "Hello A B")
        assert er.refused == []


async def test_remove_member_rotates_and_removed_member_reads_nothing_new(tmp_path):
    _log, er = setup((B, "editor"), (C, "editor"))
    async with ScriptedRelay(er) as relay:
        async with (
            opened(relay, er, A, tmp_path) as a,
            opened(relay, er, C, tmp_path) as c,
        ):
            assert text(c) == "Hello"
            await a.remove_member(C.public_key_b64)  # then a rotation, automatically
            assert a.log.epoch == 1 and C.public_key_b64 not in a.log.members
            await until(lambda: c.state == "no-access")
            write(a, " secret after removal")
            await a.synced()
            await until(lambda: er.active["publicData"].get("epoch") == 1)
        assert not any(r == C.public_key_b64 for e, r in er.lockboxes if e == 1)
        # a malicious relay: lets C in, sends it the new ciphertext and everyone's lockboxes
        er.admit_anyone = True
        er.leak_lockboxes = True
        with pytest.raises(SyncFailed):
            await opened(relay, er, C, tmp_path)
        ring, _ = KeyringFile(tmp_path / f"{C.public_key_b64[:6]}.json").load(er.doc_id)
        assert ring.epochs == [0]  # nothing of epoch 1
        snapshot = Snapshot.from_json(er.active)
        for lb in [lb for (e, _r), lb in er.lockboxes.items() if e == 1]:
            with pytest.raises(MembershipError) as info:  # sealed to others
                open_lockbox(er.state, C, lb)
            assert info.value.code == "SECSYNC_ERROR_763"
            with pytest.raises(MembershipError) as info:  # relabelled to C: does not open
                open_lockbox(er.state, C, {**lb, "recipient": C.public_key_b64})
            assert info.value.code == "SECSYNC_ERROR_761"
        for key in (ring.key(0), KEY):
            with pytest.raises(ProtocolError):  # no key C holds decrypts what came after
                verify_and_decrypt_snapshot(snapshot, key, er.doc_id, C.public_key_b64)


async def test_removed_member_kept_connected_by_relay_gets_nothing_new(tmp_path):
    """A malicious relay keeps the removed member's connection open and sends it the
    rotation, everyone's lockboxes (``leak_lockboxes``) and the new epoch's snapshot and
    updates: its client stops at the removal entry it verified itself; nothing of epoch 1 is
    opened or applied."""
    _log, er = setup((B, "editor"), (C, "editor"))
    er.keep_removed = True
    er.leak_lockboxes = True
    async with (
        ScriptedRelay(er) as relay,
        opened(relay, er, A, tmp_path) as a,
        opened(relay, er, C, tmp_path) as c,
    ):
        await a.remove_member(C.public_key_b64)
        write(a, " secret after removal")
        await a.synced()
        await until(lambda: er.active["publicData"].get("epoch") == 1)
        write(a, " and more")
        await a.synced()
        assert len(er.updates.get(er.active["publicData"]["snapshotId"], [])) >= 1
        await until(lambda: c.state == "no-access")
        assert any(e.code == "SECSYNC_ERROR_725" for e in c.errors)
        assert text(c) == "Hello" and c.engine.epochs.keyring.epochs == [0]


async def test_older_epoch_served_as_current_is_769(tmp_path):
    _log, er = setup((B, "editor"))
    async with ScriptedRelay(er) as relay:
        old = er.active
        async with opened(relay, er, A, tmp_path) as a, opened(relay, er, B, tmp_path) as b:
            await a.rotate_key()
            write(a, " new")
            await a.synced()
            await until(lambda: text(b) == "Hello new" and b.engine.active.epoch == 1)
        er.serve = old  # the epoch-0 snapshot again, as if nothing happened
        with pytest.raises(SyncFailed) as info:
            await opened(relay, er, B, tmp_path)
        assert info.value.code == "SECSYNC_ERROR_769"


async def test_snapshot_in_superseded_epoch_rejected_768(tmp_path):
    """After a rotation B has seen (the rotator's first snapshot not there yet), a live
    snapshot of epoch 0 — under an old log head, on the epoch-0 snapshot, all consistent
    otherwise — that a relay forwards anyway is rejected (768), content unchanged."""
    from secsync_jupyter.protocol import snapshot_ciphertext_hash

    _log, er = setup((B, "editor"), (D, "editor"))
    async with (
        ScriptedRelay(er) as relay,
        opened(relay, er, A, tmp_path) as a,
        opened(relay, er, B, tmp_path) as b,
    ):
        active = er.active
        old_head = active["publicData"]["logHead"]
        a.engine.request_snapshot = lambda: None  # A writes no snapshot now
        await a.rotate_key()
        await until(lambda: b.log.epoch == 1)
        er.lax_epochs = True
        act = Snapshot.from_json(active)
        pd = {
            "docId": er.doc_id,
            "pubKey": D.public_key_b64,
            "snapshotId": generate_id(),
            "logHead": old_head,
            "parentSnapshotId": act.public_data.snapshot_id,
            "parentSnapshotUpdateClocks": {},
        }
        stale = create_snapshot(
            b"\x00\x00",
            pd,
            KEY,
            D,
            snapshot_ciphertext_hash(act),
            act.public_data.parent_snapshot_proof,
        )
        await er.broadcast({"type": "snapshot", "snapshot": stale.to_json()})
        await until(lambda: any(e.code == "SECSYNC_ERROR_768" for e in b.errors))
        assert text(b) == "Hello" and b.engine.active.snapshot_id == act.public_data.snapshot_id
        assert b.state == "connected"
        # an honest relay again: B (holding the new key) writes an epoch-1 snapshot
        er.lax_epochs = False
        write(b, "!")
        await b.synced()
        assert er.active["publicData"]["epoch"] == 1 and er.refused == []


async def test_update_on_old_epoch_snapshot_after_rotation_rejected_768(tmp_path):
    log, er = setup((B, "editor"), (D, "editor"))
    author = Author(log, D)
    author.edit("Hello")
    async with (
        ScriptedRelay(er) as relay,
        opened(relay, er, A, tmp_path) as a,
        opened(relay, er, B, tmp_path) as b,
    ):
        author.snapshot = Snapshot.from_json(er.active)
        state_before = a.log
        # the relay keeps the epoch-0 snapshot active (no new snapshot yet)
        a.engine.request_snapshot = lambda: None
        await a.rotate_key()
        await until(lambda: b.log.epoch == 1)
        er.lax_epochs = True
        upd = author.make_update(" stale", head=state_before.head.to_json())
        await er.broadcast(upd)
        await until(lambda: any(e.code == "SECSYNC_ERROR_768" for e in b.errors))
        assert text(b) == "Hello"


async def test_epoch0_key_from_lockbox_is_checked_before_writing(tmp_path):
    """A key of epoch 0 from a lockbox (no keyCheck) is not used for writing until it opened
    a writer's epoch-0 snapshot; a wrong one fails the load (the AEAD is key-committing)."""
    from secsync_jupyter.protocol.epochs import seal_lockbox

    _log, er = setup((B, "editor"))
    wrong = bytes(32)
    er.lockboxes[(0, B.public_key_b64)] = seal_lockbox(er.doc_id, 0, wrong, B.public_key).to_json()
    from secsync_jupyter.client.document import SecsyncDocument
    from secsync_jupyter.protocol.epochs import Keyring

    async with ScriptedRelay(er) as relay:
        d = SecsyncDocument(
            relay.url,
            er.doc_id,
            None,
            identity=B,
            awareness=False,
            keyring=Keyring(),
            keyring_file=False,
        )
        with pytest.raises(SyncFailed):
            await d.start()
        await d.close(wait_synced=False)
        assert 0 in d.engine.epochs.keyring and d.engine.epochs.unconfirmed0
        assert d.engine.epochs.write_epoch(d.log) is None
        # the right key: confirmed by decrypting A's snapshot, then B writes
        er.lockboxes[(0, B.public_key_b64)] = seal_lockbox(
            er.doc_id, 0, KEY, B.public_key
        ).to_json()
        d = SecsyncDocument(
            relay.url,
            er.doc_id,
            None,
            identity=B,
            awareness=False,
            keyring=Keyring(),
            keyring_file=False,
        )
        await d.start()
        assert text(d) == "Hello" and not d.engine.epochs.unconfirmed0
        write(d, "!")
        await d.synced()
        await d.close()


_ = (C, create_initial_snapshot)


async def test_admin_rotates_on_load_when_needed(tmp_path):
    """B was removed by an admin who went offline before rotating: the next admin to load
    the document rotates (B gets no lockbox of the new epoch)."""
    log, er = setup((B, "editor"), (C, "viewer"))
    log.append(A, "remove-member", B)
    er.entries = list(log.entries)
    er.state = verify_log(er.entries, er.doc_id)
    assert er.state.rotation_needed(10**13)
    async with ScriptedRelay(er) as relay, opened(relay, er, A, tmp_path) as a:
        await until(lambda: er.state.epoch == 1 and a.log.epoch == 1)
        assert sorted(r for e, r in er.lockboxes if e == 1) == sorted(
            [A.public_key_b64, C.public_key_b64]
        )
        await until(lambda: er.active["publicData"].get("epoch") == 1)
    # a viewer does not (and cannot) rotate
    log2, er2 = setup((B, "editor"), (C, "viewer"))
    log2.append(A, "remove-member", B)
    er2.entries = list(log2.entries)
    er2.state = verify_log(er2.entries, er2.doc_id)
    async with ScriptedRelay(er2) as relay, opened(relay, er2, C, tmp_path) as c:
        assert text(c) == "Hello" and c.log.epoch == 0 and c.log.head == er2.state.head


# ---------------------------------------------------------------- our real relay


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    from .conftest import Relay

    relay = Relay("ours", tmp_path_factory.mktemp("epochs-relay"))
    yield relay
    relay.stop()


async def test_real_relay_concurrent_rotations_converge_and_old_epoch_refused(ours, tmp_path):
    from secsync_jupyter.client import create_notebook, open_notebook
    from secsync_jupyter.client.identity_file import create_identity

    owner = create_identity(tmp_path / "o" / "identity.json", name="O")
    second = create_identity(tmp_path / "s" / "identity.json", name="S")
    async with create_notebook(ours.url, identity=owner, awareness=False) as nb:
        nb.add_code_cell("x = 1")
        await nb.create_snapshot(timeout=20)
        await nb.add_member(second.identity_string, "admin", timeout=20)
        async with open_notebook(nb.share_link, identity=second, awareness=False) as s:
            for _ in range(3):
                await asyncio.gather(nb.rotate_key(timeout=20), s.rotate_key(timeout=20))
                await nb.wait_for(lambda: nb.document.log_head == s.document.log_head, 20)
            epoch = nb.document.log.epoch
            assert 3 <= epoch <= 6  # each round: one or two rotations, one chain
            await s.wait_for(lambda: epoch in s.document.engine.epochs.keyring, 20)
            assert s.document.engine.epochs.key(epoch) == nb.document.engine.epochs.key(epoch)
            nb.add_code_cell("from O")
            await nb.synced(timeout=20)
            await s.wait_for(lambda: len(s.cells) == 2, 20)
            s.add_code_cell("from S")
            await s.synced(timeout=20)
            await nb.wait_for(lambda: len(nb.cells) == 3, 20)
            assert nb.document.engine.active.epoch == epoch
            assert not [e for e in nb.errors + s.errors if e.code.endswith(("767", "768"))]


@pytest.mark.asyncio
async def test_wrong_document_key_is_never_kept(tmp_path):
    """A wrong #key= fails as before (101) and is not written to the keyring file; the
    right key is kept once it decrypted a snapshot, and a wrong one later does not replace it."""
    _log, er = setup((B, "editor"))
    path = tmp_path / "B.json"

    def open_b(relay, key):
        return open_document(
            relay.url, er.doc_id, key, identity=B, awareness=False, keyring_file=path
        )

    async with ScriptedRelay(er) as relay:
        with pytest.raises(SyncFailed) as info:
            await open_b(relay, bytes(32))
        assert info.value.code == "SECSYNC_ERROR_101"
        assert KeyringFile(path).load(er.doc_id)[0].epochs == []
        async with open_b(relay, KEY) as b:
            assert text(b) == "Hello"
        ring, _ = KeyringFile(path).load(er.doc_id)
        assert ring.key(0) == KEY
        with pytest.raises(SyncFailed) as info:
            await open_b(relay, bytes(32))
        assert info.value.code == "SECSYNC_ERROR_101"
        assert KeyringFile(path).load(er.doc_id)[0].key(0) == KEY


@pytest.mark.asyncio
async def test_write_racing_a_rotation_is_rewritten_in_the_new_epoch(tmp_path):
    """B's update on the epoch-0 snapshot reaches the relay after A's rotation: the relay
    sends B the rotation (and its lockbox), then refuses the update (768). B does not turn
    read-only: its change goes out again as a snapshot in epoch 1, which A applies."""
    _log, er = setup((B, "editor"))
    async with (
        ScriptedRelay(er) as relay,
        opened(relay, er, A, tmp_path) as a,
        opened(relay, er, B, tmp_path) as b,
    ):
        a.engine.request_snapshot = lambda: None  # A writes no snapshot after rotating
        er.hold = B.public_key_b64
        await a.rotate_key()
        assert b.log.epoch == 0  # B has not heard of it yet
        write(b, "X")
        await until(lambda: er.active["publicData"].get("epoch") == 1)
        await b.synced()
        assert er.refused == [("update", "SECSYNC_ERROR_768")]
        assert er.active["publicData"]["pubKey"] == B.public_key_b64
        assert not b.read_only and b.log.epoch == 1
        assert any(e.code == "SECSYNC_ERROR_768" for e in b.errors)
        await until(lambda: text(a) == "HelloX")
        write(b, "Y")  # and on it, an ordinary update
        await b.synced()
        await until(lambda: text(a) == "HelloXY")
        assert er.refused == [("update", "SECSYNC_ERROR_768")]
