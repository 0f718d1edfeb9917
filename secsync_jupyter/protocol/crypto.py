"""Cryptographic primitives, all from libsodium through PyNaCl (HMAC from hashlib).

* AEAD: XChaCha20-Poly1305-IETF, preceded by a 32-byte commitment ("robustness") tag
  ``HMAC-SHA-512-256(key, nonce_b64 + b64(aead_ciphertext) + ad)`` (libsodium
  ``crypto_auth``), checked in constant time before decrypting.
* hash: BLAKE2b-256, base64url.
* Signatures: Ed25519 detached over ``domain + canon({ciphertext, nonce, publicData})``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

import nacl.bindings as sodium
import nacl.exceptions

from .encoding import (
    B64_ALPHABET_RE,
    b64decode,
    b64decode_checked,
    b64encode,
    b64encode_bytes,
    canonicalize,
    canonicalize_b64,
)
from .errors import DecryptionError, EncodingError

KEY_BYTES = 32
NONCE_BYTES = 24
TAG_BYTES = 32
ID_BYTES = 24
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32

DOMAIN_SNAPSHOT = "secsync_snapshot"
DOMAIN_UPDATE = "secsync_update"
DOMAIN_EPHEMERAL_MESSAGE = "secsync_ephemeral_message"
DOMAIN_EPHEMERAL_SESSION_PROOF = "secsync_ephemeral_session_proof"
SIGNATURE_DOMAINS = (
    DOMAIN_SNAPSHOT,
    DOMAIN_UPDATE,
    DOMAIN_EPHEMERAL_MESSAGE,
    DOMAIN_EPHEMERAL_SESSION_PROOF,
)


def generate_key() -> bytes:
    """A fresh 32-byte document key."""
    return os.urandom(KEY_BYTES)


def generate_id() -> str:
    """A document / snapshot / session id: ``b64(24 random bytes)`` (32 characters)."""
    return b64encode(os.urandom(ID_BYTES))


def hash_b64(data: bytes | str) -> str:
    """``b64(BLAKE2b-256(data))``; a ``str`` is hashed as its UTF-8 bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return b64encode(hashlib.blake2b(data, digest_size=32).digest())


def commitment_tag(key: bytes, nonce_b64: str, aead_ciphertext_b64: str, ad: str) -> bytes:
    """libsodium ``crypto_auth``: HMAC-SHA-512 truncated to 32 bytes."""
    msg = (nonce_b64 + aead_ciphertext_b64 + ad).encode("utf-8")
    return hmac.digest(key, msg, "sha512")[:TAG_BYTES]


def _commitment_tag_of(key: bytes, nonce_b64: str, aead: bytes, ad: str) -> bytes:
    """:func:`commitment_tag` over the raw AEAD output, fed to the HMAC piecewise (no
    concatenated copy of the base64 text; same bytes, same tag)."""
    if len(aead) < 65536:  # small messages: one call is cheaper than the HMAC object
        return commitment_tag(key, nonce_b64, b64encode(aead), ad)
    mac = hmac.new(key, nonce_b64.encode("utf-8"), "sha512")
    mac.update(b64encode_bytes(aead))
    mac.update(ad.encode("utf-8"))
    return mac.digest()[:TAG_BYTES]


def encrypt_aead(
    plaintext: bytes, additional_data: str, key: bytes, nonce: bytes | None = None
) -> tuple[str, str]:
    """Encrypt; returns ``(nonce_b64, ciphertext_b64)`` with ``ciphertext = tag || aead``.

    ``nonce`` is for deterministic test vectors only; normally it is drawn at random.
    """
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    if len(key) != KEY_BYTES:
        raise ValueError("key must be 32 bytes")
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 24 bytes")
    ad = additional_data.encode("utf-8")
    aead = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), ad, nonce, key)
    nonce_b64 = b64encode(nonce)
    tag = _commitment_tag_of(key, nonce_b64, aead, additional_data)
    return nonce_b64, b64encode(tag + aead)


def decrypt_aead(
    ciphertext: bytes,
    additional_data: str,
    key: bytes,
    nonce_b64: str,
    nonce: bytes | None = None,
) -> bytes:
    """Check the commitment tag (constant time), then AEAD-decrypt.

    ``nonce`` may carry the already decoded ``nonce_b64``. Raises :class:`DecryptionError`
    on any failure (wrong key, tampering, bad lengths).
    """
    if len(key) != KEY_BYTES:
        raise DecryptionError("key must be 32 bytes")
    if len(ciphertext) < TAG_BYTES + 16:
        raise DecryptionError("ciphertext too short")
    if nonce is None:
        try:
            nonce = b64decode(nonce_b64, field="nonce", length=NONCE_BYTES)
        except EncodingError as exc:
            raise DecryptionError(str(exc))
    tag, aead = ciphertext[:TAG_BYTES], ciphertext[TAG_BYTES:]
    expected = _commitment_tag_of(key, nonce_b64, aead, additional_data)
    if not hmac.compare_digest(tag, expected):
        raise DecryptionError("commitment tag mismatch (wrong key or tampered ciphertext)")
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            aead, additional_data.encode("utf-8"), nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise DecryptionError("AEAD authentication failed")


