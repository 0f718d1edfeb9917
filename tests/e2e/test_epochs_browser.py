"""Key epochs in real Chromium (issue 12, the browser engine):

1. a Python owner removes a member and so rotates the document key; the JupyterLab browser
   that is still a member reads what the owner writes in the new epoch (its lockbox comes
   from the relay), live and on a new page load, and writes in that epoch itself (the Python
   owner reads it). Before the browser engine knew epochs, the browser stopped reading at
   the rotation;
2. the browser owner removes a member in the Members dialog: the browser rotates the key by
   itself, and a Python member (given only the epoch-0 key of the share link) reads what the
   browser writes in the new epoch through its lockbox.

Run:  .venv/bin/pytest tests/e2e/test_epochs_browser.py -x -q
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from .helpers import (
    TOKEN,
    _add_member,
    _execute,
    _my_identity,
    _pub_key,
    _wait_app,
    _wait_cell_text,
    python_identity,
)
from .test_members import (
    SYNCED,
    _python,
    _PythonOwner,
    _remove,
    _session,
    _start,
    _type_at_end,
)

pytestmark = pytest.mark.browser


def _no_kernel(page) -> None:
    page.locator(".jp-Dialog button", has_text="No Kernel").click(timeout=30_000)
    page.locator(".jp-Dialog").wait_for(state="detached", timeout=30_000)


def test_browser_reads_and_writes_after_a_python_rotation(lab, browser):
    canary = f"EPOCH0-{secrets.token_hex(4)}"
    owner = _PythonOwner(lab, canary)
    try:
        engine = owner.nb.document.engine
        with _session(browser, "B-epochs") as b:
            _start(lab, b, "b-epochs")
            identity_b = _my_identity(b)
            owner.run(owner.nb.add_member(identity_b, "editor"))
            _, identity_x = python_identity("python-removed")
            owner.run(owner.nb.add_member(identity_x, "editor"))
            b.goto(owner.link)
            _wait_app(b)
            _wait_cell_text(b, 0, canary, timeout=60_000)
            _no_kernel(b)  # (an editor of a notebook without a kernelspec is asked)
            b.wait_for_selector(SYNCED, timeout=30_000)

            # Python removes X: the key rotates (epoch 1), then the owner writes in epoch 1.
            owner.run(owner.nb.remove_member(_pub_key(identity_x)))
            assert engine.log.epoch == 1
            new = f"EPOCH1-{secrets.token_hex(4)}"

            async def write_in_epoch_1() -> None:
                owner.nb.cells[0].source = f"x = '{new}'"
                await owner.nb.synced(timeout=30)

            owner.run(write_in_epoch_1())
            assert engine.active.epoch == 1
            _wait_cell_text(b, 0, new, timeout=30_000)

            # The browser writes in epoch 1; the Python owner reads it.
            from_b = f"FROMB-{secrets.token_hex(3)}"
            _type_at_end(b, 0, f" # {from_b}")
            b.wait_for_selector(SYNCED, timeout=30_000)

            async def source_with(text: str) -> str:
                for _ in range(300):
                    if text in str(owner.nb.cells[0].source):
                        break
                    await asyncio.sleep(0.1)
                return str(owner.nb.cells[0].source)

            assert from_b in owner.run(source_with(from_b))
            assert engine.active.epoch == 1  # (the browser's writes went in on epoch 1)

            # A new page load opens the rotated notebook again (its lockbox from the relay),
            # and nothing in it was refused. (Through the link: whether JupyterLab restores
            # the tab on a plain reload depends on when it saved its workspace.)
            b.goto(owner.link)
            _wait_app(b)
            _wait_cell_text(b, 0, from_b, timeout=60_000)
            _no_kernel(b)
            b.wait_for_selector(SYNCED, timeout=30_000)
            assert not [e for e in owner.nb.errors if e.code in ("SECSYNC_ERROR_768",)]
    finally:
        owner.close()


async def _python_reads(link: str, pair, text: str):
    """Opens as ``pair`` until ``text`` arrives in epoch 1: (epoch, keyring epochs, source)."""
    from secsync_jupyter import open_notebook

    async with open_notebook(link, token=TOKEN, signing_key=pair) as nb:
        engine = nb.document.engine
        await nb.wait_for(
            lambda: engine.log.epoch == 1 and text in str(nb.cells[0].source), timeout=30
        )
        return engine.log.epoch, engine.epochs.keyring.epochs, str(nb.cells[0].source)


def _key_link(lab, page) -> str:
    """A ``#key=`` link of the page's only encrypted notebook, from this browser's key store
    (what the Python member is given: the document id and the epoch-0 key)."""
    from secsync_jupyter.protocol import b64decode
    from secsync_jupyter.sharelink import format_share_link

    stored = page.evaluate(
        """() => Object.keys(localStorage)
             .filter((k) => k.startsWith('secsync-jupyter:doc-key:'))
             .map((k) => [k.slice('secsync-jupyter:doc-key:'.length), localStorage.getItem(k)])"""
    )
    assert len(stored) == 1, stored
    doc_id, key = stored[0]
    return format_share_link(doc_id, b64decode(key), server_url=lab.url)


def test_browser_admin_removal_rotates_and_python_reads(lab, browser):
    canary = f"BROWSER0-{secrets.token_hex(4)}"
    stays, id_stays = python_identity("python-stays")
    _, id_removed = python_identity("python-removed")
    with _session(browser, "owner-rotates") as a:
        _start(lab, a, "owner-rotates")
        _execute(a, "secsync:new-notebook")
        a.wait_for_selector(SYNCED, timeout=60_000)
        _type_at_end(a, 0, f"x = '{canary}'")
        a.wait_for_selector(SYNCED, timeout=30_000)
        link = _key_link(lab, a)  # carries the epoch-0 key only
        _add_member(a, id_stays, "editor")
        _add_member(a, id_removed, "editor")

        _remove(a, id_removed)  # then the browser rotates (an admin's removal)
        new = f"BROWSER1-{secrets.token_hex(4)}"
        _type_at_end(a, 0, f" # {new}")
        a.wait_for_selector(SYNCED, timeout=30_000)

        epoch, keys, source = _python(_python_reads(link, stays, new))
        assert (epoch, keys) == (1, [0, 1])
        assert canary in source and new in source
