"""Invitation links in real Chromium (issue 12, JupyterLab side).

1. Python ⇄ browser: a viewer link made by a Python owner (`nb.create_link`) is opened in a
   browser: the browser joins as itself (the link signs the `add-member` of the browser's own
   identity), reads, read-only; Python lists it as joined through that link. An expired link
   and a damaged one are refused in words. The Python owner revokes the link and removes who
   joined (`revoke_link(remove_joined=True)`, one rotation): the browser's panel says so.
2. The Share dialog: the owner (browser A) creates a viewer link; browser B opens it and
   reads (read-only); browser C joined as editor through another link types throughout; A
   revokes B's link and removes those who joined through it in one action (one rotation):
   B gets no new content and says why, C keeps working (in the new epoch); A's status shows
   "key rotated by … at …". A link made in the browser is joined by Python (`open_notebook`
   with the link), and a revoke in the browser is seen by Python.

Run:  .venv/bin/pytest tests/e2e/test_links.py -x -q
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import time

import pytest

from .helpers import (
    NB,
    TOKEN,
    _browser_session,
    _cells_text,
    _close_members,
    _execute,
    _member_row,
    _my_identity,
    _open_members,
    _pub_key,
    _PythonOwner,
    _start,
    _type_at_end,
    _wait_app,
    _wait_cell_text,
    _with_token,
    python_identity,
)

pytestmark = pytest.mark.browser

SYNCED = ".jp-secsync-StatusItem[data-state='synced']"
ROLE = ".jp-secsync-StatusItem-role"
READ_ONLY = f"{NB}.jp-secsync-mod-readOnly"
NOT_MEMBER = f"{NB} .jp-secsync-NotMember"
LINK_ERROR = f"{NB} .jp-secsync-LinkError"
SHARE = ".jp-Dialog .jp-secsync-Share"


def _session(browser, name: str):
    return _browser_session(browser, "e2e-links", name)


def _no_kernel(page) -> None:
    """An editor of a notebook without a kernelspec is asked for a kernel: none."""
    page.locator(".jp-Dialog button", has_text="No Kernel").click(timeout=30_000)
    page.locator(".jp-Dialog").wait_for(state="detached", timeout=20_000)


def _open_link(page, link: str) -> None:
    """Opens a link in a page (a fresh JupyterLab load, as a click on a received link)."""
    page.goto(_with_token(link))
    _wait_app(page)


# ----------------------------------------------------------------------------------------
# 1. a link made in Python, joined by browsers
# ----------------------------------------------------------------------------------------


def test_python_link_joined_by_browser(lab, browser):
    canary = f"PYLINK-{secrets.token_hex(4)}"
    owner = _PythonOwner(lab, canary, keyring_file=False)
    try:
        link = owner.run(owner.nb.create_link("viewer", "for B"))
        url = str(link)
        assert "#link=" in url and "key=" not in url.split("#", 1)[1], url
        with _session(browser, "B-pylink") as b:
            _start(lab, b, "b-pylink")
            identity_b = _my_identity(b)
            _open_link(b, url)
            # joined as itself, through the link: reads, read-only
            _wait_cell_text(b, 0, canary, timeout=60_000)
            b.locator(READ_ONLY).wait_for(timeout=30_000)
            b.locator(ROLE, has_text="viewer — read only").wait_for(timeout=30_000)
            assert b.locator(".jp-Dialog").count() == 0

            async def joined_through() -> tuple:
                for _ in range(300):
                    links = owner.nb.links
                    if links and links[0].joined:
                        return links[0].joined
                    await asyncio.sleep(0.1)
                return ()

            assert owner.run(joined_through()) == (_pub_key(identity_b),)
            member = owner.nb.document.engine.log.members[_pub_key(identity_b)]
            assert (member.role, member.via) == ("viewer", link.pub_key)

            # a change of the owner arrives live
            live = f"LIVE-{secrets.token_hex(3)}"

            async def write(text: str):
                owner.nb.cells[0].source = f"x = '{canary}' # {text}"
                await owner.nb.synced(timeout=30)

            owner.run(write(live))
            _wait_cell_text(b, 0, live, timeout=30_000)

            # an expired link: the panel says so, in words
            expires = int(time.time() * 1000) + 1500
            expired = owner.run(owner.nb.create_link("editor", "short", expires_at=expires))
            while time.time() * 1000 <= expires + 200:
                time.sleep(0.1)
            with _session(browser, "C-expired") as c:
                _start(lab, c, "c-expired")
                _open_link(c, str(expired))
                panel = c.locator(LINK_ERROR)
                panel.wait_for(timeout=60_000)
                text = panel.inner_text()
                assert "This invitation link has expired" in text, text
                assert "SECSYNC" not in text and "75" not in text, text
                assert canary not in _cells_text(c)
                # a damaged link, pasted: answered in words
                _execute(c, "secsync:open-share-link")
                field = c.locator(".jp-Dialog .jp-secsync-LinkInput")
                field.wait_for(timeout=20_000)
                field.fill(url[:-3] + ("AAA" if url[-3:] != "AAA" else "BBB") + "x")
                c.locator(".jp-Dialog .jp-mod-accept").click()
                c.locator(".jp-Dialog", has_text="damaged or cut off").wait_for(timeout=20_000)
                assert "SECSYNC" not in c.locator(".jp-Dialog").inner_text()
                c.keyboard.press("Escape")
                c.locator(".jp-Dialog").wait_for(state="detached", timeout=20_000)
                # a link that works, opened while the panel says the first one expired:
                # the same tab joins through it
                fresh = owner.run(owner.nb.create_link("viewer", "fresh"))
                _execute(c, "secsync:open-share-link", {"link": str(fresh)})
                _wait_cell_text(c, 0, live, timeout=60_000)
                c.locator(LINK_ERROR).wait_for(state="detached", timeout=30_000)
                c.locator(ROLE, has_text="viewer — read only").wait_for(timeout=30_000)

            # the owner revokes the link and removes who joined through it (one rotation):
            # B's panel says why, B gets nothing more
            owner.run(owner.nb.revoke_link(link, remove_joined=True))
            removed = b.locator(f"{NOT_MEMBER}[data-kind='removed']")
            removed.wait_for(timeout=30_000)
            assert "You were removed from this notebook" in removed.inner_text()
            after = f"AFTER-{secrets.token_hex(3)}"
            owner.run(write(after))
            assert after not in _cells_text(b)
            assert owner.nb.document.engine.log.epoch == 1
    finally:
        owner.close()


# ----------------------------------------------------------------------------------------
# 2. the Share dialog: links made, joined and revoked in browsers
# ----------------------------------------------------------------------------------------


def _open_share(page) -> None:
    """The Share dialog of the current encrypted notebook (its toolbar button)."""
    page.locator(f"{NB} .jp-Toolbar-item[data-jp-item-name='secsyncShare']").click()
    page.locator(SHARE).wait_for(timeout=30_000)


def _close_share(page) -> None:
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    page.locator(SHARE).wait_for(state="detached", timeout=20_000)


def _create_link(page, role: str, label: str) -> str:
    """An admin creates a link in the Share dialog; returns its URL (shown once)."""
    _open_share(page)
    page.locator(f"{SHARE} .jp-secsync-Share-role").select_option(role)
    page.locator(f"{SHARE} .jp-secsync-Share-label").fill(label)
    page.locator(f"{SHARE} .jp-secsync-Share-createButton").click()
    field = page.locator(f"{SHARE} .jp-secsync-Share-newLink")
    field.wait_for(timeout=30_000)
    url = field.input_value()
    row = page.locator(f"{SHARE} .jp-secsync-ShareLink[data-state='live']", has_text=label)
    row.wait_for(timeout=30_000)
    assert page.locator(f"{SHARE} .jp-secsync-Share-createError").inner_text() == ""
    _close_share(page)
    assert "/secsync/open/m1_" in url and "#link=" in url, url
    return url


def _link_row(page, label: str):
    return page.locator(f"{SHARE} .jp-secsync-ShareLink", has_text=label)


def _revoke(page, label: str, remove_joined: bool) -> None:
    """An admin revokes a link in the Share dialog (and removes who joined, if asked)."""
    _open_share(page)
    row = _link_row(page, label)
    row.locator(".jp-secsync-ShareLink-revoke").click()
    check = row.locator(".jp-secsync-ShareLink-removeJoined")
    if remove_joined:
        check.check()
    else:
        check.uncheck()
    row.locator(".jp-secsync-ShareLink-confirmRevoke").click()
    page.locator(f"{SHARE} .jp-secsync-ShareLink[data-state='revoked']", has_text=label).wait_for(
        timeout=60_000
    )
    page.locator(f"{SHARE} .jp-secsync-Share-status", has_text="the key was changed").wait_for(
        timeout=60_000
    )
    assert page.locator(f"{SHARE} .jp-secsync-Share-listError").inner_text() == ""
    _close_share(page)


def test_share_dialog_viewer_link_revoked_editor_keeps_working(lab, browser):
    canary = f"SHARE-{secrets.token_hex(4)}"
    with (
        _session(browser, "owner-share") as a,
        _session(browser, "B-share") as b,
        _session(browser, "C-share") as c,
    ):
        _start(lab, a, "owner-share")
        _execute(a, "secsync:new-notebook")
        a.wait_for_selector(SYNCED, timeout=60_000)
        a.locator(ROLE, has_text="owner").wait_for(timeout=30_000)
        _type_at_end(a, 0, f"x = '{canary}'")
        a.wait_for_selector(SYNCED, timeout=30_000)

        link_b = _create_link(a, "viewer", "for B")
        link_c = _create_link(a, "editor", "for C")
        assert link_b != link_c

        # B opens the viewer link: joins as itself, reads, read-only
        _start(lab, b, "b-share")
        identity_b = _my_identity(b)
        _open_link(b, link_b)
        _wait_cell_text(b, 0, canary, timeout=60_000)
        b.locator(READ_ONLY).wait_for(timeout=30_000)
        b.locator(ROLE, has_text="viewer — read only").wait_for(timeout=30_000)

        # C opens the editor link: types, A sees it
        _start(lab, c, "c-share")
        identity_c = _my_identity(c)
        _open_link(c, link_c)
        _wait_cell_text(c, 0, canary, timeout=60_000)
        c.locator(ROLE, has_text="editor").wait_for(timeout=30_000)
        from_c = f"FROMC-{secrets.token_hex(3)}"
        _type_at_end(c, 0, f" # {from_c}")
        _wait_cell_text(a, 0, from_c, timeout=30_000)
        _wait_cell_text(b, 0, from_c, timeout=30_000)

        # the owner's dialog lists who joined through each link
        _open_share(a)
        row_b = _link_row(a, "for B")
        assert row_b.get_attribute("data-joined") == "1"
        assert row_b.get_attribute("data-pubkey") not in (_pub_key(identity_b), None)
        assert _link_row(a, "for C").get_attribute("data-joined") == "1"
        assert a.locator(f"{SHARE} .jp-secsync-Share-rotated").count() == 0
        _close_share(a)

        # revoke B's link and remove who joined through it: one action, one rotation
        _revoke(a, "for B", remove_joined=True)
        removed = b.locator(f"{NOT_MEMBER}[data-kind='removed']")
        removed.wait_for(timeout=30_000)
        assert "You were removed from this notebook" in removed.inner_text()
        _open_share(a)
        assert _link_row(a, "for B").get_attribute("data-joined") == "0"
        assert "Key rotated by" in a.locator(f"{SHARE} .jp-secsync-Share-rotated").inner_text()
        _close_share(a)

        # nobody joins through the revoked link any more: a fresh browser is told why
        with _session(browser, "D-share") as d:
            _start(lab, d, "d-share")
            _open_link(d, link_b)
            panel = d.locator(LINK_ERROR)
            panel.wait_for(timeout=60_000)
            text = panel.inner_text()
            assert "This invitation link was revoked" in text, text
            assert "SECSYNC" not in text and canary not in _cells_text(d)

        # B gets nothing new; C keeps working (the new epoch), both ways
        after = f"AFTER-{secrets.token_hex(3)}"
        _type_at_end(a, 0, f" # {after}")
        a.wait_for_selector(SYNCED, timeout=30_000)
        _wait_cell_text(c, 0, after, timeout=30_000)
        from_c2 = f"FROMC2-{secrets.token_hex(3)}"
        _type_at_end(c, 0, f" # {from_c2}")
        _wait_cell_text(a, 0, from_c2, timeout=30_000)
        c.wait_for_selector(SYNCED, timeout=30_000)
        assert after not in _cells_text(b) and from_c2 not in _cells_text(b)
        assert c.locator(NOT_MEMBER).count() == 0
        # the Members dialog: C an editor (joined through its link), B gone
        _open_members(a)
        _member_row(a, identity_c, "editor").wait_for(timeout=20_000)
        assert "link “for C”" in _member_row(a, identity_c).inner_text()
        assert _member_row(a, identity_b).count() == 0
        _close_members(a)

        # a new link for B, opened in B's open tab (its panel says it was removed): B joins
        # again through it, in place, and reads what was written meanwhile (epoch 1)
        link_b2 = _create_link(a, "viewer", "B again")
        _execute(b, "secsync:open-share-link", {"link": link_b2})
        _wait_cell_text(b, 0, from_c2, timeout=60_000)
        b.locator(NOT_MEMBER).wait_for(state="detached", timeout=30_000)
        b.locator(ROLE, has_text="viewer — read only").wait_for(timeout=30_000)

        # the owner's status popup: key rotated by the owner, at a time
        a.click(".jp-secsync-StatusItem")
        rotated = a.locator(".jp-secsync-Collaborators-rotated")
        rotated.wait_for(timeout=20_000)
        assert rotated.inner_text().startswith("Key rotated by ")
        a.keyboard.press("Escape")


# ----------------------------------------------------------------------------------------
# 3. a link made in the browser, joined by Python; a revoke in the browser seen by Python
# ----------------------------------------------------------------------------------------


class _PyLoop:
    """An asyncio loop of the Python client in its own thread (objects stay open on it)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.pool.submit(asyncio.set_event_loop, self.loop).result()

    def run(self, coro):
        return self.pool.submit(self.loop.run_until_complete, coro).result(timeout=120)

    def close(self):
        self.pool.submit(self.loop.close).result()
        self.pool.shutdown()


