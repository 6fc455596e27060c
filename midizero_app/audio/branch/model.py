"""The audio branch's networks: VGG-style CNNs over spectrogram and piano-roll snippets.

After Dorfer, Arzt & Widmer (ISMIR 2017; TISMIR 2018) and their code
(``CPJKU/audio_sheet_retrieval``, ``models/mutopia_ccal_cont_rsz.py``; PyTorch:
``luisfvc/ucasr``, ``models/vgg_model.py``). Each branch is four blocks of two 3×3
convolutions (batch norm, ELU) and a 2×2 max-pool, with 24/48/96/96 filters; then a 1×1
convolution to 32 maps with batch norm, global average pooling, and a dense layer to the
embedding, L2-normalised (similarity: cosine). The published network merges the two
branches' 32-d codes with a CCA projection layer; the same code offers a learned linear
projection instead (``LearnedCCALayer``), which is what the dense layer here is: the
pairwise ranking loss trains it with the rest.

Two models are built from these branches:

* :class:`PairModel` — the reproduction: an audio branch (1 × 92 bins × 42 frames) and a
  symbolic branch (1 × 88 pitches × 42 frames of piano roll), 32-d each.
* :class:`AudioEncoder` — one audio branch whose embedding has the app's
  :data:`~midizero_app.core.model_arch.EMBED_DIM`, trained to land on the bundled
  pitch-matrix encoder's window embedding (the library index's space).

Weights are stored as ``<name>.safetensors`` beside a ``<name>.json`` card (the app's model
file conventions, :mod:`midizero_app.core.model_files`); the card's ``"audio_arch"`` holds
the architecture (``"arch"`` is the pitch-matrix encoder's key and is left out), and
``<name>.onnx`` is the audio branch's export, run with onnxruntime.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from ...core.atomic import atomic_write
from ...core.hashing import file_hash
from ...core.model_files import (ModelError, first_line, onnx_path, read_card,
                                 read_weights, require_file, write_card, write_weights)
from ...core.onnx_session import checked_session

# The architecture entry lives in the torch-free runtime module (the app loads the export
# without torch); it is re-exported here for training and the benchmarks.
from .runtime import (KINDS, LATENT, ROLL_PITCHES, SNIPPET_FRAMES, SPEC_BINS,  # noqa: E402,F401
                      WIDTHS, audio_arch, check_audio_arch, embed_recording)


class Block(nn.Module):
    """Two 3×3 convolutions, each with batch norm and ELU, then a 2×2 max-pool."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.elu(self.bn1(self.conv1(x)))
        x = F.elu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, 2)


