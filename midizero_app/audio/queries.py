"""Query files of any kind — scores and recordings — read for a search, the same way for
the CLI and the app."""
from __future__ import annotations

import threading

from .cache import NO_NOTES
from .decode import is_audio


def read_queries(paths: list[str], progress=None,
                 cancel: threading.Event | None = None, route: str | None = None) -> dict:
    """Read query files in limited workers: scores through the score parser, audio through
    the transcriber (``progress`` gets ``(recordings done, recordings, path)``; ``cancel``
    stops handing out recordings). Returns ``{path: ParseResult}``; silent audio becomes an
    error.

    ``route`` (``"transcribe"``, ``"embed"``, ``"both"``; :mod:`.routes`): a recording's
    ``notes`` is then an :class:`~.routes.AudioQuery` holding what that route searches; with
    None (default) it is the transcribed :class:`~midizero_app.core.scores.Notes`. Silence
    gives the same error by every route.
    """
    from ..core.parsing import ParseResult, parse_files

    scores = [p for p in paths if not is_audio(p)]
    audio = [p for p in paths if is_audio(p)]
    out = {r.path: r for r in parse_files(scores, workers=min(2, len(scores)))} if scores \
        else {}
    if audio and route is None:
        from .worker import transcribe_files

        for r in transcribe_files(audio, workers=1, cancel=cancel, progress=progress):
            out[r.path] = r if r.notes is None or len(r.notes) else \
                ParseResult(r.path, None, NO_NOTES)
    elif audio:
        from .route_worker import read_audio_files

        for r in read_audio_files(audio, route, workers=1, cancel=cancel, progress=progress):
            out[r.path] = r if r.notes is None or not r.notes.heard_nothing() else \
                ParseResult(r.path, None, NO_NOTES)
    return out


def search_options(path: str) -> dict:
    """Extra ``search_library`` options for a query file: those for transcribed audio."""
    if is_audio(path):
        from .transcribe import AUDIO_SEARCH

        return dict(AUDIO_SEARCH)
    return {}


def search_recording(lib, path: str, route: str, cancel: threading.Event | None = None,
                     top: int = 10, **kwargs) -> tuple[dict, object]:
    """Read one recording for ``route`` in a limited worker and identify it in ``lib``
    (:func:`.routes.search_audio`; ``kwargs`` go to the note search). Returns the §4.2
    result (with ``"audio_route"``) and the transcribed Notes (None by the embedding route
    alone). Raises :class:`~.routes.RouteError`-like one-line :class:`MidizeroError` for an
    unreadable or silent recording."""
    from ..core.errors import MidizeroError
    from .routes import search_audio

    r = read_queries([path], cancel=cancel, route=route)[path]
    if r.notes is None:
        raise MidizeroError(r.error)
    res = search_audio(lib, r.notes, route, top=top, **kwargs)
    return res, r.notes.notes
