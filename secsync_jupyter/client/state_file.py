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

A damaged file (not JSON, or a version-1 file whose ``documents`` is not an object) or a
damaged entry raises :class:`StateFileDamaged`: the driver keeps it aside with
:func:`set_aside` (``<file>.damaged``, ``.damaged.2``…, never overwriting one) and loads the
document from scratch (807). A file that is JSON of another format (or a later version), or
that cannot be read (permission), stays an error (:class:`StateFileError`), never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["StateFileDamaged", "StateFileError", "load_remembered", "save_remembered", "set_aside"]

VERSION = 1
#: a state file larger than this is refused (a 1000-entry log is ~ 0.5 MB)
MAX_STATE_BYTES = 64 * 1024 * 1024


class StateFileError(ValueError):
    """The state file cannot be read (not JSON, another format, unreadable)."""


class StateFileDamaged(StateFileError):
    """The state file (``whole_file``) or one document's entry in it is damaged: not JSON, or
    not the shape this client writes. Kept aside by the driver (:func:`set_aside`), never
    used."""

    def __init__(self, message: str, *, whole_file: bool):
        super().__init__(message)
        self.whole_file = whole_file


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
        # e.g. truncated or overwritten with garbage: ours, damaged
        raise StateFileDamaged(
            f"the state file {path} is not JSON: {exc}", whole_file=True
        ) from exc
    if not isinstance(obj, dict) or obj.get("version") != VERSION:
        # another file given by mistake, or a later version: not ours to move
        raise StateFileError(
            f"the state file {path} is not a secsync-jupyter state file (version {VERSION})"
        )
    if not isinstance(obj.get("documents"), dict):
        raise StateFileDamaged(
            f"the state file {path} is damaged: its documents are not an object", whole_file=True
        )
    return obj


def load_remembered(path: str | os.PathLike[str], doc_id: str) -> dict[str, Any] | None:
    """The remembered state of ``doc_id`` in the file (``None``: none yet, or no file)."""
    entry = _read(Path(path))["documents"].get(doc_id)
    if entry is not None and not isinstance(entry, dict):
        raise StateFileDamaged(
            f"the state file {path}: the entry of {doc_id} is not an object", whole_file=False
        )
    return entry


def set_aside(path: str | os.PathLike[str], *, move: bool) -> Path:
    """Keep a damaged state file: its bytes are copied to ``<file>.damaged`` (or
    ``.damaged.2``, ``.damaged.3``… when taken: an older one is never overwritten), mode
    0600; ``move``: the file is then removed (a new one is written after the load), else it
    stays (one damaged entry: the next save replaces it and keeps the other documents).
    Returns the copy's path; raises ``StateFileError`` when it cannot be kept."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        for n in range(1, 1000):
            aside = path.with_name(f"{path.name}.damaged" + (f".{n}" if n > 1 else ""))
            try:
                fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            break
        else:
            raise StateFileError(f"the damaged state file {path}: too many copies kept aside")
        if move:
            os.unlink(path)
    except OSError as exc:
        raise StateFileError(
            f"the state file {path} is damaged and cannot be kept aside: {exc}"
        ) from exc
    return aside


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
