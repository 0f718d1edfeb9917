"""Issue 12 inside Jupyter Server (tests/relay/test_epochs_relay.py has the rest): a link
connection, a person joining through it, a rotation and the retention traitlet, on SQLite and
PostgreSQL. Not marked asyncio: pytest-jupyter runs these tests on the server's loop."""

from __future__ import annotations

import asyncio
import os

import pytest

from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.epochs import open_lockbox, seal_lockbox
from secsync_jupyter.protocol.links import create_link, join_via_link, link_keypair
from secsync_jupyter.relay.store import Retention

from .membership_util import Team, join
from .pg import db_rows, is_postgres
from .test_epochs_relay import (
    applied,
    boxes,
    create,
    link_roundtrip,
    nothing_more,
    rotate,
    send_entry,
)


# ------------------------------------------------------------------------------ Jupyter Server
@pytest.fixture
def jp_server_config(db_path):
    where = {"store": db_path} if is_postgres(db_path) else {"db_path": db_path}
    return {
        "ServerApp": {"jpserver_extensions": {"secsync_jupyter": True}},
        "SecsyncRelayExtension": {**where, "retention": "snapshots:0"},
    }


async def test_extension_links_rotation_and_retention(
    jp_serverapp, http_server_client, jp_auth_header
):
    """Inside Jupyter Server (on top of Jupyter's login): a link connection, a person joining
    through it, a rotation with each one's lockbox, and the retention traitlet pruning the
    superseded epoch once the new epoch's snapshot is stored."""
    base = f"ws://127.0.0.1:{jp_serverapp.port}{jp_serverapp.base_url}secsync"
    kw = {"headers": dict(jp_auth_header)}
    relay = jp_serverapp.web_app.settings["secsync_relay_extension"].relay
    assert relay.retention == Retention(keep_snapshots=0)
    team = Team()
    owner = await create(base, team, **kw)
    old = team.owner.at(team.state).initial_snapshot()
    await owner.send(old)
    await owner.next("snapshot-saved")
    key0 = os.urandom(32)
    link = create_link(team.state, team.owner_keys, "editor", "Team", epoch_key=key0)
    assert (await send_entry(owner, link.entry, [link.lockbox.to_json()]))["seq"] == 1
    applied(team, link.entry, link.state)
    link_keys = link_keypair(link.secret)
    conn, doc = await join(base, team.doc_id, link_keys, **kw)
    assert doc["link"] is True and "snapshot" not in doc and doc["updates"] == []
    assert doc["lockboxes"] == [link.lockbox.to_json()]
    joiner = SigningKeyPair.generate()
    entry, state = join_via_link(team.state, link.secret, joiner.public_key_b64)
    mine = seal_lockbox(team.doc_id, 0, key0, joiner.public_key_b64).to_json()
    assert (await send_entry(conn, entry, [mine]))["type"] == "log-entry-saved"
    applied(team, entry, state)
    assert await owner.next() == {"type": "log-entry", "entry": entry.to_json()}
    me, doc = await join(base, team.doc_id, joiner, **kw)
    assert doc["lockboxes"] == [mine]
    assert doc["snapshot"]["publicData"]["snapshotId"] == old.public_data.snapshot_id

    rotation = rotate(team)  # recipients: the owner, the joiner and the live link
    assert (await send_entry(owner, rotation.entry, boxes(rotation)))["type"] == "log-entry-saved"
    applied(team, rotation.entry, rotation.state)
    for c, keys in ((conn, link_keys), (me, joiner)):
        assert await c.next() == {"type": "log-entry", "entry": rotation.entry.to_json()}
        lockbox = (await c.next())["lockbox"]
        assert open_lockbox(team.state, keys, lockbox) == rotation.key
    new = team.owner.at(team.state).snapshot(old, {}, b"epoch 1", epoch=1)
    await owner.send(new)
    await owner.next("snapshot-saved")
    assert (await me.next("snapshot"))["snapshot"]["publicData"]["epoch"] == 1
    await relay.pruned()
    rows = db_rows(
        jp_serverapp.config["SecsyncRelayExtension"].get("store") or relay.store.path,
        "SELECT snapshot_id FROM snapshots WHERE doc_id = ?",
        team.doc_id,
    )
    assert rows == [(new.public_data.snapshot_id,)]
    await link_roundtrip(conn)  # the link connection got none of the content
    await nothing_more(owner, me)
    for c in (owner, conn, me):
        await c.close()
    await asyncio.sleep(0)
