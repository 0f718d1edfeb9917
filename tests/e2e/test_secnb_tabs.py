"""`.secnb` tabs and files in real Chromium (issue 15, labextension/src/stockcommands.ts):

* the stock Duplicate paths that remain — Accel+D in the file browser and File → Duplicate
  (`docmanager:duplicate`) — make a new encrypted document with its own key, never a copy of
  the pointer file; other files keep the stock Duplicate;
* `.secnb` tabs restored after a reload (opened before with the stock notebook factory, in
  the background, or from /lab/tree/…) open decrypted in our panel, never read from the
  server as a notebook ("Unreadable Notebook").

Run:  .venv/bin/python -m pytest -m browser tests/e2e/test_secnb_tabs.py -s
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from secsync_jupyter.sharelink import parse_share_link

from .helpers import (
    CLOSE_ALL,
    NB,
    TOKEN,
    _execute,
    _wait_app,
    _wait_cell_text,
    _wait_workspace_lists,
)
from .test_ux import CURRENT_TAB, SYNCED, _new_notebook, _pointer_of, _session

pytestmark = pytest.mark.browser


def _doc_ids(lab) -> dict[str, str]:
    """docId of every .secnb in the root (a file still being written counts as "")."""
    ids = {}
    for p in lab.root.glob("*.secnb"):
        try:
            ids[p.name] = json.loads(p.read_text())["docId"]
        except ValueError:
            ids[p.name] = ""
    return ids


def _wait_new_secnb(lab, before: dict[str, str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = _doc_ids(lab)
        new = set(ids) - set(before)
        if new and all(ids[n] for n in new):
            (name,) = new
            return name
        time.sleep(0.1)
    raise AssertionError("no new .secnb file")


def _select_only(page, name: str, timeout: float = 30.0) -> None:
    """Clicks `name` in the file browser until it is the only selected item (Accel+D acts on
    the selection; a click while the listing is being redrawn can miss)."""
    selected = """(name) => {
      const s = document.querySelectorAll('.jp-DirListing-item.jp-mod-selected');
      return s.length === 1
        && s[0].querySelector('.jp-DirListing-itemText').textContent.trim() === name
        && s[0].contains(document.activeElement);
    }"""
    deadline = time.monotonic() + timeout
    while True:
        item = page.locator(".jp-DirListing-item", has_text=name)
        item.locator(".jp-DirListing-itemText").click()
        try:
            page.wait_for_function(selected, arg=name, timeout=2_000)
            return
        except PlaywrightTimeout:
            assert time.monotonic() < deadline, f"{name} never became the only selected file"


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
        _select_only(a, name)
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
        # the duplicate is open, current and loaded (nothing of the command still to come)
        a.locator(CURRENT_TAB, has_text=second).wait_for(timeout=60_000)
        a.wait_for_selector(SYNCED, timeout=60_000)
        _wait_cell_text(a, 0, canary, timeout=60_000)

        # other files: the stock Duplicate
        _select_only(a, "plain-dup.txt")
        a.keyboard.press("Control+d")
        deadline = time.monotonic() + 30
        while not list(lab.root.glob("plain-dup-Copy*.txt")):
            assert time.monotonic() < deadline, sorted(p.name for p in lab.root.iterdir())
            time.sleep(0.1)
        assert len(_doc_ids(lab)) == 3


def _notebook_reads(page) -> list[str]:
    """Collects the requests that would read a .secnb from the server as a notebook (the
    server answers those "Unreadable Notebook": the file is a pointer)."""
    reads: list[str] = []

    def on_request(request) -> None:
        url = request.url
        if ".secnb" in url and "type=notebook" in url and "content=1" in url:
            reads.append(url)

    page.on("request", on_request)
    return reads


def test_restored_secnb_tabs_open_encrypted(lab, browser):
    """A .secnb tab restored after a reload — opened before with the stock notebook factory
    name, in the background behind a plain notebook, or from /lab/tree/… — opens decrypted in
    our panel: no dialog, never read from the server as a notebook."""
    canary = f"RESTORE-{secrets.token_hex(4)}"
    lab.api(
        "PUT",
        "api/contents/restore-plain.ipynb",
        {"type": "notebook", "format": "json", "content": _plain_notebook()},
    )
    with _session(browser, "restore") as a:
        reads = _notebook_reads(a)
        a.goto(f"{lab.url}lab/workspaces/restore?token={TOKEN}")
        _wait_app(a)
        name = _pointer_of(lab, _new_notebook(lab, a, canary))
        a.evaluate(CLOSE_ALL)
        a.locator(NB).wait_for(state="detached", timeout=20_000)
        # opened once with the stock notebook factory, then a plain notebook in front of it
        _execute(a, "docmanager:open", {"path": name, "factory": "Notebook"})
        _wait_cell_text(a, 0, canary, timeout=60_000)
        a.wait_for_selector(SYNCED, timeout=30_000)
        _execute(a, "docmanager:open", {"path": "restore-plain.ipynb"})
        a.locator(CURRENT_TAB, has_text="restore-plain.ipynb").wait_for(timeout=30_000)
        _wait_workspace_lists(lab, "restore", [name, "restore-plain.ipynb"])

        for _ in range(2):
            a.reload()
            _wait_app(a)
            a.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text=name).click()
            a.locator(CURRENT_TAB, has_text=name).wait_for(timeout=30_000)
            _wait_cell_text(a, 0, canary, timeout=60_000)
            a.wait_for_selector(SYNCED, timeout=30_000)
            assert a.locator(".jp-Dialog").count() == 0

        a.goto(f"{lab.url}lab/workspaces/restore/tree/{urllib.parse.quote(name)}?token={TOKEN}")
        _wait_app(a)
        a.locator(CURRENT_TAB, has_text=name).wait_for(timeout=30_000)
        _wait_cell_text(a, 0, canary, timeout=60_000)
        assert a.locator(".jp-Dialog").count() == 0
        assert reads == [], reads


def _plain_notebook() -> dict:
    from .helpers import notebook_json

    return notebook_json("x = 1")
