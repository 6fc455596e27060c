"""The encoder's architecture constants, without torch (DESIGN §1.3).

The encoder (:mod:`midizero_app.core.encoder`) builds its network from :data:`DEFAULT_ARCH`
merged with a model card's ``"arch"``; training (:mod:`midizero_app.core.training`) starts
new runs from it; the index and search code size their vectors by :data:`EMBED_DIM`.
"""
from __future__ import annotations

EMBED_DIM = 128
"""Length of one window's embedding (float32 unit vectors in memory, float16 when stored)."""

DEFAULT_ARCH = {"widths": [32, 64, 128, 128], "blocks": [1, 1, 1, 1], "dim": EMBED_DIM,
                "win_length": 10}
"""The bundled model's architecture: channels and residual blocks per stage, embedding
length, and window length in frames (one frame per onset group)."""


def check_arch(arch: dict | None) -> dict:
    """The full architecture, :data:`DEFAULT_ARCH` overlaid with ``arch`` (a model card's
    ``"arch"``), checked before anything is built from it.

    Raises ``ValueError`` naming the bad entry: widths and blocks are lists of 1 to 8 whole
    numbers (channels 1–2048, blocks 1–16) of equal length, ``dim`` is :data:`EMBED_DIM`
    (the length every library stores), ``win_length`` is 1–256 frames.
    """
    if arch is not None and not isinstance(arch, dict):
        raise ValueError("the architecture is not a JSON object")
    a = {**DEFAULT_ARCH, **(arch or {})}

    def whole(v, lo: int, hi: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    for key, hi in (("widths", 2048), ("blocks", 16)):
        v = a[key]
        if not (isinstance(v, (list, tuple)) and 1 <= len(v) <= 8 and
                all(whole(x, 1, hi) for x in v)):
            raise ValueError(f"{key} must be 1 to 8 whole numbers from 1 to {hi} (got {v!r:.60})")
    if len(a["widths"]) != len(a["blocks"]):
        raise ValueError("widths and blocks must have one entry per stage each")
    if a["dim"] != EMBED_DIM:
        raise ValueError(f"dim must be {EMBED_DIM} (got {a['dim']!r:.20})")
    if not whole(a["win_length"], 1, 256):
        raise ValueError(f"win_length must be 1 to 256 frames (got {a['win_length']!r:.20})")
    return a
