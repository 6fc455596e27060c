"""``midizero index`` and ``midizero library list | remove | rescan | stats | check | convert |
push``."""
from __future__ import annotations

import json

from ..core.index_store import INDEX_KINDS
from .common import (Progress, UserError, add_library_arg, library_folder, open_library,
                     write_json)


def add_index_command(sub) -> None:
    """Register ``index`` on the ``midizero`` subparsers."""
    p = sub.add_parser("index", help="add or refresh score files and folders")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    add_library_arg(p)
    p.add_argument("--workers", type=int, default=2, help="parser processes (default 2)")
    p.add_argument("--model", help="make this model (.safetensors or .pt) the library's model")
    p.add_argument("--index-kind", choices=INDEX_KINDS, metavar="KIND",
                   help="for a new library: its index kind, hnsw-float (default: fastest, "
                        "about 660 bytes a window) or ivf-sq6 (about 105 bytes a window, for "
                        "millions of windows); an existing library keeps its kind until "
                        "`midizero library convert --index-kind KIND`")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)


def add_library_commands(sub) -> None:
    """Register ``library`` on the ``midizero`` subparsers."""
    p = sub.add_parser("library", help="list, remove, rescan, stats, check (and repair), "
                                       "convert (to another index kind), push (to a server)")
    p.add_argument("action", choices=("list", "remove", "rescan", "stats", "check", "convert",
                                       "push"), nargs="?", default="list")
    p.add_argument("path", nargs="?", help="for remove: a file or folder")
    add_library_arg(p)
    p.add_argument("--index-kind", choices=INDEX_KINDS, metavar="KIND",
                   help="for convert: the kind to convert to (hnsw-float or ivf-sq6)")
    p.add_argument("--no-repair", action="store_true",
                   help="for check: only report what is damaged, change nothing")
    p.add_argument("--to", metavar="URL",
                   help="for push: the shared library, milvus://HOST[:PORT]/NAME (docs/SERVER.md)")
    p.add_argument("--replace", action="store_true",
                   help="for push: drop a shared library of that name made with another model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_library)


def cmd_index(args) -> int:
    lib = open_library(args, args.model, create=True)
    if args.index_kind:
        lib.choose_index_kind(args.index_kind)
    report = Progress("indexing", not args.quiet).run(
        lambda **kw: lib.add(args.paths, workers=args.workers, **kw))
    if args.json:
        write_json({"added": report.added, "updated": report.updated,
                    "unchanged": len(report.unchanged), "repaired": report.repaired,
                    "failed": [{"path": p, "reason": r} for p, r in report.failed]})
    else:
        print(report.summary())
        for path, reason in report.failed:
            print(f"  failed: {path}: {reason}")
        for path in report.repaired:
            print(f"  repaired: {path} (corrupt bytes clipped)")
    lib.close()
    return 0


def cmd_library(args) -> int:
    if args.action == "check":
        return cmd_check(args)
    if args.action == "push":
        return cmd_push(args)
    lib = open_library(args)
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
        progress = Progress("rescanning", True)
        try:
            report = lib.rescan(progress=progress)
        finally:
            progress.close()
        print(report.summary())
    elif action == "convert":
        if not args.index_kind:
            raise UserError("library convert needs --index-kind KIND "
                            f"({' or '.join(INDEX_KINDS)})")
        was = lib.index_kind
        n = Progress("converting", not args.json, unit="piece").run(
            lambda **kw: lib.convert_index_kind(args.index_kind, **kw))
        if args.json:
            write_json({"from": was, "to": lib.index_kind, "windows": n})
        elif was == lib.index_kind:
            print(f"the library's index kind is {was} already")
        else:
            print(f"converted {n:,} windows from {was} to {lib.index_kind}")
    elif action == "stats":
        st = lib.stats()
        print(json.dumps(st) if args.json else "\n".join(f"{k}: {v}" for k, v in st.items()))
    lib.close()
    return 0


def cmd_check(args) -> int:
    """``library check``: verify the catalogue, stored frames and vectors and the index
    files; repair what can be rebuilt (unless ``--no-repair``) and list what was lost.
    Exit 0 when the library is clean or fully repaired, 1 when something is damaged and
    not repaired, or lost."""
    from ..core.library import check_library

    repair = not args.no_repair
    # (also a library that does not open: its catalogue is repaired first)
    report = Progress("checking", not args.json, unit="step").run(
        lambda **kw: check_library(library_folder(args), repair=repair, **kw))
    ok = report.clean or repair and not report.lost
    if args.json:
        write_json({"clean": report.clean, "ok": ok, "summary": report.summary(),
                    "repaired": list(report.repaired), "lost": list(report.lost),
                    "problems": list(report.problems), "moved_aside": report.moved_aside})
        return 0 if ok else 1
    print(report.summary())
    for item in report.repaired:
        print(f"  repaired: {item}")
    for item in report.lost:
        print(f"  lost: {item}")
    if not repair:
        for item in report.problems:
            print(f"  damaged: {item}")
    if report.moved_aside:
        print(f"  the damaged catalogue is kept as {report.moved_aside}")
    return 0 if ok else 1


def cmd_push(args) -> int:
    """``library push --to milvus://HOST:PORT/NAME``: copy the local library (read only)
    into a shared library on a Milvus server; run again to finish a stopped push or to send
    what changed."""
    from ..core.server_library import is_server_url, push

    if not args.to or not is_server_url(args.to):
        raise UserError("library push needs --to milvus://HOST[:PORT]/NAME")
    if is_server_url(args.library):
        raise UserError("library push copies a local library: name its folder with --library")
    report = Progress("pushing", not args.json, unit="piece").run(
        lambda **kw: push(library_folder(args), args.to, replace=args.replace, **kw))
    if args.json:
        write_json({"sent": report.sent, "unchanged": report.unchanged,
                    "removed": report.removed, "windows": report.windows, "to": args.to})
    else:
        print(f"{report.summary()}; {args.to} is complete")
    return 0
