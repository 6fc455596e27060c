"""Rendered training data for the audio branch: notes → piano audio through a SoundFont →
log-frequency spectrogram, stored with the notes in the rendered audio's time.

Each rendering is one piece through one SoundFont (TinySoundFont, acoustic grand piano,
22.05 kHz), with the tempo scaled, a random room (pedalboard's reverb) and white noise. It is
stored as one ``.npz`` per (piece, font) under ``<root>/<split>/`` holding

* ``spec``: float16 (T, 92), :func:`~.spectrogram.log_spectrogram` at 20 frames/s;
* ``notes``: float32 (n, 3), rows ``[onset s, offset s, MIDI pitch]`` as rendered (after the
  tempo change; offsets extended by the sustain pedal where it was held);
* ``meta``: a JSON string (piece, font, split, source, tempo, seed, start, seconds).

``<root>/manifest.json`` lists the pieces, their source and split, the fonts with their
licences, and every rendering. Splits are by piece: a piece's renderings all lie in one
split. The test SoundFont (pretty_midi's TimGM6mb, the audio benchmark's test-half font)
renders only the test split; :func:`check_training_font` refuses it for anything else.

Notes arrays are rows ``(onset_s, offset_s, pitch[, velocity])``: seconds, MIDI pitch
0..127, velocity 1..127.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ...core.atomic import write_bytes
from ...core.errors import MidizeroError
from .spectrogram import SR, log_spectrogram

SPLITS = ("train", "valid", "test")
SF2_DIR = Path("/usr/share/sounds/sf2")
# Training SoundFonts (Debian packages) and their licences. FluidR3_GS.sf2 holds only the
# GS sound-effect variations (no piano) and is not usable here.
TRAINING_FONTS = {
    "MuseScore_General_Full": (SF2_DIR / "MuseScore_General_Full.sf2",
                               "MIT (parts public domain / CC0), S. Christian Collins; "
                               "Debian musescore-general-soundfont-lossless"),
    "sf_GMbank": (SF2_DIR / "sf_GMbank.sf2",
                  "LGPL-2.1+, Csound developers; Debian csound-soundfont"),
    "FluidR3_GM": (SF2_DIR / "FluidR3_GM.sf2",
                   "MIT, Frank Wen; Debian fluid-soundfont-gm"),
}
TEST_FONT_NAME = "TimGM6mb"
TEST_FONT_LICENCE = ("GPL-2.0, Tim Brechbill / David Bolton; shipped inside pretty_midi "
                     "(the audio benchmark's test-half font)")
TAIL_S = 1.0  # seconds rendered after the last offset (the release)


class TestFontForTraining(MidizeroError):
    """The held-out test SoundFont was asked for in a training or validation split."""


@dataclass
class Rendering:
    """One piece rendered through one SoundFont.

    Attributes
    ----------
    piece : the piece's id (unique in a dataset).
    font : the SoundFont's name (file stem).
    spec : (T, 92) log-frequency spectrogram at 20 frames/s: float32 from
        :func:`render_one`, float16 as stored from :func:`iter_renderings`.
    notes : float32 (n, 3), rows ``[onset s, offset s, MIDI pitch]`` in the rendered
        audio's time, by onset.
    audio : float32 (n_samples,) mono at 22.05 kHz (:func:`render_one` only; None when
        read back from disk).
    meta : tempo, seed, split, source ... as stored.
    """

    piece: str
    font: str
    spec: np.ndarray
    notes: np.ndarray
    audio: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def test_font() -> Path:
    """pretty_midi's TimGM6mb.sf2, the held-out test SoundFont."""
    from ..render import timgm6mb

    return timgm6mb()


def font_name(sf2: str | Path) -> str:
    return Path(sf2).stem


def is_test_font(sf2: str | Path) -> bool:
    """True for the test SoundFont: pretty_midi's file, or any file of that name."""
    p = Path(sf2)
    if TEST_FONT_NAME.lower() in p.stem.lower():
        return True
    try:
        return p.resolve() == test_font().resolve()
    except OSError:
        return False


def check_training_font(sf2: str | Path, split: str = "train") -> None:
    """Raise :class:`TestFontForTraining` when the test SoundFont would render a
    ``train`` or ``valid`` split."""
    if split != "test" and is_test_font(sf2):
        raise TestFontForTraining(
            f"{Path(sf2).name} is the held-out test SoundFont: it renders only the test "
            "split, never training or validation data")


