"""Encrypted notebooks: jupyter_ydoc's ``YNotebook`` layout on a synced pycrdt Doc.

JupyterLab (with the labextension) and this library edit the same structure: ``cells``
(an Array of Maps with ``id``, ``cell_type``, ``source`` Text, ``metadata``, ``outputs`` …)
and ``meta`` (``nbformat``, ``nbformat_minor``, ``metadata``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from jupyter_ydoc import YNotebook
from pycrdt import Array, Map, Text

from .awareness import Collaborator
from .document import MemberInfo, SecsyncDocument, _Opener, create_document

__all__ = ["Cell", "Cells", "Notebook", "create_notebook", "open_notebook"]

EMPTY_NOTEBOOK: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [],
}


def _plain(value: Any) -> Any:
    to_py = getattr(value, "to_py", None)
    if to_py is not None:
        return to_py()
    return value


class Cell:
    """A live view of one notebook cell (reads and writes go to the shared document)."""

    def __init__(self, notebook: Notebook, ycell: Map):
        self._notebook = notebook
        self._ycell = ycell

    @property
    def id(self) -> str | None:
        return self._ycell.get("id")

    @property
    def cell_type(self) -> str:
        return self._ycell.get("cell_type")

    @property
    def source(self) -> str:
        source = self._ycell.get("source")
        return str(source) if source is not None else ""

    @source.setter
    def source(self, value: str) -> None:
        self._notebook.check_writable()
        doc = self._notebook.doc
        with doc.transaction():
            text = self._ycell.get("source")
            if isinstance(text, Text):
                if str(text) != value:
                    text.clear()
                    text += value
            else:
                self._ycell["source"] = Text(value)

    @property
    def outputs(self) -> list[dict[str, Any]]:
        outputs = self._ycell.get("outputs")
        return _plain(outputs) if outputs is not None else []

    @outputs.setter
    def outputs(self, value: Sequence[Mapping[str, Any]]) -> None:
        self._notebook.check_writable()
        if self.cell_type != "code":
            raise ValueError("only code cells have outputs")
        with self._notebook.doc.transaction():
            self._notebook.ynotebook._set_ycell_outputs(self._ycell, [dict(o) for o in value])

    @property
    def execution_count(self) -> int | None:
        return self._ycell.get("execution_count")

    @execution_count.setter
    def execution_count(self, value: int | None) -> None:
        self._notebook.check_writable()
        self._ycell["execution_count"] = value

    @property
    def metadata(self) -> dict[str, Any]:
        return _plain(self._ycell.get("metadata")) or {}

    def to_dict(self) -> dict[str, Any]:
        return self._notebook.ynotebook._cell_to_py(self._ycell)

    def __repr__(self) -> str:
        src = self.source
        short = src if len(src) <= 40 else src[:37] + "…"
        return f"<Cell {self.cell_type} {self.id} {short!r}>"


class Cells(Sequence[Cell]):
    """List-like view of the notebook's cells."""

    def __init__(self, notebook: Notebook):
        self._notebook = notebook

    def _ycells(self) -> Array:
        return self._notebook.ynotebook.ycells

    def __len__(self) -> int:
        return len(self._ycells())

    def __getitem__(self, index):  # type: ignore[override]
        ycells = self._ycells()
        if isinstance(index, slice):
            return [Cell(self._notebook, ycells[i]) for i in range(len(ycells))[index]]
        n = len(ycells)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("cell index out of range")
        return Cell(self._notebook, ycells[index])

    def __iter__(self) -> Iterator[Cell]:
        for i in range(len(self)):
            yield self[i]

    def __delitem__(self, index: int) -> None:
        self._notebook.check_writable()
        del self._ycells()[index]

    def __repr__(self) -> str:
        return repr(list(self))


