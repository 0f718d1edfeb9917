"""Invitation links in the Python client (issue 12), against the in-test relay of
epoch_relay.py: join as viewer (read-only) and editor, ``nb.links`` with who joined, a revoked
link cannot join and its key gets no lockbox of the new epoch, someone who joined through it
keeps access until removed, an expired link cannot join, a malformed fragment is 770."""

from __future__ import annotations

import asyncio
import json

import pytest

from secsync_jupyter.client import ReadOnlyError, open_document
from secsync_jupyter.client.links_client import is_link_url
from secsync_jupyter.protocol import SigningKeyPair
from secsync_jupyter.protocol.links import create_link as core_create_link
from secsync_jupyter.protocol.links import link_keypair, parse_fragment
from secsync_jupyter.protocol.membership import MembershipError, verify_log

from .epoch_relay import EpochRelay
from .helpers import KEY, A
from .scripted import ScriptedRelay
from .test_epochs_client import setup, text, until, write
from .test_membership_client import T0

D = SigningKeyPair.from_seed(bytes(range(3, 35)))
E = SigningKeyPair.from_seed(bytes(range(4, 36)))
F = SigningKeyPair.from_seed(bytes(range(5, 37)))


def owner(relay, er, tmp_path):
    return open_document(
        relay.url,
        er.doc_id,
        KEY,
        identity=A,
        awareness=False,
        keyring_file=tmp_path / "A.json",
    )


def join(url: str, who, tmp_path):
    return open_document(
        url, identity=who, awareness=False, keyring_file=tmp_path / f"{who.public_key_b64[:6]}.json"
    )


@pytest.mark.asyncio
async def test_viewer_and_editor_links_join_as_themselves(tmp_path):
    _log, er = setup()
    async with ScriptedRelay(er) as relay, owner(relay, er, tmp_path) as a:
        viewer_link = await a.create_link("viewer", "for readers")
        editor_link = await a.create_link(role="editor", label="for writers")
        url = str(viewer_link)
        assert is_link_url(url) and url.startswith(relay.url) and "#link=" in url
        secret = parse_fragment(url.split("#", 1)[1]).link_secret
        assert link_keypair(secret).public_key_b64 == viewer_link.pub_key
        assert KEY.hex() not in url and "key=" not in url.split("#", 1)[1]

        async with join(url, D, tmp_path) as d:
            assert d.role == "viewer" and d.read_only and text(d) == "Hello"
            member = d.log.members[D.public_key_b64]
            assert member.via == viewer_link.pub_key and member.added_by == viewer_link.pub_key
            with pytest.raises(ReadOnlyError):
                d.check_writable()
            with pytest.raises(ValueError, match="invitation link"):
                d.share_link  # noqa: B018 - no epoch-0 key to put in a #key= link
            async with join(str(editor_link), E, tmp_path) as e:
                assert e.role == "editor" and not e.read_only and text(e) == "Hello"
                write(e, " from E")
                await e.synced()
                await until(lambda: text(a) == text(d) == "Hello from E")
        links = {li.label: li for li in a.links}
        assert links["for readers"].joined == (D.public_key_b64,)
        assert links["for writers"].joined == (E.public_key_b64,)
        assert all(li.live and li.removed is None for li in a.links)
        # the link connections got no content: only the link's lockbox and the log
        assert er.refused == []
    verify_log(er.entries, er.doc_id)


@pytest.mark.asyncio
async def test_link_to_a_rotated_document_gives_the_current_key(tmp_path):
    _log, er = setup()
    async with ScriptedRelay(er) as relay, owner(relay, er, tmp_path) as a:
        await a.rotate_key()
        write(a, " rotated")
        await a.synced()
        await until(lambda: er.active["publicData"].get("epoch") == 1)
        link = await a.create_link("editor", "after rotation")
        async with join(str(link), D, tmp_path) as d:
            assert text(d) == "Hello rotated"
            assert d.engine.epochs.keyring.epochs == [1]  # nothing older
            write(d, "!")
            await d.synced()
            await until(lambda: text(a) == "Hello rotated!")


