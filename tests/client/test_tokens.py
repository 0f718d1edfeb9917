"""Where the Jupyter token may go (issue 9, section 3).

``token=`` goes where the caller said, never over plain ``ws://`` to another host unless
allowed; ``JUPYTER_TOKEN`` goes only to a Jupyter relay on loopback or on a trusted origin,
over ``wss://``. The decision table is checked sans-IO; then a server on loopback that plays
``evil.example`` / ``hub.example`` (through the proxy of the environment, TLS included)
records what a real connection attempt sends.
"""

from __future__ import annotations

import asyncio

import pytest

from secsync_jupyter import new_document_key, open_document
from secsync_jupyter.client import SyncFailed
from secsync_jupyter.client.tokens import (
    TokenPolicyError,
    choose_token,
    is_loopback,
    parse_origins,
)
from secsync_jupyter.protocol import generate_id
from secsync_jupyter.sharelink import format_share_link

from .impostor import Impostor, make_certificate

ENV = {"JUPYTER_TOKEN": "env-secret"}


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:8888/secsync",
        "ws://127.5.6.7:8888/user/ada/secsync",
        "ws://localhost:8888/secsync",
        "ws://[::1]:8888/secsync/",
    ],
)
def test_environment_token_goes_to_a_jupyter_relay_on_loopback(url):
    decision = choose_token(url, environ=ENV)
    assert (decision.token, decision.source, decision.withheld) == (
        "env-secret",
        "environment",
        None,
    )


@pytest.mark.parametrize(
    "url",
    [
        "wss://evil.example/secsync",
        "ws://evil.example/secsync",
        "wss://127.0.0.1.evil.example/secsync",  # looks like loopback, is a name
        "wss://localhost.evil.example/secsync",
        "wss://10.0.0.1/secsync",
    ],
)
def test_environment_token_is_withheld_from_other_hosts(url):
    decision = choose_token(url, environ=ENV)
    assert decision.token is None and decision.source is None
    assert "JUPYTER_TOKEN was not sent" in decision.withheld
    assert "SECSYNC_TRUSTED_ORIGINS" in decision.withheld


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8765", "ws://127.0.0.1:8765/relay"])
def test_environment_token_never_goes_to_a_standalone_relay(url):
    assert choose_token(url, environ=ENV) == choose_token(url, environ={})
    assert choose_token(url, environ=ENV).token is None


def test_trusted_origins_from_the_environment_and_the_argument():
    env = {**ENV, "SECSYNC_TRUSTED_ORIGINS": "https://hub.example, wss://other.example:8443"}
    assert choose_token("wss://hub.example/user/ada/secsync", environ=env).token == "env-secret"
    assert choose_token("wss://hub.example:443/secsync", environ=env).token == "env-secret"
    assert choose_token("wss://other.example:8443/secsync", environ=env).token == "env-secret"
    # another port, another host, or the plain scheme is another origin
    for url in (
        "wss://hub.example:8443/secsync",
        "wss://other.example/secsync",
        "wss://evil.hub.example/secsync",
        "ws://hub.example:443/secsync",
    ):
        assert choose_token(url, environ=env).token is None, url
    decision = choose_token(
        "wss://lab.example/secsync", trusted_origins=["https://lab.example"], environ={}
    )
    assert decision.token is None  # trusted, but there is no token to send
    decision = choose_token(
        "wss://lab.example/secsync", trusted_origins=["https://lab.example"], environ=ENV
    )
    assert (decision.token, decision.source) == ("env-secret", "environment")


def test_a_trusted_origin_over_plain_ws_needs_the_explicit_opt_in():
    env = {**ENV, "SECSYNC_TRUSTED_ORIGINS": "http://jupyter.lan:8888"}
    decision = choose_token("ws://jupyter.lan:8888/secsync", environ=env)
    assert decision.token is None and "plain ws://" in decision.withheld
    decision = choose_token("ws://jupyter.lan:8888/secsync", environ=env, allow_insecure_token=True)
    assert decision.token == "env-secret"


def test_an_explicit_token_goes_where_the_caller_said_but_not_over_plain_ws():
    for url in ("wss://anywhere.example/secsync", "wss://anywhere.example/x", "ws://[::1]:1/r"):
        decision = choose_token(url, "given", environ=ENV)
        assert (decision.token, decision.source) == ("given", "argument")
    with pytest.raises(TokenPolicyError, match=r"plain ws:// to 'jupyter\.lan'"):
        choose_token("ws://jupyter.lan:8888/secsync", "given", environ={})
    assert choose_token("ws://jupyter.lan/secsync", "given", allow_insecure_token=True).token
    # token="" means: no token at all (the environment is not consulted either)
    assert choose_token("ws://127.0.0.1/secsync", "", environ=ENV).token is None


@pytest.mark.parametrize(
    "bad",
    [
        "hub.example",
        "https://hub.example/user/",
        "https://hub.example?x=1",
        "ftp://hub.example",
        "https://ada:pw@hub.example",
        "https://hub.example:99999",
    ],
)
def test_malformed_trusted_origins_are_clear_errors(bad, monkeypatch):
    with pytest.raises(TokenPolicyError, match="SECSYNC_TRUSTED_ORIGINS"):
        choose_token("wss://hub.example/secsync", environ={"SECSYNC_TRUSTED_ORIGINS": bad})
    with pytest.raises(TokenPolicyError, match="trusted_origins"):
        parse_origins([bad], what="trusted_origins")
    # opening a document says so at once (TokenPolicyError is a ValueError)
    monkeypatch.setenv("SECSYNC_TRUSTED_ORIGINS", bad)
    with pytest.raises(ValueError, match="SECSYNC_TRUSTED_ORIGINS"):
        open_document("wss://hub.example/secsync", generate_id(), new_document_key())._factory()


