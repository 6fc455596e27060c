"""Audio on the command line: audio files as ``search`` queries (DESIGN §4.1)."""
from __future__ import annotations

import sys
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
