"""Shared parts of the Chromium end-to-end tests: JupyterLab (with the freshly built
labextension and the embedded relay) on a temporary root, standalone relays, page helpers.

Fixtures using these live in conftest.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
CHROMIUM = os.environ.get("SECSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# the built extension to test (override to compare builds)
BUILT_EXTENSION = pathlib.Path(
    os.environ.get("SECSYNC_E2E_EXTENSION_DIR", REPO / "secsync_jupyter" / "labextension")
)
ARTIFACTS = REPO / "test-artifacts"
TOKEN = secrets.token_hex(16)
PLUGIN_ID = "secsync-jupyter:plugin"

# ----------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: pathlib.Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited early ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not come up in {timeout}s:\n{log.read_text()[-4000:]}")


def _wait_tcp(port: int, timeout: float, proc: subprocess.Popen, log: pathlib.Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited early ({proc.returncode}):\n{log.read_text()[-4000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    pytest.fail(f"port {port} did not open in {timeout}s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _embedded_relay_available() -> bool:
    try:
        return importlib.util.find_spec("secsync_jupyter.relay.extension") is not None
    except ModuleNotFoundError:
        return False


class Lab:
    def __init__(self, base: pathlib.Path):
        self.base = base
        self.root = base / "root"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[pathlib.Path] = []
        self.relay_mode = ""
        self.relay_url = ""  # '' = the Jupyter server's own relay
        self.session_key = ""  # the relaySessionKey setting ('' = none)
        self.env: dict[str, str] = {}

    def reset_workspace(self) -> None:
        """Forget the server-side default workspace (so a fresh browser restores no tabs)."""
        with contextlib.suppress(urllib.error.HTTPError):
            self.api("DELETE", "lab/api/workspaces/default")

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read() or b"{}")

    def set_settings(self, values: dict) -> None:
        """Replaces the extension's user settings (takes effect in pages loaded afterwards)."""
        self.api("PUT", f"lab/api/settings/{PLUGIN_ID}", {"raw": json.dumps(values)})

    def start_relay(self, name: str, session_keys: list[str] | None = None) -> str:
        """A standalone `secsync-relay` on a free loopback port (stopped with the lab);
        returns its ws:// base URL."""
        port = _free_port()
        work = self.base / "work"
        args = [str(BIN / "secsync-relay"), f"--port={port}", f"--db={work / (name + '.sqlite')}"]
        if session_keys is not None:
            keys = work / f"{name}-session-keys.txt"
            keys.write_text("".join(k + "\n" for k in session_keys))
            args.append(f"--session-keys={keys}")
        else:
            args.append("--open")  # accepts any client (a relay someone else runs)
        log = self.base / f"{name}.log"
        self.logs.append(log)
        proc = subprocess.Popen(
            args, env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=work
        )
        self.procs.append(proc)
        _wait_tcp(port, 60, proc, log)
        return f"ws://127.0.0.1:{port}"


