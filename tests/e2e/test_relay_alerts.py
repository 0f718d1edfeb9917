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
3. Fork: after A and B shared the notebook, B comes back on a second relay that started from
   a copy of the lab relay's database (B's pointer file names it): each group now has its own
   history. Both write and store a snapshot (two snapshot chains from the same parent), then
   the man in the middle carries each page's ephemeral messages (signed heads, presence) to
   the other, as one relay showing two groups two histories would: both JupyterLabs show
   "⚠ fork" next to the other collaborator (by name, with both snapshot ids in the detail),
   the status bar's relay alert and the warning notification; each keeps its own verified
   content. The same set-up with an honest relay (B back on the lab's relay, concurrent
   snapshots): the two converge, "seen ✓" both ways, and nothing is marked.

Run:  .venv/bin/pytest tests/e2e/test_relay_alerts.py -x -q
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import sqlite3
import time

import pytest

from .helpers import (
    ARTIFACTS,
    CLOSE_ALL,
    NB,
    TOKEN,
    _browser_session,
    _cell_editor,
    _execute,
    _my_identity,
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


def _session(browser, name: str):
    """A fresh browser context's page (``browser``: conftest's headless Chromium)."""
    return _browser_session(browser, "e2e-relay-alerts", name)


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


# ------------------------------------------------------------------ fork (805), both groups

#: a page's socket to a document's relay: this server's (…/secsync/m1_…) or another's (…/m1_…)
DOC_SOCKET = re.compile(r"/m1_[^/?]+(\?.*)?$")

DOC_ID = """async () => JSON.parse((await window.jupyterapp.serviceManager.contents.get(
  window.jupyterapp.shell.currentWidget.context.path,
  {type: 'file', format: 'text', content: true})).content).docId"""

#: the snapshot this browser verified last (its remembered state, saved ~1 s after a change)
REMEMBERED_SNAPSHOT = """(docId) => {
  const item = localStorage.getItem('secsync-jupyter:remembered:' + docId);
  return (item && JSON.parse(item).snapshot?.snapshotId) || null;
}"""


class TwoGroups:
    """Between each of two pages (A, B) and its relay: every frame passes both ways; with
    `bridge` on, each page's ephemeral messages (signed heads and presence, encrypted and
    signed by the page) are also delivered to the other page, as a relay delivers them
    (`ephemeral-message`). With A on the lab's relay and B on a second relay holding a copy
    of the lab relay's database, that is one relay showing two groups two histories while
    they are live together (the fork of issue 13)."""

    def __init__(self, a, b):
        self.bridge = False
        self.crossed = {"A": 0, "B": 0}
        self.urls: dict[str, list[str]] = {"A": [], "B": []}
        self._routes: dict = {}
        for name, page in (("A", a), ("B", b)):
            page.route_web_socket(DOC_SOCKET, lambda ws, name=name: self._route(name, ws))

    def _route(self, name: str, ws) -> None:
        self.urls[name].append(ws.url)
        server = ws.connect_to_server()
        self._routes[name] = ws
        ws.on_message(lambda message: self._from_page(name, server, message))

    def _from_page(self, name: str, server, message) -> None:
        server.send(message)
        if not self.bridge or not isinstance(message, str) or not message.startswith("{"):
            return
        frame = json.loads(message)
        other = self._routes.get("B" if name == "A" else "A")
        if _is_ephemeral(frame) and other is not None:
            other.send(json.dumps({"type": "ephemeral-message", **frame}))
            self.crossed[name] += 1


def _is_ephemeral(frame) -> bool:
    """A client's ephemeral message: a bare message (no `type`, as a client sends updates
    and snapshots too) whose public data names no snapshot (the relay's own test)."""
    public = frame.get("publicData") if isinstance(frame, dict) else None
    return (
        isinstance(public, dict)
        and "type" not in frame
        and not public.get("snapshotId")
        and not public.get("refSnapshotId")
    )


def _copy_database(src, dst) -> None:
    """A consistent copy of a live SQLite relay database (SQLite's online backup)."""
    with (
        contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(dst)) as target,
    ):
        source.backup(target)


def _remembered_snapshot(page, doc_id: str, other_than: str | None) -> str:
    """The snapshot `page` verified last, once it is not `other_than`."""
    page.wait_for_function(
        f"([d, o]) => {{ const s = ({REMEMBERED_SNAPSHOT})(d); return s && s !== o; }}",
        arg=[doc_id, other_than],
        timeout=60_000,
    )
    return page.evaluate(REMEMBERED_SNAPSHOT, doc_id)


