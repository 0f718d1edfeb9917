"""The relay's configuration, defined once: limits, access policy, store and durability.

Every setting is a dataclass field with its default and help (:func:`setting`); the standalone
relay's command-line flags (:func:`add_arguments` / :func:`from_args`) and the Jupyter server
extension's traitlets (:func:`jupyter_traits` / :func:`from_traits`) are generated from these
fields, and :func:`build_policy` / :func:`open_store` turn the values into the relay's parts.
docs/relay.md lists the same table (``tests/relay/test_docs.py`` compares the defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .policy import BUILTIN_POLICIES, AccessPolicy, AllowedAuthorsPolicy
from .sqlite_store import SYNCHRONOUS_MODES
from .store import STORE_SCHEMES, RelayStore, Retention, store_from_url

MiB = 1024 * 1024


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = "",
    trait: str | None = "",
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    above: float | None = None,
) -> Any:
    """A configuration field. ``flag`` / ``trait``: the name on the standalone command line /
    in ``SecsyncRelayExtension`` (``""``: derived from the field name, ``None``: not there);
    ``minimum`` / ``above``: the value must be at least / more than this. A mutable default
    (a dict) is copied for each instance."""
    extra = {"default_factory": default.copy} if isinstance(default, dict) else {"default": default}
    return field(
        **extra,
        metadata={
            "help": help,
            "flag": flag,
            "trait": trait,
            "metavar": metavar,
            "choices": choices,
            "minimum": minimum,
            "above": above,
        },
    )


@dataclass
class Limits:
    """What the relay bounds (each configurable; docs/relay.md "Limits")."""

    max_frame_bytes: int = setting(
        32 * MiB,
        "largest accepted frame in bytes; a larger one gets frame-too-large and close 1009",
        minimum=1,
    )
    max_connections_per_document: int = setting(
        1000,
        "connections per document (joined or joining); one more gets too-many-connections "
        "and close 1013",
        minimum=1,
    )
    max_documents: int = setting(
        100_000,
        "stored documents plus open documents without a snapshot yet; one more new document "
        "gets too-many-documents and close 1013",
        minimum=1,
    )
    max_send_buffer_bytes: int = setting(
        256 * MiB,
        "bytes queued for a connection that does not read before it is closed "
        "(send-buffer-full, close 1013; it reconnects in delta mode)",
        minimum=1,
    )
    max_document_bytes: int = setting(
        1024 * MiB,
        "bytes stored on a document's active snapshot (its message and its updates'); a "
        "write past it gets document-too-large until a new snapshot frees the space",
        minimum=1,
    )
    max_connections: int = setting(
        10_000,
        "open connections in all (joined, joining or in the WebSocket handshake); one more "
        "gets too-many-connections and close 1013 (a plain HTTP request: 503)",
        trait=None,
        minimum=1,
    )
    handshake_timeout: float = setting(
        10.0,
        "drop a connection that has not completed its WebSocket handshake after this long",
        trait=None,
        metavar="SECONDS",
        above=0,
    )


@dataclass
class RelayOptions:
    """Store, durability and access policy."""

    store: str = setting(
        "",
        "the relay's store as a URL: sqlite:///PATH (the default, at --db / db_path), "
        "memory: (nothing kept, for tests), or package.module:Class?ARGS of a RelayStore "
        f"with from_url; schemes: {', '.join(sorted(STORE_SCHEMES))}",
        metavar="URL",
    )
    db: str = setting(
        "relay.sqlite",
        "the database: a SQLite file PATH (created and migrated if needed; in Jupyter Server "
        "by default <jupyter data dir>/secsync/relay.sqlite), or a store URL as for --store: "
        "postgresql://USER@HOST/DBNAME, sqlite:///PATH (--store, when given, wins)",
        trait="db_path",
        metavar="PATH|URL",
    )
    synchronous: str = setting(
        "full",
        "SQLite synchronous mode (WAL): full = an fsync per group commit before its "
        "acknowledgements, an acknowledged write survives power loss; normal = no fsync on "
        "commit, an acknowledged write survives a relay crash but an OS crash or power loss "
        "may lose the commits since the last checkpoint (about every 0.5 s); extra = full",
        choices=SYNCHRONOUS_MODES,
    )
    retention: str = setting(
        "all",
        "what is kept of superseded key epochs (documents with a membership log, after a "
        "rotation): all, snapshots:N (the newest N snapshots of older epochs and their "
        "updates), days:D (those younger than D days); run after each rotation and at start; "
        "the active snapshot's epoch is never pruned",
        metavar="all|snapshots:N|days:D",
    )
    access_policy: str = setting(
        "any-authenticated",
        "access policy: any-authenticated, allowed-authors, or package.module:ClassName of "
        "an AccessPolicy subclass (constructed without arguments)",
        flag="--policy",
        metavar="NAME",
    )
    allowed_authors_file: str | None = setting(
        None,
        'for allowed-authors: JSON {docId: [pubKey, ...]} or {"documents": {...}, '
        '"default": [pubKey, ...] | null}',
        flag="--allowed-authors",
        trait=None,
        metavar="FILE",
    )
    allowed_authors: Mapping[str, list[str]] = setting(
        {},
        "for access_policy='allowed-authors': {docId: [author pubKey, ...]}",
        flag=None,
    )
    allowed_authors_default: list[str] | str = setting(  # noqa: RUF009 (a field, not a value)
        "anyone",
        "for access_policy='allowed-authors': pubKeys allowed to write documents that are not "
        "listed in allowed_authors, or 'anyone'",
        flag=None,
    )


# ----------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Setting:
    name: str
    group: type
    type: Any
    default: Any
    help: str
    flag: str | None
    trait: str | None
    metavar: str | None
    choices: tuple[str, ...] | None
    minimum: float | None
    above: float | None


def settings() -> list[Setting]:
    """Every setting of :class:`Limits` and :class:`RelayOptions`, in order."""
    out = []
    for group in (Limits, RelayOptions):
        hints = {f.name: f.type for f in dataclasses.fields(group)}
        for f in dataclasses.fields(group):
            m = f.metadata
            out.append(
                Setting(
                    f.name,
                    group,
                    hints[f.name],
                    f.default_factory() if f.default is dataclasses.MISSING else f.default,
                    m["help"],
                    None if m["flag"] is None else m["flag"] or "--" + f.name.replace("_", "-"),
                    None if m["trait"] is None else m["trait"] or f.name,
                    m["metavar"],
                    m["choices"],
                    m["minimum"],
                    m["above"],
                )
            )
    return out


def _scalar(s: Setting) -> type:
    return {"int": int, "float": float, "str": str}.get(str(s.type).split(" ")[0], str)


def _check(s: Setting, value: Any, name: str) -> str | None:
    """An error message when ``value`` is out of range."""
    if s.minimum is not None and value < s.minimum:
        return f"{name} must be at least {s.minimum:g}"
    if s.above is not None and value <= s.above:
        return f"{name} must be more than {s.above:g}"
    return None


# ------------------------------------------------------------------------ standalone flags
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The relay settings as command-line flags of ``secsync-relay``."""
    for s in settings():
        if s.flag is None:
            continue
        suffix = " (default: %(default)s)" if s.default not in (None, "") else ""
        parser.add_argument(
            s.flag,
            dest=s.name,
            type=_scalar(s),
            default=s.default,
            choices=s.choices,
            metavar=s.metavar or (None if s.choices else "N" if _scalar(s) is int else None),
            help=s.help + suffix,
        )