@contextlib.contextmanager
def _lab_session(base: pathlib.Path, remote_relay: bool = False, artifact_prefix: str = "e2e"):
    """JupyterLab (+ embedded relay) on a temporary root; with `remote_relay`, also a
    standalone `secsync-relay` (session keys required) set as the relay for new notebooks
    (`relayUrl` + `relaySessionKey` settings)."""
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    if not (BUILT_EXTENSION / "package.json").exists():
        pytest.fail("labextension not built: cd labextension && npm ci && npm run build")
    if not _embedded_relay_available():
        pytest.fail("the secsync_jupyter server extension (relay) is not importable")
    lab = Lab(base)
    lab.root.mkdir()
    for d in ("data", "runtime", "config", "ipython", "workspaces", "settings", "ext", "work"):
        (base / d).mkdir()
    # The freshly built extension (takes precedence over an installed copy).
    (base / "ext" / "secsync-jupyter").symlink_to(BUILT_EXTENSION)
    settings = base / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ)
    env.update(
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        IPYTHONDIR=str(base / "ipython"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    lab.env = env
    lab.relay_mode = "embedded (secsync_jupyter server extension)"
    extra_args = [f"--SecsyncRelayExtension.db_path={base / 'work' / 'relay.sqlite'}"]
    lab.logs.append(base / "lab.log")
    try:
        if remote_relay:
            lab.session_key = secrets.token_hex(8)
            lab.relay_url = lab.start_relay("remote-relay", session_keys=[lab.session_key])
            lab.relay_mode = "remote (standalone secsync-relay, relayUrl setting)"
            (settings / "secsync-jupyter").mkdir()
            (settings / "secsync-jupyter" / "plugin.jupyterlab-settings").write_text(
                json.dumps({"relayUrl": lab.relay_url, "relaySessionKey": lab.session_key})
            )
        cmd = [
            str(BIN / "jupyter-lab"),
            "--no-browser",
            "--allow-root",
            f"--ServerApp.port={lab.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={lab.root}",
            f"--IdentityProvider.token={TOKEN}",
            f"--LabApp.extra_labextensions_path={base / 'ext'}",
            "--LabApp.expose_app_in_browser=True",
            *extra_args,
            # extra server options, e.g. to compare relay settings
            *os.environ.get("SECSYNC_E2E_LAB_ARGS", "").split(),
        ]
        proc = subprocess.Popen(
            cmd, env=env, cwd=base / "work", stdout=lab.logs[0].open("w"), stderr=subprocess.STDOUT
        )
        lab.procs.append(proc)
        _wait_http(f"{lab.url}api/status?token={TOKEN}", 120, proc, lab.logs[0])
        yield lab
    finally:
        for p in reversed(lab.procs):
            _stop(p)
        ARTIFACTS.mkdir(exist_ok=True)
        for log in lab.logs:
            if log.exists():
                shutil.copy(log, ARTIFACTS / f"{artifact_prefix}-{log.name}")


# ----------------------------------------------------------------------------------------
# page helpers
# ----------------------------------------------------------------------------------------

NB = "#jp-main-dock-panel .jp-NotebookPanel:not(.lm-mod-hidden)"
DIRTY_TAB = "#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty"
CLOSE_ALL = "async () => { await window.jupyterapp.commands.execute('application:close-all'); }"


def _new_page(browser, name: str, logs: list[str], init_script: str | None = None):
    ctx = browser.new_context(viewport={"width": 900, "height": 640})
    if init_script:
        ctx.add_init_script(init_script)
    page = ctx.new_page()
    page.on("console", lambda m: logs.append(f"[{name}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: logs.append(f"[{name}] pageerror: {e}"))
    return ctx, page


@contextlib.contextmanager
def _browser_session(browser, prefix: str, name: str):
    """A new page of a fresh browser context named ``name``; its console goes to
    ``ARTIFACTS/<prefix>-<name>-console.log``, a failure's screenshot next to it."""
    logs: list[str] = []
    ctx, page = _new_page(browser, name, logs)
    try:
        yield page
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=ARTIFACTS / f"{prefix}-{name}-failure.png")
        raise
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{prefix}-{name}-console.log").write_text("\n".join(logs))
        ctx.close()


def _python(coro):
    """Runs a coroutine of the Python client (own thread: sync Playwright keeps a loop here)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=120)


def _start(lab, page, workspace: str) -> None:
    page.goto(f"{lab.url}lab/workspaces/{workspace}?token={TOKEN}")
    _wait_app(page)


def _wait_app(page) -> None:
    page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.commands.hasCommand('secsync:new-notebook')",
        timeout=90_000,
    )


def _cell_editor(page, index: int):
    return page.locator(f"{NB} .jp-Cell").nth(index).locator(".cm-content")


def _cells_text(page) -> str:
    return page.locator(NB).inner_text()


def _type_at_end(page, index: int, text: str) -> None:
    _cell_editor(page, index).click()
    page.keyboard.press("Control+End")
    page.keyboard.type(text)


def _focus_end_of_cell(page, index: int) -> None:
    _cell_editor(page, index).click()
    page.keyboard.press("Control+End")


def _wait_cell_text(page, index: int, text: str, timeout: float = 20_000) -> None:
    page.wait_for_function(
        """([sel, i, text]) => {
          const cells = document.querySelectorAll(sel + ' .jp-Cell');
          return cells[i] && cells[i].querySelector('.cm-content')
            && cells[i].querySelector('.cm-content').textContent.includes(text);
        }""",
        arg=[NB, index, text],
        timeout=timeout,
    )


def _wait_workspace_lists(lab, workspace: str, paths: list[str], timeout: float = 60.0) -> None:
    """Waits until JupyterLab saved workspace `workspace` with every one of `paths` in it (a
    reload restores only what the server had saved)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = json.dumps(lab.api("GET", f"lab/api/workspaces/{workspace}"))
        if all(json.dumps(p)[1:-1] in data for p in paths):
            return
        time.sleep(0.2)
    raise AssertionError(f"the workspace never listed {paths}")


def _wait_kernel_ready(page, timeout: float = 120_000) -> None:
    """Waits until the current notebook's kernel is started, connected and idle."""
    page.wait_for_function(
        """async () => {
          const sc = window.jupyterapp.shell.currentWidget?.sessionContext;
          const kernel = sc?.session?.kernel;
          if (!sc || !sc.isReady || !kernel) { return false; }
          await kernel.info;
          return kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        }""",
        timeout=timeout,
        polling=250,
    )


def _execute(page, command: str, args: dict | None = None) -> None:
    """Starts a JupyterLab command (does not wait for it: it may open a dialog)."""
    page.evaluate(
        "([c, a]) => { void window.jupyterapp.commands.execute(c, a); }", [command, args or {}]
    )


_KEY_LINK_JS = r"""async () => {
  const app = window.jupyterapp;
  const path = app.shell.currentWidget.context.path;
  const file = await app.serviceManager.contents.get(
    path, {type: 'file', format: 'text', content: true});
  const pointer = JSON.parse(file.content);
  const key = localStorage.getItem('secsync-jupyter:doc-key:' + pointer.docId);
  if (!key) { throw new Error('no epoch-0 key stored for ' + pointer.docId); }
  const config = JSON.parse(document.getElementById('jupyter-config-data').textContent);
  const base = new URL(config.baseUrl, location.href).href.replace(/\/*$/, '/');
  const hub = config.hubPrefix;
  const root = pointer.relay && hub
    ? new URL(hub.replace(/\/*$/, '/') + 'user-redirect/', location.href).href : base;
  const own = base.replace(/^http/, 'ws') + 'secsync';
  const relay = pointer.relay && (hub || pointer.relay !== own) ? pointer.relay : null;
  return root + 'secsync/open/' + encodeURIComponent(pointer.docId)
    + (relay ? '?relay=' + encodeURIComponent(relay) : '') + '#key=' + key;
}"""


def _share_link(page) -> str:
    """The `#key=` share link of the current encrypted notebook (docs/share-links.md).

    A notebook without a membership log: from the Copy Share Link dialog. A notebook with a
    log (New Encrypted Notebook): Copy Share Link opens the Share dialog (invitation links)
    and shows no key, so the link is made here from the epoch-0 key this browser stores and
    the pointer file, in the format of `shareLinkFor` (links.ts) - for tests that hand that
    key to a member (a Python client, another browser) as before issue 12's change."""
    doc_id = page.evaluate(
        "async () => JSON.parse((await window.jupyterapp.serviceManager.contents.get("
        "window.jupyterapp.shell.currentWidget.context.path,"
        " {type: 'file', format: 'text', content: true})).content).docId"
    )
    if doc_id.startswith("m1_"):
        return page.evaluate(_KEY_LINK_JS)
    _execute(page, "secsync:copy-share-link")
    field = page.locator("input.jp-secsync-ShareLink")
    field.wait_for(timeout=20_000)
    link = field.input_value()
    page.keyboard.press("Escape")
    field.wait_for(state="detached", timeout=20_000)
    return link


def notebook_json(*sources: str) -> dict:
    """An nbformat 4 notebook (Python 3 kernel) with one code cell per source."""
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"c{i}",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "source": source,
            }
            for i, source in enumerate(sources)
        ],
    }


