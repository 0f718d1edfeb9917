"""Authenticated readers (issue 11): for a document with a membership log a connection gets no
ciphertext until it proves a member's key (reader-challenge / reader-proof, docs/protocol.md
"Frames"); non-members, removed members, bad or missing proofs get ``unauthorized`` and close
1008 — and nothing else. Standalone (SQLite and PostgreSQL) and inside Jupyter Server."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.membership import create_reader_proof
from secsync_jupyter.relay import Limits

from .membership_util import Team, append, connect, join, remove_and_see_closed
from .pg import is_postgres
from .util import RelayClient, url_for


def code(n: int) -> str:
    return f"SECSYNC_ERROR_{n}"


async def written(base: str, **kw) -> tuple[Team, RelayClient, SigningKeyPair]:
    """A document with a log, a snapshot and an update, and a viewer (``kw``: headers)."""
    team = Team()
    owner, _ = await join(base, team.doc_id, team.owner_keys, **kw)
    assert (await append(owner, team.root))["type"] == "log-entry-saved"
    snap = team.owner.initial_snapshot(b"secret content")
    await owner.send(snap)
    await owner.next("snapshot-saved")
    viewer = SigningKeyPair.generate()
    entry = team.entry(team.owner_keys, "add-member", viewer.public_key_b64, "viewer")
    assert (await append(owner, entry))["type"] == "log-entry-saved"
    team.owner.at(team.state)
    await owner.send(team.owner.update(snap, 0))
    await owner.next("update-saved")
    return team, owner, viewer


async def refused_with(client: RelayClient, number: int) -> None:
    """The connection got the challenge, then only ``unauthorized`` with this code, then
    close 1008: not a single byte of ciphertext, no log."""
    assert await client.wait_closed() == 1008
    types = [f["type"] for f in client.frames]
    assert types == ["reader-challenge", "unauthorized"], client.frames
    assert client.frames[1]["code"] == code(number)
    assert isinstance(client.frames[1]["reason"], str)


async def readers_refused(base: str, team: Team, viewer: SigningKeyPair, **kw) -> None:
    """Every kind of reader that must get nothing."""
    doc_id = team.doc_id
    # a non-member
    stranger = await connect(base, doc_id, SigningKeyPair.generate(), **kw)
    await refused_with(stranger, 722)
    # a proof signed over another nonce (e.g. recorded on another connection): 721
    replay = await connect(base, doc_id, None, **kw)
    await replay.send(create_reader_proof(viewer, doc_id, "A" * 43))
    await refused_with(replay, 721)
    # a proof for another document: 721
    other = await connect(base, doc_id, None, **kw)
    nonce = other.frames[0]["nonce"]
    await other.send(create_reader_proof(viewer, Team().doc_id, nonce))
    await refused_with(other, 721)
    # malformed: 720
    bad = await connect(base, doc_id, None, **kw)
    await bad.send({"type": "reader-proof", "pubKey": "x", "signature": 1})
    await refused_with(bad, 720)
    # anything else before the proof — even the owner's valid snapshot — 723
    early = await connect(base, doc_id, None, **kw)
    await early.send(team.owner.initial_snapshot())
    await refused_with(early, 723)
    garbage = await connect(base, doc_id, None, **kw)
    await garbage.send("not json")
    await refused_with(garbage, 723)


# ------------------------------------------------------------------------- standalone
@pytest.mark.asyncio
async def test_members_read_others_get_nothing(relay):
    team, owner, viewer_keys = await written(relay.url)
    # the viewer proves its key: log, snapshot, update
    viewer, doc = await join(relay.url, team.doc_id, viewer_keys)
    assert [e["seq"] for e in doc["log"]] == [0, 1]
    assert doc["snapshot"]["publicData"]["pubKey"] == team.owner.pub
    assert len(doc["updates"]) == 1
    await readers_refused(relay.url, team, viewer_keys)
    # a connection waiting for its proof gets no broadcast; the document frame later has it
    waiting = await connect(relay.url, team.doc_id, None)
    challenge = waiting.frames[0]
    await owner.send(team.owner.update(doc["snapshot"]["publicData"]["snapshotId"], 1))
    await owner.next("update-saved")
    assert (await viewer.next("update"))["publicData"]["clock"] == 1
    assert waiting.pending() == []
    await waiting.send(create_reader_proof(viewer_keys, team.doc_id, challenge["nonce"]))
    doc = await waiting.next("document")
    assert [u["publicData"]["clock"] for u in doc["updates"]] == [0, 1]
    # removed: the open connections close (725), a new one is refused (722)
    remove = team.entry(team.owner_keys, "remove-member", viewer_keys.public_key_b64)
    assert (await append(owner, remove))["type"] == "log-entry-saved"
    for c in (viewer, waiting):
        assert await c.wait_closed() == 1008
        assert c.frames[-1] == {"type": "unauthorized", "code": code(725), "reason": "removed"}
    again = await connect(relay.url, team.doc_id, viewer_keys)
    await refused_with(again, 722)
    await owner.close()


@pytest.mark.asyncio
async def test_no_proof_in_time_is_723(relays):
    r = await relays(limits=Limits(handshake_timeout=0.3))
    team, owner, _ = await written(r.url)
    silent = await connect(r.url, team.doc_id, None)
    await refused_with(silent, 723)
    await owner.close()


@pytest.mark.asyncio
async def test_documents_without_a_log_are_unchanged(relay):
    """Other ids: no challenge, the reference document frame (no log fields), and membership
    frames are malformed messages there, as any unknown frame."""
    from .util import Author, open_doc

    a = Author("plainDocument1234567890abcdefXY")
    client, doc = await open_doc(relay.url, a.doc_id)
    assert doc == {"type": "document", "updates": [], "snapshotProofChain": []}
    await client.send({"type": "log-entry", "entry": Team().root.to_json()})
    assert (await client.next("error"))["code"] == "invalid-message"
    await client.send({"type": "reader-proof", "pubKey": a.pub, "signature": "x"})
    assert (await client.next("error"))["code"] == "invalid-message"
    snap = a.initial_snapshot()
    await client.send(snap)
    await client.next("snapshot-saved")
    assert await relay.relay.store.read_log(a.doc_id) == []
    await client.close()


# ------------------------------------------------------------------------- Jupyter extension
@pytest.fixture
def jp_server_config(db_path):
    where = {"store": db_path} if is_postgres(db_path) else {"db_path": db_path}
    return {
        "ServerApp": {"jpserver_extensions": {"secsync_jupyter": True}},
        "SecsyncRelayExtension": where,
    }


def jupyter_base(app) -> str:
    return f"ws://127.0.0.1:{app.port}{app.base_url}secsync"


async def test_extension_members_read_others_get_nothing(
    jp_serverapp, http_server_client, jp_auth_header
):
    """Inside Jupyter Server: on top of Jupyter's login, the same challenge."""
    base = jupyter_base(jp_serverapp)
    headers = dict(jp_auth_header)
    team, owner, viewer_keys = await written(base, headers=headers)
    viewer, doc = await join(base, team.doc_id, viewer_keys, headers=headers)
    assert [e["seq"] for e in doc["log"]] == [0, 1] and len(doc["updates"]) == 1
    await readers_refused(base, team, viewer_keys, headers=headers)
    # a missing proof: 723 after the handshake timeout (shortened here)
    relay = jp_serverapp.web_app.settings["secsync_relay_extension"].relay
    relay.limits = dataclasses.replace(relay.limits, handshake_timeout=0.3)
    silent = await connect(base, team.doc_id, None, headers=headers)
    await refused_with(silent, 723)
    # without Jupyter's login nothing opens at all
    with pytest.raises(Exception, match=r"403|401"):
        await RelayClient.open(url_for(base, team.doc_id))
    # writes by a viewer refused; a removed member's connection closed with 725
    await viewer.send(
        team.member(viewer_keys).update(doc["snapshot"]["publicData"]["snapshotId"], 0)
    )
    assert (await viewer.next("write-refused"))["code"] == code(724)
    await remove_and_see_closed(team, owner, viewer, viewer_keys.public_key_b64)
    await owner.close()
    await asyncio.sleep(0)
