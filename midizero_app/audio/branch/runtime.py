"""The audio branch at run time: its architecture entry, the bundled ONNX export run with
onnxruntime (no torch), and a recording cut into query windows of the library's space.

The app ships the branch as ``models/audio-branch.onnx`` with its card
``models/audio-branch.json`` (read by :func:`midizero_app.core.model_files.read_card`); the
card's ``"audio_arch"`` gives the snippet shape and the audio→window mapping,
``"teacher_model_id"`` the pitch-matrix encoder whose window space it lands in (a library
indexed by another encoder cannot be searched this way), and ``"calibration"`` the
confidence of answers found by this route alone (fitted on the ASAP dev half,
``benchmarks/audio_routes.py``). ``MIDIZERO_AUDIO_BRANCH`` names another export.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...core.bundled import model_file
from ...core.model_arch import EMBED_DIM
from ...core.model_files import (ModelError, onnx_mismatch, read_card, require_file)

SPEC_BINS = 92
"""Log-frequency bands of the spectrogram (16 per octave, 30 Hz–6 kHz)."""
ROLL_PITCHES = 88
"""Piano-roll rows (MIDI 21..108)."""
SNIPPET_FRAMES = 42
"""Frames of one snippet (20 frames/s: 2.1 s)."""
WIDTHS = (24, 48, 96, 96)
"""Filters of the four blocks, as published."""
LATENT = 32
"""Maps of the 1×1 convolution before pooling, and the reproduction's embedding length."""

KINDS = ("reproduce", "teacher")

AUDIO_BRANCH_FILE = "audio-branch.onnx"
AUDIO_BRANCH_ENV = "MIDIZERO_AUDIO_BRANCH"


