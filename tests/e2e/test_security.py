"""Untrusted content and links, in real Chromium (issue 9, browser side).

* A collaborator (the Python client holding the share link) writes cells with
  ``metadata.trusted = true`` and outputs that try to run script (HTML ``<script>``, an
  ``onerror`` handler, an ``application/javascript`` output), into a notebook open in the
  victim's browser: added live, updated live in a cell the victim ran itself, after the
  stock "Trust Notebook" command, after a reload. No script runs; the outputs show sanitized.
  The victim's own fresh output does render as JupyterLab renders fresh outputs (this
  session only).
* A share link whose key differs from the stored key asks, showing both fingerprints, and
  keeps the stored key unless told otherwise.
* A share link naming a relay other than this server's and the configured one asks, naming
  the relay's host; declining connects nowhere and stores nothing. Plain ws:// to a
  non-loopback host is refused unless the ``allowInsecureRelay`` setting allows it. A pointer
  file naming such a relay asks as well.
* The ``relaySessionKey`` setting goes only to the configured relay: the WebSocket URLs the
  page opens (``page.on("websocket")``) carry it for that relay and never for another.

The "non-loopback" relay host ``relay.example.test`` is mapped to 127.0.0.1 inside Chromium
(``--host-resolver-rules``): no traffic leaves the machine, whatever the code under test does.

Run:  .venv/bin/python -m pytest -m browser tests/e2e/test_security.py -s
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import secrets
import time
import urllib.parse

import pytest

from secsync_jupyter.protocol import b64decode, b64encode
from secsync_jupyter.sharelink import format_share_link, parse_share_link

from .helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    NB,
    TOKEN,
    _add_member,
    _cell_editor,
    _execute,
    _new_page,
    _share_link,
    _wait_app,
    _wait_cell_text,
    _wait_kernel_ready,
    _with_token,
    notebook_json,
    python_identity,
)

pytestmark = pytest.mark.browser

FOREIGN_NAME = "relay.example.test"


def _html(marker: str, script_value: int, onerror_value: int) -> dict:
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "text/html": f"<b>{marker}</b><script>window.__pwned = {script_value}</script>"
            f'<img src="x" onerror="window.__pwned = {onerror_value}">',
            "text/plain": f"{marker} (text)",
        },
    }


JS_OUTPUT = {
    "output_type": "display_data",
    "metadata": {},
    "data": {"application/javascript": "window.__pwned = 3", "text/plain": "PWN-JS-TEXT"},
}
OWN_CODE = (
    "from IPython.display import HTML, display; "
    "display(HTML('<b>OWN-OUTPUT</b><script>window.__own = 1</script>'))"
)


# ----------------------------------------------------------------------------------------
# fixtures and helpers
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def foreign_relay(lab_remote) -> str:
    """A standalone relay that is neither the lab's own nor the configured one (no session
    keys: it would accept anyone's)."""
    return lab_remote.start_relay("foreign-relay")


@pytest.fixture
def browser(foreign_relay):
    # (per test: a Playwright loop left running across tests breaks the teardown of the
    # event loop fixtures of other plugins)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {FOREIGN_NAME} 127.0.0.1"]
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def _session(browser, name: str):
    """A fresh browser context (own storage) and page; yields (page, websocket URLs)."""
    logs: list[str] = []
    ctx, page = _new_page(browser, name, logs)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        yield page, sockets
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=ARTIFACTS / f"e2e-security-{name}-failure.png")
        raise
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"e2e-security-{name}-console.log").write_text("\n".join(logs))
        ctx.close()


