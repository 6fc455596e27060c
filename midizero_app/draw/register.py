"""Where a library's music lives on the keyboard: the default place for a picture.

A picture spreads its ink evenly over its pitch range, while real music crowds the middle
of the keyboard. :func:`library_register` gives the range over which an even spread has
the library's own mean and spread of pitches (mean ± √3 · standard deviation), so a
picture put there sounds in the register of the music it is made from — a piano library
gets about E2–D#6, the music21 corpus about A2–A#5 (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import math

import numpy as np

from ..core.frames import PITCH_HI, PITCH_LO
from .drawing import IMAGE_RANGE

MIN_WIDTH = 24      # semitones: room for a picture however narrow the library's music
MAX_PIECES = 400    # pieces read (evenly spread over the library) — enough for the spread


def library_register(library, max_pieces: int = MAX_PIECES) -> tuple[int, int]:
    """The (lowest, highest) MIDI pitch for a picture drawn with ``library``'s music.

    Parameters
    ----------
    library : a :class:`~midizero_app.core.library.Library`, or None.
    max_pieces : at most this many pieces are read.

    Returns
    -------
    (lo, hi) : MIDI pitches, lo < hi, within 21..108 and at least :data:`MIN_WIDTH` apart;
        :data:`~midizero_app.draw.drawing.IMAGE_RANGE` when there is no library or it has
        no notes.
    """
    if library is None:
        return IMAGE_RANGE
    ids = [p["id"] for p in library.pieces("ok") + library.pieces("repaired")]
    if not ids:
        return IMAGE_RANGE
    pick = np.unique(np.linspace(0, len(ids) - 1, min(len(ids), max_pieces)).round()
                     .astype(np.int64))
    p = np.concatenate([library.frames_of(ids[i]).pitches for i in pick]).astype(np.float64)
    if not len(p):
        return IMAGE_RANGE
    mean, half = float(p.mean()), max(math.sqrt(3.0) * float(p.std()), MIN_WIDTH / 2)
    lo = int(round(max(mean - half, PITCH_LO)))
    hi = int(round(min(mean + half, PITCH_HI)))
    if hi - lo < MIN_WIDTH:  # pushed against an end of the keyboard
        lo, hi = (PITCH_LO, PITCH_LO + MIN_WIDTH) if lo == PITCH_LO else \
            (PITCH_HI - MIN_WIDTH, PITCH_HI)
    return lo, hi
