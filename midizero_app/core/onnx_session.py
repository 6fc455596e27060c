"""The one way an onnxruntime session is made (the encoder's export, basic-pitch's model).

Every session runs on the CPU provider with ``threads`` intra-op threads, one inter-op
thread, and no busy-waiting between runs: idle onnxruntime threads otherwise spin on the
cores that the desktop app's event loop and the live session need (a 2-core laptop has no
spare one).
"""
from __future__ import annotations

from pathlib import Path

from .model_files import ModelError, first_line


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
