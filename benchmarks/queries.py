"""Seeded excerpt queries from the ASAP performances, with the true piece and score time."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE, asap_performances, piece_key
from midizero_app.core.frames import Frames, group_performance
from midizero_app.core.scores import Notes


@dataclass
class Query:
    perf: Path
    key: str             # grading key of the true piece
    start: float         # seconds in the performance
    length: float        # seconds
    frames: Frames
    score_time: float | None  # true score time of the excerpt's first note (None: no alignment)


def load_performances(asap: Path, workers: int = 2) -> dict[Path, Notes]:
    """All performance MIDIs, parsed once and cached as .npz (benchmarks/.cache)."""
    from midizero_app.core.parsing import parse_files

    cache = CACHE / "performances.npz"
    perfs = asap_performances(asap)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            names, offsets = list(z["names"]), z["offsets"]
            onset, pitch = z["onset"], z["pitch"]
        return {Path(n): Notes(onset[a:b], pitch[a:b])
                for n, a, b in zip(names, offsets[:-1], offsets[1:])}
    out = {Path(r.path): r.notes for r in parse_files(perfs, workers) if r.notes is not None}
    names = sorted(out)
    offsets = np.cumsum([0] + [len(out[n]) for n in names])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array([str(n) for n in names]), offsets=offsets,
             onset=np.concatenate([out[n].onset for n in names]),
             pitch=np.concatenate([out[n].pitch for n in names]))
    return {n: out[n] for n in names}


def _beats(path: Path) -> np.ndarray:
    with open(path) as f:
        return np.array([float(row[0]) for row in csv.reader(f, delimiter="\t") if row])


def score_time_map(perf: Path):
    """perf seconds → score seconds by the beat annotations, or None when they disagree."""
    pa = perf.with_name(perf.stem + "_annotations.txt")
    sa = perf.with_name("midi_score_annotations.txt")
    if not (pa.is_file() and sa.is_file()):
        return None
    pb, sb = _beats(pa), _beats(sa)
    if len(pb) != len(sb) or len(pb) < 2:
        return None  # the performer skipped beats: excluded from position checks
    return lambda t: float(np.interp(t, pb, sb))


def make_queries(perfs: dict[Path, Notes], length: float, n: int, seed: int,
                 tau: float = 0.05, pieces: set[str] | None = None) -> list[Query]:
    """``n`` random excerpts of ``length`` s (uniform over performances, then start time)."""
    rng = np.random.default_rng(seed)
    paths = [p for p in sorted(perfs) if pieces is None or piece_key(p.parent) in pieces]
    out: list[Query] = []
    while len(out) < n:
        perf = paths[int(rng.integers(len(paths)))]
        notes = perfs[perf]
        if notes.duration <= length + 1:
            continue
        start = float(rng.uniform(notes.onset[0], notes.duration - length))
        m = (notes.onset >= start) & (notes.onset < start + length)
        if m.sum() < 4:
            continue
        ex = Notes(notes.onset[m] - start, notes.pitch[m])
        tmap = score_time_map(perf)
        first = float(notes.onset[m][0])
        out.append(Query(perf, piece_key(perf.parent), start, length,
                         group_performance(ex, tau), tmap(first) if tmap else None))
    return out
