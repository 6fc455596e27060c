"""What the library can read: one *source* per kind of file, behind one interface.

Core reads scores itself (:data:`SCORES`: MIDI, MusicXML, MEI, Humdrum, ABC, parsed in
limited worker processes by :mod:`.parsing`). Other kinds plug in without core importing
them: the audio package provides recordings (transcribed, cached by content), registered
by name in ``midizero_app/__init__.py`` and imported the first time the library scans, so
that ``import midizero_app.core`` loads no audio code (DESIGN §2).
"""
from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    from .parsing import ParseResult


class Source(Protocol):
    """A kind of file the library indexes.

    ``kind`` is stored with each piece (``"score"``, ``"recording"``); ``suffixes`` are
    lower-case file name endings with the dot. ``read`` turns files into notes: one
    :class:`~.parsing.ParseResult` per path (notes, or the one-line reason it failed), in
    any order, stopping early when ``cancel`` is set. ``library_dir`` is the library's own
    folder, for caches.
    """

    kind: str
    suffixes: tuple[str, ...]

    def read(self, paths: list[Path], library_dir: Path, workers: int, timeout: float,
             cancel: threading.Event | None) -> Iterator[ParseResult]: ...


class ScoreSource:
    """Score files, parsed in worker processes with time and memory limits (the readers
    are imported on first use: ``import midizero_app`` stays light)."""

    kind = "score"

    @property
    def suffixes(self) -> tuple[str, ...]:
        from .scores import SCORE_SUFFIXES

        return SCORE_SUFFIXES

    def read(self, paths, library_dir, workers, timeout, cancel):
        from .parsing import DEFAULT_TIMEOUT, parse_files

        return parse_files(paths, workers, timeout or DEFAULT_TIMEOUT, cancel=cancel)


SCORES = ScoreSource()
_REGISTERED: list[Source] = [SCORES]
_LAZY: list[str] = []
_LOCK = threading.Lock()


def register(source: Source | str) -> None:
    """Add a source, or the dotted name ``"package.module:attribute"`` of one (imported
    when the library first needs its sources)."""
    with _LOCK:
        if isinstance(source, str):
            if source not in _LAZY:
                _LAZY.append(source)
        elif source not in _REGISTERED:
            _REGISTERED.append(source)


def sources() -> list[Source]:
    """Every registered source (lazy ones imported now; one that cannot be imported — an
    installation without its optional packages — is left out)."""
    with _LOCK:
        while _LAZY:
            module, _, attr = _LAZY.pop(0).partition(":")
            try:
                src = getattr(importlib.import_module(module), attr)
            except ImportError:
                continue
            if src not in _REGISTERED:
                _REGISTERED.append(src)
        return list(_REGISTERED)


def source_for(path: str | Path) -> Source | None:
    """The source that reads this file name, or None."""
    name = str(path).lower()
    for src in sources():
        if name.endswith(src.suffixes):
            return src
    return None


def all_suffixes() -> tuple[str, ...]:
    """Every file name ending some source reads."""
    return tuple(s for src in sources() for s in src.suffixes)