def _python(coro) -> object:
    """Runs a coroutine of the Python client (own thread: sync Playwright keeps a loop here)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=120)


async def _create_document(link: str, text: str, session_key: str | None = None) -> None:
    from secsync_jupyter import open_notebook

    async with open_notebook(link, session_key=session_key, user={"name": "python-e2e"}) as nb:
        nb.set(notebook_json(f"x = '{text}'"))
        await nb.synced(timeout=30)


def _new_document_on(relay: str, text: str) -> tuple[str, bytes]:
    doc_id = b64encode(secrets.token_bytes(24))
    key = secrets.token_bytes(32)
    _python(_create_document(format_share_link(doc_id, key, relay=relay), text))
    return doc_id, key


def _key_fingerprint(key: bytes) -> str:
    """What the extension shows for a document key (keystore.ts keyFingerprint)."""
    digest = hashlib.blake2b(b"secsync document key\n" + key, digest_size=8).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, 16, 4))


def _stored_key(page, doc_id: str) -> bytes | None:
    value = page.evaluate("(d) => localStorage.getItem('secsync-jupyter:doc-key:' + d)", doc_id)
    return None if value is None else b64decode(value)


def _pointers_for(lab, doc_id: str) -> list[str]:
    found = []
    for p in lab.root.glob("*.secnb"):
        with contextlib.suppress(ValueError):
            if json.loads(p.read_text()).get("docId") == doc_id:
                found.append(p.name)
    return found


def _wait_output_text(page, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "([s, t]) => [...document.querySelectorAll(s + ' .jp-OutputArea-output')]"
        ".some(o => o.textContent.includes(t))",
        arg=[NB, text],
        timeout=timeout,
    )


def _session_key_in(url: str) -> str:
    """The sessionKey query parameter of a WebSocket URL ('' when absent or empty; the
    Secsync client always sends the parameter)."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("sessionKey", [""])
    return values[0]


