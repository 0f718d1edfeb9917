"""``secsync-jupyter identity`` and ``secsync-jupyter members`` (issue 11).

* ``identity [--path FILE] [--name NAME]`` — create the identity file (mode 0600) or show the
  existing one; prints the identity string (``secsync-id:1:…``) to send to a document's admin;
* ``members [LINK]`` — list the members of a document with a membership log;
* ``members add [LINK] IDENTITY --role viewer|editor|admin``, ``members set-role [LINK] MEMBER
  --role …``, ``members remove [LINK] MEMBER`` — change them (you must be an admin; leaving:
  remove yourself). MEMBER is an identity string or a public key. The link may come from
  ``--link-file`` / ``$SECSYNC_LINK`` as for ``cat`` (then leave LINK out).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from typing import Any

from ..protocol.membership import ROLES

ACTIONS = ("list", "add", "set-role", "remove")


def add_membership_subcommands(sub: Any, connection_options, link_options) -> None:
    p = sub.add_parser(
        "identity",
        help="create (or show) your identity and print its identity string",
        description="Create your identity (an Ed25519 key pair in a file only you can read) or"
        " show the existing one. Prints the identity string an admin needs to add you to a"
        " document. Default file: $SECSYNC_IDENTITY, else"
        " $XDG_CONFIG_HOME/secsync-jupyter/identity.json (~/.config/…).",
    )
    p.add_argument("--path", metavar="FILE", help="the identity file (default: see above)")
    p.add_argument("--name", help="your display name (when creating the identity)")
    p.add_argument("--json", action="store_true", help="identity string, pubKey, fingerprint, path")
    p.set_defaults(func=cmd_identity)

    p = sub.add_parser(
        "members",
        help="list or change the members of a document with a membership log",
        description="members [LINK] | members add [LINK] IDENTITY --role ROLE |"
        " members set-role [LINK] MEMBER --role ROLE | members remove [LINK] MEMBER",
    )
    p.add_argument(
        "words",
        nargs="*",
        metavar="[ACTION] [LINK] [MEMBER]",
        help="ACTION: list (default), add, set-role, remove; LINK: the share link ('-' = stdin;"
        " or --link-file / $SECSYNC_LINK); MEMBER: an identity string (secsync-id:1:…) or a"
        " public key",
    )
    p.add_argument("--role", choices=ROLES, help="the role to give (add, set-role)")
    p.add_argument("--json", action="store_true", help="list as JSON")
    link_options(p)
    connection_options(p)
    p.set_defaults(func=cmd_members)

    from .links_cli import add_links_subcommands  # issue 12: links, rotate, join

    add_links_subcommands(sub, connection_options, link_options)


def cmd_identity(args: argparse.Namespace) -> int:
    from .identity_file import (
        IdentityFileError,
        create_identity,
        default_identity_path,
        load_identity,
    )

    path = args.path or default_identity_path()
    try:
        user = load_identity(path)
        created = False
    except IdentityFileError:
        import os

        if os.path.lexists(path):
            raise  # unsafe or malformed: say so, never replace it
        user = create_identity(path, name=args.name)
        created = True
    if not created and args.name is not None and args.name != user.name:
        raise ValueError(
            f"{user.path} already exists (name {user.name!r}); the name is set when the"
            " identity is created"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "identity": user.identity_string,
                    "pubKey": user.pub_key,
                    "fingerprint": user.fingerprint,
                    "name": user.name,
                    "path": str(user.path),
                },
                indent=2,
            )
        )
    else:
        print(user.identity_string)
    what = "created" if created else "identity file"
    print(f"{what} {user.path} (fingerprint {user.fingerprint})", file=sys.stderr)
    return 0


def _split(args: argparse.Namespace) -> tuple[str, str | None, str | None]:
    """(action, link or None, member or None) from the positional words."""
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ACTIONS else "list"
    want = 0 if action == "list" else 1  # the member
    if len(words) == want + 1:
        link = words.pop(0)
    elif len(words) == want:
        link = None
    else:
        usage = "members [LINK]" if action == "list" else f"members {action} [LINK] MEMBER"
        raise ValueError(f"expected: {usage} (got {len(args.words)} arguments)")
    member = words[0] if want else None
    if member is not None and "://" in member:  # a link where the member should be
        raise ValueError(f"expected: members {action} [LINK] MEMBER (no MEMBER given)")
    if action in ("add", "set-role") and args.role is None:
        raise ValueError(f"members {action} needs --role ({', '.join(ROLES)})")
    if action in ("list", "remove") and args.role is not None:
        raise ValueError(f"members {action} takes no --role")
    return action, link, member


def cmd_members(args: argparse.Namespace) -> int:
    from .cli import _connection, _link, _run
    from .document import _target

    action, link_text, member = _split(args)
    target = _target(member) if member is not None else None  # bad input: error before I/O
    args.link = link_text
    options = _connection(args)
    link = _link(args)
    from .identity_file import resolve_identity

    identity = resolve_identity(args.identity)  # a missing / unsafe file: error before I/O
    options.pop("identity", None)

    async def run() -> Any:
        from .notebook import open_notebook

        async with open_notebook(
            link.relay_url, link.doc_id, link.key, identity=identity, **options
        ) as nb:
            if not nb.document.has_log:
                raise ValueError(f"document {link.doc_id} has no membership log")
            if action == "add":
                await nb.add_member(target, args.role)
            elif action == "set-role":
                await nb.set_role(target, args.role)
            elif action == "remove":
                await nb.remove_member(target)
            return nb.members, nb.role, identity.pub_key

    members, role, me = _run(run(), args.timeout)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "pubKey": m.pub_key,
                        "name": m.name,
                        "fingerprint": m.fingerprint,
                        "role": m.role,
                        "owner": m.owner,
                        "addedBy": m.added_by,
                        "at": m.at,
                    }
                    for m in members
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    by_key = {m.pub_key: m for m in members}
    for m in members:
        role_text = "owner" if m.owner and m.role == "admin" else m.role
        adder = by_key.get(m.added_by)
        added_by = (adder.name or adder.fingerprint) if adder is not None else m.added_by[:8]
        when = _dt.datetime.fromtimestamp(m.at / 1000, _dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        )
        you = " (you)" if m.pub_key == me else ""
        extra = "" if m.owner else f"  added by {added_by} {when}"
        print(f"{role_text:<7} {m.fingerprint}  {m.name or '-'}{you}{extra}")
    if action != "list":
        print(f"done ({action}); your role: {role}", file=sys.stderr)
    return 0
