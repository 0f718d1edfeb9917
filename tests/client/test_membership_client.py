"""The Python client enforces the membership log (issue 11) against a scripted relay.

The scripted relay here speaks the membership frames (reader challenge, the log in the
``document`` frame, log-entry / log-entry-saved / log-entry-failed, write-refused,
unauthorized) and can misbehave: it forwards a non-member's update, a viewer's update, a
forged log entry, another document's log. The client must reject each with its code and keep
the document unchanged, never taking the relay's word for who is a member.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.protocol import State

from secsync_jupyter.client import (
    MembershipError,
    ReadOnlyError,
    SyncFailed,
    create_document,
    create_notebook,
    open_document,
    open_notebook,
)
from secsync_jupyter.client.identity_file import (
    IdentityFileError,
    UserIdentity,
    create_identity,
)
from secsync_jupyter.client.ydoc import serialize_updates
from secsync_jupyter.protocol import (
    create_initial_snapshot,
    create_update,
    generate_id,
)
from secsync_jupyter.protocol.identity import format_identity
from secsync_jupyter.protocol.membership import (
    create_entry,
    create_log,
    new_reader_challenge,
    parse_entry,
    verify_entry,
    verify_log,
    verify_reader_proof,
)

from .helpers import KEY, A, B, C
from .scripted import Conn, ScriptedRelay
from .util import until

pytestmark = pytest.mark.asyncio

T0 = 1767225600000


class Log:
    """A membership log (B owner unless said otherwise), with fixed timestamps."""

    def __init__(self, owner=B, label: str = "log"):
        nonce = hashlib.blake2b(label.encode(), digest_size=24).digest()
        root, state = create_log(owner, at=T0, nonce=nonce, name="Owner")
        self.entries = [root.to_json()]
        self.state = state

    @property
    def doc_id(self) -> str:
        return self.state.doc_id

    def append(self, signer, kind, target, role=None) -> dict[str, Any]:
        entry, self.state = create_entry(
            self.state, signer, kind, target.public_key_b64, role, at=T0 + len(self.entries)
        )
        self.entries.append(entry.to_json())
        return entry.to_json()

    def head(self) -> dict[str, Any]:
        return self.state.head.to_json()


class Author:
    """Another client's Yjs document writing under a log head."""

    def __init__(self, log: Log, signer=B):
        self.log, self.signer = log, signer
        self.doc = Doc()
        self.text = self.doc.get("content", type=Text)
        self.clock = -1
        self.snapshot = None

    def edit(self, s: str) -> bytes:
        out: list[bytes] = []
        sub = self.doc.observe(lambda e: out.append(e.update))
        self.text += s
        self.doc.unobserve(sub)
        return out[0]

    def make_snapshot(self, head=None):
        pd = {
            "docId": self.log.doc_id,
            "pubKey": self.signer.public_key_b64,
            "snapshotId": generate_id(),
            "logHead": head or self.log.head(),
        }
        self.snapshot = create_initial_snapshot(self.doc.get_update(), pd, KEY, self.signer)
        return self.snapshot

    def make_update(self, s: str, head=None) -> dict[str, Any]:
        self.clock += 1
        pd = {
            "docId": self.log.doc_id,
            "pubKey": self.signer.public_key_b64,
            "refSnapshotId": self.snapshot.public_data.snapshot_id,
            "logHead": head or self.log.head(),
        }
        update = create_update(serialize_updates([self.edit(s)]), pd, KEY, self.signer, self.clock)
        return {**update.to_json(), "type": "update"}


async def challenge(conn: Conn, doc_id: str) -> str:
    """Send a reader challenge; return the key the client proved."""
    nonce = new_reader_challenge()
    await conn.send({"type": "reader-challenge", "nonce": nonce})
    proof = await conn.recv("reader-proof")
    return verify_reader_proof(proof, doc_id, nonce)


async def serve(conn: Conn, log: Log, author: Author, log_entries=None) -> str:
    """Challenge, then a document frame with the log and the author's snapshot."""
    key = await challenge(conn, log.doc_id)
    await conn.send(
        {
            "type": "document",
            "snapshot": author.snapshot.to_json(),
            "updates": [],
            "log": log.entries if log_entries is None else log_entries,
            "logFrom": 0,
        }
    )
    return key


def content(d) -> str:
    return str(d.doc.get("content", type=Text))


