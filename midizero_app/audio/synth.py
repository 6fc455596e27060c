"""SoundFont playback: render notes, audition a library passage, hear what is played.

All sound comes from a General MIDI SoundFont (TimGM6mb from pretty_midi by default)
rendered by TinySoundFont; :class:`Player` and :class:`Monitor` send it to the sound card
through a sounddevice (PortAudio) stream fed by a thread of their own (:class:`_FedOutput`).
sounddevice is imported only when a stream is opened, so the rest of the app works on a
machine without PortAudio; every "no sound here" case raises :class:`AudioUnavailable`
with a one-line message.

Notes are rows ``(onset_s, offset_s, pitch, velocity)``: seconds, MIDI pitch 0..127,
velocity 1..127.
"""
from __future__ import annotations

import collections
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

SOUNDFONT_ENV = "MIDIZERO_SOUNDFONT"
PIANO = 0             # General MIDI program 1, Acoustic Grand Piano
POSITION_EVERY_S = 0.05  # how often Player reports its position
PLAYER_BLOCK = 1024     # samples per block for a passage (23 ms at 44.1 kHz)
MONITOR_AHEAD = 256     # samples "Hear what I play" lets wait in a JACK buffer (5.8 ms)


class AudioUnavailable(RuntimeError):
    """No sound here (no PortAudio, no output device, no synth or SoundFont); ``str()`` is
    one line for the user."""


def default_soundfont() -> Path:
    """The SoundFont to use: ``$MIDIZERO_SOUNDFONT`` if set, else pretty_midi's TimGM6mb.sf2.

    Raises :class:`AudioUnavailable` when that file does not exist.
    """
    env = os.environ.get(SOUNDFONT_ENV)
    if env:
        path = Path(env).expanduser()
    else:  # find_spec locates the package without importing it (pretty_midi is slow to load)
        spec = importlib.util.find_spec("pretty_midi")
        where = spec.submodule_search_locations if spec else None
        path = Path(list(where)[0] if where else ".") / "TimGM6mb.sf2"
    if not path.is_file():
        raise AudioUnavailable(f"SoundFont not found: {path}" + (
            f" (set by {SOUNDFONT_ENV})" if env else " (pip install pretty_midi)"))
    return path


def load_synth(soundfont: str | Path | None = None, sr: int = 44100) -> Any:
    """A ``tinysoundfont.Synth`` at ``sr`` Hz with a piano on channel 0.

    Raises :class:`AudioUnavailable` when TinySoundFont is missing or the SoundFont
    cannot be loaded.
    """
    try:
        import tinysoundfont
    except ImportError:
        raise AudioUnavailable("No SoundFont synth: pip install --no-deps tinysoundfont"
                               ) from None
    path = Path(soundfont) if soundfont else default_soundfont()
    synth = tinysoundfont.Synth(samplerate=int(sr))
    try:
        synth.program_select(0, synth.sfload(str(path)), 0, PIANO)
    except Exception as exc:  # noqa: BLE001 - the C++ loader raises several kinds
        raise AudioUnavailable(f"Cannot load the SoundFont {path}: {exc}") from None
    return synth


def frames_to_notes(frames, max_s: float = 1.5, velocity: int = 80) -> np.ndarray:
    """Notes that sound a library piece's frames (which keep no durations).

    Each frame's pitches last until the next frame's onset, at most ``max_s`` seconds.

    Parameters
    ----------
    frames : :class:`midizero_app.core.frames.Frames`
    max_s : longest note, seconds.
    velocity : 1..127 for every note.

    Returns
    -------
    notes : float64 (N, 4), rows (onset_s, offset_s, pitch, velocity), by onset.
    """
    onset = np.asarray(frames.onset, np.float64)
    if not len(onset):
        return np.zeros((0, 4))
    dur = np.minimum(np.diff(onset, append=onset[-1] + max_s), max_s)
    which = frames.frame_index()
    on = onset[which]
    return np.column_stack([on, on + np.maximum(dur[which], 0.02),
                            np.asarray(frames.pitches, np.float64),
                            np.full(len(on), float(velocity))])


