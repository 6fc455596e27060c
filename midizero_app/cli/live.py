"""``midizero devices | listen``: the live path on the command line (DESIGN §4.1, §5).

``listen`` prints the ranking whenever it changes (text), or every update as one JSON line
(``--json``: the §4.2 object plus ``"t"`` and ``"final"``). It listens to a MIDI input
(``--port NAME``, or the only/first one there is), to a virtual input other programs can
connect to (``--virtual``), or plays a file in real time (``--replay FILE --speed X``).
Hot-plug messages go to stderr. Ctrl-C ends a live session after its final update.
"""
from __future__ import annotations

import json
import sys
import threading

from .audio import add_audio_route_arg
from .common import UserError, add_library_arg, open_library, require_pieces


def add_live_commands(sub) -> None:
    """Register ``devices`` and ``listen`` on the ``midizero`` subparsers."""
    p = sub.add_parser("devices", help="list MIDI and audio inputs")
    p.add_argument("--api", default="auto", choices=("auto", "alsa", "jack", "coremidi", "winmm"),
                   help="MIDI system (default: the first that works)")
    p.add_argument("--json", action="store_true", help='print {"api": ..., "inputs": [...]}')
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("listen", help="identify what is played (MIDI keyboard or microphone), live")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--port", metavar="NAME", help="MIDI input by name (see 'midizero devices')")
    src.add_argument("--virtual", metavar="NAME", nargs="?", const="input",
                     help="open a virtual MIDI input (default name 'input') to connect to")
    src.add_argument("--replay", metavar="FILE", help="play a MIDI file into the live path")
    src.add_argument("--mic", action="store_true",
                     help="listen through a microphone (audio is transcribed to notes)")
    p.add_argument("--device", metavar="NAME",
                   help="with --mic: audio input by name (see 'midizero devices')")
    p.add_argument("--duration", type=float, metavar="S",
                   help="with --mic: stop after S seconds of audio")
    add_audio_route_arg(p)  # with --mic (following needs notes: `follow --mic` transcribes)
    p.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    p.add_argument("--api", default="auto", choices=("auto", "alsa", "jack", "coremidi", "winmm"),
                   help="MIDI system (default: the first that works)")
    add_library_arg(p)
    p.add_argument("--top", type=int, default=10, help="results per update (default 10)")
    p.add_argument("--silence", type=float, default=3.0, metavar="S",
                   help="seconds of silence that end a query (default 3)")
    p.add_argument("--melody", action="store_true",
                   help="always search the melody view (automatic for a tune played one note "
                        "at a time)")
    p.add_argument("--json", action="store_true", help="one JSON object per update")
    p.set_defaults(func=cmd_listen)


def cmd_devices(args) -> int:
    from ..live.midi_input import MidiError, list_input_ports

    try:
        api, ports = list_input_ports(args.api)
    except MidiError as exc:
        raise UserError(str(exc)) from None
    from .audio import audio_inputs

    audio, audio_error = audio_inputs()
    if args.json:
        print(json.dumps({"api": api, "inputs": ports, "audio_inputs": audio}))
    elif ports:
        print(f"MIDI inputs ({api}):")
        for name in ports:
            print(f"  {name}")
    else:
        print(f"no MIDI inputs ({api}): connect a keyboard, or use 'listen --virtual'")
    if not args.json:
        print(f"audio inputs: {audio_error}" if audio_error else
              "audio inputs (listen --mic --device NAME):" if audio else
              "no audio inputs: connect a microphone")
        for d in audio:
            print(f"  {d['name']}  ({d['host_api']}, {d['samplerate']:g} Hz"
                  + (", default)" if d["default"] else ")"))
    return 0


