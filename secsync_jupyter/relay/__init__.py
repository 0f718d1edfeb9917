"""The blind Secsync relay: stores and forwards ciphertext, enforces the Secsync rules.

* :mod:`.core` — :class:`Relay`: connections in, rooms, lifecycle (the module map is in its
  docstring and in docs/architecture.md)
* :mod:`.session`, :mod:`.inbound`, :mod:`.rules`, :mod:`.room`, :mod:`.admission` — frame
  handling, frame analysis, acceptance rules, fan-out, admission and limits
* :mod:`.config` — the one configuration table (limits, policy, store, durability)
* :mod:`.store` — the async store interface and its choice by URL; :mod:`.sqlite_store` (the
  default), :mod:`.memory_store`
* :mod:`.policy` — access policies
* :mod:`.standalone` — ``secsync-relay`` (asyncio WebSocket server)
* :mod:`.extension` — the Jupyter server extension (tornado handler)
"""

from .config import Limits, RelayOptions
from .core import Relay
from .memory_store import MemoryStore
from .policy import (
    AccessPolicy,
    AccessRequest,
    AllowedAuthorsPolicy,
    AnyAuthenticatedPolicy,
    Identity,
)
from .session import Session
from .sqlite_store import SQLiteStore
from .store import (
    DocumentState,
    DocumentView,
    RelayStore,
    SaveResult,
    StoreError,
    store_from_url,
)

__all__ = [
    "AccessPolicy",
    "AccessRequest",
    "AllowedAuthorsPolicy",
    "AnyAuthenticatedPolicy",
    "DocumentState",
    "DocumentView",
    "Identity",
    "Limits",
    "MemoryStore",
    "Relay",
    "RelayOptions",
    "RelayStore",
    "SQLiteStore",
    "SaveResult",
    "Session",
    "StoreError",
    "store_from_url",
]
