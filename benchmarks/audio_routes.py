"""Audio queries by each route — transcription, the audio branch's embedding, both fused —
on the same rendered excerpts, with "not in your library" judged on pieces left out.

    nice python -m benchmarks.audio_routes collect --half dev|test [--n 100]
    nice python -m benchmarks.audio_routes fit        # the embedding route's confidence, dev
    nice python -m benchmarks.audio_routes report --half dev|test [--fusion all]
    nice python -m benchmarks.audio_routes collect|report --half test --program 48 \
        --n 50 --lengths 10      # another General MIDI instrument, pieces in the library

``collect`` renders audio_bench's excerpts of one half (dev FluidR3_GM, test TimGM6mb; a
seeded room and 20 dB noise; benchmarks/audio_excerpts.py) — ``--n`` of pieces in the
library and ``--n`` of pieces left out of it, per length (5 / 10 / 20 s) — and keeps what
each route reads from them: the transcribed notes and the audio branch's window embeddings
(``benchmarks/.cache/audio-routes-<half>.npz``; CPU seconds of each route too). The pieces
left out are those benchmarks/audio_not_in_library.py removes (a seeded half of the half's
pieces, seed 123 dev / 456 test), from a copy of the benchmark library.

``fit`` fits the embedding route's confidence on the dev half (logistic weights over the
features of :mod:`midizero_app.core.search`, thresholds per length that flag
``--flag-rate`` of out-of-library queries) and writes it into ``models/audio-branch.json``.

``report`` searches every kept query by every route in the copy without the left-out pieces
(:func:`midizero_app.audio.routes.search_audio`, the app's code) and prints Top-1,
Top-1 unflagged and out-of-library flagged per route and length. ``--fusion all`` also
prints the fusion rules :mod:`midizero_app.audio.routes` offers, for choosing one on dev.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.audio_excerpts import SR, make_excerpts
from benchmarks.common import (CACHE, asap_dir, asap_performances, copy_library, dev_test_split,
                               grade_key, piece_key)

LENGTHS = (5.0, 10.0, 20.0)
SEEDS = {"dev": 123, "test": 456}     # audio_not_in_library's held-out halves


def left_out(half: str) -> tuple[set[str], set[str]]:
    """(pieces of ``half`` kept in the library, pieces left out) — audio_not_in_library's
    seeded choice."""
    dev, test = dev_test_split(asap_dir())
    pieces = dev if half == "dev" else test
    keys = sorted(pieces)
    removed = set(np.random.default_rng(SEEDS[half]).choice(keys, len(keys) // 2,
                                                            replace=False).tolist())
    return pieces - removed, removed


def cache_path(half: str, program: int = 0) -> Path:
    return CACHE / f"audio-routes-{half}{f'-p{program}' if program else ''}.npz"


def collect(half: str, n: int, program: int = 0, lengths=LENGTHS,
            classes=(False, True)) -> None:
    """Render and read the excerpts (``program``: the General MIDI instrument they are
    rendered with, 0 the piano; ``classes``: out-of-library and/or in-library ones)."""
    from midizero_app.audio.branch.runtime import shared_branch
    from midizero_app.audio.render import FLUID_R3, Renderer, timgm6mb
    from midizero_app.audio.transcribe import transcribe_events, warm_up

    warm_up()
    branch = shared_branch()
    kept, removed = left_out(half)
    sf2 = FLUID_R3 if half == "dev" else timgm6mb()
    renderer = Renderer(sf2, SR)
    if program:
        renderer.synth.program_select(0, renderer.sfid, 0, program)
    perfs = asap_performances(asap_dir())
    rows = {c: [] for c in ("length", "is_in", "key", "n_notes", "n_win", "cpu_tr", "cpu_emb")}
    onset, pitch, emb, starts = [], [], [], []
    t_start = time.time()
    for i, length in enumerate(LENGTHS):
        if length not in lengths:
            continue
        for is_in, group, seed in ((False, removed, 3000), (True, kept, 4000)):
            if is_in not in classes:
                continue
            pp = [p for p in perfs if piece_key(p.parent) in group]
            for ex in make_excerpts(pp, length, n, seed + i + (0 if half == "dev" else 500),
                                    renderer):
                c = time.process_time()
                notes = transcribe_events(ex.audio, SR).to_notes()
                c2 = time.process_time()
                e, q, _ = branch.embed_recording(ex.audio, SR)
                c3 = time.process_time()
                for col, v in (("length", length), ("is_in", is_in),
                               ("key", piece_key(ex.perf.parent)), ("n_notes", len(notes)),
                               ("n_win", len(q)), ("cpu_tr", c2 - c), ("cpu_emb", c3 - c2)):
                    rows[col].append(v)
                onset.append(notes.onset)
                pitch.append(notes.pitch)
                emb.append(e.astype(np.float32))
                starts.append(q)
            print(f"{half} {length:g} s {'in' if is_in else 'out'}: {len(rows['key'])} "
                  f"excerpts, {time.time() - t_start:.0f} s", flush=True)
    np.savez(cache_path(half, program), **{c: np.array(v) for c, v in rows.items()},
             onset=np.concatenate(onset), pitch=np.concatenate(pitch),
             emb=np.concatenate(emb), starts=np.concatenate(starts),
             model_id=np.array(branch.model_id), sf2=np.array(Path(sf2).name),
             program=np.array(program))


def load(half: str, program: int = 0) -> tuple[dict, list]:
    """The kept rows and per-query (Notes, embeddings, onset numbers)."""
    from midizero_app.core.scores import Notes

    with np.load(cache_path(half, program)) as z:
        d = {k: z[k] for k in z.files}
    cut_n = np.r_[0, np.cumsum(d["n_notes"])]
    cut_w = np.r_[0, np.cumsum(d["n_win"])]
    queries = [(Notes(d["onset"][a:b].astype(np.float64), d["pitch"][a:b], format="audio"),
                d["emb"][c:e], d["starts"][c:e])
               for a, b, c, e in zip(cut_n[:-1], cut_n[1:], cut_w[:-1], cut_w[1:])]
    return d, queries


def holdout_library(half: str):
    from midizero_app.core.library import Library

    copy = CACHE / f"audio-routes-{half}-library"
    _, removed = left_out(half)
    if not (copy / "library.sqlite").is_file():
        copy_library(CACHE / "asap-library", copy)
        lib = Library(copy)
        lib.remove(*[p["path"] for p in lib.pieces() if grade_key(p["path"]) in removed])
        lib.close()
    lib = Library(copy)
    lib.load_index()
    return lib


def run_routes(lib, d: dict, queries: list, routes=("transcribe", "embed"),
               calibration=None) -> dict[str, list[dict]]:
    """Each route's result (:func:`midizero_app.audio.routes.search_audio`) per query."""
    from midizero_app.audio.routes import AudioQuery, search_audio

    out = {r: [] for r in routes}
    for notes, e, q in queries:
        aq = AudioQuery(notes=notes, emb=e, starts=q)
        for r in routes:
            out[r].append(search_audio(lib, aq, r, top=10, calibration=calibration))
    return out


