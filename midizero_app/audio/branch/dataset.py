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
