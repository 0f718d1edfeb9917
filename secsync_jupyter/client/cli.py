"""``secsync-jupyter keygen | cat | import | export`` (wired into :mod:`secsync_jupyter.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ..protocol import SigningKeyPair, b64encode, generate_id, generate_key
from ..sharelink import format_share_link, parse_share_link


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("keygen", help="print a new document key (and with --json a signing key)")
    p.add_argument("--json", action="store_true", help="docId, key, signingKey, pubKey as JSON")
    p.set_defaults(func=cmd_keygen)

    def connection_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--token", help="Jupyter server token (relay inside Jupyter Server)")
        p.add_argument("--session-key", default=None, help="relay sessionKey")
        p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("cat", help="print the decrypted notebook of a share link as .ipynb JSON")
    p.add_argument("link", metavar="LINK")
    connection_options(p)
    p.set_defaults(func=cmd_cat)

    p = sub.add_parser("export", help="decrypt the notebook of a share link into a .ipynb file")
    p.add_argument("link", metavar="LINK")
    p.add_argument("out", metavar="OUT.ipynb")
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
    connection_options(p)
    p.set_defaults(func=cmd_import)


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


async def _read(args: argparse.Namespace) -> dict[str, Any]:
    from .notebook import open_notebook

    link = parse_share_link(args.link)
    async with open_notebook(
        link.relay_url,
        link.doc_id,
        link.key,
        session_key=args.session_key,
        token=args.token,
        awareness=False,
        open_timeout=args.timeout,
    ) as nb:
        if nb.document.engine.active is None:
            raise RuntimeError(f"document {link.doc_id} is empty on this relay (wrong link?)")
        return nb.to_dict()


def _run(coro, timeout: float):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _dump(notebook: dict[str, Any]) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def cmd_cat(args: argparse.Namespace) -> int:
    sys.stdout.write(_dump(_run(_read(args), args.timeout)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    notebook = _run(_read(args), args.timeout)
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


async def _import(args: argparse.Namespace) -> str:
    import nbformat

    from .notebook import open_notebook

    with open(args.file, encoding="utf-8") as f:
        notebook = nbformat.read(f, as_version=4)
    nbformat.validate(notebook)
    relay, server_url = _relay_and_link_base(args.relay)
    doc_id = args.doc_id or generate_id()
    key = generate_key()
    link = format_share_link(
        doc_id, key, relay=None if server_url else relay, server_url=server_url
    )
    async with open_notebook(
        relay,
        doc_id,
        key,
        session_key=args.session_key,
        token=args.token,
        awareness=False,
        open_timeout=args.timeout,
    ) as nb:
        if nb.document.engine.active is not None or len(nb.cells):
            raise RuntimeError(f"document {doc_id} already exists on this relay")
        nb.set(json.loads(nbformat.writes(notebook)))
        await nb.create_snapshot()
        await nb.synced()
    return link


def cmd_import(args: argparse.Namespace) -> int:
    print(_run(_import(args), args.timeout))
    return 0
