"""The naive baseline: every drawn cell is a note (midiDraw's first try; sounds like noise)."""
from __future__ import annotations

import numpy as np

from ..core.frames import PITCH_LO
from .drawing import Drawing
from .image import DrawError
from .result import Generated
from .theory import Key

C_MAJOR = Key(0)


def naive(drawing: Drawing, key: Key = C_MAJOR, tempo: float = 96.0) -> Generated:
    """One 16th-note note per drawn cell, velocity from its darkness.

    Returns a :class:`Generated` whose roll is exactly the drawing's mask.
    """
    if drawing.is_empty():
        raise DrawError("nothing is drawn")
    t, col = np.nonzero(drawing.mask)
    vel = np.round(30 + 90 * drawing.ink[t, col]).astype(np.int64)
    notes = np.stack([t, t + 1, col + PITCH_LO, vel], 1)
    return Generated(notes, drawing.n_steps, tempo, key, "naive",
                     drawing.steps_per_beat, drawing.beats_per_bar)
