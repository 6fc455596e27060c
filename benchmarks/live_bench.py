"""Live identification: how fast does playing get identified, and does it last?

    python -m benchmarks.live_bench [--runs 300] [--seconds 30] [--long-minutes 30]
                                    [--split dev] [--library benchmarks/.cache/asap-library]

Replays ASAP performances from seeded random starting points through the live path
(``LiveSession`` on a simulated clock: the same frames, timer closes and query ends as in
real time, as fast as the search runs) against the benchmark library (build it first with
``python -m benchmarks.build_library``). Only performances of pieces in the library are used.

- Time to identify: seconds (and frames) of playing until the right piece is first and
  stays first to the end of the run; a run never identified counts as infinite. Graded by
  piece (``common.piece_key``). Also with "first and not flagged".
- Update latency: from a frame closing to its new ranking (the search work of one update).
- Long run: performances back to back (1 s apart, one query) for ``--long-minutes`` of
  playing: resident memory after the first 5 minutes and at the end, notes taken and frames
  against the batch grouping of the same notes (nothing dropped).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (CACHE, asap_dir, asap_performances, dev_test_split, grade_key,
                               piece_key)
from midizero_app.core.frames import group_performance
from midizero_app.core.library import Library
from midizero_app.core.parsing import parse_files
from midizero_app.core.scores import Notes
from midizero_app.live.replay import simulate
from midizero_app.live.session import LiveSession


def rss_mib() -> float:
    """Resident set size of this process now (MiB; Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def nearest_rank(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (works with infinite values)."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else math.nan


def identify_time(updates: list[dict], truth: str, keys: dict[int, str],
                  unflagged: bool = False) -> tuple[float, float]:
    """(seconds, frames) from which the top result is ``truth`` until the run's end."""
    since = None
    for u in updates:
        top = u["results"][0]["piece_id"] if u["results"] else None
        ok = top is not None and keys.get(top) == truth and not (unflagged and u["not_in_library"])
        since = (since or u) if ok else None
    return (since["t"], since["frames"]) if since else (math.inf, math.inf)


def play(lib: Library, notes: Notes, top: int) -> list[dict]:
    """Updates of one simulated replay, the final one excluded."""
    updates: list[dict] = []
    simulate(LiveSession(lib, top=top, on_update=updates.append), notes.onset, notes.pitch)
    return [u for u in updates if not u["final"]]


def pick_runs(perfs: dict[Path, Notes], runs: int, seconds: float, seed: int):
    """``runs`` (performance, excerpt Notes from 0 s) at seeded random starting points."""
    rng = np.random.default_rng(seed)
    paths = sorted(perfs)
    out = []
    while len(out) < runs:
        perf = paths[int(rng.integers(len(paths)))]
        notes = perfs[perf]
        start = float(rng.uniform(0.0, max(notes.duration - seconds, 0.0)))
        m = (notes.onset >= start) & (notes.onset < start + seconds)
        if m.sum() >= 4:
            out.append((perf, Notes(notes.onset[m] - notes.onset[m][0], notes.pitch[m])))
    return out


def long_run(lib: Library, perfs: dict[Path, Notes], minutes: float, seed: int) -> dict:
    """Performances back to back for ``minutes`` of playing, as one query."""
    rng = np.random.default_rng(seed + 1)
    paths, onsets, pitches, t = sorted(perfs), [], [], 0.0
    while t < minutes * 60:
        n = perfs[paths[int(rng.integers(len(paths)))]]
        onsets.append(n.onset - n.onset[0] + t)
        pitches.append(n.pitch)
        t = float(onsets[-1][-1]) + 1.0
    onset, pitch = np.concatenate(onsets), np.concatenate(pitches)
    keep = onset < minutes * 60
    onset, pitch = onset[keep], pitch[keep]
    lat: list[float] = []  # keep only the latency: storing every update would grow memory
    frames = [0]

    def on_update(u: dict) -> None:
        if not u["final"]:
            lat.append(u["elapsed_ms"])

    session = LiveSession(lib, on_update=on_update,
                          on_frame=lambda o, p: frames.__setitem__(0, frames[0] + 1))
    warm = int(np.searchsorted(onset, min(300.0, onset[-1] / 2)))
    simulate(session, onset[:warm], pitch[:warm], finish=False)
    rss_start = rss_mib()
    simulate(session, onset[warm:], pitch[warm:])
    return {"minutes": onset[-1] / 60, "notes": len(onset), "taken": session.stream.notes,
            "late": session.stream.late_notes, "frames": frames[0],
            "batch_frames": len(group_performance(Notes(onset, pitch))),
            "rss_start": rss_start, "rss_end": rss_mib(), "at": onset[warm] / 60,
            "lat_med": float(np.median(lat)), "lat_p99": float(np.percentile(lat, 99))}


def row(label: str, secs: list[float], frames: list[float]) -> str:
    """A table row: median and p90 of time to identify, in seconds and frames (each its own
    quantile)."""
    cells = []
    for q in (0.5, 0.9):
        s, f = nearest_rank(secs, q), nearest_rank(frames, q)
        cells.append("never" if math.isinf(s) else f"{s:.2f} s ({f:.0f} frames)")
    return f"| {label} | {cells[0]} | {cells[1]} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", default=str(CACHE / "asap-library"))
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=30.0, help="playing per run")
    ap.add_argument("--long-minutes", type=float, default=30.0)
    ap.add_argument("--split", choices=("all", "dev", "test"), default="dev")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    asap = asap_dir()
    if asap is None:
        sys.exit("ASAP data not found (../shared/data/asap or $MIDIZERO_ASAP)")
    lib = Library(args.library)
    if lib.stats()["ok"] == 0:
        sys.exit(f"empty library {args.library}: build it with python -m benchmarks.build_library")
    keys = {p["id"]: grade_key(p["path"]) for p in lib.pieces()}
    wanted = set(keys.values())
    if args.split != "all":
        wanted &= dev_test_split(asap)[0 if args.split == "dev" else 1]
    paths = [p for p in asap_performances(asap) if piece_key(p.parent) in wanted]
    if not paths:
        sys.exit("no performance of a piece in this library")
    rng = np.random.default_rng(args.seed)
    chosen = sorted({paths[int(i)] for i in rng.integers(len(paths), size=args.runs)})
    perfs = {Path(r.path): r.notes for r in parse_files(chosen, args.workers)
             if r.notes is not None}

    t0 = time.perf_counter()
    lib.search(Notes(np.arange(12) * 0.2, np.full(12, 60)))  # load model and index
    secs, frames, secs_ok, frames_ok, lat = [], [], [], [], []
    for perf, notes in pick_runs(perfs, args.runs, args.seconds, args.seed):
        updates = play(lib, notes, args.top)
        truth = piece_key(perf.parent)
        s, f = identify_time(updates, truth, keys)
        s2, f2 = identify_time(updates, truth, keys, unflagged=True)
        secs.append(s), frames.append(f), secs_ok.append(s2), frames_ok.append(f2)
        lat += [u["elapsed_ms"] for u in updates]
    replay_s = time.perf_counter() - t0
    lr = long_run(lib, perfs, args.long_minutes, args.seed) if args.long_minutes > 0 else None

    st = lib.stats()
    never = sum(math.isinf(s) for s in secs)
    print(f"# live_bench — {len(secs)} runs of {args.seconds:.0f} s ({args.split} performances, "
          f"seed {args.seed}), library {st['ok']} pieces / {st['windows']} windows, "
          f"model {st['model_id']}, {platform.machine()} × {os.cpu_count()} CPUs\n")
    print("| measure | median | p90 |\n|---|---|---|")
    print(row("time to identify (first, and stays first)", secs, frames))
    print(row("… first and not flagged \"not in library\"", secs_ok, frames_ok))
    print(f"\nnever identified: {never} of {len(secs)} ({100 * never / len(secs):.1f} %); "
          f"{len(lat)} updates in {replay_s:.0f} s of replay "
          f"({args.seconds * len(secs) / replay_s:.0f}× real time)")
    print(f"update latency (frame close → ranking): median {np.median(lat):.1f} ms, "
          f"p99 {np.percentile(lat, 99):.1f} ms")
    if lr:
        print(f"long run: {lr['minutes']:.1f} min, {lr['notes']} notes fed, {lr['taken']} taken "
              f"({lr['late']} late), {lr['frames']} frames (batch {lr['batch_frames']}); "
              f"RSS {lr['rss_start']:.0f} MiB at {lr['at']:.1f} min → {lr['rss_end']:.0f} MiB "
              f"at the end; latency median {lr['lat_med']:.1f} ms, p99 {lr['lat_p99']:.1f} ms")


if __name__ == "__main__":
    main()
