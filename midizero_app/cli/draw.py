"""``midizero draw``: a picture becomes a piece of piano music (DESIGN §1.6).

``rule`` snaps the drawing to a chord progression in the key; ``library`` stitches it from
real windows of your library and names the pieces it used. Exit 1 with one line for an
image that cannot be used.
"""
from __future__ import annotations

import json
import sys

from ..draw.drawing import IMAGE_RANGE
from .common import UserError, add_library_arg, library_folder, open_library


def add_draw_commands(sub) -> None:
    """Register ``draw`` on the ``midizero`` subparsers."""
    p = sub.add_parser("draw", help="turn a picture (PNG, JPEG) into piano music (.mid)",
                       description="Turn a picture into piano music whose piano roll looks "
                                   "like it.")
    p.add_argument("image", metavar="IMAGE", help="picture file (PNG, JPEG, ...)")
    p.add_argument("--out", required=True, metavar="FILE.mid", help="MIDI file to write")
    p.add_argument("--method", choices=("rule", "library", "naive"), default="rule",
                   help="rule: chords of a progression (default); library: stitched from "
                        "your library's music; naive: every dark pixel a note")
    p.add_argument("--key", default="C", help="key, e.g. D, F#, Bb, Am, 'C minor' (default C)")
    p.add_argument("--tempo", type=float, default=96.0, help="beats per minute (default 96)")
    p.add_argument("--bars", type=int, default=8, help="length in 4/4 bars (default 8)")
    p.add_argument("--low", type=int, default=None, metavar="PITCH",
                   help="lowest MIDI pitch the picture may use (default: where the library's "
                        f"music lives; {IMAGE_RANGE[0]} = E2 without a library)")
    p.add_argument("--high", type=int, default=None, metavar="PITCH",
                   help="highest MIDI pitch the picture may use (default: where the library's "
                        f"music lives; {IMAGE_RANGE[1]} = E6 without a library)")
    p.add_argument("--threshold", type=float, default=None,
                   help="darkness 0..1 that counts as ink (default: automatic)")
    p.add_argument("--progression", default=None, metavar="NUMERALS",
                   help="rule: chords as roman numerals, e.g. 'I V vi IV' (default: the "
                        "common progression that fits the picture best)")
    p.add_argument("--chords-per-bar", type=int, choices=(1, 2, 4), default=1,
                   help="rule: harmonic rhythm (default 1)")
    add_library_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_draw)


def _library_exists(args) -> bool:
    """A library folder is there to take the register from (none is created for it)."""
    return (library_folder(args) / "library.sqlite").is_file()


def cmd_draw(args) -> int:
    from ..draw import DrawError, generate, image_to_drawing, load_image
    from ..draw.register import library_register

    if not 1 <= args.bars <= 256:
        raise UserError("--bars must be between 1 and 256")
    lib = None
    try:
        if args.method == "library" or _library_exists(args):
            lib = open_library(args)
        lo, hi = args.low, args.high
        if lo is None or hi is None:
            reg = library_register(lib)
            lo, hi = reg[0] if lo is None else lo, reg[1] if hi is None else hi
        drawing = image_to_drawing(load_image(args.image), bars=args.bars,
                                   pitch_range=(lo, hi), threshold=args.threshold)
        options = {}
        if args.method == "rule":
            options = {"progression": args.progression, "chords_per_bar": args.chords_per_bar}
        g = generate(drawing, args.method, args.key, args.tempo, library=lib, **options)
        g.write_midi(args.out)
    except (DrawError, ValueError) as exc:
        raise UserError(str(exc)) from None
    finally:
        if lib is not None:
            lib.close()
    summary = {"out": args.out, "method": g.method, "key": str(g.key), "tempo": g.tempo,
               "bars": args.bars, "pitch_range": [lo, hi], "seconds": round(g.duration, 3),
               "notes": len(g),
               "info": {k: v for k, v in g.info.items() if not k.endswith("_ms")},
               "sources": g.source_pieces()}
    if args.json:
        print(json.dumps(summary))
        return 0
    line = (f"{args.out}: {len(g)} notes, {args.bars} bars at {g.tempo:g} bpm in {g.key}"
            f" ({g.duration:.1f} s, method {g.method})")
    if g.info.get("progression"):
        line += f"; chords {g.info['progression']}"
    print(line)
    if g.sources:
        print("material from:")
        for s in g.source_pieces():
            who = f" – {s['composer']}" if s.get("composer") else ""
            bars = ", ".join(str(b) for b in sorted(set(s["bars"])))
            print(f"  {s['title']}{who} (bars {bars})")
    sys.stdout.flush()
    return 0
