"""Humdrum **kern files (``.krn``) → :class:`~.common.Notes`, through partitura."""
from __future__ import annotations

from pathlib import Path

from .common import Notes
from .partitura_notes import load

SUFFIXES = (".krn",)


def read(path: str | Path) -> Notes:
    """Read a Humdrum **kern file.

    Returns
    -------
    Notes : onsets in seconds at the first tempo mark, ``grid`` in 1/10080 quarter notes,
        measures, beats and voices.

    Raises
    ------
    ScoreError : the file does not parse.
    """
    from partitura.io import load_kern

    return load(lambda f: load_kern(f, force_note_ids="keep"), path, "krn")
