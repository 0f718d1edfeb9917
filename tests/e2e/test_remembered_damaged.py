"""A damaged remembered state does not lock the user out, in real Chromium (issue 13, part 3).

A makes an encrypted notebook (with a membership log); this browser remembers what it verified
in localStorage (`secsync-jupyter:remembered:<docId>` and the verified log in
`secsync-jupyter:remembered-log:<docId>`). The log item is then damaged (not JSON) and the
page reloaded: the notebook still opens with its verified content, a warning notification
and the collaborators popup say that this browser's remembered state was damaged and checked
from scratch, the damaged value is kept under `…:damaged`, and a fresh state is written.

Run:  .venv/bin/pytest tests/e2e/test_remembered_damaged.py -x -q
"""

from __future__ import annotations

import json
import secrets

import pytest

from .helpers import (
    NB,
    TOKEN,
    _browser_session,
    _execute,
    _wait_app,
    _wait_cell_text,
    _wait_workspace_lists,
)

pytestmark = pytest.mark.browser

SYNCED = ".jp-secsync-StatusItem[data-state='synced']"
TOAST = ".Toastify__toast"
#: the notification (JupyterLab shows about 140 characters of it) and the popup's sentence
TOAST_WARNING = "record of this notebook was damaged"
WARNING = "This browser's remembered state of this notebook was damaged"
DAMAGED_LOG = "{this is not JSON"

DOC_ID = """async () => JSON.parse((await window.jupyterapp.serviceManager.contents.get(
  window.jupyterapp.shell.currentWidget.context.path,
  {type: 'file', format: 'text', content: true})).content).docId"""


def _session(browser, name: str):
    """A fresh browser context's page (``browser``: conftest's headless Chromium)."""
    return _browser_session(browser, "e2e-remembered-damaged", name)


def _item(page, key: str) -> str | None:
    return page.evaluate("(k) => localStorage.getItem(k)", key)


def test_damaged_remembered_state_is_kept_aside_and_the_notebook_opens(lab, browser):
    canary = f"DAMAGED-{secrets.token_hex(4)}"
    workspace = f"damaged-{secrets.token_hex(3)}"
    with _session(browser, "A") as a:
        a.goto(f"{lab.url}lab/workspaces/{workspace}?token={TOKEN}")
        _wait_app(a)
        _execute(a, "secsync:new-notebook")
        a.wait_for_selector(SYNCED, timeout=60_000)
        a.locator(f"{NB} .jp-Cell").nth(0).locator(".cm-content").click()
        a.keyboard.type(f"x = '{canary}'")
        a.wait_for_selector(SYNCED, timeout=30_000)
        doc_id = a.evaluate(DOC_ID)
        # the reloads below reopen the notebook from the saved workspace
        path = a.evaluate("() => window.jupyterapp.shell.currentWidget.context.path")
        _wait_workspace_lists(lab, workspace, [path])
        state_key = f"secsync-jupyter:remembered:{doc_id}"
        log_key = f"secsync-jupyter:remembered-log:{doc_id}"
        # the state and the verified log are remembered (saved about a second after changes)
        a.wait_for_function(
            "([s, l]) => localStorage.getItem(s) !== null && localStorage.getItem(l) !== null",
            arg=[state_key, log_key],
            timeout=30_000,
        )
        assert json.loads(_item(a, log_key))["log"][0]["kind"] == "create"
        # damaged (e.g. by a disk error or another program): before, opening failed for good
        a.evaluate("([k, v]) => localStorage.setItem(k, v)", [log_key, DAMAGED_LOG])

        a.reload()
        _wait_app(a)
        _wait_cell_text(a, 0, canary, timeout=60_000)  # the notebook opens, verified
        a.wait_for_selector(SYNCED, timeout=60_000)
        toast = a.locator(TOAST, has_text=TOAST_WARNING)
        toast.first.wait_for(timeout=30_000)
        assert "checked from scratch, rollback detection restarts now" in toast.first.inner_text()
        # kept aside, never destroyed; a fresh state (and log) written after the load
        assert _item(a, log_key + ":damaged") == DAMAGED_LOG
        a.wait_for_function(
            "(l) => { try { return JSON.parse(localStorage.getItem(l)).log.length > 0 }"
            " catch { return false } }",
            arg=log_key,
            timeout=30_000,
        )
        assert json.loads(_item(a, state_key))["logHead"]["seq"] == 0
        # the collaborators popup says it too (not counted as a relay alert)
        assert a.locator(".jp-secsync-StatusItem-alert").inner_text() == ""
        a.click(".jp-secsync-StatusItem")
        popup = a.locator(".jp-Dialog .jp-secsync-Collaborators-relayAlert", has_text=WARNING)
        popup.wait_for(timeout=20_000)
        assert "it was checked from scratch; rollback detection starts again from now" in (
            popup.inner_text()
        )
        a.keyboard.press("Escape")

        # the next reload uses the fresh state: nothing to report
        a.reload()
        _wait_app(a)
        _wait_cell_text(a, 0, canary, timeout=60_000)
        a.wait_for_selector(SYNCED, timeout=60_000)
        assert a.locator(TOAST, has_text=TOAST_WARNING).count() == 0
        assert _item(a, log_key + ":damaged:2") is None
