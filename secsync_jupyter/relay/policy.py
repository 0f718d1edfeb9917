"""Access policies: who may read a document, write snapshots / updates, send ephemeral messages.

A policy is consulted like the reference relay's ``hasAccess``: once when a connection opens
(``read``) and for every incoming message (``write-snapshot``, ``write-update``,
``send-ephemeral-message``, with the message's ``pubKey``), and through
:meth:`AccessPolicy.broadcast_access` before each broadcast (the reference's
``hasBroadcastAccess``). ``has_access`` may return a bool or an awaitable of one;
``broadcast_access`` runs on the hot path and must be synchronous and cheap.

Authentication happens before: the Jupyter extension requires a Jupyter login (and Jupyter's
authorizer, resource ``secsync``), the standalone relay a known ``sessionKey`` (or ``--open``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identity:
    """Who is behind a connection, as established by the transport."""

    #: Jupyter user name, or ``"session:<first 8 chars>"`` for the standalone relay
    user: str
    #: the ``sessionKey`` query parameter (standalone relay), if any
    session_key: str | None = field(default=None, repr=False)
    #: False when the transport only grants read access (e.g. Jupyter's authorizer said so)
    can_write: bool = True


@dataclass(frozen=True)
class AccessRequest:
    action: str
    document_id: str
    identity: Identity
    #: the message author's ``publicData.pubKey`` (not for ``read``)
    public_key: str | None = None


class AccessPolicy:
    """Base class. The default allows everything the transport authenticated."""

    name = "base"

    def has_access(self, request: AccessRequest) -> bool | Awaitable[bool]:
        return True

    def broadcast_access(
        self, document_id: str, identities: Sequence[Identity]
    ) -> Sequence[bool] | None:
        """Which of these connections may receive a broadcast; ``None`` means all."""
        return None


class AnyAuthenticatedPolicy(AccessPolicy):
    """Any authenticated identity may read and write every document (writes need
    ``identity.can_write``)."""

    name = "any-authenticated"

    def has_access(self, request: AccessRequest) -> bool:
        if request.action == "read":
            return True
        return request.identity.can_write


class AllowedAuthorsPolicy(AccessPolicy):
    """Per-document list of allowed author pubKeys.

    Any authenticated identity may read. Writes (snapshots, updates, ephemeral messages) are
    accepted only from the listed pubKeys of that document; a document that is not listed
    uses ``default`` (``None``: anyone may write; an empty list: nobody)."""

    name = "allowed-authors"

    def __init__(
        self,
        allowed: Mapping[str, Iterable[str]] | None = None,
        default: Iterable[str] | None = None,
    ):
        self.allowed = {doc: frozenset(keys) for doc, keys in (allowed or {}).items()}
        self.default = None if default is None else frozenset(default)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> AllowedAuthorsPolicy:
        """JSON ``{"documents": {docId: [pubKey, …]}, "default": [pubKey, …] | null}`` or
        a plain ``{docId: [pubKey, …]}`` object."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        if "documents" in data:
            docs, default = data["documents"], data.get("default")
        else:
            docs, default = data, None
        if not isinstance(docs, dict) or not all(
            isinstance(v, list) and all(isinstance(k, str) for k in v) for v in docs.values()
        ):
            raise ValueError(f"{path}: expected {{docId: [pubKey, ...]}}")
        if default is not None and not (
            isinstance(default, list) and all(isinstance(k, str) for k in default)
        ):
            raise ValueError(f"{path}: 'default' must be a list of pubKeys or null")
        return cls(docs, default)

    def has_access(self, request: AccessRequest) -> bool:
        if request.action == "read":
            return True
        if not request.identity.can_write:
            return False
        keys = self.allowed.get(request.document_id, self.default)
        return keys is None or request.public_key in keys


BUILTIN_POLICIES: dict[str, type[AccessPolicy]] = {
    AnyAuthenticatedPolicy.name: AnyAuthenticatedPolicy,
    AllowedAuthorsPolicy.name: AllowedAuthorsPolicy,
}
