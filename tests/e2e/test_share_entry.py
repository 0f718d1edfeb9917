"""Sharing from every entry point, and links that do not parse (issue 12 leftovers), in Chromium.

1. A notebook with a membership log: "Copy Share Link" copies no `#key=` link (it would let
   nobody in, and hands out the epoch-0 key a member who joined after a rotation does not
   even hold): from the Encryption menu, the file browser's context menu, the notebook
   toolbar's Share and the status popup's Share… it opens the Share dialog (invitation
   links). The dialog's Copy button puts the invitation link on the system clipboard (the
   browser context is granted clipboard-read / clipboard-write; the clipboard is read back).
2. A notebook without a log keeps its `#key=` link: Copy Share Link, the toolbar's Share and
   the status popup's Share… all show that link and copy it to the clipboard.
3. A damaged link in the address bar (`/secsync/open/<docId>#link=garbage`, a cut `#key=`)
   is explained in a dialog, in words (no error code), and no .secnb file is created.

Run:  .venv/bin/pytest tests/e2e/test_share_entry.py -x -q
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import urllib.parse

import pytest

from .helpers import (
    ARTIFACTS,
    NB,
    TOKEN,
    _cell_editor,
    _execute,
    _wait_app,
    _wait_cell_text,
    _with_token,
)

pytestmark = pytest.mark.browser

SYNCED = ".jp-secsync-StatusItem[data-state='synced']"
SHARE = ".jp-Dialog .jp-secsync-Share"
KEY_LINK = ".jp-Dialog input.jp-secsync-ShareLink"


@contextlib.contextmanager
def _session(browser, name: str):
    """A browser context that may use the system clipboard (read back by the test)."""
    logs: list[str] = []
    ctx = browser.new_context(
        viewport={"width": 1100, "height": 700},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = ctx.new_page()
    page.on("console", lambda m: logs.append(f"[{name}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: logs.append(f"[{name}] pageerror: {e}"))
    try:
        yield page
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=ARTIFACTS / f"e2e-share-entry-{name}-failure.png")
        raise
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"e2e-share-entry-{name}-console.log").write_text("\n".join(logs))
        ctx.close()


def _start(lab, page, workspace: str) -> None:
    page.goto(f"{lab.url}lab/workspaces/{workspace}?token={TOKEN}")
    _wait_app(page)


def _clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


def _set_clipboard(page, text: str) -> None:
    page.evaluate("(t) => navigator.clipboard.writeText(t)", text)
    assert _clipboard(page) == text


def _close_dialog(page) -> None:
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    page.locator(".jp-Dialog").wait_for(state="detached", timeout=20_000)


def _secnb_files(lab) -> set[str]:
    return {p.name for p in lab.root.rglob("*.secnb")}


def _share_dialog_opened(page, name: str) -> None:
    """The Share dialog of `name` is open; no key link is shown; nothing was copied."""
    page.locator(SHARE).wait_for(timeout=30_000)
    title = page.locator(".jp-Dialog .jp-Dialog-header").inner_text()
    assert name in title, title
    assert page.locator(KEY_LINK).count() == 0
    assert page.locator(f"{SHARE} .jp-secsync-Share-createButton").count() == 1
    assert _clipboard(page) == "untouched"


def _status_popup_share(page) -> None:
    page.click(".jp-secsync-StatusItem")
    button = page.locator(".jp-Dialog .jp-secsync-Collaborators-share")
    button.wait_for(timeout=20_000)
    button.click()


def test_notebook_with_members_shares_through_the_share_dialog(lab, browser):
    canary = f"ENTRY-{secrets.token_hex(4)}"
    with _session(browser, "owner") as a:
        _start(lab, a, "share-entry")
        before = _secnb_files(lab)
        _execute(a, "secsync:new-notebook")
        a.wait_for_selector(SYNCED, timeout=60_000)
        _cell_editor(a, 0).click()
        a.keyboard.type(f"x = '{canary}'")
        a.wait_for_selector(SYNCED, timeout=30_000)
        (name,) = _secnb_files(lab) - before

        # the Encryption menu's Copy Share Link: the Share dialog, no #key= link
        _set_clipboard(a, "untouched")
        a.click("#jp-MainMenu >> text=Encryption")
        a.click(".lm-Menu-content >> text=Copy Share Link of Encrypted Notebook")
        _share_dialog_opened(a, name)
        note = a.locator(f"{SHARE} .jp-secsync-Share-note").inner_text()
        assert "invitation link" in note, note

        # the dialog's Copy button puts the invitation link on the clipboard
        a.locator(f"{SHARE} .jp-secsync-Share-role").select_option("viewer")
        a.locator(f"{SHARE} .jp-secsync-Share-label").fill("for the clipboard")
        a.locator(f"{SHARE} .jp-secsync-Share-createButton").click()
        field = a.locator(f"{SHARE} .jp-secsync-Share-newLink")
        field.wait_for(timeout=30_000)
        url = field.input_value()
        assert "/secsync/open/m1_" in url and "#link=" in url, url
        _set_clipboard(a, "before the Copy button")
        a.locator(f"{SHARE} .jp-secsync-Share-copy").click()
        a.locator(f"{SHARE} .jp-secsync-Share-status", has_text="Copied.").wait_for(timeout=20_000)
        assert _clipboard(a) == url
        _close_dialog(a)

        # the notebook toolbar's Share: the same dialog
        _set_clipboard(a, "untouched")
        a.locator(f"{NB} .jp-Toolbar-item[data-jp-item-name='secsyncShare']").click()
        _share_dialog_opened(a, name)
        _close_dialog(a)

        # the status popup's Share…: the same dialog
        _status_popup_share(a)
        _share_dialog_opened(a, name)
        _close_dialog(a)

        # the file browser's context menu of the .secnb: the same dialog
        item = a.locator(".jp-DirListing-item", has_text=name)
        item.click(button="right")
        a.locator(".lm-Menu-item:visible", has_text="Copy Share Link of Encrypted Notebook").click()
        _share_dialog_opened(a, name)
        _close_dialog(a)


def _python_document_without_log(lab, text: str) -> str:
    """A notebook without a membership log (made by the Python client from a fresh id and
    key, as before issue 11); returns its `#key=` share link."""
    from secsync_jupyter import open_notebook
    from secsync_jupyter.client import new_document_key
    from secsync_jupyter.protocol.crypto import generate_id
    from secsync_jupyter.sharelink import format_share_link

    link = format_share_link(generate_id(), new_document_key(), server_url=lab.url)

    async def create():
        async with open_notebook(link, token=TOKEN) as nb:
            nb.add_code_cell(f"x = '{text}'")
            await nb.synced(timeout=30)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result(timeout=120)
    return link


def test_notebook_without_log_keeps_its_key_link(lab, browser):
    canary = f"NOLOG-{secrets.token_hex(4)}"
    link = _python_document_without_log(lab, canary)
    assert not urllib.parse.urlsplit(link).path.split("/")[-1].startswith("m1_")
    with _session(browser, "nolog") as b:
        _start(lab, b, "share-entry-nolog")
        b.goto(_with_token(link))
        _wait_app(b)
        _wait_cell_text(b, 0, canary, timeout=60_000)
        b.wait_for_selector(SYNCED, timeout=30_000)
        # (a notebook without a kernelspec asks for a kernel: none)
        b.locator(".jp-Dialog button", has_text="No Kernel").click(timeout=30_000)
        b.locator(".jp-Dialog").wait_for(state="detached", timeout=20_000)

        def key_link_shown() -> None:
            field = b.locator(KEY_LINK)
            field.wait_for(timeout=20_000)
            assert field.input_value() == link
            assert b.locator(SHARE).count() == 0
            assert _clipboard(b) == link
            _close_dialog(b)

        _set_clipboard(b, "untouched")
        _execute(b, "secsync:copy-share-link")
        key_link_shown()
        _set_clipboard(b, "untouched")
        b.locator(f"{NB} .jp-Toolbar-item[data-jp-item-name='secsyncShare']").click()
        key_link_shown()
        _set_clipboard(b, "untouched")
        _status_popup_share(b)
        key_link_shown()


def test_damaged_link_in_the_address_bar_is_explained_in_a_dialog(lab, browser):
    doc_id = "m1_" + secrets.token_urlsafe(32)
    key = secrets.token_urlsafe(32)
    cases = [
        ("#link=garbage", "This invitation link is damaged or cut off"),
        ("#link=" + key + "&link=" + key, "This invitation link is damaged or cut off"),
        ("#key=" + key[:20], "The key in the link is damaged or cut off"),
    ]
    with _session(browser, "damaged") as c:
        _start(lab, c, "share-entry-damaged")
        for fragment, words in cases:
            before = _secnb_files(lab)
            lab.reset_workspace()  # (the link lands in the default workspace: no old tabs)
            c.goto(f"{lab.url}secsync/open/{doc_id}?token={TOKEN}{fragment}")
            _wait_app(c)
            dialog = c.locator(".jp-Dialog", has_text="This link cannot be opened")
            dialog.wait_for(timeout=60_000)
            text = dialog.inner_text()
            assert words in text, (fragment, text)
            assert "SECSYNC" not in text and "770" not in text, text
            # the fragment left the address bar; nothing was created for the link
            assert "#" not in c.url and "secsync-doc" not in c.url, c.url
            _close_dialog(c)
            assert _secnb_files(lab) == before
            assert c.locator(NB).count() == 0