def _relay_storage(db: pathlib.Path) -> list[pathlib.Path]:
    """The SQLite database and its -wal/-shm companions."""
    return [p for p in db.parent.glob(db.name + "*") if p.is_file()]


def _with_token(link: str) -> str:
    """The share link, authenticated for a browser without a Jupyter login cookie."""
    sep = "&" if urllib.parse.urlsplit(link).query else "?"
    return link.replace("#", f"{sep}token={TOKEN}#", 1)


def scan_for(needle: bytes, roots: list[pathlib.Path]) -> list[str]:
    hits = []
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for p in paths:
            with contextlib.suppress(OSError):
                if needle in p.read_bytes():
                    hits.append(str(p))
    return hits


# ----------------------------------------------------------------------------------------
# members and roles (issue 11): sharing a notebook with another browser
# ----------------------------------------------------------------------------------------

MEMBERS = ".jp-Dialog .jp-secsync-Members"


def _my_identity(page) -> str:
    """This browser's identity string, as its user copies it (My identity dialog)."""
    _execute(page, "secsync:my-identity")
    field = page.locator(".jp-secsync-Identity-string")
    field.wait_for(timeout=20_000)
    identity = field.input_value()
    page.keyboard.press("Escape")
    field.wait_for(state="detached", timeout=20_000)
    assert identity.startswith("secsync-id:1:"), identity
    return identity


