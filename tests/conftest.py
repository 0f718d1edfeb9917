import os
import pathlib
import shutil
import subprocess

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("SECSYNC_SHARED", ROOT.parent / "shared"))
VECTORS = SHARED / "vectors" / "secsync-vectors.json"
HARNESS = SHARED / "harness"


@pytest.fixture(scope="session")
def harness_run():
    """Run a script of the reference harness (npm secsync 0.5.0); installs it on first use."""
    if shutil.which("node") is None:
        pytest.fail("node is required for the reference harness (see README)")

    def run(*args, **kw):
        return subprocess.run(
            [str(HARNESS / "run.sh"), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=kw.pop("timeout", 600),
            **kw,
        )

    return run
