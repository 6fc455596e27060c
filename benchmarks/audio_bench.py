"""Audio identification: identify rendered ASAP performance excerpts from audio.

    nice -n 10 python -m benchmarks.audio_bench [--n 250] [--lengths 5 10 20]
        [--halves dev test] [--taus 0.05] [--library benchmarks/.cache/asap-library]

Per half of the ASAP pieces (``common.dev_test_split``: dev = even positions, test = odd), seeded
random excerpts of the real performances are rendered with a real piano SoundFont — dev:
FluidR3 (Debian fluid-soundfont-gm), test: TimGM6mb (pretty_midi) — the sustain pedal held,
through a seeded random room (pedalboard's reverb) with white noise at 20 dB SNR. Each
excerpt is then identified twice on the same library: from its transcription (the audio
path) and from its own MIDI notes (the MIDI path, τ = 0.05 s). Prints Top-1 (and unflagged),
MRR@10, position within 2 s, note-onset F1 of the transcription (mir_eval, 50 ms) and the
transcription real-time factor (seconds of CPU per second of audio, this process).
``--taus`` evaluates the audio path with several grouping thresholds from one transcription.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.audio_excerpts import (MIDI_TAU, SR, Excerpt, make_excerpts, perf_time_map,
                                       render_recordings)
from benchmarks.common import (CACHE, Query, asap_dir, asap_performances, dev_test_split, evaluate,
                               grade_key, piece_key)
from midizero_app.audio.note_creation import NoteParams
from midizero_app.audio.render import FLUID_R3, Renderer, timgm6mb
from midizero_app.audio.transcribe import AUDIO_SEARCH, AUDIO_TAU, transcribe_events, warm_up
from midizero_app.core.frames import group_performance
from midizero_app.core.library import Library
from midizero_app.core.scores import Notes


def onset_f1(ex: Excerpt, est_on: np.ndarray, est_off: np.ndarray, est_pitch: np.ndarray
             ) -> tuple[float, float, float]:
    """Note-onset precision, recall, F1 (mir_eval, 50 ms, offsets ignored)."""
    import mir_eval

    def hz(p):
        return 440.0 * 2 ** ((np.asarray(p, np.float64) - 69) / 12)

    ref_iv = np.stack([ex.ref.onset, np.maximum(ex.ref_offset, ex.ref.onset + 0.01)], 1)
    est_iv = np.stack([est_on, np.maximum(est_off, est_on + 0.01)], 1) if len(est_on) else \
        np.zeros((0, 2))
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, hz(ex.ref.pitch), est_iv, hz(est_pitch), onset_tolerance=0.05,
        offset_ratio=None)
    return p, r, f


def run_half(lib: Library, half: str, pieces: set[str], lengths: list[float], n: int,
             seed: int, taus: list[float], params: NoteParams) -> None:
    asap = asap_dir()
    sf2 = FLUID_R3 if half == "dev" else timgm6mb()
    renderer = Renderer(sf2, SR)
    perfs = [p for p in asap_performances(asap) if piece_key(p.parent) in pieces]
    for length in lengths:
        t = time.perf_counter()
        exs = make_excerpts(perfs, length, n, seed + int(length * 10) + (0 if half == "dev"
                                                                          else 7919), renderer)
        t_render = time.perf_counter() - t
        cpu, prf, events = 0.0, [], []
        for ex in exs:
            c = time.process_time()
            ev = transcribe_events(ex.audio, SR, params=params)
            cpu += time.process_time() - c
            events.append(ev)
            prf.append(onset_f1(ex, ev.onset, ev.offset, ev.pitch))
        rtf = cpu / (len(exs) * length)

        def queries(notes_of, tau):
            return [Query(ex.perf, piece_key(ex.perf.parent), ex.start, length,
                          group_performance(notes_of(i), tau), ex.score_time)
                    for i, ex in enumerate(exs)]

        rows = [("MIDI", evaluate(lib, queries(lambda i: exs[i].ref, MIDI_TAU), "vote"))]
        for tau in taus:
            rows.append((f"audio τ={tau:g}",
                         evaluate(lib, queries(lambda i: events[i].to_notes(), tau), "vote")))
        p, r, f = np.mean(prf, axis=0)
        for name, res in rows:
            print(f"| {half} ({sf2.stem}) | {length:g} s | {name} | {res['top1']:.3f} | "
                  f"{res['top1_unflagged']:.3f} | {res['mrr10']:.3f} | {res['flagged']:.3f} | "
                  f"{res['pos2s']:.3f} (n={res['n_pos']}) | "
                  + (f"{p:.3f} / {r:.3f} / {f:.3f} | {rtf:.4f} |" if name != "MIDI" else
                     "– | – |") + f" {res['ms_median']:.0f} |", flush=True)
        print(f"<!-- {half} {length:g} s: {len(exs)} excerpts rendered in {t_render:.1f} s -->",
              flush=True)


def stream_run(lib: Library, pieces: set[str], n: int, seed: int, length: float = 30.0,
               block: int = 1024) -> None:
    """The microphone path fed from rendered files as fast as it runs: ``n`` seeded
    ``length``-s excerpts (dev half, FluidR3, room, noise) through the streaming
    transcriber into a live session on the audio clock (simulated timers, as
    live/replay.simulate). Prints the median time to identify (audio seconds from the first
    note until the right piece is first and stays first; never: ∞) and the compute time of
    a streaming step (each step transcribes a chunk and brings ``hop`` s of new audio)."""
    from midizero_app.audio.stream import StreamingTranscriber
    from midizero_app.live.session import LiveSession

    asap = asap_dir()
    perfs = [p for p in asap_performances(asap) if piece_key(p.parent) in pieces]
    exs = make_excerpts(perfs, length, n, seed + 4242, Renderer(FLUID_R3, SR))
    t_id, step_ms = [], []
    for ex in exs:
        updates: list[dict] = []
        session = LiveSession(lib, on_update=updates.append, name="stream", **AUDIO_SEARCH)
        stream = StreamingTranscriber(SR, session.step_note)
        for i in range(0, len(ex.audio), block):
            t, k = time.perf_counter(), stream.steps
            stream.push(ex.audio[i:i + block])
            if stream.steps > k:
                step_ms.append((time.perf_counter() - t) * 1000)
            _fire_timers(session, stream.clock())
        stream.flush()
        _fire_timers(session, stream.clock())
        session.step_end(stream.clock())
        key = piece_key(ex.perf.parent)
        right = [bool(u["results"]) and grade_key(u["results"][0]["path"]) == key for u in updates]
        since = next((i for i in range(len(right)) if all(right[i:])), None)
        t_id.append(updates[since]["t"] if since is not None else float("inf"))
    t_id_a = np.array(t_id)
    print(f"| stream | {length:g} s excerpts | n={len(exs)} | identified "
          f"{np.mean(np.isfinite(t_id_a)):.3f} | median time to identify "
          f"{np.median(t_id_a):.1f} s | p75 {np.percentile(t_id_a, 75):.1f} s | step compute "
          f"median {np.median(step_ms):.0f} ms, p95 {np.percentile(step_ms, 95):.0f} ms, "
          f"max {np.max(step_ms):.0f} ms | hop {stream.hop / 22050:g} s, margin "
          f"{stream.margin_s:g} s |", flush=True)


def score_to_recording(n_perf: int, n_queries: int, seed: int, length: float = 10.0) -> None:
    """Score → recording: ``n_perf`` whole ASAP performances (one per piece first, seeded;
    dev pieces rendered with FluidR3, test pieces with TimGM6mb; room and noise) indexed as
    recordings in a library of their own (benchmarks/.cache/recordings-library); queries
    are ``length``-s excerpts of those pieces' score MIDIs (exact grouping). Prints how
    often a recording of the right piece comes first and, for those, how often the time
    in that recording is within 3 s (beat annotations map score time to performance time).
    """
    import soundfile as sf

    from midizero_app.core.encoder import default_model_path
    from midizero_app.core.frames import group_score
    from midizero_app.core.query import search_library
    from midizero_app.core.scores import load_notes

    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    recordings = render_recordings(n_perf, seed, rng)
    chosen = list(recordings.values())
    t_render = time.perf_counter() - t
    lib = Library(CACHE / "recordings-library", model=str(default_model_path()))
    t = time.perf_counter()
    report = lib.add([str(r) for r in recordings], workers=1)
    t_index = time.perf_counter() - t
    audio_s = sum(sf.info(r).duration for r in recordings)
    hits, pos_ok, n_pos = 0, 0, 0
    for q in range(n_queries):
        perf = chosen[int(rng.integers(len(chosen)))]
        score = load_notes(perf.parent / "midi_score.mid")
        start = float(rng.uniform(0, max(score.duration - length, 0.0)))
        m = (score.onset >= start) & (score.onset < start + length)
        ex = Notes(score.onset[m] - start, score.pitch[m], grid=score.grid[m])
        res = search_library(lib, group_score(ex), top=10)
        top = res["results"][0] if res["results"] else None
        if top is None or piece_key(recordings[Path(top["path"])].parent) != \
                piece_key(perf.parent):
            continue
        hits += 1
        to_perf = perf_time_map(recordings[Path(top["path"])])
        if to_perf is not None and top["positions"]:
            n_pos += 1
            pos_ok += abs(top["positions"][0]["seconds"] - to_perf(float(score.onset[m][0]))) \
                <= 3.0
    print(f"| score → recording | {len(recordings)} recordings of "
          f"{len({piece_key(p.parent) for p in chosen})} pieces ({audio_s / 3600:.1f} h; "
          f"rendered in {t_render:.0f} s, indexed in {t_index:.0f} s = "
          f"{t_index / audio_s:.4f} × real time, {len(report.failed)} failed) | {n_queries} "
          f"score excerpts of {length:g} s | right piece first {hits / n_queries:.3f} | "
          f"time within 3 s {pos_ok / max(n_pos, 1):.3f} (n={n_pos}) |", flush=True)
    lib.close()


def _fire_timers(session, until: float) -> None:
    deadline = session.next_deadline()
    while deadline is not None and deadline <= until:
        session.step_tick(deadline)
        deadline = session.next_deadline()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--n", type=int, default=250, help="excerpts per length and half")
    ap.add_argument("--lengths", type=float, nargs="*", default=[5, 10, 20])
    ap.add_argument("--halves", nargs="*", choices=("dev", "test"), default=["dev", "test"])
    ap.add_argument("--taus", type=float, nargs="+", default=[AUDIO_TAU])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--onset-thresh", type=float, default=NoteParams.onset_thresh)
    ap.add_argument("--frame-thresh", type=float, default=NoteParams.frame_thresh)
    ap.add_argument("--melodia", action="store_true", help="basic-pitch's melodia trick on")
    ap.add_argument("--stream", type=int, default=0, metavar="N",
                    help="also run the streaming (microphone) path on N 30 s excerpts")
    ap.add_argument("--recordings", type=int, nargs=2, default=None, metavar=("PERFS", "QUERIES"),
                    help="also run score → recording with PERFS whole performances indexed "
                         "as recordings and QUERIES score excerpts")
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    if "dev" in args.halves and not FLUID_R3.is_file():
        sys.exit(f"{FLUID_R3} missing: apt-get install fluid-soundfont-gm")
    params = NoteParams(onset_thresh=args.onset_thresh, frame_thresh=args.frame_thresh,
                        melodia_trick=args.melodia)
    lib = Library(args.library)
    lib.load_index()
    warm_up()
    st = lib.stats()
    print(f"# Audio benchmark {date.today()} on {platform.node()} ({platform.machine()}), "
          f"model {st['model_id']}, library {st['ok']} pieces / {st['windows']} windows; "
          f"{args.n} excerpts per length and half, seed {args.seed}, {params}")
    print("| half (SoundFont) | length | path | Top-1 | Top-1 unflagged | MRR@10 | flagged | "
          "pos ≤ 2 s | onset P / R / F1 | RTF | median ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    dev, test = dev_test_split(asap)
    for half in args.halves:
        run_half(lib, half, dev if half == "dev" else test, args.lengths, args.n, args.seed,
                 args.taus, params)
    if args.stream:
        stream_run(lib, dev, args.stream, args.seed)
    lib.close()
    if args.recordings:
        score_to_recording(*args.recordings, args.seed)


if __name__ == "__main__":
    main()
