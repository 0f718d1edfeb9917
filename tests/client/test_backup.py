"""Key backups (secsync_jupyter/client/backup.py, docs/backup.md): the format, merging into
the Python key store and identity file, ``secsync-jupyter backup export|import|show``, and the
same files written and read by the browser code (labextension/src/backupformat.ts, run with
vite-node: test/interop/backup.ts)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from secsync_jupyter.cli import main
from secsync_jupyter.client import backup as bk
from secsync_jupyter.protocol import SigningKeyPair, b64decode, b64encode, generate_key
from secsync_jupyter.sharelink import format_share_link

FAST = {"opslimit": 1, "memlimit": 8192}
PASS = "correct horse battery staple"
LABEXT = Path(__file__).resolve().parents[2] / "labextension"
VITE_NODE = LABEXT / "node_modules" / ".bin" / "vite-node"


def _content() -> bk.BackupContent:
    return bk.BackupContent(
        keys=[
            bk.BackupKey("docA_-1", generate_key(), "a.secnb", None),
            bk.BackupKey("docB", generate_key(), None, "2026-11-30T10:00:00Z"),
        ],
        identity=SigningKeyPair.generate(),
        created="2026-12-01T18:00:00.000Z",
    )


def _same(a: bk.BackupContent, b: bk.BackupContent) -> bool:
    return a.to_json() == b.to_json()


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A fresh XDG config dir (key store and identity file inside it)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(bk.KEYS_ENV, raising=False)
    monkeypatch.delenv(bk.IDENTITY_ENV, raising=False)
    monkeypatch.delenv(bk.PASSPHRASE_ENV, raising=False)
    return tmp_path / "config" / "secsync-jupyter"


# ----------------------------------------------------------------------------------------
# the format
# ----------------------------------------------------------------------------------------


def test_round_trip_and_recorded_parameters():
    content = _content()
    text = bk.encrypt_backup(content, PASS, **FAST)
    assert _same(bk.decrypt_backup(text, PASS), content)
    outer = json.loads(text)
    assert outer["format"] == "secsync-jupyter-key-backup" and outer["version"] == 2
    assert outer["kdf"] == {"name": "argon2id13", **FAST, "salt": outer["kdf"]["salt"]}
    assert len(b64decode(outer["kdf"]["salt"])) == 16
    assert len(b64decode(outer["cipher"]["nonce"])) == 24
    for k in content.keys:
        assert b64encode(k.key) not in text
    assert b64encode(content.identity.seed) not in text


def test_default_parameters_are_libsodium_moderate():
    text = bk.encrypt_backup(_content(), PASS)
    kdf = json.loads(text)["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == (3, 256 * 1024 * 1024)
    assert len(bk.decrypt_backup(text, PASS).keys) == 2


def test_passphrase_is_nfc_normalized_and_short_ones_refused():
    text = bk.encrypt_backup(_content(), "caf\u00e9 passphrase", **FAST)
    assert len(bk.decrypt_backup(text, "cafe\u0301 passphrase").keys) == 2
    with pytest.raises(bk.BackupError, match="at least 10 characters"):
        bk.encrypt_backup(_content(), "short", **FAST)


def test_wrong_passphrase_and_changed_bytes():
    text = bk.encrypt_backup(_content(), PASS, **FAST)
    with pytest.raises(bk.BackupError, match="wrong passphrase"):
        bk.decrypt_backup(text, PASS + "!")
    outer = json.loads(text)
    ct = bytearray(b64decode(outer["ciphertext"]))
    ct[3] ^= 1
    with pytest.raises(bk.BackupError, match="wrong passphrase"):
        bk.decrypt_backup(json.dumps({**outer, "ciphertext": b64encode(bytes(ct))}), PASS)
    salt = bytearray(b64decode(outer["kdf"]["salt"]))
    salt[0] ^= 1
    changed = {**outer, "kdf": {**outer["kdf"], "salt": b64encode(bytes(salt))}}
    with pytest.raises(bk.BackupError, match="wrong passphrase"):
        bk.decrypt_backup(json.dumps(changed), PASS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: "not json", "not a secsync-jupyter key backup"),
        (lambda o: {"cells": []}, "not a secsync-jupyter key backup"),
        (lambda o: {**o, "version": 3}, "version 3 is not supported"),
        (lambda o: {**o, "version": True}, "version True is not supported"),
        (lambda o: {**o, "kdf": {**o["kdf"], "memlimit": 2**33}}, "kdf.memlimit"),
        (lambda o: {**o, "kdf": {**o["kdf"], "opslimit": 1000}}, "kdf.opslimit"),
        (lambda o: {**o, "kdf": {**o["kdf"], "name": "scrypt"}}, "'kdf' is not argon2id13"),
        (lambda o: {**o, "cipher": {"name": "xsalsa20poly1305"}}, "damaged"),
        (lambda o: {**o, "ciphertext": "AAAA"}, "too short"),
    ],
)
def test_not_a_backup_or_damaged(change, message):
    outer = json.loads(bk.encrypt_backup(_content(), PASS, **FAST))
    changed = change(outer)
    text = changed if isinstance(changed, str) else json.dumps(changed)
    with pytest.raises(bk.BackupError, match=message):
        bk.decrypt_backup(text, PASS)


def test_content_checks():
    content = _content()
    content.keys[1].doc_id = content.keys[0].doc_id
    with pytest.raises(bk.BackupError, match="listed twice"):
        bk.decrypt_backup(bk.encrypt_backup(content, PASS, **FAST), PASS)
    data = _content().to_json()
    data["identity"]["publicKey"] = SigningKeyPair.generate().public_key_b64
    with pytest.raises(bk.BackupError, match="does not belong to its seed"):
        bk.parse_content(data)
    data = _content().to_json()
    data["keys"][0]["key"] = b64encode(b"x" * 31)
    with pytest.raises(bk.BackupError, match="not 32 bytes"):
        bk.parse_content(data)


# ----------------------------------------------------------------------------------------
# version 2: epoch keys (issue 12) in the key entries; version 1 files still read
# ----------------------------------------------------------------------------------------


def _with_epochs() -> bk.BackupContent:
    """docA with keys of epochs 1 and 2 (seen 2); a document joined after a rotation (only
    epoch 3's key, no document key); docB as in version 1."""
    content = _content()
    content.keys[0].epochs = {1: generate_key(), 2: generate_key()}
    content.keys[0].seen = 2
    content.keys.append(bk.BackupKey("joinedLater", None, None, None, {3: generate_key()}, 3))
    return content


def test_epoch_keys_round_trip():
    content = _with_epochs()
    text = bk.encrypt_backup(content, PASS, **FAST)
    assert json.loads(text)["version"] == 2
    back = bk.decrypt_backup(text, PASS)
    assert _same(back, content)
    assert back.keys[0].epochs == content.keys[0].epochs and back.keys[0].seen == 2
    assert back.keys[2].key is None and back.keys[2].epochs == content.keys[2].epochs
    entry = content.to_json()["keys"][0]
    assert list(entry["epochs"]) == ["1", "2"] and entry["seen"] == 2
    assert "epochs" not in content.to_json()["keys"][1]  # none: as in version 1


def test_version_1_files_still_import(config):
    content = _content()
    outer = json.loads(bk.encrypt_backup(content, PASS, **FAST))
    v1 = json.dumps({**outer, "version": 1})  # what the version-1 writer wrote
    back = bk.decrypt_backup(v1, PASS)
    assert _same(back, content) and all(not k.epochs and k.seen is None for k in back.keys)
    result = bk.import_backup(back)
    assert result.added == ["docA_-1", "docB"] and not result.epochs_added
    assert not (config / "keyrings.json").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(epochs={"0": e["key"]}), "lists epoch 0"),
        (lambda e: e.update(epochs={"01": e["key"]}), "epoch '01' that is not a number"),
        (lambda e: e.update(epochs={"x": e["key"]}), "epoch 'x' that is not a number"),
        (lambda e: e.update(epochs={"1": "AAAA"}), "epoch 1 of document docA_-1 is not 32"),
        (lambda e: e.update(epochs=["x"]), "epoch keys of document docA_-1 are not an object"),
        (lambda e: e.update(seen=-1), "'seen' of document docA_-1"),
        (lambda e: e.update(seen=True), "'seen' of document docA_-1"),
        (lambda e: e.update(key=None), "key of document docA_-1 is not 32 bytes"),
        (lambda e: e.update(key=None, epochs={}), "key of document docA_-1 is not 32 bytes"),
    ],
)
def test_epoch_key_content_checks(change, message):
    data = _content().to_json()
    change(data["keys"][0])
    with pytest.raises(bk.BackupError, match=message):
        bk.parse_content(data)


