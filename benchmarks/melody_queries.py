"""Melody queries shared by the melody benchmarks: themes from the ASAP scores, played
melodies from the performances, how people play a tune from memory, and a held-out
"not in your library" run.

A theme is the top line (highest note of each score frame) of consecutive notes from a
random downbeat, in the original or a random key (±1..6 semitones), exact or as
remembered (:func:`remembered`), timed as :data:`RHYTHM` says. Graded by piece.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.common import CACHE, copy_library, grade_key, make_queries
from midizero_app.core.frames import Frames
from midizero_app.core.library import Library
from midizero_app.core.melody import skyline
from midizero_app.core.melody_confidence import confidence_features
from midizero_app.core.melody_search import search_melody, tune_evidence

LENGTHS = (8, 12, 16, 24)


@dataclass
class Theme:
    key: str            # grading key of the true piece
    pitches: np.ndarray  # the query line
    shift: int          # semitones added to the original
    onsets: np.ndarray | None = None  # seconds of each note; None: one every 0.3 s
    score_onsets: np.ndarray | None = None  # seconds in the score (exact themes: each note's)


# How themes are timed (melody_bench --rhythm): "score", the score's rhythm at a tempo of the
# player's own, with human timing noise (more from memory); "none", one note every 0.3 s
# (the rhythm unknown: a tune typed in even notes, or sung to no rhythm).
RHYTHM = "score"
TIMING_SD = {"exact": 0.03, "remembered": 0.1}  # log-IOI noise per note


def line_frames(pitches: np.ndarray, onsets: np.ndarray | None = None, step: float = 0.3
                ) -> Frames:
    """A melody as frames: the notes at ``onsets`` (seconds), else one every ``step``."""
    on = np.arange(len(pitches)) * step if onsets is None else onsets
    return Frames.from_chords([[int(p)] for p in pitches], onsets=on)


def remembered(line: np.ndarray, onsets: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """A tune as people play it from memory: wrong notes (by 1–3 semitones) at one in 16,
    and one slip of a random kind — a repeated note dropped or added, one or two notes an
    octave off, or an ornament (a neighbour note) added or a step-wise note left out.
    Returns its pitches and onsets: a dropped note's time goes to the note before, an
    added repeat takes the second half of its note, an added neighbour the second half
    of the note before it.

    With this form the n-gram baseline lands near the reference figures set for the
    remembered form (0.18 / 0.56 / 0.79 / 0.95 at 8 / 12 / 16 / 24 notes, ASAP scores
    alone), so the cells are comparable to it."""
    p = [int(x) for x in line]
    t = [float(x) for x in onsets]
    gap = float(np.median(np.diff(t))) if len(t) > 1 else 0.3

    def half_after(i: int) -> float:  # midway through note i
        return t[i] + 0.5 * ((t[i + 1] if i + 1 < len(t) else t[i] + gap) - t[i])

    for i in range(len(p)):
        if rng.random() < 1 / 16:
            p[i] += int(rng.choice([-3, -2, -1, 1, 2, 3]))
    kind = rng.integers(3)
    if kind == 0:
        reps = [i for i in range(1, len(p)) if p[i] == p[i - 1]]
        if reps and rng.random() < 0.5:
            i = int(rng.choice(reps))
            del p[i], t[i]
        else:
            i = int(rng.integers(len(p)))
            p.insert(i, p[i])
            t.insert(i + 1, half_after(i))
    elif kind == 1:
        for i in rng.choice(len(p), size=int(rng.integers(1, 3)), replace=False):
            p[int(i)] += 12 if p[int(i)] < 72 else -12
    else:
        steps = [i for i in range(1, len(p) - 1) if abs(p[i] - p[i - 1]) <= 2]
        if steps and rng.random() < 0.5:
            i = int(rng.choice(steps))
            del p[i], t[i]
        else:
            i = int(rng.integers(1, len(p)))
            p.insert(i, p[i] + int(rng.choice([-2, -1, 1, 2])))
            t.insert(i, half_after(i - 1))
    return np.array(p, np.int64), np.array(t)


def played_rhythm(onsets: np.ndarray, form: str, rng: np.random.Generator) -> np.ndarray:
    """The score's onsets as a player times them: from 0, at a tempo of their own (the
    median note 0.25–0.5 s, the shortest tenth no faster than 0.1 s), each inter-onset
    interval off by :data:`TIMING_SD` (log units)."""
    ioi = np.diff(np.asarray(onsets, np.float64))
    if not len(ioi):
        return np.zeros(len(onsets))
    ioi = np.maximum(ioi, 1e-3)
    scale = max(rng.uniform(0.25, 0.5) / np.median(ioi), 0.1 / np.percentile(ioi, 10))
    ioi = ioi * scale * np.exp(rng.normal(0.0, TIMING_SD[form], len(ioi)))
    return np.concatenate([[0.0], np.cumsum(ioi)])


def asap_lines(lib: Library) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per grading key: (top line, downbeat frame indices, onsets in seconds) of each ASAP
    score version."""
    out: dict[str, list] = {}
    for p in lib.pieces():
        if p["status"] == "failed" or not p["path"].endswith("midi_score.mid"):
            continue
        f = lib.frames_of(p["id"])
        beat = np.asarray(f.beat)
        downs = np.flatnonzero(np.isclose(beat, 1.0))
        out.setdefault(grade_key(p["path"]), []).append(
            (skyline(f).astype(np.int64), downs, np.asarray(f.onset, np.float64)))
    return out


