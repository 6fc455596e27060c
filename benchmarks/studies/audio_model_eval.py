"""Study: encoders on transcribed audio — the model study's exact-kNN ASAP comparison, with
queries transcribed from rendered audio instead of performance MIDI.

    python -m benchmarks.studies.audio_model_eval runs/a/model.pt runs/b/model.pt [--n 150]

Excerpts as the audio benchmark makes them (benchmarks/audio_excerpts.py: seeded random
ASAP performance excerpts; dev half rendered with FluidR3, test half with TimGM6mb; room
and 20 dB noise), transcribed once (basic-pitch ONNX, the app's note creation) and cached
under benchmarks/.cache/audio-queries/, so every checkpoint meets the same notes. Each
checkpoint: the 235 ASAP scores embedded, exact kNN, offset voting
(``common.evaluate_encoder``), Top-1 / MRR@10 per half and length, from the
transcription (τ = AUDIO_TAU) and from the excerpt's own MIDI notes.

Found (2026-11-27, 2-core x86_64 VM, ``--n 150``; models/README.md), Top-1:

| checkpoint | 5 s audio, dev / test | 5 s MIDI, dev / test | 10 s audio, dev / test |
|---|---|---|---|
| P2 (300 steps) | 0.873 / 0.867 | 0.980 / 0.927 | 0.993 / 0.987 |
| P2 + transcription-error positives (300 steps) | 0.913 / 0.900 | 0.987 / 0.953 | 0.993 / 0.993 |
| P2, 5,000 steps (the texture-only default) | 0.933 / 0.920 | 0.993 / 0.953 | 1.000 / 0.993 |
| P2 + transcription errors, 5,000 steps | 0.947 / 0.940 | 0.993 / 0.960 | 1.000 / 1.000 |

At equal budget the transcription errors in the positives are worth +3 to +4 points on
5 s audio and cost nothing on MIDI; the 5,000-step run with them is the bundled model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.audio_excerpts import SR, make_excerpts
from benchmarks.common import (CACHE, Query, asap_dir, asap_performances, dev_test_split,
                               evaluate_encoder, library_frames, piece_key)
from midizero_app.audio.render import FLUID_R3, Renderer, timgm6mb
from midizero_app.audio.transcribe import AUDIO_TAU, transcribe_events
from midizero_app.core.encoder import Embedder
from midizero_app.core.frames import group_performance
from midizero_app.core.scores import Notes


def transcribed(half: str, pieces: set[str], length: float, n: int, seed: int):
    """(perf path, start, audio notes, MIDI notes) per excerpt, cached as .npz."""
    path = CACHE / "audio-queries" / f"{half}-{length:g}s-{n}-{seed}.npz"
    if not path.is_file():
        sf2 = FLUID_R3 if half == "dev" else timgm6mb()
        perfs = [p for p in asap_performances(asap_dir()) if piece_key(p.parent) in pieces]
        exs = make_excerpts(perfs, length, n, seed, Renderer(sf2, SR))
        rows = []
        for ex in exs:
            ev = transcribe_events(ex.audio, SR).to_notes()
            rows.append((str(ex.perf), ex.start, ev.onset, ev.pitch, ex.ref.onset, ex.ref.pitch))
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for i, (perf, start, ao, ap, mo, mp) in enumerate(rows):
            arrays.update({f"{i}_perf": np.array(perf), f"{i}_start": np.array(start),
                           f"{i}_ao": ao, f"{i}_ap": ap, f"{i}_mo": mo, f"{i}_mp": mp})
        np.savez(path, n=np.array(len(rows)), **arrays)
    with np.load(path, allow_pickle=False) as z:
        return [(Path(str(z[f"{i}_perf"])), float(z[f"{i}_start"]),
                 Notes(z[f"{i}_ao"], z[f"{i}_ap"]), Notes(z[f"{i}_mo"], z[f"{i}_mp"]))
                for i in range(int(z["n"]))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=150, help="excerpts per half and length")
    ap.add_argument("--lengths", type=float, nargs="+", default=[5.0, 10.0])
    ap.add_argument("--seed", type=int, default=9)
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found")
    dev, test = dev_test_split(asap)
    queries = {}
    for half, pieces in (("dev", dev), ("test", test)):
        for length in args.lengths:
            rows = transcribed(half, pieces, length, args.n, args.seed + int(length))
            for src in ("audio", "MIDI"):
                queries[(half, length, src)] = [
                    Query(perf, piece_key(perf.parent), start, length,
                          group_performance(a if src == "audio" else m, AUDIO_TAU), None)
                    for perf, start, a, m in rows]
    lib = library_frames(asap)
    print("| model | half | length | from | Top-1 | MRR@10 |")
    print("|---|---|---|---|---|---|")
    sets = list(queries.items())
    for model in args.models:
        # one evaluate_encoder call (the library embedded once); its keys just number the sets
        res = evaluate_encoder(Embedder(model), lib, {i: qs for i, (_, qs) in enumerate(sets, 1)})
        for i, ((half, length, src), _) in enumerate(sets, 1):
            print(f"| {Path(model).parent.name}/{Path(model).name} | {half} | {length:g} s | "
                  f"{src} | {res[f'top1@{i}s']:.3f} | {res[f'mrr@{i}s']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
