"""Study: each data mode and encoder size under the same training budget (models/README.md).

    python -m benchmarks.studies.model_study --data         # mode S/R data from the music21 corpus
    python -m benchmarks.studies.model_study ROW [ROW ...]  # train + evaluate rows; --list shows them

Every row trains with the same budget (``--steps`` of batch 256, Adam 1e-3 → 1e-5 cosine,
piano augmentations, seed 0) on CPU, then is evaluated as ``python -m benchmarks.model_eval``
does (``common.evaluate_encoder``: ASAP scores, exact kNN, offset voting, ``--n``
excerpts per length). Mode S statistics and mode R frames come only from the music21
corpus (public domain; the works that are also in ASAP left out, ``common.OVERLAP``),
never from ../shared/data. Rows are appended to benchmarks/.cache/study/results.jsonl.

Found (2026-11-27, 2-core x86_64 VM, 300 steps, 200 excerpts per length; the full table in
models/README.md), Top-1 at 5 / 10 / 20 s: C (random) 0.935 / 0.980 / 1.000; S (corpus
statistics) 0.955 / 0.990 / 1.000; P0 0.950 / 0.995 / 1.000; P2 0.940 / 0.990 / 1.000;
R (real corpus frames) 0.950 / 0.990 / 1.000; P2 + transcription errors 0.955 / 0.995 /
1.000; P2-resnet34 (27× the parameters) 0.920 / 0.985 / 1.000. One query is 0.5 point,
so no data mode is clearly better at this budget and mode P alone is within 1.5 points of
the best; the ResNet-34 trunk is worse and embeds 413 windows/s, too slow for the CPU
targets. What mattered was training length (P2: 0.940 at 300 steps, 0.973 at 5,000).
"""
from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import CACHE

STUDY = CACHE / "study"
COMPACT = {"widths": [32, 64, 128, 128], "blocks": [1, 1, 1, 1]}
SMALL = {"widths": [16, 32, 64, 128], "blocks": [1, 1, 1, 1]}
RESNET34 = {"widths": [64, 128, 256, 512], "blocks": [3, 4, 6, 3]}
ROWS = {
    "C": dict(data_source="C", arch=COMPACT),
    "S": dict(data_source="S", arch=COMPACT, frame_dist_file=str(STUDY / "music21_stats.json")),
    "P6": dict(data_source="P", n_mean=6.0, arch=COMPACT),
    "P0": dict(data_source="P", n_mean=0.0, arch=COMPACT),
    "P2": dict(data_source="P", n_mean=2.0, arch=COMPACT),
    "P2-published-aug": dict(data_source="P", n_mean=2.0, arch=COMPACT, piano_augment=False),
    "R": dict(data_source="R", arch=COMPACT, train_data_path=str(STUDY / "music21_frames.json")),
    "P2-small": dict(data_source="P", n_mean=2.0, arch=SMALL),
    "P2-transcription": dict(data_source="P", n_mean=2.0, arch=COMPACT, transcription_augment=True),
    "P2-resnet34": dict(data_source="P", n_mean=2.0, arch=RESNET34),
    "P2-melody": dict(data_source="P", n_mean=2.0, arch=COMPACT, melody_pairs=0.5),
}


def make_data() -> None:
    """Frames of the music21 corpus pieces of the benchmark library (ASAP overlap already
    left out by build_library.py) → R frames JSON and S statistics. The frames are the ones
    the library stored (exact score grouping), so nothing is parsed twice; the public API
    ``preprocess_and_save_midi_data`` / ``extract_frame_distributions`` gives the same from
    the files."""
    from midizero_app.core.library import Library
    from midizero_app.core.training.datagen import frame_distributions

    STUDY.mkdir(parents=True, exist_ok=True)
    lib = Library(CACHE / "asap-library")
    data = {}
    for p in lib.pieces("ok"):
        if "/music21/corpus/" in p["path"]:
            data[p["path"].split("/corpus/", 1)[1]] = [list(c) for c in lib.frames_of(p["id"]).chords()]
    lib.close()
    (STUDY / "music21_frames.json").write_text(json.dumps(data))
    frame_distributions(data.values(), STUDY / "music21_stats.json")
    print(f"{len(data)} corpus pieces, {sum(map(len, data.values()))} frames")


def run_row(name: str, steps: int, n: int) -> dict:
    import torch

    from benchmarks.common import (asap_dir, evaluate_encoder, library_frames, load_performances,
                                   make_queries)
    from midizero_app.core.encoder import Embedder
    from midizero_app.core.training.train import TrainConfig, train

    torch.set_num_threads(2)
    spec = dict(ROWS[name])
    arch = {**spec.pop("arch"), "dim": 128, "win_length": 10}
    out = STUDY / name
    cfg = TrainConfig(**spec, arch=arch, batch_size=256, lr=1e-3, lr_min=1e-5, epochs=1,
                      samples_per_epoch=steps * 256, seed=0, device="cpu", out_dir=str(out))
    t = time.perf_counter()
    model_path = train(cfg)
    train_s = time.perf_counter() - t
    asap = asap_dir()
    perfs = load_performances(asap)
    queries = {L: make_queries(perfs, L, n, 500 + int(L)) for L in (5.0, 10.0, 20.0)}
    emb = Embedder(model_path)  # onnxruntime when exported, as the app runs it
    res = evaluate_encoder(emb, library_frames(asap), queries)
    row = {"row": name, "params": json.loads(model_path.with_suffix(".json").read_text())[
        "n_parameters"], "steps": steps, "train_s": round(train_s), "runtime": emb.runtime, **res}
    print(json.dumps(row), flush=True)
    with open(STUDY / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", nargs="*")
    ap.add_argument("--data", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    if args.list:
        print("\n".join(f"{k}: {v}" for k, v in ROWS.items()))
    if args.data:
        make_data()
    for name in args.rows:
        run_row(name, args.steps, args.n)


if __name__ == "__main__":
    main()