def _pub_key(identity: str) -> str:
    return identity.split(":")[2]


def _member_row(page, identity: str, role: str | None = None):
    selector = f"{MEMBERS} .jp-secsync-Member[data-pubkey='{_pub_key(identity)}']"
    if role:
        selector += f"[data-role='{role}']"
    return page.locator(selector)


def _open_members(page) -> None:
    """The Members dialog of the current encrypted notebook."""
    _execute(page, "secsync:members")
    page.locator(f"{MEMBERS} .jp-secsync-Members-table").wait_for(timeout=30_000)


def _close_members(page) -> None:
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
    page.locator(MEMBERS).wait_for(state="detached", timeout=20_000)


def _add_member(page, identity: str, role: str = "editor") -> None:
    """An admin adds `identity` with `role` in the Members dialog of the current notebook."""
    _open_members(page)
    page.locator(f"{MEMBERS} .jp-secsync-Members-identity").fill(identity)
    page.locator(f"{MEMBERS} .jp-secsync-Members-addRole").select_option(role)
    page.locator(f"{MEMBERS} .jp-secsync-Members-addButton").click()
    _member_row(page, identity, role).wait_for(timeout=30_000)
    _close_members(page)


def _ensure_app(page, lab, workspace: str) -> None:
    """Loads JupyterLab in `page` (own workspace) unless it is loaded already."""
    if "/lab" not in page.url:
        page.goto(f"{lab.url}lab/workspaces/{workspace}?token={TOKEN}")
    _wait_app(page)


def _share_with(lab, owner, other, role: str = "editor") -> str:
    """'Share with browser B' since issue 11: B copies its identity in its own UI, the owner
    (A, current notebook) adds it in the Members dialog, and the share link (which B then
    opens) is returned."""
    _ensure_app(other, lab, f"member-{secrets.token_hex(3)}")
    _add_member(owner, _my_identity(other), role)
    return _share_link(owner)


def python_identity(name: str = "python-e2e"):
    """A key pair for a Python client and its identity string (to add it as a member)."""
    from secsync_jupyter.protocol.crypto import SigningKeyPair
    from secsync_jupyter.protocol.identity import format_identity

    pair = SigningKeyPair.generate()
    return pair, format_identity(pair.public_key, name)


class _PythonOwner:
    """A notebook with a membership log created by the Python client (its owner), kept open
    in a thread; ``link``: its share link (``#key=``) with the token."""

    def __init__(self, lab, text: str, keyring_file=None):
        from secsync_jupyter.sharelink import format_share_link

        self.pair, _ = python_identity("python-owner")
        self.loop = asyncio.new_event_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.pool.submit(asyncio.set_event_loop, self.loop).result()
        relay = lab.url.replace("http", "ws", 1) + "secsync"
        key = secrets.token_bytes(32)
        self.nb = self.run(self._create(relay, key, text, keyring_file))
        self.link = _with_token(format_share_link(self.nb.doc_id, key, server_url=lab.url))

    async def _create(self, relay: str, key: bytes, text: str, keyring_file):
        from secsync_jupyter.client import create_notebook

        nb = await create_notebook(
            relay, key, identity=self.pair, token=TOKEN, keyring_file=keyring_file
        )
        # (no kernelspec: a browser that may edit it is asked which kernel to start)
        nb.add_code_cell(f"x = '{text}'")
        await nb.synced(timeout=30)
        return nb

    def run(self, coro):
        return self.pool.submit(self.loop.run_until_complete, coro).result(timeout=120)

    def close(self):
        with contextlib.suppress(Exception):
            self.run(self.nb.close())
        self.pool.submit(self.loop.close).result()
        self.pool.shutdown()


def member_profile_script(pair) -> str:
    """An init script giving a fresh browser context the signing key pair `pair` (a browser
    profile that is a member but never opened the notebook: fresh-load measurements)."""
    from secsync_jupyter.protocol import b64encode

    value = json.dumps(
        {"publicKey": b64encode(pair.public_key), "privateKey": b64encode(pair.private_key)}
    )
    return (
        "if (!localStorage.getItem('secsync-jupyter:signing-key-pair')) {"
        f" localStorage.setItem('secsync-jupyter:signing-key-pair', {json.dumps(value)}); }}"
    )
