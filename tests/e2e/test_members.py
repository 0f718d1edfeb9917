"""Members and roles in real Chromium (issue 11, JupyterLab side).

1. The owner (browser A) makes a new encrypted notebook (it has a membership log; A is its
   owner), adds browser B by B's identity string — copied in B's own UI (My identity) and
   pasted into A's Members dialog — as a viewer: B sees the notebook read-only (typing, cell
   commands and running change nothing; "Viewer — read only"); A promotes B to editor and B
   types, live, A sees it; A removes B: B's panel says so (no dialog), B gets nothing more.
   A browser C that was never added gets "You are not a member of this notebook: send your
   identity to its owner", copies its identity from that panel, is added, and opens it with
   *Try again*. Identity strings that are not right are answered in words.
2. Python ⇄ browser: a member the browser adds is enforced by the Python client (viewer: no
   writes), and members a Python owner adds (`nb.add_member`, `set_role`, `remove_member`) are
   enforced in the browser.

Run:  .venv/bin/pytest tests/e2e/test_members.py -x -q
"""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse

import pytest

from .helpers import (
    MEMBERS,
    NB,
    TOKEN,
    _add_member,
    _browser_session,
    _cells_text,
    _close_members,
    _execute,
    _member_row,
    _my_identity,
    _open_members,
    _pub_key,
    _python,
    _PythonOwner,
    _share_link,
    _start,
    _type_at_end,
    _wait_app,
    _wait_cell_text,
    _wait_kernel_ready,
    _with_token,
    python_identity,
)

pytestmark = pytest.mark.browser

SYNCED = ".jp-secsync-StatusItem[data-state='synced']"
ROLE = ".jp-secsync-StatusItem-role"
READ_ONLY = f"{NB}.jp-secsync-mod-readOnly"
NOT_MEMBER = f"{NB} .jp-secsync-NotMember"


# The notebook commands that run cells or clear their outputs: disabled for a viewer.
RUN_COMMANDS = [
    "notebook:run-cell",
    "notebook:run-cell-and-select-next",
    "notebook:run-all-cells",
    "notebook:clear-all-cell-outputs",
]
ENABLED_COMMANDS = "(ids) => ids.filter((id) => window.jupyterapp.commands.isEnabled(id))"
# Every cell's execution count and outputs, as the notebook's shared model holds them.
RUN_STATE = """() => window.jupyterapp.shell.currentWidget.content.model.sharedModel.cells
  .map((c) => { const j = c.toJSON(); return [j.execution_count ?? null, j.outputs ?? null]; })"""
DISPLAY_NAME = """() => { const u = window.jupyterapp.serviceManager.user.identity;
  return u.display_name || u.name || ''; }"""


def _session(browser, name: str):
    return _browser_session(browser, "e2e-members", name)


def _allow_clipboard(lab, page) -> None:
    """The page's browser context may use the system clipboard (read back by the test)."""
    origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(lab.url))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)


def _set_clipboard(page, text: str) -> None:
    page.evaluate("(t) => navigator.clipboard.writeText(t)", text)
    assert _clipboard(page) == text


def _clipboard(page) -> str:
    return page.evaluate("() => navigator.clipboard.readText()")


def _identity_name(identity: str) -> str | None:
    """The display name at the end of an identity string (percent-decoded), if any."""
    parts = identity.split(":")
    return urllib.parse.unquote(parts[4]) if len(parts) > 4 else None


def _copied_identity(page) -> str:
    """My identity (the command): the string shown is the one put on the clipboard, and it
    carries this browser's display name."""
    _set_clipboard(page, "untouched")
    identity = _my_identity(page)
    assert _clipboard(page) == identity
    name = page.evaluate(DISPLAY_NAME)
    assert name, "JupyterLab gives every user a display name"
    assert _identity_name(identity) == name, (identity, name)
    return identity


def _outputs_text(state) -> str:
    return repr([outputs for _, outputs in state])


def _cell_count(page) -> int:
    return page.locator(f"{NB} .jp-Cell").count()


def _set_role(page, identity: str, role: str) -> None:
    """An admin changes a member's role in the Members dialog."""
    _open_members(page)
    _member_row(page, identity).locator(".jp-secsync-Member-roleSelect").select_option(role)
    _member_row(page, identity, role).wait_for(timeout=30_000)
    _close_members(page)


