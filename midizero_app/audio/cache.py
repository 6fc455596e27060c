"""Transcribed notes cached by the audio file's content hash.

Transcription is the slow part of using a recording (about 0.02–0.03 s of CPU per second of
audio), and its result depends only on the file's bytes and the transcriber's settings. The
cache keeps one ``.npz`` per (content, settings) under the app's own data folder — never
beside the user's recordings — so a rescan, a moved or renamed file, or a change of the
search model never transcribes a recording again.
"""
from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..core.atomic import write_bytes
from ..core.errors import WriteFailed
from ..core.hashing import bytes_hash, file_hash
from ..core.parsing import ParseResult
from ..core.scores import Notes
from .decode import AUDIO_SUFFIXES
from .note_creation import NoteParams

ProgressFn = Callable[[int, int, str], None]


def file_digest(path: str | Path) -> str:
    """The content hash of a file (:func:`~midizero_app.core.hashing.file_hash`)."""
    return file_hash(path)


def _settings_key(params: NoteParams) -> str:
    """A short key of everything besides the bytes that changes the notes."""
    return bytes_hash(repr(("basic-pitch icassp_2022", params)).encode())[:12]


class NotesCache:
    """Notes of transcribed audio, one ``<content hash>-<settings>.npz`` each, in ``root``
    (settings: the transcriber's default :class:`NoteParams`, which the workers use).

    Parameters
    ----------
    root : a folder of the app's own (created when first written).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._suffix = f"-{_settings_key(NoteParams())}.npz"

    def _path(self, digest: str) -> Path:
        return self.root / (digest + self._suffix)

    def get(self, digest: str) -> Notes | None:
        """The cached notes, or None (absent or unreadable: transcribe again)."""
        try:
            with np.load(self._path(digest), allow_pickle=False) as z:
                return Notes(z["onset"], z["pitch"], format=str(z["format"]))
        except (OSError, KeyError, ValueError):
            return None

    def put(self, digest: str, notes: Notes) -> bool:
        """Store atomically (:mod:`~midizero_app.core.atomic`). A cache that cannot be
        written (a full disk) is skipped: returns False, the notes are still used."""
        buf = io.BytesIO()
        np.savez(buf, onset=notes.onset, pitch=notes.pitch, format=np.array(notes.format))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_bytes(self._path(digest), buf.getvalue())
        except (WriteFailed, OSError):
            return False
        return True


def transcribe_cached(paths: Iterable[str | Path], cache: NotesCache, workers: int = 1,
                      cancel: threading.Event | None = None,
                      progress: ProgressFn | None = None) -> Iterator[ParseResult]:
    """Notes of audio files: from ``cache`` by content hash, else transcribed in limited
    worker processes (:func:`~.worker.transcribe_files`) and cached. Yields one
    :class:`~midizero_app.core.parsing.ParseResult` per file (cache hits first)."""
    from .worker import transcribe_files

    paths = [str(p) for p in paths]
    digests: dict[str, str] = {}
    misses, done = [], 0
    for p in paths:
        try:
            digests[p] = file_digest(p)
        except OSError as exc:
            done += 1
            yield ParseResult(p, None, f"cannot read: {exc.strerror or exc}")
            continue
        notes = cache.get(digests[p])
        if notes is None:
            misses.append(p)
            continue
        done += 1
        if progress is not None:
            progress(done, len(paths), p)
        yield ParseResult(p, notes, None)

    def inner_progress(d: int, _t: int, path: str) -> None:
        if progress is not None:
            progress(done + d, len(paths), path)

    for r in transcribe_files(misses, workers, cancel=cancel, progress=inner_progress):
        if r.notes is not None:
            cache.put(digests[r.path], r.notes)
        yield r


NO_NOTES = "no notes heard (silence, or too quiet)"


def read_recordings(paths: Iterable[str | Path], cache_dir: str | Path,
                    cancel: threading.Event | None = None) -> Iterator[ParseResult]:
    """Recordings for the library: :func:`transcribe_cached` with the notes titled after
    the file name, and silent recordings turned into an error (:data:`NO_NOTES`)."""
    from ..core.scores import fallback_title

    for r in transcribe_cached(paths, NotesCache(cache_dir), cancel=cancel):
        if r.notes is not None and not len(r.notes):
            r = ParseResult(r.path, None, NO_NOTES)
        elif r.notes is not None:
            r.notes.title = fallback_title(Path(r.path))
        yield r


@dataclass(frozen=True)
class RecordingSource:
    """Recordings as a library source (:class:`midizero_app.core.sources.Source`):
    transcribed once, their notes cached by content in the library's own folder."""

    kind: str = "recording"
    suffixes: tuple[str, ...] = AUDIO_SUFFIXES

    def read(self, paths, library_dir, workers, timeout, cancel):
        return read_recordings(paths, Path(library_dir) / "recordings-cache", cancel)


SOURCE = RecordingSource()
