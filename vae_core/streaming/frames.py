"""Two small helpers every family and stage shares: 2D modules over video frames, and the linear fade."""

from __future__ import annotations

import torch
import torch.nn as nn


def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Applies a 2D module to every frame of a ``[B, C, T, H, W]`` video (frames become the batch)."""
    b, _, t = x.shape[:3]
    y = module(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


def fade_in(overlap: int, start: int = 0, count: int | None = None) -> torch.Tensor:
    """The later side's weights across an overlap of ``overlap`` items: ``(k + 1) / (overlap + 1)`` for ``k`` in
    ``[start, start + count)`` (all of it by default). The earlier side's weights are ``1 -`` these, or the same
    fade reversed, so two overlapping pieces always sum to one. Tiles, temporal windows and stitched segments
    all cross-fade with it."""
    count = overlap - start if count is None else count
    return torch.arange(start + 1, start + count + 1, dtype=torch.float32) / (overlap + 1)
