"""Test hygiene (issue 9 item 5): relay-parametrized tests never drop a relay silently.

A pytest run in a subprocess where our relay cannot be imported still has the ``[ours]``
case of a live test, and that case fails with a clear message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from ..conftest import ROOT

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "secsync_jupyter.relay.standalone":
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def test_a_missing_relay_fails_its_cases_instead_of_dropping_them(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rA",
            "tests/client/test_live.py::test_wrong_key_fails_with_101",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "PASSED tests/client/test_live.py::test_wrong_key_fails_with_101[ref]" in out
    # the relay fixture fails: an error of the [ours] case, not a missing case
    assert "ERROR tests/client/test_live.py::test_wrong_key_fails_with_101[ours]" in out
    assert "our relay (secsync_jupyter.relay.standalone) cannot be imported" in out
    assert "1 passed, 1 error" in out
