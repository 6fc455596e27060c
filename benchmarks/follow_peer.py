"""Score following beside a peer: pymatchmaker's real-time followers on ASAP performances.

    python -m benchmarks.follow_peer [--n 20] [--half dev|test] [--seconds 90] [--seed 0]
                                     [--methods pthmm,arzt,...] [--audio DIR]
    python -m benchmarks.follow_peer --build-extensions

What it measures: for every annotated beat of a performance, the score position a peer score
follower (``pymatchmaker``, given the right piece and the first note as its start) shows at
that moment, against the truth from the ASAP beat annotations. The follower runs on line,
note by note, through its own real-time pipeline (``Matchmaker``: a mock ``MidiStream`` that
frames the performance's MIDI messages exactly as its live port reader does, feeding the
follower's queue), on a simulated clock: as fast as the machine allows, no MIDI port or audio
device opened. Its positions (score beats of the partitura part it reads from
``midi_score.mid``; no MIDI method needs measures) become seconds of ``midi_score.mid``
through that file's tempo map. At beat time ``t`` the position shown is the last one it
reported for input up to ``t`` (+1 ms: the annotations are rounded to microseconds while
beats sit on note onsets); before its first report, the start of the score.

Default method ``pthmm`` (pymatchmaker's pitch HMM, also its own MIDI default): the best of
five on 10 dev-half performances, first 90 s each (``--half dev --n 10 --methods
pthmm,arzt,outerhmm,hmm,dixon``, 2026-12-07, 2-core VM shared with other jobs), share of beats
within 300 ms: pthmm 95.9 %, outerhmm 93.0 %, dixon 92.6 %, arzt 90.7 %, hmm 81.9 %; ms per
note 23.2, 5.3, 2.9, 2.9, 11.5. ``pf`` (1,000 particles) and parangonar's matchers (which read
the whole performance file rather than the stream) are not compared.

Scoring (:func:`beat_errors`, :func:`summarise`): a beat's error is in performance time,
``|interp(shown, sb, pb) - pb|`` (``pb``, ``sb``: the performance's and the score's annotated
beat times, s). Reported: share of beats within 300 ms, median error (ms), share within one
beat (the local inter-beat interval, mean of the intervals either side). Left out: beats where
the performance annotations collapse (a neighbour < 0.05 s away: a repeat skipped) and
performances whose two annotation files differ in length (:func:`beat_annotations`).

Table columns: method, performances, beats, within 300 ms, median ms, within one beat, 90th
percentile error (ms; a follower that reports score onsets is exactly right on a beat that
falls on a note, so its median is often 0), ms per note (the follower's wall time over the
MIDI notes it was fed; score loading excluded) and × real time (seconds of performance
followed per second of wall time).

``--audio DIR``: audio input instead (:func:`peer_positions_audio`, on-line time warping,
``--methods arzt,dixon``, default arzt) on ``DIR/<performance stem>.wav`` where present
(renders made elsewhere); the score side of its time warping is rendered by
:func:`score_audio`.

Installing the peer: ``pymatchmaker`` 0.3.0 pins ``numpy<2`` and ships Cython extensions built
against NumPy 1.x. Install it with ``pip install --no-deps pymatchmaker==0.3.0 python-hiddenmarkov
progressbar2 python-utils cython`` (its dependencies that the app lacks), then rebuild its three extensions against the
installed NumPy: ``python -m benchmarks.follow_peer --build-extensions`` (needs a C compiler
and Cython).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.common import asap_dir, asap_performances, dev_test_split, piece_key

MIDI_METHODS = ("pthmm", "hmm", "arzt", "dixon", "outerhmm", "pf")
AUDIO_METHODS = ("arzt", "dixon")
DEFAULT_METHOD = "pthmm"  # see the module docstring
SHOWN_SLACK = 0.001      # s: a beat at t sees positions reported for input up to t + this
COLLAPSED = 0.05         # s: consecutive performance beats closer than this are left out
TOLERANCE = 0.3          # s: the "within 300 ms" cell
_EXTENSIONS = ("matchmaker.dp.dtw_loop", "matchmaker.utils.distances",
               "matchmaker.prob.viterbi_step")

PerfNote = tuple  # (onset s, pitch, duration s, velocity); duration and velocity optional


# --- the peer, on line ---------------------------------------------------------------------

def _matchmaker():
    """``matchmaker.Matchmaker``, or SystemExit with the one line that fixes the install."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from matchmaker import Matchmaker
    except ImportError as e:
        hint = ("rebuild its extensions: python -m benchmarks.follow_peer --build-extensions"
                if "numpy" in str(e).lower() else
                "pip install --no-deps pymatchmaker==0.3.0 python-hiddenmarkov progressbar2 "
                "python-utils cython")
        raise SystemExit(f"pymatchmaker is not usable here ({str(e).splitlines()[0]}); {hint}")
    return Matchmaker


