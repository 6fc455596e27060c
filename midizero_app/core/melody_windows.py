"""Key-normalised windows of melody lines: what the encoder embeds for the melody view.

Each W-note window of a line (:mod:`~midizero_app.core.melody_lines`) is transposed so
that its median pitch sits on :data:`CENTER` (key-invariant) and embedded by the same
encoder as full textures into an index of its own (``Library`` view ``"melody"``).
"""
from __future__ import annotations

import numpy as np

from .frames import N_PITCHES, PITCH_LO, Frames, fold_pitch
from .melody_lines import Line, melody_lines, skyline
from .windows import window_starts

CENTER = 64          # a melody window's median pitch is moved here (E4)
MELODY_VIEW_VERSION = 2  # bump when the lines or windows change: libraries re-embed
LINE_STRIDE = 1_000_000  # a melody-view label's frame = line number · stride + position


def melody_windows(pitches: np.ndarray, hop: int, win_length: int = 10
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Key-normalised one-note-per-row windows of a line (a top line, or a voice's).

    Parameters
    ----------
    pitches : int (F,), the line (one MIDI pitch per note).
    hop : notes between window starts (library 2, query 1).

    Returns
    -------
    windows : uint8 (N, win_length, 88); a line shorter than ``win_length`` gives one
        window padded with empty rows.
    starts : int64 (N,), first note (position in the line) of each window.
    shifts : int64 (N,), semitones added to the window's pitches (its median → CENTER).
    """
    p = np.asarray(pitches, np.int64)
    n = len(p)
    starts = window_starts(n, hop, win_length)
    idx = starts[:, None] + np.arange(win_length)[None, :]
    valid = idx < n
    seg = np.where(valid, p[np.minimum(idx, max(n - 1, 0))] if n else 0, 0)
    # Only a line shorter than a window has padding; all windows of a longer one are full.
    med = (np.median(seg, axis=1) if valid.all() else
           np.array([np.median(seg[0][valid[0]]) if n else CENTER]))
    shifts = CENTER - np.floor(med + 0.5).astype(np.int64)  # not round(): half-to-even
    # would normalise the same tune differently in neighbouring keys
    moved = fold_pitch((seg + shifts[:, None]).clip(-200, 300)).astype(np.int64)
    wins = np.zeros((len(starts), win_length, N_PITCHES), np.uint8)
    r, c = np.nonzero(valid)
    wins[r, c, moved[r, c] - PITCH_LO] = 1
    return wins, starts, shifts


def library_windows(frames: Frames, hop: int, win_length: int = 10
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Melody-view windows of a library piece: every line's key-normalised windows, less
    a voice's windows whose notes the top line holds in a row (line 0 has them).

    Returns windows uint8 (N, win_length, 88) and labels' frames int64 (N,) encoded as
    ``line * LINE_STRIDE + position in the line``.
    """
    top = skyline(frames).astype(np.int64)
    wins, starts = [], []
    for li, line in enumerate(melody_lines(frames)):
        w, st, _ = melody_windows(line.pitches, hop, win_length)
        if line.voice:
            keep = ~on_top_line(line, top, st, win_length)
            w, st = w[keep], st[keep]
        wins.append(w)
        starts.append(li * LINE_STRIDE + st)
    return np.concatenate(wins), np.concatenate(starts)


def on_top_line(line: Line, top: np.ndarray, starts: np.ndarray, win_length: int
                ) -> np.ndarray:
    """bool (N,): the voice window at each start (int (N,), a line position) covers
    ``win_length`` consecutive frames whose top notes (``top``, int (F,)) are the voice's
    notes — a window line 0 has."""
    n = len(line.pitches)
    off = np.zeros(n + 1, np.int64)  # prefix counts of notes that differ from the top line
    np.cumsum(line.pitches != top[line.frames], out=off[1:])
    end = starts + win_length
    full = end <= n
    e = np.minimum(end, n)
    same = off[e] - off[starts] == 0
    gap = line.frames[e - 1] - line.frames[starts]
    return full & same & (gap == win_length - 1)
