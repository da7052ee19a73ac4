"""Norms over the channels at each position: an RMSNorm with a gain, and a parameter-free RMS norm.

They never look across time or space, so they stream and tile exactly. Their
math is ``F.normalize``'s, written out: its vector norm over the strided
channel axis is ~8x slower on the CPU. (Running them a band of rows at a time,
to keep the temporaries in cache, halves a norm's time alone but gained
nothing inside a decode, where fresh pages dominate: ``docs/roofline.md``.)
"""

from __future__ import annotations

import torch
import torch.nn as nn


class RMSNorm(nn.Module):
    """L2 over channels at each position, times sqrt(C) and a gain. Low precision is normalised in fp32, as
    diffusers does (the host does not, so its bf16/fp16 results differ by rounding)."""

    def __init__(self, dim: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *([1] * spatial_dims)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        norm = x32.square().sum(1, keepdim=True).sqrt().clamp_min(1e-12)  # small: one value per position
        return (x32 / norm).to(x.dtype).mul_(self.gamma * self.scale)  # in place, in x.dtype


def rms_over_channels(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RMS over channels at each position, without a gain, in fp32."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.square().mean(1, keepdim=True) + eps)).to(x.dtype)
