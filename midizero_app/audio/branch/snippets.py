"""Aligned training and test pairs for the audio branch, cut from rendered pieces.

A rendering is a log spectrogram ``spec`` (T, 92) at :data:`FPS` frames/s and the notes
that sound in it, ``notes`` (n, 3): onset s, offset s, MIDI pitch, in the audio's time.
Two kinds of pairs are cut from it:

* **Reproduction** (:func:`reproduce_pairs`): a 42-frame (2.1 s) audio snippet centred on a
  chord onset and the piano-roll snippet of the same 42 frames (onset frames 1, held
  frames 0.5), as in the published system's MIDI variant.
* **Into the app's space** (:func:`teacher_pairs`): for every 10-frame window of the app's
  chord frames (:func:`midizero_app.core.frames.group_performance`,
  :func:`midizero_app.core.windows.make_windows`: the windows the bundled encoder embeds),
  the audio that plays it. How audio maps to a window is the ``mapping``:

  - ``"fixed"``: 42 frames from just before the window's first onset (a fixed 2.1 s span,
    whatever the window's own length);
  - ``"onsets"``: from just before the first onset to just after the window's last onset,
    resampled to 42 frames (the span the window's notes take, tempo-normalised).

  At search time a snippet starts at each onset found in the audio
  (:func:`detect_onsets`); with ``"onsets"`` it ends at the tenth.

  Why ``"onsets"`` is the default for the app's space (:func:`span_stats`,
  :func:`onset_scores`): a 10-frame window lasts from 0.77 s (10th percentile) to 2.46 s
  (90th; median 1.18 s) in the ASAP test-half performances and from 1.2 s to 7.1 s (median
  2.7 s) in the rendered training corpus, so a fixed 2.1 s snippet holds about twice the
  window's music in a typical performance and a fraction of it in slow music, while the
  onset span holds the window's own notes at any tempo. The onsets it needs are found in
  the rendered corpus (room, noise) with precision 0.85–0.99 and recall 0.97–0.99 within
  50 ms, in rendered ASAP excerpts (TimGM6mb, room, 20 dB noise) with precision 0.91 and
  recall 0.73: at 20 frames/s chords closer than two frames merge, so in dense piano
  music ten found onsets span about 1.3 windows' worth of chords.
  Starting each snippet at a found onset also numbers the query's windows like the
  library's frames, which offset-consistent voting needs.

Snippets are cut on demand from the spectrograms (:class:`SnippetSource`), so a training
set holds one copy of each spectrogram rather than one per overlapping snippet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.frames import N_PITCHES, PITCH_LO, Frames, group_performance
from ...core.scores import Notes
from ...core.windows import WIN_LENGTH, make_windows

FPS = 20.0
"""Spectrogram frames per second."""
SNIPPET_FRAMES = 42
"""Frames per snippet (2.1 s at 20 frames/s)."""
SPEC_BINS = 92
LEAD = 0.1
"""Seconds of audio kept before a window's first onset (attacks smear by a frame)."""
TAIL = 0.3
"""Seconds of audio kept after a window's last onset with ``mapping="onsets"``."""
MAPPINGS = ("fixed", "onsets")


def performance_frames(notes: np.ndarray) -> Frames:
    """The app's chord frames of rendered notes: ``notes`` float (n, 3) onset s, offset s,
    MIDI pitch → :class:`~midizero_app.core.frames.Frames` (threshold grouping, τ 50 ms)."""
    notes = np.asarray(notes, np.float64).reshape(-1, 3)
    return group_performance(Notes(onset=notes[:, 0], pitch=np.rint(notes[:, 2])))


def piano_roll(notes: np.ndarray, n_frames: int, fps: float = FPS) -> np.ndarray:
    """Piano roll of ``notes`` (n, 3: onset s, offset s, MIDI pitch) at ``fps``: float32
    (n_frames, 88), 1 in a note's onset frame, 0.5 while it is held, rows MIDI 21..108
    (pitches outside folded in by octaves)."""
    from ...core.frames import fold_pitch

    roll = np.zeros((n_frames, N_PITCHES), np.float32)
    notes = np.asarray(notes, np.float64).reshape(-1, 3)
    if not len(notes):
        return roll
    p = fold_pitch(np.rint(notes[:, 2]).astype(np.int64)).astype(np.int64) - PITCH_LO
    on = np.clip(np.rint(notes[:, 0] * fps).astype(np.int64), 0, n_frames)
    off = np.clip(np.rint(notes[:, 1] * fps).astype(np.int64), 0, n_frames)
    off = np.maximum(off, on + 1)
    for a, b, k in zip(on, off, p):
        if a < n_frames:
            roll[a:b, k] = np.maximum(roll[a:b, k], 0.5)
    ok = on < n_frames
    roll[on[ok], p[ok]] = 1.0
    return roll


