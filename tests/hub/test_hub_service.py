"""The relay as a JupyterHub service: every WebSocket is authenticated with a real Hub (tokens
and the service's OAuth cookie), users without the service's access scope are refused, and
neither the Hub, the relay nor a user's directory ever holds the notebook's plaintext."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest
import requests
import websockets
from websockets.exceptions import InvalidStatus

from secsync_jupyter import new_document_key, open_notebook
from secsync_jupyter.client import SyncFailed
from secsync_jupyter.protocol import generate_id

from ..client.util import until
from .conftest import MEMBERS, OUTSIDER, SERVICE, Hub, hub_files

pytestmark = pytest.mark.asyncio

CANARY = "CANARY-hub-5e0c1b-plaintext-must-stay-with-the-users"


def _cells(nb):
    return [(c.cell_type, c.source) for c in nb.cells]


async def _refusal(url: str, **kw) -> tuple[int, str]:
    """The HTTP status and body a WebSocket handshake to ``url`` is refused with."""
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, open_timeout=60, proxy=None, **kw):
            pass
    response = info.value.response
    return response.status_code, response.body.decode()


def _ws_url(hub: Hub, doc_id: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"sessionKey": "s", **params}.items())
    return f"{hub.relay_url}/{doc_id}?{query}"


async def _cookie_login(hub: Hub, user: str) -> tuple[requests.Session, requests.Response]:
    """Log in to the Hub, then do the service's OAuth dance as a browser would."""

    def dance():
        s = hub.login(user)
        r = s.get(
            f"{hub.url}/services/{SERVICE}/oauth_login",
            params={"next": f"/services/{SERVICE}/whoami"},
            timeout=60,
        )
        return s, r

    return await asyncio.to_thread(dance)


def _cookie_header(session: requests.Session) -> str:
    return "; ".join(
        f"{c.name}={c.value}" for c in session.cookies if c.name == f"service-{SERVICE}"
    )


async def test_two_hub_users_exchange_an_encrypted_notebook_through_the_hub(hub):
    alice, bob = [await asyncio.to_thread(hub.token, u) for u in MEMBERS]
    doc_id, key = generate_id(), new_document_key()
    async with open_notebook(hub.relay_url, doc_id, key, token=alice, open_timeout=60) as a:
        a.add_markdown_cell(f"# {CANARY} title")
        a.add_code_cell(f"print('{CANARY} from alice')")
        await a.synced(60)
        async with open_notebook(hub.relay_url, doc_id, key, token=bob, open_timeout=60) as b:
            assert _cells(b) == _cells(a)
            b.add_code_cell(f"x = '{CANARY} from bob'")
            b.cells[0].source = f"# {CANARY} title, edited by bob"
            await b.synced(60)
            await until(lambda: a.to_dict() == b.to_dict(), a, b, timeout=60)
            assert a.cells[0].source == f"# {CANARY} title, edited by bob"
            assert [s for _, s in _cells(a)][2] == f"x = '{CANARY} from bob'"
            assert a.errors == [] and b.errors == []
    # the relay knows who was there (the Hub user names), not what was written
    log = hub.log()
    assert f"Hub user alice connected to {doc_id} (token)" in log
    assert f"Hub user bob connected to {doc_id} (token)" in log
    stored = hub_files(hub)
    assert hub.relay_db in stored and hub.hub_db in stored
    assert doc_id.encode() in stored[hub.relay_db] + stored.get(
        hub.relay_db.with_name("relay.sqlite-wal"), b""
    )  # the notebook is in the relay's database, encrypted
    for path, data in stored.items():
        assert CANARY.encode() not in data, path
    assert CANARY not in log


async def test_a_hub_user_without_the_access_scope_is_refused(hub):
    carol = await asyncio.to_thread(hub.token, OUTSIDER)
    doc_id = generate_id()
    status, body = await _refusal(
        _ws_url(hub, doc_id), additional_headers={"Authorization": f"token {carol}"}
    )
    assert status == 403
    assert f"Hub user '{OUTSIDER}' has no access" in body
    assert f"access:services!service={SERVICE}" in body
    # the token in the URL gets the same answer, and the Python client fails at once with 403
    assert (await _refusal(_ws_url(hub, doc_id, token=carol)))[0] == 403
    with pytest.raises(SyncFailed) as info:
        await asyncio.wait_for(
            open_notebook(hub.relay_url, doc_id, new_document_key(), token=carol), 120
        )
    assert info.value.status == 403
    assert f"refused a Hub connection to {doc_id}: Hub user '{OUTSIDER}' has no access" in hub.log()


async def test_unauthenticated_connections_are_refused(hub):
    doc_id = generate_id()
    status, body = await _refusal(_ws_url(hub, doc_id))
    assert status == 401 and "not authenticated" in body
    for bad in ("not-a-hub-token", hub.admin_token):  # unknown token; a service is no user
        status, body = await _refusal(
            _ws_url(hub, doc_id), additional_headers={"Authorization": f"token {bad}"}
        )
        assert status in (401, 403), (status, body)
    with pytest.raises(SyncFailed) as info:
        await asyncio.wait_for(open_notebook(hub.relay_url, doc_id, new_document_key()), 120)
    assert info.value.status == 401
    # a member's token in ?token= is accepted (the same credentials the Hub takes)
    alice = await asyncio.to_thread(hub.token, MEMBERS[0])
    async with websockets.connect(_ws_url(hub, doc_id, token=alice), proxy=None, open_timeout=60):
        pass


async def test_the_service_oauth_cookie_authenticates_a_browser_session(hub):
    session, whoami = await _cookie_login(hub, "alice")
    # the redirects went Hub -> oauth_callback -> whoami, which knows alice by the cookie
    assert whoami.status_code == 200, (whoami.status_code, whoami.text)
    assert whoami.json() == {"name": "alice", "via": "cookie"}
    hops = [urlsplit(r.headers["Location"]).path for r in whoami.history]
    assert hops == [
        "/hub/api/oauth2/authorize",
        f"/services/{SERVICE}/oauth_callback",
        f"/services/{SERVICE}/whoami",
    ]
    cookie = _cookie_header(session)
    assert cookie, list(session.cookies)
    origin = hub.url
    bob = await asyncio.to_thread(hub.token, "bob")
    doc_id, key = generate_id(), new_document_key()
    headers = {"Cookie": cookie, "Origin": origin}
    async with (
        open_notebook(hub.relay_url, doc_id, key, headers=headers, open_timeout=60) as a,
        open_notebook(hub.relay_url, doc_id, key, token=bob, open_timeout=60) as b,
    ):
        a.add_code_cell("1 + 1")
        await a.synced(60)
        await until(lambda: _cells(b) == [("code", "1 + 1")], a, b, timeout=60)
    assert f"Hub user alice connected to {doc_id} (cookie)" in hub.log()
    # another site's page cannot ride on the cookie (cross-site WebSocket hijacking)
    status, body = await _refusal(
        _ws_url(hub, doc_id),
        additional_headers={"Cookie": cookie, "Origin": "http://evil.example"},
    )
    assert status == 403 and "cross-origin" in body
    # a forged or tampered cookie is no credential
    name, _, value = cookie.partition("=")
    status, _ = await _refusal(
        _ws_url(hub, doc_id), additional_headers={"Cookie": f"{name}={value[:-4]}AAAA"}
    )
    assert status == 401


async def test_the_oauth_dance_of_a_user_without_access_ends_in_403(hub):
    session, r = await _cookie_login(hub, OUTSIDER)
    # the Hub itself refuses to authorize the service for carol: no code, no cookie
    assert r.status_code == 403
    assert urlsplit(r.url).path == "/hub/api/oauth2/authorize"
    assert "You do not have permission to access" in r.text
    assert _cookie_header(session) == ""
    # and a token she got otherwise (her own API token) does not get her through whoami either
    carol = await asyncio.to_thread(hub.token, OUTSIDER)
    r = await asyncio.to_thread(
        requests.get,
        f"{hub.url}/services/{SERVICE}/whoami",
        headers={"Authorization": f"token {carol}"},
        timeout=60,
    )
    assert r.status_code == 403 and "has no access" in r.text


async def test_oauth_callback_rejects_a_state_of_another_browser(hub):
    def forged():
        s = hub.login("alice")
        return s.get(
            f"{hub.url}/services/{SERVICE}/oauth_callback",
            params={"code": "x", "state": "y"},
            timeout=60,
            allow_redirects=False,
        )

    r = await asyncio.to_thread(forged)
    assert r.status_code == 403 and "state" in r.text


async def test_oauth_login_never_sends_the_browser_off_the_hub(hub):
    def dance(next_url):
        s = hub.login("alice")
        return s.get(
            f"{hub.url}/services/{SERVICE}/oauth_login", params={"next": next_url}, timeout=60
        )

    for next_url in ("//evil.example/x", "http://evil.example/x", "/\\evil.example"):
        r = await asyncio.to_thread(dance, next_url)
        assert r.status_code == 200 and r.json()["name"] == "alice"
        assert urlsplit(r.url).path == f"/services/{SERVICE}/whoami", r.url
