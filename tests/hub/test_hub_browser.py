"""Two Hub users in two Chromium contexts, each in their own single-user server (JupyterLab
spawned by the Hub), edit one encrypted notebook through the Hub-proxied relay service. The
labextension is configured once for the whole Hub (overrides.json: relayUrl +
relayIsHubService) and logs in to the relay with the Hub's OAuth flow: no secret in settings."""

from __future__ import annotations

import contextlib
import json
import secrets
import urllib.parse

import pytest

from ..e2e.helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    NB,
    _add_member,
    _cell_editor,
    _focus_end_of_cell,
    _my_identity,
    _new_page,
    _share_link,
    _wait_app,
    _wait_cell_text,
)
from .conftest import PASSWORD, SERVICE, hub_files

pytestmark = pytest.mark.browser


def _login(page, hub, user: str) -> None:
    page.goto(f"{hub.url}/hub/login?next=/user/{user}/lab")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    _wait_app(page)


def test_two_hub_users_type_into_one_encrypted_notebook(hub):
    from playwright.sync_api import sync_playwright

    canary = f"HUBCANARY-{secrets.token_hex(6)}"
    from_bob = f"FROMBOB-{secrets.token_hex(4)}"
    out_prefix = f"HUBOUT{secrets.token_hex(4)}"
    output = f"{out_prefix}-bob-token-42"
    for user in ("alice", "bob"):
        hub.start_server(user)
    logs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        a = b = None
        try:
            _, a = _new_page(browser, "alice", logs)
            _, b = _new_page(browser, "bob", logs)
            _login(a, hub, "alice")
            a.evaluate(
                "async () => { await window.jupyterapp.commands.execute('secsync:new-notebook'); }"
            )
            a.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=90_000)
            (pointer_file,) = (hub.users_dir / "alice").glob("*.secnb")
            pointer = json.loads(pointer_file.read_text())
            assert pointer["relay"].endswith(f"/services/{SERVICE}"), pointer
            _focus_end_of_cell(a, 0)
            a.keyboard.type(f"s = '{canary}'")
            # new notebooks have a membership log (issue 11): bob copies his identity in his
            # own JupyterLab, alice adds him as an editor, then sends the link
            _login(b, hub, "bob")
            _add_member(a, _my_identity(b), "editor")
            link = _share_link(a)
            # the link opens in the reader's own server (the Hub's user-redirect), so bob
            # needs no access to alice's server
            parts = urllib.parse.urlsplit(link)
            assert parts.path == f"/hub/user-redirect/secsync/open/{pointer['docId']}", link
            assert urllib.parse.parse_qs(parts.query) == {"relay": [pointer["relay"]]}, link
            b.goto(link)
            _wait_app(b)
            assert urllib.parse.urlsplit(b.url).path.startswith("/user/bob/"), b.url
            _wait_cell_text(b, 0, canary, timeout=90_000)
            _focus_end_of_cell(b, 0)
            b.keyboard.type(f" # {from_bob}")
            _wait_cell_text(a, 0, from_bob, timeout=60_000)
            # bob runs a cell in his own kernel; alice sees the output (computed, so the
            # output text appears nowhere in the source)
            b.keyboard.press("Escape")
            b.keyboard.press("b")
            b.wait_for_function(
                "(s) => document.querySelectorAll(s + ' .jp-Cell').length === 2", arg=NB
            )
            # the cell asks the relay who it is with the server's token (kernels inherit
            # JUPYTERHUB_API_TOKEN): the Python client in a kernel authenticates the same way
            # (set as the cell's source in one change: typing is tested above)
            code = (
                "import os, json, urllib.request as u\n"
                f"r = u.Request('{hub.url}/services/{SERVICE}/whoami', headers="
                "{'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
                "me = json.load(u.urlopen(r))\n"
                f"print('{out_prefix}' + '-' + me['name'] + '-' + me['via'] + '-' + str(6 * 7))"
            )
            _cell_editor(b, 1).click()
            b.evaluate(
                "(code) => window.jupyterapp.shell.currentWidget.content.activeCell"
                ".model.sharedModel.setSource(code)",
                code,
            )
            b.keyboard.press("Control+Enter")
            a.wait_for_function(
                "([s, t]) => [...document.querySelectorAll(s + ' .jp-OutputArea-output')]"
                ".some(e => e.textContent.includes(t))",
                arg=[NB, output],
                timeout=120_000,
            )
            for page in (a, b):
                page.wait_for_selector(
                    ".jp-secsync-StatusItem[data-state='synced']", timeout=60_000
                )
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            for name, page in (("alice", a), ("bob", b)):
                if page is not None:
                    with contextlib.suppress(Exception):
                        page.screenshot(path=ARTIFACTS / f"hub-{name}-failure.png")
                    with contextlib.suppress(Exception):
                        status = page.evaluate(
                            "() => [...document.querySelectorAll('.jp-secsync-StatusItem')]"
                            ".map(e => e.outerHTML).join('\\n')"
                        )
                        logs.append(f"[{name}] status: {status}")
            (ARTIFACTS / "hub-console.log").write_text("\n".join(logs))
            (ARTIFACTS / "hub.log").write_text(hub.log())
            raise
        finally:
            browser.close()
    log = hub.log()
    assert f"Hub user alice connected to {pointer['docId']} (cookie)" in log
    assert f"Hub user bob connected to {pointer['docId']} (cookie)" in log
    for path, data in hub_files(hub).items():
        # (the kernel's IPython history keeps the *source* bob ran, in bob's directory: the
        # kernel caveat of docs/threat-model.md; the output and the typed text stay out)
        for needle in (canary, from_bob, output):
            assert needle.encode() not in data, (needle, path)
