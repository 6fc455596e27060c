"""Keys, scales, diatonic chords and a small table of common progressions.

Pitch classes are 0..11 with C = 0. A :class:`Key` is a tonic and a mode (major or natural
minor); its chords are the diatonic triads, so anything built from them stays in the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

NAMES_SHARP = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NAMES_FLAT = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")

# Common progressions as 0-based scale degrees (one chord per harmonic-rhythm slot). The
# diminished triads (vii° in major, ii° in minor) are left out: they rarely carry a phrase.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 3, 5, 4),
              (1, 4, 0, 5), (0, 2, 3, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4),
              (0, 2, 6, 3), (5, 6, 0, 0)),
}


class KeyNameError(ValueError):
    """A key name that cannot be read."""


@dataclass(frozen=True)
class Key:
    """A key: ``tonic`` pitch class (0..11) and ``mode`` (``"major"`` or ``"minor"``)."""

    tonic: int
    mode: str = "major"

    @property
    def scale(self) -> tuple[int, ...]:
        """The key's seven pitch classes, from the tonic up."""
        return tuple((self.tonic + i) % 12 for i in SCALES[self.mode])

    @property
    def pitch_class_mask(self) -> np.ndarray:
        """bool (12,): True for the pitch classes of the key."""
        m = np.zeros(12, bool)
        m[list(self.scale)] = True
        return m

    def triad(self, degree: int) -> tuple[int, int, int]:
        """Pitch classes (root, third, fifth) of the diatonic triad on a 0-based degree."""
        s = self.scale
        return (s[degree % 7], s[(degree + 2) % 7], s[(degree + 4) % 7])

    def extended(self, degree: int) -> tuple[int, ...]:
        """The triad on a degree with its diatonic seventh, and its ninth where that lies a
        whole tone above the root (a minor ninth, as on iii in major, grates): the tones
        of a full, spread voicing of the chord."""
        s = self.scale
        tones = self.triad(degree) + (s[(degree + 6) % 7],)
        ninth = s[(degree + 1) % 7]
        return tones + ((ninth,) if (ninth - s[degree % 7]) % 12 == 2 else ())

    def roman(self, degree: int) -> str:
        """Roman numeral of a degree's triad: upper case major, lower case minor."""
        root, third, _ = self.triad(degree)
        numeral = ROMAN[degree % 7]
        return numeral if (third - root) % 12 == 4 else numeral.lower()

    @property
    def name(self) -> str:
        names = NAMES_FLAT if self.tonic in (1, 3, 8, 10) else NAMES_SHARP
        return f"{names[self.tonic]} {self.mode}"

    def __str__(self) -> str:
        return self.name


def parse_key(text: str | Key) -> Key:
    """Read a key name: ``"D"``, ``"Dm"``, ``"D minor"``, ``"F#"``, ``"Bb major"``, ``"c#m"``.

    Raises :class:`ValueError` with the accepted spellings for anything else.
    """
    if isinstance(text, Key):
        return text
    m = re.fullmatch(r"\s*([A-Ga-g])\s*(#|♯|b|♭|s|sharp|flat)?\s*(m|min|minor|maj|major|M)?\s*",
                     str(text))
    if not m:
        raise KeyNameError(f"unknown key {text!r}: use a note name with an optional #/b and "
                        "'m' or 'minor', e.g. D, F#, Bb, Am, C# minor")
    letter, acc, mode = m.groups()
    tonic = _LETTER[letter.upper()]
    if acc in ("#", "♯", "s", "sharp"):
        tonic += 1
    elif acc in ("b", "♭", "flat"):
        tonic -= 1
    minor = mode in ("m", "min", "minor")
    return Key(tonic % 12, "minor" if minor else "major")


def parse_progression(text: str, key: Key) -> tuple[int, ...]:
    """Roman numerals (``"I V vi IV"``, ``"i-VI-III-VII"``) → 0-based scale degrees.

    Case is accepted either way: the key decides the chord quality (diatonic triads).
    """
    parts = [p for p in re.split(r"[\s,\-–]+", text.strip()) if p]
    degrees = []
    for p in parts:
        core = re.sub(r"[°o+7]+$", "", p.upper())
        if core not in ROMAN:
            raise KeyNameError(f"unknown chord {p!r} in progression {text!r}: use roman "
                            "numerals I..VII, e.g. 'I V vi IV'")
        degrees.append(ROMAN.index(core))
    if not degrees:
        raise KeyNameError("the progression is empty")
    return tuple(degrees)


def chord_tones(pcs, lo: int = 21, hi: int = 108) -> np.ndarray:
    """All MIDI pitches in ``lo..hi`` whose pitch class is in ``pcs`` (sorted int array)."""
    pcs = set(int(p) % 12 for p in pcs)
    return np.array([p for p in range(lo, hi + 1) if p % 12 in pcs], np.int64)


def snap(pitch: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The nearest allowed pitch to each pitch (ties go down). ``allowed`` sorted, non-empty."""
    pitch = np.asarray(pitch, np.int64)
    i = np.clip(np.searchsorted(allowed, pitch), 1, len(allowed) - 1)
    lo, hi = allowed[i - 1], allowed[i]
    return np.where(pitch - lo <= hi - pitch, lo, hi) if len(allowed) > 1 else \
        np.full_like(pitch, allowed[0])
