"""``secsync-jupyter keygen | cat | import | export`` (wired into :mod:`secsync_jupyter.cli`).

Secrets (a share link holds the document key; a Jupyter token opens the server) are best
not given as arguments: ``ps`` and the shell history show those. Every secret can come from
a file (``-`` = stdin) or from the environment instead (:func:`read_secret`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from ..protocol import SigningKeyPair, b64encode, generate_id, generate_key
from ..sharelink import ShareLink, format_share_link, parse_share_link

LINK_ENV = "SECSYNC_LINK"
SESSION_KEY_ENV = "SECSYNC_SESSION_KEY"
#: a secret file larger than this is not a link or a token (a wrong file, most likely)
MAX_SECRET_FILE = 64 * 1024


class InputError(ValueError):
    """A link, token or file given to the command line is missing or malformed."""


def _read_text(path: str, what: str) -> str:
    if path == "-":
        text = sys.stdin.read(MAX_SECRET_FILE + 1)
        where = "stdin"
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_SECRET_FILE + 1)
        except OSError as exc:
            raise InputError(f"cannot read the {what} file {path!r}: {exc.strerror or exc}")
        except UnicodeDecodeError:
            raise InputError(f"the {what} file {path!r} is not UTF-8 text")
        where = repr(path)
    if len(text) > MAX_SECRET_FILE:
        raise InputError(f"the {what} in {where} is over {MAX_SECRET_FILE // 1024} KiB")
    value = text.strip()
    if not value:
        raise InputError(f"no {what} in {where} (it is empty)")
    if any(c.isspace() for c in value):
        raise InputError(f"the {what} in {where} must be one line without spaces")
    return value


def read_secret(
    value: str | None, file: str | None, env: str | None, what: str, *, option: str
) -> str | None:
    """A secret from exactly one of: the argument (``-`` = stdin), ``--…-file`` or ``env``.

    Returns ``None`` when none is given. Giving two of them, or reading stdin for two secrets,
    is an error (:class:`InputError`), as are empty, multi-line or unreadable inputs.
    """
    if value is not None and file is not None:
        raise InputError(f"give the {what} either as an argument or with {option}, not both")
    if file is not None:
        return _read_text(file, what)
    if value == "-":
        return _read_text("-", what)
    if value is not None:
        if not value.strip():
            raise InputError(f"the {what} is empty")
        return value.strip()
    if env is not None and os.environ.get(env, "").strip():
        return os.environ[env].strip()
    return None


def _check_stdin_once(args: argparse.Namespace) -> None:
    sources = [
        getattr(args, "link", None),
        getattr(args, "link_file", None),
        args.token_file,
        args.session_key_file,
    ]
    if sources.count("-") > 1:
        raise InputError("stdin can provide only one of the link, the token and the session key")


def _link(args: argparse.Namespace) -> ShareLink:
    text = read_secret(args.link, args.link_file, LINK_ENV, "share link", option="--link-file")
    if text is None:
        raise InputError(
            f"no share link: give --link-file FILE, '-' to read it from stdin, or set {LINK_ENV}"
            " (a link on the command line shows in ps and the shell history)"
        )
    return parse_share_link(text)


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``open_notebook`` from the connection options."""
    _check_stdin_once(args)
    if args.token is not None:
        print(
            "secsync-jupyter: warning: --token shows in ps and the shell history;"
            " prefer --token-file FILE or JUPYTER_TOKEN",
            file=sys.stderr,
        )
    # JUPYTER_TOKEN is left to the client: it sends it only to loopback / trusted origins
    token = read_secret(args.token, args.token_file, None, "token", option="--token-file")
    session_key = read_secret(
        args.session_key,
        args.session_key_file,
        SESSION_KEY_ENV,
        "session key",
        option="--session-key-file",
    )
    options = {
        "session_key": session_key,
        "token": token,
        "trusted_origins": args.trusted_origin,
        "allow_insecure_token": args.allow_insecure_token,
        "awareness": False,
        "open_timeout": args.timeout,
    }
    if args.max_frame_bytes is not None:
        options["max_frame_bytes"] = args.max_frame_bytes
    if getattr(args, "identity", None) is not None:
        options["identity"] = args.identity  # used by documents with a membership log
    if getattr(args, "state", None) is not None:
        options["state_file"] = args.state  # issue 13: checked on load, updated after it
    return options


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("keygen", help="print a new document key (and with --json a signing key)")
    p.add_argument("--json", action="store_true", help="docId, key, signingKey, pubKey as JSON")
    p.set_defaults(func=cmd_keygen)

    def connection_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--token-file",
            metavar="FILE",
            help="read the Jupyter server token from FILE ('-' = stdin); without it the"
            " client uses JUPYTER_TOKEN, for a server on loopback or a trusted origin only",
        )
        p.add_argument("--token", help="the token itself (visible in ps: prefer --token-file)")
        p.add_argument(
            "--trusted-origin",
            action="append",
            metavar="ORIGIN",
            help="an origin (https://host[:port]) that may receive JUPYTER_TOKEN, besides"
            " SECSYNC_TRUSTED_ORIGINS (repeatable)",
        )
        p.add_argument(
            "--allow-insecure-token",
            action="store_true",
            help="allow sending the token over plain ws:// to a non-loopback host",
        )
        p.add_argument(
            "--session-key-file",
            metavar="FILE",
            help=f"read the relay sessionKey from FILE ('-' = stdin; or set {SESSION_KEY_ENV})",
        )
        p.add_argument("--session-key", default=None, help="relay sessionKey")
        p.add_argument(
            "--max-frame-bytes",
            type=_positive_int,
            default=None,
            metavar="N",
            help="largest frame accepted from the relay (default 256 MiB)",
        )
        p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        p.add_argument(
            "--identity",
            metavar="FILE",
            help="your identity file, for documents with a membership log (default:"
            " $SECSYNC_IDENTITY or ~/.config/secsync-jupyter/identity.json; create it with"
            " `secsync-jupyter identity`)",
        )
        p.add_argument(
            "--state",
            metavar="FILE",
            help="remembered-state file: what was verified last is kept there and the next"
            " load is checked against it (a rollback by the relay: SECSYNC_ERROR_804)",
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    def link_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--link-file",
            metavar="FILE",
            help=f"read the share link from FILE ('-' = stdin); or set {LINK_ENV}",
        )

    link_help = (
        f"the share link, or '-' to read it from stdin (default: --link-file or ${LINK_ENV};"
        " a link given here shows in ps and the shell history)"
    )
    p = sub.add_parser("cat", help="print the decrypted notebook of a share link as .ipynb JSON")
    p.add_argument("link", metavar="LINK", nargs="?", help=link_help)
    link_options(p)
    connection_options(p)
    p.set_defaults(func=cmd_cat)

    p = sub.add_parser("export", help="decrypt the notebook of a share link into a .ipynb file")
    p.add_argument("link", metavar="LINK", nargs="?", help=link_help)
    p.add_argument("out", metavar="OUT.ipynb")
    link_options(p)
    connection_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import", help="create a new encrypted notebook from a .ipynb file; prints the share link"
    )
    p.add_argument("file", metavar="FILE.ipynb")
    p.add_argument(
        "relay",
        metavar="RELAY",
        help="a relay base (ws://host:port[/prefix]) or a Jupyter server URL (http(s)://host/base/)",
    )
    p.add_argument("--doc-id", default=None, help="document id (default: a fresh random one)")
    p.add_argument(
        "--link-out",
        metavar="FILE",
        help="write the share link to FILE (created, readable by you only) instead of stdout",
    )
    p.add_argument(
        "--no-log",
        action="store_true",
        help="a document without a membership log (for relays without membership support,"
        " e.g. the reference relay; anyone with the link can then write)",
    )
    connection_options(p)
    p.set_defaults(func=cmd_import)

    from .members_cli import add_membership_subcommands

    add_membership_subcommands(sub, connection_options, link_options)

    from .backup import add_backup_parser

    add_backup_parser(sub)


