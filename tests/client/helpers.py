"""Message factories and a plain-text document adapter for engine tests."""

from __future__ import annotations

import json
from typing import Any

from secsync_jupyter.client.engine import SyncEngine
from secsync_jupyter.protocol import (
    SigningKeyPair,
    Snapshot,
    create_initial_snapshot,
    create_snapshot,
    create_update,
    generate_id,
    snapshot_ciphertext_hash,
)

KEY = bytes.fromhex("724b092810ec86d7e35c9d067702b31ef90bc43a7b598626749914d6a3e033ed")
WRONG_KEY = bytes.fromhex("994b092810ec86d7e35c9d067702b31ef90bc43a7b598626749914d6a3e033ed")
DOC = "6e46c006-5541-11ec-bf63-0242ac130002"
A = SigningKeyPair.from_seed(bytes(range(32)))
B = SigningKeyPair.from_seed(bytes(range(1, 33)))
C = SigningKeyPair.from_seed(bytes(range(2, 34)))


class TextAdapter:
    """Snapshot content = the whole text; a change = a string appended."""

    def __init__(self):
        self.value = ""
        self.ephemeral: list[tuple[bytes, str]] = []
        self.fail: set[str] = set()

    def apply_snapshot(self, content: bytes) -> None:
        if "apply_snapshot" in self.fail:
            raise RuntimeError("apply_snapshot failed")
        self.value = content.decode()

    def apply_changes(self, changes: list[str]) -> None:
        if "apply_changes" in self.fail:
            raise RuntimeError("apply_changes failed")
        self.value += "".join(changes)

    def serialize_changes(self, changes: list[str]) -> bytes:
        if "serialize" in self.fail:
            raise RuntimeError("serialize failed")
        return json.dumps(changes).encode()

    def deserialize_changes(self, data: bytes) -> list[str]:
        if "deserialize" in self.fail:
            raise RuntimeError("deserialize failed")
        return json.loads(data)

    def snapshot_content(self) -> bytes:
        if "snapshot_content" in self.fail:
            raise RuntimeError("snapshot_content failed")
        return self.value.encode()

    def apply_ephemeral(self, content: bytes, author: str) -> None:
        self.ephemeral.append((content, author))


def snap(
    content: str = "Hello World",
    *,
    key: bytes = KEY,
    signer: SigningKeyPair = A,
    doc_id: str = DOC,
    parent: Snapshot | None = None,
    clocks: dict[str, int] | None = None,
    parent_hash: str | None = None,
    snapshot_id: str | None = None,
) -> Snapshot:
    pd = {
        "docId": doc_id,
        "pubKey": signer.public_key_b64,
        "snapshotId": snapshot_id or generate_id(),
    }
    if parent is None:
        return create_initial_snapshot(content.encode(), pd, key, signer)
    pd["parentSnapshotId"] = parent.public_data.snapshot_id
    pd["parentSnapshotUpdateClocks"] = clocks or {}
    return create_snapshot(
        content.encode(),
        pd,
        key,
        signer,
        parent_hash if parent_hash is not None else snapshot_ciphertext_hash(parent),
        parent.public_data.parent_snapshot_proof,
    )


def upd(
    changes: list[str] | None = None,
    *,
    ref: Snapshot,
    clock: int = 0,
    key: bytes = KEY,
    signer: SigningKeyPair = A,
    doc_id: str = DOC,
):
    pd = {
        "docId": doc_id,
        "pubKey": signer.public_key_b64,
        "refSnapshotId": ref.public_data.snapshot_id,
    }
    return create_update(json.dumps(changes or ["u"]).encode(), pd, key, signer, clock)


def wire(message: Any, **extra: Any) -> dict[str, Any]:
    obj = message.to_json() if hasattr(message, "to_json") else dict(message)
    obj.update(extra)
    return obj


def document(snapshot=None, updates=(), chain=None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "document", "updates": [wire(u) for u in updates]}
    if snapshot is not None:
        frame["snapshot"] = wire(snapshot)
    if chain is not None:
        frame["snapshotProofChain"] = chain
    return frame


def engine(
    signer: SigningKeyPair = A, key: Any = KEY, adapter: TextAdapter | None = None, **kw: Any
) -> tuple[SyncEngine, TextAdapter]:
    adapter = adapter or TextAdapter()
    e = SyncEngine(DOC, key, adapter, signer, **kw)
    e.connecting()
    e.connected()
    return e, adapter


def feed(e: SyncEngine, *frames: Any) -> None:
    for frame in frames:
        e.receive(json.dumps(frame) if isinstance(frame, dict) else frame)


def codes(e: SyncEngine) -> list[str | None]:
    return [err.code for err in e.errors]


def sent(e: SyncEngine) -> list[dict[str, Any]]:
    return [json.loads(f) for f in e.take_outbox()]
