"""What the benchmarks share: where the data is, how answers are graded, the distractors,
seeded excerpt queries of the ASAP performances, and the evaluation loops.

Run every benchmark from the repository root as a module (``python -m benchmarks.<name>``).
Data: ASAP (``$MIDIZERO_ASAP`` or ``../shared/data/asap``); regenerable files (libraries,
parsed performances, renders) go to ``benchmarks/.cache/`` (not in git).
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midizero_app.core.frames import Frames, group_performance
from midizero_app.core.scores import Notes

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
_SUFFIX = re.compile(r"_(no_repeat|repeat|no_2_repeat|no_first_repeat|no_trio)$")


def asap_dir() -> Path | None:
    """``$MIDIZERO_ASAP`` or ``../shared/data/asap`` from the project root; None if absent."""
    p = Path(os.environ.get("MIDIZERO_ASAP", ROOT.parent / "shared" / "data" / "asap"))
    return p if (p / "metadata.csv").is_file() else None


def piece_key(folder: str | Path) -> str:
    """Grading key: the ASAP folder with a version suffix (``_no_repeat`` ...) removed."""
    parts = Path(folder).parts
    asap_at = parts.index("asap") + 1 if "asap" in parts else 0
    rel = "/".join(p for p in parts[asap_at:] if not p.endswith((".mid", ".mxl")))
    return _SUFFIX.sub("", rel)


def grade_key(path: str) -> str:
    """Grading key of a library piece: :func:`piece_key` of an ASAP score, else
    ``other:<path>`` (a distractor)."""
    p = Path(path)
    return piece_key(p.parent) if p.name == "midi_score.mid" else "other:" + p.as_posix()


def asap_scores(asap: Path) -> list[Path]:
    return sorted(asap.rglob("midi_score.mid"))


def asap_performances(asap: Path) -> list[Path]:
    return sorted(p for p in asap.rglob("*.mid") if p.name != "midi_score.mid")


def dev_test_split(asap: Path) -> tuple[set[str], set[str]]:
    """Pieces (grading keys) sorted by name: even positions dev, odd positions test."""
    keys = sorted({piece_key(p.parent) for p in asap_scores(asap)})
    return set(keys[0::2]), set(keys[1::2])


# music21 corpus works that are also in ASAP (composer + catalogue number), left out of the
# distractors; see benchmarks/RESULTS.md.
OVERLAP = {"bach/bwv846.mxl": "WTC I Prelude/Fugue in C, BWV 846 (ASAP Bach/*/bwv_846)"}
_FORMAT_PREFERENCE = (".mxl", ".xml", ".musicxml", ".krn", ".abc")


def music21_distractors() -> list[Path]:
    """Every music21 corpus score we can read, one file per work, minus the ASAP overlap."""
    import music21

    by_work: dict[str, Path] = {}
    for p in sorted(Path(str(x)) for x in music21.corpus.getPaths()):
        if p.suffix.lower() not in _FORMAT_PREFERENCE:
            continue
        rel = p.as_posix().split("/corpus/", 1)[1]
        if rel in OVERLAP:
            continue
        work = rel.rsplit(".", 1)[0]
        old = by_work.get(work)
        if old is None or _FORMAT_PREFERENCE.index(p.suffix.lower()) < \
                _FORMAT_PREFERENCE.index(old.suffix.lower()):
            by_work[work] = p
    return sorted(by_work.values())


def copy_library(src: str | Path, dst: str | Path) -> Path:
    """Copy a library folder for a benchmark that changes it (held-out pieces), also while
    another process has it open: the database through SQLite's backup API (a plain file
    copy can miss or tear its -wal / -shm files), everything else as files."""
    src, dst = Path(src), Path(dst)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("library.sqlite*", "writer.lock"))
    a = sqlite3.connect(f"file:{src / 'library.sqlite'}?mode=ro", uri=True)
    b = sqlite3.connect(dst / "library.sqlite")
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    return dst


@dataclass
class Query:
    """A seeded excerpt of an ASAP performance, with its true piece and score time."""

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
    from midizero_app.core.atomic import atomic_write

    # atomic: several benchmarks read this cache; a half-written one would fail them all
    with atomic_write(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array([str(n) for n in names]), offsets=offsets,
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


def evaluate(lib, queries: list[Query], method: str, mf=None, mf_keys=None, **kw) -> dict:
    """Search each query in ``lib`` (``search_library`` with ``aggregate=method``, or the
    MidiFind baseline ``mf`` for ``method="midifind"``) and grade the top 10 by piece.

    Returns Top-1, Top-1 unflagged, Top-10, MRR@10, the flagged share, the share of right
    answers placed within 2 s of the true score time (``pos2s``, over ``n_pos`` queries
    with an alignment) and the median / p99 search time in ms.
    """
    from midizero_app.core.query import search_library

    ranks, flagged, pos_ok, times = [], [], [], []
    melody_view = generated_first = 0
    for q in queries:
        t = time.perf_counter()
        if method == "midifind":
            ranked = mf.search(q.frames, top=10)
            keys = [mf_keys[pid] for pid, _ in ranked]
            flag, pos = False, None
        else:
            res = search_library(lib, q.frames, top=10, aggregate=method, **kw)
            keys = [grade_key(r["path"]) for r in res["results"]]
            flag = res["not_in_library"]
            melody_view += res.get("mode", "texture") != "texture"
            generated_first += bool(res["results"]) and \
                str(res["results"][0]["path"]).startswith("generated:")
            # Positions are checked in the performance's own score: another version of the
            # piece (with or without repeats) has another timeline and no alignment.
            top = res["results"][0] if res["results"] else None
            same_file = top is not None and Path(top["path"]) == q.perf.parent / "midi_score.mid"
            pos = top["positions"][0]["seconds"] if same_file else None
        times.append((time.perf_counter() - t) * 1000)
        rank = keys.index(q.key) + 1 if q.key in keys else None
        ranks.append(rank)
        flagged.append(flag)
        if rank == 1 and q.score_time is not None and pos is not None:
            pos_ok.append(abs(pos - q.score_time) <= 2.0)
    ranks_a = np.array([r if r else 0 for r in ranks])
    return {"top1": float(np.mean(ranks_a == 1)),
            "top1_unflagged": float(np.mean((ranks_a == 1) & ~np.array(flagged))),
            "top10": float(np.mean((ranks_a >= 1) & (ranks_a <= 10))),
            "mrr10": float(np.mean([1 / r if r else 0 for r in ranks])),
            "flagged": float(np.mean(flagged)),
            "pos2s": float(np.mean(pos_ok)) if pos_ok else float("nan"),
            "n_pos": len(pos_ok),
            "ms_median": float(np.median(times)), "ms_p99": float(np.percentile(times, 99)),
            "melody_view": melody_view, "generated_first": generated_first}


def feature_rows(lib, queries: list[Query], k: int | None = None
                 ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per query: the confidence features of its best answer (N, len(FEATURES)), that
    answer's grading key, and the query's window count (N,) — the steps of
    ``search_library`` with ``k`` neighbours per window (default ``DEFAULT_K``), stopping
    before the calibrated confidence."""
    from midizero_app.core.search import (DEFAULT_K, Calibration, QueryWindows, VoteAccumulator,
                                          features, score_candidates, verify)
    from midizero_app.core.windows import QUERY_HOP, make_windows

    k = DEFAULT_K if k is None else k
    emb = lib.embedder
    # The card's calibration orders the verified candidates (score_candidates), as the
    # search does; the features are then read from whichever candidate comes first.
    ordering = Calibration.from_card(emb.card)
    rows, keys, counts = [], [], []
    for q in queries:
        w, starts = make_windows(q.frames, QUERY_HOP, emb.win_length)
        e = emb.embed(w)
        labels, sims = lib.knn(e, k)
        acc = VoteAccumulator(*lib.label_maps)
        acc.add(starts, labels, sims, emb.win_length)
        cands = verify(acc.rank(12), {0: QueryWindows(e, starts, q.frames)}, lib)
        score_candidates(cands, len(starts), ordering)
        rows.append(features(cands[0] if cands else None, len(starts)))
        keys.append(grade_key(lib.piece(cands[0].piece)["path"]) if cands else "")
        counts.append(len(starts))
    return np.array(rows), keys, np.array(counts)


