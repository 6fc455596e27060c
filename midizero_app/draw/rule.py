"""The ``rule`` method: drawn notes snapped to the chords of a progression in a key.

midiDraw's working idea, done with care: a chord progression in the chosen key (the one
from :data:`~midizero_app.draw.theory.PROGRESSIONS` that already fits most of the ink, or
one the user names) sounds one chord per harmonic-rhythm slot; every drawn cell snaps to
the nearest tone of the chord sounding at that step; the top line may keep a drawn scale tone a
step from the chord for up to an 8th off the beat (a passing or neighbour tone), at most
one a beat;
runs of the same snapped pitch become held notes (split where the chord changes), so note
lengths follow the strokes; velocity follows the strokes' darkness.
"""
from __future__ import annotations

import numpy as np

from ..core.frames import PITCH_HI, PITCH_LO
from .drawing import Drawing
from .image import DrawError
from .result import Generated
from .theory import PROGRESSIONS, Key, chord_tones, parse_key, parse_progression, snap

MAX_VOICES = 10  # notes sounding together at most (two hands of a pianist, spread)
MAX_STRUCK = 3   # notes starting together at most: bigger chords are rolled
PASSING_STEPS = 2          # a passing tone lasts at most an 8th
PASSING_ONE_A_BEAT = True  # and there is at most one a beat
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


def _passing_tones(chosen: list[np.ndarray], melody: np.ndarray, deg: np.ndarray,
                   tones: dict, steps_per_beat: int) -> None:
    """Let the top line keep a drawn non-chord scale tone where it passes: a run of one such
    tone at most an 8th long, starting off the beat, a step (≤ 2 semitones) from the chord
    tone it replaces, at most one a beat. Edits ``chosen`` in place."""
    T = len(chosen)
    t = 0
    last_beat = -1
    while t < T:
        m = melody[t]
        if m < 0:
            t += 1
            continue
        end = t
        while end + 1 < T and melody[end + 1] == m and deg[end + 1] == deg[t]:
            end += 1
        ct = tones[int(deg[t])]
        v = chosen[t]
        beat = t // steps_per_beat
        if (m not in ct and end - t + 1 <= PASSING_STEPS and t % steps_per_beat != 0
                and (beat != last_beat or not PASSING_ONE_A_BEAT) and len(v)
                and abs(m - int(v[-1])) <= 2
                and all(len(chosen[u]) and abs(m - int(chosen[u][-1])) <= 2
                        for u in range(t, end + 1))
                and (len(v) < 2 or m > int(v[-2]))):
            for u in range(t, end + 1):
                chosen[u] = np.append(chosen[u][:-1], m)
            last_beat = beat
        t = end + 1


def _arpeggiate(notes: np.ndarray, max_struck: int) -> np.ndarray:
    """Roll big chords: where more than ``max_struck`` notes start on one step, the lowest
    ``max_struck`` strike and the others follow upwards one 16th apart (as a pianist spreads
    a wide chord), each still ending where its stroke ends."""
    if max_struck < 1 or not len(notes):
        return notes
    out = notes.copy()
    for t in np.unique(notes[:, 0]):
        idx = np.flatnonzero(notes[:, 0] == t)
        if len(idx) <= max_struck:
            continue
        idx = idx[np.argsort(notes[idx, 2])]
        for rank, i in enumerate(idx):
            delay = max(0, rank - (max_struck - 1))  # the lowest strike, the rest roll up
            out[i, 0] = min(t + delay, notes[i, 1] - 1)
    return out


def rule(drawing: Drawing, key: Key | str = "C", tempo: float = 96.0,
         progression: str | tuple[int, ...] | None = None, chords_per_bar: int = 1,
         max_voices: int = MAX_VOICES, passing_tones: bool = True,
         max_struck: int = MAX_STRUCK) -> Generated:
    """Make music from a drawing by snapping it to chords.

    Parameters
    ----------
    drawing : the drawn roll.
    key : a :class:`Key` or its name (``"D"``, ``"F# minor"``).
    tempo : quarter notes per minute.
    progression : roman numerals (``"I V vi IV"``) or 0-based degrees; None picks the table
        progression that fits the drawing best.
    chords_per_bar : harmonic rhythm (1, 2 or 4 chords a bar).
    max_voices : notes struck together at most.
    passing_tones : let the top line take non-chord scale tones on weak 16ths.
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
    scale = chord_tones(key.scale, PITCH_LO, PITCH_HI)
    mask, ink = drawing.mask, drawing.ink
    T = drawing.n_steps
    chosen: list[np.ndarray] = [np.zeros(0, np.int64)] * T
    melody = np.full(T, -1, np.int64)
    for t in range(T):
        drawn = np.flatnonzero(mask[t]) + PITCH_LO
        if not len(drawn):
            continue
        chosen[t] = _thin(np.unique(snap(drawn, tones[int(deg[t])])), max_voices)
        melody[t] = int(snap(np.array([drawn.max()]), scale)[0])  # the top line, in the scale
    if passing_tones:
        _passing_tones(chosen, melody, deg, tones, drawing.steps_per_beat)
    melody = np.array([int(v[-1]) if len(v) else -1 for v in chosen])
    # Runs of one pitch → held notes, split where the chord changes.
    on = np.zeros((T, PITCH_HI - PITCH_LO + 1), bool)
    for t, v in enumerate(chosen):
        on[t, v - PITCH_LO] = True
    slot = np.arange(T) // spc
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
