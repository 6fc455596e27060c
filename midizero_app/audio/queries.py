"""Query files of any kind — scores and recordings — read for a search, the same way for
the CLI and the app."""
from __future__ import annotations

import threading

from .cache import NO_NOTES
from .decode import is_audio


def read_queries(paths: list[str], progress=None,
                 cancel: threading.Event | None = None) -> dict:
    """Read query files in limited workers: scores through the score parser, audio through
    the transcriber (``progress`` gets ``(recordings done, recordings, path)``; ``cancel``
    stops handing out recordings). Returns ``{path: ParseResult}``; silent audio becomes an
    error."""
    from ..core.parsing import ParseResult, parse_files

    scores = [p for p in paths if not is_audio(p)]
    audio = [p for p in paths if is_audio(p)]
    out = {r.path: r for r in parse_files(scores, workers=min(2, len(scores)))} if scores \
        else {}
    if audio:
        from .worker import transcribe_files

        for r in transcribe_files(audio, workers=1, cancel=cancel, progress=progress):
            out[r.path] = r if r.notes is None or len(r.notes) else \
                ParseResult(r.path, None, NO_NOTES)
    return out


def search_options(path: str) -> dict:
    """Extra ``search_library`` options for a query file: those for transcribed audio."""
    if is_audio(path):
        from .transcribe import AUDIO_SEARCH

        return dict(AUDIO_SEARCH)
    return {}
