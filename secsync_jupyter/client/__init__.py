"""Kernel-side Secsync client: keep a pycrdt / jupyter_ydoc notebook in sync, end-to-end
encrypted, through a Secsync relay.

* :func:`open_notebook` / :func:`open_document` — asyncio API (works with top-level
  ``await`` in IPython);
* :class:`SyncEngine` — the sans-IO engine underneath (frames in, frames and document
  operations out).

Names are imported lazily, so ``secsync_jupyter.client.cli`` stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AwarenessBridge": "awareness",
    "Collaborator": "awareness",
    "fingerprint": "awareness",
    "SecsyncDocument": "document",
    "SyncFailed": "document",
    "MemberInfo": "document",
    "MembershipError": "document",
    "ReadOnlyError": "document",
    "create_document": "document",
    "create_notebook": "notebook",
    "IdentityFileError": "identity_file",
    "UserIdentity": "identity_file",
    "create_identity": "identity_file",
    "default_identity_path": "identity_file",
    "load_identity": "identity_file",
    "backoff_delay": "document",
    "open_document": "document",
    "MAX_ERRORS": "engine",
    "DocumentAdapter": "engine",
    "KnownSnapshot": "engine",
    "SnapshotPolicyInfo": "engine",
    "SyncEngine": "engine",
    "default_snapshot_policy": "engine",
    "Cell": "notebook",
    "Cells": "notebook",
    "Notebook": "notebook",
    "open_notebook": "notebook",
    "YDocAdapter": "ydoc",
    "deserialize_updates": "ydoc",
    "serialize_updates": "ydoc",
}

__all__ = [*sorted(_EXPORTS), "new_document_key"]


def new_document_key() -> bytes:
    """A fresh random 32-byte document key."""
    from ..protocol import generate_key

    return generate_key()


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
