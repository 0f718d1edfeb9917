"""Writes the sync-engine conformance scenarios (``tests/scenarios/*.json``; format in README.md).

    .venv/bin/python tests/scenarios/make_scenarios.py [--check]

Every relay-side message is made here with the Python protocol core, from fixed keys and
deterministic nonces and ids, so the files are identical on every run (``--check`` compares
instead of writing; ``tests/client/test_scenarios.py`` does the same). The expected outputs are
written by hand below, from the rules in docs/client.md ("Engine rules") — never recorded from
an engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import nacl.bindings as sodium
from pycrdt import Doc, Text

from secsync_jupyter.client.ydoc import serialize_updates
from secsync_jupyter.protocol import (
    SigningKeyPair,
    Snapshot,
    Update,
    b64encode,
    canonicalize_b64,
    create_ephemeral_message,
    create_initial_snapshot,
    create_snapshot,
    create_update,
    encrypt_aead,
    snapshot_ciphertext_hash,
)
from secsync_jupyter.protocol.crypto import DOMAIN_EPHEMERAL_MESSAGE, sign_message
from secsync_jupyter.protocol.epochs import epoch_key_check, lockbox_set_hash
from secsync_jupyter.protocol.identity import box_public_key
from secsync_jupyter.protocol.links import join_via_link, link_keypair
from secsync_jupyter.protocol.membership import create_entry, create_log, next_entry

HERE = pathlib.Path(__file__).resolve().parent

DOC_ID = "6e46c006-5541-11ec-bf63-0242ac130002"
KEY = bytes.fromhex("724b092810ec86d7e35c9d067702b31ef90bc43a7b598626749914d6a3e033ed")
WRONG_KEY = bytes.fromhex("994b092810ec86d7e35c9d067702b31ef90bc43a7b598626749914d6a3e033ed")
SEEDS = {"A": bytes(range(32)), "B": bytes(range(1, 33)), "C": bytes(range(2, 34))}
SIGNERS = {name: SigningKeyPair.from_seed(seed) for name, seed in SEEDS.items()}
PUB = {name: kp.public_key_b64 for name, kp in SIGNERS.items()}
#: Yjs client ids: the engine's document and each author's
ENGINE_CLIENT_ID = 100
CLIENT_IDS = {"A": 1, "B": 2, "C": 3}


def b64(data: bytes) -> str:
    return b64encode(bytes(data))


# ------------------------------------------------------------------ content


class Writer:
    """An author's Yjs document (Y.Text ``content``): its edits are the updates it sends."""

    def __init__(self, name: str = "B", state: bytes | None = None):
        self.doc = Doc(client_id=CLIENT_IDS[name])
        self.text = self.doc.get("content", type=Text)
        if state is not None:
            self.doc.apply_update(state)

    def insert(self, index: int, value: str) -> bytes:
        out: list[bytes] = []
        sub = self.doc.observe(lambda event: out.append(event.update))
        self.text.insert(index, value)
        self.doc.unobserve(sub)
        return out[0]

    def append(self, value: str) -> bytes:
        return self.insert(len(str(self.text)), value)

    def state(self) -> bytes:
        return self.doc.get_update()

    def value(self) -> str:
        return str(self.text)


def text_state(value: str, name: str = "B") -> bytes:
    w = Writer(name)
    if value:
        w.append(value)
    return w.state()


# ------------------------------------------------------------------ messages


class Snap:
    def __init__(self, message: Snapshot, state: bytes):
        self.message = message
        self.state = state
        self.id = message.public_data.snapshot_id

    def wire(self) -> dict[str, Any]:
        return self.message.to_json()

    def entry(self, parent_proof: str | None = None) -> dict[str, str]:
        return {
            "snapshotId": self.id,
            "snapshotCiphertextHash": snapshot_ciphertext_hash(self.message),
            "parentSnapshotProof": parent_proof or self.message.public_data.parent_snapshot_proof,
        }

    def known(self, clocks: dict[str, int] | None = None) -> dict[str, Any]:
        return {**self.entry(), "updateClocks": {PUB[k]: v for k, v in (clocks or {}).items()}}


class Upd:
    def __init__(self, message: Update, changes: list[bytes]):
        self.message = message
        self.changes = changes

    def wire(self, **extra: Any) -> dict[str, Any]:
        return {**self.message.to_json(), **extra}


