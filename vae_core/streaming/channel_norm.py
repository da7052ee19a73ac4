"""Norms over the channels at each position (Wan's and HunyuanVideo 1.5's RMSNorm, LTX's pixel norm).

They never look across time or space, so they stream and tile exactly. On
the CPU they are memory-bound: over a whole finest-stage tensor (150 MB at
256 px for Wan 2.1) each of the squares, their sum and the quotient is a
pass through main memory. Run a band of rows at a time, the temporaries stay
in cache and the work is about twice as fast (``benchmarks/roofline.py``).
Each element goes through the same operations; only the sum over channels
may vectorise differently, so results agree with the whole-tensor ones to
rounding. A GPU runs them whole.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

BAND_BYTES = 1 << 20  # rows of a band, in fp32, over all channels and frames: about the size of an L2 cache


def by_bands(x: torch.Tensor, normalise: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``normalise`` over bands of rows of ``x`` (dim -2) on the CPU, gathered in a fresh tensor; whole elsewhere,
    or where autograd records it."""
    if x.device.type != "cpu" or x.dim() < 4 or x.numel() == 0 or torch.is_grad_enabled():
        return normalise(x)
    out = torch.empty_like(x)
    rows = max(1, BAND_BYTES // (x[..., :1, :].numel() * 4))
    for top in range(0, x.shape[-2], rows):
        out[..., top : top + rows, :] = normalise(x[..., top : top + rows, :])
    return out


class RMSNorm(nn.Module):
    """L2 over channels at each position, times sqrt(C) and a gain (``F.normalize``'s math, whose vector norm over
    the strided channel axis is ~8x slower on the CPU). Low precision is normalised in fp32, as diffusers does."""

    def __init__(self, dim: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *([1] * spatial_dims)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = self.gamma * self.scale

        def normalise(band: torch.Tensor) -> torch.Tensor:
            band32 = band.float()
            norm = band32.square().sum(1, keepdim=True).sqrt_().clamp_min_(1e-12)
            return (band32 / norm).to(band.dtype).mul_(gain)

        return by_bands(x, normalise)


def rms_over_channels(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RMS over channels at each position, without a gain (LTX's parameter-free norm), in fp32."""

    def normalise(band: torch.Tensor) -> torch.Tensor:
        band32 = band.float()
        return (band32 * torch.rsqrt(band32.square().mean(1, keepdim=True) + eps)).to(band.dtype)

    return by_bands(x, normalise)
