"""Inference without torch: the bundled model through onnxruntime (DESIGN §1.3).

Importing torch takes 1–3 s of CPU and holds the GIL while it does, which stalls the desktop
app's event loop (issue 5: never more than 50 ms) and slows every CLI search. Searching and
indexing only need the encoder's forward pass, which the exported ``<name>.onnx`` gives
through onnxruntime (about 2× torch's speed). :func:`load_embedder` returns an
:class:`OnnxEmbedder` when the ONNX file belongs to the checkpoint, else the torch
:class:`~midizero_app.core.encoder.Embedder`; torch is then imported only for training,
evaluation, or a checkpoint without a matching export.

The checkpoint's ``model_id`` (a hash of its weights that ties library vectors to the model)
is computed here without torch: ``torch.save`` writes a zip of raw tensor bytes plus a small
pickle, which :func:`read_state_dict` reads with an unpickler that only knows the few
harmless names a ``state_dict`` uses (like ``torch.load(weights_only=True)``). Anything it
does not understand falls back to the torch path — never to trusting a file blindly.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

EMBED_DIM = 128

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def default_model_path() -> Path:
    """The bundled model (``MIDIZERO_MODEL`` overrides it)."""
    env = os.environ.get("MIDIZERO_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (here.parents[2], here.parents[1]):  # source tree, or a bundle's data dir
        p = base / "models" / "default.pt"
        if p.is_file():
            return p
    return here.parents[2] / "models" / "default.pt"


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *_rest):
    data, dtype = storage
    flat = np.frombuffer(data, dtype)
    if not size:
        return flat[offset:offset + 1].reshape(())
    view = np.lib.stride_tricks.as_strided(flat[offset:], tuple(size),
                                           tuple(s * dtype.itemsize for s in stride))
    return np.ascontiguousarray(view)


class _WeightsUnpickler(pickle.Unpickler):
    """Only the names a plain ``state_dict`` pickle uses; anything else is refused."""

    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self.zf, self.prefix = zf, prefix

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)  # a marker, passed back in persistent ids
        raise pickle.UnpicklingError(f"unsupported name in a weights file: {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError("unsupported persistent id")
        stype, key = pid[1], str(pid[2])
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError("unsupported storage type")
        return self.zf.read(f"{self.prefix}data/{key}"), stype.dtype


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save``d state dict as NumPy arrays, without torch.

    Raises ``ValueError`` for anything but a plain state dict (or ``{"model": state_dict}``).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise ValueError("not a torch zip checkpoint")
            prefix = pkl[0][: -len("data.pkl")]
            names = set(zf.namelist())
            if prefix + "byteorder" in names and zf.read(prefix + "byteorder") != b"little":
                raise ValueError("big-endian checkpoint")
            with zf.open(pkl[0]) as fh:
                sd = _WeightsUnpickler(fh, zf, prefix).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, KeyError, EOFError,
            AttributeError, TypeError) as exc:
        raise ValueError(f"cannot read {Path(path).name} without torch: {exc}") from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, np.ndarray) for v in sd.values()):
        raise ValueError("not a plain state dict")
    return dict(sd)


def model_id_of_arrays(state: dict[str, np.ndarray]) -> str:
    """Same hash as :func:`midizero_app.core.encoder.model_id_of`, over NumPy arrays."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(np.ascontiguousarray(state[k]).tobytes())
    return h.hexdigest()[:16]


class OnnxEmbedder:
    """Inference for one checkpoint through its ONNX export (same API as ``Embedder``)."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, card: dict, threads: int = 2):
        import onnxruntime as ort

        self.path = Path(path)
        self.card = card
        self.model_id: str = card["model_id"]
        self.win_length: int = int(card.get("arch", {}).get("win_length", 10))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # no busy-waiting between runs: idle ORT threads would otherwise spin on the CPUs the
        # app's GUI thread and the live session need (a 2-core laptop has no spare one)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._ort = ort.InferenceSession(str(self.path.with_suffix(".onnx")), opts,
                                         providers=["CPUExecutionProvider"])

    def embed(self, windows: np.ndarray, batch: int = 256) -> np.ndarray:
        """windows: (N, W, 88) binary → float32 (N, 128) unit vectors (in batches of 256:
        as fast as bigger ones here, and each call leaves the CPUs sooner)."""
        out = np.empty((len(windows), EMBED_DIM), np.float32)
        for i in range(0, len(windows), batch):
            x = np.asarray(windows[i:i + batch], np.float32)
            out[i:i + batch] = self._ort.run(None, {"windows": x})[0]
        return out


def load_embedder(path: str | Path | None = None, runtime: str = "auto", threads: int = 2):
    """The fastest inference for a checkpoint: :class:`OnnxEmbedder` (no torch import) when
    ``<name>.onnx`` was exported from exactly these weights (the card's ``onnx_model_id``
    equals the weights' hash), else the torch ``Embedder``."""
    path = Path(path) if path else default_model_path()
    if runtime == "auto":  # MIDIZERO_RUNTIME=torch forces torch (comparisons, debugging)
        runtime = os.environ.get("MIDIZERO_RUNTIME", "auto")
    if runtime in ("auto", "onnx") and path.with_suffix(".onnx").is_file():
        try:
            import onnxruntime  # noqa: F401

            card = json.loads(path.with_suffix(".json").read_text())
            mid = model_id_of_arrays(read_state_dict(path))
            if card.get("onnx_model_id") == mid:
                return OnnxEmbedder(path, {**card, "model_id": mid}, threads)
        except (ImportError, OSError, ValueError):
            pass
    from .encoder import Embedder  # torch

    return Embedder(path, runtime=runtime, threads=threads)
