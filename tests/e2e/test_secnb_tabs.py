"""`.secnb` tabs and files in real Chromium (issue 15): the stock Duplicate paths that remain —
Accel+D in the file browser and File → Duplicate (`docmanager:duplicate`) — make a new
encrypted document with its own key, never a copy of the pointer file (labextension/src/
duplicate.ts); other files keep the stock Duplicate.

Run:  .venv/bin/python -m pytest -m browser tests/e2e/test_secnb_tabs.py -s
"""

from __future__ import annotations

import json
import secrets
import time

import pytest

from secsync_jupyter.sharelink import parse_share_link

from .helpers import CLOSE_ALL, NB, TOKEN, _execute, _wait_app, _wait_cell_text
from .test_ux import _new_notebook, _pointer_of, _session
from .test_ux import browser as browser

pytestmark = pytest.mark.browser


def _doc_ids(lab) -> dict[str, str]:
    return {p.name: json.loads(p.read_text())["docId"] for p in lab.root.glob("*.secnb")}


def _wait_new_secnb(lab, before: dict[str, str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(_doc_ids(lab)) - set(before)
        if new:
            (name,) = new
            return name
        time.sleep(0.1)
    raise AssertionError("no new .secnb file")


def test_accel_d_and_file_duplicate_make_new_documents(lab, browser):
    canary = f"DUP-{secrets.token_hex(4)}"
    (lab.root / "plain-dup.txt").write_text("hello\n")
    with _session(browser, "dup") as a:
        a.goto(f"{lab.url}lab/workspaces/dup?token={TOKEN}")
        _wait_app(a)
        link = _new_notebook(lab, a, canary)
        name = _pointer_of(lab, link)
        original = (lab.root / name).read_text()
        a.evaluate(CLOSE_ALL)
        a.locator(NB).wait_for(state="detached", timeout=20_000)

        # Accel+D on the .secnb in the file browser
        before = _doc_ids(lab)
        a.locator(".jp-DirListing-item", has_text=name).locator(".jp-DirListing-itemText").click()
        a.keyboard.press("Control+d")
        copy = _wait_new_secnb(lab, before)
        ids = _doc_ids(lab)
        assert ids[copy] != parse_share_link(link).doc_id
        assert len(set(ids.values())) == len(ids), ids  # no two files name one document
        a.get_by_text("is a new encrypted notebook with its own key").first.wait_for(timeout=30_000)
        _wait_cell_text(a, 0, canary, timeout=60_000)
        assert (lab.root / name).read_text() == original

        # File -> Duplicate (docmanager:duplicate) on the open copy
        before = _doc_ids(lab)
        _execute(a, "docmanager:duplicate")
        second = _wait_new_secnb(lab, before)
        ids = _doc_ids(lab)
        assert len(set(ids.values())) == len(ids) == 3, ids
        assert second not in (name, copy)
        _wait_cell_text(a, 0, canary, timeout=60_000)

        # other files: the stock Duplicate
        a.locator(".jp-DirListing-item", has_text="plain-dup.txt").locator(
            ".jp-DirListing-itemText"
        ).click()
        a.keyboard.press("Control+d")
        deadline = time.monotonic() + 30
        while not list(lab.root.glob("plain-dup-Copy*.txt")):
            assert time.monotonic() < deadline, sorted(p.name for p in lab.root.iterdir())
            time.sleep(0.1)
        assert len(_doc_ids(lab)) == 3