def make_themes(lines, n: int, length: int, seed: int, key_shift: bool, form: str,
                openings: bool = False, keys: set[str] | None = None) -> list[Theme]:
    """Seeded themes (:class:`Theme`); their pitches do not depend on :data:`RHYTHM` (the
    timing has a random stream of its own)."""
    rng = np.random.default_rng(seed)
    timing = np.random.default_rng([seed, 1])
    names = sorted(k for k in lines if keys is None or k in keys)
    out = []
    todo = names if openings else range(n)
    for item in todo:
        name = item if openings else names[int(rng.integers(len(names)))]
        line, downs, onsets = lines[name][0] if openings else \
            lines[name][int(rng.integers(len(lines[name])))]
        if len(line) < length + 1:
            continue
        ok = downs[downs <= len(line) - length]
        start = 0 if openings or not len(ok) else int(ok[int(rng.integers(len(ok)))])
        q, t = line[start:start + length].copy(), onsets[start:start + length]
        if form == "remembered":
            q, t = remembered(q, t, rng)
        shift = int(rng.choice([s for s in range(-6, 7) if s])) if key_shift else 0
        out.append(Theme(name, q + shift, shift,
                         played_rhythm(t, form, timing) if RHYTHM == "score" else None, t))
    return out


def grade(ranked: list[str], key: str) -> int | None:
    return ranked.index(key) + 1 if key in ranked else None


def summarise(ranks: list[int | None], flags: list[bool] | None = None) -> dict:
    r = np.array([x or 0 for x in ranks])
    out = {"top1": float(np.mean(r == 1)), "mrr": float(np.mean([1 / x if x else 0 for x in ranks]))}
    if flags is not None:
        out["top1_unflagged"] = float(np.mean((r == 1) & ~np.array(flags)))
    return out


SOURCES = ("learned", "grams")  # melody candidate sources (melody_bench --sources: ablation)


def melody_search(lib: Library, theme: Theme, played: Frames | None = None
                  ) -> tuple[list, bool]:
    """What ``search_library(..., melody=True)`` ranks: (candidates, not_in_library).
    ``played``: the notes at their played times (else the theme's)."""
    return search_melody(lib, line_frames(theme.pitches, theme.onsets) if played is None
                         else played, sources=SOURCES)


