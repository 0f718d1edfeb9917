"""The standalone relay as a JupyterHub service (``secsync-relay --auth hub``).

The Hub starts the relay as a managed service and its proxy forwards
``/services/<name>/…`` to it. Every WebSocket is authenticated with the Hub
(:class:`jupyterhub.services.auth.HubOAuth`):

* a Hub API token in ``Authorization: token …`` (or ``bearer``) or in ``?token=`` (the Python
  client, a kernel, a script), or
* the service's OAuth cookie (a browser page): ``GET <prefix>oauth_login?next=…`` starts the
  Hub's OAuth flow (PKCE, a state cookie bound to this browser), the Hub sends the browser back
  to ``<prefix>oauth_callback``, which swaps the code for a token and keeps it in a signed,
  HttpOnly cookie on the service's path. A WebSocket carrying that cookie must come from the
  relay's own origin (``Origin`` host = ``Host``): another site cannot ride on the cookie.

The Hub answers who owns the token and with which scopes; a user without the service's access
scope (``JUPYTERHUB_OAUTH_ACCESS_SCOPES``, i.e. ``access:services!service=<name>``) is refused
with HTTP 403, a connection without valid credentials with HTTP 401. The Hub user's name is the
connection's identity (the relay's log and access policy see it). ``<prefix>whoami`` answers the
cookie's user as JSON (the labextension uses it to know whether the OAuth dance is needed).

The Hub gives a managed service its configuration in the environment: ``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_API_URL``, ``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_SERVICE_URL``,
``JUPYTERHUB_CLIENT_ID``, ``JUPYTERHUB_OAUTH_CALLBACK_URL``, ``JUPYTERHUB_OAUTH_ACCESS_SCOPES``.
The cookie signing secret is ``SECSYNC_RELAY_COOKIE_SECRET`` (hex, for several relay
processes behind one name) or random per process (a restart only repeats the OAuth dance).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

log = logging.getLogger("secsync_jupyter.relay.hub")

#: what a managed service gets from the Hub and the relay cannot work without
REQUIRED_ENV = (
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_CLIENT_ID",
)
COOKIE_SECRET_ENV = "SECSYNC_RELAY_COOKIE_SECRET"
#: the OAuth cookie (an access token) is accepted for this many days after it was set
COOKIE_MAX_AGE_DAYS = 14
#: seconds a user model answered by the Hub is reused for the same token
CACHE_SECONDS = 60


class HubConfigError(ValueError):
    """The relay was started in Hub mode without what the Hub gives a managed service."""


@dataclass(frozen=True)
class HubDecision:
    """The answer to one WebSocket handshake: ``status`` 0 lets ``user`` in."""

    status: int
    user: str | None = None
    reason: str = ""
    #: how the credentials came: "token" or "cookie"
    via: str | None = None


def service_address(environ=None) -> tuple[str | None, int | None]:
    """Host and port from ``JUPYTERHUB_SERVICE_URL`` (where the Hub's proxy sends requests)."""
    url = (environ if environ is not None else os.environ).get("JUPYTERHUB_SERVICE_URL")
    if not url:
        return None, None
    parts = urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


class HubServiceAuth:
    """Hub authentication for the standalone relay's handshakes and its few HTTP routes."""

    def __init__(self, hub_auth=None, *, cookie_secret: bytes | None = None):
        if hub_auth is None:
            missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
            if missing:
                raise HubConfigError(
                    "--auth hub: run the relay as a JupyterHub service (c.JupyterHub.services"
                    f"); the Hub's environment is missing: {', '.join(missing)}"
                )
            from jupyterhub.services.auth import HubOAuth

            hub_auth = HubOAuth(cache_max_age=CACHE_SECONDS)
        self.auth = hub_auth
        #: the service's URL prefix, e.g. ``/services/secsync-relay/``
        self.prefix = hub_auth.base_url
        self.scopes = set(hub_auth.access_scopes)
        if not self.scopes:
            raise HubConfigError(
                "--auth hub: no access scope for this service (JUPYTERHUB_OAUTH_ACCESS_SCOPES)"
            )
        if cookie_secret is None:
            hex_secret = os.environ.get(COOKIE_SECRET_ENV, "")
            try:
                cookie_secret = bytes.fromhex(hex_secret) if hex_secret else os.urandom(32)
            except ValueError:
                raise HubConfigError(f"{COOKIE_SECRET_ENV} must be hexadecimal")
        if len(cookie_secret) < 16:
            raise HubConfigError(f"{COOKIE_SECRET_ENV} must be at least 16 bytes (32 hex digits)")
        self.cookie_secret = cookie_secret
        self._routes = {
            self.prefix + "oauth_callback": self._oauth_callback,
            self.prefix + "oauth_login": self._oauth_login,
            self.prefix + "whoami": self._whoami,
        }

    # ---------------------------------------------------------------- cookies
    @property
    def cookie_name(self) -> str:
        return self.auth.cookie_name

    @property
    def state_cookie_name(self) -> str:
        return self.auth.state_cookie_name

    def _cookies(self, request: Request) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for header in request.headers.get_all("Cookie"):
            try:
                jar.load(header)
            except CookieError:
                continue
        return {name: morsel.value for name, morsel in jar.items()}

    def _signed_cookie(self, request: Request, name: str, max_age_days: float) -> str | None:
        from tornado.web import decode_signed_value

        value = self._cookies(request).get(name)
        if not value:
            return None
        decoded = decode_signed_value(self.cookie_secret, name, value, max_age_days=max_age_days)
        return decoded.decode("ascii", "replace") if decoded else None

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        from tornado.web import create_signed_value

        signed = create_signed_value(self.cookie_secret, name, value).decode("ascii")
        attributes = f"; Path={self.auth.cookie_path}; HttpOnly; SameSite=Lax; Max-Age={max_age}"
        if self.auth.cookie_host_prefix_enabled or _public_https():
            attributes += "; Secure"
        response.headers["Set-Cookie"] = f"{name}={signed}{attributes}"

    def _clear_cookie(self, response: Response, name: str) -> None:
        response.headers["Set-Cookie"] = f"{name}=; Path={self.auth.cookie_path}; Max-Age=0"

    # ---------------------------------------------------------------- WebSocket handshakes
    def _token(self, request: Request, query_string: str) -> tuple[str | None, str | None]:
        """The credentials of a handshake: (token, "token" | "cookie")."""
        token = (parse_qs(query_string).get("token") or [""])[0]
        if not token:
            match = self.auth.auth_header_pat.match(request.headers.get("Authorization", ""))
            if match:
                token = match.group(1).strip()
        if token:
            return token, "token"
        token = self._signed_cookie(request, self.cookie_name, COOKIE_MAX_AGE_DAYS)
        return (token, "cookie") if token else (None, None)

    async def authenticate(self, request: Request, query_string: str) -> HubDecision:
        """Ask the Hub who is behind this handshake and whether they may use the relay."""
        token, via = self._token(request, query_string)
        if token is None:
            return HubDecision(
                401,
                reason="not authenticated: log in to JupyterHub (the service's OAuth cookie, "
                f"see {self.prefix}oauth_login) or send a Hub API token "
                "(Authorization: token …)\n",
            )
        if via == "cookie" and not _same_origin(request):
            return HubDecision(
                403,
                reason="cross-origin WebSocket with the service's cookie refused "
                f"(Origin {request.headers.get('Origin')!r} is not this relay's origin)\n",
            )
        model = await self._user_for_token(token)
        if isinstance(model, HubDecision):
            return model
        if model is None:
            return HubDecision(401, reason="the Hub does not know this token (expired?)\n")
        name = model.get("name") or "?"
        if model.get("kind", "user") != "user":
            return HubDecision(403, reason=f"{name!r} is not a Hub user\n")
        if not self.has_access(model):
            wanted = " or ".join(sorted(self.scopes))
            return HubDecision(
                403,
                user=name,
                reason=f"Hub user {name!r} has no access to this relay (needs the scope "
                f"{wanted})\n",
            )
        return HubDecision(0, user=name, via=via)

    def has_access(self, model: dict) -> bool:
        from jupyterhub.services.auth import check_scopes

        return bool(check_scopes(self.scopes, set(model.get("scopes") or ())))

    async def _user_for_token(self, token: str):
        try:
            return await self.auth.user_for_token(token, sync=False)
        except Exception as exc:
            log.warning("cannot check a token with the Hub: %s", exc)
            return HubDecision(503, reason="cannot check the credentials with the Hub now\n")

    # ---------------------------------------------------------------- HTTP routes
    def handles(self, path: str) -> bool:
        return path in self._routes

    async def respond(self, ws: ServerProtocol, request: Request) -> Response:
        path, _, query_string = request.path.partition("?")
        args = {k: v[0] for k, v in parse_qs(query_string).items()}
        try:
            return await self._routes[path](ws, request, args)
        except Exception:
            log.exception("Hub OAuth route %s failed", path)
            return ws.reject(500, "internal error\n")

    async def _oauth_login(self, ws, request: Request, args: dict[str, str]) -> Response:
        """Start the Hub's OAuth flow; the browser comes back to ``oauth_callback``."""
        next_url = _local_url(args.get("next", "")) or self.prefix + "whoami"
        verifier, challenge, method = self.auth.generate_pkce_code_challenge()
        state = self.auth.generate_state(next_url, code_verifier=verifier)
        location = (
            self.auth.login_url
            + "&"
            + urlencode(
                {"state": state, "code_challenge": challenge, "code_challenge_method": method}
            )
        )
        response = _redirect(ws, location)
        # the state travels in the signed cookie with its PKCE verifier and next URL: the
        # callback may reach another relay process (--processes) than this one
        self._set_cookie(
            response, self.state_cookie_name, json.dumps([state, verifier, next_url]), 600
        )
        return response

    async def _oauth_callback(self, ws, request: Request, args: dict[str, str]) -> Response:
        if args.get("error"):
            return ws.reject(400, f"OAuth error: {args.get('error_description', args['error'])}\n")
        code, state = args.get("code"), args.get("state")
        if not code or not state:
            return ws.reject(400, "OAuth callback without code or state: log in again\n")
        cookie_state = self._signed_cookie(request, self.state_cookie_name, 600 / 86400)
        try:
            saved_state, verifier, next_url = json.loads(cookie_state or "null")
        except (TypeError, ValueError):
            saved_state = verifier = next_url = None
        if saved_state != state:
            return ws.reject(403, "OAuth state does not match this browser: log in again\n")
        self.auth.clear_oauth_state(state)
        if verifier is None:
            return ws.reject(403, "OAuth state expired: log in again\n")
        try:
            token = await self.auth.token_for_code(code, code_verifier=verifier, sync=False)
        except Exception as exc:
            log.warning("OAuth code exchange with the Hub failed: %s", exc)
            return ws.reject(403, "the Hub refused the OAuth code: log in again\n")
        response = _redirect(ws, _local_url(next_url) or self.prefix + "whoami")
        self._clear_cookie(response, self.state_cookie_name)
        self._set_cookie(response, self.cookie_name, token, COOKIE_MAX_AGE_DAYS * 86400)
        return response

    async def _whoami(self, ws, request: Request, args: dict[str, str]) -> Response:
        decision = await self.authenticate(request, "")
        if decision.status:
            return ws.reject(decision.status, decision.reason)
        body = json.dumps({"name": decision.user, "via": decision.via}) + "\n"
        response = ws.reject(200, body)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        response.headers["Cache-Control"] = "no-store"
        return response


def _redirect(ws: ServerProtocol, location: str) -> Response:
    response = ws.reject(302, f"see {location}\n")
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response


def _local_url(url: str) -> str | None:
    """``url`` if it is a path on this origin (no open redirect), else None."""
    if not url.startswith("/") or url.startswith("//") or "\\" in url:
        return None
    parts = urlsplit(url)
    return url if not parts.scheme and not parts.netloc else None


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser: it cannot have been made to send the cookie
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("Host", "").lower()


def _public_https() -> bool:
    return urlsplit(os.environ.get("JUPYTERHUB_PUBLIC_URL", "")).scheme == "https"
