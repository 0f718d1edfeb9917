"""The remembered-state file (issue 13, part 3): per document, what this client verified last
— the active snapshot with every author's clock on it, the membership log head and the
verified log — so that the next load can be checked against it (a rollback or a history not
descending from it: 804; a log without the remembered head: 718) and a long log needs only
its new entries verified.

One JSON file, given by the caller (``state_file=`` / ``--state``), may hold many documents:
``{"version": 1, "documents": {docId: {"snapshot", "logHead", "log"?, "savedAt"}}}``. It holds
no key. It is written atomically (a temporary file in the same directory, fsync, rename) with
mode 0600; a write re-reads the file first, so clients sharing it keep each other's documents
(two processes writing the *same* document at once: the last write wins).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["StateFileError", "load_remembered", "save_remembered"]

VERSION = 1
#: a state file larger than this is refused (a 1000-entry log is ~ 0.5 MB)
MAX_STATE_BYTES = 64 * 1024 * 1024


class StateFileError(ValueError):
    """The state file cannot be read (not JSON, another format, unreadable)."""


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return {"version": VERSION, "documents": {}}
    except OSError as exc:
        raise StateFileError(f"cannot read the state file {path}: {exc.strerror}") from exc
    if len(data) > MAX_STATE_BYTES:
        raise StateFileError(f"the state file {path} is larger than {MAX_STATE_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise StateFileError(f"the state file {path} is not JSON: {exc}") from exc
    if (
        not isinstance(obj, dict)
        or obj.get("version") != VERSION
        or not isinstance(obj.get("documents"), dict)
    ):
        raise StateFileError(
            f"the state file {path} is not a secsync-jupyter state file (version {VERSION})"
        )
    return obj


def load_remembered(path: str | os.PathLike[str], doc_id: str) -> dict[str, Any] | None:
    """The remembered state of ``doc_id`` in the file (``None``: none yet, or no file)."""
    entry = _read(Path(path))["documents"].get(doc_id)
    if entry is not None and not isinstance(entry, dict):
        raise StateFileError(f"the state file {path}: the entry of {doc_id} is not an object")
    return entry


def save_remembered(path: str | os.PathLike[str], doc_id: str, state: dict[str, Any]) -> None:
    """Write ``doc_id``'s remembered state into the file, keeping the other documents."""
    path = Path(path)
    try:
        obj = _read(path)
    except StateFileError:
        raise  # never overwrite a file we cannot understand
    obj["documents"][doc_id] = {**state, "savedAt": int(time.time() * 1000)}
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
