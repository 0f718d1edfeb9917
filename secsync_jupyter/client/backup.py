"""Key backups: document keys and a signing identity in one passphrase-protected file.

The format (docs/backup.md) is shared with the browser extension (labextension/src/backup.ts):
a JSON object ``{"format": "secsync-jupyter-key-backup", "version": 2, "kdf": {...},
"cipher": {...}, "ciphertext": ...}`` (version 1 files, without epoch keys, are still read).
The passphrase (UTF-8 of its NFC form) goes through
libsodium's ``crypto_pwhash`` (Argon2id v1.3, parameters and 16-byte salt in ``kdf``) to a
32-byte key; ``crypto_secretbox`` (XSalsa20-Poly1305, 24-byte nonce in ``cipher``) encrypts
the JSON content (:class:`BackupContent`). Changing any field changes the derived key or fails
the authenticator: a wrong passphrase and a changed file both fail as :class:`BackupError`.

The Python side's keys live in a small key store (:func:`keys_path`: ``$SECSYNC_KEYS`` or
``$XDG_CONFIG_HOME/secsync-jupyter/keys.json``, mode 0600); its identity in the identity file
(:func:`identity_path`); the keys of later key epochs (issue 12) in the keyring file next to
the identity (epochs_client.KeyringFile). Importing merges: a document key or identity that
differs from the stored one is never replaced unless asked for (``replace=True``); an epoch
key that differs from the stored one for that epoch is never replaced (reported).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl import pwhash
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from nacl.utils import random as random_bytes

from ..protocol import SigningKeyPair, b64decode, b64encode
from ..protocol.ids import is_doc_id

FORMAT = "secsync-jupyter-key-backup"
#: what writers write (2: key entries may carry ``epochs`` and ``seen``, ``key`` may be null)
VERSION = 2
#: what readers read
READ_VERSIONS = (1, 2)
KDF_NAME = "argon2id13"
CIPHER_NAME = "xsalsa20poly1305"
#: libsodium's crypto_pwhash_OPSLIMIT_MODERATE / MEMLIMIT_MODERATE (about 1 s, 256 MiB)
OPSLIMIT = 3
MEMLIMIT = 256 * 1024 * 1024
#: what a reader accepts (a file asking for more would be a way to exhaust memory or time)
MAX_OPSLIMIT = 10
MAX_MEMLIMIT = 1024 * 1024 * 1024
MIN_OPSLIMIT = 1
MIN_MEMLIMIT = 8 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_KEYS = 100_000
MAX_EPOCHS = 100_000
MAX_NAME_CHARS = 1024
MIN_PASSPHRASE_CHARS = 10

KEYS_ENV = "SECSYNC_KEYS"
IDENTITY_ENV = "SECSYNC_IDENTITY"
KEYS_FORMAT = "secsync-jupyter-keys"
_KEY_FINGERPRINT_LABEL = b"secsync document key\n"


class BackupError(ValueError):
    """A key backup cannot be read (not one, damaged, wrong passphrase) or written."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _hex_groups(digest: bytes) -> str:
    h = digest.hex()
    return " ".join(h[i : i + 4] for i in range(0, len(h), 4))


def key_fingerprint(key: bytes) -> str:
    """BLAKE2b-64 of ``"secsync document key\\n" || key`` in hex groups (as the browser shows)."""
    return _hex_groups(hashlib.blake2b(_KEY_FINGERPRINT_LABEL + key, digest_size=8).digest())


def identity_fingerprint(public_key: bytes) -> str:
    """BLAKE2b-64 of an Ed25519 public key in hex groups (the collaborators popup's string)."""
    return _hex_groups(hashlib.blake2b(public_key, digest_size=8).digest())


@dataclass
class BackupKey:
    doc_id: str
    #: the document (epoch-0) key; None for a member that holds only later epochs' keys
    key: bytes | None = field(repr=False)
    #: a file name the key was last used with (a hint for people, may be None)
    name: str | None = None
    #: when the key was stored where it was exported from (ISO 8601, may be None)
    created: str | None = None
    #: the keys of key epochs 1, 2, … (issue 12: after key rotations), epoch -> key
    epochs: dict[int, bytes] = field(default_factory=dict, repr=False)
    #: the newest epoch of a snapshot the keyring's owner accepted (rollback check 769)
    seen: int | None = None

    def entry_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "docId": self.doc_id,
            "key": None if self.key is None else b64encode(self.key),
            "name": self.name,
            "created": self.created,
        }
        if self.epochs:
            out["epochs"] = {str(e): b64encode(self.epochs[e]) for e in sorted(self.epochs)}
        if self.seen is not None:
            out["seen"] = self.seen
        return out


