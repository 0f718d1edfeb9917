"""Updates: create and verify-and-decrypt, with the clock rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .crypto import (
    DOMAIN_UPDATE,
    SigningKeyPair,
    decrypt_message,
    seal_message,
    verify_message,
)
from .errors import CreationError, DecryptionError, ProtocolError, UpdateError
from .messages import Update

__all__ = ["create_update", "verify_and_decrypt_update", "verify_update_signature"]


def create_update(
    content: bytes | str,
    public_data: Mapping[str, Any],
    key: bytes,
    keypair: SigningKeyPair,
    clock: int,
    *,
    nonce: bytes | None = None,
) -> Update:
    """Encrypt and sign an update; ``public_data`` holds ``docId``, ``pubKey``,
    ``refSnapshotId`` (plus optional extra fields). Raises :class:`CreationError` (501)."""
    try:
        pd = {**public_data, "clock": clock}
        return Update.from_json(seal_message(DOMAIN_UPDATE, content, pd, key, keypair, nonce))
    except (ProtocolError, KeyError, ValueError, TypeError) as exc:
        raise CreationError(f"creating an update failed: {exc}", code="SECSYNC_ERROR_501")


def verify_update_signature(update: Update) -> None:
    """Check the author's signature only (what the relay does). Raises 212."""
    if not verify_message(DOMAIN_UPDATE, update):
        raise UpdateError(code="SECSYNC_ERROR_212", field="signature")


def verify_and_decrypt_update(
    update: Update,
    key: bytes,
    current_active_snapshot_id: str,
    current_clock: int,
    *,
    current_doc_id: str | None = None,
) -> bytes:
    """Verify signature (212), snapshot/doc (213), clock (214 replay, 202 gap); decrypt (201).

    ``current_clock`` is the last clock seen from this author on the active snapshot, or
    ``-1`` when none. ``current_doc_id`` should always be given: an update for another
    document is rejected with 213 (the reference never checks the docId of updates; our
    clients and relay do — pass ``None`` only to reproduce the reference's behaviour).
    """
    verify_update_signature(update)
    pd = update.public_data
    if current_doc_id is not None and pd.doc_id != current_doc_id:
        raise UpdateError(
            "update belongs to another document", code="SECSYNC_ERROR_213", field="publicData.docId"
        )
    if pd.ref_snapshot_id != current_active_snapshot_id:
        raise UpdateError(code="SECSYNC_ERROR_213", field="publicData.refSnapshotId")
    if pd.clock <= current_clock:
        raise UpdateError(code="SECSYNC_ERROR_214", field="publicData.clock")
    if pd.clock != current_clock + 1:
        raise UpdateError(code="SECSYNC_ERROR_202", field="publicData.clock")
    try:
        return decrypt_message(update, key)
    except DecryptionError as exc:
        raise UpdateError(exc.detail, code="SECSYNC_ERROR_201", field="ciphertext")
