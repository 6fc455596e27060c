"""The chroma route against the transcription route, and their fusion.

    nice -n 10 python -m benchmarks.chroma_bench [--n 250] [--standalone 50] [--rate 5]
    python -m benchmarks.chroma_bench --n 250 --reuse   # tables again from that run's records

The excerpts are audio_bench's own (benchmarks/audio_excerpts.py: same seeds, SoundFonts,
rooms and noise; dev half FluidR3, test half TimGM6mb). Each one is identified three ways on the same library:

- MIDI path: its performance notes, grouped (τ = 0.05 s), searched;
- transcription route: basic-pitch notes, grouped (τ = AUDIO_TAU), searched (the app's path);
- chroma route (Zalkow & Müller): the CTC chroma of the audio
  (:mod:`midizero_app.audio.chroma_route`),
  averaged to ``--rate`` frames per second, matched by subsequence DTW (librosa.sequence.dtw;
  steps (1,1), (2,1), (1,2): tempo 0.5–2 ×; cost 1 − cosine) against the chroma of every
  library piece's frames. The first ``--standalone`` excerpts per half and length are run
  against the whole library (seconds per query), all of them against the transcription
  route's top ten (the fusion).

Fusion: the transcription route's top ten are re-ordered by confidence − w · (DTW cost −
the best DTW cost of the ten); w is chosen on the dev half and reported on both. Records of
every query are saved per ``--n`` (benchmarks/.cache/chroma-records-n<N>.json, so a small
trial run does not replace a full one) and ``--reuse`` refits from them.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.audio_excerpts import MIDI_TAU, SR, make_excerpts, render_recordings
from benchmarks.common import (CACHE, asap_dir, asap_performances, dev_test_split, grade_key,
                               piece_key)
from benchmarks.melody_queries import line_frames
from midizero_app.audio import chroma_route as chroma
from midizero_app.audio.decode import resample
from midizero_app.audio.render import FLUID_R3, Renderer, timgm6mb
from midizero_app.audio.transcribe import AUDIO_TAU, transcribe_events, warm_up
from midizero_app.core.frames import group_performance, group_score
from midizero_app.core.library import Library
from midizero_app.core.melody import skyline
from midizero_app.core.query import search_library
from midizero_app.core.scores import load_notes

STEPS = np.array([[1, 1], [2, 1], [1, 2]])
STEP_WEIGHTS = np.array([1.0, 2.0, 2.0])  # the diagonal is cheaper: no tempo change


def records_path(n: int) -> Path:
    return CACHE / f"chroma-records-n{n}.json"


def subsequence_cost(q: np.ndarray, y: np.ndarray) -> float:
    """Best subsequence-DTW cost of query chroma ``q`` (12, N) anywhere in ``y`` (12, M),
    per query frame (inf if ``y`` is too short)."""
    import librosa

    if y.shape[1] < q.shape[1] // 2:
        return float("inf")
    D = librosa.sequence.dtw(C=1.0 - q.T @ y, subseq=True, step_sizes_sigma=STEPS,
                             weights_mul=STEP_WEIGHTS, backtrack=False)
    return float(D[-1].min()) / q.shape[1]


def library_chroma(lib: Library, rate: float) -> dict[int, np.ndarray]:
    return {p["id"]: chroma.frames_chroma(*_frames(lib, p["id"]), rate)
            for p in lib.pieces("ok") + lib.pieces("repaired")}


def _frames(lib: Library, pid: int):
    f = lib.frames_of(pid)
    return f.onset, f.offsets, f.pitches


def run(lib: Library, halves: list[str], lengths: list[float], n: int, standalone: int,
        rate: float, seed: int) -> list[dict]:
    asap = asap_dir()
    dev, test = dev_test_split(asap)
    ychroma = library_chroma(lib, rate)
    keys = {p["id"]: grade_key(p["path"]) for p in lib.pieces()}
    factor = int(round(chroma.FEATURE_RATE / rate))
    records = []
    for half in halves:
        pieces = dev if half == "dev" else test
        renderer = Renderer(FLUID_R3 if half == "dev" else timgm6mb(), SR)
        perfs = [p for p in asap_performances(asap) if piece_key(p.parent) in pieces]
        for length in lengths:
            # audio_bench.run_half's seeds: the very same excerpts
            exs = make_excerpts(perfs, length, n, seed + int(length * 10) +
                                (0 if half == "dev" else 7919), renderer)
            for i, ex in enumerate(exs):
                key = piece_key(ex.perf.parent)
                ev = transcribe_events(ex.audio, SR)
                res = search_library(lib, group_performance(ev.to_notes(), AUDIO_TAU), top=10)
                midi = search_library(lib, group_performance(ex.ref, MIDI_TAU), top=10)
                t = time.process_time()
                q = chroma.pool(chroma.audio_chroma(resample(ex.audio, SR, chroma.SAMPLE_RATE)),
                                factor)
                t_chroma = time.process_time() - t
                cands = [{"key": grade_key(r["path"]), "id": r["piece_id"],
                          "confidence": r["confidence"], "flag": res["not_in_library"],
                          "dtw": subsequence_cost(q, ychroma[r["piece_id"]])}
                         for r in res["results"]]
                rec = {"half": half, "length": length, "key": key, "cands": cands,
                       "midi_top": grade_key(midi["results"][0]["path"]) if midi["results"]
                       else None, "chroma_s": t_chroma}
                if i < standalone:
                    t = time.perf_counter()
                    best: dict[str, float] = {}
                    for pid, y in ychroma.items():
                        c = subsequence_cost(q, y)
                        best[keys[pid]] = min(best.get(keys[pid], np.inf), c)
                    order = sorted(best, key=best.get)
                    rec["chroma_rank"] = order.index(key) + 1 if key in order else None
                    rec["standalone_s"] = time.perf_counter() - t
                records.append(rec)
            print(f"<!-- {half} {length:g} s: {len(exs)} excerpts done -->", flush=True)
    return records


def fused_top(rec: dict, w: float) -> str | None:
    c = rec["cands"]
    if not c:
        return None
    finite = [x["dtw"] for x in c if np.isfinite(x["dtw"])]
    lo = min(finite) if finite else 0.0
    return max(c, key=lambda x: x["confidence"] - w * ((x["dtw"] if np.isfinite(x["dtw"])
                                                         else lo + 1.0) - lo))["key"]


WEIGHTS = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 1e6]


def report(records: list[dict]) -> None:
    dev = [r for r in records if r["half"] == "dev"]
    acc = {w: np.mean([fused_top(r, w) == r["key"] for r in dev]) for w in WEIGHTS}
    w_best = max(WEIGHTS, key=lambda w: (acc[w], -w))
    print("\nFusion weight by dev Top-1 (all lengths): "
          + ", ".join(f"w={w:g}: {a:.3f}" for w, a in acc.items()) + f" → w = {w_best:g}\n")
    print("| half | length | n | MIDI path | transcription route | chroma route alone "
          "(n, MRR) | chroma re-ranks the ten | fused (w = %g) | fused − MIDI (points) | "
          "chroma CPU s / query |" % w_best)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for half in ("dev", "test"):
        for length in sorted({r["length"] for r in records}):
            rs = [r for r in records if r["half"] == half and r["length"] == length]
            if not rs:
                continue
            midi = np.mean([r["midi_top"] == r["key"] for r in rs])
            tr = np.mean([fused_top(r, 0.0) == r["key"] for r in rs])
            rerank = np.mean([fused_top(r, 1e6) == r["key"] for r in rs])
            fused = np.mean([fused_top(r, w_best) == r["key"] for r in rs])
            alone = [r["chroma_rank"] for r in rs if "chroma_rank" in r]
            alone_s = (f"{np.mean([a == 1 for a in alone]):.3f} (n={len(alone)}, MRR "
                       f"{np.mean([1 / a if a else 0 for a in alone]):.3f}, "
                       f"{np.median([r['standalone_s'] for r in rs if 'standalone_s' in r]):.1f}"
                       f" s)" if alone else "–")
            print(f"| {half} | {length:g} s | {len(rs)} | {midi:.3f} | {tr:.3f} | {alone_s} | "
                  f"{rerank:.3f} | {fused:.3f} | {100 * (fused - midi):+.1f} | "
                  f"{np.median([r['chroma_s'] for r in rs]):.2f} |")
    for length in sorted({r["length"] for r in records}):
        rs = [r for r in records if r["length"] == length]
        midi = np.mean([r["midi_top"] == r["key"] for r in rs])
        tr = np.mean([fused_top(r, 0.0) == r["key"] for r in rs])
        fused = np.mean([fused_top(r, w_best) == r["key"] for r in rs])
        print(f"| both | {length:g} s | {len(rs)} | {midi:.3f} | {tr:.3f} | | | {fused:.3f} | "
              f"{100 * (fused - midi):+.1f} | |")


def theme_run(n_rec: int, n: int, lengths: list[int], rate: float, seed: int) -> None:
    """Theme → recording, both routes: the first ``n_rec`` of audio_bench's rendered whole
    performances (one per piece; the recordings of score → recording) as the library;
    themes are ``lengths`` consecutive notes of the top line (highest note of each score
    frame) of those pieces' score MIDIs from a random frame, in the original key.
    Transcription route: the tune searched like a played one (search_library: melody view,
    any key; one note every 0.3 s, rhythm plays no part). Chroma route: the theme's chroma
    with its score rhythm, subsequence DTW against each recording's CTC chroma, best of
    the 12 transpositions (any key) and in the original key. Graded by piece."""
    import soundfile as sf

    recordings = render_recordings(n_rec, 0, np.random.default_rng(0))  # score_to_recording's
    lib = Library(CACHE / f"theme-recordings-{n_rec}")
    lib.add([str(r) for r in recordings], workers=1)
    lib.load_index()
    folder = CACHE / "recording-chroma"
    folder.mkdir(exist_ok=True)
    factor = int(round(chroma.FEATURE_RATE / rate))
    ys, t_chroma, audio_s = {}, 0.0, 0.0
    for flac in recordings:
        cached = folder / (flac.stem + ".npy")
        if not cached.is_file():
            y, sr = sf.read(str(flac), dtype="float32", always_2d=True)
            t = time.process_time()
            np.save(cached, chroma.audio_chroma(resample(y.mean(1), sr, chroma.SAMPLE_RATE)))
            t_chroma += time.process_time() - t
            audio_s += len(y) / sr
        ys[flac] = chroma.pool(np.load(cached), factor)
    if audio_s:
        print(f"<!-- CTC chroma of {audio_s / 3600:.2f} h of recordings: "
              f"{t_chroma / audio_s:.4f} × real time (CPU) -->")
    rng = np.random.default_rng(seed)
    flacs = list(recordings)
    print(f"\n| theme → recording ({n_rec} recordings of {n_rec} pieces) | notes | n | "
          "transcription route Top-1 / MRR | chroma route, any key | chroma route, "
          "original key |")
    print("|---|---|---|---|---|---|")
    for length in lengths:
        ranks = {"tr": [], "any": [], "orig": []}
        while len(ranks["tr"]) < n:
            flac = flacs[int(rng.integers(len(flacs)))]
            f = group_score(load_notes(recordings[flac].parent / "midi_score.mid"))
            line, on = skyline(f).astype(np.int64), f.onset
            if len(line) < length + 1:
                continue
            a = int(rng.integers(len(line) - length))
            pitches, times = line[a:a + length], on[a:a + length + 1] - on[a]
            res = search_library(lib, line_frames(pitches), top=10)
            got = [Path(r["path"]) for r in res["results"]]
            ranks["tr"].append(got.index(flac) + 1 if flac in got else None)
            q = chroma.notes_chroma(times[:-1], times[1:], pitches, rate)
            for name, shifts in (("any", range(12)), ("orig", [0])):
                cost = {r: min(subsequence_cost(np.roll(q, s, axis=0), y) for s in shifts)
                        for r, y in ys.items()}
                order = sorted(cost, key=cost.get)
                ranks[name].append(order.index(flac) + 1)
        cells = [f"{np.mean([r == 1 for r in v]):.3f} / "
                 f"{np.mean([1 / r if r else 0 for r in v]):.3f}" for v in ranks.values()]
        print(f"| | {length} | {n} | " + " | ".join(cells) + " |", flush=True)
    lib.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=250, help="excerpts per length and half")
    ap.add_argument("--standalone", type=int, default=50,
                    help="excerpts per length and half also run against the whole library")
    ap.add_argument("--lengths", type=float, nargs="*", default=[5, 10, 20])
    ap.add_argument("--halves", nargs="*", choices=("dev", "test"), default=["dev", "test"])
    ap.add_argument("--rate", type=float, default=5.0, help="chroma frames per second")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="report from the saved records")
    ap.add_argument("--themes", type=int, nargs=2, default=None, metavar=("RECORDINGS", "N"),
                    help="only theme → recording: RECORDINGS recordings, N themes per length")
    args = ap.parse_args()
    if args.themes:
        theme_run(args.themes[0], args.themes[1], [8, 12, 16, 24], args.rate, args.seed)
        return
    if args.reuse:
        report(json.loads(records_path(args.n).read_text()))
        return
    if asap_dir() is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    lib = Library(args.library)
    lib.load_index()
    warm_up()
    st = lib.stats()
    print(f"# Chroma route {date.today()} on {platform.node()} ({platform.machine()}), "
          f"model {st['model_id']}, library {st['ok']} pieces; {args.n} excerpts per length "
          f"and half ({args.standalone} against the whole library), {args.rate:g} chroma "
          f"frames/s, CTC model {np.load(chroma.model_path())['model_id']}")
    records = run(lib, args.halves, args.lengths, args.n, args.standalone, args.rate, args.seed)
    lib.close()
    records_path(args.n).write_text(json.dumps(records))
    report(records)


if __name__ == "__main__":
    main()