class Notebook:
    """An end-to-end encrypted notebook, live-synced with the other collaborators."""

    def __init__(self, document: SecsyncDocument):
        self.document = document
        self.ynotebook = YNotebook(document.doc)
        self.cells = Cells(self)

    # forwarding to the document
    @property
    def doc(self):
        return self.document.doc

    @property
    def doc_id(self) -> str:
        return self.document.doc_id

    @property
    def collaborators(self) -> list[Collaborator]:
        return self.document.collaborators

    @property
    def state(self) -> str:
        return self.document.state

    @property
    def document_state(self) -> str:
        return self.document.document_state

    @property
    def errors(self):
        return self.document.errors

    @property
    def alerts(self):
        """What the client noticed of the relay misbehaving (issue 13): ``(kind, data)``."""
        return self.document.alerts

    def on_alert(self, callback: Callable[[str, dict], Any]) -> Callable[[], None]:
        """``callback(kind, data)`` for withheld (801/806), fork (805), rollback (804)…"""
        return self.document.on_alert(callback)

    async def synced(self, timeout: float | None = None) -> None:
        await self.document.synced(timeout)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None):
        """Wait until ``predicate()`` is true (re-checked after every event); raises
        ``SyncFailed`` if the document fails or access is revoked meanwhile."""
        await self.document.wait_for(predicate, timeout)

    # membership (documents with a membership log; docs/client.md, "Members and roles")
    @property
    def members(self) -> list[MemberInfo]:
        """Who may read and write: ``MemberInfo(pub_key, name, fingerprint, role, added_by,
        at, owner)`` from the verified log (empty without a log)."""
        return self.document.members

    @property
    def role(self) -> str | None:
        """Your role: ``admin`` / ``editor`` / ``viewer`` (``None`` without a log)."""
        return self.document.role

    @property
    def read_only(self) -> bool:
        return self.document.read_only

    @property
    def share_link(self) -> str:
        return self.document.share_link

    def check_writable(self) -> None:
        """Raise ``ReadOnlyError`` (a ``PermissionError``) if you may not write."""
        self.document.check_writable()

    async def add_member(self, identity: Any, role: str, **kw: Any):
        """Add a member by identity string (``secsync-id:1:…``) with ``role``."""
        return await self.document.add_member(identity, role, **kw)

    async def set_role(self, member: Any, role: str, **kw: Any):
        return await self.document.set_role(member, role, **kw)

    async def remove_member(self, member: Any, **kw: Any):
        return await self.document.remove_member(member, **kw)

    # issue 12 (epochs_client.py, links_client.py)
    async def rotate_key(self, **kw: Any):
        """Rotate the document key (admins): a new epoch, a lockbox for everyone."""
        return await self.document.rotate_key(**kw)

    async def create_link(self, role: str = "viewer", label: str = "link", **kw: Any):
        """An invitation link (``…#link=…``) with ``role`` and ``label``; ``expires_at=``."""
        return await self.document.create_link(role, label, **kw)

    @property
    def links(self):
        """Every link of the log, with who joined through each."""
        return self.document.links

    async def revoke_link(self, link: Any, **kw: Any):
        """Revoke a link (``remove_joined=True``: also remove who joined through it)."""
        return await self.document.revoke_link(link, **kw)

    async def create_snapshot(self, timeout: float | None = None) -> str:
        return await self.document.create_snapshot(timeout)

    def on_change(self, callback: Callable[..., Any]) -> Callable[[], None]:
        return self.document.on_change(callback)

    async def close(self) -> None:
        await self.document.close()

    async def __aenter__(self) -> Notebook:
        await self.document.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.document.__aexit__(*exc)

    # notebook content
    def _ensure_meta(self) -> None:
        ymeta = self.ynotebook._ymeta
        if "nbformat" not in ymeta:
            with self.doc.transaction():
                ymeta["nbformat"] = 4
                ymeta["nbformat_minor"] = 5
                ymeta["metadata"] = Map({})

    def _add_cell(self, cell_type: str, source: str, index: int | None, **fields: Any) -> Cell:
        self.check_writable()
        cell: dict[str, Any] = {
            "id": uuid.uuid4().hex[:8] + "-" + uuid.uuid4().hex[:4],
            "cell_type": cell_type,
            "source": source,
            "metadata": fields.pop("metadata", {}),
        }
        if cell_type == "code":
            cell["outputs"] = fields.pop("outputs", [])
            cell["execution_count"] = fields.pop("execution_count", None)
        cell.update(fields)
        with self.doc.transaction():
            self._ensure_meta()
            ycell = self.ynotebook.create_ycell(cell)
            ycells = self.ynotebook.ycells
            if index is None:
                ycells.append(ycell)
                index = len(ycells) - 1
            else:
                ycells.insert(index, ycell)
        return self.cells[index]

    def add_code_cell(self, source: str = "", index: int | None = None, **fields: Any) -> Cell:
        return self._add_cell("code", source, index, **fields)

    def add_markdown_cell(self, source: str = "", index: int | None = None, **fields) -> Cell:
        return self._add_cell("markdown", source, index, **fields)

    def add_raw_cell(self, source: str = "", index: int | None = None, **fields) -> Cell:
        return self._add_cell("raw", source, index, **fields)

    def delete_cell(self, index: int) -> None:
        del self.cells[index]

    def to_dict(self) -> dict[str, Any]:
        """The notebook as an nbformat dict (``.ipynb`` JSON)."""
        if "nbformat" not in self.ynotebook._ymeta and not len(self.cells):
            return {**EMPTY_NOTEBOOK, "cells": []}
        return self.ynotebook.get(deduplicate=False)

    def set(self, notebook: Mapping[str, Any]) -> None:
        """Replace the content with an nbformat dict (one transaction)."""
        self.check_writable()
        value = dict(notebook)
        value.setdefault("cells", [])
        value.setdefault("metadata", {})
        value.setdefault("nbformat", 4)
        value.setdefault("nbformat_minor", 5)
        self.ynotebook.set(value)

    @property
    def metadata(self) -> dict[str, Any]:
        return _plain(self.ynotebook._ymeta.get("metadata")) or {}

    def __repr__(self) -> str:
        return (
            f"<Notebook {self.doc_id} {len(self.cells)} cells, {self.document.state}/"
            f"{self.document.document_state}>"
        )