def from_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """(:class:`Limits`, :class:`RelayOptions`) from parsed flags; a bad value is a usage
    error (``parser.error``, exit status 2)."""
    values = {}
    for s in settings():
        if s.flag is None:
            continue
        value = getattr(args, s.name)
        problem = None if value is None else _check(s, value, s.flag)
        if problem:
            parser.error(problem)
        values[s.name] = value
    try:
        parse_retention(values.get("retention", "all"))
    except ValueError as exc:
        parser.error(str(exc))
    return _split(values)


# --------------------------------------------------------------------- Jupyter traitlets
def jupyter_traits() -> dict[str, Any]:
    """The relay settings as configurable traitlets of the server extension."""
    from traitlets import Dict, Enum, Float, Int, List, Unicode, Union

    traits: dict[str, Any] = {}
    for s in settings():
        if s.trait is None:
            continue
        if s.name == "allowed_authors":
            trait = Dict(key_trait=Unicode(), value_trait=List(Unicode()))
        elif s.name == "allowed_authors_default":
            trait = Union([List(Unicode()), Unicode()], default_value=s.default)
        elif s.choices:
            trait = Enum(list(s.choices), default_value=s.default)
        else:
            trait = {int: Int, float: Float, str: Unicode}[_scalar(s)](s.default)
        trait.help = s.help
        traits[s.trait] = trait.tag(config=True)
    return traits


