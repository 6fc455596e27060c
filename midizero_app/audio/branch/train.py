"""Training the audio branch's two models from rendered data (:mod:`.dataset`).

* ``"reproduce"`` — the published two-branch network (:class:`.model.PairModel`): audio and
  piano-roll snippets centred on the same chord onset, pairwise ranking hinge loss over the
  batch's non-matching pairs (margin 0.7), Adam (learning rate 0.002), batch 100, a random
  shift of ±1 frame of the audio snippet against the roll (the published onset
  translation).
* ``"teacher"`` — an audio branch into the app's space (:class:`.model.AudioEncoder`): each
  of the app's 10-frame query windows of a rendering is embedded once by the bundled
  pitch-matrix encoder (frozen, run with the app's own loader), and the audio snippet that
  plays the window (:mod:`.snippets`, ``mapping``) is trained onto that embedding
  (:func:`.model.teacher_loss`: cosine plus in-batch InfoNCE).

Both stop after ``minutes`` of training or ``max_steps`` steps, then write
``<out>.safetensors`` + ``<out>.json`` (:mod:`midizero_app.core.model_files` conventions)
and ``<out>.onnx``, checked against torch within 1e-4 before the run ends.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...core.errors import MidizeroError
from ...core.model_files import ModelError
from . import snippets as S
from .dataset import Rendering, iter_renderings
from .model import (AudioEmbedder, audio_arch, build, export_onnx, pairwise_ranking_loss, save,
                    teacher_loss)

LogFn = Callable[[str], None]


@dataclass
class Recipe:
    """A training run's settings (stored in the model card's ``"training"``)."""

    kind: str = "reproduce"
    mapping: str = "onsets"  # the teacher's window span (RESULTS: onsets beat a fixed 2.1 s)
    batch: int = 100
    lr: float = 0.002
    margin: float = 0.7
    temperature: float = 0.1
    alpha: float = 0.5
    minutes: float = 20.0
    max_steps: int | None = None
    widths: tuple = (24, 48, 96, 96)
    seed: int = 0
    threads: int = 2
    max_files: int | None = None
    valid_pairs: int = 1000
    init: str | None = None


def training_totals(card: dict) -> tuple[int, float]:
    """Steps and seconds of training behind a model card, its ``--init`` runs included
    (their cards are followed while they exist; a card's own ``total_steps`` /
    ``total_train_seconds`` are taken as they stand)."""
    from ...core.model_files import read_card

    tr = card.get("training") or {}
    if "total_steps" in tr:
        return int(tr["total_steps"]), float(tr.get("total_train_seconds", 0.0))
    steps, secs = int(tr.get("steps") or 0), float(tr.get("train_seconds") or 0.0)
    init = tr.get("init")
    if init and Path(init).is_file():
        s0, t0 = training_totals(read_card(init))
        steps, secs = steps + s0, secs + t0
    return steps, secs


def load_split(root: str | Path, split: str, max_files: int | None = None) -> list[Rendering]:
    """The renderings of ``split`` under ``root`` (the first ``max_files``), spectrograms
    kept float16 (T, 92)."""
    out = []
    for r in iter_renderings(root, split):
        if len(r.notes) and len(r.spec) >= S.SNIPPET_FRAMES // 2:
            out.append(r)
        if max_files is not None and len(out) >= max_files:
            break
    return out


class ReproduceData:
    """Chord-onset-centred audio/piano-roll pairs of a list of renderings, cut on demand.

    ``index`` int64 (N, 2): rendering number and the snippet's first frame.
    """

    def __init__(self, renderings: list[Rendering]):
        self.specs = [np.asarray(r.spec, np.float16) for r in renderings]
        self.rolls = [S.piano_roll(r.notes, len(r.spec)).astype(np.float16) for r in renderings]
        rows = []
        for i, r in enumerate(renderings):
            onset = S.performance_frames(r.notes).onset
            start = np.rint(onset * S.FPS).astype(np.int64) - S.SNIPPET_FRAMES // 2
            start = start[start + S.SNIPPET_FRAMES // 2 < len(r.spec)]
            rows.append(np.stack([np.full(len(start), i), start], 1))
        self.index = np.concatenate(rows) if rows else np.zeros((0, 2), np.int64)
        self.piece = np.array([renderings[i].piece for i in self.index[:, 0]], dtype=object) \
            if len(self.index) else np.zeros(0, object)

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, rows: np.ndarray, rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Audio (B, 42, 92) and roll (B, 42, 88) float32 snippets of ``rows``; with ``rng``
        the audio is shifted by −1..1 frames against the roll."""
        audio = np.empty((len(rows), S.SNIPPET_FRAMES, S.SPEC_BINS), np.float32)
        roll = np.empty((len(rows), S.SNIPPET_FRAMES, 88), np.float32)
        for j, (i, start) in enumerate(self.index[rows]):
            shift = int(rng.integers(-1, 2)) if rng is not None else 0
            audio[j] = S.cut(self.specs[i], np.array([start + shift]))[0]
            roll[j] = S.cut(self.rolls[i], np.array([start]))[0]
        return audio, roll


