"""Interop between the TypeScript library (labextension/src/secsync) and the Python core.

A node process (``labextension/test/interop/rpc.ts`` under vite-node) creates and verifies
messages with the TypeScript code; this module verifies them with
``secsync_jupyter.protocol`` and hands Python-made messages to node. Both directions are
checked for snapshots (with parent proofs and chains), updates, ephemeral messages (a full
session handshake between a Python and a JS session), the Yjs v1 content format and the
awareness state format.

Needs node >= 20 and ``labextension/node_modules`` (installed here with ``npm ci`` when
missing).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from secsync_jupyter.client.awareness import AwarenessBridge
from secsync_jupyter.client.ydoc import deserialize_updates, serialize_updates
from secsync_jupyter.protocol import (
    EphemeralMessage,
    EphemeralSession,
    ProtocolError,
    SigningKeyPair,
    Snapshot,
    SnapshotProofChainEntry,
    Update,
    b64decode,
    b64encode,
    canonicalize,
    create_ephemeral_message,
    create_initial_snapshot,
    create_snapshot,
    create_update,
    generate_id,
    generate_key,
    hash_b64,
    is_valid_ancestor_snapshot,
    snapshot_proof_entry,
    verify_and_decrypt_snapshot,
    verify_and_decrypt_update,
)

LABEXT = Path(__file__).resolve().parents[1] / "labextension"
VITE_NODE = LABEXT / "node_modules" / ".bin" / "vite-node"
TIMEOUT = 60


class JsRpc:
    """JSON-lines client of labextension/test/interop/rpc.ts."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(VITE_NODE), "test/interop/rpc.ts"],
            cwd=LABEXT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        hello = json.loads(self._next_line())
        assert hello == {"ok": True, "ready": True}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _next_line(self) -> str:
        line = self.lines.get(timeout=TIMEOUT)
        if not line:
            raise RuntimeError(f"node rpc exited with {self.proc.wait(5)}")
        return line

    def __call__(self, op: str, **kwargs: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self._next_line())
        if not answer.pop("ok"):
            raise RuntimeError(f"js {op} failed: {answer}")
        return answer

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def js():
    assert shutil.which("node"), "node (>= 20) is required for the JS interop tests"
    if not VITE_NODE.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=LABEXT, check=True
        )
    rpc = JsRpc()
    yield rpc
    rpc.close()


@pytest.fixture
def world():
    key = generate_key()
    seeds = {name: generate_key() for name in ("A", "B")}
    pairs = {name: SigningKeyPair.from_seed(seed) for name, seed in seeds.items()}
    return {
        "key": key,
        "key_b64": b64encode(key),
        "doc_id": generate_id(),
        "seeds": {name: b64encode(seed) for name, seed in seeds.items()},
        "pairs": pairs,
        "pub": {name: kp.public_key_b64 for name, kp in pairs.items()},
    }


def code_of(fn, *args, **kwargs) -> str | None:
    try:
        fn(*args, **kwargs)
    except ProtocolError as exc:
        return exc.code
    return None


def test_keys_hash_canonical_fingerprint_agree(js, world):
    answer = js("keypair", seed=world["seeds"]["A"])
    kp = world["pairs"]["A"]
    assert answer["publicKey"] == kp.public_key_b64
    assert b64decode(answer["privateKey"]) == kp.private_key
    for text in ["", "abc", "héllo wörld 😀 日本語", "a\u2028b"]:
        assert js("hash", text=text)["hash"] == hash_b64(text)
    raw = bytes(range(256))
    assert js("hash", bytes=b64encode(raw))["hash"] == hash_b64(raw)
    value = {"é": 1, "e": [True, None, {"z": "😀", "a": -5}], "\uffff": "x", "😀": 0, "Z": "\n"}
    assert js("canonicalize", value=value)["canonical"].encode() == canonicalize(value)
    from secsync_jupyter.client.awareness import fingerprint

    assert js("fingerprint", pubKey=kp.public_key_b64)["fingerprint"] == fingerprint(
        kp.public_key_b64
    )


