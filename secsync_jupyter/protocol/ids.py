"""Identifier patterns (defined once: the relay, share links and the Python client import them).

A document id is what a relay URL and a share link carry: ``[A-Za-z0-9_-]{1,128}`` (ids made
by :func:`~.crypto.generate_id` are 32 such characters). Snapshot ids and other ids inside
messages are strings of at most ``MAX_ID_CHARS`` characters (see :mod:`.messages`).
"""

from __future__ import annotations

import re

#: the document id pattern (its TypeScript twin: labextension/src/secsync/ids.ts)
DOC_ID_PATTERN = r"[A-Za-z0-9_-]{1,128}"
DOC_ID_RE = re.compile(DOC_ID_PATTERN)


def is_doc_id(value: object) -> bool:
    """Whether ``value`` is a valid document id."""
    return isinstance(value, str) and DOC_ID_RE.fullmatch(value) is not None