def cut(spec: np.ndarray, start: np.ndarray, frames: int = SNIPPET_FRAMES) -> np.ndarray:
    """Snippets of ``frames`` rows starting at rows ``start`` (int (N,), may run past either
    end: zero rows there) from ``spec`` (T, D) → float32 (N, frames, D)."""
    start = np.asarray(start, np.int64)
    idx = start[:, None] + np.arange(frames)[None, :]
    ok = (idx >= 0) & (idx < len(spec))
    out = np.asarray(spec)[np.clip(idx, 0, max(len(spec) - 1, 0))].astype(np.float32)
    out[~ok] = 0.0
    return out


def cut_spans(spec: np.ndarray, t0: np.ndarray, t1: np.ndarray, frames: int = SNIPPET_FRAMES,
              fps: float = FPS) -> np.ndarray:
    """Snippets of ``spec`` (T, D) spanning ``t0``..``t1`` seconds (float (N,)), each
    resampled to ``frames`` rows by linear interpolation along time → float32
    (N, frames, D); rows outside the spectrogram are zero."""
    spec = np.asarray(spec)
    t0, t1 = np.asarray(t0, np.float64), np.asarray(t1, np.float64)
    pos = (t0[:, None] + (t1 - t0)[:, None] * (np.arange(frames) / (frames - 1))[None, :]) * fps
    lo = np.floor(pos).astype(np.int64)
    w = (pos - lo).astype(np.float32)[..., None]
    n = len(spec)

    def rows(i):
        r = spec[np.clip(i, 0, max(n - 1, 0))].astype(np.float32)
        r[(i < 0) | (i >= n)] = 0.0
        return r

    return rows(lo) * (1 - w) + rows(lo + 1) * w


def detect_onsets(spec: np.ndarray, fps: float = FPS, threshold: float = 0.3,
                  min_gap: float = 0.05) -> np.ndarray:
    """Onset times (float64 seconds, ascending) in a log spectrogram ``spec`` (T, 92).

    Spectral flux (the sum of positive band differences between consecutive frames), less
    its 1 s moving median, peak-picked: a frame is an onset where the flux is a local
    maximum over ±1 frame, above ``threshold`` × the flux's mean absolute value, and at
    least ``min_gap`` s after the previous onset.
    """
    s = np.asarray(spec, np.float32)
    if len(s) < 3:
        return np.zeros(0)
    flux = np.r_[0.0, np.maximum(np.diff(s, axis=0), 0).sum(1)]
    k = max(1, int(fps / 2))
    pad = np.pad(flux, k, mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * k + 1), axis=1)
    odf = np.maximum(flux - med, 0)
    scale = float(np.mean(np.abs(odf))) or 1.0
    p1 = np.pad(odf, 1, mode="constant")
    local = np.lib.stride_tricks.sliding_window_view(p1, 3).max(1)
    cand = np.flatnonzero((odf >= local) & (odf > threshold * scale))
    out, last = [], -1e9
    for i in cand:
        t = i / fps
        if t - last >= min_gap:
            out.append(t)
            last = t
    # frame t spans t/fps .. t/fps + 93 ms, so a note shows first in a frame that begins
    # up to two frames before it: the flux peaks about half a frame before the onset
    return np.asarray(out, np.float64) + 0.5 / fps


@dataclass
class Pairs:
    """Pairs cut from one rendering.

    Attributes
    ----------
    audio : float32 (N, 42, 92) spectrogram snippets.
    other : float32 (N, 42, 88) piano-roll snippets (reproduction) or uint8 (N, 10, 88)
        pitch-matrix windows (teacher).
    time : float64 (N,), seconds of each snippet's anchor (onset) in the rendering.
    """

    audio: np.ndarray
    other: np.ndarray
    time: np.ndarray


