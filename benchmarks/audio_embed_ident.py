"""Piece identification by the audio branch alone: audio windows embedded straight into the
library index's space, searched with the existing kNN and offset-consistent voting.

    nice python -m benchmarks.audio_embed_ident [--teacher W.safetensors|E.onnx] [--n 50]
        [--lengths 5 10 20] [--library benchmarks/.cache/asap-library] [--seed 0]

``--teacher``: the model to measure — weights (run by torch, or by their checked export)
or an ONNX export with its card (run without torch); default the bundled
``models/audio-branch.onnx``.

The excerpts are audio_bench's test half (benchmarks/audio_excerpts.py: the same seeds,
TimGM6mb, a random room and 20 dB noise). Each excerpt's log spectrogram is cut into one
snippet per onset found in it and embedded by the teacher model
(:meth:`midizero_app.audio.branch.model.AudioEmbedder.embed_recording`, the card's
mapping); ``Library.knn`` finds the nearest library windows; :class:`midizero_app.core.search.VoteAccumulator` votes with the onset
numbers as query frames. Top-1 and MRR@10 by piece (``benchmarks.common.grade_key``). The
same excerpts' true notes, grouped and searched through the same kNN and voting, give the
ceiling the audio branch aims at (the encoder's own windows).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.audio_excerpts import SR, make_excerpts
from benchmarks.common import CACHE, asap_dir, asap_performances, dev_test_split, grade_key, \
    piece_key
from midizero_app.audio.branch.runtime import OnnxAudioBranch
from midizero_app.audio.render import Renderer, timgm6mb
from midizero_app.core.frames import group_performance
from midizero_app.core.library import Library
from midizero_app.core.search import VoteAccumulator
from midizero_app.core.windows import QUERY_HOP, make_windows

K = 10  # nearest library windows per query window (the app's default kNN breadth order)


def rank_pieces(lib: Library, emb: np.ndarray, q_frames: np.ndarray, k: int) -> list[str]:
    """Grading keys of the top 10 pieces for query embeddings ``emb`` (n, 128) whose
    windows start at query frames ``q_frames`` (n,)."""
    if not len(emb):
        return []
    labels, sims = lib.knn(np.ascontiguousarray(emb, np.float32), k)
    lp, lf = lib.label_maps
    acc = VoteAccumulator(lp, lf, aggregate="vote")
    acc.add(q_frames, labels, sims)
    return [grade_key(lib.piece(c.piece)["path"]) for c in acc.rank(10)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.audio_embed_ident",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", default=None,
                    help="teacher model weights (.safetensors) or export (.onnx); default the "
                         "bundled models/audio-branch.onnx")
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=50, help="excerpts per length")
    ap.add_argument("--lengths", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--k", type=int, default=K)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP not found ($MIDIZERO_ASAP or ../shared/data/asap)")
    if a.teacher is None or a.teacher.endswith(".onnx"):
        emb_model = OnnxAudioBranch(a.teacher)
        a.teacher = str(emb_model.path)
    else:
        from midizero_app.audio.branch.model import AudioEmbedder

        emb_model = AudioEmbedder(a.teacher)
    mapping = emb_model.arch.get("mapping", "fixed")
    lib = Library(a.library)
    if emb_model.card.get("teacher_model_id") != lib.model_id:
        print(f"warning: {Path(a.teacher).name} was trained on encoder "
              f"{emb_model.card.get('teacher_model_id')}, the library holds {lib.model_id}")
    _, test = dev_test_split(asap)
    perfs = [p for p in asap_performances(asap) if piece_key(p.parent) in test]
    renderer = Renderer(timgm6mb(), SR)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}; "
          f"{Path(a.teacher).name} ({emb_model.runtime}, mapping {mapping}), library "
          f"{a.library}, k={a.k}")
    print("| length | n | route | Top-1 | MRR@10 | windows/excerpt | RTF (embed) |")
    print("|---|---|---|---|---|---|---|")
    for length in a.lengths:
        exs = make_excerpts(perfs, length, a.n, a.seed + int(length * 10) + 7919, renderer)
        res = {"audio embedding": [], "true notes (ceiling)": []}
        n_win, cpu = [], 0.0
        for ex in exs:
            key = piece_key(ex.perf.parent)
            c = time.process_time()
            emb, q, _ = emb_model.embed_recording(ex.audio, SR)
            cpu += time.process_time() - c
            n_win.append(len(q))
            res["audio embedding"].append(rank_pieces(lib, emb, q, a.k) + [None])
            wins, starts = make_windows(group_performance(ex.ref), QUERY_HOP)
            res["true notes (ceiling)"].append(
                rank_pieces(lib, lib.embedder.embed(wins), starts, a.k) + [None])
            for name in res:
                keys = res[name][-1]
                res[name][-1] = keys.index(key) + 1 if key in keys else None
        for name, ranks in res.items():
            top1 = np.mean([r == 1 for r in ranks])
            mrr = np.mean([1 / r if r else 0 for r in ranks])
            extra = (f"{np.mean(n_win):.0f} | {cpu / (len(exs) * length):.4f}"
                     if name == "audio embedding" else "– | –")
            print(f"| {length:g} s | {len(exs)} | {name} | {top1:.3f} | {mrr:.3f} | {extra} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
