"""``secsync-jupyter keygen | import | cat | export`` against a relay on loopback."""

from __future__ import annotations

import json

import nbformat

from secsync_jupyter.cli import main
from secsync_jupyter.protocol import b64decode
from secsync_jupyter.sharelink import parse_share_link


def test_keygen(capsys):
    assert main(["keygen"]) == 0
    assert len(b64decode(capsys.readouterr().out.strip(), length=32)) == 32
    assert main(["keygen", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"docId", "key", "signingKey", "pubKey"}


def test_import_cat_export_round_trip(relay, tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Encrypted ✓"),
        nbformat.v4.new_code_cell(
            "print(1)",
            execution_count=1,
            outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")],
        ),
    ]
    src = tmp_path / "in.ipynb"
    nbformat.write(nb, src)
    assert main(["import", str(src), relay.url]) == 0
    link = capsys.readouterr().out.strip()
    parsed = parse_share_link(link)
    assert parsed.relay_url == relay.url

    assert main(["cat", link]) == 0
    shown = nbformat.reads(capsys.readouterr().out, as_version=4)
    nbformat.validate(shown)
    assert [(c.cell_type, c.source) for c in shown.cells] == [
        (c.cell_type, c.source) for c in nb.cells
    ]
    assert shown.cells[1].outputs == nb.cells[1].outputs
    assert shown.metadata["kernelspec"]["name"] == "python3"

    out = tmp_path / "out.ipynb"
    assert main(["export", link, str(out)]) == 0
    exported = nbformat.read(out, as_version=4)
    assert exported.cells == shown.cells


def test_cat_of_an_empty_document_is_an_error(relay, capsys):
    from secsync_jupyter.protocol import generate_id, generate_key
    from secsync_jupyter.sharelink import format_share_link

    link = format_share_link(generate_id(), generate_key(), relay=relay.url)
    assert main(["cat", link, "--timeout", "10"]) == 1
    assert "empty" in capsys.readouterr().err


def test_bad_link_is_a_clear_error(capsys):
    assert main(["cat", "https://example.org/nothing"]) == 1
    assert "error" in capsys.readouterr().err
