"""Members and roles through our real relay on loopback (issue 11): the owner creates a
document (its log), a non-member is refused (722), a viewer added by identity string reads
but cannot write, a promotion lets it write live (the owner sees it), a demotion makes it
read-only live, a removal closes its connection with 725 — and nobody reconnects in a loop."""

from __future__ import annotations

import asyncio

import pytest

from secsync_jupyter.client import (
    MembershipError,
    ReadOnlyError,
    SyncFailed,
    create_notebook,
    open_notebook,
)
from secsync_jupyter.client.identity_file import create_identity

from .conftest import Relay

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    relay = Relay("ours", tmp_path_factory.mktemp("membership-relay"))
    yield relay
    relay.stop()


def _open(link, user, **kw):
    return open_notebook(link, identity=user, awareness=False, **kw)


async def test_owner_adds_viewer_promotes_demotes_removes(ours, tmp_path):
    owner = create_identity(tmp_path / "owner.json", name="Owner")
    bob = create_identity(tmp_path / "bob.json", name="Bob")
    async with create_notebook(ours.url, identity=owner, awareness=False) as nb:
        assert nb.role == "admin" and nb.doc_id.startswith("m1_")
        nb.add_code_cell("x = 1")
        await nb.create_snapshot(timeout=20)
        link = nb.share_link

        # not a member yet: a clear refusal, no ciphertext, no reconnect loop
        with pytest.raises(SyncFailed) as info:
            await asyncio.wait_for(_open(link, bob), 20)
        assert info.value.code == "SECSYNC_ERROR_722"

        await nb.add_member(str(bob), "viewer", timeout=20)
        assert [(m.name, m.role) for m in nb.members] == [("Owner", "admin"), ("Bob", "viewer")]
        async with _open(link, bob) as viewer:
            assert viewer.role == "viewer" and viewer.read_only
            assert [c.source for c in viewer.cells] == ["x = 1"]
            with pytest.raises(ReadOnlyError):
                viewer.add_code_cell("y = 2")
            with pytest.raises(MembershipError) as refused:
                await viewer.add_member(str(create_identity(tmp_path / "c.json")), "viewer")
            assert refused.value.code == "SECSYNC_ERROR_712"  # only admins manage members

            await nb.set_role(str(bob), "editor", timeout=20)
            await viewer.wait_for(lambda: viewer.role == "editor", 20)
            assert not viewer.read_only
            viewer.add_markdown_cell("from Bob")
            await viewer.synced(timeout=20)
            await nb.wait_for(lambda: len(nb.cells) == 2, 20)
            assert nb.cells[1].source == "from Bob"

            await nb.set_role(str(bob), "viewer", timeout=20)
            await viewer.wait_for(lambda: viewer.read_only, 20)
            with pytest.raises(ReadOnlyError):
                viewer.cells[0].source = "changed"

            await nb.remove_member(str(bob), timeout=20)
            with pytest.raises(SyncFailed) as removed:
                await viewer.wait_for(lambda: False, 20)
            assert removed.value.code == "SECSYNC_ERROR_725"
            assert viewer.state == "no-access"
            connections = viewer.document.connections
            await asyncio.wait_for(viewer.document._task, 20)  # the loop ended: no reconnect
            assert viewer.document.connections == connections == 1
        assert [c.source for c in nb.cells] == ["x = 1", "from Bob"]
        assert [m.name for m in nb.members] == ["Owner"]

    # the owner reopens: the log is verified again from the root, its head is the same
    async with _open(link, owner) as again:
        assert again.role == "admin" and len(again.members) == 1
        assert again.document.log_head.seq == 5  # remove-member, then rotate-key (issue 12)


async def test_reconnect_gets_the_log_as_a_delta(ours, tmp_path):
    owner = create_identity(tmp_path / "owner.json", name="Owner")
    bob = create_identity(tmp_path / "bob.json", name="Bob")
    async with create_notebook(ours.url, identity=owner, awareness=False) as nb:
        nb.add_code_cell("a")
        await nb.create_snapshot(timeout=20)
        link = nb.share_link
        async with _open(link, owner) as other:
            # take ``other`` offline (a relay URL that refuses), change the log meanwhile
            good = other.document.relay_url
            other.document.relay_url = "ws://127.0.0.1:9"
            other.document.reconnect()
            await other.wait_for(
                lambda: other.document.connections == 1 and other.state != "connected", 20
            )
            await nb.add_member(str(bob), "editor", timeout=20)
            other.document.relay_url = good
            other.document.reconnect()
            await other.wait_for(lambda: other.document.connections == 2, 20)
            await other.wait_for(lambda: other.document.log_head.seq == 1, 20)
            # knownLogSeq/knownLogHash named entry 0: the relay sent entry 1 alone (logFrom 1)
            assert "knownLogSeq=0" in other.document.last_url
            assert other.document.engine.last_document["logFrom"] == 1
            assert other.document.engine.last_document["log"] == 1
            assert {m.name: m.role for m in other.members} == {"Owner": "admin", "Bob": "editor"}
            assert other.role == "admin" and [c.source for c in other.cells] == ["a"]
