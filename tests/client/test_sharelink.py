"""Share links (docs/share-links.md): both forms, strict parsing, round trips."""

from __future__ import annotations

import pytest

from secsync_jupyter.protocol import b64encode
from secsync_jupyter.sharelink import (
    ShareLinkError,
    format_share_link,
    parse_share_link,
)

KEY = bytes(range(32))
K = b64encode(KEY)


def test_jupyter_link_without_relay():
    link = parse_share_link(f"https://hub.example.org/user/ada/secsync/open/doc_1-A#key={K}")
    assert link.doc_id == "doc_1-A" and link.key == KEY
    assert link.server_url == "https://hub.example.org/user/ada/"
    assert link.relay_url == "wss://hub.example.org/user/ada/secsync"
    assert link.websocket_url == "wss://hub.example.org/user/ada/secsync/doc_1-A"
    assert not link.explicit_relay
    assert link.to_url() == f"https://hub.example.org/user/ada/secsync/open/doc_1-A#key={K}"


def test_jupyter_link_with_relay_and_http():
    text = f"http://localhost:8888/secsync/open/d?relay=ws%3A%2F%2F127.0.0.1%3A8765%2Fpre#key={K}"
    link = parse_share_link(text)
    assert link.relay_url == "ws://127.0.0.1:8765/pre" and link.explicit_relay
    assert link.server_url == "http://localhost:8888/"
    assert link.to_url() == text


def test_standalone_link():
    link = parse_share_link(f"ws://127.0.0.1:8765/prefix/abc#key={K}")
    assert (link.relay_url, link.doc_id, link.server_url) == (
        "ws://127.0.0.1:8765/prefix",
        "abc",
        None,
    )
    assert link.to_url() == f"ws://127.0.0.1:8765/prefix/abc#key={K}"
    assert (
        parse_share_link(f"wss://relay.example:443/abc#key={K}").relay_url
        == "wss://relay.example:443"
    )


def test_format_round_trips():
    for link in (
        format_share_link("x", KEY, relay="ws://h:1"),
        format_share_link("x", KEY, server_url="https://h/base"),
        format_share_link("x", KEY, server_url="https://h/base/", relay="wss://r/p"),
    ):
        assert parse_share_link(link).to_url() == link
        assert parse_share_link(link).key == KEY


@pytest.mark.parametrize(
    "text",
    [
        f"https://h/secsync/open/doc#nokey={K}",
        "https://h/secsync/open/doc#key=" + K[:-1],
        f"https://h/secsync/open/doc#key={K}=",
        f"https://h/secsync/open/doc#key={K}&key={K}",
        f"https://h/elsewhere/doc#key={K}",
        f"https://h/secsync/open/bad%20id#key={K}",
        f"https://h/secsync/open/{'a' * 129}#key={K}",
        f"https://h/secsync/open/doc?relay=http%3A%2F%2Fx#key={K}",
        f"https://h/secsync/open/doc?other=1#key={K}",
        f"https://user:pw@h/secsync/open/doc#key={K}",
        f"ws://h:1/doc?sessionKey=x#key={K}",
        f"ftp://h/doc#key={K}",
        "not a link",
    ],
)
def test_invalid_links_are_rejected(text):
    with pytest.raises(ShareLinkError):
        parse_share_link(text)


def test_format_rejects_bad_input():
    with pytest.raises(ShareLinkError):
        format_share_link("bad id", KEY, relay="ws://h")
    with pytest.raises(ShareLinkError):
        format_share_link("x", KEY[:31], relay="ws://h")
    with pytest.raises(ShareLinkError):
        format_share_link("x", KEY)
    with pytest.raises(ShareLinkError):
        format_share_link("x", KEY, relay="http://h")
