"""``secsync-relay --auth hub`` outside a Hub, or mixed with the other modes: clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    return subprocess.run(
        [sys.executable, "-m", "secsync_jupyter.relay.standalone", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hub_mode_outside_a_hub_names_what_is_missing():
    out = _run("--auth", "hub")
    assert out.returncode == 2
    assert "run the relay as a JupyterHub service" in out.stderr
    assert "JUPYTERHUB_API_TOKEN" in out.stderr and "JUPYTERHUB_SERVICE_PREFIX" in out.stderr


@pytest.mark.parametrize("other", [["--open"], ["--session-keys", "/nonexistent"]])
def test_hub_mode_takes_no_shared_key_and_is_never_open(other):
    out = _run("--auth", "hub", *other)
    assert out.returncode == 2
    assert "no --open or --session-keys with it" in out.stderr


def test_a_bad_cookie_secret_is_a_clear_error():
    env = {
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/secsync-relay/",
        "JUPYTERHUB_CLIENT_ID": "service-secsync-relay",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:services!service=secsync-relay"]',
        "SECSYNC_RELAY_COOKIE_SECRET": "not-hex",
    }
    out = _run("--auth", "hub", env=env)
    assert out.returncode == 2 and "SECSYNC_RELAY_COOKIE_SECRET must be hexadecimal" in out.stderr
    out = _run("--auth", "hub", env={**env, "SECSYNC_RELAY_COOKIE_SECRET": "00ff"})
    assert out.returncode == 2 and "at least 16 bytes" in out.stderr
