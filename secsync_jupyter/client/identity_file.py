"""The Python user's identity: an Ed25519 signing key pair kept in a file only the user can read.

Where (docs/client.md, "Identity"): ``$SECSYNC_IDENTITY`` if set, else
``$XDG_CONFIG_HOME/secsync-jupyter/identity.json`` (``~/.config/…`` when ``XDG_CONFIG_HOME`` is
not set). The file is JSON::

    {"version": 1, "seed": "<b64url 32 bytes>", "pubKey": "<b64url 32 bytes>", "name": "Ada"}

It is created with mode 0600 (its directory 0700) and never overwritten; a file that its
group or others may read, or that is not owned by the user, is refused with a clear error
(the seed is the identity: whoever reads it can act as this member of every document).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import SigningKeyPair, b64decode, b64encode
from ..protocol.identity import check_display_name, fingerprint, format_identity

__all__ = [
    "IDENTITY_ENV",
    "IdentityFileError",
    "UserIdentity",
    "create_identity",
    "default_identity_path",
    "load_identity",
    "resolve_identity",
]

IDENTITY_ENV = "SECSYNC_IDENTITY"
IDENTITY_FILE_VERSION = 1
_MAX_FILE = 64 * 1024


class IdentityFileError(ValueError):
    """The identity file is missing, unsafe (readable by others) or malformed."""


@dataclass(frozen=True)
class UserIdentity:
    """A signing key pair with an optional display name (what an identity file holds)."""

    keypair: SigningKeyPair
    name: str | None = None
    path: Path | None = None

    @property
    def pub_key(self) -> str:
        return self.keypair.public_key_b64

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.keypair.public_key)

    @property
    def identity_string(self) -> str:
        """``secsync-id:1:<pubKey>:<fingerprint>[:<name>]`` — what an admin needs to add you."""
        return format_identity(self.keypair.public_key, self.name)

    def __str__(self) -> str:
        return self.identity_string


def default_identity_path() -> Path:
    """``$SECSYNC_IDENTITY``, else ``$XDG_CONFIG_HOME/secsync-jupyter/identity.json``
    (``~/.config/secsync-jupyter/identity.json``)."""
    env = os.environ.get(IDENTITY_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config).expanduser() if config else Path.home() / ".config"
    return base / "secsync-jupyter" / "identity.json"


def _check_safe(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise IdentityFileError(f"the identity file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise IdentityFileError(
            f"the identity file {path} is readable or writable by others"
            f" (mode {stat.S_IMODE(st.st_mode):04o}); it holds your private key:"
            f" run `chmod 600 {path}` (and consider the key exposed if others could read it)"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise IdentityFileError(f"the identity file {path} is not owned by you")


def load_identity(path: str | os.PathLike[str] | None = None) -> UserIdentity:
    """Read an identity file (default: :func:`default_identity_path`); refuses files that
    others may read (:class:`IdentityFileError`)."""
    p = Path(path).expanduser() if path is not None else default_identity_path()
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise IdentityFileError(
            f"no identity file at {p}: create one with `secsync-jupyter identity`"
            + (f" (or set {IDENTITY_ENV})" if path is None else "")
        )
    except OSError as exc:
        raise IdentityFileError(f"cannot read the identity file {p}: {exc.strerror or exc}")
    with os.fdopen(fd, "rb") as f:
        _check_safe(p, os.fstat(f.fileno()))
        data = f.read(_MAX_FILE + 1)
    if len(data) > _MAX_FILE:
        raise IdentityFileError(f"the identity file {p} is too large to be one")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise IdentityFileError(f"the identity file {p} is not JSON")
    return _from_json(obj, p)


def _from_json(obj: Any, p: Path) -> UserIdentity:
    if not isinstance(obj, dict) or obj.get("version") != IDENTITY_FILE_VERSION:
        raise IdentityFileError(f"the identity file {p} is not a version-1 secsync identity")
    try:
        seed = b64decode(obj.get("seed"), field="seed", length=32)
    except Exception:
        raise IdentityFileError(f"the identity file {p} has no valid seed")
    keypair = SigningKeyPair.from_seed(seed)
    if obj.get("pubKey") != keypair.public_key_b64:
        raise IdentityFileError(f"the identity file {p}: pubKey does not match the seed")
    name = obj.get("name")
    if name is not None and (not isinstance(name, str) or check_display_name(name)):
        raise IdentityFileError(f"the identity file {p} has an invalid name")
    return UserIdentity(keypair, name, p)


def create_identity(
    path: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    keypair: SigningKeyPair | None = None,
) -> UserIdentity:
    """Create a new identity file (mode 0600, never overwriting one; missing directories
    0700). ``name``: optional display name (checked like every display name)."""
    p = Path(path).expanduser() if path is not None else default_identity_path()
    if name is not None:
        reason = check_display_name(name)
        if reason:
            raise IdentityFileError(f"invalid name: {reason}")
    keypair = keypair or SigningKeyPair.generate()
    obj: dict[str, Any] = {
        "version": IDENTITY_FILE_VERSION,
        "seed": b64encode(keypair.seed),
        "pubKey": keypair.public_key_b64,
    }
    if name is not None:
        obj["name"] = name
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise IdentityFileError(f"{p} already exists (an identity file is never overwritten)")
    except OSError as exc:
        raise IdentityFileError(f"cannot create the identity file {p}: {exc.strerror or exc}")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask
        f.write(json.dumps(obj, indent=1) + "\n")
    return UserIdentity(keypair, name, p)


def resolve_identity(identity: Any = None) -> UserIdentity:
    """What the API accepts as an identity: a :class:`UserIdentity`, a ``SigningKeyPair``,
    32/64 private key bytes, a path to an identity file, or ``None`` (the default file)."""
    if isinstance(identity, UserIdentity):
        return identity
    if isinstance(identity, SigningKeyPair):
        return UserIdentity(identity)
    if isinstance(identity, (bytes, bytearray)):
        return UserIdentity(SigningKeyPair.from_private_key(bytes(identity)))
    if identity is None or isinstance(identity, (str, os.PathLike)):
        return load_identity(identity)
    raise TypeError(
        "identity must be a SigningKeyPair, private key bytes, an identity file path or None"
    )
