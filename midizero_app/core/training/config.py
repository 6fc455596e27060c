"""Training hyper-parameters (no torch import: the CLI builds its options from these)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..model_arch import DEFAULT_ARCH  # the bundled model's architecture (no torch)

__all__ = ["DEFAULT_ARCH", "TrainConfig"]


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; saved in the model card."""

    data_source: str = "P"
    train_data_path: str | None = None   # mode R: frames JSON
    frame_dist_file: str | None = None   # mode S: frame statistics JSON
    win_length: int = 10
    note_max: int = 12
    pitch_range: tuple[int, int] = (21, 108)
    p_mean: float = 64.0
    p_std: float = 24.0
    n_mean: float = 6.0
    n_std: float = 2.5
    arch: dict = field(default_factory=lambda: dict(DEFAULT_ARCH))
    batch_size: int = 256
    lr: float = 1e-4
    lr_min: float = 1e-5
    epochs: int = 30
    samples_per_epoch: int = 2_000_000
    loss: str = "combine"
    alpha: float = 0.5
    temperature: float = 0.1
    piano_augment: bool = True
    transcription_augment: bool = False  # audio transcription errors (models/README.md)
    melody_pairs: float = 0.0   # share of each batch that are tune / remembered-tune pairs
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/model"

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.samples_per_epoch // self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs
