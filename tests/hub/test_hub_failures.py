"""The relay in Hub mode when the Hub cannot answer, or the check itself breaks: the handshake
gets a clear HTTP error at once, never a hang (no JupyterHub process needed)."""

from __future__ import annotations

import socket

import pytest
import pytest_asyncio
import websockets
from websockets.exceptions import InvalidStatus

from secsync_jupyter.relay import Relay
from secsync_jupyter.relay.hub import HubServiceAuth
from secsync_jupyter.relay.standalone import StandaloneRelay
from secsync_jupyter.relay.store import store_from_url

pytestmark = pytest.mark.asyncio

PREFIX = "/services/secsync-relay/"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _hub_auth():
    from jupyterhub.services.auth import HubOAuth

    return HubOAuth(
        api_url=f"http://127.0.0.1:{_closed_port()}/hub/api",  # no Hub there
        api_token="service-token",
        oauth_client_id="service-secsync-relay",
        base_url=PREFIX,
        access_scopes={"access:services!service=secsync-relay"},
    )


async def _refused(url: str, **kw) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, open_timeout=60, proxy=None, **kw):
            pass
    return info.value.response.status_code, info.value.response.body.decode()


@pytest_asyncio.fixture
async def hub_relay(tmp_path):
    hub = HubServiceAuth(_hub_auth(), cookie_secret=b"k" * 32)
    server = StandaloneRelay(Relay(store_from_url(str(tmp_path / "r.sqlite"))), hub=hub)
    port = await server.start("127.0.0.1", 0)
    yield server, f"ws://127.0.0.1:{port}{PREFIX}"
    await server.stop(timeout=2)


async def test_an_unreachable_hub_is_a_503_not_a_hang(hub_relay):
    _, base = hub_relay
    status, body = await _refused(
        f"{base}doc?sessionKey=s", additional_headers={"Authorization": "token abc"}
    )
    assert status == 503 and "cannot check the credentials with the Hub" in body
    # without credentials the Hub is not asked at all
    status, _ = await _refused(f"{base}doc?sessionKey=s")
    assert status == 401


async def test_a_failing_check_is_a_500_and_the_relay_goes_on(hub_relay, monkeypatch):
    server, base = hub_relay

    async def broken(request, query_string):
        raise RuntimeError("bug")

    monkeypatch.setattr(server.hub, "authenticate", broken)
    status, body = await _refused(f"{base}doc?sessionKey=s")
    assert status == 500 and body == "internal error\n"
    monkeypatch.undo()
    assert (await _refused(f"{base}doc?sessionKey=s"))[0] == 401
    # the base path is the service prefix: anything else is not the relay
    assert (await _refused(base.replace(PREFIX, "/other/") + "doc?sessionKey=s"))[0] == 404
