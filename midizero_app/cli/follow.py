"""``midizero follow``: identify the piece being played (or take the one named) and follow
the player through its score, printing where they are (DESIGN §4.1, §5.3).

    midizero follow --replay perf.mid --speed 0 --json     # as fast as the machine allows
    midizero follow "K.545" --port "My Keyboard"            # a piece to practise
    midizero follow --mic
"""
from __future__ import annotations

import json
import threading

from .common import UserError, add_library_arg, open_library, require_pieces


def add_follow_command(sub) -> None:
    p = sub.add_parser("follow", help="follow the player through the score (identifies the "
                                      "piece first unless one is named)")
    p.add_argument("piece", nargs="?", default=None,
                   help="a library piece: its file, or words of its title or file name "
                        "(default: identify what is played)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--port", help="MIDI input port (name or part of it)")
    src.add_argument("--replay", metavar="FILE", help="play a MIDI performance into it")
    src.add_argument("--mic", action="store_true", help="listen to the microphone")
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed (default 1; 0: a simulated clock, as fast as possible)")
    p.add_argument("--device", help="audio input for --mic (name or part of it)")
    p.add_argument("--duration", type=float, default=None, help="--mic: stop after S seconds")
    p.add_argument("--api", default=None, help="MIDI system (alsa, jack, …)")
    p.add_argument("--silence", type=float, default=3.0,
                   help="seconds without a note that end an identification query")
    p.add_argument("--json", action="store_true", help="one JSON object per update")
    add_library_arg(p)
    p.add_argument("--virtual", metavar="NAME",
                   help="open a virtual MIDI input called NAME for other programs to play into")
    p.set_defaults(func=cmd_follow, top=5, melody=False)


def find_piece(lib, text: str) -> int:
    """The id of the library piece named by a path or by words of its title or file name."""
    from pathlib import Path

    pieces = [p for p in lib.pieces() if p["status"] != "failed"]
    target = str(Path(text).expanduser().resolve()) if Path(text).expanduser().exists() else None
    for p in pieces:
        if target and p["path"] == target:
            return p["id"]
    words = text.lower().split()
    hits = [p for p in pieces
            if all(w in f"{p['title'] or ''} {p['composer'] or ''} {Path(p['path']).name}".lower()
                   for w in words)]
    if not hits:
        raise UserError(f"no piece in the library matches {text!r} (see `midizero library list`)")
    if len(hits) > 1:
        names = "; ".join((h["title"] or Path(h["path"]).stem) for h in hits[:5])
        raise UserError(f"{len(hits)} pieces match {text!r} ({names}…): say more")
    return hits[0]["id"]


class _FollowPrinter:
    """Prints follow updates: every one as JSON, or a line when the measure changes."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.identified = False
        self._last = None
        self._lock = threading.Lock()

    def __call__(self, update: dict) -> None:
        with self._lock:
            self.identified |= update["piece"] is not None
            if self.as_json:
                print(json.dumps(update), flush=True)
                return
            key = (update["piece"], update["measure"])
            if key == self._last:
                return
            self._last = key
            if update["identified"]:
                print(f"following {update['title'] or update['piece']}", flush=True)
            if update["measure"] is not None:
                print(f"{update['time']:7.2f} s  m. {update['measure']}  "
                      f"({update['score_seconds']:.1f} s in the score, "
                      f"{update['confidence']:.0%})", flush=True)


def make_follow_session(args, lib, printer, **session_kw):
    from ..live.follow import FollowSession

    piece_id = find_piece(lib, args.piece) if args.piece else None
    return FollowSession(lib, piece_id, on_follow=printer, silence_s=args.silence,
                         top=args.top, name="follow", **session_kw)


def cmd_follow(args) -> int:
    if args.speed < 0:
        raise UserError("--speed must be 0 (simulated clock) or positive")
    lib = open_library(args)
    require_pieces(lib)
    printer = _FollowPrinter(args.json)
    if args.replay:
        return _follow_replay(args, lib, printer)
    if args.mic:
        from .audio import listen_mic

        def make(args_, name, **kw):
            return make_follow_session(args_, lib, printer, **kw), printer

        return listen_mic(args, make)
    return _follow_midi(args, lib, printer)


def _follow_replay(args, lib, printer) -> int:
    from ..live.replay import simulate
    from .live import read_replay, replay_into

    onsets, pitches = read_replay(args.replay)
    if args.speed == 0:  # the same frames, closes and timers, on a simulated clock
        simulate(make_follow_session(args, lib, printer), onsets, pitches)
    else:
        replay_into(make_follow_session(args, lib, printer, speed=args.speed), onsets,
                    pitches, args.speed)
    return 0 if printer.identified else 1


def _follow_midi(args, lib, printer) -> int:
    from ..live.midi_input import MidiError, find_port, list_input_ports
    from .live import listen_midi, only_port

    try:  # MIDI problems first: they are quicker to report than following
        api, ports = list_input_ports(args.api)
        port = None if args.virtual else \
            find_port(args.port, ports) if args.port else only_port(ports)
    except MidiError as exc:
        raise UserError(str(exc)) from None
    return listen_midi(args, api, port, make_follow_session(args, lib, printer))
