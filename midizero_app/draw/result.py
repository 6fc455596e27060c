"""What a method makes: notes on the step grid, with where they came from; MIDI export."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.frames import N_PITCHES, PITCH_LO, Frames
from .image import DrawError
from .theory import Key


@dataclass
class Generated:
    """A generated piece.

    Attributes
    ----------
    notes : int64 (N, 4): start step, end step (exclusive), MIDI pitch, velocity 1..127;
        sorted by start then pitch. A step is a 16th note.
    n_steps : length of the piece in steps (T).
    tempo : quarter notes per minute.
    key : the key it was made in.
    method : ``"rule"``, ``"library"`` or ``"naive"``.
    sources : for ``library``: one dict per stitched window (``piece_id``, ``title``,
        ``composer``, ``path``, ``frame`` (first library frame), ``transpose``, ``bar``
        (1-based bar where it starts)); empty for the other methods.
    info : method details (the progression used, timings).
    origin : int64 (N, 2) or None: for ``library``, each note's index into ``sources`` and
        the library frame (of that source's piece) it was taken from.
    """

    notes: np.ndarray
    n_steps: int
    tempo: float
    key: Key
    method: str
    steps_per_beat: int = 4
    beats_per_bar: int = 4
    sources: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    origin: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.notes, np.int64).reshape(-1, 4)
        order = np.lexsort((n[:, 2], n[:, 0])) if len(n) else np.zeros(0, np.int64)
        self.notes = n[order]
        if self.origin is not None:
            self.origin = np.asarray(self.origin, np.int64).reshape(-1, 2)[order]

    def __len__(self) -> int:
        return len(self.notes)

    @property
    def step_seconds(self) -> float:
        return 60.0 / float(self.tempo) / self.steps_per_beat

    @property
    def duration(self) -> float:
        """Seconds from the start to the end of the last bar."""
        return self.n_steps * self.step_seconds

    def seconds(self) -> np.ndarray:
        """float64 (N, 4): onset s, offset s, pitch, velocity (the synth's note rows)."""
        out = self.notes.astype(np.float64)
        out[:, :2] *= self.step_seconds
        return out

    def roll(self) -> np.ndarray:
        """uint8 (T, 88): 1 where a note sounds (a note a bar, as the app draws it)."""
        r = np.zeros((self.n_steps, N_PITCHES), np.uint8)
        for s, e, p, _v in self.notes:
            r[max(s, 0):min(e, self.n_steps), p - PITCH_LO] = 1
        return r

    def frames(self) -> Frames:
        """Chord frames (notes grouped by equal onset step), onsets in seconds."""
        if not len(self.notes):
            return Frames.from_chords([])
        starts, group = np.unique(self.notes[:, 0], return_inverse=True)
        n = len(starts)
        from ..core.frames import from_groups

        return from_groups(starts * self.step_seconds, group, self.notes[:, 2],
                           np.full(n, -1, np.int32), np.full(n, np.nan, np.float32))

    def source_pieces(self) -> list[dict]:
        """The distinct source pieces with the bars of the result they fill."""
        by: dict[int, dict] = {}
        for s in self.sources:
            d = by.setdefault(s["piece_id"], {k: s.get(k) for k in
                                              ("piece_id", "title", "composer", "path")})
            d.setdefault("bars", []).append(s["bar"])
        return list(by.values())

    def to_pretty_midi(self):
        import pretty_midi

        pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=float(self.tempo))
        pm.time_signature_changes.append(pretty_midi.TimeSignature(self.beats_per_bar, 4, 0.0))
        pm.key_signature_changes.append(pretty_midi.KeySignature(
            self.key.tonic + (12 if self.key.mode == "minor" else 0), 0.0))
        inst = pretty_midi.Instrument(program=0, name=f"MIDI-Zero draw ({self.method})")
        for on, off, p, v in self.seconds():
            inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p),
                                               start=float(on), end=float(off)))
        # A pedal-up at the very end: players and pretty_midi then see the full last bar.
        inst.control_changes.append(pretty_midi.ControlChange(64, 0, self.duration))
        pm.instruments.append(inst)
        return pm

    def write_midi(self, path: str | Path) -> Path:
        """Write a standard MIDI file, atomically: a fresh temporary file beside ``path``
        (never a link planted there), checked, then renamed over it. A failed write leaves
        ``path`` as it was and raises :class:`DrawError` with one line."""
        from ..core.atomic import atomic_write
        from ..core.errors import WriteFailed

        path = Path(path)
        if not path.parent.is_dir():
            raise DrawError(f"cannot write {path}: folder {path.parent} does not exist")
        try:
            with atomic_write(path) as tmp:
                self.to_pretty_midi().write(str(tmp))
        except WriteFailed as exc:
            raise DrawError(f"cannot write {path}: {exc}") from None
        return path
