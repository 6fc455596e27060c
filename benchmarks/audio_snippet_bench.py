"""Two-way snippet retrieval of the audio branch's models on held-out rendered pieces, the
table Dorfer et al. report for their audio–sheet-music embedding.

    nice python -m benchmarks.audio_snippet_bench [--data DIR] [--reproduce W.safetensors]
        [--teacher W.safetensors ...] [--n 2000] [--seed 0]

``--data``: a dataset of :mod:`midizero_app.audio.branch.dataset` (default
``benchmarks/.cache/audio-branch`` when it holds ``READY``, else
``benchmarks/.cache/audio-branch-small``); its ``test`` split is read — pieces held out of
training, rendered with the held-out test SoundFont. ``--n`` pairs are drawn (seeded) from
all the split's pairs; every query is ranked against all ``n`` candidates of the other side:

* reproduction (``--reproduce``): audio snippet ↔ piano-roll snippet, each 42 frames centred
  on a chord onset;
* into the app's space (``--teacher``, one or more): audio snippet ↔ the bundled pitch-matrix
  encoder's embedding of the window it plays (the vector the library index holds), the audio
  cut under the model card's ``mapping``.

R@k: share of queries whose own match ranks within the first k; MRR: mean reciprocal rank;
MR: median rank (ties count against the query). Chance: R@1 = 1/n, MR ≈ n/2.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import CACHE
from midizero_app.audio.branch.dataset import TEST_FONT_NAME
from midizero_app.audio.branch.model import load
from midizero_app.audio.branch.train import (ReproduceData, TeacherData, evaluate, load_split,
                                             training_totals)
from midizero_app.core.atomic import write_text

PUBLISHED = (
    # (system, direction, n candidates, R@1, R@10, MRR, MR) — None where not available here
    ("Dorfer et al. 2018 (MSMD, sheet images)", "a2s", 2000, None, None, None, None),
)
"""The published figures to print beside ours. ../shared/REFERENCES.md records the
system's settings but not its retrieval table, and the papers' tables could not be read
here; the row stays empty until they are copied in from TISMIR 2018 (Dorfer, Hajič, Arzt,
Frostel & Widmer, Table "snippet retrieval")."""


def default_data() -> Path:
    full = CACHE / "audio-branch"
    return full if (full / "READY").exists() else CACHE / "audio-branch-small"


def fmt(v, digits=3) -> str:
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def run(args) -> list[tuple]:
    torch.set_num_threads(args.threads)
    test = load_split(args.data, "test")
    if not test:
        sys.exit(f"no test renderings in {Path(args.data) / 'test'}")
    fonts = sorted({r.font for r in test})
    if fonts != [TEST_FONT_NAME]:
        print(f"warning: the test split is rendered with {fonts}, not only {TEST_FONT_NAME}")
    print(f"test split: {len(test)} renderings of {len({r.piece for r in test})} pieces "
          f"({', '.join(fonts)}), {args.data}")
    rows = []
    models = [("reproduce", p) for p in args.reproduce] + [("teacher", p) for p in args.teacher]
    for kind, path in models:
        model, card = load(path)
        if card["audio_arch"]["kind"] != kind:
            sys.exit(f"{path} is a {card['audio_arch']['kind']} model, not {kind}")
        if kind == "reproduce":
            data = ReproduceData(test)
        else:
            data = TeacherData(test, card["audio_arch"].get("mapping", "fixed"),
                               log=lambda m: None)
        rng = np.random.default_rng(args.seed)
        pick = np.sort(rng.permutation(len(data))[:args.n])
        t0 = time.monotonic()
        res = evaluate(model, data, pick)
        secs = time.monotonic() - t0
        steps, train_s = training_totals(card)
        name = (f"{Path(path).stem} ({kind}"
                + (f", {card['audio_arch'].get('mapping')}" if kind == "teacher" else "")
                + f", {steps} steps, {train_s / 60:.0f} min)")
        for d in ("a2s", "s2a"):
            m = res[d]
            rows.append((name, d, m["n"], m["R@1"], m["R@10"], m["MRR"], m["MR"]))
        print(f"{name}: mean cosine of matched pairs {res['cos']:.3f}; {len(pick)} pairs "
              f"embedded and ranked in {secs:.1f} s")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.audio_snippet_bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--reproduce", action="append", default=[])
    ap.add_argument("--teacher", action="append", default=[])
    ap.add_argument("--n", type=int, default=2000, help="pairs drawn from the test split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    args.data = args.data or default_data()
    if not args.reproduce and not args.teacher:
        ap.error("name at least one model (--reproduce or --teacher)")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = run(args)
    print(f"\n{started}, {platform.node()}, {torch.get_num_threads()} threads; directions: "
          "a2s = audio → symbolic (piano roll / encoder window), s2a = the reverse")
    head = ("model", "dir", "n", "R@1", "R@10", "MRR", "MR")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(fmt(v) for v in r) + " |")
    for r in PUBLISHED:
        print("| " + " | ".join(fmt(v) for v in r) + " | (published)")
    n = rows[0][2] if rows else args.n
    print(f"| chance | both | {n} | {1 / n:.4f} | {min(10 / n, 1):.4f} | — | {(n + 1) / 2:.0f} |")
    if args.json:
        write_text(args.json, json.dumps({"started": started, "data": str(args.data),
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
