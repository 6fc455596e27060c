"""The pitch-matrix encoder (DESIGN §1.3): a small ResNet over 1 × W × 88 → 128-d, L2-normed.

A model is ``<name>.safetensors`` (the ``state_dict``) beside ``<name>.json`` (the model
card) and, optionally, ``<name>.onnx`` (its export; :mod:`midizero_app.core.model_files`).
:class:`Embedder` runs a model with torch, or through onnxruntime when the export beside it
belongs to the weights and computes the same embeddings. Checkpoints written by
``torch.save`` (``.pt``) are still read, with torch's restricted loader
(``weights_only=True``), never with a general unpickler.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .atomic import atomic_write
from .hashing import file_hash
from .model_arch import DEFAULT_ARCH, EMBED_DIM, check_arch
from .model_files import (WEIGHTS_SUFFIX, ModelError, default_model_path, first_line,
                          model_id_of_arrays, read_card,
                          read_weights, require_file, write_card, write_weights)
from .onnx_session import checked_session

__all__ = ["DEFAULT_ARCH", "EMBED_DIM", "Embedder", "ModelError", "PitchEncoder",
           "build_model", "count_parameters", "default_model_path", "export_onnx",
           "load_checkpoint", "model_id_of", "save_checkpoint"]


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != (1, 1) or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class PitchEncoder(nn.Module):
    """ResNet-style CNN: (N, W, 88) pitch matrices → (N, dim) unit vectors.

    The stem halves the pitch axis; stages 2–4 halve both axes, so a 10 × 88 window ends as
    ``widths[-1]`` × 2 × 6 features, flattened (absolute pitch matters: no global pooling)
    into the linear head — 1536 → 128 with the default widths, as in the published model.
    """

    def __init__(self, widths=(32, 64, 128, 128), blocks=(1, 1, 1, 1), dim: int = EMBED_DIM,
                 win_length: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, (1, 2), 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers, cin = [], widths[0]
        for i, (w, nb) in enumerate(zip(widths, blocks)):
            for b in range(nb):
                stride = (2, 2) if (i > 0 and b == 0) else (1, 1)
                layers.append(ResidualBlock(cin, w, stride))
                cin = w
        self.trunk = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.trunk(self.stem(torch.zeros(1, 1, win_length, 88))).numel()
        self.head = nn.Linear(flat, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, W, 88) float in {0, 1} → (N, dim) L2-normalised."""
        y = self.trunk(self.stem(x.unsqueeze(1)))
        return F.normalize(self.head(y.flatten(1)), dim=1)


def build_model(arch: dict | None = None) -> PitchEncoder:
    """A fresh encoder for ``arch`` (a model card's ``"arch"``, over :data:`DEFAULT_ARCH`).

    Raises ``ValueError`` for an architecture out of range (:func:`check_arch`)."""
    a = check_arch(arch)
    return PitchEncoder(a["widths"], a["blocks"], a["dim"], a["win_length"])


def model_id_of(state_dict: dict) -> str:
    """A short hash of the weights: ties stored vectors to the model that made them.

    The same value as :func:`midizero_app.core.model_files.model_id_of_arrays` gives for the
    tensors as NumPy arrays (16 hex characters)."""
    return model_id_of_arrays({k: v.detach().cpu().contiguous().numpy()
                               for k, v in state_dict.items()})


