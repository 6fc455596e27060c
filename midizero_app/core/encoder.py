"""The pitch-matrix encoder (DESIGN §1.3): a small ResNet over 1 × W × 88 → 128-d, L2-normed.

A checkpoint is ``<name>.pt`` (a plain ``state_dict``, loaded with ``weights_only=True``)
beside ``<name>.json`` (the model card). :class:`Embedder` runs a checkpoint for inference,
through onnxruntime when an exported ``<name>.onnx`` matches the weights (about 2× torch on
a laptop CPU), else through torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .training.config import DEFAULT_ARCH

EMBED_DIM = 128


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
    a = {**DEFAULT_ARCH, **(arch or {})}
    return PitchEncoder(a["widths"], a["blocks"], a["dim"], a["win_length"])


def model_id_of(state_dict: dict) -> str:
    """A short hash of the weights: ties stored vectors to the model that made them."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(state_dict[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(model: PitchEncoder, path: str | Path, card: dict) -> dict:
    """Write ``path`` (.pt state dict) and its ``.json`` card; returns the card with model_id."""
    path = Path(path)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    card = {**card, "model_id": model_id_of(sd), "n_parameters": count_parameters(model)}
    tmp = path.with_suffix(".pt.tmp")
    torch.save(sd, tmp)
    os.replace(tmp, path)
    _write_json(path.with_suffix(".json"), card)
    return card


def load_checkpoint(path: str | Path) -> tuple[PitchEncoder, dict]:
    """Load a checkpoint safely (``weights_only=True``) with its model card.

    Raises ``ValueError`` with a clear message for a missing, corrupt or mismatched file.
    """
    path = Path(path)
    card_path = path.with_suffix(".json")
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    try:
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        raise ValueError(f"cannot load model {path.name}: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]  # a training checkpoint (weights + optimiser state)
    model = build_model(card.get("arch"))
    try:
        model.load_state_dict(sd)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"model {path.name} does not match its card's architecture: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    model.eval()
    card["model_id"] = model_id_of(model.state_dict())
    return model, card


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_onnx(model: PitchEncoder, path: str | Path, win_length: int = 10) -> None:
    """Export for onnxruntime with a dynamic batch axis (written atomically)."""
    path = Path(path)
    tmp = path.with_suffix(".onnx.tmp")
    model.eval()
    torch.onnx.export(model, torch.zeros(2, win_length, 88), str(tmp), opset_version=17,
                      dynamo=False, input_names=["windows"], output_names=["embeddings"],
                      dynamic_axes={"windows": {0: "n"}, "embeddings": {0: "n"}})
    os.replace(tmp, path)


from .inference import default_model_path  # noqa: E402 - torch-free, re-exported here


class Embedder:
    """Inference for one checkpoint.

    Parameters
    ----------
    path : the ``.pt`` checkpoint (default: the bundled model).
    runtime : ``"auto"`` (onnxruntime when a matching ``.onnx`` exists), ``"onnx"``, ``"torch"``.
    threads : CPU threads for inference.
    """

    def __init__(self, path: str | Path | None = None, runtime: str = "auto", threads: int = 2):
        self.path = Path(path) if path else default_model_path()
        self.model, self.card = load_checkpoint(self.path)
        self.model_id: str = self.card["model_id"]
        self.win_length: int = int(self.card.get("arch", {}).get("win_length", 10))
        self._ort = None
        onnx_path = self.path.with_suffix(".onnx")
        want_onnx = runtime == "onnx" or (runtime == "auto" and self._onnx_matches(onnx_path))
        if want_onnx:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self._ort = ort.InferenceSession(str(onnx_path), opts,
                                             providers=["CPUExecutionProvider"])
        else:
            torch.set_num_threads(threads)
        self.runtime = "onnxruntime" if self._ort is not None else "torch"

    def _onnx_matches(self, onnx_path: Path) -> bool:
        if not onnx_path.is_file():
            return False
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return self.card.get("onnx_model_id") == self.model_id

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


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
