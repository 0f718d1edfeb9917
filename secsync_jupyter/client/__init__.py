"""Kernel-side Secsync client: keep a pycrdt / jupyter_ydoc notebook in sync, end-to-end
encrypted, through a Secsync relay.

* :func:`open_notebook` / :func:`open_document` — asyncio API (works with top-level
  ``await`` in IPython);
* :class:`SyncEngine` — the sans-IO engine underneath (frames in, frames and document
  operations out).
"""

from ..protocol import generate_key
from .awareness import AwarenessBridge, Collaborator, fingerprint
from .document import SecsyncDocument, SyncFailed, backoff_delay, open_document
from .engine import (
    MAX_ERRORS,
    DocumentAdapter,
    KnownSnapshot,
    SnapshotPolicyInfo,
    SyncEngine,
    default_snapshot_policy,
)
from .notebook import Cell, Cells, Notebook, open_notebook
from .ydoc import YDocAdapter, deserialize_updates, serialize_updates


def new_document_key() -> bytes:
    """A fresh random 32-byte document key."""
    return generate_key()


__all__ = [
    "MAX_ERRORS",
    "AwarenessBridge",
    "Cell",
    "Cells",
    "Collaborator",
    "DocumentAdapter",
    "KnownSnapshot",
    "Notebook",
    "SecsyncDocument",
    "SnapshotPolicyInfo",
    "SyncEngine",
    "SyncFailed",
    "YDocAdapter",
    "backoff_delay",
    "default_snapshot_policy",
    "deserialize_updates",
    "fingerprint",
    "new_document_key",
    "open_document",
    "open_notebook",
    "serialize_updates",
]