@pytest.mark.asyncio
async def test_revoked_link_cannot_join_and_joined_member_keeps_access(tmp_path):
    _log, er = setup()
    async with ScriptedRelay(er) as relay, owner(relay, er, tmp_path) as a:
        link = await a.create_link("viewer", "revoke me")
        async with join(str(link), D, tmp_path) as d:
            assert text(d) == "Hello"
            state = await a.revoke_link(link)
            assert state.links[link.pub_key].removed is not None and state.epoch == 1
            # the link's key got no lockbox of the new epoch; D (a member) did
            assert (1, link.pub_key) not in er.lockboxes and (1, D.public_key_b64) in er.lockboxes
            write(a, " after revoke")
            await a.synced()
            await until(lambda: text(d) == "Hello after revoke")  # D keeps access
            assert d.engine.active.epoch == 1
        with pytest.raises(MembershipError) as info:
            await join(str(link), F, tmp_path)
        assert info.value.code == "SECSYNC_ERROR_755"
        assert F.public_key_b64 not in er.state.members
        [revoked] = a.links
        assert not revoked.live and revoked.joined == (D.public_key_b64,)


@pytest.mark.asyncio
async def test_revoke_with_remove_joined_removes_them_and_rotates_once(tmp_path):
    _log, er = setup()
    async with ScriptedRelay(er) as relay, owner(relay, er, tmp_path) as a:
        link = await a.create_link("editor", "team")
        other = await a.create_link("editor", "other team")
        async with join(str(link), D, tmp_path) as d, join(str(other), E, tmp_path) as e:
            await a.revoke_link(link, remove_joined=True)
            await until(lambda: d.state == "no-access")
            kinds = [x["kind"] for x in er.entries[-3:]]
            assert kinds == ["remove-link", "remove-member", "rotate-key"]
            write(e, " E still writes")
            await e.synced()
            await until(lambda: text(a) == "Hello E still writes")
            assert (1, D.public_key_b64) not in er.lockboxes
            assert "E still writes" not in text(d)


@pytest.mark.asyncio
async def test_expired_link_cannot_join(tmp_path):
    log, _ = setup()
    # a link that expired long ago (fixed timestamps in 2026-01-01)
    new = core_create_link(
        log.state, A, "editor", "old", expires_at=T0 + 60_000, epoch_key=KEY, at=T0 + 10
    )
    log.entries.append(new.entry.to_json())
    log.state = new.state
    _unused, er = setup()
    er = EpochRelay(log.entries, er.active)
    er.lockboxes[(0, new.pub_key)] = new.lockbox.to_json()
    async with ScriptedRelay(er) as relay, owner(relay, er, tmp_path) as a:
        from secsync_jupyter.client.links_client import link_url

        url = link_url(a, new.secret)
        with pytest.raises(MembershipError) as info:
            await join(url, D, tmp_path)
        assert info.value.code == "SECSYNC_ERROR_754"
        assert D.public_key_b64 not in er.state.members
        [expired] = a.links
        assert not expired.live and expired.removed is None


@pytest.mark.asyncio
async def test_malformed_link_fragment_is_770(tmp_path):
    _log, er = setup()
    async with ScriptedRelay(er) as relay:
        with pytest.raises(MembershipError) as info:
            await join(f"{relay.url}/secsync/open/{er.doc_id}#link=short", D, tmp_path)
        assert info.value.code == "SECSYNC_ERROR_770"


# ---------------------------------------------------------------- our real relay


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    from .conftest import Relay

    relay = Relay("ours", tmp_path_factory.mktemp("links-relay"))
    yield relay
    relay.stop()