@dataclass
class BackupContent:
    keys: list[BackupKey] = field(default_factory=list)
    identity: SigningKeyPair | None = None
    created: str = field(default_factory=now_iso)
    #: "browser" or "python": where the backup was made
    created_by: str = "python"

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "createdBy": self.created_by,
            "identity": None
            if self.identity is None
            else {
                "publicKey": b64encode(self.identity.public_key),
                "seed": b64encode(self.identity.seed),
            },
            "keys": [k.entry_json() for k in self.keys],
        }


def _damaged(what: str) -> BackupError:
    return BackupError(f"the key backup is damaged: {what}")


def _optional_str(value: Any, what: str, limit: int = MAX_NAME_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _damaged(f"{what} is not a string of at most {limit} characters")
    return value


def _parse_epochs(value: Any, doc_id: str) -> dict[int, bytes]:
    """``{"1": b64, …}``: keys of epochs 1 and up (epoch 0 is the entry's ``key``)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_EPOCHS:
        raise _damaged(f"the epoch keys of document {doc_id} are not an object")
    epochs: dict[int, bytes] = {}
    for name, key in value.items():
        if not isinstance(name, str) or not name.isdigit() or str(int(name)) != name:
            raise _damaged(f"document {doc_id} has an epoch {name!r} that is not a number")
        if int(name) == 0:
            raise _damaged(f"document {doc_id} lists epoch 0 among its epoch keys")
        try:
            epochs[int(name)] = b64decode(key, field="key", length=32)
        except ValueError:
            raise _damaged(
                f"the key of epoch {name} of document {doc_id} is not 32 bytes of base64url"
            )
    return epochs


def parse_content(data: Any) -> BackupContent:
    """The decrypted content (a JSON object) as :class:`BackupContent`; :class:`BackupError`."""
    if not isinstance(data, dict):
        raise _damaged("its content is not a JSON object")
    keys_in = data.get("keys")
    if not isinstance(keys_in, list) or len(keys_in) > MAX_KEYS:
        raise _damaged("'keys' is not a list")
    keys: list[BackupKey] = []
    seen: set[str] = set()
    for i, item in enumerate(keys_in):
        if not isinstance(item, dict):
            raise _damaged(f"key {i} is not an object")
        doc_id = item.get("docId")
        if not is_doc_id(doc_id):
            raise _damaged(f"key {i} has no valid document id")
        if doc_id in seen:
            raise _damaged(f"document {doc_id} is listed twice")
        seen.add(doc_id)
        epochs = _parse_epochs(item.get("epochs"), doc_id)
        key = None
        if item.get("key") is not None or not epochs:
            try:
                key = b64decode(item.get("key"), field="key", length=32)
            except ValueError:
                raise _damaged(f"the key of document {doc_id} is not 32 bytes of base64url")
        newest = item.get("seen")
        if newest is not None and (
            not isinstance(newest, int) or isinstance(newest, bool) or not 0 <= newest < 2**31
        ):
            raise _damaged(f"'seen' of document {doc_id} is not an epoch number")
        keys.append(
            BackupKey(
                doc_id,
                key,
                _optional_str(item.get("name"), f"the name of document {doc_id}"),
                _optional_str(item.get("created"), f"the date of document {doc_id}", 64),
                epochs,
                newest,
            )
        )
    identity = None
    ident = data.get("identity")
    if ident is not None:
        if not isinstance(ident, dict):
            raise _damaged("'identity' is not an object")
        try:
            seed = b64decode(ident.get("seed"), field="seed", length=32)
            public_key = b64decode(ident.get("publicKey"), field="publicKey", length=32)
        except ValueError:
            raise _damaged("the identity's seed or public key is not 32 bytes of base64url")
        identity = SigningKeyPair.from_seed(seed)
        if identity.public_key != public_key:
            raise _damaged("the identity's public key does not belong to its seed")
    created = _optional_str(data.get("created"), "'created'", 64) or ""
    created_by = _optional_str(data.get("createdBy"), "'createdBy'", 64) or ""
    return BackupContent(keys, identity, created, created_by)


def _normalize_passphrase(passphrase: str) -> bytes:
    if not isinstance(passphrase, str) or not passphrase:
        raise BackupError("the passphrase is empty")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return pwhash.argon2id.kdf(
        SecretBox.KEY_SIZE,
        _normalize_passphrase(passphrase),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )


def encrypt_backup(
    content: BackupContent,
    passphrase: str,
    *,
    opslimit: int = OPSLIMIT,
    memlimit: int = MEMLIMIT,
    check_strength: bool = True,
) -> str:
    """The backup file's text (JSON, ends with a newline)."""
    if check_strength and len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise BackupError(f"choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters")
    salt = random_bytes(pwhash.argon2id.SALTBYTES)
    nonce = random_bytes(SecretBox.NONCE_SIZE)
    key = _derive(passphrase, salt, opslimit, memlimit)
    plaintext = json.dumps(content.to_json(), separators=(",", ":"), ensure_ascii=False)
    ciphertext = SecretBox(key).encrypt(plaintext.encode("utf-8"), nonce).ciphertext
    outer = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": {
            "name": KDF_NAME,
            "opslimit": opslimit,
            "memlimit": memlimit,
            "salt": b64encode(salt),
        },
        "cipher": {"name": CIPHER_NAME, "nonce": b64encode(nonce)},
        "ciphertext": b64encode(ciphertext),
    }
    return json.dumps(outer, indent=2) + "\n"


