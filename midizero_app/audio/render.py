"""Notes → audio offline with a real SoundFont (TinySoundFont), plus room reverb and noise:
the recordings the audio tests and benchmarks identify.

``tinysoundfont`` is installed with ``pip install --no-deps`` (scripts/setup.sh; its
``pyaudio`` dependency is only for playback); the room needs ``pedalboard`` (the ``bench``
extra), imported only by :func:`room`. The sustain pedal is applied by holding each
note's release until the pedal lifts (TinySoundFont has no CC 64). Audio is float32 mono;
times in seconds; pitches and velocities MIDI values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def timgm6mb() -> Path:
    """pretty_midi's bundled General MIDI SoundFont (5.99 MB)."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


class Renderer:
    """One loaded SoundFont (acoustic grand piano), reused for many renders.

    Parameters
    ----------
    sf2 : SoundFont path.
    sr : output sample rate in Hz.
    """

    def __init__(self, sf2: str | Path, sr: int = 44100):
        import tinysoundfont

        self.sr = int(sr)
        self.synth = tinysoundfont.Synth(samplerate=self.sr)
        self.sfid = self.synth.sfload(str(sf2))
        self.synth.program_select(0, self.sfid, 0, 0)

    def render(self, onset: np.ndarray, offset: np.ndarray, pitch: np.ndarray,
               velocity: np.ndarray, start: float = 0.0, end: float | None = None,
               tail: float = 1.0) -> np.ndarray:
        """Render notes and return the audio between ``start`` and ``end`` seconds.

        Parameters
        ----------
        onset, offset : float (N,), seconds.
        pitch, velocity : int (N,), MIDI values.
        start, end : the span to return (``end`` None: last offset + ``tail``).

        Returns
        -------
        float32 (round((end − start) · sr),), mono, the synth's own level.
        """
        self.synth.notes_off()
        self.synth.sounds_off()
        end = float(np.max(offset, initial=0.0)) + tail if end is None else float(end)
        events = sorted([(float(t), 1, int(p), int(v)) for t, p, v in zip(onset, pitch, velocity)]
                        + [(float(t), 0, int(p), 0) for t, p in zip(offset, pitch)])
        out, pos = [], 0
        n_end = int(round(end * self.sr))
        for t, on, p, v in events:
            n = min(int(round(t * self.sr)), n_end) - pos
            if n > 0:
                out.append(self._generate(n))
                pos += n
            if pos >= n_end:
                break
            if on:
                self.synth.noteon(0, p, max(1, min(v, 127)))
            else:
                self.synth.noteoff(0, p)
        if n_end > pos:
            out.append(self._generate(n_end - pos))
        y = np.concatenate(out) if out else np.zeros(0, np.float32)
        return y[int(round(start * self.sr)):]

    def _generate(self, n: int) -> np.ndarray:
        return np.frombuffer(self.synth.generate(n), np.float32).reshape(-1, 2).mean(axis=1)


def pedal_offsets(onset: np.ndarray, offset: np.ndarray, pedal: list[tuple[float, float]]
                  ) -> np.ndarray:
    """Offsets held by the sustain pedal: a note released while the pedal is down sounds
    until the pedal lifts. ``pedal`` is a list of (down, up) seconds; a key struck again
    under the pedal is not modelled."""
    off = np.asarray(offset, np.float64).copy()
    for down, up in pedal:
        m = (off > down) & (off < up)
        off[m] = up
    return np.maximum(off, np.asarray(onset) + 0.01)


def room(y: np.ndarray, sr: int, rng: np.random.Generator, snr_db: float = 20.0) -> np.ndarray:
    """A random room (pedalboard's reverb, seeded size and mix) and white noise at
    ``snr_db`` dB signal-to-noise ratio; output peak-normalised to 0.9."""
    import pedalboard

    rev = pedalboard.Reverb(room_size=float(rng.uniform(0.3, 0.8)),
                            damping=float(rng.uniform(0.3, 0.7)),
                            wet_level=float(rng.uniform(0.15, 0.35)), dry_level=0.8, width=0.0)
    wet = rev(y.astype(np.float32)[None, :], sr)[0]
    power = float(np.mean(wet ** 2))
    if power > 0:
        wet = wet + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(wet))
    peak = float(np.max(np.abs(wet), initial=0.0))
    return (wet * (0.9 / peak) if peak > 0 else wet).astype(np.float32)