def _opened(relay: ScriptedRelay, log: Log, signer=A, **kw):
    return open_document(relay.url, log.doc_id, KEY, identity=signer, awareness=False, **kw)


def _written(
    label: str = "log", members=((A, "editor"),), owner=B, text: str = "Hello"
) -> tuple[Log, Author]:
    """A log of ``owner``'s whose entries add ``members`` ((key, role) pairs, in order) and
    the owner's first snapshot of ``text`` on it."""
    log = Log(owner=owner, label=label)
    for who, role in members:
        log.append(owner, "add-member", who, role)
    author = Author(log, owner)
    author.edit(text)
    author.make_snapshot()
    return log, author


async def test_reader_proof_log_and_written_log_head():
    log, author = _written()

    async def script(conn: Conn):
        conn.proven = await serve(conn, log, author)

    async with ScriptedRelay(script) as relay, _opened(relay, log) as d:
        conn = relay.connections[0]
        assert conn.proven == A.public_key_b64
        assert content(d) == "Hello" and d.role == "editor" and not d.read_only
        assert [(m.role, m.name, m.owner) for m in d.members] == [
            ("admin", "Owner", True),
            ("editor", None, False),
        ]
        assert d.members[0].fingerprint.count(" ") == 3
        d.doc.get("content", type=Text).insert(5, "!")
        update = await conn.recv("update")
        assert update["publicData"]["logHead"] == log.head()
        # heads on with a log; naming nothing (no other author), they are left out
        assert "heads" not in update["publicData"]
        pd = update["publicData"]
        await conn.send(
            {"type": "update-saved", "snapshotId": pd["refSnapshotId"], "clock": pd["clock"]}
        )
        await d.synced(timeout=10)
        assert "knownLogSeq" not in conn.query


@pytest.mark.parametrize(
    ("who", "role"), [("non-member", None), ("viewer", "viewer")], ids=["non-member", "viewer"]
)
async def test_update_by_non_member_or_viewer_rejected(who, role):
    log, author = _written(who, [(A, "editor")] + ([(C, role)] if role is not None else []))
    intruder = Author(log, C)
    intruder.doc.apply_update(author.doc.get_update())
    intruder.snapshot = author.snapshot

    async def script(conn: Conn):
        await serve(conn, log, author)
        await conn.send(intruder.make_update(" forged"))  # the relay forwards it anyway
        await conn.send(author.make_update(" ok"))

    async with ScriptedRelay(script) as relay, _opened(relay, log) as d:
        await until(lambda: content(d) == "Hello ok", d)
        assert [e.code for e in d.errors] == ["SECSYNC_ERROR_215"]
        assert d.state == "connected"


async def test_snapshot_by_viewer_rejected():
    log, author = _written("viewer-snapshot", [(A, "editor"), (C, "viewer")])
    viewer = Author(log, C)
    viewer.edit("Replaced")

    async def script(conn: Conn):
        await serve(conn, log, author)
        await conn.send({"type": "snapshot", "snapshot": viewer.make_snapshot().to_json()})
        await conn.send(author.make_update("!"))

    async with ScriptedRelay(script) as relay, _opened(relay, log) as d:
        await until(lambda: content(d) == "Hello!", d)
        assert [e.code for e in d.errors] == ["SECSYNC_ERROR_114"]


async def test_forged_log_entry_rejected_and_writes_under_it_too():
    log, author = _written("forged")
    before = log.head()
    genuine = log.append(B, "add-member", C, "editor")
    forged = {**genuine, "role": "admin"}  # a changed entry: its signature no longer verifies
    forged_head = {"seq": 2, "hash": parse_entry(forged).hash}

    forger = Author(log)
    forger.doc.apply_update(author.doc.get_update())
    forger.snapshot = author.snapshot

    async def script(conn: Conn):
        await serve(conn, log, author, log_entries=log.entries[:2])
        await conn.send({"type": "log-entry", "entry": forged})
        await conn.send(forger.make_update(" x", head=forged_head))
        await conn.send(author.make_update(" ok", head=before))

    async with ScriptedRelay(script) as relay, _opened(relay, log) as d:
        await until(lambda: content(d) == "Hello ok", d)
        assert [e.code for e in d.errors] == ["SECSYNC_ERROR_215", "SECSYNC_ERROR_704"]
        assert d.log_head.to_json() == before
        assert len(d.members) == 2