def score_audio(part, tempo: float, sr: int, soundfont: str | Path | None = None
                ) -> np.ndarray:
    """The score played at a constant ``tempo`` (quarters per minute) from its start, as
    pymatchmaker's audio followers map reference frames to beats (frame time × tempo / 60 =
    quarters): mono float32 at ``sr`` Hz, cut 0.1 s after the last onset. Rendered with
    TinySoundFont (the app's synth; default SoundFont TimGM6mb) where pymatchmaker uses
    fluidsynth (a system library, and a SoundFont it downloads on first use)."""
    from midizero_app.audio.render import timgm6mb
    from midizero_app.audio.synth import render

    na = part.note_array()
    on = na["onset_quarter"] * 60.0 / tempo
    off = on + np.maximum(na["duration_quarter"], 1 / 16) * 60.0 / tempo
    notes = np.c_[on, off, na["pitch"], np.full(len(na), 80)].astype(float)
    y = render(notes, sr=sr, soundfont=soundfont or timgm6mb()).mean(axis=1)
    return y[: int((on.max() + 0.1) * sr)].astype(np.float32)


def _file_matchmaker():
    """``Matchmaker`` whose audio time warping takes its score side from :func:`score_audio`
    (pymatchmaker renders it with fluidsynth); everything else is pymatchmaker's own."""
    Matchmaker = _matchmaker()

    class FileMatchmaker(Matchmaker):
        def preprocess_score(self):
            if self.input_type == "audio" and self.method in AUDIO_METHODS:
                y = score_audio(self.score_part, self.tempo, self.sample_rate)
                features, _ = self.processor((y, 0.0))
                self.processor.reset()
                return features
            return super().preprocess_score()

    return FileMatchmaker


