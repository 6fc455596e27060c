"""MusicXML files (``.musicxml .xml .mxl``) → :class:`~.common.Notes`, through partitura."""
from __future__ import annotations

from pathlib import Path

from .common import Notes, ScoreError
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

    try:
        return load(lambda f: load_musicxml(f, force_note_ids="keep"), path, "musicxml")
    except ScoreError:
        if Path(path).suffix.lower() == ".mxl" and not _zip_or_xml(path):
            raise ScoreError("corrupt compressed MusicXML file (neither a zip archive nor "
                             "XML: truncated?)") from None
        raise


def _zip_or_xml(path: str | Path) -> bool:
    """Whether a file is a zip archive or starts like XML (partitura reads either as .mxl)."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            return True
        with open(path, "rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return True  # not ours to judge: partitura's own reason stands
    return head.startswith(b"<")
