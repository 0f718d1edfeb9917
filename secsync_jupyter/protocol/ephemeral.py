"""Ephemeral messages (presence, cursors): never stored, replay-protected per session.

Plaintext layout: ``[type: 1 byte][sessionId: 24 bytes][counter: uint32 LE][content]``.

:func:`verify_and_decrypt_ephemeral_message` is the stateless check with the reference's
results (used by the conformance runner); :class:`EphemeralSession` is the sans-IO state
machine a client uses. It is stricter than the reference 0.5.0 client: once a peer's
session is verified its counter never goes down — a replayed (older) proof cannot reset it,
and a proof for a session seen before must carry a newer counter.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .crypto import (
    DOMAIN_EPHEMERAL_MESSAGE,
    DOMAIN_EPHEMERAL_SESSION_PROOF,
    ID_BYTES,
    SIGNATURE_BYTES,
    SigningKeyPair,
    decrypt_message,
    generate_id,
    seal_message,
    verify_detached,
    verify_message,
)
from .encoding import b64decode, b64encode, canonicalize
from .errors import CreationError, DecryptionError, EphemeralError, ProtocolError
from .messages import EphemeralMessage

__all__ = [
    "EphemeralResult",
    "EphemeralSession",
    "MessageType",
    "create_ephemeral_message",
    "create_ephemeral_session_proof",
    "verify_and_decrypt_ephemeral_message",
    "verify_ephemeral_session_proof",
    "verify_ephemeral_signature",
]

PREFIX_BYTES = 1 + ID_BYTES + 4
MAX_COUNTER = 0xFFFFFFFF


class MessageType(IntEnum):
    INITIALIZE = 1
    PROOF_AND_REQUEST_PROOF = 2
    PROOF = 3
    MESSAGE = 4

    @classmethod
    def from_name(cls, name: str | int | MessageType) -> MessageType:
        if isinstance(name, int):
            return cls(name)
        return {
            "initialize": cls.INITIALIZE,
            "proofAndRequestProof": cls.PROOF_AND_REQUEST_PROOF,
            "proof": cls.PROOF,
            "message": cls.MESSAGE,
        }[name]


def create_ephemeral_message(
    content: bytes,
    type: MessageType | str | int,
    public_data: Mapping[str, Any],
    key: bytes,
    keypair: SigningKeyPair,
    session_id: str,
    session_counter: int,
    *,
    nonce: bytes | None = None,
) -> EphemeralMessage:
    """Encrypt and sign one ephemeral message. Raises :class:`CreationError` (601)."""
    try:
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError("ephemeral content must be bytes")
        if not 0 <= session_counter <= MAX_COUNTER:
            raise ValueError("session counter must fit in a uint32")
        type_byte = MessageType.from_name(type)
        plaintext = (
            bytes([type_byte])
            + b64decode(session_id, field="sessionId", length=ID_BYTES)
            + struct.pack("<I", session_counter)
            + bytes(content)
        )
        return EphemeralMessage.from_json(
            seal_message(
                DOMAIN_EPHEMERAL_MESSAGE, plaintext, dict(public_data), key, keypair, nonce
            )
        )
    except (ProtocolError, KeyError, ValueError, TypeError) as exc:
        raise CreationError(
            f"creating an ephemeral message failed: {exc}", code="SECSYNC_ERROR_601"
        )


def _proof_bytes(current_client_session_id: str, remote_client_session_id: str) -> bytes:
    return DOMAIN_EPHEMERAL_SESSION_PROOF.encode() + canonicalize(
        {
            "currentClientSessionId": current_client_session_id,
            "remoteClientSessionId": remote_client_session_id,
        }
    )


def create_ephemeral_session_proof(
    remote_client_session_id: str, current_client_session_id: str, keypair: SigningKeyPair
) -> bytes:
    """The raw 64-byte signature proving our session to the remote session."""
    return keypair.sign(_proof_bytes(current_client_session_id, remote_client_session_id))


def verify_ephemeral_session_proof(
    proof: bytes, current_client_session_id: str, remote_client_session_id: str, public_key: bytes
) -> bool:
    """Check a peer's proof: it signed (its session = remote, our session = current)."""
    if len(proof) != SIGNATURE_BYTES:
        return False
    return verify_detached(
        proof, _proof_bytes(remote_client_session_id, current_client_session_id), public_key
    )


def verify_ephemeral_signature(message: EphemeralMessage) -> bytes:
    """Check the author's signature only (what the relay does); returns the public key (308)."""
    if not verify_message(DOMAIN_EPHEMERAL_MESSAGE, message):
        raise EphemeralError(code="SECSYNC_ERROR_308", field="signature")
    return message.public_data.pub_key_bytes