class Scenario:
    def __init__(self, name: str, description: str, covers: list[str], **client: Any):
        self.name = name
        self.description = description
        self.covers = covers
        self.client: dict[str, Any] = {"signer": "A", "clientId": ENGINE_CLIENT_ID, **client}
        self.peers: dict[str, Any] = {}
        self.steps: list[dict[str, Any]] = []
        self._n = 0
        #: the document id (a document with a membership log: ``m1_`` + its root's hash)
        self.doc_id = DOC_ID
        #: issue 12: epoch -> key of the epochs after 0 (epoch 0 is ``KEY``)
        self.epoch_keys: dict[int, bytes] = {}

    # deterministic randomness
    def _digest(self, label: str, size: int) -> bytes:
        return hashlib.blake2b(f"{self.name}/{label}".encode(), digest_size=size).digest()

    def nonce(self) -> bytes:
        self._n += 1
        return self._digest(f"nonce/{self._n}", 24)

    def sid(self, label: str) -> str:
        return b64(self._digest(f"id/{label}", 24))

    # relay-side messages
    def snapshot(
        self,
        label: str,
        state: bytes,
        *,
        signer: str = "B",
        parent: Snap | None = None,
        clocks: dict[str, int] | None = None,
        key: bytes = KEY,
        doc_id: str | None = None,
        parent_hash: str | None = None,
        log_head: dict[str, Any] | None = None,
        epoch: int | None = None,
    ) -> Snap:
        doc_id = doc_id or self.doc_id
        pd: dict[str, Any] = {"docId": doc_id, "pubKey": PUB[signer], "snapshotId": self.sid(label)}
        if log_head is not None:
            pd["logHead"] = log_head
        if epoch is not None:
            pd["epoch"] = epoch
        kp = SIGNERS[signer]
        if parent is None:
            return Snap(create_initial_snapshot(state, pd, key, kp, nonce=self.nonce()), state)
        pd["parentSnapshotId"] = parent.id
        pd["parentSnapshotUpdateClocks"] = {PUB[k]: v for k, v in (clocks or {}).items()}
        message = create_snapshot(
            state,
            pd,
            key,
            kp,
            parent_hash if parent_hash is not None else snapshot_ciphertext_hash(parent.message),
            parent.message.public_data.parent_snapshot_proof,
            nonce=self.nonce(),
        )
        return Snap(message, state)

    def update(
        self,
        changes: list[bytes],
        ref: Snap,
        clock: int,
        *,
        signer: str = "B",
        key: bytes = KEY,
        doc_id: str | None = None,
        heads: Any = None,
        log_head: dict[str, Any] | None = None,
        raw_heads: Any = None,
    ) -> Upd:
        """``heads``: a dict of author name -> clock (written as the heads' clocks), or any
        other value written as the ``heads`` field as it is; ``raw_heads``: the ``heads``
        field as it is (e.g. ``{"3": 0}``). ``log_head``: the membership log head the
        author names (``publicData.logHead``)."""
        doc_id = doc_id or self.doc_id
        pd: dict[str, Any] = {"docId": doc_id, "pubKey": PUB[signer], "refSnapshotId": ref.id}
        if log_head is not None:
            pd["logHead"] = log_head
        if isinstance(heads, dict):
            pd["heads"] = {"clocks": {PUB.get(k, k): v for k, v in heads.items()}}
        elif heads is not None:
            pd["heads"] = heads
        if raw_heads is not None:
            pd["heads"] = raw_heads
        content = serialize_updates(changes)
        message = create_update(content, pd, key, SIGNERS[signer], clock, nonce=self.nonce())
        return Upd(message, changes)

    def raw_ephemeral(
        self, plaintext: bytes, *, signer: str = "B", key: bytes = KEY, doc_id: str = DOC_ID
    ) -> dict[str, Any]:
        """An ephemeral message with any plaintext (e.g. an unknown type)."""
        pd = {"docId": doc_id, "pubKey": PUB[signer]}
        ad = canonicalize_b64(pd)
        nonce, ciphertext = encrypt_aead(plaintext, ad, key, self.nonce())
        signature = sign_message(DOMAIN_EPHEMERAL_MESSAGE, nonce, ciphertext, ad, SIGNERS[signer])
        return {
            "type": "ephemeral-message",
            "nonce": nonce,
            "ciphertext": ciphertext,
            "publicData": pd,
            "signature": signature,
        }

    def ephemeral(
        self,
        kind: str,
        *,
        signer: str = "B",
        key: bytes = KEY,
        doc_id: str | None = None,
        log_head: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A well-formed ephemeral message from a fresh session of ``signer``."""
        pd: dict[str, Any] = {"docId": doc_id or self.doc_id, "pubKey": PUB[signer]}
        if log_head is not None:
            pd["logHead"] = log_head
        message = create_ephemeral_message(
            b"" if kind == "initialize" else b"hi",
            kind,
            pd,
            key,
            SIGNERS[signer],
            self.sid(f"eph/{len(self.steps)}"),
            8,
            nonce=self.nonce(),
        )
        return {**message.to_json(), "type": "ephemeral-message"}

    def peer(self, name: str, *, signer: str | None = None, **options: Any) -> None:
        self.peers[name] = {
            "signer": signer or name,
            "sessionId": self.sid(f"peer/{name}"),
            "counter": 1000,
            **options,
        }

    # steps
    def step(self, do: str, expect: dict[str, Any] | None = None, **fields: Any) -> None:
        entry: dict[str, Any] = {"do": do, **fields}
        if expect:
            entry["expect"] = expect
        self.steps.append(entry)

    def connect(self, **expect: Any) -> None:
        self.step("connect", expect)

    def disconnect(self, **expect: Any) -> None:
        self.step("disconnect", expect)

    def receive(self, frame: dict[str, Any], mirror: Any = None, **expect: Any) -> None:
        fields: dict[str, Any] = {"frame": frame}
        if mirror is not None:
            fields["mirror"] = mirror
        self.step("receive", expect, **fields)

    def document(
        self,
        snap: Snap | None = None,
        updates: list[Upd] = (),
        chain: list[dict[str, str]] | None = None,
        *,
        raw_updates: list[dict[str, Any]] | None = None,
        mirror: bool = True,
        log: list[dict[str, Any]] | None = None,
        log_from: int = 0,
        **expect: Any,
    ) -> None:
        frame: dict[str, Any] = {"type": "document"}
        if snap is not None:
            frame["snapshot"] = snap.wire()
        frame["updates"] = raw_updates if raw_updates is not None else [u.wire() for u in updates]
        if log is not None:
            frame["log"] = log
            frame["logFrom"] = log_from
        if chain is not None:
            frame["snapshotProofChain"] = chain
        m = None
        if mirror:
            apply = [b64(c) for u in updates for c in u.changes]
            m = {"reset": b64(snap.state)} if snap is not None else {}
            if apply:
                m["apply"] = apply
        self.receive(frame, m or None, **expect)

    def edit(self, insert: tuple[int, str] | None = None, delete=None, **expect: Any) -> None:
        fields = {"insert": list(insert)} if insert is not None else {"delete": list(delete)}
        self.step("edit", expect, **fields)

    def flush(self, **expect: Any) -> None:
        self.step("flush", expect)

    def fault(self, hook: str, on: bool = True, **expect: Any) -> None:
        self.step("fault", expect, hook=hook, on=on)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "covers": self.covers,
            "docId": self.doc_id,
            "key": b64(KEY),
            "keys": {n: {"seed": SEEDS[n].hex(), "pubKey": PUB[n]} for n in SEEDS},
            **(
                {"epochKeys": {str(e): b64(k) for e, k in sorted(self.epoch_keys.items()) if e}}
                if self.epoch_keys
                else {}
            ),
            "client": self.client,
            "peers": self.peers,
            "steps": self.steps,
        }


# ------------------------------------------------------------ expectations


def ev(name: str, **fields: Any) -> list[Any]:
    return [name, fields]


def sent_update(ref: str, clock: int, *, text: str | None = None, changes: int = 1) -> dict:
    out: dict[str, Any] = {
        "kind": "update",
        "publicData": {"docId": DOC_ID, "pubKey": "$A", "refSnapshotId": ref, "clock": clock},
        "changes": changes,
    }
    if text is not None:
        out["text"] = text
    return out


def sent_snapshot(
    parent: str, clocks: dict[str, int] | None, *, bind: str | None = None, text: str | None = None
) -> dict:
    pd: dict[str, Any] = {"docId": DOC_ID, "pubKey": "$A", "parentSnapshotId": parent}
    if clocks is not None:
        pd["parentSnapshotUpdateClocks"] = {f"${k}": v for k, v in clocks.items()}
    out: dict[str, Any] = {"kind": "snapshot", "publicData": pd}
    if bind is not None:
        out["bind"] = bind
    if text is not None:
        out["text"] = text
    return out


def sent_ephemeral(kind: str, content: bytes | None = None) -> dict:
    out: dict[str, Any] = {"kind": "ephemeral", "ephemeralType": kind}
    if content is not None:
        out["content"] = b64(content)
    return out


INIT = sent_ephemeral("initialize")
CONNECT_EVENTS = [ev("state", state="connecting"), ev("state", state="connected")]


def load_fails(code: str | None, document_state: str = "failed") -> dict[str, Any]:
    """What a load that fails with ``code`` leaves (after the ephemeral initialize went out)."""
    return {"sent": [INIT], "state": "failed", "documentState": document_state, "errors": [code]}


SCENARIOS: list[Callable[[], Scenario]] = []


def scenario(fn: Callable[[], Scenario]) -> Callable[[], Scenario]:
    SCENARIOS.append(fn)
    return fn


def loaded(sc: Scenario, value: str = "Hello", **expect: Any) -> Snap:
    """connect + a document frame holding one snapshot (by B) with ``value``."""
    s1 = sc.snapshot("S1", text_state(value))
    sc.connect()
    sc.document(s1, sent=[INIT], documentState="complete", text=value, **expect)
    return s1


def saved(snap_id: str, clock: int) -> dict[str, Any]:
    return {"type": "update-saved", "snapshotId": snap_id, "clock": clock}


def save_failed(snap_id: str, clock: int, requires_new_snapshot: bool = False) -> dict[str, Any]:
    return {
        "type": "update-save-failed",
        "snapshotId": snap_id,
        "clock": clock,
        "requiresNewSnapshot": requires_new_snapshot,
    }


def snapshot_saved(bound: str) -> dict[str, Any]:
    """The relay saved the snapshot we sent whose id was bound to ``bound``."""
    return {"type": "snapshot-saved", "snapshotId": f"${bound}"}


def snapshot_frame(snap: Snap) -> dict[str, Any]:
    return {"type": "snapshot", "snapshot": snap.wire()}


CLIENT_IDS["E"] = ENGINE_CLIENT_ID  # the engine's own edits, replayed here to build states


# =================================================================== loading


@scenario
def lifecycle() -> Scenario:
    sc = Scenario(
        "lifecycle",
        "Connect, load a snapshot and an update, send a local change, get it saved, close.",
        ["rule:load", "rule:send-update", "rule:update-saved", "rule:events"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    u0 = sc.update([b.append("!")], s1, 0)
    sc.connect(
        events=CONNECT_EVENTS,
        state="connected",
        documentState="pending",
        connectionParams={"mode": "complete"},
        isSynced=False,
    )
    sc.document(
        s1,
        [u0],
        sent=[INIT],
        events=[
            ev("remote-change", kind="snapshot", snapshotId=s1.id),
            ev("remote-change", kind="updates", count=1),
            ev("loaded"),
        ],
        documentState="complete",
        text="Hello!",
        activeSnapshot=s1.id,
        activeClocks={"$B": 0},
        isSynced=True,
        errors=[],
    )
    sc.edit((6, " A"), sent=[], pending=1, text="Hello! A", isSynced=False)
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello! A")], pending=0, isSynced=False)
    sc.receive(
        saved(s1.id, 0),
        events=[ev("update-saved", snapshotId=s1.id, clock=0)],
        isSynced=True,
        activeClocks={"$A": 0, "$B": 0},
    )
    sc.step("close", {"events": [ev("state", state="closed")], "state": "closed"})
    return sc


@scenario
def empty_document_initial_snapshot() -> Scenario:
    sc = Scenario(
        "empty-document-initial-snapshot",
        "A document without a snapshot loads empty; the first change goes out as the initial"
        " snapshot (no parent), later ones as updates on it.",
        ["rule:initial-snapshot", "rule:snapshot-saved"],
    )
    sc.connect()
    sc.document(None, [], sent=[INIT], documentState="complete", text="", activeSnapshot=None)
    sc.edit((0, "abc"), pending=1)
    sc.flush(sent=[sent_snapshot("", {}, bind="mine", text="abc")], pending=0, isSynced=False)
    sc.receive(
        snapshot_saved("mine"),
        events=[ev("snapshot-saved", snapshotId="$mine")],
        activeSnapshot="$mine",
        isSynced=True,
    )
    sc.edit((3, "d"))
    sc.flush(sent=[sent_update("$mine", 0, text="abcd")])
    return sc


@scenario
def error_100() -> Scenario:
    sc = Scenario(
        "snapshot-100-complete-load-without-snapshot",
        "A complete load with updates but no snapshot fails the document (100).",
        ["SECSYNC_ERROR_100"],
    )
    s1 = sc.snapshot("S1", text_state("Hello"))
    u0 = sc.update([Writer("B", s1.state).append("!")], s1, 0)
    sc.connect()
    sc.document(
        None,
        [u0],
        sent=[INIT],
        events=[ev("error", code="SECSYNC_ERROR_100", fatal=True), ev("state", state="failed")],
        state="failed",
        documentState="failed",
        errors=["SECSYNC_ERROR_100"],
    )
    sc.disconnect(state="failed", events=[])
    return sc


@scenario
def error_101_load() -> Scenario:
    sc = Scenario(
        "snapshot-101-load",
        "A snapshot that does not decrypt with the key fails the load (101).",
        ["SECSYNC_ERROR_101"],
    )
    s1 = sc.snapshot("S1", text_state("Hello"), key=WRONG_KEY)
    sc.connect()
    sc.document(s1, **load_fails("SECSYNC_ERROR_101"))
    return sc


@scenario
def error_101_event() -> Scenario:
    sc = Scenario(
        "snapshot-101-event",
        "A snapshot event that does not decrypt fails the (loaded) document (101).",
        ["SECSYNC_ERROR_101"],
    )
    s1 = loaded(sc)
    s2 = sc.snapshot("S2", text_state("Hello again"), parent=s1, key=WRONG_KEY)
    sc.receive(
        snapshot_frame(s2),
        state="failed",
        documentState="complete",
        errors=["SECSYNC_ERROR_101"],
        text="Hello",
    )
    return sc


def _own_updates_saved(sc: Scenario) -> tuple[Snap, Writer]:
    """Load "Hello" (S1 by B); our "!" and "?" are saved as clocks 0 and 1."""
    s1 = loaded(sc)
    e = Writer("E", s1.state)
    e.append("!")
    sc.edit((5, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello!")])
    sc.receive(saved(s1.id, 0))
    e.append("?")
    sc.edit((6, "?"))
    sc.flush(sent=[sent_update(s1.id, 1, text="Hello!?")])
    sc.receive(saved(s1.id, 1), activeClocks={"$A": 1}, isSynced=True)
    return s1, e


@scenario
def error_102_event() -> Scenario:
    sc = Scenario(
        "snapshot-102-event",
        "A snapshot event that does not record our last saved update fails the document (102).",
        ["SECSYNC_ERROR_102"],
    )
    s1, e = _own_updates_saved(sc)
    s2 = sc.snapshot("S2", e.state(), parent=s1, clocks={"A": 0})
    sc.receive(snapshot_frame(s2), state="failed", errors=["SECSYNC_ERROR_102"], text="Hello!?")
    return sc


@scenario
def error_102_chain() -> Scenario:
    sc = Scenario(
        "snapshot-102-proof-chain",
        "After a reconnect the relay answers with a child of the known snapshot and its proof"
        " chain; it records our clock 0 although clock 1 was saved: 102 (issue 9 item 5 — the"
        " reference skips this check when a chain comes along).",
        ["SECSYNC_ERROR_102", "decision:102-with-proof-chain", "rule:reconnect-delta"],
    )
    s1, e = _own_updates_saved(sc)
    sc.disconnect(
        connectionParams={
            "mode": "delta",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {"$A": 1},
        }
    )
    sc.connect()
    s2 = sc.snapshot("S2", e.state(), parent=s1, clocks={"A": 0, "B": 3})
    sc.document(
        s2,
        [],
        [s2.entry()],
        **load_fails("SECSYNC_ERROR_102"),
        text="Hello!?",
    )
    return sc


@scenario
def chain_with_own_updates() -> Scenario:
    sc = Scenario(
        "snapshot-proof-chain-with-own-updates",
        "The same reconnect, but the child records our clock 2: an update in flight when the"
        " connection dropped was saved (its ack was lost). At least our saved clock: it loads.",
        ["decision:102-with-proof-chain", "rule:reconnect-delta"],
    )
    s1, e = _own_updates_saved(sc)
    sc.disconnect()
    sc.connect()
    e.append("#")
    s2 = sc.snapshot("S2", e.state(), parent=s1, clocks={"A": 2})
    sc.document(
        s2,
        [],
        [s2.entry()],
        sent=[INIT],
        state="connected",
        documentState="complete",
        errors=[],
        text="Hello!?#",
        activeSnapshot=s2.id,
    )
    return sc


def _snapshot_fault(name: str, code: str, what: str, hook: str) -> None:
    def build() -> Scenario:
        sc = Scenario(name, f"{what}: the load fails ({code}).", [f"SECSYNC_ERROR_{code}"])
        s1 = sc.snapshot("S1", text_state("Hello"))
        sc.connect()
        sc.fault(hook)
        sc.document(
            s1,
            **load_fails(f"SECSYNC_ERROR_{code}"),
        )
        return sc

    SCENARIOS.append(build)


_snapshot_fault("snapshot-103-key-lookup", "103", "The key lookup for the snapshot fails", "key")
_snapshot_fault(
    "snapshot-104-author-check-raises",
    "104",
    "The author check raises for a snapshot",
    "isValidClient",
)
_snapshot_fault(
    "snapshot-105-apply-fails", "105", "Applying the snapshot's content fails", "applySnapshot"
)


@scenario
def error_103_event() -> Scenario:
    sc = Scenario(
        "snapshot-103-event",
        "The key lookup for a snapshot event fails: the document fails (103).",
        ["SECSYNC_ERROR_103"],
    )
    s1 = loaded(sc)
    sc.fault("key")
    s2 = sc.snapshot("S2", text_state("Hello again"), parent=s1)
    sc.receive(
        snapshot_frame(s2), state="failed", documentState="complete", errors=["SECSYNC_ERROR_103"]
    )
    return sc


@scenario
def error_110() -> Scenario:
    sc = Scenario(
        "snapshot-110-parse",
        "A snapshot that does not parse fails the load (110); as an event it is recorded and"
        " ignored (second engine run: see snapshot-errors-ignored-on-events).",
        ["SECSYNC_ERROR_110"],
    )
    s1 = sc.snapshot("S1", text_state("Hello"))
    bad = s1.wire()
    del bad["nonce"]
    sc.connect()
    sc.receive(
        {"type": "document", "snapshot": bad, "updates": []},
        **load_fails("SECSYNC_ERROR_110"),
    )
    return sc


def _initial_snapshot_error(name: str, code: str, make: Callable[[Scenario], Snap]) -> None:
    def build() -> Scenario:
        sc = Scenario(
            name,
            f"A snapshot rejected with {code} on the initial load fails the document.",
            [code],
            allowedClients=["A", "B"],
        )
        snap = make(sc)
        sc.connect()
        sc.document(snap, **load_fails(code))
        return sc

    SCENARIOS.append(build)


def _forged_snapshot(sc: Scenario) -> Snap:
    s1 = sc.snapshot("S1", text_state("Hello"))
    other = sc.snapshot("O", text_state("Other"))
    s1.message = Snapshot.from_json({**s1.wire(), "signature": other.wire()["signature"]})
    return s1


_initial_snapshot_error("snapshot-111-load", "SECSYNC_ERROR_111", _forged_snapshot)
_initial_snapshot_error(
    "snapshot-113-load",
    "SECSYNC_ERROR_113",
    lambda sc: sc.snapshot("S1", text_state("Hello"), doc_id="another-document"),
)
_initial_snapshot_error(
    "snapshot-114-load",
    "SECSYNC_ERROR_114",
    lambda sc: sc.snapshot("S1", text_state("Hello", "C"), signer="C"),
)


@scenario
def snapshot_errors_ignored_on_events() -> Scenario:
    sc = Scenario(
        "snapshot-errors-ignored-on-events",
        "On a live connection a snapshot that does not parse (110), has a bad signature (111),"
        " belongs to another document (113) or comes from a client that is not allowed (114)"
        " is recorded and ignored.",
        ["SECSYNC_ERROR_110", "SECSYNC_ERROR_111", "SECSYNC_ERROR_113", "SECSYNC_ERROR_114"],
        allowedClients=["A", "B"],
    )
    s1 = loaded(sc)
    sc.receive(
        {"type": "snapshot", "snapshot": {"publicData": 1}},
        events=[ev("error", code="SECSYNC_ERROR_110", fatal=False)],
        errors=["SECSYNC_ERROR_110"],
    )
    forged = sc.snapshot("S2", text_state("Hello 2"), parent=s1).wire()
    forged["signature"] = sc.snapshot("S2x", text_state("Hello x"), parent=s1).wire()["signature"]
    sc.receive(
        {"type": "snapshot", "snapshot": forged}, errors=["SECSYNC_ERROR_111", "SECSYNC_ERROR_110"]
    )
    other = sc.snapshot("S3", text_state("Hello 3"), parent=s1, doc_id="another-document")
    sc.receive(
        snapshot_frame(other),
        errors=["SECSYNC_ERROR_113", "SECSYNC_ERROR_111", "SECSYNC_ERROR_110"],
    )
    by_c = sc.snapshot("S4", text_state("Hello 4", "C"), parent=s1, signer="C")
    sc.receive(
        snapshot_frame(by_c),
        state="connected",
        documentState="complete",
        errors=["SECSYNC_ERROR_114", "SECSYNC_ERROR_113", "SECSYNC_ERROR_111", "SECSYNC_ERROR_110"],
        text="Hello",
        reconnectRequested=False,
        activeSnapshot=s1.id,
    )
    return sc


@scenario
def error_112_event() -> Scenario:
    sc = Scenario(
        "snapshot-112-event-reconnects",
        "A snapshot event that is not a child of the active snapshot (112) is recorded and makes"
        " the engine reconnect; it reloads in delta mode from its active snapshot and clocks.",
        ["SECSYNC_ERROR_112", "rule:reconnect-delta", "rule:reconnect-on-112-115"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT], text="Hello")
    u0 = sc.update([b.append("!")], s1, 0)
    sc.receive(u0.wire(type="update"), text="Hello!", activeClocks={"$B": 0})
    unrelated = sc.snapshot("X", text_state("Other"))
    sc.receive(
        snapshot_frame(unrelated),
        events=[ev("error", code="SECSYNC_ERROR_112", fatal=False), ev("reconnect")],
        errors=["SECSYNC_ERROR_112"],
        reconnectRequested=True,
        state="connected",
        text="Hello!",
    )
    sc.disconnect(
        events=[ev("state", state="disconnected")],
        state="disconnected",
        reconnectRequested=False,
        connectionParams={
            "mode": "delta",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {"$B": 0},
        },
    )
    sc.connect(documentState="pending")
    b.insert(0, "Oh, ")
    s2 = sc.snapshot("S2", b.state(), parent=s1, clocks={"B": 0})
    sc.document(
        s2,
        [],
        [s2.entry()],
        sent=[INIT],
        documentState="complete",
        text="Oh, Hello!",
        activeSnapshot=s2.id,
    )
    return sc


@scenario
def error_112_load() -> Scenario:
    sc = Scenario(
        "snapshot-112-load-with-known-snapshot",
        "Loading in complete mode with a known snapshot: a snapshot whose parent proof does not"
        " match the known one fails the load (112).",
        ["SECSYNC_ERROR_112"],
        loadMode="complete",
    )
    s1 = sc.snapshot("S1", text_state("Hello"))
    sc.client["initialState"] = b64(s1.state)
    sc.client["knownSnapshot"] = s1.known()
    s2 = sc.snapshot("S2", text_state("Hello!"), parent=s1, parent_hash="WRONG")
    sc.connect(
        connectionParams={
            "mode": "complete",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {},
        }
    )
    sc.document(s2, **load_fails("SECSYNC_ERROR_112"))
    return sc


@scenario
def load_known_snapshot_still_active() -> Scenario:
    sc = Scenario(
        "load-known-snapshot-still-active",
        "Loading in complete mode with a known snapshot that is still the active one: the relay"
        " sends it again with only the newer updates; it is not applied twice and the updates"
        " continue from the known clocks.",
        ["rule:load", "rule:known-snapshot"],
        loadMode="complete",
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    u0 = sc.update([b.append(" world")], s1, 0)
    sc.client["initialState"] = b64(b.state())
    sc.client["knownSnapshot"] = s1.known({"B": 0})
    u1 = sc.update([b.append("!")], s1, 1)
    sc.connect(
        connectionParams={
            "mode": "complete",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {"$B": 0},
        }
    )
    sc.document(
        s1,
        [u1],
        mirror=False,
        sent=[INIT],
        events=[ev("remote-change", kind="updates", count=1), ev("loaded")],
        documentState="complete",
        text="Hello world!",
        activeSnapshot=s1.id,
        activeClocks={"$B": 1},
    )
    assert u0.message.public_data.clock == 0
    return sc


def _reconnected(sc: Scenario) -> tuple[Snap, Writer]:
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT], text="Hello")
    sc.disconnect()
    sc.connect()
    return s1, b


@scenario
def error_115_chain() -> Scenario:
    sc = Scenario(
        "snapshot-115-broken-chain",
        "Reconnecting, the relay sends a snapshot two generations on with a proof chain that"
        " does not link it to the known snapshot: the load fails (115).",
        ["SECSYNC_ERROR_115"],
    )
    s1, b = _reconnected(sc)
    b.append(" again")
    s2 = sc.snapshot("S2", b.state(), parent=s1)
    b.append(" and again")
    s3 = sc.snapshot("S3", b.state(), parent=s2)
    sc.document(
        s3,
        [],
        [s2.entry(), s3.entry("WRONG_PROOF")],
        **load_fails("SECSYNC_ERROR_115"),
        text="Hello",
    )
    return sc


@scenario
def chain_of_two() -> Scenario:
    sc = Scenario(
        "snapshot-proof-chain-of-two",
        "Reconnecting, a valid proof chain of two snapshots leads to the new snapshot, with an"
        " update on it.",
        ["rule:proof-chain", "rule:reconnect-delta"],
    )
    s1, b = _reconnected(sc)
    b.append(" again")
    s2 = sc.snapshot("S2", b.state(), parent=s1)
    b.append(" and again")
    s3 = sc.snapshot("S3", b.state(), parent=s2)
    u0 = sc.update([b.append("!")], s3, 0)
    sc.document(
        s3,
        [u0],
        [s2.entry(), s3.entry()],
        sent=[INIT],
        documentState="complete",
        text="Hello again and again!",
        activeSnapshot=s3.id,
        activeClocks={"$B": 0},
    )
    return sc


@scenario
def error_115_unparsable() -> Scenario:
    sc = Scenario(
        "snapshot-115-unparsable-chain",
        "A proof chain that does not parse fails the load (115).",
        ["SECSYNC_ERROR_115"],
    )
    s1, b = _reconnected(sc)
    b.append("!")
    s2 = sc.snapshot("S2", b.state(), parent=s1)
    sc.document(
        s2,
        [],
        [{"snapshotId": 1}],
        mirror=False,
        sent=[INIT],
        state="failed",
        errors=["SECSYNC_ERROR_115"],
    )
    return sc


# =================================================================== updates


def _load_error(
    name: str, code: str, description: str, bad: Callable[[Scenario, Snap, Writer], list]
) -> None:
    """A document frame: a valid update, then a rejected one, then a valid one: the load fails
    with the rejected one's code and keeps only what came before it."""

    def build() -> Scenario:
        sc = Scenario(
            name,
            description + " The load fails with its code; the verified update before it is"
            " applied, none after it (issue 10: the first rejected update ends the frame).",
            [code, "decision:first-rejected-update-ends-the-load"],
            allowedClients=["A", "B"],
        )
        b = Writer("B")
        b.append("Hello")
        s1 = sc.snapshot("S1", b.state())
        u0 = sc.update([b.append("0")], s1, 0)
        raws = [u0.wire(), *bad(sc, s1, b)]
        c = Writer("A", s1.state)  # a valid update by A after the bad one
        raws.append(sc.update([c.insert(0, ">")], s1, 0, signer="A").wire())
        sc.connect()
        sc.document(
            s1,
            raw_updates=raws,
            mirror=False,
            **load_fails(code, "partial"),
            text="Hello0",
        )
        return sc

    SCENARIOS.append(build)


def _unparsable(sc, s1, b):
    w = sc.update([b.append("1")], s1, 1).wire()
    w["publicData"]["clock"] = -1
    return [w]


def _forged(sc, s1, b):
    w = sc.update([b.append("1")], s1, 1).wire()
    w["signature"] = sc.update([b"x"], s1, 1).wire()["signature"]
    return [w]


_load_error("update-211-load", "SECSYNC_ERROR_211", "An update that does not parse.", _unparsable)
_load_error(
    "update-212-forged-in-document",
    "SECSYNC_ERROR_212",
    "A forged update (valid ones around it, the next one by the same author): the relay"
    " misbehaves. 212 is reported, not the clock gap that follows.",
    lambda sc, s1, b: [*_forged(sc, s1, b), sc.update([b.append("2")], s1, 2).wire()],
)
_load_error(
    "update-213-wrong-snapshot-load",
    "SECSYNC_ERROR_213",
    "An update on another snapshot.",
    lambda sc, s1, b: [sc.update([b.append("1")], sc.snapshot("X", text_state("x")), 1).wire()],
)
_load_error(
    "update-213-wrong-document-load",
    "SECSYNC_ERROR_213",
    "An update of another document.",
    lambda sc, s1, b: [sc.update([b.append("1")], s1, 1, doc_id="another-document").wire()],
)
_load_error(
    "update-214-replay-load",
    "SECSYNC_ERROR_214",
    "An update sent twice (replayed clock).",
    lambda sc, s1, b: [sc.update([b.append("1")], s1, 0).wire()],
)
_load_error(
    "update-215-not-allowed-load",
    "SECSYNC_ERROR_215",
    "An update by a client that is not allowed.",
    lambda sc, s1, b: [sc.update([Writer("C", s1.state).append("c")], s1, 0, signer="C").wire()],
)


@scenario
def update_errors_ignored_on_events() -> Scenario:
    sc = Scenario(
        "update-errors-ignored-on-events",
        "On a live connection rejected updates (211-215) are recorded and ignored; valid ones"
        " in between are applied; a replay is applied once.",
        [
            "SECSYNC_ERROR_211",
            "SECSYNC_ERROR_212",
            "SECSYNC_ERROR_213",
            "SECSYNC_ERROR_214",
            "SECSYNC_ERROR_215",
        ],
        allowedClients=["A", "B"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT])
    u0 = sc.update([b.append("0")], s1, 0)
    sc.receive(u0.wire(type="update"), text="Hello0", errors=[])
    sc.receive(u0.wire(type="update"), text="Hello0", errors=["SECSYNC_ERROR_214"])
    bad = _unparsable(sc, s1, Writer("B", b.state()))[0]
    sc.receive({**bad, "type": "update"}, errors=["SECSYNC_ERROR_211", "SECSYNC_ERROR_214"])
    forged = _forged(sc, s1, Writer("B", b.state()))[0]
    sc.receive(
        {**forged, "type": "update"},
        errors=["SECSYNC_ERROR_212", "SECSYNC_ERROR_211", "SECSYNC_ERROR_214"],
    )
    other = sc.update([Writer("B", b.state()).append("x")], s1, 1, doc_id="another-document")
    sc.receive(
        other.wire(type="update"),
        errors=["SECSYNC_ERROR_213", "SECSYNC_ERROR_212", "SECSYNC_ERROR_211", "SECSYNC_ERROR_214"],
    )
    by_c = sc.update([Writer("C", b.state()).append("c")], s1, 0, signer="C")
    sc.receive(
        by_c.wire(type="update"),
        errors=[
            "SECSYNC_ERROR_215",
            "SECSYNC_ERROR_213",
            "SECSYNC_ERROR_212",
            "SECSYNC_ERROR_211",
            "SECSYNC_ERROR_214",
        ],
    )
    u1 = sc.update([b.append("1")], s1, 1)
    sc.receive(
        u1.wire(type="update"),
        state="connected",
        documentState="complete",
        text="Hello01",
        activeClocks={"$B": 1},
    )
    return sc


def _fatal_update(name: str, code: str, description: str, where: str, make, fault=None) -> None:
    def build() -> Scenario:
        sc = Scenario(name, description, [code])
        b = Writer("B")
        b.append("Hello")
        s1 = sc.snapshot("S1", b.state())
        bad = make(sc, s1, b)
        sc.connect()
        if where == "load":
            if fault:
                sc.fault(fault)
            sc.document(
                s1,
                raw_updates=[bad],
                mirror=False,
                **load_fails(code, "partial"),
                text="Hello",
            )
        else:
            sc.document(s1, sent=[INIT], text="Hello")
            if fault:
                sc.fault(fault)
            sc.receive(
                {**bad, "type": "update"},
                state="failed",
                documentState="complete",
                errors=[code],
                text="Hello",
            )
        return sc

    SCENARIOS.append(build)


for _where in ("load", "event"):
    _fatal_update(
        f"update-201-{_where}",
        "SECSYNC_ERROR_201",
        "An update that does not decrypt with the key fails the document (201).",
        _where,
        lambda sc, s1, b: sc.update([b.append("!")], s1, 0, key=WRONG_KEY).wire(),
    )
    _fatal_update(
        f"update-202-{_where}",
        "SECSYNC_ERROR_202",
        "An update whose clock skips one (an update is missing) fails the document (202).",
        _where,
        lambda sc, s1, b: sc.update([b.append("!")], s1, 1).wire(),
    )
for _name, _code, _what, _hook in [
    ("update-203-apply-fails", "203", "Applying an update's changes fails", "applyChanges"),
    ("update-204-decode-fails", "204", "Decoding an update's changes fails", "deserializeChanges"),
    (
        "update-205-author-check-raises",
        "205",
        "The author check raises for an update",
        "isValidClient",
    ),
    ("update-206-key-lookup", "206", "The key lookup for an update fails", "key"),
]:
    _fatal_update(
        _name,
        f"SECSYNC_ERROR_{_code}",
        f"{_what}: the document fails ({_code}).",
        "event",
        lambda sc, s1, b: sc.update([b.append("!")], s1, 0).wire(),
        fault=_hook,
    )


@scenario
def errors_capped() -> Scenario:
    sc = Scenario(
        "errors-capped-at-20",
        "At most the 20 newest errors are kept, newest first.",
        ["rule:error-list"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT])
    for _ in range(25):
        forged = _forged(sc, s1, Writer("B", b.state()))[0]
        forged["publicData"]["clock"] = 0
        sc.receive({**forged, "type": "update"})
    sc.receive(
        {"type": "snapshot", "snapshot": {"nope": 1}},
        errors=["SECSYNC_ERROR_110"] + ["SECSYNC_ERROR_212"] * 19,
        state="connected",
    )
    return sc


# =================================================================== sending


#: updates of ours in flight at most (MAX_UPDATES_IN_FLIGHT in both engines)
IN_FLIGHT = 16


def _in_flight(sc: Scenario, snap: Snap, text: str, chars: str, first: int = 0) -> str:
    """Type ``chars`` at the end of ``text``, one flushed edit each: one update each, with the
    next clocks from ``first``, all in flight at once. Returns the new text."""
    for i, ch in enumerate(chars):
        sc.edit((len(text), ch))
        text += ch
        sc.flush(sent=[sent_update(snap.id, first + i, text=text)])
    return text


@scenario
def batching() -> Scenario:
    sc = Scenario(
        "batching-updates-in-flight",
        f"Up to {IN_FLIGHT} updates in flight: each flushed edit goes out at once with the next"
        " clock, without waiting for the previous acknowledgement; once that many are"
        " unacknowledged, changes wait and go out together, merged into one Yjs update, when"
        " the first acknowledgement frees a place.",
        ["rule:batching", "rule:updates-in-flight", "decision:merge-pending-changes"],
    )
    s1 = loaded(sc)
    text = _in_flight(sc, s1, "Hello", "abcdefghijklmnop")
    sc.edit((len(text), "q"), pending=1)
    sc.edit((len(text) + 1, "r"), pending=2)
    sc.flush(sent=[], pending=2)
    sc.receive(
        saved(s1.id, 0),
        sent=[sent_update(s1.id, IN_FLIGHT, text=text + "qr", changes=1)],
        pending=0,
    )
    for clock in range(1, IN_FLIGHT):
        sc.receive(saved(s1.id, clock), sent=[], isSynced=False)
    sc.receive(saved(s1.id, IN_FLIGHT), isSynced=True, activeClocks={"$A": IN_FLIGHT})
    return sc


@scenario
def in_flight_acked_in_order() -> Scenario:
    sc = Scenario(
        "in-flight-acked-in-order",
        "Three updates in flight are acknowledged in clock order, each counted once for the"
        " snapshot policy; the relay saves one author's updates in order, so an"
        " acknowledgement of clock n also acknowledges the earlier ones still in flight on that"
        " snapshot; an acknowledgement for another snapshot or an unknown clock changes nothing"
        " we have in flight.",
        ["rule:updates-in-flight", "rule:update-saved"],
        snapshotPolicy={"maxUpdates": 3, "maxUpdateBytes": 1000000},
    )
    s1 = loaded(sc)
    text = _in_flight(sc, s1, "Hello", "abc")
    sc.receive(
        saved(s1.id, 0),
        events=[ev("update-saved", snapshotId=s1.id, clock=0)],
        activeClocks={"$A": 0},
        isSynced=False,
    )
    sc.receive(saved("not-ours", 1), sent=[], activeClocks={"$A": 0}, isSynced=False)
    sc.receive(saved(s1.id, 2), activeClocks={"$A": 2}, isSynced=True)
    # three updates saved: with maxUpdates 3 the next change goes out as a snapshot
    sc.edit((len(text), "!"))
    sc.flush(sent=[sent_snapshot(s1.id, {"A": 2}, text=text + "!")])
    return sc


@scenario
def in_flight_first_fails() -> Scenario:
    sc = Scenario(
        "in-flight-first-fails",
        "The first of three updates in flight is rejected (update-save-failed): the later two"
        " cannot be saved either (their clocks follow it); the changes of all three go back in"
        " front of the pending ones and nothing is sent until the relay has answered the later"
        " two; then everything goes out as one update with the first clock. An answer for an"
        " update not in flight is ignored.",
        ["rule:updates-in-flight", "rule:update-save-failed"],
    )
    s1 = loaded(sc)
    text = _in_flight(sc, s1, "Hello", "abc")
    sc.receive(save_failed(s1.id, 0), sent=[], pending=3)
    sc.edit((len(text), "!"), pending=4)
    sc.flush(sent=[], pending=4)
    sc.receive(save_failed(s1.id, 1), sent=[], pending=4)
    sc.receive(save_failed(s1.id, 7), sent=[], pending=4)
    sc.receive(
        save_failed(s1.id, 2),
        sent=[sent_update(s1.id, 0, text=text + "!", changes=1)],
        pending=0,
        reconnectRequested=False,
    )
    sc.receive(saved(s1.id, 0), isSynced=True, activeClocks={"$A": 0})
    return sc


@scenario
def in_flight_fails_new_snapshot() -> Scenario:
    sc = Scenario(
        "in-flight-fails-requires-new-snapshot",
        "The second of three updates in flight is rejected with requiresNewSnapshot after the"
        " first was saved: once the third's rejection has come, the changes of the second and"
        " the third go out in a snapshot that records our saved clock 0.",
        ["rule:updates-in-flight", "rule:requires-new-snapshot"],
    )
    s1 = loaded(sc)
    text = _in_flight(sc, s1, "Hello", "abc")
    sc.receive(saved(s1.id, 0), activeClocks={"$A": 0})
    sc.receive(save_failed(s1.id, 1, True), sent=[], pending=2)
    sc.receive(
        save_failed(s1.id, 2, True),
        sent=[sent_snapshot(s1.id, {"A": 0}, bind="mine", text=text)],
        pending=0,
    )
    sc.receive(snapshot_saved("mine"), isSynced=True, activeSnapshot="$mine")
    return sc


@scenario
def in_flight_snapshot_change() -> Scenario:
    sc = Scenario(
        "in-flight-snapshot-change",
        "Three updates of ours are in flight on S1 when B's snapshot S2 becomes active: none can"
        " be saved any more; their changes go out at once on S2 as one update (clock 0); the"
        " relay's late answers for the stale ones change nothing.",
        ["rule:updates-in-flight", "decision:requeue-stale-updates"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT])
    _in_flight(sc, s1, "Hello", "abc")
    b.insert(0, "Oh, ")
    s2 = sc.snapshot("S2", b.state(), parent=s1)
    sc.receive(
        snapshot_frame(s2),
        mirror={"reset": b64(s2.state)},
        sent=[sent_update(s2.id, 0, text="Oh, Helloabc", changes=1)],
        activeSnapshot=s2.id,
        text="Oh, Helloabc",
        pending=0,
    )
    sc.receive(save_failed(s1.id, 0), sent=[])
    sc.receive(save_failed(s1.id, 1), sent=[])
    sc.receive(saved(s1.id, 2), sent=[], isSynced=False, activeClocks={})
    sc.receive(saved(s2.id, 0), isSynced=True, activeClocks={"$A": 0})
    return sc


@scenario
def snapshot_waits_for_updates_in_flight() -> Scenario:
    sc = Scenario(
        "snapshot-waits-for-updates-in-flight",
        "A snapshot records every author's saved clock, so it waits until none of our updates"
        " is in flight: requested with two in flight, it goes out after the second"
        " acknowledgement, recording our clock 1; changes made meanwhile go in it.",
        ["rule:updates-in-flight", "rule:snapshot-policy"],
    )
    s1 = loaded(sc)
    text = _in_flight(sc, s1, "Hello", "ab")
    sc.step("requestSnapshot")
    sc.edit((len(text), "!"), pending=1)
    sc.flush(sent=[], pending=1)
    sc.receive(saved(s1.id, 0), sent=[], pending=1)
    sc.receive(
        saved(s1.id, 1),
        sent=[sent_snapshot(s1.id, {"A": 1}, bind="mine", text=text + "!")],
        pending=0,
    )
    sc.receive(snapshot_saved("mine"), isSynced=True, activeSnapshot="$mine")
    return sc


@scenario
def reconnect_updates_in_flight() -> Scenario:
    sc = Scenario(
        "reconnect-updates-in-flight",
        "The connection drops with three updates in flight, of which the relay had saved the"
        " first two (their acknowledgements were lost): after the delta reload, which brings"
        " them back, our clock continues after them and the changes of all three (plus an"
        " offline edit) go out as one update with clock 2.",
        ["rule:updates-in-flight", "rule:reconnect-delta", "rule:offline-edits"],
    )
    s1 = loaded(sc)
    e = Writer("E", s1.state)
    u0 = sc.update([e.append("a")], s1, 0, signer="A")
    u1 = sc.update([e.append("b")], s1, 1, signer="A")
    text = _in_flight(sc, s1, "Hello", "abc")
    sc.disconnect(
        pending=3,
        connectionParams={
            "mode": "delta",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {},
        },
    )
    sc.edit((len(text), "?"), pending=4)
    sc.connect()
    sc.document(
        None,
        [u0, u1],
        sent=[INIT, sent_update(s1.id, 2, text=text + "?", changes=1)],
        activeClocks={"$A": 1},
        pending=0,
    )
    sc.receive(saved(s1.id, 2), isSynced=True, activeClocks={"$A": 2})
    return sc


@scenario
def update_save_failed_retry() -> Scenario:
    sc = Scenario(
        "update-save-failed-retry",
        "update-save-failed: the changes go out again with the same clock; with"
        " requiresNewSnapshot they go out in a snapshot instead.",
        ["rule:update-save-failed", "rule:requires-new-snapshot"],
    )
    s1 = loaded(sc)
    sc.edit((5, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello!")])
    sc.receive(save_failed(s1.id, 0), sent=[sent_update(s1.id, 0, text="Hello!")])
    sc.receive(save_failed("not-ours", 0), sent=[])
    sc.receive(
        save_failed(s1.id, 0, True),
        sent=[sent_snapshot(s1.id, {}, bind="mine", text="Hello!")],
        reconnectRequested=False,
    )
    sc.receive(snapshot_saved("mine"), isSynced=True, activeSnapshot="$mine")
    return sc


@scenario
def update_save_failed_gives_up() -> Scenario:
    sc = Scenario(
        "update-save-failed-gives-up",
        "Our update is rejected 5 times in a row: the engine gives up on this connection"
        " (reconnect, as for snapshots and as the browser did); after the delta reload it is"
        " sent again. A save-failed frame for an update not in flight does not count.",
        ["decision:update-save-failed-bound", "rule:reconnect-delta"],
    )
    s1 = loaded(sc)
    sc.edit((5, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello!")])
    sc.receive(save_failed(s1.id, 7), sent=[])
    for _ in range(4):
        sc.receive(save_failed(s1.id, 0), sent=[sent_update(s1.id, 0)], reconnectRequested=False)
    sc.receive(
        save_failed(s1.id, 0),
        sent=[],
        events=[ev("reconnect")],
        reconnectRequested=True,
        pending=1,
        state="connected",
    )
    sc.flush(sent=[])
    sc.disconnect(
        connectionParams={
            "mode": "delta",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {},
        }
    )
    sc.connect()
    sc.document(sent=[INIT, sent_update(s1.id, 0, text="Hello!")], documentState="complete")
    sc.receive(saved(s1.id, 0), isSynced=True)
    return sc


@scenario
def stale_update_requeued() -> Scenario:
    sc = Scenario(
        "stale-update-requeued",
        "Our update is in flight on S1 when B's snapshot S2 becomes active: it can never be"
        " saved, so its changes go out again at once on S2 (clock 0); the relay's late"
        " rejection of the stale one changes nothing.",
        ["decision:requeue-stale-updates"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT])
    sc.edit((5, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello!")])
    b.insert(0, "Oh, ")
    s2 = sc.snapshot("S2", b.state(), parent=s1)
    sc.receive(
        snapshot_frame(s2),
        mirror={"reset": b64(s2.state)},
        sent=[sent_update(s2.id, 0, text="Oh, Hello!")],
        activeSnapshot=s2.id,
        text="Oh, Hello!",
    )
    sc.receive(save_failed(s1.id, 0), sent=[])
    sc.receive(saved(s2.id, 0), isSynced=True, activeClocks={"$A": 0})
    return sc


# ============================================================ causal heads (issue 13)


def _heads_start(sc: Scenario) -> tuple[Writer, Snap, Upd]:
    """S1 ("Hello" by B) and B's update 0 (" world"), loaded."""
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    u0 = sc.update([b.append(" world")], s1, 0)
    sc.connect()
    sc.document(s1, [u0], sent=[INIT], text="Hello world", activeClocks={"$B": 0})
    return b, s1, u0


@scenario
def heads_written() -> Scenario:
    sc = Scenario(
        "heads-written",
        "With writeHeads, our update carries, in its signed public data, heads: every other"
        " author's highest clock applied on the active snapshot (ours is implied by its"
        " clock) that advanced since what our acknowledged updates on it named (the first"
        " names all). An update whose heads name only clocks we have (among them our own"
        " update still in flight) is no alarm; nor are heads of a shape we do not know. Our"
        " next update names C's clock 2, not B's 0 (named before, acknowledged).",
        ["rule:heads-written", "rule:heads-check"],
        writeHeads=True,
    )
    b, s1, _u0 = _heads_start(sc)
    sc.edit((11, "!"))
    sent = sent_update(s1.id, 0, text="Hello world!")
    sent["publicData"]["heads"] = {"clocks": {"$B": 0}}
    sc.flush(sent=[sent])
    c = Writer("C", b.state())
    c0 = sc.update([c.insert(0, ">")], s1, 0, signer="C", heads={"A": 0, "B": 0})
    sc.receive(
        c0.wire(type="update"),
        mirror={"apply": [b64(c0.changes[0])]},
        errors=[],
        reconnectRequested=False,
        text=">Hello world!",
    )
    c1 = sc.update([c.insert(0, ">")], s1, 1, signer="C", heads="not an object")
    c2 = sc.update([c.insert(0, ">")], s1, 2, signer="C", heads={"B": -1, "A": "x"})
    sc.receive(c1.wire(type="update"), mirror={"apply": [b64(c1.changes[0])]}, errors=[])
    sc.receive(c2.wire(type="update"), mirror={"apply": [b64(c2.changes[0])]}, errors=[])
    sc.receive(saved(s1.id, 0), isSynced=True, activeClocks={"$A": 0, "$B": 0, "$C": 2})
    sc.edit((15, "?"))
    sent = sent_update(s1.id, 1, text=">>>Hello world!?")
    sent["publicData"]["heads"] = {"clocks": {"$C": 2}}
    sc.flush(sent=[sent])
    sc.receive(saved(s1.id, 1), isSynced=True)
    sc.edit((16, "."))
    sent = sent_update(s1.id, 2, text=">>>Hello world!?.")  # heads naming nothing: left out
    sc.flush(sent=[sent])
    return sc


def _withheld_update(sc: Scenario, b: Writer, s1: Snap) -> tuple[Upd, Upd]:
    """B's update 1 (withheld from us) and C's update 0, written after C applied it."""
    u1 = sc.update([b.append("?")], s1, 1)
    c = Writer("C", b.state())
    c0 = sc.update([c.insert(0, ">")], s1, 0, signer="C", heads={"B": 1})
    sc.receive(
        c0.wire(type="update"),
        mirror={"apply": [b64(c0.changes[0])]},
        errors=["SECSYNC_ERROR_801"],
        events=[
            ev("remote-change", kind="updates", count=1),
            ev("error", code="SECSYNC_ERROR_801", fatal=False),
            ev("withheld", authors=["$B"], missing=[["$B", 1]]),
            ev("reconnect"),
        ],
        text=">Hello world",
        reconnectRequested=True,
        state="connected",
    )
    sc.disconnect(
        connectionParams={
            "mode": "complete",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {},
        }
    )
    sc.connect()
    return u1, c0


@scenario
def heads_801_reload() -> Scenario:
    sc = Scenario(
        "heads-801-withheld-update-reloaded",
        "C's update names B's clock 1 in its heads, which the relay never delivered to us (it"
        " delivers updates in the order it accepted them, and C could only have seen what was"
        " accepted before): 801 (not fatal), C's verified content is kept, and the client"
        " reconnects asking for every update of the known snapshot again (a delta load would"
        " only bring those after C's); this time B's update 1 comes: no further error.",
        ["SECSYNC_ERROR_801", "rule:heads-check", "rule:heads-reload"],
    )
    b, s1, u0 = _heads_start(sc)
    u1, c0 = _withheld_update(sc, b, s1)
    sc.document(
        s1,
        [u0, u1, c0],
        sent=[INIT],
        documentState="complete",
        errors=["SECSYNC_ERROR_801"],
        reconnectRequested=False,
        servedIncompletely=False,
        text=">Hello world?",
        activeClocks={"$B": 1, "$C": 0},
    )
    return sc


@scenario
def heads_801_on_load() -> Scenario:
    sc = Scenario(
        "heads-801-on-load",
        "On load: the document frame holds B's update 0 and C's update 0, whose heads name B's"
        " clock 1, which the frame lacks (the relay dropped B's last update): 801 (not fatal),"
        " the load completes with the verified content and the client reconnects asking for"
        " every update of the snapshot again.",
        ["SECSYNC_ERROR_801", "rule:heads-check", "rule:heads-reload"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    u0 = sc.update([b.append(" world")], s1, 0)
    sc.update([b.append("?")], s1, 1)  # dropped by the relay
    c = Writer("C", b.state())
    c0 = sc.update([c.insert(0, ">")], s1, 0, signer="C", heads={"B": 1})
    sc.connect()
    sc.document(
        s1,
        [u0, c0],
        sent=[INIT],
        documentState="complete",
        errors=["SECSYNC_ERROR_801"],
        events=[
            ev("remote-change", kind="snapshot", snapshotId=s1.id),
            ev("remote-change", kind="updates", count=2),
            ev("error", code="SECSYNC_ERROR_801", fatal=False),
            ev("withheld", authors=["$B"], missing=[["$B", 1]]),
            ev("reconnect"),
            ev("loaded"),
        ],
        reconnectRequested=True,
        text=">Hello world",
        activeClocks={"$B": 0, "$C": 0},
    )
    sc.disconnect(
        connectionParams={
            "mode": "complete",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {},
        }
    )
    return sc


@scenario
def heads_803_served_incompletely() -> Scenario:
    sc = Scenario(
        "heads-803-served-incompletely",
        "As heads-801-withheld-update-reloaded, but the complete reload still lacks B's update"
        " 1: the document is marked as served incompletely (803, once; the load completes with"
        " the verified content) and the client does not reconnect again for it.",
        ["SECSYNC_ERROR_803", "rule:heads-reload"],
    )
    b, s1, u0 = _heads_start(sc)
    _u1, c0 = _withheld_update(sc, b, s1)
    sc.document(
        s1,
        [u0, c0],
        sent=[INIT],
        documentState="complete",
        errors=["SECSYNC_ERROR_803", "SECSYNC_ERROR_801"],
        events=[
            ev("remote-change", kind="updates", count=2),
            ev("error", code="SECSYNC_ERROR_803", fatal=False),
            ev("served-incompletely", authors=["$B"]),
            ev("loaded"),
        ],
        reconnectRequested=False,
        servedIncompletely=True,
        text=">Hello world",
    )
    return sc


@scenario
def heads_802_snapshot() -> Scenario:
    sc = Scenario(
        "heads-802-snapshot-names-withheld-update",
        "A snapshot arriving live on our active snapshot records, in its parent clocks, B's"
        " clock 1 which the relay never delivered to us: 802 (not fatal); the snapshot holds"
        " the content, so it is applied and nothing is asked for. Our own update in flight,"
        " named by it, is no alarm.",
        ["SECSYNC_ERROR_802", "rule:heads-check"],
    )
    b, s1, _u0 = _heads_start(sc)
    sc.edit((0, "<"))
    sc.flush(sent=[sent_update(s1.id, 0, text="<Hello world")])
    b.append("?")
    s2 = sc.snapshot("S2", b.state(), signer="C", parent=s1, clocks={"A": 0, "B": 1})
    sc.receive(
        snapshot_frame(s2),
        mirror={"reset": b64(s2.state)},
        errors=["SECSYNC_ERROR_802"],
        events=[
            ev("remote-change", kind="snapshot", snapshotId=s2.id),
            ev("error", code="SECSYNC_ERROR_802", fatal=False),
            ev("withheld", authors=["$B"], missing=[["$B", 1]]),
        ],
        reconnectRequested=False,
        activeSnapshot=s2.id,
        sent=[sent_update(s2.id, 0)],
    )
    return sc


# ---------------------------------- heads between live collaborators (issue 13, part 2)

#: the content of a heads message starts with these bytes (docs/protocol.md)
HEADS_PREFIX = b"\x00secsync-heads/1\n"


def heads_content(snapshot_id: str, chain: list[str], clocks: dict[str, int], log=None) -> bytes:
    """A peer's heads message content (authors by name)."""
    body: dict[str, Any] = {
        "snapshotId": snapshot_id,
        "chain": chain,
        "clocks": {PUB.get(k, k): v for k, v in sorted(clocks.items())},
    }
    if log is not None:
        body["log"] = log
    return HEADS_PREFIX + json.dumps(body, separators=(",", ":")).encode()


def sent_heads(snapshot_id: str, clocks: dict[str, int], chain: list[str] = ()) -> dict:
    """Our heads message as the runner reads it back (``heads``: the decoded JSON)."""
    return {
        "kind": "ephemeral",
        "ephemeralType": "message",
        "heads": {
            "snapshotId": snapshot_id,
            "chain": list(chain),
            "clocks": {f"${k}": v for k, v in clocks.items()},
        },
    }


def tick(sc: Scenario, now: float, **expect: Any) -> None:
    sc.step("tick", expect, now=now)


def peer_heads(sc: Scenario, peer: str, content: bytes, **expect: Any) -> None:
    sc.step("peer", expect, peer=peer, send="message", content=b64(content))


@scenario
def heads_806_seen_by_peer() -> Scenario:
    sc = Scenario(
        "heads-806-withheld-seen-by-peer",
        "Live heads: the engine sends its heads (active snapshot, chain, every author's clock,"
        " ours acknowledged) in an ephemeral message at its first tick and every 5 s; peer C's"
        " heads say C has applied B's clock 1 on our snapshot, which the relay has not"
        " delivered to us. Within the 10 s grace period nothing is reported; after it, 806"
        " (not fatal) and the event heads-withheld naming B, C and the clock — once.",
        ["SECSYNC_ERROR_806", "rule:heads-live-send", "rule:heads-live-withheld"],
    )
    sc.peer("C")
    s1 = loaded(sc)
    tick(sc, 0, sent=[sent_heads(s1.id, {})])
    _peer_handshake(sc, "C")
    peer_heads(
        sc,
        "C",
        heads_content(s1.id, [], {"B": 1}),
        sent=[],
        delivered=[],
        errors=[],
        events=[ev("peer-heads", peer="$C", snapshotId=s1.id)],
    )
    tick(sc, 1, sent=[sent_heads(s1.id, {})])  # a new peer: our heads soon (at most 1/s)
    tick(sc, 2, sent=[], errors=[])
    tick(sc, 6, sent=[sent_heads(s1.id, {})], errors=[])  # every 5 s when nothing changed
    tick(
        sc,
        10,
        sent=[],
        errors=["SECSYNC_ERROR_806"],
        events=[
            ev("error", code="SECSYNC_ERROR_806", fatal=False),
            ev("heads-withheld", seenBy="$C", authors=["$B"], missing=[["$B", 1]]),
        ],
        state="connected",
        reconnectRequested=False,
    )
    tick(sc, 30, sent=[sent_heads(s1.id, {})], errors=["SECSYNC_ERROR_806"], events=[])
    return sc


@scenario
def heads_delivered_in_grace() -> Scenario:
    sc = Scenario(
        "heads-delivered-within-grace",
        "What a peer has seen and the relay delivers within the grace period is no alarm:"
        " peer C's heads name B's clock 1 and our own clock 5 (ours are never claimed against"
        " us); B's updates come at once. After our acknowledged write our heads go out at the"
        " next tick (at most one a second), naming our acknowledged clock.",
        ["rule:heads-live-send", "rule:heads-live-withheld"],
    )
    sc.peer("C")
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT], text="Hello")
    tick(sc, 0, sent=[sent_heads(s1.id, {})])
    _peer_handshake(sc, "C")
    peer_heads(sc, "C", heads_content(s1.id, [], {"A": 5, "B": 1}), sent=[], errors=[])
    u0 = sc.update([b.append(" wor")], s1, 0)
    u1 = sc.update([b.append("ld")], s1, 1)
    sc.receive(u0.wire(type="update"), mirror={"apply": [b64(c) for c in u0.changes]})
    sc.receive(u1.wire(type="update"), mirror={"apply": [b64(c) for c in u1.changes]})
    sc.edit((11, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello world!")])
    sc.receive(saved(s1.id, 0), isSynced=True)
    tick(sc, 0.5, sent=[])  # changed, but less than a second after the last
    tick(sc, 1, sent=[sent_heads(s1.id, {"A": 0, "B": 1})])
    tick(sc, 30, sent=[sent_heads(s1.id, {"A": 0, "B": 1})], errors=[], events=[])
    return sc


@scenario
def heads_805_fork() -> Scenario:
    sc = Scenario(
        "heads-805-fork",
        "Peer C is on a snapshot that is not in our chain, and ours is not in its chain: after"
        " the grace period (it could be one the relay is about to deliver), a fork: 805 and"
        " the event fork naming C. Peer B is on a snapshot we do not have whose chain holds"
        " ours: B is ahead, the relay has not delivered it to us: 806. A peer on an ancestor"
        " of ours (behind) is no alarm. Each is reported once.",
        ["SECSYNC_ERROR_805", "SECSYNC_ERROR_806", "rule:heads-live-fork"],
    )
    sc.peer("B")
    sc.peer("C")
    b = Writer("B")
    b.append("Hello")
    s0 = sc.snapshot("S0", b.state())
    b.append("!")
    s1 = sc.snapshot("S1", b.state(), parent=s0)
    sc.connect()
    sc.document(s1, sent=[INIT], text="Hello!")
    tick(sc, 0, sent=[sent_heads(s1.id, {}, [s0.id])])
    _peer_handshake(sc, "B")
    _peer_handshake(sc, "C")
    other, ahead = sc.sid("other"), sc.sid("ahead")
    peer_heads(sc, "C", heads_content(other, [sc.sid("root")], {}), sent=[], errors=[])
    peer_heads(sc, "B", heads_content(ahead, [s0.id, s1.id], {}), sent=[], errors=[])
    tick(sc, 1, sent=[sent_heads(s1.id, {}, [s0.id])], errors=[])
    # a third peer message: B went back to our parent (behind us): no claim
    peer_heads(sc, "B", heads_content(s0.id, [], {"B": 7}), sent=[], errors=[])
    tick(
        sc,
        10,
        sent=[sent_heads(s1.id, {}, [s0.id])],
        errors=["SECSYNC_ERROR_805"],
        events=[
            ev("error", code="SECSYNC_ERROR_805", fatal=False),
            ev("fork", peer="$C"),
        ],
    )
    return sc


@scenario
def heads_806_snapshot_ahead() -> Scenario:
    sc = Scenario(
        "heads-806-snapshot-ahead",
        "Peer B says it is on a snapshot we do not have, whose chain holds ours: the relay"
        " has not delivered B's newer snapshot to us: 806 after the grace period; a heads"
        " message that is not valid JSON is 307 (ignored).",
        ["SECSYNC_ERROR_806", "rule:heads-live-withheld"],
    )
    sc.peer("B")
    s1 = loaded(sc)
    tick(sc, 0, sent=[sent_heads(s1.id, {})])
    _peer_handshake(sc, "B")
    ahead = sc.sid("ahead")
    peer_heads(sc, "B", HEADS_PREFIX + b"{", sent=[], ephemeralErrors=["SECSYNC_ERROR_307"])
    peer_heads(sc, "B", heads_content(ahead, [s1.id], {"B": 3}), sent=[], errors=[])
    tick(
        sc,
        10,
        sent=[sent_heads(s1.id, {})],
        errors=["SECSYNC_ERROR_806"],
        events=[
            ev("error", code="SECSYNC_ERROR_806", fatal=False),
            ev("heads-withheld", seenBy="$B", authors=[], missing=[]),
        ],
    )
    return sc


# ------------------------------------------------------ remembered state (issue 13, part 3)


def _remembered(snap: Snap, clocks: dict[str, int]) -> dict[str, Any]:
    return {"snapshot": snap.known(clocks), "logHead": None}


@scenario
def remembered_804_fewer_updates() -> Scenario:
    b = Writer("B")
    b.append("Hello")
    probe = Scenario("remembered-804-fewer-updates", "", [])
    s1 = probe.snapshot("S1", b.state())
    u0 = probe.update([b.append(" world")], s1, 0)
    probe.update([b.append("!")], s1, 1)
    sc = Scenario(
        "remembered-804-fewer-updates",
        "The client remembers snapshot S1 with B's clock 1 (verified in an earlier load). The"
        " first load asks for a complete load with the proof chain from S1 (knownSnapshotId,"
        " no clocks); the relay serves S1 with B's update 0 only: fewer updates than verified"
        " before, a rollback: 804 fails the load (event rollback).",
        ["SECSYNC_ERROR_804", "rule:remembered-state"],
        remembered=_remembered(s1, {"B": 1}),
    )
    sc._n = probe._n
    sc.connect(
        connectionParams={
            "mode": "complete",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {},
        }
    )
    sc.document(
        s1,
        [u0],
        sent=[INIT],
        state="failed",
        documentState="failed",
        errors=["SECSYNC_ERROR_804"],
        events=[
            ev("remote-change", kind="snapshot", snapshotId=s1.id),
            ev("remote-change", kind="updates", count=1),
            ev("error", code="SECSYNC_ERROR_804", fatal=True),
            ev("state", state="failed"),
            ev("rollback"),
        ],
    )
    return sc


@scenario
def remembered_804_not_descending() -> Scenario:
    b = Writer("B")
    b.append("Hello")
    probe = Scenario("remembered-804-not-descending", "", [])
    s1 = probe.snapshot("S1", b.state())
    b.append(" world")
    s2 = probe.snapshot("S2", b.state(), parent=s1)
    sc = Scenario(
        "remembered-804-not-descending",
        "The client remembers S2; the relay serves S2's parent S1 (an older snapshot, no"
        " proof chain from S2): 804 fails the load.",
        ["SECSYNC_ERROR_804", "rule:remembered-state"],
        remembered=_remembered(s2, {}),
    )
    sc._n = probe._n
    sc.connect()
    sc.document(
        s1, sent=[INIT], state="failed", documentState="failed", errors=["SECSYNC_ERROR_804"]
    )
    return sc


@scenario
def remembered_descendant_loads() -> Scenario:
    b = Writer("B")
    b.append("Hello")
    probe = Scenario("remembered-descendant-loads", "", [])
    s1 = probe.snapshot("S1", b.state())
    u0 = probe.update([b.append(" world")], s1, 0)
    b.append("!")
    s2 = probe.snapshot("S2", b.state(), parent=s1, clocks={"B": 0})
    b2 = b.append("?")
    sc = Scenario(
        "remembered-descendant-loads",
        "The client remembers S1 with B's clock 0; the relay serves S2 with the proof chain"
        " from S1, and S2 records B's clock 0 of S1: it descends from what was verified,"
        " the load completes without an error. The same snapshot with at least the"
        " remembered clocks would too.",
        ["rule:remembered-state"],
        remembered=_remembered(s1, {"B": 0}),
    )
    sc._n = probe._n
    del u0
    u2 = sc.update([b2], s2, 0)
    sc.connect()
    sc.document(
        s2,
        [u2],
        [s2.entry()],
        sent=[INIT],
        state="connected",
        documentState="complete",
        errors=[],
        text="Hello world!?",
        activeClocks={"$B": 0},
    )
    return sc


@scenario
def snapshot_save_failed_retry() -> Scenario:
    sc = Scenario(
        "snapshot-save-failed-applies-and-retries",
        "Our snapshot is rejected with a newer snapshot and an update: both are applied and the"
        " snapshot is made again on top of them.",
        ["rule:snapshot-save-failed"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    sc.connect()
    sc.document(s1, sent=[INIT])
    sc.step("requestSnapshot")
    sc.edit((5, "!"))
    sc.flush(sent=[sent_snapshot(s1.id, {}, bind="first", text="Hello!")])
    b.insert(0, "Oh, ")
    s2 = sc.snapshot("S2", b.state(), parent=s1)
    u0 = sc.update([b.insert(0, "Well, ")], s2, 0)
    sc.receive(
        {"type": "snapshot-save-failed", "snapshot": s2.wire(), "updates": [u0.wire()]},
        mirror={"reset": b64(s2.state), "apply": [b64(u0.changes[0])]},
        text="Well, Oh, Hello!",
        sent=[sent_snapshot(s2.id, {"B": 0}, bind="second", text="Well, Oh, Hello!")],
        reconnectRequested=False,
    )
    sc.receive(snapshot_saved("first"), sent=[], isSynced=False)
    sc.receive(
        snapshot_saved("second"),
        isSynced=True,
        activeSnapshot="$second",
        events=[ev("snapshot-saved", snapshotId="$second")],
    )
    return sc


@scenario
def snapshot_save_failed_bounded() -> Scenario:
    sc = Scenario(
        "snapshot-save-failed-gives-up",
        "Our snapshot is rejected 5 times in a row: reconnect; after the delta reload the"
        " snapshot is made again.",
        ["rule:snapshot-save-failed-bound"],
    )
    s1 = loaded(sc)
    sc.step("requestSnapshot")
    sc.flush(sent=[sent_snapshot(s1.id, {}, text="Hello")])
    for _ in range(4):
        sc.receive({"type": "snapshot-save-failed"}, sent=[sent_snapshot(s1.id, {})])
    sc.receive(
        {"type": "snapshot-save-failed"}, sent=[], reconnectRequested=True, events=[ev("reconnect")]
    )
    sc.disconnect()
    sc.connect()
    sc.document(sent=[INIT, sent_snapshot(s1.id, {}, bind="again", text="Hello")])
    sc.receive(snapshot_saved("again"), isSynced=True)
    return sc


@scenario
def policy_default_count() -> Scenario:
    sc = Scenario(
        "snapshot-policy-default-300-updates",
        "Default snapshot policy: with 299 updates on the active snapshot our change goes out as"
        " an update; once it is saved (300) the next change goes out as a snapshot.",
        ["decision:snapshot-policy-300", "rule:snapshot-policy"],
    )
    b = Writer("B")
    s1 = sc.snapshot("S1", b.state())
    updates = [sc.update([b.append(chr(97 + i % 26))], s1, i) for i in range(299)]
    sc.connect()
    text = b.value()
    sc.document(s1, updates, sent=[INIT], text=text, activeClocks={"$B": 298})
    sc.edit((0, "<"))
    sc.flush(sent=[sent_update(s1.id, 0, text="<" + text)])
    sc.receive(saved(s1.id, 0), isSynced=True)
    sc.edit((0, "["))
    sc.flush(sent=[sent_snapshot(s1.id, {"A": 0, "B": 298}, text="[<" + text)])
    return sc


@scenario
def policy_configured() -> Scenario:
    sc = Scenario(
        "snapshot-policy-configured",
        "A configured policy (2 updates): the change after two updates goes out as a snapshot"
        " recording both authors' clocks.",
        ["rule:snapshot-policy"],
        snapshotPolicy={"maxUpdates": 2},
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    u0 = sc.update([b.append("1")], s1, 0)
    sc.connect()
    sc.document(s1, [u0], sent=[INIT])
    sc.edit((6, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello1!")])
    sc.receive(saved(s1.id, 0))
    sc.edit((7, "?"))
    sc.flush(sent=[sent_snapshot(s1.id, {"A": 0, "B": 0}, bind="mine", text="Hello1!?")])
    sc.receive(snapshot_saved("mine"), activeSnapshot="$mine", activeClocks={})
    return sc


@scenario
def policy_bytes() -> Scenario:
    sc = Scenario(
        "snapshot-policy-update-bytes",
        "A configured byte threshold (1,000 bytes of update ciphertext, base64 text, on the"
        " active snapshot): below it our change goes out as an update, at or above it as a"
        " snapshot.",
        ["rule:snapshot-policy", "rule:snapshot-policy-bytes"],
        snapshotPolicy={"maxUpdateBytes": 1000},
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    u0 = sc.update([b.append("x" * 400)], s1, 0)
    u1 = sc.update([b.append("y" * 400)], s1, 1)
    assert 500 < len(u0.message.ciphertext) < 1000 <= len(u0.message.ciphertext) * 2 - 300
    sc.connect()
    sc.document(s1, [u0], sent=[INIT])
    sc.edit((0, "<"))
    sc.flush(sent=[sent_update(s1.id, 0)])
    sc.receive(saved(s1.id, 0))
    sc.receive(u1.wire(type="update"), mirror={"apply": [b64(u1.changes[0])]})
    sc.edit((0, "["))
    sc.flush(sent=[sent_snapshot(s1.id, {"A": 0, "B": 1}, text="[<Hello" + "x" * 400 + "y" * 400)])
    return sc


@scenario
def policy_function() -> Scenario:
    sc = Scenario(
        "snapshot-policy-default-thresholds",
        "The default policy: a snapshot after 300 updates or 1,000,000 bytes of update"
        " ciphertext since the last snapshot, whichever comes first.",
        ["decision:snapshot-policy-300", "decision:snapshot-policy-1000000-bytes"],
    )
    for count, size, expected in [
        (299, 999_999, False),
        (300, 0, True),
        (0, 1_000_000, True),
        (1, 999_999, False),
        (0, 1_048_575, True),
    ]:
        sc.step(
            "policy",
            {"snapshot": expected},
            info={"updatesSinceSnapshot": count, "updateBytesSinceSnapshot": size},
        )
    return sc


@scenario
def request_snapshot() -> Scenario:
    sc = Scenario(
        "snapshot-on-demand",
        "A snapshot requested without pending changes goes out on the next flush.",
        ["rule:request-snapshot"],
    )
    s1 = loaded(sc)
    sc.step("requestSnapshot", {"isSynced": False})
    sc.flush(sent=[sent_snapshot(s1.id, {}, bind="mine", text="Hello")])
    sc.receive(snapshot_saved("mine"), isSynced=True, activeSnapshot="$mine")
    return sc


@scenario
def error_401() -> Scenario:
    sc = Scenario(
        "create-401-snapshot",
        "Making a snapshot fails: the document fails (401).",
        ["SECSYNC_ERROR_401"],
    )
    sc.connect()
    sc.document(sent=[INIT])
    sc.fault("snapshotContent")
    sc.edit((0, "x"))
    sc.flush(sent=[], state="failed", errors=["SECSYNC_ERROR_401"])
    return sc


@scenario
def error_501() -> Scenario:
    sc = Scenario(
        "create-501-update",
        "Making an update fails: the document fails (501).",
        ["SECSYNC_ERROR_501"],
    )
    loaded(sc)
    sc.fault("serializeChanges")
    sc.edit((0, "x"))
    sc.flush(sent=[], state="failed", errors=["SECSYNC_ERROR_501"])
    return sc


# ========================================================== reconnect / offline


@scenario
def offline_edits() -> Scenario:
    sc = Scenario(
        "reconnect-delta-offline-edits",
        "The connection drops with an update in flight; edits made offline are kept; the engine"
        " reconnects in delta mode (known snapshot and clocks) and, once the document is loaded"
        " again, sends the unconfirmed and the offline changes as one update.",
        ["rule:reconnect-delta", "rule:offline-edits", "decision:merge-pending-changes"],
    )
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state())
    u0 = sc.update([b.append(" world")], s1, 0)
    sc.connect()
    sc.document(s1, [u0], sent=[INIT], text="Hello world")
    sc.edit((11, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello world!")])
    sc.disconnect(
        state="disconnected",
        documentState="pending",
        pending=1,
        connectionParams={
            "mode": "delta",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {"$B": 0},
        },
    )
    sc.edit((12, "?"), pending=2, sent=[])
    sc.flush(sent=[])
    sc.connect(state="connected", documentState="pending")
    sc.flush(sent=[])
    u1 = sc.update([b.insert(0, "Oh ")], s1, 1)
    sc.document(
        None,
        [u1],
        sent=[INIT, sent_update(s1.id, 0, text="Oh Hello world!?", changes=1)],
        text="Oh Hello world!?",
        documentState="complete",
        pending=0,
    )
    sc.receive(saved(s1.id, 0), isSynced=True, activeClocks={"$A": 0, "$B": 1})
    return sc


@scenario
def own_clock_after_reconnect() -> Scenario:
    sc = Scenario(
        "reconnect-continues-own-clock",
        "After a reconnect in delta mode our next update continues our clock on the known"
        " snapshot (1), instead of starting at 0 again and being rejected.",
        ["decision:own-clock-after-reconnect", "rule:reconnect-delta"],
    )
    s1 = loaded(sc)
    sc.edit((5, "!"))
    sc.flush(sent=[sent_update(s1.id, 0, text="Hello!")])
    sc.receive(saved(s1.id, 0))
    sc.disconnect(
        connectionParams={
            "mode": "delta",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {"$A": 0},
        }
    )
    sc.edit((6, "?"))
    sc.connect()
    sc.document(sent=[INIT, sent_update(s1.id, 1, text="Hello!?")])
    return sc


@scenario
def snapshot_in_flight_kept() -> Scenario:
    sc = Scenario(
        "reconnect-keeps-snapshot-in-flight",
        "The connection drops with our snapshot in flight: its changes are kept and the snapshot"
        " is made again after the delta reload.",
        ["rule:offline-edits", "rule:reconnect-delta"],
    )
    s1 = loaded(sc)
    sc.step("requestSnapshot")
    sc.edit((5, "!"))
    sc.flush(sent=[sent_snapshot(s1.id, {}, text="Hello!")])
    sc.disconnect(pending=1)
    sc.connect()
    sc.document(sent=[INIT, sent_snapshot(s1.id, {}, bind="again", text="Hello!")], pending=0)
    sc.receive(snapshot_saved("again"), isSynced=True)
    return sc


@scenario
def backoff() -> Scenario:
    sc = Scenario(
        "reconnect-backoff",
        "Reconnect delay: 100 ms * 1.8^n (n capped at 13), at most 10 s (issue 10: was 30 s in"
        " Python).",
        ["decision:backoff-cap-10s"],
    )
    for retries, delay in [
        (0, 100),
        (1, 180),
        (2, 324),
        (3, 583.2),
        (7, 6122.20032),
        (8, 10000),
        (13, 10000),
        (1000, 10000),
    ]:
        sc.step("backoff", {"delayMs": delay}, retries=retries)
    return sc


@scenario
def refusals() -> Scenario:
    sc = Scenario(
        "relay-refusals",
        "document-not-found and unauthorized end in no-access, document-error in failed; a"
        " connection lost afterwards changes nothing (no reconnect).",
        ["rule:no-access", "rule:document-error"],
    )
    sc.connect()
    sc.receive(
        {"type": "document-not-found"},
        events=[ev("state", state="no-access", reason="document-not-found")],
        state="no-access",
    )
    sc.disconnect(state="no-access", events=[])
    sc.connect(state="no-access", events=[])
    return sc


@scenario
def refusal_unauthorized() -> Scenario:
    sc = Scenario("relay-unauthorized", "unauthorized: no-access.", ["rule:no-access"])
    sc.connect()
    sc.receive({"type": "unauthorized"}, state="no-access")
    sc.disconnect(state="no-access")
    return sc


@scenario
def refusal_document_error() -> Scenario:
    sc = Scenario("relay-document-error", "document-error: failed.", ["rule:document-error"])
    sc.connect()
    sc.receive(
        {"type": "document-error"},
        events=[ev("state", state="failed", reason="document-error")],
        state="failed",
    )
    sc.disconnect(state="failed")
    return sc


@scenario
def bad_frames() -> Scenario:
    sc = Scenario(
        "bad-frames",
        "A frame that is not a typed JSON object is recorded (no reference code) and ignored; a"
        " frame of an unknown type is passed on as a custom message.",
        ["error:not-a-typed-json-object", "rule:custom-message"],
    )
    loaded(sc)
    sc.step(
        "receive",
        {"errors": [None], "events": [ev("error", code=None, fatal=False)], "state": "connected"},
        text="not json",
    )
    sc.step("receive", {"errors": [None, None]}, text="[1, 2]")
    sc.receive({"type": 7}, errors=[None, None, None])
    sc.receive(
        {"type": "hello-from-the-future"},
        events=[ev("custom-message")],
        errors=[None, None, None],
        state="connected",
        documentState="complete",
    )
    return sc


# ================================================================== ephemeral


def _peer_handshake(sc: Scenario, peer: str = "B") -> None:
    """The peer says hello, we answer with proofAndRequestProof, the peer proves: verified."""
    sc.step(
        "peer",
        {"sent": [sent_ephemeral("proofAndRequestProof")], "events": []},
        peer=peer,
        send="initialize",
    )
    sc.step(
        "peer",
        {"sent": [], "events": [ev("ephemeral-peer", author=f"${peer}")], "ephemeralErrors": []},
        peer=peer,
        answer=True,
    )


@scenario
def ephemeral_peer_initializes() -> Scenario:
    sc = Scenario(
        "ephemeral-handshake-peer-first",
        "A peer's initialize is answered with proofAndRequestProof; its proof verifies the"
        " session; its messages are delivered once (a replay is 303); our own message goes out.",
        ["rule:ephemeral-session", "SECSYNC_ERROR_303"],
    )
    sc.peer("B")
    loaded(sc)
    _peer_handshake(sc)
    sc.step(
        "peer",
        {"delivered": [[b64(b"hi"), "B"]], "sent": []},
        peer="B",
        send="message",
        content=b64(b"hi"),
    )
    sc.step(
        "peer",
        {"delivered": [[b64(b"hi"), "B"]], "ephemeralErrors": ["SECSYNC_ERROR_303"]},
        peer="B",
        replay=1,
    )
    sc.step(
        "sendEphemeral",
        {"returns": True, "sent": [sent_ephemeral("message", b"yo")]},
        content=b64(b"yo"),
    )
    return sc


@scenario
def ephemeral_engine_initializes() -> Scenario:
    sc = Scenario(
        "ephemeral-handshake-engine-first",
        "The peer answers our initialize with proofAndRequestProof: we verify it and prove our"
        " side; its messages are delivered.",
        ["rule:ephemeral-session"],
    )
    sc.peer("B")
    loaded(sc)
    sc.step(
        "peer",
        {"sent": [sent_ephemeral("proof")], "events": [ev("ephemeral-peer", author="$B")]},
        peer="B",
        answer=True,
    )
    sc.step("peer", {"sent": [], "delivered": []}, peer="B", answer=True)
    sc.step(
        "peer", {"delivered": [[b64(b"hi"), "B"]]}, peer="B", send="message", content=b64(b"hi")
    )
    return sc


@scenario
def ephemeral_302() -> Scenario:
    sc = Scenario(
        "ephemeral-302-no-session",
        "A message from a peer without a verified session is not delivered (302); we answer"
        " with proofAndRequestProof, and once the peer proves its session its messages are.",
        ["SECSYNC_ERROR_302", "rule:ephemeral-session"],
    )
    sc.peer("B")
    loaded(sc)
    sc.step(
        "peer",
        {
            "ephemeralErrors": ["SECSYNC_ERROR_302"],
            "sent": [sent_ephemeral("proofAndRequestProof")],
            "delivered": [],
        },
        peer="B",
        send="message",
        content=b64(b"early"),
    )
    sc.step(
        "peer", {"events": [ev("ephemeral-peer", author="$B")], "sent": []}, peer="B", answer=True
    )
    sc.step(
        "peer", {"delivered": [[b64(b"now"), "B"]]}, peer="B", send="message", content=b64(b"now")
    )
    return sc


@scenario
def ephemeral_replayed_proof() -> Scenario:
    sc = Scenario(
        "ephemeral-303-replayed-proof",
        "The relay replays the peer's session proof and then its message: the proof cannot"
        " reset the counter, the message is delivered once (stricter than the reference).",
        ["SECSYNC_ERROR_303", "rule:ephemeral-session"],
    )
    sc.peer("B")
    loaded(sc)
    _peer_handshake(sc)
    sc.step(
        "peer", {"delivered": [[b64(b"once"), "B"]]}, peer="B", send="message", content=b64(b"once")
    )
    sc.step("peer", {"ephemeralErrors": ["SECSYNC_ERROR_303"]}, peer="B", replay=2)
    sc.step(
        "peer",
        {
            "ephemeralErrors": ["SECSYNC_ERROR_303", "SECSYNC_ERROR_303"],
            "delivered": [[b64(b"once"), "B"]],
        },
        peer="B",
        replay=1,
    )
    return sc


@scenario
def ephemeral_new_session_per_connection() -> Scenario:
    sc = Scenario(
        "ephemeral-new-session-per-connection",
        "Each connection starts a new ephemeral session: after a reconnect the peer's messages"
        " of its verified session are not delivered (302) until it proves the new session; a"
        " proof of the old session (e.g. one in flight across the reconnect) does not verify"
        " and is ignored without an error, as in the reference.",
        ["rule:ephemeral-session", "SECSYNC_ERROR_302", "decision:invalid-session-proof-ignored"],
    )
    sc.peer("B")
    loaded(sc)
    _peer_handshake(sc)
    sc.disconnect()
    sc.connect()
    sc.document(sent=[INIT])
    sc.step(
        "peer",
        {"ephemeralErrors": [], "sent": [], "events": [], "delivered": []},
        peer="B",
        replay=1,
    )
    sc.step(
        "peer",
        {
            "ephemeralErrors": ["SECSYNC_ERROR_302"],
            "sent": [sent_ephemeral("proofAndRequestProof")],
            "delivered": [],
        },
        peer="B",
        send="message",
        content=b64(b"x"),
    )
    sc.step("peer", {"events": [ev("ephemeral-peer", author="$B")]}, peer="B", answer=True)
    sc.step("peer", {"delivered": [[b64(b"y"), "B"]]}, peer="B", send="message", content=b64(b"y"))
    return sc


def _ephemeral_error(name: str, code: str, description: str, frame, **client: Any) -> None:
    def build() -> Scenario:
        sc = Scenario(name, description, [code], **client)
        loaded(sc)
        sc.receive(
            frame(sc),
            ephemeralErrors=[code],
            sent=[],
            delivered=[],
            state="connected",
            errors=[],
        )
        return sc

    SCENARIOS.append(build)


_ephemeral_error(
    "ephemeral-301-decryption",
    "SECSYNC_ERROR_301",
    "An ephemeral message encrypted with another key is rejected (301).",
    lambda sc: sc.ephemeral("initialize", key=WRONG_KEY),
)
_ephemeral_error(
    "ephemeral-304-not-allowed",
    "SECSYNC_ERROR_304",
    "An ephemeral message from a client that is not allowed is rejected (304).",
    lambda sc: sc.ephemeral("initialize", signer="C"),
    allowedClients=["A", "B"],
)
_ephemeral_error(
    "ephemeral-305-unknown-type",
    "SECSYNC_ERROR_305",
    "An ephemeral message of an unknown type is rejected (305).",
    lambda sc: sc.raw_ephemeral(bytes([9]) + bytes(24) + (7).to_bytes(4, "little") + b"x"),
)
_ephemeral_error(
    "ephemeral-306-other-document",
    "SECSYNC_ERROR_306",
    "An ephemeral message for another document is rejected (306).",
    lambda sc: sc.ephemeral("initialize", doc_id="another-document"),
)
_ephemeral_error(
    "ephemeral-307-malformed",
    "SECSYNC_ERROR_307",
    "An ephemeral message that does not parse is rejected (307).",
    lambda sc: {"type": "ephemeral-message", "nonce": 1},
)
_ephemeral_error(
    "ephemeral-307-short-plaintext",
    "SECSYNC_ERROR_307",
    "An ephemeral message whose plaintext is shorter than its prefix is rejected (307).",
    lambda sc: sc.raw_ephemeral(b"\x01short"),
)


def _bad_signature(sc: Scenario) -> dict[str, Any]:
    frame = sc.ephemeral("initialize")
    frame["signature"] = sc.ephemeral("message")["signature"]
    return frame


_ephemeral_error(
    "ephemeral-308-signature",
    "SECSYNC_ERROR_308",
    "An ephemeral message with a bad signature is rejected (308).",
    _bad_signature,
)


@scenario
def ephemeral_304_raises() -> Scenario:
    sc = Scenario(
        "ephemeral-304-author-check-raises",
        "The author check raising for an ephemeral message counts as not allowed (304); the"
        " document is not affected.",
        ["SECSYNC_ERROR_304"],
    )
    sc.peer("B")
    loaded(sc)
    sc.fault("isValidClient")
    sc.step(
        "peer",
        {"ephemeralErrors": ["SECSYNC_ERROR_304"], "sent": [], "state": "connected", "errors": []},
        peer="B",
        send="initialize",
    )
    return sc


@scenario
def ephemeral_300() -> Scenario:
    sc = Scenario(
        "ephemeral-300-apply-fails",
        "Delivering ephemeral content fails: recorded as 300; the document is not affected.",
        ["SECSYNC_ERROR_300"],
    )
    sc.peer("B")
    loaded(sc)
    _peer_handshake(sc)
    sc.fault("applyEphemeral")
    sc.step(
        "peer",
        {"ephemeralErrors": ["SECSYNC_ERROR_300"], "state": "connected", "errors": []},
        peer="B",
        send="message",
        content=b64(b"hi"),
    )
    return sc


@scenario
def ephemeral_601() -> Scenario:
    sc = Scenario(
        "ephemeral-601-no-session",
        "No key when connecting: no ephemeral session on this connection (601); the document"
        " loads, no initialize goes out and sending ephemeral content returns false.",
        ["SECSYNC_ERROR_601"],
    )
    s1 = sc.snapshot("S1", text_state("Hello"))
    sc.fault("key")
    sc.connect(ephemeralAuthoringErrors=["SECSYNC_ERROR_601"], state="connected")
    sc.fault("key", on=False)
    sc.document(s1, sent=[], documentState="complete", text="Hello")
    sc.step("sendEphemeral", {"returns": False, "sent": []}, content=b64(b"x"))
    return sc


@scenario
def ephemeral_not_connected() -> Scenario:
    sc = Scenario(
        "ephemeral-not-connected",
        "Sending ephemeral content while disconnected returns false and sends nothing.",
        ["rule:ephemeral-session"],
    )
    sc.step("sendEphemeral", {"returns": False, "sent": []}, content=b64(b"x"))
    loaded(sc)
    sc.disconnect()
    sc.step("sendEphemeral", {"returns": False, "sent": []}, content=b64(b"x"))
    return sc


# ============================================================ membership log (issue 11)

#: entry timestamps of the scenario logs (ms): fixed, one second apart
T0 = 1767225600000


class Log:
    """A membership log with fixed timestamps and root nonce (deterministic)."""

    def __init__(self, label: str, owner: str = "B"):
        nonce = hashlib.blake2b(f"log/{label}".encode(), digest_size=24).digest()
        root, state = create_log(SIGNERS[owner], at=T0, nonce=nonce)
        self.entries: list[dict[str, Any]] = [root.to_json()]
        self.states = [state]

    @property
    def doc_id(self) -> str:
        return self.states[0].doc_id

    def append(self, signer: str, kind: str, target: str, role: str | None = None) -> dict:
        entry, state = create_entry(
            self.states[-1],
            SIGNERS[signer],
            kind,
            PUB[target],
            role,
            at=T0 + 1000 * len(self.entries),
        )
        self.entries.append(entry.to_json())
        self.states.append(state)
        return entry.to_json()

    def head(self, seq: int | None = None) -> dict[str, Any]:
        seq = len(self.entries) - 1 if seq is None else seq
        return {"seq": seq, "hash": self.states[-1].hashes[seq]}


def standard_log(label: str = "standard") -> Log:
    """B creates the document (owner), adds A (the engine) as editor and C as viewer."""
    log = Log(label)
    log.append("B", "add-member", "A", "editor")
    log.append("B", "add-member", "C", "viewer")
    return log


def log_scenario(name: str, description: str, covers: list[str], log: Log, **client) -> Scenario:
    sc = Scenario(name, description, covers, **client)
    sc.doc_id = log.doc_id
    return sc


def challenge(sc: Scenario, n: int = 1) -> dict[str, Any]:
    return {"type": "reader-challenge", "nonce": b64(sc._digest(f"challenge/{n}", 32))}


PROOF = {"kind": "reader-proof", "pubKey": "$A"}


def sent_log_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "log-entry", "entry": entry}


def membership(log: Log, seq: int, role: str | None) -> list[Any]:
    return ev("membership", seq=seq, hash=log.head(seq)["hash"], role=role)


def log_loaded(
    sc: Scenario, log: Log, upto: int, value: str = "Hello", *, snap_head: int | None = None
) -> Snap:
    """connect, answer the challenge, load a document frame holding the log's entries
    0..``upto`` and one snapshot by B (written under entry ``snap_head``, default ``upto``)."""
    head = log.head(upto if snap_head is None else snap_head)
    s1 = sc.snapshot("S1", text_state(value), log_head=head)
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.document(
        s1,
        log=log.entries[: upto + 1],
        sent=[{**INIT, "publicData": {"logHead": log.head(upto)}}],
        documentState="complete",
        text=value,
        logHead=log.head(upto),
    )
    return s1


def sent_log_update(
    sc: Scenario, log_head: dict[str, Any], ref: str, clock: int, **extra: Any
) -> dict[str, Any]:
    out = sent_update(ref, clock, **extra)
    out["publicData"].update(docId=sc.doc_id, logHead=log_head)
    return out


@scenario
def membership_load_and_write() -> Scenario:
    log = standard_log()
    sc = log_scenario(
        "membership-load-and-write",
        "A document with a membership log: the engine answers the reader challenge with a"
        " reader proof, verifies the log of the document frame before its snapshot, writes"
        " logHead (and heads) into its update, sends knownLogSeq/knownLogHash when it"
        " reconnects and verifies the delta of the log (logFrom) in the next document frame.",
        [
            "rule:reader-proof",
            "rule:log-verified-before-messages",
            "rule:log-head-written",
            "rule:heads-written-with-log",
            "rule:log-delta",
        ],
        log,
    )
    head = log.head(2)
    s1 = sc.snapshot("S1", text_state("Hello"), log_head=head)
    sc.connect(connectionParams={"mode": "complete"}, role=None, readOnly=True)
    sc.receive(challenge(sc), sent=[PROOF], events=[])
    sc.document(
        s1,
        log=list(log.entries),
        sent=[{**INIT, "publicData": {"docId": sc.doc_id, "logHead": head}}],
        events=[
            membership(log, 2, "editor"),
            ev("remote-change", kind="snapshot", snapshotId=s1.id),
            ev("loaded"),
        ],
        documentState="complete",
        text="Hello",
        role="editor",
        readOnly=False,
        logHead=head,
    )
    sc.edit(insert=(5, "!"))
    update = sent_log_update(sc, head, s1.id, 0, text="Hello!")  # no other author: no heads
    sc.flush(sent=[update])
    sc.receive(saved(s1.id, 0), isSynced=True)
    sc.disconnect(
        connectionParams={
            "mode": "delta",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {"$A": 0},
            "knownLogSeq": "2",
            "knownLogHash": head["hash"],
        }
    )
    entry3 = log.append("B", "set-role", "C", "editor")
    sc.connect()
    sc.receive(challenge(sc, 2), sent=[PROOF])
    sc.document(
        None,
        log=[entry3],
        log_from=3,
        mirror=False,
        sent=[{**INIT, "publicData": {"logHead": log.head(3)}}],
        events=[membership(log, 3, "editor"), ev("loaded")],
        documentState="complete",
        text="Hello!",
        logHead=log.head(3),
    )
    return sc


def _positions_log(label: str) -> Log:
    """Member positions (heads in a document with a log): B creates (position 0), adds C as
    editor (1) and A (2); C is removed (3) and added again (4: not a position, C keeps 1)."""
    log = Log(label)
    log.append("B", "add-member", "C", "editor")
    log.append("B", "add-member", "A", "editor")
    log.append("B", "remove-member", "C")
    log.append("B", "add-member", "C", "editor")
    return log


def _positions_start(sc: Scenario, log: Log) -> tuple[Writer, Snap, Upd]:
    """S1 ("Hello" by B, under entry 1) and B's update 0 (" world"), loaded with the log."""
    b = Writer("B")
    b.append("Hello")
    s1 = sc.snapshot("S1", b.state(), log_head=log.head(1))
    u0 = sc.update([b.append(" world")], s1, 0, log_head=log.head(1))
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.document(
        s1,
        [u0],
        log=list(log.entries),
        sent=[{**INIT, "publicData": {"docId": sc.doc_id, "logHead": log.head()}}],
        documentState="complete",
        text="Hello world",
        activeClocks={"$B": 0},
        logHead=log.head(),
    )
    return b, s1, u0


@scenario
def heads_members_written() -> Scenario:
    log = _positions_log("positions")
    sc = log_scenario(
        "heads-members-written-and-read",
        "In a document with a membership log, heads name each other author by its member"
        " position: the seq of the log entry that first made its key a member (B 0, C 1 — not"
        ' 4, its second adding —, A 2), as the keys of heads: {"<seq>": clock}. A key names'
        " nothing (no alarm, as heads of an unknown shape) when it is beyond the update's"
        " logHead (C's update under entry 1 naming 2), not a first adding (3: a removal, 4: C's"
        " re-adding), beyond the log (7), not canonical (00, -0, 1.0, ' 0'), log, the update's"
        " own author (C naming 1), or when its clock is not a non-negative integer. Our"
        " update names B and C by position (0, 1), then only what advanced.",
        ["rule:heads-members", "rule:heads-written-with-log", "rule:heads-check"],
        log,
    )
    b, s1, _u0 = _positions_start(sc, log)
    c = Writer("C", b.state())
    head = log.head()
    # under entry 1, position 2 (A, added at 2) names nothing: else our clock 5 is missing
    c0 = sc.update(
        [c.insert(0, ">")],
        s1,
        0,
        signer="C",
        log_head=log.head(1),
        raw_heads={"0": 0, "2": 5},
    )
    bad = {"1": 9, "3": 9, "4": 9, "7": 9, "00": 9, "-0": 9, "1.0": 9, " 0": 9, "log": 9}
    c1 = sc.update([c.insert(0, ">")], s1, 1, signer="C", log_head=head, raw_heads=bad)
    c2 = sc.update(
        [c.insert(0, ">")],
        s1,
        2,
        signer="C",
        log_head=head,
        raw_heads={"0": "9", "2": -1, "clocks": {}},
    )
    c3 = sc.update(
        [c.insert(0, ">")], s1, 3, signer="C", log_head=head, raw_heads={"0": {"0": 9}, "2": [9]}
    )
    for i, u in enumerate((c0, c1, c2, c3)):
        sc.receive(
            u.wire(type="update"),
            mirror={"apply": [b64(u.changes[0])]},
            errors=[],
            reconnectRequested=False,
            text=">" * (i + 1) + "Hello world",
        )
    sc.edit((15, "!"))
    sent = sent_log_update(sc, head, s1.id, 0, text=">>>>Hello world!")
    sent["publicData"]["heads"] = {"0": 0, "1": 3}
    sc.flush(sent=[sent])
    sc.receive(saved(s1.id, 0), isSynced=True, activeClocks={"$A": 0, "$B": 0, "$C": 3})
    c4 = sc.update([c.insert(0, ">")], s1, 4, signer="C", log_head=head, raw_heads={"2": 0})
    sc.receive(c4.wire(type="update"), mirror={"apply": [b64(c4.changes[0])]}, errors=[])
    sc.edit((0, "<"))
    sent = sent_log_update(sc, head, s1.id, 1, text="<>>>>>Hello world!")
    sent["publicData"]["heads"] = {"1": 4}
    sc.flush(sent=[sent])
    return sc


def _positions_withheld(name: str, description: str, covers: list[str], heads: Any) -> Scenario:
    """C's update (under the log's head) names, with ``heads``, B's clock 1, which the relay
    never delivered: 801 naming B, and a complete reload."""
    log = _positions_log("positions")
    sc = log_scenario(name, description, covers, log)
    b, s1, _u0 = _positions_start(sc, log)
    b.append("?")  # B's update 1: withheld
    c = Writer("C", b.state())
    c0 = sc.update([c.insert(0, ">")], s1, 0, signer="C", log_head=log.head(), raw_heads=heads)
    sc.receive(
        c0.wire(type="update"),
        mirror={"apply": [b64(c0.changes[0])]},
        errors=["SECSYNC_ERROR_801"],
        events=[
            ev("remote-change", kind="updates", count=1),
            ev("error", code="SECSYNC_ERROR_801", fatal=False),
            ev("withheld", authors=["$B"], missing=[["$B", 1]]),
            ev("reconnect"),
        ],
        text=">Hello world",
        reconnectRequested=True,
        state="connected",
    )
    sc.disconnect(
        connectionParams={
            "mode": "complete",
            "knownSnapshotId": s1.id,
            "knownSnapshotUpdateClocks": {},
            "knownLogSeq": "4",
            "knownLogHash": log.head()["hash"],
        }
    )
    return sc


@scenario
def heads_members_801() -> Scenario:
    return _positions_withheld(
        "heads-members-801-withheld",
        "In a document with a log, C's update names B by its member position (0) with clock 1,"
        " which the relay never delivered: 801 naming B (the position resolved through our"
        " verified log), the verified content is kept and the client reloads completely.",
        ["SECSYNC_ERROR_801", "rule:heads-members", "rule:heads-check"],
        {"0": 1},
    )


@scenario
def heads_members_801_old_form() -> Scenario:
    return _positions_withheld(
        "heads-members-801-old-form",
        'Heads written before member positions (authors by public key, {"clocks": {pubKey:'
        " clock}}) are still read in a document with a log, exactly as before: C's update"
        " names B's clock 1 by key, which the relay never delivered: 801 naming B.",
        ["SECSYNC_ERROR_801", "rule:heads-members", "rule:heads-check"],
        {"clocks": {PUB["B"]: 1}},
    )


@scenario
def membership_create() -> Scenario:
    log = Log("created-by-A", owner="A")
    sc = log_scenario(
        "membership-create-root-first",
        "The engine created the document (client.logRoot): after the reader proof it sends the"
        " root entry; nothing else is written until the relay saved the root; then the first"
        " snapshot names logHead seq 0.",
        ["rule:create-log", "rule:root-before-writes"],
        log,
        logRoot=log.entries[0],
    )
    sc.connect(connectionParams={"mode": "complete"}, role="admin")
    sc.receive(challenge(sc), sent=[PROOF, sent_log_entry(log.entries[0])])
    sc.document(
        None,
        log=[],
        mirror=False,
        sent=[INIT],
        events=[ev("loaded")],
        documentState="complete",
        text="",
    )
    sc.edit(insert=(0, "x"))
    sc.flush(sent=[], pending=1)
    sc.receive(
        {"type": "log-entry-saved", "seq": 0, "hash": log.head(0)["hash"]},
        events=[ev("log-entry-saved", seq=0, hash=log.head(0)["hash"])],
        sent=[
            {
                "kind": "snapshot",
                "publicData": {"docId": sc.doc_id, "pubKey": "$A", "logHead": log.head(0)},
                "text": "x",
            }
        ],
        connectionParams={
            "mode": "complete",
            "knownLogSeq": "0",
            "knownLogHash": log.head(0)["hash"],
        },
    )
    return sc


@scenario
def membership_remembered_log() -> Scenario:
    log = standard_log("remembered")
    head = log.head(2)
    sc = log_scenario(
        "membership-remembered-log-delta",
        "The client remembers the log it verified in an earlier load (client.remembered: entries"
        " 0..2, logHead 2). That log is the engine's from the start: its structure, chain and"
        " authority are checked again, not its signatures (the point is to skip them), and the"
        " role is known before connecting. The first connection asks for the entries after it"
        " (knownLogSeq/knownLogHash); the relay's delta (logFrom 3) is verified on top, and the"
        " state to remember holds the whole log again (4 entries).",
        ["rule:remembered-log", "rule:log-delta"],
        log,
        remembered={"snapshot": None, "logHead": head, "log": list(log.entries)},
    )
    entry3 = log.append("B", "set-role", "C", "editor")
    s1 = sc.snapshot("S1", text_state("Hello"), log_head=log.head(3))
    sc.connect(
        connectionParams={"mode": "complete", "knownLogSeq": "2", "knownLogHash": head["hash"]},
        role="editor",
        readOnly=False,
        logHead=head,
        rememberedLog=None,
    )
    sc.receive(challenge(sc), sent=[PROOF], events=[])
    sc.document(
        s1,
        log=[entry3],
        log_from=3,
        sent=[{**INIT, "publicData": {"docId": sc.doc_id, "logHead": log.head(3)}}],
        events=[
            membership(log, 3, "editor"),
            ev("remote-change", kind="snapshot", snapshotId=s1.id),
            ev("loaded"),
        ],
        documentState="complete",
        text="Hello",
        logHead=log.head(3),
        rememberedLog=4,
    )
    return sc


# --------------------------------- a damaged remembered state (issue 13, part 3; 807)

#: what an engine given a remembered state it cannot adopt does: records 807 (not fatal, no
#: event while it is built), takes nothing of it, and loads as a first load
_DAMAGED_COVERS = ["SECSYNC_ERROR_807", "rule:remembered-damaged"]


def _remembered_807(label: str, description: str, damage: Callable[[Snap], Any]) -> None:
    """A document without a log: the client's remembered state (of S2) is damaged by
    ``damage``; the relay serves S2's parent S1 (a rollback, had the state been usable)."""

    def build() -> Scenario:
        b = Writer("B")
        b.append("Hello")
        probe = Scenario(f"remembered-807-{label}", "", [])
        s1 = probe.snapshot("S1", b.state())
        b.append(" world")
        s2 = probe.snapshot("S2", b.state(), parent=s1)
        sc = Scenario(
            f"remembered-807-{label}",
            f"The client's remembered state is damaged ({description}): the engine records"
            " 807 when it is built (not fatal, no event then), uses nothing of it and loads as"
            " a first load: a complete load without knownSnapshotId, no rollback check — S1,"
            " older than the S2 the damaged state named, loads — and the state to remember"
            " afterwards is S1's (the driver writes it over the damaged one, kept aside).",
            _DAMAGED_COVERS,
            remembered=damage(s2),
        )
        sc._n = probe._n
        sc.connect(
            connectionParams={"mode": "complete"},
            errors=["SECSYNC_ERROR_807"],
            rememberedDamaged=True,
            rememberedSnapshot=None,
            events=CONNECT_EVENTS,
        )
        sc.document(
            s1,
            sent=[INIT],
            state="connected",
            documentState="complete",
            errors=["SECSYNC_ERROR_807"],
            text="Hello",
            rememberedSnapshot=s1.id,
            events=[ev("remote-change", kind="snapshot", snapshotId=s1.id), ev("loaded")],
        )
        return sc

    build.__name__ = f"remembered_807_{label}"
    scenario(build)


_remembered_807("not-an-object", "an array instead of an object", lambda s2: [s2.known()])
_remembered_807(
    "snapshot-id",
    "snapshot.snapshotId is a number",
    lambda s2: {"snapshot": {**s2.known(), "snapshotId": 7}, "logHead": None},
)
_remembered_807(
    "clocks",
    "snapshot.updateClocks maps an author to a string",
    lambda s2: {"snapshot": {**s2.known(), "updateClocks": {PUB["B"]: "1"}}, "logHead": None},
)
_remembered_807(
    "log-not-an-array",
    "log is an object",
    lambda s2: {"snapshot": s2.known(), "logHead": None, "log": {"0": {}}},
)
_remembered_807(
    "log-head-without-log",
    "a log head in a document without a membership log",
    lambda s2: {"snapshot": s2.known(), "logHead": {"seq": 0, "hash": b64(bytes(32))}},
)


def _membership_remembered_807(
    label: str, description: str, damage: Callable[[Log], dict[str, Any]]
) -> None:
    """A document with a log (entries 0..2 remembered, 3 new): the remembered log does not
    check; the engine verifies the whole log the relay serves, from the root."""

    def build() -> Scenario:
        log = standard_log(f"remembered-807-{label}")
        remembered = damage(log)
        sc = log_scenario(
            f"membership-remembered-807-{label}",
            f"The client's remembered log does not check ({description}): 807 when the"
            " engine is built (not fatal), nothing of it taken — no verified log, no known"
            " head — so the first connection asks for the whole log (no knownLogSeq) and the"
            " relay's log is verified from its root; the state to remember then holds the"
            " whole log (4 entries).",
            _DAMAGED_COVERS,
            log,
            remembered=remembered,
        )
        log.append("B", "set-role", "C", "editor")
        s1 = sc.snapshot("S1", text_state("Hello"), log_head=log.head(3))
        sc.connect(
            connectionParams={"mode": "complete"},
            errors=["SECSYNC_ERROR_807"],
            rememberedDamaged=True,
            role=None,
            logHead=None,
            rememberedLog=None,
        )
        sc.receive(challenge(sc), sent=[PROOF], events=[])
        sc.document(
            s1,
            log=log.entries,
            sent=[{**INIT, "publicData": {"docId": sc.doc_id, "logHead": log.head(3)}}],
            events=[
                membership(log, 3, "editor"),
                ev("remote-change", kind="snapshot", snapshotId=s1.id),
                ev("loaded"),
            ],
            errors=["SECSYNC_ERROR_807"],
            documentState="complete",
            text="Hello",
            logHead=log.head(3),
            role="editor",
            rememberedLog=4,
            rememberedSnapshot=s1.id,
        )
        return sc

    build.__name__ = f"membership_remembered_807_{label}"
    scenario(build)


_membership_remembered_807(
    "chain",
    "entry 1 altered: entry 2's previous hash no longer names it",
    lambda log: {
        "snapshot": None,
        "logHead": log.head(2),
        "log": [log.entries[0], {**log.entries[1], "role": "admin"}, log.entries[2]],
    },
)
_membership_remembered_807(
    "signature",
    "the last entry's signature altered: its hash is no longer the remembered head",
    lambda log: {
        "snapshot": None,
        "logHead": log.head(2),
        "log": [*log.entries[:2], {**log.entries[2], "signature": log.entries[1]["signature"]}],
    },
)
_membership_remembered_807(
    "other-document",
    "a valid log of another document: its root does not bind this document id",
    lambda log: {
        "snapshot": None,
        "logHead": standard_log("remembered-807-elsewhere").head(2),
        "log": standard_log("remembered-807-elsewhere").entries,
    },
)
_membership_remembered_807(
    "head-not-in-log",
    "the remembered head is not an entry of the remembered log",
    lambda log: {
        "snapshot": None,
        "logHead": {"seq": 2, "hash": log.head(1)["hash"]},
        "log": list(log.entries),
    },
)


def _live_rejection(name, description, covers, log, upto, frame, code, **client) -> None:
    def build() -> Scenario:
        sc = log_scenario(name, description, covers, log, **client)
        s1 = log_loaded(sc, log, upto)
        sc.receive(
            frame(sc, s1), errors=[code], text="Hello", activeSnapshot=s1.id, state="connected"
        )
        # a valid update by the owner is still applied
        ok = sc.update([Writer("B", s1.state).append("B")], s1, 0, log_head=log.head(upto))
        sc.receive(ok.wire(type="update"), errors=[code], text="HelloB")
        return sc

    SCENARIOS.append(build)


_NON_MEMBER_LOG = Log("non-member")
_NON_MEMBER_LOG.append("B", "add-member", "A", "editor")
_live_rejection(
    "membership-215-non-member-update",
    "An update signed by C, who is not in the verified log, is rejected with 215 even though"
    " the relay forwarded it and it names a valid logHead; the document is unchanged.",
    ["SECSYNC_ERROR_215", "rule:log-author-check"],
    _NON_MEMBER_LOG,
    1,
    lambda sc, s1: sc.update(
        [Writer("C", s1.state).append("c")], s1, 0, signer="C", log_head=_NON_MEMBER_LOG.head(1)
    ).wire(type="update"),
    "SECSYNC_ERROR_215",
)
_VIEWER_LOG = standard_log("viewer")
_live_rejection(
    "membership-215-viewer-update",
    "An update signed by C, a viewer at the logHead it names, is rejected with 215.",
    ["SECSYNC_ERROR_215", "rule:log-author-check"],
    _VIEWER_LOG,
    2,
    lambda sc, s1: sc.update(
        [Writer("C", s1.state).append("c")], s1, 0, signer="C", log_head=_VIEWER_LOG.head(2)
    ).wire(type="update"),
    "SECSYNC_ERROR_215",
)
_live_rejection(
    "membership-114-viewer-snapshot",
    "A snapshot signed by C, a viewer at the logHead it names, is rejected with 114; the"
    " active snapshot stays.",
    ["SECSYNC_ERROR_114", "rule:log-author-check"],
    _VIEWER_LOG,
    2,
    lambda sc, s1: snapshot_frame(
        sc.snapshot("S2", text_state("Viewer"), signer="C", parent=s1, log_head=_VIEWER_LOG.head(2))
    ),
    "SECSYNC_ERROR_114",
)
_live_rejection(
    "membership-215-unknown-log-head",
    "An update naming a logHead that is not an entry of the verified log (a seq beyond the"
    " head) is rejected with 215.",
    ["SECSYNC_ERROR_215", "rule:log-head-known"],
    _VIEWER_LOG,
    2,
    lambda sc, s1: sc.update(
        [Writer("B", s1.state).append("x")], s1, 0, log_head={"seq": 3, "hash": b64(bytes(32))}
    ).wire(type="update"),
    "SECSYNC_ERROR_215",
)
_live_rejection(
    "membership-215-log-head-wrong-hash",
    "An update naming logHead seq 1 with the hash of another entry is rejected with 215.",
    ["SECSYNC_ERROR_215", "rule:log-head-known"],
    _VIEWER_LOG,
    2,
    lambda sc, s1: sc.update(
        [Writer("B", s1.state).append("x")],
        s1,
        0,
        log_head={"seq": 1, "hash": _VIEWER_LOG.head(2)["hash"]},
    ).wire(type="update"),
    "SECSYNC_ERROR_215",
)
_live_rejection(
    "membership-215-no-log-head",
    "An update without publicData.logHead in a document with a log is rejected with 215.",
    ["SECSYNC_ERROR_215", "rule:log-head-known"],
    _VIEWER_LOG,
    2,
    lambda sc, s1: sc.update([Writer("B", s1.state).append("x")], s1, 0).wire(type="update"),
    "SECSYNC_ERROR_215",
)


@scenario
def membership_viewer_snapshot_load() -> Scenario:
    log = standard_log("viewer")
    sc = log_scenario(
        "membership-114-viewer-snapshot-load",
        "A document frame whose snapshot is signed by a viewer fails the load with 114.",
        ["SECSYNC_ERROR_114", "rule:log-author-check"],
        log,
    )
    snap = sc.snapshot("S1", text_state("Viewer"), signer="C", log_head=log.head(2))
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.document(
        snap,
        log=list(log.entries),
        mirror=False,
        sent=[INIT],
        state="failed",
        documentState="failed",
        errors=["SECSYNC_ERROR_114"],
        text="",
    )
    return sc


@scenario
def membership_ephemeral() -> Scenario:
    log = _NON_MEMBER_LOG
    sc = log_scenario(
        "membership-304-non-member-ephemeral",
        "Ephemeral messages: from C (not a member) 304, from B without a logHead 304, from B"
        " naming the verified head accepted (answered, and our answer names the head too).",
        ["SECSYNC_ERROR_304", "rule:log-author-check"],
        log,
    )
    log_loaded(sc, log, 1)
    sc.receive(
        sc.ephemeral("initialize", signer="C", log_head=log.head(1)),
        ephemeralErrors=["SECSYNC_ERROR_304"],
        sent=[],
    )
    sc.receive(
        sc.ephemeral("initialize", signer="B"),
        ephemeralErrors=["SECSYNC_ERROR_304", "SECSYNC_ERROR_304"],
        sent=[],
    )
    sc.receive(
        sc.ephemeral("initialize", signer="B", log_head=log.head(1)),
        ephemeralErrors=["SECSYNC_ERROR_304", "SECSYNC_ERROR_304"],
        sent=[{**sent_ephemeral("proofAndRequestProof"), "publicData": {"logHead": log.head(1)}}],
    )
    return sc


@scenario
def membership_log_head_backwards() -> Scenario:
    log = standard_log("backwards")
    sc = log_scenario(
        "membership-log-head-backwards",
        "A write never claims an older membership than the one it was built on: an update"
        " naming an older logHead than the same author's previous update on the snapshot is"
        " 215; a snapshot naming an older logHead than its parent snapshot is 114.",
        ["SECSYNC_ERROR_215", "SECSYNC_ERROR_114", "rule:log-head-monotonic"],
        log,
    )
    s1 = log_loaded(sc, log, 2, snap_head=1)
    b = Writer("B", s1.state)
    u0 = sc.update([b.append("0")], s1, 0, log_head=log.head(2))
    sc.receive(u0.wire(type="update"), text="Hello0", errors=[])
    old = sc.update([Writer("B", b.state()).append("x")], s1, 1, log_head=log.head(1))
    sc.receive(old.wire(type="update"), text="Hello0", errors=["SECSYNC_ERROR_215"])
    u1 = sc.update([b.append("1")], s1, 1, log_head=log.head(2))
    sc.receive(u1.wire(type="update"), text="Hello01", errors=["SECSYNC_ERROR_215"])
    s2 = sc.snapshot("S2", b.state(), parent=s1, clocks={"B": 1}, log_head=log.head(0))
    sc.receive(
        snapshot_frame(s2),
        errors=["SECSYNC_ERROR_114", "SECSYNC_ERROR_215"],
        activeSnapshot=s1.id,
        text="Hello01",
    )
    return sc


@scenario
def membership_forged_entry() -> Scenario:
    log = standard_log("forged")
    sc = log_scenario(
        "membership-704-forged-log-entry",
        "A live log-entry whose signature does not verify is rejected with 704 (the log stays"
        " at its head); an update naming it is 215; the genuine entry is then accepted.",
        ["SECSYNC_ERROR_704", "rule:live-log-entry"],
        log,
    )
    s1 = log_loaded(sc, log, 1)
    forged = {**log.entries[2], "signature": log.entries[1]["signature"]}
    sc.receive(
        {"type": "log-entry", "entry": forged},
        errors=["SECSYNC_ERROR_704"],
        events=[ev("error", code="SECSYNC_ERROR_704", fatal=False)],
        logHead=log.head(1),
        role="editor",
    )
    from secsync_jupyter.protocol.membership import parse_entry

    forged_head = {"seq": 2, "hash": parse_entry(forged).hash}
    upd = sc.update([Writer("B", s1.state).append("x")], s1, 0, log_head=forged_head)
    sc.receive(upd.wire(type="update"), errors=["SECSYNC_ERROR_215", "SECSYNC_ERROR_704"])
    sc.receive(
        {"type": "log-entry", "entry": log.entries[2]},
        events=[membership(log, 2, "editor")],
        logHead=log.head(2),
        text="Hello",
    )
    return sc


def _log_load_error(name, description, covers, log, frame_log, code, **client) -> None:
    def build() -> Scenario:
        sc = log_scenario(name, description, covers, log, **client)
        snap = sc.snapshot("S1", text_state("Hello"), log_head=log.head())
        sc.connect()
        sc.receive(challenge(sc), sent=[PROOF])
        sc.document(
            snap,
            log=frame_log,
            mirror=False,
            sent=[],
            state="failed",
            documentState="failed",
            errors=[code],
            text="",
        )
        return sc

    SCENARIOS.append(build)


_FORGED_LOG = standard_log("forged")
_log_load_error(
    "membership-704-forged-entry-load",
    "A log in the document frame with an entry whose signature does not verify fails the load"
    " (704) before any snapshot is applied; nothing is sent.",
    ["SECSYNC_ERROR_704", "rule:log-verified-before-messages"],
    _FORGED_LOG,
    [
        *_FORGED_LOG.entries[:2],
        {**_FORGED_LOG.entries[2], "signature": _FORGED_LOG.entries[1]["signature"]},
    ],
    "SECSYNC_ERROR_704",
)
_OTHER_LOG = standard_log("other-document")
_log_load_error(
    "membership-706-root-differs",
    "The relay serves another document's (valid) log: its root does not bind this document id"
    " (706); the load fails.",
    ["SECSYNC_ERROR_706", "rule:root-bound-to-doc-id"],
    standard_log("root"),
    _OTHER_LOG.entries,
    "SECSYNC_ERROR_706",
)
_log_load_error(
    "membership-706-no-log",
    "A document with an m1_ id served without a log fails the load (706).",
    ["SECSYNC_ERROR_706", "rule:root-bound-to-doc-id"],
    standard_log("root"),
    [],
    "SECSYNC_ERROR_706",
)
_ROLLBACK_LOG = standard_log("rollback")
_log_load_error(
    "membership-718-rollback",
    "The client remembers head 2 (client.knownLogHead); a relay serving the log only up to"
    " entry 1 is a rollback (718).",
    ["SECSYNC_ERROR_718", "rule:known-log-head"],
    _ROLLBACK_LOG,
    _ROLLBACK_LOG.entries[:2],
    "SECSYNC_ERROR_718",
    knownLogHead=_ROLLBACK_LOG.head(2),
)


@scenario
def membership_demotion() -> Scenario:
    log = standard_log("demotion")
    sc = log_scenario(
        "membership-live-demotion-read-only",
        "A live entry demotes the engine to viewer: read-only (local changes are kept and not"
        " sent); promoted again, the kept changes go out naming the new head.",
        ["rule:live-demotion-read-only", "rule:live-log-entry"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    demote = log.append("B", "set-role", "A", "viewer")
    sc.receive(
        {"type": "log-entry", "entry": demote},
        events=[membership(log, 3, "viewer")],
        role="viewer",
        readOnly=True,
    )
    sc.edit(insert=(5, "!"))
    sc.flush(sent=[], pending=1, text="Hello!")
    promote = log.append("B", "set-role", "A", "editor")
    sc.receive(
        {"type": "log-entry", "entry": promote},
        events=[membership(log, 4, "editor")],
        role="editor",
        readOnly=False,
        sent=[sent_log_update(sc, log.head(4), s1.id, 0, text="Hello!")],
        pending=0,
    )
    return sc


@scenario
def membership_write_refused() -> Scenario:
    log = standard_log("refused")
    sc = log_scenario(
        "membership-724-write-refused",
        "The relay answers our update with write-refused (724): recorded once, read-only, the"
        " changes kept; a later entry under which we are still an editor lets us write again.",
        ["SECSYNC_ERROR_724", "rule:write-refused"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    sc.edit(insert=(5, "!"))
    sc.flush(sent=[sent_log_update(sc, log.head(2), s1.id, 0, text="Hello!")])
    sc.receive(
        {
            "type": "write-refused",
            "of": "update",
            "code": "SECSYNC_ERROR_724",
            "snapshotId": s1.id,
            "clock": 0,
        },
        errors=["SECSYNC_ERROR_724"],
        readOnly=True,
        role="editor",
        pending=1,
        sent=[],
    )
    sc.edit(insert=(6, "?"))
    sc.flush(sent=[], pending=2)
    entry = log.append("B", "set-role", "C", "editor")
    sc.receive(
        {"type": "log-entry", "entry": entry},
        events=[membership(log, 3, "editor")],
        readOnly=False,
        sent=[sent_log_update(sc, log.head(3), s1.id, 0, text="Hello!?")],
        errors=["SECSYNC_ERROR_724"],
    )
    return sc


@scenario
def membership_removed() -> Scenario:
    log = standard_log("removed")
    sc = log_scenario(
        "membership-725-removed",
        "A live entry removes the engine: access revoked (725), state no-access (terminal: no"
        " reconnect); the relay's unauthorized frame that follows changes nothing.",
        ["SECSYNC_ERROR_725", "rule:removed-terminal"],
        log,
    )
    log_loaded(sc, log, 2)
    removal = log.append("B", "remove-member", "A")
    sc.receive(
        {"type": "log-entry", "entry": removal},
        events=[
            membership(log, 3, None),
            ev("error", code="SECSYNC_ERROR_725", fatal=True),
            ev("state", state="no-access"),
        ],
        state="no-access",
        errors=["SECSYNC_ERROR_725"],
        role=None,
        reconnectRequested=False,
    )
    sc.receive(
        {"type": "unauthorized", "code": "SECSYNC_ERROR_725", "reason": "removed"},
        state="no-access",
        errors=["SECSYNC_ERROR_725"],
        events=[],
    )
    return sc


@scenario
def membership_unauthorized_frame() -> Scenario:
    log = standard_log("unauthorized")
    sc = log_scenario(
        "membership-725-unauthorized-frame",
        "The relay closes with unauthorized 725 (removed): state no-access, the code recorded.",
        ["SECSYNC_ERROR_725", "rule:removed-terminal"],
        log,
    )
    log_loaded(sc, log, 2)
    sc.receive(
        {"type": "unauthorized", "code": "SECSYNC_ERROR_725", "reason": "removed"},
        events=[ev("error", code="SECSYNC_ERROR_725", fatal=True), ev("state", state="no-access")],
        state="no-access",
        errors=["SECSYNC_ERROR_725"],
    )
    return sc


@scenario
def membership_append() -> Scenario:
    log = Log("append", owner="A")
    log.append("A", "add-member", "B", "admin")
    sc = log_scenario(
        "membership-append-entries",
        "Our own membership entries (appendEntry): sent as log-entry, the head moves on"
        " log-entry-saved; on log-entry-failed 707 the relay's entries are verified and adopted"
        " (the driver rebuilds its change on them); an entry that does not fit the head is"
        " refused by appendEntry itself; a dropped connection reports the entry in flight as"
        " failed with code null.",
        ["rule:append-entry", "rule:log-entry-failed-707"],
        log,
    )
    log_loaded(sc, log, 1)
    add_c = log.append("A", "add-member", "C", "viewer")
    sc.step("appendEntry", {"sent": [sent_log_entry(add_c)], "isSynced": False}, entry=add_c)
    sc.receive(
        {"type": "log-entry-saved", **log.head(2)},
        events=[
            membership(log, 2, "admin"),
            ev("log-entry-saved", seq=2, hash=log.head(2)["hash"]),
        ],
        logHead=log.head(2),
        isSynced=True,
    )
    ours, _ = create_entry(
        log.states[-1], SIGNERS["A"], "set-role", PUB["C"], "editor", at=T0 + 10_000
    )
    theirs = log.append("B", "remove-member", "C")
    sc.step("appendEntry", {"sent": [sent_log_entry(ours.to_json())]}, entry=ours.to_json())
    sc.receive(
        {"type": "log-entry-failed", "seq": 3, "code": "SECSYNC_ERROR_707", "log": [theirs]},
        events=[
            membership(log, 3, "admin"),
            ev("log-entry-failed", seq=3, hash=ours.hash, code="SECSYNC_ERROR_707"),
        ],
        logHead=log.head(3),
        errors=[],
    )
    sc.receive(
        {"type": "log-entry-failed", "seq": 3, "code": "SECSYNC_ERROR_707", "log": [theirs]},
        events=[],
        logHead=log.head(3),
    )
    sc.step("appendEntry", {"throws": "SECSYNC_ERROR_707", "sent": []}, entry=ours.to_json())
    again = log.append("A", "add-member", "C", "editor")
    sc.step("appendEntry", {"sent": [sent_log_entry(again)]}, entry=again)
    sc.disconnect(
        events=[
            ev("log-entry-failed", seq=4, hash=log.head(4)["hash"], code=None),
            ev("state", state="disconnected"),
        ],
        logHead=log.head(3),
    )
    return sc


@scenario
def membership_create_without_challenge() -> Scenario:
    log = Log("created-without-challenge", owner="A")
    sc = log_scenario(
        "membership-706-create-without-challenge",
        "The engine created the document, but the relay serves it without a reader challenge"
        " (a relay without membership support): the empty log is not our unsaved root's"
        " (706); nothing is sent.",
        ["SECSYNC_ERROR_706", "rule:root-before-writes"],
        log,
        logRoot=log.entries[0],
    )
    sc.connect()
    sc.document(
        None,
        log=[],
        mirror=False,
        sent=[],
        state="failed",
        documentState="failed",
        errors=["SECSYNC_ERROR_706"],
    )
    return sc


@scenario
def membership_append_unparsable() -> Scenario:
    log = Log("append-unparsable", owner="A")
    log.append("A", "add-member", "B", "editor")
    sc = log_scenario(
        "membership-append-failed-seq-null",
        "log-entry-failed with seq null (the relay could not parse the entry) fails our entry in"
        " flight with the relay's code; the log stays.",
        ["rule:append-entry"],
        log,
    )
    log_loaded(sc, log, 1)
    entry, _ = create_entry(
        log.states[-1], SIGNERS["A"], "add-member", PUB["C"], "viewer", at=T0 + 5000
    )
    sc.step("appendEntry", {"sent": [sent_log_entry(entry.to_json())]}, entry=entry.to_json())
    sc.receive(
        {"type": "log-entry-failed", "seq": None, "code": "SECSYNC_ERROR_701", "log": []},
        events=[ev("log-entry-failed", seq=2, hash=entry.hash, code="SECSYNC_ERROR_701")],
        logHead=log.head(1),
        isSynced=True,
    )
    return sc


@scenario
def membership_append_echoed() -> Scenario:
    log = Log("append-echoed", owner="A")
    log.append("A", "add-member", "B", "editor")
    sc = log_scenario(
        "membership-append-echoed",
        "The relay sends our own accepted entry back as a live log-entry before log-entry-saved:"
        " it is applied once, and the saved answer still counts as saved (no 708).",
        ["rule:append-entry"],
        log,
    )
    log_loaded(sc, log, 1)
    entry = log.append("A", "add-member", "C", "viewer")
    sc.step("appendEntry", {"sent": [sent_log_entry(entry)]}, entry=entry)
    sc.receive(
        {"type": "log-entry", "entry": entry},
        events=[membership(log, 2, "admin")],
        logHead=log.head(2),
        isSynced=False,
    )
    sc.receive(
        {"type": "log-entry-saved", **log.head(2)},
        events=[ev("log-entry-saved", seq=2, hash=log.head(2)["hash"])],
        errors=[],
        isSynced=True,
    )
    return sc


@scenario
def membership_not_a_member() -> Scenario:
    log = Log("not-a-member")
    log.append("B", "add-member", "C", "editor")
    sc = log_scenario(
        "membership-722-not-a-member",
        "The verified log does not make the engine a member (a relay let it in anyway): 722,"
        " state no-access (terminal), nothing applied or sent.",
        ["SECSYNC_ERROR_722", "rule:removed-terminal"],
        log,
    )
    snap = sc.snapshot("S1", text_state("Hello"), log_head=log.head())
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.document(
        snap,
        log=list(log.entries),
        mirror=False,
        sent=[],
        events=[
            membership(log, 1, None),
            ev("error", code="SECSYNC_ERROR_722", fatal=True),
            ev("state", state="no-access"),
        ],
        state="no-access",
        errors=["SECSYNC_ERROR_722"],
        text="",
        role=None,
    )
    return sc


@scenario
def membership_log_from_mismatch() -> Scenario:
    log = standard_log("log-from")
    sc = log_scenario(
        "membership-701-log-from",
        "A delta log (logFrom > 0) that does not continue the head this engine verified (here:"
        " no head at all, a first connection) fails the load with 701 (field logFrom).",
        ["SECSYNC_ERROR_701", "rule:log-delta"],
        log,
    )
    snap = sc.snapshot("S1", text_state("Hello"), log_head=log.head())
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.document(
        snap,
        log=log.entries[2:],
        log_from=2,
        mirror=False,
        sent=[],
        state="failed",
        documentState="failed",
        errors=["SECSYNC_ERROR_701"],
        text="",
    )
    return sc


@scenario
def membership_live_gap() -> Scenario:
    log = standard_log("gap")
    log.append("B", "set-role", "C", "editor")
    sc = log_scenario(
        "membership-709-live-gap",
        "A live log-entry that skips an entry (709): recorded, ignored, and the engine reconnects"
        " to reload the log (as a delta from its head).",
        ["SECSYNC_ERROR_709", "rule:live-log-entry"],
        log,
    )
    log_loaded(sc, log, 1)
    sc.receive(
        {"type": "log-entry", "entry": log.entries[3]},
        errors=["SECSYNC_ERROR_709"],
        events=[ev("error", code="SECSYNC_ERROR_709", fatal=False), ev("reconnect")],
        reconnectRequested=True,
        logHead=log.head(1),
    )
    return sc


# ================================================================ key epochs (issue 12)


def epoch_key(label: str) -> bytes:
    return hashlib.blake2b(f"epoch-key/{label}".encode(), digest_size=32).digest()


def det_seal(message: bytes, recipient: str, label: str) -> str:
    """libsodium's sealed box with a fixed ephemeral key (``crypto_box_seal`` is randomized;
    this opens with ``crypto_box_seal_open`` like any sealed box — see make_epoch_vectors.py)."""
    esk = hashlib.blake2b(f"ephemeral/{label}".encode(), digest_size=32).digest()
    epk = sodium.crypto_scalarmult_base(esk)
    rpk = box_public_key(recipient)
    nonce = hashlib.blake2b(epk + rpk, digest_size=24).digest()
    return b64(epk + sodium.crypto_box(message, nonce, rpk, esk))


def lockbox_of(doc_id: str, epoch: int, key: bytes, recipient: str, sealed_to: str | None = None):
    """``recipient``'s lockbox of ``key`` (``sealed_to``: box sealed to another key, 761)."""
    box = det_seal(key, PUB[sealed_to or recipient], f"{doc_id}/{epoch}/{recipient}/{sealed_to}")
    return {"docId": doc_id, "epoch": epoch, "recipient": PUB[recipient], "box": box}


class EpochLog(Log):
    """A scenario log that can rotate the key (B, the owner, is the admin)."""

    def __init__(self, label: str):
        super().__init__(label)
        self.label = label
        self.keys: dict[int, bytes] = {0: KEY}
        self.lockboxes: dict[int, list[dict[str, Any]]] = {}

    def rotate(self, signer: str = "B") -> dict[str, Any]:
        state = self.states[-1]
        epoch = state.epoch + 1
        key = epoch_key(f"{self.label}/{epoch}")
        at = T0 + 1000 * len(self.entries)
        names = {v: k for k, v in PUB.items()}
        boxes = [
            lockbox_of(self.doc_id, epoch, key, names[r]) for r in sorted(state.recipients(at))
        ]
        fields = {
            "epoch": epoch,
            "keyCheck": epoch_key_check(self.doc_id, epoch, key),
            "lockboxHash": lockbox_set_hash(self.doc_id, epoch, boxes),
        }
        entry, new = next_entry(state, SIGNERS[signer], "rotate-key", fields, at=at)
        self.entries.append(entry.to_json())
        self.states.append(new)
        self.keys[epoch] = key
        self.lockboxes[epoch] = boxes
        return entry.to_json()

    def lockbox(self, epoch: int, recipient: str = "A") -> dict[str, Any]:
        return next(b for b in self.lockboxes[epoch] if b["recipient"] == PUB[recipient])


def epoch_scenario(name, description, covers, log: EpochLog, **epochs) -> Scenario:
    """A scenario on ``log`` whose engine (A, editor) keeps epoch keys: ``keyring`` (stored,
    default epoch 0 only), ``seen``, ``given`` / ``epoch0FromLockbox`` (a link's join)."""
    epochs.setdefault("keyring", {"0": b64(KEY)})
    sc = log_scenario(name, description, covers, log, epochs=epochs)
    sc.epoch_keys = log.keys  # (the same dict: keys of later rotations too)
    return sc


def sent_in(epoch: int, sent: dict[str, Any], **public: Any) -> dict[str, Any]:
    """``sent`` (an update / ephemeral) encrypted with epoch ``epoch``'s key."""
    out = {**sent, "epoch": epoch}
    if public:
        out["publicData"] = {**sent.get("publicData", {}), **public}
    return out


def lockbox_frame(lb: dict[str, Any]) -> dict[str, Any]:
    return {"type": "lockbox", "lockbox": lb}


def live_rotation(sc: Scenario, log: EpochLog, **expect: Any) -> dict[str, Any]:
    """B rotates the key: the rotate-key entry arrives live (our log: epoch +1)."""
    entry = log.rotate()
    seq = len(log.entries) - 1
    sc.receive(
        {"type": "log-entry", "entry": entry},
        events=[membership(log, seq, "editor")],
        logHead=log.head(seq),
        **expect,
    )
    return entry


@scenario
def epochs_snapshot_with_keyring() -> Scenario:
    log = standard_log_epochs("keyring")
    log.rotate()
    sc = epoch_scenario(
        "epochs-snapshot-decrypted-with-keyring",
        "A snapshot in epoch 1 (publicData.epoch, logHead after the rotate-key) is decrypted with"
        " the keyring's epoch-1 key; updates on it use the same key (ours and B's), and our"
        " ephemeral messages too; the newest epoch accepted is remembered.",
        ["rule:epoch-key-per-snapshot", "rule:epoch-seen"],
        log,
        keyring={"0": b64(KEY), "1": b64(log.keys[1])},
    )
    head = log.head(3)
    s1 = sc.snapshot("S1", text_state("Hello"), key=log.keys[1], log_head=head, epoch=1)
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.document(
        s1,
        log=list(log.entries),
        sent=[sent_in(1, INIT, logHead=head)],
        documentState="complete",
        text="Hello",
        seenEpoch=1,
        keyringEpochs=[0, 1],
    )
    b = Writer("B", s1.state)
    u0 = sc.update([b.append(", world")], s1, 0, key=log.keys[1], log_head=head)
    sc.receive(u0.wire(type="update"), {"apply": [b64(c) for c in u0.changes]}, text="Hello, world")
    sc.edit(insert=(12, "!"))
    sc.flush(sent=[sent_in(1, sent_log_update(sc, head, s1.id, 0, text="Hello, world!"))])
    sc.step(
        "sendEphemeral",
        {"sent": [sent_in(1, sent_ephemeral("message", b"hi"))], "returns": True},
        content=b64(b"hi"),
    )
    return sc


def standard_log_epochs(label: str) -> EpochLog:
    """B creates the document (owner), adds A (the engine) as editor and C as viewer."""
    log = EpochLog(label)
    log.append("B", "add-member", "A", "editor")
    log.append("B", "add-member", "C", "viewer")
    return log


@scenario
def epochs_766_live_then_lockbox() -> Scenario:
    log = standard_log_epochs("766")
    sc = epoch_scenario(
        "epochs-766-no-key",
        "After a live rotate-key, B's snapshot of epoch 1 arrives before our lockbox: 766 (no key"
        " for the epoch), recorded, content unchanged; our lockbox then opens (its keyCheck"
        " matches) and the engine reconnects to load the snapshot it could not read.",
        ["SECSYNC_ERROR_766", "rule:lockbox-live", "rule:missing-epoch-reload"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    live_rotation(sc, log)
    s2 = sc.snapshot(
        "S2", text_state("Hello there"), key=log.keys[1], log_head=log.head(3), epoch=1, parent=s1
    )
    sc.receive(
        snapshot_frame(s2),
        errors=["SECSYNC_ERROR_766"],
        text="Hello",
        activeSnapshot=s1.id,
        keyringEpochs=[0],
        reconnectRequested=False,
    )
    sc.receive(
        lockbox_frame(log.lockbox(1)),
        keyringEpochs=[0, 1],
        errors=["SECSYNC_ERROR_766"],
        reconnectRequested=True,
    )
    return sc


@scenario
def epochs_767() -> Scenario:
    log = standard_log_epochs("767")
    sc = epoch_scenario(
        "epochs-767-wrong-epoch",
        "A snapshot's epoch must be the epoch at its logHead: epoch 0 under the rotate-key's"
        " head, or epoch 1 under an earlier head, or a malformed epoch, is 767 (ignored, content"
        " unchanged).",
        ["SECSYNC_ERROR_767"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    live_rotation(sc, log)
    k1 = log.keys[1]
    bad = [
        sc.snapshot("S2", text_state("zero"), log_head=log.head(3), epoch=0, parent=s1),
        sc.snapshot("S3", text_state("one"), key=k1, log_head=log.head(2), epoch=1, parent=s1),
        sc.snapshot("S4", text_state("str"), key=k1, log_head=log.head(3), epoch="1", parent=s1),
    ]
    for n, snap in enumerate(bad, start=1):
        sc.receive(snapshot_frame(snap), errors=["SECSYNC_ERROR_767"] * n, text="Hello")
    return sc


@scenario
def epochs_768_superseded() -> Scenario:
    log = standard_log_epochs("768")
    sc = epoch_scenario(
        "epochs-768-superseded-epoch",
        "After a live rotate-key (epoch 1), a live snapshot still written in epoch 0 (under the"
        " head before the rotation) and a live update on the epoch-0 snapshot are 768 (written"
        " in a superseded epoch): recorded, ignored, content unchanged.",
        ["SECSYNC_ERROR_768", "rule:epoch-superseded"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    b = Writer("B", s1.state)
    live_rotation(sc, log)
    s2 = sc.snapshot("S2", text_state("Old epoch"), log_head=log.head(2), parent=s1)
    sc.receive(snapshot_frame(s2), errors=["SECSYNC_ERROR_768"], text="Hello")
    u0 = sc.update([b.append("!")], s1, 0, log_head=log.head(2))
    sc.receive(u0.wire(type="update"), errors=["SECSYNC_ERROR_768"] * 2, text="Hello")
    return sc


@scenario
def epochs_769_rollback() -> Scenario:
    log = standard_log_epochs("769")
    log.rotate()
    sc = epoch_scenario(
        "epochs-769-rollback",
        "The engine accepted a snapshot of epoch 1 before (seen 1); the relay now serves an"
        " epoch-0 snapshot as current (valid at its logHead, before the rotation): 769, the"
        " load fails.",
        ["SECSYNC_ERROR_769", "rule:epoch-seen"],
        log,
        keyring={"0": b64(KEY), "1": b64(log.keys[1])},
        seen=1,
    )
    s1 = sc.snapshot("S1", text_state("Old"), log_head=log.head(2))
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.document(
        s1,
        log=list(log.entries),
        mirror=False,
        sent=[sent_in(1, INIT, logHead=log.head(3))],
        state="failed",
        documentState="failed",
        errors=["SECSYNC_ERROR_769"],
        text="",
    )
    return sc


@scenario
def epochs_lockboxes() -> Scenario:
    log = standard_log_epochs("lockboxes")
    log.rotate()
    other = standard_log_epochs("lockboxes-other")
    k1 = log.keys[1]
    sc = epoch_scenario(
        "epochs-lockboxes",
        "The document frame's lockboxes are opened before its snapshot: one for another"
        " document (763), one sealed to another key (761), one whose key does not match the"
        " rotate-key's keyCheck (762) and one sealed to C (763) are recorded and their keys"
        " not used; ours opens and decrypts the epoch-1 snapshot. lockbox-saved changes"
        " nothing; lockbox-failed is recorded with its code.",
        [
            "SECSYNC_ERROR_761",
            "SECSYNC_ERROR_762",
            "SECSYNC_ERROR_763",
            "rule:lockboxes-in-document",
            "rule:lockbox-answers",
        ],
        log,
    )
    head = log.head(3)
    s1 = sc.snapshot("S1", text_state("Hello"), key=k1, log_head=head, epoch=1)
    boxes = [
        lockbox_of(other.doc_id, 1, k1, "A"),
        lockbox_of(log.doc_id, 1, k1, "A", sealed_to="C"),
        lockbox_of(log.doc_id, 1, WRONG_KEY, "A"),
        log.lockbox(1, "C"),
        log.lockbox(1, "A"),
    ]
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    frame = {
        "type": "document",
        "snapshot": s1.wire(),
        "updates": [],
        "log": list(log.entries),
        "logFrom": 0,
        "lockboxes": boxes,
    }
    codes = ["SECSYNC_ERROR_763", "SECSYNC_ERROR_762", "SECSYNC_ERROR_761", "SECSYNC_ERROR_763"]
    sc.receive(
        frame,
        {"reset": b64(s1.state)},
        sent=[sent_in(1, INIT, logHead=head)],
        documentState="complete",
        text="Hello",
        keyringEpochs=[0, 1],
        seenEpoch=1,
        errors=codes,
    )
    sc.receive({"type": "lockbox-saved", "epoch": 1, "recipient": PUB["C"]}, errors=codes)
    sc.receive(
        {
            "type": "lockbox-failed",
            "epoch": 1,
            "recipient": PUB["C"],
            "code": "SECSYNC_ERROR_765",
            "reason": "not a recipient",
        },
        errors=["SECSYNC_ERROR_765", *codes],
    )
    return sc


@scenario
def epochs_epoch0_lockbox() -> Scenario:
    log = standard_log_epochs("epoch0")
    sc = epoch_scenario(
        "epochs-epoch0-lockbox-after-snapshot",
        "A member who joined through a link holds epoch 0's key only from a lockbox (epoch 0"
        " has no keyCheck): the engine reads with it but writes nothing until the key has"
        " decrypted a writer's epoch-0 snapshot; then our pending change goes out.",
        ["rule:epoch0-lockbox-confirmed"],
        log,
        keyring={},
        epoch0FromLockbox=True,
    )
    sc.connect()
    sc.receive(challenge(sc), sent=[PROOF])
    sc.receive(
        {
            "type": "document",
            "updates": [],
            "log": list(log.entries),
            "logFrom": 0,
            "lockboxes": [lockbox_of(log.doc_id, 0, KEY, "A")],
        },
        sent=[],  # (no key at connect: no ephemeral session on this connection)
        documentState="complete",
        keyringEpochs=[0],
        seenEpoch=None,
    )
    sc.edit(insert=(0, "x"))
    sc.flush(sent=[], pending=1)
    s1 = sc.snapshot("S1", text_state("Hello"), log_head=log.head(2))
    sc.receive(
        snapshot_frame(s1),
        {"reset": b64(s1.state)},
        seenEpoch=0,
        sent=[sent_log_update(sc, log.head(2), s1.id, 0, changes=1)],
        pending=0,
    )
    return sc


@scenario
def epochs_write_after_rotation() -> Scenario:
    log = standard_log_epochs("write")
    sc = epoch_scenario(
        "epochs-write-in-new-epoch",
        "After a live rotate-key the engine writes nothing until its lockbox of the new epoch"
        " opens; then its pending change goes out as a snapshot in epoch 1 (publicData.epoch,"
        " the new key), and later updates on it use epoch 1's key.",
        ["rule:write-newest-epoch", "rule:new-epoch-begins-with-snapshot"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    live_rotation(sc, log)
    sc.edit(insert=(5, "!"))
    sc.flush(sent=[], pending=1)
    snap = sent_snapshot(s1.id, {}, bind="S2", text="Hello!")
    snap["publicData"].update(docId=sc.doc_id, logHead=log.head(3), epoch=1)
    sc.receive(lockbox_frame(log.lockbox(1)), keyringEpochs=[0, 1], sent=[snap], errors=[])
    sc.receive(snapshot_saved("S2"), activeSnapshot="$S2")
    sc.edit(insert=(6, "?"))
    sc.flush(sent=[sent_in(1, sent_log_update(sc, log.head(3), "$S2", 0, text="Hello!?"))])
    return sc


@scenario
def epochs_own_write_rewritten() -> Scenario:
    log = standard_log_epochs("rewritten")
    sc = epoch_scenario(
        "epochs-768-own-write-rewritten",
        "Our update on the epoch-0 snapshot raced B's rotation: the relay stored the rotate-key"
        " first and refuses the update with 768. That is not a loss of rights: recorded, not"
        " read-only, and the change goes out again as a snapshot in epoch 1.",
        ["rule:superseded-write-rewritten"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    sc.edit(insert=(5, "!"))
    sc.flush(sent=[sent_log_update(sc, log.head(2), s1.id, 0, text="Hello!")])
    live_rotation(sc, log)
    sc.receive(lockbox_frame(log.lockbox(1)), keyringEpochs=[0, 1], sent=[])
    snap = sent_snapshot(s1.id, {}, bind="S2", text="Hello!")
    snap["publicData"].update(docId=sc.doc_id, logHead=log.head(3), epoch=1)
    sc.receive(
        {
            "type": "write-refused",
            "of": "update",
            "code": "SECSYNC_ERROR_768",
            "snapshotId": s1.id,
            "clock": 0,
        },
        errors=["SECSYNC_ERROR_768"],
        readOnly=False,
        sent=[snap],
    )
    sc.receive(snapshot_saved("S2"), activeSnapshot="$S2", isSynced=True)
    return sc


@scenario
def epochs_own_rotation() -> Scenario:
    log = EpochLog("own-rotation")
    log.append("B", "add-member", "A", "admin")
    log.append("B", "add-member", "C", "viewer")
    sc = epoch_scenario(
        "epochs-own-rotation",
        "The engine's own rotation (the driver's rotate_key / rotateKey): the rotate-key goes"
        " out with its lockbox set (one per member); once saved our log is in epoch 1 but we"
        " write nothing until the driver keeps the new key; then the pending change goes out"
        " as a snapshot in epoch 1.",
        ["rule:rotation-with-lockboxes", "rule:write-newest-epoch"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    entry = log.rotate(signer="A")
    boxes = log.lockboxes[1]
    sc.step(
        "appendEntry",
        {"sent": [{**sent_log_entry(entry), "lockboxes": boxes}]},
        entry=entry,
        lockboxes=boxes,
    )
    sc.receive(
        {"type": "log-entry-saved", **log.head(3)},
        events=[
            ev("membership", seq=3, hash=log.head(3)["hash"], role="admin"),
            ev("log-entry-saved", seq=3, hash=log.head(3)["hash"]),
        ],
        logHead=log.head(3),
        keyringEpochs=[0],
    )
    sc.edit(insert=(5, "!"))
    sc.flush(sent=[], pending=1)
    snap = sent_snapshot(s1.id, {}, bind="S2", text="Hello!")
    snap["publicData"].update(docId=sc.doc_id, logHead=log.head(3), epoch=1)
    sc.step("addEpochKey", {"keyringEpochs": [0, 1]}, epoch=1, key=b64(log.keys[1]))
    sc.flush(sent=[snap], pending=0)
    sc.receive(snapshot_saved("S2"), activeSnapshot="$S2", isSynced=True)
    return sc


@scenario
def epochs_removed_member_gets_nothing() -> Scenario:
    log = standard_log_epochs("removed")
    sc = epoch_scenario(
        "epochs-removed-member-gets-nothing",
        "A removed member (A) and a relay that keeps sending it what follows: the new epoch's"
        " snapshot and update while withholding the entries (their logHead is not in A's log:"
        " 114 / 215), B's lockbox (763: sealed to someone else) and B's lockbox relabelled for A"
        " (766: A's log has no epoch 1). Content and keyring unchanged; the removal entry, once"
        " sent, ends the session (725), and nothing after it is read.",
        ["rule:removed-member-no-new-key"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    log.append("B", "remove-member", "A")
    log.rotate()
    k1 = log.keys[1]
    head = log.head(4)
    s2 = sc.snapshot("S2", text_state("Secret"), key=k1, log_head=head, epoch=1, parent=s1)
    sc.receive(
        snapshot_frame(s2),
        errors=["SECSYNC_ERROR_114"],
        text="Hello",
        keyringEpochs=[0],
    )
    b = Writer("B", s2.state)
    u0 = sc.update([b.append(" more")], s2, 0, key=k1, log_head=head)
    sc.receive(u0.wire(type="update"), errors=["SECSYNC_ERROR_215", "SECSYNC_ERROR_114"])
    theirs = log.lockbox(1, "B")
    errors = ["SECSYNC_ERROR_763", "SECSYNC_ERROR_215", "SECSYNC_ERROR_114"]
    sc.receive(lockbox_frame(theirs), errors=errors, keyringEpochs=[0])
    relabelled = {**theirs, "recipient": PUB["A"]}
    errors = ["SECSYNC_ERROR_766", *errors]
    sc.receive(lockbox_frame(relabelled), errors=errors, keyringEpochs=[0], text="Hello")
    sc.receive(
        {"type": "log-entry", "entry": log.entries[3]},
        events=[
            membership(log, 3, None),
            ev("error", code="SECSYNC_ERROR_725", fatal=True),
            ev("state", state="no-access"),
        ],
        state="no-access",
        errors=["SECSYNC_ERROR_725", *errors],
    )
    sc.receive({"type": "log-entry", "entry": log.entries[4]}, logHead=log.head(3), events=[])
    sc.receive(lockbox_frame(theirs), keyringEpochs=[0], text="Hello", events=[])
    return sc


@scenario
def epochs_ephemeral_across_rotation() -> Scenario:
    log = standard_log_epochs("ephemeral")
    sc = epoch_scenario(
        "epochs-ephemeral-across-rotation",
        "Ephemeral messages carry no epoch: they are in the key of the writer's active snapshot."
        " Before B's epoch-1 snapshot arrives ours are in epoch 0; after it, in epoch 1. A"
        " peer's message in either epoch is opened (active epoch first, then the other keys"
        " held) and answered in the key that opened it.",
        ["rule:ephemeral-epoch"],
        log,
    )
    s1 = log_loaded(sc, log, 2)
    live_rotation(sc, log)
    sc.receive(lockbox_frame(log.lockbox(1)), keyringEpochs=[0, 1])
    sc.step(
        "sendEphemeral",
        {"sent": [sent_in(0, sent_ephemeral("message", b"a"))], "returns": True},
        content=b64(b"a"),
    )
    k1 = log.keys[1]
    s2 = sc.snapshot("S2", text_state("Hello!"), key=k1, log_head=log.head(3), epoch=1, parent=s1)
    sc.receive(snapshot_frame(s2), {"reset": b64(s2.state)}, text="Hello!", activeSnapshot=s2.id)
    sc.step(
        "sendEphemeral",
        {"sent": [sent_in(1, sent_ephemeral("message", b"b"))], "returns": True},
        content=b64(b"b"),
    )
    head = log.head(3)
    sc.receive(
        sc.ephemeral("initialize", signer="B", key=k1, log_head=head),
        sent=[sent_in(1, sent_ephemeral("proofAndRequestProof"), logHead=head)],
        ephemeralErrors=[],
    )
    sc.receive(
        sc.ephemeral("initialize", signer="C", key=KEY, log_head=head),
        sent=[sent_in(0, sent_ephemeral("proofAndRequestProof"), logHead=head)],
        ephemeralErrors=[],
    )
    sc.receive(
        sc.ephemeral("initialize", signer="B", key=WRONG_KEY, log_head=head),
        sent=[],
        ephemeralErrors=["SECSYNC_ERROR_301"],
    )
    return sc


# ============================================================ link joins (issue 12)

#: ``now`` of the link-join scenarios (ms): after every entry of their log
LINK_NOW = T0 + 60_000
LINK_EXPIRES = T0 + 3_600_000


def link_secret(label: str) -> bytes:
    return hashlib.blake2b(f"link-secret/{label}".encode(), digest_size=32).digest()


LINK_KP = {n: link_keypair(link_secret(n)) for n in ("V", "E", "R", "X", "U")}


def link_lockbox(doc_id: str, epoch: int, key: bytes, link: str, sealed_to: str | None = None):
    """Link ``link``'s lockbox of ``key`` (``sealed_to``: a person's key, so it does not open)."""
    recipient = LINK_KP[link].public_key_b64
    to = PUB[sealed_to] if sealed_to else recipient
    box = det_seal(key, to, f"{doc_id}/{epoch}/link-{link}/{sealed_to}")
    return {"docId": doc_id, "epoch": epoch, "recipient": recipient, "box": box}


class LinkLog(EpochLog):
    """B (owner) adds A (editor), rotates (epoch 1), adds link V (viewer), E (editor, expires
    an hour after T0), R (viewer) and removes R."""

    def __init__(self, label: str = "links"):
        super().__init__(label)
        self.append("B", "add-member", "A", "editor")
        self.rotate()
        self.add_link("V", "viewer", "viewers")
        self.add_link("E", "editor", "editors", expires_at=LINK_EXPIRES)
        self.add_link("R", "viewer", "revoked")
        self.sign("remove-link", {"target": LINK_KP["R"].public_key_b64})

    def sign(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        at = T0 + 1000 * len(self.entries)
        entry, state = next_entry(self.states[-1], SIGNERS["B"], kind, fields, at=at)
        self.entries.append(entry.to_json())
        self.states.append(state)
        return entry.to_json()

    def add_link(self, link: str, role: str, label: str, expires_at: int | None = None) -> dict:
        fields: dict[str, Any] = {"target": LINK_KP[link].public_key_b64, "role": role}
        fields["label"] = label
        if expires_at is not None:
            fields["expiresAt"] = expires_at
        return self.sign("add-link", fields)


class LinkJoinScenario:
    """A ``"kind": "link-join"`` scenario: the link connection's document frame in, the plan
    (``plan_join`` / ``planJoin``) out — see README.md, "Joining through a link"."""

    def __init__(self, name, description, covers, log: LinkLog, link: str, joiner: str = "C"):
        self.name, self.description, self.covers = name, description, covers
        self.log, self.link, self.joiner = log, link, joiner
        self.doc_id = log.doc_id
        self.now = LINK_NOW
        self.member_name: str | None = None
        self.frame: dict[str, Any] = {
            "type": "document",
            "log": list(log.entries),
            "logFrom": 0,
            "lockboxes": [link_lockbox(log.doc_id, 1, log.keys[1], link)],
            "link": True,
            "updates": [],
        }
        self.expect: dict[str, Any] = {}
        self.race: dict[str, Any] | None = None

    def joins(self, role: str, state=None, now: int | None = None) -> dict[str, Any]:
        """The expected plan: the add-member of the joiner signed by the link, ``at`` = now."""
        state = state or self.log.states[-1]
        entry, _ = join_via_link(
            state, LINK_KP[self.link], PUB[self.joiner], name=self.member_name, at=now or self.now
        )
        return {
            "joined": True,
            "role": role,
            "logHead": {"seq": state.head.seq, "hash": state.head.hash},
            "keyringEpochs": [1],
            "entry": entry.to_json(),
            "lockbox": {"epoch": 1, "recipient": PUB[self.joiner], "key": b64(self.log.keys[1])},
        }

    def fails(self, code: int, field: str | None) -> None:
        self.expect = {"error": f"SECSYNC_ERROR_{code}", "field": field}

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": "link-join",
            "name": self.name,
            "description": self.description,
            "covers": self.covers,
            "docId": self.doc_id,
            "now": self.now,
            "link": {"secret": b64(link_secret(self.link))},
            "joiner": {"seed": SEEDS[self.joiner].hex(), "pubKey": PUB[self.joiner]},
            "memberName": self.member_name,
            "frame": self.frame,
            "expect": self.expect,
        }
        if self.race is not None:
            out["race"] = self.race
        return out


@scenario
def link_join_viewer() -> LinkJoinScenario:
    log = LinkLog()
    sc = LinkJoinScenario(
        "link-join-viewer",
        "C opens viewer link V: the document frame (link: true, the whole log, V's lockbox of"
        " epoch 1) is verified; C's plan is an add-member of C signed by V with V's role (viewer),"
        " at = now, and a lockbox of the epoch-1 key sealed to C.",
        ["rule:link-join", "rule:link-join-role"],
        log,
        "V",
    )
    sc.expect = sc.joins("viewer")
    return sc


@scenario
def link_join_editor() -> LinkJoinScenario:
    log = LinkLog()
    sc = LinkJoinScenario(
        "link-join-editor",
        "C opens editor link E (expires in an hour) with a display name: add-member role editor,"
        " name Carol, signed by E; our lockbox of the epoch-1 key.",
        ["rule:link-join", "rule:link-join-role"],
        log,
        "E",
    )
    sc.member_name = "Carol"
    sc.expect = sc.joins("editor")
    return sc


@scenario
def link_join_rebuilt_after_707() -> LinkJoinScenario:
    log = LinkLog()
    sc = LinkJoinScenario(
        "link-join-rebuilt-after-707",
        "C's add-member lost a race (log-entry-failed 707 with the relay's log: B added link X"
        " meanwhile): the log is extended with the newer entry and the join is planned again on"
        " the new head (prev = X's entry, seq + 1), with the keys the link's lockbox gave.",
        ["rule:link-join", "rule:link-join-rebuild"],
        log,
        "V",
    )
    sc.expect = sc.joins("viewer")
    log.add_link("X", "viewer", "another")
    sc.race = {"log": list(log.entries), "now": LINK_NOW + 1000, "expect": {}}
    sc.race["expect"] = sc.joins("viewer", log.states[-1], LINK_NOW + 1000)
    return sc


@scenario
def link_join_already_member() -> LinkJoinScenario:
    log = LinkLog()
    sc = LinkJoinScenario(
        "link-join-already-member",
        "A, already an editor, opens viewer link V: nothing is appended and no lockbox sent; the"
        " role stays editor (its own lockboxes come when it connects as itself).",
        ["rule:link-join-already-member"],
        log,
        "V",
        joiner="A",
    )
    head = log.states[-1].head
    sc.expect = {
        "joined": False,
        "role": "editor",
        "logHead": {"seq": head.seq, "hash": head.hash},
        "keyringEpochs": [1],
        "entry": None,
        "lockbox": None,
    }
    return sc


def _link_join_error(name, description, code, field, link="V", change=None, doc_id=None):
    def build() -> LinkJoinScenario:
        log = LinkLog()
        sc = LinkJoinScenario(
            name, description, [f"SECSYNC_ERROR_{code}", "rule:link-join"], log, link
        )
        if doc_id is not None:
            sc.doc_id = doc_id
        if change is not None:
            change(sc, log)
        sc.fails(code, field)
        return sc

    build.__name__ = name.replace("-", "_")
    scenario(build)


def _later(sc: LinkJoinScenario, log: LinkLog) -> None:
    sc.now = LINK_EXPIRES + 1


def _boxes(*boxes: Callable[[LinkLog], dict[str, Any]]):
    def change(sc: LinkJoinScenario, log: LinkLog) -> None:
        sc.frame["lockboxes"] = [b(log) for b in boxes]

    return change


def _frame(**fields: Any):
    def change(sc: LinkJoinScenario, log: LinkLog) -> None:
        for k, v in fields.items():
            if v is None:
                sc.frame.pop(k, None)
            else:
                sc.frame[k] = v(sc) if callable(v) else v

    return change


def _a_snapshot(sc: LinkJoinScenario) -> dict[str, Any]:
    maker = Scenario("link-join-snapshot", "", [])
    maker.doc_id = sc.doc_id
    return maker.snapshot("S1", text_state("Hello"), log_head=sc.log.head(), epoch=1).wire()


_link_join_error(
    "link-join-754-expired",
    "C opens editor link E after its expiresAt (now = expiry + 1 ms): 754, nothing to send.",
    754,
    "signer",
    "E",
    _later,
)
_link_join_error(
    "link-join-755-revoked",
    "C opens link R, removed by B (remove-link): 755, nothing to send.",
    755,
    "signer",
    "R",
    _boxes(lambda log: link_lockbox(log.doc_id, 1, log.keys[1], "R")),
)
_link_join_error(
    "link-join-711-not-a-link",
    "C opens a link U that is not in the document's log: 711.",
    711,
    "signer",
    "U",
)
_link_join_error(
    "link-join-761-does-not-open",
    "V's lockbox is sealed to A's key, not V's: it does not open (761), and no other lockbox"
    " gives the current epoch's key: the join fails with 761.",
    761,
    "box",
    change=_boxes(lambda log: link_lockbox(log.doc_id, 1, log.keys[1], "V", sealed_to="A")),
)
_link_join_error(
    "link-join-762-key-check",
    "V's lockbox opens but holds another key than epoch 1's keyCheck commits to: 762.",
    762,
    "keyCheck",
    change=_boxes(lambda log: link_lockbox(log.doc_id, 1, WRONG_KEY, "V")),
)
_link_join_error(
    "link-join-763-other-document",
    "V's lockbox names another document: 763 (field docId).",
    763,
    "docId",
    change=_boxes(lambda log: link_lockbox(LinkLog("other").doc_id, 1, log.keys[1], "V")),
)
_link_join_error(
    "link-join-763-other-recipient",
    "The frame holds A's lockbox instead of V's: 763 (field recipient).",
    763,
    "recipient",
    change=_boxes(lambda log: log.lockbox(1, "A")),
)
_link_join_error(
    "link-join-766-no-lockbox",
    "The frame holds no lockbox of V: no key of the current epoch, 766.",
    766,
    "epoch",
    change=_frame(lockboxes=None),
)
_link_join_error(
    "link-join-701-no-link-flag",
    "A document frame without link: true (the relay did not treat the connection as the"
    " link's): 701 naming link, nothing sent.",
    701,
    "link",
    change=_frame(link=None),
)
_link_join_error(
    "link-join-701-snapshot",
    "A link connection's document frame carrying a snapshot: 701 naming snapshot.",
    701,
    "snapshot",
    change=_frame(snapshot=_a_snapshot),
)
_link_join_error(
    "link-join-706-root",
    "The frame's log is another document's (its root does not bind this docId): 706.",
    706,
    "root",
    doc_id=LinkLog("another-document").doc_id,
)


# ===================================================================== output


def build_all() -> dict[str, str]:
    out: dict[str, str] = {}
    for make in SCENARIOS:
        sc = make()
        assert sc.name not in out, sc.name
        out[f"{sc.name}.json"] = json.dumps(sc.to_json(), indent=1, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the files, write nothing")
    args = ap.parse_args(argv)
    files = build_all()
    existing = {p.name for p in HERE.glob("*.json")}
    if args.check:
        stale = sorted(
            n
            for n, text in files.items()
            if not (HERE / n).exists() or (HERE / n).read_text() != text
        )
        extra = sorted(existing - set(files))
        if stale or extra:
            print("out of date:", *stale, *(f"{n} (not made any more)" for n in extra))
            return 1
        print(f"{len(files)} scenarios up to date")
        return 0
    for name in existing - set(files):
        (HERE / name).unlink()
    for name, text in files.items():
        (HERE / name).write_text(text)
    print(f"wrote {len(files)} scenarios to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
