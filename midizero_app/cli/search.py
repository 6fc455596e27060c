"""``midizero search``: identify score, MIDI and audio files (DESIGN §4.1–4.2)."""
from __future__ import annotations

import json
import sys

from .audio import add_audio_route_arg
from .common import add_library_arg, open_library, require_pieces, write_json


def add_search_commands(sub) -> None:
    """Register ``search`` on the ``midizero`` subparsers."""
    p = sub.add_parser("search", help="identify MIDI/score excerpts")
    p.add_argument("queries", nargs="+", metavar="QUERY",
                   help="query files (.mid, .musicxml, ..., or audio: .wav .flac .ogg .mp3)")
    add_library_arg(p)
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
    add_audio_route_arg(p)
    p.set_defaults(func=cmd_search)


ROUTE_WORDS = {"transcribe": "transcription", "embed": "the audio branch's embedding",
               "both": "transcription and embedding fused"}


def format_result(res: dict) -> str:
    """A search result (the §4.2 object plus ``"query"``) as text lines."""
    mode = {"melody": ", searched as a melody", "fused": ", searched as texture and melody"}
    route = f", audio by {ROUTE_WORDS[res['audio_route']]}" if res.get("audio_route") else ""
    lines = [f"{res['query']}: {res['frames']} frames, {res['windows']} windows, "
             f"{res['elapsed_ms']:.0f} ms{mode.get(res.get('mode'), '')}{route}"]
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
    from ..audio.decode import is_audio
    from ..audio.routes import search_audio
    from .audio import read_queries

    lib = open_library(args)
    require_pieces(lib)
    route = args.audio_route
    # Read every query up front in limited worker processes (they are untrusted files);
    # audio files are read there for the route (transcribed, embedded or both).
    parsed = read_queries([str(q) for q in args.queries], route)
    any_match = False
    for q in args.queries:
        r = parsed[str(q)]
        audio = is_audio(str(q))
        if r.notes is None:
            if args.json:
                write_json({"query": q, "error": r.error, "results": [], "not_in_library": True}
                           | ({"audio_route": route} if audio else {}))
            else:
                print(f"{q}: cannot read: {r.error}", file=sys.stderr)
            continue
        opts = dict(aggregate=args.aggregate, transpose=args.transpose,
                    any_key=True if args.any_key else None,
                    melody=True if args.melody else "auto",
                    kind="score" if args.score else "auto")
        if audio:
            res = search_audio(lib, r.notes, route, top=args.top, **opts)
        else:
            res = lib.search(r.notes, top=args.top, **opts)
        res["query"] = q
        any_match |= bool(res["results"]) and not res["not_in_library"]
        print(json.dumps(res) if args.json else format_result(res), flush=True)
    lib.close()
    return 0 if any_match else 1
