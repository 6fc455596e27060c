"""Score and performance files → notes + metadata.

One function, :func:`load_notes`, reads any supported file into a :class:`Notes` record:
note onsets in seconds and MIDI pitches, plus measure/beat positions and a grid key for
exact (score) grouping where the format has them. Formats:

* MIDI (``.mid .midi``) through pretty_midi; a file pretty_midi rejects is retried through
  mido with ``clip=True`` (out-of-range data bytes clipped) and marked ``repaired``.
* MusicXML (``.musicxml .xml .mxl``), MEI and Humdrum (``.krn``) through partitura —
  measured 3–4× faster than music21 on the ASAP MusicXML files (benchmarks/RESULTS.md).
* ABC (``.abc``) through music21 (partitura has no ABC reader); a file with several tunes
  becomes one piece with the tunes one after another.

This module parses untrusted files and may hang or exhaust memory on corrupt input: call
it through :mod:`midizero_app.core.parsing`, which runs it in limited worker processes.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIDI_SUFFIXES = (".mid", ".midi")
XML_SUFFIXES = (".musicxml", ".xml", ".mxl", ".mei", ".krn")
ABC_SUFFIXES = (".abc",)
SCORE_SUFFIXES = MIDI_SUFFIXES + XML_SUFFIXES + ABC_SUFFIXES

# Stems that say nothing about the piece (e.g. ASAP's midi_score.mid): use the folders instead.
_GENERIC_STEMS = {"midi_score", "xml_score", "score", "main", "index", "piece", "untitled"}
_DEFAULT_QPM = 120.0


class ScoreError(Exception):
    """A file could not be read; the message is the reason shown to the user."""


@dataclass
class Notes:
    """Notes of one file, sorted by onset.

    Attributes
    ----------
    onset : float64 array (N,), seconds from the start of the file.
    pitch : int16 array (N,), MIDI pitch numbers (0..127, not yet folded).
    grid : int64 array (N,) or None. An exact onset key (MIDI ticks, or score divisions) for
        exact score grouping; None for formats without one.
    measure : int32 array (N,), 1-based measure number, or -1 where unknown.
    beat : float32 array (N,), 1-based beat in the measure, or NaN where unknown.
    voice : int32 array (N,) or None. The note's voice, numbered 0.. and unique across the
        file's parts and staves (one number per part, staff and voice); None for formats
        without voices (MIDI, recordings).
    """

    onset: np.ndarray
    pitch: np.ndarray
    grid: np.ndarray | None = None
    measure: np.ndarray | None = None
    beat: np.ndarray | None = None
    title: str = ""
    composer: str = ""
    format: str = ""
    repaired: bool = False
    quantised: bool = False
    warnings: list[str] = field(default_factory=list)
    voice: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.onset)
        if self.measure is None:
            self.measure = np.full(n, -1, np.int32)
        if self.beat is None:
            self.beat = np.full(n, np.nan, np.float32)
        order = np.lexsort((self.pitch, self.onset))
        self.onset = np.asarray(self.onset, np.float64)[order]
        self.pitch = np.asarray(self.pitch, np.int16)[order]
        self.measure = np.asarray(self.measure, np.int32)[order]
        self.beat = np.asarray(self.beat, np.float32)[order]
        if self.grid is not None:
            self.grid = np.asarray(self.grid, np.int64)[order]
        if self.voice is not None:
            self.voice = np.asarray(self.voice, np.int32)[order]

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def duration(self) -> float:
        return float(self.onset[-1]) if len(self.onset) else 0.0

    def to_arrays(self) -> dict:
        """Plain arrays + strings, for passing between processes without pickling objects."""
        return {k: getattr(self, k) for k in
                ("onset", "pitch", "grid", "measure", "beat", "voice", "title", "composer",
                 "format", "repaired", "quantised", "warnings")}

    @classmethod
    def from_arrays(cls, d: dict) -> "Notes":
        return cls(**d)


def fallback_title(path: Path) -> str:
    """A readable title from a file name (folders for generic names like ``midi_score.mid``)."""
    stem = path.stem
    if stem.lower() in _GENERIC_STEMS:
        parts = [p for p in path.parent.parts[-3:] if p not in ("/", "")]
        stem = " ".join(parts) or stem
    return re.sub(r"[_]+", " ", stem).strip()


def load_notes(path: str | Path) -> Notes:
    """Read a score or performance file.

    Parameters
    ----------
    path : a MIDI, MusicXML, MEI, Humdrum or ABC file.

    Returns
    -------
    Notes with at least one note.

    Raises
    ------
    ScoreError with a one-line reason (unknown format, corrupt file, no notes, drums only).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ScoreError("not a readable file")
    if path.stat().st_size == 0:
        raise ScoreError("empty file")
    if suffix in MIDI_SUFFIXES:
        notes = _load_midi(path)
    elif suffix in XML_SUFFIXES:
        notes = _load_partitura(path)
    elif suffix in ABC_SUFFIXES:
        notes = _load_abc(path)
    else:
        raise ScoreError(f"unsupported file type {suffix!r}")
    if len(notes) == 0:
        raise ScoreError("no pitched notes (empty, or drums only)")
    if notes.onset[0] < 0:  # a pickup measure before time 0 (partitura)
        notes.onset -= notes.onset[0]
    notes.title = " ".join(notes.title.split()) or fallback_title(path)
    notes.composer = " ".join(notes.composer.split())
    return notes


