"""Melody training pairs (an encoder variant for tunes, models/README.md): a generated tune and the same tune
as people play it from memory, both as the melody view's key-normalised windows.

No real music: the tune is a random walk whose steps follow the interval sizes of tunes
(mostly repeats and steps, some leaps, rarely an octave); the remembered copy gets one to
three of the slips the theme benchmark models (a wrong note, a note an octave off, a note
left out, a neighbour or repeated note added). Both go through
:func:`~midizero_app.core.melody.melody_windows`, so the pair differs by the slips alone
and not by the key the melody view normalises away.
"""
from __future__ import annotations

import numpy as np

from ..melody import CENTER, melody_windows

# semitone steps of a tune and how often they come (repeats and seconds dominate)
STEPS = np.array([0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 7, -7, 12, -12])
STEP_P = np.array([14, 11, 11, 16, 16, 6, 6, 4, 4, 3, 3, 2, 2, 1, 1], float)
STEP_P /= STEP_P.sum()
SLIP_COST = 0.1  # reference similarity lost per slip


def tune(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random tune of ``n`` MIDI pitches around the melody view's centre, int64 (n,)."""
    steps = rng.choice(STEPS, size=n - 1, p=STEP_P)
    p = np.concatenate([[0], np.cumsum(steps)]) + CENTER + int(rng.integers(-6, 7))
    return np.clip(p, 36, 96)


def remembered(line: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``line`` with one to three slips; returns (the new line, number of slips)."""
    p = [int(x) for x in line]
    slips = 0
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(4))
        i = int(rng.integers(1, len(p) - 1))
        if kind == 0:                                   # a wrong note
            p[i] += int(rng.choice([-3, -2, -1, 1, 2, 3]))
        elif kind == 1:                                 # an octave off
            p[i] += 12 if p[i] < CENTER else -12
        elif kind == 2:                                 # a note left out
            del p[i]
        else:                                           # a neighbour or repeated note added
            p.insert(i, p[i] + int(rng.choice([-2, -1, 0, 0, 1, 2])))
        slips += 1
    return np.array(p, np.int64), slips


def melody_pair(rng: np.random.Generator, win_length: int = 10
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """(anchor, positive, reference similarity): uint8 (win_length, 88) windows of a tune
    and of the remembered tune, each key-normalised as the melody view does."""
    line = tune(rng, win_length + 3)  # spare notes: a note left out still fills the window
    slipped, n = remembered(line, rng)
    a = melody_windows(line[:win_length], win_length, win_length)[0][0]
    p = melody_windows(slipped[:win_length], win_length, win_length)[0][0]
    return a, p, 1.0 - SLIP_COST * n
