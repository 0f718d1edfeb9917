"""Execute every demo notebook end to end (nbclient); a failing cell fails the test.

Notebooks are committed without outputs; the executed copies are written to a temporary
directory, or to ``$SECSYNC_NOTEBOOK_OUT`` when set (handy to look at the charts).
"""

from __future__ import annotations

import os
import pathlib
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .conftest import ROOT, SHARED

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: seconds per notebook (pytest-timeout) and per cell (nbclient)
NOTEBOOK_TIMEOUT = 90
CELL_TIMEOUT = 60
#: "no walls of output": the most lines of text one cell may print
MAX_OUTPUT_LINES = 40


def test_there_are_notebooks():
    names = {nb.name for nb in NOTEBOOKS}
    assert {
        "01-protocol-walkthrough.ipynb",
        "02-relay-sees-only-ciphertext.ipynb",
        "03-encrypted-notebook-from-a-kernel.ipynb",
        "04-snapshots-and-load-time.ipynb",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: pathlib.Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: commit notebooks without outputs"
            assert cell.execution_count is None, f"{path.name}: clear execution counts"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path, tmp_path: pathlib.Path, monkeypatch):
    # the kernel inherits the environment: it finds shared/ exactly as the tests do
    monkeypatch.setenv("SECSYNC_SHARED", str(SHARED))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    out_dir = pathlib.Path(os.environ.get("SECSYNC_NOTEBOOK_OUT") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell failed:\n{exc}")
    finally:
        nbformat.write(nb, out_dir / path.name)
    print(f"{path.name}: executed in {time.perf_counter() - started:.1f} s")

    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        lines = sum(
            len(out.get("text", "").splitlines())
            for out in cell.outputs
            if out.output_type == "stream"
        )
        assert lines <= MAX_OUTPUT_LINES, f"{path.name} cell {index} prints {lines} lines"
        for out in cell.outputs:
            if out.output_type == "stream":
                assert out.name == "stdout", (
                    f"{path.name} cell {index} wrote to stderr: {out.get('text', '')[:2000]!r}"
                )
