"""Key backup in real Chromium (issue 15 item 3, labextension/src/backup.ts, docs/backup.md).

Browser profile A creates two encrypted notebooks: it is warned at creation and in the status
popup that the keys exist only in this browser; it backs up its keys (passphrase asked twice)
and the warning goes. A fresh profile B opens one of the notebooks without a key (locked),
tries the backup with a wrong passphrase and a file that is not a backup (told in words,
nothing stored), then restores it: the locked notebook opens in place — no share link —, B
has A's signing identity, and B's different key for the other notebook is kept (asked, with
both fingerprints; Escape keeps it). The Python CLI reads the file the browser wrote.

Run:  .venv/bin/python -m pytest -m browser tests/e2e/test_backup.py -s
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import subprocess
import sys

import pytest

from secsync_jupyter.client import backup as bk
from secsync_jupyter.protocol import b64decode
from secsync_jupyter.sharelink import parse_share_link

from .helpers import TOKEN, _execute, _wait_app, _wait_cell_text
from .test_ux import (
    LOCKED,
    SYNCED,
    _new_notebook,
    _pointer_of,
    _session,
)

pytestmark = pytest.mark.browser

PASSPHRASE = "a long backup passphrase " + secrets.token_hex(3)
DIALOG = ".jp-Dialog"
WARNING = "exists only in this browser"


def _storage(page, name: str):
    return page.evaluate("(n) => window.localStorage.getItem(n)", name)


def _status_popup_text(page) -> str:
    _execute(page, "secsync:show-collaborators")
    body = page.locator(f"{DIALOG} .jp-secsync-Collaborators")
    body.wait_for(timeout=20_000)
    text = body.inner_text()
    page.keyboard.press("Escape")
    body.wait_for(state="detached", timeout=20_000)
    return text


def _fill_restore(page, path: pathlib.Path | None, passphrase: str) -> None:
    dialog = page.locator(DIALOG)
    dialog.locator(".jp-secsync-BackupFile").wait_for(timeout=20_000)
    if path is not None:
        dialog.locator(".jp-secsync-BackupFile").set_input_files(str(path))
    dialog.locator(".jp-secsync-BackupPassphrase").fill(passphrase)
    dialog.locator(".jp-mod-accept").click()


def test_backup_in_one_profile_restore_in_another(lab, browser, tmp_path):
    canary = f"BACKUP-{secrets.token_hex(4)}"
    with _session(browser, "backup-a") as a:
        a.goto(f"{lab.url}lab/workspaces/backup-a?token={TOKEN}")
        _wait_app(a)
        link = _new_notebook(lab, a, canary)
        # warned at creation
        a.locator(".Toastify__toast", has_text=WARNING).first.wait_for(timeout=20_000)
        other_link = _new_notebook(lab, a, "second")
        doc_id, key = parse_share_link(link).doc_id, parse_share_link(link).key
        other_id = parse_share_link(other_link).doc_id
        assert "only in this browser" in _status_popup_text(a)

        _execute(a, "secsync:backup-keys")
        dialog = a.locator(DIALOG)
        dialog.locator(".jp-secsync-BackupPassphrase").fill(PASSPHRASE)
        dialog.locator(".jp-secsync-BackupPassphrase2").fill(PASSPHRASE + "x")
        dialog.locator(".jp-mod-accept").click()
        a.locator(f"{DIALOG} .jp-secsync-Backup-error", has_text="differ").wait_for(timeout=20_000)
        dialog.locator(".jp-secsync-BackupPassphrase").fill(PASSPHRASE)
        dialog.locator(".jp-secsync-BackupPassphrase2").fill(PASSPHRASE)
        with a.expect_download(timeout=120_000) as download:
            dialog.locator(".jp-mod-accept").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name.startswith("secsync-jupyter-keys-") and saved.suffix == ".json"
        a.locator(".Toastify__toast", has_text="Saved secsync-jupyter-keys-").wait_for(
            timeout=20_000
        )
        # backed up: no warning any more
        assert "only in this browser" not in _status_popup_text(a)
        a_identity = json.loads(_storage(a, "secsync-jupyter:signing-key-pair"))

    text = saved.read_text()
    outer = json.loads(text)
    assert outer["format"] == "secsync-jupyter-key-backup" and outer["kdf"]["opslimit"] == 3
    assert link.split("#key=")[1] not in text  # the key is not in the file in clear
    # the Python reader opens the browser's file
    content = bk.decrypt_backup(text, PASSPHRASE)
    assert content.created_by == "browser"
    stored = {k.doc_id: k.key for k in content.keys}
    assert stored[doc_id] == key and other_id in stored
    assert content.identity.public_key == b64decode(a_identity["publicKey"])
    env = dict(os.environ, SECSYNC_BACKUP_PASSPHRASE=PASSPHRASE)
    shown = subprocess.run(
        [sys.executable, "-m", "secsync_jupyter", "backup", "show", str(saved)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert doc_id in shown.stdout and bk.key_fingerprint(key) in shown.stdout

    name = _pointer_of(lab, link)
    with _session(browser, "backup-b") as b:
        b.goto(f"{lab.url}lab/workspaces/backup-b?token={TOKEN}")
        _wait_app(b)
        # B's own, different key for the second notebook (must survive the import)
        b_other_key = "A" * 43  # 32 zero bytes
        b.evaluate(
            "([n, v]) => window.localStorage.setItem(n, v)",
            [f"secsync-jupyter:doc-key:{other_id}", b_other_key],
        )
        _execute(b, "docmanager:open", {"path": name, "factory": "Encrypted Notebook"})
        b.locator(LOCKED).wait_for(timeout=60_000)

        _execute(b, "secsync:restore-keys")
        _fill_restore(b, saved, "not the passphrase")
        error = b.locator(f"{DIALOG} .jp-secsync-Backup-error")
        error.filter(has_text="Wrong passphrase").wait_for(timeout=120_000)
        assert "Nothing was imported" in error.inner_text()
        assert _storage(b, f"secsync-jupyter:doc-key:{doc_id}") is None
        # another file: told in words
        not_backup = tmp_path / "notes.json"
        not_backup.write_text('{"cells": []}')
        _fill_restore(b, not_backup, PASSPHRASE)
        error.filter(has_text="not a secsync-jupyter key backup").wait_for(timeout=20_000)
        assert _storage(b, f"secsync-jupyter:doc-key:{doc_id}") is None
        assert b.locator(LOCKED).count() == 1

        _fill_restore(b, saved, PASSPHRASE)
        # the different key stored here for the other notebook: asked, kept on Escape
        conflict = b.locator(f"{DIALOG} .jp-secsync-KeyConflict")
        conflict.wait_for(timeout=120_000)
        assert other_id in conflict.inner_text()
        assert bk.key_fingerprint(stored[other_id]) in conflict.inner_text()
        b.keyboard.press("Escape")
        b.locator(".Toastify__toast", has_text="Restored 1 key").wait_for(timeout=30_000)
        toast = b.locator(".Toastify__toast", has_text="Restored 1 key").inner_text()
        assert "1 kept" in toast and "identity restored" in toast, toast

        # the locked notebook opens in place, no link
        _wait_cell_text(b, 0, canary, timeout=60_000)
        b.wait_for_selector(SYNCED, timeout=30_000)
        assert b.locator(LOCKED).count() == 0
        assert _storage(b, f"secsync-jupyter:doc-key:{other_id}") == b_other_key
        b_identity = json.loads(_storage(b, "secsync-jupyter:signing-key-pair"))
        assert b_identity == a_identity
        # a restored key is not "only in this browser"
        assert "only in this browser" not in _status_popup_text(b)
        # and B keeps it after a reload (the tab restored by the workspace)
        b.reload()
        _wait_app(b)
        _wait_cell_text(b, 0, canary, timeout=60_000)