def test_browser_link_joined_by_python(lab, browser):
    from secsync_jupyter import open_notebook

    canary = f"BRLINK-{secrets.token_hex(4)}"
    pair, _ = python_identity("python-joiner")
    py = _PyLoop()
    nb = None
    try:
        with _session(browser, "owner-brlink") as a:
            _start(lab, a, "owner-brlink")
            _execute(a, "secsync:new-notebook")
            a.wait_for_selector(SYNCED, timeout=60_000)
            _type_at_end(a, 0, f"x = '{canary}'")
            a.wait_for_selector(SYNCED, timeout=30_000)
            url = _create_link(a, "editor", "for Python")

            # Python joins through the browser's link (as itself) and writes
            async def join():
                return await open_notebook(url, identity=pair, token=TOKEN, keyring_file=False)

            nb = py.run(join())
            assert nb.role == "editor"
            assert canary in str(nb.cells[0].source)
            member = nb.document.engine.log.members[pair.public_key_b64]
            assert member.via is not None and member.role == "editor"
            text = f"PYJOINED-{secrets.token_hex(3)}"

            async def add(t: str):
                nb.add_markdown_cell(t)
                await nb.synced(timeout=30)

            py.run(add(text))
            a.wait_for_function(
                "([s, t]) => document.querySelector(s).textContent.includes(t)",
                arg=[NB, text],
                timeout=30_000,
            )
            # the browser lists Python as joined through its link
            _open_share(a)
            assert _link_row(a, "for Python").get_attribute("data-joined") == "1"
            _close_share(a)

            # the browser revokes the link (Python stays a member): Python sees the revoke
            # and the rotation, and keeps writing in the new epoch
            _revoke(a, "for Python", remove_joined=False)

            async def revoked_seen() -> tuple:
                for _ in range(300):
                    log = nb.document.engine.log
                    links = nb.links
                    if links and links[0].removed is not None and log.epoch >= 1:
                        return links[0].removed is not None, log.epoch, nb.role
                    await asyncio.sleep(0.1)
                return False, nb.document.engine.log.epoch, nb.role

            assert py.run(revoked_seen()) == (True, 1, "editor")
            text2 = f"PYAFTER-{secrets.token_hex(3)}"
            py.run(add(text2))
            a.wait_for_function(
                "([s, t]) => document.querySelector(s).textContent.includes(t)",
                arg=[NB, text2],
                timeout=30_000,
            )
    finally:
        if nb is not None:
            with contextlib.suppress(Exception):
                py.run(nb.close())
        py.close()


