"""Train one of the audio branch's models on rendered data and write it with its card and
ONNX export.

    python -m scripts.train_audio_branch --model reproduce|teacher --data DIR
        --out models/NAME [--minutes M] [--max-steps N] [--mapping fixed|onsets]
        [--widths 24,48,96,96] [--batch 100] [--lr 0.002] [--max-files N] [--seed 0]
        [--init W.safetensors]

``--data`` is a dataset folder of ``midizero_app.audio.branch.dataset`` (``train/``,
``valid/``, ``test/`` of ``.npz`` renderings). ``reproduce`` trains the published
two-branch audio/piano-roll network (pairwise ranking loss, margin 0.7); ``teacher`` trains
an audio branch onto the bundled pitch-matrix encoder's window embeddings (the library
index's space). Writes ``<out>.safetensors``, ``<out>.json`` and ``<out>.onnx``; the
validation figures are printed and kept in the card. Measure with
``python -m benchmarks.audio_snippet_bench``.
"""
from __future__ import annotations

import argparse
import sys
import time

from midizero_app.audio.branch.train import Recipe, train
from midizero_app.core.errors import MidizeroError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.train_audio_branch",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("reproduce", "teacher"), required=True)
    ap.add_argument("--data", required=True, help="dataset folder (train/ valid/ test/)")
    ap.add_argument("--out", required=True, help="output weights path (.safetensors added)")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N steps instead")
    ap.add_argument("--mapping", choices=("fixed", "onsets"), default="onsets",
                    help="teacher: how an audio snippet maps to a 10-frame window (onsets: "
                    "the span from its first onset to its last, measured best)")
    ap.add_argument("--widths", default="24,48,96,96", help="filters of the four blocks")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--margin", type=float, default=0.7)
    ap.add_argument("--max-files", type=int, default=None, help="renderings per split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="continue from these weights (same model)")
    a = ap.parse_args(argv)
    try:
        widths = tuple(int(x) for x in a.widths.split(","))
    except ValueError:
        ap.error("--widths takes four whole numbers, e.g. 24,48,96,96")
    recipe = Recipe(kind=a.model, mapping=a.mapping, batch=a.batch, lr=a.lr, margin=a.margin,
                    minutes=a.minutes, max_steps=a.max_steps, widths=widths, seed=a.seed,
                    threads=a.threads, max_files=a.max_files, init=a.init)
    t0 = time.monotonic()
    try:
        card = train(recipe, a.data, a.out, log=lambda m: print(m, flush=True))
    except MidizeroError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done in {(time.monotonic() - t0) / 60:.1f} min: model id {card['model_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