async def test_log_of_another_document_rejected():
    log = Log(label="mine")
    log.append(B, "add-member", A, "editor")
    other = Log(label="other")
    other.append(B, "add-member", A, "editor")
    author = Author(other)
    author.edit("Their content")
    author.make_snapshot()

    async def script(conn: Conn):
        await challenge(conn, log.doc_id)
        await conn.send(
            {
                "type": "document",
                "snapshot": author.snapshot.to_json(),
                "updates": [],
                "log": other.entries,
                "logFrom": 0,
            }
        )

    async with ScriptedRelay(script) as relay:
        d = _opened(relay, log)
        with pytest.raises(SyncFailed) as info:
            await d
        assert info.value.code == "SECSYNC_ERROR_706"
        assert len(relay.connections) == 1  # failed, not retried


async def test_viewer_is_read_only_and_promotion_lets_it_write():
    log, author = _written("read-only", [(A, "viewer")])
    promoted = asyncio.Event()

    async def script(conn: Conn):
        await serve(conn, log, author)
        await promoted.wait()
        await conn.send({"type": "log-entry", "entry": log.append(B, "set-role", A, "editor")})

    async with (
        ScriptedRelay(script) as relay,
        open_notebook(relay.url, log.doc_id, KEY, identity=A, awareness=False) as nb,
    ):
        assert nb.role == "viewer" and nb.read_only
        with pytest.raises(ReadOnlyError, match="viewer"):
            nb.add_code_cell("print(1)")
        with pytest.raises(PermissionError):
            await nb.create_snapshot()
        assert len(nb.cells) == 0
        promoted.set()
        await until(lambda: nb.role == "editor", nb)
        assert not nb.read_only
        nb.add_code_cell("print(2)")
        update = await relay.connections[0].recv("update")
        assert update["publicData"]["logHead"] == log.head()
        pd = update["publicData"]
        await relay.connections[0].send(
            {"type": "update-saved", "snapshotId": pd["refSnapshotId"], "clock": pd["clock"]}
        )
        await nb.synced(timeout=10)


async def test_write_refused_makes_read_only_without_retry_loop():
    log, author = _written("refused")

    async def script(conn: Conn):
        await serve(conn, log, author)
        update = await conn.recv("update")
        pd = update["publicData"]
        await conn.send(
            {
                "type": "write-refused",
                "of": "update",
                "code": "SECSYNC_ERROR_724",
                "snapshotId": pd["refSnapshotId"],
                "clock": pd["clock"],
            }
        )

    async with ScriptedRelay(script) as relay, _opened(relay, log) as d:
        d.doc.get("content", type=Text).insert(0, ">")
        await until(lambda: d.read_only, d)
        assert [e.code for e in d.errors] == ["SECSYNC_ERROR_724"]
        d.doc.get("content", type=Text).insert(0, ">")
        d._flush_now()  # the batch timer fires: nothing is sent, the changes are kept
        assert d._send_queue.empty() and relay.connections[0].received.empty()
        assert len(d.engine.pending) == 2 and d.engine.updates_in_flight == []
        with pytest.raises(ReadOnlyError, match="724"):
            d.check_writable()


async def test_removed_member_gets_terminal_725_no_reconnect():
    log, author = _written("removed")

    opened = asyncio.Event()

    async def script(conn: Conn):
        await serve(conn, log, author)
        await opened.wait()
        await conn.send({"type": "log-entry", "entry": log.append(B, "remove-member", A)})
        await conn.send({"type": "unauthorized", "code": "SECSYNC_ERROR_725", "reason": "removed"})
        await conn.ws.close(1008)

    async with ScriptedRelay(script) as relay:
        d = await _opened(relay, log)
        opened.set()
        try:
            with pytest.raises(SyncFailed, match="removed from the document") as info:
                await d.wait_for(lambda: False, timeout=10)  # until the document fails
            assert info.value.code == "SECSYNC_ERROR_725"
            assert d.state == "no-access" and d.errors[0].code == "SECSYNC_ERROR_725"
            await asyncio.wait_for(d._task, 10)  # the connection loop ended: no reconnect
            assert len(relay.connections) == 1
            assert content(d) == "Hello"
        finally:
            await d.close()


