"""The drawing as a piano roll: time steps across (16th notes), the 88 piano keys up.

A :class:`Drawing` is what the canvas edits and what the methods read. Images become one
through :func:`image_to_drawing`: thresholded, cropped to what is drawn, stretched over the
chosen number of bars and fitted (keeping its height-to-width ratio up to the full range)
into a pitch range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.frames import N_PITCHES, PITCH_HI, PITCH_LO
from .image import DrawError

STEPS_PER_BEAT = 4   # 16th-note grid
BEATS_PER_BAR = 4    # 4/4
# Where a picture goes by default: E2..E6, where real piano and choir music lives (the 1st
# to 99th percentile of the benchmark corpus's pitches is E2..D6); the extremes sound thin.
IMAGE_RANGE = (40, 88)
MIN_INK = 0.15          # the faintest drawn cell still carries this much darkness


@dataclass
class Drawing:
    """A drawn piano roll.

    Attributes
    ----------
    ink : float32 (T, 88) in [0, 1]. Row = time step (a 16th note), column = pitch − 21;
        0 is empty, anything above 0 is drawn (the value is the stroke's darkness).
    steps_per_beat, beats_per_bar : the grid (4 and 4: 16th notes in 4/4).
    """

    ink: np.ndarray
    steps_per_beat: int = STEPS_PER_BEAT
    beats_per_bar: int = BEATS_PER_BAR

    def __post_init__(self) -> None:
        ink = np.asarray(self.ink, np.float32)
        if ink.ndim != 2 or ink.shape[1] != N_PITCHES:
            raise DrawError(f"a drawing is (steps, {N_PITCHES}); got shape {ink.shape}")
        self.ink = np.clip(np.nan_to_num(ink), 0.0, 1.0)

    @classmethod
    def blank(cls, bars: int = 8) -> "Drawing":
        return cls(np.zeros((bars * STEPS_PER_BEAT * BEATS_PER_BAR, N_PITCHES), np.float32))

    @property
    def n_steps(self) -> int:
        return len(self.ink)

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_beat * self.beats_per_bar

    @property
    def bars(self) -> float:
        return self.n_steps / self.steps_per_bar

    @property
    def mask(self) -> np.ndarray:
        """bool (T, 88): the drawn cells."""
        return self.ink > 0

    def is_empty(self) -> bool:
        return not bool(self.mask.any())

    def resized(self, bars: int) -> "Drawing":
        """The same picture stretched or squeezed in time to ``bars`` bars."""
        t_new = int(bars) * self.steps_per_bar
        if t_new == self.n_steps:
            return self
        src = np.minimum((np.arange(t_new) + 0.5) * self.n_steps / t_new, self.n_steps - 1)
        return Drawing(self.ink[src.astype(np.int64)], self.steps_per_beat, self.beats_per_bar)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256 bins)."""
    hist = np.bincount(np.clip((values.ravel() * 255).astype(np.int64), 0, 255),
                       minlength=256).astype(np.float64)
    p = hist / max(hist.sum(), 1)
    w0 = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(np.argmax(between)) / 255.0


def image_to_drawing(darkness: np.ndarray, bars: int = 8,
                     pitch_range: tuple[int, int] = IMAGE_RANGE,
                     threshold: float | None = None) -> Drawing:
    """Put an image on the piano roll.

    Parameters
    ----------
    darkness : float (H, W) in [0, 1], e.g. from :func:`~midizero_app.draw.image.load_image`.
    bars : length of the roll in 4/4 bars of 16th-note steps (T = 16 · bars).
    pitch_range : lowest and highest MIDI pitch the picture may cover (within 21..108).
    threshold : darkness that counts as ink; None = Otsu's threshold, kept within 0.15..0.6.

    Returns
    -------
    Drawing : the picture, cropped to its ink, stretched over all T steps and, keeping its
        height-to-width ratio (one step as wide as a semitone is tall) up to the full range,
        centred in ``pitch_range``. A cell is drawn when enough of it is ink (relative to how
        thick the strokes are, so thin lines survive the scaling); its value is the mean
        darkness of its ink.
    """
    from PIL import Image

    dark = np.asarray(darkness, np.float32)
    if dark.ndim != 2 or dark.size == 0:
        raise DrawError("the image is empty")
    lo, hi = int(pitch_range[0]), int(pitch_range[1])
    if not PITCH_LO <= lo < hi <= PITCH_HI:
        raise DrawError(f"pitch range {lo}..{hi} must lie within {PITCH_LO}..{PITCH_HI}")
    if bars < 1:
        raise DrawError("the length must be at least one bar")
    thr = float(np.clip(otsu_threshold(dark) if threshold is None else threshold, 0.15, 0.6))
    ink = dark >= thr
    if not ink.any():
        raise DrawError("nothing is drawn in the image (it is blank at this threshold)")
    rows_any, cols_any = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    r0, r1, c0, c1 = rows_any[0], rows_any[-1] + 1, cols_any[0], cols_any[-1] + 1
    ink, dark = ink[r0:r1, c0:c1], dark[r0:r1, c0:c1]
    h, w = ink.shape
    steps = int(bars) * STEPS_PER_BEAT * BEATS_PER_BAR
    n_rows = int(np.clip(round(steps * h / w), 1, hi - lo + 1))

    def box(a: np.ndarray) -> np.ndarray:
        im = Image.fromarray(a.astype(np.float32), "F")
        return np.asarray(im.resize((steps, n_rows), Image.Resampling.BOX), np.float32)

    cover = box(ink)
    weighted = box(np.where(ink, dark, 0.0))
    on = cover[cover > 0]
    cut = max(0.02, 0.4 * float(np.percentile(on, 95))) if on.size else 1.0
    cell = cover >= cut
    shade = np.where(cell, np.clip(weighted / np.maximum(cover, 1e-6), MIN_INK, 1.0), 0.0)
    roll = np.zeros((steps, N_PITCHES), np.float32)
    base = (lo + hi) // 2 - n_rows // 2  # pitch of the picture's bottom row
    base = int(np.clip(base, lo, hi - n_rows + 1))
    # image row 0 is the top: the highest pitch
    roll[:, base - PITCH_LO:base - PITCH_LO + n_rows] = shade[::-1].T
    if not roll.any():
        raise DrawError("nothing is left of the image on the roll (strokes too faint or thin)")
    return Drawing(roll)


def ring(rolls: np.ndarray, mask: np.ndarray, hold: np.ndarray | None = None) -> None:
    """Let what sounds at a step ring on into the next while its row is still drawn (a
    pedalled legato, so note lengths fill the strokes).

    Parameters
    ----------
    rolls : bool or float (..., T, 88), what sounds at each step (edited in place).
    mask : bool (T, 88), the drawn cells.
    hold : bool (T,), whether step t may continue step t − 1 (default: every step).
    """
    for t in range(1, rolls.shape[-2]):
        if hold is None or hold[t]:
            np.maximum(rolls[..., t, :], rolls[..., t - 1, :] * mask[t], out=rolls[..., t, :])
