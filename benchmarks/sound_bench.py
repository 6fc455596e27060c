"""Sound: what "Hear what I play" costs per block and how late it sounds.

    python -m benchmarks.sound_bench [--blocks 500] [--trials 20] [--period 128]

1. Render cost: the monitor's work per block (TinySoundFont rendering one 128-sample
   block at 44.1 kHz, a 2.9 ms budget) with 0, 1, 10 and 30 notes sounding.
2. Latency: a :class:`Monitor` on a private JACK dummy server (FIELD-NOTES §2: a device
   with a real-time clock; the ALSA file device has none, so nothing can be timed there).
   For each note: ``note_on()`` → the first non-silent sample the feeding thread renders
   (the wait for its next block plus the sample's place in it), then what PortAudio's
   blocking buffer holds ahead of that block plus the output latency PortAudio reports,
   whose sum is the note-to-sound latency. Needs jackd (apt jackd2) and libportaudio2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from midizero_app.audio.synth import Monitor, load_synth

ROOT = Path(__file__).resolve().parents[1]

SR = 44100
BLOCK = 128


def render_cost(blocks: int) -> list[tuple[int, float, float, float]]:
    """(notes sounding, median µs, p99 µs, max µs) per 128-sample block, as the monitor
    renders it."""
    rows = []
    out = np.zeros((BLOCK, 2), np.float32)
    view = memoryview(out).cast("B")
    for n in (0, 1, 10, 30):
        synth = load_synth(sr=SR)
        for p in np.linspace(36, 84, n).astype(int) if n else []:
            synth.noteon(0, int(p), 100)
        times = []
        for _ in range(blocks):  # 500 blocks = 1.45 s: the notes still sound
            t = time.perf_counter_ns()
            synth.generate_simple(BLOCK, buffer=view)
            times.append((time.perf_counter_ns() - t) / 1000)
        rows.append((n, float(np.median(times)), float(np.percentile(times, 99)),
                     float(np.max(times))))
    return rows


class _Probe(Monitor):
    """A Monitor that notes when its output turns non-silent (for timing only)."""

    def __init__(self, ring: int, **kwargs):
        self.heard = threading.Event()
        self.at = self.dac = 0.0
        self.quiet_blocks = 0
        self.ring = ring  # frames of PortAudio's blocking buffer (see latency_child)
        super().__init__(**kwargs)

    def _fill(self, out) -> bool:
        start = time.perf_counter()
        more = super()._fill(out)
        loud = np.flatnonzero(np.abs(out[:, 0]) > 1e-4)
        self.quiet_blocks = 0 if len(loud) else self.quiet_blocks + 1
        if len(loud) and not self.heard.is_set():
            self.at = start + loud[0] / self.sr
            # the block waits behind what PortAudio's buffer holds, then the device's
            # own latency (PortAudio's report)
            queued = self.ring - self._stream._stream.write_available
            self.dac = queued / self.sr + self._stream.latency
            self.heard.set()
        return more


def latency_child(trials: int, blocksize: int, period: int) -> dict:
    """Run in a process whose PortAudio sees only the JACK server (set up by the parent)."""
    # PortAudio's JACK blocking buffer: the suggested latency ('low': one period) or three
    # periods, whichever is more, rounded up to a power of two (pa_jack.c, OpenStream)
    ring = 32
    while ring < 3 * period:
        ring *= 2
    m = _Probe(ring, blocksize=blocksize)
    waits, dacs = [], []
    rng = random.Random(0)
    for _ in range(trials):
        deadline = time.monotonic() + 10
        while m.quiet_blocks < 50 and time.monotonic() < deadline:  # the last note died
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.01))  # land anywhere in a period
        m.heard.clear()
        t = time.perf_counter()
        m.note_on(60, 100)
        if not m.heard.wait(5):
            raise RuntimeError("the monitor stayed silent")
        waits.append(max(0.0, m.at - t))
        dacs.append(m.dac)
        m.note_off(60)
    underruns = m._stream.underruns
    m.close()
    return {"waits": waits, "dacs": dacs, "latency": m.latency, "sr": m.sr,
            "underruns": underruns}


def latency(trials: int, period: int, blocksize: int) -> dict | None:
    if not (shutil.which("jackd") and shutil.which("jack_wait")):
        print("jackd not installed: no latency measurement", file=sys.stderr)
        return None
    name = f"sound-bench-{uuid.uuid4().hex[:6]}"
    server = subprocess.Popen(["jackd", "--no-realtime", "-t", "5000", "-n", name, "-d",
                               "dummy", "-r", str(SR), "-p", str(period)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        subprocess.run(["jack_wait", "-w", "-t", "20", "-s", name], check=True,
                       capture_output=True)
        env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
        child = subprocess.run([sys.executable, "-m", "benchmarks.sound_bench", "--child",
                                "--trials", str(trials), "--blocksize", str(blocksize),
                                "--period", str(period)],
                               env=env, capture_output=True, text=True, timeout=600,
                               cwd=str(ROOT))
        if child.returncode:
            raise RuntimeError(child.stderr[-2000:])
        return json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=500, help="blocks timed per note count")
    ap.add_argument("--trials", type=int, default=20, help="notes timed for latency")
    ap.add_argument("--period", type=int, default=128, help="JACK period, samples")
    ap.add_argument("--blocksize", type=int, default=BLOCK, help="monitor block, samples")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(latency_child(args.trials, args.blocksize, args.period)))
        return
    print(f"{time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} cores · Python {platform.python_version()}")
    budget = BLOCK / SR * 1e6
    print(f"\nMonitor render cost per {BLOCK}-sample block at {SR} Hz "
          f"(real-time budget {budget:.0f} µs):\n")
    print("| notes sounding | median µs | p99 µs | max µs | p99 share of the budget |")
    print("|---|---|---|---|---|")
    for n, med, p99, top in render_cost(args.blocks):
        print(f"| {n} | {med:.1f} | {p99:.1f} | {top:.0f} | {p99 / budget:.1%} |")
    res = latency(args.trials, args.period, args.blocksize)
    if res is None:
        return
    waits, dacs = np.array(res["waits"]) * 1e3, np.array(res["dacs"]) * 1e3
    total = waits + dacs
    print(f"\nLatency on a JACK dummy server (period {args.period}, {res['sr']} Hz), monitor "
          f"blocksize {args.blocksize}, latency='low' (PortAudio reports "
          f"{res['latency'] * 1e3:.1f} ms); {len(waits)} notes, {res['underruns']} blocks "
          f"found PortAudio's buffer empty:\n")
    print("| ms | median | p90 | max |")
    print("|---|---|---|---|")
    for label, v in (("note_on → first sound rendered", waits),
                     ("+ PortAudio's buffer and output latency", dacs),
                     ("= note to sound", total)):
        print(f"| {label} | {np.median(v):.2f} | {np.percentile(v, 90):.2f} | "
              f"{v.max():.2f} |")


if __name__ == "__main__":
    main()
