"""Epoch keys in key backups, in real Chromium (issue 12 in backups; src/backup.ts,
docs/backup.md, format version 2).

Browser profile A holds, besides a document key, the keyring of a document whose key was
rotated twice (epochs 1 and 2, `seen` 2) and of a document it joined after a rotation (only
epoch 3, no document key) — as keystore.ts stores them (`secsync-jupyter:keyring:<docId>`).
*Back Up Keys…* writes them all; the Python reader finds them in the file. A profile B that
holds another key for epoch 1 of the first document restores the file: epoch 2 and the
joined document's epoch 3 are added, B's epoch-1 key is kept and a warning names that epoch
(never replaced), `seen` becomes 2.

Run:  .venv/bin/pytest tests/e2e/test_backup_keyrings.py -q
"""

from __future__ import annotations

import json
import secrets

import pytest

from secsync_jupyter.client import backup as bk
from secsync_jupyter.protocol import b64encode, generate_key

from .helpers import TOKEN, _execute, _my_identity, _wait_app
from .test_ux import _session

pytestmark = pytest.mark.browser

PASSPHRASE = "a long backup passphrase " + secrets.token_hex(3)
DIALOG = ".jp-Dialog"
TOAST = ".Toastify__toast"


def _set(page, items: dict[str, str]) -> None:
    page.evaluate(
        "(items) => { for (const [k, v] of Object.entries(items)) localStorage.setItem(k, v); }",
        items,
    )


def _keyring(page, doc_id: str) -> dict | None:
    raw = page.evaluate("(n) => localStorage.getItem(n)", f"secsync-jupyter:keyring:{doc_id}")
    return None if raw is None else json.loads(raw)


def test_backup_carries_epoch_keys_and_never_replaces_one(lab, browser, tmp_path):
    rotated, joined = f"m1_rot{secrets.token_hex(6)}", f"m1_join{secrets.token_hex(6)}"
    k0, k1, k2, k3, other1 = (generate_key() for _ in range(5))
    with _session(browser, "keyrings-a") as a:
        a.goto(f"{lab.url}lab/workspaces/keyrings-a?token={TOKEN}")
        _wait_app(a)
        _set(
            a,
            {
                f"secsync-jupyter:doc-key:{rotated}": b64encode(k0),
                f"secsync-jupyter:keyring:{rotated}": json.dumps(
                    {"keys": {"1": b64encode(k1), "2": b64encode(k2)}, "seen": 2}
                ),
                f"secsync-jupyter:keyring:{joined}": json.dumps({"keys": {"3": b64encode(k3)}}),
            },
        )
        _execute(a, "secsync:backup-keys")
        dialog = a.locator(DIALOG)
        dialog.locator(".jp-secsync-BackupPassphrase").fill(PASSPHRASE)
        dialog.locator(".jp-secsync-BackupPassphrase2").fill(PASSPHRASE)
        with a.expect_download(timeout=120_000) as download:
            dialog.locator(".jp-mod-accept").click()
        saved = tmp_path / "keys.json"
        download.value.save_as(saved)

    text = saved.read_text()
    assert json.loads(text)["version"] == 2
    content = {k.doc_id: k for k in bk.decrypt_backup(text, PASSPHRASE).keys}
    assert content[rotated].key == k0
    assert content[rotated].epochs == {1: k1, 2: k2} and content[rotated].seen == 2
    assert content[joined].key is None and content[joined].epochs == {3: k3}

    with _session(browser, "keyrings-b") as b:
        b.goto(f"{lab.url}lab/workspaces/keyrings-b?token={TOKEN}")
        _wait_app(b)
        _my_identity(b)  # B has its own identity (kept below)
        _set(
            b,
            {
                f"secsync-jupyter:doc-key:{rotated}": b64encode(k0),
                f"secsync-jupyter:keyring:{rotated}": json.dumps(
                    {"keys": {"1": b64encode(other1)}}
                ),
            },
        )
        _execute(b, "secsync:restore-keys")
        dialog = b.locator(DIALOG)
        dialog.locator(".jp-secsync-BackupFile").set_input_files(str(saved))
        dialog.locator(".jp-secsync-BackupPassphrase").fill(PASSPHRASE)
        dialog.locator(".jp-mod-accept").click()
        # the identity differs: asked (Escape keeps B's); epoch keys are never asked for
        conflict = b.locator(f"{DIALOG} .jp-secsync-KeyConflict")
        conflict.wait_for(timeout=120_000)
        assert "identity" in conflict.inner_text()
        b.keyboard.press("Escape")
        warning = b.locator(TOAST, has_text="another key than this browser")
        warning.wait_for(timeout=120_000)
        assert f"epoch 1 of {rotated}" in warning.inner_text()
        assert "kept" in warning.inner_text()
        summary = b.locator(TOAST, has_text="epoch keys restored")
        summary.wait_for(timeout=30_000)
        assert "2 epoch keys restored (1 conflicting, kept)" in summary.inner_text()

        # epoch 1: B's key kept; epoch 2 added; seen 2; the joined document's epoch 3 added
        assert _keyring(b, rotated) == {
            "keys": {"1": b64encode(other1), "2": b64encode(k2)},
            "seen": 2,
        }
        assert _keyring(b, joined) == {"keys": {"3": b64encode(k3)}}
        assert (
            b.evaluate("(n) => localStorage.getItem(n)", f"secsync-jupyter:doc-key:{joined}")
            is None
        )
