"""Score and performance files → notes + metadata.

One function, :func:`load_notes`, reads any supported file into a :class:`Notes` record:
note onsets in seconds and MIDI pitches, plus measure/beat positions and a grid key for
exact (score) grouping where the format has them. One reader per format lives in
:mod:`midizero_app.core.readers`:

* MIDI (``.mid .midi``) through mido and pretty_midi (:mod:`.readers.midi`);
* MusicXML (``.musicxml .xml .mxl``), MEI (``.mei``) and Humdrum (``.krn``) through
  partitura (:mod:`.readers.musicxml`, :mod:`.readers.mei`, :mod:`.readers.humdrum`);
* ABC (``.abc``) through music21 (:mod:`.readers.abc`).

Parsers may hang or exhaust memory on corrupt input: call this through
:mod:`midizero_app.core.parsing`, which runs it in limited worker processes.
"""
from __future__ import annotations

import os
from pathlib import Path

from .paths import display_path, not_readable_reason
from .readers import READERS, abc, humdrum, mei, midi, musicxml
from .readers.common import (Notes, ScoreError, clean_text, composer_from_name,
                             fallback_title, readable_path)

MIDI_SUFFIXES = midi.SUFFIXES
XML_SUFFIXES = musicxml.SUFFIXES + mei.SUFFIXES + humdrum.SUFFIXES
ABC_SUFFIXES = abc.SUFFIXES
SCORE_SUFFIXES = MIDI_SUFFIXES + XML_SUFFIXES + ABC_SUFFIXES

__all__ = ["ABC_SUFFIXES", "MIDI_SUFFIXES", "SCORE_SUFFIXES", "XML_SUFFIXES", "Notes",
           "ScoreError", "fallback_title", "load_notes"]


def load_notes(path: str | os.PathLike) -> Notes:
    """Read a score or performance file.

    Parameters
    ----------
    path : a MIDI, MusicXML, MEI, Humdrum or ABC file; any name the system allows.

    Returns
    -------
    Notes with at least one note, onsets from 0 s; ``title`` is never empty (the file's
    own, else from its name), ``composer`` is the file's own, else the ``Composer`` of a
    ``Composer - Title`` file name, else ``""``.

    Raises
    ------
    ScoreError with a one-line reason (unknown format, not a file, empty, corrupt, too
    long, no notes, drums only).
    """
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ScoreError(f"unsupported file type {display_path(path.suffix)!r}")
    problem = not_readable_reason(path)
    if problem:
        raise ScoreError(problem)
    with readable_path(path) as name:
        notes = reader.read(name)
    if len(notes) == 0:
        raise ScoreError("no pitched notes (empty, or drums only)")
    if notes.onset[0] < 0:  # a pickup measure before time 0 (partitura)
        notes.onset -= notes.onset[0]
    notes.title = clean_text(notes.title) or fallback_title(path)
    notes.composer = clean_text(notes.composer) or composer_from_name(path)
    return notes