def _wait_sockets(page, sockets: list[str], predicate, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [u for u in sockets if predicate(u)]
        if found:
            return found
        page.wait_for_timeout(100)  # (Playwright delivers page events inside its calls)
    raise AssertionError(f"no such WebSocket within {timeout}s; opened: {sockets}")


# Waits until every image in the notebook has finished loading or failing (so an inline
# onerror handler, had it survived, has run), then reports what could run script.
SCRIPT_STATE = """async (sel) => {
  const nb = document.querySelector(sel);
  const imgs = [...nb.querySelectorAll('img')];
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(resolve => {
    img.addEventListener('load', resolve, { once: true });
    img.addEventListener('error', resolve, { once: true });
  })));
  const outputs = [...nb.querySelectorAll('.jp-OutputArea-output')]
    .filter(o => o.textContent.includes('PWN-'));
  return {
    pwned: window.__pwned === undefined ? null : window.__pwned,
    scripts: nb.querySelectorAll('script').length,
    handlers: imgs.filter(img => img.hasAttribute('onerror')).length,
    trustedOutputs: outputs.filter(o => o.classList.contains('jp-mod-trusted')).length,
    javascriptRenderers: nb.querySelectorAll('.jp-RenderedJavaScript').length,
    sanitizedHtml: outputs.filter(o => o.classList.contains('jp-RenderedHTMLCommon')
      && /^PWN-HTML-\\d$/.test((o.querySelector('b') || {}).textContent || '')
      && o.querySelector('img')).length,
    javascriptAsText: outputs.filter(o => o.textContent.includes('PWN-JS-TEXT')).length,
    html: outputs.map(o => o.outerHTML),
  };
}"""


def _assert_no_script(page, html_outputs: int) -> None:
    state = page.evaluate(SCRIPT_STATE, NB)
    html = state.pop("html")
    assert state == {
        "pwned": None,
        "scripts": 0,
        "handlers": 0,
        "trustedOutputs": 0,
        "javascriptRenderers": 0,
        "sanitizedHtml": html_outputs,
        "javascriptAsText": 1,
    }, (state, html)


async def _attack(link: str, session_key: str, signing_key) -> None:
    """A collaborator's writes (an editor of the notebook): a 'trusted' cell with script
    outputs (added live), a new output in the victim's own cell (updated live), an untrusted
    cell with a script output, a Markdown cell with an onerror handler."""
    from secsync_jupyter import open_notebook

    async with open_notebook(
        link, session_key=session_key, signing_key=signing_key, user={"name": "mallory"}
    ) as nb:
        nb.add_code_cell(
            "pass",
            metadata={"trusted": True},
            outputs=[_html("PWN-HTML-1", 1, 2), JS_OUTPUT],
            execution_count=1,
        )
        await nb.synced(timeout=30)
        own = nb.cells[0]
        own.outputs = [*own.outputs, _html("PWN-HTML-2", 4, 5)]
        nb.add_code_cell("pass", outputs=[_html("PWN-HTML-3", 6, 7)], execution_count=2)
        nb.add_markdown_cell('PWN-MD <img src="y" onerror="window.__pwned = 8">')
        await nb.synced(timeout=30)


# ----------------------------------------------------------------------------------------
# 1. trust is local
# ----------------------------------------------------------------------------------------


def test_collaborator_outputs_never_run_script(lab_remote, browser):
    lab = lab_remote
    with _session(browser, "V") as (v, _):
        v.goto(f"{lab.url}lab/workspaces/v?token={TOKEN}")
        _wait_app(v)
        _execute(v, "secsync:new-notebook")
        v.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=30_000)
        link = _share_link(v)

        # The victim runs a cell: its own fresh output renders as JupyterLab renders fresh
        # outputs (the script runs, in this session).
        _wait_kernel_ready(v)
        _cell_editor(v, 0).click()
        v.keyboard.type(OWN_CODE)
        v.keyboard.press("Escape")  # (closes a completer, if any)
        v.keyboard.press("Control+Enter")
        _wait_output_text(v, "OWN-OUTPUT", timeout=120_000)
        assert v.evaluate("() => window.__own") == 1
        v.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=30_000)

        # A collaborator (an editor the victim added) writes script into the document.
        mallory, identity = python_identity("mallory")
        _add_member(v, identity, "editor")
        _python(_attack(link, lab.session_key, mallory))
        # (the JavaScript output is in the cell of PWN-HTML-1: rendered with it)
        for marker in ("PWN-HTML-1", "PWN-HTML-2", "PWN-HTML-3"):
            _wait_output_text(v, marker)
        v.wait_for_function(
            "(s) => document.querySelector(s).textContent.includes('PWN-MD')", arg=NB
        )
        _assert_no_script(v, html_outputs=3)

        # The stock "Trust Notebook" command re-renders the untrusted cell's outputs: still
        # untrusted (trust written into the shared document has no effect).
        # (a re-render replaces the content of the output node: mark the old content)
        v.evaluate(
            "(s) => document.querySelectorAll(s + ' .jp-OutputArea-output b')"
            ".forEach(b => { b.dataset.before = '1'; })",
            NB,
        )
        _execute(v, "notebook:trust")
        v.click(".jp-Dialog .jp-Dialog-button.jp-mod-warn")
        v.wait_for_function(
            """(s) => [...document.querySelectorAll(s + ' .jp-OutputArea-output b')]
              .some(b => b.textContent === 'PWN-HTML-3' && !b.dataset.before)""",
            arg=NB,
            timeout=30_000,
        )
        _assert_no_script(v, html_outputs=3)

        # After a reload (the tab is restored by JupyterLab's layout restorer), everything
        # comes from the relay: untrusted, the victim's own earlier output included.
        v.reload()
        _wait_app(v)
        for marker in ("OWN-OUTPUT", "PWN-HTML-1", "PWN-HTML-2", "PWN-HTML-3"):
            _wait_output_text(v, marker)
        v.wait_for_function(
            "(s) => document.querySelector(s).textContent.includes('PWN-MD')", arg=NB
        )
        _assert_no_script(v, html_outputs=3)
        assert v.evaluate("() => window.__own === undefined")


# ----------------------------------------------------------------------------------------
# 2. links
# ----------------------------------------------------------------------------------------


