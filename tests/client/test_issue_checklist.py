"""Issue 4 items not covered elsewhere: awareness claims, the batching window through the
driver, the backoff cap, and the CLI's errors for bad files, relays and keys."""

from __future__ import annotations

import asyncio
import json

import nbformat
import pytest
from pycrdt import Awareness, Doc, Text

from secsync_jupyter.cli import main
from secsync_jupyter.client import AwarenessBridge, SecsyncDocument, backoff_delay, fingerprint
from secsync_jupyter.client.ydoc import deserialize_updates
from secsync_jupyter.protocol import (
    SigningKeyPair,
    Update,
    generate_id,
    generate_key,
)
from secsync_jupyter.protocol.crypto import decrypt_message
from secsync_jupyter.sharelink import format_share_link, parse_share_link

from .conftest import import_options
from .helpers import KEY, A
from .scripted import Conn, ScriptedRelay

ALICE = SigningKeyPair.from_seed(bytes(range(5, 37))).public_key_b64
MALLORY = SigningKeyPair.from_seed(bytes(range(6, 38))).public_key_b64


def _peer_update(claimed: str, user: str, client_id: int | None = None) -> tuple[int, bytes]:
    peer = Awareness(Doc())
    if client_id is not None:  # pretend to be another awareness client
        peer = Awareness(Doc(client_id=client_id))
    peer.set_local_state({"secsync": {"pubKey": claimed}, "user": {"name": user}})
    return peer.client_id, peer.encode_awareness_update([peer.client_id])


def test_awareness_keeps_only_states_whose_claimed_key_signed_them():
    me = AwarenessBridge(Doc(), A.public_key_b64, lambda content: None)
    alice_id, alice = _peer_update(ALICE, "Alice")
    me.apply(alice, ALICE)
    # Mallory signs a state claiming to be Alice: dropped
    _, forged = _peer_update(ALICE, "Not Alice")
    me.apply(forged, MALLORY)
    # Mallory takes over Alice's awareness client id with her own (true) key: dropped
    _, hijack = _peer_update(MALLORY, "Mallory", client_id=alice_id)
    me.apply(hijack, MALLORY)
    people = {c.pub_key: c for c in me.collaborators()}
    assert set(people) == {A.public_key_b64, ALICE}
    assert people[ALICE].user == {"name": "Alice"}
    assert people[ALICE].fingerprint == fingerprint(ALICE)
    assert people[A.public_key_b64].is_self
    assert me.dropped == 2
    # a removal of Alice's state signed by Mallory is dropped too; Alice's own works
    me.remove_author(MALLORY)
    assert ALICE in {c.pub_key for c in me.collaborators()}
    me.remove_author(ALICE)
    assert {c.pub_key for c in me.collaborators()} == {A.public_key_b64}


def test_fingerprint_format():
    fp = fingerprint(ALICE)
    groups = fp.split(" ")
    assert len(groups) == 4 and all(len(g) == 4 for g in groups)
    assert fp != fingerprint(MALLORY)


def test_backoff_is_exponential_and_capped():
    assert [round(backoff_delay(n), 4) for n in range(4)] == [0.1, 0.18, 0.324, 0.5832]
    assert backoff_delay(8, cap=2.0) == 2.0
    assert backoff_delay(1000) == 10.0  # n is capped too: no overflow; cap 10 s (issue 10)


@pytest.mark.asyncio
async def test_changes_within_the_batching_window_go_out_as_one_update():
    doc_id = generate_id()
    updates: list[dict] = []
    done = asyncio.Event()

    async def script(conn: Conn):
        await conn.send({"type": "document", "updates": [], "snapshotProofChain": []})
        snap = await conn.recv("snapshot")
        await conn.send({"type": "snapshot-saved", "snapshotId": snap["publicData"]["snapshotId"]})
        upd = await conn.recv("update")
        updates.append(upd)
        await conn.send(
            {
                "type": "update-saved",
                "snapshotId": upd["publicData"]["refSnapshotId"],
                "clock": upd["publicData"]["clock"],
            }
        )
        done.set()

    async with ScriptedRelay(script) as relay:
        d = SecsyncDocument(relay.url, doc_id, KEY, signing_key=A, batch_window=0.5)
        await d.start()
        text = d.doc.get("content", type=Text)
        text += "first"
        await d.wait_for(lambda: d.engine.active is not None, 10)
        first_state = d.doc.get_update()
        for word in ("a", "b", "c"):  # three transactions inside the window
            text += word
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), 10)
        await d.synced(10)
        await d.close()
    assert len(updates) == 1
    frame = {k: v for k, v in updates[0].items() if k != "type"}
    changes = deserialize_updates(decrypt_message(Update.from_json(frame), KEY))
    # the three transactions, merged into one Yjs update before sending (issue 10)
    assert len(changes) == 1
    reader = Doc()
    reader_text = reader.get("content", type=Text)
    reader.apply_update(first_state)
    reader.apply_update(changes[0])
    assert str(reader_text) == "firstabc"


def _notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    return path


def test_cli_errors_for_bad_files_and_relays(tmp_path, capsys):
    assert main(["import", str(tmp_path / "missing.ipynb"), "ws://127.0.0.1:9"]) == 1
    assert "No such file" in capsys.readouterr().err
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert main(["import", str(bad), "ws://127.0.0.1:9"]) == 1
    assert "error" in capsys.readouterr().err
    assert main(["import", str(_notebook(tmp_path)), "ftp://relay"]) == 1
    assert "RELAY must be" in capsys.readouterr().err
    key_missing = f"ws://127.0.0.1:9/{generate_id()}"
    assert main(["cat", key_missing]) == 1
    assert "#key=" in capsys.readouterr().err


def test_cli_wrong_key_and_unwritable_output(relay, tmp_path, capsys):
    assert main(["import", str(_notebook(tmp_path)), relay.url, *import_options(relay)]) == 0
    link = parse_share_link(capsys.readouterr().out.strip())
    wrong = format_share_link(link.doc_id, generate_key(), relay=relay.url)
    assert main(["cat", wrong, "--timeout", "20"]) == 1
    err = capsys.readouterr().err
    assert "SECSYNC_ERROR_101" in err and err.count("\n") == 1
    assert main(["export", str(link), str(tmp_path / "no-such-dir" / "out.ipynb")]) == 1
    assert "No such file" in capsys.readouterr().err
    assert main(["export", str(link), str(tmp_path / "out.ipynb")]) == 0
    assert json.loads((tmp_path / "out.ipynb").read_text())["cells"][0]["source"] == "x = 1"