def save_checkpoint(model: PitchEncoder, path: str | Path, card: dict) -> dict:
    """Write the weights to ``path`` (``.safetensors``) and the card beside it (``.json``),
    each atomically; returns the card with ``model_id`` and ``n_parameters`` set."""
    path = Path(path)
    arrays = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
    mid = write_weights(path, arrays)
    card = {**card, "model_id": mid, "n_parameters": count_parameters(model)}
    card.pop("onnx_model_id", None)  # the export, if any, is written and recorded afterwards
    card.pop("onnx_hash", None)
    write_card(path, card)
    return card


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save``d ``.pt`` checkpoint."""
    if path.suffix == WEIGHTS_SUFFIX:
        return {k: torch.from_numpy(np.array(a)) for k, a in read_weights(path).items()}
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        cause = first_line(exc)
        if "weights only load failed" in cause.lower():  # torch's advice, not the cause
            detail = str(exc).split("WeightsUnpickler error:")[-1].split("Check the")[0]
            cause = "torch's safe loader refused it: " + \
                (" ".join(detail.split())[:120] or "not plain weights")
        raise ModelError(f"cannot load model {path.name}: it is damaged or not a model "
                         f"({cause})") from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]  # a training checkpoint (weights + optimiser state)
    if not isinstance(sd, dict) or not sd or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ModelError(f"cannot load model {path.name}: it holds no weights")
    return sd


def load_checkpoint(path: str | Path) -> tuple[PitchEncoder, dict]:
    """Load a model's weights (``.safetensors``, or a ``.pt`` checkpoint) with its card.

    Returns the encoder in eval mode and the card with ``model_id`` set from the weights.
    Raises :class:`ModelError` (one line naming the file and the cause) for a missing,
    damaged or crafted file, weights that do not fit the card's architecture (names, shapes
    or dtypes), or weights that are not finite.
    """
    path = require_file(path)
    card = read_card(path)
    sd = _read_state(path)
    try:
        model = build_model(card.get("arch"))
    except Exception as exc:  # noqa: BLE001 - a card with an impossible architecture
        raise ModelError(f"the model card of {path.name} gives an architecture that cannot be "
                         f"built: {first_line(exc)}") from None
    want = model.state_dict()
    mismatch = f"model {path.name} does not match its card's architecture"
    missing, extra = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    if missing or extra:
        raise ModelError(f"{mismatch}: " + "; ".join(
            part for part in (f"missing {', '.join(missing[:3])}" if missing else "",
                              f"unexpected {', '.join(extra[:3])}" if extra else "") if part))
    for k, t in want.items():
        if sd[k].shape != t.shape:
            raise ModelError(f"{mismatch}: {k} is {tuple(sd[k].shape)}, "
                             f"the architecture needs {tuple(t.shape)}")
        if sd[k].dtype != t.dtype:
            raise ModelError(f"{mismatch}: {k} is {str(sd[k].dtype).removeprefix('torch.')}, "
                             f"not {str(t.dtype).removeprefix('torch.')}")
        if sd[k].is_floating_point() and not bool(torch.isfinite(sd[k]).all()):
            raise ModelError(f"model {path.name} is damaged: {k} holds NaN or infinite values")
    try:
        model.load_state_dict(sd)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{mismatch}: {first_line(exc)}") from None
    model.eval()
    mid = model_id_of(model.state_dict())
    if card.get("model_id") and card["model_id"] != mid and path.suffix == WEIGHTS_SUFFIX:
        # safetensors checks the layout, not the numbers: the card's id is their checksum
        raise ModelError(f"{path.name} is damaged: its weights do not match its card "
                         f"(model id {mid}, the card says {card['model_id']})")
    card["model_id"] = mid
    return model, card


def count_parameters(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (batch-norm counters excluded)."""
    return sum(p.numel() for p in model.parameters())


def export_onnx(model: PitchEncoder, path: str | Path, win_length: int = 10) -> str:
    """Export for onnxruntime with a dynamic batch axis, atomically; returns the file's
    content hash (:func:`midizero_app.core.hashing.file_hash`, the card's ``onnx_hash``)."""
    path = Path(path)
    model.eval()
    digest: list[str] = []
    with atomic_write(path, verify=lambda tmp: digest.append(file_hash(tmp))) as tmp:
        torch.onnx.export(model, torch.zeros(2, win_length, 88), str(tmp), opset_version=17,
                          dynamo=False, input_names=["windows"], output_names=["embeddings"],
                          dynamic_axes={"windows": {0: "n"}, "embeddings": {0: "n"}})
    return digest[-1]


class Embedder:
    """Inference for one model.

    Parameters
    ----------
    path : the ``.safetensors`` weights or a ``.pt`` checkpoint (default: the bundled model).
    runtime : ``"auto"`` (onnxruntime when the export beside the weights belongs to them),
        ``"onnx"`` (the export, or :class:`ModelError`), ``"torch"``.
    threads : CPU threads for inference.
    """

    def __init__(self, path: str | Path | None = None, runtime: str = "auto", threads: int = 2):
        self.path = Path(path) if path else default_model_path()
        self.model, self.card = load_checkpoint(self.path)
        self.model_id: str = self.card["model_id"]
        self.win_length: int = int(self.card.get("arch", {}).get("win_length", 10))
        sample = (np.random.default_rng(0).random((16, self.win_length, 88)) < 0.06) \
            .astype(np.float32)  # 16 seeded random windows
        self._ort = checked_session(self.path, self.card, self.model, sample, "windows",
                                    runtime, threads, require_hash=False)
        if self._ort is None:
            torch.set_num_threads(threads)
        self.runtime = "onnxruntime" if self._ort is not None else "torch"

    def embed(self, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
        """windows: (N, W, 88) binary → float32 (N, 128) unit vectors."""
        out = np.empty((len(windows), EMBED_DIM), np.float32)
        for i in range(0, len(windows), batch):
            x = np.asarray(windows[i:i + batch], np.float32)
            if self._ort is not None:
                out[i:i + batch] = self._ort.run(None, {"windows": x})[0]
            else:
                with torch.inference_mode():
                    out[i:i + batch] = self.model(torch.from_numpy(x)).numpy()
        return out
