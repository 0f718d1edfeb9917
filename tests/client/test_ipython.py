"""Top-level ``await`` inside a running IPython kernel (ipykernel via nbclient)."""

from __future__ import annotations

import pathlib

import nbformat
from nbclient import NotebookClient

from secsync_jupyter.protocol import b64encode, generate_id, generate_key

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def test_open_notebook_with_top_level_await_in_a_kernel(relay):
    doc_id, key = generate_id(), b64encode(generate_key())
    cells = [
        f"""
from secsync_jupyter import open_notebook
nb = await open_notebook({relay.url!r}, {doc_id!r}, {key!r})
nb.add_code_cell("x = 1")
await nb.synced(10)
""",
        """
async with open_notebook(nb.document.relay_url, nb.doc_id, nb.document.engine.key_for(None)) as nb2:
    print([c.source for c in nb2.cells], nb2.document_state, len(nb2.collaborators) >= 1)
await nb.close()
""",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    out = notebook.cells[1].outputs[0]["text"]
    assert out.strip() == "['x = 1'] complete True"


def test_large_frames_are_checked_in_worker_processes_inside_a_kernel():
    """The process pool (spawn) starts and works from a kernel, whose ``__main__`` is
    ipykernel's launcher, and gives the same result as the plain path."""
    code = """
import json
from pycrdt import Doc, Text
from secsync_jupyter.client import precheck
from secsync_jupyter.client.engine import SyncEngine
from secsync_jupyter.client.ydoc import YDocAdapter
from tests.client.test_fast_paths import _frame
from tests.client.helpers import A, DOC, KEY
precheck.PROCESS_MIN_UPDATES = 100
frame = json.loads(_frame(150))
doc = Doc()
engine = SyncEngine(DOC, KEY, YDocAdapter(doc), A)
engine.connecting(); engine.connected()
pre = precheck.check_in_processes(engine, frame, precheck.process_pool().submit, chunk=64)
engine.receive(frame, pre)
print(engine.document_state, str(doc.get("content", type=Text)).endswith("149;"),
      sum(r is not None for r in pre.results))
"""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    ).execute()
    assert notebook.cells[0].outputs[0]["text"].strip() == "complete True 150"