_RENDERERS: dict[str, object] = {}


def _renderer(sf2: str | Path):
    """A cached :class:`~midizero_app.audio.render.Renderer` at :data:`SR` (loading a large
    SoundFont takes seconds)."""
    from ..render import Renderer

    key = str(Path(sf2).resolve())
    if key not in _RENDERERS:
        if not Path(key).is_file():
            raise MidizeroError(f"SoundFont not found: {sf2}")
        _RENDERERS[key] = Renderer(key, SR)
    return _RENDERERS[key]


def _as_notes(notes) -> tuple[np.ndarray, np.ndarray | None]:
    n = np.asarray(notes, np.float64)
    if n.ndim != 2 or n.shape[1] not in (3, 4):
        raise ValueError(f"notes must be (n, 3) or (n, 4) rows (onset, offset, pitch[, "
                         f"velocity]), not {n.shape}")
    if len(n) and not np.all(np.isfinite(n)):
        raise ValueError("notes must be finite")
    n = n[np.lexsort((n[:, 2], n[:, 0]))]
    return n[:, :3].copy(), (n[:, 3].copy() if n.shape[1] == 4 else None)


def render_one(notes, sf2: str | Path, seed: int, tempo: float = 1.0, room: bool = True,
               noise_db: float | None = 30.0, piece: str = "", tail_s: float = TAIL_S
               ) -> Rendering:
    """Render notes through a SoundFont piano and compute the spectrogram (in memory).

    Parameters
    ----------
    notes : array-like (n, 3) or (n, 4), rows ``(onset s, offset s, pitch[, velocity])``;
        offsets as they should sound (pedal already applied). Without a velocity column
        velocities are drawn from ``seed`` (uniform 45..100).
    sf2 : SoundFont file (any; :func:`check_training_font` is the dataset's business).
    seed : seeds the velocities, the room and the noise.
    tempo : playback speed factor: times are divided by it (1.1 = 10 % faster).
    room : a random room (pedalboard's reverb) before the noise.
    noise_db : white-noise signal-to-noise ratio in dB; None for none.
    piece : the id recorded in the result.
    tail_s : seconds rendered after the last offset.

    Returns
    -------
    :class:`Rendering` with ``spec`` float32 (ceil(duration · 20), 92), ``notes`` float32
    (n, 3) in the rendered time, ``audio`` float32 mono at 22.05 kHz peak-normalised to
    0.9 (silence stays 0), duration = last offset / tempo + ``tail_s``.
    """
    from ..render import room as add_room

    if not tempo > 0:
        raise ValueError(f"tempo must be > 0, not {tempo}")
    rng = np.random.default_rng(seed)
    n, vel = _as_notes(notes)
    if vel is None:
        vel = rng.integers(45, 101, len(n)).astype(np.float64)
    n[:, :2] /= float(tempo)
    n[:, 1] = np.maximum(n[:, 1], n[:, 0] + 0.01)
    y = _renderer(sf2).render(n[:, 0], n[:, 1], n[:, 2].astype(np.int64),
                              np.clip(np.rint(vel), 1, 127).astype(np.int64), tail=tail_s)
    if room:
        y = add_room(y, SR, rng, snr_db=float(noise_db) if noise_db is not None else 200.0)
    else:
        power = float(np.mean(y ** 2)) if len(y) else 0.0
        if noise_db is not None and power > 0:
            y = y + rng.normal(0.0, np.sqrt(power / 10 ** (float(noise_db) / 10)), len(y))
        peak = float(np.max(np.abs(y), initial=0.0))
        y = (y * (0.9 / peak) if peak > 0 else y).astype(np.float32)
    meta = {"piece": piece, "font": font_name(sf2), "tempo": float(tempo), "seed": int(seed),
            "room": bool(room), "noise_db": noise_db, "seconds": len(y) / SR}
    return Rendering(piece, font_name(sf2), log_spectrogram(y, SR), n.astype(np.float32),
                     y, meta)


def save_rendering(r: Rendering, path: str | Path) -> None:
    """Write ``r`` (spec as float16, notes, meta JSON) to ``path`` atomically."""
    buf = io.BytesIO()
    np.savez(buf, spec=np.asarray(r.spec, np.float16), notes=np.asarray(r.notes, np.float32),
             meta=np.array(json.dumps(r.meta)))
    write_bytes(path, buf.getvalue())