class Branch(nn.Module):
    """One VGG-style branch: (N, frames, rows) snippets → (N, dim) unit vectors.

    Input is time-major like the app's windows (frames × bins or pitches); the network
    sees it as a 1-channel image of rows × frames, as published.
    """

    def __init__(self, dim: int, widths=WIDTHS, latent: int = LATENT):
        super().__init__()
        chans = [1, *widths]
        self.blocks = nn.Sequential(*[Block(a, b) for a, b in zip(chans, chans[1:])])
        self.code = nn.Conv2d(widths[-1], latent, 1, bias=False)
        self.code_bn = nn.BatchNorm2d(latent)
        self.head = nn.Linear(latent, dim)
        for m in self.modules():  # He uniform, as published
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (N, frames, rows) → float (N, dim), L2-normalised."""
        y = self.blocks(x.transpose(1, 2).unsqueeze(1))
        y = self.code_bn(self.code(y)).mean(dim=(2, 3))
        return F.normalize(self.head(y), dim=1)


class AudioEncoder(nn.Module):
    """An audio branch alone: (N, frames, 92) log spectrogram → (N, dim) unit vectors."""

    def __init__(self, arch: dict):
        super().__init__()
        self.arch = check_audio_arch(arch)
        self.audio = Branch(arch["dim"], tuple(arch["widths"]), arch["latent"])

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.audio(spec)


class PairModel(AudioEncoder):
    """The reproduction: an audio branch and a piano-roll branch into one 32-d space."""

    def __init__(self, arch: dict):
        super().__init__(arch)
        self.symbolic = Branch(arch["dim"], tuple(arch["widths"]), arch["latent"])

    def embed_symbolic(self, roll: torch.Tensor) -> torch.Tensor:
        """roll: float (N, frames, 88) piano roll → (N, dim) unit vectors."""
        return self.symbolic(roll)


def build(arch: dict) -> AudioEncoder:
    """A fresh model for a card's ``"audio_arch"`` (a :class:`PairModel` for
    ``"reproduce"``, an :class:`AudioEncoder` for ``"teacher"``)."""
    arch = check_audio_arch(arch)
    return PairModel(arch) if arch["kind"] == "reproduce" else AudioEncoder(arch)


def pairwise_ranking_loss(a: torch.Tensor, b: torch.Tensor, margin: float = 0.7) -> torch.Tensor:
    """The published hinge loss over in-batch non-matching pairs.

    ``a``, ``b``: (N, d) unit vectors, row i of each a matching pair. For every i and every
    j ≠ i: max(0, margin − cos(a_i, b_i) + cos(a_i, b_j)), averaged over the N(N − 1) terms.
    """
    sims = a @ b.t()
    pos = sims.diagonal().unsqueeze(1)
    off = ~torch.eye(len(a), dtype=torch.bool, device=a.device)
    return torch.clamp(margin - pos + sims, min=0)[off].mean()


def teacher_loss(student: torch.Tensor, target: torch.Tensor, temperature: float = 0.1,
                 alpha: float = 0.5) -> torch.Tensor:
    """Loss of an audio branch against the frozen encoder's window embeddings.

    ``student``, ``target``: (N, d) unit vectors, row i the audio snippet and its window.
    ``alpha`` × (1 − cos(student_i, target_i)) pulls each snippet onto its window; the rest
    is InfoNCE over the batch's windows (``temperature``), which keeps snippets apart where
    their windows are apart. Windows in the batch that equal row i's (cos > 0.999: repeats
    in the music) are not counted as negatives.
    """
    cos = (student * target).sum(1)
    logits = student @ target.t() / temperature
    same = (target @ target.t()) > 0.999
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    nce = F.cross_entropy(logits, torch.arange(len(student), device=student.device))
    return alpha * (1 - cos).mean() + (1 - alpha) * nce


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's ``state_dict`` as C-contiguous NumPy arrays."""
    return {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}


def save(model: AudioEncoder, path: str | Path, card: dict) -> dict:
    """Write ``<path>.safetensors`` and its card (``.json``) atomically; returns the card
    with ``model_id``, ``n_parameters`` and ``audio_arch`` set (an export recorded before
    is dropped from the card: it belongs to other weights)."""
    path = Path(path)
    mid = write_weights(path, state_arrays(model))
    card = {k: v for k, v in card.items() if k not in ("onnx_model_id", "onnx_hash", "arch")}
    card.update(audio_arch=model.arch, model_id=mid,
                n_parameters=int(sum(p.numel() for p in model.parameters())))
    write_card(path, card)
    return card


def load(path: str | Path) -> tuple[AudioEncoder, dict]:
    """A saved model in eval mode and its card (``model_id`` set from the weights).

    Raises :class:`ModelError` (one line naming the file) for a missing or damaged file,
    a card without a usable ``"audio_arch"``, weights that do not fit it, or weights whose
    id differs from the card's.
    """
    path = require_file(path)
    card = read_card(path)
    try:
        model = build(card.get("audio_arch"))
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    arrays = read_weights(path)
    want = model.state_dict()
    if set(arrays) != set(want):
        odd = sorted(set(arrays) ^ set(want))[:3]
        raise ModelError(f"model {path.name} does not match its card's audio_arch "
                         f"({', '.join(odd)})")
    for k, t in want.items():
        if tuple(arrays[k].shape) != tuple(t.shape):
            raise ModelError(f"model {path.name} does not match its card's audio_arch: {k} is "
                             f"{tuple(arrays[k].shape)}, not {tuple(t.shape)}")
        if arrays[k].dtype.kind == "f" and not np.isfinite(arrays[k]).all():
            raise ModelError(f"model {path.name} is damaged: {k} holds NaN or infinite values")
    from ...core.model_files import model_id_of_arrays

    mid = model_id_of_arrays(arrays)
    if card.get("model_id") and card["model_id"] != mid:
        raise ModelError(f"{path.name} is damaged: its weights do not match its card "
                         f"(model id {mid}, the card says {card['model_id']})")
    try:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    except Exception as exc:  # noqa: BLE001 - dtype mismatches and the like
        raise ModelError(f"model {path.name} does not match its card: {first_line(exc)}") \
            from None
    model.eval()
    card["model_id"] = mid
    return model, card


