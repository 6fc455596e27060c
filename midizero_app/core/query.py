"""A query (file, notes or frames) → the search result of DESIGN §4.2."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .frames import DEFAULT_TAU, Frames, to_frames
from .search import DEFAULT_BIN, DEFAULT_K, Calibration, VoteAccumulator, score_candidates
from .windows import QUERY_HOP, make_windows


def query_frames(query, kind: str = "auto", tau: float = DEFAULT_TAU) -> tuple[Frames, str, str]:
    """Frames of a query: a file path (parsed in a limited worker), Notes or Frames.

    Returns (frames, query_kind "score" | "performance", display name).
    """
    if isinstance(query, Frames):
        return query, "frames", "frames"
    if isinstance(query, (str, Path)):
        from .parsing import parse_one

        name = str(query)
        query = parse_one(query)
    else:
        name = "notes"
    frames, used = to_frames(query, kind, tau)
    return frames, used, name


def search_library(lib, query, top: int = 10, aggregate: str = "vote", transpose: int = 0,
                   k: int = DEFAULT_K, bin_width: int = DEFAULT_BIN, kind: str = "auto",
                   tau: float = DEFAULT_TAU, max_positions: int = 3) -> dict:
    """Identify ``query`` in library ``lib``.

    Parameters
    ----------
    query : path of a score/performance file, :class:`Notes` or :class:`Frames`.
    top : number of ranked pieces to return.
    aggregate : ``"vote"`` (offset-consistent, default) or ``"sum"`` (published).
    transpose : also try the query shifted by −N..+N semitones.
    k : nearest library windows per query window.
    kind : ``"auto"`` (detect a quantised file), ``"score"`` or ``"performance"`` grouping.

    Returns
    -------
    dict in the shape of DESIGN §4.2 (``results[].positions[].seconds`` in score time).
    """
    t0 = time.perf_counter()
    frames, used, name = query_frames(query, kind, tau)
    emb_model = lib.embedder
    shifts = list(range(-abs(transpose), abs(transpose) + 1)) if transpose else [0]
    wins, starts_all = [], []
    for t in shifts:
        w, starts = make_windows(frames.transposed(t), QUERY_HOP, emb_model.win_length)
        wins.append(w)
        starts_all.append(starts)
    emb = emb_model.embed(np.concatenate(wins))
    labels, sims = lib.knn(emb, k)
    label_piece, label_frame = lib.label_maps
    per_shift = []
    i = 0
    for t, starts in zip(shifts, starts_all):
        acc = VoteAccumulator(label_piece, label_frame, bin_width, aggregate)
        acc.add(starts, labels[i:i + len(starts)], sims[i:i + len(starts)], emb_model.win_length)
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
    n_windows = len(starts_all[0])
    calib = Calibration.from_card(emb_model.card)
    not_in_library = score_candidates(cands, n_windows, calib)
    results = [result_entry(lib, rank, c, n_windows) for rank, c in enumerate(cands[:top], 1)]
    return {"query": name, "frames": len(frames), "windows": n_windows,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1),
            "not_in_library": bool(not_in_library), "model_id": emb_model.model_id,
            "query_kind": used, "results": results}


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
