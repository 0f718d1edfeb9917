"""The kernel use case: the Python client talks to the relay inside Jupyter Server.

A kernel does not know the server's URL or token by itself: the user passes a share link
(``http(s)://host<base_url>secsync/open/<docId>#key=…``) and the token (``token=``, or the
``JUPYTER_TOKEN`` environment variable, which only goes to a server on loopback or on a
trusted origin: ``test_tokens.py``). Here the share link points at the pytest-jupyter
server, two clients converge through it, and a wrong or missing token is refused quickly
with a clear error instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from pycrdt import Text

from secsync_jupyter import new_document_key, open_document, open_notebook
from secsync_jupyter.client import SyncFailed
from secsync_jupyter.protocol import generate_id
from secsync_jupyter.sharelink import format_share_link, parse_share_link

from .util import until

# pytest-jupyter (loaded in tests/conftest.py) runs these coroutine tests itself, on the
# server's event loop; the client must run on that loop too (no pytest.mark.asyncio).


@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {"jpserver_extensions": {"secsync_jupyter": True}},
        "SecsyncRelayExtension": {"db_path": str(tmp_path / "ext-relay.sqlite")},
    }


@pytest.fixture
def server_url(jp_serverapp, http_server, jp_http_port, jp_base_url):
    """The server's URL, as a user copies it from the browser (``http_server`` listens)."""
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}"


@pytest.fixture
def token(jp_serverapp):
    return jp_serverapp.identity_provider.token


async def test_two_kernels_edit_one_notebook_through_jupyter_server(server_url, token):
    doc_id, key = generate_id(), new_document_key()
    link = format_share_link(doc_id, key, server_url=server_url)
    parsed = parse_share_link(link)
    assert parsed.relay_url == f"ws{server_url[4:]}secsync"
    async with open_notebook(link, token=token, open_timeout=20) as a:
        assert a.document.last_url.startswith(f"{parsed.relay_url}/{doc_id}?")
        assert token not in a.document.last_url  # the token goes in a header, not the URL
        a.add_markdown_cell("# Hello from a kernel")
        await a.synced(30)
        async with open_notebook(parsed.relay_url, doc_id, key, token=token) as b:
            assert [c.source for c in b.cells] == ["# Hello from a kernel"]
            for i in range(3):
                a.add_code_cell(f"a = {i}")
                b.add_code_cell(f"b = {i}")
            await asyncio.gather(a.synced(30), b.synced(30))
            await until(lambda: a.to_dict() == b.to_dict() and len(a.cells) == 7, a, b, timeout=30)
            assert {pk for c in a.collaborators for pk in [c.pub_key]} >= {a.document.pub_key}
            assert a.errors == [] and b.errors == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_token_from_the_environment_reaches_the_kernels_own_server(
    server_url, token, monkeypatch, host
):
    """On loopback (the kernel's own server) ``JUPYTER_TOKEN`` is used: it opens the door."""
    monkeypatch.setenv("JUPYTER_TOKEN", token)
    monkeypatch.delenv("SECSYNC_TRUSTED_ORIGINS", raising=False)
    link = format_share_link(
        generate_id(), new_document_key(), server_url=server_url.replace("127.0.0.1", host)
    )
    async with open_document(link, open_timeout=20) as d:
        assert d.token_source == "environment" and d.state == "connected"
        d.doc.get("content", type=Text).insert(0, "hi")
        await d.synced(30)
    monkeypatch.delenv("JUPYTER_TOKEN")
    # without it the same link is refused, so the environment's token is what opened it …
    with pytest.raises(SyncFailed) as info:
        await asyncio.wait_for(open_document(link, open_timeout=20), 60)
    assert info.value.status == 403
    # … and the write reached the server's relay: a client given the token reads it
    async with open_document(link, token=token, open_timeout=20) as e:
        assert e.token_source == "argument"
        assert str(e.doc.get("content", type=Text)) == "hi"


@pytest.mark.parametrize("bad", [None, "wrong-token"])
async def test_missing_or_wrong_token_is_refused(server_url, bad, monkeypatch):
    monkeypatch.delenv("JUPYTER_TOKEN", raising=False)
    link = format_share_link(generate_id(), new_document_key(), server_url=server_url)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(SyncFailed) as info:
        await asyncio.wait_for(open_document(link, token=bad, open_timeout=20), 60)
    assert loop.time() - t0 < 30  # refused, not retried until a timeout
    message = str(info.value)
    assert "403" in message and "token" in message
    assert info.value.status == 403


