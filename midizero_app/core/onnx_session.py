"""The one way an onnxruntime session is made (the encoder's export, basic-pitch's model).

Every session runs on the CPU provider with ``threads`` intra-op threads, one inter-op
thread, and no busy-waiting between runs: idle onnxruntime threads otherwise spin on the
cores that the desktop app's event loop and the live session need (a 2-core laptop has no
spare one).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .model_files import ModelError, first_line, onnx_mismatch, onnx_path


def make_session(path: str | Path, threads: int = 2):
    """An ``onnxruntime.InferenceSession`` for the ONNX file ``path``.

    ``threads`` is the number of CPU threads one ``run`` uses. Raises ``ImportError`` when
    onnxruntime is not installed and :class:`~midizero_app.core.model_files.ModelError` (one
    line naming the file) when it cannot load the file.
    """
    import onnxruntime as ort

    path = Path(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types vary by version
        raise ModelError(f"cannot load {path.name}: it is damaged or not an ONNX model "
                         f"({first_line(exc)})") from None


def checked_session(weights: str | Path, card: dict, model, sample, input_name: str,
                    runtime: str = "auto", threads: int = 2, require_hash: bool = True):
    """The ONNX export beside ``weights`` as a session, only if it computes what ``model``
    (the torch module, eval mode) does on ``sample`` (float32 array, the model's input
    shape) within 1e-4 and the card names it as this model's export; else None (run torch).

    ``runtime``: ``"auto"`` (the export when it checks out), ``"onnx"`` (the export, or
    :class:`ModelError` saying why not), ``"torch"`` (None).
    """
    if runtime not in ("auto", "onnx"):
        return None
    weights = Path(weights)
    why = onnx_mismatch(weights, card, card["model_id"], require_hash=require_hash)
    session = None
    if why is None:
        try:
            candidate = make_session(onnx_path(weights), threads)
            why = _export_differs(candidate, model, sample, input_name, weights)
            if why is None:
                session = candidate
        except ImportError:
            why = "onnxruntime is not installed"
        except ModelError as exc:
            why = str(exc)
    if runtime == "onnx" and session is None:
        raise ModelError(f"cannot run {weights.name} with onnxruntime: {why}")
    return session


def _export_differs(session, model, sample, input_name: str, weights: Path) -> str | None:
    """Why ``session`` does not compute ``model``'s outputs on ``sample`` (None if it does)."""
    import torch

    name = onnx_path(weights).name
    try:
        got = session.run(None, {input_name: sample})[0]
    except Exception as exc:  # noqa: BLE001 - a graph with other inputs or shapes
        return f"{name} does not run on this model's inputs ({first_line(exc)})"
    with torch.inference_mode():
        want = model(torch.from_numpy(sample)).numpy()
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-4):
        return f"{name} computes other embeddings than {weights.name}"
    return None