def test_same_inputs_same_bytes(js, world):
    """With the same nonce both implementations produce identical messages."""
    key, doc_id, kp = world["key"], world["doc_id"], world["pairs"]["A"]
    nonce = bytes(range(24))
    pd = {
        "docId": doc_id,
        "pubKey": kp.public_key_b64,
        "snapshotId": generate_id(),
        "parentSnapshotId": "",
        "parentSnapshotUpdateClocks": {},
        "title": "an authenticated application field ✓",
    }
    content = "snapshot ✓".encode()
    py = create_initial_snapshot(content, pd, key, kp, nonce=nonce).to_json()
    j = js(
        "create_snapshot",
        content=b64encode(content),
        publicData=pd,
        key=world["key_b64"],
        seed=world["seeds"]["A"],
        nonce=b64encode(nonce),
    )["message"]
    assert j == py

    upd_pd = {"docId": doc_id, "pubKey": kp.public_key_b64, "refSnapshotId": pd["snapshotId"]}
    py_u = create_update(b'["AAA"]', upd_pd, key, kp, 7, nonce=nonce).to_json()
    j_u = js(
        "create_update",
        content=b64encode(b'["AAA"]'),
        publicData=upd_pd,
        key=world["key_b64"],
        seed=world["seeds"]["A"],
        clock=7,
        nonce=b64encode(nonce),
    )["message"]
    assert j_u == py_u

    session_id = generate_id()
    eph_pd = {"docId": doc_id, "pubKey": kp.public_key_b64}
    for kind in ("initialize", "proofAndRequestProof", "proof", "message"):
        py_e = create_ephemeral_message(
            b"\x00\x01\xff", kind, eph_pd, key, kp, session_id, 4294967295, nonce=nonce
        ).to_json()
        j_e = js(
            "create_ephemeral",
            content=b64encode(b"\x00\x01\xff"),
            type=kind,
            publicData=eph_pd,
            key=world["key_b64"],
            seed=world["seeds"]["A"],
            sessionId=session_id,
            counter=4294967295,
            nonce=b64encode(nonce),
        )["message"]
        assert j_e == py_e, kind


def test_js_creates_python_verifies(js, world):
    key, doc_id = world["key"], world["doc_id"]
    pub_a, pub_b = world["pub"]["A"], world["pub"]["B"]
    s1_id, s2_id = generate_id(), generate_id()

    s1_json = js(
        "create_snapshot",
        content=b64encode(b"first state"),
        publicData={
            "docId": doc_id,
            "pubKey": pub_a,
            "snapshotId": s1_id,
            "parentSnapshotId": "",
            "parentSnapshotUpdateClocks": {},
        },
        key=world["key_b64"],
        seed=world["seeds"]["A"],
    )["message"]
    s1 = Snapshot.from_json(s1_json)
    assert verify_and_decrypt_snapshot(s1, key, doc_id) == b"first state"

    updates = []
    for clock in range(3):
        u_json = js(
            "create_update",
            content=b64encode(f'["u{clock}"]'.encode()),
            publicData={"docId": doc_id, "pubKey": pub_b, "refSnapshotId": s1_id},
            key=world["key_b64"],
            seed=world["seeds"]["B"],
            clock=clock,
        )["message"]
        update = Update.from_json(u_json)
        content = verify_and_decrypt_update(update, key, s1_id, clock - 1, current_doc_id=doc_id)
        assert content == f'["u{clock}"]'.encode()
        updates.append(update)
    # the Python verifier's rules apply to JS-made updates
    assert code_of(verify_and_decrypt_update, updates[1], key, s1_id, 1, current_doc_id=doc_id) == (
        "SECSYNC_ERROR_214"
    )
    assert code_of(verify_and_decrypt_update, updates[2], key, s1_id, 0, current_doc_id=doc_id) == (
        "SECSYNC_ERROR_202"
    )
    assert code_of(
        verify_and_decrypt_update, updates[0], key, s1_id, -1, current_doc_id=generate_id()
    ) == ("SECSYNC_ERROR_213")
    assert code_of(
        verify_and_decrypt_update, updates[0], generate_key(), s1_id, -1, current_doc_id=doc_id
    ) == ("SECSYNC_ERROR_201")

    s1_entry = snapshot_proof_entry(s1)
    s2_json = js(
        "create_snapshot",
        content=b64encode(b"second state"),
        publicData={
            "docId": doc_id,
            "pubKey": pub_a,
            "snapshotId": s2_id,
            "parentSnapshotId": s1_id,
            "parentSnapshotUpdateClocks": {pub_b: 2},
        },
        key=world["key_b64"],
        seed=world["seeds"]["A"],
        parentSnapshotCiphertextHash=s1_entry.snapshot_ciphertext_hash,
        grandParentSnapshotProof=s1_entry.parent_snapshot_proof,
    )["message"]
    s2 = Snapshot.from_json(s2_json)
    # B verifies A's child snapshot: parent proof and B's own last clock (2)
    assert (
        verify_and_decrypt_snapshot(
            s2,
            key,
            doc_id,
            current_client_public_key=pub_b,
            parent_snapshot_proof_info=s1_entry,
            parent_snapshot_update_clock=2,
        )
        == b"second state"
    )
    assert (
        code_of(
            verify_and_decrypt_snapshot,
            s2,
            key,
            doc_id,
            current_client_public_key=pub_b,
            parent_snapshot_proof_info=s1_entry,
            parent_snapshot_update_clock=3,
        )
        == "SECSYNC_ERROR_102"
    )
    assert is_valid_ancestor_snapshot(s1_entry, [snapshot_proof_entry(s2)], s2)
    assert code_of(verify_and_decrypt_snapshot, s2, key, generate_id()) == "SECSYNC_ERROR_113"
    assert code_of(verify_and_decrypt_snapshot, s2, generate_key(), doc_id) == "SECSYNC_ERROR_101"
    tampered = dict(s2_json, publicData=dict(s2_json["publicData"], snapshotId=generate_id()))
    assert code_of(verify_and_decrypt_snapshot, Snapshot.from_json(tampered), key, doc_id) == (
        "SECSYNC_ERROR_111"
    )