class _NotebookOpener(_Opener):
    async def __aenter__(self):
        self._obj = Notebook(self._factory())
        return await self._obj.__aenter__()

    def __await__(self):
        async def run():
            nb = Notebook(self._factory())
            try:
                await nb.document.start()
            except BaseException:
                await nb.document.close(wait_synced=False)
                raise
            return nb

        return run().__await__()


def open_notebook(
    relay_url: str,
    doc_id: str | None = None,
    key: bytes | str | None = None,
    *,
    signing_key=None,
    session_key: str | None = None,
    **options: Any,
) -> _NotebookOpener:
    """Open an encrypted notebook: ``async with open_notebook(url, doc_id, key) as nb:``.

    ``nb.cells`` is a list-like view (``cell.source``, ``cell.outputs`` …),
    ``nb.add_code_cell("print(1)")`` adds a cell, ``await nb.synced()`` waits for the relay's
    acknowledgement, ``nb.on_change(cb)`` reports remote changes and ``nb.collaborators``
    lists who is here. ``relay_url`` may also be a share link (then leave ``doc_id`` and
    ``key`` out), or an invitation link (``#link=``: joins as ``identity=``, issue 12).
    """
    from .links_client import LinkOpener, is_link_url

    if doc_id is None and key is None and is_link_url(relay_url):
        return LinkOpener(relay_url, Notebook, {"session_key": session_key, **options})
    return _NotebookOpener(
        lambda: SecsyncDocument(
            relay_url,
            doc_id,
            key,
            signing_key=signing_key,
            session_key=session_key,
            **options,
        )
    )


def create_notebook(
    relay_url: str,
    key: bytes | str | None = None,
    *,
    identity: Any = None,
    name: str | None = None,
    **options: Any,
) -> _NotebookOpener:
    """Create a new encrypted notebook with a membership log (you are its owner):
    ``async with create_notebook(relay) as nb: nb.share_link``. ``identity``: a key pair or an
    identity file path (default: ``$SECSYNC_IDENTITY`` or ~/.config/secsync-jupyter/identity.json).
    """
    opener = create_document(relay_url, key, identity=identity, name=name, **options)
    return _NotebookOpener(opener._factory)