def library_frames(asap: Path) -> list[tuple[str, Frames]]:
    """(grading key, score frames) of the ASAP score MIDIs, sorted by path: the library
    of :func:`evaluate_encoder`."""
    from midizero_app.core.frames import group_score
    from midizero_app.core.parsing import parse_files

    return [(piece_key(Path(r.path).parent), group_score(r.notes))
            for r in sorted(parse_files(asap_scores(asap)), key=lambda r: r.path)
            if r.notes is not None]


def evaluate_encoder(emb, lib: list[tuple[str, Frames]], queries_by_len: dict,
                     k: int = 10, bin_width: int | None = None, aggregate: str = "vote") -> dict:
    """One encoder on its own: embed every window of ``lib`` (:func:`library_frames`, hop
    ``LIBRARY_HOP``), search each query's windows by exact inner product (k neighbours),
    rank pieces by offset voting. Returns ``ms_per_1000_windows`` (embedding time) and
    ``top1@<L>s`` / ``mrr@<L>s`` per key ``L`` of ``queries_by_len``."""
    import torch

    from midizero_app.core.search import DEFAULT_BIN, VoteAccumulator
    from midizero_app.core.windows import LIBRARY_HOP, QUERY_HOP, make_windows

    bin_width = DEFAULT_BIN if bin_width is None else bin_width
    t = time.perf_counter()
    vecs, lp, lf = [], [], []
    for pid, (_, frames) in enumerate(lib):
        w, starts = make_windows(frames, LIBRARY_HOP, emb.win_length)
        vecs.append(emb.embed(w))
        lp.append(np.full(len(starts), pid))
        lf.append(starts)
    n_windows = sum(len(v) for v in vecs)
    ms_per_1000 = (time.perf_counter() - t) / n_windows * 1e6
    db = torch.from_numpy(np.concatenate(vecs))
    lp, lf = np.concatenate(lp), np.concatenate(lf)
    out = {"ms_per_1000_windows": round(ms_per_1000, 1)}
    for length, queries in queries_by_len.items():
        ranks = []
        for q in queries:
            w, starts = make_windows(q.frames, QUERY_HOP, emb.win_length)
            sims, labels = torch.topk(torch.from_numpy(emb.embed(w)) @ db.T, k, dim=1)
            acc = VoteAccumulator(lp, lf, bin_width, aggregate)
            acc.add(starts, labels.numpy(), sims.numpy(), emb.win_length)
            keys = [lib[c.piece][0] for c in acc.rank(10)]
            ranks.append(keys.index(q.key) + 1 if q.key in keys else 0)
        r = np.array(ranks)
        out[f"top1@{length:g}s"] = round(float(np.mean(r == 1)), 3)
        out[f"mrr@{length:g}s"] = round(float(np.mean(np.where(r > 0, 1 / np.maximum(r, 1), 0))), 3)
    return out

