"""A very large frame is verified off the event loop: other documents keep being served."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from secsync_jupyter.protocol import generate_id
from secsync_jupyter.relay import inbound

from .util import Author, open_doc

pytestmark = pytest.mark.asyncio


async def test_other_documents_are_served_while_a_huge_frame_is_verified(relay, monkeypatch):
    """While the signature of an ≈ 8 MB update is being checked (held here until the test
    lets it go), a small update of another document is accepted and broadcast; then the
    large one is accepted too."""
    big, small = Author(generate_id()), Author(generate_id())
    big_writer, _ = await open_doc(relay.url, big.doc_id)
    big_snap = big.initial_snapshot()
    await big_writer.send(big_snap)
    await big_writer.next("snapshot-saved")
    small_writer, _ = await open_doc(relay.url, small.doc_id)
    small_snap = small.initial_snapshot()
    await small_writer.send(small_snap)
    await small_writer.next("snapshot-saved")
    small_reader, _ = await open_doc(relay.url, small.doc_id)

    verifying, release, verified = threading.Event(), threading.Event(), threading.Event()
    real = inbound.verify_update_signature

    def held_verify(msg):
        if len(msg.ciphertext) > 1_000_000:
            verifying.set()
            release.wait(30)  # in a worker thread this holds nobody else up
            try:
                return real(msg)
            finally:
                verified.set()
        return real(msg)

    monkeypatch.setitem(inbound._KINDS, "update", (*inbound._KINDS["update"][:2], held_verify))
    await big_writer.send(big.update(big_snap, 0, os.urandom(6 * 1024 * 1024)))
    assert await asyncio.to_thread(verifying.wait, 30)

    await small_writer.send(small.update(small_snap, 0))
    assert (await small_writer.next("update-saved"))["clock"] == 0
    assert (await small_reader.next("update"))["publicData"]["clock"] == 0
    assert not verified.is_set()  # the large frame was still being verified meanwhile
    release.set()
    assert (await big_writer.next("update-saved"))["clock"] == 0
    assert verified.is_set()