@dataclass(frozen=True)
class DecodedEphemeral:
    type: int
    session_id: str
    counter: int
    content: bytes


def decrypt_ephemeral(message: EphemeralMessage, key: bytes) -> DecodedEphemeral:
    """Verify signature (308), decrypt (301) and split the plaintext (307)."""
    verify_ephemeral_signature(message)
    try:
        plaintext = decrypt_message(message, key)
    except DecryptionError as exc:
        raise EphemeralError(exc.detail, code="SECSYNC_ERROR_301", field="ciphertext")
    if len(plaintext) < PREFIX_BYTES:
        raise EphemeralError("plaintext shorter than its prefix", code="SECSYNC_ERROR_307")
    (counter,) = struct.unpack_from("<I", plaintext, 1 + ID_BYTES)
    return DecodedEphemeral(
        plaintext[0], b64encode(plaintext[1 : 1 + ID_BYTES]), counter, plaintext[PREFIX_BYTES:]
    )


@dataclass
class EphemeralResult:
    """Outcome of receiving one ephemeral message (reference result shape)."""

    content: bytes | None = None
    proof: bytes | None = None
    #: True/False where the reference result has ``requestProof``; None where it has none
    request_proof: bool | None = None
    valid_sessions: dict[str, dict[str, Any]] | None = None
    #: set for 302: the message is answered with a proof, but not delivered
    error: EphemeralError | None = None
    ignored: bool = False


def verify_and_decrypt_ephemeral_message(
    message: EphemeralMessage,
    key: bytes,
    current_doc_id: str,
    session_id: str,
    valid_sessions: Mapping[str, Mapping[str, Any]],
    keypair: SigningKeyPair,
) -> EphemeralResult:
    """The stateless reference check. ``valid_sessions`` maps pubKey →
    ``{"sessionId", "sessionCounter"}``; the result carries the new mapping.

    Raises :class:`EphemeralError` for 308, 301, 307, 305 and 303. A message without a
    verified session returns a proof to send back and ``error`` 302. A validly signed
    message for another document is ignored (``ignored=True``), as in the reference.
    """
    decoded = decrypt_ephemeral(message, key)
    pub_b64 = message.public_data.pub_key
    sessions = {k: dict(v) for k, v in valid_sessions.items()}
    if message.public_data.doc_id != current_doc_id:
        return EphemeralResult(valid_sessions=sessions, ignored=True)
    kind = decoded.type
    if kind == MessageType.INITIALIZE:
        proof = create_ephemeral_session_proof(decoded.session_id, session_id, keypair)
        return EphemeralResult(proof=proof, request_proof=True, valid_sessions=sessions)
    if kind in (MessageType.PROOF, MessageType.PROOF_AND_REQUEST_PROOF):
        pub = b64decode(pub_b64, length=32)
        if not verify_ephemeral_session_proof(decoded.content, session_id, decoded.session_id, pub):
            return EphemeralResult(valid_sessions=sessions, ignored=True)
        sessions[pub_b64] = {"sessionId": decoded.session_id, "sessionCounter": decoded.counter}
        proof = None
        if kind == MessageType.PROOF_AND_REQUEST_PROOF:
            proof = create_ephemeral_session_proof(decoded.session_id, session_id, keypair)
        return EphemeralResult(proof=proof, request_proof=False, valid_sessions=sessions)
    if kind == MessageType.MESSAGE:
        known = sessions.get(pub_b64)
        if known is None or known.get("sessionId") != decoded.session_id:
            proof = create_ephemeral_session_proof(decoded.session_id, session_id, keypair)
            return EphemeralResult(
                proof=proof,
                request_proof=True,
                valid_sessions=sessions,
                error=EphemeralError(code="SECSYNC_ERROR_302"),
            )
        if known["sessionCounter"] >= decoded.counter:
            raise EphemeralError(code="SECSYNC_ERROR_303", field="counter")
        sessions[pub_b64] = {"sessionId": decoded.session_id, "sessionCounter": decoded.counter}
        return EphemeralResult(content=decoded.content, valid_sessions=sessions)
    raise EphemeralError(code="SECSYNC_ERROR_305", field="type")


@dataclass
class _PeerState:
    #: the verified session id and its last counter
    session_id: str | None = None
    counter: int = -1
    #: every session of this peer seen verified, with its highest counter (bounded)
    history: OrderedDict[str, int] = field(default_factory=OrderedDict)


@dataclass
class Received:
    """What a client does with one incoming ephemeral message."""

    author: str
    content: bytes | None = None
    reply: EphemeralMessage | None = None
    error: EphemeralError | None = None


