"""The Identify tab's scrolling pitch matrix at 60 updates/s for an hour.

    python -m benchmarks.stream_view_bench [--minutes 60]

Offscreen (QT_QPA_PLATFORM=offscreen). Feeds ``minutes · 60 · 60`` frames of a real ASAP
performance (or, without the data, a seeded random-walk texture) into
:class:`~midizero_app.gui.widgets.PitchMatrixView`, each followed by a synchronous repaint,
as fast as the machine allows, so an hour of playing is simulated in minutes. Prints the
time per update (median, p99, max: smooth at 60 updates/s needs well under 16.7 ms) and the
process's resident memory at the start and the end of each simulated ten minutes (flat:
the view is a fixed-size ring buffer).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def played_frames(n: int) -> list[list[int]]:
    """``n`` frames of a real performance, repeated; random-walk chords without the data."""
    from benchmarks.common import asap_dir

    asap = asap_dir()
    if asap is not None:
        from midizero_app.core.frames import group_performance
        from midizero_app.core.scores import load_notes

        perf = sorted(p for p in asap.rglob("*.mid") if p.name != "midi_score.mid")[0]
        chords = group_performance(load_notes(perf), 0.05).chords()
    else:
        rng = np.random.default_rng(0)
        chords = [sorted(set((48 + rng.integers(0, 36, rng.integers(1, 5))).tolist()))
                  for _ in range(2000)]
    return [list(chords[i % len(chords)]) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    from midizero_app.gui.widgets import PitchMatrixView

    app = QApplication.instance() or QApplication([])
    view = PitchMatrixView()
    view.resize(520, 420)
    view.show()
    app.processEvents()
    n = int(args.minutes * 60 * 60)
    frames = played_frames(min(n, 20000))
    times = np.empty(n)
    marks = [(0, rss_mb())]
    for i in range(n):
        t = time.perf_counter()
        view.add_frame(frames[i % len(frames)])
        view.repaint()
        app.processEvents()
        times[i] = time.perf_counter() - t
        if (i + 1) % 36000 == 0:
            marks.append(((i + 1) // 3600, rss_mb()))
    ms = times * 1000
    print(f"## Scrolling pitch matrix, {args.minutes:g} simulated minutes at 60 updates/s — "
          f"{date.today()}, {platform.machine()}, 2 cores, offscreen")
    print()
    print("| updates | median ms | p99 ms | max ms | over 16.7 ms | RSS MB (simulated minute: MB) |")
    print("|---|---|---|---|---|---|")
    print(f"| {n} | {np.median(ms):.2f} | {np.percentile(ms, 99):.2f} | {ms.max():.1f} | "
          f"{int(np.sum(ms > 1000 / 60))} | "
          + ", ".join(f"{m}: {r:.0f}" for m, r in marks) + " |")


if __name__ == "__main__":
    main()