@dataclass(frozen=True)
class SigningKeyPair:
    """An Ed25519 key pair in libsodium layout (``private_key`` = seed || public key)."""

    public_key: bytes
    private_key: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKeyPair:
        return cls.from_seed(os.urandom(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKeyPair:
        pk, sk = sodium.crypto_sign_seed_keypair(bytes(seed))
        return cls(pk, sk)

    @classmethod
    def from_private_key(cls, private_key: bytes) -> SigningKeyPair:
        if len(private_key) == 32:
            return cls.from_seed(private_key)
        if len(private_key) != 64:
            raise ValueError("an Ed25519 private key has 32 (seed) or 64 bytes")
        pair = cls.from_seed(private_key[:32])
        if pair.private_key != bytes(private_key):
            raise ValueError("private key does not match its embedded public key")
        return pair

    @property
    def seed(self) -> bytes:
        return self.private_key[:32]

    @property
    def public_key_b64(self) -> str:
        return b64encode(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Detached Ed25519 signature (64 bytes)."""
        return sodium.crypto_sign(message, self.private_key)[:SIGNATURE_BYTES]


def verify_detached(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        sodium.crypto_sign_open(signature + message, public_key)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False


def signed_bytes(
    domain: str, nonce: str, ciphertext: str, public_data_b64: str, *, validated: bool = False
) -> bytes:
    """``UTF-8(domain + canon({"ciphertext", "nonce", "publicData"}))``.

    All three values are base64url strings in valid messages; for those the canonical form
    is the fixed template below (no escaping is possible). Any other value goes through the
    general RFC 8785 canonicalizer, so the result is canonical JSON in every case.
    ``validated=True`` says the caller (the message parser) already checked the three values,
    which skips a second pass over the ciphertext.
    """
    if validated or (_is_b64(nonce) and _is_b64(ciphertext) and _is_b64(public_data_b64)):
        return (
            f'{domain}{{"ciphertext":"{ciphertext}","nonce":"{nonce}",'
            f'"publicData":"{public_data_b64}"}}'
        ).encode("ascii")
    body = canonicalize({"ciphertext": ciphertext, "nonce": nonce, "publicData": public_data_b64})
    return domain.encode("utf-8") + body


def _is_b64(value: object) -> bool:
    return isinstance(value, str) and B64_ALPHABET_RE.fullmatch(value) is not None


def sign_message(
    domain: str, nonce: str, ciphertext: str, public_data_b64: str, keypair: SigningKeyPair
) -> str:
    return b64encode(keypair.sign(signed_bytes(domain, nonce, ciphertext, public_data_b64)))


def seal_message(
    domain: str,
    content: bytes | str,
    public_data: dict,
    key: bytes,
    keypair: SigningKeyPair,
    nonce: bytes | None = None,
) -> dict:
    """Encrypt ``content`` with ``public_data`` as associated data and sign it: the JSON object
    of a snapshot, update or ephemeral message (``domain`` says which)."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    ad = canonicalize_b64(public_data)
    nonce_b64, ciphertext = encrypt_aead(content, ad, key, nonce)
    signature = sign_message(domain, nonce_b64, ciphertext, ad, keypair)
    return {
        "nonce": nonce_b64,
        "ciphertext": ciphertext,
        "publicData": public_data,
        "signature": signature,
    }


def verify_message(domain: str, message) -> bool:
    """Check the signature of a parsed message (its decoded key and signature are reused)."""
    return verify_detached(
        message.signature_bytes,
        signed_bytes(
            domain, message.nonce, message.ciphertext, message.public_data_b64, validated=True
        ),
        message.public_data.pub_key_bytes,
    )


def decrypt_message(message, key: bytes) -> bytes:
    """Commitment-tag check and AEAD decryption of a parsed message's ciphertext.

    The parser validated the ciphertext as strict base64url: it is decoded without a second
    validation pass."""
    try:
        ciphertext = b64decode_checked(message.ciphertext)
    except (UnicodeEncodeError, ValueError) as exc:  # pragma: no cover - not from the parser
        raise DecryptionError(f"ciphertext: {exc}")
    return decrypt_aead(
        ciphertext, message.public_data_b64, key, message.nonce, message.nonce_bytes
    )