def _keyrings(config, documents: dict) -> None:
    from secsync_jupyter.client.epochs_client import KEYRINGS_FORMAT

    config.mkdir(parents=True, exist_ok=True)
    (config / "keyrings.json").write_text(
        json.dumps({"format": KEYRINGS_FORMAT, "version": 1, "documents": documents})
    )


def _ring(config, doc_id: str):
    from secsync_jupyter.client.epochs_client import KeyringFile

    ring, seen = KeyringFile(config / "keyrings.json").load(doc_id)
    return {e: ring.key(e) for e in ring.epochs}, seen


def test_export_carries_each_documents_keyring(config, monkeypatch):
    monkeypatch.delenv("SECSYNC_KEYRINGS", raising=False)
    k0, k1, k2, k5 = (generate_key() for _ in range(4))
    _keyrings(
        config,
        {
            "rotated": {"keys": {"0": b64encode(k0), "1": b64encode(k1), "2": b64encode(k2)}},
            "joinedLater": {"keys": {"5": b64encode(k5)}, "seen": 5},
        },
    )
    exported = {k.doc_id: k for k in bk.export_content().keys}
    assert exported["rotated"].key == k0 and exported["rotated"].epochs == {1: k1, 2: k2}
    assert exported["rotated"].seen is None
    assert exported["joinedLater"].key is None and exported["joinedLater"].epochs == {5: k5}
    assert exported["joinedLater"].seen == 5
    # into another user's config: the same keyrings, by the file's own reader
    text = bk.encrypt_backup(bk.export_content(), PASS, **FAST)
    other = config.parent.parent / "other"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(other))
    result = bk.import_backup(bk.decrypt_backup(text, PASS))
    assert sorted(result.epochs_added) == [("joinedLater", 5), ("rotated", 1), ("rotated", 2)]
    theirs = other / "secsync-jupyter"
    assert _ring(theirs, "rotated") == ({0: k0, 1: k1, 2: k2}, None)
    assert _ring(theirs, "joinedLater") == ({5: k5}, 5)
    assert {k.doc_id: k.key for k in bk.load_keys()} == {"rotated": k0}
    assert stat.S_IMODE(os.stat(theirs / "keyrings.json").st_mode) == 0o600


