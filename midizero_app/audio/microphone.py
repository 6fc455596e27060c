"""Microphone capture with sounddevice (PortAudio) and the live path over it.

A reading thread takes each block from PortAudio with a blocking read (no Python runs
on the audio thread, which under JACK would deadlock with python-rtmidi: see
``synth._FedOutput``) into a queue; another thread takes the blocks, runs the
:class:`~.stream.StreamingTranscriber` and feeds the notes to a
:class:`~midizero_app.live.session.LiveSession` on the audio's own clock.
sounddevice is imported on first use: it loads PortAudio, which reads the system's audio
configuration.
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from .stream import StreamingTranscriber


class AudioDeviceError(Exception):
    """No audio system, no input device, or an unknown device name; a one-line reason."""


def _sd():
    try:
        import sounddevice
    except OSError:  # sounddevice raises this when the PortAudio library is missing
        raise AudioDeviceError("no audio system: the PortAudio library is not installed "
                               "(e.g. apt-get install libportaudio2)") from None
    return sounddevice


def list_inputs() -> list[dict]:
    """Audio input devices: ``[{"name", "host_api", "channels", "samplerate", "default"}]``.

    Raises :class:`AudioDeviceError` when there is no audio system.
    """
    sd = _sd()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0]
        apis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"no audio system ({exc})") from None
    return [{"name": d["name"], "host_api": apis[d["hostapi"]]["name"],
             "channels": int(d["max_input_channels"]),
             "samplerate": float(d["default_samplerate"]), "default": i == default_in}
            for i, d in enumerate(devices) if d["max_input_channels"] > 0]


def find_input(name: str | None) -> str | None:
    """The input whose name equals ``name`` or uniquely contains it (case-insensitive);
    None (``name`` None) means the system default input."""
    if name is None:
        if not list_inputs():
            raise AudioDeviceError("no audio inputs: connect a microphone")
        return None
    names = [d["name"] for d in list_inputs()]
    exact = [n for n in names if n.lower() == name.lower()]
    part = exact or [n for n in names if name.lower() in n.lower()]
    if len(part) == 1:
        return part[0]
    if not part:
        raise AudioDeviceError(f"no audio input named {name!r} "
                               f"(inputs: {', '.join(names) or 'none'})")
    raise AudioDeviceError(f"{name!r} matches several audio inputs: {', '.join(part)}")


class Microphone:
    """A mono float32 input stream whose blocks go to a queue; :meth:`take_level` reads
    the loudest level since the last read (for a meter).

    Parameters
    ----------
    device : an input name from :func:`list_inputs`, or None for the default input.
    samplerate : Hz; None uses the device's default rate.
    blocksize : frames per block.
    max_seconds : stop the stream after this much audio (None: until :meth:`stop`).
    """

    def __init__(self, device: str | None = None, samplerate: float | None = None,
                 blocksize: int = 1024, max_seconds: float | None = None):
        sd = _sd()
        try:
            info = sd.query_devices(device, "input")
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open the audio input: {exc}") from None
        self.samplerate = int(samplerate or info["default_samplerate"])
        self.blocks: queue.SimpleQueue = queue.SimpleQueue()  # float32 (n,) arrays; None = end
        self.overflows = 0
        self._rms = self._peak = 0.0  # loudest since the last take_level, full scale 1.0
        self._left = None if max_seconds is None else int(max_seconds * self.samplerate)
        self._blocksize = blocksize
        self._halt = threading.Event()
        self._reader: threading.Thread | None = None
        # PortAudio's blocking layer for JACK copies stereo float32 frames whatever the
        # stream's channels: there the input opens in stereo and the first one is used.
        jack = sd.query_hostapis(info["hostapi"])["name"].startswith("JACK")
        if jack and info["max_input_channels"] < 2:
            raise AudioDeviceError("cannot open the audio input: a one-channel JACK input "
                                   "(connect a stereo capture, or use the ALSA device)")
        channels = 2 if jack else 1
        try:
            self._stream = sd.InputStream(device=device, samplerate=self.samplerate,
                                          channels=channels, dtype="float32",
                                          blocksize=blocksize)
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open the audio input: {exc}") from None

    def _read(self) -> None:
        """The reading thread: blocks into the queue until stopped, ``max_seconds`` or
        the device fails; then the end mark (None)."""
        try:
            while not self._halt.is_set() and (self._left is None or self._left > 0):
                data, overflowed = self._stream.read(self._blocksize)  # GIL released
                self._take(data[:, 0].copy(), overflowed)
        except _sd().PortAudioError:
            pass  # the device went away: the stream ends here
        finally:
            self.blocks.put(None)

    def _take(self, block: np.ndarray, overflowed: bool) -> None:
        if overflowed:
            self.overflows += 1
        # a max per block, so a meter read ~20 times a second sees every burst
        self._rms = max(self._rms, float(np.sqrt(np.dot(block, block) / max(len(block), 1))))
        self._peak = max(self._peak, float(np.abs(block).max(initial=0.0)))
        if self._left is not None:
            block = block[:self._left]
            self._left -= len(block)
        self.blocks.put(block)

    def take_level(self) -> tuple[float, float]:
        """(RMS, peak) of the loudest blocks since the last call, linear (full scale 1.0).
        A block landing between the read and the reset is lost: harmless for a meter."""
        level = (self._rms, self._peak)
        self._rms = self._peak = 0.0
        return level

    def start(self) -> "Microphone":
        self._stream.start()
        self._reader = threading.Thread(target=self._read, name="midizero-audio-in",
                                        daemon=True)
        self._reader.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        if self._reader is not None:
            self._reader.join(timeout=2.0)  # at most one block's read
        self._stream.abort()
        self._stream.close()
        self.blocks.put(None)


def run_stream(mic: Microphone, stream: StreamingTranscriber,
               stop: threading.Event | None = None) -> None:
    """Push ``mic``'s blocks through ``stream`` on the calling thread until the input ends
    or ``stop`` is set, then flush the last notes."""
    while stop is None or not stop.is_set():
        try:
            block = mic.blocks.get(timeout=0.2)
        except queue.Empty:
            continue
        if block is None:
            break
        stream.push(block)
    stream.flush()
