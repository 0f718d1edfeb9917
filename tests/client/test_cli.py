"""``secsync-jupyter keygen | import | cat | export`` against a relay on loopback."""

from __future__ import annotations

import io
import json

import nbformat
import pytest

from secsync_jupyter.cli import main
from secsync_jupyter.protocol import b64decode, b64encode, generate_id, generate_key
from secsync_jupyter.sharelink import parse_share_link

from .conftest import import_options


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
    assert main(["import", str(src), relay.url, *import_options(relay)]) == 0
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


def _write_notebook(tmp_path, source="secret = 42"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    path = tmp_path / "in.ipynb"
    nbformat.write(nb, path)
    return path


def _import_link_out(relay, tmp_path, link_file) -> int:
    """``secsync-jupyter import <a new notebook> <relay> --link-out <link_file>``: its exit code."""
    notebook = str(_write_notebook(tmp_path))
    return main(
        ["import", notebook, relay.url, "--link-out", str(link_file), *import_options(relay)]
    )


def _sources(text: str) -> list[str]:
    return [c.source for c in nbformat.reads(text, as_version=4).cells]


def test_links_come_from_a_file_stdin_or_the_environment(relay, tmp_path, capsys, monkeypatch):
    """No secret on the command line: the link goes to a private file, then is read back."""
    link_file = tmp_path / "link.txt"
    assert _import_link_out(relay, tmp_path, link_file) == 0
    out = capsys.readouterr()
    assert out.out == "" and "#key=" not in out.err  # the link is only in the file
    assert link_file.stat().st_mode & 0o777 == 0o600
    link = link_file.read_text().strip()
    assert parse_share_link(link).relay_url == relay.url

    assert main(["cat", "--link-file", str(link_file)]) == 0
    assert _sources(capsys.readouterr().out) == ["secret = 42"]

    monkeypatch.setattr("sys.stdin", io.StringIO(link + "\n"))
    assert main(["cat", "-"]) == 0
    assert _sources(capsys.readouterr().out) == ["secret = 42"]

    monkeypatch.setattr("sys.stdin", io.StringIO(link))
    out_file = tmp_path / "out.ipynb"
    assert main(["export", "--link-file", "-", str(out_file)]) == 0
    assert [c.source for c in nbformat.read(out_file, as_version=4).cells] == ["secret = 42"]

    monkeypatch.setenv("SECSYNC_LINK", link)
    assert main(["cat"]) == 0
    assert _sources(capsys.readouterr().out) == ["secret = 42"]
    out_file.unlink()
    assert main(["export", str(out_file)]) == 0  # LINK left out: from SECSYNC_LINK
    assert out_file.exists()

    # --link-out never overwrites an existing file
    assert _import_link_out(relay, tmp_path, link_file) == 1
    assert "already exists" in capsys.readouterr().err
    assert link_file.read_text().strip() == link


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["cat"], "", "no share link: give --link-file FILE"),
        (["cat", "LINK", "--link-file", "F"], "", "either as an argument or with --link-file"),
        (["cat", "--link-file", "MISSING"], "", "cannot read the share link file"),
        (["cat", "--link-file", "EMPTY"], "", "(it is empty)"),
        (["cat", "--link-file", "TWO"], "", "must be one line"),
        (["cat", "-"], "\n\n", "no share link in stdin"),
        (["cat", "-", "--token-file", "-"], "x", "stdin can provide only one"),
        (["cat", "LINK", "--token-file", "EMPTY"], "", "no token in"),
        (["cat", "LINK", "--token", " "], "", "the token is empty"),
        (["cat", "LINK", "--token", "t", "--token-file", "F"], "", "not both"),
        (["cat", "LINK", "--trusted-origin", "hub.example"], "", "is not an origin"),
        (["cat", "LINK", "--max-frame-bytes", "0"], "", None),
    ],
)
def test_bad_link_and_token_input_is_a_clear_error(
    tmp_path, capsys, monkeypatch, argv, stdin, message
):
    link = f"ws://127.0.0.1:9/{generate_id()}#key={b64encode(generate_key())}"
    files = {
        "LINK": link,
        "F": str(tmp_path / "f.txt"),
        "MISSING": str(tmp_path / "missing.txt"),
        "EMPTY": str(tmp_path / "empty.txt"),
        "TWO": str(tmp_path / "two.txt"),
    }
    (tmp_path / "f.txt").write_text(link)
    (tmp_path / "empty.txt").write_text(" \n")
    (tmp_path / "two.txt").write_text(link + "\n" + link + "\n")
    monkeypatch.delenv("SECSYNC_LINK", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    argv = [files.get(a, a) for a in argv] + ["--timeout", "5"]
    if message is None:  # an argparse error (exit 2) with the option named
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "--max-frame-bytes: must be positive" in capsys.readouterr().err
        return
    assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("secsync-jupyter cat: error: ") and message in last
    assert "Traceback" not in err


def test_a_token_on_the_command_line_is_warned_about(relay, tmp_path, capsys):
    link_file = tmp_path / "link.txt"
    assert _import_link_out(relay, tmp_path, link_file) == 0
    capsys.readouterr()
    assert main(["cat", "--link-file", str(link_file), "--token", "t"]) == 0
    assert "--token shows in ps" in capsys.readouterr().err
