"""``midizero``: the command line over the core (DESIGN §4.1).

Exit codes: 0 ok, 1 no match or a user error (one clear line on stderr), 2 usage error.
Progress goes to stderr; results to stdout (``--json``: one JSON object per query line).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from . import __version__


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 1."""


def _add_library_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--library", metavar="DIR",
                   help="library folder (default: $MIDIZERO_LIBRARY or the user data dir)")


def _open_library(args, model: str | None = None):
    from .core import melody_confidence
    from .core.library import Library

    try:
        melody_confidence.default()  # a damaged installation is said now, not mid-search
        return Library(args.library, model=model)
    except Exception as exc:  # noqa: BLE001 - e.g. an unwritable folder or a broken model
        raise UserError(f"cannot open library: {exc}") from None


class _Progress:
    """tqdm on stderr, driven by core progress callbacks ``(done, total, message)``."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled, self.bar = desc, enabled and sys.stderr.isatty() or \
            os.environ.get("MIDIZERO_PROGRESS") == "1", None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="file", file=sys.stderr,
                            dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix_str(message[:40], refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- index ----------------------------------------------------------------------------

def cmd_index(args) -> int:
    lib = _open_library(args, args.model)
    progress = _Progress("indexing", not args.quiet)
    cancel = threading.Event()
    try:
        report = lib.add(args.paths, workers=args.workers, progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.set()
        raise
    finally:
        progress.close()
    if args.json:
        print(json.dumps({"added": report.added, "updated": report.updated,
                          "unchanged": len(report.unchanged), "repaired": report.repaired,
                          "failed": [{"path": p, "reason": r} for p, r in report.failed]}))
    else:
        print(report.summary())
        for path, reason in report.failed:
            print(f"  failed: {path}: {reason}")
        for path in report.repaired:
            print(f"  repaired: {path} (corrupt bytes clipped)")
    lib.close()
    return 0


# --- search ---------------------------------------------------------------------------

def _format_result(res: dict) -> str:
    mode = {"melody": ", searched as a melody", "fused": ", searched as texture and melody"}
    lines = [f"{res['query']}: {res['frames']} frames, {res['windows']} windows, "
             f"{res['elapsed_ms']:.0f} ms{mode.get(res.get('mode'), '')}"]
    if not res["results"]:
        lines.append("  no match (the library is empty?)")
        return "\n".join(lines)
    if res.get("verdict") == "unsure":
        lines.append(f"  not sure: {res['tune_notes']} notes of a tune say too little - not in "
                     "your library, or more of the tune would tell (best guesses below)")
    elif res["not_in_library"]:
        lines.append("  not in your library (best guesses below)")
    for r in res["results"]:
        pos = r["positions"][0] if r["positions"] else None
        where = ""
        if pos:
            where = f" at {pos['seconds']:.1f} s"
            if pos.get("measure") is not None:
                where += f", measure {pos['measure']}"
        # transpose = semitones added to the query to reach the score
        shift = f", played {-r['transpose']:+d} semitones from the score" if r["transpose"] else ""
        who = f" – {r['composer']}" if r["composer"] else ""
        lines.append(f"  {r['rank']:2d}. {r['title']}{who}  [{r['confidence']:.0%}]{where}{shift}")
    return "\n".join(lines)


def cmd_search(args) -> int:
    from .audio.queries import search_options
    from .cli_audio import read_queries

    lib = _open_library(args)
    if lib.stats()["ok"] == 0:
        raise UserError("the library is empty: add scores first with 'midizero index FOLDER'")
    # Read every query up front in limited worker processes (they are untrusted files);
    # audio files are transcribed there.
    parsed = read_queries([str(q) for q in args.queries])
    any_match = False
    for q in args.queries:
        r = parsed[str(q)]
        if r.notes is None:
            if args.json:
                print(json.dumps({"query": q, "error": r.error, "results": [],
                                  "not_in_library": True}), flush=True)
            else:
                print(f"{q}: cannot read: {r.error}", file=sys.stderr)
            continue
        res = lib.search(r.notes, top=args.top, aggregate=args.aggregate,
                         transpose=args.transpose, any_key=True if args.any_key else None,
                         melody=True if args.melody else "auto",
                         kind="score" if args.score else "auto", **search_options(str(q)))
        res["query"] = q
        any_match |= bool(res["results"]) and not res["not_in_library"]
        print(json.dumps(res) if args.json else _format_result(res), flush=True)
    lib.close()
    return 0 if any_match else 1


# --- library --------------------------------------------------------------------------

def cmd_library(args) -> int:
    lib = _open_library(args)
    action = args.action
    if action == "list":
        pieces = lib.pieces()
        if args.json:
            print(json.dumps(pieces))
        else:
            for p in pieces:
                state = p["status"] + (f": {p['error']}" if p["error"] else "")
                print(f"{p['id']:5d}  {p['title'][:40]:40s}  {(p['composer'] or '')[:20]:20s}"
                      f"  {p['n_frames']:6d} frames  {state}  {p['path']}")
    elif action == "remove":
        if not args.path:
            raise UserError("library remove needs a PATH")
        removed = lib.remove(args.path)
        if not removed:
            raise UserError(f"nothing in the library under {args.path}")
        print(json.dumps({"removed": removed}) if args.json else f"removed {len(removed)} piece(s)")
    elif action == "rescan":
        progress = _Progress("rescanning", True)
        try:
            report = lib.rescan(progress=progress)
        finally:
            progress.close()
        print(report.summary())
    elif action == "stats":
        st = lib.stats()
        print(json.dumps(st) if args.json else "\n".join(f"{k}: {v}" for k, v in st.items()))
    lib.close()
    return 0


# --- demo ---------------------------------------------------------------------------

def demo_dir() -> Path:
    """The bundled demo (scores + played queries): source tree or a bundle's data dir."""
    here = Path(__file__).resolve()
    for base in (here.parents[1], here.parent):
        if (base / "resources" / "demo" / "scores").is_dir():
            return base / "resources" / "demo"
    raise UserError("the demo files (resources/demo) are missing from this installation")


