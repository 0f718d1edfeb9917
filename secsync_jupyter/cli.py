"""``secsync-jupyter`` command line (also ``python -m secsync_jupyter``)."""

from __future__ import annotations

import argparse
import sys


def _cmd_vectors(args: argparse.Namespace) -> int:
    from .vectors import main as run

    return run(args.paths)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as run

    return run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