async def test_unauthorized_722_fails_clearly():
    log = Log(label="not-member")

    async def script(conn: Conn):
        await challenge(conn, log.doc_id)
        await conn.send(
            {"type": "unauthorized", "code": "SECSYNC_ERROR_722", "reason": "not a member"}
        )
        await conn.ws.close(1008)

    async with ScriptedRelay(script) as relay:
        with pytest.raises(SyncFailed, match="not a member") as info:
            await _opened(relay, log)
        assert info.value.code == "SECSYNC_ERROR_722"
        assert len(relay.connections) == 1


class MembershipRelay:
    """An honest in-test relay for one document: verifies and stores entries (one chain),
    answers log-entry-saved / -failed, forwards entries to the other connections. Optionally
    lets ``race`` append a conflicting entry first (the 707 path)."""

    def __init__(self, log: Log, author: Author):
        self.log, self.author = log, author
        self.race: list[dict[str, Any]] = []
        self.conns: list[Conn] = []

    async def __call__(self, conn: Conn) -> None:
        self.conns.append(conn)
        await serve(conn, self.log, self.author)
        while True:
            try:
                frame = await conn.recv(timeout=0.2)
            except TimeoutError:
                if conn.ws.state is State.CLOSED:
                    return
                continue
            if frame.get("type") != "log-entry":
                continue
            if self.race:
                entry = self.race.pop(0)
                self.log.state = verify_entry(self.log.state, entry)
                self.log.entries.append(entry)
                seq = parse_entry(frame["entry"]).seq
                await conn.send(
                    {
                        "type": "log-entry-failed",
                        "seq": seq,
                        "code": "SECSYNC_ERROR_707",
                        "log": self.log.entries[seq:],
                    }
                )
                continue
            try:
                self.log.state = verify_entry(self.log.state, frame["entry"])
            except MembershipError as exc:
                await conn.send(
                    {"type": "log-entry-failed", "seq": frame["entry"].get("seq"), "code": exc.code}
                )
                continue
            self.log.entries.append(frame["entry"])
            head = self.log.head()
            await conn.send({"type": "log-entry-saved", **head})


async def test_add_member_set_role_remove_resolve_on_saved():
    log, author = _written("owner-A", [], owner=A, text="Hi")
    relay_script = MembershipRelay(log, author)
    bob = format_identity(B.public_key, "Bob")

    async with (
        ScriptedRelay(relay_script) as relay,
        open_notebook(relay.url, log.doc_id, KEY, identity=A, awareness=False) as nb,
    ):
        assert nb.role == "admin"
        state = await nb.add_member(bob, "viewer")
        assert state.role(B.public_key_b64) == "viewer"
        assert [(m.name, m.role) for m in nb.members] == [("Owner", "admin"), ("Bob", "viewer")]
        await nb.set_role(nb.members[1], "editor")
        assert nb.members[1].role == "editor"
        with pytest.raises(MembershipError) as info:
            await nb.add_member(bob, "viewer")  # already a member: refused before sending
        assert info.value.code == "SECSYNC_ERROR_715"
        with pytest.raises(MembershipError) as info:
            await nb.set_role(A.public_key_b64, "editor")  # the last admin
        assert info.value.code == "SECSYNC_ERROR_714"
        await nb.remove_member(B.public_key_b64)
        assert [m.name for m in nb.members] == ["Owner"]
    verify_log(log.entries, log.doc_id)  # what the relay stored is one valid chain


async def test_add_member_retries_after_a_race_707():
    log, author = _written("race", [(B, "admin")], owner=A, text="Hi")
    relay_script = MembershipRelay(log, author)
    # B (an admin) appends first: the client verifies B's entry and rebuilds its own on it
    state = verify_log(log.entries, log.doc_id)
    first, _ = create_entry(state, B, "add-member", C.public_key_b64, "viewer", at=T0 + 10)
    relay_script.race.append(first.to_json())
    someone = format_identity(
        __import__("secsync_jupyter.protocol", fromlist=["SigningKeyPair"])
        .SigningKeyPair.from_seed(bytes(range(3, 35)))
        .public_key,
        "Dee",
    )

    async with (
        ScriptedRelay(relay_script) as relay,
        open_notebook(relay.url, log.doc_id, KEY, identity=A, awareness=False) as nb,
    ):
        await nb.add_member(someone, "editor")
        assert sorted(m.name or "" for m in nb.members) == ["", "", "Dee", "Owner"]
        assert nb.document.log_head.seq == 3


