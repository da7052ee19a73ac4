"""Whole-clip previews of a sampler's prediction: every frame, small enough to make at every step.

The host previews a video model by its first latent frame. Here the whole
predicted clip is decoded, by a tiny TAEHV-family decoder when one matches the
model (its frames are close to the big VAE's), else by the host's linear
latent-to-RGB factors (a blurry colour sketch at latent resolution, at no
cost). Frames come out as ``[T, h, w, 3]`` uint8, at most ``size`` pixels on
their long side.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from .streaming import engine
from .streaming.model import CausalVideoVAE


@torch.no_grad()
def decoded_preview(tae: CausalVideoVAE, raw_latent: torch.Tensor, size: int) -> torch.Tensor:
    """All frames of the first video of a raw latent ``[B, C, T, h, w]``, through ``tae`` in one step."""
    latent = raw_latent[:1].to(tae.weight_device, tae.weight_dtype)
    frames = engine.decode(tae, latent, frames_per_step=latent.shape[2])  # [T, H, W, 3] in [0, 1]
    return _small(frames.permute(0, 3, 1, 2), size)


@torch.no_grad()
def linear_preview(latent: torch.Tensor, factors: torch.Tensor, bias: torch.Tensor | None, size: int) -> torch.Tensor:
    """All frames of the first video of a sampler-space latent ``[B, C, T, h, w]`` as ``factors`` (``[C, 3]``) mix
    its channels, as the host's latent-to-RGB previewer does for one frame."""
    z = latent[0].float().movedim(0, -1)  # [T, h, w, C]
    rgb = F.linear(z, factors.float().t(), None if bias is None else bias.float())
    return _small(rgb.add(1).div(2).clamp(0, 1).permute(0, 3, 1, 2), size)


class PreviewPacer:
    """Keeps previews to a share of the sampler's wall time, whatever the decoder and the model cost.

    A step is previewed when the time spent on previews so far, plus what the
    last one took, stays within ``share`` of the time since sampling began
    (previews included). The first step is always previewed: it measures the
    cost. A cheap preview then runs at every step, a costly one every few.
    """

    def __init__(self, share: float = 0.1, clock: Callable[[], float] | None = None) -> None:
        self.share, self.clock = share, clock or time.perf_counter
        self.start, self.spent, self.last = self.clock(), 0.0, 0.0
        self.shown = 0

    def due(self) -> bool:
        return self.shown == 0 or self.spent + self.last <= self.share * (self.clock() - self.start)

    def run(self, make_preview: Callable[[], None]) -> None:
        """``make_preview()`` now, timed."""
        began = self.clock()
        make_preview()
        self.last = self.clock() - began
        self.spent += self.last
        self.shown += 1


def _small(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``[T, 3, H, W]`` in [0, 1] -> ``[T, h, w, 3]`` uint8 fitting ``size`` (area-averaged down, nearest up)."""
    height, width = frames.shape[-2:]
    scale = size / max(height, width)
    target = (max(1, round(height * scale)), max(1, round(width * scale)))
    if target != (height, width):
        frames = F.interpolate(frames, size=target, mode="area" if scale < 1 else "nearest")
    return frames.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
