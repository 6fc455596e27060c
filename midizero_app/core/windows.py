"""Frames → W × 88 binary pitch matrices (DESIGN §1.2)."""
from __future__ import annotations

import numpy as np

from .frames import N_PITCHES, PITCH_LO, Frames

WIN_LENGTH = 10
LIBRARY_HOP = 2  # library windows start every 2nd frame (as published)
QUERY_HOP = 1    # query windows start at every frame, so half of them align exactly


def frame_matrix(frames: Frames) -> np.ndarray:
    """Binary roll of the frames: uint8 (F, 88), column = pitch − 21."""
    m = np.zeros((len(frames), N_PITCHES), np.uint8)
    m[frames.frame_index(), frames.pitches.astype(np.int64) - PITCH_LO] = 1
    return m


def window_starts(n_frames: int, hop: int, win_length: int = WIN_LENGTH) -> np.ndarray:
    """First frame of each window (int64). Short inputs give one window at frame 0.

    The last window is kept flush with the end, so the final frames are always covered.
    """
    if n_frames <= win_length:
        return np.zeros(1, np.int64)
    starts = np.arange(0, n_frames - win_length + 1, hop, dtype=np.int64)
    if starts[-1] != n_frames - win_length:
        starts = np.append(starts, n_frames - win_length)
    return starts


def make_windows(frames: Frames | np.ndarray, hop: int, win_length: int = WIN_LENGTH
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over the frames.

    Parameters
    ----------
    frames : Frames, or a frame matrix (F, 88) from :func:`frame_matrix`.
    hop : frames between window starts (library 2, query 1).

    Returns
    -------
    windows : uint8 (N, win_length, 88), zero rows pad inputs shorter than ``win_length``.
    starts : int64 (N,), first frame of each window.
    """
    roll = frame_matrix(frames) if isinstance(frames, Frames) else frames
    if len(roll) < win_length:
        roll = np.concatenate([roll, np.zeros((win_length - len(roll), N_PITCHES), np.uint8)])
    starts = window_starts(len(roll), hop, win_length)
    view = np.lib.stride_tricks.sliding_window_view(roll, win_length, axis=0)  # (F-W+1, 88, W)
    return np.ascontiguousarray(view[starts].transpose(0, 2, 1)), starts
