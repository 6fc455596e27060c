"""Model activations → note events (basic-pitch's polyphonic note creation).

A port of ``basic_pitch.note_creation.output_to_notes_polyphonic`` (Apache-2.0, Copyright
Spotify AB) without its module-level imports of librosa, resampy, mir_eval and pretty_midi,
so the run time needs only NumPy. The algorithm is unchanged: onset peaks above
a threshold start notes that last while the frame activation stays above another; the
optional "melodia trick" then turns the strongest remaining frame energy into notes too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIDI_OFFSET = 21  # activation column 0 is A0
N_KEYS = 88


@dataclass(frozen=True)
class NoteParams:
    """Note-creation thresholds, chosen on the audio benchmark's dev half (ASAP rendered
    with FluidR3, room, 20 dB SNR; benchmarks/RESULTS.md). Against basic-pitch's defaults
    (onset 0.5, minimum length 11 frames = 128 ms, melodia trick on): the shorter minimum
    length keeps the short notes of fast passages (10 s excerpts: Top-1 0.82 → 0.97, onset
    F1 0.70 → 0.80); the higher onset threshold drops weak spurious onsets (F1 → 0.83); the
    melodia trick left F1 unchanged at 45× the time (its loop is quadratic in the length).

    Attributes
    ----------
    onset_thresh : minimum onset activation peak that starts a note (0..1).
    frame_thresh : a note lasts while its frame activation stays at or above this (0..1).
    min_note_len : notes of this many frames (11.6 ms each) or fewer are dropped.
    infer_onsets : add onsets where the frame activation jumps.
    melodia_trick : also make notes from strong frame energy without an onset.
    energy_tol : frames below ``frame_thresh`` tolerated inside a note.
    """

    onset_thresh: float = 0.6
    frame_thresh: float = 0.3
    min_note_len: int = 4
    infer_onsets: bool = True
    melodia_trick: bool = False
    energy_tol: int = 11


def _inferred_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """Max of the predicted onsets and the rescaled positive frame differences."""
    diffs = []
    for n in range(1, n_diff + 1):
        padded = np.concatenate([np.zeros((n, frames.shape[1]), frames.dtype), frames])
        diffs.append(padded[n:] - padded[:-n])
    diff = np.min(diffs, axis=0)
    diff[diff < 0] = 0
    diff[:n_diff] = 0
    peak = diff.max()
    if peak > 0:
        diff = onsets.max() * diff / peak
    return np.maximum(onsets, diff)


def _clear(energy: np.ndarray, a: int, b: int, k: int) -> None:
    energy[a:b, max(k - 1, 0):min(k + 2, N_KEYS)] = 0


def notes_from_activations(frames: np.ndarray, onsets: np.ndarray,
                           params: NoteParams = NoteParams()) -> np.ndarray:
    """Decode activations into note events.

    Parameters
    ----------
    frames, onsets : float32 (T, 88), the model's note and onset activations per frame.
    params : thresholds.

    Returns
    -------
    float64 (N, 4): start frame, end frame (exclusive), MIDI pitch, mean activation.
    Rows are in no particular order.
    """
    n_frames = frames.shape[0]
    out: list[tuple[int, int, int, float]] = []
    if n_frames < 3:
        return np.zeros((0, 4))
    onsets = _inferred_onsets(onsets, frames) if params.infer_onsets else onsets
    # strict local maxima in time (scipy.signal.argrelmax, axis 0) above the threshold
    is_onset = np.zeros(onsets.shape, bool)
    mid = onsets[1:-1]
    is_onset[1:-1] = (mid > onsets[:-2]) & (mid > onsets[2:]) & (mid >= params.onset_thresh)
    t_idx, k_idx = np.nonzero(is_onset)
    energy = frames.astype(np.float32, copy=True)
    for start, k in zip(t_idx[::-1].tolist(), k_idx[::-1].tolist()):  # backwards in time
        if start >= n_frames - 1:
            continue
        i, run = start + 1, 0  # run: frames since the energy dropped below threshold
        while i < n_frames - 1 and run < params.energy_tol:
            run = run + 1 if energy[i, k] < params.frame_thresh else 0
            i += 1
        i -= run
        if i - start <= params.min_note_len:
            continue
        _clear(energy, start, i, k)
        out.append((start, i, k + MIDI_OFFSET, float(frames[start:i, k].mean())))
    if params.melodia_trick:
        out += _melodia(frames, energy, params)
    return np.asarray(out, np.float64).reshape(-1, 4)


def _melodia(frames: np.ndarray, energy: np.ndarray, params: NoteParams
             ) -> list[tuple[int, int, int, float]]:
    """Notes grown forwards and backwards from the strongest remaining frame energy."""
    n_frames, thresh, tol = energy.shape[0], params.frame_thresh, params.energy_tol
    out = []
    while True:
        flat = int(np.argmax(energy))
        mid, k = divmod(flat, N_KEYS)
        if energy[mid, k] <= thresh:
            return out
        energy[mid, k] = 0
        i, run = mid + 1, 0
        while i < n_frames - 1 and run < tol:
            run = run + 1 if energy[i, k] < thresh else 0
            _clear(energy, i, i + 1, k)
            i += 1
        end = i - 1 - run
        i, run = mid - 1, 0
        while i > 0 and run < tol:
            run = run + 1 if energy[i, k] < thresh else 0
            _clear(energy, i, i + 1, k)
            i -= 1
        start = i + 1 + run
        if end - start <= params.min_note_len:
            continue
        out.append((start, end, k + MIDI_OFFSET, float(frames[start:end, k].mean())))