def test_python_creates_js_verifies(js, world):
    key, doc_id = world["key"], world["doc_id"]
    kp_a, kp_b = world["pairs"]["A"], world["pairs"]["B"]
    s1_id, s2_id = generate_id(), generate_id()
    s1 = create_initial_snapshot(
        b"py state",
        {"docId": doc_id, "pubKey": kp_a.public_key_b64, "snapshotId": s1_id, "extra": [1, "x"]},
        key,
        kp_a,
    )
    res = js("verify_snapshot", message=s1.to_json(), key=world["key_b64"], docId=doc_id)
    assert res == {"error": None, "content": b64encode(b"py state")}
    assert js("verify_snapshot", message=s1.to_json(), key=world["key_b64"], docId=generate_id())[
        "error"
    ] == ("SECSYNC_ERROR_113")
    assert js("verify_snapshot", message=s1.to_json(), key=b64encode(generate_key()), docId=doc_id)[
        "error"
    ] == ("SECSYNC_ERROR_101")

    for clock in range(2):
        update = create_update(
            f"py-{clock}".encode(),
            {"docId": doc_id, "pubKey": kp_b.public_key_b64, "refSnapshotId": s1_id},
            key,
            kp_b,
            clock,
        )
        args = {"message": update.to_json(), "key": world["key_b64"], "activeSnapshotId": s1_id}
        ok = js("verify_update", docId=doc_id, currentClock=clock - 1, **args)
        assert ok == {"error": None, "content": b64encode(f"py-{clock}".encode()), "clock": clock}
        assert js("verify_update", docId=doc_id, currentClock=clock, **args)["error"] == (
            "SECSYNC_ERROR_214"
        )
        # stricter than the reference: an update for another document is refused
        assert js("verify_update", docId=generate_id(), currentClock=clock - 1, **args)[
            "error"
        ] == ("SECSYNC_ERROR_213")

    s1_entry = snapshot_proof_entry(s1)
    s2 = create_snapshot(
        b"py state 2",
        {
            "docId": doc_id,
            "pubKey": kp_b.public_key_b64,
            "snapshotId": s2_id,
            "parentSnapshotId": s1_id,
            "parentSnapshotUpdateClocks": {kp_b.public_key_b64: 1},
        },
        key,
        kp_b,
        s1_entry.snapshot_ciphertext_hash,
        s1_entry.parent_snapshot_proof,
    )
    verify = {
        "message": s2.to_json(),
        "key": world["key_b64"],
        "docId": doc_id,
        "ownPubKey": kp_b.public_key_b64,
        "parentSnapshotProofInfo": s1_entry.to_json(),
    }
    assert js("verify_snapshot", parentSnapshotUpdateClock=1, **verify) == {
        "error": None,
        "content": b64encode(b"py state 2"),
    }
    assert js("verify_snapshot", parentSnapshotUpdateClock=0, **verify)["error"] == (
        "SECSYNC_ERROR_102"
    )
    wrong_parent = SnapshotProofChainEntry(s1_id, hash_b64("other"), s1_entry.parent_snapshot_proof)
    verify["parentSnapshotProofInfo"] = wrong_parent.to_json()
    assert js("verify_snapshot", **verify)["error"] == "SECSYNC_ERROR_112"
    chain = [snapshot_proof_entry(s2).to_json()]
    assert js("is_valid_ancestor", known=s1_entry.to_json(), chain=chain, current=s2.to_json())[
        "valid"
    ]
    assert not js("is_valid_ancestor", known=s1_entry.to_json(), chain=[], current=s2.to_json())[
        "valid"
    ]


