"""Access policies: ``broadcast_access`` before each broadcast, the extension's policy
traitlets, and the extension enabled on install."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from secsync_jupyter.protocol import generate_id
from secsync_jupyter.relay import AccessPolicy, AllowedAuthorsPolicy, AnyAuthenticatedPolicy
from secsync_jupyter.relay.extension import SecsyncRelayExtension

from .util import Author, RelayClient, open_doc, url_for

ROOT = Path(__file__).resolve().parents[2]


class MutedSessions(AccessPolicy):
    """Refuses broadcasts to connections whose session key is muted (at broadcast time)."""

    def __init__(self):
        self.muted: set[str] = set()
        self.calls = 0

    def broadcast_access(self, document_id, identities):
        self.calls += 1
        return [i.session_key not in self.muted for i in identities]


@pytest.mark.asyncio
async def test_broadcast_access_consulted_before_each_broadcast(relays):
    policy = MutedSessions()
    r = await relays(policy=policy)
    a = Author(generate_id())
    writer, _ = await open_doc(r.url, a.doc_id, session_key="writer")
    reader, _ = await open_doc(r.url, a.doc_id, session_key="reader")
    muted, _ = await open_doc(r.url, a.doc_id, session_key="muted")
    snap = a.initial_snapshot()
    await writer.send(snap)
    await writer.next("snapshot-saved")
    for c in (reader, muted):
        await c.next("snapshot")
    calls = policy.calls
    # the policy changes its mind: the next broadcast is refused to "muted" only
    policy.muted.add("muted")
    await writer.send(a.update(snap, 0))
    await writer.next("update-saved")
    assert (await reader.next("update"))["publicData"]["clock"] == 0
    await muted.next("unauthorized")
    assert await muted.wait_closed() == 1008
    assert not [f for f in muted.frames if f["type"] == "update"]
    # ephemeral messages are broadcasts too
    await writer.send(a.ephemeral())
    await reader.next("ephemeral-message")
    assert policy.calls == calls + 2
    # a muted connection that has joined is refused at the next broadcast
    late = await RelayClient.open(url_for(r.url, a.doc_id, "muted"))
    await late.next("document")
    await writer.send(a.update(snap, 1))
    await late.next("unauthorized")
    assert await late.wait_closed() == 1008
    await reader.next("update")
    # ... and so is one still joining (its document frame not read yet): it gets nothing
    store = r.relay.store
    read_document, reading, release = store.read_document, asyncio.Event(), asyncio.Event()

    async def held_read(*args):
        reading.set()
        await release.wait()
        return await read_document(*args)

    store.read_document = held_read
    joining = await RelayClient.open(url_for(r.url, a.doc_id, "muted"))
    await reading.wait()
    assert len(r.relay.rooms[a.doc_id].joining) == 1
    await writer.send(a.update(snap, 2))
    await writer.next("update-saved")
    await joining.next("unauthorized")
    release.set()  # (the relay reads the close handshake once the join is over)
    store.read_document = read_document
    assert await joining.wait_closed() == 1008
    assert [f["type"] for f in joining.frames] == ["unauthorized"]
    assert (await reader.next("update"))["publicData"]["clock"] == 2


def test_extension_policy_traitlets(tmp_path):
    def make(**config):
        return SecsyncRelayExtension(**config).make_policy()

    assert isinstance(make(), AnyAuthenticatedPolicy)
    p = make(
        access_policy="allowed-authors",
        allowed_authors={"doc": ["pk1"]},
        allowed_authors_default=[],
    )
    assert isinstance(p, AllowedAuthorsPolicy)
    assert p.allowed == {"doc": frozenset({"pk1"})} and p.default == frozenset()
    assert make(access_policy="allowed-authors").default is None  # "anyone"
    custom = make(access_policy=f"{__name__}:MutedSessions")
    assert isinstance(custom, MutedSessions)
    with pytest.raises(ValueError, match="unknown access_policy"):
        make(access_policy="nonsense")
    with pytest.raises(TypeError, match="not an AccessPolicy"):
        make(access_policy="json:JSONDecoder")


def test_extension_enabled_on_install(tmp_path):
    """The wheel ships jupyter-config/server-config into etc/jupyter/jupyter_server_config.d;
    in this environment ``jupyter server extension list`` shows the extension enabled."""
    shipped = json.loads((ROOT / "jupyter-config/server-config/secsync_jupyter.json").read_text())
    assert shipped == {"ServerApp": {"jpserver_extensions": {"secsync_jupyter": True}}}
    assert (
        '"jupyter-config/server-config" = "etc/jupyter/jupyter_server_config.d"'
        in (ROOT / "pyproject.toml").read_text()
    )
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "user-config"), NO_COLOR="1")
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"secsync_jupyter\s+enabled", text), text
    assert re.search(r"secsync_jupyter [0-9.]+\S* OK", text), text