class _Schedule:
    """Note events at sample positions, rendered block by block (sample-accurate).

    ``notes`` are shifted so that ``start_s`` is sample 0; notes already sounding at
    ``start_s`` start at 0, notes that ended before it are dropped.
    """

    def __init__(self, synth, notes, sr: int, start_s: float = 0.0, tail_s: float = 1.0):
        n = np.asarray(notes, np.float64).reshape(-1, 4)
        n = n[n[:, 1] > start_s]
        on = np.round((np.maximum(n[:, 0], start_s) - start_s) * sr).astype(np.int64)
        off = np.maximum(np.round((n[:, 1] - start_s) * sr).astype(np.int64), on + 1)
        t = np.concatenate([on, off])
        vel = np.concatenate([np.clip(n[:, 3], 1, 127), np.zeros(len(n))]).astype(np.int64)
        pitch = np.concatenate([n[:, 2], n[:, 2]]).astype(np.int64)
        order = np.lexsort((vel > 0, t))  # offs before ons at one instant: re-struck notes
        self.t, self.pitch, self.vel = t[order], pitch[order], vel[order]
        self.synth, self.i, self.pos = synth, 0, 0
        self.end = int(off.max() if len(off) else 0) + int(round(tail_s * sr))

    def fill(self, out: np.ndarray) -> bool:
        """Render the next ``len(out)`` samples into ``out`` (float32 (n, 2), C order);
        False once the schedule has ended (the rest of ``out`` is then silence)."""
        done, n = 0, len(out)
        while done < n:
            while self.i < len(self.t) and self.t[self.i] <= self.pos:
                p, v = int(self.pitch[self.i]), int(self.vel[self.i])
                if v:
                    self.synth.noteon(0, p, v)
                else:
                    self.synth.noteoff(0, p)
                self.i += 1
            nxt = int(self.t[self.i]) if self.i < len(self.t) else self.end
            k = min(n - done, nxt - self.pos)
            if k <= 0:  # the end
                out[done:] = 0
                return False
            self.synth.generate_simple(k, buffer=memoryview(out[done:done + k]).cast("B"))
            done += k
            self.pos += k
        return self.pos < self.end


def render(notes, sr: int = 44100, soundfont: str | Path | None = None,
           tail_s: float = 1.0) -> np.ndarray:
    """Render notes offline with the SoundFont piano.

    Parameters
    ----------
    notes : array-like (N, 4), rows (onset_s, offset_s, pitch, velocity).
    sr : sample rate, Hz.
    soundfont : an .sf2/.sf3 file; default :func:`default_soundfont`.
    tail_s : seconds kept after the last note-off (the release).

    Returns
    -------
    audio : float32 (n, 2) stereo, n = round((last offset + tail_s) · sr); silence for no
        notes.
    """
    sched = _Schedule(load_synth(soundfont, sr), notes, sr, 0.0, tail_s)
    out = np.zeros((sched.end, 2), np.float32)
    sched.fill(out)
    return out


def _sounddevice():
    """The sounddevice module, imported on first use (it loads PortAudio)."""
    try:
        import sounddevice
    except ImportError:
        raise AudioUnavailable("No audio: the sounddevice package is not installed") from None
    except OSError:  # sounddevice raises this when libportaudio is missing
        raise AudioUnavailable("No audio: the PortAudio library is missing "
                               "(install libportaudio2)") from None
    return sounddevice


