"""The generated vector files of tests/vectors (membership-vectors.json, epoch-vectors.json):
reading them, checking them against their generator, and naming parametrized cases. Shared by
test_membership.py and test_epochs.py."""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
from typing import Any

import pytest

VECTORS_DIR = pathlib.Path(__file__).with_name("vectors")


def load(name: str) -> Any:
    """The JSON of ``tests/vectors/<name>``."""
    return json.loads((VECTORS_DIR / name).read_text(encoding="ascii"))


def check_up_to_date(name: str, generator: str) -> None:
    """``tests/vectors/<name>`` is what ``tests/vectors/<generator>.py``'s ``render()`` makes."""
    sys.path.insert(0, str(VECTORS_DIR))
    try:
        module = importlib.import_module(generator)
    finally:
        sys.path.remove(str(VECTORS_DIR))
    assert module.render() == (VECTORS_DIR / name).read_text(encoding="ascii")


def by_name(cases):
    """Parametrize a test over ``case`` in ``cases``, each named by its ``name``."""
    return pytest.mark.parametrize("case", cases, ids=[c["name"] for c in cases])


def error_of(exc) -> dict:
    """A MembershipError's (or IdentityError's) code and field, as the vectors write them."""
    return {"code": exc.code, "field": exc.field}
