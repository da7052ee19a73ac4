"""GroupNorm over each frame alone, computed along time in place, in the input's memory layout.

Some video VAEs normalise every frame with its own statistics (a GroupNorm run on ``[B*T, C, H, W]``). Nothing
crosses frames, so a stream cut anywhere gives the whole clip's result. A spatial tile sees only its pixels: with
``NormStatistics("frame")`` it normalises with its own statistics; with ``"frame_gathered"`` the engine first
sums each frame's statistics over all the step's tiles, norm by norm in trial runs (:class:`group_norm.Pooling`
``per_step``, :meth:`steps._Step._gather`), then runs the step with those.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .group_norm import Moments, pooled_moments
from .state import channels_last


class FrameGroupNorm(nn.GroupNorm):
    """Statistics of each frame's groups, then one pass that scales and shifts (no frames-first copies);
    channels-last input stays channels-last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        last = channels_last(x)
        moments = pooled_moments(self, x, _frame_moments)  # gathered over a tiled step's tiles
        if moments is None:  # the frames' own
            moments = _frame_moments(x, self.num_groups)
        mean, var = (m.float()[:, :, None, :, None] for m in moments.mean_var())  # [b, t, 1, G, 1]
        affine = (1, 1, 1, self.num_groups, -1)
        if not last:
            mean, var = mean.permute(0, 3, 2, 1, 4), var.permute(0, 3, 2, 1, 4)  # [b, G, 1, t, 1]
            affine = (1, self.num_groups, -1, 1, 1)
        scale = torch.rsqrt(var + self.eps) * self.weight.view(affine)
        shift = self.bias.view(affine) - mean * scale
        y = torch.addcmul(shift.to(x.dtype), _grouped(x, self.num_groups), scale.to(x.dtype))
        return y.view(b, t, h, w, c).permute(0, 4, 1, 2, 3) if last else y.view(b, c, t, h, w)


def _grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``x`` as ``[b, t, h*w, G, C/G]`` if channels-last, else ``[b, G, C/G, t, h*w]`` (a view when it can be)."""
    b, c, t, h, w = x.shape
    if channels_last(x):
        return x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, groups, c // groups)
    return x.reshape(b, groups, c // groups, t, h * w)


def _frame_moments(x: torch.Tensor, groups: int) -> Moments:
    """Sums and sums of squares of each frame's groups, ``[b, t, G]`` in float64.

    In float32 each channel's pixels are summed (and their squares) as they lie in memory and the channels'
    totals combined in float64: 4-8x faster on the CPU than ``var_mean`` over two strided dims, and as exact where
    a frame's mean is not hundreds of its deviations. Half precision takes ``var_mean``'s float32 accumulation."""
    pixels = _grouped(x, groups)
    channels, positions = (4, 2) if channels_last(x) else (2, 4)
    count = pixels.shape[channels] * pixels.shape[positions]
    if pixels.dtype == torch.float32:
        total = pixels.sum(positions, keepdim=True).double().sum(channels, keepdim=True)
        if positions == pixels.dim() - 1:  # along memory: a dot product
            squares = torch.linalg.vecdot(pixels, pixels).unsqueeze(-1)
        else:  # across memory: squares summed as they lie (vector_norm there is 2.5x slower)
            squares = pixels.square().sum(positions, keepdim=True)
        squares = squares.double().sum(channels, keepdim=True)
    else:
        var, mean = torch.var_mean(pixels, dim=(channels, positions), keepdim=True, correction=0)
        mean = mean.double()
        total, squares = mean * count, (var.double() + mean.square()) * count
    total, squares = total[:, :, 0, :, 0], squares[:, :, 0, :, 0]  # dims 2 and 4 summed in either layout
    if channels == 2:  # [b, G, t]
        total, squares = total.transpose(1, 2), squares.transpose(1, 2)
    return Moments(total, squares, count)