def _open_output(device, sr: int) -> tuple[Any, Any, int]:
    """(sounddevice, device, sample rate) for an output stream; the device's own rate
    when it refuses ``sr`` (a JACK server runs at one rate)."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(device, "output")
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioUnavailable(f"No audio output device ({exc})") from None
    try:
        sd.check_output_settings(device=device, samplerate=sr, channels=2, dtype="float32")
    except sd.PortAudioError:
        sr = int(info["default_samplerate"])
    return sd, device, sr


class Player:
    """Plays notes through the default (or given) output device, without blocking.

    Parameters
    ----------
    soundfont : an .sf2/.sf3 file; default :func:`default_soundfont`.
    sr : sample rate, Hz (the device's own rate if it refuses this one; see :attr:`sr`).
    device : a sounddevice output device (index or name); None = the system default.

    Raises :class:`AudioUnavailable` when there is no output device or synth.
    """

    def __init__(self, soundfont: str | Path | None = None, sr: int = 44100, device=None):
        self._sd, self.device, self.sr = _open_output(device, sr)
        self._synth = load_synth(soundfont, self.sr)
        self._stream = None

    def play(self, notes, start_s: float = 0.0,
             on_position: Callable[[float], None] | None = None) -> None:
        """Start playing ``notes`` (rows (onset_s, offset_s, pitch, velocity)) from
        ``start_s`` seconds; returns at once, stopping what played before.

        ``on_position(seconds in the piece)`` is called from the feeding thread about
        every 50 ms; it must not block (emit a Qt signal, put to a queue).
        """
        self.stop()
        self._synth.sounds_off()  # nothing rings on from the previous passage
        sched = _Schedule(self._synth, notes, self.sr, start_s)
        state = {"said": -1.0}

        def fill(out: np.ndarray) -> bool:
            if on_position is not None:
                here = start_s + sched.pos / self.sr
                if here - state["said"] >= POSITION_EVERY_S:
                    state["said"] = here
                    on_position(here)
            return sched.fill(out)

        self._stream = _FedOutput(self._sd, self.device, self.sr, fill, PLAYER_BLOCK,
                                  "high", "Cannot play")

    @property
    def is_playing(self) -> bool:
        return self._stream is not None and self._stream.active

    def stop(self) -> None:
        """Stop at once (no-op when idle)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def close(self) -> None:
        self.stop()


class Monitor:
    """"Hear what I play": a live piano voice for note events from any thread.

    Events go through a lock-free deque that the feeding thread drains before each block,
    so neither the MIDI thread nor the audio ever waits for the other.

    Parameters
    ----------
    soundfont : an .sf2/.sf3 file; default :func:`default_soundfont`.
    sr : sample rate, Hz (the device's own rate if it refuses this one).
    device : a sounddevice output device (index or name); None = the system default.
    blocksize : samples per block; small for low latency (128 = 2.9 ms at 44.1 kHz).

    Raises :class:`AudioUnavailable` when there is no output device or synth.
    """

    def __init__(self, soundfont: str | Path | None = None, sr: int = 44100, device=None,
                 blocksize: int = 128):
        sd, self.device, self.sr = _open_output(device, sr)
        self._synth = load_synth(soundfont, self.sr)
        self._events: collections.deque[tuple[int, int]] = collections.deque()
        self._stream = _FedOutput(sd, self.device, self.sr, self._fill, blocksize, "low",
                                  "Cannot open the audio output", ahead=MONITOR_AHEAD)
        # seconds from a note event to its sound: PortAudio's buffer and one block of ours
        self.latency = self._stream.latency + blocksize / self.sr

    def note_on(self, pitch: int, velocity: int = 100) -> None:
        """Sound ``pitch``; velocity 0 is a note-off (the MIDI convention)."""
        self._events.append((int(pitch), int(np.clip(velocity, 0, 127))))

    def note_off(self, pitch: int) -> None:
        self._events.append((int(pitch), 0))

    def all_notes_off(self) -> None:
        """Release every sounding note (they decay as from the keys)."""
        self._events.append((-1, 0))

    def _fill(self, out: np.ndarray) -> bool:
        synth, events = self._synth, self._events
        while events:
            pitch, vel = events.popleft()
            if pitch < 0:
                synth.notes_off()
            elif vel:
                synth.noteon(0, pitch, vel)
            else:
                synth.noteoff(0, pitch)
        synth.generate_simple(len(out), buffer=memoryview(out).cast("B"))
        return True

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


class _FedOutput:
    """A stereo float32 output stream fed by a thread of its own, with blocking writes.

    Not a PortAudio callback: under JACK the callback runs in the server's process cycle,
    and a Python callback waits there for the GIL, which python-rtmidi holds while it
    opens or closes a JACK client: a call that waits for that very cycle, so both wait
    for ever (docs/DESIGN-NOTES.md, Live path). A blocking write only fills PortAudio's
    buffer; the audio thread never runs Python.

    Parameters
    ----------
    sd : the sounddevice module.
    fill : ``fill(out)`` renders the next block into ``out`` (float32 (blocksize, 2)) on
        the feeding thread; False after the last block (the stream then plays out what it
        holds and stops).
    latency : PortAudio's suggested latency, ``"low"`` or ``"high"``.
    what : the start of the one-line message of :class:`AudioUnavailable`.
    ahead : on JACK, at most this many frames, or half the buffer (two periods) if that is
        more, wait in PortAudio's buffer (None: as many as it holds). PortAudio's blocking
        layer for JACK buffers four periods (three, rounded up to a power of two) and a
        free-running writer keeps it full: at a 128-sample period that doubled the
        monitor's note-to-sound latency (benchmarks/RESULTS.md).
    """

    def __init__(self, sd, device, sr: int, fill: Callable[[np.ndarray], bool],
                 blocksize: int, latency: str, what: str, ahead: int | None = None):
        self._sd = sd
        try:
            self._stream = sd.OutputStream(samplerate=sr, device=device, channels=2,
                                           dtype="float32", blocksize=blocksize,
                                           latency=latency)
            self._stream.start()
        except sd.PortAudioError as exc:
            raise AudioUnavailable(f"{what}: {exc}") from None
        self.latency = float(self._stream.latency)  # seconds, as PortAudio reports it
        info = sd.query_devices(self._stream.device)
        jack = sd.query_hostapis(info["hostapi"])["name"].startswith("JACK")
        self._ahead = ahead if jack else None
        self._sr = sr
        self.underruns = 0  # paced blocks that found PortAudio's buffer empty
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._feed, args=(fill, blocksize),
                                        name="midizero-audio-out", daemon=True)
        self._thread.start()

    def _feed(self, fill: Callable[[np.ndarray], bool], blocksize: int) -> None:
        out = np.zeros((blocksize, 2), np.float32)
        try:
            size = self._buffer_size() if self._ahead is not None else 0
            limit = max(self._ahead or 0, size // 2)
            while not self._halt.is_set():
                if self._ahead is not None:
                    free = self._stream.write_available
                    self.underruns += free >= size
                    wait = size - free + blocksize - limit  # frames over the limit
                    if wait > 0:
                        time.sleep(wait / self._sr)
                        continue
                more = fill(out)
                self._stream.write(out)  # waits (GIL released) while PortAudio is full
                if not more:
                    self._stream.stop()  # returns once the buffered audio has played
                    return
        except self._sd.PortAudioError:
            return  # the device went away; close() still cleans up

    def _buffer_size(self) -> int:
        """Frames PortAudio's buffer holds: JACK's starts full (of silence) and drains;
        the room it has once the room stops growing (at most 0.5 s)."""
        size, still, deadline = -1, 0, time.monotonic() + 0.5
        while still < 5 and time.monotonic() < deadline:
            free = self._stream.write_available
            size, still = (free, still + 1) if free <= size else (free, 0)
            time.sleep(0.002)
        return size

    @property
    def active(self) -> bool:
        """True until the last block has played or :meth:`close`."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop at once: the feeding thread ends after its current block (a few ms)."""
        self._halt.set()
        self._thread.join(timeout=2.0)
        self._stream.abort()
        self._stream.close()