class _AudioOnly(nn.Module):
    def __init__(self, model: AudioEncoder):
        super().__init__()
        self.model = model

    def forward(self, spec):
        return self.model(spec)


def export_onnx(model: AudioEncoder, path: str | Path, card: dict) -> dict:
    """Export the audio branch (input ``"spec"`` (n, frames, 92) float32, output
    ``"embeddings"`` (n, dim)) to ``<path>.onnx`` atomically; record it in the card
    (``onnx_model_id``, ``onnx_hash``), which is written again. Returns the card."""
    weights = Path(path)
    frames = int(model.arch["frames"])
    model.eval()
    digest: list[str] = []
    with atomic_write(onnx_path(weights), verify=lambda t: digest.append(file_hash(t))) as tmp:
        torch.onnx.export(_AudioOnly(model), torch.zeros(2, frames, SPEC_BINS), str(tmp),
                          opset_version=17, dynamo=False, input_names=["spec"],
                          output_names=["embeddings"],
                          dynamic_axes={"spec": {0: "n"}, "embeddings": {0: "n"}})
    model.eval()  # the exporter can leave the wrapped module in training mode
    card = {**card, "onnx_model_id": card["model_id"], "onnx_hash": digest[-1]}
    write_card(weights, card)
    return card


class AudioEmbedder:
    """Runs a saved model's audio branch: onnxruntime when the export beside the weights
    belongs to them and matches torch within 1e-4, else torch.

    Parameters
    ----------
    path : the ``.safetensors`` weights.
    runtime : ``"auto"``, ``"onnx"`` (the export, or :class:`ModelError`), ``"torch"``.
    threads : CPU threads.
    """

    def __init__(self, path: str | Path, runtime: str = "auto", threads: int = 2):
        self.path = Path(path)
        self.model, self.card = load(self.path)
        self.arch = self.model.arch
        self.frames = int(self.arch["frames"])
        self.model_id: str = self.card["model_id"]
        x = np.random.default_rng(0).normal(0.5, 0.5, (8, self.frames, SPEC_BINS))
        sample = np.abs(x).astype(np.float32)  # 8 seeded random snippets
        self._ort = checked_session(self.path, self.card, self.model, sample, "spec",
                                    runtime, threads)
        if self._ort is None:
            torch.set_num_threads(threads)
        self.runtime = "onnxruntime" if self._ort is not None else "torch"

    def embed(self, spec: np.ndarray, batch: int = 256) -> np.ndarray:
        """spec: (N, frames, 92) log spectrogram snippets → float32 (N, dim) unit vectors."""
        spec = np.asarray(spec)
        if spec.ndim != 3 or spec.shape[1:] != (self.frames, SPEC_BINS):
            raise ModelError(f"audio snippets must be (n, {self.frames}, {SPEC_BINS}), "
                             f"not {spec.shape}")
        out = np.empty((len(spec), int(self.arch["dim"])), np.float32)
        for i in range(0, len(spec), batch):
            x = np.asarray(spec[i:i + batch], np.float32)
            if self._ort is not None:
                out[i:i + batch] = self._ort.run(None, {"spec": x})[0]
            else:
                with torch.inference_mode():
                    out[i:i + batch] = self.model(torch.from_numpy(x)).numpy()
        return out

    def embed_recording(self, samples: np.ndarray, sr: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Audio → query windows in the model's space: one snippet per onset found in the
        recording (:func:`.snippets.query_snippets` under the card's mapping).

        ``samples``: float mono (n,) or (n, channels) at ``sr`` Hz. Returns the embeddings
        float32 (N, dim), the onset numbers int64 (N,) (query frames for
        :class:`midizero_app.core.search.VoteAccumulator`) and the onsets' times float64
        (N,) in seconds.
        """
        return embed_recording(self, samples, sr)

    def embed_symbolic(self, roll: np.ndarray, batch: int = 256) -> np.ndarray:
        """roll: (N, frames, 88) piano-roll snippets → float32 (N, 32) (reproduction only,
        with torch)."""
        if not isinstance(self.model, PairModel):
            raise ModelError(f"{self.path.name} has no symbolic branch (a teacher model)")
        out = []
        with torch.inference_mode():
            for i in range(0, len(roll), batch):
                x = torch.from_numpy(np.asarray(roll[i:i + batch], np.float32))
                out.append(self.model.embed_symbolic(x).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.arch["dim"]), np.float32)
