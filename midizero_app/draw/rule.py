"""The ``rule`` method: drawn notes snapped to the chords of a progression in a key.

midiDraw's working idea, done with care: a chord progression in the chosen key (the one
from :data:`~midizero_app.draw.theory.PROGRESSIONS` that already fits most of the ink, or
one the user names) sounds one chord per harmonic-rhythm slot. At every step the drawing
is cut into strokes (drawn rows with gaps between them):

* a line (at most :data:`THIN_ROWS` semitones tall) is followed in the key's scale: its
  rows' nearest scale tones, a melody that moves by step with the stroke (passing and
  neighbour tones included);
* a taller stroke (a filled shape, a thick letter) sounds the chord of its slot, with its
  seventh and ninth, across the stroke's whole span: a full, spread voicing, its upper
  notes rolled in as a broken chord.

Runs of the same pitch become held notes (split where the chord changes), and a note
rings on while the stroke still covers its row (pedalled legato), so note lengths follow
the strokes; velocity follows the strokes' darkness.
"""
from __future__ import annotations

import numpy as np

from ..core.frames import PITCH_HI, PITCH_LO
from .drawing import Drawing, ring
from .image import DrawError
from .result import Generated
from .theory import PROGRESSIONS, Key, chord_tones, parse_key, parse_progression, snap

MAX_VOICES = 10  # notes sounding together at most (two hands of a pianist, spread)
MAX_STRUCK = 3   # notes starting together at most: bigger chords are rolled
# A stroke at most this many semitones tall at a step is a line, played as a melody in the
# scale; taller ones are voiced as chords. On the benchmark drawings (σ = 1 IoU, frames
# struck with a second): 2 rows 0.511 / 0.17, 3 rows 0.540 / 0.20, 5 rows 0.566 / 0.22;
# 3 keeps a line to at most two notes a second apart.
THIN_ROWS = 3
STROKE_GAP = 2   # drawn rows more than this apart at a step belong to different strokes
LOW_SPACING = 7  # below LOW_LIMIT, keep voices at least a fifth apart (no low mud)
LOW_LIMIT = 48


def _slot_degrees(progression: tuple[int, ...], n_steps: int, steps_per_chord: int) -> np.ndarray:
    """Scale degree of the chord at every step (the progression repeats)."""
    slot = np.arange(n_steps) // steps_per_chord
    return np.asarray(progression)[slot % len(progression)]


def choose_progression(drawing: Drawing, key: Key, steps_per_chord: int) -> tuple[int, ...]:
    """The table progression under which the most ink already sits on chord tones.

    Ties keep the table's order (most common first).
    """
    ink = drawing.ink
    pcs = (np.arange(ink.shape[1]) + PITCH_LO) % 12
    best, best_score = None, -1.0
    for prog in PROGRESSIONS[key.mode]:
        deg = _slot_degrees(prog, drawing.n_steps, steps_per_chord)
        member = np.zeros((drawing.n_steps, 12), bool)
        for d in set(deg.tolist()):
            member[np.ix_(deg == d, list(key.triad(d)))] = True
        score = float((ink * member[:, pcs]).sum())
        if score > best_score + 1e-9:
            best, best_score = prog, score
    return best


def _thin(pitches: np.ndarray, max_voices: int) -> np.ndarray:
    """At most ``max_voices`` of the sorted pitches: bottom, top and evenly between; then
    low voices closer than a fifth are dropped."""
    if len(pitches) > max_voices:
        pitches = pitches[np.unique(np.round(np.linspace(0, len(pitches) - 1, max_voices))
                                    .astype(np.int64))]
    keep = [int(pitches[-1])]
    for p in pitches[-2::-1]:  # downwards from the top
        if p < LOW_LIMIT and keep[-1] - p < LOW_SPACING:
            continue
        keep.append(int(p))
    return np.asarray(sorted(keep), np.int64)


def _strokes(drawn: np.ndarray) -> list[np.ndarray]:
    """Sorted drawn pitches of one step cut into strokes where they are more than
    :data:`STROKE_GAP` apart."""
    return np.split(drawn, np.flatnonzero(np.diff(drawn) > STROKE_GAP) + 1)


def _voice(drawn: np.ndarray, scale: np.ndarray, extended: np.ndarray,
           chord: np.ndarray) -> np.ndarray:
    """The pitches one step sounds: each line's rows snapped to the scale, each taller
    stroke filled with the extended chord's tones within its span (the nearest chord tones
    where its span holds none)."""
    out = []
    for stroke in _strokes(drawn):
        lo, hi = int(stroke[0]), int(stroke[-1])
        if hi - lo + 1 <= THIN_ROWS:
            out.append(snap(stroke, scale))
            continue
        inside = extended[(extended >= lo) & (extended <= hi)]
        out.append(inside if len(inside) else snap(stroke, chord))
    return np.unique(np.concatenate(out))


