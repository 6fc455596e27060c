"""Positive pairs: the published window augmentations plus piano-performance edits.

:func:`augment` returns the edited window and ``ref``, the target cosine similarity of the
pair (1.0 minus a cost per edit), as in the published MIDI-Zero code.
"""
from __future__ import annotations

import numpy as np

from .datagen import Window


def _random_frame(rng: np.random.Generator, lo: int, hi: int, k: int) -> list[int]:
    return sorted(rng.choice(np.arange(lo, hi + 1), k, replace=False).tolist())


def augment(window: Window, rng: np.random.Generator, pitch_range=(21, 108),
            piano: bool = True, edits: list[tuple[str, float]] | None = None,
            transcription: bool = False) -> tuple[Window, float]:
    """One augmented copy of ``window`` and its reference similarity.

    Published edits: per frame add 1–3 random notes (p 0.1, −0.03 each) or remove 1–2 notes
    keeping one (p 0.1, −0.03 each); per window insert 1–2 random frames of 1–3 notes
    (p 0.5, −0.1 each) and delete 1–2 frames (p 0.5, −0.1 each); crop or pad (random
    single-note frames) to the length; retry up to 5 times until something changed, else
    force one note change (−0.05).

    ``piano`` adds what separates a performance from its score (−0.05 each): a chord split
    over two frames (spread or arpeggiated, p 0.3), two frames merged (played within τ,
    p 0.2), and a note repeated an octave away (p 0.1 per frame).

    ``transcription`` adds the errors of an audio transcription (models/README.md; −0.05
    each): a soft note missed (p 0.15 per frame, one note kept), a note heard an octave off
    (p 0.05 per frame), a frame's onsets detected twice (the frame repeated, p 0.1) and a
    spurious short note a semitone, an octave or a twelfth from a sounding one (a frame of
    its own, p 0.2).

    ``edits``, when given, receives ``(edit, cost)`` for every charged edit of the returned
    copy, so that ``ref == 1 - sum(costs)``. A note already in its frame is not added (nor
    charged), and frames are inserted within the first ``len(window)`` (none cropped unseen).
    """
    lo, hi = pitch_range
    w_len = len(window)
    log: list[tuple[str, float]] = []
    ref = 1.0

    def charge(edit: str, cost: float) -> None:
        nonlocal ref
        ref -= cost
        log.append((edit, cost))

    for _ in range(5):
        ref = 1.0
        log.clear()
        out = []
        for frame in window:
            f = list(frame)
            if rng.random() < 0.1:
                for _ in range(rng.integers(1, 4)):
                    p = int(rng.integers(lo, hi + 1))
                    if p not in f:
                        f.append(p)
                        charge("add_note", 0.03)
            if rng.random() < 0.1 and len(f) > 1:
                for _ in range(min(int(rng.integers(1, 3)), len(f) - 1)):
                    f.pop(int(rng.integers(len(f))))
                    charge("remove_note", 0.03)
            if piano and rng.random() < 0.1:
                p = f[int(rng.integers(len(f)))] + (12 if rng.random() < 0.5 else -12)
                if lo <= p <= hi and p not in f:
                    f.append(p)
                    charge("octave", 0.05)
            if transcription:
                _transcription_frame_errors(f, rng, lo, hi, charge)
            out.append(sorted(set(f)))
        if piano and rng.random() < 0.3:
            multi = [i for i, f in enumerate(out) if len(f) > 1]
            if multi:
                i = multi[int(rng.integers(len(multi)))]
                f = out[i]
                cut = int(rng.integers(1, len(f)))
                low_first = rng.random() < 0.7  # spreads usually start from the bass
                a, b = (f[:cut], f[cut:]) if low_first else (f[len(f) - cut:], f[:len(f) - cut])
                out[i:i + 1] = [a, b]
                charge("split_chord", 0.05)
        if piano and rng.random() < 0.2 and len(out) > 1:
            i = int(rng.integers(len(out) - 1))
            out[i:i + 2] = [sorted(set(out[i]) | set(out[i + 1]))]
            charge("merge_frames", 0.05)
        if transcription:
            _transcription_window_errors(out, rng, lo, hi, w_len, charge)
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 3)):
                pos = int(rng.integers(min(len(out), w_len - 1) + 1))
                out.insert(pos, _random_frame(rng, lo, hi, int(rng.integers(1, 4))))
                charge("insert_frame", 0.1)
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 3)):
                if len(out) > 1:
                    out.pop(int(rng.integers(len(out))))
                    charge("delete_frame", 0.1)
        out = out[:w_len]
        while len(out) < w_len:
            out.append([int(rng.integers(lo, hi + 1))])
        if out != [sorted(set(f)) for f in window]:
            if edits is not None:
                edits.extend(log)
            return out, ref
    out = [list(f) for f in window]
    i = int(rng.integers(w_len))
    j = int(rng.integers(len(out[i])))
    new = int(rng.integers(lo, hi + 1))
    while new in out[i]:
        new = int(rng.integers(lo, hi + 1))
    out[i][j] = new
    out[i].sort()
    if edits is not None:
        edits.append(("force_change", 0.05))
    return out, 0.95


def _transcription_frame_errors(f: list[int], rng: np.random.Generator, lo: int, hi: int,
                                charge) -> None:
    """A missed soft note, or a note an octave off, in one frame (edited in place)."""
    if rng.random() < 0.15 and len(f) > 1:
        f.pop(int(rng.integers(len(f))))
        charge("missed_note", 0.05)
    if rng.random() < 0.05:
        i = int(rng.integers(len(f)))
        p = f[i] + (12 if rng.random() < 0.5 else -12)
        if lo <= p <= hi and p not in f:
            f[i] = p
            charge("octave_error", 0.05)


def _transcription_window_errors(out: list[list[int]], rng: np.random.Generator, lo: int,
                                 hi: int, w_len: int, charge) -> None:
    """Onsets detected twice (a frame repeated) and a spurious short note (a frame of its
    own, near a sounding pitch), within the first ``w_len`` frames."""
    if rng.random() < 0.1:
        i = int(rng.integers(min(len(out), w_len)))
        out.insert(i + 1, list(out[i]))
        charge("double_onset", 0.05)
    if rng.random() < 0.2:
        i = int(rng.integers(min(len(out), w_len)))
        p = out[i][int(rng.integers(len(out[i])))] + int(rng.choice([-1, 1, 12, 19]))
        if lo <= p <= hi:
            out.insert(i + 1, [p])
            charge("spurious_note", 0.05)
