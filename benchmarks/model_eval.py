"""Quick model comparison for the model study (models/README.md): ASAP scores only, exact kNN.

    python benchmarks/model_eval.py runs/a/model.pt runs/b/last.pt [--n 300]

For each checkpoint: embed the 235 ASAP score MIDIs' windows (hop 2), search seeded random
5/10/20 s performance excerpts with exact inner-product kNN (k = 10) and offset voting,
and print Top-1 / MRR@10 per length plus CPU ms per 1,000 windows. Exact search isolates
the encoder from index effects; the full benchmark (asap_bench.py) uses hnswlib and the
distractors.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import asap_dir, asap_scores, piece_key  # noqa: E402
from benchmarks.queries import load_performances, make_queries  # noqa: E402
from midizero_app.core.encoder import Embedder, count_parameters  # noqa: E402
from midizero_app.core.training.config import DEFAULT_ARCH  # noqa: E402
from midizero_app.core.frames import group_score  # noqa: E402
from midizero_app.core.parsing import parse_files  # noqa: E402
from midizero_app.core.search import DEFAULT_BIN, VoteAccumulator  # noqa: E402
from midizero_app.core.windows import LIBRARY_HOP, QUERY_HOP, make_windows  # noqa: E402


def library_frames(asap: Path) -> list[tuple[str, object]]:
    return [(piece_key(Path(r.path).parent), group_score(r.notes))
            for r in sorted(parse_files(asap_scores(asap)), key=lambda r: r.path)
            if r.notes is not None]


def evaluate(emb: Embedder, lib, queries_by_len, k: int = 10, bin_width: int = DEFAULT_BIN,
             aggregate: str = "vote") -> dict:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--bin", type=int, default=DEFAULT_BIN)
    ap.add_argument("--aggregate", default="vote")
    ap.add_argument("--tau", type=float, default=0.05)
    ap.add_argument("--arch", default=json.dumps(DEFAULT_ARCH),
                    help="architecture (JSON) of last.pt training checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(2)
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found")
    perfs = load_performances(asap)
    lib = library_frames(asap)
    queries = {L: make_queries(perfs, L, args.n, 500 + int(L), tau=args.tau) for L in (5.0, 10.0, 20.0)}
    for ck in args.checkpoints:
        path = Path(ck)
        if path.name == "last.pt":  # a training checkpoint: give it a card from its run
            tmp = Path(tempfile.mkdtemp()) / "model.pt"
            sd = torch.load(path, map_location="cpu", weights_only=True)["model"]
            torch.save(sd, tmp)
            tmp.with_suffix(".json").write_text(json.dumps({"arch": json.loads(args.arch)}))
            path = tmp
        emb = Embedder(path, runtime="torch")
        res = evaluate(emb, lib, queries, args.k, args.bin, args.aggregate)
        print(json.dumps({"checkpoint": ck, "params": count_parameters(emb.model), **res}),
              flush=True)


if __name__ == "__main__":
    main()
