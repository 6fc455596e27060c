"""Inference without torch: the bundled model through onnxruntime (DESIGN §1.3).

Importing torch takes 1–3 s of CPU and holds the GIL while it does, which stalls the desktop
app's event loop (never more than 50 ms) and slows every CLI search. Searching and indexing
only need the encoder's forward pass, which the exported ``<name>.onnx`` gives through
onnxruntime (≈ 7,500 windows/s against torch's ≈ 1,300 on 2 cores, models/README.md).
:func:`load_embedder` returns an :class:`OnnxEmbedder` when the ONNX file belongs to the
weights, else the torch :class:`~midizero_app.core.encoder.Embedder`; torch is then
imported only for training, evaluation, or weights without a matching export.

The weights' ``model_id`` is computed here without torch from the ``.safetensors`` file
(:mod:`midizero_app.core.model_files`); an export belongs to them when the model card
records that id and the export's content hash, and the file on disk has that hash.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .model_arch import EMBED_DIM
from .model_files import (WEIGHTS_SUFFIX, ModelError, default_model_path,
                          model_id_of_arrays, onnx_mismatch, onnx_path, read_card, read_weights,
                          require_file)
from .onnx_session import make_session

__all__ = ["EMBED_DIM", "ModelError", "OnnxEmbedder", "default_model_path", "load_embedder",
           "model_id_of_arrays", "read_state_dict"]

read_state_dict = read_weights
"""The tensors of a ``.safetensors`` weights file as NumPy arrays (an older name)."""


class OnnxEmbedder:
    """Inference for one model through its ONNX export (same API as ``Embedder``).

    ``card`` is the model card with ``"model_id"`` set to the weights' id; the caller has
    checked that the export belongs to those weights (:func:`load_embedder` does).
    """

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, card: dict, threads: int = 2):
        self.path = Path(path)
        self.card = card
        self.model_id: str = card["model_id"]
        self.win_length: int = int(card.get("arch", {}).get("win_length", 10))
        self._ort = make_session(onnx_path(self.path), threads)

    def embed(self, windows: np.ndarray, batch: int = 256) -> np.ndarray:
        """windows: (N, W, 88) binary → float32 (N, 128) unit vectors (in batches of 256:
        as fast as bigger ones here, and each call leaves the CPUs sooner)."""
        out = np.empty((len(windows), EMBED_DIM), np.float32)
        for i in range(0, len(windows), batch):
            x = np.asarray(windows[i:i + batch], np.float32)
            out[i:i + batch] = self._ort.run(None, {"windows": x})[0]
        return out


def load_embedder(path: str | Path | None = None, runtime: str = "auto", threads: int = 2):
    """The fastest inference for a model: :class:`OnnxEmbedder` (no torch import) when
    ``<name>.onnx`` was exported from exactly these ``.safetensors`` weights, else the torch
    ``Embedder`` (also for ``.pt`` checkpoints, read with torch's safe loader).

    ``runtime``: ``"auto"``, ``"onnx"`` (the export or an error) or ``"torch"``; the
    environment variable ``MIDIZERO_RUNTIME`` overrides ``"auto"``. ``threads``: CPU
    threads for inference. Raises :class:`ModelError` (one line naming the file and the
    cause) for a missing, damaged or mismatched model; nothing is loaded then.
    """
    path = require_file(path if path else default_model_path())
    if runtime == "auto":  # MIDIZERO_RUNTIME=torch forces torch (comparisons, debugging)
        runtime = os.environ.get("MIDIZERO_RUNTIME", "auto")
    why = None
    if path.suffix == WEIGHTS_SUFFIX:
        weights = read_weights(path)
        card = read_card(path)
        mid = model_id_of_arrays(weights)
        if runtime in ("auto", "onnx"):
            why = onnx_mismatch(path, card, mid)
            if why is None:
                try:
                    return OnnxEmbedder(path, {**card, "model_id": mid}, threads)
                except ImportError:
                    why = "onnxruntime is not installed"
                except ModelError as exc:
                    why = str(exc)
            if runtime == "onnx":
                raise ModelError(f"cannot run {path.name} with onnxruntime: {why}")
        runtime = "torch"  # the export was checked (or not wanted): torch runs the weights
    try:
        from .encoder import Embedder  # torch
    except ImportError:
        raise ModelError(f"cannot run {path.name}: {why + ', and ' if why else ''}torch is "
                         "not installed in this build") from None
    return Embedder(path, runtime=runtime, threads=threads)
