"""The blind Secsync relay: stores and forwards ciphertext, enforces the Secsync rules.

* :mod:`.core` — transport-independent rooms / connections / rules (:class:`Relay`)
* :mod:`.store` — the async store interface; :mod:`.sqlite_store` — the SQLite default
* :mod:`.policy` — access policies
* :mod:`.standalone` — ``secsync-relay`` (asyncio WebSocket server)
* :mod:`.extension` — the Jupyter server extension (tornado handler)
"""

from .core import Limits, Relay, Session
from .policy import (
    AccessPolicy,
    AccessRequest,
    AllowedAuthorsPolicy,
    AnyAuthenticatedPolicy,
    Identity,
)
from .sqlite_store import SQLiteStore
from .store import DocumentState, DocumentView, RelayStore, SaveResult, StoreError

__all__ = [
    "AccessPolicy",
    "AccessRequest",
    "AllowedAuthorsPolicy",
    "AnyAuthenticatedPolicy",
    "DocumentState",
    "DocumentView",
    "Identity",
    "Limits",
    "Relay",
    "RelayStore",
    "SQLiteStore",
    "SaveResult",
    "Session",
    "StoreError",
]