async def test_add_member_refused_by_relay_raises_with_code():
    log, author = _written("refused-entry", [], owner=A, text="Hi")

    async def script(conn: Conn):
        await serve(conn, log, author)
        frame = await conn.recv("log-entry")
        seq = frame["entry"]["seq"]
        await conn.send({"type": "log-entry-failed", "seq": seq, "code": "SECSYNC_ERROR_712"})

    async with (
        ScriptedRelay(script) as relay,
        open_notebook(relay.url, log.doc_id, KEY, identity=A, awareness=False) as nb,
    ):
        with pytest.raises(MembershipError) as info:
            await nb.add_member(format_identity(B.public_key), "viewer")
        assert info.value.code == "SECSYNC_ERROR_712"
        assert len(nb.members) == 1


async def test_create_sends_root_first_then_snapshot_under_it():
    seen: list[str] = []

    async def script(conn: Conn):
        nonce = new_reader_challenge()
        await conn.send({"type": "reader-challenge", "nonce": nonce})
        proof = await conn.recv()
        key = verify_reader_proof(proof, conn.doc_id, nonce)
        root = await conn.recv()
        seen.append(root["type"])
        entry = parse_entry(root["entry"])
        assert entry.kind == "create" and entry.signer == key
        state = verify_log([root["entry"]], conn.doc_id)  # the id is bound to this root
        await conn.send({"type": "log-entry-saved", **state.head.to_json()})
        await conn.send({"type": "document", "updates": [], "log": [root["entry"]], "logFrom": 0})
        snap = await conn.recv("snapshot")
        seen.append(json.dumps(snap["publicData"]["logHead"]))
        await conn.send({"type": "snapshot-saved", "snapshotId": snap["publicData"]["snapshotId"]})

    async with (
        ScriptedRelay(script) as relay,
        create_notebook(relay.url, identity=A, awareness=False) as nb,
    ):
        assert nb.doc_id.startswith("m1_") and nb.role == "admin"
        nb.add_markdown_cell("# new")
        await nb.create_snapshot()
        assert nb.share_link.startswith(relay.url) and "#key=" in nb.share_link
        assert [(m.owner, m.role) for m in nb.members] == [(True, "admin")]
    assert seen[0] == "log-entry"
    assert json.loads(seen[1])["seq"] == 0


async def test_log_document_needs_an_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("SECSYNC_IDENTITY", str(tmp_path / "none.json"))
    log = Log(label="no-identity")
    with pytest.raises(IdentityFileError, match="secsync-jupyter identity"):
        open_document("ws://127.0.0.1:9", log.doc_id, KEY)._factory()
    path = tmp_path / "id.json"
    user = create_identity(path, name="Ada")
    path.chmod(0o644)
    monkeypatch.setenv("SECSYNC_IDENTITY", str(path))
    with pytest.raises(IdentityFileError, match="chmod 600"):
        open_document("ws://127.0.0.1:9", log.doc_id, KEY)._factory()
    path.chmod(0o600)
    d = open_document("ws://127.0.0.1:9", log.doc_id, KEY)._factory()
    assert isinstance(d.identity, UserIdentity) and d.pub_key == user.pub_key
    # a document without a log keeps the fresh per-session key
    other = open_document("ws://127.0.0.1:9", "plain-doc", KEY)._factory()
    assert other.identity is None and other.pub_key != user.pub_key
    with pytest.raises(ValueError, match="either"):
        create_document("ws://127.0.0.1:9", identity=path, signing_key=A)._factory()


async def test_own_entry_echoed_as_log_entry_before_saved():
    """A relay that also sends our own accepted entry as a live log-entry before answering
    log-entry-saved: the change still resolves, no error is recorded."""
    log, author = _written("echo", [], owner=A, text="Hi")

    async def script(conn: Conn):
        await serve(conn, log, author)
        frame = await conn.recv("log-entry")
        log.state = verify_entry(log.state, frame["entry"])
        await conn.send({"type": "log-entry", "entry": frame["entry"]})
        await conn.send({"type": "log-entry-saved", **log.head()})

    async with (
        ScriptedRelay(script) as relay,
        open_notebook(relay.url, log.doc_id, KEY, identity=A, awareness=False) as nb,
    ):
        await nb.add_member(format_identity(B.public_key, "Bob"), "editor", timeout=10)
        assert [m.name for m in nb.members] == ["Owner", "Bob"] and nb.errors == []


