"""Jupyter's authorizer decides on resource ``secsync``: ``read`` to connect, ``write`` to send.

The ``write`` permission is enforced by the relay itself, whatever the access policy says (a
custom policy that allows everything cannot forget it)."""

from __future__ import annotations

import pytest
from jupyter_server.auth.authorizer import Authorizer

from secsync_jupyter.protocol import generate_id
from secsync_jupyter.relay import AccessPolicy

from .util import Author, RelayClient


class ReadOnlySecsync(Authorizer):
    """Everything except writing to the relay."""

    def is_authorized(self, handler, user, action, resource):
        if resource == "secsync":
            return action == "read"
        return True


class NoSecsync(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        return resource != "secsync"


class AllowEverything(AccessPolicy):
    """A custom policy that grants every action (and knows nothing of ``can_write``)."""

    def has_access(self, request):
        return True


@pytest.fixture(params=[ReadOnlySecsync, NoSecsync])
def authorizer(request):
    return request.param


@pytest.fixture(params=["any-authenticated", f"{__name__}:AllowEverything"])
def policy(request):
    return request.param


@pytest.fixture
def jp_server_config(tmp_path, authorizer, policy):
    return {
        "ServerApp": {
            "jpserver_extensions": {"secsync_jupyter": True},
            "authorizer_class": f"{__name__}.{authorizer.__name__}",
        },
        "SecsyncRelayExtension": {
            "db_path": str(tmp_path / "authz.sqlite"),
            "access_policy": policy,
        },
    }


async def test_authorizer_read_only_and_refused(
    jp_serverapp, http_server_client, jp_auth_header, authorizer
):
    a = Author(generate_id())
    url = f"ws://127.0.0.1:{jp_serverapp.port}{jp_serverapp.base_url}secsync/{a.doc_id}"
    if authorizer is NoSecsync:
        with pytest.raises(Exception, match="403"):
            await RelayClient.open(url, additional_headers=jp_auth_header)
        return
    c = await RelayClient.open(url, additional_headers=jp_auth_header)
    assert (await c.next("document"))["updates"] == []
    await c.send(a.initial_snapshot())  # reading is allowed, writing is not
    assert (await c.next("error"))["code"] == "unauthorized"
    await c.next("unauthorized")
    assert await c.wait_closed() == 1008
    # nothing was stored: a new reader finds an empty document
    c2 = await RelayClient.open(url, additional_headers=jp_auth_header)
    assert await c2.next("document") == {
        "type": "document",
        "updates": [],
        "snapshotProofChain": [],
    }
    await c2.send(a.ephemeral())  # ephemeral messages are writes too
    assert (await c2.next("error"))["code"] == "unauthorized"
    assert await c2.wait_closed() == 1008