class _Printer:
    """Prints updates: every one as JSON, or in text when the top 3 change and at the end."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self._shown: tuple | None = None
        self.identified = False
        self._lock = threading.Lock()

    def __call__(self, update: dict) -> None:
        with self._lock:
            if update["final"]:
                self.identified |= bool(update["results"]) and not update["not_in_library"]
            if self.as_json:
                print(json.dumps(update), flush=True)
                return
            key = (tuple(r["piece_id"] for r in update["results"][:3]),
                   update["not_in_library"])
            if update["final"] or key != self._shown:
                print(_ranking_line(update), flush=True)
            self._shown = None if update["final"] else key


def _ranking_line(update: dict) -> str:
    head = f"{'final' if update['final'] else 'now'} {update['t']:6.1f} s {update['frames']:4d} fr"
    if not update["results"]:
        return f"{head}  no match (the library is empty?)"
    parts = []
    for r in update["results"][:3]:
        text = f"{r['rank']}. {r['title']} {r['confidence']:.0%}"
        pos = r["positions"][0] if r["positions"] else None
        now = pos.get("now") if pos else None
        if r["rank"] == 1 and now:
            text += f" (at {now['seconds']:.1f} s" + \
                (f", m. {now['measure']})" if now.get("measure") is not None else ")")
        parts.append(text)
    flag = {"unsure": "  [not sure yet: keep playing]",
            "not_in_library": "  [not in your library?]"}.get(update["verdict"], "")
    return f"{head}  " + "  |  ".join(parts) + flag


def cmd_listen(args) -> int:
    from ..live.midi_input import MidiError, find_port, list_input_ports

    if args.speed <= 0:
        raise UserError("--speed must be positive")
    if args.replay:
        return _listen_replay(args)
    if args.mic:
        from .audio import listen_mic

        return listen_mic(args, make_session)
    try:  # MIDI problems first: they are quicker to report than loading a library
        api, ports = list_input_ports(args.api)
        port = None if args.virtual else \
            find_port(args.port, ports) if args.port else only_port(ports)
    except MidiError as exc:
        raise UserError(str(exc)) from None
    session, _ = make_session(args, args.port or port or f"virtual:{args.virtual}")
    return listen_midi(args, api, port, session)


def make_session(args, name: str, speed: float = 1.0, **session_kw):
    """The library's live session printing updates; returns (session, printer).
    ``session_kw`` go to LiveSession (the microphone path passes its clock and τ)."""
    from ..live.session import LiveSession

    lib = open_library(args)
    require_pieces(lib)
    printer = _Printer(args.json)
    return LiveSession(lib, silence_s=args.silence, top=args.top, on_update=printer,
                       speed=speed, name=name, melody=True if args.melody else "auto",
                       **session_kw), printer


def read_replay(path: str):
    """A performance file's notes for a replay: onsets (s) and pitches; UserError if bad."""
    from ..core.scores import ScoreError
    from ..live.replay import load_performance

    try:
        return load_performance(path)
    except ScoreError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def replay_into(session, onsets, pitches, speed: float) -> None:
    """Start ``session`` (a LiveSession or FollowSession made with ``speed``), play the notes
    into it in real time × ``speed`` (Ctrl-C stops), and stop it."""
    from ..live.replay import replay

    session.start()
    cancel = threading.Event()
    try:
        replay(onsets, pitches, session.feed_note, session.clock, speed, cancel)
    except KeyboardInterrupt:
        cancel.set()
    finally:
        session.stop()


def _listen_replay(args) -> int:
    onsets, pitches = read_replay(args.replay)
    session, printer = make_session(args, args.replay, args.speed)
    replay_into(session, onsets, pitches, args.speed)
    return 0 if printer.identified else 1


def listen_midi(args, api: str, port: str | None, session) -> int:
    """Feed ``session`` from the MIDI input ``port`` (or a virtual port, ``args.virtual``)
    until Ctrl-C."""
    from ..live.midi_input import MidiError, MidiInput

    def on_state(state: str, name: str) -> None:
        print(f"midizero: MIDI input {name!r} {_STATE_TEXT.get(state, state)}",
              file=sys.stderr, flush=True)

    midi = None
    try:
        midi = MidiInput(session.feed_note, api=api, on_state=on_state)
        port = midi.open_virtual(args.virtual) if args.virtual else midi.open(port)
    except MidiError as exc:
        if midi is not None:
            midi.close()
        raise UserError(str(exc)) from None
    session.start()
    print(f"midizero: listening on {port!r} ({midi.api}); play, Ctrl-C to stop",
          file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        midi.close()
        session.stop()
    return 0


_STATE_TEXT = {"connected": "connected", "lost": "disconnected; waiting for it to come back",
               "reconnected": "reconnected"}


def only_port(ports: list[str]) -> str:
    if not ports:
        raise UserError("no MIDI inputs: connect a keyboard, name one with --port, "
                        "or use --virtual")
    if len(ports) > 1:
        print(f"midizero: {len(ports)} MIDI inputs, using {ports[0]!r} (choose with --port)",
              file=sys.stderr)
    return ports[0]