def _remove(page, identity: str) -> None:
    """An admin removes a member (Remove, then the confirmation) in the Members dialog."""
    _open_members(page)
    row = _member_row(page, identity)
    row.locator(".jp-secsync-Member-remove").click()
    row.locator(".jp-secsync-Member-confirmRemove").click()
    row.wait_for(state="detached", timeout=30_000)
    _close_members(page)


def _assert_read_only_view(page, owner, marker: str, *, ran: str) -> None:
    """A viewer's typing, cell commands and runs change nothing (here or for the owner).

    The viewer has a kernel to run with (here: the notebook's kernel session on this Jupyter
    server, which the owner started; a viewer starts none, it joins a running one), and cell 0
    was run before: its outputs hold `ran`. Shift+Enter on it would print again: its execution
    count and outputs stay as they are, on both sides."""
    page.locator(READ_ONLY).wait_for(timeout=30_000)
    badge = page.locator(f"{NB} .jp-secsync-ReadOnlyBadge")
    assert badge.inner_text() == "Viewer — read only"
    page.locator(ROLE, has_text="viewer — read only").wait_for(timeout=30_000)
    # (the viewer joins the running kernel session once it loaded: connected, idle)
    _wait_kernel_ready(page)
    # running cells and clearing outputs is disabled here (menus, toolbar, shortcuts), not
    # for the owner
    assert page.evaluate(ENABLED_COMMANDS, RUN_COMMANDS) == []
    assert owner.evaluate(ENABLED_COMMANDS, RUN_COMMANDS) == RUN_COMMANDS
    ran_state = page.evaluate(RUN_STATE)
    assert ran in _outputs_text(ran_state), ran_state
    assert ran_state[0][0] is not None, ran_state
    assert owner.evaluate(RUN_STATE) == ran_state
    cells = _cell_count(page)
    typed = f"VIEWERTYPED-{secrets.token_hex(3)}"
    _type_at_end(page, 0, typed)
    page.keyboard.press("Escape")
    # (the keys below act on cell 0, the cell that prints)
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex") == 0
    for key in ("b", "a", "Shift+Enter", "Control+Enter", "d", "d", "x", "Control+v"):
        page.keyboard.press(key)
    assert not page.evaluate(
        "() => window.jupyterapp.commands.isEnabled('notebook:insert-cell-below')"
    )
    # a barrier: the owner's next change arrives, the viewer's attempts never went anywhere
    _type_at_end(owner, 0, marker)
    _wait_cell_text(page, 0, marker)
    owner.wait_for_selector(SYNCED, timeout=30_000)
    assert typed not in _cells_text(page)
    assert typed not in _cells_text(owner)
    assert _cell_count(page) == cells == _cell_count(owner)
    # Shift+Enter / Control+Enter on cell 0 (it prints) ran nothing: the same execution
    # count and outputs here and at the owner
    assert page.evaluate(RUN_STATE) == ran_state
    assert owner.evaluate(RUN_STATE) == ran_state
    # nothing waits to be sent either (it would go out on a promotion)
    page.wait_for_selector(SYNCED, timeout=30_000)


