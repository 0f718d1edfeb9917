"""Invitation links in the Python client (issue 12): create, list, revoke, join.

A link URL is ``…/secsync/open/<docId>#link=<secret>``: the secret stays in the fragment. The
link is a member of kind *link* in the log (``add-link``: role viewer / editor, label,
optional expiry) with a lockbox of the current key. Whoever opens it connects *as the link*
(reader proof by the link identity), opens the link's lockbox, appends an ``add-member`` of
its **own** identity signed by the link plus a lockbox of the key sealed to itself, and then
reconnects as itself (:func:`join_link`). Revoking is ``remove-link`` (optionally a
``remove-member`` of everyone who joined through it) and one rotation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlencode

import websockets

from ..protocol import ProtocolError
from ..protocol.encoding import b64encode
from ..protocol.epochs import Keyring
from ..protocol.links import (
    create_link as core_create_link,
)
from ..protocol.links import (
    create_remove_link,
    format_fragment,
    link_keypair,
    parse_fragment,
)
from ..protocol.membership import (
    MembershipError,
    MembershipState,
    create_reader_proof,
    extend_log,
    parse_entry,
)
from .identity_file import UserIdentity, resolve_identity
from .link_join import plan_join, plan_on
from .tokens import choose_token, is_loopback

__all__ = [
    "LinkInfo",
    "NewLinkInfo",
    "create_link",
    "is_link_url",
    "join_link",
    "link_url",
    "list_links",
    "revoke_link",
]

MAX_RETRIES = 5


def _err(code: int | str, detail: str, field: str | None = None) -> MembershipError:
    code = code if isinstance(code, str) else f"SECSYNC_ERROR_{code}"
    return MembershipError(detail, code=code, field=field)


class LinkInfo(NamedTuple):
    """A link of the verified log (``nb.links``)."""

    pub_key: str
    role: str
    label: str
    added_by: str
    at: int
    expires_at: int | None
    #: the ``remove-link`` entry's seq (``None``: not revoked)
    removed: int | None
    #: not revoked and not expired now
    live: bool
    #: public keys of the current members who joined through it
    joined: tuple[str, ...]


class NewLinkInfo(NamedTuple):
    """What :func:`create_link` returns: the URL (holds the secret: share it privately)."""

    url: str
    pub_key: str
    role: str
    label: str
    expires_at: int | None

    def __str__(self) -> str:
        return self.url


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------- URLs


def is_link_url(url: Any) -> bool:
    """A share URL whose fragment carries ``link=``."""
    return isinstance(url, str) and "#" in url and "link=" in url.split("#", 1)[1]


def _split_link_url(url: str) -> tuple[str, str, bytes, bytes | None]:
    """(relay URL, document id, link secret, key or None) of a link URL; 770 for a bad
    fragment, ``ShareLinkError`` for the rest."""
    from ..sharelink import parse_share_link

    base, _, fragment = url.strip().partition("#")
    parsed = parse_fragment(fragment)
    if parsed.link_secret is None:
        raise _err(770, "the URL has no #link= fragment", "link")
    share = parse_share_link(base + "#key=" + b64encode(bytes(32)))
    return share.relay_url, share.doc_id, parsed.link_secret, parsed.key


def link_url(document: Any, secret: bytes) -> str:
    """The link URL of ``secret`` for ``document`` (the form its share link has)."""
    from ..sharelink import format_share_link

    relay = document.relay_url
    if relay.startswith(("ws://", "wss://")) and relay.endswith("/secsync"):
        url = format_share_link(document.doc_id, bytes(32), server_url="http" + relay[2:-7])
    else:
        url = format_share_link(document.doc_id, bytes(32), relay=relay)
    return url.split("#", 1)[0] + format_fragment(link_secret=secret)


# ----------------------------------------------------------------- appending


async def _append(
    document: Any,
    build: Callable[[MembershipState], tuple[Any, list[Any] | None]],
    what: str,
    timeout: float | None,
) -> MembershipState:
    """Append the entry ``build(state)`` makes (with its lockboxes) on the current head; a
    lost race (707 / 709) is rebuilt on the verified new head."""

    engine = document.engine

    async def run() -> MembershipState:
        for _ in range(MAX_RETRIES + 1):

            def ready() -> bool:
                return engine.ready_to_append

            while not ready():
                await document._wait_for(ready, None)
            entry, lockboxes = build(engine.log)
            document._entry_results.pop(entry.hash, None)
            engine.append_entry(entry, lockboxes=lockboxes)
            document._pump()
            h = entry.hash
            await document._wait_for(lambda h=h: h in document._entry_results, None)
            code = document._entry_results.pop(h)
            if engine.log is not None and h in engine.log.hashes:
                return engine.log
            if code is None:
                await document.loaded()
                if engine.log is not None and h in engine.log.hashes:
                    return engine.log
            elif code not in ("SECSYNC_ERROR_707", "SECSYNC_ERROR_709"):
                raise _err(code, f"the relay refused the {what} entry", "entry")
        raise _err(707, f"the {what} entry lost {MAX_RETRIES + 1} races in a row")

    return await asyncio.wait_for(run(), timeout)


# --------------------------------------------------------------- create / list


async def create_link(
    document: Any,
    role: str = "viewer",
    label: str = "link",
    *,
    expires_at: int | float | None = None,
    timeout: float | None = 60.0,
) -> NewLinkInfo:
    """An admin adds an invitation link (``add-link`` + the link's lockbox of the current
    epoch). ``expires_at``: ms since the Unix epoch (or a ``datetime``). Returns the URL."""
    if hasattr(expires_at, "timestamp"):
        expires_at = int(expires_at.timestamp() * 1000)  # type: ignore[union-attr]
    elif expires_at is not None:
        expires_at = int(expires_at)
    epochs = document.engine.epochs
    made: list[Any] = []

    def build(state: MembershipState):
        key = (
            epochs.key(state.epoch)
            if epochs is not None and state.epoch in epochs.keyring
            else None
        )
        if key is None:
            raise _err(766, f"we hold no key of the current epoch {state.epoch}", "epoch")
        new = core_create_link(
            state, document.signing_key, role, label, expires_at=expires_at, epoch_key=key
        )
        made[:] = [new]
        return new.entry, [new.lockbox]

    await _append(document, build, "add-link", timeout)
    new = made[0]
    return NewLinkInfo(link_url(document, new.secret), new.pub_key, role, label, expires_at)


def list_links(document: Any) -> list[LinkInfo]:
    """Every link of the verified log (revoked ones too), oldest first, with who joined."""
    state = document.engine.log
    if state is None:
        return []
    now = _now_ms()
    out = []
    for pub, link in state.links.items():
        joined = tuple(sorted(k for k, m in state.members.items() if m.via == pub))
        out.append(
            LinkInfo(
                pub,
                link.role,
                link.label,
                link.added_by,
                link.at,
                link.expires_at,
                link.removed,
                link.live(now),
                joined,
            )
        )
    return sorted(out, key=lambda li: (li.at, li.pub_key))


def _link_pub(link: Any) -> str:
    if isinstance(link, (LinkInfo, NewLinkInfo)):
        return link.pub_key
    if isinstance(link, str) and is_link_url(link):
        return link_keypair(_split_link_url(link)[2]).public_key_b64
    if isinstance(link, str) and len(link.strip()) == 43:
        return link.strip()
    raise TypeError("name a link by its LinkInfo, URL or public key")


async def revoke_link(
    document: Any,
    link: Any,
    *,
    remove_joined: bool = False,
    timeout: float | None = 60.0,
) -> MembershipState:
    """``remove-link`` (nobody can join through it again), with ``remove_joined`` a
    ``remove-member`` of everyone who joined through it, then one rotation."""
    from .epochs_client import rotate_key

    pub = _link_pub(link)
    await _append(
        document,
        lambda state: (create_remove_link(state, document.signing_key, pub)[0], None),
        "remove-link",
        timeout,
    )
    if remove_joined:
        state = document.engine.log
        for member in [k for k, m in state.members.items() if m.via == pub]:
            await document.remove_member(member, timeout=timeout, rotate=False)
    return await rotate_key(document, timeout=timeout)


# ---------------------------------------------------------------------- join


async def _recv(ws: Any, timeout: float) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    if not isinstance(frame, dict):
        raise ProtocolError("the relay sent a frame that is not a JSON object")
    if frame.get("type") in ("unauthorized", "document-not-found", "document-error"):
        code = frame.get("code") if isinstance(frame.get("code"), str) else "SECSYNC_ERROR_722"
        raise _err(code, f"the relay refused the link: {frame.get('reason') or frame['type']}")
    return frame


async def join_link(
    url: str,
    identity: Any = None,
    *,
    name: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    trusted_origins: Any = None,
    allow_insecure_token: bool = False,
    timeout: float = 10.0,
    session_key: str | None = None,
) -> tuple[str, str, Keyring, UserIdentity]:
    """Join a document through a link URL: connect as the link, open its lockbox, append the
    ``add-member`` of ``identity`` signed by the link (+ our lockbox). Returns (relay URL,
    document id, keyring, identity) for opening it as ourselves. Already a member: nothing is
    appended. Raises ``MembershipError`` (754 expired, 755 revoked, 770 bad fragment…)."""
    user = resolve_identity(identity)
    relay_url, doc_id, secret, _key = _split_link_url(url)
    link = link_keypair(secret)
    decision = choose_token(
        relay_url, token, trusted_origins=trusted_origins, allow_insecure_token=allow_insecure_token
    )
    hdrs = dict(headers or {})
    if decision.token is not None:
        hdrs["Authorization"] = f"token {decision.token}"
    params = {"sessionKey": session_key or "secsync-jupyter-link", "mode": "complete"}
    ws_url = f"{relay_url.rstrip('/')}/{doc_id}?{urlencode(params)}"
    async with websockets.connect(
        ws_url,
        open_timeout=timeout,
        proxy=None if is_loopback(ws_url) else True,
        additional_headers=hdrs or None,
        compression=None,
        max_size=None,
    ) as ws:
        frame = await _recv(ws, timeout)
        if frame.get("type") != "reader-challenge" or not isinstance(frame.get("nonce"), str):
            raise _err(706, "the relay did not challenge the link (no membership support)")
        await ws.send(json.dumps(create_reader_proof(link, doc_id, frame["nonce"])))
        while frame.get("type") != "document":
            frame = await _recv(ws, timeout)
        me = user.keypair.public_key_b64
        plan = plan_join(frame, link, me, doc_id, _now_ms(), name=name or user.name)
        if not plan.joined:  # joined before: our keys come when we connect as ourselves
            return relay_url, doc_id, Keyring(), user
        state, keyring = plan.state, plan.keyring
        for _ in range(MAX_RETRIES + 1):
            if plan.entry is None:  # added meanwhile (by someone else)
                return relay_url, doc_id, Keyring(), user
            entry, box = plan.entry, plan.lockbox
            await ws.send(
                json.dumps(
                    {"type": "log-entry", "entry": entry.to_json(), "lockboxes": [box.to_json()]}
                )
            )
            while True:
                answer = await _recv(ws, timeout)
                kind = answer.get("type")
                if kind == "log-entry-saved" and answer.get("hash") == entry.hash:
                    return relay_url, doc_id, keyring, user
                if kind == "log-entry":  # someone else's entry: follow the log
                    state = extend_log(state, [parse_entry(answer.get("entry"))])
                    continue
                if kind == "lockbox":
                    try:
                        keyring.add_from_lockbox(state, link, answer.get("lockbox"))
                    except MembershipError:
                        pass
                    continue
                if kind == "log-entry-failed":
                    code = (
                        answer.get("code")
                        if isinstance(answer.get("code"), str)
                        else "SECSYNC_ERROR_700"
                    )
                    log = answer.get("log")
                    if code in ("SECSYNC_ERROR_707", "SECSYNC_ERROR_709") and isinstance(log, list):
                        fresh = [e for e in log if parse_entry(e).seq > state.head.seq]
                        state = extend_log(state, fresh)
                        plan = plan_on(state, keyring, link, me, _now_ms(), name=name or user.name)
                        break  # rebuild on the new head
                    raise _err(code, f"the relay refused the join: {answer.get('reason') or code}")
        raise _err(707, "the join lost too many races")


async def open_link(url: str, identity: Any = None, *, opener: Callable[..., Any], **options: Any):
    """Join through ``url`` and open the document as ourselves with ``opener`` (e.g.
    ``SecsyncDocument``); used by ``open_document`` / ``open_notebook`` with a link URL."""
    join_opts = {
        k: options[k]
        for k in ("token", "headers", "trusted_origins", "allow_insecure_token")
        if k in options
    }
    from .epochs_client import KeyringFile, default_keyring_file

    user = resolve_identity(identity)
    relay_url, doc_id, _secret, _key = _split_link_url(url)
    where = options.get("keyring_file")
    store = (
        default_keyring_file(user.path)
        if where is None
        else (KeyringFile(where) if where is not False else None)
    )
    if store is not None and len(store.load(doc_id)[0]):
        # joined before (our keys are kept): open as ourselves, the link is not needed
        return opener(relay_url, doc_id, None, identity=user, keyring=Keyring(), **options)
    relay_url, doc_id, keyring, user = await join_link(url, user, **join_opts)
    return opener(relay_url, doc_id, None, identity=user, keyring=keyring, **options)


class LinkOpener:
    """``open_document(link_url, identity=…)`` / ``open_notebook(…)`` with a ``#link=`` URL:
    ``await`` it or use ``async with``; joins first, then opens as ourselves."""

    def __init__(self, url: str, wrap: Callable[[Any], Any] | None, options: dict[str, Any]):
        self.url, self.wrap, self.options = url, wrap, dict(options)
        self._obj: Any = None

    async def _open(self) -> Any:
        from .document import SecsyncDocument

        identity = self.options.pop("identity", None)
        document = await open_link(self.url, identity, opener=SecsyncDocument, **self.options)
        obj = self.wrap(document) if self.wrap is not None else document
        try:
            await document.start()
        except BaseException:
            await document.close(wait_synced=False)
            raise
        return obj

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self):
        self._obj = await self._open()
        return self._obj

    async def __aexit__(self, *exc):
        await self._obj.close()