def _arpeggiate(notes: np.ndarray, max_struck: int) -> np.ndarray:
    """Break big chords: where more than ``max_struck`` notes start on one step, they are
    dealt into ceil(n / max_struck) open-spaced groups (every g-th note from the bottom, so
    a group's notes lie far apart) struck one 16th after another from the lowest group up,
    each note still ending where its stroke ends. A ten-note chord is a broken chord over
    four 16ths instead of a roll over eight."""
    if max_struck < 1 or not len(notes):
        return notes
    out = notes.copy()
    for t in np.unique(notes[:, 0]):
        idx = np.flatnonzero(notes[:, 0] == t)
        if len(idx) <= max_struck:
            continue
        idx = idx[np.argsort(notes[idx, 2])]
        groups = -(-len(idx) // max_struck)
        for rank, i in enumerate(idx):
            out[i, 0] = min(t + rank % groups, notes[i, 1] - 1)
    return out


def rule(drawing: Drawing, key: Key | str = "C", tempo: float = 96.0,
         progression: str | tuple[int, ...] | None = None, chords_per_bar: int = 1,
         max_voices: int = MAX_VOICES, max_struck: int = MAX_STRUCK) -> Generated:
    """Make music from a drawing by snapping it to chords.

    Parameters
    ----------
    drawing : the drawn roll.
    key : a :class:`Key` or its name (``"D"``, ``"F# minor"``).
    tempo : quarter notes per minute.
    progression : roman numerals (``"I V vi IV"``) or 0-based degrees; None picks the table
        progression that fits the drawing best.
    chords_per_bar : harmonic rhythm (1, 2 or 4 chords a bar).
    max_voices : notes chosen at one step at most.
    max_struck : notes that may start together; bigger chords are rolled upwards.

    Returns
    -------
    Generated : every pitch is in the key's scale and in 21..108.
    """
    key = parse_key(key)
    if drawing.is_empty():
        raise DrawError("nothing is drawn")
    if chords_per_bar not in (1, 2, 4):
        raise DrawError("chords per bar must be 1, 2 or 4")
    spc = drawing.steps_per_bar // chords_per_bar
    if progression is None:
        prog = choose_progression(drawing, key, spc)
    elif isinstance(progression, str):
        prog = parse_progression(progression, key)
    else:
        prog = tuple(int(d) for d in progression)
    deg = _slot_degrees(prog, drawing.n_steps, spc)
    tones = {d: chord_tones(key.triad(d), PITCH_LO, PITCH_HI) for d in set(deg.tolist())}
    extended = {d: chord_tones(key.extended(d), PITCH_LO, PITCH_HI) for d in tones}
    scale = chord_tones(key.scale, PITCH_LO, PITCH_HI)
    mask, ink = drawing.mask, drawing.ink
    T = drawing.n_steps
    chosen: list[np.ndarray] = [np.zeros(0, np.int64)] * T
    for t in range(T):
        drawn = np.flatnonzero(mask[t]) + PITCH_LO
        if len(drawn):
            d = int(deg[t])
            chosen[t] = _thin(_voice(drawn, scale, extended[d], tones[d]), max_voices)
    melody = np.array([int(v[-1]) if len(v) else -1 for v in chosen])  # the top line
    # Runs of one pitch → held notes, split where the chord changes.
    on = np.zeros((T, PITCH_HI - PITCH_LO + 1), bool)
    for t, v in enumerate(chosen):
        on[t, v - PITCH_LO] = True
    slot = np.arange(T) // spc
    ring(on, mask, hold=np.r_[False, slot[1:] == slot[:-1]])  # not across a chord change
    notes = []
    for col in np.flatnonzero(on.any(0)):
        steps = np.flatnonzero(on[:, col])
        brk = np.flatnonzero((np.diff(steps) != 1) | (np.diff(slot[steps]) != 0)) + 1
        for run in np.split(steps, brk):
            p = col + PITCH_LO
            lo_c, hi_c = max(col - 2, 0), col + 3
            dark = float(ink[run[0]:run[-1] + 1, lo_c:hi_c].max(1).mean())
            vel = 34 + 72 * dark + (8 if melody[run[0]] == p else 0) \
                + (4 if run[0] % drawing.steps_per_bar == 0 else 0)
            notes.append((run[0], run[-1] + 1, p, int(np.clip(round(vel), 1, 127))))
    notes = _arpeggiate(np.asarray(notes, np.int64).reshape(-1, 4), max_struck)
    info = {"progression": " ".join(key.roman(d) for d in prog),
            "chords_per_bar": chords_per_bar}
    return Generated(notes, T, tempo, key, "rule",
                     drawing.steps_per_beat, drawing.beats_per_bar, info=info)