def test_owner_adds_viewer_promotes_and_removes(lab, browser):
    canary = f"MEMBERS-{secrets.token_hex(4)}"
    with _session(browser, "owner") as a, _session(browser, "B") as b:
        _start(lab, a, "owner")
        _execute(a, "secsync:new-notebook")
        a.wait_for_selector(SYNCED, timeout=60_000)
        a.locator(ROLE, has_text="owner").wait_for(timeout=30_000)
        # a cell that prints: the owner runs it (a viewer's Shift+Enter will not)
        _type_at_end(a, 0, f"x = '{canary}'; print('RAN-' + x)")
        _wait_kernel_ready(a)
        a.keyboard.press("Escape")
        a.keyboard.press("Control+Enter")
        a.wait_for_function(
            f"(t) => JSON.stringify(({RUN_STATE})()[0]).includes(t)",
            arg=f"RAN-{canary}",
            timeout=120_000,
        )
        a.wait_for_selector(SYNCED, timeout=30_000)
        link = _share_link(a)
        assert "/secsync/open/m1_" in link, link

        # My identity copies this browser's identity string (with its display name), also
        # from the status bar's popup: the same string.
        _allow_clipboard(lab, a)
        me = _copied_identity(a)
        _set_clipboard(a, "untouched")
        a.click(".jp-secsync-StatusItem")
        a.locator(".jp-secsync-Collaborators-myIdentity").click()
        field = a.locator(".jp-secsync-Identity-string")
        field.wait_for(timeout=20_000)
        assert field.input_value() == me
        assert "Your identity string is copied" in a.locator(".jp-secsync-Identity").inner_text()
        assert _clipboard(a) == me
        a.keyboard.press("Escape")
        field.wait_for(state="detached", timeout=20_000)

        # The owner's dialog (the notebook's toolbar button): the owner alone, shown as
        # owner, with the controls.
        a.locator(f"{NB} .jp-Toolbar-item[data-jp-item-name='secsyncMembers']").click()
        a.locator(f"{MEMBERS} .jp-secsync-Members-table").wait_for(timeout=30_000)
        assert a.locator(f"{MEMBERS} .jp-secsync-Member").count() == 1
        assert a.locator(f"{MEMBERS} .jp-secsync-Members-add").count() == 1
        own_row = _member_row(a, me)
        assert "(you)" in own_row.inner_text()
        assert own_row.locator(".jp-secsync-Member-roleSelect option:checked").inner_text() == (
            "owner"
        )
        fingerprint = " ".join(me.split(":")[3][i : i + 4] for i in range(0, 16, 4))
        assert own_row.locator(".jp-secsync-Member-fingerprint").inner_text() == fingerprint
        assert own_row.locator(".jp-secsync-Member-name").inner_text() == (
            f"{_identity_name(me)} (you)"
        )
        assert own_row.locator(".jp-secsync-Member-addedBy").inner_text() == (
            "(created the notebook)"
        )
        _close_members(a)

        # B copies its identity in its own UI; wrong strings are answered in words.
        _start(lab, b, "b")
        _allow_clipboard(lab, b)
        identity_b = _copied_identity(b)
        assert _identity_name(identity_b) != _identity_name(me)
        _open_members(a)
        field = a.locator(f"{MEMBERS} .jp-secsync-Members-identity")
        error = a.locator(f"{MEMBERS} .jp-secsync-Members-addError")
        field.fill("hello")
        a.locator(f"{MEMBERS} .jp-secsync-Members-addButton").click()
        error.filter(has_text="This is not an identity string").wait_for(timeout=20_000)
        parts = identity_b.split(":")
        parts[3] = ("0" if parts[3][0] != "0" else "1") + parts[3][1:]
        field.fill(":".join(parts))
        a.locator(f"{MEMBERS} .jp-secsync-Members-addButton").click()
        error.filter(has_text="fingerprint in this identity string does not match").wait_for(
            timeout=20_000
        )
        assert "SECSYNC" not in error.inner_text()
        assert _member_row(a, identity_b).count() == 0
        _close_members(a)

        # Added as a viewer: the owner's dialog shows B's name, who added B, and when.
        added_after = int(time.time() * 1000)
        _add_member(a, identity_b, "viewer")
        added_before = int(time.time() * 1000)
        _open_members(a)
        row_b = _member_row(a, identity_b, "viewer")
        assert row_b.locator(".jp-secsync-Member-name").inner_text() == _identity_name(identity_b)
        assert row_b.locator(".jp-secsync-Member-addedBy").inner_text() == _identity_name(me)
        added = row_b.locator(".jp-secsync-Member-addedAt")
        assert added.inner_text().strip()
        # (the entry's own time, on this machine's clock: between the test's two readings)
        assert added_after <= int(added.get_attribute("data-at")) <= added_before
        _close_members(a)

        # B reads, read-only: typing, cell commands and Shift+Enter change nothing.
        b.goto(_with_token(link))
        _wait_app(b)
        _wait_cell_text(b, 0, canary, timeout=60_000)
        _assert_read_only_view(b, a, "# seen-by-viewer", ran=f"RAN-{canary}")

        # B is not an admin: it sees the members, not the controls.
        _open_members(b)
        assert b.locator(f"{MEMBERS} .jp-secsync-Member").count() == 2
        assert b.locator(f"{MEMBERS} .jp-secsync-Members-add").count() == 0
        assert b.locator(f"{MEMBERS} .jp-secsync-Member-roleSelect").count() == 0
        owner_row = b.locator(f"{MEMBERS} .jp-secsync-Member[data-pubkey='{_pub_key(me)}']")
        assert "owner" in owner_row.inner_text()
        _close_members(b)

        # Promoted to editor: editable at once, no reload; A sees B's typing.
        _set_role(a, identity_b, "editor")
        b.locator(READ_ONLY).wait_for(state="detached", timeout=30_000)
        b.locator(ROLE, has_text="editor").wait_for(timeout=30_000)
        assert b.locator(f"{NB} .jp-secsync-ReadOnlyBadge").count() == 0
        from_b = f"FROMB-{secrets.token_hex(3)}"
        _type_at_end(b, 0, f"\nprint('{from_b}')")
        _wait_cell_text(a, 0, from_b, timeout=30_000)
        b.wait_for_selector(SYNCED, timeout=30_000)
        # B runs the cell (on the kernel it joined): the new outputs reach A
        b.keyboard.press("Escape")
        b.keyboard.press("Control+Enter")
        b.wait_for_function(
            f"""(t) => {{ const c = ({RUN_STATE})()[0];
              return c[0] !== null && JSON.stringify(c[1]).includes(t); }}""",
            arg=from_b,
            timeout=120_000,
        )
        _wait_kernel_ready(b)
        b.wait_for_selector(SYNCED, timeout=30_000)
        a.wait_for_function(
            f"(s) => JSON.stringify(({RUN_STATE})()) === JSON.stringify(s)",
            arg=b.evaluate(RUN_STATE),
            timeout=30_000,
        )

        # Demoted again, live: read-only at once; its kernel is left running, and runs nothing.
        _set_role(a, identity_b, "viewer")
        _assert_read_only_view(b, a, "# demoted", ran=from_b)

        # Removed: B's panel says so, no dialog; B receives nothing more.
        _remove(a, identity_b)
        removed = b.locator(f"{NOT_MEMBER}[data-kind='removed']")
        removed.wait_for(timeout=30_000)
        assert "You were removed from this notebook" in removed.inner_text()
        assert b.locator(".jp-Dialog").count() == 0
        b.locator(".jp-secsync-StatusItem[data-state='removed']").wait_for(timeout=20_000)
        after = f"AFTER-{secrets.token_hex(3)}"
        _type_at_end(a, 0, f" # {after}")
        a.wait_for_selector(SYNCED, timeout=30_000)
        assert after not in _cells_text(b)

        # Added again: Try again in the same panel brings the notebook back, with what was
        # written meanwhile.
        _add_member(a, identity_b, "editor")
        removed.locator(".jp-secsync-NotMember-retry").click()
        _wait_cell_text(b, 0, after, timeout=60_000)
        b.locator(NOT_MEMBER).wait_for(state="detached", timeout=20_000)
        b.locator(ROLE, has_text="editor").wait_for(timeout=30_000)
        again = f"AGAIN-{secrets.token_hex(3)}"
        _type_at_end(b, 0, f" # {again}")
        _wait_cell_text(a, 0, again, timeout=30_000)

        # Someone never added: told what to do, copies its identity there, is let in.
        with _session(browser, "C") as c:
            c.goto(_with_token(link))
            _wait_app(c)
            panel = c.locator(f"{NOT_MEMBER}[data-kind='not-member']")
            panel.wait_for(timeout=60_000)
            assert (
                "You are not a member of this notebook: send your identity to its owner"
                in panel.inner_text()
            )
            assert c.locator(".jp-Dialog").count() == 0
            assert canary not in _cells_text(c)
            panel.locator(".jp-secsync-NotMember-copy").click()
            field = panel.locator(".jp-secsync-NotMember-identity")
            field.wait_for(timeout=20_000)
            identity_c = field.input_value()
            assert identity_c == _my_identity(c)
            _add_member(a, identity_c, "editor")
            panel.locator(".jp-secsync-NotMember-retry").click()
            _wait_cell_text(c, 0, again, timeout=60_000)
            c.locator(NOT_MEMBER).wait_for(state="detached", timeout=20_000)
            c.locator(ROLE, has_text="editor").wait_for(timeout=30_000)