def from_traits(app: Any):
    """(:class:`Limits`, :class:`RelayOptions`) from the extension's traitlets; a value out of
    range raises ``ValueError`` (the server does not start)."""
    values = {}
    for s in settings():
        if s.trait is None:
            continue
        value = getattr(app, s.trait)
        problem = _check(s, value, s.trait) if isinstance(value, (int, float)) else None
        if problem:
            raise ValueError(problem)
        values[s.name] = value
    parse_retention(values.get("retention", "all"))  # ValueError: the server does not start
    return _split(values)


def parse_retention(text: str) -> Retention:
    """``all``, ``snapshots:N`` (N >= 0) or ``days:D`` (D >= 0, may be fractional) as a
    :class:`.store.Retention`; ``ValueError`` otherwise."""
    name, sep, value = str(text).strip().partition(":")
    try:
        if name == "all" and not sep:
            return Retention()
        if name == "snapshots" and sep and value.isdigit():
            return Retention(keep_snapshots=int(value))
        if name == "days" and sep:
            days = float(value)
            if days >= 0 and days != float("inf"):
                return Retention(keep_seconds=days * 86400)
    except ValueError:
        pass
    raise ValueError(f"retention must be all, snapshots:N or days:D, not {text!r}")


def _split(values: dict[str, Any]) -> tuple[Limits, RelayOptions]:
    names = {g: {f.name for f in dataclasses.fields(g)} for g in (Limits, RelayOptions)}
    return (
        Limits(**{k: v for k, v in values.items() if k in names[Limits]}),
        RelayOptions(**{k: v for k, v in values.items() if k in names[RelayOptions]}),
    )


# ------------------------------------------------------------------------------ builders
def build_policy(options: RelayOptions) -> AccessPolicy:
    """The access policy the options name (one builder for both transports)."""
    name = options.access_policy
    if name == AllowedAuthorsPolicy.name:
        if options.allowed_authors_file:
            return AllowedAuthorsPolicy.from_file(options.allowed_authors_file)
        default = options.allowed_authors_default
        return AllowedAuthorsPolicy(
            options.allowed_authors, None if default == "anyone" else list(default)
        )
    if options.allowed_authors_file:
        raise ValueError("--allowed-authors needs --policy allowed-authors")
    if name in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[name]()
    module, _, cls_name = name.partition(":")
    if not cls_name:
        raise ValueError(f"unknown access_policy {name!r}")
    cls = getattr(importlib.import_module(module), cls_name)
    policy = cls()
    if not isinstance(policy, AccessPolicy):
        raise TypeError(f"{name} is not an AccessPolicy")
    return policy


def store_url(options: RelayOptions, db: str | None = None) -> str:
    """The store URL: the ``store`` option, else ``db`` (or the ``db`` option): a store URL
    of a known scheme as it is, else a SQLite file path."""
    if options.store:
        return options.store
    path = db or options.db
    scheme, sep, _ = path.partition(":")
    if sep and scheme in STORE_SCHEMES:  # --db postgresql://…, --db sqlite:///PATH
        return path
    return "sqlite:///" + os.path.abspath(path)


def open_store(options: RelayOptions, db: str | None = None, **kw: Any) -> RelayStore:
    """The store the options name (not opened yet), see :func:`.store.store_from_url`."""
    return store_from_url(store_url(options, db), synchronous=options.synchronous, **kw)
