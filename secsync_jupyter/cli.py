"""``secsync-jupyter`` command line (also ``python -m secsync_jupyter``)."""

from __future__ import annotations

import argparse
import sys

from .protocol.encoding import b64_valid


def _cmd_vectors(args: argparse.Namespace) -> int:
    from .vectors import main as run

    return run(args.paths)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as run

    return run()


class _Parser(argparse.ArgumentParser):
    """A public key (base64url of 32 bytes, 43 characters) may start with ``-``: argparse
    would take it for an option and stop with "unrecognized arguments" (``links revoke KEY``,
    ``members remove KEY`` for about one key in 64). Such a word is a positional argument
    here, as argparse already does for negative numbers. Subcommand parsers are made with
    the class of this one."""

    def _parse_optional(self, arg_string):  # type: ignore[override]
        if (
            arg_string.startswith("-")
            and arg_string not in self._option_string_actions
            and b64_valid(arg_string, 32)
        ):
            return None
        return super()._parse_optional(arg_string)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="secsync-jupyter",
        description="End-to-end encrypted collaboration for Jupyter notebooks (Secsync).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("vectors", help="run Secsync test vectors (conformance check)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="vectors JSON file(s)")
    p.set_defaults(func=_cmd_vectors)

    p = sub.add_parser("demo", help="show keys, a snapshot, updates and tamper detection")
    p.set_defaults(func=_cmd_demo)

    from .client.cli import add_subcommands

    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a clear one-line error instead of a traceback
        if getattr(args, "debug", False):
            raise
        print(f"secsync-jupyter {args.command}: error: {exc}", file=sys.stderr)
        return 1
