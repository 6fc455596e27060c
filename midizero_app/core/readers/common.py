"""What every score reader shares: the :class:`Notes` record, :class:`ScoreError`, titles
from file names, and file names that are not valid text.

File names are bytes on Linux and macOS: a name that is not UTF-8 reaches Python as a
``str`` with lone surrogates (``os.fsdecode``). Such a string opens files through Python's
own ``open`` but fails wherever a library encodes it as UTF-8, and cannot be stored or
printed. :func:`readable_path` gives third-party parsers a name they can encode, and
:func:`~midizero_app.core.paths.display_path` escapes the undecodable bytes of any
text shown to a user.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import MidizeroError

import numpy as np

from ..paths import display_path

DEFAULT_QPM = 120.0  # quarter notes per minute where a score gives no tempo

# Stems that say nothing about the piece (e.g. ASAP's midi_score.mid): use the folders instead.
GENERIC_STEMS = {"midi_score", "xml_score", "score", "main", "index", "piece", "untitled"}


class ScoreError(MidizeroError):
    """A file could not be read; the message is the reason shown to the user."""


@dataclass
class Notes:
    """Notes of one file, sorted by onset.

    Attributes
    ----------
    onset : float64 array (N,), seconds from the start of the file.
    pitch : int16 array (N,), MIDI pitch numbers (0..127, not yet folded).
    grid : int64 array (N,) or None. An exact onset key (MIDI ticks, or score divisions) for
        exact score grouping; None for formats without one.
    measure : int32 array (N,), 1-based measure number, or -1 where unknown.
    beat : float32 array (N,), 1-based beat in the measure, or NaN where unknown.
    voice : int32 array (N,) or None. The note's voice, numbered 0.. and unique across the
        file's parts and staves (one number per part, staff and voice); None for formats
        without voices (MIDI, recordings).
    """

    onset: np.ndarray
    pitch: np.ndarray
    grid: np.ndarray | None = None
    measure: np.ndarray | None = None
    beat: np.ndarray | None = None
    title: str = ""
    composer: str = ""
    format: str = ""
    repaired: bool = False
    quantised: bool = False
    warnings: list[str] = field(default_factory=list)
    voice: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.onset)
        if self.measure is None:
            self.measure = np.full(n, -1, np.int32)
        if self.beat is None:
            self.beat = np.full(n, np.nan, np.float32)
        order = np.lexsort((self.pitch, self.onset))
        self.onset = np.asarray(self.onset, np.float64)[order]
        self.pitch = np.asarray(self.pitch, np.int16)[order]
        self.measure = np.asarray(self.measure, np.int32)[order]
        self.beat = np.asarray(self.beat, np.float32)[order]
        if self.grid is not None:
            self.grid = np.asarray(self.grid, np.int64)[order]
        if self.voice is not None:
            self.voice = np.asarray(self.voice, np.int32)[order]

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def duration(self) -> float:
        """Seconds from the start to the last onset (0.0 without notes)."""
        return float(self.onset[-1]) if len(self.onset) else 0.0

    def to_arrays(self) -> dict:
        """Plain arrays + strings, for passing between processes without pickling objects."""
        return {k: getattr(self, k) for k in
                ("onset", "pitch", "grid", "measure", "beat", "voice", "title", "composer",
                 "format", "repaired", "quantised", "warnings")}

    @classmethod
    def from_arrays(cls, d: dict) -> "Notes":
        """The inverse of :meth:`to_arrays`."""
        return cls(**d)


def encodable(path: str | os.PathLike) -> bool:
    """Whether a path is valid text (no undecodable bytes), so any library can open it."""
    try:
        os.fspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@contextlib.contextmanager
def readable_path(path: str | os.PathLike) -> Iterator[str]:
    """A name for ``path`` that every parser can encode: ``path`` itself when it is valid
    text, else a link (or a copy, where links are not allowed) with a plain name in a
    temporary folder, removed afterwards. The suffix is kept: parsers choose by it."""
    path = os.fspath(path)
    if encodable(path):
        yield path
        return
    suffix = display_path(os.path.splitext(path)[1])
    tmp = tempfile.mkdtemp(prefix="midizero-read-")
    try:
        alias = os.path.join(tmp, "file" + suffix)
        try:
            os.symlink(os.path.abspath(path), alias)
        except OSError:
            shutil.copyfile(path, alias)
        yield alias
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# lxml's "(file name, line N)" at the end of a message (a name may hold parentheses)
_LXML_WHERE = re.compile(r"\s*\((?:[^()]|\([^()]*\))*, line \d+\)\s*$")


def short_reason(exc: BaseException) -> str:
    """A parser exception as a short reason: the first line of its message (at most 160
    characters, printable, without lxml's trailing file name), or its type's name when it
    has none; a file that ends early or is not text says so."""
    if isinstance(exc, EOFError):
        return "the file ends early: truncated?"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    text = str(exc).strip()
    msg = _LXML_WHERE.sub("", text.splitlines()[0]) if text else type(exc).__name__
    return display_path(msg)[:160]


_NAME_SPLIT = re.compile(r"^\s*(?P<composer>[^-–—]{1,60}?)\s+[-–—]\s+(?P<title>\S.*)$")


def one_line(text: str) -> str:
    """Text fit for one line of a listing: undecodable bytes and control characters escaped
    (``\\xff``, ``\\x1b``), runs of whitespace (newlines too) made one space."""
    text = "".join(c if c.isprintable() or c.isspace() else f"\\x{ord(c):02x}"
                   for c in display_path(text))
    return " ".join(text.split())


def fallback_title(path: str | os.PathLike) -> str:
    """A readable title from a file name (folders for generic names like ``midi_score.mid``),
    on one line."""
    path = Path(path)
    stem = path.stem
    if stem.lower() in GENERIC_STEMS:
        parts = [p for p in path.parent.parts[-3:] if p not in ("/", "")]
        stem = " ".join(parts) or stem
    return one_line(re.sub(r"[_]+", " ", stem))


def composer_from_name(path: str | os.PathLike) -> str:
    """The composer of a ``Composer - Title.ext`` file name (``""`` for other names)."""
    m = _NAME_SPLIT.match(one_line(Path(path).stem))
    return m.group("composer") if m else ""


def clean_text(value) -> str:
    """A metadata string on one line (:func:`one_line`); ``""`` for anything that is not a
    string, and for the string ``"None"``, which parsers produce from an element whose text
    is missing or an unresolved entity."""
    if not isinstance(value, str):
        return ""
    text = one_line(value)
    return "" if text == "None" else text


def voice_numbers(keys: np.ndarray) -> np.ndarray:
    """Dense voice numbers 0.. (int32 (N,)) from per-note keys (N, k), e.g. (part, staff,
    voice): equal keys, equal numbers."""
    return np.unique(keys.astype(np.int64), axis=0, return_inverse=True)[1] \
        .reshape(-1).astype(np.int32)
