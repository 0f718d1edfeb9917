"""The configuration tables of docs/relay.md and docs/deployment.md state the defaults the code
has (the flags of ``secsync-relay`` and the traitlets of the Jupyter extension)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from secsync_jupyter.relay.extension import SecsyncRelayExtension
from secsync_jupyter.relay.standalone import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "relay.md", ROOT / "docs" / "deployment.md"]
ROW = re.compile(r"^\| `([^`]+)` \| ((?:[^|\\]|\\.)*) \|", re.M)


def doc_rows(path: Path) -> list[tuple[str, str]]:
    """(name, default cell) of every table row whose first cell is a code span."""
    return [(m.group(1), m.group(2).strip()) for m in ROW.finditer(path.read_text())]


def stated_default(cell: str) -> str | None:
    """The default a cell states as a literal: its first code span (after a type, if any)."""
    spans = re.findall(r"`([^`]*)`", cell)
    return spans[-1].strip('"') if spans else None


def flag_defaults() -> dict[str, object]:
    return {
        a.option_strings[0]: a.default
        for a in build_parser()._actions
        if a.option_strings and a.option_strings[0].startswith("--") and a.default is not None
    }


def traitlet_defaults() -> dict[str, object]:
    traits = SecsyncRelayExtension.class_traits(config=True)
    out = {}
    for name, trait in traits.items():
        default = trait.default_value
        if isinstance(default, (bool, int, float, str)) and name != "db_path":
            out[name] = default
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_defaults_are_the_code_defaults(doc):
    flags, traits = flag_defaults(), traitlet_defaults()
    checked = []
    for name, cell in doc_rows(doc):
        key = name.split()[0]
        expected = flags.get(key) if key.startswith("--") else traits.get(key)
        stated = stated_default(cell)
        if expected is None or stated is None or not re.fullmatch(r"[\w./-]+", stated):
            continue
        if isinstance(expected, bool) or not isinstance(expected, (int, float)):
            assert stated == str(expected), f"{doc.name}: {name} documented as {stated!r}"
        else:
            assert float(stated) == expected, f"{doc.name}: {name} documented as {stated!r}"
        checked.append(key)
    # the durability mode (flag and traitlet) is among the rows checked in both documents
    assert {"--synchronous", "synchronous"} <= set(checked), checked
    assert len(checked) >= 8, checked