class TeacherData:
    """The app's query windows of a list of renderings with the frozen encoder's embedding
    of each, and the audio span that plays each (cut on demand under ``mapping``).

    ``index`` int64 (N,): rendering number; ``t_first``/``t_last`` float64 (N,): the
    window's first and last onset (s); ``target`` float16 (N, 128): the encoder's window
    embedding.
    """

    def __init__(self, renderings: list[Rendering], mapping: str, embedder=None,
                 log: LogFn = print):
        if mapping not in S.MAPPINGS:
            raise ValueError(f"unknown mapping {mapping!r}")
        if embedder is None:
            from ...core.inference import load_embedder

            embedder = load_embedder()
        self.mapping = mapping
        self.teacher_id = embedder.model_id
        self.specs = [np.asarray(r.spec, np.float16) for r in renderings]
        idx, t0, t1, tgt = [], [], [], []
        started = time.monotonic()
        for i, r in enumerate(renderings):
            fr = S.performance_frames(r.notes)
            from ...core.windows import make_windows

            windows, _ = make_windows(fr, 1)
            a, b = S.window_spans(fr)
            keep = a * S.FPS < len(r.spec)
            if not keep.any():
                continue
            idx.append(np.full(int(keep.sum()), i))
            t0.append(a[keep])
            t1.append(b[keep])
            tgt.append(embedder.embed(windows[keep]).astype(np.float16))
        self.index = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        self.t_first = np.concatenate(t0) if t0 else np.zeros(0)
        self.t_last = np.concatenate(t1) if t1 else np.zeros(0)
        self.target = np.concatenate(tgt) if tgt else np.zeros((0, 128), np.float16)
        self.piece = np.array([renderings[i].piece for i in self.index], dtype=object)
        log(f"teacher targets: {len(self.index)} windows of {len(renderings)} renderings "
            f"embedded in {time.monotonic() - started:.0f} s")

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, rows: np.ndarray, rng: np.random.Generator | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Audio snippets float32 (B, 42, 92) and target embeddings float32 (B, 128) of
        ``rows``; with ``rng`` each span is shifted by up to ±50 ms (onset-finding error)."""
        audio = np.empty((len(rows), S.SNIPPET_FRAMES, S.SPEC_BINS), np.float32)
        jit = rng.uniform(-0.05, 0.05, (len(rows), 2)) if rng is not None \
            else np.zeros((len(rows), 2))
        for j, r in enumerate(rows):
            i = self.index[r]
            audio[j] = S.audio_for_windows(self.specs[i], self.t_first[r:r + 1] + jit[j, 0],
                                           self.t_last[r:r + 1] + jit[j, 1], self.mapping)[0]
        return audio, self.target[rows].astype(np.float32)


def retrieval_ranks(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of each query's own item: ``q``, ``db`` float (N, d) unit vectors,
    row i of ``db`` the match of row i of ``q``; ties count against the query."""
    sims = q @ db.T
    own = np.diagonal(sims)[:, None]
    return (sims >= own).sum(1)


def rank_metrics(ranks: np.ndarray) -> dict:
    """R@1, R@10, MRR and median rank of 1-based ``ranks`` (N,)."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return {"n": 0}
    return {"n": int(len(ranks)), "R@1": float(np.mean(ranks <= 1)),
            "R@10": float(np.mean(ranks <= 10)), "MRR": float(np.mean(1.0 / ranks)),
            "MR": float(np.median(ranks))}


def embed_batches(fn, data, rows: np.ndarray, batch: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``fn(audio, other) -> (emb_a, emb_b)`` over ``data.batch`` of ``rows`` in batches
    (no augmentation); two float32 (N, d)."""
    ea, eb = [], []
    for i in range(0, len(rows), batch):
        a, b = data.batch(rows[i:i + batch])
        x, y = fn(a, b)
        ea.append(x)
        eb.append(y)
    return np.concatenate(ea), np.concatenate(eb)


def evaluate(model, data, rows: np.ndarray) -> dict:
    """Two-way retrieval among ``rows`` of ``data`` (audio → other, other → audio), with
    torch in eval mode: ``{"a2s": metrics, "s2a": metrics}`` (see :func:`rank_metrics`).
    For a teacher model the "other" side is the frozen encoder's window embedding."""
    model.eval()

    def fn(a, b):
        with torch.inference_mode():
            ea = model(torch.from_numpy(a)).numpy()
            if isinstance(data, ReproduceData):
                eb = model.embed_symbolic(torch.from_numpy(b)).numpy()
            else:
                eb = b / np.linalg.norm(b, axis=1, keepdims=True)
        return ea, eb

    ea, eb = embed_batches(fn, data, rows)
    out = {"a2s": rank_metrics(retrieval_ranks(ea, eb)),
           "s2a": rank_metrics(retrieval_ranks(eb, ea))}
    out["cos"] = float(np.mean(np.sum(ea * eb, 1)))
    return out