def test_ephemeral_handshake_between_python_and_js(js, world):
    key, doc_id = world["key"], world["doc_id"]
    py = EphemeralSession(doc_id, key, world["pairs"]["B"])
    js_session = js("session_new", docId=doc_id, key=world["key_b64"], seed=world["seeds"]["A"])
    sid = js_session["sessionId"]
    pub_a = world["pub"]["A"]

    def js_receive(message: EphemeralMessage) -> dict[str, Any]:
        return js("session_receive", sessionId=sid, message=message.to_json())

    # JS initialize -> Python answers proofAndRequestProof -> JS answers proof -> verified
    init = EphemeralMessage.from_json(js("session_initialize", sessionId=sid)["message"])
    got = py.receive(init)
    assert got.content is None and got.reply is not None
    answer = js_receive(got.reply)
    assert answer["error"] is None
    assert answer["validSessions"][py.keypair.public_key_b64]["sessionId"] == py.id
    assert answer["reply"] is not None
    got = py.receive(EphemeralMessage.from_json(answer["reply"]))
    assert got.reply is None and got.error is None
    assert py.valid_sessions[pub_a]["sessionId"] == sid

    # JS message -> Python delivers it, once
    m1 = EphemeralMessage.from_json(
        js("session_message", sessionId=sid, content=b64encode(b"cursor 1"))["message"]
    )
    assert py.receive(m1).content == b"cursor 1"
    with pytest.raises(ProtocolError) as exc:
        py.receive(m1)
    assert exc.value.code == "SECSYNC_ERROR_303"

    # Python message -> JS delivers it, once
    p1 = py.create(b"cursor from python")
    assert js_receive(p1)["content"] == b64encode(b"cursor from python")
    assert js_receive(p1)["error"] == "SECSYNC_ERROR_303"
    p2 = py.create(b"second")
    assert js_receive(p2)["content"] == b64encode(b"second")

    # a fresh JS session: the Python session asks it for a proof first (302)
    sid2 = js("session_new", docId=doc_id, key=world["key_b64"], seed=world["seeds"]["A"])[
        "sessionId"
    ]
    early = EphemeralMessage.from_json(
        js("session_message", sessionId=sid2, content=b64encode(b"too early"))["message"]
    )
    got = py.receive(early)
    assert got.content is None and got.error is not None and got.error.code == "SECSYNC_ERROR_302"


def test_replayed_proof_does_not_reset_js_counter(js, world):
    key, doc_id = world["key"], world["doc_id"]
    py = EphemeralSession(doc_id, key, world["pairs"]["B"])
    sid = js("session_new", docId=doc_id, key=world["key_b64"], seed=world["seeds"]["A"])[
        "sessionId"
    ]

    def js_receive(message: EphemeralMessage) -> dict[str, Any]:
        return js("session_receive", sessionId=sid, message=message.to_json())

    # Python starts: initialize -> JS proofAndRequestProof -> Python proof -> JS verified
    first = js_receive(py.initialize())
    assert first["reply"] is not None
    got = py.receive(EphemeralMessage.from_json(first["reply"]))
    assert got.reply is not None
    proof = got.reply
    assert js_receive(proof)["error"] is None
    messages = [py.create(f"m{i}".encode()) for i in range(3)]
    for i, m in enumerate(messages):
        assert js_receive(m)["content"] == b64encode(f"m{i}".encode())
    # replay the proof, then the messages: nothing is delivered again
    assert js_receive(proof)["error"] == "SECSYNC_ERROR_303"
    for m in messages:
        again = js_receive(m)
        assert again["content"] is None
        assert again["error"] == "SECSYNC_ERROR_303"


