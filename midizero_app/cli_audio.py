"""Audio on the command line (DESIGN §4.1): audio files as ``search`` queries, audio inputs
in ``devices``, and ``listen --mic``."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

from .audio.decode import is_audio

NO_NOTES = "no notes heard (silence, or too quiet)"


def read_queries(paths: list[str]) -> dict:
    """Read query files in limited workers: scores through the score parser, audio through
    the transcriber. Returns ``{path: ParseResult}``; silent audio becomes an error."""
    from .core.parsing import ParseResult, parse_files

    scores = [p for p in paths if not is_audio(p)]
    audio = [p for p in paths if is_audio(p)]
    out = {r.path: r for r in parse_files(scores, workers=min(2, len(scores)))} if scores \
        else {}
    if audio:
        from .audio.worker import transcribe_files

        for r in transcribe_files(audio, workers=1, progress=_progress(len(audio))):
            out[r.path] = r if r.notes is None or len(r.notes) else \
                ParseResult(r.path, None, NO_NOTES)
    return out


def search_options(path: str) -> dict:
    """Extra ``search_library`` options for a query file: τ for transcribed audio."""
    if is_audio(path):
        from .audio.transcribe import AUDIO_TAU

        return {"tau": AUDIO_TAU}
    return {}


def _progress(total: int):
    def report(done: int, _total: int, path: str) -> None:
        if total > 1 and sys.stderr.isatty():
            print(f"\rtranscribed {done}/{total}: {Path(path).name[:40]}",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)
    return report


def audio_inputs() -> tuple[list[dict], str | None]:
    """Audio input devices for ``midizero devices``: (inputs, None) or ([], reason)."""
    from .audio.microphone import AudioDeviceError, list_inputs

    try:
        return list_inputs(), None
    except AudioDeviceError as exc:
        return [], str(exc)


def listen_mic(args, make_session) -> int:
    """``midizero listen --mic``: microphone → streaming transcription → live session.

    ``make_session(args, name, **kw)`` is cli_live's session factory (returns the session
    and its printer). Stops on Ctrl-C or after ``--duration`` seconds of audio.
    """
    from .audio.microphone import AudioDeviceError, Microphone, find_input, run_stream
    from .audio.stream import StreamingTranscriber
    from .audio.transcribe import AUDIO_TAU, TranscriptionError, warm_up
    from .cli import UserError

    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be positive")
    try:
        device = find_input(args.device)
        mic = Microphone(device, max_seconds=args.duration)
        warm_up()
    except (AudioDeviceError, TranscriptionError) as exc:
        raise UserError(str(exc)) from None
    stream = StreamingTranscriber(mic.samplerate, lambda t, p: session.feed_note(t, p))
    session, printer = make_session(args, f"mic:{device or 'default'}", clock=stream.clock,
                                    tau=AUDIO_TAU)
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
