"""Quick model comparison for the model study (models/README.md): ASAP scores only, exact kNN.

    python -m benchmarks.model_eval runs/a/model.pt runs/b/last.pt [--n 300]

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
from pathlib import Path

import torch

from benchmarks.common import (asap_dir, evaluate_encoder, library_frames, load_performances,
                               make_queries)
from midizero_app.core.encoder import Embedder, count_parameters
from midizero_app.core.search import DEFAULT_BIN
from midizero_app.core.training.config import DEFAULT_ARCH


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
        res = evaluate_encoder(emb, lib, queries, args.k, args.bin, args.aggregate)
        print(json.dumps({"checkpoint": ck, "params": count_parameters(emb.model), **res}),
              flush=True)


if __name__ == "__main__":
    main()