def test_ephemeral_for_another_document(js, world):
    key = world["key"]
    other = EphemeralSession(generate_id(), key, world["pairs"]["B"])
    sid = js("session_new", docId=world["doc_id"], key=world["key_b64"], seed=world["seeds"]["A"])[
        "sessionId"
    ]
    message = other.initialize().to_json()
    dropped = js("session_receive", sessionId=sid, message=message)
    assert dropped["error"] is None and dropped["reply"] is None and dropped["content"] is None
    strict = js("session_receive", sessionId=sid, message=message, strictDocId=True)
    assert strict["error"] == "SECSYNC_ERROR_306"


def test_yjs_v1_content_both_ways(js):
    made = js("yjs_make", name="content", text="from js ✓ ", more="and more")
    doc = Doc()
    text = doc.get("content", type=Text)
    doc.apply_update(b64decode(made["snapshotContent"]))
    assert str(text) == "from js ✓ "
    for change in deserialize_updates(b64decode(made["updateContent"])):
        doc.apply_update(change)
    assert str(text) == "from js ✓ and more"

    py_doc = Doc()
    py_text = py_doc.get("content", type=Text)
    py_text += "from python ✓ "
    snapshot_content = py_doc.get_update()
    state = py_doc.get_state()
    py_text += "and an update"
    update_content = serialize_updates([py_doc.get_update(state)])
    read = js(
        "yjs_read",
        name="content",
        snapshotContent=b64encode(snapshot_content),
        updateContents=[b64encode(update_content)],
    )
    assert read["text"] == "from python ✓ and an update"


def test_awareness_state_format_both_ways(js, world):
    pub_a, pub_b = world["pub"]["A"], world["pub"]["B"]
    # the browser client's awareness update is accepted by the Python client for its signer ...
    local = js("awareness_local", pubKey=pub_a, state={"user": {"name": "Ada"}})
    bridge = AwarenessBridge(Doc(), pub_b, send=lambda _b: None)
    bridge.apply(b64decode(local["content"]), pub_a)
    people = [c for c in bridge.collaborators() if not c.is_self]
    assert [(c.client_id, c.pub_key, c.name) for c in people] == [(local["clientId"], pub_a, "Ada")]
    # ... and dropped when signed by someone else
    other = AwarenessBridge(Doc(), pub_b, send=lambda _b: None)
    other.apply(b64decode(local["content"]), pub_b)
    assert [c for c in other.collaborators() if not c.is_self] == []
    assert other.dropped == 1

    # the Python client's state claims its key in the field the browser client reads
    bridge.set_local_state_field("user", {"name": "Bob"})
    read = js("awareness_read", content=b64encode(bridge.encode_local()))
    assert [(s["claimed"], s["state"]["user"]["name"]) for s in read["states"]] == [(pub_b, "Bob")]


def test_share_links_both_ways(js):
    from secsync_jupyter.sharelink import format_share_link, parse_share_link

    key = generate_key()
    cases = [
        format_share_link("doc_1-x", key, server_url="https://hub.example.org/user/ada/"),
        format_share_link(
            "abc", key, server_url="http://localhost:8888/", relay="ws://relay.example:9000/r"
        ),
        format_share_link("D0c", key, relay="ws://127.0.0.1:8765/prefix"),
        format_share_link("D0c", key, relay="wss://relay.example"),
    ]
    for link in cases:
        py = parse_share_link(link)
        parsed = js("sharelink_parse", link=link)
        assert parsed == {
            "docId": py.doc_id,
            "key": b64encode(key),
            "relayUrl": py.relay_url,
            "jupyterBase": py.server_url,
        }, link
        again = js(
            "sharelink_format",
            docId=parsed["docId"],
            key=parsed["key"],
            relayUrl=parsed["relayUrl"] if (py.server_url is None or py.explicit_relay) else None,
            jupyterBase=parsed["jupyterBase"],
        )["link"]
        assert again == link
        assert parse_share_link(again) == py
