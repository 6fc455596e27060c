"""``midizero``: the command line over the core (DESIGN §4.1).

Exit codes: 0 ok, 1 no match or a user error (one clear line on stderr), 2 usage error.
Progress goes to stderr; results to stdout (``--json``: one JSON object per query line).
``--verbose`` (before or after the command) shows tracebacks and what third-party
libraries print.

One module per command group (``library``, ``search``, ``demo``, ``live``, ``audio``,
``draw``, ``training``); what they share is in :mod:`.common`.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..core.bundled import demo_dir
from .common import UserError

__all__ = ["UserError", "build_parser", "demo_dir", "main"]

DAMAGED = "the library is damaged: run `midizero library check`"
DISK_FULL = "the disk is full: nothing was changed; free space and run `midizero index` again"
CHECK_HINT = "run `midizero library check`"


def build_parser() -> argparse.ArgumentParser:
    from .audio import add_audio_commands
    from .demo import add_demo_commands
    from .draw import add_draw_commands
    from .follow import add_follow_command
    from .library import add_index_command, add_library_commands
    from .live import add_live_commands
    from .search import add_search_commands
    from .training import add_training_commands

    parser = argparse.ArgumentParser(
        prog="midizero", description="Identify which piece of your score library you are playing.")
    parser.add_argument("--version", action="version", version=f"midizero {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show tracebacks and what libraries print (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_index_command(sub)
    add_search_commands(sub)
    add_library_commands(sub)
    add_demo_commands(sub)
    add_training_commands(sub)
    add_live_commands(sub)
    add_follow_command(sub)
    add_audio_commands(sub)
    add_draw_commands(sub)
    for p in {id(p): p for p in sub.choices.values()}.values():
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks and what libraries print")
    return parser


def user_message(exc: BaseException) -> str | None:
    """The one line :func:`main` prints for ``exc``, or None for a bug (a traceback)."""
    import sqlite3

    from ..core.errors import LibraryBusy, LibraryDamaged, MidizeroError, is_disk_full

    if isinstance(exc, LibraryBusy):
        text = str(exc)
        return text if "try again" in text else f"{text}; try again when it has finished"
    if isinstance(exc, MidizeroError):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, LibraryDamaged) and "library check" not in text:
            text = f"{text}: {CHECK_HINT}"
        return text
    if is_disk_full(exc) and isinstance(exc, (OSError, sqlite3.Error)):
        return DISK_FULL
    if isinstance(exc, sqlite3.DatabaseError):
        return DAMAGED
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    if verbose:
        os.environ["MIDIZERO_VERBOSE"] = "1"  # worker processes keep their stderr
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("midizero: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a user's problem is one line, a bug a traceback
        text = user_message(exc)
        if text is None:
            raise
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"midizero: {text}", file=sys.stderr)
        return 1
