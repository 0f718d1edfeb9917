"""Where the Python client may send a Jupyter token (sans-IO: URLs in, a decision out).

The relay inside Jupyter Server needs the server's token; a kernel gets it from the caller
(``token=``) or from the ``JUPYTER_TOKEN`` environment variable. A share link is untrusted
input (anyone can send one), so the token must not follow it to an arbitrary host:

* ``token=`` (the caller said so) goes to the relay the caller named, but never over plain
  ``ws://`` to a non-loopback host (anyone on the path could read it) unless
  ``allow_insecure_token=True``;
* ``JUPYTER_TOKEN`` goes only to a Jupyter relay (URL path ending in ``/secsync``) on a
  loopback address (the kernel's own server) or on an origin the user named as trusted
  (``trusted_origins=`` or the ``SECSYNC_TRUSTED_ORIGINS`` environment variable), and over
  ``wss://`` unless the host is loopback (or ``allow_insecure_token=True``). Anywhere else it
  is withheld, and the reason is kept for the error message if the server then refuses.

Cross-origin redirects never carry it: ``websockets`` strips ``Authorization`` then, and
refuses a ``wss://`` to ``ws://`` downgrade.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "TOKEN_ENV",
    "TRUSTED_ORIGINS_ENV",
    "Origin",
    "TokenDecision",
    "TokenPolicyError",
    "choose_token",
    "is_jupyter_relay",
    "is_loopback",
    "parse_origins",
]

TOKEN_ENV = "JUPYTER_TOKEN"
TRUSTED_ORIGINS_ENV = "SECSYNC_TRUSTED_ORIGINS"

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_SECURE = {"https", "wss"}


class TokenPolicyError(ValueError):
    """A token would go where it must not (e.g. plain ``ws://`` to another host), or a
    trusted origin is malformed."""


@dataclass(frozen=True)
class Origin:
    """An origin with ``http``/``ws`` (and ``https``/``wss``) taken as the same scheme."""

    secure: bool
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"


def _host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only "localhost" is known to be this machine
        return False


def is_loopback(url: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.0/8``, ``::1``) only."""
    return _is_loopback_host(_host_of(url))


def is_jupyter_relay(url: str) -> bool:
    """The relay inside Jupyter Server (``ws(s)://host<base_url>secsync``)."""
    return urlsplit(url).path.rstrip("/").endswith("/secsync")


def _origin(url: str, *, what: str) -> Origin:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TokenPolicyError(f"{what}: {url!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise TokenPolicyError(
            f"{what}: {url!r} is not an origin (expected https://host[:port] or wss://…)"
        )
    return Origin(scheme in _SECURE, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def parse_origins(
    value: str | Iterable[str] | None, *, what: str = "trusted origin"
) -> set[Origin]:
    """Origins from a comma/space separated string or an iterable of URLs.

    Each entry is ``scheme://host[:port]`` (``http``, ``https``, ``ws`` or ``wss``), with no
    path, query, fragment or credentials; a malformed entry raises :class:`TokenPolicyError`.
    """
    if value is None:
        return set()
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else list(value)
    origins = set()
    for item in items:
        if not isinstance(item, str):
            raise TokenPolicyError(f"{what}: {item!r} is not a string")
        if not item.strip():
            continue
        parts = urlsplit(item.strip())
        if parts.username is not None or parts.password is not None:
            raise TokenPolicyError(f"{what}: {item!r} must not contain credentials")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise TokenPolicyError(
                f"{what}: {item!r} is not an origin (no path, query or fragment:"
                " https://host[:port])"
            )
        origins.add(_origin(item, what=what))
    return origins


@dataclass(frozen=True)
class TokenDecision:
    """The token to send on one connection (``None``: none) and where it came from."""

    token: str | None
    #: ``"argument"`` (``token=``), ``"environment"`` (``JUPYTER_TOKEN``) or ``None``
    source: str | None
    #: why ``JUPYTER_TOKEN`` was not sent (for the error message if the server refuses)
    withheld: str | None = None


def choose_token(
    url: str,
    token: str | None = None,
    *,
    trusted_origins: str | Iterable[str] | None = None,
    allow_insecure_token: bool = False,
    environ: Mapping[str, str] | None = None,
) -> TokenDecision:
    """Decide which token (if any) a connection to ``url`` carries; see the module doc.

    Raises :class:`TokenPolicyError` when ``token`` would go over plain ``ws://`` to a
    non-loopback host (and ``allow_insecure_token`` is false), or when a trusted origin
    (argument or ``SECSYNC_TRUSTED_ORIGINS``) is malformed.
    """
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    secure = parts.scheme.lower() in _SECURE
    loopback = is_loopback(url)
    host = parts.hostname or "?"
    if token is not None:
        if token and not secure and not loopback and not allow_insecure_token:
            raise TokenPolicyError(
                f"refusing to send the Jupyter token over plain {parts.scheme}:// to {host!r}"
                " (anyone on the network could read it): use https:// / wss://, or pass"
                " allow_insecure_token=True if this network is trusted"
            )
        return TokenDecision(token or None, "argument" if token else None)
    trusted = parse_origins(environ.get(TRUSTED_ORIGINS_ENV), what=TRUSTED_ORIGINS_ENV)
    trusted |= parse_origins(trusted_origins, what="trusted_origins")
    env_token = environ.get(TOKEN_ENV) or None
    if env_token is None or not is_jupyter_relay(url):
        return TokenDecision(None, None)
    if loopback:
        return TokenDecision(env_token, "environment")
    origin = _origin(url, what="relay URL")
    if origin not in trusted:
        return TokenDecision(
            None,
            None,
            f"{TOKEN_ENV} was not sent to {origin}: it is neither a loopback address nor a"
            f" trusted origin (pass token=…, or add the origin to {TRUSTED_ORIGINS_ENV} or"
            " trusted_origins=)",
        )
    if not secure and not allow_insecure_token:
        return TokenDecision(
            None,
            None,
            f"{TOKEN_ENV} was not sent to {origin}: a token never goes over plain ws:// to"
            " another host (use https/wss, or allow_insecure_token=True)",
        )
    return TokenDecision(env_token, "environment")