@pytest.mark.asyncio
async def test_real_relay_rotation_links_revocation(ours, tmp_path):
    """Our relay (the issue-12 frames): rotate, a member offline during a removal's rotation
    catches up with its lockbox, viewer / editor links, a revoked link cannot join while the
    person who joined through it keeps reading, a removed member is locked out."""
    from secsync_jupyter.client import create_notebook, open_notebook
    from secsync_jupyter.client.identity_file import create_identity

    ids = {n: create_identity(tmp_path / n / "identity.json", name=n) for n in "OBCDEF"}

    def nb_open(url, who):
        return open_notebook(url, identity=ids[who], awareness=False)

    async with create_notebook(ours.url, identity=ids["O"], awareness=False) as nb:
        nb.add_code_cell("x = 1")
        await nb.create_snapshot(timeout=20)
        share = nb.share_link
        await nb.add_member(str(ids["B"].identity_string), "editor", timeout=20)
        await nb.add_member(str(ids["C"].identity_string), "viewer", timeout=20)
        async with nb_open(share, "B") as b:
            async with nb_open(share, "C") as c:
                state = await nb.rotate_key(timeout=20)
                assert state.epoch == 1
                nb.add_code_cell("y = 2")
                await nb.synced(timeout=20)
                await c.wait_for(lambda: len(c.cells) == 2, 20)
                assert c.document.engine.active.epoch == 1
            # C offline; B removed: a rotation to epoch 2 without B
            await nb.remove_member(ids["B"].pub_key, timeout=20)
            assert nb.document.log.epoch == 2
            from secsync_jupyter.client import SyncFailed

            with pytest.raises(SyncFailed) as removed:
                await b.wait_for(lambda: False, 20)
            assert removed.value.code == "SECSYNC_ERROR_725" and b.state == "no-access"
        nb.add_code_cell("z = 3  # after B's removal")
        await nb.synced(timeout=20)
        async with nb_open(share, "C") as c:  # its epoch-2 lockbox in the document frame
            assert [x.source for x in c.cells][-1] == "z = 3  # after B's removal"
            assert c.document.engine.epochs.keyring.epochs == [0, 1, 2]

        viewer_link = await nb.create_link("viewer", "readers", timeout=20)
        editor_link = await nb.create_link("editor", "writers", timeout=20)
        async with nb_open(str(viewer_link), "D") as d, nb_open(str(editor_link), "E") as e:
            assert d.role == "viewer" and d.read_only and len(d.cells) == 3
            assert e.role == "editor"
            e.add_markdown_cell("from E")
            await e.synced(timeout=20)
            await nb.wait_for(lambda: len(nb.cells) == 4, 20)
            await nb.revoke_link(viewer_link, timeout=20)
            assert nb.document.log.epoch == 3
            with pytest.raises(MembershipError) as info:
                await asyncio.wait_for(nb_open(str(viewer_link), "F"), 20)
            assert info.value.code == "SECSYNC_ERROR_755"
            nb.add_code_cell("after revoke")
            await nb.synced(timeout=20)
            await d.wait_for(lambda: len(d.cells) == 5, 20)  # D keeps access
            await e.wait_for(lambda: len(e.cells) == 5, 20)
            links = {li.label: li for li in nb.links}
            assert links["readers"].joined == (ids["D"].pub_key,) and not links["readers"].live
            assert links["writers"].joined == (ids["E"].pub_key,) and links["writers"].live