def cmd_keygen(args: argparse.Namespace) -> int:
    key = b64encode(generate_key())
    if args.json:
        pair = SigningKeyPair.generate()
        print(
            json.dumps(
                {
                    "docId": generate_id(),
                    "key": key,
                    "signingKey": b64encode(pair.seed),
                    "pubKey": pair.public_key_b64,
                },
                indent=2,
            )
        )
    else:
        print(key)
    return 0


async def _read(link: ShareLink, options: dict[str, Any]) -> dict[str, Any]:
    from .notebook import open_notebook

    async with open_notebook(link.relay_url, link.doc_id, link.key, **options) as nb:
        if nb.document.engine.active is None:
            raise RuntimeError(f"document {link.doc_id} is empty on this relay (wrong link?)")
        return nb.to_dict()


def _run(coro, timeout: float):
    async def bounded():
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer within {timeout:g} s (--timeout)") from None

    return asyncio.run(bounded())


def _dump(notebook: dict[str, Any]) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def _read_link(args: argparse.Namespace) -> dict[str, Any]:
    options = _connection(args)  # stdin conflicts are checked before anything is read
    text = read_secret(args.link, args.link_file, LINK_ENV, "share link", option="--link-file")
    from .links_client import is_link_url

    if text is not None and is_link_url(text):  # issue 12: an invitation link (joins once)
        return _run(_read_invitation(text, options), args.timeout)
    args.link, args.link_file = text, None
    return _run(_read(_link(args), options), args.timeout)