def test_import_never_replaces_an_epoch_key(config, monkeypatch, capsys, tmp_path):
    """A different key stored for an epoch is kept and reported, even with --replace-keys;
    the other epochs are added; `seen` only grows."""
    monkeypatch.delenv("SECSYNC_KEYRINGS", raising=False)
    content = _with_epochs()
    mine1 = generate_key()
    _keyrings(
        config,
        {
            "docA_-1": {
                "keys": {"0": b64encode(content.keys[0].key), "1": b64encode(mine1)},
                "seen": 4,
            }
        },
    )
    before = (config / "keyrings.json").read_text()
    result = bk.import_backup(content, replace_keys=True)
    assert result.epoch_conflicts == [("docA_-1", 1)]
    assert result.epochs_added == [("docA_-1", 2), ("joinedLater", 3)]
    assert result.epochs_unchanged == []
    ring, seen = _ring(config, "docA_-1")
    assert ring == {0: content.keys[0].key, 1: mine1, 2: content.keys[0].epochs[2]}
    assert seen == 4  # the stored one was newer
    assert _ring(config, "joinedLater") == ({3: content.keys[2].epochs[3]}, 3)
    assert (config / "keyrings.json").read_text() != before
    # again: nothing new, the conflict is reported again
    again = bk.import_backup(content)
    assert again.epochs_added == [] and again.epoch_conflicts == [("docA_-1", 1)]
    # the command line says so
    path = tmp_path / "b.json"
    path.write_text(bk.encrypt_backup(content, PASS, **FAST))
    monkeypatch.setenv(bk.PASSPHRASE_ENV, PASS)
    assert main(["backup", "import", str(path), "--replace-keys"]) == 0
    out = capsys.readouterr().out
    assert "0 epoch key(s) added, 2 already stored, 1 conflicting (kept)" in out
    assert "CONFLICT: the backup holds another key for epoch 1 of docA_-1" in out
    assert _ring(config, "docA_-1")[0][1] == mine1
    assert main(["backup", "show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"epoch 2  key fingerprint {bk.key_fingerprint(content.keys[0].epochs[2])}" in shown
    assert "joinedLater  key fingerprint (none)" in shown


def test_damaged_keyring_file_is_left_alone(config, monkeypatch):
    monkeypatch.delenv("SECSYNC_KEYRINGS", raising=False)
    config.mkdir(parents=True)
    (config / "keyrings.json").write_text("{oops")
    with pytest.raises(bk.BackupError, match="keyring file"):
        bk.import_backup(_with_epochs())
    assert (config / "keyrings.json").read_text() == "{oops"
    assert not (config / "keys.json").exists()
    with pytest.raises(bk.BackupError, match="keyring file"):
        bk.export_content()


# ----------------------------------------------------------------------------------------
# merging into the key store and the identity file
# ----------------------------------------------------------------------------------------


def test_import_merges_never_replacing_silently(config):
    content = _content()
    other_key = generate_key()
    bk.save_keys([bk.BackupKey("docB", other_key, "mine.secnb", None)])
    mine = SigningKeyPair.generate()
    bk.save_identity(mine)
    result = bk.import_backup(content)
    assert (result.added, result.kept, result.identity) == (["docA_-1"], ["docB"], "kept")
    stored = {k.doc_id: k.key for k in bk.load_keys()}
    assert stored == {"docB": other_key, "docA_-1": content.keys[0].key}
    assert bk.load_identity().public_key == mine.public_key
    # importing again changes nothing
    again = bk.import_backup(content)
    assert (again.added, again.unchanged, again.kept) == ([], ["docA_-1"], ["docB"])
    # only when asked
    forced = bk.import_backup(content, replace_keys=True, replace_identity=True)
    assert (forced.replaced, forced.identity) == (["docB"], "replaced")
    assert {k.doc_id: k.key for k in bk.load_keys()}["docB"] == content.keys[1].key
    assert bk.load_identity().public_key == content.identity.public_key
    # the replaced identity is kept beside it, never lost
    (moved,) = config.glob("identity.json.replaced-*")
    assert forced.identity_moved == moved
    assert bk.load_identity(moved).public_key == mine.public_key
    for name in ("keys.json", "identity.json"):
        assert stat.S_IMODE(os.stat(config / name).st_mode) == 0o600


def test_import_into_empty_config_writes_identity(config):
    content = _content()
    result = bk.import_backup(content)
    assert result.identity == "added" and len(result.added) == 2
    assert bk.load_identity().public_key == content.identity.public_key
    exported = bk.export_content()
    assert {k.doc_id for k in exported.keys} == {"docA_-1", "docB"}
    assert exported.identity.public_key == content.identity.public_key


def test_export_includes_the_keyring_files_document_keys(config, monkeypatch):
    """Documents the Python client created or joined (keyrings.json next to the identity file,
    issue 12): their epoch-0 key is backed up; the key store's entry wins for the same id."""
    from secsync_jupyter.client.epochs_client import KEYRINGS_FORMAT

    monkeypatch.delenv("SECSYNC_KEYRINGS", raising=False)
    content = _content()
    bk.import_backup(content)
    created, later = generate_key(), generate_key()
    (config / "keyrings.json").write_text(
        json.dumps(
            {
                "format": KEYRINGS_FORMAT,
                "version": 1,
                "documents": {
                    "madeHere": {"keys": {"0": b64encode(created), "1": b64encode(later)}},
                    "docB": {"keys": {"0": b64encode(generate_key())}},
                },
            }
        )
    )
    exported = {k.doc_id: k.key for k in bk.export_content().keys}
    assert exported == {
        "docA_-1": content.keys[0].key,
        "docB": content.keys[1].key,
        "madeHere": created,
    }


def test_damaged_key_store_is_left_alone(config):
    config.mkdir(parents=True)
    (config / "keys.json").write_text("{oops")
    with pytest.raises(bk.BackupError, match="not JSON"):
        bk.import_backup(_content())
    assert (config / "keys.json").read_text() == "{oops"
    assert not (config / "identity.json").exists()


# ----------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------


def _passfile(tmp_path: Path, text: str = PASS) -> str:
    p = tmp_path / f"pass-{len(list(tmp_path.glob('pass-*')))}.txt"
    p.write_text(text + "\n")
    return str(p)


def test_cli_export_show_import(tmp_path, config, monkeypatch, capsys):
    doc_id, key = "fromALink", generate_key()
    links = tmp_path / "links.txt"
    links.write_text(format_share_link(doc_id, key, server_url="http://127.0.0.1:8888/") + "\n")
    content = _content()
    bk.import_backup(content)
    out = tmp_path / "backup.json"
    pw = _passfile(tmp_path)
    args = ["backup", "export", str(out), "--passphrase-file", pw, "--link-file", str(links)]
    assert main(args) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert main(args) == 1  # never overwrites without --force
    assert "already exists" in capsys.readouterr().err

    assert main(["backup", "show", str(out), "--passphrase-file", pw]) == 0
    shown = capsys.readouterr().out
    for k in [*content.keys, bk.BackupKey(doc_id, key)]:
        assert k.doc_id in shown and bk.key_fingerprint(k.key) in shown
        assert b64encode(k.key) not in shown
    assert bk.identity_fingerprint(content.identity.public_key) in shown
    assert b64encode(content.identity.seed) not in shown

    # another user's config: wrong passphrase -> message, nothing written
    other = tmp_path / "other"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(other))
    wrong = _passfile(tmp_path, "not the passphrase")
    assert main(["backup", "import", str(out), "--passphrase-file", wrong]) == 1
    err = capsys.readouterr().err
    assert "wrong passphrase, or the backup file was changed" in err
    assert "Traceback" not in err
    assert not other.exists()
    # not a backup -> message before any passphrase is read
    nb = tmp_path / "x.ipynb"
    nb.write_text('{"cells": []}')
    assert main(["backup", "import", str(nb)]) == 1
    assert "not a secsync-jupyter key backup" in capsys.readouterr().err

    monkeypatch.setenv(bk.PASSPHRASE_ENV, PASS)
    assert main(["backup", "import", str(out)]) == 0
    assert "3 key(s) added" in capsys.readouterr().out
    assert {k.doc_id for k in bk.load_keys()} == {"docA_-1", "docB", doc_id}
    assert bk.load_identity().public_key == content.identity.public_key


# ----------------------------------------------------------------------------------------
# the browser code writes, Python reads, and back
# ----------------------------------------------------------------------------------------


def _node(*args: str) -> str:
    if not VITE_NODE.exists():
        pytest.fail("labextension/node_modules missing: cd labextension && npm ci")
    proc = subprocess.run(
        [str(VITE_NODE), "test/interop/backup.ts", *args],
        cwd=LABEXT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_browser_writes_python_reads(tmp_path):
    content = _content()
    data = content.to_json()
    data["createdBy"] = "browser"
    spec = tmp_path / "content.json"
    spec.write_text(json.dumps(data))
    text = _node("encrypt", _passfile(tmp_path), str(spec))  # default parameters
    assert json.loads(text)["kdf"]["memlimit"] == bk.MEMLIMIT
    back = bk.decrypt_backup(text, PASS)
    assert back.created_by == "browser"
    assert [(k.doc_id, k.key, k.name, k.created) for k in back.keys] == [
        (k.doc_id, k.key, k.name, k.created) for k in content.keys
    ]
    assert back.identity.private_key == content.identity.private_key
    with pytest.raises(bk.BackupError, match="wrong passphrase"):
        bk.decrypt_backup(text, PASS + "x")


def test_python_writes_browser_reads(tmp_path):
    content = _content()
    path = tmp_path / "backup.json"
    path.write_text(bk.encrypt_backup(content, "caf\u00e9 " + PASS, **FAST))
    got = json.loads(_node("decrypt", _passfile(tmp_path, "cafe\u0301 " + PASS), str(path)))
    assert got["ok"], got
    assert got["content"]["keys"] == [
        {**k, "epochs": {}, "seen": None} for k in content.to_json()["keys"]
    ]
    assert got["content"]["identity"] == content.to_json()["identity"]
    assert got["content"]["createdBy"] == "python"
    wrong = json.loads(_node("decrypt", _passfile(tmp_path, "nope nope nope"), str(path)))
    assert wrong == {
        "ok": False,
        "kind": "passphrase",
        "message": "Wrong passphrase, or the backup file was changed.",
    }
    outer = json.loads(path.read_text())
    path.write_text(json.dumps({**outer, "version": 7}))
    newer = json.loads(_node("decrypt", _passfile(tmp_path), str(path)))
    assert newer["ok"] is False and newer["kind"] == "version"
    outer["version"] = 1  # a version-1 file (no epoch keys): still read
    path.write_text(json.dumps(outer))
    old = json.loads(_node("decrypt", _passfile(tmp_path, "cafe\u0301 " + PASS), str(path)))
    assert old["ok"] and len(old["content"]["keys"]) == 2


def test_epoch_keys_browser_to_python_and_back(tmp_path, config, monkeypatch):
    """Version 2 across languages: the browser code writes each document's epoch keys (and
    an entry with only epoch keys), Python reads and imports them into its keyring file,
    exports them again, and the browser code reads the same keys."""
    monkeypatch.delenv("SECSYNC_KEYRINGS", raising=False)
    content = _with_epochs()
    data = content.to_json()
    data["createdBy"] = "browser"
    spec = tmp_path / "content.json"
    spec.write_text(json.dumps(data))
    text = _node("encrypt", _passfile(tmp_path), str(spec), "1", "8192")
    assert json.loads(text)["version"] == 2
    back = bk.decrypt_backup(text, PASS)
    assert _same(back, bk.BackupContent(content.keys, content.identity, content.created, "browser"))
    result = bk.import_backup(back)
    assert result.epochs_added == [("docA_-1", 1), ("docA_-1", 2), ("joinedLater", 3)]
    assert _ring(config, "docA_-1") == (
        {0: content.keys[0].key, **content.keys[0].epochs},
        2,
    )
    path = tmp_path / "again.json"
    path.write_text(bk.encrypt_backup(bk.export_content(), PASS, **FAST))
    got = json.loads(_node("decrypt", _passfile(tmp_path), str(path)))
    assert got["ok"], got
    keys = {k["docId"]: k for k in got["content"]["keys"]}
    for k in content.keys:
        assert keys[k.doc_id]["key"] == (None if k.key is None else b64encode(k.key))
        assert keys[k.doc_id]["epochs"] == {str(e): b64encode(v) for e, v in k.epochs.items()}
        assert keys[k.doc_id]["seen"] == k.seen
