"""A short tour of the protocol: keys, a snapshot, two updates, tamper detection."""

from __future__ import annotations

import json

from . import protocol as p


def _show(title: str, message) -> None:
    wire = message.to_json()
    short = {**wire, "ciphertext": wire["ciphertext"][:40] + "…"}
    print(f"\n── {title} ({len(json.dumps(wire))} bytes on the wire)")
    print(json.dumps(short, indent=2))


def main() -> int:
    key = p.generate_key()
    alice = p.SigningKeyPair.generate()
    doc_id = p.generate_id()
    print("document key (shared out of band, never sent):", p.b64encode(key))
    print("Alice's signing public key:", alice.public_key_b64)
    print("document id:", doc_id)

    snapshot = p.create_initial_snapshot(
        b"hello from Alice",
        {"docId": doc_id, "pubKey": alice.public_key_b64, "snapshotId": p.generate_id()},
        key,
        alice,
    )
    _show("snapshot", snapshot)
    ref = {"docId": doc_id, "pubKey": alice.public_key_b64}
    ref["refSnapshotId"] = snapshot.public_data.snapshot_id
    updates = [
        p.create_update(text, ref, key, alice, clock) for clock, text in enumerate([b" +1", b" +2"])
    ]
    for i, u in enumerate(updates):
        _show(f"update clock {i}", u)

    print("\n── a collaborator with the key verifies and decrypts:")
    text = p.verify_and_decrypt_snapshot(snapshot, key, doc_id)
    clock = -1
    for u in updates:
        text += p.verify_and_decrypt_update(
            u, key, snapshot.public_data.snapshot_id, clock, current_doc_id=doc_id
        )
        clock = u.public_data.clock
    print("  ", text.decode())

    print("\n── tampering is detected:")
    wire = updates[1].to_json()
    raw = bytearray(p.b64decode(wire["ciphertext"]))
    raw[40] ^= 1
    forged = p.Update.from_json({**wire, "ciphertext": p.b64encode(bytes(raw))})
    attempts = [
        (
            "flipped ciphertext bit",
            lambda: p.verify_and_decrypt_update(
                forged, key, snapshot.public_data.snapshot_id, 0, current_doc_id=doc_id
            ),
        ),
        (
            "replayed update (clock 0 again)",
            lambda: p.verify_and_decrypt_update(
                updates[0], key, snapshot.public_data.snapshot_id, 1, current_doc_id=doc_id
            ),
        ),
        (
            "wrong document key",
            lambda: p.verify_and_decrypt_snapshot(snapshot, p.generate_key(), doc_id),
        ),
    ]
    for label, attempt in attempts:
        try:
            attempt()
            print(f"   {label}: NOT detected")
            return 1
        except p.ProtocolError as exc:
            print(f"   {label}: rejected with {exc.code}")
    return 0
