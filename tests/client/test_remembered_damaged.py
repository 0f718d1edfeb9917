"""A damaged remembered state must not lock the user out (issues 11 / 13, part 3).

The state file (``state_file=``) is the Python client's record of what it verified last. When
it — or this document's entry in it — is damaged (not JSON, not the shape this client writes,
a log whose chain / head / root binding does not check), the document still opens: the file
is kept aside as ``<file>.damaged`` (never overwriting an older copy), ``nb.errors`` gets
807 and ``nb.alerts`` ``remembered-damaged``, the document is checked from scratch (the whole
log) and a new state is written after the load. A file that cannot be read for OS reasons,
or that is JSON of another format, stays a clear error and is never touched. The engine rule
itself is pinned by the shared scenarios ``remembered-807-*`` / ``membership-remembered-807-*``
(both engines); here: the driver, against our relay on loopback.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from secsync_jupyter.client import create_notebook, open_document, open_notebook
from secsync_jupyter.client.identity_file import create_identity
from secsync_jupyter.client.state_file import (
    StateFileDamaged,
    StateFileError,
    load_remembered,
    save_remembered,
    set_aside,
)

from .conftest import Relay
from .helpers import KEY

pytestmark = pytest.mark.asyncio

DAMAGED = "SECSYNC_ERROR_807"


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    relay = Relay("ours", tmp_path_factory.mktemp("remembered-damaged-relay"))
    yield relay
    relay.stop()


def codes(nb) -> list[str]:
    return [e.code for e in nb.errors]


# ------------------------------------------------------------------ the state file itself


async def test_damage_is_told_apart_from_another_file_and_from_an_unreadable_one(tmp_path):
    path = tmp_path / "state.json"
    save_remembered(path, "doc-1", {"snapshot": None, "logHead": None})
    assert load_remembered(path, "doc-1")["snapshot"] is None

    # damaged: ours, kept aside by the driver
    for text, whole in [
        ('{"version": 1, "docu', True),  # truncated
        ("\x00\x00\x00", True),  # zeros after a crash
        ("", True),
        ('{"version": 1, "documents": []}', True),
        ('{"version": 1, "documents": {"doc-1": [1, 2]}}', False),  # one entry
    ]:
        path.write_text(text)
        with pytest.raises(StateFileDamaged) as info:
            load_remembered(path, "doc-1")
        assert info.value.whole_file is whole, text
        assert path.read_text() == text  # loading never changes it

    # not ours (another file given by mistake, a later version): an error, never touched
    for text in ("[]", '{"nbformat": 4, "cells": []}', '{"version": 2, "documents": {}}'):
        path.write_text(text)
        with pytest.raises(StateFileError) as info:
            load_remembered(path, "doc-1")
        assert not isinstance(info.value, StateFileDamaged), text
        assert "not a secsync-jupyter state file" in str(info.value)

    # unreadable for an OS reason (here: a directory): an error, not a fallback
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(StateFileError) as info:
        load_remembered(folder, "doc-1")
    assert not isinstance(info.value, StateFileDamaged)
    assert "cannot read the state file" in str(info.value)


async def test_set_aside_keeps_every_damaged_copy(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b"first damage")
    first = set_aside(path, move=False)
    assert first == tmp_path / "state.json.damaged"
    assert first.read_bytes() == b"first damage" and path.read_bytes() == b"first damage"
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    path.write_bytes(b"second damage")
    second = set_aside(path, move=True)
    assert second == tmp_path / "state.json.damaged.2"
    assert second.read_bytes() == b"second damage"
    assert first.read_bytes() == b"first damage"  # the older copy is never overwritten
    assert not path.exists()  # moved: a new file is written after the load


# ------------------------------------------------------------- the driver, on our relay


async def _notebook(ours, tmp_path, state):
    """A notebook with a membership log (its owner's identity), one cell, remembered in
    ``state``; returns (share link, owner identity, doc id)."""
    owner = create_identity(tmp_path / "owner.json", name="Owner")
    async with create_notebook(ours.url, identity=owner, awareness=False, state_file=state) as nb:
        nb.add_code_cell("x = 1")
        await nb.create_snapshot(timeout=20)
        await nb.synced(timeout=20)
        nb.document.save_state()
        link, doc_id = nb.share_link, nb.doc_id
    entry = load_remembered(state, doc_id)
    assert entry["snapshot"] is not None and len(entry["log"]) == 1
    return link, owner, doc_id


async def test_a_state_file_that_is_not_json_is_moved_aside_and_the_notebook_opens(ours, tmp_path):
    state = tmp_path / "state.json"
    link, owner, doc_id = await _notebook(ours, tmp_path, state)
    damaged = state.read_bytes()[: len(state.read_bytes()) // 2]  # truncated mid-write
    state.write_bytes(damaged)

    async with open_notebook(link, identity=owner, awareness=False, state_file=state) as nb:
        assert [c.source for c in nb.cells] == ["x = 1"]  # the content, verified
        assert codes(nb) == [DAMAGED]
        assert "not JSON" in str(nb.errors[0])
        kinds = [kind for kind, _ in nb.alerts]
        assert kinds == ["remembered-damaged"]
        data = nb.alerts[0][1]
        assert data["aside"] == str(tmp_path / "state.json.damaged")
        assert "checked from scratch" in data["message"]
        # kept aside byte for byte; a new state written after the load
        assert (tmp_path / "state.json.damaged").read_bytes() == damaged
        fresh = load_remembered(state, doc_id)
        assert fresh["snapshot"]["snapshotId"] == nb.document.engine.active.snapshot_id
        assert len(fresh["log"]) == 1
    # the next open uses it again: no report
    async with open_notebook(link, identity=owner, awareness=False, state_file=state) as nb:
        assert codes(nb) == [] and nb.alerts == []
        assert nb.document.engine.remembered is not None


async def test_a_damaged_remembered_log_is_copied_aside_and_other_documents_are_kept(
    ours, tmp_path
):
    state = tmp_path / "state.json"
    link, owner, doc_id = await _notebook(ours, tmp_path, state)
    save_remembered(state, "another-document", {"snapshot": None, "logHead": None})
    obj = json.loads(state.read_text())
    root = obj["documents"][doc_id]["log"][0]
    # the root altered (signatures are not re-checked, but its hash no longer binds the id)
    obj["documents"][doc_id]["log"][0] = {**root, "at": root["at"] + 1}
    state.write_text(json.dumps(obj))
    before = state.read_bytes()

    async with open_notebook(link, identity=owner, awareness=False, state_file=state) as nb:
        assert [c.source for c in nb.cells] == ["x = 1"]
        assert codes(nb) == [DAMAGED]
        assert "log" in nb.document.engine.remembered_damaged
        assert nb.document.engine.remembered is None  # nothing of it was used
        assert nb.role == "admin"  # the whole log verified from the relay's root
        assert [kind for kind, _ in nb.alerts] == ["remembered-damaged"]
        assert (tmp_path / "state.json.damaged").read_bytes() == before  # copied
        after = json.loads(state.read_text())["documents"]
        assert after["another-document"] == obj["documents"]["another-document"]  # kept
        assert after[doc_id]["log"][0] == root  # replaced by what was verified
        assert after[doc_id]["snapshot"]["snapshotId"] == nb.document.engine.active.snapshot_id


async def test_an_unreadable_state_file_is_a_clear_error_not_a_fallback(tmp_path):
    folder = tmp_path / "state.json"
    folder.mkdir()  # cannot be read as a file (an OS error, like a permission)
    with pytest.raises(StateFileError, match="cannot read the state file"):
        await open_document("ws://127.0.0.1:9", "d", KEY, state_file=folder, open_timeout=1)
    other = tmp_path / "other.json"
    other.write_text('{"nbformat": 4}')  # not ours: never moved
    with pytest.raises(StateFileError, match="not a secsync-jupyter state file"):
        await open_document("ws://127.0.0.1:9", "d", KEY, state_file=other, open_timeout=1)
    assert other.read_text() == '{"nbformat": 4}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json", "state.json"]


async def test_cli_with_a_damaged_state_file_opens_and_says_so(ours, tmp_path, capsys, caplog):
    import asyncio

    import nbformat

    from secsync_jupyter.cli import main

    src = tmp_path / "in.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("y = 2")]), src)
    state = tmp_path / "state.json"

    def run(*argv):  # the CLI runs its own event loop: off this test's loop
        return asyncio.get_running_loop().run_in_executor(None, main, list(argv))

    assert await run("import", str(src), ours.url, "--state", str(state)) == 0
    link = capsys.readouterr().out.strip()
    state.write_text("\x00" * 64)  # e.g. zeros after a crash
    assert await run("cat", link, "--state", str(state)) == 0
    assert "y = 2" in capsys.readouterr().out
    # a warning (the CLI configures no logging: Python prints it on stderr)
    (said,) = [r.getMessage() for r in caplog.records if "remembered-damaged" in r.getMessage()]
    assert "checked from scratch" in said and str(tmp_path / "state.json.damaged") in said
    assert (tmp_path / "state.json.damaged").read_text() == "\x00" * 64
    (doc_id,) = json.loads(state.read_text())["documents"]  # a new state file
    assert load_remembered(state, doc_id)["snapshot"] is not None
