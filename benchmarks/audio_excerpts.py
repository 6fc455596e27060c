"""Rendered audio of the ASAP performances, shared by the audio benchmarks.

Excerpts and whole performances are rendered with a real piano SoundFont
(:mod:`midizero_app.audio.render`) — dev half FluidR3 (Debian fluid-soundfont-gm), test
half TimGM6mb (pretty_midi) — with the sustain pedal held, through a seeded random room
and white noise at 20 dB SNR. Audio is float32 mono at :data:`SR` Hz.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import (CACHE, asap_dir, asap_performances, dev_test_split, piece_key,
                               score_time_map)
from midizero_app.audio.render import FLUID_R3, Renderer, pedal_offsets, room, timgm6mb
from midizero_app.core.scores import Notes

SR = 44100
PRE_ROLL = 3.0  # seconds rendered before an excerpt, so notes held into it still sound
MIDI_TAU = 0.05  # grouping threshold (s) of an excerpt's own MIDI notes


@dataclass
class Performance:
    onset: np.ndarray
    offset: np.ndarray   # with the sustain pedal applied
    pitch: np.ndarray
    velocity: np.ndarray


def load_performance(path: Path) -> Performance:
    """All notes of a performance MIDI (ASAP: trusted data) with pedal-held offsets."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    notes = sorted((n for i in pm.instruments if not i.is_drum for n in i.notes),
                   key=lambda n: (n.start, n.pitch))
    ccs = sorted((c.time, c.value >= 64) for i in pm.instruments for c in i.control_changes
                 if c.number == 64)
    pedal, down = [], None
    for t, is_down in ccs:
        if is_down and down is None:
            down = t
        elif not is_down and down is not None:
            pedal.append((down, t))
            down = None
    on = np.array([n.start for n in notes])
    off = pedal_offsets(on, np.array([n.end for n in notes]), pedal)
    return Performance(on, off, np.array([n.pitch for n in notes]),
                       np.array([n.velocity for n in notes]))


@dataclass
class Excerpt:
    perf: Path
    start: float
    length: float
    ref: Notes            # the performance's notes with onsets in the excerpt, from 0
    ref_offset: np.ndarray
    score_time: float | None
    audio: np.ndarray     # rendered, reverberated, noisy; SR


def make_excerpts(perf_paths: list[Path], length: float, n: int, seed: int,
                  renderer: Renderer) -> list[Excerpt]:
    """``n`` seeded excerpts: a performance uniformly, then a start time uniformly (as
    benchmarks/queries.make_queries), rendered with ``renderer`` and a random room."""
    rng = np.random.default_rng(seed)
    cache: dict[Path, Performance] = {}
    out: list[Excerpt] = []
    while len(out) < n:
        path = perf_paths[int(rng.integers(len(perf_paths)))]
        if path not in cache:
            cache[path] = load_performance(path)
        p = cache[path]
        if len(p.onset) == 0 or p.onset[-1] <= length + 1:
            continue
        start = float(rng.uniform(p.onset[0], p.onset[-1] - length))
        m = (p.onset >= start) & (p.onset < start + length)
        if m.sum() < 4:
            continue
        t0 = max(start - PRE_ROLL, 0.0)
        keep = (p.onset < start + length) & (p.offset > t0)
        y = renderer.render(p.onset[keep] - t0, p.offset[keep] - t0, p.pitch[keep],
                            p.velocity[keep], start=start - t0, end=start + length - t0)
        y = room(y, SR, rng)
        tmap = score_time_map(path)
        out.append(Excerpt(path, start, length, Notes(p.onset[m] - start, p.pitch[m]),
                           np.minimum(p.offset[m], start + length) - start,
                           tmap(float(p.onset[m][0])) if tmap else None, y))
    return out


def render_recordings(n_perf: int, seed: int, rng: np.random.Generator) -> dict[Path, Path]:
    """``n_perf`` whole ASAP performances, one per piece per round in a seeded order, rendered
    once to benchmarks/.cache/recordings-audio (dev pieces FluidR3, test pieces TimGM6mb;
    room and noise): {flac path (resolved): performance MIDI}. Draws from ``rng``."""
    import soundfile as sf

    asap = asap_dir()
    dev, _ = dev_test_split(asap)
    by_piece: dict[str, list[Path]] = {}
    for p in asap_performances(asap):
        by_piece.setdefault(piece_key(p.parent), []).append(p)
    keys = sorted(by_piece)
    chosen: list[Path] = []
    while len(chosen) < n_perf:  # one performance per piece per round, seeded
        for k in rng.permutation(keys):
            left = [p for p in by_piece[k] if p not in chosen]
            if left and len(chosen) < n_perf:
                chosen.append(left[int(rng.integers(len(left)))])
    folder = CACHE / "recordings-audio"
    folder.mkdir(parents=True, exist_ok=True)
    renderers = {}
    recordings: dict[Path, Path] = {}
    for i, perf in enumerate(chosen):
        out = folder / f"{seed}-{i:03d}.flac"
        recordings[out.resolve()] = perf
        if out.is_file():
            continue
        sf2 = FLUID_R3 if piece_key(perf.parent) in dev else timgm6mb()
        if sf2 not in renderers:
            renderers[sf2] = Renderer(sf2, SR)
        p = load_performance(perf)
        sf.write(str(out), room(renderers[sf2].render(p.onset, p.offset, p.pitch, p.velocity),
                                SR, np.random.default_rng(seed + i)), SR, subtype="PCM_16")
    return recordings


def perf_time_map(perf: Path):
    """score seconds → performance seconds by the beat annotations, or None."""
    import csv

    def beats(path: Path) -> np.ndarray:
        with open(path) as f:
            return np.array([float(row[0]) for row in csv.reader(f, delimiter="\t") if row])

    pa = perf.with_name(perf.stem + "_annotations.txt")
    sa = perf.with_name("midi_score_annotations.txt")
    if not (pa.is_file() and sa.is_file()):
        return None
    pb, sb = beats(pa), beats(sa)
    if len(pb) != len(sb) or len(pb) < 2:
        return None
    return lambda t: float(np.interp(t, sb, pb))