def build_extensions() -> None:
    """Recompile pymatchmaker's Cython extensions (.pyx shipped in its wheel) against the
    installed NumPy, replacing the NumPy 1.x builds in site-packages."""
    import importlib.util

    spec = importlib.util.find_spec("matchmaker")
    if spec is None or spec.origin is None:
        raise SystemExit("pymatchmaker is not installed: pip install --no-deps pymatchmaker")
    site = Path(spec.origin).parents[1]
    setup = (
        "import numpy, sys\n"
        "from setuptools import setup, Extension\n"
        "from Cython.Build import cythonize\n"
        f"site = {str(site)!r}\n"
        f"mods = {list(_EXTENSIONS)!r}\n"
        "exts = [Extension(m, [site + '/' + m.replace('.', '/') + '.pyx'],\n"
        "                  include_dirs=[numpy.get_include()],\n"
        "                  define_macros=[('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')])\n"
        "        for m in mods]\n"
        "setup(name='matchmaker-ext', ext_modules=cythonize(exts, language_level=3,\n"
        "      build_dir='c'), script_args=['build_ext', '--build-lib', 'lib',\n"
        "      '--build-temp', 'tmp'])\n")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "setup.py").write_text(setup)
        subprocess.run([sys.executable, "setup.py"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        for m in _EXTENSIONS:
            rel = Path(*m.split("."))
            built = list(Path(tmp, "lib", rel.parent).glob(rel.name + ".*.so"))
            if len(built) != 1:
                raise SystemExit(f"building {m} gave {built}")
            target = site / rel.parent / built[0].name
            shutil.copyfile(built[0], target.with_suffix(".new"))
            os.replace(target.with_suffix(".new"), target)  # a new inode: loaded copies stay
    print(f"rebuilt {len(_EXTENSIONS)} extensions in {site / 'matchmaker'}")


def _quiet():
    """Silence the peer's progress prints and warnings (its stream prints to stdout)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def performance_notes(perf: str | Path, seconds: float | None = None) -> list[PerfNote]:
    """A performance MIDI's notes as ``(onset s, pitch, duration s, velocity)``, by onset;
    with ``seconds``, only the notes that start before it."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(perf))
    notes = sorted((n.start, n.pitch, n.end - n.start, n.velocity)
                   for inst in pm.instruments if not inst.is_drum for n in inst.notes)
    return [n for n in notes if seconds is None or n[0] < seconds]


def _write_midi(notes: Sequence[PerfNote], path: Path) -> None:
    """Notes to a one-track MIDI file: 10,000 ticks per second (tempo 1 s per quarter)."""
    import mido

    tps = 10000
    events = []
    for n in notes:
        t, pitch = float(n[0]), int(n[1])
        dur = float(n[2]) if len(n) > 2 else 0.25
        vel = int(n[3]) if len(n) > 3 else 64
        events.append((round(t * tps), 1, pitch, max(1, min(127, vel))))
        events.append((round((t + max(dur, 0.001)) * tps), 0, pitch, 0))
    events.sort()  # at equal ticks a note-off (0) before a note-on (1)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=1_000_000, time=0)])
    now = 0
    for tick, on, pitch, vel in events:
        track.append(mido.Message("note_on" if on else "note_off", note=pitch,
                                  velocity=vel if on else 0, time=tick - now))
        now = tick
    mf = mido.MidiFile(ticks_per_beat=tps)
    mf.tracks.append(track)
    mf.save(path)


class ScoreClock:
    """Score beats of the peer's partitura part → seconds of the score MIDI file.

    The part's beats go to quarters through its own maps (its beat is the time signature's
    denominator), quarters to ticks at the file's resolution, ticks to seconds through the
    file's tempo changes.
    """

    def __init__(self, part, score_midi: str | Path):
        import mido
        import pretty_midi

        self.part = part
        self.ppq = mido.MidiFile(str(score_midi)).ticks_per_beat
        pm = pretty_midi.PrettyMIDI(str(score_midi))
        times, bpm = pm.get_tempo_changes()
        self.change_ticks = np.array([pm.time_to_tick(t) for t in times], float)
        self.change_times = np.asarray(times, float)
        self.sec_per_tick = 60.0 / (np.asarray(bpm, float) * self.ppq)

    def seconds(self, beats: np.ndarray) -> np.ndarray:
        """Score beats (float, shape (n,)) → score seconds (shape (n,))."""
        beats = np.asarray(beats, float)
        out = np.zeros(beats.shape)
        if beats.size == 0:
            return out
        divs = np.asarray(self.part.inv_beat_map(beats), float)
        ticks = np.asarray(self.part.quarter_map(divs), float) * self.ppq
        k = np.clip(np.searchsorted(self.change_ticks, ticks, side="right") - 1, 0, None)
        return self.change_times[k] + (ticks - self.change_ticks[k]) * self.sec_per_tick[k]


@dataclass
class PeerRun:
    """The positions a peer follower reported, in the order it reported them."""

    method: str
    times: np.ndarray          # (n,) performance seconds of each report
    score_seconds: np.ndarray  # (n,) reported positions, seconds of the score MIDI
    start: float               # score seconds shown before the first report
    notes: int                 # notes fed (MIDI input)
    duration: float            # s of performance fed
    follow_seconds: float      # wall time of following (score loading excluded)

    def at(self, t: np.ndarray) -> np.ndarray:
        """Positions shown at performance times ``t`` (s, shape (m,)) → score s (m,)."""
        i = np.searchsorted(self.times, np.asarray(t, float) + SHOWN_SLACK, side="right") - 1
        return np.where(i >= 0, self.score_seconds[np.clip(i, 0, None)], self.start)


def run_peer(score_midi: str | Path, perf_notes: Sequence[PerfNote] | str | Path,
             method: str = DEFAULT_METHOD, seconds: float | None = None,
             input_type: str = "midi") -> PeerRun:
    """Run pymatchmaker's follower ``method`` on line over a performance (notes, a MIDI
    file, or for ``input_type="audio"`` an audio file) and collect what it reported."""
    matchmaker = _file_matchmaker()
    with tempfile.TemporaryDirectory(prefix="follow_peer_") as tmp:
        if input_type == "midi":
            notes = (performance_notes(perf_notes, seconds)
                     if isinstance(perf_notes, (str, Path)) else
                     [n for n in perf_notes if seconds is None or n[0] < seconds])
            if not notes:
                raise ValueError("the performance has no notes")
            perf_file = Path(tmp, "performance.mid")
            _write_midi(notes, perf_file)
            n_in, duration = len(notes), float(max(n[0] for n in notes))
        else:
            import soundfile as sf

            y, sr = sf.read(str(perf_notes), dtype="float32", always_2d=True)
            if seconds is not None:
                y = y[: int(seconds * sr)]
            perf_file = Path(tmp, "performance.wav")
            sf.write(str(perf_file), y.mean(axis=1), sr)
            n_in, duration = 0, len(y) / sr
        with _quiet():
            mm = matchmaker(str(score_midi), performance_file=str(perf_file),
                            input_type=input_type, method=method)
            clock = ScoreClock(mm.score_part, score_midi)
            start = float(clock.seconds(np.array([mm.score_follower.score_positions[0]]))[0])
            t0 = time.perf_counter()
            for _ in mm.run(verbose=False):
                pass
            follow = time.perf_counter() - t0
            path = mm.score_follower.alignment_path
    beats, times = (path[0], path[1]) if path.size else (np.zeros(0), np.zeros(0))
    order = np.argsort(times, kind="stable")
    return PeerRun(method, times[order], clock.seconds(beats[order]), start,
                   n_in, duration, follow)


def peer_positions(score_midi: Path, perf_notes: Sequence[PerfNote] | str | Path,
                   beat_times_perf: np.ndarray, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Score positions pymatchmaker shows at each annotated beat, following on line.

    Parameters
    ----------
    score_midi : the piece's score MIDI (ASAP ``midi_score.mid``); the follower starts at
        its beginning.
    perf_notes : the performance, as ``(onset s, pitch, duration s, velocity)`` tuples
        (duration and velocity optional) or a performance MIDI file.
    beat_times_perf : performance times (s, shape (m,)) at which to read the position.
    method : one of :data:`MIDI_METHODS`.

    Returns
    -------
    np.ndarray, shape (m,): score seconds of ``score_midi`` shown at each time.
    """
    return run_peer(score_midi, perf_notes, method).at(beat_times_perf)


def peer_positions_audio(score: Path, wav_path: Path, beat_times_perf: np.ndarray,
                         method: str = "arzt") -> np.ndarray:
    """As :func:`peer_positions` from an audio recording (any file soundfile reads; mixed to
    mono), with pymatchmaker's on-line time warping (``"arzt"``: chroma frames, ``"dixon"``:
    log spectral energy, its defaults) against the score rendered by :func:`score_audio`.
    Returns score seconds of ``score`` (the score MIDI file) at each time, shape (m,)."""
    if method not in AUDIO_METHODS:
        raise ValueError(f"audio method must be one of {AUDIO_METHODS}")
    return run_peer(score, wav_path, method, input_type="audio").at(beat_times_perf)


# --- scoring ---------------------------------------------------------------------------------

def _beat_times(path: Path) -> np.ndarray:
    with open(path) as f:
        return np.array([float(row[0]) for row in csv.reader(f, delimiter="\t") if row])


def beat_annotations(perf: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(pb, sb)``: an ASAP performance's annotated beat times (s) and the same beats in
    its ``midi_score.mid`` (s), shape (n,) each; None when either file is missing or the
    two differ in length (the performer skipped beats)."""
    pa = perf.with_name(perf.stem + "_annotations.txt")
    sa = perf.with_name("midi_score_annotations.txt")
    if not (pa.is_file() and sa.is_file()):
        return None
    pb, sb = _beat_times(pa), _beat_times(sa)
    if len(pb) != len(sb) or len(pb) < 2:
        return None
    return pb, sb


def beat_errors(shown: np.ndarray, pb: np.ndarray, sb: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Error of the positions shown at each beat, in performance time.

    shown : score seconds shown at each performance beat ``pb`` (shape (n,)).
    pb, sb : annotated beat times of the performance and of the score (s, shape (n,)).

    Returns ``(errors, beat_lengths)``, seconds, for the beats kept (those not within
    :data:`COLLAPSED` of a neighbour): ``|interp(shown, sb, pb) - pb|`` and the local
    inter-beat interval (mean of the intervals either side).
    """
    pb, sb, shown = (np.asarray(a, float) for a in (pb, sb, shown))
    gaps = np.diff(pb)
    bad = np.zeros(len(pb), bool)
    bad[:-1] |= gaps < COLLAPSED
    bad[1:] |= gaps < COLLAPSED
    ibi = np.empty(len(pb))
    ibi[0], ibi[-1] = gaps[0], gaps[-1]
    ibi[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    err = np.abs(np.interp(shown, sb, pb) - pb)
    keep = ~bad
    return err[keep], ibi[keep]


def summarise(errors: np.ndarray, beat_lengths: np.ndarray) -> dict:
    """Share within 300 ms, median error (ms), share within one beat and the 90th
    percentile error (ms), over all beats (errors and beat lengths in s, shape (n,))."""
    errors, beat_lengths = np.asarray(errors, float), np.asarray(beat_lengths, float)
    if errors.size == 0:
        return {"beats": 0, "within_300ms": float("nan"), "median_ms": float("nan"),
                "within_beat": float("nan"), "p90_ms": float("nan")}
    return {"beats": int(errors.size),
            "within_300ms": float(np.mean(errors <= TOLERANCE)),
            "median_ms": float(np.median(errors) * 1000),
            "within_beat": float(np.mean(errors <= beat_lengths)),
            "p90_ms": float(np.quantile(errors, 0.9) * 1000)}


# --- the benchmark -------------------------------------------------------------------------

def pick_performances(asap: Path, half: str, n: int, seed: int = 0) -> list[Path]:
    """``n`` performances of the half's pieces whose two annotation files agree: the pieces
    in a seeded random order, one performance (seeded choice) of each, then a second of each
    piece that has one, and so on."""
    dev, test = dev_test_split(asap)
    pieces = dev if half == "dev" else test
    by_piece: dict[str, list[Path]] = {}
    for p in asap_performances(asap):
        key = piece_key(p.parent)
        if key in pieces and beat_annotations(p) is not None:
            by_piece.setdefault(key, []).append(p)
    rng = np.random.default_rng(seed)
    keys = sorted(by_piece)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    for k in keys:
        by_piece[k] = [by_piece[k][i] for i in rng.permutation(len(by_piece[k]))]
    rounds = max((len(v) for v in by_piece.values()), default=0)
    order = [by_piece[k][r] for r in range(rounds) for k in keys if r < len(by_piece[k])]
    return order[:n]


def evaluate_method(perfs: list[Path], method: str, seconds: float, audio: Path | None = None,
                    log=print) -> dict:
    """Run the peer over ``perfs`` (first ``seconds`` s of each) and summarise."""
    errs, ibis, notes, wall, played, done = [], [], 0, 0.0, 0.0, 0
    for p in perfs:
        pb, sb = beat_annotations(p)
        keep = pb < seconds
        if keep.sum() < 2:
            continue
        score = p.with_name("midi_score.mid")
        try:
            if audio is None:
                run = run_peer(score, p, method, seconds)
            else:
                wav = audio / (p.stem + ".wav")
                if not wav.is_file():
                    continue
                run = run_peer(score, wav, method, seconds, input_type="audio")
        except Exception as e:  # the peer failing on a piece is reported, not fatal
            log(f"  {method} failed on {p}: {type(e).__name__}: {e}")
            continue
        e, b = beat_errors(run.at(pb[keep]), pb[keep], sb[keep])
        errs.append(e)
        ibis.append(b)
        notes += run.notes
        wall += run.follow_seconds
        played += run.duration
        done += 1
        s = summarise(e, b)
        log(f"  {method:8s} {piece_key(p.parent)}/{p.name}: "
            f"{s['within_300ms']:.1%} within 300 ms, median {s['median_ms']:.0f} ms, "
            f"{run.follow_seconds:.1f} s")
    out = summarise(np.concatenate(errs) if errs else np.zeros(0),
                    np.concatenate(ibis) if ibis else np.zeros(0))
    out.update(method=method, performances=done,
               ms_per_note=1000 * wall / notes if notes else float("nan"),
               realtime=played / wall if wall else float("nan"))
    return out


def print_table(rows: list[dict]) -> None:
    head = (f"{'method':10s} {'perfs':>5s} {'beats':>6s} {'<=300ms':>8s} {'median ms':>9s} "
            f"{'<=1 beat':>8s} {'p90 ms':>7s} {'ms/note':>8s} {'x real time':>11s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['method']:10s} {r['performances']:5d} {r['beats']:6d} "
              f"{r['within_300ms']:8.1%} {r['median_ms']:9.0f} {r['within_beat']:8.1%} "
              f"{r['p90_ms']:7.0f} {r['ms_per_note']:8.2f} {r['realtime']:11.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="performances")
    ap.add_argument("--half", choices=("dev", "test"), default="test")
    ap.add_argument("--seconds", type=float, default=90.0,
                    help="only the first S seconds of each performance")
    ap.add_argument("--methods", default=None,
                    help=f"comma-separated, of {', '.join(MIDI_METHODS)} (MIDI; default "
                         f"{DEFAULT_METHOD}) or {', '.join(AUDIO_METHODS)} (audio; default arzt)")
    ap.add_argument("--audio", type=Path, default=None,
                    help="folder of <performance stem>.wav renders: audio methods instead")
    ap.add_argument("--seed", type=int, default=0,
                    help="which performances (see pick_performances)")
    ap.add_argument("--quiet", action="store_true", help="no per-performance lines")
    ap.add_argument("--build-extensions", action="store_true",
                    help="rebuild pymatchmaker's Cython extensions for this NumPy and exit")
    args = ap.parse_args(argv)
    if args.build_extensions:
        build_extensions()
        return 0
    asap = asap_dir()
    if asap is None:
        print("ASAP not found (../shared/data/asap or $MIDIZERO_ASAP): nothing to measure")
        return 1
    methods = [m.strip() for m in (args.methods or (AUDIO_METHODS[0] if args.audio else
                                                    DEFAULT_METHOD)).split(",") if m.strip()]
    allowed = AUDIO_METHODS if args.audio else MIDI_METHODS
    for m in methods:
        if m not in allowed:
            ap.error(f"unknown method {m!r} (one of {', '.join(allowed)})")
    perfs = pick_performances(asap, args.half, args.n, args.seed)
    print(f"pymatchmaker peer, {'audio' if args.audio else 'MIDI'} input: {len(perfs)} "
          f"{args.half}-half performances, first {args.seconds:g} s each; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
          f"{os.cpu_count()} CPUs")
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    rows = [evaluate_method(perfs, m, args.seconds, args.audio, log) for m in methods]
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
