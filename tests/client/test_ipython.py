"""Top-level ``await`` inside a running IPython kernel (ipykernel via nbclient)."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from secsync_jupyter.protocol import b64encode, generate_id, generate_key


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
