"""Share links: a document's relay, id and key in one URL, the key in the fragment.

The format is described in ``docs/share-links.md``:

* relay inside Jupyter Server:
  ``http(s)://<host><base_url>secsync/open/<docId>[?relay=<ws(s) relay base>]#key=<b64url key>``
* standalone relay: ``ws(s)://<host>:<port>[/<prefix>]/<docId>#key=<b64url key>``

:func:`parse_share_link` is strict (it rejects anything else); :func:`format_share_link`
produces the canonical form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .protocol import DOC_ID_PATTERN, DOC_ID_RE, EncodingError, b64decode, b64encode

__all__ = ["DOC_ID_RE", "ShareLink", "ShareLinkError", "format_share_link", "parse_share_link"]

_OPEN = "secsync/open/"


class ShareLinkError(ValueError):
    """The text is not a valid share link."""


@dataclass(frozen=True)
class ShareLink:
    doc_id: str
    key: bytes = field(repr=False)
    #: the ws(s) relay base the client connects to (``<relay>/<docId>?sessionKey=…``)
    relay_url: str
    #: the Jupyter server's http(s) base URL for Jupyter-style links, else None
    server_url: str | None = None
    #: True when the link names a relay other than the Jupyter server's own
    explicit_relay: bool = False

    @property
    def key_b64(self) -> str:
        return b64encode(self.key)

    @property
    def websocket_url(self) -> str:
        return f"{self.relay_url}/{self.doc_id}"

    def __str__(self) -> str:
        return self.to_url()

    def to_url(self) -> str:
        return format_share_link(
            self.doc_id,
            self.key,
            relay=self.relay_url if (self.server_url is None or self.explicit_relay) else None,
            server_url=self.server_url,
        )


def _check_doc_id(doc_id: str) -> str:
    if not DOC_ID_RE.fullmatch(doc_id or ""):
        raise ShareLinkError(f"document id must match {DOC_ID_PATTERN}")
    return doc_id


def _check_relay(relay: str) -> str:
    parts = urlsplit(relay)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ShareLinkError("relay must be a ws:// or wss:// URL")
    if parts.username is not None or parts.password is not None:
        raise ShareLinkError("credentials are not allowed in a relay URL")
    if parts.query or parts.fragment:
        raise ShareLinkError("relay base must not have a query or fragment")
    return relay.rstrip("/")


def _parse_key(fragment: str) -> bytes:
    params = parse_qs(fragment, keep_blank_values=True, strict_parsing=False)
    values = params.get("key")
    if not values or len(values) != 1:
        raise ShareLinkError("the link has no #key=… fragment")
    try:
        return b64decode(values[0], field="key", length=32)
    except EncodingError as exc:
        raise ShareLinkError(f"invalid key: {exc.detail}")


def parse_share_link(link: str) -> ShareLink:
    """Parse a share link (either form); raises :class:`ShareLinkError`."""
    link = link.strip()
    parts = urlsplit(link)
    if parts.username is not None or parts.password is not None:
        raise ShareLinkError("credentials are not allowed in a share link")
    key = _parse_key(parts.fragment)
    if parts.scheme in ("http", "https"):
        if not parts.netloc:
            raise ShareLinkError("missing host")
        path = parts.path
        index = path.rfind("/" + _OPEN)
        if index < 0:
            raise ShareLinkError(f"a Jupyter share link has the path …/{_OPEN}<docId>")
        base_url = path[: index + 1]
        doc_id = _check_doc_id(unquote(path[index + 1 + len(_OPEN) :]))
        server_url = f"{parts.scheme}://{parts.netloc}{base_url}"
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(query) - {"relay"}
        if unknown:
            raise ShareLinkError(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        relays = query.get("relay")
        if relays:
            if len(relays) != 1:
                raise ShareLinkError("more than one relay")
            return ShareLink(doc_id, key, _check_relay(relays[0]), server_url, True)
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        relay = f"{ws_scheme}://{parts.netloc}{base_url}secsync"
        return ShareLink(doc_id, key, relay, server_url, False)
    if parts.scheme in ("ws", "wss"):
        if not parts.netloc:
            raise ShareLinkError("missing host")
        if parts.query:
            raise ShareLinkError("a relay link has no query")
        path = parts.path.rstrip("/") if parts.path.endswith("/") else parts.path
        prefix, _, last = path.rpartition("/")
        doc_id = _check_doc_id(unquote(last))
        relay = f"{parts.scheme}://{parts.netloc}{prefix}"
        return ShareLink(doc_id, key, relay, None, True)
    raise ShareLinkError("a share link starts with http(s):// or ws(s)://")


def format_share_link(
    doc_id: str,
    key: bytes,
    *,
    relay: str | None = None,
    server_url: str | None = None,
) -> str:
    """The share link of a document.

    With ``server_url`` (the Jupyter server's http(s) base URL, ``base_url`` included) the
    Jupyter form, plus ``?relay=`` when ``relay`` names another relay; otherwise the
    standalone form on ``relay`` (a ws(s) relay base).
    """
    _check_doc_id(doc_id)
    if len(key) != 32:
        raise ShareLinkError("the key must be 32 bytes")
    fragment = "#key=" + b64encode(bytes(key))
    if server_url is not None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ShareLinkError("server_url must be an http(s) URL")
        base = server_url if server_url.endswith("/") else server_url + "/"
        link = f"{base}{_OPEN}{doc_id}"
        if relay is not None:
            link += "?relay=" + quote(_check_relay(relay), safe="")
        return link + fragment
    if relay is None:
        raise ShareLinkError("give a relay or a server_url")
    return f"{_check_relay(relay)}/{doc_id}{fragment}"