def test_cli_links_create_join_list_rotate_revoke(ours, tmp_path, capsys, identity_file):
    import nbformat

    from secsync_jupyter.cli import main
    from secsync_jupyter.client.identity_file import create_identity

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, src)
    share = tmp_path / "share"
    assert main(["import", str(src), ours.url, "--link-out", str(share)]) == 0
    capsys.readouterr()
    base = ["--link-file", str(share), "--timeout", "20"]

    assert main(["links", "create", "--role", "viewer", "--label", "readers", *base]) == 0
    out = capsys.readouterr()
    invite = tmp_path / "invite"
    invite.write_text(out.out.strip())
    assert "#link=" in out.out and "send it privately" in out.err

    dave = create_identity(tmp_path / "dave" / "identity.json", name="Dave")
    dave_opts = ["--link-file", str(invite), "--identity", str(dave.path), "--timeout", "20"]
    assert main(["join", *dave_opts]) == 0
    assert "as viewer" in capsys.readouterr().out
    assert main(["cat", *dave_opts]) == 0  # the notebook, read through the invitation link
    assert json.loads(capsys.readouterr().out)["cells"][0]["source"] == "x = 1"

    assert main(["links", *base]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("live") and "'readers'" in line and "joined: Dave" in line

    assert main(["rotate", *base]) == 0
    assert "epoch 1" in capsys.readouterr().out

    assert main(["links", "--json", *base]) == 0
    [link] = json.loads(capsys.readouterr().out)
    assert main(["links", "revoke", link["pub_key"], *base]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("revoked") and "joined: Dave" in line

    erin = create_identity(tmp_path / "erin" / "identity.json", name="Erin")
    erin_opts = ["--link-file", str(invite), "--identity", str(erin.path), "--timeout", "20"]
    assert main(["join", *erin_opts]) == 1
    assert "SECSYNC_ERROR_755" in capsys.readouterr().err
    # Dave joined before the revocation: still a member, opens with the invitation link
    assert main(["join", *dave_opts]) == 0
    assert "as viewer" in capsys.readouterr().out

    with pytest.raises(SystemExit) as info:  # argparse: not a link role
        main(["links", "create", "--role", "admin", *base])
    assert info.value.code == 2 and "invalid choice: 'admin'" in capsys.readouterr().err
    assert main(["links", "create", "--role", "editor", "--expires", "soon", *base]) == 1
    assert "--expires" in capsys.readouterr().err


def test_cli_public_keys_starting_with_dash(ours, tmp_path, capsys, monkeypatch):
    """A public key is base64url: about one in 64 starts with '-', which argparse took for an
    option ("unrecognized arguments", exit 2): ``links revoke KEY`` with such a link key (this
    made test_cli_links_create_join_list_rotate_revoke fail now and then) and ``members
    set-role`` / ``remove`` with such a member key. Here the keys are chosen to start with
    '-' (the link's secret and the member's seed are fixed)."""
    import nbformat

    from secsync_jupyter.cli import main
    from secsync_jupyter.client.identity_file import create_identity
    from secsync_jupyter.protocol import links as core_links

    link_secret = bytes([39]) * 32
    assert link_keypair(link_secret).public_key_b64.startswith("-")
    monkeypatch.setattr(core_links, "generate_link_secret", lambda: link_secret)
    gil = create_identity(
        tmp_path / "gil" / "identity.json",
        name="Gil",
        keypair=SigningKeyPair.from_seed(bytes([41]) * 32),
    )
    assert gil.pub_key.startswith("-")

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, src)
    share = tmp_path / "share"
    assert main(["import", str(src), ours.url, "--link-out", str(share)]) == 0
    base = ["--link-file", str(share), "--timeout", "20"]
    assert main(["links", "create", "--role", "viewer", *base]) == 0
    invite = tmp_path / "invite"
    invite.write_text(capsys.readouterr().out.strip())
    gil_opts = ["--link-file", str(invite), "--identity", str(gil.path), "--timeout", "20"]
    assert main(["join", *gil_opts]) == 0
    assert "as viewer" in capsys.readouterr().out

    assert main(["members", "set-role", gil.pub_key, "--role", "editor", *base]) == 0
    assert "editor" in capsys.readouterr().out
    assert main(["members", "--json", *base]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["role"]) for m in listed] == [("Test", "admin"), ("Gil", "editor")]

    assert main(["links", "revoke", link_keypair(link_secret).public_key_b64, *base]) == 0
    assert capsys.readouterr().out.startswith("revoked")
    assert main(["members", "remove", gil.pub_key, *base]) == 0
    capsys.readouterr()
    assert main(["members", "--json", *base]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["Test"]
