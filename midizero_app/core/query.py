"""A query (file, notes or frames) → the search result of DESIGN §4.2."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import MidizeroError
from .frames import DEFAULT_TAU, PITCH_HI, PITCH_LO, Frames, to_frames
from .melody_lines import melody_share, query_mode, tune_notes
from .melody_search import search_melody, verdict
from .search import (DEFAULT_BIN, DEFAULT_K, Calibration, QueryWindows, VoteAccumulator,
                     score_candidates, verify)
from .windows import QUERY_HOP, make_windows


class BadQuery(MidizeroError):
    """A query no reader could have made (a pitch outside MIDI's 0..127, an onset that is
    not a finite number of seconds, frames whose arrays do not match)."""


# Seconds: onsets beyond this either way are refused (about 115 days; a reader's longest
# file is hours). Within it, score grouping's microsecond grid fits an int64.
MAX_ONSET_S = 1e7


def check_notes(notes) -> None:
    """Refuse notes no reader makes, with :class:`BadQuery`: pitches outside 0..127, onsets
    (seconds) that are not finite or lie beyond ±:data:`MAX_ONSET_S`. Negative onsets and
    equal ones are accepted: only the differences between onsets are used."""
    pitch = np.asarray(notes.pitch)
    onset = np.asarray(notes.onset, np.float64)
    if len(pitch) != len(onset):
        raise BadQuery(f"the query has {len(onset)} onsets for {len(pitch)} pitches")
    if len(pitch) and (pitch.min() < 0 or pitch.max() > 127):
        raise BadQuery("a query note's pitch is outside MIDI's 0..127")
    if len(onset) and not (np.isfinite(onset).all() and np.abs(onset).max() <= MAX_ONSET_S):
        raise BadQuery(f"a query note's onset is not a time in seconds within ±{MAX_ONSET_S:g}")


def check_frames(frames: Frames) -> None:
    """Refuse frames that break :class:`Frames`' layout, hold a pitch outside the piano or
    an onset that is not a finite time, with :class:`BadQuery`. Onsets out of order are
    accepted: a score read with its repeats or tempo changes can store them so."""
    onset, offsets, pitches = frames.onset, frames.offsets, frames.pitches
    if len(offsets) != len(onset) + 1 or offsets[0] != 0 or offsets[-1] != len(pitches) \
            or np.any(np.diff(offsets) < 0) or len(frames.measure) != len(onset) \
            or len(frames.beat) != len(onset):
        raise BadQuery("the query's frames are inconsistent (offsets, onsets and pitches "
                       "do not match)")
    if len(pitches) and (pitches.min() < PITCH_LO or pitches.max() > PITCH_HI):
        raise BadQuery(f"a query frame's pitch is outside the piano's {PITCH_LO}..{PITCH_HI}")
    if len(onset) and not (np.isfinite(onset).all() and np.abs(onset).max() <= MAX_ONSET_S):
        raise BadQuery(f"a query frame's onset is not a time in seconds within "
                       f"±{MAX_ONSET_S:g}")


def query_frames(query, kind: str = "auto", tau: float = DEFAULT_TAU) -> tuple[Frames, str, str]:
    """Frames of a query: a file path (parsed in a limited worker), Notes or Frames.

    Returns (frames, query_kind "score" | "performance", display name). Raises
    :class:`BadQuery` for notes or frames no reader makes (:func:`check_notes`,
    :func:`check_frames`).
    """
    if isinstance(query, Frames):
        check_frames(query)
        return query, "frames", "frames"
    if isinstance(query, (str, Path)):
        from .parsing import parse_one

        name = str(query)
        query = parse_one(query)
    else:
        name = "notes"
    check_notes(query)
    frames, used = to_frames(query, kind, tau)
    return frames, used, name


# Every key within a tritone either way: the encoder hears octaves, so a query a tritone
# above the score needs −6 and one a tritone below needs +6.
ANY_KEY_SHIFTS = tuple(range(-6, 7))
# --any-key on full textures: every shift is tried with every 6th window at a narrow kNN,
# then the best shift — and the runner-up when it scored close — is searched in full.
# At ef 16 that first pass missed the right shift of 11 in 500 transposed 10 s excerpts
# (Top-1 0.974 against 0.996 untransposed, 2.3× a plain search); at ef 48 it misses 3
# (0.990), for 2.6× a plain search (benchmarks/RESULTS.md, identification in any key).
ANY_KEY_HOP, ANY_KEY_EF, ANY_KEY_KEEP = 6, 48, 2
ANY_KEY_CLOSE = 0.6  # a runner-up shift is searched in full only if it scored this close


def search_library(lib, query, top: int = 10, aggregate: str = "vote", transpose: int = 0,
                   k: int = DEFAULT_K, bin_width: int = DEFAULT_BIN, kind: str = "auto",
                   tau: float = DEFAULT_TAU, max_positions: int = 3, melody: str | bool = "auto",
                   any_key: bool | None = None) -> dict:
    """Identify ``query`` in library ``lib``.

    Parameters
    ----------
    query : path of a score/performance file, :class:`Notes` or :class:`Frames`.
    top : number of ranked pieces to return.
    aggregate : ``"vote"`` (offset-consistent, default) or ``"sum"`` (published).
    transpose : also try the query shifted by −N..+N semitones.
    k : nearest library windows per query window.
    kind : ``"auto"`` (detect a quantised file), ``"score"`` or ``"performance"`` grouping.
    melody : ``"auto"`` (:func:`~midizero_app.core.melody_lines.query_mode`: a tune played one
        note at a time searches the melody view, a tune with some chords both views),
        ``True`` (melody view only) or ``False`` (full texture only).
    any_key : find the piece in any key and report the shift. ``None`` (default): on for
        melodies (their view is key-normalised), off for full textures (where it searches
        all 12 shifts at a narrower kNN).

    Returns
    -------
    dict in the shape of DESIGN §4.2 (``results[].positions[].seconds`` in score time),
    plus ``"mode"``: ``"texture"``, ``"melody"`` (a tune: both views, or the melody view
    alone with ``melody=True``) or ``"fused"`` (a tune with some chords: both views);
    ``"tune_notes"``: the notes of the tune searched (None for a texture); ``"verdict"``:
    ``"found"``, ``"not_in_library"`` or ``"unsure"`` (a flagged tune too short to tell,
    :func:`~midizero_app.core.melody_search.verdict`).

    Raises :class:`BadQuery` for notes or frames no reader makes (a pitch outside 0..127,
    an onset that is not a finite time within ±:data:`MAX_ONSET_S` seconds); an empty
    query, or one no piece fits, is an answer with no results.
    """
    t0 = time.perf_counter()
    frames, used, name = query_frames(query, kind, tau)
    emb_model = lib.embedder
    if melody == "auto":
        mode = query_mode(frames)
    else:
        mode = "melody" if melody else "texture"
    cands, not_in_library, n_windows = [], True, 0
    calib = Calibration.from_card(emb_model.card)
    # A detected tune is searched in both views: a passage that merely looks like one (a
    # one-hand run in a performance) keeps its texture evidence. --melody is melody only.
    if mode != "melody" or melody == "auto":
        cands, n_windows = _texture_candidates(lib, frames, top, aggregate, transpose, k,
                                               bin_width, max_positions, bool(any_key))
        not_in_library = score_candidates(cands, n_windows, calib)
    segments = None
    if cands and mode == "texture" and _duration(frames) > LONG_QUERY_S:
        segments = _judge_by_segments(lib, frames, cands, calib, aggregate, k, bin_width)
        not_in_library = cands[0].confidence < 0.5
    if mode != "texture":
        mel, mel_flag = search_melody(lib, frames, top, any_key=any_key is not False)
        if melody is True:
            cands, not_in_library, n_windows = mel, mel_flag, len(frames)
        else:
            cands, not_in_library = merge_readings(cands, not_in_library, mel, mel_flag, top,
                                                   tune=answered_as_tune(mode, frames, mel_flag))
    results = [result_entry(lib, rank, c, n_windows) for rank, c in enumerate(cands[:top], 1)]
    n_tune = len(tune_notes(frames)[0]) if mode != "texture" else None
    out = {"query": name, "frames": len(frames), "windows": n_windows,
           "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1),
           "not_in_library": bool(not_in_library), "model_id": emb_model.model_id,
           "query_kind": used, "mode": mode, "tune_notes": n_tune,
           "verdict": verdict(bool(not_in_library), mode, n_tune or 0), "results": results}
    if segments is not None:
        out["segments"] = segments
    return out


# A query longer than LONG_QUERY_S seconds (a whole recording or file) is also judged part
# by part: the calibration was fitted on 5-20 s queries, and over minutes a piece that is
# merely similar gathers enough votes to look certain (real recordings of pieces not in the
# library came back at 0.5-0.9; benchmarks/RESULTS.md). Up to MAX_SEGMENTS evenly spaced
# SEGMENT_S-second parts are searched; the answer keeps the median confidence they give it.
LONG_QUERY_S, SEGMENT_S, MAX_SEGMENTS, MIN_SEGMENT_FRAMES = 40.0, 20.0, 8, 10


def _duration(frames: Frames) -> float:
    return float(frames.onset[-1] - frames.onset[0]) if len(frames) else 0.0


def _judge_by_segments(lib, frames: Frames, cands: list, calib: Calibration, aggregate: str,
                       k: int, bin_width: int) -> dict:
    """Cap the best candidate's confidence (and so the others') at the median confidence
    that the query's segments give that piece (0 for a segment that ranks another first).

    Returns ``{"searched": n, "agreeing": segments whose unflagged answer is that piece}``.
    """
    best = cands[0]
    reading = frames.transposed(best.transpose)
    t0 = float(reading.onset[0])
    n = min(MAX_SEGMENTS, int(_duration(reading) // SEGMENT_S))
    starts = t0 + np.linspace(0.0, _duration(reading) - SEGMENT_S, n)
    given = []
    for s in starts:
        lo, hi = np.searchsorted(reading.onset, [s, s + SEGMENT_S])
        if hi - lo < MIN_SEGMENT_FRAMES:
            continue  # a silent stretch says nothing either way
        seg, n_windows = _texture_candidates(lib, reading.between(int(lo), int(hi)), 1,
                                             aggregate, 0, k, bin_width, 1, False)
        score_candidates(seg, n_windows, calib)
        given.append(seg[0].confidence if seg and seg[0].piece == best.piece else 0.0)
    return cap_by_segments(cands, given)


def cap_by_segments(cands: list, given: list[float]) -> dict:
    """Cap the best candidate's confidence at the median of ``given`` (what each segment of
    a long query gave that piece: 0 where a segment ranks another first), and the others'
    at the best's. Returns ``{"searched": segments, "agreeing": those sure of that piece}``
    (the long-query judgement of every search route)."""
    if not given:
        return {"searched": 0, "agreeing": 0}
    best = cands[0]
    best.confidence = min(best.confidence, float(np.median(given)))
    for c in cands[1:]:
        c.confidence = min(c.confidence, best.confidence)
    return {"searched": len(given), "agreeing": int(sum(g >= 0.5 for g in given))}


def answered_as_tune(mode: str, frames: Frames, melody_flag: bool) -> bool:
    """Whether the melody view answers a query (:func:`merge_readings`' ``tune``): a clear
    tune, or one note at a time that leaps when the melody view is confident of its answer
    (themes through the app at 8 notes: 0.82 → 0.87 first; benchmarks/RESULTS.md)."""
    return mode == "melody" or (mode == "fused" and not melody_flag
                                and melody_share(frames) == 1.0)


def merge_readings(texture: list, texture_flag: bool, melody: list, melody_flag: bool,
                   top: int, tune: bool = False) -> tuple[list, bool]:
    """Texture and melody candidates in one ranking: each piece keeps its more confident
    reading (confidences are calibrated per view); not in the library when neither view
    found it.

    A clear ``tune`` (one note at a time that moves like a tune, or any line of single
    notes the melody view answers with confidence) is answered by the melody view, the
    texture's pieces only following its own: the texture calibration, fitted on performance
    excerpts, overrates a single line against a dense score (most of a tune's notes sound
    somewhere in a chorale's chords at any place), which cost auto mode up to 15 points
    against the melody view alone (benchmarks/RESULTS.md, voice lines).
    """
    if tune and melody:
        seen = {c.piece for c in melody}
        return (melody + [c for c in texture if c.piece not in seen])[:top + 2], melody_flag
    merged: dict[int, object] = {c.piece: c for c in texture}
    for c in melody:
        if c.piece not in merged or c.confidence > merged[c.piece].confidence:
            merged[c.piece] = c
    return (sorted(merged.values(), key=lambda c: -c.confidence)[:top + 2],
            texture_flag and melody_flag)


def _likely_shifts(lib, frames: Frames, k: int, bin_width: int) -> list[int]:
    """The key shifts whose sparse, narrow search scores best: the best, and up to
    ``ANY_KEY_KEEP`` − 1 more that score within ``ANY_KEY_CLOSE`` of it."""
    emb_model = lib.embedder
    wins, starts_all = [], []
    for t in ANY_KEY_SHIFTS:
        w, starts = make_windows(frames.transposed(t), ANY_KEY_HOP, emb_model.win_length)
        wins.append(w)
        starts_all.append(starts)
    labels, sims = lib.knn(emb_model.embed(np.concatenate(wins)), k, ef=ANY_KEY_EF)
    scores, i = [], 0
    for t, starts in zip(ANY_KEY_SHIFTS, starts_all):
        acc = VoteAccumulator(*lib.label_maps, bin_width)
        acc.add(starts, labels[i:i + len(starts)], sims[i:i + len(starts)], emb_model.win_length)
        i += len(starts)
        best = acc.rank(1, 1)
        scores.append((best[0].score if best else 0.0, -abs(t), t))
    ranked = sorted(scores, reverse=True)[:ANY_KEY_KEEP]
    return [t for score, _, t in ranked if score >= ANY_KEY_CLOSE * ranked[0][0]]


def _texture_candidates(lib, frames: Frames, top: int, aggregate: str, transpose: int, k: int,
                        bin_width: int, max_positions: int, any_key: bool):
    """Full-texture search: ranked candidates (each piece at its best shift), windows."""
    emb_model = lib.embedder
    if any_key:
        shifts = _likely_shifts(lib, frames, k, bin_width)
    else:
        shifts = list(range(-abs(transpose), abs(transpose) + 1)) if transpose else [0]
    wins, starts_all, readings = [], [], []
    for t in shifts:
        readings.append(frames.transposed(t))
        w, starts = make_windows(readings[-1], QUERY_HOP, emb_model.win_length)
        wins.append(w)
        starts_all.append(starts)
    emb = emb_model.embed(np.concatenate(wins))
    labels, sims = lib.knn(emb, k)
    label_piece, label_frame = lib.label_maps
    per_shift, queries = [], {}
    i = 0
    for t, starts, reading in zip(shifts, starts_all, readings):
        acc = VoteAccumulator(label_piece, label_frame, bin_width, aggregate)
        acc.add(starts, labels[i:i + len(starts)], sims[i:i + len(starts)], emb_model.win_length)
        queries[t] = QueryWindows(emb[i:i + len(starts)], starts, reading)
        i += len(starts)
        for c in acc.rank(top + 2, max_positions):
            c.transpose = t
            per_shift.append(c)
    best: dict[int, object] = {}
    for c in per_shift:  # a piece's best transposition wins; ties prefer no shift
        if c.piece not in best or (c.score, -abs(c.transpose)) > (best[c.piece].score,
                                                                 -abs(best[c.piece].transpose)):
            best[c.piece] = c
    cands = sorted(best.values(), key=lambda c: -c.score)[:top + 2]
    verify(cands, queries, lib)
    return cands, len(starts_all[0])


def result_entry(lib, rank: int, c, n_windows: int, now_frame: int | None = None) -> dict:
    """One ranked piece as JSON: metadata plus positions in score time."""
    info = lib.piece(c.piece)
    frames = lib.frames_of(c.piece)
    positions = []
    for p in c.positions:
        positions.append(position_entry(frames, p["offset"], p["support"]))
        if now_frame is not None:
            positions[-1]["now"] = position_entry(frames, p["offset"] + p["slope"] * now_frame,
                                                  0.0)
            positions[-1]["now"].pop("support")
    return {"rank": rank, "piece_id": c.piece, "path": info["path"], "title": info["title"],
            "composer": info["composer"] or "", "kind": info["kind"] or "score",
            "score": round(c.score, 3), "confidence": round(c.confidence, 3),
            "transpose": c.transpose, "positions": positions}


def position_entry(frames: Frames, offset: float, support: float) -> dict:
    """Library frame ``offset`` (may be fractional or out of range) → seconds/measure/beat."""
    n = len(frames)
    j = int(min(max(round(offset), 0), n - 1))
    measure = int(frames.measure[j]) if frames.measure[j] >= 0 else None
    beat = float(frames.beat[j]) if not np.isnan(frames.beat[j]) else None
    return {"seconds": round(float(frames.onset[j]), 3), "measure": measure,
            "beat": round(beat, 3) if beat is not None else None, "frame": j,
            "support": round(float(support), 3)}