def test_loopback_means_loopback():
    assert is_loopback("ws://127.0.0.1:1/x") and is_loopback("wss://[::1]/x")
    assert is_loopback("ws://LOCALHOST:1")
    assert not is_loopback("ws://127.0.0.1.nip.io/x")
    assert not is_loopback("ws://0.0.0.0/x") and not is_loopback("ws://192.168.1.2/x")


# ------------------------------------------------ real connection attempts (impostor)


@pytest.fixture
def impostor_env(tmp_path, monkeypatch):
    """Routes non-loopback ws/wss connections to an :class:`Impostor`; yields a factory."""
    cert, key = make_certificate(tmp_path, ["evil.example", "hub.example"])
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    for name in ("no_proxy", "NO_PROXY", "SECSYNC_TRUSTED_ORIGINS", "JUPYTER_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    async def start() -> Impostor:
        impostor = await Impostor(cert, key).__aenter__()
        monkeypatch.setenv("WS_PROXY", impostor.url)
        monkeypatch.setenv("WSS_PROXY", impostor.url)
        return impostor

    return start


async def _attempt(link: str, **options) -> SyncFailed:
    with pytest.raises(SyncFailed) as info:
        await asyncio.wait_for(open_document(link, open_timeout=20, **options), 60)
    return info.value


def _link(server: str) -> str:
    return format_share_link(generate_id(), new_document_key(), server_url=server)


@pytest.mark.asyncio
@pytest.mark.parametrize("server", ["https://evil.example/", "http://evil.example/"])
async def test_a_link_to_another_host_does_not_get_the_environment_token(
    impostor_env, monkeypatch, server
):
    impostor = await impostor_env()
    try:
        monkeypatch.setenv("JUPYTER_TOKEN", "env-secret")
        failed = await _attempt(_link(server))
        [hs] = impostor.handshakes
        assert hs.target == (
            "evil.example:443" if server.startswith("https") else "evil.example:80"
        )
        assert hs.tls == server.startswith("https")
        assert hs.request_line.startswith("GET /secsync/")
        assert "authorization" not in hs.headers
        assert all("env-secret" not in v for v in hs.headers.values())
        assert failed.status == 403
        assert "JUPYTER_TOKEN was not sent to" in str(failed)
    finally:
        await impostor.__aexit__()


@pytest.mark.asyncio
async def test_a_trusted_origin_gets_the_environment_token_over_tls(impostor_env, monkeypatch):
    impostor = await impostor_env()
    try:
        monkeypatch.setenv("JUPYTER_TOKEN", "env-secret")
        monkeypatch.setenv("SECSYNC_TRUSTED_ORIGINS", "https://hub.example")
        await _attempt(_link("https://hub.example/user/ada/"))
        await _attempt(_link("https://evil.example/"))
        hub, evil = impostor.handshakes
        assert hub.tls and hub.target == "hub.example:443"
        assert hub.request_line.startswith("GET /user/ada/secsync/")
        assert hub.headers["authorization"] == "token env-secret"
        assert "authorization" not in evil.headers
        # the same trust given as an argument instead of the environment
        monkeypatch.delenv("SECSYNC_TRUSTED_ORIGINS")
        await _attempt(_link("https://hub.example/"), trusted_origins=["wss://hub.example"])
        assert impostor.handshakes[-1].headers["authorization"] == "token env-secret"
    finally:
        await impostor.__aexit__()


@pytest.mark.asyncio
async def test_an_explicit_token_over_plain_ws_to_another_host_is_refused(impostor_env):
    impostor = await impostor_env()
    try:
        with pytest.raises(TokenPolicyError, match="plain ws://"):
            await open_document(_link("http://evil.example/"), token="given")
        assert impostor.handshakes == []  # refused before any connection
        # explicitly allowed: sent as asked
        await _attempt(_link("http://evil.example/"), token="given", allow_insecure_token=True)
        # over TLS the caller's token goes where the caller said
        await _attempt(_link("https://evil.example/"), token="given")
        insecure, secure = impostor.handshakes
        assert insecure.headers["authorization"] == "token given" and not insecure.tls
        assert secure.headers["authorization"] == "token given" and secure.tls
    finally:
        await impostor.__aexit__()


@pytest.mark.asyncio
async def test_moving_a_document_to_an_unsafe_relay_fails_instead_of_sending_the_token(
    impostor_env,
):
    impostor = await impostor_env()
    try:
        d = open_document("ws://127.0.0.1:9/secsync", generate_id(), new_document_key(), token="t")
        doc = d._factory()
        await doc.start(wait=False)
        try:
            doc.relay_url = "ws://evil.example/secsync"
            doc.reconnect()
            with pytest.raises(SyncFailed, match="refusing to send the Jupyter token"):
                await doc.loaded(30)
            assert doc.state == "failed"
            assert impostor.handshakes == []
        finally:
            await doc.close(wait_synced=False)
    finally:
        await impostor.__aexit__()
