"""What a newcomer hits with encrypted notebooks, in real Chromium (issue 15, labextension).

1. Tabs restored from the shared default workspace whose key this browser lacks do not
   block: the notebook panel is locked (a field for the share link, a close button), no modal.
2. The share-link prompt answers in words (no internal error codes), is open once at a time,
   and its field fits a link.
5. The file browser's context menu of a `.secnb` offers Copy Share Link and Download
   Decrypted (working on a closed notebook), and not the stock entries that hand out the
   pointer file.
8. One lock icon: file browser, tab, launcher card, status bar; the first save of a new
   encrypted notebook asks for a name, as for stock untitled files.
10. Download Decrypted says what it did.
4. "Duplicate" of a `.secnb` in the file browser makes a new document with its own key (the
   stock entry, which copies the pointer file, is not offered there); the user is told.
9. Encrypt a copy offers to delete the plaintext original (asked, with the reminder that
   server backups may keep it).
6. A collaborator who closes the tab leaves the others' presence at once (not after the
   30 s timeout of states that stop renewing).
7. A newcomer sees an executed cell as it is: "[1]", no "modified" mark nobody made.
11. `make run` keeps run-time state (relay database, stock collaboration store) out of the
    repository and out of ROOT_DIR.

Run:  .venv/bin/python -m pytest -m browser tests/e2e/test_ux.py -s
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import subprocess
import time

import pytest

from secsync_jupyter.sharelink import parse_share_link

from .helpers import (
    ARTIFACTS,
    NB,
    REPO,
    TOKEN,
    _add_member,
    _browser_session,
    _cell_editor,
    _execute,
    _free_port,
    _my_identity,
    _share_link,
    _share_with,
    _wait_app,
    _wait_cell_text,
    _wait_http,
    _wait_kernel_ready,
    _with_token,
    notebook_json,
)

pytestmark = pytest.mark.browser

ICON = "secsync-jupyter:encrypted-notebook"
SYNCED = ".jp-secsync-StatusItem[data-state='synced']"
CURRENT_TAB = "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current"


def _session(browser, name: str):
    return _browser_session(browser, "e2e-ux", name)


def _new_notebook(lab, page, text: str) -> str:
    """A new encrypted notebook with `text` in its first cell; returns its share link."""
    before = {p.name for p in lab.root.glob("*.secnb")}
    _execute(page, "secsync:new-notebook")
    deadline = time.monotonic() + 30
    while not (created := {p.name for p in lab.root.glob("*.secnb")} - before):
        assert time.monotonic() < deadline, "no new .secnb file"
        page.wait_for_timeout(100)
    (name,) = created
    page.locator(CURRENT_TAB, has_text=name).wait_for(timeout=30_000)
    page.wait_for_selector(SYNCED, timeout=30_000)
    _cell_editor(page, 0).click()
    page.keyboard.type(f"x = '{text}'")
    page.wait_for_selector(SYNCED, timeout=30_000)
    return _share_link(page)


def _put_notebook(lab, name: str, *sources: str) -> None:
    """A plaintext notebook `name` in the lab's root (Contents API), one code cell per source."""
    lab.api(
        "PUT",
        f"api/contents/{name}",
        {"type": "notebook", "format": "json", "content": notebook_json(*sources)},
    )


def _pointer_of(lab, link: str) -> str:
    doc_id = parse_share_link(link).doc_id
    (name,) = [
        p.name for p in lab.root.glob("*.secnb") if json.loads(p.read_text())["docId"] == doc_id
    ]
    return name


