"""Model files on disk, read as untrusted input and written atomically, without torch.

A model is three files with one stem (DESIGN §1.3):

* ``<name>.safetensors`` — the encoder's weights (a ``state_dict`` of float32 parameters and
  int64 batch-norm counters). The safetensors reader checks the header, every dtype, shape
  and byte range against the file before any array is made, and runs no code from the file.
* ``<name>.json`` — the model card: architecture, training recipe, calibration, and the
  identity of the ONNX export (``onnx_model_id``: the model id of the weights it was
  exported from; ``onnx_hash``: the export's content hash).
* ``<name>.onnx`` — the same network for onnxruntime (optional; several times torch's
  speed).

The **model id** (16 hex characters) ties a library's stored vectors to the weights that
made them: SHA-256 over the tensors in sorted name order, each as its name (UTF-8) then its
raw little-endian bytes, truncated to 16 hex digits. It is computed here from the
safetensors file, and equals what :func:`midizero_app.core.encoder.model_id_of` gives for
the same weights in torch, so a library embedded with a ``.pt`` checkpoint keeps its id when
the weights are stored as safetensors.

Every failure to read a model is a :class:`ModelError`: one line naming the file and the
cause.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_write, write_text
from .bundled import model_file
from .errors import MidizeroError
from .hashing import file_hash
from .model_arch import check_arch

WEIGHTS_SUFFIX = ".safetensors"
DEFAULT_MODEL = "default" + WEIGHTS_SUFFIX
MODEL_ENV = "MIDIZERO_MODEL"
MAX_MODEL_BYTES = 1 << 30
"""Largest weights file read (1 GiB): the bundled model is 3.3 MB, a ResNet-34-sized
encoder 88 MB; anything far larger is not a model of this software."""


class ModelError(MidizeroError, ValueError):
    """A model file is missing, damaged, or not a model this software can run.

    Also a ``ValueError``, which is what callers of the checkpoint functions caught before.
    """


def default_model_path() -> Path:
    """The bundled model's weights (``MIDIZERO_MODEL`` names another model file)."""
    return model_file(DEFAULT_MODEL, MODEL_ENV)


def card_path(weights: str | Path) -> Path:
    """The model card beside a weights file: ``<name>.json``."""
    return Path(weights).with_suffix(".json")


def onnx_path(weights: str | Path) -> Path:
    """The ONNX export beside a weights file: ``<name>.onnx``."""
    return Path(weights).with_suffix(".onnx")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message as one short line (third-party errors run over many)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]


def require_file(path: str | Path) -> Path:
    """``path`` as a Path if it is a regular file of at most :data:`MAX_MODEL_BYTES`, else
    :class:`ModelError`."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"{path} is not a model file (it is a folder or a device)")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"{path.name} is not a model of this software: {size / 2**30:.1f} "
                         f"GiB, more than {MAX_MODEL_BYTES / 2**30:.0f} GiB")
    return path


def read_card(weights: str | Path) -> dict:
    """The model card beside ``weights`` (``{}`` if there is none).

    Raises :class:`ModelError` if it exists but is not a JSON object."""
    path = card_path(weights)
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"cannot read the model card {path.name}: {first_line(exc)}") from None
    if not isinstance(card, dict):
        raise ModelError(f"the model card {path.name} is not a JSON object")
    try:
        check_arch(card.get("arch"))
    except ValueError as exc:
        raise ModelError(f"the model card {path.name} gives an unusable architecture: "
                         f"{exc}") from None
    return card


def write_card(weights: str | Path, card: dict) -> None:
    """Write the model card beside ``weights`` atomically (pretty JSON, key order kept)."""
    write_text(card_path(weights), json.dumps(card, indent=2, sort_keys=False) + "\n")


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` weights file, checked, as NumPy arrays.

    Returns ``{name: array}`` in the file's dtypes and shapes (C-contiguous). Raises
    :class:`ModelError` for a missing, truncated, corrupt or crafted file (sizes or offsets
    that do not fit the data, unknown dtypes, a header that is not JSON) and for any other
    suffix (a torch ``.pt`` checkpoint needs torch:
    :func:`midizero_app.core.encoder.load_checkpoint`).
    """
    path = require_file(path)
    if path.suffix != WEIGHTS_SUFFIX:
        raise ModelError(f"{path.name} is not a {WEIGHTS_SUFFIX} weights file")
    from safetensors.numpy import load

    try:
        with open(path, "rb") as f:
            data = f.read()
        arrays = load(data)
    except Exception as exc:  # noqa: BLE001 - the reader's errors: any means an unusable file
        raise ModelError(f"cannot read model {path.name}: it is damaged or not a model "
                         f"({first_line(exc)})") from None
    if not arrays:
        raise ModelError(f"cannot read model {path.name}: it holds no weights")
    # sorted: the reader's order is a hash map's, different in each process
    return {k: np.asarray(arrays[k], order="C") for k in sorted(arrays)}


def write_weights(path: str | Path, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` as a ``.safetensors`` file atomically; returns their model id.

    The written file is read back and its model id checked before it replaces ``path``
    (raises :class:`~midizero_app.core.errors.WriteFailed`, ``path`` untouched, if not).
    """
    path = Path(path)
    if path.suffix != WEIGHTS_SUFFIX:
        raise ModelError(f"model weights are written as {WEIGHTS_SUFFIX}, not {path.name}")
    from safetensors.numpy import save

    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}
    mid = model_id_of_arrays(arrays)
    data = save(arrays)

    def verify(tmp: Path) -> None:
        from safetensors.numpy import load

        if model_id_of_arrays(load(tmp.read_bytes())) != mid:
            raise OSError(f"{path.name} did not read back as written")

    with atomic_write(path, verify=verify) as tmp:
        tmp.write_bytes(data)
    return mid


def model_id_of_arrays(state: dict[str, np.ndarray]) -> str:
    """The model id of a ``state_dict`` given as NumPy arrays (see the module docstring).

    Same value as :func:`midizero_app.core.encoder.model_id_of` over the torch tensors."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(np.asarray(state[k]).tobytes(order="C"))
    return h.hexdigest()[:16]


def onnx_mismatch(weights: str | Path, card: dict, model_id: str,
                  require_hash: bool = True) -> str | None:
    """Why the ONNX export beside ``weights`` must not be run for them, or None if it may.

    It may when the card says it was exported from weights with ``model_id`` and, if the
    card records the export's content hash (``onnx_hash``, written since cards carry it),
    the file's hash equals it. With ``require_hash`` a card without the hash is refused too
    (the caller then has no torch model to check the export's output against).
    """
    onnx = onnx_path(weights)
    if not onnx.is_file():
        return f"{onnx.name} is missing"
    if card.get("onnx_model_id") != model_id:
        return f"{onnx.name} was exported from other weights than {Path(weights).name}"
    want = card.get("onnx_hash")
    if want is None:
        return f"the model card does not record the content of {onnx.name}" \
            if require_hash else None
    try:
        have = file_hash(onnx)
    except OSError as exc:
        return f"cannot read {onnx.name} ({first_line(exc)})"
    if have != want:
        return f"{onnx.name} is damaged or was replaced (its content does not match the card)"
    return None