async def _read_invitation(url: str, options: dict[str, Any]) -> dict[str, Any]:
    from .notebook import open_notebook

    async with open_notebook(url, **options) as nb:
        if nb.document.engine.active is None:
            raise RuntimeError(f"document {nb.doc_id} is empty on this relay")
        return nb.to_dict()


def cmd_cat(args: argparse.Namespace) -> int:
    sys.stdout.write(_dump(_read_link(args)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    notebook = _read_link(args)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(_dump(notebook))
    print(f"wrote {args.out} ({len(notebook.get('cells', []))} cells)", file=sys.stderr)
    return 0


def _relay_and_link_base(relay: str) -> tuple[str, str | None]:
    """(ws relay base, http server URL or None) for the import target."""
    if relay.startswith(("http://", "https://")):
        base = relay if relay.endswith("/") else relay + "/"
        ws = "ws" + base[4:] if base.startswith("http") else base
        return ws + "secsync", base
    if relay.startswith(("ws://", "wss://")):
        return relay.rstrip("/"), None
    raise ValueError("RELAY must be ws(s)://… (standalone relay) or http(s)://… (Jupyter server)")


async def _import(args: argparse.Namespace, options: dict[str, Any]) -> str:
    import nbformat

    from .notebook import open_notebook

    with open(args.file, encoding="utf-8") as f:
        notebook = nbformat.read(f, as_version=4)
    nbformat.validate(notebook)
    relay, server_url = _relay_and_link_base(args.relay)
    key = generate_key()
    options.pop("identity", None)
    if args.no_log:
        opener = open_notebook(relay, args.doc_id or generate_id(), key, **options)
    else:  # a new log: you are the owner, the document id is bound to its root
        from .identity_file import resolve_identity
        from .notebook import create_notebook

        opener = create_notebook(relay, key, identity=resolve_identity(args.identity), **options)
    async with opener as nb:
        doc_id = nb.doc_id
        if nb.document.engine.active is not None or len(nb.cells):
            raise RuntimeError(f"document {doc_id} already exists on this relay")
        nb.set(json.loads(nbformat.writes(notebook)))
        await nb.create_snapshot()
        await nb.synced()
    return format_share_link(
        doc_id, key, relay=None if server_url else relay, server_url=server_url
    )


def cmd_import(args: argparse.Namespace) -> int:
    if args.doc_id is not None and not args.no_log:
        raise InputError(
            "--doc-id needs --no-log: the id of a document with a membership log is derived"
            " from its log"
        )
    if args.identity is not None and args.no_log:
        raise InputError("--identity and --no-log do not go together")
    options = _connection(args)
    if args.link_out is not None:
        _check_new_file(args.link_out)
    link = _run(_import(args, options), args.timeout)
    if args.link_out is None:
        print(link)
        return 0
    fd = os.open(args.link_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(link + "\n")
    print(f"wrote the share link to {args.link_out}", file=sys.stderr)
    return 0


def _check_new_file(path: str) -> None:
    """``--link-out`` never overwrites (or follows a link to) an existing file."""
    if os.path.lexists(path):
        raise InputError(f"{path!r} already exists (the share link is written to a new file)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"cannot write {path!r}: no directory {parent!r}")