# ----------------------------------------------------------------------------------------
# 4. a link made after a key rotation: the browser holds only the new epoch's key
# ----------------------------------------------------------------------------------------


def test_join_after_rotation_then_reload(lab, browser):
    canary = f"ROTATED-{secrets.token_hex(4)}"
    owner = _PythonOwner(lab, canary, keyring_file=False)
    try:

        async def rotate_then_link():
            await owner.nb.rotate_key()
            owner.nb.cells[0].source = f"x = '{canary}' # epoch 1"
            await owner.nb.synced(timeout=30)
            return await owner.nb.create_link("editor", "after rotation")

        link = owner.run(rotate_then_link())
        assert owner.nb.document.engine.log.epoch == 1
        with _session(browser, "B-rotated") as b:
            _start(lab, b, "b-rotated")
            _open_link(b, str(link))
            _wait_cell_text(b, 0, "# epoch 1", timeout=60_000)
            b.locator(ROLE, has_text="editor").wait_for(timeout=30_000)
            _no_kernel(b)
            # only the epoch-1 key came with the link (none of epoch 0)
            stored = b.evaluate(
                """(docId) => [localStorage.getItem('secsync-jupyter:doc-key:' + docId),
                               localStorage.getItem('secsync-jupyter:keyring:' + docId)]""",
                owner.nb.doc_id,
            )
            assert stored[0] is None and '"1"' in (stored[1] or ""), stored
            typed = f"FROMB-{secrets.token_hex(3)}"
            _type_at_end(b, 0, f" # {typed}")
            b.wait_for_selector(SYNCED, timeout=30_000)

            async def source_with(text: str) -> str:
                for _ in range(300):
                    if text in str(owner.nb.cells[0].source):
                        break
                    await asyncio.sleep(0.1)
                return str(owner.nb.cells[0].source)

            assert typed in owner.run(source_with(typed))

            # a reload opens it again from this browser's keyring (no document key, no link)
            path = b.evaluate("() => window.jupyterapp.shell.currentWidget.context.path")
            b.reload()
            _wait_app(b)
            # (the tab may or may not be restored from the workspace: open the file)
            _execute(b, "docmanager:open", {"path": path})
            _wait_cell_text(b, 0, typed, timeout=60_000)
            assert b.locator(f"{NB} .jp-secsync-Locked").count() == 0
            _no_kernel(b)
            again = f"AGAIN-{secrets.token_hex(3)}"
            _type_at_end(b, 0, f" # {again}")
            b.wait_for_selector(SYNCED, timeout=30_000)
            assert again in owner.run(source_with(again))

        # a browser that opens the .secnb without a key: its locked panel takes the
        # invitation link (pasted), joins, and opens the notebook
        with _session(browser, "E-rotated") as e:
            _start(lab, e, "e-rotated")
            _execute(e, "docmanager:open", {"path": path})
            field = e.locator(f"{NB} .jp-secsync-Locked .jp-secsync-LinkInput")
            field.wait_for(timeout=60_000)
            field.fill(str(link))
            e.locator(f"{NB} .jp-secsync-Locked-unlock").click()
            _wait_cell_text(e, 0, again, timeout=60_000)
            e.locator(ROLE, has_text="editor").wait_for(timeout=30_000)
            assert e.locator(f"{NB} .jp-secsync-Locked").count() == 0
    finally:
        owner.close()