# --- MIDI -----------------------------------------------------------------------------

def _load_midi(path: Path) -> Notes:
    import mido
    import pretty_midi

    repaired = False
    try:
        midi = mido.MidiFile(str(path))
    except Exception as first:  # noqa: BLE001 - mido raises many types on corrupt data
        try:
            midi = mido.MidiFile(str(path), clip=True)
            repaired = True
        except Exception:  # noqa: BLE001
            raise ScoreError(f"corrupt MIDI file ({_short(first)})") from None
    if midi.type == 2:
        raise ScoreError("MIDI type 2 (asynchronous tracks) is not supported")
    buf = io.BytesIO()
    try:
        midi.save(file=buf)
        buf.seek(0)
        pm = pretty_midi.PrettyMIDI(buf)
    except Exception as exc:  # noqa: BLE001
        raise ScoreError(f"corrupt MIDI file ({_short(exc)})") from None

    onsets, pitches = [], []
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            onsets.append(n.start)
            pitches.append(n.pitch)
    onset = np.asarray(onsets, np.float64)
    pitch = np.asarray(pitches, np.int16)
    grid = np.asarray([pm.time_to_tick(t) for t in onset], np.int64) if len(onset) else None
    measure, beat = _midi_positions(pm, onset)
    return Notes(onset, pitch, grid, measure, beat,
                 title=_midi_title(midi), composer=_midi_composer(midi), format="midi",
                 repaired=repaired, quantised=_looks_quantised(grid, midi.ticks_per_beat))