def _wait_workspace_has(lab, paths: list[str], timeout: float = 60.0) -> None:
    """Waits until the server's default workspace lists tabs for `paths`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = json.dumps(lab.api("GET", "lab/api/workspaces/default"))
        if all(json.dumps(p)[1:-1] in data for p in paths):
            return
        time.sleep(0.2)
    raise AssertionError(f"the default workspace never listed {paths}")


def _activate_tab(page, label: str) -> None:
    page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text=label).click()
    page.locator(CURRENT_TAB, has_text=label).wait_for(timeout=20_000)


LOCKED = "#jp-main-dock-panel .jp-NotebookPanel:not(.lm-mod-hidden) .jp-secsync-Locked"


# ----------------------------------------------------------------------------------------
# 1. restored tabs without a key
# ----------------------------------------------------------------------------------------


def test_restored_tab_without_key_is_locked_not_modal(lab, browser):
    canary = f"LOCKED-{secrets.token_hex(4)}"
    lab.reset_workspace()
    with _session(browser, "newcomer") as n:
        # (the newcomer's identity, copied in its own workspace, is made a member of the
        # first notebook by the owner)
        n.goto(f"{lab.url}lab/workspaces/newcomer?token={TOKEN}")
        _wait_app(n)
        identity = _my_identity(n)
        with _session(browser, "owner") as a:
            a.goto(f"{lab.url}lab?token={TOKEN}")  # the default workspace, as everyone's
            _wait_app(a)
            link = _new_notebook(lab, a, canary)
            first = _pointer_of(lab, link)
            _add_member(a, identity, "editor")
            second = _pointer_of(lab, _new_notebook(lab, a, "other"))
            _wait_workspace_has(lab, [first, second])

        # A newcomer opens /lab: both tabs are restored, neither has a key here.
        n.goto(f"{lab.url}lab?token={TOKEN}")
        _wait_app(n)
        n.locator(LOCKED).wait_for(timeout=60_000)
        assert n.locator(".jp-Dialog").count() == 0
        assert n.locator(".jp-secsync-StatusItem[data-state='locked']").count() == 1
        assert "needs its share link" in n.locator(LOCKED).inner_text()

        # Something that is not a link: told in words, still locked.
        _activate_tab(n, first)
        n.locator(f"{LOCKED} input").fill("hello")
        n.locator(f"{LOCKED} input").press("Enter")
        error = n.locator(f"{LOCKED} .jp-secsync-Locked-error")
        error.filter(has_text="This is not a share link").wait_for(timeout=20_000)
        assert "SECSYNC" not in error.inner_text()

        # The share link opens it in place.
        n.locator(f"{LOCKED} input").fill(link)
        n.locator(f"{LOCKED} input").press("Enter")
        _wait_cell_text(n, 0, canary, timeout=60_000)
        n.wait_for_selector(SYNCED, timeout=30_000)
        assert n.locator(LOCKED).count() == 0

        # The other one is simply closed.
        _activate_tab(n, second)
        n.locator(LOCKED).wait_for(timeout=20_000)
        n.locator(f"{LOCKED} .jp-secsync-Locked-close").click()
        n.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text=second).wait_for(
            state="detached", timeout=20_000
        )
        assert n.locator(".jp-Dialog").count() == 0
    lab.reset_workspace()


# ----------------------------------------------------------------------------------------
# 2. the share-link prompt
# ----------------------------------------------------------------------------------------


def test_share_link_prompt_speaks_plainly_once_and_fits_a_link(lab, browser):
    canary = f"PROMPT-{secrets.token_hex(4)}"
    with _session(browser, "prompted") as p:
        p.goto(f"{lab.url}lab/workspaces/p2?token={TOKEN}")
        _wait_app(p)
        with _session(browser, "sharer") as a:
            a.goto(f"{lab.url}lab/workspaces/s?token={TOKEN}")
            _wait_app(a)
            link = _new_notebook(lab, a, canary)
            _share_with(lab, a, p)
        _execute(p, "secsync:open-share-link")
        field = p.locator(".jp-Dialog .jp-secsync-LinkInput")
        field.wait_for(timeout=20_000)
        # one prompt at a time
        _execute(p, "secsync:open-share-link")
        p.wait_for_timeout(0)  # (lets the second command run)
        assert p.locator(".jp-Dialog").count() == 1
        # a field as wide as a link
        width = field.evaluate("(e) => e.getBoundingClientRect().width")
        assert width >= 560, width
        field.fill("hello")
        field.press("Enter")
        message = p.locator(".jp-Dialog .jp-secsync-LinkPrompt-error")
        message.wait_for(timeout=20_000)
        assert message.inner_text().startswith("This is not a share link"), message.inner_text()
        assert "SECSYNC" not in message.inner_text()
        assert p.locator(".jp-Dialog .jp-secsync-LinkInput").input_value() == "hello"
        truncated = link[: link.index("#key=") + 10]
        p.locator(".jp-Dialog .jp-secsync-LinkInput").fill(truncated)
        p.locator(".jp-Dialog .jp-secsync-LinkInput").press("Enter")
        p.locator(
            ".jp-Dialog .jp-secsync-LinkPrompt-error", has_text="damaged or cut off"
        ).wait_for(timeout=20_000)
        p.locator(".jp-Dialog .jp-secsync-LinkInput").fill(link)
        p.locator(".jp-Dialog .jp-secsync-LinkInput").press("Enter")
        _wait_cell_text(p, 0, canary, timeout=60_000)


# ----------------------------------------------------------------------------------------
# 5. the .secnb context menu; 10. download feedback
# ----------------------------------------------------------------------------------------


def _menu_labels(page) -> list[str]:
    page.locator(".lm-Menu").first.wait_for(timeout=20_000)
    return [
        label.strip()
        for label in page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel").all_inner_texts()
    ]


def test_secnb_context_menu_offers_our_entries_not_the_pointer_file(lab, browser):
    canary = f"MENU-{secrets.token_hex(4)}"
    _put_notebook(lab, "menu-plain.ipynb", "x = 1")
    with _session(browser, "menu") as a:
        a.goto(f"{lab.url}lab/workspaces/m?token={TOKEN}")
        _wait_app(a)
        link = _new_notebook(lab, a, canary)
        name = _pointer_of(lab, link)
        a.evaluate(
            "async () => { await window.jupyterapp.commands.execute('application:close-all'); }"
        )
        a.locator(f"{NB}").wait_for(state="detached", timeout=20_000)
        item = a.locator(".jp-DirListing-item", has_text=name)

        item.click(button="right")
        labels = _menu_labels(a)
        assert "Copy Share Link of Encrypted Notebook" in labels, labels
        assert "Download Decrypted .ipynb" in labels, labels
        for stock in ("Download", "Copy Download Link", "Copy Shareable Link"):
            assert stock not in labels, labels

        # Download Decrypted works on the closed notebook (opens and decrypts it first).
        with a.expect_download(timeout=60_000) as download:
            a.locator(".lm-Menu-item:visible", has_text="Download Decrypted .ipynb").click()
        assert download.value.suggested_filename == pathlib.Path(name).stem + ".ipynb"
        content = json.loads(pathlib.Path(download.value.path()).read_text())
        assert canary in "".join(content["cells"][0]["source"])

        # Copy Share Link from the menu: the notebook has members, so its Share dialog
        # (invitation links) opens; no #key= link is handed out (test_share_entry.py).
        item.click(button="right")
        a.locator(".lm-Menu-item:visible", has_text="Copy Share Link of Encrypted Notebook").click()
        a.locator(".jp-Dialog .jp-secsync-Share").wait_for(timeout=60_000)
        assert name in a.locator(".jp-Dialog .jp-Dialog-header").inner_text()
        assert a.locator(".jp-Dialog input.jp-secsync-ShareLink").count() == 0
        a.keyboard.press("Escape")

        # A plain notebook keeps the stock entries.
        a.locator(".jp-DirListing-item", has_text="menu-plain.ipynb").click(button="right")
        labels = _menu_labels(a)
        assert "Download" in labels and "Copy Shareable Link" in labels, labels
        assert "Download Decrypted .ipynb" not in labels, labels
        a.keyboard.press("Escape")


def test_download_decrypted_says_what_it_did(lab, browser):
    canary = f"DOWNLOAD-{secrets.token_hex(4)}"
    with _session(browser, "download") as a:
        a.goto(f"{lab.url}lab/workspaces/d?token={TOKEN}")
        _wait_app(a)
        name = _pointer_of(lab, _new_notebook(lab, a, canary))
        with a.expect_download(timeout=60_000) as download:
            _execute(a, "secsync:download-decrypted")
        filename = pathlib.Path(name).stem + ".ipynb"
        assert download.value.suggested_filename == filename
        a.get_by_text(f"Downloaded {filename}, decrypted in this browser").first.wait_for(
            timeout=20_000
        )


# ----------------------------------------------------------------------------------------
# 8. one lock icon; a name on first save
# ----------------------------------------------------------------------------------------


def test_one_lock_icon_and_a_name_on_first_save(lab, browser):
    with _session(browser, "icons") as a:
        a.goto(f"{lab.url}lab/workspaces/i?token={TOKEN}")
        _wait_app(a)
        _execute(a, "launcher:create")
        # (JupyterLab may have opened a launcher of its own: the visible one)
        card = a.locator(".jp-LauncherCard:visible", has_text="Encrypted Notebook").first
        card.wait_for(timeout=20_000)
        src = card.locator("img.jp-Launcher-kernelIcon").get_attribute("src")
        assert src.startswith("data:image/svg+xml,"), src
        before = {p.name for p in lab.root.glob("*.secnb")}
        card.click()
        a.wait_for_selector(SYNCED, timeout=30_000)
        (name,) = {p.name for p in lab.root.glob("*.secnb")} - before
        assert a.locator(f'{CURRENT_TAB} [data-icon="{ICON}"]').count() == 1
        # (the file browser lists the new file once its listing refreshes)
        listed = a.locator(".jp-DirListing-item", has_text=name)
        listed.wait_for(timeout=30_000)
        assert listed.locator(f'[data-icon="{ICON}"]').count() == 1
        assert a.locator(f'.jp-secsync-StatusItem [data-icon="{ICON}"]').count() == 1
        # a plain notebook's tab keeps the notebook icon
        _put_notebook(lab, "icon-plain.ipynb", "x = 1")
        _execute(a, "docmanager:open", {"path": "icon-plain.ipynb"})
        a.locator(CURRENT_TAB, has_text="icon-plain.ipynb").wait_for(timeout=30_000)
        assert a.locator(f'{CURRENT_TAB} [data-icon="{ICON}"]').count() == 0
        assert a.locator(f'#jp-main-dock-panel .lm-TabBar-tab [data-icon="{ICON}"]').count() == 1
        _activate_tab(a, name)

        # First Ctrl+S: a name is asked for, as for a stock untitled notebook.
        _cell_editor(a, 0).click()
        a.keyboard.type("x = 1")
        a.keyboard.press("Control+s")
        a.locator(".jp-Dialog-header", has_text="Rename file").wait_for(timeout=20_000)
        field = a.locator(".jp-Dialog input[type='text']").first
        field.fill("My secret notes.secnb")
        field.press("Enter")
        a.locator(CURRENT_TAB, has_text="My secret notes.secnb").wait_for(timeout=20_000)
        a.wait_for_selector(SYNCED, timeout=30_000)
        assert (lab.root / "My secret notes.secnb").exists()
        assert not (lab.root / name).exists()
        # the second save just saves (no name asked; the file keeps its name)
        # (the save command finishes without a dialog; bounded by 60 s)
        a.evaluate(
            """() => Promise.race([
              window.jupyterapp.commands.execute('docmanager:save'),
              new Promise((_, reject) =>
                setTimeout(() => reject(new Error('the save did not finish')), 60000)),
            ])"""
        )
        assert a.locator(".jp-Dialog-header", has_text="Rename file").count() == 0
        assert (lab.root / "My secret notes.secnb").exists()


# ----------------------------------------------------------------------------------------
# 11. make run keeps run-time state out of the repository and ROOT_DIR
# ----------------------------------------------------------------------------------------

RUN_STATE = (".jupyter_ystore.db", "jupyter_ystore.db", ".secsync", "relay.sqlite", ".jupyter")


def _stat_or_none(path: pathlib.Path):
    return path.stat().st_mtime_ns if path.exists() else None


def test_make_run_keeps_state_out_of_repository_and_root(tmp_path, browser):
    root, state, home = tmp_path / "root", tmp_path / "state", tmp_path / "home"
    for d in (root, home / "settings" / "@jupyterlab" / "apputils-extension", home / "ws"):
        d.mkdir(parents=True)
    (home / "settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    canary = f"PLAIN-{secrets.token_hex(4)}"
    (root / "plain.ipynb").write_text(json.dumps(notebook_json(f"x = '{canary}'")))
    in_repo = {name: _stat_or_none(REPO / name) for name in RUN_STATE}
    port = _free_port()
    env = dict(os.environ)
    env.update(
        XDG_STATE_HOME=str(state),
        JUPYTER_TOKEN=TOKEN,
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"),
        IPYTHONDIR=str(home / "ipython"),
    )
    log = ARTIFACTS / "e2e-ux-make-run.log"
    ARTIFACTS.mkdir(exist_ok=True)
    # the built extension and the venv are taken as they are (-o: no rebuild here)
    cmd = ["make", "-C", str(REPO), "-o", "setup", "-o", "labextension", "run"]
    cmd += [f"PORT={port}", f"ROOT_DIR={root}", "LAB_ARGS=--LabApp.expose_app_in_browser=True"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_http(f"{url}api/status?token={TOKEN}", 120, proc, log)
        with _session(browser, "make-run") as a:
            a.goto(f"{url}lab?token={TOKEN}")
            _wait_app(a)
            # a stock collaborative .ipynb (the jupyter-collaboration store) ...
            _execute(a, "docmanager:open", {"path": "plain.ipynb"})
            _wait_cell_text(a, 0, canary, timeout=60_000)
            # ... and an encrypted notebook (the relay database)
            _execute(a, "secsync:new-notebook")
            a.wait_for_selector(SYNCED, timeout=60_000)
            _cell_editor(a, 0).click()
            a.keyboard.type("y = 1")
            a.wait_for_selector(SYNCED, timeout=30_000)
            store = state / "secsync-jupyter" / "jupyter_ystore.db"
            deadline = time.monotonic() + 60
            while not (store.exists() and canary.encode() in store.read_bytes()):
                assert time.monotonic() < deadline, "the collaboration store was not written"
                a.wait_for_timeout(200)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    assert (state / "secsync-jupyter" / "relay.sqlite").exists()
    assert (state / "secsync-jupyter" / "collaboration_sessions.json").exists()
    # nothing but the user's notebooks (and the stock checkpoints beside them) in ROOT_DIR,
    # nothing new in the repository
    names = {p.name for p in root.iterdir()} - {".ipynb_checkpoints"}
    assert sorted(pathlib.Path(n).suffix for n in names) == [".ipynb", ".secnb"], names
    assert {name: _stat_or_none(REPO / name) for name in RUN_STATE} == in_repo


# ----------------------------------------------------------------------------------------
# 7. an executed cell is not "modified" for a newcomer
# ----------------------------------------------------------------------------------------

PROMPTS = """(s) => [...document.querySelectorAll(s + ' .jp-Cell')].map((c) => [
  c.querySelector('.jp-InputPrompt').textContent.trim(), c.classList.contains('jp-mod-dirty')])"""


def test_newcomer_sees_executed_cell_unmodified(lab, browser):
    canary = f"RUN-{secrets.token_hex(4)}"
    with _session(browser, "runner") as a:
        a.goto(f"{lab.url}lab/workspaces/run?token={TOKEN}")
        _wait_app(a)
        link = _new_notebook(lab, a, canary)
        _wait_kernel_ready(a)
        _cell_editor(a, 0).click()
        a.keyboard.press("Escape")
        a.keyboard.press("Control+Enter")
        a.wait_for_function(
            f"(s) => JSON.stringify(({PROMPTS})(s)) === '[[\"[1]:\",false]]'",
            arg=NB,
            timeout=120_000,
        )
        a.wait_for_selector(SYNCED, timeout=30_000)

        with _session(browser, "newcomer-run") as b:
            _share_with(lab, a, b)
            b.goto(_with_token(link))
            _wait_app(b)
            _wait_cell_text(b, 0, canary, timeout=60_000)
            b.wait_for_selector(SYNCED, timeout=30_000)
            b.wait_for_function(f"(s) => ({PROMPTS})(s)[0][0] === '[1]:'", arg=NB, timeout=30_000)
            assert b.evaluate(PROMPTS, NB) == [["[1]:", False]]
            # A runs it again while B watches: [2], still not modified
            a.keyboard.press("Control+Enter")
            b.wait_for_function(f"(s) => ({PROMPTS})(s)[0][0] === '[2]:'", arg=NB, timeout=60_000)
            b.wait_for_selector(SYNCED, timeout=30_000)
            assert b.evaluate(PROMPTS, NB) == [["[2]:", False]]


# ----------------------------------------------------------------------------------------
# 6. presence drops when a collaborator's tab closes
# ----------------------------------------------------------------------------------------

COUNT = ".jp-secsync-StatusItem-count[data-collaborators='{}']"


def test_presence_drops_when_a_tab_closes(lab, browser):
    with _session(browser, "stayer") as a:
        a.goto(f"{lab.url}lab/workspaces/stay?token={TOKEN}")
        _wait_app(a)
        link = _new_notebook(lab, a, f"STAY-{secrets.token_hex(4)}")
        with _session(browser, "leaver") as b:
            _share_with(lab, a, b)
            b.goto(_with_token(link))
            _wait_app(b)
            b.wait_for_selector(SYNCED, timeout=60_000)
            a.wait_for_selector(COUNT.format(1), timeout=30_000)
            # the tab is closed as a user closes it (page hide / unload run)
            b.close(run_before_unload=True)
        # well before the 30 s after which a state that stopped renewing times out
        a.wait_for_selector(COUNT.format(0), timeout=10_000)


# ----------------------------------------------------------------------------------------
# 4. Duplicate makes a real copy
# ----------------------------------------------------------------------------------------


def test_duplicate_makes_a_new_document_with_its_own_key(lab, browser):
    canary = f"DUP-{secrets.token_hex(4)}"
    with _session(browser, "dup") as a:
        a.goto(f"{lab.url}lab/workspaces/dup?token={TOKEN}")
        _wait_app(a)
        link = _new_notebook(lab, a, canary)
        name = _pointer_of(lab, link)
        a.evaluate(
            "async () => { await window.jupyterapp.commands.execute('application:close-all'); }"
        )
        a.locator(NB).wait_for(state="detached", timeout=20_000)
        before = {p.name for p in lab.root.glob("*.secnb")}
        a.locator(".jp-DirListing-item", has_text=name).click(button="right")
        labels = _menu_labels(a)
        assert "Duplicate" not in labels, labels
        a.locator(".lm-Menu-item:visible", has_text="Duplicate as a New Encrypted Notebook").click()
        a.get_by_text("is a new encrypted notebook with its own key").first.wait_for(timeout=60_000)
        (copy,) = {p.name for p in lab.root.glob("*.secnb")} - before
        a.locator(CURRENT_TAB, has_text=copy).wait_for(timeout=30_000)
        _wait_cell_text(a, 0, canary, timeout=60_000)
        a.wait_for_selector(SYNCED, timeout=30_000)
        copy_link = _share_link(a)
        original, duplicate = parse_share_link(link), parse_share_link(copy_link)
        assert duplicate.doc_id != original.doc_id
        assert duplicate.key != original.key
        assert json.loads((lab.root / copy).read_text())["docId"] == duplicate.doc_id
        # an edit of the copy stays in the copy
        _cell_editor(a, 0).click()
        a.keyboard.press("Control+End")
        a.keyboard.type(" # only in the copy")
        a.wait_for_selector(SYNCED, timeout=30_000)
        _execute(a, "docmanager:open", {"path": name, "factory": "Encrypted Notebook"})
        a.locator(CURRENT_TAB, has_text=name).wait_for(timeout=30_000)
        _wait_cell_text(a, 0, canary, timeout=60_000)
        assert "only in the copy" not in _cell_editor(a, 0).inner_text()


# ----------------------------------------------------------------------------------------
# 9. Encrypt a copy offers to delete the plaintext original
# ----------------------------------------------------------------------------------------


def test_encrypt_a_copy_offers_to_delete_the_original(lab, browser):
    canary = f"ORIG-{secrets.token_hex(4)}"
    original = lab.root / "to-encrypt.ipynb"
    _put_notebook(lab, "to-encrypt.ipynb", f"x = '{canary}'")
    with _session(browser, "encrypt-delete") as a:
        a.goto(f"{lab.url}lab/workspaces/enc?token={TOKEN}")
        _wait_app(a)
        _execute(a, "docmanager:open", {"path": "to-encrypt.ipynb"})
        _wait_cell_text(a, 0, canary, timeout=60_000)
        _execute(a, "secsync:encrypt-copy")
        a.locator(CURRENT_TAB, has_text="to-encrypt.secnb").wait_for(timeout=60_000)
        _wait_cell_text(a, 0, canary, timeout=60_000)
        a.wait_for_selector(SYNCED, timeout=30_000)
        assert original.exists()
        a.get_by_role("button", name="Delete the Original…").first.click()
        dialog = a.locator(".jp-Dialog")
        dialog.wait_for(timeout=20_000)
        assert "backups" in dialog.inner_text()
        dialog.get_by_role("button", name="Delete").click()
        a.get_by_text("Deleted to-encrypt.ipynb").first.wait_for(timeout=30_000)
        assert not original.exists()
        assert (lab.root / "to-encrypt.secnb").exists()
        assert (
            a.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="to-encrypt.ipynb").count()
            == 0
        )
