"""Contrastive losses (DESIGN §1.4): InfoNCE with in-batch negatives, similarity regression."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE over unit vectors (N, D); row i of each is a positive pair."""
    logits = anchor @ positive.T / temperature
    target = torch.arange(len(anchor), device=anchor.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def sim_loss(anchor: torch.Tensor, positive: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between the pair cosine and its reference similarity."""
    return ((anchor * positive).sum(1) - ref).pow(2).mean()


def contrastive_loss(anchor, positive, ref, mode: str = "combine", alpha: float = 0.5,
                     temperature: float = 0.1) -> torch.Tensor:
    """``combine`` = α·InfoNCE + (1 − α)·sim; ``infonce`` or ``sim`` keep one term."""
    if mode == "infonce":
        return info_nce(anchor, positive, temperature)
    if mode == "sim":
        return sim_loss(anchor, positive, ref)
    if mode == "combine":
        return alpha * info_nce(anchor, positive, temperature) + \
            (1 - alpha) * sim_loss(anchor, positive, ref)
    raise ValueError(f"unknown loss {mode!r}; choose combine, infonce or sim")