def top_key(res: dict) -> str:
    return grade_key(res["results"][0]["path"]) if res["results"] else ""


def table(d: dict, results: dict[str, list[dict]], title: str) -> None:
    lengths = [x for x in LENGTHS if (d["length"] == x).any()]
    print(f"\n{title}\n")
    print("| route | " + " | ".join(f"{x:g} s: Top-1 / unflagged / out flagged"
                                    for x in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for name, res in results.items():
        cells = []
        right = np.array([top_key(r) == k for r, k in zip(res, d["key"])])
        flag = np.array([r["not_in_library"] for r in res])
        for length in lengths:
            m_in = (d["length"] == length) & d["is_in"]
            m_out = (d["length"] == length) & ~d["is_in"]
            out = f"{flag[m_out].mean():.3f}" if m_out.any() else "–"
            cells.append(f"{right[m_in].mean():.3f} / {(right & ~flag)[m_in].mean():.3f} / "
                         f"{out}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def fit(flag_rate: float, out: Path) -> None:
    """The embedding route's calibration from the dev half, written into ``out``'s card."""
    from scripts.fit_texture_confidence import fit_logistic

    from midizero_app.audio.routes import embedding_features
    from midizero_app.core.search import FEATURES, Calibration

    d, queries = load("dev")
    lib = holdout_library("dev")
    use = [i for i, f in enumerate(FEATURES) if f != "notes"]  # the route has no notes
    calib = None
    for _ in range(2):  # the second pass orders the candidates as the search then will
        x, right = [], []
        for (_, e, q), key in zip(queries, d["key"]):
            feats, pid = embedding_features(lib, e, q, calibration=calib)
            x.append(feats)
            right.append(pid is not None and grade_key(lib.piece(pid)["path"]) == key)
        x = np.array(x)
        y = np.array(right) & d["is_in"]
        w = fit_logistic(x[:, use], y.astype(float))
        weights = dict.fromkeys(FEATURES, 0.0)
        for i, wi in zip(use, w[:-1]):
            weights[FEATURES[i]] = float(wi)
        calib = Calibration(**{f"w_{k}": v for k, v in weights.items()}, bias=float(w[-1]))
    lib.close()
    prob = np.array([calib.confidence(tuple(r)) for r in x])  # threshold 0.5, unshifted
    thresholds = []
    for length in LENGTHS:
        m = d["length"] == length
        thresholds.append([float(np.median(d["n_win"][m])),
                           float(np.quantile(prob[m & ~d["is_in"]], flag_rate))])
    card = json.loads(out.read_text(encoding="utf-8"))
    card["calibration"] = {**{f"w_{k}": round(v, 6) for k, v in weights.items()},
                           "bias": round(float(w[-1]), 6), "threshold": 0.5,
                           "thresholds": [[round(a, 1), round(b, 6)] for a, b in thresholds],
                           "fitted_on": f"ASAP dev half, {int((~d['is_in']).sum())} out-of-"
                                        f"library and {int(d['is_in'].sum())} in-library "
                                        f"excerpts of 5/10/20 s rendered with {d['sf2']} "
                                        f"(room, 20 dB noise); flags {flag_rate:g} of the "
                                        "out-of-library ones per length "
                                        "(python -m benchmarks.audio_routes fit)"}
    from midizero_app.core.atomic import write_text

    write_text(out, json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["calibration"], indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.audio_routes",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=("collect", "fit", "report"))
    ap.add_argument("--half", choices=("dev", "test"), default="dev")
    ap.add_argument("--n", type=int, default=100, help="excerpts per length and class")
    ap.add_argument("--flag-rate", type=float, default=0.96)
    ap.add_argument("--card", default="models/audio-branch.json")
    ap.add_argument("--fusion", choices=("default", "all"), default="default")
    ap.add_argument("--program", type=int, default=0,
                    help="General MIDI instrument to render with (0 piano; 19 church organ, "
                         "24 nylon guitar, 48 string ensemble): in-library excerpts only")
    ap.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS))
    a = ap.parse_args(argv)
    if asap_dir() is None:
        sys.exit("ASAP not found ($MIDIZERO_ASAP or ../shared/data/asap)")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
          f"{a.step} {a.half}", flush=True)
    if a.step == "collect":
        collect(a.half, a.n, a.program, a.lengths,
                (True,) if a.program else (False, True))
        return 0
    if a.step == "fit":
        fit(a.flag_rate, Path(a.card))
        return 0
    from midizero_app.audio.routes import FUSIONS, fuse

    d, queries = load(a.half, a.program)
    lib = holdout_library(a.half)
    res = run_routes(lib, d, queries)
    names = FUSIONS if a.fusion == "all" else (None,)
    for name in names:
        res[f"both ({name or 'default'})"] = [fuse(t, e, name) for t, e in
                                              zip(res["transcribe"], res["embed"])]
    lib.close()
    n_in, n_out = (int((d["is_in"] == c).sum() // len(set(d["length"]))) for c in (True, False))
    table(d, res, f"{a.half} half ({d['sf2']}, GM program {int(d.get('program', 0))}, room, "
                  f"20 dB noise), {n_in} in-library and {n_out} out-of-library excerpts per "
                  "length; library without the left-out pieces")
    print("\n| length | CPU × real time: transcription | embedding |\n|---|---|---|")
    for length in LENGTHS:
        m = d["length"] == length
        if not m.any():
            continue
        print(f"| {length:g} s | {d['cpu_tr'][m].sum() / (m.sum() * length):.4f} | "
              f"{d['cpu_emb'][m].sum() / (m.sum() * length):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