def test_link_with_another_key_keeps_the_stored_key(lab_remote, browser):
    lab = lab_remote
    canary = f"KEYCANARY-{secrets.token_hex(4)}"
    with _session(browser, "K") as (a, _):
        a.goto(f"{lab.url}lab/workspaces/k?token={TOKEN}")
        _wait_app(a)
        _execute(a, "secsync:new-notebook")
        a.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=30_000)
        _cell_editor(a, 0).click()
        a.keyboard.type(f"x = '{canary}'")
        a.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=30_000)
        link = _share_link(a)
        parsed = parse_share_link(link)
        stored, other = parsed.key, secrets.token_bytes(32)
        wrong = link.split("#")[0] + "#key=" + b64encode(other)

        # Someone's link: the right document id, another key. Asked; "keep" keeps it.
        lab.reset_workspace()
        a.goto(_with_token(wrong))
        a.locator(".jp-secsync-KeyConflict").wait_for(timeout=60_000)
        assert a.locator(".jp-secsync-KeyConflict-stored").inner_text() == _key_fingerprint(stored)
        assert a.locator(".jp-secsync-KeyConflict-link").inner_text() == _key_fingerprint(other)
        a.click(".jp-Dialog .jp-Dialog-button.jp-mod-reject")
        _wait_cell_text(a, 0, canary, timeout=60_000)  # opened with the stored key
        assert _stored_key(a, parsed.doc_id) == stored

        # Escape (the default answer) keeps it too.
        lab.reset_workspace()
        a.goto(_with_token(wrong))
        a.locator(".jp-secsync-KeyConflict").wait_for(timeout=60_000)
        a.keyboard.press("Escape")
        _wait_cell_text(a, 0, canary, timeout=60_000)
        assert _stored_key(a, parsed.doc_id) == stored

        # Only an explicit choice replaces it.
        lab.reset_workspace()
        a.goto(_with_token(wrong))
        a.locator(".jp-secsync-KeyConflict").wait_for(timeout=60_000)
        a.click(".jp-Dialog .jp-Dialog-button.jp-mod-warn")
        a.wait_for_function(
            "([d, k]) => localStorage.getItem('secsync-jupyter:doc-key:' + d) === k",
            arg=[parsed.doc_id, b64encode(other)],
            timeout=30_000,
        )
    lab.reset_workspace()


def test_link_naming_a_foreign_relay_asks_and_never_gets_the_session_key(
    lab_remote, browser, foreign_relay
):
    lab = lab_remote
    canary = f"FOREIGNCANARY-{secrets.token_hex(4)}"
    doc_id, key = _new_document_on(foreign_relay, canary)
    link = _with_token(format_share_link(doc_id, key, relay=foreign_relay, server_url=lab.url))
    host = urllib.parse.urlsplit(foreign_relay).netloc
    to_foreign = lambda u: u.startswith(foreign_relay + "/")  # noqa: E731

    with _session(browser, "F") as (b, sockets):
        # Declined: nothing stored, no pointer file, no connection.
        lab.reset_workspace()
        b.goto(link)
        b.locator(".jp-secsync-ForeignRelay").wait_for(timeout=60_000)
        assert b.locator(".jp-secsync-ForeignRelay-host").inner_text() == host
        assert host in b.locator(".jp-Dialog-header").inner_text()
        b.click(".jp-Dialog .jp-Dialog-button.jp-mod-reject")
        b.get_by_text("The shared notebook was not opened.").wait_for(timeout=30_000)
        assert _stored_key(b, doc_id) is None
        assert _pointers_for(lab, doc_id) == []
        assert not [u for u in sockets if to_foreign(u)], sockets

        # Confirmed: the notebook opens through that relay, without the session key.
        lab.reset_workspace()
        b.goto(link)
        b.locator(".jp-secsync-ForeignRelay").wait_for(timeout=60_000)
        b.click(".jp-Dialog .jp-Dialog-button.jp-mod-warn")
        _wait_cell_text(b, 0, canary, timeout=60_000)
        (pointer,) = _pointers_for(lab, doc_id)
        assert json.loads((lab.root / pointer).read_text())["relay"] == foreign_relay
        foreign_urls = _wait_sockets(b, sockets, to_foreign)
        assert [_session_key_in(u) for u in foreign_urls] == [""] * len(foreign_urls), foreign_urls

        # Positive control: a new notebook goes to the configured relay, with the key.
        _execute(b, "secsync:new-notebook")
        configured = _wait_sockets(b, sockets, lambda u: u.startswith(lab.relay_url + "/"))
        assert _session_key_in(configured[0]) == lab.session_key, configured
        b.wait_for_selector(".jp-secsync-StatusItem[data-state='synced']", timeout=30_000)

        # The confirmation is remembered for that relay: a reload does not ask again.
        b.reload()
        _wait_app(b)
        b.evaluate(
            "(p) => { void window.jupyterapp.commands.execute('docmanager:open', {path: p}); }",
            pointer,
        )
        _wait_cell_text(b, 0, canary, timeout=60_000)
        assert b.locator(".jp-secsync-ForeignRelay").count() == 0
        assert all(_session_key_in(u) == "" for u in sockets if to_foreign(u)), sockets
    lab.reset_workspace()


