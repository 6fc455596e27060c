"""Audio on the command line (DESIGN §4.1): audio files as ``search`` queries, audio inputs
in ``devices``, and ``listen --mic``."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

from ..audio.cache import NO_NOTES
from ..audio.decode import is_audio
from .common import UserError, add_library_arg, open_library, require_pieces


def add_audio_route_arg(p) -> None:
    """``--audio-route transcribe|embed|both`` on a command that takes audio."""
    from ..audio.routes import DEFAULT_ROUTE, ROUTES

    p.add_argument("--audio-route", choices=ROUTES, default=DEFAULT_ROUTE,
                   help="how a recording is searched: transcribed to notes, embedded "
                        "straight into the index by the audio branch, or both fused "
                        f"(default {DEFAULT_ROUTE}; see the README)")


def read_queries(paths: list[str], route: str | None = None) -> dict:
    """:func:`~midizero_app.audio.queries.read_queries` with a progress bar for recordings
    (read for ``route``: their ``notes`` are then :class:`~midizero_app.audio.routes.AudioQuery`)."""
    from ..audio.queries import read_queries as read

    return read(paths, progress=_progress(sum(is_audio(p) for p in paths),
                                          "read" if route else "transcribed"), route=route)


def _progress(total: int, verb: str = "transcribed"):
    def report(done: int, _total: int, path: str) -> None:
        if total > 1 and sys.stderr.isatty():
            print(f"\r{verb} {done}/{total}: {Path(path).name[:40]}",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)
    return report


def audio_inputs() -> tuple[list[dict], str | None]:
    """Audio input devices for ``midizero devices``: (inputs, None) or ([], reason)."""
    from ..audio.microphone import AudioDeviceError, list_inputs

    try:
        return list_inputs(), None
    except AudioDeviceError as exc:
        return [], str(exc)


def listen_mic(args, make_session) -> int:
    """``midizero listen --mic``: microphone → streaming transcription → live session.

    ``make_session(args, name, **kw)`` is :func:`.live.make_session` (returns the session
    and its printer). Stops on Ctrl-C or after ``--duration`` seconds of audio.
    """
    from ..audio.microphone import AudioDeviceError, Microphone, find_input, run_stream
    from ..audio.stream import StreamingTranscriber
    from ..audio.transcribe import AUDIO_SEARCH, TranscriptionError, warm_up

    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be positive")
    route = getattr(args, "audio_route", "transcribe")
    try:
        device = find_input(args.device)
        mic = Microphone(device, max_seconds=args.duration)
        if route == "transcribe":
            warm_up()
    except (AudioDeviceError, TranscriptionError) as exc:
        raise UserError(str(exc)) from None
    if route != "transcribe":
        return listen_recent(args, mic, device, route)
    stream = StreamingTranscriber(mic.samplerate, lambda t, p: session.feed_note(t, p))
    session, printer = make_session(args, f"mic:{device or 'default'}", clock=stream.clock,
                                    **AUDIO_SEARCH)
    session.start()
    print(f"midizero: listening on audio input {device or 'default'!r} "
          f"({mic.samplerate} Hz); play, Ctrl-C to stop", file=sys.stderr, flush=True)
    stop = threading.Event()
    try:
        mic.start()
        run_stream(mic, stream, stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        mic.stop()
        session.stop()
    if mic.overflows:
        print(f"midizero: {mic.overflows} audio blocks were lost (input overflow)",
              file=sys.stderr)
    return 0 if printer.identified else 1


def listen_recent(args, mic, device, route: str) -> int:
    """``listen --mic --audio-route embed|both``: identify the microphone's recent audio
    (:class:`~midizero_app.audio.routes.RecentAudio`: the last 20 s, every 2 s), printing
    each new answer (one JSON object with ``--json``). Stops on Ctrl-C or at
    ``--duration``; exit status 0 when a piece was identified (unflagged)."""
    import json
    import queue

    from ..audio.routes import RecentAudio, search_audio

    lib = open_library(args)
    require_pieces(lib)
    recent = RecentAudio(mic.samplerate, route)
    last, identified = None, False
    print(f"midizero: listening on audio input {device or 'default'!r} ({mic.samplerate} Hz),"
          f" searching the last {recent.recent_s:g} s by the {route} route; Ctrl-C to stop",
          file=sys.stderr, flush=True)
    mic.start()
    try:
        while True:
            try:
                block = mic.blocks.get(timeout=0.2)
            except queue.Empty:
                continue
            end = block is None
            q = recent.push(block if not end else [], final=end)
            if q is not None:
                res = search_audio(lib, q, route, top=getattr(args, "top", 10))
                top = res["results"][0] if res["results"] else None
                answer = (top["piece_id"] if top else None, res["not_in_library"])
                if answer != last:
                    last = answer
                    identified |= top is not None and not res["not_in_library"]
                    if getattr(args, "json", False):
                        print(json.dumps(res), flush=True)
                    elif top is None:
                        print("no match", flush=True)
                    else:
                        flag = "  [not in your library?]" if res["not_in_library"] else ""
                        print(f"{top['title']}  [{top['confidence']:.0%}]{flag}", flush=True)
            if end:
                break
    except KeyboardInterrupt:
        pass
    finally:
        mic.stop()
        lib.close()
    return 0 if identified else 1


def add_audio_commands(sub) -> None:
    """Register ``match-recordings`` on the ``midizero`` subparsers."""
    p = sub.add_parser("match-recordings",
                       help="identify every recording in a folder (its score in the library)")
    p.add_argument("folder", metavar="DIR", help="folder of audio files (recursive)")
    add_library_arg(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object per recording")
    out.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.add_argument("--workers", type=int, default=1, help="transcriber processes (default 1)")
    add_audio_route_arg(p)
    p.set_defaults(func=cmd_match_recordings)


CSV_COLUMNS = ("recording", "title", "composer", "path", "confidence", "seconds",
               "not_in_library", "error", "audio_route")


def cmd_match_recordings(args) -> int:
    """Every audio file under DIR → the best piece of the library, with confidence and the
    score time where the recording starts. Transcriptions are cached by content hash in
    the library folder, so a second run does not transcribe again."""
    import csv
    import json

    from ..audio.cache import NotesCache, transcribe_cached
    from ..audio.routes import search_audio
    from ..audio.transcribe import AUDIO_SEARCH

    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"not a folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_audio(p))
    if not files:
        raise UserError(f"no audio files (.wav .flac .ogg .mp3 ...) under {folder}")
    lib = open_library(args)
    require_pieces(lib)
    writer = csv.DictWriter(sys.stdout, CSV_COLUMNS, lineterminator="\n") if args.csv else None
    if writer:
        writer.writeheader()
    route = getattr(args, "audio_route", "transcribe")
    if route == "transcribe":  # transcriptions are cached in the library folder
        cache = NotesCache(Path(lib.path) / "recordings-cache")
        results = {r.path: r for r in transcribe_cached(files, cache, args.workers,
                                                        progress=_progress(len(files)))}
    else:
        from ..audio.route_worker import read_audio_files

        results = {r.path: r for r in read_audio_files(files, route, args.workers,
                                                       progress=_progress(len(files), "read"))}
    matched = 0
    for f in files:
        r = results[str(f)]
        row = {"recording": str(f), "error": r.error, "audio_route": route}
        res = None
        if r.notes is None:
            pass  # row["error"] says why
        elif r.notes.heard_nothing() if route != "transcribe" else not len(r.notes):
            row["error"] = NO_NOTES
        elif route != "transcribe":
            res = search_audio(lib, r.notes, route, top=1)
        else:
            res = lib.search(r.notes, top=1, **AUDIO_SEARCH)
        if res is not None:
            top = res["results"][0] if res["results"] else None
            row["not_in_library"] = res["not_in_library"]
            if top:
                pos = top["positions"][0]["seconds"] if top["positions"] else None
                row.update(title=top["title"], composer=top["composer"], path=top["path"],
                           confidence=top["confidence"], seconds=pos)
                matched += not res["not_in_library"]
        if writer:
            writer.writerow(row)
        elif args.json:
            print(json.dumps(row), flush=True)
        else:
            print(_match_line(row), flush=True)
    lib.close()
    return 0 if matched else 1


def _match_line(row: dict) -> str:
    name = Path(row["recording"]).name
    if row.get("error"):
        return f"{name}: {row['error']}"
    if "title" not in row:
        return f"{name}: no match"
    flag = "  [not in your library?]" if row["not_in_library"] else ""
    who = f" – {row['composer']}" if row["composer"] else ""
    return f"{name}: {row['title']}{who}  [{row['confidence']:.0%}]{flag}"