def run_themes(lib: Library, themes: list[Theme], base=None,
               played: list[Frames] | None = None) -> dict:
    """Search each theme (:func:`melody_search`) and grade its top 10: Top-1, Top-1
    unflagged, MRR, the share of right answers with the right key (``shift_ok``), the
    median ms; ``base`` (an object with ``search(pitches) -> ranked keys``, e.g. the
    interval n-gram baseline) is graded beside it. ``played``: each theme's notes at their
    played times."""
    ranks, flags, base_ranks, shift_ok, times = [], [], [], [], []
    for i, t in enumerate(themes):
        t0 = time.perf_counter()
        cands, flag = melody_search(lib, t, None if played is None else played[i])
        times.append((time.perf_counter() - t0) * 1000)
        keys = [grade_key(lib.piece(c.piece)["path"]) for c in cands[:10]]
        ranks.append(grade(keys, t.key))
        flags.append(flag)
        if ranks[-1] == 1:
            shift_ok.append((cands[0].transpose + t.shift) % 12 == 0)
        if base is not None:
            base_ranks.append(grade(base.search(t.pitches), t.key))
    out = summarise(ranks, flags)
    out["shift_ok"] = float(np.mean(shift_ok)) if shift_ok else float("nan")
    out["ms_median"] = float(np.median(times))
    if base is not None:
        out["base"] = summarise(base_ranks)
    return out


def played_queries(perfs, length: float, n: int, seed: int, rng: np.random.Generator
                   ) -> list[tuple[Theme, Frames]]:
    """``n`` played melodies: the top note of each frame of seeded ``length``-s real
    performance excerpts, in a random key (``rng``): (theme, the notes at their played
    times as frames)."""
    out = []
    for q in make_queries(perfs, length, n, seed + int(length)):
        shift = int(rng.choice([s for s in range(-6, 7) if s]))
        theme = Theme(q.key, skyline(q.frames).astype(np.int64) + shift, shift)
        out.append((theme, Frames.from_chords([[int(p)] for p in theme.pitches],
                                              onsets=np.asarray(q.frames.onset))))
    return out


def holdout(lib: Library, lines, n: int, seed: int, frac: float = 0.2, calibrate: bool = False):
    """Remove ``frac`` of the ASAP pieces from a copy of the library and search ``n`` themes
    a cell from them (strangers) and from the rest, random key. Returns the table rows
    and, with ``calibrate``, one row (features, right, held out, form, length, piece) for
    every theme that got an answer: what scripts/fit_melody_confidence.py fits on."""
    copy = CACHE / "melody-holdout-library"
    copy_library(lib.path, copy)
    hl = Library(copy)
    keys = sorted(lines)
    rng = np.random.default_rng(seed)
    out_keys = set(rng.choice(keys, int(round(frac * len(keys))), replace=False).tolist())
    hl.remove(*[p["path"] for p in hl.pieces() if p["path"].endswith("midi_score.mid")
                and grade_key(p["path"]) in out_keys])
    rows = ["| held out (20 %) | notes | form | rejected (out) | Top-1 unflagged (in) | Top-1 (in) |",
            "|---|---|---|---|---|---|"]
    feats = []
    for length in LENGTHS:
        for form in ("exact", "remembered"):
            q_out = make_themes(lines, n, length, seed + length, True, form, keys=out_keys)
            q_in = make_themes(lines, n, length, seed + length + 50, True, form,
                               keys=set(keys) - out_keys)
            rej, ranks, flags = [], [], []
            for t, inside in [(t, False) for t in q_out] + [(t, True) for t in q_in]:
                cands, flag = melody_search(hl, t)
                keys_ = [grade_key(hl.piece(c.piece)["path"]) for c in cands[:10]]
                hit = grade(keys_, t.key) if inside else None
                if inside:
                    ranks.append(hit)
                    flags.append(flag)
                else:
                    rej.append(flag)
                if calibrate and cands:
                    line, _, match, rhythm = tune_evidence(line_frames(t.pitches, t.onsets))
                    x = confidence_features(cands, len(line), match, rhythm)
                    feats.append((x, int(hit == 1), not inside, form, length, t.key))
            s = summarise(ranks, flags)
            rows.append(f"| | {length} | {form} | {np.mean(rej):.3f} | {s['top1_unflagged']:.3f} |"
                        f" {s['top1']:.3f} |")
            print(rows[-1], flush=True)
    hl.close()
    shutil.rmtree(copy, ignore_errors=True)
    return rows, feats