def _wait_same_snapshot(a, b, doc_id: str, base: str) -> str:
    """The snapshot both pages verified last, once it is the same and not `base`."""
    deadline = time.monotonic() + 60
    while True:
        mine, theirs = (p.evaluate(REMEMBERED_SNAPSHOT, doc_id) for p in (a, b))
        if mine and mine == theirs and mine != base:
            return mine
        if time.monotonic() > deadline:
            raise AssertionError(f"not on one snapshot: A {mine}, B {theirs} (before: {base})")
        a.wait_for_timeout(250)


def _collaborator_row(page, pub_key: str):
    """`pub_key`'s row in the open collaborators popup (the first: a stale presence of the
    same key may linger until its timeout)."""
    return page.locator(f".jp-Dialog .jp-secsync-Collaborator[data-pubkey='{pub_key}']").first


def _two_groups(lab, a, b, forking: bool):
    """A makes a notebook, shares it with B; B closes it and opens it again through a pointer
    file of its own — naming a second relay started from a copy of the lab relay's database
    (`forking`), or naming no relay (this server's: honest). Then each writes and stores a
    snapshot (Snapshot Now). Returns the man in the middle, the doc id, the public keys of A and
    B, the snapshot both had before, and the two texts written."""
    groups = TwoGroups(a, b)
    canary = f"FORKBASE-{secrets.token_hex(4)}"
    key_a, key_b = _new_shared_notebook(lab, a, b, canary)
    doc_id = a.evaluate(DOC_ID)
    base = _remembered_snapshot(a, doc_id, None)
    assert _remembered_snapshot(b, doc_id, None) == base

    b.evaluate(CLOSE_ALL)
    b.locator(NB).wait_for(state="detached", timeout=30_000)
    relay = None
    if forking:
        name = f"fork-relay-{secrets.token_hex(3)}"
        _copy_database(lab.base / "work" / "relay.sqlite", lab.base / "work" / f"{name}.sqlite")
        relay = lab.start_relay(name)
    path = f"group-b-{secrets.token_hex(3)}.secnb"
    pointer = {"format": "secsync-notebook", "version": 1, "docId": doc_id, "relay": relay}
    lab.api(
        "PUT",
        f"api/contents/{path}",
        {"type": "file", "format": "text", "content": json.dumps(pointer)},
    )
    _execute(b, "docmanager:open", {"path": path})
    if forking:  # a relay B has not used before: B's user confirms it
        b.locator(".jp-secsync-ForeignRelay").wait_for(timeout=60_000)
        b.click(".jp-Dialog .jp-Dialog-button.jp-mod-warn")
    _wait_cell_text(b, 0, canary, timeout=60_000)
    b.wait_for_selector(SYNCED, timeout=30_000)
    if forking:
        assert groups.urls["B"][-1].startswith(relay + "/"), groups.urls
    else:
        assert "/secsync/" in groups.urls["B"][-1], groups.urls

    # Each group writes and stores a snapshot of what it has (the Snapshot Now command, as
    # Ctrl+S; A's notebook is still untitled: its Ctrl+S would ask for a name first).
    text_a, text_b = f"GROUP-A-{secrets.token_hex(3)}", f"GROUP-B-{secrets.token_hex(3)}"
    _type_at_end(a, 0, f" # {text_a}")
    if not forking:
        # one history: B types once A's text has arrived (typing at the end while A's last
        # keystrokes are still on their way puts B's text inside A's: Yjs orders concurrent
        # inserts at one place by client id)
        _wait_cell_text(b, 0, text_a, timeout=60_000)
    _type_at_end(b, 0, f" # {text_b}")
    for page in (a, b):
        _execute(page, "secsync:snapshot-now")
    return groups, doc_id, key_a, key_b, base, text_a, text_b