@dataclass
class _Envelope:
    opslimit: int
    memlimit: int
    salt: bytes
    nonce: bytes
    ciphertext: bytes


def _int_in(value: Any, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _damaged(f"{what} is not a whole number from {low} to {high}")
    return value


def _parse_envelope(text: str | bytes) -> _Envelope:
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise BackupError("this is not a secsync-jupyter key backup (the file is too large)")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BackupError("this is not a secsync-jupyter key backup (not UTF-8 text)")
    if len(text) > MAX_FILE_BYTES:
        raise BackupError("this is not a secsync-jupyter key backup (the file is too large)")
    try:
        data = json.loads(text)
    except ValueError:
        raise BackupError("this is not a secsync-jupyter key backup (not JSON)")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError("this is not a secsync-jupyter key backup (no 'format' field of one)")
    if data.get("version") not in READ_VERSIONS or isinstance(data.get("version"), bool):
        raise BackupError(
            f"key backup version {data.get('version')!r} is not supported (this program reads"
            f" versions {', '.join(map(str, READ_VERSIONS))}); use a newer secsync-jupyter"
        )
    kdf, cipher = data.get("kdf"), data.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != KDF_NAME:
        raise _damaged(f"'kdf' is not {KDF_NAME}")
    if not isinstance(cipher, dict) or cipher.get("name") != CIPHER_NAME:
        raise _damaged(f"'cipher' is not {CIPHER_NAME}")
    try:
        salt = b64decode(kdf.get("salt"), field="salt", length=pwhash.argon2id.SALTBYTES)
        nonce = b64decode(cipher.get("nonce"), field="nonce", length=SecretBox.NONCE_SIZE)
        ciphertext = b64decode(data.get("ciphertext"), field="ciphertext")
    except ValueError as exc:
        raise _damaged(f"a base64url field is wrong ({exc})")
    if len(ciphertext) < SecretBox.MACBYTES:
        raise _damaged("the ciphertext is too short")
    return _Envelope(
        _int_in(kdf.get("opslimit"), MIN_OPSLIMIT, MAX_OPSLIMIT, "kdf.opslimit"),
        _int_in(kdf.get("memlimit"), MIN_MEMLIMIT, MAX_MEMLIMIT, "kdf.memlimit"),
        salt,
        nonce,
        ciphertext,
    )


def decrypt_backup(text: str | bytes, passphrase: str) -> BackupContent:
    """Reads a backup file's text; :class:`BackupError` with a message for people."""
    env = _parse_envelope(text)
    key = _derive(passphrase, env.salt, env.opslimit, env.memlimit)
    try:
        plaintext = SecretBox(key).decrypt(env.ciphertext, env.nonce)
    except CryptoError:
        raise BackupError("wrong passphrase, or the backup file was changed")
    try:
        data = json.loads(plaintext.decode("utf-8"))
    except ValueError:
        raise _damaged("its content is not JSON")
    return parse_content(data)


# ----------------------------------------------------------------------------------------
# the Python side's key store and identity file
# ----------------------------------------------------------------------------------------


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "secsync-jupyter"


def keys_path() -> Path:
    """``$SECSYNC_KEYS``, else ``$XDG_CONFIG_HOME/secsync-jupyter/keys.json``."""
    return Path(os.environ[KEYS_ENV]) if os.environ.get(KEYS_ENV) else _config_dir() / "keys.json"


def identity_path() -> Path:
    """``$SECSYNC_IDENTITY``, else ``$XDG_CONFIG_HOME/secsync-jupyter/identity.json``."""
    from .identity_file import default_identity_path

    return default_identity_path()


def _write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically, readable by the owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json_file(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise BackupError(f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}")
    except ValueError:
        raise BackupError(f"the {what} {str(path)!r} is not JSON (left as it is)")


def load_keys(path: Path | None = None) -> list[BackupKey]:
    """The key store's keys ([] when it does not exist)."""
    path = path or keys_path()
    if not path.exists():
        return []
    data = _read_json_file(path, "key store")
    if not isinstance(data, dict) or data.get("format") != KEYS_FORMAT:
        raise BackupError(f"{str(path)!r} is not a secsync-jupyter key store (left as it is)")
    try:
        return parse_content({"keys": data.get("keys")}).keys
    except BackupError as exc:
        raise BackupError(f"the key store {str(path)!r} is damaged: {exc} (left as it is)")


def save_keys(keys: list[BackupKey], path: Path | None = None) -> None:
    """Writes the key store: the document (epoch-0) keys (epoch keys go to the keyring file)."""
    content = [
        BackupKey(k.doc_id, k.key, k.name, k.created).entry_json()
        for k in keys
        if k.key is not None
    ]
    text = json.dumps({"format": KEYS_FORMAT, "version": 1, "keys": content}, indent=2) + "\n"
    _write_private(path or keys_path(), text)


def load_identity(path: Path | None = None) -> SigningKeyPair | None:
    """The identity file's key pair (None when there is no identity file)."""
    from .identity_file import IdentityFileError
    from .identity_file import load_identity as load

    path = path or identity_path()
    if not os.path.lexists(path):
        return None
    try:
        return load(path).keypair
    except IdentityFileError as exc:
        raise BackupError(f"{exc} (left as it is)")


def save_identity(pair: SigningKeyPair, path: Path | None = None) -> Path | None:
    """Writes the identity file (identity_file.create_identity: 0600, never over a file). An
    identity file that is there is first renamed to ``<name>.replaced-<UTC time>`` (so a
    replaced identity is never lost); returns that name, or None."""
    from .identity_file import IdentityFileError, create_identity

    path = path or identity_path()
    moved = None
    if os.path.lexists(path):
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        moved = path.with_name(f"{path.name}.replaced-{stamp}")
        os.rename(path, moved)
    try:
        create_identity(path, keypair=pair)
    except IdentityFileError as exc:
        raise BackupError(str(exc))
    return moved


# ----------------------------------------------------------------------------------------
# merging
# ----------------------------------------------------------------------------------------


@dataclass
class MergeResult:
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: documents whose stored key differs from the backup's and was kept
    kept: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    #: "added", "unchanged", "kept", "replaced" or "none" (no identity in the backup)
    identity: str = "none"
    #: where a replaced identity file was moved
    identity_moved: Path | None = None
    #: epoch keys (issue 12) added to the keyring file / already there: (docId, epoch)
    epochs_added: list[tuple[str, int]] = field(default_factory=list)
    epochs_unchanged: list[tuple[str, int]] = field(default_factory=list)
    #: epoch keys that differ from the stored key of that epoch: the stored one was kept
    epoch_conflicts: list[tuple[str, int]] = field(default_factory=list)


def merge_keys(
    stored: list[BackupKey], incoming: list[BackupKey], *, replace: bool = False
) -> tuple[list[BackupKey], MergeResult]:
    """``stored`` merged with ``incoming``: new documents are added, equal keys left, a
    different key kept unless ``replace``."""
    result = MergeResult()
    by_id = {k.doc_id: k for k in stored}
    merged = list(stored)
    for k in incoming:
        if k.key is None:  # only epoch keys: for the keyring file (merge_keyrings)
            continue
        mine = by_id.get(k.doc_id)
        if mine is None:
            entry = BackupKey(k.doc_id, k.key, k.name, k.created)
            merged.append(entry)
            by_id[k.doc_id] = entry
            result.added.append(k.doc_id)
        elif mine.key == k.key:
            result.unchanged.append(k.doc_id)
        elif replace:
            merged[merged.index(mine)] = by_id[k.doc_id] = BackupKey(
                k.doc_id, k.key, k.name or mine.name, k.created
            )
            result.replaced.append(k.doc_id)
        else:
            result.kept.append(k.doc_id)
    return merged, result


def import_backup(
    content: BackupContent,
    *,
    replace_keys: bool = False,
    replace_identity: bool = False,
    keys_file: Path | None = None,
    identity_file: Path | None = None,
) -> MergeResult:
    """Merges a decrypted backup into the key store and the identity file."""
    stored = load_keys(keys_file)  # a damaged store fails here, before anything is written
    current = load_identity(identity_file)
    rings = _keyring_file(identity_file)
    has_epochs = [k for k in content.keys if k.epochs or k.seen is not None]
    stored_rings = {k.doc_id: _load_ring(rings, k.doc_id) for k in has_epochs} if rings else {}
    merged, result = merge_keys(stored, content.keys, replace=replace_keys)
    if result.added or result.replaced:
        save_keys(merged, keys_file)
    if rings is not None:
        for k in has_epochs:
            merge_keyring(rings, k, stored_rings[k.doc_id], result)
    if content.identity is not None:
        if current is None or (
            replace_identity and current.public_key != content.identity.public_key
        ):
            result.identity_moved = save_identity(content.identity, identity_file)
            result.identity = "added" if current is None else "replaced"
        elif current.public_key == content.identity.public_key:
            result.identity = "unchanged"
        else:
            result.identity = "kept"
    return result


def _keyring_file(identity_file: Path | None):
    from .epochs_client import default_keyring_file

    return default_keyring_file(identity_file or identity_path())


def _load_ring(rings: Any, doc_id: str) -> tuple[Any, int | None]:
    try:
        return rings.load(doc_id)
    except ValueError as exc:
        raise BackupError(f"{exc} (left as it is)")


def merge_keyring(
    rings: Any, incoming: BackupKey, stored: tuple[Any, int | None], result: MergeResult
) -> None:
    """Adds ``incoming``'s epoch keys (and its epoch-0 key where the keyring has none) to the
    keyring file: an epoch already holding another key keeps it (``result.epoch_conflicts``,
    epoch 0 too); ``seen`` becomes the newer of the two."""
    from ..protocol.epochs import Keyring

    ring, seen = stored
    keys = dict(incoming.epochs)
    if incoming.key is not None:
        keys[0] = incoming.key
    merged = Keyring({e: ring.key(e) for e in ring.epochs})
    changed = False
    for epoch in sorted(keys):
        if epoch not in ring:
            merged.add(epoch, keys[epoch])
            changed = True
            if epoch:  # (epoch 0: the document key, counted by merge_keys)
                result.epochs_added.append((incoming.doc_id, epoch))
        elif ring.key(epoch) != keys[epoch]:
            result.epoch_conflicts.append((incoming.doc_id, epoch))
        elif epoch:
            result.epochs_unchanged.append((incoming.doc_id, epoch))
    if incoming.seen is not None and (seen is None or incoming.seen > seen):
        seen, changed = incoming.seen, True
    if changed:
        rings.save(incoming.doc_id, merged, seen)


def export_content(
    extra: list[BackupKey] | None = None,
    *,
    keys_file: Path | None = None,
    identity_file: Path | None = None,
) -> BackupContent:
    """The key store's keys (plus ``extra``, e.g. from share links), the keyring file's
    keyrings and the identity file."""
    rings = keyring_keys(identity_file)
    keys, _ = merge_keys(load_keys(keys_file), [*(extra or []), *rings])
    by_id = {k.doc_id: k for k in keys}
    for ring in rings:  # epoch keys and `seen` of the keyring file, with the document key
        mine = by_id.get(ring.doc_id)
        if mine is None:
            keys.append(ring)
        else:
            mine.epochs, mine.seen = ring.epochs, ring.seen
    return BackupContent(keys=keys, identity=load_identity(identity_file))


def keyring_keys(identity_file: Path | None = None) -> list[BackupKey]:
    """The keyrings of the Python client's keyring file (``$SECSYNC_KEYRINGS``, else
    ``keyrings.json`` next to the identity file), e.g. of documents it created or joined: the
    epoch-0 key as ``key`` (None when it holds only later epochs), the others as ``epochs``,
    and ``seen``."""
    rings = _keyring_file(identity_file)
    if rings is None or not rings.path.exists():
        return []
    try:
        doc_ids = sorted(rings._read())
    except ValueError as exc:
        raise BackupError(str(exc))
    keys = []
    for doc_id in doc_ids:
        if not is_doc_id(doc_id):
            continue
        ring, seen = _load_ring(rings, doc_id)
        if not len(ring):
            continue
        first = ring.key(0) if 0 in ring else None
        later = {e: ring.key(e) for e in ring.epochs if e != 0}
        keys.append(BackupKey(doc_id, first, None, None, later, seen))
    return keys


# ----------------------------------------------------------------------------------------
# command line: secsync-jupyter backup export | import | show
# ----------------------------------------------------------------------------------------

PASSPHRASE_ENV = "SECSYNC_BACKUP_PASSPHRASE"


def _read_passphrase(args: Any, *, confirm: bool) -> str:
    import getpass
    import sys

    if args.passphrase_file is not None:
        if args.passphrase_file == "-":
            text = sys.stdin.readline()
        else:
            try:
                with open(args.passphrase_file, encoding="utf-8") as f:
                    text = f.readline()
            except OSError as exc:
                raise BackupError(f"cannot read {args.passphrase_file!r}: {exc.strerror or exc}")
        value = text.rstrip("\r\n")
    elif os.environ.get(PASSPHRASE_ENV):
        value = os.environ[PASSPHRASE_ENV]
    else:
        if not sys.stdin.isatty():
            raise BackupError(
                f"no passphrase: give --passphrase-file FILE ('-' = stdin) or set {PASSPHRASE_ENV}"
            )
        value = getpass.getpass("Backup passphrase: ")
        if confirm and getpass.getpass("The same passphrase again: ") != value:
            raise BackupError("the two passphrases differ")
    if not value:
        raise BackupError("the passphrase is empty")
    return value


def _links_from(paths: list[str]) -> list[BackupKey]:
    from ..sharelink import parse_share_link

    keys: list[BackupKey] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line.strip() for line in f.read(MAX_FILE_BYTES).splitlines()]
        except OSError as exc:
            raise BackupError(f"cannot read the link file {path!r}: {exc.strerror or exc}")
        for n, line in enumerate(lines, 1):
            if not line or line.startswith("#"):
                continue
            try:
                link = parse_share_link(line)
            except ValueError as exc:
                raise BackupError(f"{path}:{n}: not a share link ({exc})")
            keys.append(BackupKey(link.doc_id, link.key, None, now_iso()))
    return keys


def _summary(content: BackupContent) -> list[str]:
    lines = [
        f"made {content.created or '(unknown date)'} by {content.created_by or '(unknown)'}",
        "identity: "
        + (
            "none"
            if content.identity is None
            else f"{content.identity.public_key_b64} (fingerprint "
            f"{identity_fingerprint(content.identity.public_key)})"
        ),
        f"{len(content.keys)} document key(s):",
    ]
    for k in content.keys:
        name = f"  {k.name}" if k.name else ""
        first = "(none)" if k.key is None else key_fingerprint(k.key)
        lines.append(f"  {k.doc_id}  key fingerprint {first}{name}")
        for epoch in sorted(k.epochs):
            lines.append(f"    epoch {epoch}  key fingerprint {key_fingerprint(k.epochs[epoch])}")
    return lines


def cmd_backup_export(args: Any) -> int:
    import sys

    if os.path.lexists(args.file) and not args.force:
        raise BackupError(f"{args.file!r} already exists (use --force to overwrite it)")
    content = export_content(_links_from(args.link_file or []))
    if not content.keys and content.identity is None:
        raise BackupError(
            f"nothing to back up: no keys in {str(keys_path())!r}, no identity in"
            f" {str(identity_path())!r} and no --link-file"
        )
    text = encrypt_backup(content, _read_passphrase(args, confirm=True))
    _write_private(Path(args.file), text)
    print(f"wrote {args.file}", file=sys.stderr)
    for line in _summary(content):
        print(line, file=sys.stderr)
    return 0


def _read_backup(args: Any) -> BackupContent:
    try:
        with open(args.file, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise BackupError(f"cannot read {args.file!r}: {exc.strerror or exc}")
    _parse_envelope(data)  # a file that is not a backup fails before the passphrase is asked
    return decrypt_backup(data, _read_passphrase(args, confirm=False))


def cmd_backup_show(args: Any) -> int:
    for line in _summary(_read_backup(args)):
        print(line)
    return 0


def cmd_backup_import(args: Any) -> int:
    content = _read_backup(args)
    result = import_backup(
        content, replace_keys=args.replace_keys, replace_identity=args.replace_identity
    )
    print(
        f"{len(result.added)} key(s) added, {len(result.unchanged)} already stored,"
        f" {len(result.replaced)} replaced, {len(result.kept)} kept (different key stored)"
        f" -> {keys_path()}"
    )
    for doc_id in result.kept:
        print(
            f"  kept the stored key of {doc_id}: the backup's differs"
            " (--replace-keys to take the backup's)"
        )
    if result.epochs_added or result.epochs_unchanged or result.epoch_conflicts:
        print(
            f"{len(result.epochs_added)} epoch key(s) added, {len(result.epochs_unchanged)}"
            f" already stored, {len(result.epoch_conflicts)} conflicting (kept)"
            f" -> {_keyring_file(None).path}"
        )
    for doc_id, epoch in result.epoch_conflicts:
        print(
            f"  CONFLICT: the backup holds another key for epoch {epoch} of {doc_id} than"
            " the keyring file; the stored key was kept (it is never replaced)"
        )
    identity = {
        "none": "the backup has no identity",
        "added": f"identity written to {identity_path()}",
        "unchanged": "identity: the same as stored",
        "replaced": f"identity replaced in {identity_path()} (the former one is now"
        f" {result.identity_moved})",
        "kept": "identity: kept the stored one, the backup's differs"
        " (--replace-identity to take it)",
    }[result.identity]
    print(identity)
    return 0


def add_backup_parser(sub: Any) -> None:
    """The ``backup`` command (wired into secsync_jupyter.client.cli)."""
    p = sub.add_parser(
        "backup",
        help="passphrase-protected backup of document keys and identity (export/import/show)",
    )
    actions = p.add_subparsers(dest="backup_command", metavar="ACTION")
    actions.required = True

    def passphrase_option(q: Any) -> None:
        q.add_argument(
            "--passphrase-file",
            metavar="FILE",
            help=f"read the passphrase from the first line of FILE ('-' = stdin); or set"
            f" {PASSPHRASE_ENV}; default: asked on the terminal",
        )

    q = actions.add_parser(
        "export",
        help=f"write the key store's keys and the identity file to FILE (keys: ${KEYS_ENV} or"
        " ~/.config/secsync-jupyter/keys.json)",
    )
    q.add_argument("file", metavar="FILE")
    q.add_argument(
        "--link-file",
        action="append",
        metavar="FILE",
        help="also back up the keys of the share links in FILE (one per line; repeatable)",
    )
    q.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    passphrase_option(q)
    q.set_defaults(func=cmd_backup_export)

    q = actions.add_parser("import", help="merge the keys and identity of a backup FILE")
    q.add_argument("file", metavar="FILE")
    q.add_argument(
        "--replace-keys", action="store_true", help="take the backup's key where another is stored"
    )
    q.add_argument(
        "--replace-identity",
        action="store_true",
        help="take the backup's identity where another is stored",
    )
    passphrase_option(q)
    q.set_defaults(func=cmd_backup_import)

    q = actions.add_parser("show", help="list what a backup FILE holds (fingerprints, no keys)")
    q.add_argument("file", metavar="FILE")
    passphrase_option(q)
    q.set_defaults(func=cmd_backup_show)
