"""Rough memory needs of a streaming step, for asking the host to make room.

A first-order estimate: the finest (full-resolution) stage dominates, with about
ten live tensors of its width over the step's pixel frames. A later release
replaces it with a per-model plan checked against measurement.
"""

from __future__ import annotations

import torch

from .model import CausalVideoVAE

LIVE_TENSORS_AT_FINEST_STAGE = 10


def step_bytes(vae: CausalVideoVAE, height: int, width: int, latent_frames: int, dtype: torch.dtype) -> int:
    """Activation memory of one step producing (or consuming) ``latent_frames`` at ``height`` x ``width`` pixels."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    frames = vae.temporal_ratio * latent_frames
    return LIVE_TENSORS_AT_FINEST_STAGE * vae.finest_width * frames * height * width * itemsize