def train(recipe: Recipe, data_dir: str | Path, out: str | Path, log: LogFn = print,
          embedder=None) -> dict:
    """Train a model as ``recipe`` says on ``data_dir``'s train split (validated on its
    valid split), then save, export and check it at ``out`` (``.safetensors``).

    Returns the model card. Raises :class:`MidizeroError` when the data folder has no
    usable training renderings, :class:`ModelError` when the export does not match torch.
    """
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    rng = np.random.default_rng(recipe.seed)
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out.with_suffix(".safetensors")
    started = time.monotonic()
    train_r = load_split(data_dir, "train", recipe.max_files)
    if not train_r:
        raise MidizeroError(f"no training renderings in {Path(data_dir) / 'train'}")
    valid_r = load_split(data_dir, "valid", recipe.max_files)

    def make(rs):
        if recipe.kind == "reproduce":
            return ReproduceData(rs)
        return TeacherData(rs, recipe.mapping, embedder, log)

    data = make(train_r)
    vdata = make(valid_r) if valid_r else None
    log(f"{recipe.kind}: {len(data)} training pairs from {len(train_r)} renderings, "
        f"{len(vdata) if vdata else 0} validation pairs; data ready in "
        f"{time.monotonic() - started:.0f} s")
    if len(data) < 2:
        raise MidizeroError(f"too few training pairs in {data_dir} ({len(data)})")
    arch = audio_arch(recipe.kind, widths=recipe.widths,
                      mapping=recipe.mapping if recipe.kind == "teacher" else None)
    model = build(arch)
    if recipe.init:  # continue from a saved model of the same architecture
        from .model import load

        start, start_card = load(recipe.init)
        if start.arch != model.arch:
            raise ModelError(f"{Path(recipe.init).name} has another architecture "
                             f"({start.arch}) than this run ({model.arch})")
        model.load_state_dict(start.state_dict())
        log(f"starting from {recipe.init} (model id {start_card['model_id']}, "
            f"{start_card.get('training', {}).get('steps', '?')} steps)")
    prior = (0, 0.0)
    if recipe.init:
        prior = training_totals(start_card)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    batch = min(recipe.batch, len(data))
    t_train = time.monotonic()
    step, losses, epoch_order, pos = 0, [], rng.permutation(len(data)), 0
    history = []
    while True:
        elapsed = time.monotonic() - t_train
        if recipe.max_steps is not None and step >= recipe.max_steps:
            break
        if recipe.max_steps is None and elapsed >= recipe.minutes * 60:
            break
        if pos + batch > len(epoch_order):
            epoch_order, pos = rng.permutation(len(data)), 0
        rows = epoch_order[pos:pos + batch]
        pos += batch
        a, b = data.batch(rows, rng)
        model.train()
        xa = model(torch.from_numpy(a))
        if recipe.kind == "reproduce":
            xb = model.embed_symbolic(torch.from_numpy(b))
            loss = pairwise_ranking_loss(xa, xb, recipe.margin)
        else:
            loss = teacher_loss(xa, torch.from_numpy(b), recipe.temperature, recipe.alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 20 == 0:
            rate = step / max(time.monotonic() - t_train, 1e-9)
            log(f"step {step} loss {np.mean(losses[-20:]):.4f} ({rate:.2f} steps/s, "
                f"{(time.monotonic() - t_train) / 60:.1f} min)")
            history.append([step, round(float(np.mean(losses[-20:])), 5)])
    train_s = time.monotonic() - t_train
    valid = None
    if vdata is not None and len(vdata) >= 2:
        vrows = np.random.default_rng(1).permutation(len(vdata))[:recipe.valid_pairs]
        valid = evaluate(model, vdata, np.sort(vrows))
        log(f"valid ({len(vrows)} pairs): {json.dumps(valid)}")
    model.eval()
    card = {"name": out.stem, "kind": recipe.kind,
            "description": ("audio/piano-roll snippet embeddings (Dorfer et al. reproduction)"
                            if recipe.kind == "reproduce" else
                            "audio snippets into the pitch-matrix encoder's window space"),
            "training": {**{k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in recipe.__dict__.items()},
                         "data": str(data_dir), "train_renderings": len(train_r),
                         "train_pairs": len(data), "fonts": sorted({r.font for r in train_r}),
                         "steps": step, "train_seconds": round(train_s, 1),
                         "final_loss": float(np.mean(losses[-20:])) if losses else None,
                         "total_steps": step + prior[0],
                         "total_train_seconds": round(train_s + prior[1], 1),
                         "loss_history": history},
            "valid": valid, "torch": torch.__version__}
    if recipe.kind == "teacher":
        card["teacher_model_id"] = data.teacher_id
    out.parent.mkdir(parents=True, exist_ok=True)
    card = save(model, out, card)
    card = export_onnx(model, out, card)
    emb = AudioEmbedder(out, runtime="onnx", threads=recipe.threads)  # checks 1e-4
    if emb.runtime != "onnxruntime":
        raise ModelError(f"{out.with_suffix('.onnx').name} was not usable")
    log(f"wrote {out} (+ .json, .onnx; model id {card['model_id']}, {step} steps in "
        f"{train_s / 60:.1f} min)")
    return card