def load_rendering(path: str | Path) -> Rendering:
    """Read one stored rendering (see :func:`save_rendering`); ``audio`` is None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            spec, notes, meta = z["spec"], z["notes"], json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise MidizeroError(f"{Path(path).name}: not a rendering file ({exc})") from None
    return Rendering(str(meta.get("piece", Path(path).stem)), str(meta.get("font", "")),
                     spec, notes, None, meta)


def rendering_files(root: str | Path, split: str) -> list[Path]:
    """The stored renderings of one split, sorted by file name."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return sorted((Path(root) / split).glob("*.npz"))


def iter_renderings(root: str | Path, split: str) -> Iterator[Rendering]:
    """Yield every stored :class:`Rendering` of ``split`` (train | valid | test) under the
    dataset folder ``root``, sorted by file name (piece, then font); ``spec`` float16
    (T, 92), ``notes`` float32 (n, 3)."""
    for path in rendering_files(root, split):
        yield load_rendering(path)


# --- sources: the music21 corpus and generated sequences ---------------------------------

MAX_TUNES = 10         # pieces taken from one multi-tune file (an ABC collection)
MIN_PIECE_S = 5.0      # shorter pieces are left out
CORPUS_TIMEOUT_S = 180.0  # seconds to parse one corpus file (a 300-tune ABC file: ~30 s)


def music21_task(path: str, memory_mb: int) -> tuple[str, bytes | str]:
    """One music21-readable score → ``("ok", npz bytes)`` holding ``piece_<k>`` float64
    (n, 4) note rows ``(onset s, offset s, pitch, velocity)`` for each of its first
    :data:`MAX_TUNES` scores (the file's own tempi, 120 quarter notes a minute where none is
    written; every part, drums left out), or ``("err", reason)``. Runs in a
    :func:`~midizero_app.core.parsing.run_limited` worker."""
    import pretty_midi

    # music21 writes 10080 ticks a quarter: a long mass movement passes pretty_midi's
    # 10⁷-tick guard against corrupt files, which does not apply to music21's own output.
    # The guard is pretty_midi's global: restored afterwards, since the app's MIDI reader
    # relies on it when this runs in its process.
    saved = pretty_midi.pretty_midi.MAX_TICK
    pretty_midi.pretty_midi.MAX_TICK = 1e9
    try:
        import music21

        s = music21.converter.parse(path)
        scores = list(s.scores) if isinstance(s, music21.stream.Opus) else [s]
        out = {}
        for k, sc in enumerate(scores[:MAX_TUNES]):
            try:
                mf = music21.midi.translate.streamToMidiFile(sc)
            except music21.repeat.ExpanderException:  # badly formed repeats: play them once
                mf = music21.midi.translate.streamToMidiFile(_without_repeats(sc))
            pm = pretty_midi.PrettyMIDI(io.BytesIO(mf.writestr()))
            rows = [(n.start, n.end, n.pitch, n.velocity) for inst in pm.instruments
                    if not inst.is_drum for n in inst.notes]
            if rows:
                out[f"piece_{k}"] = np.asarray(sorted(rows), np.float64)
        if not out:
            return "err", "no notes"
        buf = io.BytesIO()
        np.savez(buf, **out)
        return "ok", buf.getvalue()
    except MemoryError:
        return "err", f"needs more than {memory_mb} MB"
    except Exception as exc:  # noqa: BLE001 - one bad corpus file must not stop the batch
        return "err", f"{type(exc).__name__}: {str(exc)[:160]}"
    finally:
        pretty_midi.pretty_midi.MAX_TICK = saved


def _without_repeats(score):
    """``score`` with its repeat barlines made plain and its repeat expressions (segno,
    coda, da capo ...) removed, in place."""
    import music21

    for m in score.recurse().getElementsByClass(music21.stream.Measure):
        if isinstance(m.leftBarline, music21.bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, music21.bar.Repeat):
            m.rightBarline = music21.bar.Barline("regular")
    for e in list(score.recurse().getElementsByClass(music21.repeat.RepeatExpression)):
        e.activeSite.remove(e)
    return score


