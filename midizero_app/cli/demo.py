"""``midizero demo``: the bundled demo library and its played excerpts (the README's first
command)."""
from __future__ import annotations

from pathlib import Path

from ..core.bundled import demo_dir
from .common import add_library_arg, open_library
from .search import format_result

__all__ = ["add_demo_commands", "cmd_demo", "demo_dir"]


def add_demo_commands(sub) -> None:
    """Register ``demo`` on the ``midizero`` subparsers."""
    p = sub.add_parser("demo", help="index the bundled demo library and identify its queries")
    add_library_arg(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    """Index the bundled demo library (once) and identify its played queries."""
    from ..core.library import default_library_dir
    from ..core.parsing import parse_files

    demo = demo_dir()
    if args.library is None:
        args.library = str(default_library_dir().parent / "demo-library")
    lib = open_library(args, create=True)
    # The demo library holds this installation's demo scores only (another checkout or an
    # older bundle may have filled it with copies at other paths).
    scores = (demo / "scores").resolve()
    stale = [p["path"] for p in lib.pieces() if not Path(p["path"]).resolve().is_relative_to(scores)]
    if stale:
        lib.remove(*stale)
    report = lib.add([scores])
    print(f"demo library ({args.library}): {report.summary()}")
    for r in sorted(parse_files(sorted((demo / "queries").glob("*.mid"))), key=lambda r: r.path):
        res = lib.search(r.notes, top=3)
        res["query"] = Path(r.path).name
        print(format_result(res))
    print("\nNext: 'midizero index ~/Scores' adds your own library; "
          "'midizero search piece.mid' identifies a file.")
    lib.close()
    return 0