def audio_arch(kind: str, dim: int | None = None, frames: int = SNIPPET_FRAMES,
               widths=WIDTHS, mapping: str | None = None) -> dict:
    """The card's ``"audio_arch"`` for a model ``kind`` (``"reproduce"``: 32-d pair model;
    ``"teacher"``: audio branch into the encoder's :data:`EMBED_DIM` space). ``mapping``:
    how audio snippets were cut for a teacher model (:mod:`.snippets`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (reproduce or teacher)")
    a = {"kind": kind, "widths": list(widths), "latent": LATENT, "frames": int(frames),
         "bins": SPEC_BINS, "pitches": ROLL_PITCHES,
         "dim": int(dim if dim is not None else (LATENT if kind == "reproduce" else EMBED_DIM))}
    if mapping is not None:
        a["mapping"] = mapping
    return a


def check_audio_arch(a) -> dict:
    """``a`` checked (a card's ``"audio_arch"``); raises :class:`ModelError` naming the bad
    entry."""
    if not isinstance(a, dict):
        raise ModelError("the model card has no audio architecture (audio_arch)")
    if a.get("kind") not in KINDS:
        raise ModelError(f"audio_arch kind must be one of {KINDS} (got {a.get('kind')!r:.20})")
    w = a.get("widths")
    if not (isinstance(w, list) and len(w) == 4 and
            all(isinstance(x, int) and 1 <= x <= 1024 for x in w)):
        raise ModelError(f"audio_arch widths must be 4 whole numbers 1-1024 (got {w!r:.60})")
    for key, lo, hi in (("latent", 1, 1024), ("frames", 16, 4096), ("dim", 1, 4096),
                        ("bins", 16, 1024), ("pitches", 16, 1024)):
        v = a.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi):
            raise ModelError(f"audio_arch {key} must be a whole number {lo}-{hi} "
                             f"(got {v!r:.20})")
    if a["kind"] == "teacher" and a["dim"] != EMBED_DIM:
        raise ModelError(f"a teacher model's dim must be {EMBED_DIM} (got {a['dim']})")
    if a.get("mapping", "fixed") not in ("fixed", "onsets"):
        raise ModelError(f"audio_arch mapping must be fixed or onsets "
                         f"(got {a.get('mapping')!r:.20})")
    return a


def audio_branch_path() -> Path:
    """The bundled audio branch export (``MIDIZERO_AUDIO_BRANCH`` names another)."""
    return model_file(AUDIO_BRANCH_FILE, AUDIO_BRANCH_ENV)


def embed_recording(embedder, samples: np.ndarray, sr: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Audio → query windows in the branch's space: one snippet per onset found in the
    recording (:func:`.snippets.query_snippets` under the card's mapping), embedded by
    ``embedder`` (anything with ``arch``, ``frames`` and ``embed(spec)``).

    ``samples``: float mono (n,) or (n, channels) at ``sr`` Hz. Returns the embeddings
    float32 (N, dim), the onset numbers int64 (N,) (query frames for
    :class:`midizero_app.core.search.VoteAccumulator`) and the onsets' times float64 (N,)
    in seconds from the start of ``samples``.
    """
    from .snippets import detect_onsets, query_snippets
    from .spectrogram import log_spectrogram

    spec = log_spectrogram(samples, sr)
    onsets = detect_onsets(spec)
    snips, q = query_snippets(spec, embedder.arch.get("mapping", "fixed"), onsets,
                              embedder.frames)
    return embedder.embed(snips), q, onsets


class OnnxAudioBranch:
    """A teacher model's ONNX export run with onnxruntime: spectrogram snippets → unit
    vectors in the pitch-matrix encoder's window space.

    Parameters
    ----------
    path : the ``.onnx`` export; its card is the ``.json`` beside it (default: the bundled
        :func:`audio_branch_path`).
    threads : CPU threads one run uses.

    Raises :class:`ModelError` (one line naming the file) for a missing file or card, a card
    without a teacher model's ``"audio_arch"``, or an export whose content is not the one
    the card records.
    """

    def __init__(self, path: str | Path | None = None, threads: int = 2):
        from ...core.onnx_session import make_session

        self.path = require_file(path if path is not None else audio_branch_path())
        self.card = read_card(self.path)
        if not self.card:
            raise ModelError(f"{self.path.name} has no model card "
                             f"({self.path.with_suffix('.json').name})")
        try:
            self.arch = check_audio_arch(self.card.get("audio_arch"))
        except ModelError as exc:
            raise ModelError(f"{self.path.name}: {exc}") from None
        if self.arch["kind"] != "teacher":
            raise ModelError(f"{self.path.name} does not embed audio into the library's "
                             "space (it is not a teacher-trained audio branch)")
        self.model_id: str = str(self.card.get("model_id", ""))
        why = onnx_mismatch(self.path, self.card, self.model_id)
        if why is not None:
            raise ModelError(why)
        self.teacher_model_id: str | None = self.card.get("teacher_model_id")
        self.frames = int(self.arch["frames"])
        self.dim = int(self.arch["dim"])
        self.runtime = "onnxruntime"
        try:
            self._session = make_session(self.path, threads)
        except ImportError:
            raise ModelError("onnxruntime is not installed") from None

    def embed(self, spec: np.ndarray, batch: int = 256) -> np.ndarray:
        """spec: (N, frames, 92) log spectrogram snippets → float32 (N, dim) unit vectors."""
        spec = np.asarray(spec)
        if spec.ndim != 3 or spec.shape[1:] != (self.frames, SPEC_BINS):
            raise ModelError(f"audio snippets must be (n, {self.frames}, {SPEC_BINS}), "
                             f"not {spec.shape}")
        out = np.empty((len(spec), self.dim), np.float32)
        for i in range(0, len(spec), batch):
            x = np.ascontiguousarray(spec[i:i + batch], np.float32)
            out[i:i + batch] = self._session.run(None, {"spec": x})[0]
        return out

    def embed_recording(self, samples: np.ndarray, sr: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`embed_recording` with this branch."""
        return embed_recording(self, samples, sr)


_lock = threading.Lock()
_shared: dict[tuple[str, int], OnnxAudioBranch] = {}


def shared_branch(path: str | Path | None = None, threads: int = 2) -> OnnxAudioBranch:
    """One :class:`OnnxAudioBranch` per export and thread count in this process (the
    session is thread-safe and costs about 0.1 s to load)."""
    key = (str(path if path is not None else audio_branch_path()), int(threads))
    with _lock:
        if key not in _shared:
            _shared[key] = OnnxAudioBranch(key[0], threads)
        return _shared[key]
