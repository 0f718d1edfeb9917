"""A relay that withholds or rolls back, seen in real Chromium (issue 13, JupyterLab side).

The man in the middle sits between browser B and the real relay (Playwright's WebSocket
routing of B's page, in this test process): it forwards every frame both ways except what the
test makes it drop or replace.

1. Withheld: once B has loaded the notebook, the relay's frames to B lose every update written
   by A (live, and in any later document frame). A types; A's signed heads (ephemeral, still
   delivered) tell B that A wrote updates B never received: B's status bar shows the relay
   alert, the collaborators popup shows "withheld by the relay" next to A (by A's public key
   and A's name), and the warning notification names A.
2. Rollback: B loads, then receives A's change (B remembers what it verified); after a reload
   the man in the middle serves the document frame of B's first load instead: B says the
   relay served an older state.

Run:  .venv/bin/pytest tests/e2e/test_relay_alerts.py -x -q
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets

import pytest

from .helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    NB,
    TOKEN,
    _cell_editor,
    _execute,
    _my_identity,
    _new_page,
    _pub_key,
    _share_with,
    _wait_app,
    _wait_cell_text,
    _with_token,
)

pytestmark = pytest.mark.browser

SYNCED = ".jp-secsync-StatusItem[data-state='synced']"
RELAY_ALERT = ".jp-secsync-StatusItem-alert"
TOAST = ".Toastify__toast"
RELAY_SOCKET = re.compile(r"/secsync/m1_[^/?]+(\?.*)?$")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def _session(browser, name: str):
    logs: list[str] = []
    ctx, page = _new_page(browser, name, logs)
    try:
        yield page
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=ARTIFACTS / f"e2e-relay-alerts-{name}-failure.png")
        raise
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"e2e-relay-alerts-{name}-console.log").write_text("\n".join(logs))
        ctx.close()


class ManInTheMiddle:
    """Between one page and the relay: every frame passes, except that updates by `withhold`
    are dropped from the relay's frames (live `update` frames and the `updates` of document
    frames), and with `replay` set the next document frame's content (snapshot, updates,
    proof chain) is replaced by that of the first document frame seen."""

    def __init__(self, page):
        self.withhold: str | None = None
        self.replay = False
        self.dropped = 0
        self.replayed = 0
        self.first_document: dict | None = None
        page.route_web_socket(RELAY_SOCKET, self._route)

    def _route(self, ws) -> None:
        server = ws.connect_to_server()
        ws.on_message(lambda message: server.send(message))
        server.on_message(lambda message: self._to_page(ws, message))

    def _by_withheld(self, message: dict) -> bool:
        public = message.get("publicData") if isinstance(message, dict) else None
        return (
            self.withhold is not None
            and isinstance(public, dict)
            and public.get("pubKey") == self.withhold
        )

    def _to_page(self, ws, message) -> None:
        if not isinstance(message, str) or not message.startswith('{"type":"'):
            ws.send(message)
            return
        frame = json.loads(message)
        kind = frame.get("type")
        if kind == "update" and self._by_withheld(frame):
            self.dropped += 1
            return
        if kind == "document":
            if self.first_document is None:
                self.first_document = frame
            elif self.replay:
                self.replay = False
                self.replayed += 1
                for field in ("snapshot", "updates", "snapshotProofChain"):
                    frame.pop(field, None)
                    if field in self.first_document:
                        frame[field] = self.first_document[field]
            if isinstance(frame.get("updates"), list):
                kept = [u for u in frame["updates"] if not self._by_withheld(u)]
                self.dropped += len(frame["updates"]) - len(kept)
                frame["updates"] = kept
            message = json.dumps(frame)
        ws.send(message)


def _start(lab, page, workspace: str) -> None:
    page.goto(f"{lab.url}lab/workspaces/{workspace}?token={TOKEN}")
    _wait_app(page)


REMEMBERED_CLOCK = """(author) => {
  for (const k of Object.keys(localStorage)) {
    if (k.startsWith('secsync-jupyter:remembered:')) {
      const c = JSON.parse(localStorage.getItem(k)).snapshot?.updateClocks?.[author];
      if (c !== undefined) { return c; }
    }
  }
  return -1;
}"""


def _type_at_end(page, index: int, text: str) -> None:
    _cell_editor(page, index).click()
    page.keyboard.press("Control+End")
    page.keyboard.type(text)


def _new_shared_notebook(lab, a, b, canary: str) -> tuple[str, str]:
    """A makes a notebook with `canary`, adds B as an editor; B opens it. Returns the
    public keys of A and B."""
    _start(lab, a, f"alerts-a-{secrets.token_hex(3)}")
    _execute(a, "secsync:new-notebook")
    a.wait_for_selector(SYNCED, timeout=60_000)
    _type_at_end(a, 0, f"x = '{canary}'")
    a.wait_for_selector(SYNCED, timeout=30_000)
    link = _share_with(lab, a, b)
    b.goto(_with_token(link))
    _wait_app(b)
    _wait_cell_text(b, 0, canary, timeout=60_000)
    b.wait_for_selector(SYNCED, timeout=30_000)
    return _pub_key(_my_identity(a)), _pub_key(_my_identity(b))


def test_withheld_author_is_marked_next_to_them(lab, browser):
    canary = f"ALERTS-{secrets.token_hex(4)}"
    with _session(browser, "A") as a, _session(browser, "B") as b:
        mitm = ManInTheMiddle(b)
        key_a, key_b = _new_shared_notebook(lab, a, b, canary)
        assert mitm.first_document is not None  # B's frames go through the man in the middle
        assert b.locator(RELAY_ALERT).inner_text() == ""  # an honest relay: nothing said
        # read notifications: B's signed heads show A's latest change ("seen ✓" at A)
        a.click(".jp-secsync-StatusItem")
        row_b = a.locator(f".jp-Dialog .jp-secsync-Collaborator[data-pubkey='{key_b}']")
        row_b.locator(".jp-secsync-SeenBy[data-seen='true']").wait_for(timeout=30_000)
        assert row_b.locator(".jp-secsync-RelayAlert").count() == 0
        a.keyboard.press("Escape")
        row_b.wait_for(state="detached", timeout=20_000)

        # From now on the relay withholds A's updates from B.
        mitm.withhold = key_a
        withheld = f"WITHHELD-{secrets.token_hex(3)}"
        _type_at_end(a, 0, f" # {withheld}")
        a.wait_for_selector(SYNCED, timeout=30_000)

        # A's heads reach B (ephemeral): after the grace period B says so.
        alert = b.locator(f"{RELAY_ALERT}[data-alerts]:not([data-alerts='0'])")
        alert.wait_for(timeout=60_000)
        assert "relay" in alert.inner_text()
        assert mitm.dropped > 0
        assert withheld not in b.locator(NB).inner_text()

        # Next to A in the collaborators popup, with A's name.
        b.click(".jp-secsync-StatusItem")
        row_a = b.locator(f".jp-Dialog .jp-secsync-Collaborator[data-pubkey='{key_a}']")
        marker = row_a.locator(".jp-secsync-RelayAlert[data-kind='withheld']")
        marker.wait_for(timeout=20_000)
        assert "withheld by the relay" in marker.inner_text()
        name_a = row_a.locator("td").first.inner_text().strip()
        assert name_a
        label = marker.get_attribute("aria-label") or ""
        assert name_a in label and "has not delivered" in label, label
        assert key_a in (marker.get_attribute("title") or "")  # the engine's detail
        # only next to A: B's own row and nobody else carries it
        assert b.locator(".jp-Dialog .jp-secsync-RelayAlert").count() == 1
        b.keyboard.press("Escape")

        # The warning notification names A too.
        toast = b.locator(TOAST, has_text="has not delivered")
        toast.first.wait_for(timeout=20_000)
        assert name_a in toast.first.inner_text()

        # A, whose relay is honest, sees nothing wrong, and "seen ✓" is no longer claimed
        # for B (B never received A's latest change).
        assert a.locator(RELAY_ALERT).inner_text() == ""
        a.click(".jp-secsync-StatusItem")
        row_b.locator(".jp-secsync-SeenBy[data-seen='false']").wait_for(timeout=30_000)
        a.keyboard.press("Escape")


def test_rollback_after_reload_is_reported(lab, browser):
    canary = f"ROLLBACK-{secrets.token_hex(4)}"
    with _session(browser, "A2") as a, _session(browser, "B2") as b:
        mitm = ManInTheMiddle(b)
        key_a, _key_b = _new_shared_notebook(lab, a, b, canary)
        b.wait_for_function(f"() => ({REMEMBERED_CLOCK})({json.dumps(key_a)}) >= 0")
        first = b.evaluate(REMEMBERED_CLOCK, key_a)
        newer = f"NEWER-{secrets.token_hex(3)}"
        _type_at_end(a, 0, f" # {newer}")
        _wait_cell_text(b, 0, newer, timeout=30_000)
        # B remembers what it verified (saved about a second after a change) …
        b.wait_for_function(
            f"() => ({REMEMBERED_CLOCK})({json.dumps(key_a)}) > {first}", timeout=30_000
        )
        # … and after a reload is served the document of its first load.
        mitm.replay = True
        b.reload()
        _wait_app(b)
        toast = b.locator(TOAST, has_text="older state")
        toast.first.wait_for(timeout=60_000)
        assert mitm.replayed == 1
        assert "rollback" in toast.first.inner_text()
