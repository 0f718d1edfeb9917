"""Snapshots: create, verify-and-decrypt, parent proofs and ancestor chains."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from .crypto import (
    DOMAIN_SNAPSHOT,
    SigningKeyPair,
    decrypt_message,
    hash_b64,
    seal_message,
    verify_message,
)
from .encoding import canonicalize
from .errors import CreationError, DecryptionError, ProtocolError, SnapshotError
from .messages import Snapshot, SnapshotProofChainEntry

__all__ = [
    "create_initial_snapshot",
    "create_parent_snapshot_proof",
    "create_snapshot",
    "is_valid_ancestor_snapshot",
    "is_valid_parent_snapshot",
    "snapshot_ciphertext_hash",
    "snapshot_proof_entry",
    "verify_and_decrypt_snapshot",
    "verify_snapshot_signature",
]


def create_parent_snapshot_proof(
    grandparent_snapshot_proof: str, parent_snapshot_id: str, parent_snapshot_ciphertext_hash: str
) -> str:
    """``hash(canon({grandParentSnapshotProof, parentSnapshotCiphertextHash,
    parentSnapshotId}))``."""
    return hash_b64(
        canonicalize(
            {
                "grandParentSnapshotProof": grandparent_snapshot_proof,
                "parentSnapshotCiphertextHash": parent_snapshot_ciphertext_hash,
                "parentSnapshotId": parent_snapshot_id,
            }
        )
    )


def snapshot_ciphertext_hash(snapshot: Snapshot) -> str:
    """``hash(ciphertext)`` — over the base64 *text*, as the reference does."""
    return hash_b64(snapshot.ciphertext)


def snapshot_proof_entry(snapshot: Snapshot) -> SnapshotProofChainEntry:
    return SnapshotProofChainEntry(
        snapshot.public_data.snapshot_id,
        snapshot_ciphertext_hash(snapshot),
        snapshot.public_data.parent_snapshot_proof,
    )


def create_snapshot(
    content: bytes | str,
    public_data: Mapping[str, Any],
    key: bytes,
    keypair: SigningKeyPair,
    parent_snapshot_ciphertext_hash: str,
    grandparent_snapshot_proof: str,
    *,
    nonce: bytes | None = None,
) -> Snapshot:
    """Encrypt and sign a snapshot.

    ``public_data`` holds ``docId``, ``pubKey``, ``snapshotId``, ``parentSnapshotId``,
    ``parentSnapshotUpdateClocks`` and any extra application fields; ``parentSnapshotProof``
    is computed here. Raises :class:`CreationError` (401) on failure.
    """
    try:
        pd = dict(public_data)
        pd["parentSnapshotProof"] = create_parent_snapshot_proof(
            grandparent_snapshot_proof, pd["parentSnapshotId"], parent_snapshot_ciphertext_hash
        )
        return _seal(content, pd, key, keypair, nonce)
    except (ProtocolError, KeyError, ValueError, TypeError) as exc:
        raise CreationError(f"creating a snapshot failed: {exc}", code="SECSYNC_ERROR_401")


def create_initial_snapshot(
    content: bytes | str,
    public_data: Mapping[str, Any],
    key: bytes,
    keypair: SigningKeyPair,
    *,
    nonce: bytes | None = None,
) -> Snapshot:
    """The first snapshot of a document: parent id, hash and grandparent proof are ``""``."""
    pd = {**public_data, "parentSnapshotId": "", "parentSnapshotUpdateClocks": {}}
    return create_snapshot(content, pd, key, keypair, "", "", nonce=nonce)


def _seal(content, pd: dict, key: bytes, keypair: SigningKeyPair, nonce) -> Snapshot:
    return Snapshot.from_json(seal_message(DOMAIN_SNAPSHOT, content, pd, key, keypair, nonce))


def verify_snapshot_signature(snapshot: Snapshot) -> None:
    """Check the author's signature only (what the relay does). Raises 111."""
    if not verify_message(DOMAIN_SNAPSHOT, snapshot):
        raise SnapshotError(code="SECSYNC_ERROR_111", field="signature")


def is_valid_parent_snapshot(
    snapshot: Snapshot,
    parent_snapshot_id: str,
    parent_snapshot_ciphertext_hash: str,
    grandparent_snapshot_proof: str,
) -> bool:
    expected = create_parent_snapshot_proof(
        grandparent_snapshot_proof, parent_snapshot_id, parent_snapshot_ciphertext_hash
    )
    return (
        snapshot.public_data.parent_snapshot_proof == expected
        and snapshot.public_data.parent_snapshot_id == parent_snapshot_id
    )


def verify_and_decrypt_snapshot(
    snapshot: Snapshot,
    key: bytes,
    current_doc_id: str,
    current_client_public_key: str | None = None,
    parent_snapshot_proof_info: SnapshotProofChainEntry | None = None,
    parent_snapshot_update_clock: int | None = None,
) -> bytes:
    """Verify signature (111), docId (113), parent proof (112), own clock (102); decrypt (101).

    The checks run in the reference's order, so each failure gives the reference code.
    ``parent_snapshot_update_clock`` is the last clock this client (``current_client_public_key``)
    had on the parent; the snapshot must record exactly that.
    """
    verify_snapshot_signature(snapshot)
    pd = snapshot.public_data
    if pd.doc_id != current_doc_id:
        raise SnapshotError(code="SECSYNC_ERROR_113", field="publicData.docId")
    if parent_snapshot_proof_info is not None and not is_valid_parent_snapshot(
        snapshot,
        parent_snapshot_proof_info.snapshot_id,
        parent_snapshot_proof_info.snapshot_ciphertext_hash,
        parent_snapshot_proof_info.parent_snapshot_proof,
    ):
        raise SnapshotError(code="SECSYNC_ERROR_112", field="publicData.parentSnapshotProof")
    if parent_snapshot_update_clock is not None:
        if current_client_public_key is None:
            raise ValueError("parent_snapshot_update_clock needs current_client_public_key")
        recorded = pd.parent_snapshot_update_clocks.get(current_client_public_key)
        if recorded != parent_snapshot_update_clock:
            raise SnapshotError(
                code="SECSYNC_ERROR_102", field="publicData.parentSnapshotUpdateClocks"
            )
    try:
        return decrypt_message(snapshot, key)
    except DecryptionError as exc:
        raise SnapshotError(exc.detail, code="SECSYNC_ERROR_101", field="ciphertext")


def is_valid_ancestor_snapshot(
    known: SnapshotProofChainEntry,
    chain: Sequence[SnapshotProofChainEntry],
    current: Snapshot,
) -> bool:
    """True when ``chain`` links the known snapshot to ``current`` (or known *is* current)."""
    current_entry = snapshot_proof_entry(current)
    if known == current_entry:
        return True
    if not chain:
        return False
    expected = create_parent_snapshot_proof(
        known.parent_snapshot_proof, known.snapshot_id, known.snapshot_ciphertext_hash
    )
    if chain[0].parent_snapshot_proof != expected:
        return False
    if chain[-1] != current_entry:
        return False
    for prev, nxt in itertools.pairwise(chain):
        proof = create_parent_snapshot_proof(
            prev.parent_snapshot_proof, prev.snapshot_id, prev.snapshot_ciphertext_hash
        )
        if proof != nxt.parent_snapshot_proof:
            return False
    return True
