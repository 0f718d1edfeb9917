"""asyncio driver: a :class:`SyncEngine` on a WebSocket (``websockets``), around a pycrdt Doc.

Everything runs on the caller's event loop (top-level ``await`` in IPython works: no
nested loops, no blocking calls). The updates of a large ``document`` frame are checked
ahead in threads or worker processes (:mod:`.precheck`); applying them happens on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

import websockets
from pycrdt import Doc

from ..protocol import ProtocolError, SigningKeyPair, generate_key
from ..protocol.identity import Identity, IdentityError, fingerprint, parse_identity
from ..protocol.membership import (
    Entry,
    LogHead,
    MembershipError,
    MembershipState,
    create_entry,
    create_log,
    is_log_doc_id,
)
from .awareness import AwarenessBridge, Collaborator
from .engine import (
    CLOSED,
    CONNECTED,
    FAILED,
    NO_ACCESS,
    RECONNECT_DELAY_CAP,
    KnownSnapshot,
    SnapshotPolicyInfo,
    SyncEngine,
    backoff_delay,
)
from .epochs_client import entry_lockboxes
from .identity_file import UserIdentity, resolve_identity
from .precheck import check_signatures_in_processes, precheck_frame, verify_pool
from .state_file import StateFileDamaged, load_remembered, save_remembered, set_aside
from .tokens import TokenDecision, TokenPolicyError, choose_token, is_loopback
from .ydoc import YDocAdapter

__all__ = [
    "MemberInfo",
    "MembershipError",
    "ReadOnlyError",
    "SecsyncDocument",
    "SyncFailed",
    "create_document",
    "open_document",
]

log = logging.getLogger("secsync_jupyter.client")

#: frames larger than this are decoded off the event loop (and their updates checked ahead)
_LARGE_FRAME = 256 * 1024


class SyncFailed(RuntimeError):
    """The document failed (an error code from the checklist) or access was refused."""

    def __init__(
        self,
        message: str,
        errors: list[ProtocolError] | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.errors = list(errors or [])
        #: the HTTP status when the server refused the WebSocket handshake (401, 403, 404…)
        self.status = status

    @property
    def code(self) -> str | None:
        return self.errors[0].code if self.errors else None


class ReadOnlyError(PermissionError):
    """A local write in a document where the verified membership log makes us a viewer (or
    the relay refused our writes, 724). Nothing was changed."""


class MemberInfo(NamedTuple):
    """A member of a document with a membership log (from the verified log)."""

    pub_key: str
    #: display name given when added (a hint, not authenticated: compare the fingerprint)
    name: str | None
    #: ``3ad7 c3ca c343 1d6b`` (BLAKE2b-64 of the key, as JupyterLab shows it)
    fingerprint: str
    #: ``admin``, ``editor`` or ``viewer``
    role: str
    #: who added this member (the public key; the creator for itself)
    added_by: str
    #: when it was added (ms since the Unix epoch, the adding entry's timestamp)
    at: int
    #: the creator of the document (shown as *owner*)
    owner: bool

    @property
    def identity_string(self) -> str:
        from ..protocol.identity import format_identity

        return format_identity(self.pub_key, self.name)


#: retries of a membership change whose entry lost a race (707) or missed entries (709)
MAX_MEMBERSHIP_RETRIES = 5


#: the default limit on one frame from the relay (``max_frame_bytes``): the largest frame a
#: relay of ours sends at its default limits is a ``document`` frame, and the standalone
#: relay drops a connection whose send buffer exceeds 256 MiB (``max_send_buffer_bytes``)
DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024

#: handshake refusals that retrying cannot fix (the document fails with a clear error)
_REFUSALS = {
    400: "the server rejected the request (HTTP 400)",
    401: "the server refused the connection (HTTP 401): missing or wrong Jupyter token"
    " (pass token=…, or set JUPYTER_TOKEN for a server on this machine or a trusted origin)",
    403: "the server refused the connection (HTTP 403): missing or wrong Jupyter token, or"
    " no permission for the secsync relay (pass token=…, or set JUPYTER_TOKEN for a server"
    " on this machine or a trusted origin)",
    404: "no relay at this URL (HTTP 404): check the server URL and its base_url, and that"
    " the secsync_jupyter server extension is enabled",
    405: "not a WebSocket endpoint (HTTP 405): check the relay URL",
}


class SecsyncDocument:
    """A live, end-to-end encrypted pycrdt ``Doc`` synced through a Secsync relay.

    Use :func:`open_document`; ``doc`` is the pycrdt Doc, :meth:`synced` waits until every
    local change is acknowledged, :meth:`on_change` registers a callback for remote changes.
    """

    def __init__(
        self,
        relay_url: str,
        doc_id: str | None = None,
        key: bytes | str | None = None,
        *,
        signing_key: SigningKeyPair | bytes | None = None,
        session_key: str | None = None,
        doc: Doc | None = None,
        snapshot_policy: Callable[[SnapshotPolicyInfo], bool] | None = None,
        is_valid_client: Callable[[str, Mapping[str, Any]], bool] | None = None,
        known_snapshot: KnownSnapshot | None = None,
        batch_window: float = 0.02,
        max_backoff: float = RECONNECT_DELAY_CAP,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        awareness: bool = True,
        user: Mapping[str, Any] | None = None,
        open_timeout: float = 10.0,
        trusted_origins: Iterable[str] | str | None = None,
        allow_insecure_token: bool = False,
        max_frame_bytes: int | None = DEFAULT_MAX_FRAME_BYTES,
        identity: Any = None,
        known_log_head: LogHead | Mapping[str, Any] | None = None,
        log_root: Entry | Mapping[str, Any] | None = None,
        state_file: str | Any = None,
        heads_grace: float | None = None,
        heads_interval: float | None = None,
        keyring: Any = None,
        keyring_file: Any = None,
    ):
        if (doc_id is None or key is None) and keyring is None:
            from ..sharelink import parse_share_link

            link = parse_share_link(relay_url)
            relay_url = link.relay_url
            doc_id = doc_id or link.doc_id
            key = key if key is not None else link.key
        if isinstance(key, str):
            from ..protocol import b64decode

            key = b64decode(key, field="key", length=32)
        if key is not None and len(key) != 32:
            raise ValueError("the document key must be 32 bytes")
        #: the identity this client signs with (a document with a log: a member's key)
        self.identity: UserIdentity | None = None
        if identity is not None and signing_key is not None:
            raise ValueError("give either identity= or signing_key=, not both")
        if identity is not None or (signing_key is None and is_log_doc_id(doc_id)):
            # a document with a membership log: our key must be a member's, so it is the
            # user's identity (the default identity file unless given), never a fresh one
            self.identity = resolve_identity(identity)
            signing_key = self.identity.keypair
        elif signing_key is None:
            signing_key = SigningKeyPair.generate()
        elif not isinstance(signing_key, SigningKeyPair):
            signing_key = SigningKeyPair.from_private_key(bytes(signing_key))
        self.relay_url = relay_url.rstrip("/")
        self.doc_id = doc_id
        self._key = bytes(key) if key is not None else None  # None: joined through a link
        self.signing_key = signing_key
        self.session_key = session_key or "secsync-jupyter"
        self.doc = doc if doc is not None else Doc()
        self.batch_window = batch_window
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self._headers = dict(headers or {})
        if max_frame_bytes is not None and (
            isinstance(max_frame_bytes, bool)
            or not isinstance(max_frame_bytes, int)
            or max_frame_bytes <= 0
        ):
            raise ValueError("max_frame_bytes must be a positive number of bytes (or None)")
        #: the largest frame accepted from the relay (``None``: no limit)
        self.max_frame_bytes = max_frame_bytes
        self._token = token
        self._trusted_origins = (
            trusted_origins if isinstance(trusted_origins, str) else list(trusted_origins or ())
        )
        self._allow_insecure_token = allow_insecure_token
        #: where the token of the latest connection came from: "argument", "environment", None
        self.token_source: str | None = None
        self._token_withheld: str | None = None
        self._token_for(self.relay_url)  # a misplaced token or a bad origin: fail right here
        self.adapter = YDocAdapter(self.doc, self._on_local_update, self._on_ephemeral)
        #: the remembered-state file (issue 13): checked on load, kept up to date
        self.state_file = state_file
        remembered = None
        damaged: StateFileDamaged | None = None  # kept aside below (807), never used
        if state_file is not None and log_root is None:
            try:
                remembered = load_remembered(state_file, doc_id)
            except StateFileDamaged as exc:
                damaged = exc
        self.engine = SyncEngine(
            doc_id,
            bytes(key) if key is not None else bytes(32),  # unused with epoch keys (issue 12)
            self.adapter,
            signing_key,
            snapshot_policy=snapshot_policy,
            is_valid_client=is_valid_client,
            known_snapshot=known_snapshot,
            on_event=self._on_engine_event,
            known_log_head=known_log_head,
            log_root=log_root,
            remembered=remembered,
        )
        if self.engine.has_log:  # issue 12: epoch keys, lockboxes, the keyring file
            from .epochs_client import attach_epoch_keys

            attach_epoch_keys(self, key, keyring, keyring_file)
        if heads_grace is not None:
            self.engine.heads_grace = float(heads_grace)
        if heads_interval is not None:
            self.engine.heads_interval = float(heads_interval)
        self._save_handle: asyncio.TimerHandle | None = None
        #: what the client noticed of the relay's misbehaviour (issue 13), newest last:
        #: ``(kind, data)`` with kind ``withheld`` (801), ``served-incompletely`` (803),
        #: ``heads-withheld`` (806), ``fork`` (805), ``rollback`` (804), and
        #: ``remembered-damaged`` (807: the state file's state of this document was damaged)
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self._alert_callbacks: list[Callable[[str, dict[str, Any]], Any]] = []
        # the signatures of a long membership log are checked in the verify pool, or partly in
        # the worker processes when they run (a very long log starts them)
        self.engine.check_signatures = check_signatures_in_processes
        #: answers to our membership entries: entry hash -> None (saved) or the error code
        self._entry_results: dict[str, str | None] = {}
        self.awareness: AwarenessBridge | None = None
        if awareness:
            self.awareness = AwarenessBridge(
                self.doc, signing_key.public_key_b64, self._send_ephemeral
            )
            if user:
                self.awareness.set_local_state_field("user", dict(user))
            self.awareness.on_change(lambda changes: self._notify())
        self._change_callbacks: list[Callable[..., Any]] = []
        self._listeners: list[Callable[[], Any]] = []
        #: the URL of the latest connection attempt (without secrets: the key never leaves)
        self.last_url: str | None = None
        #: (HTTP status, message) when the server refused the WebSocket handshake
        self.refusal: tuple[int, str] | None = None
        self._snapshot_waiters: list[list[str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._heads_ticker: asyncio.Task | None = None
        self._ws: Any = None
        self._send_queue: asyncio.Queue[str] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._wake = asyncio.Event()
        self.connections = 0
        if damaged is not None:
            self.engine.remembered_unusable(str(damaged))
        if self.engine.remembered_damaged is not None:
            self._keep_damaged_state(damaged is not None and damaged.whole_file)

    # ----------------------------------------------------------------- status

    @property
    def pub_key(self) -> str:
        return self.signing_key.public_key_b64

    @property
    def state(self) -> str:
        """Connection state: connecting, connected, disconnected, failed, no-access, closed."""
        return self.engine.state

    @property
    def document_state(self) -> str:
        """pending, partial, complete or failed (the reference's decryption state)."""
        return self.engine.document_state

    @property
    def errors(self) -> list[ProtocolError]:
        """Snapshot and update errors, newest first (at most 20)."""
        return list(self.engine.errors)

    @property
    def ephemeral_errors(self) -> list[ProtocolError]:
        return list(self.engine.ephemeral_errors)

    @property
    def collaborators(self) -> list[Collaborator]:
        """Who is here (awareness states with verified pubKeys), including ourselves."""
        return self.awareness.collaborators() if self.awareness is not None else []

    # ------------------------------------------------------------- membership

    @property
    def share_link(self) -> str:
        """The document's share link on this relay (holds the key: share it privately)."""
        from ..sharelink import format_share_link

        if self._key is None:  # issue 12: joined through an invitation link, no epoch-0 key
            raise ValueError(
                f"no share link for {self.doc_id}: you joined through an invitation link (ask"
                " an admin for a link, or use the invitation link again)"
            )
        if self.relay_url.startswith(("ws://", "wss://")) and self.relay_url.endswith("/secsync"):
            # the relay inside Jupyter Server: the link JupyterLab opens (http(s)://…/open/…)
            server_url = "http" + self.relay_url[2 : -len("secsync")]
            return format_share_link(self.doc_id, self._key, server_url=server_url)
        return format_share_link(self.doc_id, self._key, relay=self.relay_url)

    @property
    def has_log(self) -> bool:
        """The document has a membership log (its id is ``m1_…``)."""
        return self.engine.has_log

    @property
    def log(self) -> MembershipState | None:
        """The membership at the head of the verified log (``None``: no log, or not loaded)."""
        return self.engine.log

    @property
    def log_head(self) -> LogHead | None:
        """The head of the verified log; keep it (``known_log_head=``) to detect a rollback."""
        return self.engine.log.head if self.engine.log is not None else None

    @property
    def role(self) -> str | None:
        """Our role (``admin`` / ``editor`` / ``viewer``) in the verified log; ``None`` in a
        document without a log, or before the log is loaded."""
        return self.engine.role

    @property
    def read_only(self) -> bool:
        """We may not write: a viewer in the verified log, or the relay refused our write."""
        return self.engine.read_only

    @property
    def members(self) -> list[MemberInfo]:
        """The members at the head of the verified log, in the order they were added."""
        state = self.engine.log
        if state is None:
            return []
        out = [
            MemberInfo(
                m.pub_key,
                m.name,
                fingerprint(_key_bytes(m.pub_key)),
                m.role,
                m.added_by,
                m.at,
                m.seq == 0,
            )
            for m in state.members.values()
        ]
        return sorted(out, key=lambda m: (m.at, m.pub_key))

    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyError` when local writes would not be sent."""
        if self.engine.read_only:
            role = self.engine.role
            why = (
                "the relay refused our writes (SECSYNC_ERROR_724)"
                if self.engine.write_refused and role in ("editor", "admin")
                else f"your role is {role or 'not yet known'}"
            )
            raise ReadOnlyError(f"document {self.doc_id} is read-only for you: {why}")

    async def add_member(self, identity: Any, role: str, *, timeout: float | None = 60.0):
        """Add a member (an identity string, :class:`Identity`, public key, or
        :class:`UserIdentity`) with ``role`` (``viewer``, ``editor``, ``admin``). Returns the
        new :class:`MembershipState` once the relay saved the entry; raises
        :class:`MembershipError` with the code (e.g. 712: you are not an admin, 715: already
        a member)."""
        return await self._change("add-member", _target(identity), role, timeout)

    async def set_role(self, member: Any, role: str, *, timeout: float | None = 60.0):
        """Change a member's role (see :meth:`add_member`)."""
        return await self._change("set-role", _target(member), role, timeout)

    async def remove_member(
        self, member: Any, *, timeout: float | None = 60.0, rotate: bool = True
    ):
        """Remove a member (yourself: leave). Their open connections are closed by the relay.
        Then (issue 12) the key is rotated, unless ``rotate=False``, you left, or another
        admin's rotation already made it unneeded (the browser client's rule too)."""
        state = await self._change("remove-member", _target(member), None, timeout)
        if rotate and self.engine.role == "admin":
            from .epochs_client import rotate_key

            state = await rotate_key(self, timeout=timeout, if_needed=True)
        return state

    # issue 12: key rotation and invitation links (epochs_client.py, links_client.py)
    async def rotate_key(self, *, timeout: float | None = 60.0) -> MembershipState:
        """Rotate the document key (admins): a new epoch, a lockbox for everyone."""
        from .epochs_client import rotate_key

        return await rotate_key(self, timeout=timeout)

    async def create_link(self, role: str = "viewer", label: str = "link", **kw: Any):
        from .links_client import create_link

        return await create_link(self, role, label, **kw)

    @property
    def links(self) -> list[Any]:
        from .links_client import list_links

        return list_links(self)

    async def revoke_link(self, link: Any, *, remove_joined: bool = False, **kw: Any):
        from .links_client import revoke_link

        return await revoke_link(self, link, remove_joined=remove_joined, **kw)

    async def _change(self, kind: str, target: Any, role: str | None, timeout: float | None):
        if not self.engine.has_log:
            raise MembershipError(
                f"document {self.doc_id} has no membership log", code="SECSYNC_ERROR_700"
            )

        async def run() -> MembershipState:
            retries = 0
            engine = self.engine

            def ready() -> bool:  # loaded, and no entry of ours waiting for the relay
                return engine.ready_to_append

            while True:
                while not ready():  # re-checked right before appending: no await between
                    await self._wait_for(ready, None)
                state = engine.log
                assert state is not None
                entry, _ = create_entry(state, self.signing_key, kind, target, role)
                self._entry_results.pop(entry.hash, None)
                engine.append_entry(entry, lockboxes=entry_lockboxes(engine, entry))
                self._pump()
                await self._wait_for(lambda h=entry.hash: h in self._entry_results, None)
                code = self._entry_results.pop(entry.hash)
                if code is None and engine.log is not None and entry.hash in engine.log.hashes:
                    return engine.log  # saved
                if code is None:  # the connection dropped unanswered: the next log tells
                    await self.loaded()
                    if engine.log is not None and entry.hash in engine.log.hashes:
                        return engine.log
                elif code not in ("SECSYNC_ERROR_707", "SECSYNC_ERROR_709"):
                    raise MembershipError(
                        f"the relay refused the {kind} entry", code=code, field="entry"
                    )
                # someone appended first (we verified their entries): rebuild the change on
                # the new head if it is still allowed (create_entry raises the rule otherwise)
                retries += 1
                if retries > MAX_MEMBERSHIP_RETRIES:
                    raise MembershipError(
                        f"the {kind} entry lost {retries} races in a row",
                        code=code or "SECSYNC_ERROR_707",
                    )

        return await asyncio.wait_for(run(), timeout)

    @property
    def known_snapshot(self) -> KnownSnapshot | None:
        """The active snapshot with its clocks (save it to resume later in delta mode)."""
        active = self.engine.active
        return active.copy() if active is not None else None

    @property
    def last_url_redacted(self) -> str:
        """The latest connection URL without its query (no session key in messages)."""
        url = self.last_url or f"{self.relay_url}/{self.doc_id}"
        return url.split("?", 1)[0]

    def on_change(self, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback(kind)`` after remote changes are applied; returns an unsubscribe."""
        self._change_callbacks.append(callback)
        return lambda: self._change_callbacks.remove(callback)

    # -------------------------------------------------------------- lifecycle

    async def start(self, wait: bool = True) -> SecsyncDocument:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._send_queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name=f"secsync:{self.doc_id}")
            self._heads_ticker = asyncio.create_task(self._tick_heads())
            if self.awareness is not None:
                self._ticker = asyncio.create_task(self._tick())
        if wait:
            await self.loaded()
        return self

    async def __aenter__(self) -> SecsyncDocument:
        try:
            return await self.start()
        except BaseException:
            await self.close(wait_synced=False)
            raise

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.close(wait_synced=exc_type is None)

    def _check_failed(self) -> None:
        state = self.engine.state
        if state == NO_ACCESS and self.refusal is not None:
            status, message = self.refusal
            raise SyncFailed(f"{message}: {self.last_url_redacted}", self.engine.errors, status)
        if state == FAILED:
            raise SyncFailed(
                f"document {self.doc_id} failed: "
                + (str(self.engine.errors[0]) if self.engine.errors else "document-error"),
                self.engine.errors,
            )
        if state == NO_ACCESS:
            errors = self.engine.errors
            reason = (
                f": {errors[0]}"
                if errors and (errors[0].code or "").startswith("SECSYNC_ERROR_72")
                else ""
            )
            raise SyncFailed(f"no access to document {self.doc_id}{reason}", errors)
        if state == CLOSED:
            raise SyncFailed("the document is closed")
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                raise SyncFailed(f"connection task crashed: {exc!r}") from exc

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> None:
        async def waiter():
            while True:
                if predicate():
                    return
                self._check_failed()
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiter(), timeout)

    async def loaded(self, timeout: float | None = None) -> None:
        """Wait until the document is loaded (``complete``); raise :class:`SyncFailed`."""
        await self._wait_for(
            lambda: self.engine.state == CONNECTED and self.engine.document_state == "complete",
            timeout,
        )

    async def synced(self, timeout: float | None = None) -> None:
        """Wait until every local change is acknowledged by the relay."""
        await self._wait_for(lambda: self.engine.is_synced and self._flush_handle is None, timeout)

    async def create_snapshot(self, timeout: float | None = None) -> str:
        """Send a snapshot of the current state now; returns its id once the relay saved it.
        Raises :class:`ReadOnlyError` when we may not write (a viewer)."""
        self.check_writable()
        saved: list[str] = []
        self._snapshot_waiters.append(saved)
        try:
            self.engine.request_snapshot()
            self._flush_now()
            await self._wait_for(lambda: bool(saved), timeout)
        finally:
            self._snapshot_waiters.remove(saved)
        return saved[0]

    async def close(self, *, wait_synced: bool = True, timeout: float = 10.0) -> None:
        """Wait (bounded) for unsent changes, leave the awareness, close the connection."""
        if self._closing:
            return
        if (
            wait_synced
            and self.engine.state not in (FAILED, NO_ACCESS, CLOSED)
            and not self.engine.read_only  # a viewer's local changes are never sent
        ):
            with contextlib.suppress(Exception):
                await self.synced(timeout)
        self._closing = True
        self.save_state()  # what we verified last (before the engine closes)
        if self.awareness is not None and self.engine.state == CONNECTED:
            self.awareness.leave()
            await self._drain_sends()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._heads_ticker is not None:
            self._heads_ticker.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._wake.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self.engine.close()
        self.adapter.close()
        self._notify()

    async def _drain_sends(self) -> None:
        queue = self._send_queue
        if queue is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(queue.join(), 2.0)

    # ------------------------------------------------------------- internals

    def _notify(self) -> None:
        self._changed.set()
        for listener in list(self._listeners):
            listener()

    def add_listener(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """Call ``callback()`` after anything happened (frames, state, awareness)."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None):
        """Wait until ``predicate()`` is true (re-checked after every event)."""
        await self._wait_for(predicate, timeout)

    def reconnect(self) -> None:
        """Drop the connection (if any) and connect again now, resuming in delta mode."""
        self._wake.set()
        if self._ws is not None:
            self.engine.reconnect_requested = True
            asyncio.ensure_future(self._ws.close())  # noqa: RUF006

    def on_alert(self, callback: Callable[[str, dict[str, Any]], Any]) -> Callable[[], None]:
        """Call ``callback(kind, data)`` when the client notices the relay misbehaving (see
        :attr:`alerts`; the error is also in :attr:`errors`); returns an unsubscribe."""
        self._alert_callbacks.append(callback)
        return lambda: self._alert_callbacks.remove(callback)

    @property
    def peer_heads(self) -> dict[str, Any]:
        """The latest heads each live collaborator sent (public key -> ``PeerHeads``)."""
        return dict(self.engine.peer_heads)

    @property
    def seen_by(self) -> dict[str, bool]:
        """Read notifications (issue 13): per live collaborator (public key), whether its
        latest heads show our latest acknowledged update on the active snapshot."""
        active = self.engine.active
        if active is None:
            return {}
        mine = active.update_clocks.get(self.pub_key, -1)
        out = {}
        for peer, heads in self.engine.peer_heads.items():
            if heads.snapshot_id == active.snapshot_id:
                out[peer] = heads.clocks.get(self.pub_key, -1) >= mine
            else:  # on a snapshot after ours (it holds our saved updates), or not
                out[peer] = active.snapshot_id in heads.chain
        return out

    def save_state(self) -> None:
        """Write the remembered state to :attr:`state_file` now (also done after changes)."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self.state_file is None:
            return
        state = self.engine.remembered_state()
        if state is not None:
            try:
                save_remembered(self.state_file, self.doc_id, state)
            except (OSError, ValueError) as exc:
                log.warning("secsync %s: cannot write the state file: %s", self.doc_id, exc)

    def _keep_damaged_state(self, whole_file: bool) -> None:
        """Issue 13: the remembered state could not be used (807): the state file is kept
        aside (moved when the whole file is damaged, else copied: the next save replaces the
        entry), the alert ``remembered-damaged`` says so; the load is checked from scratch and
        a new state is written after it. Raises ``StateFileError`` if it cannot be kept."""
        aside = set_aside(self.state_file, move=whole_file)
        self._alert(
            "remembered-damaged",
            {
                "detail": self.engine.remembered_damaged,
                "aside": str(aside),
                "message": "The remembered state of this document was damaged (kept in"
                f" {aside}); it was checked from scratch; rollback detection starts again"
                " from now.",
            },
        )

    def _alert(self, kind: str, data: dict[str, Any]) -> None:
        self.alerts.append((kind, dict(data)))
        del self.alerts[:-100]
        log.warning("secsync %s: %s %s", self.doc_id, kind, data)
        for alert in list(self._alert_callbacks):
            try:
                alert(kind, dict(data))
            except Exception:
                log.exception("on_alert callback failed")

    def _schedule_save(self) -> None:
        if self.state_file is not None and self._save_handle is None and self._loop is not None:
            self._save_handle = self._loop.call_later(1.0, self.save_state)

    async def _tick_heads(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.engine.tick(loop.time())
            self._pump()
            await asyncio.sleep(min(1.0, self.engine.heads_interval / 5))

    def _on_engine_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("withheld", "served-incompletely", "heads-withheld", "fork", "rollback"):
            self._alert(kind, data)
        elif kind in ("loaded", "update-saved", "snapshot-saved", "membership") or (
            kind == "remote-change"
        ):
            self._schedule_save()
        if kind == "loaded":
            self.save_state()
            if self.engine.epochs is not None:  # issue 12: an admin rotates when needed
                from .epochs_client import rotate_if_needed

                rotate_if_needed(self)
        if kind == "remote-change":
            for callback in list(self._change_callbacks):
                try:
                    callback(data.get("kind"))
                except Exception:
                    log.exception("on_change callback failed")
        elif kind == "snapshot-saved":
            for waiter in self._snapshot_waiters:
                waiter.append(data["snapshot_id"])
        elif kind == "ephemeral-peer" and self.awareness is not None:
            self.awareness.resend()
        elif kind == "log-entry-saved":
            self._entry_results[data["hash"]] = None
        elif kind == "log-entry-failed":
            self._entry_results[data["hash"]] = data.get("code")
        elif kind == "error":
            log.debug("secsync %s: %s", self.doc_id, data["error"])
        self._notify()

    def _on_local_update(self, update: bytes) -> None:
        self.engine.add_changes([update])
        self._notify()
        loop = self._loop
        if loop is None or self._closing:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule_flush()
        else:
            loop.call_soon_threadsafe(self._schedule_flush)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_later(self.batch_window, self._flush_now)

    def _flush_now(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.engine.flush()
        self._pump()

    def _on_ephemeral(self, content: bytes, author: str) -> None:
        if self.awareness is not None:
            self.awareness.apply(content, author)

    def _send_ephemeral(self, content: bytes) -> None:
        if self.engine.send_ephemeral(content):
            self._pump()

    def _pump(self) -> None:
        """Move the engine's outbox to the connection's send queue."""
        frames = self.engine.take_outbox()
        if frames and self._send_queue is not None and self._ws is not None:
            for frame in frames:
                self._send_queue.put_nowait(frame)
        self._notify()

    async def _sender(self, ws: Any, queue: asyncio.Queue[str]) -> None:
        while True:
            frame = await queue.get()
            try:
                await ws.send(frame)
            except Exception:
                queue.task_done()
                return
            queue.task_done()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(AwarenessBridge.RENEW_SECONDS / 3)
            if self.awareness is not None and self.engine.state == CONNECTED:
                self.awareness.tick()

    def _url(self) -> str:
        params = {"sessionKey": self.session_key, **self.engine.connection_params()}
        return f"{self.relay_url}/{self.doc_id}?{urlencode(params)}"

    def _token_for(self, relay_url: str) -> TokenDecision:
        """The token a connection to the relay base ``relay_url`` may carry (:mod:`.tokens`)."""
        return choose_token(
            relay_url,
            self._token,
            trusted_origins=self._trusted_origins,
            allow_insecure_token=self._allow_insecure_token,
        )

    def _connection_headers(self, relay_url: str) -> dict[str, str]:
        """Headers of one connection attempt, decided each time (``relay_url`` may change)."""
        decision = self._token_for(relay_url)
        self.token_source = decision.source
        self._token_withheld = decision.withheld
        headers = dict(self._headers)
        if decision.token is not None:
            headers["Authorization"] = f"token {decision.token}"
        return headers

    def _fail_connection(self, message: str) -> None:
        """A connection problem that retrying cannot fix: the document fails with ``message``."""
        log.warning("secsync %s: %s", self.doc_id, message)
        self.engine.fail(ProtocolError(message))

    async def _run(self) -> None:
        retries = 0
        loop = asyncio.get_running_loop()
        pool = verify_pool()
        while not self._closing:
            self.engine.connecting()
            self._notify()
            url = self._url()
            self.last_url = url
            try:
                headers = self._connection_headers(self.relay_url)
            except TokenPolicyError as exc:  # relay_url was changed to an unsafe place
                self._fail_connection(str(exc))
                self._notify()
                return
            try:
                async with websockets.connect(
                    url,
                    max_size=self.max_frame_bytes,
                    open_timeout=self.open_timeout,
                    proxy=None if is_loopback(url) else True,
                    additional_headers=headers or None,
                    compression=None,
                ) as ws:
                    queue: asyncio.Queue[str] = asyncio.Queue()
                    self._send_queue = queue
                    self._ws = ws
                    self.connections += 1
                    retries = 0
                    self.engine.connected()
                    sender = asyncio.create_task(self._sender(ws, queue))
                    try:
                        async for frame in ws:
                            try:
                                await self._handle_frame(frame, loop, pool)
                            except Exception as exc:  # a bug, not a connection problem
                                log.exception("secsync %s: processing a frame failed", self.doc_id)
                                self.engine.fail(
                                    ProtocolError(
                                        f"internal error: {exc!r}", code="SECSYNC_ERROR_100"
                                    )
                                )
                                self._pump()
                            if self.engine.state in (FAILED, NO_ACCESS, CLOSED):
                                break
                            if self.engine.reconnect_requested:
                                break
                    finally:
                        self._ws = None
                        sender.cancel()
            except asyncio.CancelledError:
                raise
            except websockets.exceptions.ConnectionClosedError as exc:
                if _frame_too_big(exc):  # the same frame would come again: fail clearly
                    self._fail_connection(
                        f"the relay sent a frame larger than max_frame_bytes"
                        f" ({self.max_frame_bytes:,} bytes); if this document is really that"
                        " large, open it with a larger max_frame_bytes="
                    )
                log.debug("secsync %s: connection closed %r", self.doc_id, exc)
            except websockets.exceptions.InvalidStatus as exc:
                status = exc.response.status_code
                message = _REFUSALS.get(status)
                if message is None and 400 <= status < 500 and status not in (408, 429):
                    message = f"the server refused the connection (HTTP {status})"
                if message is not None and status in (401, 403) and self._token_withheld:
                    message = f"{message}; {self._token_withheld}"
                if message is not None:  # retrying cannot help: fail with a clear error
                    log.warning("secsync %s: %s", self.doc_id, message)
                    self.refusal = (status, message)
                    self.engine.no_access(f"http-{status}")
                log.debug("secsync %s: connection error %r", self.doc_id, exc)
            except Exception as exc:  # connection refused, closed, timeout, bad handshake
                log.debug("secsync %s: connection error %r", self.doc_id, exc)
            self._ws = None
            if self.engine.state in (FAILED, NO_ACCESS, CLOSED) or self._closing:
                self._notify()
                return
            self.engine.disconnected()
            self._notify()
            delay = backoff_delay(retries, self.max_backoff)
            retries += 1
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _handle_frame(self, frame: str | bytes, loop, pool) -> None:
        engine = self.engine
        if len(frame) > _LARGE_FRAME:
            obj = await loop.run_in_executor(pool, _loads_or_none, frame)
            if obj is None:
                engine.receive(frame)  # records the bad frame
                self._pump()
                return
            precheck = None
            if obj.get("type") == "document":
                precheck = await loop.run_in_executor(None, precheck_frame, engine, obj)
            engine.receive(obj, precheck)
        else:
            engine.receive(frame)
        self._pump()


def _frame_too_big(exc: websockets.exceptions.ConnectionClosedError) -> bool:
    """This client closed the connection because a frame exceeded ``max_size`` (1009)."""
    if isinstance(exc.__cause__, websockets.exceptions.PayloadTooBig):
        return True
    return exc.rcvd is None and exc.sent is not None and exc.sent.code == 1009


def _loads_or_none(frame: str | bytes) -> Any:
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("type"), str) else None


class _Opener:
    """``open_document(...)``: use with ``async with`` or ``await``."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._obj: Any = None

    async def __aenter__(self):
        self._obj = self._factory()
        return await self._obj.__aenter__()

    async def __aexit__(self, *exc):
        return await self._obj.__aexit__(*exc)

    def __await__(self):
        async def run():
            obj = self._factory()
            try:
                await obj.start()
            except BaseException:
                await obj.close(wait_synced=False)
                raise
            return obj

        return run().__await__()


def open_document(
    relay_url: str,
    doc_id: str | None = None,
    key: bytes | str | None = None,
    *,
    signing_key: SigningKeyPair | bytes | None = None,
    session_key: str | None = None,
    **options: Any,
) -> _Opener:
    """Open an encrypted document: ``async with open_document(url, doc_id, key) as d:``.

    ``d.doc`` is the live pycrdt ``Doc``; ``await d.synced()`` waits until the relay
    acknowledged every local change. A missing ``signing_key`` means a fresh one. Also
    works as ``d = await open_document(...)`` (then ``await d.close()``). ``relay_url`` may
    be a share link instead (then leave ``doc_id`` and ``key`` out), or an invitation link
    (``#link=``: joins as ``identity=``, issue 12).
    """
    from .links_client import LinkOpener, is_link_url

    if doc_id is None and key is None and is_link_url(relay_url):
        return LinkOpener(relay_url, None, {"session_key": session_key, **options})
    return _Opener(
        lambda: SecsyncDocument(
            relay_url,
            doc_id,
            key,
            signing_key=signing_key,
            session_key=session_key,
            **options,
        )
    )


def _key_bytes(pub_key: str) -> bytes:
    from ..protocol import b64decode

    return b64decode(pub_key, field="pubKey", length=32)


def _target(member: Any) -> Any:
    """A member given as an identity string, :class:`Identity`, :class:`MemberInfo`,
    :class:`UserIdentity`, ``SigningKeyPair`` or base64url public key."""
    if isinstance(member, (Identity, bytes)):
        return member
    if isinstance(member, MemberInfo):
        return member.pub_key
    if isinstance(member, UserIdentity):
        return Identity(member.pub_key, member.name)
    if isinstance(member, SigningKeyPair):
        return member.public_key_b64
    if isinstance(member, str):
        text = member.strip()
        if text.startswith("secsync-id:"):
            return parse_identity(text)  # IdentityError 730 / 731
        if len(text) == 43:
            return text  # a public key (checked by create_entry: 741)
        raise IdentityError(
            "expected an identity string (secsync-id:1:…) or a public key", field="identity"
        )
    raise TypeError(f"cannot name a member with {type(member).__name__}")


def create_document(
    relay_url: str,
    key: bytes | str | None = None,
    *,
    identity: Any = None,
    name: str | None = None,
    **options: Any,
) -> _Opener:
    """Create a new document with a membership log: the caller's identity (``identity=``,
    default: the identity file) becomes its owner; the document id is ``"m1_" + hash(root)``
    (``d.doc_id``); the root entry is sent to the relay before anything else. ``key``:
    the document key (default: a fresh one, ``d.key``). ``name``: the owner's display name
    in the log (default: the identity's)."""
    user = resolve_identity(identity)
    root, state = create_log(user.keypair, name=name if name is not None else user.name)
    doc_key = key if key is not None else generate_key()
    return _Opener(
        lambda: SecsyncDocument(
            relay_url,
            state.doc_id,
            doc_key,
            identity=user,
            log_root=root,
            **options,
        )
    )
