"""MusicXML files (``.musicxml .xml .mxl``) → :class:`~.common.Notes`, through partitura."""
from __future__ import annotations

from pathlib import Path

from .common import Notes
from .partitura_notes import load

SUFFIXES = (".musicxml", ".xml", ".mxl")


def read(path: str | Path) -> Notes:
    """Read a MusicXML file, plain or compressed (``.mxl``).

    Returns
    -------
    Notes : onsets in seconds at the first tempo mark, ``grid`` in 1/10080 quarter notes,
        measures, beats and voices.

    Raises
    ------
    ScoreError : the file does not parse.
    """
    from partitura.io import load_musicxml

    return load(lambda f: load_musicxml(f, force_note_ids="keep"), path, "musicxml")
