"""``secsync-jupyter links``, ``rotate`` and ``join`` (issue 12).

* ``links [LINK]`` — the invitation links of a document (role, label, expiry, live or not,
  who joined through each);
* ``links create [LINK] --role viewer|editor [--label L] [--expires 7d|2026-12-31T12:00Z]`` —
  prints the new link URL (``…#link=…``: it holds the secret, send it privately);
* ``links revoke [LINK] LINK_KEY_OR_URL [--remove-joined]`` — revoke (then one rotation);
* ``rotate [LINK]`` — rotate the document key (admins);
* ``join [INVITATION]`` — join through an invitation link as your identity; prints your role.

LINK is the document's share link (``#key=``) as for ``members``, or an invitation link you
joined through; it may come from ``--link-file`` / ``$SECSYNC_LINK``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import time
from typing import Any

LINK_ACTIONS = ("list", "create", "revoke")


def add_links_subcommands(sub: Any, connection_options, link_options) -> None:
    p = sub.add_parser(
        "links",
        help="list, create or revoke the invitation links of a document",
        description="links [LINK] | links create [LINK] --role viewer|editor [--label L]"
        " [--expires WHEN] | links revoke [LINK] LINK_KEY_OR_URL [--remove-joined]",
    )
    p.add_argument("words", nargs="*", metavar="[ACTION] [LINK] [WHICH]")
    p.add_argument("--role", choices=("viewer", "editor"), help="the link's role (create)")
    p.add_argument("--label", help="what you call the link (create; default: the role)")
    p.add_argument(
        "--expires",
        metavar="WHEN",
        help="create: expiry as a duration (30m, 12h, 7d) or an ISO 8601 UTC time",
    )
    p.add_argument(
        "--remove-joined", action="store_true", help="revoke: also remove who joined through it"
    )
    p.add_argument("--json", action="store_true", help="list as JSON")
    link_options(p)
    connection_options(p)
    p.set_defaults(func=cmd_links)

    p = sub.add_parser("rotate", help="rotate the document key (admins)")
    p.add_argument("link", metavar="LINK", nargs="?", help="the share link (or --link-file)")
    link_options(p)
    connection_options(p)
    p.set_defaults(func=cmd_rotate)

    p = sub.add_parser("join", help="join a document through an invitation link (#link=…)")
    p.add_argument("link", metavar="INVITATION", nargs="?", help="the invitation link")
    link_options(p)
    connection_options(p)
    p.set_defaults(func=cmd_join)


def parse_expiry(text: str, now_ms: int | None = None) -> int:
    """``30m`` / ``12h`` / ``7d`` from now, or an ISO 8601 time (UTC if no zone): ms."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    m = re.fullmatch(r"(\d{1,6})([mhd])", text.strip())
    if m:
        return now_ms + int(m.group(1)) * {"m": 60_000, "h": 3_600_000, "d": 86_400_000}[m[2]]
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--expires: expected 30m, 12h, 7d or an ISO 8601 time, got {text!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return int(when.timestamp() * 1000)


def _open(args: argparse.Namespace):
    """(open_notebook opener, identity) for the document named by the link arguments."""
    from ..sharelink import parse_share_link
    from .cli import LINK_ENV, _connection, read_secret
    from .identity_file import resolve_identity
    from .links_client import is_link_url
    from .notebook import open_notebook

    options = _connection(args)
    identity = resolve_identity(args.identity)  # a missing / unsafe file: error before I/O
    options.pop("identity", None)
    text = read_secret(args.link, args.link_file, LINK_ENV, "share link", option="--link-file")
    if text is None:
        raise ValueError(f"no link: give --link-file FILE, '-' for stdin, or set {LINK_ENV}")
    if is_link_url(text):
        return open_notebook(text, identity=identity, **options), identity
    link = parse_share_link(text)
    return open_notebook(link.relay_url, link.doc_id, link.key, identity=identity, **options), (
        identity
    )


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cmd_links(args: argparse.Namespace) -> int:
    from .cli import _run

    words = list(args.words)
    action = words.pop(0) if words and words[0] in LINK_ACTIONS else "list"
    want = 1 if action == "revoke" else 0
    if len(words) == want + 1:
        args.link = words.pop(0)
    elif len(words) == want:
        args.link = None
    else:
        raise ValueError(f"expected: links {action} [LINK]{' WHICH' if want else ''}")
    which = words[0] if want else None
    if action == "create" and args.role is None:
        raise ValueError("links create needs --role viewer|editor")
    if action != "create" and (args.role or args.label or args.expires):
        raise ValueError(f"links {action} takes no --role / --label / --expires")
    if action != "revoke" and args.remove_joined:
        raise ValueError("--remove-joined is for links revoke")
    expires = parse_expiry(args.expires) if args.expires else None
    opener, _identity = _open(args)

    async def run() -> Any:
        async with opener as nb:
            if not nb.document.has_log:
                raise ValueError(f"document {nb.doc_id} has no membership log")
            made = None
            if action == "create":
                made = await nb.create_link(args.role, args.label or args.role, expires_at=expires)
            elif action == "revoke":
                await nb.revoke_link(which, remove_joined=args.remove_joined)
            return made, nb.links, {k: m.name for k, m in nb.document.log.members.items()}

    made, links, names = _run(run(), args.timeout)
    if made is not None:
        print(made.url)
        print(
            f"created a {made.role} link {made.label!r} (expires {_when(made.expires_at)});"
            " the URL holds its secret: send it privately",
            file=sys.stderr,
        )
        return 0
    if args.json:
        print(json.dumps([li._asdict() for li in links], indent=2, ensure_ascii=False))
        return 0
    for li in links:
        state = "live" if li.live else ("revoked" if li.removed is not None else "expired")
        joined = ", ".join(names.get(k) or k[:8] for k in li.joined) or "nobody"
        print(
            f"{state:<7} {li.role:<6} {li.label!r}  key {li.pub_key[:12]}…  expires"
            f" {_when(li.expires_at)}  joined: {joined}"
        )
    if action == "revoke":
        print("revoked; the key was rotated", file=sys.stderr)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from .cli import _run

    opener, _identity = _open(args)

    async def run() -> int:
        async with opener as nb:
            state = await nb.rotate_key()
            return state.epoch

    epoch = _run(run(), args.timeout)
    print(f"rotated: the document key is now epoch {epoch}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from .cli import _run
    from .links_client import is_link_url

    opener, identity = _open(args)
    if not is_link_url(args.link or "") and args.link not in (None, "-"):
        raise ValueError("join needs an invitation link (…#link=…)")

    async def run() -> tuple[str, str | None, int]:
        async with opener as nb:
            return nb.doc_id, nb.role, len(nb.cells)

    doc_id, role, cells = _run(run(), args.timeout)
    print(f"joined {doc_id} as {role} ({identity.fingerprint}); {cells} cells")
    return 0