def _check_fork_marker(page, peer: str, own_snapshot: str, peer_snapshot: str, shot: str) -> str:
    """The collaborators popup of `page` shows "⚠ fork" next to `peer` (and nothing else);
    the warning notification names them. Returns the peer's name."""
    page.click(".jp-secsync-StatusItem")
    row = _collaborator_row(page, peer)
    marker = row.locator(".jp-secsync-RelayAlert[data-kind='fork']")
    marker.wait_for(timeout=20_000)
    assert marker.inner_text() == "⚠ fork"
    name = row.locator("td").first.inner_text().strip()
    assert name
    label = marker.get_attribute("aria-label") or ""
    assert name in label and "a different history of this notebook than you" in label, label
    detail = marker.get_attribute("title") or ""  # the engine's detail: both snapshots
    assert f"on snapshot {peer_snapshot}" in detail and f"ours: {own_snapshot}" in detail, detail
    markers = page.locator(".jp-Dialog .jp-secsync-RelayAlert")
    assert (
        markers.count()
        == page.locator(".jp-Dialog .jp-secsync-RelayAlert[data-kind='fork']").count()
    )
    assert page.locator(".jp-Dialog .jp-secsync-Collaborators-relayAlert").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)  # for a look at the words (not compared)
    page.screenshot(path=ARTIFACTS / f"e2e-relay-alerts-fork-{shot}.png")
    page.keyboard.press("Escape")
    row.wait_for(state="detached", timeout=20_000)
    toast = page.locator(TOAST, has_text="different history")
    toast.first.wait_for(timeout=20_000)
    assert name in toast.first.inner_text()
    return name


def test_fork_is_marked_in_both_groups(lab, browser):
    with _session(browser, "forkA") as a, _session(browser, "forkB") as b:
        groups, doc_id, key_a, key_b, base, text_a, text_b = _two_groups(lab, a, b, True)
        # two snapshot chains from the same parent: A's on the lab's relay, B's on the other
        snap_a = _remembered_snapshot(a, doc_id, base)
        snap_b = _remembered_snapshot(b, doc_id, base)
        assert snap_a != snap_b
        # apart, each group sees nothing wrong (nothing of the other reaches it)
        assert groups.crossed == {"A": 0, "B": 0}
        assert a.locator(RELAY_ALERT).inner_text() == ""
        assert b.locator(RELAY_ALERT).inner_text() == ""

        # The two groups become live together: each gets the other's signed heads.
        groups.bridge = True
        started = time.monotonic()
        seconds = {}
        for name, page in (("A", a), ("B", b)):
            alert = page.locator(f"{RELAY_ALERT}[data-alerts]:not([data-alerts='0'])")
            alert.wait_for(timeout=90_000)
            seconds[name] = round(time.monotonic() - started, 1)
            assert "relay" in alert.inner_text()
        print(f"fork marked after the groups met: A {seconds['A']} s, B <= {seconds['B']} s")
        assert groups.crossed["A"] > 0 and groups.crossed["B"] > 0

        # Next to the other group's collaborator, by name, in both.
        _check_fork_marker(a, key_b, snap_a, snap_b, "A")
        _check_fork_marker(b, key_a, snap_b, snap_a, "B")

        # Each keeps the content it verified: its own history, not the other's.
        content_a, content_b = a.locator(NB).inner_text(), b.locator(NB).inner_text()
        assert text_a in content_a and text_b not in content_a
        assert text_b in content_b and text_a not in content_b
        assert _remembered_snapshot(a, doc_id, base) == snap_a
        assert _remembered_snapshot(b, doc_id, base) == snap_b


def test_honest_relay_in_the_same_set_up_marks_nothing(lab, browser):
    with _session(browser, "honestA") as a, _session(browser, "honestB") as b:
        groups, doc_id, key_a, key_b, base, text_a, text_b = _two_groups(lab, a, b, False)
        # One history: both get both changes and end on the same snapshot (the later of the
        # two concurrent snapshots, or one after both).
        for page in (a, b):
            _wait_cell_text(page, 0, text_a, timeout=60_000)
            _wait_cell_text(page, 0, text_b, timeout=60_000)
        snap = _wait_same_snapshot(a, b, doc_id, base)
        # Each one's signed heads show the other's latest change ("seen ✓"): claims about
        # what the other has seen are settled now, so a false alarm would be shown already.
        for page, peer in ((a, key_b), (b, key_a)):
            page.click(".jp-secsync-StatusItem")
            row = _collaborator_row(page, peer)
            row.locator(".jp-secsync-SeenBy[data-seen='true']").wait_for(timeout=60_000)
            assert page.locator(".jp-Dialog .jp-secsync-RelayAlert").count() == 0
            assert page.locator(".jp-Dialog .jp-secsync-Collaborators-relayAlert").count() == 0
            page.keyboard.press("Escape")
            row.wait_for(state="detached", timeout=20_000)
        for page in (a, b):
            assert page.locator(RELAY_ALERT).inner_text() == ""
            assert page.locator(TOAST, has_text="relay").count() == 0
            assert _remembered_snapshot(page, doc_id, base) == snap
        assert groups.crossed == {"A": 0, "B": 0}  # the relay carried the ephemeral messages
