"""The log-frequency spectrogram of the audio–sheet-music retrieval system (Dorfer, Arzt &
Widmer, ISMIR 2017 / TISMIR 2018), computed with numpy/scipy as madmom computes it.

Where each constant comes from:

* ``SR = 22050``, ``FRAME_SIZE = 2048``, ``FPS = 20`` and the filterbank's 16 bands per
  octave from ``FMIN = 30`` to ``FMAX = 6000`` Hz: ``extract_spectrogram`` in the public code
  of the system (CPJKU, ``msmd``/``audio_sheet_retrieval``: ``SignalProcessor(num_channels=1,
  sample_rate=22050)``, ``FramedSignalProcessor(frame_size=2048, fps=20, origin='future')``,
  ``FilteredSpectrogramProcessor(LogarithmicFilterbank, num_bands=16, fmin=30, fmax=6000)``,
  ``LogarithmicSpectrogramProcessor()``).
* Framing, madmom ``audio/signal.py`` (``origin='future'``): frame ``t`` holds the samples
  ``[int(t · SR / FPS), … + FRAME_SIZE)`` (the hop is 1102.5 samples, truncated per frame);
  ``ceil(n_samples / hop)`` frames, zero-padded past the end. Frame ``t`` therefore covers
  ``t / FPS`` to ``t / FPS + 0.093`` s.
* STFT, madmom ``audio/stft.py``: a Hann window (``np.hanning(2048)``) on a signal scaled to
  ±1, magnitude of the first ``FRAME_SIZE // 2 = 1024`` FFT bins (the Nyquist bin dropped), bin
  ``k`` at ``k · SR / FRAME_SIZE`` Hz.
* Filterbank, madmom ``audio/filters.py`` ``LogarithmicFilterbank`` (``fref = 440``,
  ``norm_filters=True``, ``unique_filters=True``): centre frequencies ``440 · 2^(i/16)`` within
  [30, 6000] Hz (``log_frequencies``), mapped to the nearest FFT bins with duplicates removed
  (``frequencies2bins``), overlapping triangular filters on consecutive bin triples
  (``TriangularFilter.band_bins``, a filter narrower than 2 bins becomes one bin), each
  normalised to area 1. At 22.05 kHz / 2048 this gives :data:`N_BINS` = 92 bands, the count
  the papers give; the lowest bands are one FFT bin wide (the DFT's 10.8 Hz resolution).
* Magnitude scaling, madmom ``audio/spectrogram.py`` ``LogarithmicSpectrogram`` defaults
  (``log=np.log10, mul=1, add=1``): ``log10(1 + x)``.

madmom itself is not a dependency: its releases do not build on current Python/numpy, and
the arithmetic above is a few lines.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

SR = 22050           # Hz, the signal's rate before framing
FRAME_SIZE = 2048    # samples per frame (92.9 ms at SR)
FPS = 20             # frames per second (hop 1102.5 samples)
BANDS_PER_OCTAVE = 16
FMIN, FMAX = 30.0, 6000.0  # Hz, the filterbank's range
FREF = 440.0         # Hz, the tuning the band centres are aligned to
N_BINS = 92          # filterbank bands at the settings above


def log_frequencies(bands_per_octave: int = BANDS_PER_OCTAVE, fmin: float = FMIN,
                    fmax: float = FMAX, fref: float = FREF) -> np.ndarray:
    """Band centre frequencies ``fref · 2^(i / bands_per_octave)`` within [fmin, fmax], Hz,
    float64 (n,) ascending (madmom's ``log_frequencies``)."""
    left = np.floor(np.log2(float(fmin) / fref) * bands_per_octave)
    right = np.ceil(np.log2(float(fmax) / fref) * bands_per_octave)
    f = fref * 2.0 ** (np.arange(left, right) / float(bands_per_octave))
    f = f[np.searchsorted(f, fmin):]
    return f[:np.searchsorted(f, fmax, "right")]


def fft_frequencies(frame_size: int = FRAME_SIZE, sr: int = SR) -> np.ndarray:
    """Frequencies of the ``frame_size // 2`` kept FFT bins, Hz, float64 (frame_size // 2,)."""
    return np.fft.fftfreq(frame_size, 1.0 / sr)[:frame_size // 2]


@lru_cache(maxsize=4)
def filterbank(frame_size: int = FRAME_SIZE, sr: int = SR) -> np.ndarray:
    """The logarithmic triangular filterbank, float32 (frame_size // 2, bands): column ``b``
    weights the FFT bins of band ``b``, each column summing to 1 (read-only)."""
    bin_f = fft_frequencies(frame_size, sr)
    freqs = log_frequencies()
    # nearest FFT bin of each centre frequency (madmom's frequencies2bins), duplicates removed
    idx = np.clip(bin_f.searchsorted(freqs), 1, len(bin_f) - 1)
    idx = idx - (freqs - bin_f[idx - 1] < bin_f[idx] - freqs)
    bins = np.unique(idx)
    fb = np.zeros((len(bin_f), len(bins) - 2), np.float64)
    for b in range(len(bins) - 2):
        start, center, stop = (int(x) for x in bins[b:b + 3])
        if stop - start < 2:
            center, stop = start, start + 1
        c, s = center - start, stop - start
        tri = np.zeros(s)
        tri[:c] = np.linspace(0.0, 1.0, c, endpoint=False)
        tri[c:] = np.linspace(1.0, 0.0, s - c, endpoint=False)
        fb[start:stop, b] = np.maximum(fb[start:stop, b], tri / tri.sum())
    out = fb.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return np.hanning(FRAME_SIZE).astype(np.float32)


def to_mono_sr(samples: np.ndarray, sr: int) -> np.ndarray:
    """Audio → float32 mono at :data:`SR` Hz. ``samples`` is (n,) or (n, channels), any
    rate; channels are averaged, the rate converted with libsoxr (high quality)."""
    y = np.asarray(samples, np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1)
    if y.ndim != 1:
        raise ValueError(f"audio must be (n,) or (n, channels), not {y.shape}")
    if int(sr) != SR and len(y):
        import soxr

        y = soxr.resample(y, int(sr), SR).astype(np.float32, copy=False)
    return np.ascontiguousarray(y)


def n_frames(n_samples: int) -> int:
    """Frames of a signal of ``n_samples`` samples at :data:`SR` (madmom's ``end='normal'``)."""
    return int(np.ceil(n_samples * FPS / SR))


def log_spectrogram(samples: np.ndarray, sr: int) -> np.ndarray:
    """The system's log-frequency magnitude spectrogram of an audio signal.

    Parameters
    ----------
    samples : float (n,) mono or (n, channels), full scale ±1.
    sr : its sample rate, Hz (converted to :data:`SR`).

    Returns
    -------
    float32 (T, :data:`N_BINS`), T = ceil(duration · :data:`FPS`); row ``t`` is the frame
    starting at ``t / FPS`` s; values ``log10(1 + filtered magnitude)`` (≥ 0).
    """
    y = to_mono_sr(samples, sr)
    t = n_frames(len(y))
    fb = filterbank()
    if t == 0:
        return np.zeros((0, fb.shape[1]), np.float32)
    starts = (np.arange(t) * (SR / FPS)).astype(np.int64)
    padded = np.zeros(int(starts[-1]) + FRAME_SIZE, np.float32)
    padded[:len(y)] = y
    out = np.empty((t, fb.shape[1]), np.float32)
    win = _window()
    from scipy import fft

    for a in range(0, t, 512):  # blocks bound the memory of long recordings
        st = starts[a:a + 512]
        frames = padded[st[:, None] + np.arange(FRAME_SIZE)] * win
        mag = np.abs(fft.rfft(frames, axis=1, workers=1)[:, :FRAME_SIZE // 2])
        out[a:a + len(st)] = mag.astype(np.float32) @ fb
    np.log10(out + 1.0, out=out)
    return out