def decode_pieces(data: bytes, _path: str | None = None) -> list[np.ndarray]:
    """The note arrays of :func:`music21_task`'s bytes, in score order."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        keys = sorted(z.files, key=lambda k: int(k.split("_")[1]))
        return [z[k] for k in keys]


def corpus_notes(paths: list[str | Path], workers: int = 2,
                 timeout: float = CORPUS_TIMEOUT_S, memory_mb: int = 3072
                 ) -> Iterator[tuple[str, list[np.ndarray] | None, str | None]]:
    """Parse score files with music21 in ``workers`` limited processes.

    Yields ``(path, pieces, error)`` in completion order: ``pieces`` a list of float64
    (n, 4) arrays (:func:`music21_task`), or None with a one-line ``error``.
    """
    from ...core.parsing import run_limited

    for r in run_limited([str(p) for p in paths], music21_task, decode_pieces,
                         lambda _p: timeout, f"parsing took longer than {timeout:g} s",
                         "the parser crashed on this file", workers, memory_mb):
        yield r.path, r.notes, r.error


def frame_sequences(pieces: list[np.ndarray], tau: float = 0.01) -> list[list[list[int]]]:
    """Each piece's chords (pitches whose onsets lie within ``tau`` s, kept in 21..108) as
    frame sequences for :func:`~midizero_app.core.training.datagen.frame_distributions`."""
    out = []
    for n in pieces:
        n = n[(n[:, 2] >= 21) & (n[:, 2] <= 108)]
        if not len(n):
            continue
        cut = np.flatnonzero(np.diff(n[:, 0]) > tau) + 1
        out.append([sorted({int(p) for p in g}) for g in np.split(n[:, 2], cut)])
    return out


def generated_notes(mode: str, seconds: float, rng: np.random.Generator,
                    frame_dist_file: str | Path | None = None) -> np.ndarray:
    """A sequence of chords drawn in one of the encoder's data modes (``C``, ``P``, or ``S``
    with a frame-statistics file; :class:`~midizero_app.core.training.datagen.WindowSource`)
    and given a rhythm: a per-piece beat of 0.12–0.5 s, each chord lasting ½, 1 or 2 beats
    and sounding 0.5–1.8 times its span.

    Returns float64 (n, 4) rows ``(onset s, offset s, pitch, velocity)``, onsets < ``seconds``.
    """
    from ...core.training.datagen import WindowSource

    kw = {"note_max": 6} if mode.upper() == "C" else {}
    if mode.upper() == "P":
        kw = {"n_mean": 3.0, "n_std": 1.5, "p_mean": 62.0, "p_std": 14.0}
    src = WindowSource(mode, 10, pitch_range=(21, 108), frame_dist_file=frame_dist_file, **kw)
    beat = rng.uniform(0.12, 0.5)
    legato = rng.uniform(0.5, 1.8)
    base_vel = rng.uniform(50, 100)
    rows, t = [], 0.0
    while t < seconds:
        for frame in src.draw(rng):
            span = beat * rng.choice([0.5, 1.0, 1.0, 1.0, 2.0])
            for p in frame:
                v = np.clip(base_vel + rng.normal(0, 10), 20, 120)
                rows.append((t, t + max(0.05, span * legato * rng.uniform(0.9, 1.1)), p, v))
            t += span
            if t >= seconds:
                break
    return np.asarray(rows, np.float64).reshape(-1, 4)


# --- augmentation and splits -------------------------------------------------------------

def random_pedal(onset: np.ndarray, end: float, rng: np.random.Generator
                 ) -> list[tuple[float, float]]:
    """Sustain-pedal spans ``(down s, up s)``: changed every 1–3 s (at a note onset where
    there is one nearby), lifted 50 ms before it goes down again."""
    spans, t = [], float(onset[0]) if len(onset) else 0.0
    while t < end:
        nxt = t + rng.uniform(1.0, 3.0)
        if len(onset):
            i = int(np.searchsorted(onset, nxt))
            if i < len(onset) and onset[i] - nxt < 0.5:
                nxt = float(onset[i])
        spans.append((t, max(t + 0.05, nxt - 0.05)))
        t = nxt
    return spans


def augment(notes: np.ndarray, seconds: float, rng: np.random.Generator,
            pedal_p: float = 0.5) -> tuple[np.ndarray, float, float]:
    """A random rendering of a piece: tempo factor 0.9–1.1, a crop of ``seconds`` of
    rendered time (random start, at a note onset, for longer pieces), velocities scaled by
    0.6–1.15 with ±8 jitter, and (with probability ``pedal_p``) the sustain pedal.

    Parameters
    ----------
    notes : float (n, 4) rows ``(onset s, offset s, pitch, velocity)`` of the whole piece.

    Returns
    -------
    (notes float64 (m, 4) in the piece's time with the crop's start at 0 and offsets
    clipped to the crop, tempo, start s in the piece's time).
    """
    from ..render import pedal_offsets

    n = np.asarray(notes, np.float64)
    n = n[np.argsort(n[:, 0], kind="stable")]
    tempo = float(rng.uniform(0.9, 1.1))
    span = seconds * tempo  # piece seconds that render to ``seconds``
    if rng.random() < pedal_p and len(n):
        n = n.copy()
        n[:, 1] = pedal_offsets(n[:, 0], n[:, 1], random_pedal(n[:, 0], n[:, 1].max(), rng))
    start = 0.0
    if len(n) and n[-1, 0] - n[0, 0] > span:
        cand = n[n[:, 0] <= n[-1, 0] - span, 0]
        start = float(cand[rng.integers(len(cand))]) if len(cand) else 0.0
    keep = (n[:, 0] >= start) & (n[:, 0] < start + span)
    out = n[keep].copy()
    out[:, :2] -= start
    out[:, 1] = np.minimum(out[:, 1], span)
    gain = rng.uniform(0.6, 1.15)
    out[:, 3] = np.clip(np.rint(out[:, 3] * gain + rng.normal(0, 8, len(out))), 15, 127)
    return out, tempo, start


def assign_splits(pieces: list[str], seed: int, valid: float = 0.05, test: float = 0.1,
                  no_test: set[str] | None = None) -> dict[str, str]:
    """Piece id → ``train`` | ``valid`` | ``test``, decided for each id alone by a seeded
    hash (u = crc32(seed:id) / 2³², test below ``test``, valid below ``test + valid``), so a
    piece keeps its split whatever other pieces a dataset holds (a larger dataset made later
    into the same folder never moves a piece across splits). Ids in ``no_test`` (generated
    sequences) go to valid below ``valid``, else train."""
    import zlib

    no_test = no_test or set()
    out: dict[str, str] = {}
    for p in pieces:
        u = zlib.crc32(f"{seed}:{p}".encode()) / 2 ** 32
        if p in no_test:
            out[p] = "valid" if u < valid else "train"
        else:
            out[p] = "test" if u < test else "valid" if u < test + valid else "train"
    return out


# --- building a dataset ------------------------------------------------------------------

@dataclass
class Task:
    """One (piece, font) rendering to make."""

    piece: str
    source: str
    split: str
    font: str
    sf2: str
    notes: np.ndarray  # float64 (n, 4), the whole piece
    seed: int
    seconds: float
    out: str


def rendering_path(root: str | Path, split: str, piece: str, font: str) -> Path:
    return Path(root) / split / f"{piece}__{font}.npz"


def run_task(task: Task) -> dict:
    """Render one task and store it; returns its manifest entry (with ``elapsed_s``, wall
    seconds, and ``cpu_s``, this process's CPU seconds, a SoundFont's first load included).
    Runs in a worker process (module level, picklable)."""
    import time

    t0, c0 = time.perf_counter(), time.process_time()
    check_training_font(task.sf2, task.split)
    rng = np.random.default_rng(task.seed)
    notes, tempo, start = augment(task.notes, task.seconds, rng)
    use_room = bool(rng.random() < 0.85)
    noise_db = float(rng.uniform(20.0, 40.0))
    r = render_one(notes, task.sf2, seed=int(rng.integers(2 ** 31)), tempo=tempo,
                   room=use_room, noise_db=noise_db, piece=task.piece)
    r.meta.update(split=task.split, source=task.source, start=start, seed=task.seed,
                  n_notes=len(r.notes))
    save_rendering(r, task.out)
    entry = dict(r.meta, file=str(Path(task.out).relative_to(Path(task.out).parents[1])),
                 noise_db=noise_db)
    entry["elapsed_s"] = time.perf_counter() - t0
    entry["cpu_s"] = round(time.process_time() - c0, 3)
    return entry


def _worker_init() -> None:
    import os
    import warnings

    warnings.simplefilter("ignore")
    try:
        os.nice(5)
    except OSError:
        pass


def render_tasks(tasks: list[Task], workers: int = 2) -> Iterator[dict]:
    """Run tasks in ``workers`` processes (spawned; each keeps its SoundFonts loaded),
    yielding manifest entries in completion order. Tasks are handed out font by font so a
    worker loads each SoundFont once."""
    import multiprocessing as mp

    order = sorted(tasks, key=lambda t: (t.font, t.seed))
    if workers <= 1:
        for t in order:
            yield run_task(t)
        return
    with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap_unordered(run_task, order, chunksize=1)
