"""Retrieval metrics with the search engine itself (DESIGN §4.3 ``evaluate``)."""
from __future__ import annotations

import csv
import math
import tempfile
from pathlib import Path
from typing import Callable

from ..scores import SCORE_SUFFIXES


def read_ground_truth(gt_file_path: str | Path) -> dict[str, str]:
    """``query,gt`` CSV (file names) → {query: gt}; raises ValueError with a clear reason."""
    path = Path(gt_file_path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read ground truth {path}: {exc}") from None
    if not rows or not {"query", "gt"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with columns 'query,gt'")
    gt = {}
    for line, r in enumerate(rows, 2):
        q, t = (r.get("query") or "").strip(), (r.get("gt") or "").strip()
        if not q or not t:
            raise ValueError(f"{path}, line {line}: needs both a query and a gt file name")
        gt[q] = t
    return gt


def metrics(ranks: list[int | None], k: int = 10) -> dict[str, float]:
    """Recall@1, Recall@k, MRR@k, nDCG@k from 1-based ranks (None = not in the top k)."""
    n = max(len(ranks), 1)
    hit = [r for r in ranks if r is not None and r <= k]
    return {"recall@1": sum(1 for r in hit if r == 1) / n,
            f"recall@{k}": len(hit) / n,
            f"mrr@{k}": sum(1.0 / r for r in hit) / n,
            f"ndcg@{k}": sum(1.0 / math.log2(r + 1) for r in hit) / n,
            "queries": len(ranks)}


def evaluate(db_path: str | Path, query_path: str | Path, gt_file_path: str | Path,
             checkpoint_path: str | Path | None = None, k: int = 10,
             progress: Callable[[int, int, str], None] | None = None,
             aggregate: str = "vote") -> dict:
    """Index every score file in ``db_path`` with the checkpoint, search every query listed
    in the ground truth, and return the metrics plus per-query ranks.

    A gt entry names a database file by its name or its path relative to ``db_path`` (for
    folders of same-named files such as ASAP's ``midi_score.mid``). A query that cannot be
    parsed counts as a miss and is listed under ``errors``.
    """
    from ..library import Library
    from ..encoder import load_checkpoint
    from ..parsing import parse_files

    if checkpoint_path is not None:
        load_checkpoint(checkpoint_path)  # fail early with a clear message
    gt = read_ground_truth(gt_file_path)
    qdir = Path(query_path)
    missing = [q for q in gt if not (qdir / q).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} queries in the ground truth are not in {qdir}: "
                         f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    db_root = Path(db_path)
    db_files = sorted(p for p in db_root.rglob("*") if p.suffix.lower() in SCORE_SUFFIXES)
    if not db_files:
        raise ValueError(f"no score files in {db_root}")
    with tempfile.TemporaryDirectory(prefix="midizero-eval-") as tmp:
        lib = Library(tmp, model=checkpoint_path)
        try:
            lib.add(db_files, progress=progress)
            per_query, errors = {}, {}
            # One worker pool for all queries (a worker per search would cost a spawn each).
            by_path = {str(qdir / q): q for q in gt}
            for i, (path, notes, error) in enumerate(parse_files(list(by_path))):
                q = by_path[path]
                per_query[q] = None
                if notes is None:
                    errors[q] = error
                else:
                    res = lib.search(notes, top=k, aggregate=aggregate)
                    for r in res["results"]:
                        found = Path(r["path"])
                        rel = found.relative_to(db_root.resolve()).as_posix() \
                            if found.is_relative_to(db_root.resolve()) else found.name
                        if gt[q] in (found.name, rel):
                            per_query[q] = r["rank"]
                            break
                if progress:
                    progress(i + 1, len(gt), q)
        finally:
            lib.close()
    per_query = dict(sorted(per_query.items()))
    return {**metrics(list(per_query.values()), k), "ranks": per_query, "errors": errors}