def reproduce_pairs(spec: np.ndarray, notes: np.ndarray, frames: int = SNIPPET_FRAMES,
                    fps: float = FPS) -> Pairs:
    """Audio and piano-roll snippets of the same ``frames`` frames, centred on each chord
    onset of ``notes`` (n, 3) in ``spec`` (T, 92)."""
    fr = performance_frames(notes)
    roll = piano_roll(notes, len(spec), fps)
    start = np.rint(fr.onset * fps).astype(np.int64) - frames // 2
    start = start[(start + frames // 2) < len(spec)]
    return Pairs(cut(spec, start, frames), cut(roll, start, frames),
                 (start + frames // 2) / fps)


def window_spans(frames: Frames, win_length: int = WIN_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Each query window's (hop 1) first and last onset, seconds: two float64 (N,)."""
    _, starts = make_windows(frames, 1, win_length)
    last = np.minimum(starts + win_length - 1, len(frames) - 1)
    return frames.onset[starts], frames.onset[last]


def audio_for_windows(spec: np.ndarray, t_first: np.ndarray, t_last: np.ndarray,
                      mapping: str, frames: int = SNIPPET_FRAMES, fps: float = FPS
                      ) -> np.ndarray:
    """The audio snippets (float32 (N, frames, 92)) of windows whose first and last onsets
    are ``t_first`` and ``t_last`` (seconds, (N,)) under ``mapping``."""
    if mapping == "fixed":
        return cut(spec, np.rint((np.asarray(t_first) - LEAD) * fps).astype(np.int64), frames)
    if mapping == "onsets":
        return cut_spans(spec, np.asarray(t_first) - LEAD, np.asarray(t_last) + TAIL, frames,
                         fps)
    raise ValueError(f"unknown mapping {mapping!r} (fixed or onsets)")


def teacher_pairs(spec: np.ndarray, notes: np.ndarray, mapping: str = "fixed",
                  frames: int = SNIPPET_FRAMES, fps: float = FPS) -> Pairs:
    """Each 10-frame pitch-matrix window of ``notes`` (n, 3) (the app's query windows, hop
    1) with the audio that plays it in ``spec`` (T, 92) under ``mapping``."""
    fr = performance_frames(notes)
    windows, starts = make_windows(fr, 1)
    t_first, t_last = window_spans(fr)
    keep = t_first * fps < len(spec)
    return Pairs(audio_for_windows(spec, t_first[keep], t_last[keep], mapping, frames, fps),
                 windows[keep], t_first[keep])


def query_snippets(spec: np.ndarray, mapping: str, onsets: np.ndarray | None = None,
                   frames: int = SNIPPET_FRAMES, fps: float = FPS,
                   win_length: int = WIN_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Search-time snippets of a recording's spectrogram ``spec`` (T, 92): one starting at
    each onset (``onsets`` seconds, default :func:`detect_onsets`), ending — with
    ``"onsets"`` — at the ``win_length``-th onset from it (the last ones at the final onset).

    Returns the snippets float32 (N, frames, 92) and their onset numbers int64 (N,) (the
    query frame of each window, for offset-consistent voting).
    """
    t = detect_onsets(spec, fps) if onsets is None else np.asarray(onsets, np.float64)
    if not len(t):
        return np.zeros((0, frames, spec.shape[1]), np.float32), np.zeros(0, np.int64)
    idx = np.arange(len(t))
    last = t[np.minimum(idx + win_length - 1, len(t) - 1)]
    return audio_for_windows(spec, t, last, mapping, frames, fps), idx


def span_stats(notes_list, win_length: int = WIN_LENGTH) -> dict:
    """How long the app's 10-frame windows last in these renderings: seconds from first to
    last onset over all query windows of every ``notes`` (n, 3) in ``notes_list``
    (percentiles 10/25/50/75/90, and the share under 2.1 s − :data:`LEAD`)."""
    spans = []
    for notes in notes_list:
        a, b = window_spans(performance_frames(notes), win_length)
        spans.append(b - a)
    s = np.concatenate(spans) if spans else np.zeros(0)
    if not len(s):
        return {"windows": 0}
    q = np.percentile(s, [10, 25, 50, 75, 90])
    return {"windows": int(len(s)), **{f"p{p}": float(v) for p, v in
                                       zip((10, 25, 50, 75, 90), q)},
            "within_snippet": float(np.mean(s <= SNIPPET_FRAMES / FPS - LEAD))}


def onset_scores(spec: np.ndarray, notes: np.ndarray, tol: float = 0.05,
                 fps: float = FPS) -> tuple[int, int, int]:
    """How :func:`detect_onsets` finds the chord onsets of ``notes``: (hits, detected,
    true) with a detection counted once within ``tol`` s of a true chord onset."""
    true = performance_frames(notes).onset
    det = detect_onsets(spec, fps)
    used = np.zeros(len(det), bool)
    hits = 0
    for t in true:
        j = np.flatnonzero(~used & (np.abs(det - t) <= tol))
        if len(j):
            used[j[np.argmin(np.abs(det[j] - t))]] = True
            hits += 1
    return hits, len(det), len(true)