async def test_the_relay_url_of_another_server_path_is_a_clear_error(server_url, token):
    # a typo in the base URL: the server answers 404, which must not be retried forever
    with pytest.raises(SyncFailed) as info:
        await asyncio.wait_for(
            open_document(
                f"ws{server_url[4:]}nope/secsync", generate_id(), new_document_key(), token=token
            ),
            60,
        )
    assert info.value.status == 404
    assert "404" in str(info.value)


async def _cli(*args: str, stdin: str = "", env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "secsync_jupyter",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_takes_link_and_token_from_files_stdin_and_environment(
    server_url, token, tmp_path
):
    """``secsync-jupyter cat`` with no secret in its argv (which ps and the history show)."""
    link = format_share_link(generate_id(), new_document_key(), server_url=server_url)
    async with open_notebook(link, token=token, open_timeout=20) as nb:
        nb.add_code_cell("x = 'from a kernel'")
        await nb.synced(30)
    link_file = tmp_path / "link.txt"
    link_file.write_text(link + "\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JUPYTER_TOKEN", "SECSYNC_LINK", "SECSYNC_TRUSTED_ORIGINS")
    }

    def cells(out: str) -> list[str]:
        return [c["source"] for c in json.loads(out)["cells"]]

    # link from a file, token from stdin
    code, out, err = await _cli(
        "cat", "--link-file", str(link_file), "--token-file", "-", stdin=token + "\n", env=env
    )
    assert code == 0, err
    assert cells(out) == ["x = 'from a kernel'"]
    # link from stdin, token from JUPYTER_TOKEN (the server is on loopback)
    code, out, err = await _cli("cat", "-", stdin=link, env={**env, "JUPYTER_TOKEN": token})
    assert code == 0, err
    assert cells(out) == ["x = 'from a kernel'"]
    # link from SECSYNC_LINK, token from a file
    token_file = tmp_path / "token.txt"
    token_file.write_text(token)
    code, out, err = await _cli(
        "cat", "--token-file", str(token_file), env={**env, "SECSYNC_LINK": link}
    )
    assert code == 0, err
    assert cells(out) == ["x = 'from a kernel'"]
    # no token at all: refused by the server, one clear line
    code, out, err = await _cli("cat", "--link-file", str(link_file), env=env)
    assert code == 1
    assert "403" in err and "token" in err and "Traceback" not in err


async def test_members_through_jupyter_server(server_url, token, tmp_path):
    """A document with a membership log inside Jupyter Server: the owner creates it from a
    kernel, a non-member's kernel is refused (722), a viewer added by identity string reads
    and cannot write, removed it is disconnected (725)."""
    from secsync_jupyter.client import ReadOnlyError, create_notebook
    from secsync_jupyter.client.identity_file import create_identity

    owner = create_identity(tmp_path / "owner.json", name="Owner")
    bob = create_identity(tmp_path / "bob.json", name="Bob")
    relay = f"ws{server_url[4:]}secsync"
    async with create_notebook(relay, identity=owner, token=token, open_timeout=20) as nb:
        nb.add_code_cell("secret = 1")
        await nb.create_snapshot(30)
        link = nb.share_link
        assert link.startswith(f"{server_url}secsync/open/m1_")
        with pytest.raises(SyncFailed) as info:
            await asyncio.wait_for(open_notebook(link, identity=bob, token=token), 30)
        assert info.value.code == "SECSYNC_ERROR_722"
        await nb.add_member(str(bob), "viewer", timeout=30)
        async with open_notebook(link, identity=bob, token=token) as viewer:
            assert viewer.role == "viewer" and [c.source for c in viewer.cells] == ["secret = 1"]
            with pytest.raises(ReadOnlyError):
                viewer.add_code_cell("x")
            await nb.remove_member(str(bob), timeout=30)
            with pytest.raises(SyncFailed) as removed:
                await viewer.wait_for(lambda: False, 30)
            assert removed.value.code == "SECSYNC_ERROR_725"