def test_plain_ws_relay_on_another_host_is_refused_unless_allowed(
    lab_remote, browser, foreign_relay
):
    lab = lab_remote
    canary = f"INSECURECANARY-{secrets.token_hex(4)}"
    doc_id, key = _new_document_on(foreign_relay, canary)
    port = urllib.parse.urlsplit(foreign_relay).port
    insecure = f"ws://{FOREIGN_NAME}:{port}"
    link = _with_token(format_share_link(doc_id, key, relay=insecure, server_url=lab.url))
    to_insecure = lambda u: FOREIGN_NAME in urllib.parse.urlsplit(u).netloc  # noqa: E731

    with _session(browser, "W") as (c, sockets):
        lab.reset_workspace()
        c.goto(link)
        _wait_app(c)
        # a link that cannot be opened is explained in a dialog (07ae59e), in words
        refused = c.locator(".jp-Dialog", has_text="This link cannot be opened")
        refused.filter(has_text=f"Refused: plain ws:// to {FOREIGN_NAME}:{port}").wait_for(
            timeout=60_000
        )
        assert c.locator(".jp-secsync-ForeignRelay").count() == 0
        assert _stored_key(c, doc_id) is None
        assert _pointers_for(lab, doc_id) == []
        assert not [u for u in sockets if to_insecure(u)], sockets

    # With the setting on, the relay is a foreign one like any other: asked, by its host.
    base = {"relayUrl": lab.relay_url, "relaySessionKey": lab.session_key}
    lab.set_settings({**base, "allowInsecureRelay": True})
    try:
        with _session(browser, "W2") as (c, sockets):
            lab.reset_workspace()
            c.goto(link)
            c.locator(".jp-secsync-ForeignRelay").wait_for(timeout=60_000)
            assert c.locator(".jp-secsync-ForeignRelay-host").inner_text() == (
                f"{FOREIGN_NAME}:{port}"
            )
            c.click(".jp-Dialog .jp-Dialog-button.jp-mod-warn")
            _wait_cell_text(c, 0, canary, timeout=60_000)
            urls = _wait_sockets(c, sockets, to_insecure)
            assert all(_session_key_in(u) == "" for u in urls), urls
    finally:
        lab.set_settings(base)
        lab.reset_workspace()


def test_pointer_file_naming_an_unconfirmed_relay_asks(lab_remote, browser, foreign_relay):
    lab = lab_remote
    port = urllib.parse.urlsplit(foreign_relay).port
    relay = f"ws://localhost:{port}"  # loopback, but neither this server's nor configured
    doc_id = b64encode(secrets.token_bytes(24))
    pointer = {"format": "secsync-notebook", "version": 1, "docId": doc_id, "relay": relay}
    lab.api(
        "PUT",
        "api/contents/elsewhere.secnb",
        {"type": "file", "format": "text", "content": json.dumps(pointer)},
    )
    with _session(browser, "P") as (d, sockets):
        d.goto(f"{lab.url}lab/workspaces/p?token={TOKEN}")
        _wait_app(d)
        _execute(d, "docmanager:open", {"path": "elsewhere.secnb"})
        # no key here: the panel asks for the link first (issue 15), then the relay is asked
        locked = d.locator(".jp-secsync-Locked input")
        locked.wait_for(timeout=60_000)
        locked.fill(format_share_link(doc_id, secrets.token_bytes(32), server_url=lab.url))
        locked.press("Enter")
        d.locator(".jp-secsync-ForeignRelay").wait_for(timeout=60_000)
        assert d.locator(".jp-secsync-ForeignRelay-host").inner_text() == f"localhost:{port}"
        d.click(".jp-Dialog .jp-Dialog-button.jp-mod-reject")
        d.get_by_text("the relay of elsewhere.secnb was not confirmed").first.wait_for(
            timeout=30_000
        )
        assert not [u for u in sockets if f"localhost:{port}" in u], sockets
