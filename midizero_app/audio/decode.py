"""Audio files → mono float32 samples at the rate the transcriber wants.

Decoding goes through libsndfile (the ``soundfile`` wheel bundles one that reads WAV, FLAC,
Ogg Vorbis/Opus and MP3); resampling through ``soxr`` (a real band-limited resampler, a
few MB, instead of librosa + numba). Every failure is an :class:`AudioError` whose message
is the one-line reason shown to the user.

Decoders may hang or exhaust memory on hostile files, and libsndfile's MP3 decoder
(mpg123) prints to stderr: call :func:`load_audio` on untrusted files through
:mod:`midizero_app.audio.worker`, which runs it in a limited process whose stderr is kept
off the user's terminal.
"""
from __future__ import annotations

import codecs
import os
import stat
import sys
from pathlib import Path

import numpy as np

from ..core.paths import display_path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
DEFAULT_MAX_SECONDS = 90 * 60.0  # a longer file is refused rather than decoded
MAX_FILE_BYTES = 4 * 1024 ** 3


# The first bytes of the formats libsndfile reads for AUDIO_SUFFIXES (MP3: an ID3 tag, or
# an MPEG frame sync, checked in _looks_like_audio).
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"fLaC", b"OggS", b"FORM", b"ID3", b"caff",
          b".snd", b"riff")
_KNOWN = "WAV, FLAC, Ogg, MP3 or AIFF"


class AudioError(Exception):
    """Audio could not be read; the message is the reason shown to the user."""


def _looks_like_audio(head: bytes) -> bool:
    """Whether a file's first bytes start one of the formats libsndfile reads."""
    if head.startswith(_MAGIC):
        return True
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    # an MPEG audio frame header: version, layer, bit rate and sample rate not reserved
    return (head[1] >> 3) & 3 != 1 and (head[1] >> 1) & 3 != 0 and head[2] >> 4 != 15 \
        and (head[2] >> 2) & 3 != 3


def _not_audio_reason(path: Path) -> str | None:
    """Why a file libsndfile refused is not audio at all (its content), or None when it
    starts like an audio file (then it is a damaged or unsupported one)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if _looks_like_audio(head):
        return None
    try:  # an incremental decoder: a character cut at byte 512 is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        is_text = all(c.isprintable() or c in "\r\n\t\f" for c in text)
    except UnicodeDecodeError:
        is_text = False
    what = "text" if is_text else "data"
    return f"not an audio file (it holds {what}, not {_KNOWN} audio)"


def is_audio(path: str | Path) -> bool:
    """True when the file name has an audio suffix this module reads."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels: (n,) or (n, channels) → float32 (n,)."""
    x = np.asarray(samples, np.float32)
    return x if x.ndim == 1 else x.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling with soxr (high quality).

    Parameters
    ----------
    samples : float32 (n,), mono.
    sr_in, sr_out : sample rates in Hz.

    Returns
    -------
    float32 (round(n * sr_out / sr_in),)
    """
    x = np.ascontiguousarray(samples, np.float32)
    if sr_in == sr_out or len(x) == 0:
        return x
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | Path, sr: int, max_seconds: float = DEFAULT_MAX_SECONDS
               ) -> tuple[np.ndarray, float]:
    """Decode an audio file to mono at ``sr``.

    Parameters
    ----------
    path : a WAV, FLAC, Ogg (Vorbis/Opus), MP3 or AIFF file.
    sr : target sample rate in Hz.
    max_seconds : longer files are refused with a reason (a float32 mono copy of the whole
        file is made: 10.6 MB per minute at 44.1 kHz).

    Returns
    -------
    samples : float32 (n,), mono, in [-1, 1] for integer formats.
    duration : seconds of audio.

    Raises
    ------
    AudioError with a one-line reason (missing, empty, unsupported, corrupt, too long).
    """
    import soundfile as sf

    p = Path(path)
    if p.suffix.lower() not in AUDIO_SUFFIXES:
        suffix = display_path(p.suffix) if p.suffix else "(no suffix)"
        raise AudioError(f"unsupported audio format {suffix!r} "
                         f"(supported: {' '.join(AUDIO_SUFFIXES)})")
    try:
        st = p.stat()
    except OSError as exc:
        raise AudioError(f"cannot open: {exc.strerror or type(exc).__name__}") from None
    size = st.st_size
    if not stat.S_ISREG(st.st_mode):
        raise AudioError("not a regular file (a pipe, device or folder)")
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise AudioError(f"file too large ({size / 1024 ** 3:.1f} GB)")
    # libsndfile is given the name as bytes: a name that is not UTF-8 opens too
    name = str(p) if sys.platform == "win32" else os.fsencode(p)
    try:
        with sf.SoundFile(name) as f:
            sr_in, frames = int(f.samplerate), int(f.frames)
            if sr_in <= 0:
                raise AudioError("corrupt audio header (sample rate 0)")
            duration = frames / sr_in
            if duration > max_seconds:
                raise AudioError(f"recording too long ({duration / 60:.0f} min; "
                                 f"the limit is {max_seconds / 60:.0f} min)")
            blocks = [to_mono(b) for b in f.blocks(blocksize=1 << 18, dtype="float32",
                                                    always_2d=True)]
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        reason = _not_audio_reason(p)
        if reason:
            raise AudioError(reason) from None
        msg = getattr(exc, "error_string", None) or str(exc).split(":")[-1].strip() \
            or type(exc).__name__
        if "pipe" in msg:  # libsndfile's words when its MP3 decoder finds no frame
            msg = "no audio frames found"
        raise AudioError(f"not a readable audio file ({display_path(msg)})") from None
    except OSError as exc:
        raise AudioError(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if len(mono) == 0:
        raise AudioError("no audio in the file (0 samples)")
    if not np.isfinite(mono).all():
        raise AudioError("corrupt audio (non-finite samples)")
    return resample(mono, sr_in, sr), len(mono) / sr_in
