"""A partitura score → :class:`~.common.Notes`: what the MusicXML, MEI and Humdrum readers
share (partitura reads all three; measured 3–4× faster than music21 on the ASAP MusicXML
files, docs/DESIGN-NOTES.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import DEFAULT_QPM, Notes, ScoreError, clean_text, short_reason, voice_numbers

FORMATS = {".mxl": "musicxml", ".xml": "musicxml", ".musicxml": "musicxml",
           ".mei": "mei", ".krn": "humdrum"}


def load(loader, path: str | Path, kind: str) -> Notes:
    """Parse ``path`` with a partitura loader (``loader(filename)`` → Score) and collect its
    notes; a parser failure becomes a :class:`ScoreError` naming the file's suffix (else
    ``kind``)."""
    try:
        score = loader(str(path))
    except Exception as exc:  # noqa: BLE001 - partitura raises many types on bad files
        name = Path(path).suffix[1:] or kind
        raise ScoreError(f"could not parse {name} file ({short_reason(exc)})") from None
    return notes_of(score, FORMATS.get(Path(path).suffix.lower(), kind))


def notes_of(score, fmt: str) -> Notes:
    """Notes of a partitura Score: onsets in seconds at the first tempo mark (else 120 quarter
    notes a minute), ``grid`` in 1/10080 quarter notes, measures, beats and voices (one
    number per part, staff and voice)."""
    onsets, pitches, grids, measures, beats, voices = [], [], [], [], [], []
    for pi, part in enumerate(score.parts):
        try:
            na = part.note_array(include_time_signature=True, include_metrical_position=True,
                                 include_staff=True)
        except Exception as exc:  # noqa: BLE001
            raise ScoreError(f"could not read notes ({short_reason(exc)})") from None
        if not len(na):
            continue
        # partitura numbers voices within a part (notes without one get max + 1) and
        # staves from 1 (0 unknown): the part, staff and voice together name a line
        voices.append(np.stack([np.full(len(na), pi), na["staff"], na["voice"]], 1))
        qpm = _qpm(part)
        onsets.append(na["onset_quarter"] * 60.0 / qpm)
        pitches.append(na["pitch"])
        # Divisions per quarter may differ between parts: the grid key is in 1/10080 quarters
        # (divisible by every common tuplet), so equal onsets compare equal across parts.
        grids.append(np.round(na["onset_quarter"].astype(np.float64) * 10080).astype(np.int64))
        measures.append(_measures(part, na))
        beats.append(1.0 + na["rel_onset_div"] / np.maximum(na["tot_measure_div"], 1)
                     * na["ts_beats"])
    if not onsets:
        return Notes(np.zeros(0), np.zeros(0, np.int16), format=fmt)
    title = " – ".join(t for t in (clean_text(score.work_title),
                                   clean_text(score.movement_title) or clean_text(score.title))
                       if t)
    return Notes(np.concatenate(onsets), np.concatenate(pitches), np.concatenate(grids),
                 np.concatenate(measures), np.concatenate(beats),
                 title=title, composer=clean_text(score.composer), format=fmt, quantised=True,
                 voice=voice_numbers(np.concatenate(voices)))


def _qpm(part) -> float:
    """Quarter notes per minute from the first tempo mark, else 120 (seconds are nominal)."""
    import partitura.score as pscore

    for mark in part.iter_all(pscore.Tempo):
        try:
            return 60e6 / float(mark.microseconds_per_quarter)
        except (TypeError, ValueError, ZeroDivisionError):
            break
    return DEFAULT_QPM


def _measures(part, na) -> np.ndarray:
    import partitura.score as pscore

    measures = sorted(part.iter_all(pscore.Measure), key=lambda m: m.start.t)
    if not measures:
        return np.full(len(na), -1, np.int32)
    starts = np.asarray([m.start.t for m in measures])
    numbers = np.asarray([m.number if m.number is not None else i + 1
                          for i, m in enumerate(measures)], np.int32)
    idx = np.clip(np.searchsorted(starts, na["onset_div"], side="right") - 1, 0, len(starts) - 1)
    return numbers[idx]