def _midi_positions(pm, onset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measure numbers and beats from the file's time signatures (MIDI default 4/4)."""
    if not len(onset):
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    end = max(pm.get_end_time(), float(onset[-1])) + 1.0
    beats = pm.get_beats()
    downbeats = pm.get_downbeats()
    # pretty_midi stops its grids at the last note end; extend so every onset is covered.
    if len(beats) < 2 or len(downbeats) < 1:
        return np.full(len(onset), -1, np.int32), np.full(len(onset), np.nan, np.float32)
    while beats[-1] < end:
        step = beats[-1] - beats[-2]
        beats = np.append(beats, beats[-1] + max(step, 1e-3))
    measure = np.searchsorted(downbeats, onset + 1e-6, side="right").astype(np.int32)
    bidx = np.searchsorted(beats, onset + 1e-6, side="right") - 1
    bidx = np.clip(bidx, 0, len(beats) - 2)
    frac = (onset - beats[bidx]) / np.maximum(beats[bidx + 1] - beats[bidx], 1e-6)
    mstart = np.searchsorted(beats, downbeats[np.clip(measure - 1, 0, None)] - 1e-6)
    beat = (bidx - mstart + 1 + frac).astype(np.float32)
    beat[measure == 0] = np.nan  # anacrusis before the first downbeat of the grid
    measure[measure == 0] = -1
    return measure, beat


def _looks_quantised(grid: np.ndarray | None, tpb: int) -> bool:
    """True when onsets sit on a score grid (a 1/24-beat grid for ≥ 95 % of notes).

    Performance MIDI (e.g. from a Disklavier) has onsets at arbitrary ticks, so only a few
    per cent land on such a grid by chance.
    """
    if grid is None or len(grid) < 4 or tpb < 24:
        return False
    step = max(tpb // 24, 1)
    if step == 1:
        return False
    return float(np.mean(grid % step == 0)) >= 0.95


def _midi_title(midi) -> str:
    for track in midi.tracks[:2]:
        for msg in track:
            if msg.type == "track_name" and msg.name.strip() and \
                    msg.name.strip().lower() not in ("piano", "track 1", "untitled", "acoustic grand piano"):
                return msg.name.strip()
            if msg.time > 0:
                break
    return ""


def _midi_composer(midi) -> str:
    for track in midi.tracks[:2]:
        for msg in track:
            if msg.type == "copyright" and msg.text.strip():
                return msg.text.strip()
    return ""


# --- MusicXML / MEI / Humdrum ---------------------------------------------------------

def _load_partitura(path: Path) -> Notes:
    import partitura as pt

    try:
        score = pt.load_score(str(path))
    except Exception as exc:  # noqa: BLE001 - partitura raises many types on bad files
        raise ScoreError(f"could not parse {path.suffix[1:]} file ({_short(exc)})") from None
    onsets, pitches, grids, measures, beats, voices = [], [], [], [], [], []
    for pi, part in enumerate(score.parts):
        try:
            na = part.note_array(include_time_signature=True, include_metrical_position=True,
                                 include_staff=True)
        except Exception as exc:  # noqa: BLE001
            raise ScoreError(f"could not read notes ({_short(exc)})") from None
        if not len(na):
            continue
        # partitura numbers voices within a part (notes without one get max + 1) and
        # staves from 1 (0 unknown): the part, staff and voice together name a line
        voices.append(np.stack([np.full(len(na), pi), na["staff"], na["voice"]], 1))
        qpm = _partitura_qpm(part)
        onsets.append(na["onset_quarter"] * 60.0 / qpm)
        pitches.append(na["pitch"])
        # Divisions per quarter may differ between parts: the grid key is in 1/10080 quarters
        # (divisible by every common tuplet), so equal onsets compare equal across parts.
        grids.append(np.round(na["onset_quarter"].astype(np.float64) * 10080).astype(np.int64))
        measures.append(_partitura_measures(part, na))
        beats.append(1.0 + na["rel_onset_div"] / np.maximum(na["tot_measure_div"], 1)
                     * na["ts_beats"])
    if not onsets:
        return Notes(np.zeros(0), np.zeros(0, np.int16), format=path.suffix[1:].lower())
    title = " – ".join(t.strip() for t in (score.work_title, score.movement_title or score.title)
                       if isinstance(t, str) and t.strip())
    composer = score.composer.strip() if isinstance(score.composer, str) else ""
    return Notes(np.concatenate(onsets), np.concatenate(pitches), np.concatenate(grids),
                 np.concatenate(measures), np.concatenate(beats),
                 title=title, composer=composer, format=_fmt(path), quantised=True,
                 voice=_voice_numbers(np.concatenate(voices)))


def _voice_numbers(keys: np.ndarray) -> np.ndarray:
    """Dense voice numbers 0.. (int32 (N,)) from per-note keys (N, k), e.g. (part, staff,
    voice): equal keys, equal numbers."""
    return np.unique(keys.astype(np.int64), axis=0, return_inverse=True)[1] \
        .reshape(-1).astype(np.int32)


def _fmt(path: Path) -> str:
    s = path.suffix.lower()
    return {".mxl": "musicxml", ".xml": "musicxml", ".musicxml": "musicxml",
            ".mei": "mei", ".krn": "humdrum"}.get(s, s[1:])


def _partitura_qpm(part) -> float:
    """Quarter notes per minute from the first tempo mark, else 120 (seconds are nominal)."""
    import partitura.score as pscore

    for mark in part.iter_all(pscore.Tempo):
        try:
            return 60e6 / float(mark.microseconds_per_quarter)
        except (TypeError, ValueError, ZeroDivisionError):
            break
    return _DEFAULT_QPM


def _partitura_measures(part, na) -> np.ndarray:
    import partitura.score as pscore

    measures = sorted(part.iter_all(pscore.Measure), key=lambda m: m.start.t)
    if not measures:
        return np.full(len(na), -1, np.int32)
    starts = np.asarray([m.start.t for m in measures])
    numbers = np.asarray([m.number if m.number is not None else i + 1
                          for i, m in enumerate(measures)], np.int32)
    idx = np.clip(np.searchsorted(starts, na["onset_div"], side="right") - 1, 0, len(starts) - 1)
    return numbers[idx]


# --- ABC ------------------------------------------------------------------------------

def _load_abc(path: Path) -> Notes:
    import music21

    try:
        parsed = music21.converter.parse(str(path), format="abc")
    except Exception as exc:  # noqa: BLE001 - music21 raises many types on bad files
        raise ScoreError(f"could not parse ABC file ({_short(exc)})") from None
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    onsets, pitches, grids, measures, voices = [], [], [], [], []
    offset_q = 0.0
    title = composer = ""
    for sc in scores:
        md = sc.metadata
        if md is not None:
            title = title or (md.title or "")
            composer = composer or (md.composer or "")
        # ABC voices (V:) are parts; a file of tunes keeps one line per voice number
        for pi, part in enumerate(list(sc.parts) or [sc]):
            for n in part.recurse().notes:
                q = float(n.getOffsetInHierarchy(sc)) + offset_q
                mnum = n.measureNumber if n.measureNumber is not None else -1
                for p in n.pitches:
                    onsets.append(q * 60.0 / _DEFAULT_QPM)
                    pitches.append(p.midi)
                    grids.append(round(q * 10080))
                    measures.append(mnum)
                    voices.append(pi)
        offset_q += float(sc.highestTime) + 4.0
    if len(scores) > 1 and title:
        title = f"{title} (+{len(scores) - 1} more tunes)"
    return Notes(np.asarray(onsets), np.asarray(pitches, np.int16), np.asarray(grids, np.int64),
                 np.asarray(measures, np.int32), None, title=title, composer=composer,
                 format="abc", quantised=True,
                 voice=_voice_numbers(np.asarray(voices, np.int64).reshape(-1, 1)))


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:160]
