"""Awareness (presence) over Secsync ephemeral messages.

The content of an ephemeral ``message`` is a y-protocols awareness update (pycrdt
``Awareness`` encode/apply), as in the browser client. The local state carries
``{"secsync": {"pubKey", "fingerprint"}}``; a remote entry is applied only when its claimed
``secsync.pubKey`` is the key that signed the message, and an awareness client id, once
seen with one signer, cannot be updated or removed by another.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Awareness, Decoder, Doc, Encoder

from ..protocol import b64decode

__all__ = ["AwarenessBridge", "Collaborator", "fingerprint"]


def fingerprint(pub_key_b64: str) -> str:
    """Short human-comparable fingerprint of a public key (BLAKE2b-64, hex in groups of 4);
    the labextension shows the same string."""
    try:
        digest = hashlib.blake2b(b64decode(pub_key_b64), digest_size=8).hexdigest()
    except Exception:
        return "????"
    return " ".join(digest[i : i + 4] for i in range(0, 16, 4))


@dataclass(frozen=True)
class Collaborator:
    client_id: int
    pub_key: str
    fingerprint: str
    user: dict[str, Any] | None
    state: dict[str, Any]
    is_self: bool = False

    @property
    def name(self) -> str | None:
        user = self.user or {}
        return user.get("display_name") or user.get("name") or user.get("username")


def _decode(update: bytes) -> list[tuple[int, int, str]]:
    decoder = Decoder(update)
    entries = []
    for _ in range(decoder.read_var_uint()):
        client_id = decoder.read_var_uint()
        clock = decoder.read_var_uint()
        entries.append((client_id, clock, decoder.read_var_string()))
    return entries


def _encode(entries: list[tuple[int, int, str]]) -> bytes:
    encoder = Encoder()
    encoder.write_var_uint(len(entries))
    for client_id, clock, state in entries:
        encoder.write_var_uint(client_id)
        encoder.write_var_uint(clock)
        encoder.write_var_string(state)
    return encoder.to_bytes()


class AwarenessBridge:
    """Keeps a pycrdt ``Awareness`` in sync through a ``send(bytes)`` callable."""

    RENEW_SECONDS = 15.0
    OUTDATED_SECONDS = 30.0

    def __init__(self, doc: Doc, pub_key: str, send: Callable[[bytes], Any]):
        self.awareness = Awareness(doc)
        self.pub_key = pub_key
        self._send = send
        self._owners: dict[int, str] = {self.awareness.client_id: pub_key}
        self._listeners: list[Callable[[dict[str, list[int]]], Any]] = []
        self.dropped = 0
        self.awareness.observe(self._on_awareness)
        self.awareness.set_local_state_field(
            "secsync", {"pubKey": pub_key, "fingerprint": fingerprint(pub_key)}
        )

    @property
    def client_id(self) -> int:
        return self.awareness.client_id

    def on_change(self, callback: Callable[[dict[str, list[int]]], Any]) -> None:
        self._listeners.append(callback)

    def _on_awareness(self, topic: str, args: tuple[dict[str, list[int]], Any]) -> None:
        changes, origin = args
        if topic == "update" and origin == "local":
            self._send(self.encode_local())
        if topic == "change":
            for callback in list(self._listeners):
                callback(changes)

    def encode_local(self) -> bytes:
        return self.awareness.encode_awareness_update([self.client_id])

    def set_local_state_field(self, name: str, value: Any) -> None:
        self.awareness.set_local_state_field(name, value)

    def resend(self) -> None:
        """Send the full local state (a peer joined, or periodic renewal)."""
        if self.awareness.get_local_state() is not None:
            self._send(self.encode_local())

    def apply(self, content: bytes, author: str) -> None:
        """Apply a remote awareness update signed by ``author`` (entries claiming another
        key, or touching another signer's client id, are dropped)."""
        kept = []
        for client_id, clock, state_text in _decode(content):
            owner = self._owners.get(client_id)
            if owner is not None and owner != author:
                self.dropped += 1
                continue
            state = json.loads(state_text) if state_text else None
            if state is None:
                if owner != author:
                    self.dropped += 1
                    continue
            else:
                claim = state.get("secsync") if isinstance(state, dict) else None
                if not isinstance(claim, dict) or claim.get("pubKey") != author:
                    self.dropped += 1
                    continue
                self._owners[client_id] = author
            kept.append((client_id, clock, state_text))
        if kept:
            self.awareness.apply_awareness_update(_encode(kept), author)

    def remove_author(self, author: str) -> None:
        ids = [c for c, owner in self._owners.items() if owner == author and c != self.client_id]
        if ids:
            self.awareness.remove_awareness_states(ids, "disconnect")

    def tick(self, now_ms: float | None = None) -> None:
        """Renew the local state and drop remote states not renewed for 30 s."""
        now = now_ms if now_ms is not None else time.time() * 1000
        meta = self.awareness.meta
        local = meta.get(self.client_id)
        if local is not None and now - local["lastUpdated"] >= self.RENEW_SECONDS * 1000:
            state = self.awareness.get_local_state()
            if state is not None:
                self.awareness.set_local_state(state)
        stale = [
            c
            for c, m in meta.items()
            if c != self.client_id
            and c in self.awareness.states
            and now - m["lastUpdated"] >= self.OUTDATED_SECONDS * 1000
        ]
        if stale:
            self.awareness.remove_awareness_states(stale, "timeout")

    def leave(self) -> None:
        """Remove the local state (the others are told through ``send``)."""
        if self.awareness.get_local_state() is not None:
            self.awareness.set_local_state(None)

    def collaborators(self) -> list[Collaborator]:
        out = []
        for client_id, state in sorted(self.awareness.states.items()):
            pub = self._owners.get(client_id)
            if pub is None or not isinstance(state, dict):
                continue
            user = state.get("user") if isinstance(state.get("user"), dict) else None
            out.append(
                Collaborator(
                    client_id, pub, fingerprint(pub), user, state, client_id == self.client_id
                )
            )
        return out