class EphemeralSession:
    """Our side of the ephemeral-session handshake for one document (sans-IO).

    ``initialize()`` makes the message to send after connecting; ``receive(msg)`` checks an
    incoming message and returns what to deliver and what to answer; ``create(content)``
    makes an outgoing ``message``. Counters start at a random value below 2^31.
    """

    HISTORY = 64

    def __init__(
        self,
        doc_id: str,
        key: bytes,
        keypair: SigningKeyPair,
        *,
        session_id: str | None = None,
        counter: int | None = None,
    ):
        self.doc_id = doc_id
        self.key = key
        self.keypair = keypair
        self.id = session_id or generate_id()
        self.counter = (
            counter if counter is not None else int.from_bytes(os.urandom(4), "little") % 2**31
        )
        self.peers: dict[str, _PeerState] = {}
        self._public_data = {"docId": doc_id, "pubKey": keypair.public_key_b64}

    @property
    def valid_sessions(self) -> dict[str, dict[str, Any]]:
        return {
            k: {"sessionId": p.session_id, "sessionCounter": p.counter}
            for k, p in self.peers.items()
            if p.session_id is not None
        }

    def _next(self, content: bytes, kind: MessageType) -> EphemeralMessage:
        if self.counter >= MAX_COUNTER:
            raise CreationError("ephemeral session counter exhausted", code="SECSYNC_ERROR_601")
        self.counter += 1
        return create_ephemeral_message(
            content, kind, self._public_data, self.key, self.keypair, self.id, self.counter
        )

    def initialize(self) -> EphemeralMessage:
        return self._next(b"", MessageType.INITIALIZE)

    def create(self, content: bytes) -> EphemeralMessage:
        return self._next(content, MessageType.MESSAGE)

    def forget(self, pub_key: str) -> None:
        """Drop a peer's verified session (e.g. it disconnected); its history is kept."""
        peer = self.peers.get(pub_key)
        if peer is not None:
            peer.session_id = None

    def receive(self, message: EphemeralMessage) -> Received:
        """Process one incoming message. Raises :class:`EphemeralError` (301, 303, 305,
        306, 307, 308); returns a :class:`Received` with the content to deliver (if any)
        and the reply to send (if any; 302 comes with a reply and ``error``)."""
        decoded = decrypt_ephemeral(message, self.key)
        author = message.public_data.pub_key
        if message.public_data.doc_id != self.doc_id:
            raise EphemeralError(code="SECSYNC_ERROR_306", field="publicData.docId")
        peer = self.peers.setdefault(author, _PeerState())
        kind = decoded.type
        if kind == MessageType.INITIALIZE:
            proof = create_ephemeral_session_proof(decoded.session_id, self.id, self.keypair)
            return Received(author, reply=self._next(proof, MessageType.PROOF_AND_REQUEST_PROOF))
        if kind in (MessageType.PROOF, MessageType.PROOF_AND_REQUEST_PROOF):
            pub = b64decode(author, length=32)
            if not verify_ephemeral_session_proof(
                decoded.content, self.id, decoded.session_id, pub
            ):
                # ignored without an error, as in the reference and the browser: a proof for
                # an earlier session of ours (one in flight across a reconnect) is expected
                return Received(author)
            seen = peer.history.get(decoded.session_id)
            if seen is not None and decoded.counter <= seen:
                # a replayed proof must not reset the counter (the reference allows it)
                raise EphemeralError(code="SECSYNC_ERROR_303", field="counter")
            self._verified(peer, decoded.session_id, decoded.counter)
            reply = None
            if kind == MessageType.PROOF_AND_REQUEST_PROOF:
                proof = create_ephemeral_session_proof(decoded.session_id, self.id, self.keypair)
                reply = self._next(proof, MessageType.PROOF)
            return Received(author, reply=reply)
        if kind == MessageType.MESSAGE:
            if peer.session_id is None or peer.session_id != decoded.session_id:
                proof = create_ephemeral_session_proof(decoded.session_id, self.id, self.keypair)
                return Received(
                    author,
                    reply=self._next(proof, MessageType.PROOF_AND_REQUEST_PROOF),
                    error=EphemeralError(code="SECSYNC_ERROR_302"),
                )
            if decoded.counter <= peer.counter:
                raise EphemeralError(code="SECSYNC_ERROR_303", field="counter")
            self._verified(peer, decoded.session_id, decoded.counter)
            return Received(author, content=decoded.content)
        raise EphemeralError(code="SECSYNC_ERROR_305", field="type")

    def _verified(self, peer: _PeerState, session_id: str, counter: int) -> None:
        peer.session_id = session_id
        peer.counter = counter
        peer.history[session_id] = counter
        peer.history.move_to_end(session_id)
        while len(peer.history) > self.HISTORY:
            peer.history.popitem(last=False)