# ----------------------------------------------------------------------------------------
# 2. Python ⇄ browser
# ----------------------------------------------------------------------------------------


async def _python_viewer(link: str, pair):
    """Opens as `pair`; returns (role, read only?, write refused?, source of cell 0)."""
    from secsync_jupyter import open_notebook

    async with open_notebook(link, token=TOKEN, signing_key=pair) as nb:
        refused = False
        try:
            nb.add_markdown_cell("from a viewer")
        except PermissionError:
            refused = True
        return nb.role, nb.read_only, refused, str(nb.cells[0].source)


async def _python_writes(link: str, pair, text: str) -> str:
    from secsync_jupyter import open_notebook

    async with open_notebook(link, token=TOKEN, signing_key=pair) as nb:
        nb.add_markdown_cell(text)
        await nb.synced(timeout=30)
        return nb.role


def test_browser_members_enforced_in_python(lab, browser):
    canary = f"PYMEMBERS-{secrets.token_hex(4)}"
    pair, identity = python_identity("python-e2e")
    with _session(browser, "owner-py") as a:
        _start(lab, a, "owner-py")
        _execute(a, "secsync:new-notebook")
        a.wait_for_selector(SYNCED, timeout=60_000)
        _type_at_end(a, 0, f"x = '{canary}'")
        a.wait_for_selector(SYNCED, timeout=30_000)
        link = _share_link(a)

        # Added by the browser as a viewer: the Python client reads and may not write.
        _add_member(a, identity, "viewer")
        role, read_only, refused, source = _python(_python_viewer(link, pair))
        assert (role, read_only, refused) == ("viewer", True, True)
        assert canary in source

        # Promoted in the browser: the Python client writes, the browser shows it.
        _set_role(a, identity, "editor")
        text = f"PYWRITE-{secrets.token_hex(3)}"
        assert _python(_python_writes(link, pair, text)) == "editor"
        a.wait_for_function(
            "([s, t]) => document.querySelector(s).textContent.includes(t)",
            arg=[NB, text],
            timeout=30_000,
        )


