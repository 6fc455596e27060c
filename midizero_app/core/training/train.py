"""The training loop (DESIGN §1.4) as a core function with progress and cancel.

``train(config, progress, cancel)`` generates pairs on the fly (seeded), optimises the
contrastive loss with Adam and a cosine learning-rate decay, writes a resumable training
checkpoint (``last.pt``, weights + optimiser + step, loaded with ``weights_only=True``)
every epoch, and ends with ``model.safetensors`` + ``model.json`` (the model card) and an
ONNX copy. Every file is written atomically (:mod:`midizero_app.core.atomic`): a full disk
or a kill leaves the previous file.
"""
from __future__ import annotations

import io
import math
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..atomic import write_bytes
from ..errors import WriteFailed
from ..encoder import build_model, export_onnx, save_checkpoint
from ..model_arch import DEFAULT_ARCH
from ..model_files import WEIGHTS_SUFFIX, write_card
from .config import TrainConfig
from .augment import augment
from .datagen import WindowSource, windows_to_array
from .loss import contrastive_loss
from .melody_pairs import melody_pair


ProgressFn = Callable[[dict], None]


class PairBatches:
    """Seeded (anchor, positive, ref) batches; a background thread keeps the next few ready
    so the Python-side generation overlaps the optimiser step."""

    def __init__(self, cfg: TrainConfig, seed: int, prefetch: int = 4):
        self.cfg = cfg
        self.src = WindowSource(cfg.data_source, cfg.win_length, cfg.note_max, cfg.pitch_range,
                                cfg.p_mean, cfg.p_std, cfg.n_mean, cfg.n_std,
                                cfg.frame_dist_file, cfg.train_data_path)
        self.rng = np.random.default_rng(seed)
        import queue
        self._q: queue.Queue = queue.Queue(prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _make(self):
        cfg, rng = self.cfg, self.rng
        n_melody = round(cfg.melody_pairs * cfg.batch_size)  # the melody-pairs variant (models/README.md)
        anchors = [self.src.draw(rng) for _ in range(cfg.batch_size - n_melody)]
        pairs = [augment(w, rng, cfg.pitch_range, cfg.piano_augment,
                         transcription=cfg.transcription_augment) for w in anchors]
        a = windows_to_array(anchors, cfg.win_length)
        p = windows_to_array([w for w, _ in pairs], cfg.win_length)
        r = np.asarray([r for _, r in pairs], np.float32)
        if n_melody:
            ma, mp, mr = zip(*(melody_pair(rng, cfg.win_length) for _ in range(n_melody)))
            a, p = np.concatenate([a, np.stack(ma)]), np.concatenate([p, np.stack(mp)])
            r = np.concatenate([r, np.asarray(mr, np.float32)])
        return a, p, r

    def _fill(self):
        while not self._stop.is_set():
            try:
                item = self._make()
            except Exception as exc:  # noqa: BLE001 - handed to next(), else it waits forever
                item = exc
            while not self._stop.is_set():
                try:
                    self._q.put(item, timeout=0.2)
                    break
                except Exception:  # noqa: BLE001 - queue.Full: check the stop flag again
                    continue
            if isinstance(item, Exception):
                return

    def next(self):
        item = self._q.get()
        if isinstance(item, Exception):
            self._stop.set()
            raise item
        return item

    def close(self):
        self._stop.set()


def _lr_at(cfg: TrainConfig, step: int) -> float:
    t = min(step / max(cfg.total_steps, 1), 1.0)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(config: TrainConfig, progress: ProgressFn | None = None,
          cancel: threading.Event | None = None) -> Path:
    """Train an encoder; returns the path of the final ``model.safetensors``.

    ``progress`` receives dicts ``{"step", "total", "epoch", "loss", "lr", "samples_per_s"}``
    about every 10 steps; setting ``cancel`` stops after the current step, keeping
    ``last.pt`` so a later call with the same ``out_dir`` resumes where it stopped.
    """
    cfg = config
    if not 0.0 <= cfg.melody_pairs <= 1.0:
        raise ValueError(f"melody_pairs is a share of the batch, 0 to 1 (got {cfg.melody_pairs})")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    # The model's input height is the window length of the data, whatever the arch dict says.
    arch = {**DEFAULT_ARCH, **cfg.arch, "win_length": cfg.win_length}
    model = build_model(arch).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, history = 0, []
    last = out / "last.pt"
    saved = -1  # the step last.pt holds (-1: none written by this call)
    if last.is_file():
        try:
            ck = torch.load(last, map_location=dev, weights_only=True)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optim"])
            step = int(ck["step"])
            history = [list(map(float, h)) for h in ck["history"].tolist()] \
                if len(ck["history"]) else []
            saved = step
        except Exception as exc:  # noqa: BLE001 - corrupt, or another architecture's run
            raise ValueError(f"cannot resume from {last} (delete it to start afresh): "
                             f"{str(exc).splitlines()[0][:200]}") from None
    # A resumed run reseeds from its step so that it neither repeats nor skips data.
    batches = PairBatches(cfg, seed=cfg.seed * 1_000_003 + step)
    t_start, t_last, n_since = time.perf_counter(), time.perf_counter(), 0
    losses = []
    try:
        model.train()
        while step < cfg.total_steps:
            if cancel is not None and cancel.is_set():
                break
            a, p, ref = batches.next()
            lr = _lr_at(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            x = torch.from_numpy(np.concatenate([a, p])).float().to(dev)
            emb = model(x)
            loss = contrastive_loss(emb[:len(a)], emb[len(a):], torch.from_numpy(ref).to(dev),
                                    cfg.loss, cfg.alpha, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            n_since += len(a)
            losses.append(loss.item())
            if step % 10 == 0 or step == cfg.total_steps:
                now = time.perf_counter()
                info = {"step": step, "total": cfg.total_steps,
                        "epoch": (step - 1) // cfg.steps_per_epoch + 1,
                        "loss": float(np.mean(losses[-10:])), "lr": lr,
                        "samples_per_s": n_since / max(now - t_last, 1e-9)}
                history.append([step, info["loss"], lr])
                t_last, n_since = now, 0
                if progress:
                    progress(info)
            if step % cfg.steps_per_epoch == 0 or step == cfg.total_steps:
                saved = _save_or_explain(last, model, opt, step, history, saved)
    finally:
        batches.close()
    if saved != step:
        saved = _save_or_explain(last, model, opt, step, history, saved)
    if step < cfg.total_steps:
        raise TrainingCancelled(step, last)
    model = model.cpu().eval()
    card = {"name": out.name, "arch": arch,
            "win_length": cfg.win_length, "tau": 0.05, "library_hop": 2, "query_hop": 1,
            "training": {**asdict(cfg), "pitch_range": list(cfg.pitch_range)},
            "steps": step, "train_seconds_this_session": round(time.perf_counter() - t_start, 1),
            "device": str(dev), "torch": torch.__version__,
            "final_loss": float(np.mean(losses[-50:])) if losses else None,
            "data_provenance": _provenance(cfg)}
    final = out / ("model" + WEIGHTS_SUFFIX)
    try:
        card = save_checkpoint(model, final, card)
    except WriteFailed as exc:
        raise WriteFailed(f"{exc}; training finished (step {step}, kept in {last.name}): the "
                          "same command writes the model", exc.errno) from None
    try:
        onnx_hash = export_onnx(model, final.with_suffix(".onnx"), cfg.win_length)
    except Exception:  # noqa: BLE001 - ONNX is an optional speed-up; torch still runs it
        return final
    write_card(final, {**card, "onnx_model_id": card["model_id"], "onnx_hash": onnx_hash})
    return final


class TrainingCancelled(Exception):
    """Raised by :func:`train` when cancelled; ``checkpoint`` resumes the run."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"training stopped at step {step}; resume from {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def _save_training_state(path: Path, model, opt, step: int, history: list) -> None:
    """Write the resumable state (weights, optimiser, step, loss history) atomically."""
    # Serialised in memory, then written by the one checked write path: torch.save's own
    # file writer reports a full disk as a RuntimeError and can leave a short file.
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                "history": torch.tensor(history, dtype=torch.float64)}, buf)
    write_bytes(path, buf.getvalue())


def _save_or_explain(path: Path, model, opt, step: int, history: list, saved: int) -> int:
    """Save the resumable state; a failed write (a full disk) stops training with one line
    that says where a rerun resumes from. Returns the step now saved."""
    try:
        _save_training_state(path, model, opt, step, history)
    except WriteFailed as exc:
        where = f"resumes from step {saved}" if saved >= 0 else "starts afresh"
        raise WriteFailed(f"{exc}; training stopped at step {step}: the same command {where}",
                          exc.errno) from None
    return step


def _provenance(cfg: TrainConfig) -> str:
    if cfg.data_source in ("C", "P"):
        return f"generated on the fly (mode {cfg.data_source}, seed {cfg.seed}); no real music"
    path = cfg.frame_dist_file if cfg.data_source == "S" else cfg.train_data_path
    return f"mode {cfg.data_source} from {Path(path).name if path else '?'}"