async def test_long_log_signatures_checked_in_threads_same_results():
    """The driver checks the signatures of a long log in the verify pool: same state, and a
    forged entry is found at the same index with the same code."""
    from secsync_jupyter.client.precheck import LOG_PARALLEL_THRESHOLD, check_signatures_in_threads
    from secsync_jupyter.protocol import SigningKeyPair
    from secsync_jupyter.protocol.membership import MembershipError as CoreError

    log = Log(label="long")
    for i in range(LOG_PARALLEL_THRESHOLD * 2):
        log.append(B, "add-member", SigningKeyPair.from_seed(i.to_bytes(32, "big")), "viewer")
    threaded = verify_log(log.entries, log.doc_id, check_signatures=check_signatures_in_threads)
    assert threaded == verify_log(log.entries, log.doc_id)
    forged = list(log.entries)
    forged[40] = {**forged[40], "signature": forged[41]["signature"]}
    for check in (None, check_signatures_in_threads):
        with pytest.raises(CoreError) as info:
            verify_log(forged, log.doc_id, check_signatures=check)
        assert (info.value.code, info.value.index) == ("SECSYNC_ERROR_704", 40)


async def test_long_log_signatures_checked_in_processes_same_results():
    """With the worker processes running, a long log's signatures are split between this
    process and the workers (spawned, real processes): same state; a forged entry in the
    workers' part and one in this process's part are found at the same index with the same
    code; a killed worker's part is checked here instead (the pool is replaced)."""
    import os
    import signal
    import time

    from secsync_jupyter.client import precheck
    from secsync_jupyter.protocol import SigningKeyPair
    from secsync_jupyter.protocol.membership import MembershipError as CoreError

    log = Log(label="long-processes")
    for i in range(precheck.LOG_PROCESS_THRESHOLD + 44):
        log.append(B, "add-member", SigningKeyPair.from_seed(i.to_bytes(32, "big")), "viewer")
    n = len(log.entries)
    check = precheck.check_signatures_in_processes
    precheck.warm_process_pool()
    try:
        deadline = time.monotonic() + 60
        while precheck._running_pool() is None:
            assert time.monotonic() < deadline, "the worker processes did not start"
            await asyncio.sleep(0.02)
        pool = precheck._running_pool()
        calls = []
        original = pool.submit
        pool.submit = lambda fn, *a: calls.append(len(a[0])) or original(fn, *a)
        try:
            assert verify_log(log.entries, log.doc_id, check_signatures=check) == verify_log(
                log.entries, log.doc_id
            )
        finally:
            del pool.submit
        assert calls and sum(calls) < n  # the workers checked a part, this process the rest
        for index in (n - 3, 5):
            forged = list(log.entries)
            forged[index] = {**forged[index], "signature": forged[index - 1]["signature"]}
            with pytest.raises(CoreError) as info:
                verify_log(forged, log.doc_id, check_signatures=check)
            assert (info.value.code, info.value.index) == ("SECSYNC_ERROR_704", index)
        for pid in list(pool._processes):  # a broken pool: its part is checked here
            os.kill(pid, signal.SIGKILL)
        assert verify_log(log.entries, log.doc_id, check_signatures=check).head.seq == n - 1
        assert precheck._running_pool() is None  # replaced on the next warm-up
    finally:
        precheck._reset_process_pool()


async def test_concurrent_membership_changes_go_one_at_a_time():
    log, author = _written("concurrent", [], owner=A, text="Hi")
    relay_script = MembershipRelay(log, author)
    from secsync_jupyter.protocol import SigningKeyPair

    people = [SigningKeyPair.from_seed(bytes([i]) * 32) for i in range(5, 9)]
    async with (
        ScriptedRelay(relay_script) as relay,
        open_notebook(relay.url, log.doc_id, KEY, identity=A, awareness=False) as nb,
    ):
        await asyncio.gather(
            *(
                nb.add_member(format_identity(p.public_key, f"P{i}"), "viewer")
                for i, p in enumerate(people)
            )
        )
        assert sorted(m.name for m in nb.members) == ["Owner", "P0", "P1", "P2", "P3"]
        assert nb.document.log_head.seq == 4 and nb.errors == []
    verify_log(log.entries, log.doc_id)