def test_python_members_enforced_in_browser(lab, browser):
    canary = f"PYOWNER-{secrets.token_hex(4)}"
    owner = _PythonOwner(lab, canary)
    try:
        with _session(browser, "B-py") as b:
            _start(lab, b, "b-py")
            identity_b = _my_identity(b)

            # Added from Python as a viewer: read-only in the browser.
            owner.run(owner.nb.add_member(identity_b, "viewer"))
            b.goto(owner.link)
            _wait_app(b)
            _wait_cell_text(b, 0, canary, timeout=60_000)
            b.locator(READ_ONLY).wait_for(timeout=30_000)
            b.locator(ROLE, has_text="viewer — read only").wait_for(timeout=30_000)
            typed = f"VIEWERTYPED-{secrets.token_hex(3)}"
            _type_at_end(b, 0, typed)
            b.keyboard.press("Escape")
            b.keyboard.press("b")
            # a viewer starts no kernel: no kernel prompt (it would take the clicks above)
            assert b.locator(".jp-Dialog").count() == 0
            assert b.evaluate(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.hasNoKernel"
            )

            # Promoted from Python: the browser types, Python receives it.
            owner.run(owner.nb.set_role(_pub_key(identity_b), "editor"))
            b.locator(READ_ONLY).wait_for(state="detached", timeout=30_000)
            from_b = f"FROMB-{secrets.token_hex(3)}"
            _type_at_end(b, 0, f" # {from_b}")
            b.wait_for_selector(SYNCED, timeout=30_000)

            async def source_with(text: str) -> str:
                for _ in range(300):
                    source = str(owner.nb.cells[0].source)
                    if text in source:
                        return source
                    await asyncio.sleep(0.1)
                return str(owner.nb.cells[0].source)

            source = owner.run(source_with(from_b))
            assert from_b in source and typed not in source, source
            assert len(owner.nb.cells) == 1

            # Removed from Python: the browser's panel says so.
            owner.run(owner.nb.remove_member(_pub_key(identity_b)))
            b.locator(f"{NOT_MEMBER}[data-kind='removed']").wait_for(timeout=30_000)
            assert b.locator(".jp-Dialog").count() == 0
    finally:
        owner.close()
