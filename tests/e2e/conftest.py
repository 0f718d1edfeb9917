"""Fixtures of the Chromium end-to-end tests (helpers in helpers.py). Module scope: each test
module gets its own JupyterLab."""

from __future__ import annotations

import pytest

from .helpers import CHROMIUM, CHROMIUM_ARGS, _lab_session


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab with the embedded relay."""
    with _lab_session(tmp_path_factory.mktemp("e2e")) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab_remote(tmp_path_factory):
    """JupyterLab whose relayUrl setting names a standalone relay requiring a session key."""
    with _lab_session(
        tmp_path_factory.mktemp("e2e-remote"), remote_relay=True, artifact_prefix="e2e-remote"
    ) as lab:
        yield lab


@pytest.fixture
def browser():
    """Headless Chromium (a test module may define its own ``browser``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
