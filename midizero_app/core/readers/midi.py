"""MIDI files (``.mid .midi``) → :class:`~.common.Notes`, through mido and pretty_midi.

A file mido rejects is read again with ``clip=True`` (out-of-range data bytes clipped) and
marked ``repaired``. pretty_midi keeps a table of one float per tick up to the last event
and refuses files past 10⁷ ticks as "likely corrupt" (83 minutes at 2,000 ticks per
second); long but valid files are read here with their ticks scaled so that table stays
under :data:`MAX_TICKS`, and only a file longer than :data:`MAX_HOURS` is refused, as too
long.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from .common import Notes, ScoreError, short_reason

SUFFIXES = (".mid", ".midi")
MAX_HOURS = 24.0  # a longer file is refused as too long (no piece of music is)
MAX_TICKS = 40_000_000  # pretty_midi's tick table: 8 bytes a tick (320 MB at most)
_NOTE_TYPES = ("note_on", "note_off")
_NAMELESS = ("piano", "track 1", "untitled", "acoustic grand piano")


def read(path: str | Path) -> Notes:
    """Read a MIDI file (type 0 or 1).

    Parameters
    ----------
    path : a ``.mid`` / ``.midi`` file (any valid name: it is opened by Python).

    Returns
    -------
    Notes : onsets in seconds (the file's tempo map), ``grid`` in MIDI ticks, measures and
        beats from its time signatures (4/4 by default); drum notes left out.

    Raises
    ------
    ScoreError : corrupt data, type 2, or longer than :data:`MAX_HOURS`.
    """
    import mido
    import pretty_midi

    repaired = False
    try:
        midi = mido.MidiFile(path)
    except Exception as first:  # noqa: BLE001 - mido raises many types on corrupt data
        try:
            midi = mido.MidiFile(path, clip=True)
            repaired = True
        except Exception:  # noqa: BLE001
            raise ScoreError(f"corrupt MIDI file ({short_reason(first)})") from None
    if midi.type == 2:
        raise ScoreError("MIDI type 2 (asynchronous tracks) is not supported")
    if midi.ticks_per_beat <= 0:
        raise ScoreError(f"corrupt MIDI file (ticks per beat {midi.ticks_per_beat})")
    saved = pretty_midi.pretty_midi.MAX_TICK  # raised for a long file while it is read
    try:
        pm, onset_ticks = _pretty_midi(midi)
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
        measure, beat = _positions(pm, onset)
        # ticks of the file itself: a long file's grid is in scaled ticks
        quantised = looks_quantised(grid if onset_ticks is None else onset_ticks,
                                    midi.ticks_per_beat)
    finally:
        pretty_midi.pretty_midi.MAX_TICK = saved
    return Notes(onset, pitch, grid, measure, beat,
                 title=_title(midi), composer=_composer(midi), format="midi",
                 repaired=repaired, quantised=quantised)


def _pretty_midi(midi):
    """pretty_midi's reading of a mido file; for a file past pretty_midi's tick limit also
    the ticks of its note onsets (int64 (N,), drums left out), else None."""
    import pretty_midi

    last = max((sum(m.time for m in track) for track in midi.tracks), default=0)
    if last + 1 <= pretty_midi.pretty_midi.MAX_TICK:
        buf = io.BytesIO()
        try:
            midi.save(file=buf)
            buf.seek(0)
            return pretty_midi.PrettyMIDI(buf), None
        except Exception as exc:  # noqa: BLE001
            raise ScoreError(f"corrupt MIDI file ({short_reason(exc)})") from None
    return _long_file(midi)


def _long_file(midi):
    """A file past pretty_midi's tick limit: events after the last note dropped, the
    length checked against :data:`MAX_HOURS`, and ticks divided by a whole factor when
    the table would pass :data:`MAX_TICKS` (onsets keep their times to one scaled tick)."""
    import mido
    import pretty_midi

    tracks, end, onset_ticks = [], 0, []
    for track in midi.tracks:
        events, t = [], 0
        for msg in track:
            t += msg.time
            events.append((t, msg))
            if msg.type in _NOTE_TYPES:
                end = max(end, t)
                if msg.type == "note_on" and msg.velocity > 0 and msg.channel != 9:
                    onset_ticks.append(t)
        tracks.append(events)
    hours = _seconds_at(tracks, end, midi.ticks_per_beat) / 3600.0
    if hours > MAX_HOURS:
        raise ScoreError(f"too long ({hours:.0f} h; the limit is {MAX_HOURS:.0f} h)")
    factor = max(1, math.ceil((end + 1) / MAX_TICKS))
    out = mido.MidiFile(type=midi.type, ticks_per_beat=midi.ticks_per_beat, charset="latin1")
    for events in tracks:
        track, prev = mido.MidiTrack(), 0
        for t, msg in events:
            if t > end:
                break
            # note ends round up and the rest down, so no note shrinks to nothing;
            # never before the previous event, so the track stays in order
            off = msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0)
            t = max(prev, -(-t // factor) if off else t // factor)
            track.append(msg.copy(time=t - prev))
            prev = t
        out.tracks.append(track)
    out.ticks_per_beat = midi.ticks_per_beat / factor  # pretty_midi's tick length
    # pretty_midi's own limit, for this file (read() puts the default back)
    pretty_midi.pretty_midi.MAX_TICK = max(pretty_midi.pretty_midi.MAX_TICK,
                                           round(end / factor) + 2)
    try:
        return pretty_midi.PrettyMIDI(mido_object=out), np.asarray(onset_ticks, np.int64)
    except Exception as exc:  # noqa: BLE001
        raise ScoreError(f"corrupt MIDI file ({short_reason(exc)})") from None


def _seconds_at(tracks: list[list[tuple[int, object]]], tick: int, tpb: int) -> float:
    """Seconds at ``tick`` under the files' tempo changes (500,000 µs a beat until the
    first)."""
    changes = sorted((t, msg.tempo) for events in tracks for t, msg in events
                     if msg.type == "set_tempo" and t <= tick)
    seconds, at, tempo = 0.0, 0, 500_000
    for t, new in changes:
        seconds += (t - at) * tempo / tpb / 1e6
        at, tempo = t, new
    return seconds + (tick - at) * tempo / tpb / 1e6


def _positions(pm, onset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measure numbers (int32 (N,)) and beats (float32 (N,)) from the file's time signatures
    (MIDI default 4/4)."""
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


def looks_quantised(grid: np.ndarray | None, tpb: int) -> bool:
    """True when onsets (``grid``, int64 (N,) MIDI ticks at ``tpb`` ticks per beat) sit on a
    score grid: a 1/24-beat grid for ≥ 95 % of notes.

    Performance MIDI (e.g. from a Disklavier) has onsets at arbitrary ticks, so only a few
    per cent land on such a grid by chance.
    """
    if grid is None or len(grid) < 4 or tpb < 24:
        return False
    step = max(tpb // 24, 1)
    if step == 1:
        return False
    return float(np.mean(grid % step == 0)) >= 0.95


def _title(midi) -> str:
    for track in midi.tracks[:2]:
        for msg in track:
            if msg.type == "track_name" and msg.name.strip() and \
                    msg.name.strip().lower() not in _NAMELESS:
                return msg.name.strip()
            if msg.time > 0:
                break
    return ""


def _composer(midi) -> str:
    for track in midi.tracks[:2]:
        for msg in track:
            if msg.type == "copyright" and msg.text.strip():
                return msg.text.strip()
    return ""
