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


HARNESS_HOME = pathlib.Path(os.environ.get("HARNESS_HOME", "/tmp/secsync-harness"))


def make_harness_copies_writable() -> None:
    """shared/ may have no write bits (CI): setup.sh's ``cp -p`` gives its copies in
    HARNESS_HOME that mode, and copying over them again fails for a non-root user."""
    for directory in (HARNESS_HOME, HARNESS_HOME / "lib"):
        if directory.is_dir():
            for f in directory.iterdir():
                if f.is_file() and not f.is_symlink() and not f.stat().st_mode & 0o200:
                    f.chmod(f.stat().st_mode | 0o200)


@pytest.fixture(scope="session")
def harness_run():
    """Run a script of the reference harness (npm secsync 0.5.0); installs it on first use."""
    if shutil.which("node") is None:
        pytest.fail("node is required for the reference harness (see README)")

    def run(*args, **kw):
        make_harness_copies_writable()
        return subprocess.run(
            [str(HARNESS / "run.sh"), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=kw.pop("timeout", 600),
            **kw,
        )

    return run