def cmd_demo(args) -> int:
    """Index the bundled demo library (once) and identify its played queries."""
    from .core.library import default_library_dir

    demo = demo_dir()
    if args.library is None:
        args.library = str(default_library_dir().parent / "demo-library")
    lib = _open_library(args)
    # The demo library holds this installation's demo scores only (another checkout or an
    # older bundle may have filled it with copies at other paths).
    scores = (demo / "scores").resolve()
    stale = [p["path"] for p in lib.pieces() if not Path(p["path"]).resolve().is_relative_to(scores)]
    if stale:
        lib.remove(*stale)
    report = lib.add([scores])
    print(f"demo library ({args.library}): {report.summary()}")
    from .core.parsing import parse_files

    for r in sorted(parse_files(sorted((demo / "queries").glob("*.mid"))), key=lambda r: r.path):
        res = lib.search(r.notes, top=3)
        res["query"] = Path(r.path).name
        print(_format_result(res))
    print("\nNext: 'midizero index ~/Scores' adds your own library; "
          "'midizero search piece.mid' identifies a file.")
    lib.close()
    return 0


# --- parser ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="midizero", description="Identify which piece of your score library you are playing.")
    parser.add_argument("--version", action="version", version=f"midizero {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", help="add or refresh score files and folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    _add_library_arg(p)
    p.add_argument("--workers", type=int, default=2, help="parser processes (default 2)")
    p.add_argument("--model", help="make this checkpoint (.pt) the library's model")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="identify MIDI/score excerpts")
    p.add_argument("queries", nargs="+", metavar="QUERY",
                   help="query files (.mid, .musicxml, ..., or audio: .wav .flac .ogg .mp3)")
    _add_library_arg(p)
    p.add_argument("--top", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--aggregate", choices=("vote", "sum"), default="vote",
                   help="offset-consistent voting (default) or the published similarity sum")
    p.add_argument("--transpose", type=int, default=0, metavar="N",
                   help="also try the query shifted by -N..+N semitones")
    p.add_argument("--any-key", action="store_true",
                   help="find the piece in any key and report the shift (always on for melodies)")
    p.add_argument("--melody", action="store_true",
                   help="search the melody view (automatic for a tune played one note at a time)")
    p.add_argument("--score", action="store_true",
                   help="group the query as a score (exact onsets) instead of detecting it")
    p.add_argument("--json", action="store_true", help="one JSON object per query (JSON Lines)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("library", help="list, remove, rescan, stats")
    p.add_argument("action", choices=("list", "remove", "rescan", "stats"), nargs="?",
                   default="list")
    p.add_argument("path", nargs="?", help="for remove: a file or folder")
    _add_library_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_library)

    p = sub.add_parser("demo", help="index the bundled demo library and identify its queries")
    _add_library_arg(p)
    p.set_defaults(func=cmd_demo)

    from .cli_training import add_training_commands
    add_training_commands(sub)
    from .cli_live import add_live_commands
    add_live_commands(sub)
    from .cli_audio import add_audio_commands
    add_audio_commands(sub)
    from .cli_draw import add_draw_commands
    add_draw_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .core.library import LibraryBusy

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"midizero: {exc}", file=sys.stderr)
        return 1
    except LibraryBusy as exc:
        print(f"midizero: {exc}; try again when it has finished", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("midizero: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the package's module object, so exceptions raised by other modules (which import
    # midizero_app.cli) are the same classes that main() catches.
    from midizero_app.cli import main as _main

    sys.exit(_main())
